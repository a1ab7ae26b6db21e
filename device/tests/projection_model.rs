//! The shared projection against the real dosing engine: random prescriptions (flat or
//! stepped, one day or a week, any UTC offset), volumes, starting part-strokes and
//! boluses part-way through. The engine is run stroke by stroke (advanced to each
//! `next_due`, as the pump's ticks do), the reservoir falls by a stroke per stroke, and
//! the instant the pump's own alarm condition first holds — `volume <= threshold`
//! (low) or `volume < STROKE_NL` (empty) — is compared with the date projected from the
//! engine's state at the start: never later; equal on the basal schedule alone; earlier
//! by less than one stroke interval while a bolus runs.

use proptest::prelude::*;
use thecal_device::therapy::dosing::Dosing;
use thecal_device::therapy::motor::STROKE_NL;
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{BolusKind, TherapyState};
use thecal_protocol::prescription::{DaySteps, Prescription, PrescriptionDraft, Step, TherapyMode};
use thecal_protocol::projection::{project, ReservoirState, STROKE_UNITS};
use thecal_protocol::time::{local_week_position, MinuteOfDay, Timestamp, UtcOffset};
use thecal_protocol::units::{
    Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay, MS_PER_DAY,
    MS_PER_MINUTE,
};

/// The pump's flow lookup (`Therapy::flow_at`) over a fixed wall-clock offset.
fn flow_at(
    p: &Prescription,
    wall_offset: u64,
    offset: UtcOffset,
) -> impl Fn(Timestamp) -> (NanolitresPerDay, Timestamp) + '_ {
    move |t: Timestamp| {
        let (minute, ms_in_minute) = local_week_position(Timestamp(t.0 + wall_offset), offset);
        let segment = p.segment_at(minute);
        let cycle_minute = minute % p.cycle_minutes();
        let left = u64::from(segment.end.saturating_sub(cycle_minute)) * MS_PER_MINUTE;
        let left = left.saturating_sub(ms_in_minute).max(1);
        (p.flow_for(segment.dose), t.plus_ms(left))
    }
}

/// One day's steps: 00:00 first, then the given half-hours (deduplicated), doses in
/// µg/day of baclofen at 500 µg/mL (2 nL/day per µg/day).
fn day(starts: &[u16], doses: &[u32]) -> DaySteps {
    let mut halves: Vec<u16> = starts.iter().map(|h| h % 48).filter(|&h| h > 0).collect();
    halves.sort_unstable();
    halves.dedup();
    let mut steps = DaySteps::new();
    for (i, start) in std::iter::once(0).chain(halves).enumerate() {
        let dose = doses[i % doses.len()];
        let _ = steps.push(Step {
            start: MinuteOfDay(start * 30),
            dose: NanogramsPerDay::from_ug(dose),
        });
    }
    steps
}

fn prescription(days: usize, starts: &[u16], doses: &[u32], threshold: u32) -> Prescription {
    let mut profile = heapless::Vec::new();
    for d in 0..days {
        let rotated: Vec<u32> = doses
            .iter()
            .cycle()
            .skip(d)
            .take(doses.len())
            .copied()
            .collect();
        let _ = profile.push(day(starts, &rotated));
    }
    Prescription::new(PrescriptionDraft {
        drug: Drug::Baclofen,
        concentration: NanogramsPerMillilitre::from_ug_per_ml(500),
        daily_limit: NanogramsPerDay::from_ug(1_000),
        mode: TherapyMode::Flexible { days: profile },
        patient_bolus: None,
        low_reservoir_alarm: Nanolitres(threshold),
    })
    .expect("a valid prescription")
}

/// The pump's alarm condition on the reservoir volume, nL.
type Alarm = dyn Fn(u32) -> bool;

/// Runs the engine stroke by stroke from `at` with `volume` until `alarm(volume)` holds;
/// the device time it first holds.
fn alarm_time(
    d: &mut Dosing,
    at: Timestamp,
    mut volume: u32,
    alarm: &Alarm,
    flow: &dyn Fn(Timestamp) -> (NanolitresPerDay, Timestamp),
) -> Timestamp {
    let mut t = at;
    while !alarm(volume) {
        assert!(t.since(at) < 60 * MS_PER_DAY, "no alarm within 60 days");
        t = d.next_due(flow);
        let due = d.advance(t, flow);
        for _ in 0..due.bolus {
            d.bolus_stroke_delivered();
        }
        volume = volume.saturating_sub((due.basal + due.bolus) * STROKE_NL);
    }
    t
}

