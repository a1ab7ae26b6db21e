//! Prescription rules, shared by the programmer (checks before sending) and the firmware
//! (checks again before storing: its limits are its own).
//!
//! Every rule and its error:
//!
//! | rule | error |
//! |---|---|
//! | 0 < concentration ≤ the drug's ceiling | [`ScheduleError::ConcentrationOutOfRange`] |
//! | 0 < daily limit ≤ the drug's ceiling | [`ScheduleError::DailyLimitOutOfRange`] |
//! | 0.5 mL ≤ low-reservoir alarm ≤ 10 mL | [`ScheduleError::LowReservoirAlarmOutOfRange`] |
//! | a flexible schedule has 1 or 7 day profiles | [`ScheduleError::ProfileDays`] |
//! | every day has a step, the first at 00:00 (the cycle is covered) | [`ScheduleError::EmptyDay`], [`ScheduleError::FirstStepNotAtMidnight`] |
//! | step starts are within the day and strictly increasing (ordered, no overlap) | [`ScheduleError::StepStartOutOfRange`], [`ScheduleError::StepOutOfOrder`] |
//! | every rate's flow is within [`MIN_FLOW`] ..= [`MAX_FLOW`] | [`ScheduleError::FlowBelowMinimum`], [`ScheduleError::FlowAboveMaximum`] |
//! | no step's rate exceeds the daily limit | [`ScheduleError::StepAboveDailyLimit`] |
//! | the basal dose in every rolling 24 h ≤ daily limit | [`ScheduleError::RollingTotalAboveLimit`] |
//! | patient bolus: dose > 0, lockout ≥ [`MIN_LOCKOUT`], 1 ≤ count ≤ [`MAX_PATIENT_BOLUSES`] | [`ScheduleError::PatientBolusInvalid`] |
//! | basal + every allowed patient bolus in 24 h ≤ daily limit | [`ScheduleError::BolusAllowanceAboveLimit`] |
//!
//! The rolling 24 h total of a piecewise-constant profile is largest for a window that
//! starts or ends at a step boundary, so checking those windows is exact. Sums are kept
//! in ng·min/day (exact integers, [`crate::cycle::Cycle::window_sum`]) and compared against
//! `limit × 1440`.
//!
//! This module is the only way to build a [`Prescription`]: [`Prescription::new`] (and
//! the `TryFrom` the decoder uses) are defined here, over the model in
//! [`crate::prescription`] and the cycle geometry in [`crate::cycle`]. Imports run one
//! way: `cycle ← prescription ← rules`. [`MIN_FLOW`] and [`min_flow_dose`] belong to the
//! cycle (a stopped pump's keep-open dose) and are re-exported here beside [`MAX_FLOW`].

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::cycle::{TherapyMode, MAX_PROFILE_DAYS};
use crate::drug::Drug;
use crate::prescription::{Prescription, PrescriptionDraft};
use crate::time::{MinuteOfDay, Weekday};
use crate::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
    MINUTES_PER_DAY,
};

pub use crate::cycle::{min_flow_dose, MIN_FLOW};

/// Highest basal flow (24 mL/day).
pub const MAX_FLOW: NanolitresPerDay = NanolitresPerDay(24_000_000);
/// Longest bolus the pump gives: 24 h (the pump refuses a longer one `BadBolus`).
pub const MAX_BOLUS_DURATION: Minutes = Minutes(24 * 60);
/// Fastest bolus flow the mechanism allows: 60 mL/day (2.5 mL/h; the pump refuses a
/// faster bolus `BadBolus`).
pub const MAX_BOLUS_FLOW: NanolitresPerDay = NanolitresPerDay(60_000_000);
/// Lowest programmable low-reservoir alarm threshold.
pub const MIN_LOW_ALARM: Nanolitres = Nanolitres(500_000);
/// Highest programmable low-reservoir alarm threshold.
pub const MAX_LOW_ALARM: Nanolitres = Nanolitres(10_000_000);
/// The rule set of this firmware. Stored prescriptions carry the rule set they were
/// validated under; bump this when a rule tightens, so a prescription valid when it was
/// written is recognised as such (kept in force, flagged for review) rather than taken
/// for a corrupt record. (1: the rules of protocols 1 to 5.)
pub const RULES_VERSION: u16 = 1;
/// The most of a bridge bolus the pump counts as the old solution after a refill that
/// changed the solution: 0.5 mL, more than the fluid pathway of the pump and the longest
/// catheter hold together. The rest of a larger bridge counts as the new solution (see
/// PROTOCOL.md, "Bridge accounting"); the programmer uses it to predict what a bridge
/// adds to the new drug's rolling 24 h.
pub const BRIDGE_OLD_MAX: Nanolitres = Nanolitres(500_000);
/// Shortest patient-bolus lockout.
pub const MIN_LOCKOUT: Minutes = Minutes(10);
/// Most patient boluses a clinician may allow per 24 h.
pub const MAX_PATIENT_BOLUSES: u8 = 24;

