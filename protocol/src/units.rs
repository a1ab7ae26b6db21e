//! Fixed-point units. No floating point anywhere in thecal.
//!
//! Every quantity is an integer newtype in the smallest unit the product needs:
//!
//! | type | unit | resolution | range |
//! |---|---|---|---|
//! | [`Nanolitres`] | nL (10⁻⁶ mL) | 1 nL | 0 ..= 4 294.967 295 mL |
//! | [`Nanograms`] | ng (10⁻³ µg) | 1 ng | 0 ..= 4.294 967 295 g |
//! | [`NanogramsPerDay`] | ng/day | 1 ng/day | 0 ..= 4.29 g/day |
//! | [`NanolitresPerDay`] | nL/day | 1 nL/day | 0 ..= 4 294 mL/day |
//! | [`NanogramsPerMillilitre`] | ng/mL (= µg/L) | 1 ng/mL | 0 ..= 4.29 g/mL |
//! | [`Minutes`] | min | 1 min | 0 ..= 45.5 days |
//!
//! Why these resolutions: ziconotide is started at 0.5–1.2 µg/day and titrated in
//! steps of 0.5 µg/day or less (500 ng/day: 1 ng/day resolution is 500× finer); the lowest
//! commercial flow rate is 0.048 mL/day (48 000 nL/day); a 40 mL reservoir is 4·10⁷ nL.
//!
//! ## Rounding rules
//!
//! Conversions between dose and volume go through the drug concentration and are computed
//! exactly in 64-bit integers, then **rounded down** (towards less drug):
//!
//! * dose → volume: `nL = floor(ng × 10⁶ / (ng/mL))`
//! * volume → dose: `ng = floor(nL × (ng/mL) / 10⁶)`
//! * dose rate → volume rate: `nL/day = floor(ng/day × 10⁶ / (ng/mL))`
//!
//! Rounding down means the pump never delivers more than prescribed because of its own
//! arithmetic; the error of one conversion is below 1 nL (or 1 ng), far below any
//! clinically meaningful amount and below one motor stroke. A conversion whose exact
//! result does not fit the target type returns `None`; it never wraps.

use core::fmt;
use serde::{Deserialize, Serialize};

/// Nanolitres per millilitre.
pub const NL_PER_ML: u64 = 1_000_000;
/// Minutes in one day.
pub const MINUTES_PER_DAY: u16 = 1_440;
/// Milliseconds in one minute.
pub const MS_PER_MINUTE: u64 = 60_000;
/// Milliseconds in one day.
pub const MS_PER_DAY: u64 = 86_400_000;

macro_rules! unit {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// Zero of this unit.
            pub const ZERO: Self = Self(0);
            /// Sum, or `None` on overflow.
            pub const fn checked_add(self, rhs: Self) -> Option<Self> {
                match self.0.checked_add(rhs.0) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// Difference clamped at zero.
            pub const fn saturating_sub(self, rhs: Self) -> Self {
                Self(self.0.saturating_sub(rhs.0))
            }
            /// Sum clamped at the maximum.
            pub const fn saturating_add(self, rhs: Self) -> Self {
                Self(self.0.saturating_add(rhs.0))
            }
        }
    };
}

unit!(
    /// A volume of liquid, in nanolitres.
    Nanolitres(u32)
);
unit!(
    /// A mass of drug, in nanograms.
    Nanograms(u32)
);
unit!(
    /// A dose rate, in nanograms per day (24 h).
    NanogramsPerDay(u32)
);
unit!(
    /// A flow rate, in nanolitres per day (24 h).
    NanolitresPerDay(u32)
);
unit!(
    /// A drug concentration, in nanograms per millilitre.
    NanogramsPerMillilitre(u32)
);
unit!(
    /// A duration in whole minutes.
    Minutes(u16)
);

impl Nanolitres {
    /// `mL` whole millilitres.
    pub const fn from_ml(ml: u32) -> Self {
        Self(ml.saturating_mul(1_000_000))
    }
    /// `ul` microlitres.
    pub const fn from_ul(ul: u32) -> Self {
        Self(ul.saturating_mul(1_000))
    }
    /// Drug mass contained in this volume at `c`, rounded down.
    pub fn to_dose(self, c: NanogramsPerMillilitre) -> Option<Nanograms> {
        let ng = u64::from(self.0).checked_mul(u64::from(c.0))? / NL_PER_ML;
        u32::try_from(ng).ok().map(Nanograms)
    }
}

impl Nanograms {
    /// `ug` whole micrograms.
    pub const fn from_ug(ug: u32) -> Self {
        Self(ug.saturating_mul(1_000))
    }
    /// `mg` whole milligrams.
    pub const fn from_mg(mg: u32) -> Self {
        Self(mg.saturating_mul(1_000_000))
    }
    /// Volume holding this dose at `c`, rounded down. `None` for a zero concentration or
    /// a volume that does not fit.
    pub fn to_volume(self, c: NanogramsPerMillilitre) -> Option<Nanolitres> {
        if c.0 == 0 {
            return None;
        }
        let nl = u64::from(self.0).checked_mul(NL_PER_ML)? / u64::from(c.0);
        u32::try_from(nl).ok().map(Nanolitres)
    }
}

