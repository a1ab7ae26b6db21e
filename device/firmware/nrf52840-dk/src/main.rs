//! thecal pump firmware for the Nordic nRF52840-DK.
//!
//! The same `thecal-device` core as the simulator and the QEMU image, with:
//! * USB CDC-ACM on the nRF USB port (J3) as the telemetry link: the board enumerates as
//!   a serial port (`/dev/ttyACM0` on Linux) that `thecal ports` lists ([`usb`]);
//! * the RTC (embassy-time, RTC1 at 32 768 Hz, LFXO) as the device clock ([`clock`]);
//! * the internal flash through the NVMC (`NorFlash`) as the persistent store, in a
//!   linker-reserved region at the top of flash ([`store`]);
//! * LED1 blinking once per motor stroke, LED2 lit while a critical alarm is active, and
//!   Button 1 raising a test alarm (the next stroke stalls), Button 2 the
//!   physical-presence signal (emergency access) ([`board`]);
//! * the RNG peripheral (bias correction on) as the entropy of the pump's X25519 keys:
//!   32 bytes stirred into the server's pool at boot (its first boot also makes the
//!   pump's static key pair from them) and after every handshake that drew from it;
//! * `defmt` logging over RTT (`cargo run` shows it).
//!
//! No heap: no allocator is linked. Everything lives in statics or on the stack; the
//! painted-stack high-water mark is logged as it grows ([`stack`]).
#![no_std]
#![no_main]

mod board;
mod clock;
use thecal_fw_common::stack;
mod store;
#[cfg(feature = "boot")]
mod update;
mod usb;

use defmt::{error, info, warn};
use embassy_executor::Spawner;
use embassy_futures::select::{select, Either};
use embassy_nrf::config::{Config, HfclkSource, LfclkSource};
use embassy_nrf::gpio::{Input, Level, Output, OutputDrive, Pull};
use embassy_nrf::mode::Blocking;
use embassy_nrf::nvmc::Nvmc;
use embassy_nrf::rng::Rng;
use embassy_time::Timer;
use heapless::Vec;
use static_cell::StaticCell;
use thecal_device::link::server::Server;
use thecal_device::pump::Pump;
use thecal_device::store::FlashStore;
use thecal_protocol::frame::MAX_WIRE;
use thecal_protocol::message::{AlarmKind, ResetCause};
use thecal_protocol::time::Timestamp;
use {defmt_rtt as _, panic_probe as _};

use board::LedMotor;
use clock::DeviceClock;

/// Wall clock at device time zero until a programmer sets it: 2026-01-01T00:00:00Z.
const WALL_AT_ZERO: u64 = 1_767_225_600_000;

#[cfg(not(feature = "boot"))]
type PumpServer = Server<FlashStore<Nvmc<'static>>, LedMotor>;
#[cfg(feature = "boot")]
type PumpServer = Server<FlashStore<update::Part>, LedMotor, update::FwUpdater>;

/// Feature `boot`: the bootloader's watchdog (5 s), fed by the serving loop.
#[cfg(feature = "boot")]
type Dog = Option<embassy_nrf::wdt::WatchdogHandle>;
#[cfg(not(feature = "boot"))]
type Dog = ();

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    stack::paint();
    let mut config = Config::default();
    // USB needs the 32 MHz crystal; the RTC runs from the 32.768 kHz crystal (both on
    // the DK).
    config.hfclk_source = HfclkSource::ExternalXtal;
    config.lfclk_source = LfclkSource::ExternalXtal;
    let p = embassy_nrf::init(config);

    let serial = store::serial_number();
    info!("thecal nRF52840-DK {=str} booting", serial.as_str());
    let (server, clock, now) = boot(Nvmc::new(p.NVMC), serial.as_str());
    #[cfg(feature = "boot")]
    let dog: Dog = {
        use embassy_nrf::wdt;
        // Running only when the bootloader started it; then it cannot be stopped.
        wdt::Config::try_new(&p.WDT)
            .and_then(|config| wdt::Watchdog::try_new::<_, 1>(p.WDT, config).ok())
            .map(|(_, [handle])| handle)
    };
    #[cfg(not(feature = "boot"))]
    let dog: Dog = ();
    #[cfg(feature = "boot")]
    self_test(server, now);
    let mut rng = Rng::new_blocking(p.RNG);
    // Bias correction, as the nRF52840 product specification asks for key material.
    rng.set_bias_correction(true);
    stir(server, &mut rng);
    if server.pump().public_key().is_none() {
        warn!("no static key pair: the secrets could not be stored");
    }
    info!(
        "pump up at device time {=u64} ms, prescription revision {=u32}",
        now.0,
        server.pump().record().revision.0
    );

    let led_stroke = Output::new(p.P0_13, Level::High, OutputDrive::Standard);
    let led_alarm = Output::new(p.P0_14, Level::High, OutputDrive::Standard);
    let button = Input::new(p.P0_11, Pull::Up);
    let button2 = Input::new(p.P0_12, Pull::Up);
    let (device, class) = usb::build(p.USBD, serial);

    match usb::run(device) {
        Ok(token) => spawner.spawn(token),
        Err(_) => halt("USB task already running"),
    }
    match board::stroke_led(led_stroke) {
        Ok(token) => spawner.spawn(token),
        Err(_) => halt("LED task already running"),
    }
    match board::test_alarm_button(button) {
        Ok(token) => spawner.spawn(token),
        Err(_) => halt("button task already running"),
    }
    match board::presence_button(button2) {
        Ok(token) => spawner.spawn(token),
        Err(_) => halt("presence task already running"),
    }
    serve(server, class, clock, led_alarm, rng, dog).await
}

