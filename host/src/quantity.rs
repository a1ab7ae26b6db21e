//! Quantities as clinicians write them (`"0.5 µg/day"`, `"25 mg/mL"`, `"2 mL"`) parsed
//! exactly into the protocol's integer units, and formatted back.
//!
//! Parsing never goes through floating point: the number is read as a decimal string
//! (`digits[.digits]`), scaled by the unit's factor in integer arithmetic, and refused if
//! the result is not a whole number of the base unit or does not fit. So `"0.5 µg"` is
//! exactly 500 ng and `"0.0005 µg"` is an error, not a rounded 0 or 1 ng.

use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
};

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantityError {
    /// No number, or not `digits[.digits]`.
    #[error("`{0}` is not a number followed by a unit (e.g. `2.5 mg/day`)")]
    NotANumber(String),
    /// The unit is not one this quantity accepts.
    #[error("unknown unit `{unit}`; use {expected}")]
    Unit {
        /// What was written.
        unit: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// More decimals than the base unit resolves.
    #[error("`{0}` is finer than the pump's resolution ({1})")]
    TooPrecise(String, &'static str),
    /// Larger than the protocol field holds.
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// A unit: its spellings and its size in the base unit.
struct Unit {
    names: &'static [&'static str],
    factor: u64,
}

/// Dose-rate units (base: ng/day).
const DOSE_RATE: &[Unit] = &[
    Unit {
        names: &["µg/day", "μg/day", "ug/day", "mcg/day"],
        factor: 1_000,
    },
    Unit {
        names: &["mg/day"],
        factor: 1_000_000,
    },
];
/// Concentration units (base: ng/mL).
const CONCENTRATION: &[Unit] = &[
    Unit {
        names: &["µg/mL", "μg/mL", "ug/mL", "mcg/mL"],
        factor: 1_000,
    },
    Unit {
        names: &["mg/mL"],
        factor: 1_000_000,
    },
];
/// Dose units (base: ng).
const DOSE: &[Unit] = &[
    Unit {
        names: &["µg", "μg", "ug", "mcg"],
        factor: 1_000,
    },
    Unit {
        names: &["mg"],
        factor: 1_000_000,
    },
];
/// Volume units (base: nL).
const VOLUME: &[Unit] = &[
    Unit {
        names: &["mL"],
        factor: 1_000_000,
    },
    Unit {
        names: &["µL", "μL", "uL"],
        factor: 1_000,
    },
];
/// Duration units (base: min).
const DURATION: &[Unit] = &[
    Unit {
        names: &["min"],
        factor: 1,
    },
    Unit {
        names: &["h"],
        factor: 60,
    },
];

/// Parses an unsigned decimal `digits[.digits]` as `(value, decimals)`.
fn decimal(number: &str) -> Option<(u128, u32)> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(frac) || whole.len() + frac.len() > 30 {
        return None;
    }
    let mut value: u128 = 0;
    for b in whole.bytes().chain(frac.bytes()) {
        value = value * 10 + u128::from(b - b'0');
    }
    Some((value, frac.len() as u32))
}

/// Parses `"<decimal> <unit>"` into base units.
fn parse(
    text: &str,
    units: &[Unit],
    expected: &'static str,
    base: &'static str,
) -> Result<u64, QuantityError> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let (value, decimals) =
        decimal(number).ok_or_else(|| QuantityError::NotANumber(text.to_string()))?;
    let unit = unit.trim();
    let factor = units
        .iter()
        .find(|u| u.names.iter().any(|n| n.eq_ignore_ascii_case(unit)))
        .map(|u| u.factor)
        .ok_or_else(|| QuantityError::Unit {
            unit: unit.to_string(),
            expected,
        })?;
    let scaled = value * u128::from(factor);
    let divisor = 10u128.pow(decimals);
    if scaled % divisor != 0 {
        return Err(QuantityError::TooPrecise(text.to_string(), base));
    }
    u64::try_from(scaled / divisor).map_err(|_| QuantityError::TooLarge(text.to_string()))
}

