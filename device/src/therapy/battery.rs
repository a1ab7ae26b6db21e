//! Battery model: charge used by the electronics, the motor and telemetry, and the
//! service states a clinician plans around.
//!
//! Remaining days are estimated from the current daily drain (the awake drain plus the
//! strokes the prescription needs per day). ERI (elective replacement) is raised when
//! about [`ERI_DAYS`] of service remain, the critical low-battery alarm at
//! [`LOW_DAYS`], and EOS (end of service, delivery halts) when the usable charge is spent.

use thecal_protocol::message::{BatteryReport, BatteryState};

/// Days of service left at ERI.
pub const ERI_DAYS: u64 = 90;
/// Days of service left at the critical low-battery alarm.
pub const LOW_DAYS: u64 = 30;
/// Terminal voltage at full charge, mV.
pub const FULL_MV: u16 = 3_200;
/// Terminal voltage at end of service, mV.
pub const EOS_MV: u16 = 2_600;

/// Battery parameters (nAh = nanoampere-hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryConfig {
    /// Usable charge.
    pub capacity_nah: u64,
    /// Charge per hour for the electronics.
    pub per_hour_nah: u64,
    /// Charge per motor stroke.
    pub per_stroke_nah: u64,
    /// Charge per telemetry frame (received or sent).
    pub per_frame_nah: u64,
}

impl Default for BatteryConfig {
    /// 1.6 Ah usable; 25 µAh/h awake, 20 nAh per stroke, 500 nAh per frame: about
    /// 7 years at 0.5 mL/day, the service life of a commercial pump.
    fn default() -> Self {
        Self {
            capacity_nah: 1_600_000_000,
            per_hour_nah: 25_000,
            per_stroke_nah: 20,
            per_frame_nah: 500,
        }
    }
}

/// The battery's state of charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Battery {
    config: BatteryConfig,
    used_nah: u64,
    /// Awake time not yet charged, ms (keeps the drain exact across short ticks).
    awake_ms: u64,
}

impl Battery {
    /// A battery with `used_nah` already used.
    pub fn new(config: BatteryConfig, used_nah: u64) -> Self {
        Self {
            config,
            used_nah,
            awake_ms: 0,
        }
    }

    /// Charge used so far.
    pub fn used_nah(&self) -> u64 {
        self.used_nah
    }

    /// Charges `ms` of awake time.
    pub fn drain_awake(&mut self, ms: u64) {
        self.awake_ms = self.awake_ms.saturating_add(ms);
        let hours = self.awake_ms / 3_600_000;
        self.awake_ms %= 3_600_000;
        self.use_nah(hours.saturating_mul(self.config.per_hour_nah));
    }

    /// Charges one motor stroke.
    pub fn drain_stroke(&mut self) {
        self.use_nah(self.config.per_stroke_nah);
    }

    /// Charges one telemetry frame.
    pub fn drain_frame(&mut self) {
        self.use_nah(self.config.per_frame_nah);
    }

    /// Uses `nah` directly (fault injection).
    pub fn use_nah(&mut self, nah: u64) {
        self.used_nah = self.used_nah.saturating_add(nah);
    }

    fn remaining(&self) -> u64 {
        self.config.capacity_nah.saturating_sub(self.used_nah)
    }

    /// Days of service left at `strokes_per_day`, rounded up (a part day counts, so
    /// ERI comes when exactly [`ERI_DAYS`] remain).
    pub fn days_left(&self, strokes_per_day: u64) -> u64 {
        let daily = 24 * self.config.per_hour_nah + strokes_per_day * self.config.per_stroke_nah;
        match daily {
            0 => u64::MAX,
            d => self.remaining().div_ceil(d),
        }
    }

    /// Service state at `strokes_per_day`.
    pub fn state(&self, strokes_per_day: u64) -> BatteryState {
        if self.remaining() == 0 {
            BatteryState::EndOfService
        } else if self.days_left(strokes_per_day) <= ERI_DAYS {
            BatteryState::ElectiveReplacement
        } else {
            BatteryState::Ok
        }
    }

    /// Whether the critical low-battery alarm applies.
    pub fn is_low(&self, strokes_per_day: u64) -> bool {
        self.days_left(strokes_per_day) <= LOW_DAYS
    }

    /// The report at `strokes_per_day`.
    pub fn report(&self, strokes_per_day: u64) -> BatteryReport {
        let cap = self.config.capacity_nah.max(1);
        let percent = (self.remaining().saturating_mul(100) / cap).min(100);
        let span = u64::from(FULL_MV - EOS_MV);
        let mv = u64::from(EOS_MV) + span * self.remaining() / cap;
        let days = self.days_left(strokes_per_day);
        let clamp = |d: u64| u16::try_from(d).unwrap_or(u16::MAX);
        BatteryReport {
            millivolts: clamp(mv),
            percent: percent as u8,
            state: self.state(strokes_per_day),
            days_to_eri: clamp(days.saturating_sub(ERI_DAYS)),
            days_to_eos: clamp(days),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_battery_lasts_about_seven_years() {
        let b = Battery::new(BatteryConfig::default(), 0);
        let days = b.days_left(2_000);
        assert!((2_400..2_800).contains(&days), "{days}");
        assert_eq!(b.report(2_000).percent, 100);
        assert_eq!(b.report(2_000).millivolts, FULL_MV);
    }

    #[test]
    fn states_follow_remaining_days() {
        let c = BatteryConfig::default();
        let daily = 24 * c.per_hour_nah;
        let mut b = Battery::new(c, c.capacity_nah - 91 * daily);
        assert_eq!(b.state(0), BatteryState::Ok);
        b.use_nah(daily);
        assert_eq!(b.state(0), BatteryState::ElectiveReplacement);
        assert!(!b.is_low(0));
        b.use_nah(60 * daily);
        assert!(b.is_low(0));
        b.use_nah(u64::MAX);
        assert_eq!(b.state(0), BatteryState::EndOfService);
        assert_eq!(b.report(0).millivolts, EOS_MV);
    }

    #[test]
    fn awake_drain_is_exact_over_short_ticks() {
        let mut b = Battery::new(BatteryConfig::default(), 0);
        for _ in 0..3_600 {
            b.drain_awake(1_000);
        }
        assert_eq!(b.used_nah(), 25_000);
    }
}
