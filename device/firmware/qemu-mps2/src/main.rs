//! thecal pump firmware for QEMU's mps2-an385 board (Cortex-M3).
//!
//! The same `thecal-device` core as the simulator and the board, with:
//! * the CMSDK UART0 as the telemetry link (`-serial pty` on the QEMU command line),
//! * SysTick at 1 kHz as the device clock,
//! * memory-backed NOR flash (`SliceFlash`, real NOR semantics) over the board's code RAM,
//!   which QEMU keeps across a reset and loses when it exits: the therapy store and the
//!   firmware slots ([`layout`]),
//! * signed A/B firmware updates: it runs from the active slot under the bootloader
//!   `../qemu-mps2-boot` (embassy-boot), serves updates into the update slot, restarts
//!   into a verified image when no bolus runs, and confirms a new image after its
//!   self-test (or restarts without confirming, and the bootloader rolls back),
//! * device time that resumes after the newest stored snapshot at every boot,
//! * a motor stub that counts strokes,
//! * UART1 as a debug channel: the stack high-water mark after each batch of requests;
//!   an `M` received on it is the physical-presence signal (the magnet of a real
//!   implant: emergency access for five minutes).
//!
//! **No entropy source.** The AN385 has no random generator. The pump's ephemeral
//! X25519 keys come from its pool seeded with the boot epoch and stirred with a constant
//! ([`NO_ENTROPY`]): every key is still unique, but whoever knows the serial (and, after
//! provisioning, the device secret) can recompute them, so sessions with this image have
//! no forward secrecy and its static key is public. Acceptable only because this image is
//! a test vehicle that never holds a patient's therapy; the nRF52840 image stirs its
//! hardware RNG instead.
//!
//! No heap: no allocator is linked.
#![no_std]
#![no_main]

use thecal_fw_common::stack;
/// The memory map (shared with the bootloader and the build script; not all of it is
/// used here).
#[allow(dead_code)]
mod layout;
mod uart;

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use thecal_device::link::server::{SelfTest, Server};
use thecal_device::pump::Pump;
use thecal_device::store::flash::SliceFlash;
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::therapy::motor::CountingMotor;
use thecal_device::update::{Boot, Geometry, Updater, TRUSTED_KEY};
use thecal_protocol::message::{ResetCause, Version};
use thecal_protocol::session::Ephemeral;
use thecal_protocol::time::Timestamp;
use thecal_protocol::update::{Board, ImageHeader, HEADER_LEN};
use thecal_protocol::Response;

use uart::{Port, Uart};

/// The factory's ephemeral X25519 secret this image provisions itself with at boot (key
/// agreement with its own static key, as `thecal provision` does), so the end-to-end
/// suite can derive the device secret from the public key `Identify` reports
/// (`thecal_protocol::session::provision`; serial `QEMU0001`). PUBLIC, DEVELOPMENT ONLY:
/// it is in the source, so it protects nothing. A real pump is provisioned once by a
/// programmer's fresh ephemeral key. Copied in `host/tests/e2e/main.rs`; keep the two
/// equal.
const DEVELOPMENT_FACTORY_EPHEMERAL: [u8; 32] = *b"thecal DEVELOPMENT factory -QEMU";

/// What this image stirs into the entropy pool instead of random bytes (see the module
/// docs: QEMU has no entropy source).
const NO_ENTROPY: &[u8] = b"thecal-qemu: no entropy source on the mps2-an385";

/// SysTick input clock of the AN385 (25 MHz).
const CPU_HZ: u32 = 25_000_000;
/// Wall clock at boot until a programmer sets it: 2026-01-01T00:00:00Z.
const WALL_AT_BOOT: u64 = 1_767_225_600_000;

/// What this build says of itself on the debug UART (`THECAL_FW_BUILD` at build time:
/// the end-to-end suite updates to a second build and looks for its name).
const BUILD: &str = match option_env!("THECAL_FW_BUILD") {
    Some(name) => name,
    None => "dev",
};

/// A build made with `THECAL_FW_SELF_TEST=fail` fails its self-test when it runs on trial
/// (the end-to-end suite installs one and sees the bootloader roll it back).
const SELF_TEST_FAILS: bool = match option_env!("THECAL_FW_SELF_TEST") {
    Some(v) => matches!(v.as_bytes(), b"fail"),
    None => false,
};

/// The restart-reason word in the retained page ([`layout::RETAINED`] + 16; the
/// bootloader's factory mark is before it): set before a restart this image asks for,
/// cleared at every boot.
const RESTART_WORD: u32 = layout::RETAINED + 16;
/// The restart was this image's own (into a verified update, or after a failed
/// self-test).
const RESTART_SOFTWARE: u32 = 0x5357_5253;
/// The image is running: a boot that finds this was reset without asking.
const RUNNING: u32 = 0;

