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
pub(crate) mod tests {
    use super::*;
    use thecal_protocol::message::{BatteryState, PrescriptionRecord, StatusReport};
    use thecal_protocol::time::{Timestamp, UtcOffset};

    pub(crate) const BACLOFEN: &str =
        include_str!("../../../examples/schedules/flexible-baclofen-day.toml");
    pub(crate) const MORPHINE: &str =
        include_str!("../../../examples/schedules/continuous-morphine.toml");

    pub(crate) fn prescription(text: &str) -> Prescription {
        crate::schedule::parse("p.toml", text).unwrap()
    }

    pub(crate) fn current(flow: u32) -> Current {
        let p = prescription(BACLOFEN);
        Current {
            status: StatusReport {
                now: Timestamp(1_000_000),
                offset: UtcOffset(0),
                therapy: TherapyState::Running,
                revision: Revision(4),
                drug: p.drug(),
                basal_dose: NanogramsPerDay(150_000),
                basal_flow: NanolitresPerDay(flow),
                delivered_24h: Nanograms(0),
                daily_limit: NanogramsPerDay(300_000),
                reservoir: Nanolitres(3_000_000),
                battery: BatteryState::Ok,
                alarms: 0,
                critical: false,
                bolus: None,
                halted_since: None,
                withheld: None,
                standing: Default::default(),
                low_at: None,
                empty_at: None,
            },
            record: PrescriptionRecord {
                revision: Revision(4),
                written_at: Timestamp(0),
                prescription: p,
                standing: Default::default(),
            },
        }
    }

    fn inputs(text: Option<&str>, bridge: Option<Bridge>) -> RefillInputs {
        RefillInputs {
            volume: Nanolitres(20_000_000),
            prescription: text.map(prescription),
            bridge,
            aspirated: None,
            capacity: Some(Nanolitres(40_000_000)),
        }
    }

    #[test]
    fn a_refill_alone_or_with_the_prescription_in_force_writes_nothing() {
        let c = current(300_000);
        let plan = plan(&c, inputs(None, None)).unwrap();
        assert_eq!(plan.change, Change::RefillOnly);
        assert_eq!(
            (plan.expected, plan.volume_before),
            (Revision(4), Nanolitres(3_000_000))
        );
        assert!(plan.comparison.is_none() && !plan.writes_prescription());
        let plan = plan_of(&c, Some(BACLOFEN), None);
        assert_eq!(plan.change, Change::Unchanged);
        assert!(plan.comparison.is_some() && !plan.writes_prescription());
        // A bridge choice without a drug change is refused, naming it.
        for bridge in [Bridge::None, Bridge::Volume(Nanolitres(1))] {
            assert_eq!(
                super::plan(&c, inputs(Some(BACLOFEN), Some(bridge))),
                Err(RefillPlanError::BridgeWithoutDrugChange)
            );
        }
    }

    fn plan_of(c: &Current, text: Option<&str>, bridge: Option<Bridge>) -> RefillPlan {
        plan(c, inputs(text, bridge)).unwrap()
    }

