//! A refill: the new volume; with a schedule, the prescription stored with it; with a
//! new drug or concentration, the bridge bolus that delivers the old drug still in the
//! pump and catheter at the old rate.
//!
//! [`plan`] decides everything from the inputs and [`Current`] (nothing is sent): it
//! refuses a volume below one stroke ([`MIN_REFILL`]) and lists the [`RefillWarning`]s
//! the clinician must confirm knowingly (a volume far below the pump's estimate or above
//! the capacity, a bridge that reaches the new daily limit in the first 24 h, counted as
//! the pump counts it: [`bridge_counted`]);
//! [`execute`] records the refill (with the prescription, read back), then starts the
//! bridge bolus.

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::{
    AlarmKind, BolusReport, BolusRequest, ReservoirReport, Revision, TherapyState,
};
use thecal_protocol::rules::BRIDGE_OLD_MAX;
use thecal_protocol::time::local_week_position;
use thecal_protocol::units::{Minutes, Nanograms, NanogramsPerDay, Nanolitres, NanolitresPerDay};
use thecal_protocol::Prescription;

pub use super::aspiration::{Aspiration, Discrepancy};
use super::Current;
use crate::view::Comparison;
use crate::{Client, Error};

/// What the clinician asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefillInputs {
    /// Volume in the reservoir after the refill.
    pub volume: Nanolitres,
    /// The prescription for the new solution, stored with the refill (the only way to
    /// change the drug or concentration).
    pub prescription: Option<Prescription>,
    /// The bridge bolus: required with a drug or concentration change, refused without.
    pub bridge: Option<Bridge>,
    /// The reservoir capacity (from `Identify`), to warn about a volume above it;
    /// `None`: not known, no warning.
    pub capacity: Option<Nanolitres>,
    /// The volume the clinician aspirated from the reservoir before filling it (the
    /// field record: the pump's volume is a calculation, not a measurement); compared
    /// with the volume the pump expects ([`Aspiration`]). `None`: not measured.
    pub aspirated: Option<Nanolitres>,
}

/// The least refill the pump records: one stroke of its mechanism (0.25 µL). Less would
/// only halt delivery; the pump refuses it (`RefillTooSmall`), and [`plan`] refuses it
/// before anything is sent.
pub const MIN_REFILL: Nanolitres = Nanolitres(250);

/// Something about a refill the clinician must confirm knowingly (the plan stands; the
/// caller shows each warning and asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefillWarning {
    /// The volume is less than half of what the pump expects to hold now: a wrong
    /// unit or a typing error (`2 mL` for `20 mL`) makes the alarm date wrong.
    FarBelowExpected {
        /// The volume given.
        volume: Nanolitres,
        /// The pump's estimate now.
        expected: Nanolitres,
    },
    /// The volume is more than the reservoir holds (the pump refuses it).
    AboveCapacity {
        /// The volume given.
        volume: Nanolitres,
        /// The reservoir capacity.
        capacity: Nanolitres,
    },
    /// The bridge bolus (as the pump counts it in the new drug's rolling 24 h), the
    /// basal of the first 24 h and every allowed patient bolus reach the new hard daily
    /// limit: the pump would withhold basal (with the `DeliveryWithheld` alarm) within
    /// the first day.
    BridgeReachesLimit {
        /// What the bridge counts against the new drug's limit.
        bridge: Nanograms,
        /// Basal of the first 24 h under the new prescription.
        basal: Nanograms,
        /// Every patient bolus the new prescription allows in 24 h.
        boluses: Nanograms,
        /// The new hard daily limit.
        limit: NanogramsPerDay,
    },
    /// The volume aspirated from the reservoir differs from the volume the pump expects
    /// by more than the tolerance: possible over- or under-infusion, or a pump or
    /// catheter problem, to be assessed before the refill is recorded.
    AspiratedDiscrepancy {
        /// The measurement and the estimate.
        aspiration: Aspiration,
        /// Which way.
        discrepancy: Discrepancy,
    },
}