impl NanogramsPerDay {
    /// `ug` whole micrograms per day.
    pub const fn from_ug(ug: u32) -> Self {
        Self(ug.saturating_mul(1_000))
    }
    /// `mg` whole milligrams per day.
    pub const fn from_mg(mg: u32) -> Self {
        Self(mg.saturating_mul(1_000_000))
    }
    /// Flow rate that delivers this dose rate at `c`, rounded down.
    pub fn to_flow(self, c: NanogramsPerMillilitre) -> Option<NanolitresPerDay> {
        Nanograms(self.0)
            .to_volume(c)
            .map(|v| NanolitresPerDay(v.0))
    }
    /// Dose delivered at this rate over `minutes`, rounded down.
    pub fn over_minutes(self, minutes: u32) -> Nanograms {
        let ng = u64::from(self.0) * u64::from(minutes) / u64::from(MINUTES_PER_DAY);
        Nanograms(u32::try_from(ng).unwrap_or(u32::MAX))
    }
}

impl NanolitresPerDay {
    /// `ul` microlitres per day.
    pub const fn from_ul(ul: u32) -> Self {
        Self(ul.saturating_mul(1_000))
    }
}

impl NanogramsPerMillilitre {
    /// `ug` micrograms per millilitre.
    pub const fn from_ug_per_ml(ug: u32) -> Self {
        Self(ug.saturating_mul(1_000))
    }
    /// `mg` milligrams per millilitre.
    pub const fn from_mg_per_ml(mg: u32) -> Self {
        Self(mg.saturating_mul(1_000_000))
    }
}

impl Minutes {
    /// This duration in milliseconds.
    pub const fn as_ms(self) -> u64 {
        self.0 as u64 * MS_PER_MINUTE
    }
}

/// Writes `value / 10^scale` with up to `scale` decimals, trailing zeros trimmed.
fn write_scaled(f: &mut fmt::Formatter<'_>, value: u64, scale: u32, unit: &str) -> fmt::Result {
    let div = 10u64.pow(scale);
    let whole = value / div;
    let mut frac = value % div;
    if frac == 0 {
        return write!(f, "{whole} {unit}");
    }
    let mut digits = scale as usize;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    write!(f, "{whole}.{frac:0digits$} {unit}")
}

impl fmt::Display for Nanolitres {
    /// Millilitres, e.g. `19.5 mL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0.into(), 6, "mL")
    }
}
impl fmt::Display for Nanograms {
    /// Micrograms, e.g. `1.25 µg`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0.into(), 3, "µg")
    }
}
impl fmt::Display for NanogramsPerDay {
    /// Micrograms per day, e.g. `450 µg/day`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0.into(), 3, "µg/day")
    }
}
impl fmt::Display for NanolitresPerDay {
    /// Millilitres per day, e.g. `0.048 mL/day`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0.into(), 6, "mL/day")
    }
}
impl fmt::Display for NanogramsPerMillilitre {
    /// Micrograms per millilitre, e.g. `500 µg/mL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0.into(), 3, "µg/mL")
    }
}
impl fmt::Display for Minutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} min", self.0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn dose_to_volume_rounds_down() {
        // 1 µg at 3 µg/mL = 0.333… mL = 333 333.3 nL -> 333 333 nL.
        let c = NanogramsPerMillilitre::from_ug_per_ml(3);
        assert_eq!(
            Nanograms::from_ug(1).to_volume(c),
            Some(Nanolitres(333_333))
        );
        // and back: 333 333 nL × 3000 ng/mL / 1e6 = 999.999 -> 999 ng (never more).
        assert_eq!(Nanolitres(333_333).to_dose(c), Some(Nanograms(999)));
    }

    #[test]
    fn smallest_real_doses_are_representable() {
        // Ziconotide 0.5 µg/day at 25 µg/mL = 0.02 mL/day = 20 000 nL/day.
        let c = NanogramsPerMillilitre::from_ug_per_ml(25);
        assert_eq!(
            NanogramsPerDay(500).to_flow(c),
            Some(NanolitresPerDay(20_000))
        );
        // Lowest commercial rate.
        assert_eq!(NanolitresPerDay(48_000).to_string(), "0.048 mL/day");
        assert_eq!(Nanolitres::from_ml(40), Nanolitres(40_000_000));
    }

    #[test]
    fn conversions_never_wrap() {
        assert_eq!(
            Nanograms(u32::MAX).to_volume(NanogramsPerMillilitre(1)),
            None
        );
        assert_eq!(Nanograms(1).to_volume(NanogramsPerMillilitre(0)), None);
        assert_eq!(
            Nanolitres(u32::MAX).to_dose(NanogramsPerMillilitre(u32::MAX)),
            None
        );
    }

    #[test]
    fn display_trims_zeros() {
        assert_eq!(Nanolitres(19_500_000).to_string(), "19.5 mL");
        assert_eq!(Nanograms(1_250).to_string(), "1.25 µg");
        assert_eq!(NanogramsPerDay::from_ug(450).to_string(), "450 µg/day");
        assert_eq!(Nanolitres(1).to_string(), "0.000001 mL");
    }

    #[test]
    fn over_minutes_is_exact_for_whole_days() {
        let r = NanogramsPerDay(1_234_567);
        assert_eq!(r.over_minutes(1_440), Nanograms(1_234_567));
        assert_eq!(r.over_minutes(720), Nanograms(617_283));
    }
}
