//! The device clock: the RTC (embassy-time over RTC1, 32 768 Hz from the LFXO) plus the
//! device time the pump had reached before this boot.
//!
//! The pump core needs device time that never runs backwards, not even across resets:
//! its stored snapshot, rolling dose window and patient-bolus history are in device time.
//! A real implant keeps an always-on RTC; the DK's RTC starts from zero at every reset.
//! So device time resumes just after the newest snapshot's `saved_at`. Time spent
//! powered off or in reset is not counted: the pump's wall clock appears to have paused
//! and a programmer sets it again (`thecal clock set`).

use embassy_time::Instant;
use thecal_device::store::Storage;
use thecal_protocol::time::Timestamp;

/// Longest single wait handed to the timer; the core never asks for more than a minute.
const MAX_WAIT_MS: u64 = 60 * 60 * 1_000;

/// Device time = `base` + RTC uptime.
#[derive(Debug, Clone, Copy)]
pub struct DeviceClock {
    base_ms: u64,
}

impl DeviceClock {
    /// Resumes after the device time of the newest stored snapshot (0 on a blank store or
    /// one that cannot be read; the pump then reports the storage fault itself).
    pub fn resume(storage: &mut impl Storage) -> Self {
        let base_ms = thecal_device::store::resume_time(storage).0;
        defmt::info!("device clock resumes at {=u64} ms", base_ms);
        Self { base_ms }
    }

    /// Device time now.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.base_ms.saturating_add(Instant::now().as_millis()))
    }

    /// The RTC instant at device time `t` (capped an hour ahead; now if `t` is past).
    pub fn instant(&self, t: Timestamp) -> Instant {
        let uptime = Instant::now().as_millis();
        let target =
            t.0.saturating_sub(self.base_ms)
                .clamp(uptime, uptime.saturating_add(MAX_WAIT_MS));
        Instant::from_millis(target)
    }
}