impl std::fmt::Display for RefillWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::quantity::{dose, dose_rate, volume as vol};
        match *self {
            RefillWarning::FarBelowExpected { volume, expected } => write!(
                f,
                "the refill volume {} is far below the {} the pump expects to hold now: \
                 check the volume and its unit (the alarm date is computed from it)",
                vol(volume),
                vol(expected)
            ),
            RefillWarning::AboveCapacity { volume, capacity } => write!(
                f,
                "the refill volume {} is more than the reservoir holds ({}): check the \
                 volume (the pump refuses a fill above its capacity)",
                vol(volume),
                vol(capacity)
            ),
            RefillWarning::BridgeReachesLimit {
                bridge,
                basal,
                boluses,
                limit,
            } => write!(
                f,
                "in the first 24 h the bridge bolus ({} of the new drug as the pump counts \
                 it), the basal ({}) and every allowed patient bolus ({}) reach the new \
                 daily limit of {}: the pump will WITHHOLD basal delivery (critical alarm) \
                 once the limit is reached; consider a smaller bridge volume",
                dose(bridge),
                dose(basal),
                dose(boluses),
                dose_rate(limit)
            ),
            RefillWarning::AspiratedDiscrepancy {
                aspiration: a,
                discrepancy,
            } => {
                let gap =
                    Nanolitres(u32::try_from(a.difference().unsigned_abs()).unwrap_or(u32::MAX));
                let (way, meaning) = match discrepancy {
                    Discrepancy::Less => (
                        "less",
                        "more drug left the reservoir than the pump counted: possible \
                         OVER-infusion (assess the patient for overdose), a leak or a \
                         previous fill into the pocket, or an incomplete aspiration",
                    ),
                    Discrepancy::More => (
                        "more",
                        "less drug was delivered than programmed: possible UNDER-infusion \
                         (assess the patient for withdrawal), a catheter occlusion or a \
                         pump problem",
                    ),
                };
                write!(
                    f,
                    "the aspirated volume {} is {} {way} than the {} the pump expects \
                     (tolerance ±{}): {meaning}; check the pump and catheter before refilling",
                    vol(a.aspirated),
                    vol(gap),
                    vol(a.expected),
                    vol(a.tolerance),
                )
            }
        }
    }
}

/// The clinician's choice for the bridge bolus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bridge {
    /// Deliver this volume of old drug (left in the pump and catheter) at the current
    /// flow.
    Volume(Nanolitres),
    /// No bridge bolus.
    None,
}

/// A bridge bolus: the old drug at the current flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeBolus {
    /// Volume of old drug.
    pub volume: Nanolitres,
    /// How long it takes at `flow`.
    pub duration: Minutes,
    /// The flow in force before the refill.
    pub flow: NanolitresPerDay,
}

impl BridgeBolus {
    /// The request that starts it.
    pub fn request(&self) -> BolusRequest {
        BolusRequest::Bridge {
            volume: self.volume,
            duration: self.duration,
        }
    }
}

/// What the refill does to the prescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// No prescription given: the refill alone.
    RefillOnly,
    /// The pump already holds the prescription given: the refill alone.
    Unchanged,
    /// Same drug and concentration: the prescription is stored with the refill as the
    /// next revision.
    SameDrug,
    /// Another drug or concentration: the prescription is stored with the refill, then
    /// the bridge bolus (if any) is started.
    NewDrug {
        /// The bridge bolus, or `None` when the clinician chose none.
        bridge: Option<BridgeBolus>,
    },
}

/// A checked refill, to be shown and confirmed, then [`execute`]d.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefillPlan {
    /// The revision in force (the refill is recorded only if it still is).
    pub expected: Revision,
    /// Reservoir volume now.
    pub volume_before: Nanolitres,
    /// Reservoir volume after the refill.
    pub volume: Nanolitres,
    /// The prescription in force.
    pub old: Prescription,
    /// The prescription given with the refill.
    pub new: Option<Prescription>,
    /// In force vs new, projected from the refilled volume (with a prescription only).
    pub comparison: Option<Comparison>,
    /// What happens to the prescription.
    pub change: Change,
    /// The aspirated volume against the expected one (when measured).
    pub aspiration: Option<Aspiration>,
    /// What the clinician must confirm knowingly.
    pub warnings: Vec<RefillWarning>,
}

impl RefillPlan {
    /// Whether a new prescription is stored with the refill.
    pub fn writes_prescription(&self) -> bool {
        matches!(self.change, Change::SameDrug | Change::NewDrug { .. })
    }

    /// The bridge bolus started after the refill.
    pub fn bridge(&self) -> Option<&BridgeBolus> {
        match &self.change {
            Change::NewDrug { bridge } => bridge.as_ref(),
            _ => None,
        }
    }
}

/// Why the inputs make no refill (nothing was sent). Each names the input at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefillPlanError {
    /// `bridge`: a drug or concentration change needs a bridge choice (a volume, or
    /// none).
    #[error("a drug or concentration change needs a bridge bolus volume, or no bridge bolus")]
    BridgeNeeded,
    /// `bridge`: the volume would take more than a day at the current flow (or the flow
    /// is zero).
    #[error("a bridge bolus of {} at the current flow {} would take more than a day",
        crate::quantity::volume(*.volume), crate::quantity::flow(*.flow))]
    BridgeTooLong {
        /// The volume asked for.
        volume: Nanolitres,
        /// The flow in force.
        flow: NanolitresPerDay,
    },
    /// `bridge`: given without a drug or concentration change.
    #[error("a bridge bolus choice is only for a drug or concentration change")]
    BridgeWithoutDrugChange,
    /// `volume`: less than [`MIN_REFILL`] (`0 mL` included).
    #[error("a refill of {} would leave the reservoir empty and halt delivery; give the volume \
        in the reservoir after the refill (at least {})",
        crate::quantity::volume(*.volume), crate::quantity::volume(MIN_REFILL))]
    VolumeTooSmall {
        /// The volume given.
        volume: Nanolitres,
    },
}

