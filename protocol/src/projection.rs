//! When will the reservoir reach its low-alarm threshold, and when will it be empty?
//!
//! Shared by the pump (its status and reservoir reports) and the programmer (the new
//! alarm date it shows before a schedule write), so both give the same date. The pump
//! passes its real delivery state ([`ReservoirState::carry`], the running
//! [`ReservoirState::bolus`]); the programmer passes none (a zero carry, no bolus).
//!
//! ## What is predicted
//!
//! The pump's reservoir estimate falls by whole strokes ([`STROKE_NL`]), and its alarms
//! are conditions on that estimate: low-reservoir at `volume <= threshold`, empty at
//! `volume < STROKE_NL` (delivery halts). So the events are *stroke counts*: the low
//! alarm is raised by the `⌈(volume − threshold) / STROKE_NL⌉`-th stroke from now, the
//! empty alarm by the `⌊volume / STROKE_NL⌋`-th. The projection finds the instant that
//! stroke falls due, not the instant a continuous volume would cross the mark (that one
//! comes later, by up to a stroke).
//!
//! When strokes fall due is the dosing engine's rule (`device/src/therapy/dosing.rs`):
//! the basal accumulator gains `flow × elapsed` (nL·ms/day) on top of the part-stroke it
//! already carries and emits a stroke per [`STROKE_UNITS`]; a bolus of `n` strokes over
//! `d` ms has `⌊elapsed × n / d⌋` due. The projection integrates the same flows segment by
//! segment in the patient's local time (it does not average), starting from the carried
//! part-strokes, and counts the bolus as the straight line through its strokes' due
//! times *before* rounding down. Rounding down only makes strokes later, so the model
//! holds at least as many strokes as the engine at every instant, and the instant it
//! reaches the count (rounded up to the next millisecond) is **never later** than the
//! instant the engine's stroke falls due and the pump raises the alarm. Basal alone it
//! is exact; during a bolus it is early by less than one stroke interval (of the basal
//! or the bolus, whichever is shorter). The pump raises the alarm at the tick of that
//! stroke, which is at or after it.
//!
//! Halted delivery (motor stall, end of service, empty reservoir) drains nothing: a
//! mark not yet reached has no date (`None`, and the report's therapy state says why);
//! a mark already reached is `Some(now)`. A date that moved on with the clock while
//! nothing drains would tell a clinician a refill can wait when the pump may resume
//! any time. The hard daily limit holding basal strokes back is not modelled: it only
//! makes the real strokes later, so the date stays on the safe side.
//!
//! Measured against the pump's own alarms (`device/tests/projection_lateness.rs`, run as
//! `cargo test -p thecal-device --test projection_lateness -- --nocapture`): before this
//! model, dates ran up to 418 s after the low alarm and 868 s after the empty alarm at
//! the lowest flow, and 43 121 s (12 h) after the low alarm during a 400-stroke bolus;
//! now none is after its alarm (see `docs/BENCHMARKS.md`).
//!
//! The worst case adds every patient bolus the rules allow, as a constant extra flow of
//! `max_per_day × dose` per day (spreading them does not change the date by more than a
//! day's allowance).

use crate::message::TherapyState;
use crate::prescription::Prescription;
use crate::rules::MIN_FLOW;
use crate::time::{local_week_position, Timestamp, UtcOffset};
use crate::units::{Nanograms, Nanolitres, MS_PER_DAY, MS_PER_MINUTE};

/// How far ahead a projection looks.
pub const HORIZON_DAYS: u64 = 400;

/// Volume of one motor stroke, nL: the reservoir estimate and the alarms move by whole
/// strokes (the device's motor asserts it strokes this volume).
pub const STROKE_NL: u32 = 250;

/// One stroke in the dosing accumulator's unit, nL·ms/day.
pub const STROKE_UNITS: u64 = STROKE_NL as u64 * MS_PER_DAY;

