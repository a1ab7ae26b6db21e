//! A refill: the new volume; with a schedule, the prescription stored with it; with a
//! new drug or concentration, the bridge bolus that delivers the old drug still in the
//! pump and catheter at the old rate.
//!
//! [`plan`] decides everything from the inputs and [`Current`] (nothing is sent);
//! [`execute`] records the refill (with the prescription, read back), then starts the
//! bridge bolus.

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::{
    AlarmKind, BolusReport, BolusRequest, ReservoirReport, Revision, TherapyState,
};
use thecal_protocol::units::{Minutes, Nanolitres, NanolitresPerDay};
use thecal_protocol::Prescription;

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
}

/// Plans the refill of `inputs` on the pump as `current` shows it.
pub fn plan(current: &Current, inputs: RefillInputs) -> Result<RefillPlan, RefillPlanError> {
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
    Ok(RefillPlan {
        expected: record.revision,
        volume_before: current.status.reservoir,
        volume: inputs.volume,
        old: record.prescription.clone(),
        new: inputs.prescription,
        comparison,
        change,
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
pub(super) mod tests {
    use super::*;
    use thecal_protocol::message::{BatteryState, PrescriptionRecord, StatusReport};
    use thecal_protocol::time::{Timestamp, UtcOffset};
    use thecal_protocol::units::{Nanograms, NanogramsPerDay};

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
