//! Deterministic 30-day simulations of each therapy mode (no wall clock): the delivered
//! volume is checked against an independent calculation from the step list, the alarm
//! times against the arithmetic, and the battery's state transitions against its model.

mod common;

use common::*;
use thecal_device::therapy::battery::BatteryConfig;
use thecal_device::therapy::motor::STROKE_NL;
use thecal_protocol::message::{
    AlarmKind, BatteryState, Event, LogEntry, Request, Response, TherapyState,
};
use thecal_protocol::prescription::TherapyMode;
use thecal_protocol::rules::MIN_FLOW;
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::Nanolitres;

/// nL per day of a day profile, from `(h, m, µg/day)` steps at 500 µg/mL (2 nL per ng).
fn profile_nl_per_day(steps: &[(u16, u16, u32)]) -> u64 {
    let mut total_nl_min = 0u64;
    for (i, &(h, m, ug)) in steps.iter().enumerate() {
        let start = u64::from(h * 60 + m);
        let end = steps
            .get(i + 1)
            .map_or(1440, |&(h, m, _)| u64::from(h * 60 + m));
        total_nl_min += u64::from(ug) * 2_000 * (end - start);
    }
    assert_eq!(
        total_nl_min % 1440,
        0,
        "pick steps whose daily volume is whole"
    );
    total_nl_min / 1440
}

const FLEX: &[(u16, u16, u32)] = &[(0, 0, 150), (7, 0, 400), (9, 30, 250), (22, 0, 150)];

fn log(pump: &mut TestPump) -> Vec<LogEntry> {
    let mut out = Vec::new();
    let mut first = 0;
    loop {
        let now = Timestamp(0); // time does not move backwards: handle() ignores it
        match pump.handle(now, &Request::ReadLog { first, max: 8 }) {
            Response::LogPage(page) => {
                if page.entries.is_empty() {
                    return out;
                }
                first = page.entries.last().unwrap().index + 1;
                out.extend(page.entries);
            }
            other => panic!("{other:?}"),
        }
    }
}

fn raised_at(entries: &[LogEntry], kind: AlarmKind) -> Option<Timestamp> {
    entries
        .iter()
        .find(|e| e.event == Event::AlarmRaised(kind))
        .map(|e| e.at)
}

#[test]
fn continuous_30_days_exact() {
    let mut pump = boot(continuous(250), Nanolitres::from_ml(40));
    run_until(&mut pump, BOOT.plus_ms(30 * DAY));
    // 250 µg/day at 500 µg/mL = 0.5 mL/day.
    assert_eq!(motor_nl(&pump), 30 * 500_000);
    assert_eq!(pump.reservoir(), Nanolitres::from_ml(25));
    assert_eq!(pump.delivered_total(), 15_000_000);
}

#[test]
fn flexible_day_profile_30_days_exact() {
    let mut pump = boot(flexible(), Nanolitres::from_ml(40));
    run_until(&mut pump, BOOT.plus_ms(30 * DAY));
    let expected = 30 * profile_nl_per_day(FLEX);
    assert_eq!(expected, 13_687_500);
    assert_eq!(motor_nl(&pump), expected);
}

#[test]
fn weekly_profile_30_days_exact() {
    let mut pump = boot(weekly(), Nanolitres::from_ml(40));
    run_until(&mut pump, BOOT.plus_ms(30 * DAY));
    // 30 days from Monday: 4 weeks, then Monday and Tuesday.
    let weekday = profile_nl_per_day(FLEX);
    let weekend = profile_nl_per_day(&[(0, 0, 200)]);
    let expected = 4 * (5 * weekday + 2 * weekend) + 2 * weekday;
    assert_eq!(motor_nl(&pump), expected);
}

#[test]
fn delivery_tracks_the_profile_within_one_stroke_at_every_instant() {
    let mut pump = boot(flexible(), Nanolitres::from_ml(40));
    // Every 10 minutes of a day, compare with the exact integral so far.
    let day = profile_nl_per_day(FLEX);
    for k in 1..=144u64 {
        let t = BOOT.plus_ms(k * 600_000);
        run_until(&mut pump, t);
        let minute = k * 10;
        let mut exact_nl_min = 0u64;
        for (i, &(h, m, ug)) in FLEX.iter().enumerate() {
            let start = u64::from(h * 60 + m);
            let end = FLEX
                .get(i + 1)
                .map_or(1440, |&(h, m, _)| u64::from(h * 60 + m));
            let span = end.min(minute).saturating_sub(start);
            exact_nl_min += u64::from(ug) * 2_000 * span;
        }
        let exact = exact_nl_min / 1440;
        let delivered = motor_nl(&pump);
        assert!(
            delivered <= exact && exact - delivered < u64::from(STROKE_NL),
            "at {minute} min: {delivered} vs {exact}"
        );
    }
    assert_eq!(motor_nl(&pump), day);
}