/// Where in a schedule a rule was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum At {
    /// The rate of a simple continuous schedule.
    Continuous,
    /// A step of a flexible schedule. `day` is `None` when one profile serves every day;
    /// `number` counts from 1.
    Step {
        /// Day profile.
        day: Option<Weekday>,
        /// Step number, from 1.
        number: u8,
        /// Its start time.
        start: MinuteOfDay,
    },
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Continuous => f.write_str("continuous rate"),
            At::Step { day, number, start } => {
                match day {
                    Some(d) => write!(f, "{d} ")?,
                    None => f.write_str("daily profile ")?,
                }
                write!(f, "step {number} (from {start})")
            }
        }
    }
}

/// Why a prescription was refused. Each variant names the rule and, where it applies,
/// the day and step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Concentration is zero or above the drug's ceiling.
    ConcentrationOutOfRange {
        /// Drug.
        drug: Drug,
        /// Requested.
        concentration: NanogramsPerMillilitre,
        /// Ceiling.
        max: NanogramsPerMillilitre,
    },
    /// Daily limit is zero or above the drug's ceiling.
    DailyLimitOutOfRange {
        /// Drug.
        drug: Drug,
        /// Requested.
        limit: NanogramsPerDay,
        /// Ceiling.
        ceiling: NanogramsPerDay,
    },
    /// Low-reservoir alarm threshold outside [`MIN_LOW_ALARM`] ..= [`MAX_LOW_ALARM`].
    LowReservoirAlarmOutOfRange {
        /// Requested.
        threshold: Nanolitres,
    },
    /// A flexible schedule must have 1 or 7 day profiles.
    ProfileDays {
        /// How many it had.
        days: u8,
    },
    /// A day profile has no steps.
    EmptyDay {
        /// Day (`None`: the every-day profile).
        day: Option<Weekday>,
    },
    /// The first step does not start at 00:00, so the day is not covered.
    FirstStepNotAtMidnight {
        /// Day.
        day: Option<Weekday>,
        /// Its start.
        start: MinuteOfDay,
    },
    /// A step starts at or after 24:00.
    StepStartOutOfRange {
        /// Where.
        at: At,
    },
    /// A step starts at or before the previous step (steps must be ordered and must
    /// not overlap).
    StepOutOfOrder {
        /// Where.
        at: At,
        /// Start of the previous step.
        previous: MinuteOfDay,
    },
    /// The flow for this rate is below the pump's minimum.
    FlowBelowMinimum {
        /// Where.
        at: At,
        /// Flow.
        flow: NanolitresPerDay,
    },
    /// The flow for this rate is above the pump's maximum.
    FlowAboveMaximum {
        /// Where.
        at: At,
        /// Dose rate.
        dose: NanogramsPerDay,
    },
    /// A step's rate alone exceeds the daily limit.
    StepAboveDailyLimit {
        /// Where.
        at: At,
        /// Rate.
        dose: NanogramsPerDay,
        /// Limit.
        limit: NanogramsPerDay,
    },
    /// The basal dose in the 24 h starting here exceeds the daily limit.
    RollingTotalAboveLimit {
        /// Day the window starts (`None` for a 1-day cycle).
        day: Option<Weekday>,
        /// Time the window starts.
        start: MinuteOfDay,
        /// Dose in that window (rounded up).
        total: Nanograms,
        /// Limit.
        limit: NanogramsPerDay,
    },
    /// Patient bolus rules are invalid (zero dose, lockout below [`MIN_LOCKOUT`], or a
    /// count of 0 or above [`MAX_PATIENT_BOLUSES`]).
    PatientBolusInvalid {
        /// Dose.
        dose: Nanograms,
        /// Lockout.
        lockout: Minutes,
        /// Count.
        max_per_day: u8,
    },
    /// Largest basal 24 h plus every allowed patient bolus exceeds the daily limit.
    BolusAllowanceAboveLimit {
        /// Largest basal dose in any 24 h.
        basal: Nanograms,
        /// All allowed patient boluses.
        boluses: Nanograms,
        /// Limit.
        limit: NanogramsPerDay,
    },
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ScheduleError::*;
        match *self {
            ConcentrationOutOfRange { drug, concentration, max } => write!(
                f,
                "concentration {concentration} of {drug} is outside 0 < c ≤ {max}"
            ),
            DailyLimitOutOfRange { drug, limit, ceiling } => write!(
                f,
                "daily limit {limit} is outside 0 < limit ≤ {ceiling}, the firmware ceiling for {drug}"
            ),
            LowReservoirAlarmOutOfRange { threshold } => write!(
                f,
                "low-reservoir alarm {threshold} is outside {MIN_LOW_ALARM} ..= {MAX_LOW_ALARM}"
            ),
            ProfileDays { days } => write!(
                f,
                "a flexible schedule has 1 or {MAX_PROFILE_DAYS} day profiles, not {days}"
            ),
            EmptyDay { day } => write!(f, "{}: the day profile has no steps", DayName(day)),
            FirstStepNotAtMidnight { day, start } => write!(
                f,
                "{} step 1 starts at {start}: the first step must start at 00:00 so the whole day is covered",
                DayName(day)
            ),
            StepStartOutOfRange { at } => write!(f, "{at}: start time is not within 00:00–23:59"),
            StepOutOfOrder { at, previous } => write!(
                f,
                "{at}: starts at or before the previous step ({previous}); steps must be in order and must not overlap"
            ),
            FlowBelowMinimum { at, flow } => write!(
                f,
                "{at}: flow {flow} is below the pump's minimum {MIN_FLOW}; use a lower concentration"
            ),
            FlowAboveMaximum { at, dose } => write!(
                f,
                "{at}: {dose} needs more than the pump's maximum flow {MAX_FLOW}"
            ),
            StepAboveDailyLimit { at, dose, limit } => {
                write!(f, "{at}: rate {dose} exceeds the daily limit {limit}")
            }
            RollingTotalAboveLimit { day, start, total, limit } => write!(
                f,
                "the 24 h from {} {start} deliver {total}, above the daily limit {limit}",
                DayName(day)
            ),
            PatientBolusInvalid { dose, lockout, max_per_day } => write!(
                f,
                "patient bolus rules invalid (dose {dose}, lockout {lockout}, {max_per_day} per 24 h): need dose > 0, lockout ≥ {MIN_LOCKOUT}, 1 ..= {MAX_PATIENT_BOLUSES} per 24 h"
            ),
            BolusAllowanceAboveLimit { basal, boluses, limit } => write!(
                f,
                "basal {basal} plus all allowed patient boluses {boluses} in 24 h exceed the daily limit {limit}"
            ),
        }
    }
}