/// Plans the refill of `inputs` on the pump as `current` shows it.
pub fn plan(current: &Current, inputs: RefillInputs) -> Result<RefillPlan, RefillPlanError> {
    if inputs.volume < MIN_REFILL {
        return Err(RefillPlanError::VolumeTooSmall {
            volume: inputs.volume,
        });
    }
    let record = &current.record;
    // The projection after the refill: the new volume from now. A halt for an empty
    // reservoir ends with the refill (and if the pump was also stopped, running is the
    // earlier date: every prescribed flow is at least the minimum).
    let state = current.reservoir_state();
    let therapy = match state.therapy {
        TherapyState::Halted(AlarmKind::EmptyReservoir) => TherapyState::Running,
        other => other,
    };
    let refilled = thecal_protocol::projection::ReservoirState {
        volume: inputs.volume,
        therapy,
        ..state
    };
    let comparison = inputs
        .prescription
        .as_ref()
        .map(|new| Comparison::new(record, new, Some(refilled)));
    let change = match (&comparison, inputs.bridge) {
        (Some(c), bridge) if c.changes_drug() => Change::NewDrug {
            bridge: bridge_bolus(bridge, current.status.basal_flow)?,
        },
        (_, Some(_)) => return Err(RefillPlanError::BridgeWithoutDrugChange),
        (Some(c), None) if c.is_unchanged() => Change::Unchanged,
        (Some(_), None) => Change::SameDrug,
        (None, None) => Change::RefillOnly,
    };
    let mut warnings = Vec::new();
    let expected = current.status.reservoir;
    let aspiration = inputs.aspirated.map(|a| Aspiration::new(expected, a));
    if let Some((aspiration, discrepancy)) =
        aspiration.and_then(|a| a.discrepancy().map(|d| (a, d)))
    {
        warnings.push(RefillWarning::AspiratedDiscrepancy {
            aspiration,
            discrepancy,
        });
    }
    if inputs.volume.0 < expected.0 / 2 {
        warnings.push(RefillWarning::FarBelowExpected {
            volume: inputs.volume,
            expected,
        });
    }
    if let Some(capacity) = inputs.capacity.filter(|c| inputs.volume > *c) {
        warnings.push(RefillWarning::AboveCapacity {
            volume: inputs.volume,
            capacity,
        });
    }
    if let (Change::NewDrug { bridge: Some(b) }, Some(new)) = (&change, &inputs.prescription) {
        warnings.extend(bridge_warning(current, &record.prescription, new, b.volume));
    }
    Ok(RefillPlan {
        expected: record.revision,
        volume_before: current.status.reservoir,
        volume: inputs.volume,
        old: record.prescription.clone(),
        new: inputs.prescription,
        comparison,
        change,
        aspiration,
        warnings,
    })
}

/// What a bridge of `volume` of the `old` solution counts in the rolling window of the
/// `new` one, as the pump counts it: up to [`BRIDGE_OLD_MAX`] as the old solution
/// (nothing for another drug, rescaled and rounded up for another concentration of the
/// same drug), the rest as the new solution.
pub fn bridge_counted(old: &Prescription, new: &Prescription, volume: Nanolitres) -> Nanograms {
    let as_old = volume.0.min(BRIDGE_OLD_MAX.0);
    let mass = if old.drug() == new.drug() {
        (u64::from(as_old) * u64::from(old.concentration().0)).div_ceil(1_000_000)
    } else {
        0
    };
    let rest =
        (u64::from(volume.0 - as_old) * u64::from(new.concentration().0)).div_ceil(1_000_000);
    Nanograms(u32::try_from(mass + rest).unwrap_or(u32::MAX))
}

/// The warning when bridge, basal and every allowed bolus of the first 24 h under `new`
/// reach its daily limit.
fn bridge_warning(
    current: &Current,
    old: &Prescription,
    new: &Prescription,
    volume: Nanolitres,
) -> Option<RefillWarning> {
    let bridge = bridge_counted(old, new, volume);
    let cycle = new.cycle();
    let (minute, _) = local_week_position(current.status.now, current.status.offset);
    // Rounded down by the cycle: one more ng keeps the comparison on the warning side.
    let basal = cycle.window_total(minute % cycle.minutes().max(1)) + 1;
    let boluses = new
        .patient_bolus()
        .map_or(0, |r| u64::from(r.dose.0) * u64::from(r.max_per_day));
    let limit = new.daily_limit();
    let total = u64::from(bridge.0) + basal + boluses;
    (bridge.0 > 0 && total > u64::from(limit.0)).then(|| RefillWarning::BridgeReachesLimit {
        bridge,
        basal: Nanograms(u32::try_from(basal).unwrap_or(u32::MAX)),
        boluses: Nanograms(u32::try_from(boluses).unwrap_or(u32::MAX)),
        limit,
    })
}

