//! thecal pump firmware for QEMU's mps2-an385 board (Cortex-M3).
//!
//! The same `thecal-device` core as the simulator and the board, with:
//! * the CMSDK UART0 as the telemetry link (`-serial pty` on the QEMU command line),
//! * SysTick at 1 kHz as the device clock,
//! * a RAM-backed NOR flash (`RamFlash`, real NOR semantics; lost at power-off),
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
mod uart;

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use thecal_device::link::server::Server;
use thecal_device::pump::Pump;
use thecal_device::store::flash::RamFlash;
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::therapy::motor::CountingMotor;
use thecal_protocol::message::ResetCause;
use thecal_protocol::session::Ephemeral;
use thecal_protocol::time::Timestamp;
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

static MS_LOW: AtomicU32 = AtomicU32::new(0);
static MS_HIGH: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    if MS_LOW.fetch_add(1, Ordering::Relaxed) == u32::MAX {
        MS_HIGH.fetch_add(1, Ordering::Relaxed);
    }
}

/// Device time: milliseconds since boot.
fn now() -> Timestamp {
    loop {
        let high = MS_HIGH.load(Ordering::Relaxed);
        let low = MS_LOW.load(Ordering::Relaxed);
        if MS_HIGH.load(Ordering::Relaxed) == high {
            return Timestamp((u64::from(high) << 32) | u64::from(low));
        }
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
    let server = boot(&mut debug);
    let boot_stack = stack::high_water();
    stack::paint();
    let _ = writeln!(
        debug,
        "thecal-qemu up; boot stack high-water {boot_stack} B"
    );
    let mut reported = 0;
    let mut rx = [0u8; 64];
    loop {
        let t = now();
        if t >= server.next_wake() {
            server.tick(t);
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

type QemuServer = Server<FlashStore<&'static mut RamFlash<FLASH_SIZE>>, CountingMotor>;

/// Mounts the store, boots the pump into its static server, makes its static key pair
/// and provisions it. Never inlined: the pump and the server are built on this
/// function's frame (about 25 KB) before they move into the static, and that frame is
/// gone before `main` serves (docs/BENCHMARKS.md, "Stack").
#[inline(never)]
fn boot(debug: &mut Uart) -> &'static mut QemuServer {
    // Const-initialised (erased) in .data: building it at run time would put all of it
    // on the stack first. Taken exactly once, here.
    static mut FLASH: RamFlash<FLASH_SIZE> = RamFlash::new();
    // SAFETY: `boot` runs once (from `main`) and nothing else names FLASH.
    let flash: &'static mut RamFlash<FLASH_SIZE> = unsafe { &mut *core::ptr::addr_of_mut!(FLASH) };
    let Ok(store) = FlashStore::new(flash) else {
        let _ = writeln!(debug, "flash store failed to mount");
        halt()
    };
    let Some(prescription) = thecal_device::pump::demo::demo_prescription() else {
        halt()
    };
    let info = thecal_device::pump::demo::device_info("thecal-qemu 20", "QEMU0001");
    let factory = thecal_device::pump::demo::demo_factory(Timestamp(WALL_AT_BOOT), prescription);
    let pump = Pump::boot(
        info,
        factory,
        store,
        CountingMotor::default(),
        now(),
        ResetCause::PowerOn,
    );
    let Some(server) = cortex_m::singleton!(: QemuServer = Server::new(pump)) else {
        halt()
    };
    // Makes the static key pair on the first boot (the RAM flash starts erased at every
    // boot), then provisions by key agreement (a no-op once provisioned).
    server.stir(NO_ENTROPY);
    if !server.pump().is_provisioned() {
        let factory = Ephemeral::from_bytes(DEVELOPMENT_FACTORY_EPHEMERAL);
        let answer = server.pump_mut().provision(now(), &factory.public(), false);
        if !matches!(answer, Response::Provisioned { .. }) {
            let _ = writeln!(debug, "cannot provision: {}", answer.name());
        }
    }
    server
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
