//! The prescription: drug, concentration, therapy mode, patient-bolus rules and the hard
//! daily limit, with the validation rules both sides share.
//!
//! A [`PrescriptionDraft`] is what a programmer sends; a [`Prescription`] can only be
//! built from a draft by [`Prescription::new`], which applies every rule in
//! [`crate::rules`]. Decoding a `Prescription` from the wire validates it again, so an
//! invalid prescription cannot exist in memory on either side.
//!
//! Doses are programmed (dose per day per step, as clinicians prescribe); flow rates are
//! derived through the concentration with the rounding rules of [`crate::units`].

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::drug::Drug;
use crate::rules::{self, ScheduleError};
use crate::time::{MinuteOfDay, MINUTES_PER_WEEK};
use crate::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
    MINUTES_PER_DAY,
};

/// Steps in one day profile (real pumps allow about a dozen; at least 13 are required).
pub const MAX_STEPS_PER_DAY: usize = 16;
/// Day profiles in a flexible schedule: 1 (every day alike) or 7 (Monday … Sunday).
pub const MAX_PROFILE_DAYS: usize = 7;

/// One step of a day profile: from `start` (local time) until the next step's start, or
/// midnight after the last step, the pump delivers `dose` per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    /// Local start time.
    pub start: MinuteOfDay,
    /// Dose rate while this step runs.
    pub dose: NanogramsPerDay,
}

/// The steps of one day, ordered by start time; the first starts at 00:00.
pub type DaySteps = Vec<Step, MAX_STEPS_PER_DAY>;

/// How the basal (background) infusion runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TherapyMode {
    /// Therapy stopped: the pump runs at [`rules::MIN_FLOW`] only, to keep the catheter
    /// open.
    Stopped,
    /// The same dose rate all day, every day.
    Continuous {
        /// Dose per day.
        dose: NanogramsPerDay,
    },
    /// A daily profile of steps: one profile for every day, or seven (Monday first).
    Flexible {
        /// 1 or 7 day profiles.
        days: Vec<DaySteps, MAX_PROFILE_DAYS>,
    },
}

/// The clinician's rules for patient-activated boluses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PatientBolusRules {
    /// Dose of one patient bolus.
    pub dose: Nanograms,
    /// Minimum time from the start of one patient bolus to the next.
    pub lockout: Minutes,
    /// Most patient boluses in any rolling 24 h.
    pub max_per_day: u8,
}

/// A prescription as the programmer writes it, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrescriptionDraft {
    /// Drug in the reservoir.
    pub drug: Drug,
    /// Its concentration.
    pub concentration: NanogramsPerMillilitre,
    /// Hard limit: most drug in any rolling 24 h, boluses included.
    pub daily_limit: NanogramsPerDay,
    /// Basal therapy.
    pub mode: TherapyMode,
    /// Patient bolus rules, if the patient may request boluses.
    pub patient_bolus: Option<PatientBolusRules>,
    /// Reservoir volume at which the low-reservoir alarm is raised.
    pub low_reservoir_alarm: Nanolitres,
}

/// A validated prescription. Build it with [`Prescription::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PrescriptionDraft", into = "PrescriptionDraft")]
pub struct Prescription(PrescriptionDraft);

impl TryFrom<PrescriptionDraft> for Prescription {
    type Error = ScheduleError;
    fn try_from(draft: PrescriptionDraft) -> Result<Self, Self::Error> {
        Prescription::new(draft)
    }
}

impl From<Prescription> for PrescriptionDraft {
    fn from(p: Prescription) -> Self {
        p.0
    }
}

/// One piece of the repeating basal cycle: `[start, end)` minutes at a constant dose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First minute (of the cycle).
    pub start: u32,
    /// One past the last minute.
    pub end: u32,
    /// Dose rate.
    pub dose: NanogramsPerDay,
}

impl Prescription {
    /// Validates `draft` against every rule; the error names the first rule broken and
    /// where (day, step).
    pub fn new(draft: PrescriptionDraft) -> Result<Self, ScheduleError> {
        rules::validate(&draft)?;
        Ok(Self(draft))
    }

    /// The fields.
    pub fn draft(&self) -> &PrescriptionDraft {
        &self.0
    }

    /// Drug.
    pub fn drug(&self) -> Drug {
        self.0.drug
    }

    /// Concentration.
    pub fn concentration(&self) -> NanogramsPerMillilitre {
        self.0.concentration
    }

    /// Hard daily limit.
    pub fn daily_limit(&self) -> NanogramsPerDay {
        self.0.daily_limit
    }