fn bridge_bolus(
    choice: Option<Bridge>,
    flow: NanolitresPerDay,
) -> Result<Option<BridgeBolus>, RefillPlanError> {
    match choice {
        None => Err(RefillPlanError::BridgeNeeded),
        Some(Bridge::None) => Ok(None),
        Some(Bridge::Volume(volume)) => {
            let duration = bridge_minutes(volume, flow)
                .ok_or(RefillPlanError::BridgeTooLong { volume, flow })?;
            Ok(Some(BridgeBolus {
                volume,
                duration,
                flow,
            }))
        }
    }
}

/// Minutes to deliver `volume` at `flow`, rounded up; `None` if the flow is zero or it
/// would take more than a day.
pub fn bridge_minutes(volume: Nanolitres, flow: NanolitresPerDay) -> Option<Minutes> {
    if flow.0 == 0 {
        return None;
    }
    let m = (u64::from(volume.0) * 1_440).div_ceil(u64::from(flow.0));
    u16::try_from(m)
        .ok()
        .filter(|m| (1..=1_440).contains(m))
        .map(Minutes)
}

/// A recorded refill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefillOutcome {
    /// The revision in force after the refill.
    pub revision: Revision,
    /// The reservoir after the refill.
    pub reservoir: ReservoirReport,
    /// Whether a new prescription was stored (and read back identical).
    pub prescription_written: bool,
    /// The bridge bolus started.
    pub bridge_bolus: Option<BolusReport>,
}

/// Why a refill did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefillError {
    /// The plan contradicts itself (a prescription change without a prescription, or a
    /// prescription without a change): it was not
    /// made by [`plan`], or was changed after. Nothing was sent.
    #[error("the refill plan contradicts itself; nothing was sent (plan it again)")]
    Inconsistent,
    /// The refill alone failed (refused, or its outcome is uncertain: see the error).
    #[error(transparent)]
    Refill(Error),
    /// The refill with the new prescription was not confirmed (refused, uncertain, or
    /// the read-back differs); no bridge bolus was started.
    #[error("the refill with the new prescription was not confirmed{}",
        if *.bridge_skipped { "; no bridge bolus was started" } else { "" })]
    PrescriptionNotConfirmed {
        /// Whether the plan had a bridge bolus (which was not started).
        bridge_skipped: bool,
        /// Why.
        #[source]
        source: Error,
    },
    /// The refill is recorded, but the bridge bolus was not started.
    #[error("the refill is recorded, but the bridge bolus was not started")]
    BridgeNotStarted {
        /// The refill as recorded.
        recorded: Box<RefillOutcome>,
        /// Why the bolus was not started.
        #[source]
        source: Error,
    },
}

/// Records the refill of `plan` (the prescription read back and compared), then starts
/// its bridge bolus.
pub async fn execute<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    plan: &RefillPlan,
) -> Result<RefillOutcome, RefillError> {
    // What was confirmed is what is sent: a plan whose parts disagree sends nothing.
    if plan.writes_prescription() != plan.new.is_some() {
        return Err(RefillError::Inconsistent);
    }
    let draft = plan
        .new
        .as_ref()
        .filter(|_| plan.writes_prescription())
        .map(|p| p.draft().clone());
    let (revision, reservoir) = match draft {
        Some(draft) => {
            let (written, reservoir) = client
                .refill_and_verify(plan.expected, plan.volume, draft)
                .await
                .map_err(|source| RefillError::PrescriptionNotConfirmed {
                    bridge_skipped: plan.bridge().is_some(),
                    source,
                })?;
            (written.revision, reservoir)
        }
        None => client
            .refill(plan.expected, plan.volume, None)
            .await
            .map_err(RefillError::Refill)?,
    };
    let mut outcome = RefillOutcome {
        revision,
        reservoir,
        prescription_written: plan.writes_prescription(),
        bridge_bolus: None,
    };
    if let Some(bridge) = plan.bridge() {
        match client.bolus(bridge.request()).await {
            Ok(bolus) => outcome.bridge_bolus = Some(bolus),
            Err(source) => {
                return Err(RefillError::BridgeNotStarted {
                    recorded: Box::new(outcome),
                    source,
                })
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
pub(crate) mod tests;