const _: () = assert!(
    layout::STORE_LEN as usize == FLASH_SIZE,
    "the store region of layout.rs must be the store's size"
);

static MS_LOW: AtomicU32 = AtomicU32::new(0);
static MS_HIGH: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    if MS_LOW.fetch_add(1, Ordering::Relaxed) == u32::MAX {
        MS_HIGH.fetch_add(1, Ordering::Relaxed);
    }
}

/// Milliseconds since this boot.
fn uptime() -> u64 {
    loop {
        let high = MS_HIGH.load(Ordering::Relaxed);
        let low = MS_LOW.load(Ordering::Relaxed);
        if MS_HIGH.load(Ordering::Relaxed) == high {
            return (u64::from(high) << 32) | u64::from(low);
        }
    }
}

/// Device time: SysTick restarts at every reset, so device time resumes just after the
/// newest stored snapshot (`thecal_device::store::resume_time`) and runs on from there.
#[derive(Clone, Copy)]
struct Clock {
    base_ms: u64,
}

impl Clock {
    fn now(self) -> Timestamp {
        Timestamp(self.base_ms.saturating_add(uptime()))
    }
}

#[entry]
fn main() -> ! {
    stack::paint();
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        halt()
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(CPU_HZ / 1_000 - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_counter();
    cp.SYST.enable_interrupt();

    let link = Uart::new(Port::Uart0);
    let mut debug = Uart::new(Port::Uart1);
    let (server, clock) = boot(&mut debug);
    let now = move || clock.now();
    self_test(server, now(), &mut debug);
    let boot_stack = stack::high_water();
    stack::paint();
    let running = server.firmware().running();
    let _ = writeln!(
        debug,
        "thecal-qemu up (build {BUILD}, firmware {}.{}.{}, security {}); boot stack high-water {boot_stack} B",
        running.version.major, running.version.minor, running.version.patch, running.security
    );
    let mut reported = 0;
    let mut rx = [0u8; 64];
    loop {
        let t = now();
        if t >= server.next_wake() {
            server.tick(t);
        }
        // A verified image waits and no bolus runs: restart into it (the answer to
        // UpdateFinish has left: the UART writes are synchronous). The bootloader swaps;
        // the store keeps the therapy.
        if server.restart_due(t) {
            let _ = writeln!(debug, "restarting into the new firmware");
            restart();
        }
        // The physical-presence signal: an `M` on the debug UART (the second -serial)
        // stands in for the magnet held over a real implant.
        if debug.try_read() == Some(b'M') {
            server.apply_presence(t, t);
            let _ = writeln!(debug, "magnet applied: emergency access for 5 minutes");
        }
        server.poll(t, t);
        let mut n = 0;
        while let Some(slot) = rx.get_mut(n) {
            match link.try_read() {
                Some(b) => *slot = b,
                None => break,
            }
            n += 1;
        }
        if let Some(bytes) = rx.get(..n).filter(|b| !b.is_empty()) {
            server.receive(now(), bytes, &mut |out| link.write_all(out));
            if server.wants_entropy() {
                server.stir(NO_ENTROPY);
            }
            let hw = stack::high_water();
            if hw > reported {
                reported = hw;
                let _ = writeln!(debug, "serving stack high-water {hw} B");
            }
        }
    }
}

/// The memory-backed flash of one region of [`layout`].
type Region = SliceFlash<'static>;
type QemuServer = Server<FlashStore<Region>, CountingMotor, Updater<Region, Region>>;

/// The region of `len` bytes at `at`, lent as flash.
///
/// # Safety
/// `at .. at + len` is one of the regions of [`layout`] outside this image (the store,
/// the update slot, the state partition), and it is lent once.
unsafe fn region(at: u32, len: u32) -> Region {
    // SAFETY: the caller lends a region nothing else names; it is RAM of the board's
    // memory map, valid for the program's life.
    SliceFlash::new(unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len as usize) })
}

/// Reads and clears the restart-reason word: why this boot happened.
fn reset_cause() -> ResetCause {
    let word = RESTART_WORD as *mut u32;
    // SAFETY: the retained page is RAM only this image writes after the bootloader's
    // factory step; an aligned word.
    let was = unsafe { core::ptr::read_volatile(word) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(word, RUNNING) };
    match was {
        RESTART_SOFTWARE => ResetCause::Software,
        // Erased by the bootloader's factory step: the first boot.
        u32::MAX => ResetCause::PowerOn,
        _ => ResetCause::Unknown,
    }
}

/// Restarts the board (the bootloader runs first), noting that this image asked for it.
fn restart() -> ! {
    // SAFETY: see `reset_cause`.
    unsafe { core::ptr::write_volatile(RESTART_WORD as *mut u32, RESTART_SOFTWARE) };
    cortex_m::peripheral::SCB::sys_reset()
}

