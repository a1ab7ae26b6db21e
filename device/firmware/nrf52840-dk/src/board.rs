//! The DK's LEDs and buttons standing in for the pump mechanism.
//!
//! * [`LedMotor`]: the pump core's [`Motor`]; every stroke blinks LED1 (P0.13).
//! * Button 1 (P0.11) raises a test alarm without any change to the pump core: the next
//!   motor stroke after a press reports a stall, so the core raises its critical
//!   `MotorStall` alarm and halts delivery exactly as it would for a real occlusion.
//!   With the demo prescription a stroke falls due about once a minute, so the alarm
//!   appears (LED2 lights, `thecal alarms` lists it) within about a minute of the press.
//!   `thecal resume` clears it: the core retries the motor on a clinician's resume.
//! * Button 2 (P0.12) is the physical-presence signal, standing in for the magnet a
//!   clinician or carer holds over a real implant: each press opens emergency access
//!   (`thecal --role emergency status|alarms|stop`, no key file) and a presence energy
//!   budget for five minutes ([`take_presence`]).
//!
//! The DK's LEDs and buttons are active low.

use core::sync::atomic::{AtomicBool, Ordering};

use defmt::{info, warn};
use embassy_nrf::gpio::{Input, Output};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::Timer;
use thecal_device::therapy::motor::{Motor, MotorStall};

/// A stroke happened: blink LED1.
static STROKE: Signal<CriticalSectionRawMutex, ()> = Signal::new();
/// Button 1 was pressed: the next stroke stalls.
static STALL_NEXT: AtomicBool = AtomicBool::new(false);

/// Button 2 was pressed: apply the physical-presence signal.
static PRESENCE: AtomicBool = AtomicBool::new(false);

/// Whether Button 2 was pressed since the last call.
pub fn take_presence() -> bool {
    PRESENCE.swap(false, Ordering::Relaxed)
}

/// How long LED1 stays lit per stroke.
const BLINK_MS: u64 = 60;
/// Contact bounce of the DK's buttons is over well within this.
const DEBOUNCE_MS: u64 = 30;

/// The pump motor on the DK: counts strokes and blinks LED1 for each.
#[derive(Debug, Default)]
pub struct LedMotor {
    /// Strokes performed since boot.
    pub strokes: u64,
}

impl Motor for LedMotor {
    fn stroke(&mut self) -> Result<(), MotorStall> {
        if STALL_NEXT.swap(false, Ordering::Relaxed) {
            warn!("test alarm: motor stroke {=u64} stalls", self.strokes + 1);
            return Err(MotorStall);
        }
        self.strokes += 1;
        STROKE.signal(());
        Ok(())
    }
}

/// Blinks LED1 once per stroke (strokes closer together than a blink merge into one).
#[embassy_executor::task]
pub async fn stroke_led(mut led: Output<'static>) {
    loop {
        STROKE.wait().await;
        led.set_low();
        Timer::after_millis(BLINK_MS).await;
        led.set_high();
    }
}

/// Button 1 arms a stall of the next stroke.
#[embassy_executor::task]
pub async fn test_alarm_button(mut button: Input<'static>) {
    on_press(&mut button, || {
        info!("button 1: test alarm armed (the next stroke stalls)");
        STALL_NEXT.store(true, Ordering::Relaxed);
    })
    .await
}

/// Button 2 applies the physical-presence signal (the magnet of a real implant).
#[embassy_executor::task]
pub async fn presence_button(mut button: Input<'static>) {
    on_press(&mut button, || {
        info!("button 2: physical presence (emergency access for 5 minutes)");
        PRESENCE.store(true, Ordering::Relaxed);
    })
    .await
}

/// Calls `pressed` once per debounced press of `button` (active low), forever.
async fn on_press(button: &mut Input<'static>, mut pressed: impl FnMut()) -> ! {
    loop {
        button.wait_for_falling_edge().await;
        Timer::after_millis(DEBOUNCE_MS).await;
        if button.is_low() {
            pressed();
        }
        button.wait_for_high().await;
        Timer::after_millis(DEBOUNCE_MS).await;
    }
}
