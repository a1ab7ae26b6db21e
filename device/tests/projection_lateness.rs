//! The alarm dates the pump reports, measured against the pump's own alarms: the pump is
//! driven tick by tick (at `next_wake`, as a platform does), every tick asks `Status`
//! (its `low_at` / `empty_at`) and `Reservoir` (its four dates), and each date is
//! compared with the instant the pump raises the alarm it predicts. A date later than
//! the alarm is the error a clinician cannot afford; the test fails on any, and on a
//! date earlier than the alarm by more than one stroke interval of the flow running.
//!
//! The figures (largest lateness and earliness, seconds) are printed:
//!
//! ```text
//! CARGO_TARGET_DIR=/work/p-target cargo test -p thecal-device --test projection_lateness -- --nocapture
//! ```

mod common;

use common::*;
use thecal_device::therapy::motor::STROKE_NL;
use thecal_protocol::message::{AlarmKind, BolusRequest, Request, Response};
use thecal_protocol::prescription::{Prescription, TherapyMode};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms, NanogramsPerDay, Nanolitres, MS_PER_DAY};

/// Largest lateness and earliness seen, ms (lateness > 0: a date after the alarm).
#[derive(Debug, Default, Clone, Copy)]
struct Error {
    late_ms: i64,
    early_ms: i64,
}

impl Error {
    fn merge(self, o: Error) -> Error {
        Error {
            late_ms: self.late_ms.max(o.late_ms),
            early_ms: self.early_ms.max(o.early_ms),
        }
    }
}

/// One date as reported at one instant.
struct Sample {
    at: Timestamp,
    date: Option<Timestamp>,
}

/// The dates `date_of` picks from the answers, sampled at every tick until `alarm` is
/// raised (or `end`), and the wall time it was raised.
fn sample(
    pump: &mut TestPump,
    alarm: AlarmKind,
    end: Timestamp,
    date_of: &dyn Fn(&mut TestPump, Timestamp) -> Vec<Option<Timestamp>>,
) -> (Vec<Sample>, Timestamp) {
    let mut samples = Vec::new();
    loop {
        let wake = pump.next_wake();
        assert!(wake <= end, "{alarm:?} not raised by the end of the run");
        pump.tick(wake);
        if pump.alarm_active(alarm) {
            return (samples, pump.wall(wake));
        }
        for date in date_of(pump, wake) {
            samples.push(Sample {
                at: pump.wall(wake),
                date,
            });
        }
    }
}

fn error_of(samples: &[Sample], raised: Timestamp) -> Error {
    let mut e = Error {
        late_ms: i64::MIN,
        early_ms: i64::MIN,
    };
    for s in samples {
        // No date (not within the horizon) while the alarm is coming: infinitely late.
        let date = s.date.map_or(i64::MAX, |d| d.0 as i64);
        let late = date.saturating_sub(raised.0 as i64);
        e.late_ms = e.late_ms.max(late);
        e.early_ms = e.early_ms.max(-late);
        assert!(s.at <= raised);
    }
    e
}

fn low_dates(p: &mut TestPump, now: Timestamp) -> Vec<Option<Timestamp>> {
    let Response::Status(st) = p.handle(now, &Request::Status) else {
        panic!("status")
    };
    let Response::Reservoir(r) = p.handle(now, &Request::Reservoir) else {
        panic!("reservoir")
    };
    vec![st.low_at, r.low_at]
}

fn empty_dates(p: &mut TestPump, now: Timestamp) -> Vec<Option<Timestamp>> {
    let Response::Status(st) = p.handle(now, &Request::Status) else {
        panic!("status")
    };
    let Response::Reservoir(r) = p.handle(now, &Request::Reservoir) else {
        panic!("reservoir")
    };
    vec![st.empty_at, r.empty_at]
}

/// One stroke interval at `ug_per_day` of baclofen at 500 µg/mL (2 nL per µg... per ng).
fn stroke_interval_ms(ug_per_day: u32) -> i64 {
    let nl_per_day = u64::from(ug_per_day) * 2_000;
    (u64::from(STROKE_NL) * MS_PER_DAY).div_ceil(nl_per_day) as i64
}

fn report(what: &str, e: Error) {
    eprintln!(
        "{what}: latest date {:+.1} s after the alarm, earliest {:.1} s before it",
        e.late_ms as f64 / 1000.0,
        e.early_ms as f64 / 1000.0
    );
}

fn check(what: &str, e: Error, interval_ms: i64) {
    report(what, e);
    assert!(
        e.late_ms <= 0,
        "{what}: a date {} ms after the alarm",
        e.late_ms
    );
    assert!(
        e.early_ms <= interval_ms,
        "{what}: a date {} ms before the alarm (stroke interval {interval_ms} ms)",
        e.early_ms
    );
}