impl core::error::Error for ScheduleError {}

struct DayName(Option<Weekday>);
impl fmt::Display for DayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{d}"),
            None => f.write_str("daily profile"),
        }
    }
}

impl Prescription {
    /// Validates `draft` against every rule; the error names the first rule broken and
    /// where (day, step).
    pub fn new(draft: PrescriptionDraft) -> Result<Self, ScheduleError> {
        validate(&draft)?;
        Ok(Self::accepted(draft))
    }

    /// A copy with another drug and concentration (refill with a drug change). The
    /// result is validated again.
    pub fn with_drug(
        &self,
        drug: Drug,
        concentration: NanogramsPerMillilitre,
    ) -> Result<Self, ScheduleError> {
        let mut draft = self.draft().clone();
        draft.drug = drug;
        draft.concentration = concentration;
        Self::new(draft)
    }
}

impl Prescription {
    /// Admits `draft` as a prescription the pump can run even if it breaks a rule: its
    /// structure is checked ([`check_structure`]: a cycle covered by ordered steps, a
    /// concentration, flows the mechanism can deliver), every rule then, and a broken
    /// rule is returned beside it. For prescriptions stored under an older rule set
    /// (see [`RULES_VERSION`]) and their read-back; never for a write.
    pub fn admit(draft: PrescriptionDraft) -> Result<(Self, Option<ScheduleError>), ScheduleError> {
        check_structure(&draft)?;
        let broken = validate(&draft).err();
        Ok((Self::accepted(draft), broken))
    }
}

