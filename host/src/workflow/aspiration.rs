//! The field record of a refill: the volume aspirated from the reservoir against the
//! volume the pump expects. The pump's volume is a calculation, not a measurement (it
//! counts strokes); a gap beyond the tolerance is the sign of an over- or
//! under-infusion, a leak, a catheter or pump problem, or a fill that went into the
//! tissue (a "pocket fill"), and is assessed before the pump is filled again.

use thecal_protocol::units::Nanolitres;

/// The least discrepancy between the aspirated and the expected volume that is always
/// flagged: 1 mL. Larger reservoirs get [`ASPIRATION_TOLERANCE_PERCENT`] of the expected
/// volume instead. Both are this programmer's figures (a syringe reading is good to a few
/// tenths of a millilitre; the pump's estimate drifts with its stroke volume), not a
/// sourced specification: a clinic may set its own.
pub const ASPIRATION_TOLERANCE_MIN: Nanolitres = Nanolitres(1_000_000);

/// The tolerance as a share of the expected volume, when that is more than
/// [`ASPIRATION_TOLERANCE_MIN`]: 10 %.
pub const ASPIRATION_TOLERANCE_PERCENT: u32 = 10;

/// The aspirated volume against the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aspiration {
    /// The pump's estimate of the reservoir volume before the refill.
    pub expected: Nanolitres,
    /// What the clinician drew out of the reservoir.
    pub aspirated: Nanolitres,
    /// The difference allowed either way ([`Aspiration::tolerance_for`]).
    pub tolerance: Nanolitres,
}

/// What an aspirated volume outside the tolerance may mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discrepancy {
    /// Less came out than the pump expects: more drug left the reservoir than the pump
    /// counted (possible OVER-infusion: watch for overdose), a leak (pump, catheter
    /// port, or a previous fill that went into the pocket), or an incomplete aspiration.
    Less,
    /// More came out than the pump expects: less drug was delivered than programmed
    /// (possible UNDER-infusion: watch for withdrawal), a catheter occlusion or a pump
    /// problem.
    More,
}

impl Aspiration {
    /// The tolerance for an expected volume: [`ASPIRATION_TOLERANCE_PERCENT`] of it, at
    /// least [`ASPIRATION_TOLERANCE_MIN`].
    pub fn tolerance_for(expected: Nanolitres) -> Nanolitres {
        let share = u64::from(expected.0) * u64::from(ASPIRATION_TOLERANCE_PERCENT) / 100;
        let share = Nanolitres(u32::try_from(share).unwrap_or(u32::MAX));
        share.max(ASPIRATION_TOLERANCE_MIN)
    }

    /// The aspirated volume against the expected one, with its tolerance.
    pub fn new(expected: Nanolitres, aspirated: Nanolitres) -> Aspiration {
        Aspiration {
            expected,
            aspirated,
            tolerance: Aspiration::tolerance_for(expected),
        }
    }

    /// Aspirated minus expected, in nanolitres (negative: less came out).
    pub fn difference(&self) -> i64 {
        i64::from(self.aspirated.0) - i64::from(self.expected.0)
    }

    /// The discrepancy, when the difference is beyond the tolerance.
    pub fn discrepancy(&self) -> Option<Discrepancy> {
        let d = self.difference();
        let t = i64::from(self.tolerance.0);
        if d < -t {
            Some(Discrepancy::Less)
        } else if d > t {
            Some(Discrepancy::More)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ml(tenths: u32) -> Nanolitres {
        Nanolitres(tenths * 100_000)
    }

    #[test]
    fn the_tolerance_is_a_tenth_of_the_expected_volume_and_at_least_a_millilitre() {
        assert_eq!(Aspiration::tolerance_for(ml(30)), ml(10));
        assert_eq!(Aspiration::tolerance_for(ml(0)), ml(10));
        assert_eq!(Aspiration::tolerance_for(ml(200)), ml(20));
        assert_eq!(
            Aspiration::tolerance_for(Nanolitres(u32::MAX)).0,
            u32::MAX / 10
        );
    }

    #[test]
    fn a_gap_beyond_the_tolerance_is_flagged_either_way() {
        // 20 mL expected: ±2 mL.
        assert_eq!(Aspiration::new(ml(200), ml(180)).discrepancy(), None);
        assert_eq!(Aspiration::new(ml(200), ml(220)).discrepancy(), None);
        assert_eq!(
            Aspiration::new(ml(200), ml(179)).discrepancy(),
            Some(Discrepancy::Less)
        );
        assert_eq!(
            Aspiration::new(ml(200), ml(221)).discrepancy(),
            Some(Discrepancy::More)
        );
        // Nothing came out of a reservoir expected to hold 3 mL: flagged.
        let a = Aspiration::new(ml(30), ml(0));
        assert_eq!(a.difference(), -3_000_000);
        assert_eq!(a.discrepancy(), Some(Discrepancy::Less));
    }
}