#[derive(Debug, Clone)]
struct Case {
    days: usize,
    starts: Vec<u16>,
    doses: Vec<u32>,
    threshold: u32,
    /// Above the threshold (low) and the volume (empty), nL.
    above: u32,
    empty_volume: u32,
    carry: u64,
    wall_at_zero: u64,
    offset: i16,
    /// Strokes, duration (ms) and how far into it the projection is made (ms).
    bolus: Option<(u32, u64, u64)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(1usize), Just(7usize)],
        prop::collection::vec(1u16..48, 0..6),
        prop::collection::vec(24u32..=900, 1..6),
        (1_000_000u32..=4_000_000, 1u32..=120_000, 0u32..=60_000),
        0..STROKE_UNITS,
        (0u64..14 * MS_PER_DAY, -720i16..=840),
        prop::option::of((1u32..=400, MS_PER_MINUTE..=6 * 3_600_000, 0u64..=1_000)),
    )
        .prop_map(
            |(
                days,
                starts,
                doses,
                (threshold, above, empty_volume),
                carry,
                (wall, offset),
                bolus,
            )| {
                Case {
                    days,
                    starts,
                    doses,
                    threshold,
                    above,
                    empty_volume,
                    carry,
                    wall_at_zero: 1_795_392_000_000 + wall,
                    offset,
                    // How far in: a fraction (per mille) of the duration.
                    bolus: bolus.map(|(n, d, permille)| (n, d, d * permille / 1_000)),
                }
            },
        )
}

/// The engine of `c` at the projection instant, and that instant (device time).
fn engine(
    c: &Case,
    flow: &dyn Fn(Timestamp) -> (NanolitresPerDay, Timestamp),
) -> (Dosing, Timestamp) {
    let start = Timestamp(5_000_000);
    let mut d = Dosing::resumed(start, c.carry, start, flow);
    let mut now = start;
    if let Some((strokes, duration, into)) = c.bolus {
        d.start_bolus(BolusKind::Single, Nanograms(1), strokes, duration, start);
        now = start.plus_ms(into);
        let due = d.advance(now, flow);
        for _ in 0..due.bolus {
            d.bolus_stroke_delivered();
        }
    }
    (d, now)
}

/// The shortest interval between two strokes of the bolus of `c` and the longest basal
/// interval of its prescription: the bound on how early a date may be.
fn slack_ms(c: &Case, p: &Prescription) -> u64 {
    let slowest = p
        .segments()
        .map(|s| p.flow_for(s.dose).0)
        .min()
        .unwrap_or(1);
    let basal = STROKE_UNITS.div_ceil(u64::from(slowest.max(1)));
    match c.bolus {
        Some((n, d, _)) => basal.min(d.div_ceil(u64::from(n))) + 1,
        None => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn projected_dates_are_never_later_than_the_engines_alarms(c in case()) {
        let p = prescription(c.days, &c.starts, &c.doses, c.threshold);
        let offset = UtcOffset(c.offset);
        let flow = flow_at(&p, c.wall_at_zero, offset);
        let wall = |t: Timestamp| Timestamp(t.0 + c.wall_at_zero);
        let slack = slack_ms(&c, &p);
        let threshold = c.threshold;
        let low_alarm = move |v: u32| v <= threshold;
        let empty_alarm = |v: u32| v < STROKE_NL;
        let marks: [(u32, &Alarm, bool); 2] = [
            (c.threshold + c.above, &low_alarm, true),
            (c.empty_volume, &empty_alarm, false),
        ];
        for (volume, alarm, low) in marks {
            let (mut d, now) = engine(&c, &flow);
            let (carry, bolus) = d.outlook(now, &flow);
            let projected = project(
                &p,
                ReservoirState {
                    volume: Nanolitres(volume),
                    now: wall(now),
                    offset,
                    therapy: TherapyState::Running,
                    carry,
                    bolus,
                },
            );
            let date = if low { projected.low_at } else { projected.empty_at };
            let date = date.expect("within the horizon");
            let raised = wall(alarm_time(&mut d, now, volume, alarm, &flow));
            prop_assert!(date <= raised, "{} {} ms late: {c:?}", if low { "low" } else { "empty" }, date.0 - raised.0);
            prop_assert!(
                raised.since(date) <= slack,
                "{} {} ms early (slack {slack} ms): {c:?}",
                if low { "low" } else { "empty" },
                raised.since(date)
            );
        }
    }
}