    /// Patient bolus rules.
    pub fn patient_bolus(&self) -> Option<PatientBolusRules> {
        self.0.patient_bolus
    }

    /// Low-reservoir alarm threshold.
    pub fn low_reservoir_alarm(&self) -> Nanolitres {
        self.0.low_reservoir_alarm
    }

    /// A copy with another drug and concentration (refill with a drug change). The
    /// result is validated again.
    pub fn with_drug(
        &self,
        drug: Drug,
        concentration: NanogramsPerMillilitre,
    ) -> Result<Self, ScheduleError> {
        let mut draft = self.0.clone();
        draft.drug = drug;
        draft.concentration = concentration;
        Self::new(draft)
    }

    /// A copy in [`TherapyMode::Stopped`] with the same drug and limits.
    pub fn stopped(&self) -> Self {
        let mut draft = self.0.clone();
        draft.mode = TherapyMode::Stopped;
        // Stopped only lowers the flow, so every rule that held still holds.
        Self(draft)
    }

    /// Length of the basal cycle in minutes: a week for a 7-day profile, else a day.
    pub fn cycle_minutes(&self) -> u32 {
        cycle_minutes(&self.0.mode)
    }

    /// Segment `i` of the cycle, in order; `None` past the last.
    pub fn segment(&self, i: usize) -> Option<Segment> {
        segment(&self.0, i)
    }

    /// The segment running at `minute_of_week` (local).
    pub fn segment_at(&self, minute_of_week: u32) -> Segment {
        segment_at(&self.0, minute_of_week)
    }

    /// Flow rate of a dose rate under this prescription's concentration (rounded down).
    pub fn flow_for(&self, dose: NanogramsPerDay) -> NanolitresPerDay {
        dose.to_flow(self.0.concentration)
            .unwrap_or(NanolitresPerDay::ZERO)
    }

    /// The basal dose of each local day (Monday first); equal for 1-day profiles.
    pub fn daily_totals(&self) -> [Nanograms; 7] {
        let mut out = [Nanograms::ZERO; 7];
        for (d, slot) in out.iter_mut().enumerate() {
            let start = d as u32 * u32::from(MINUTES_PER_DAY);
            let total = rules::window_total(&self.0, start % self.cycle_minutes());
            *slot = Nanograms(u32::try_from(total).unwrap_or(u32::MAX));
        }
        out
    }
}

pub(crate) fn cycle_minutes(mode: &TherapyMode) -> u32 {
    match mode {
        TherapyMode::Flexible { days } if days.len() > 1 => MINUTES_PER_WEEK,
        _ => u32::from(MINUTES_PER_DAY),
    }
}

/// Segment `i` of the basal cycle of a (validated or not) draft.
pub(crate) fn segment(draft: &PrescriptionDraft, i: usize) -> Option<Segment> {
    let day_len = u32::from(MINUTES_PER_DAY);
    match &draft.mode {
        TherapyMode::Stopped => (i == 0).then(|| Segment {
            start: 0,
            end: day_len,
            dose: rules::min_flow_dose(draft.concentration),
        }),
        TherapyMode::Continuous { dose } => (i == 0).then_some(Segment {
            start: 0,
            end: day_len,
            dose: *dose,
        }),
        TherapyMode::Flexible { days } => {
            let mut remaining = i;
            for (d, steps) in days.iter().enumerate() {
                if remaining < steps.len() {
                    let step = steps.get(remaining)?;
                    let base = d as u32 * day_len;
                    let end = steps
                        .get(remaining + 1)
                        .map_or(day_len, |n| u32::from(n.start.0));
                    return Some(Segment {
                        start: base + u32::from(step.start.0),
                        end: base + end.max(u32::from(step.start.0)),
                        dose: step.dose,
                    });
                }
                remaining -= steps.len();
            }
            None
        }
    }
}

pub(crate) fn segment_at(draft: &PrescriptionDraft, minute_of_week: u32) -> Segment {
    let m = minute_of_week % cycle_minutes(&draft.mode);
    let mut i = 0;
    let mut last = None;
    while let Some(s) = segment(draft, i) {
        if s.start <= m && m < s.end {
            return s;
        }
        last = Some(s);
        i += 1;
    }
    // Unreachable for a validated prescription (segments cover the cycle); for a draft,
    // the safest answer is the minimum flow.
    last.unwrap_or(Segment {
        start: 0,
        end: u32::from(MINUTES_PER_DAY),
        dose: rules::min_flow_dose(draft.concentration),
    })
}