fn narrow(value: u64, text: &str) -> Result<u32, QuantityError> {
    u32::try_from(value).map_err(|_| QuantityError::TooLarge(text.to_string()))
}

/// `"2.4 mg/day"`, `"0.5 µg/day"` (also `ug/day`, `mcg/day`).
pub fn parse_dose_rate(text: &str) -> Result<NanogramsPerDay, QuantityError> {
    let v = parse(text, DOSE_RATE, "µg/day or mg/day", "1 ng/day")?;
    narrow(v, text).map(NanogramsPerDay)
}

/// `"25 mg/mL"`, `"100 µg/mL"`.
pub fn parse_concentration(text: &str) -> Result<NanogramsPerMillilitre, QuantityError> {
    let v = parse(text, CONCENTRATION, "µg/mL or mg/mL", "1 ng/mL")?;
    narrow(v, text).map(NanogramsPerMillilitre)
}

/// `"50 µg"`, `"0.1 mg"`.
pub fn parse_dose(text: &str) -> Result<Nanograms, QuantityError> {
    let v = parse(text, DOSE, "µg or mg", "1 ng")?;
    narrow(v, text).map(Nanograms)
}

/// `"2 mL"`, `"250 µL"`.
pub fn parse_volume(text: &str) -> Result<Nanolitres, QuantityError> {
    let v = parse(text, VOLUME, "mL or µL", "1 nL")?;
    narrow(v, text).map(Nanolitres)
}

/// `"30 min"`, `"2 h"`, `"1.5 h"`.
pub fn parse_duration(text: &str) -> Result<Minutes, QuantityError> {
    let v = parse(text, DURATION, "min or h", "1 min")?;
    u16::try_from(v)
        .map(Minutes)
        .map_err(|_| QuantityError::TooLarge(text.to_string()))
}

/// `value / 10^scale` with trailing zeros trimmed.
pub fn scaled(value: u64, scale: u32) -> String {
    let div = 10u64.pow(scale);
    let (whole, mut frac) = (value / div, value % div);
    if frac == 0 {
        return whole.to_string();
    }
    let mut digits = scale as usize;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    format!("{whole}.{frac:0digits$}")
}

/// Micrograms below 1 mg, milligrams from 1 mg: `"0.5 µg"`, `"2.4 mg"`.
fn mass(ng: u64, suffix: &str) -> String {
    if ng >= 1_000_000 {
        format!("{} mg{suffix}", scaled(ng, 6))
    } else {
        format!("{} µg{suffix}", scaled(ng, 3))
    }
}

/// A dose rate as a clinician reads it: `"2.4 mg/day"`, `"0.5 µg/day"`.
pub fn dose_rate(d: NanogramsPerDay) -> String {
    mass(d.0.into(), "/day")
}

/// A dose: `"50 µg"`, `"1.2 mg"`.
pub fn dose(d: Nanograms) -> String {
    mass(d.0.into(), "")
}

/// A concentration: `"25 mg/mL"`, `"100 µg/mL"`.
pub fn concentration(c: NanogramsPerMillilitre) -> String {
    mass(c.0.into(), "/mL")
}

/// A volume in mL: `"18.5 mL"`.
pub fn volume(v: Nanolitres) -> String {
    format!("{} mL", scaled(v.0.into(), 6))
}

/// A flow in mL/day: `"0.048 mL/day"`.
pub fn flow(f: NanolitresPerDay) -> String {
    format!("{} mL/day", scaled(f.0.into(), 6))
}

