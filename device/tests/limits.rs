//! The hard daily limit, patient-bolus rules and clock changes.

mod common;

use common::*;
use thecal_protocol::message::{BolusRequest, Refusal, Request, Response};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

/// Drives the pump, recording (device time, strokes) after every tick.
fn run_recording(pump: &mut TestPump, end: Timestamp, trace: &mut Vec<(Timestamp, u64)>) {
    loop {
        let wake = pump.next_wake().min(end);
        pump.tick(wake);
        trace.push((wake, pump.motor().strokes));
        if wake >= end {
            return;
        }
    }
}

/// Largest volume (nL) delivered in any 24 h window of the trace.
fn max_24h(trace: &[(Timestamp, u64)]) -> u64 {
    let mut worst = 0;
    let mut j = 0;
    for &(t, s) in trace {
        while trace[j].0.plus_ms(DAY) < t {
            j += 1;
        }
        // Strokes before the window start: the count at the last point before it.
        let before = if j == 0 { 0 } else { trace[j - 1].1 };
        worst = worst.max((s - before) * 250);
    }
    worst
}

fn single(ug: u32, minutes: u16) -> Request {
    Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms::from_ug(ug),
        duration: Minutes(minutes),
    })
}

#[test]
fn a_burst_of_boluses_stops_at_the_daily_limit() {
    // Limit 1000 µg/day = 2 mL/day at 500 µg/mL; basal 250 µg/day.
    let mut pump = boot(continuous(250), Nanolitres::from_ml(40));
    let mut trace = vec![(BOOT, 0)];
    let mut accepted = 0;
    let mut refused = None;
    let mut t = BOOT;
    for _ in 0..10 {
        match pump.handle(t, &single(200, 10)) {
            Response::BolusStarted(b) => {
                accepted += 1;
                assert_eq!(b.dose, Nanograms::from_ug(200));
            }
            Response::Refused(r) => {
                refused = Some(r);
                break;
            }
            other => panic!("{other:?}"),
        }
        t = t.plus_ms(11 * 60_000);
        run_recording(&mut pump, t, &mut trace);
    }
    // 4 boluses (800 µg) + about 5 µg of basal fit under 1000 µg; the 5th would pass
    // the limit only because the basal already delivered counts too.
    assert!(
        matches!(refused, Some(Refusal::DailyLimit { .. })),
        "{refused:?}"
    );
    assert_eq!(accepted, 4);
    run_recording(&mut pump, BOOT.plus_ms(3 * DAY), &mut trace);
    assert!(max_24h(&trace) <= pump.limit_nl());
}

#[test]
fn no_24h_window_exceeds_the_limit_whatever_is_requested() {
    // Pseudo-random clinician and patient boluses for 5 days, clock changes included.
    let mut pump = boot(flexible(), Nanolitres::from_ml(40));
    let mut trace = vec![(BOOT, 0)];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut t = BOOT;
    let mut accepted = 0;
    while t < BOOT.plus_ms(5 * DAY) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let request = match x % 4 {
            0 => single((x >> 8) as u32 % 300 + 1, (x >> 20) as u16 % 30 + 1),
            1 => Request::PatientBolus,
            2 => Request::SetClock {
                now: Timestamp(MONDAY.0 + (x >> 12) % (3 * DAY)),
                offset: UtcOffset(((x >> 40) % 1_200) as i16 - 600),
            },
            _ => Request::Status,
        };
        if matches!(
            pump.handle(t, &request),
            Response::BolusStarted(_) | Response::PatientBolusStarted(_)
        ) {
            accepted += 1;
        }
        t = t.plus_ms((x >> 24) % (3 * HOUR) + 1);
        run_recording(&mut pump, t, &mut trace);
    }
    assert!(accepted > 5, "the test must exercise boluses ({accepted})");
    assert!(
        max_24h(&trace) <= pump.limit_nl(),
        "{} > {}",
        max_24h(&trace),
        pump.limit_nl()
    );
}