    #[tokio::test]
    async fn a_plan_changed_after_planning_sends_nothing() {
        let other = BACLOFEN.replace("300 µg/day", "350 µg/day");
        let mut changed = plan_of(&current(300_000), Some(&other), None);
        changed.new = None; // a prescription change without its prescription
        let (ours, mut pump) = tokio::io::duplex(4096);
        let mut client = Client::new(ours, crate::ClientConfig::default());
        let e = execute(&mut client, &changed).await.unwrap_err();
        assert!(matches!(e, RefillError::Inconsistent), "{e:?}");
        let mut alone = plan_of(&current(300_000), None, None);
        alone.new = Some(prescription(&other)); // a prescription the plan does not write
        let e = execute(&mut client, &alone).await.unwrap_err();
        assert!(matches!(e, RefillError::Inconsistent), "{e:?}");
        drop(client);
        let mut sent = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut pump, &mut sent)
            .await
            .unwrap();
        assert!(sent.is_empty(), "{sent:?}");
    }

    #[test]
    fn a_refill_of_an_empty_halted_pump_projects_from_the_refill() {
        let mut c = current(300_000);
        c.status.therapy = TherapyState::Halted(AlarmKind::EmptyReservoir);
        c.status.reservoir = Nanolitres(100);
        let plan = plan_of(&c, Some(BACLOFEN), None);
        let new = plan.comparison.unwrap().new_projection.unwrap();
        assert!(new.low_at.is_some(), "the refill ends the halt: {new:?}");
        // Another halt does not end with a refill: no date while nothing drains.
        c.status.therapy = TherapyState::Halted(AlarmKind::MotorStall);
        let plan = plan_of(&c, Some(BACLOFEN), None);
        assert_eq!(
            plan.comparison.unwrap().new_projection.unwrap().low_at,
            None
        );
    }

    #[test]
    fn the_same_drug_goes_in_as_the_next_revision() {
        let other = BACLOFEN.replace("300 µg/day", "350 µg/day");
        let plan = plan_of(&current(300_000), Some(&other), None);
        assert_eq!(plan.change, Change::SameDrug);
        assert!(plan.writes_prescription() && plan.bridge().is_none());
    }

    #[test]
    fn a_new_drug_needs_a_bridge_choice_that_fits_in_a_day() {
        let c = current(500_000);
        assert_eq!(
            plan(&c, inputs(Some(MORPHINE), None)),
            Err(RefillPlanError::BridgeNeeded)
        );
        let none = plan_of(&c, Some(MORPHINE), Some(Bridge::None));
        assert_eq!(none.change, Change::NewDrug { bridge: None });
        let v = Nanolitres(250_000);
        let bridged = plan_of(&c, Some(MORPHINE), Some(Bridge::Volume(v)));
        let bolus = BridgeBolus {
            volume: v,
            duration: Minutes(720),
            flow: NanolitresPerDay(500_000),
        };
        assert_eq!(bridged.bridge(), Some(&bolus));
        assert!(bridged.writes_prescription());
        assert_eq!(
            bolus.request(),
            BolusRequest::Bridge {
                volume: v,
                duration: Minutes(720)
            }
        );
        let e = plan(
            &c,
            inputs(Some(MORPHINE), Some(Bridge::Volume(Nanolitres(600_000)))),
        );
        assert_eq!(
            e,
            Err(RefillPlanError::BridgeTooLong {
                volume: Nanolitres(600_000),
                flow: NanolitresPerDay(500_000)
            })
        );
    }

    const ZICONOTIDE: &str = include_str!("../../../examples/schedules/weekday-ziconotide.toml");

    #[test]
    fn an_empty_refill_is_refused_and_odd_volumes_are_warned_about() {
        let c = current(300_000);
        for v in [0, 249] {
            let mut i = inputs(None, None);
            i.volume = Nanolitres(v);
            assert_eq!(
                plan(&c, i),
                Err(RefillPlanError::VolumeTooSmall {
                    volume: Nanolitres(v)
                })
            );
        }
        let e = RefillPlanError::VolumeTooSmall {
            volume: Nanolitres(0),
        };
        assert!(e.to_string().contains("0 mL"), "{e}");
        // 1 mL when the pump expects 3 mL; 45 mL into a 40 mL reservoir.
        let mut i = inputs(None, None);
        i.volume = Nanolitres(1_000_000);
        assert_eq!(
            plan(&c, i).unwrap().warnings,
            [RefillWarning::FarBelowExpected {
                volume: Nanolitres(1_000_000),
                expected: Nanolitres(3_000_000)
            }]
        );
        let mut i = inputs(None, None);
        i.volume = Nanolitres(45_000_000);
        assert_eq!(
            plan(&c, i).unwrap().warnings,
            [RefillWarning::AboveCapacity {
                volume: Nanolitres(45_000_000),
                capacity: Nanolitres(40_000_000)
            }]
        );
        assert!(plan_of(&c, None, None).warnings.is_empty());
    }

    #[test]
    fn a_bridge_that_reaches_the_new_limit_in_the_first_day_is_warned_about() {
        // The issue: baclofen -> ziconotide with 0.1 mL of baclofen: the pump counts
        // none of it against ziconotide: no warning.
        let c = current(1_000_000);
        let small = plan_of(
            &c,
            Some(ZICONOTIDE),
            Some(Bridge::Volume(Nanolitres(100_000))),
        );
        assert!(small.warnings.is_empty(), "{:?}", small.warnings);
        // 0.6 mL: the 0.1 mL beyond the old volume counts as 2.5 µg of ziconotide, and
        // with a day of basal reaches 4.8 µg/day.
        let large = plan_of(
            &c,
            Some(ZICONOTIDE),
            Some(Bridge::Volume(Nanolitres(600_000))),
        );
        match large.warnings.as_slice() {
            [RefillWarning::BridgeReachesLimit { bridge, limit, .. }] => {
                assert_eq!(*bridge, Nanograms(2_500));
                assert_eq!(*limit, NanogramsPerDay(4_800));
            }
            other => panic!("{other:?}"),
        }
        // Baclofen 500 -> 1 000 µg/mL with 0.25 mL of the old solution: 125 µg, and
        // 191.7 µg of basal, is more than 300 µg/day.
        let stronger = BACLOFEN.replace("500 µg/mL", "1000 µg/mL");
        let p = plan_of(
            &c,
            Some(&stronger),
            Some(Bridge::Volume(Nanolitres(250_000))),
        );
        let text = p
            .warnings
            .first()
            .map(|w| w.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("WITHHOLD") && text.contains("125 µg"),
            "{text}"
        );
    }

    #[test]
    fn an_aspirated_volume_far_from_the_expected_one_is_flagged_before_anything_is_sent() {
        // The pump expects 3 mL; ±1 mL is tolerated.
        let c = current(300_000);
        let with = |aspirated: u32| {
            let mut i = inputs(None, None);
            i.aspirated = Some(Nanolitres(aspirated));
            plan(&c, i).unwrap()
        };
        let close = with(2_100_000);
        assert!(close.warnings.is_empty(), "{:?}", close.warnings);
        assert_eq!(close.aspiration.map(|a| a.difference()), Some(-900_000));
        let less = with(1_500_000);
        let text = less
            .warnings
            .first()
            .map(|w| w.to_string())
            .unwrap_or_default();
        assert!(
            matches!(
                less.warnings.first(),
                Some(RefillWarning::AspiratedDiscrepancy {
                    discrepancy: Discrepancy::Less,
                    ..
                })
            ) && text.contains("OVER-infusion")
                && text.contains("1.5 mL less than the 3 mL"),
            "{text}"
        );
        let more = with(4_500_000);
        let text = more
            .warnings
            .first()
            .map(|w| w.to_string())
            .unwrap_or_default();
        assert!(text.contains("UNDER-infusion"), "{text}");
        // Not measured: no aspiration, no warning.
        let none = plan(&c, inputs(None, None)).unwrap();
        assert!(none.aspiration.is_none() && none.warnings.is_empty());
    }

    #[test]
    fn bridge_duration_rounds_up_and_is_bounded() {
        // 0.25 mL at 0.5 mL/day = 12 h.
        assert_eq!(
            bridge_minutes(Nanolitres(250_000), NanolitresPerDay(500_000)),
            Some(Minutes(720))
        );
        // 1 nL at 1 mL/day: 0.00144 min -> 1 min.
        assert_eq!(
            bridge_minutes(Nanolitres(1), NanolitresPerDay(1_000_000)),
            Some(Minutes(1))
        );
        assert_eq!(
            bridge_minutes(Nanolitres(2_000_000), NanolitresPerDay(48_000)),
            None
        );
        assert_eq!(bridge_minutes(Nanolitres(1), NanolitresPerDay(0)), None);
    }
}