/// A duration: `"45 min"`, `"2 h"`, `"1 h 30 min"`.
pub fn duration(m: Minutes) -> String {
    match (m.0 / 60, m.0 % 60) {
        (0, min) => format!("{min} min"),
        (h, 0) => format!("{h} h"),
        (h, min) => format!("{h} h {min} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_dose_rate("0.5 µg/day"), Ok(NanogramsPerDay(500)));
        assert_eq!(parse_dose_rate("0.5ug/day"), Ok(NanogramsPerDay(500)));
        assert_eq!(
            parse_dose_rate("2.4 mg/day"),
            Ok(NanogramsPerDay(2_400_000))
        );
        assert_eq!(parse_dose_rate("19.2 mcg/day"), Ok(NanogramsPerDay(19_200)));
        assert_eq!(parse_dose_rate(".75 mg/day"), Ok(NanogramsPerDay(750_000)));
        assert_eq!(parse_dose_rate("3. mg/day"), Ok(NanogramsPerDay(3_000_000)));
        // 0.1 + 0.2 style traps do not exist here.
        assert_eq!(parse_dose("0.3 mg"), Ok(Nanograms(300_000)));
        assert_eq!(
            parse_concentration("25 mg/mL"),
            Ok(NanogramsPerMillilitre(25_000_000))
        );
        assert_eq!(parse_volume("2 mL"), Ok(Nanolitres(2_000_000)));
        assert_eq!(parse_volume("0.000001 mL"), Ok(Nanolitres(1)));
        assert_eq!(parse_volume("250 µL"), Ok(Nanolitres(250_000)));
        assert_eq!(parse_duration("1.5 h"), Ok(Minutes(90)));
        assert_eq!(parse_duration("10 min"), Ok(Minutes(10)));
    }

    #[test]
    fn finer_than_resolution_is_refused_not_rounded() {
        assert_eq!(
            parse_dose_rate("0.0005 µg/day"),
            Err(QuantityError::TooPrecise(
                "0.0005 µg/day".into(),
                "1 ng/day"
            ))
        );
        assert!(matches!(
            parse_volume("0.0000001 mL"),
            Err(QuantityError::TooPrecise(..))
        ));
        assert!(matches!(
            parse_duration("1.01 h"),
            Err(QuantityError::TooPrecise(..))
        ));
        // Trailing zeros beyond the resolution are fine.
        assert_eq!(parse_dose("1.5000000 µg"), Ok(Nanograms(1_500)));
    }

    #[test]
    fn bad_numbers_units_and_overflow() {
        for bad in ["", "mg/day", "-1 mg/day", "1.2.3 mg/day", ". mg/day"] {
            assert!(
                matches!(parse_dose_rate(bad), Err(QuantityError::NotANumber(_))),
                "{bad}"
            );
        }
        assert!(parse_dose_rate("1e3 mg/day").is_err());
        assert_eq!(
            parse_dose_rate("3 mg/h"),
            Err(QuantityError::Unit {
                unit: "mg/h".into(),
                expected: "µg/day or mg/day"
            })
        );
        assert!(matches!(
            parse_dose_rate("3 mg"),
            Err(QuantityError::Unit { .. })
        ));
        assert!(matches!(
            parse_dose_rate("5000 mg/day"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            parse_dose_rate("99999999999999999999999999 mg/day"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            parse_duration("2000 h"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn formatting_round_trips() {
        for (text, ng) in [
            ("0.5 µg/day", 500),
            ("2.4 mg/day", 2_400_000),
            ("999.999 µg/day", 999_999),
            ("1 mg/day", 1_000_000),
        ] {
            assert_eq!(dose_rate(NanogramsPerDay(ng)), text);
            assert_eq!(parse_dose_rate(text), Ok(NanogramsPerDay(ng)));
        }
        assert_eq!(volume(Nanolitres(19_500_000)), "19.5 mL");
        assert_eq!(flow(NanolitresPerDay(48_000)), "0.048 mL/day");
        assert_eq!(duration(Minutes(90)), "1 h 30 min");
        assert_eq!(duration(Minutes(120)), "2 h");
        assert_eq!(duration(Minutes(45)), "45 min");
        assert_eq!(concentration(NanogramsPerMillilitre(25_000)), "25 µg/mL");
    }
}
