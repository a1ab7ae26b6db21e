//! Device timestamps shown as local wall-clock time.
//!
//! The pump keeps UTC plus the patient's UTC offset; schedules run in the patient's
//! local time, so every time is shown in that offset (which is also the clinic's, at the
//! bedside). Human output spells dates out (`Thursday 3 December 2026 at 14:20`); JSON
//! carries RFC 3339 with the offset (`2026-12-03T14:20:00+01:00`).

use jiff::tz::{Offset, TimeZone};
use jiff::Zoned;
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::MS_PER_DAY;

/// `ts` as a zoned time in `offset`; `None` if out of jiff's range.
pub fn zoned(ts: Timestamp, offset: UtcOffset) -> Option<Zoned> {
    let ms = i64::try_from(ts.0).ok()?;
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    let off = Offset::from_seconds(i32::from(offset.0) * 60).ok()?;
    Some(t.to_zoned(TimeZone::fixed(off)))
}

/// `+01:00`, `-05:30`.
pub fn fmt_offset(offset: UtcOffset) -> String {
    let sign = if offset.0 < 0 { '-' } else { '+' };
    let m = offset.0.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// RFC 3339 with the offset, seconds precision: `2026-12-03T14:20:00+01:00`.
pub fn rfc3339(ts: Timestamp, offset: UtcOffset) -> String {
    match zoned(ts, offset) {
        Some(z) => format!("{}{}", z.strftime("%Y-%m-%dT%H:%M:%S"), fmt_offset(offset)),
        None => format!("@{}ms", ts.0),
    }
}

/// Compact local time for tables: `2026-12-03 14:20:05`.
pub fn short(ts: Timestamp, offset: UtcOffset) -> String {
    match zoned(ts, offset) {
        Some(z) => z.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("@{}ms", ts.0),
    }
}

/// A date spelled out: `Thursday 3 December 2026 at 14:20`.
pub fn spelled(ts: Timestamp, offset: UtcOffset) -> String {
    match zoned(ts, offset) {
        Some(z) => z.strftime("%A %-d %B %Y at %H:%M").to_string(),
        None => format!("@{}ms", ts.0),
    }
}

/// How far `then` is from `now`: `in 12 days`, `in 5 h 20 min`, `3 days ago`.
pub fn relative(now: Timestamp, then: Timestamp) -> String {
    let (ms, future) = if then >= now {
        (then.since(now), true)
    } else {
        (now.since(then), false)
    };
    let minutes = ms / 60_000;
    let text = if ms >= 2 * MS_PER_DAY {
        format!("{} days", ms / MS_PER_DAY)
    } else if minutes >= 60 {
        format!("{} h {} min", minutes / 60, minutes % 60)
    } else {
        format!("{minutes} min")
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// The host's clock now, as a device timestamp.
pub fn host_now() -> Timestamp {
    let ms = jiff::Timestamp::now().as_millisecond();
    Timestamp(u64::try_from(ms).unwrap_or(0))
}

/// The host's current UTC offset (system time zone), in whole minutes.
pub fn host_offset() -> UtcOffset {
    let seconds = Zoned::now().offset().seconds();
    UtcOffset(i16::try_from(seconds / 60).unwrap_or(0))
}

/// Parses `+01:00`, `-05:30`, `+1`, `0` (hours, optionally `:MM`) as a UTC offset.
pub fn parse_offset(text: &str) -> Option<UtcOffset> {
    let t = text.trim();
    let t = t.strip_prefix("UTC").unwrap_or(t);
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1i16, t.get(1..)?),
        b'-' => (-1i16, t.get(1..)?),
        _ => (1i16, t),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i16 = h.parse().ok()?;
    let m: i16 = m.parse().ok()?;
    if !(0..60).contains(&m) || h < 0 {
        return None;
    }
    let offset = UtcOffset(sign * (h * 60 + m));
    offset.is_valid().then_some(offset)
}

/// The pump's clock and offset, needed to show any of its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PumpTime {
    /// Pump clock (UTC).
    pub now: Timestamp,
    /// Patient's UTC offset.
    pub offset: UtcOffset,
}

impl PumpTime {
    /// RFC 3339 in the pump's offset.
    pub fn rfc3339(&self, t: Timestamp) -> String {
        rfc3339(t, self.offset)
    }
    /// Optional time as RFC 3339.
    pub fn opt(&self, t: Option<Timestamp>) -> Option<String> {
        t.map(|t| self.rfc3339(t))
    }
    /// A date spelled out with how far away it is: `Thursday 3 December 2026 at 14:20
    /// (in 12 days)`.
    pub fn spelled(&self, t: Timestamp) -> String {
        format!("{} ({})", spelled(t, self.offset), relative(self.now, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23T23:30:00Z, a Monday.
    const T: Timestamp = Timestamp(1_795_476_600_000);

    #[test]
    fn local_time_uses_the_pump_offset() {
        assert_eq!(rfc3339(T, UtcOffset(0)), "2026-11-23T23:30:00+00:00");
        assert_eq!(rfc3339(T, UtcOffset(60)), "2026-11-24T00:30:00+01:00");
        assert_eq!(rfc3339(T, UtcOffset(-330)), "2026-11-23T18:00:00-05:30");
        assert_eq!(
            spelled(T, UtcOffset(60)),
            "Tuesday 24 November 2026 at 00:30"
        );
        assert_eq!(short(T, UtcOffset(0)), "2026-11-23 23:30:00");
    }

    #[test]
    fn relative_times() {
        let day = MS_PER_DAY;
        assert_eq!(relative(T, T.plus_ms(12 * day + 5)), "in 12 days");
        assert_eq!(
            relative(T, T.plus_ms(5 * 3_600_000 + 20 * 60_000)),
            "in 5 h 20 min"
        );
        assert_eq!(relative(T.plus_ms(3 * day), T), "3 days ago");
        assert_eq!(relative(T, T), "in 0 min");
    }

    #[test]
    fn offsets_parse_and_print() {
        assert_eq!(parse_offset("+01:00"), Some(UtcOffset(60)));
        assert_eq!(parse_offset("-05:30"), Some(UtcOffset(-330)));
        assert_eq!(parse_offset("UTC+2"), Some(UtcOffset(120)));
        assert_eq!(parse_offset("0"), Some(UtcOffset(0)));
        assert_eq!(parse_offset("+15:00"), None);
        assert_eq!(parse_offset("+01:75"), None);
        assert_eq!(parse_offset("x"), None);
        assert_eq!(fmt_offset(UtcOffset(-330)), "-05:30");
    }
}
