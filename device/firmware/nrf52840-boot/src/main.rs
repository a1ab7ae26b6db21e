//! thecal's bootloader for the nRF52840: runs embassy-boot's `prepare_boot` (a pending
//! swap, or the rollback of an image that did not confirm itself) and jumps to the
//! active slot.
//!
//! It checks no signature: the application verified the image (Ed25519 over the signed
//! header, SHA-256 of the slot read back) before it marked the update slot, and only the
//! application writes the slots (no raw memory-write command exists; APPROTECT locks the
//! debug port on production parts). Flash operations pet the watchdog it starts, which
//! keeps running in the application: the application must feed it, and confirm a trial
//! image (mark booted) after its self-test; a trial image that hangs is reset by the
//! watchdog and rolled back here.
#![no_std]
#![no_main]

use core::cell::RefCell;

use cortex_m_rt::{entry, exception};
use embassy_boot_nrf::{BootLoader, BootLoaderConfig, WatchdogFlash};
use embassy_nrf::nvmc::Nvmc;
use embassy_nrf::wdt;
use embassy_sync::blocking_mutex::Mutex;

/// Watchdog period, 32 768 Hz ticks: 5 s. The application inherits it.
const WATCHDOG_TICKS: u32 = 5 * 32_768;

#[entry]
fn main() -> ! {
    let p = embassy_nrf::init(Default::default());
    let mut config = wdt::Config::default();
    config.timeout_ticks = WATCHDOG_TICKS;
    config.action_during_sleep = wdt::SleepConfig::Run;
    config.action_during_debug_halt = wdt::HaltConfig::Pause;
    let flash = WatchdogFlash::start(Nvmc::new(p.NVMC), p.WDT, config);
    let flash = Mutex::new(RefCell::new(flash));
    let config = BootLoaderConfig::from_linkerfile_blocking(&flash, &flash, &flash);
    let active = config.active.offset();
    let loader: BootLoader = BootLoader::prepare(config);
    // SAFETY: `active` is the start of the active slot from memory.x, where the
    // application's vector table is linked.
    unsafe { loader.load(active) }
}

#[exception]
unsafe fn HardFault(_: &cortex_m_rt::ExceptionFrame) -> ! {
    cortex_m::peripheral::SCB::sys_reset();
}

#[exception]
unsafe fn DefaultHandler(_: i16) -> ! {
    cortex_m::peripheral::SCB::sys_reset();
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // A bootloader that cannot prepare the boot resets and tries again (a swap resumes).
    cortex_m::peripheral::SCB::sys_reset();
}