#[test]
fn stopped_runs_at_minimum_flow() {
    let p = continuous(250);
    let stopped =
        thecal_protocol::prescription::Prescription::new(draft(TherapyMode::Stopped)).unwrap();
    let mut pump = boot(stopped, Nanolitres::from_ml(40));
    run_until(&mut pump, BOOT.plus_ms(30 * DAY));
    assert_eq!(motor_nl(&pump), 30 * u64::from(MIN_FLOW.0));
    // Stopping a running pump has the same effect from then on.
    let mut pump = boot(p, Nanolitres::from_ml(40));
    assert_eq!(
        pump.handle(BOOT, &Request::StopTherapy),
        Response::TherapyStopped
    );
    run_until(&mut pump, BOOT.plus_ms(30 * DAY));
    assert_eq!(motor_nl(&pump), 30 * u64::from(MIN_FLOW.0));
}

#[test]
fn low_and_empty_alarms_at_the_computed_times() {
    // 3 mL at 0.5 mL/day: low (2 mL) after 2 days, empty after 6.
    let mut pump = boot(continuous(250), Nanolitres::from_ml(3));
    run_until(&mut pump, BOOT.plus_ms(7 * DAY));
    let entries = log(&mut pump);
    let stroke_ms = DAY / 2_000; // one stroke every 43.2 s
    let low = raised_at(&entries, AlarmKind::LowReservoir).expect("low alarm");
    let empty = raised_at(&entries, AlarmKind::EmptyReservoir).expect("empty alarm");
    let expect_low = MONDAY.plus_ms(2 * DAY);
    let expect_empty = MONDAY.plus_ms(6 * DAY);
    assert!(
        low >= expect_low && low.since(expect_low) <= stroke_ms,
        "{low:?}"
    );
    assert!(
        empty >= expect_empty && empty.since(expect_empty) <= stroke_ms,
        "{empty:?}"
    );
    // Empty halts delivery: exactly the 3 mL went out.
    assert_eq!(motor_nl(&pump), 3_000_000);
    match pump.handle(BOOT.plus_ms(7 * DAY), &Request::Status) {
        Response::Status(s) => {
            assert_eq!(s.therapy, TherapyState::Halted(AlarmKind::EmptyReservoir))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn battery_goes_ok_eri_low_eos_and_eos_halts_delivery() {
    // 100 days of awake drain, no per-stroke cost: ERI at day 10 (90 days left), the
    // critical low-battery alarm at day 70 (30 days left), EOS at day 100.
    let battery = BatteryConfig {
        capacity_nah: 100 * 24 * 25_000,
        per_hour_nah: 25_000,
        per_stroke_nah: 0,
        per_frame_nah: 0,
    };
    let stopped =
        thecal_protocol::prescription::Prescription::new(draft(TherapyMode::Stopped)).unwrap();
    let mut pump = boot_with(stopped, Nanolitres::from_ml(40), battery, blank_store());
    let state = |pump: &mut TestPump, t| match pump.handle(t, &Request::Battery) {
        Response::Battery(b) => b.state,
        other => panic!("{other:?}"),
    };
    run_until(&mut pump, BOOT.plus_ms(9 * DAY));
    assert_eq!(state(&mut pump, BOOT.plus_ms(9 * DAY)), BatteryState::Ok);
    run_until(&mut pump, BOOT.plus_ms(11 * DAY));
    assert_eq!(
        state(&mut pump, BOOT.plus_ms(11 * DAY)),
        BatteryState::ElectiveReplacement
    );
    run_until(&mut pump, BOOT.plus_ms(101 * DAY));
    assert_eq!(
        state(&mut pump, BOOT.plus_ms(101 * DAY)),
        BatteryState::EndOfService
    );
    let entries = log(&mut pump);
    let hour = HOUR;
    let near = |t: Option<Timestamp>, day: u64| {
        let t = t.expect("alarm raised");
        let want = MONDAY.plus_ms(day * DAY);
        t.0.abs_diff(want.0) <= hour
    };
    assert!(near(
        raised_at(&entries, AlarmKind::ElectiveReplacement),
        10
    ));
    assert!(near(raised_at(&entries, AlarmKind::LowBattery), 70));
    assert!(near(raised_at(&entries, AlarmKind::EndOfService), 100));
    // Nothing delivered after EOS.
    let at_eos = motor_nl(&pump);
    run_until(&mut pump, BOOT.plus_ms(103 * DAY));
    assert_eq!(motor_nl(&pump), at_eos);
    let expected = 100 * u64::from(MIN_FLOW.0);
    assert!(at_eos.abs_diff(expected) <= u64::from(MIN_FLOW.0) / 24 + u64::from(STROKE_NL));
}