/// Projected dates. `Some(now)` means the mark is already reached; `None` means not
/// within [`HORIZON_DAYS`], or delivery is halted (nothing drains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Projection {
    /// Low threshold, basal schedule only.
    pub low_at: Option<Timestamp>,
    /// Empty, basal schedule only.
    pub empty_at: Option<Timestamp>,
    /// Low threshold if the patient takes every allowed bolus.
    pub worst_low_at: Option<Timestamp>,
    /// Empty if the patient takes every allowed bolus.
    pub worst_empty_at: Option<Timestamp>,
}

/// The pump's situation for a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservoirState {
    /// Volume now.
    pub volume: Nanolitres,
    /// Wall clock now (UTC).
    pub now: Timestamp,
    /// Patient's UTC offset.
    pub offset: UtcOffset,
    /// Running (the schedule), stopped (minimum flow) or halted (nothing drains).
    pub therapy: TherapyState,
    /// The basal part-stroke the dosing engine carries toward its next stroke, in its
    /// unit (nL·ms/day, [`STROKE_UNITS`] a stroke). More than a stroke counts strokes
    /// due and not yet delivered. 0 when not known (the programmer): later by at most a
    /// stroke, which the pump's own report does not add.
    pub carry: u64,
    /// The bolus running, if any.
    pub bolus: Option<BolusLeft>,
}

/// What is left of a running bolus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BolusLeft {
    /// Volume of its strokes not yet due (whole strokes).
    pub volume: Nanolitres,
    /// How far the bolus has accumulated toward its next stroke, nL·ms/day (its own
    /// part-stroke, not in [`ReservoirState::carry`]); rounded up.
    pub carry: u64,
    /// Milliseconds until its last stroke falls due.
    pub ms: u64,
}

/// Projects the low and empty dates under `p`.
pub fn project(p: &Prescription, state: ReservoirState) -> Projection {
    let extra = p
        .patient_bolus()
        .and_then(|r| {
            let dose = u64::from(r.dose.0) * u64::from(r.max_per_day);
            Nanograms(u32::try_from(dose).ok()?).to_volume(p.concentration())
        })
        .map_or(0, |v| u64::from(v.0));
    let low = strokes_to_low(state.volume, p.low_reservoir_alarm());
    let empty = strokes_to_empty(state.volume);
    Projection {
        low_at: crossing(p, state, low, 0),
        empty_at: crossing(p, state, empty, 0),
        worst_low_at: crossing(p, state, low, extra),
        worst_empty_at: crossing(p, state, empty, extra),
    }
}

/// Strokes until `volume <= threshold` (the low-reservoir alarm's condition).
pub fn strokes_to_low(volume: Nanolitres, threshold: Nanolitres) -> u64 {
    u64::from(volume.0.saturating_sub(threshold.0)).div_ceil(u64::from(STROKE_NL))
}

/// Strokes until `volume < STROKE_NL` (the empty-reservoir alarm's condition).
pub fn strokes_to_empty(volume: Nanolitres) -> u64 {
    u64::from(volume.0 / STROKE_NL)
}

