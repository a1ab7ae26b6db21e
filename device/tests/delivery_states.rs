//! What a clinician must be able to see about delivery (issue 15, items 5 and 6): a
//! bridge bolus counted as the drug it really delivers, basal withheld by the daily
//! limit (status, alarm, log), a halted pump and since when, and how every bolus ends
//! (completed, cancelled, stopped, halted, cut by a reset).

mod common;

use common::*;
use thecal_device::pump::Pump;
use thecal_device::store::{FlashStore, Storage};
use thecal_device::therapy::battery::BatteryConfig;
use thecal_device::therapy::motor::{CountingMotor, STROKE_NL};
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{
    AlarmKind, BolusEnd, BolusKind, BolusOutcome, BolusRequest, Event, LogEntry, Refusal, Request,
    ResetCause, Response, Revision, Role, StatusReport, TherapyState, MAX_LOG_PAGE,
};
use thecal_protocol::prescription::{PrescriptionDraft, TherapyMode};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};

/// Every event the pump's log holds.
fn events(pump: &mut TestPump) -> Vec<Event> {
    let mut out = Vec::new();
    let mut first = 0;
    loop {
        let mut page = heapless::Vec::<LogEntry, MAX_LOG_PAGE>::new();
        let bounds = pump
            .storage_mut()
            .read_log(first, MAX_LOG_PAGE, &mut page)
            .unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        first = last.index + 1;
        out.extend(page.iter().map(|e| e.event));
        if first >= bounds.next {
            return out;
        }
    }
}