/// The header of the running image, in the active slot's trailer; an image without one
/// runs as this crate's version at security version 0.
fn running_header() -> ImageHeader {
    let mut bytes = [0u8; HEADER_LEN];
    let trailer = (layout::ACTIVE + layout::IMAGE_LEN) as *const u8;
    // SAFETY: the trailer page is inside the active slot, readable RAM of the memory
    // map; nothing writes the active slot while the image runs.
    unsafe { core::ptr::copy_nonoverlapping(trailer, bytes.as_mut_ptr(), HEADER_LEN) };
    ImageHeader::parse(&bytes).unwrap_or_else(|_| {
        let n = |s: &str| s.parse().unwrap_or(0);
        thecal_device::update::unsigned(
            Board::QEMU_MPS2,
            Version {
                major: n(env!("CARGO_PKG_VERSION_MAJOR")),
                minor: n(env!("CARGO_PKG_VERSION_MINOR")),
                patch: n(env!("CARGO_PKG_VERSION_PATCH")),
            },
        )
    })
}

/// The self-test of an image on trial (`Server::self_test`).
fn self_test(server: &mut QemuServer, now: Timestamp, debug: &mut Uart) {
    let outcome = if SELF_TEST_FAILS && server.firmware().boot() == Boot::Trial {
        SelfTest::Failed
    } else {
        server.self_test(now)
    };
    match outcome {
        SelfTest::NotOnTrial => {}
        SelfTest::Confirmed => {
            let _ = writeln!(debug, "new firmware confirmed");
        }
        SelfTest::NotConfirmed => {
            let _ = writeln!(
                debug,
                "could not confirm the new firmware: the next restart rolls back"
            );
        }
        SelfTest::Failed => {
            let _ = writeln!(
                debug,
                "self-test of build {BUILD} failed: back to the previous image"
            );
            restart();
        }
    }
}

/// Mounts the store, resumes the clock, boots the pump and its updater into the static
/// server, makes its static key pair and provisions it. Never inlined: the pump and the
/// server are built on this function's frame (about 25 KB) before they move into the
/// static, and that frame is gone before `main` serves (docs/BENCHMARKS.md, "Stack").
#[inline(never)]
fn boot(debug: &mut Uart) -> (&'static mut QemuServer, Clock) {
    // SAFETY: `boot` runs once (from `main`); each region is lent here only.
    let (store, dfu, state) = unsafe {
        (
            region(layout::STORE, layout::STORE_LEN),
            region(layout::DFU, layout::DFU_LEN),
            region(layout::STATE, layout::STATE_LEN),
        )
    };
    let Ok(mut store) = FlashStore::new(store) else {
        let _ = writeln!(debug, "flash store failed to mount");
        halt()
    };
    let clock = Clock {
        base_ms: thecal_device::store::resume_time(&mut store).0,
    };
    let cause = reset_cause();
    let running = running_header();
    let geometry = Geometry::of(layout::DFU_LEN as usize, layout::PAGE as usize);
    if geometry.map(|g| g.active_bytes()) != Some(layout::ACTIVE_LEN) {
        let _ = writeln!(debug, "the slots of layout.rs do not make the slot layout");
        halt()
    }
    let Some(updater) = Updater::new(dfu, state, TRUSTED_KEY, Board::QEMU_MPS2, running) else {
        let _ = writeln!(
            debug,
            "the update slot or the state partition is unreadable"
        );
        halt()
    };
    let Some(prescription) = thecal_device::pump::demo::demo_prescription() else {
        halt()
    };
    let mut info = thecal_device::pump::demo::device_info("thecal-qemu 20", "QEMU0001");
    info.firmware = running.version;
    let factory = thecal_device::pump::demo::demo_factory(Timestamp(WALL_AT_BOOT), prescription);
    let now = clock.now();
    let pump = Pump::boot(info, factory, store, CountingMotor::default(), now, cause);
    let Some(server) = cortex_m::singleton!(
        : QemuServer = Server::with_firmware(pump, updater, Timestamp(0))
    ) else {
        halt()
    };
    // Makes the static key pair on the first boot (the store starts erased), then
    // provisions by key agreement (a no-op once provisioned).
    server.stir(NO_ENTROPY);
    if !server.pump().is_provisioned() {
        let factory = Ephemeral::from_bytes(DEVELOPMENT_FACTORY_EPHEMERAL);
        let answer = server
            .pump_mut()
            .provision(clock.now(), &factory.public(), false);
        if !matches!(answer, Response::Provisioned { .. }) {
            let _ = writeln!(debug, "cannot provision: {}", answer.name());
        }
    }
    (server, clock)
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Library code has no panics (clippy-enforced); this is the last line of defence.
    halt()
}