/// Serde `deserialize_with` for a prescription read back from a pump: admitted
/// ([`Prescription::admit`]), so a prescription under review still decodes.
pub fn deserialize_admitted<'de, D>(deserializer: D) -> Result<Prescription, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let draft = PrescriptionDraft::deserialize(deserializer)?;
    Prescription::admit(draft)
        .map(|(p, _)| p)
        .map_err(|_| serde::de::Error::custom("prescription structure"))
}

/// What the dosing engine needs of any prescription, whatever the rule set: a nonzero
/// concentration, a cycle of 1 or 7 day profiles each starting at midnight with
/// strictly increasing steps within the day, and every flow within [`MAX_FLOW`] (the
/// mechanism). A stored record failing this is corrupt, not merely old.
pub fn check_structure(draft: &PrescriptionDraft) -> Result<(), ScheduleError> {
    if draft.concentration.0 == 0 {
        return Err(ScheduleError::ConcentrationOutOfRange {
            drug: draft.drug,
            concentration: draft.concentration,
            max: draft.drug.ceiling().max_concentration,
        });
    }
    walk(draft, |at, dose| match dose.to_flow(draft.concentration) {
        Some(f) if f <= MAX_FLOW => Ok(()),
        _ => Err(ScheduleError::FlowAboveMaximum { at, dose }),
    })
}

impl TryFrom<PrescriptionDraft> for Prescription {
    type Error = ScheduleError;
    fn try_from(draft: PrescriptionDraft) -> Result<Self, Self::Error> {
        Prescription::new(draft)
    }
}

/// Applies every rule to `draft`.
pub fn validate(draft: &PrescriptionDraft) -> Result<(), ScheduleError> {
    let ceiling = draft.drug.ceiling();
    let c = draft.concentration;
    if c.0 == 0 || c > ceiling.max_concentration {
        return Err(ScheduleError::ConcentrationOutOfRange {
            drug: draft.drug,
            concentration: c,
            max: ceiling.max_concentration,
        });
    }
    let limit = draft.daily_limit;
    if limit.0 == 0 || limit > ceiling.max_per_day {
        return Err(ScheduleError::DailyLimitOutOfRange {
            drug: draft.drug,
            limit,
            ceiling: ceiling.max_per_day,
        });
    }
    let low = draft.low_reservoir_alarm;
    if low < MIN_LOW_ALARM || low > MAX_LOW_ALARM {
        return Err(ScheduleError::LowReservoirAlarmOutOfRange { threshold: low });
    }
    check_mode(draft)?;
    let basal = check_rolling(draft)?;
    check_patient_bolus(draft, basal)
}

fn check_mode(draft: &PrescriptionDraft) -> Result<(), ScheduleError> {
    walk(draft, |at, dose| check_rate(draft, at, dose))
}