/// First time `strokes` strokes have fallen due, with `extra` nL/day on top of the
/// schedule (see the module docs for the model).
fn crossing(
    p: &Prescription,
    state: ReservoirState,
    strokes: u64,
    extra: u64,
) -> Option<Timestamp> {
    if strokes == 0 {
        return Some(state.now);
    }
    let stopped = match state.therapy {
        TherapyState::Halted(_) => return None,
        TherapyState::Stopped => true,
        TherapyState::Running => false,
    };
    let target = u128::from(strokes) * u128::from(STROKE_UNITS);
    // Basal (and finished bolus) units accumulated by `x` ms from now.
    let mut have = u128::from(state.carry);
    // The bolus: `units` more over `span` ms, a straight line from its carry.
    let (mut units, span) = match state.bolus {
        Some(b) => {
            have += u128::from(b.carry);
            let whole = u128::from(b.volume.0) * u128::from(MS_PER_DAY);
            (whole.saturating_sub(u128::from(b.carry)), b.ms.max(1))
        }
        None => (0, 1),
    };
    let span = u128::from(span);
    if have >= target {
        return Some(state.now);
    }
    let horizon = HORIZON_DAYS * MS_PER_DAY;
    let mut x = 0u64;
    while x < horizon {
        let t = state.now.plus_ms(x);
        let rate = u128::from(flow_at(p, t, state.offset, stopped)) + u128::from(extra);
        let mut piece = segment_left_ms(p, t, state.offset);
        if units > 0 {
            // During the bolus: at `y` ms from now the model holds
            // `have + rate × (y − x) + units × y / span`.
            let left = u64::try_from(span).unwrap_or(u64::MAX).saturating_sub(x);
            piece = piece.min(left.max(1));
            let x_ = u128::from(x);
            let end = x_ + u128::from(piece);
            // Short of the target by `need / span` at `x` (> 0: not reached there).
            let need = target.saturating_sub(have) * span;
            if rate * u128::from(piece) * span + units * end >= need {
                // The first y with y × (rate × span + units) ≥ need + rate × x × span.
                let y = (need + rate * x_ * span).div_ceil(rate * span + units);
                let y = u64::try_from(y.max(x_)).unwrap_or(u64::MAX);
                return Some(state.now.plus_ms(y));
            }
            have += rate * u128::from(piece);
            x += piece;
            if u128::from(x) >= span {
                have += units;
                units = 0;
            }
            continue;
        }
        let used = rate * u128::from(piece);
        if rate > 0 && have + used >= target {
            let dt = (target - have).div_ceil(rate);
            return Some(t.plus_ms(u64::try_from(dt).unwrap_or(u64::MAX)));
        }
        have += used;
        x += piece;
    }
    None
}

/// The basal flow at wall time `t`, nL/day.
fn flow_at(p: &Prescription, t: Timestamp, offset: UtcOffset, stopped: bool) -> u32 {
    if stopped {
        return MIN_FLOW.0;
    }
    let (minute, _) = local_week_position(t, offset);
    p.flow_for(p.segment_at(minute).dose).0
}