fn status(pump: &mut TestPump, now: Timestamp) -> StatusReport {
    match pump.handle(now, &Request::Status) {
        Response::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

fn bolus_ends(pump: &mut TestPump) -> Vec<BolusOutcome> {
    events(pump)
        .into_iter()
        .filter_map(|e| match e {
            Event::BolusEnded(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// Ziconotide 25 µg/mL, 3 µg/day continuous (0.12 mL/day), hard limit 4.8 µg/day
/// (0.192 mL/day): the new prescription.
fn ziconotide() -> PrescriptionDraft {
    PrescriptionDraft {
        drug: Drug::Ziconotide,
        concentration: NanogramsPerMillilitre::from_ug_per_ml(25),
        daily_limit: NanogramsPerDay(4_800),
        mode: TherapyMode::Continuous {
            dose: NanogramsPerDay(3_000),
        },
        patient_bolus: None,
        low_reservoir_alarm: Nanolitres::from_ml(3),
    }
}

/// A baclofen pump (500 µg/mL, 200 µg/day = 0.4 mL/day) refilled with `draft` at
/// `BOOT + 1 h`.
fn refilled(draft: PrescriptionDraft) -> (TestPump, Timestamp) {
    let mut pump = boot(continuous(200), Nanolitres::from_ml(10));
    let at = BOOT.plus_ms(HOUR);
    run_until(&mut pump, at);
    let answer = pump.handle(
        at,
        &Request::Refill {
            expected: Revision(1),
            volume: Nanolitres::from_ml(20),
            prescription: Some(draft),
        },
    );
    assert!(matches!(answer, Response::Refilled { .. }), "{answer:?}");
    (pump, at)
}

fn bridge(ml_tenths: u32, minutes: u16) -> Request {
    Request::ClinicianBolus(BolusRequest::Bridge {
        volume: Nanolitres(ml_tenths * 100_000),
        duration: Minutes(minutes),
    })
}

fn single(dose: Nanograms, minutes: u16) -> Request {
    Request::ClinicianBolus(BolusRequest::Single {
        dose,
        duration: Minutes(minutes),
    })
}

#[test]
fn a_bridge_of_old_drug_does_not_fill_the_new_drugs_window() {
    // The issue: baclofen -> ziconotide with a 0.1 mL bridge at the old rate (6 h).
    let (mut pump, at) = refilled(ziconotide());
    let answer = pump.handle(at, &bridge(1, 360));
    assert!(matches!(answer, Response::BolusStarted(_)), "{answer:?}");
    let strokes = pump.motor().strokes;
    run_until(&mut pump, at.plus_ms(2 * DAY));
    // Every stroke delivered: the 400 of the bridge and two days of basal (960).
    let delivered = pump.motor().strokes - strokes;
    assert!((1_358..=1_361).contains(&delivered), "{delivered} strokes");
    // The window counts only the new drug: a day of basal, 0.12 mL (+ a bucket).
    let window = pump.window_total(at.plus_ms(2 * DAY));
    assert!(window <= 125_000, "{window} nL of ziconotide counted");
    // All 0.1 mL of the bridge went out as the old solution; it is forgotten now.
    assert_eq!(pump.old_solution_delivered(), 100_000);
    assert_eq!(pump.old_solution(), None);
    let ev = events(&mut pump);
    assert!(!ev.contains(&Event::BasalWithheld), "{ev:?}");
    assert!(!ev.contains(&Event::AlarmRaised(AlarmKind::DeliveryWithheld)));
    assert_eq!(
        bolus_ends(&mut pump),
        [BolusOutcome {
            kind: BolusKind::Bridge,
            end: BolusEnd::Completed,
            delivered: Nanolitres(100_000),
            planned: Nanolitres(100_000),
        }]
    );
    // The bridge used the old solution up: a second bridge counts as ziconotide
    // (2.5 µg on top of a day of basal, 3 µg, is more than the 4.8 µg limit).
    let later = at.plus_ms(2 * DAY);
    match pump.handle(later, &bridge(1, 60)) {
        Response::Refused(Refusal::DailyLimit { requested, .. }) => {
            assert_eq!(requested, Nanograms(2_500))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bridge_of_another_strength_counts_rescaled_and_no_more_than_the_old_volume() {
    // Baclofen 500 -> 1 000 µg/mL: 0.1 mL of the old solution is 50 µg, 0.05 mL now.
    let mut stronger = draft(TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(200),
    });
    stronger.concentration = NanogramsPerMillilitre::from_ug_per_ml(1_000);
    let (mut pump, at) = refilled(stronger);
    let before = pump.window_total(at);
    assert!(matches!(
        pump.handle(at, &bridge(1, 10)),
        Response::BolusStarted(_)
    ));
    run_until(&mut pump, at.plus_ms(10 * 60_000));
    let counted = pump.window_total(at.plus_ms(10 * 60_000)) - before;
    // 50 000 nL for the bridge, a few strokes of basal (0.2 mL/day, 10 min: 5-6).
    assert!((50_000..=50_000 + 7 * 250).contains(&counted), "{counted}");

    // Another drug: at most OLD_SOLUTION_MAX_NL of a bridge counts as the old drug.
    let (mut pump, at) = refilled(ziconotide());
    assert!(matches!(
        pump.handle(at, &bridge(6, 1_440)),
        Response::BolusStarted(_)
    ));
    run_until(&mut pump, at.plus_ms(DAY));
    let counted = pump.window_total(at.plus_ms(DAY));
    // 0.6 mL asked: 0.1 mL beyond the old volume counts as ziconotide, with the basal.
    assert!(counted >= 100_000, "{counted}");
}

#[test]
fn withheld_basal_is_visible_in_status_alarm_and_log() {
    // The bridge's old accounting, in effect: 2.5 µg of ziconotide (0.1 mL) over 6 h
    // after the refill, then basal. The limit fills about 18 h later.
    let (mut pump, at) = refilled(ziconotide());
    let answer = pump.handle(at, &single(Nanograms(2_500), 360));
    assert!(matches!(answer, Response::BolusStarted(_)), "{answer:?}");
    let t = at.plus_ms(21 * HOUR);
    run_until(&mut pump, t);
    let s = status(&mut pump, t);
    assert_eq!(s.therapy, TherapyState::Running);
    let withheld = s.withheld.expect("withheld shown in the status");
    assert!(withheld.since < s.now && withheld.volume.0 >= STROKE_NL);
    assert!(s.critical);
    assert!(pump.alarm_active(AlarmKind::DeliveryWithheld));
    let ev = events(&mut pump);
    let at_withheld = ev.iter().position(|e| *e == Event::BasalWithheld);
    let raised = ev
        .iter()
        .position(|e| *e == Event::AlarmRaised(AlarmKind::DeliveryWithheld));
    assert!(at_withheld.is_some() && raised > at_withheld, "{ev:?}");

    // It survives a reset.
    let mut pump = reboot(pump, t);
    assert!(status(&mut pump, t).withheld.is_some());
    assert!(pump.alarm_active(AlarmKind::DeliveryWithheld));

    // Once the bolus leaves the window, basal resumes: logged with what was held back.
    let t = at.plus_ms(32 * HOUR);
    run_until(&mut pump, t);
    assert_eq!(status(&mut pump, t).withheld, None);
    assert!(!pump.alarm_active(AlarmKind::DeliveryWithheld));
    let ev = events(&mut pump);
    let resumed = ev.iter().find_map(|e| match e {
        Event::BasalResumed { withheld } => Some(*withheld),
        _ => None,
    });
    assert!(resumed.is_some_and(|v| v.0 >= withheld.volume.0), "{ev:?}");
    assert!(ev.contains(&Event::AlarmCleared(AlarmKind::DeliveryWithheld)));
}

#[test]
fn the_old_solution_survives_a_reset_between_the_refill_and_the_bridge() {
    let (pump, at) = refilled(ziconotide());
    let mut pump = reboot(pump, at.plus_ms(60_000));
    let t = at.plus_ms(60_000);
    assert!(matches!(
        pump.handle(t, &bridge(1, 360)),
        Response::BolusStarted(_)
    ));
    run_until(&mut pump, t.plus_ms(7 * HOUR));
    // Seven hours of ziconotide basal (35 µL) and the boot's reservation, no bridge.
    let counted = pump.window_total(t.plus_ms(7 * HOUR));
    assert!(counted < 60_000, "{counted} nL counted");
}

fn reboot(pump: TestPump, now: Timestamp) -> TestPump {
    let mut flash = pump.into_storage().into_inner();
    flash.reboot();
    Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(200), Nanolitres::from_ml(10)),
        FlashStore::new(flash).unwrap(),
        CountingMotor::default(),
        now,
        ResetCause::Watchdog,
    )
}

#[test]
fn a_motor_stall_shows_since_when_delivery_is_halted() {
    let motor = CountingMotor {
        strokes: 0,
        stall_after: Some(100),
    };
    let mut pump = Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(200), Nanolitres::from_ml(10)),
        blank_store(),
        motor,
        BOOT,
        ResetCause::PowerOn,
    );
    assert_eq!(status(&mut pump, BOOT).halted_since, None);
    // 0.4 mL/day: 1 600 strokes a day, the 101st after about 1.5 h.
    let t = BOOT.plus_ms(3 * HOUR);
    run_until(&mut pump, t);
    let s = status(&mut pump, t);
    assert_eq!(s.therapy, TherapyState::Halted(AlarmKind::MotorStall));
    let since = s.halted_since.expect("halted_since");
    let stall = MONDAY.plus_ms(101 * 54_000);
    assert!(
        since >= stall && since <= stall.plus_ms(60_000),
        "halted since {since:?}"
    );
    // Still the same instant later (it is not the time of the question).
    run_until(&mut pump, t.plus_ms(HOUR));
    assert_eq!(status(&mut pump, t.plus_ms(HOUR)).halted_since, Some(since));
}

#[test]
fn a_bolus_halted_by_a_stall_is_logged_as_halted() {
    let motor = CountingMotor {
        strokes: 0,
        stall_after: Some(50),
    };
    let mut pump = Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(200), Nanolitres::from_ml(10)),
        blank_store(),
        motor,
        BOOT,
        ResetCause::PowerOn,
    );
    assert!(matches!(
        pump.handle(BOOT, &single(Nanograms::from_ug(100), 60)),
        Response::BolusStarted(_)
    ));
    run_until(&mut pump, BOOT.plus_ms(2 * HOUR));
    let ends = bolus_ends(&mut pump);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].end, BolusEnd::Halted(AlarmKind::MotorStall));
    assert!(ends[0].delivered.0 < ends[0].planned.0);
    assert!(status(&mut pump, BOOT.plus_ms(2 * HOUR)).bolus.is_none());
}

