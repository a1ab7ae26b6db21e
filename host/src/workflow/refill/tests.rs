use super::*;
use thecal_protocol::message::{BatteryState, PrescriptionRecord, StatusReport};
use thecal_protocol::time::{Timestamp, UtcOffset};

pub(crate) const BACLOFEN: &str =
    include_str!("../../../../examples/schedules/flexible-baclofen-day.toml");
pub(crate) const MORPHINE: &str =
    include_str!("../../../../examples/schedules/continuous-morphine.toml");

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

const ZICONOTIDE: &str = include_str!("../../../../examples/schedules/weekday-ziconotide.toml");

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
