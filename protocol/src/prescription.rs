//! The prescription model: drug, concentration, the basal therapy mode, patient-bolus
//! rules and the hard daily limit.
//!
//! A [`PrescriptionDraft`] is what a programmer sends; a [`Prescription`] can only be
//! built from a draft by [`Prescription::new`], which applies every rule in
//! [`crate::rules`] (and is defined there: the rules are the only way in). Decoding a
//! `Prescription` from the wire validates it again, so an invalid prescription cannot
//! exist in memory on either side.
//!
//! The basal program ([`TherapyMode`], [`Step`], [`DaySteps`]) and the geometry of its
//! cycle live in [`crate::cycle`]; they are re-exported here, where the rest of the
//! prescription uses them. Imports run one way: `cycle ← prescription ← rules`.
//!
//! Doses are programmed (dose per day per step, as clinicians prescribe); flow rates are
//! derived through the concentration with the rounding rules of [`crate::units`].

use serde::{Deserialize, Serialize};

use crate::cycle::{Cycle, Segment, Segments};
use crate::drug::Drug;
use crate::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
    MINUTES_PER_DAY,
};

pub use crate::cycle::{DaySteps, Step, TherapyMode, MAX_PROFILE_DAYS, MAX_STEPS_PER_DAY};

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

impl PrescriptionDraft {
    /// The basal cycle this draft programs (valid or not; see [`crate::cycle`]).
    pub fn cycle(&self) -> Cycle<'_> {
        Cycle::new(&self.mode, self.concentration)
    }

    /// The segments of its basal cycle, in order.
    pub fn segments(&self) -> Segments<'_> {
        self.cycle().segments()
    }
}

/// A validated prescription. Build it with [`Prescription::new`] (in [`crate::rules`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PrescriptionDraft", into = "PrescriptionDraft")]
pub struct Prescription(PrescriptionDraft);

impl From<Prescription> for PrescriptionDraft {
    fn from(p: Prescription) -> Self {
        p.0
    }
}

impl Prescription {
    /// Wraps a draft that [`crate::rules::validate`] has accepted. Only the checking
    /// constructor ([`Prescription::new`]) and [`Prescription::stopped`] call it.
    pub(crate) fn accepted(draft: PrescriptionDraft) -> Self {
        Self(draft)
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

    /// A copy in [`TherapyMode::Stopped`] with the same drug and limits.
    pub fn stopped(&self) -> Self {
        let mut draft = self.0.clone();
        draft.mode = TherapyMode::Stopped;
        // Stopped only lowers the flow, so every rule that held still holds.
        Self::accepted(draft)
    }

    /// The basal cycle; its segments tile it from 0 to its length.
    pub fn cycle(&self) -> Cycle<'_> {
        self.0.cycle()
    }

    /// The segments of the basal cycle, in order.
    pub fn segments(&self) -> Segments<'_> {
        self.0.segments()
    }

    /// Length of the basal cycle in minutes: a week for a 7-day profile, else a day.
    pub fn cycle_minutes(&self) -> u32 {
        self.cycle().minutes()
    }

    /// The segment running at `minute_of_week` (local).
    pub fn segment_at(&self, minute_of_week: u32) -> Segment {
        self.cycle().segment_at(minute_of_week)
    }

    /// Flow rate of a dose rate under this prescription's concentration (rounded down).
    pub fn flow_for(&self, dose: NanogramsPerDay) -> NanolitresPerDay {
        dose.to_flow(self.0.concentration)
            .unwrap_or(NanolitresPerDay::ZERO)
    }

    /// The basal dose of each local day (Monday first); equal for 1-day profiles.
    pub fn daily_totals(&self) -> [Nanograms; 7] {
        let cycle = self.cycle();
        let mut out = [Nanograms::ZERO; 7];
        for (d, slot) in (0u32..).zip(out.iter_mut()) {
            let start = d.saturating_mul(u32::from(MINUTES_PER_DAY));
            let total = cycle.window_total(start % cycle.minutes());
            *slot = Nanograms(u32::try_from(total).unwrap_or(u32::MAX));
        }
        out
    }
}