#[test]
fn a_reset_during_a_bolus_logs_it_interrupted_and_the_limit_still_counts_it() {
    // 500 µg over 2 h (1 mL of the 2 mL limit); a reset after 30 min.
    let mut pump = boot(continuous(200), Nanolitres::from_ml(10));
    assert!(matches!(
        pump.handle(BOOT, &single(Nanograms::from_ug(500), 120)),
        Response::BolusStarted(_)
    ));
    let t = BOOT.plus_ms(HOUR / 2);
    run_until(&mut pump, t);
    let motor_nl = motor_nl(&pump);
    let mut pump = reboot(pump, t.plus_ms(1));
    let ends = bolus_ends(&mut pump);
    assert_eq!(ends.len(), 1, "{ends:?}");
    let end = ends[0];
    assert_eq!(end.end, BolusEnd::Interrupted);
    assert_eq!(end.planned, Nanolitres::from_ml(1));
    assert!(end.delivered <= end.planned);
    // An upper bound: at least what the motor delivered of the bolus (a quarter).
    assert!(end.delivered.0 >= 250_000 - STROKE_NL, "{end:?}");
    // The reset ended it; the whole bolus is still counted against the limit.
    assert!(status(&mut pump, t.plus_ms(1)).bolus.is_none());
    assert!(pump.window_total(t.plus_ms(1)) >= 1_000_000);
    assert!(pump.window_total(t.plus_ms(1)) >= motor_nl);
    match pump.handle(t.plus_ms(1), &single(Nanograms::from_ug(500), 60)) {
        Response::Refused(Refusal::DailyLimit { .. }) => {}
        other => panic!("{other:?}"),
    }
    // The next boot finds no bolus left to log.
    let mut pump = reboot(pump, t.plus_ms(2));
    assert_eq!(bolus_ends(&mut pump).len(), 1);
}