/// Basal only, from the lowest flow to a high one, starting volumes that are not whole
/// strokes above the threshold, and a run-in that leaves a part-stroke carried.
#[test]
fn basal_dates_are_never_later_than_the_alarm() {
    let mut worst_low = Error::default();
    let mut worst_empty = Error::default();
    for ug in [24, 60, 250] {
        let mut low = Error::default();
        let mut empty = Error::default();
        for (i, above) in [2_499u32, 2_501, 3_333, 4_100].into_iter().enumerate() {
            let volume = Nanolitres::from_ml(2).0 + above;
            let mut pump = boot(continuous(ug), Nanolitres(volume));
            // A run-in of a fraction of a stroke leaves a part-stroke in the accumulator.
            let run_in = stroke_interval_ms(ug) * (i as i64 + 1) / 5;
            run_until(&mut pump, BOOT.plus_ms(run_in as u64));
            let (s, raised) = sample(
                &mut pump,
                AlarmKind::LowReservoir,
                BOOT.plus_ms(30 * DAY),
                &low_dates,
            );
            low = low.merge(error_of(&s, raised));
        }
        for above in [1u32, 249, 251, 777] {
            let mut pump = boot(continuous(ug), Nanolitres(above + 2 * STROKE_NL));
            run_until(&mut pump, BOOT.plus_ms(stroke_interval_ms(ug) as u64 / 3));
            let (s, raised) = sample(
                &mut pump,
                AlarmKind::EmptyReservoir,
                BOOT.plus_ms(30 * DAY),
                &empty_dates,
            );
            empty = empty.merge(error_of(&s, raised));
        }
        check(&format!("{ug} µg/day, low"), low, stroke_interval_ms(ug));
        check(
            &format!("{ug} µg/day, empty"),
            empty,
            stroke_interval_ms(ug),
        );
        worst_low = worst_low.merge(low);
        worst_empty = worst_empty.merge(empty);
    }
    report("basal, low, all flows", worst_low);
    report("basal, empty, all flows", worst_empty);
}

fn with_dose(ug_per_day: u32) -> Prescription {
    Prescription::new(draft(TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(ug_per_day),
    }))
    .unwrap()
}

/// A single bolus of 50 µg (100 µL, 400 strokes) over an hour at 100 µg/day basal, with
/// the low mark 150 µL away: every date reported during the bolus is checked against
/// the alarm, which comes hours after the bolus.
#[test]
fn dates_during_a_bolus_are_never_later_than_the_alarm() {
    let mut pump = boot(with_dose(100), Nanolitres(2_150_000 + 130));
    run_until(&mut pump, BOOT.plus_ms(HOUR / 3));
    let now = pump.next_wake();
    let answer = pump.handle(
        now,
        &Request::ClinicianBolus(BolusRequest::Single {
            dose: Nanograms::from_ug(50),
            duration: Minutes(60),
        }),
    );
    assert!(matches!(answer, Response::BolusStarted(_)), "{answer:?}");
    let (s, raised) = sample(
        &mut pump,
        AlarmKind::LowReservoir,
        now.plus_ms(10 * DAY),
        &low_dates,
    );
    assert!(
        raised > pump.wall(now.plus_ms(HOUR)),
        "the alarm comes after the bolus"
    );
    // Early by at most one stroke interval of the basal flow (the bolus strokes are
    // closer together).
    check("bolus, low", error_of(&s, raised), stroke_interval_ms(100));
}

/// The date shown during a bolus is never later than the one shown once it finished:
/// the undelivered part of the bolus is counted while it runs.
#[test]
fn the_date_during_a_bolus_is_not_later_than_after_it() {
    let mut pump = boot(with_dose(100), Nanolitres::from_ml(6));
    run_until(&mut pump, BOOT.plus_ms(HOUR / 3));
    let start = pump.next_wake();
    let answer = pump.handle(
        start,
        &Request::ClinicianBolus(BolusRequest::Single {
            dose: Nanograms::from_ug(200),
            duration: Minutes(120),
        }),
    );
    assert!(matches!(answer, Response::BolusStarted(_)), "{answer:?}");
    let mut during = Vec::new();
    let after = loop {
        let wake = pump.next_wake();
        let Response::Status(st) = pump.handle(wake, &Request::Status) else {
            panic!("status")
        };
        match st.bolus {
            Some(_) => during.push(st.low_at.unwrap()),
            None => break st.low_at.unwrap(),
        }
    };
    assert!(during.len() > 1_000, "sampled at every stroke of the bolus");
    let latest = *during.iter().max().unwrap();
    assert!(
        latest <= after,
        "{} ms later during the bolus",
        latest.since(after)
    );
    // At the start, 1 600 strokes of the bolus are still to come: the date then is
    // earlier than the date after it only by what basal delivery does meanwhile.
    assert!(after.since(during[0]) < 2 * stroke_interval_ms(100) as u64);
}