/// Checks the cycle's structure (1 or 7 day profiles, each starting at midnight with
/// strictly increasing steps within the day) and calls `rate` for every programmed rate.
fn walk(
    draft: &PrescriptionDraft,
    mut rate: impl FnMut(At, NanogramsPerDay) -> Result<(), ScheduleError>,
) -> Result<(), ScheduleError> {
    match &draft.mode {
        TherapyMode::Stopped => Ok(()),
        TherapyMode::Continuous { dose } => rate(At::Continuous, *dose),
        TherapyMode::Flexible { days } => {
            if days.len() != 1 && days.len() != MAX_PROFILE_DAYS {
                return Err(ScheduleError::ProfileDays {
                    days: days.len() as u8,
                });
            }
            let weekly = days.len() > 1;
            for (d, steps) in days.iter().enumerate() {
                let day = weekly.then(|| Weekday::from_index(d as u32));
                let first = steps.first().ok_or(ScheduleError::EmptyDay { day })?;
                if first.start != MinuteOfDay::MIDNIGHT {
                    return Err(ScheduleError::FirstStepNotAtMidnight {
                        day,
                        start: first.start,
                    });
                }
                let mut previous: Option<MinuteOfDay> = None;
                for (i, step) in steps.iter().enumerate() {
                    let at = At::Step {
                        day,
                        number: i as u8 + 1,
                        start: step.start,
                    };
                    if step.start.0 >= MINUTES_PER_DAY {
                        return Err(ScheduleError::StepStartOutOfRange { at });
                    }
                    if let Some(previous) = previous.filter(|p| step.start <= *p) {
                        return Err(ScheduleError::StepOutOfOrder { at, previous });
                    }
                    previous = Some(step.start);
                    rate(at, step.dose)?;
                }
            }
            Ok(())
        }
    }
}

fn check_rate(
    draft: &PrescriptionDraft,
    at: At,
    dose: NanogramsPerDay,
) -> Result<(), ScheduleError> {
    let flow = dose
        .to_flow(draft.concentration)
        .ok_or(ScheduleError::FlowAboveMaximum { at, dose })?;
    if flow < MIN_FLOW {
        return Err(ScheduleError::FlowBelowMinimum { at, flow });
    }
    if flow > MAX_FLOW {
        return Err(ScheduleError::FlowAboveMaximum { at, dose });
    }
    if dose > draft.daily_limit {
        return Err(ScheduleError::StepAboveDailyLimit {
            at,
            dose,
            limit: draft.daily_limit,
        });
    }
    Ok(())
}

/// Checks every rolling 24 h window; returns the largest basal dose (ng, rounded up).
fn check_rolling(draft: &PrescriptionDraft) -> Result<Nanograms, ScheduleError> {
    let cycle = draft.cycle();
    let period = cycle.minutes();
    let day = u32::from(MINUTES_PER_DAY);
    let limit_sum = u64::from(draft.daily_limit.0) * u64::from(day);
    let mut worst = 0u64;
    for s in cycle.segments() {
        // Windows starting at a boundary, and windows ending at one.
        for start in [s.start, (s.start + period - day) % period] {
            let sum = cycle.window_sum(start);
            worst = worst.max(sum);
            if sum > limit_sum {
                let weekly = period > day;
                return Err(ScheduleError::RollingTotalAboveLimit {
                    day: weekly.then(|| Weekday::from_index(start / day)),
                    start: MinuteOfDay((start % day) as u16),
                    total: ceil_ng(sum),
                    limit: draft.daily_limit,
                });
            }
        }
    }
    Ok(ceil_ng(worst))
}

fn ceil_ng(sum: u64) -> Nanograms {
    Nanograms(u32::try_from(sum.div_ceil(u64::from(MINUTES_PER_DAY))).unwrap_or(u32::MAX))
}

fn check_patient_bolus(draft: &PrescriptionDraft, basal: Nanograms) -> Result<(), ScheduleError> {
    let Some(rules) = draft.patient_bolus else {
        return Ok(());
    };
    if rules.dose.0 == 0
        || rules.lockout < MIN_LOCKOUT
        || rules.max_per_day == 0
        || rules.max_per_day > MAX_PATIENT_BOLUSES
    {
        return Err(ScheduleError::PatientBolusInvalid {
            dose: rules.dose,
            lockout: rules.lockout,
            max_per_day: rules.max_per_day,
        });
    }
    let boluses = u64::from(rules.dose.0) * u64::from(rules.max_per_day);
    if u64::from(basal.0) + boluses > u64::from(draft.daily_limit.0) {
        return Err(ScheduleError::BolusAllowanceAboveLimit {
            basal,
            boluses: Nanograms(u32::try_from(boluses).unwrap_or(u32::MAX)),
            limit: draft.daily_limit,
        });
    }
    Ok(())
}
