//! Device time: a millisecond UTC clock plus the patient's UTC offset.
//!
//! Schedules are written in the patient's local time (a step "from 22:00" means 22:00
//! where the patient lives), so the device keeps its clock in UTC and a separate offset.
//! Weeks start on Monday, as in ISO 8601.

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::units::{MINUTES_PER_DAY, MS_PER_DAY, MS_PER_MINUTE};

/// Minutes in one week.
pub const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY as u32;

/// A point in time: milliseconds since 1970-01-01T00:00:00Z by the device clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This instant plus `ms`, saturating.
    pub const fn plus_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }
    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Offset of the patient's local time from UTC, in minutes (−14 h ..= +14 h).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UtcOffset(pub i16);

impl UtcOffset {
    /// Largest offset in use anywhere (UTC+14, Kiribati), in minutes.
    pub const MAX_MINUTES: i16 = 14 * 60;

    /// Whether the offset is within ±14 h.
    pub const fn is_valid(self) -> bool {
        self.0 >= -Self::MAX_MINUTES && self.0 <= Self::MAX_MINUTES
    }
}

/// Day of the week; Monday is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    /// All days, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// Day for index `i % 7` (0 = Monday).
    pub const fn from_index(i: u32) -> Self {
        match i % 7 {
            0 => Weekday::Monday,
            1 => Weekday::Tuesday,
            2 => Weekday::Wednesday,
            3 => Weekday::Thursday,
            4 => Weekday::Friday,
            5 => Weekday::Saturday,
            _ => Weekday::Sunday,
        }
    }

    /// 0 for Monday … 6 for Sunday.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// English name.
    pub const fn name(self) -> &'static str {
        match self {
            Weekday::Monday => "Monday",
            Weekday::Tuesday => "Tuesday",
            Weekday::Wednesday => "Wednesday",
            Weekday::Thursday => "Thursday",
            Weekday::Friday => "Friday",
            Weekday::Saturday => "Saturday",
            Weekday::Sunday => "Sunday",
        }
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Minutes since local midnight (0 ..= 1439): the start time of a schedule step.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MinuteOfDay(pub u16);

impl MinuteOfDay {
    /// Midnight.
    pub const MIDNIGHT: Self = Self(0);
    /// `h:m`, without range check (the schedule validator checks the range).
    pub const fn hm(h: u16, m: u16) -> Self {
        Self(h * 60 + m)
    }
}

impl fmt::Display for MinuteOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Local wall-clock position of `t` within the week: `(minute of week, ms into that minute)`.
///
/// 1970-01-01 was a Thursday (index 3). Local time before the epoch (a negative offset
/// applied to a timestamp under 14 h) is clamped to the epoch.
pub fn local_week_position(t: Timestamp, offset: UtcOffset) -> (u32, u64) {
    let shift = i64::from(offset.0) * MS_PER_MINUTE as i64;
    let local_ms = if shift >= 0 {
        t.0.saturating_add(shift.unsigned_abs())
    } else {
        t.0.saturating_sub(shift.unsigned_abs())
    };
    let days = local_ms / MS_PER_DAY;
    let ms_of_day = local_ms % MS_PER_DAY;
    let weekday = ((days + 3) % 7) as u32;
    let minute_of_day = (ms_of_day / MS_PER_MINUTE) as u32;
    (
        weekday * u32::from(MINUTES_PER_DAY) + minute_of_day,
        ms_of_day % MS_PER_MINUTE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_thursday_midnight() {
        assert_eq!(
            local_week_position(Timestamp(0), UtcOffset(0)),
            (3 * 1440, 0)
        );
    }

    #[test]
    fn offset_moves_the_local_day() {
        // 2026-11-23T23:30Z is a Monday; at UTC+1 it is Tuesday 00:30 local.
        let t = Timestamp(1_795_476_600_000);
        assert_eq!(local_week_position(t, UtcOffset(0)).0, 23 * 60 + 30);
        assert_eq!(local_week_position(t, UtcOffset(60)).0, 1440 + 30);
        assert_eq!(local_week_position(t, UtcOffset(-60)).0, 22 * 60 + 30);
    }
}