#[test]
fn cancel_returns_what_was_delivered_logs_it_and_releases_the_rest() {
    let mut pump = boot(continuous(200), Nanolitres::from_ml(10));
    assert_eq!(
        pump.handle(BOOT, &Request::CancelBolus),
        Response::Refused(Refusal::NoBolus)
    );
    assert!(matches!(
        pump.handle(BOOT, &single(Nanograms::from_ug(500), 120)),
        Response::BolusStarted(_)
    ));
    let t = BOOT.plus_ms(HOUR / 2);
    run_until(&mut pump, t);
    let outcome = match pump.handle_as(t, Role::Emergency, &Request::CancelBolus) {
        Response::BolusCancelled(o) => o,
        other => panic!("{other:?}"),
    };
    // A quarter of 4 000 strokes in 30 min.
    assert_eq!(outcome.kind, BolusKind::Single);
    assert_eq!(
        outcome.end,
        BolusEnd::Cancelled {
            by: Role::Emergency
        }
    );
    assert_eq!(outcome.delivered, Nanolitres(250_000));
    assert_eq!(outcome.planned, Nanolitres::from_ml(1));
    assert_eq!(bolus_ends(&mut pump), [outcome]);
    // Nothing more of it is delivered.
    let strokes = pump.motor().strokes;
    run_until(&mut pump, t.plus_ms(HOUR));
    assert!(pump.motor().strokes - strokes <= 70, "only basal");
    // The window counts what was delivered, also after a reset: not the released rest.
    let now = t.plus_ms(HOUR);
    let counted = pump.window_total(now);
    assert!(counted >= motor_nl(&pump), "{counted}");
    let pump_nl = motor_nl(&pump);
    let mut pump = reboot(pump, now);
    let after = pump.window_total(now);
    assert!(after >= pump_nl, "{after} < {pump_nl}");
    assert!(
        after <= pump_nl + u64::from(thecal_device::pump::RESERVE_NL),
        "{after}"
    );
    // So the released volume may be given again within the limit.
    assert!(matches!(
        pump.handle(now, &single(Nanograms::from_ug(350), 60)),
        Response::BolusStarted(_)
    ));
    // A second cancel of nothing is refused.
    run_until(&mut pump, now.plus_ms(2 * HOUR));
    assert_eq!(
        pump.handle(now.plus_ms(2 * HOUR), &Request::CancelBolus),
        Response::Refused(Refusal::NoBolus)
    );
}