#[test]
fn patient_bolus_lockout_and_daily_maximum() {
    // Rules: 50 µg, lockout 60 min, at most 3 per 24 h.
    let mut pump = boot(continuous(250), Nanolitres::from_ml(40));
    let min = 60_000;
    let at = |m: u64| BOOT.plus_ms(m * min);
    assert!(matches!(
        pump.handle(at(0), &Request::PatientBolus),
        Response::PatientBolusStarted(_)
    ));
    match pump.handle(at(30), &Request::PatientBolus) {
        Response::Refused(Refusal::PatientLockout { until }) => {
            assert_eq!(until, MONDAY.plus_ms(60 * min));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pump.handle(at(61), &Request::PatientBolus),
        Response::PatientBolusStarted(_)
    ));
    assert!(matches!(
        pump.handle(at(130), &Request::PatientBolus),
        Response::PatientBolusStarted(_)
    ));
    assert_eq!(
        pump.handle(at(300), &Request::PatientBolus),
        Response::Refused(Refusal::PatientDailyMaximum { max: 3 })
    );
    // Setting the clock a day ahead does not reset the count: it runs on device time.
    let set = Request::SetClock {
        now: MONDAY.plus_ms(2 * DAY),
        offset: UtcOffset(0),
    };
    assert!(matches!(
        pump.handle(at(301), &set),
        Response::ClockSet { .. }
    ));
    assert_eq!(
        pump.handle(at(302), &Request::PatientBolus),
        Response::Refused(Refusal::PatientDailyMaximum { max: 3 })
    );
    // 24 h after the first one, one is allowed again.
    run_until(&mut pump, at(24 * 60 + 1));
    assert!(matches!(
        pump.handle(at(24 * 60 + 1), &Request::PatientBolus),
        Response::PatientBolusStarted(_)
    ));
}

#[test]
fn setting_the_clock_never_catches_up_or_bursts() {
    // At 06:59 local (just before the 400 µg/day step), jump the clock forward 3 h to
    // 09:59 (the 250 µg/day step) and back again: the pump follows local time from the
    // change on, at the new step's rate; the skipped hours are not delivered.
    let mut pump = boot(flexible(), Nanolitres::from_ml(40));
    let t1 = BOOT.plus_ms(6 * HOUR + 59 * 60_000);
    run_until(&mut pump, t1);
    let before = pump.motor().strokes;
    let forward = Request::SetClock {
        now: MONDAY.plus_ms(9 * HOUR + 59 * 60_000),
        offset: UtcOffset(0),
    };
    assert!(matches!(
        pump.handle(t1, &forward),
        Response::ClockSet { .. }
    ));
    // One hour at 250 µg/day = 500 000 nL/day / 24 = 20 833 nL = 83 strokes (+1 carry).
    run_until(&mut pump, t1.plus_ms(HOUR));
    let hour_strokes = pump.motor().strokes - before;
    assert!((83..=84).contains(&hour_strokes), "{hour_strokes}");
    // Back by 5 h (to 05:59): the 150 µg/day night rate runs, no burst.
    let before = pump.motor().strokes;
    let back = Request::SetClock {
        now: MONDAY.plus_ms(5 * HOUR + 59 * 60_000),
        offset: UtcOffset(0),
    };
    let t2 = t1.plus_ms(HOUR);
    assert!(matches!(pump.handle(t2, &back), Response::ClockSet { .. }));
    run_until(&mut pump, t2.plus_ms(HOUR));
    let night = pump.motor().strokes - before;
    // 300 000 nL/day / 24 = 12 500 nL = 50 strokes.
    assert!((49..=51).contains(&night), "{night}");
}

#[test]
fn a_refused_bolus_changes_nothing() {
    let mut pump = boot(continuous(250), Nanolitres::from_ml(40));
    let status_before = pump.handle(BOOT, &Request::Status);
    // 2 mg is far above the 1 mg limit.
    let r = pump.handle(BOOT, &single(2_000, 120));
    assert!(
        matches!(r, Response::Refused(Refusal::DailyLimit { .. })),
        "{r:?}"
    );
    assert_eq!(pump.handle(BOOT, &Request::Status), status_before);
    run_until(&mut pump, BOOT.plus_ms(HOUR));
    // Only basal: 0.5 mL/day for an hour ≈ 83 strokes.
    assert!(pump.motor().strokes <= 84);
}