/// Milliseconds from wall time `t` to the end of the schedule segment it is in (≥ 1).
fn segment_left_ms(p: &Prescription, t: Timestamp, offset: UtcOffset) -> u64 {
    let (minute, ms_in_minute) = local_week_position(t, offset);
    let segment = p.segment_at(minute);
    let cycle_minute = minute % p.cycle_minutes();
    let left = u64::from(segment.end.saturating_sub(cycle_minute)) * MS_PER_MINUTE;
    left.saturating_sub(ms_in_minute.min(MS_PER_MINUTE)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drug::Drug;
    use crate::prescription::{PatientBolusRules, PrescriptionDraft, Step, TherapyMode};
    use crate::time::MinuteOfDay;
    use crate::units::{Minutes, NanogramsPerDay, NanogramsPerMillilitre};

    fn at(volume: Nanolitres, now: Timestamp, offset: i16) -> ReservoirState {
        ReservoirState {
            volume,
            now,
            offset: UtcOffset(offset),
            therapy: TherapyState::Running,
            carry: 0,
            bolus: None,
        }
    }

    fn continuous(ug_per_day: u32) -> Prescription {
        Prescription::new(PrescriptionDraft {
            drug: Drug::Baclofen,
            concentration: NanogramsPerMillilitre::from_ug_per_ml(500),
            daily_limit: NanogramsPerDay::from_ug(1_000),
            mode: TherapyMode::Continuous {
                dose: NanogramsPerDay::from_ug(ug_per_day),
            },
            patient_bolus: Some(PatientBolusRules {
                dose: Nanograms::from_ug(50),
                lockout: Minutes(60),
                max_per_day: 4,
            }),
            low_reservoir_alarm: Nanolitres::from_ml(2),
        })
        .unwrap()
    }

    #[test]
    fn continuous_rate_projects_linearly() {
        // 250 µg/day at 500 µg/mL = 0.5 mL/day; 20 mL → 2 mL low in 36 days, empty in 40.
        let p = continuous(250);
        let now = Timestamp(1_000_000);
        let s = at(Nanolitres::from_ml(20), now, 60);
        let proj = project(&p, s);
        assert_eq!(proj.low_at, Some(now.plus_ms(36 * MS_PER_DAY)));
        assert_eq!(proj.empty_at, Some(now.plus_ms(40 * MS_PER_DAY)));
        // Worst case adds 4 × 50 µg = 0.4 mL/day: 0.9 mL/day → 20 days to low.
        assert_eq!(proj.worst_low_at, Some(now.plus_ms(20 * MS_PER_DAY)));
    }

    #[test]
    fn flexible_profile_is_walked_not_averaged() {
        // 0.5 mL/day from 00:00 to 12:00, 1 mL/day from 12:00: starting at local
        // midnight with 0.5 mL above the mark, the first half-day uses 0.25 mL, then
        // 0.25 mL more takes 6 h: the mark is reached at 18:00, not at 16:00 (average).
        let mut steps = heapless::Vec::new();
        steps
            .push(Step {
                start: MinuteOfDay(0),
                dose: NanogramsPerDay::from_ug(250),
            })
            .unwrap();
        steps
            .push(Step {
                start: MinuteOfDay::hm(12, 0),
                dose: NanogramsPerDay::from_ug(500),
            })
            .unwrap();
        let mut days = heapless::Vec::new();
        days.push(steps).unwrap();
        let p = Prescription::new(PrescriptionDraft {
            drug: Drug::Baclofen,
            concentration: NanogramsPerMillilitre::from_ug_per_ml(500),
            daily_limit: NanogramsPerDay::from_ug(1_000),
            mode: TherapyMode::Flexible { days },
            patient_bolus: None,
            low_reservoir_alarm: Nanolitres::from_ml(2),
        })
        .unwrap();
        let midnight = Timestamp(20_000 * MS_PER_DAY);
        let s = at(Nanolitres(2_500_000), midnight, 0);
        assert_eq!(
            project(&p, s).low_at,
            Some(midnight.plus_ms(18 * 3_600_000))
        );
    }

    #[test]
    fn already_low_and_stopped() {
        let p = continuous(250);
        let now = Timestamp(5);
        let s = ReservoirState {
            therapy: TherapyState::Stopped,
            ..at(Nanolitres::from_ml(1), now, 0)
        };
        let proj = project(&p, s);
        assert_eq!(proj.low_at, Some(now));
        // 1 mL at the minimum flow 0.048 mL/day: 20.83 days.
        assert_eq!(
            proj.empty_at,
            Some(now.plus_ms((1_000_000u64 * MS_PER_DAY).div_ceil(48_000)))
        );
    }

    /// 0.5 mL/day: one stroke every 43.2 s.
    const STROKE_MS: u64 = 43_200;

    #[test]
    fn the_alarms_are_stroke_counts() {
        assert_eq!(
            strokes_to_low(Nanolitres(2_000_000), Nanolitres(2_000_000)),
            0
        );
        assert_eq!(
            strokes_to_low(Nanolitres(2_000_001), Nanolitres(2_000_000)),
            1
        );
        assert_eq!(
            strokes_to_low(Nanolitres(2_000_250), Nanolitres(2_000_000)),
            1
        );
        assert_eq!(
            strokes_to_low(Nanolitres(2_000_251), Nanolitres(2_000_000)),
            2
        );
        assert_eq!(strokes_to_empty(Nanolitres(249)), 0);
        assert_eq!(strokes_to_empty(Nanolitres(250)), 1);
        assert_eq!(strokes_to_empty(Nanolitres(499)), 1);
        // Empty after whole strokes: 100 nL left over do not make it later.
        let p = continuous(250);
        let now = Timestamp(7);
        let proj = project(&p, at(Nanolitres(1_000_100), now, 0));
        assert_eq!(proj.empty_at, Some(now.plus_ms(2 * MS_PER_DAY)));
        // One nL above the threshold: the next whole stroke raises the alarm.
        let proj = project(&p, at(Nanolitres(2_000_001), now, 0));
        assert_eq!(proj.low_at, Some(now.plus_ms(STROKE_MS)));
    }

    #[test]
    fn the_carried_part_stroke_brings_the_date_forward() {
        let p = continuous(250);
        let now = Timestamp(1_000);
        let carried = ReservoirState {
            carry: STROKE_UNITS / 5 * 4,
            ..at(Nanolitres(2_000_500), now, 0)
        };
        // Two strokes: the first after a fifth of an interval, the second one later.
        assert_eq!(
            project(&p, carried).low_at,
            Some(now.plus_ms(STROKE_MS / 5 + STROKE_MS))
        );
        // Strokes due and not yet delivered: reached now.
        let due = ReservoirState {
            carry: 2 * STROKE_UNITS,
            ..carried
        };
        assert_eq!(project(&p, due).low_at, Some(now));
    }

    #[test]
    fn a_running_bolus_counts_along_its_strokes() {
        // 4 strokes over 1 000 ms (due at 250, 500, 750, 1 000), just started; the mark
        // is 2 strokes away: the second bolus stroke at 500 ms (basal adds ~0.01 stroke).
        let p = continuous(250);
        let now = Timestamp(0);
        let s = ReservoirState {
            bolus: Some(BolusLeft {
                volume: Nanolitres(1_000),
                carry: 0,
                ms: 1_000,
            }),
            ..at(Nanolitres(2_000_500), now, 0)
        };
        let low = project(&p, s).low_at.unwrap();
        assert!(low <= Timestamp(500) && low >= Timestamp(490), "{low:?}");
        // 600 ms into it: 2 of 4 due, 0.4 stroke carried toward the third, 400 ms left.
        let later = ReservoirState {
            bolus: Some(BolusLeft {
                volume: Nanolitres(500),
                carry: STROKE_UNITS / 5 * 2,
                ms: 400,
            }),
            ..s
        };
        // Stroke 3 at 750 ms (150 ms from now), stroke 4 at 1 000 ms (400 ms).
        let low = project(&p, later).low_at.unwrap();
        assert!(low <= Timestamp(400) && low >= Timestamp(390), "{low:?}");
        // After the bolus the basal schedule alone: the undelivered part of the bolus
        // is what moves the date.
        let after = project(&p, at(Nanolitres(2_000_000 + 500 + 1_000), now, 0));
        let during = project(
            &p,
            ReservoirState {
                volume: Nanolitres(2_000_000 + 500 + 1_000),
                ..s
            },
        );
        assert!(during.low_at < after.low_at);
        assert_eq!(
            during.low_at,
            Some(now.plus_ms(2 * STROKE_MS)),
            "4 bolus strokes within the first second, then 2 basal strokes"
        );
    }

    #[test]
    fn halted_delivery_drains_nothing() {
        let p = continuous(250);
        let now = Timestamp(99);
        let halted = ReservoirState {
            therapy: TherapyState::Halted(crate::message::AlarmKind::MotorStall),
            ..at(Nanolitres::from_ml(10), now, 0)
        };
        assert_eq!(project(&p, halted), Projection::default());
        // A mark already reached stays reached.
        let empty = ReservoirState {
            therapy: TherapyState::Halted(crate::message::AlarmKind::EmptyReservoir),
            volume: Nanolitres(100),
            ..halted
        };
        let proj = project(&p, empty);
        assert_eq!((proj.low_at, proj.empty_at), (Some(now), Some(now)));
    }
}