#[test]
fn stop_therapy_ends_the_bolus_and_logs_it_stopped() {
    let mut pump = boot(continuous(200), Nanolitres::from_ml(10));
    assert!(matches!(
        pump.handle(BOOT, &single(Nanograms::from_ug(100), 60)),
        Response::BolusStarted(_)
    ));
    let t = BOOT.plus_ms(HOUR / 2);
    run_until(&mut pump, t);
    assert_eq!(
        pump.handle(t, &Request::StopTherapy),
        Response::TherapyStopped
    );
    let ends = bolus_ends(&mut pump);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].end, BolusEnd::Stopped);
    assert_eq!(ends[0].delivered, Nanolitres(100_000));
    let ev = events(&mut pump);
    let stopped = ev
        .iter()
        .position(|e| matches!(e, Event::TherapyStopped { .. }));
    let ended = ev.iter().position(|e| matches!(e, Event::BolusEnded(_)));
    assert!(stopped < ended, "{ev:?}");
}

#[test]
fn a_bolus_that_completed_before_a_reset_is_not_logged_again() {
    let mut pump = boot(continuous(200), Nanolitres::from_ml(10));
    assert!(matches!(
        pump.handle(BOOT, &single(Nanograms::from_ug(10), 10)),
        Response::BolusStarted(_)
    ));
    let t = BOOT.plus_ms(HOUR / 2);
    run_until(&mut pump, t);
    let mut pump = reboot(pump, t);
    let ends = bolus_ends(&mut pump);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].end, BolusEnd::Completed);
    assert_eq!(ends[0].delivered, Nanolitres(20_000));
}

#[test]
fn halted_since_survives_a_reset_while_the_cause_remains() {
    // 20 µL at 0.4 mL/day: empty after about 72 min.
    let mut pump = boot(continuous(200), Nanolitres(20_000));
    let t = BOOT.plus_ms(2 * HOUR);
    run_until(&mut pump, t);
    let s = status(&mut pump, t);
    assert_eq!(s.therapy, TherapyState::Halted(AlarmKind::EmptyReservoir));
    let since = s.halted_since.expect("halted_since");
    assert!(since < s.now);
    let mut pump = reboot(pump, t.plus_ms(HOUR));
    let s = status(&mut pump, t.plus_ms(HOUR));
    assert_eq!(s.therapy, TherapyState::Halted(AlarmKind::EmptyReservoir));
    assert_eq!(s.halted_since, Some(since));
    // A refill ends the halt: no longer halted, no halted_since.
    assert!(matches!(
        pump.handle(
            t.plus_ms(HOUR),
            &Request::Refill {
                expected: Revision(1),
                volume: Nanolitres::from_ml(20),
                prescription: None,
            }
        ),
        Response::Refilled { .. }
    ));
    let s = status(&mut pump, t.plus_ms(HOUR));
    assert_eq!((s.therapy, s.halted_since), (TherapyState::Running, None));
}