/// Feature `boot`: the self-test of an image on trial after a swap
/// ([`Server::self_test`]): on success it confirms itself and the bootloader keeps it;
/// on failure restart without confirming, and the bootloader swaps the previous image
/// back (a hang instead is ended by the watchdog, with the same result).
#[cfg(feature = "boot")]
fn self_test(server: &mut PumpServer, now: Timestamp) {
    use thecal_device::link::server::SelfTest;
    match server.self_test(now) {
        SelfTest::NotOnTrial => {}
        SelfTest::Confirmed => info!("new firmware confirmed"),
        SelfTest::NotConfirmed => {
            warn!("could not confirm the new firmware: the next restart rolls back")
        }
        SelfTest::Failed => {
            error!("self-test failed (storage fault): back to the previous image");
            cortex_m::peripheral::SCB::sys_reset();
        }
    }
}

/// Mounts the store, resumes the clock and boots the pump into its static server (at the
/// device time returned with it).
/// Never inlined: the pump and the server are built on this function's stack frame
/// before they move into the static, and that frame is gone before the main task
/// serves (docs/BENCHMARKS.md, "Stack").
#[inline(never)]
fn boot(nvmc: Nvmc<'static>, serial: &str) -> (&'static mut PumpServer, DeviceClock, Timestamp) {
    #[cfg(feature = "boot")]
    let flash = update::share(nvmc);
    #[cfg(feature = "boot")]
    let Some(mut flash_store) = store::open_shared(flash) else {
        halt("the flash store region does not match the store layout");
    };
    #[cfg(not(feature = "boot"))]
    let Some(mut flash_store) = store::open(nvmc) else {
        halt("the flash store region does not match the store layout");
    };
    let clock = DeviceClock::resume(&mut flash_store);
    let Some(prescription) = thecal_device::pump::demo::demo_prescription() else {
        halt("the demo prescription does not validate");
    };
    let info = thecal_device::pump::demo::device_info("thecal-dk 20", serial);
    let factory = thecal_device::pump::demo::demo_factory(Timestamp(WALL_AT_ZERO), prescription);
    let now = clock.now();
    let pump = Pump::boot(
        info,
        factory,
        flash_store,
        LedMotor::default(),
        now,
        reset_cause(),
    );
    static SERVER: StaticCell<PumpServer> = StaticCell::new();
    #[cfg(feature = "boot")]
    let server = {
        let Some(updater) = update::updater(flash) else {
            halt("the bootloader partitions do not make the slot layout");
        };
        info!(
            "firmware {=u8}.{=u8}.{=u8}, security {=u32}",
            updater.running().version.major,
            updater.running().version.minor,
            updater.running().version.patch,
            updater.running().security
        );
        SERVER.init(Server::with_firmware(pump, updater, Timestamp(0)))
    };
    #[cfg(not(feature = "boot"))]
    let server = SERVER.init(Server::new(pump));
    (server, clock, now)
}

/// 32 bytes of the RNG into the server's entropy pool.
fn stir(server: &mut PumpServer, rng: &mut Rng<'static, Blocking>) {
    let mut entropy = [0u8; 32];
    rng.blocking_fill_bytes(&mut entropy);
    server.stir(&entropy);
}