#[test]
fn the_limit_counts_drug_not_volume_across_a_concentration_change() {
    use thecal_protocol::drug::Drug;
    use thecal_protocol::message::Revision;
    use thecal_protocol::units::NanogramsPerMillilitre;
    // 800 µg of baclofen at 500 µg/mL (1.6 mL), then a refill at 2000 µg/mL: the same
    // 800 µg is now 0.4 mL of the new solution, and only 200 µg remain under the limit.
    let mut pump = boot(continuous(100), Nanolitres::from_ml(40));
    assert!(matches!(
        pump.handle(BOOT, &single(800, 60)),
        Response::BolusStarted(_)
    ));
    run_until(&mut pump, BOOT.plus_ms(2 * HOUR));
    let refill = Request::Refill {
        expected: Revision(1),
        volume: Nanolitres::from_ml(20),
        prescription: Some(with_drug(
            Drug::Baclofen,
            NanogramsPerMillilitre::from_ug_per_ml(2_000),
        )),
    };
    let t = BOOT.plus_ms(2 * HOUR);
    assert!(matches!(pump.handle(t, &refill), Response::Refilled { .. }));
    assert!(matches!(
        pump.handle(t, &single(250, 30)),
        Response::Refused(Refusal::DailyLimit { .. })
    ));
    assert!(matches!(
        pump.handle(t, &single(150, 30)),
        Response::BolusStarted(_)
    ));
    // A different drug starts a fresh limit of its own.
    let mut pump = boot(continuous(100), Nanolitres::from_ml(40));
    assert!(matches!(
        pump.handle(BOOT, &single(800, 60)),
        Response::BolusStarted(_)
    ));
    run_until(&mut pump, t);
    let switch = Request::Refill {
        expected: Revision(1),
        volume: Nanolitres::from_ml(20),
        prescription: Some(with_drug(
            Drug::Hydromorphone,
            NanogramsPerMillilitre::from_mg_per_ml(1),
        )),
    };
    let answer = pump.handle(t, &switch);
    assert!(matches!(answer, Response::Refilled { .. }), "{answer:?}");
    assert_eq!(pump.window_total(t), 0);
}

/// The continuous(100) test prescription for another solution.
fn with_drug(
    drug: thecal_protocol::drug::Drug,
    c: thecal_protocol::units::NanogramsPerMillilitre,
) -> thecal_protocol::prescription::PrescriptionDraft {
    let mut d: thecal_protocol::prescription::PrescriptionDraft = continuous(100).into();
    d.drug = drug;
    d.concentration = c;
    d
}

#[test]
fn a_prescription_write_cannot_change_the_drug() {
    use thecal_protocol::drug::Drug;
    use thecal_protocol::message::Revision;
    use thecal_protocol::units::NanogramsPerMillilitre;
    let mut pump = boot(continuous(100), Nanolitres::from_ml(40));
    let before = pump.record().clone();
    let stronger = with_drug(
        Drug::Baclofen,
        NanogramsPerMillilitre::from_ug_per_ml(1_000),
    );
    let write = Request::WritePrescription {
        expected: Revision(1),
        prescription: stronger.clone(),
    };
    assert_eq!(
        pump.handle(BOOT, &write),
        Response::Refused(Refusal::DrugChangeNeedsRefill)
    );
    assert_eq!(pump.record(), &before);
    // The same change with a refill is accepted, as the next revision.
    let refill = Request::Refill {
        expected: Revision(1),
        volume: Nanolitres::from_ml(20),
        prescription: Some(stronger),
    };
    assert!(matches!(
        pump.handle(BOOT, &refill),
        Response::Refilled {
            revision: Revision(2),
            ..
        }
    ));
    assert_eq!(
        pump.record().prescription.concentration(),
        NanogramsPerMillilitre::from_ug_per_ml(1_000)
    );
}