/// Serves the pump: ticks it on time, answers whatever the programmer sends, whether or
/// not a programmer is connected (therapy never waits for the link).
async fn serve(
    server: &'static mut PumpServer,
    mut class: usb::Class,
    clock: DeviceClock,
    mut led_alarm: Output<'static>,
    mut rng: Rng<'static, Blocking>,
    #[allow(unused_mut, unused_variables)] mut dog: Dog,
) -> ! {
    let mut connected = false;
    let mut packet = [0u8; usb::PACKET];
    let mut deepest = 0;
    loop {
        let now = clock.now();
        if now >= server.next_wake() {
            server.tick(now);
        }
        presence(server, now);
        show_alarm(server, &mut led_alarm);
        // A verified image waits and no bolus runs (checked every turn: a bolus may end
        // long after the programmer left): restart into it. The bootloader swaps; the
        // store keeps the therapy.
        #[cfg(feature = "boot")]
        if server.restart_due(now) {
            info!("restarting into the new firmware");
            // Let the answer to UpdateFinish leave over USB first.
            Timer::after_millis(50).await;
            cortex_m::peripheral::SCB::sys_reset();
        }
        #[cfg(feature = "boot")]
        if let Some(handle) = dog.as_mut() {
            handle.pet();
        }
        // Under the bootloader's watchdog, wake at least once a second to feed it.
        #[cfg(feature = "boot")]
        let wake = Timer::at(
            clock
                .instant(server.next_wake())
                .min(embassy_time::Instant::now() + embassy_time::Duration::from_secs(1)),
        );
        #[cfg(not(feature = "boot"))]
        let wake = Timer::at(clock.instant(server.next_wake()));
        if !connected {
            if let Either::First(()) = select(class.wait_connection(), wake).await {
                info!("programmer connected");
                connected = true;
            }
            continue;
        }
        match select(class.read_packet(&mut packet), wake).await {
            Either::First(Ok(n)) => {
                let bytes = packet.get(..n).unwrap_or_default();
                if answer(server, &mut class, &clock, bytes).await.is_err() {
                    info!("programmer disconnected");
                    connected = false;
                }
                if server.wants_entropy() {
                    stir(server, &mut rng);
                }
                let hw = stack::high_water();
                if hw > deepest {
                    deepest = hw;
                    info!("serving stack high-water {=usize} B", hw);
                }
            }
            Either::First(Err(_)) => {
                info!("programmer disconnected");
                connected = false;
            }
            Either::Second(()) => {}
        }
    }
}

/// Feeds `bytes` to the server one at a time, so each call yields at most one answer
/// frame (at most [`MAX_WIRE`] bytes), and sends every answer before the next byte.
async fn answer(
    server: &mut PumpServer,
    class: &mut usb::Class,
    clock: &DeviceClock,
    bytes: &[u8],
) -> Result<(), usb::Disconnected> {
    let mut out: Vec<u8, MAX_WIRE> = Vec::new();
    presence(server, clock.now());
    for byte in bytes {
        server.receive(clock.now(), core::slice::from_ref(byte), &mut |frame| {
            if out.extend_from_slice(frame).is_err() {
                // Cannot happen (one frame per byte fed); the programmer would retry.
                warn!("answer frame larger than MAX_WIRE dropped");
            }
        });
        if !out.is_empty() {
            usb::write(class, &out).await?;
            out.clear();
        }
    }
    Ok(())
}

/// Applies a Button 2 press, and ends what ran out (an idle session, the presence
/// window). The link clock is the device clock.
fn presence(server: &mut PumpServer, now: Timestamp) {
    if board::take_presence() {
        server.apply_presence(now, now);
    }
    server.poll(now, now);
}

/// LED2 (active low) is lit while any critical alarm is active.
fn show_alarm(server: &PumpServer, led: &mut Output<'static>) {
    let pump = server.pump();
    let critical = AlarmKind::ALL
        .iter()
        .any(|&kind| kind.is_critical() && pump.alarm_active(kind));
    led.set_level(if critical { Level::Low } else { Level::High });
}

/// Why the chip reset, from POWER.RESETREAS (cleared after reading).
fn reset_cause() -> ResetCause {
    const RESETREAS: *mut u32 = 0x4000_0400 as *mut u32;
    // SAFETY: POWER.RESETREAS of the nRF52840; reading and clearing it has no other
    // effect.
    let reason = unsafe { core::ptr::read_volatile(RESETREAS) };
    // SAFETY: as above; bits are cleared by writing 1.
    unsafe { core::ptr::write_volatile(RESETREAS, reason) };
    const DOG: u32 = 1 << 1;
    const SREQ_OR_LOCKUP: u32 = (1 << 2) | (1 << 3);
    match reason {
        0 => ResetCause::PowerOn,
        r if r & DOG != 0 => ResetCause::Watchdog,
        r if r & SREQ_OR_LOCKUP != 0 => ResetCause::Software,
        // Reset pin, wake from System OFF, VBUS, ...
        _ => ResetCause::Unknown,
    }
}

/// Logs why the firmware cannot run and parks the CPU (LEDs off: nothing is delivered).
fn halt(why: &str) -> ! {
    error!("halted: {=str}", why);
    loop {
        cortex_m::asm::wfi();
    }
}
