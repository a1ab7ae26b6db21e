//! When will the reservoir reach its low-alarm threshold, and when will it be empty?
//!
//! Shared by the pump (its reservoir report) and the programmer (the new alarm date it
//! shows before a schedule write), so both give the same date. The projection walks the
//! schedule segment by segment in the patient's local time — it does not average — and
//! solves each crossing exactly in integers, rounding the time up (the date is never
//! later than the true one... by less than a millisecond).
//!
//! The worst case adds every patient bolus the rules allow, as a constant extra flow of
//! `max_per_day × dose` per day (spreading them does not change the date by more than a
//! day's allowance).

use crate::prescription::Prescription;
use crate::rules::MIN_FLOW;
use crate::time::{local_week_position, Timestamp, UtcOffset};
use crate::units::{Nanograms, Nanolitres, MS_PER_DAY, MS_PER_MINUTE};

/// How far ahead a projection looks.
pub const HORIZON_DAYS: u64 = 400;

/// Projected dates. `Some(now)` means the mark is already reached; `None` means not
/// within [`HORIZON_DAYS`].
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
#[derive(Debug, Clone, Copy)]
pub struct ReservoirState {
    /// Volume now.
    pub volume: Nanolitres,
    /// Wall clock now (UTC).
    pub now: Timestamp,
    /// Patient's UTC offset.
    pub offset: UtcOffset,
    /// Therapy stopped: minimum flow only.
    pub stopped: bool,
}

/// Projects the low and empty dates under `p`.
pub fn project(p: &Prescription, state: ReservoirState) -> Projection {
    let threshold = p.low_reservoir_alarm();
    let extra = p
        .patient_bolus()
        .and_then(|r| {
            let dose = u64::from(r.dose.0) * u64::from(r.max_per_day);
            Nanograms(u32::try_from(dose).ok()?).to_volume(p.concentration())
        })
        .map_or(0, |v| u64::from(v.0));
    Projection {
        low_at: crossing(p, state, threshold, 0),
        empty_at: crossing(p, state, Nanolitres::ZERO, 0),
        worst_low_at: crossing(p, state, threshold, extra),
        worst_empty_at: crossing(p, state, Nanolitres::ZERO, extra),
    }
}

/// First time the volume reaches `target`, with `extra` nL/day on top of the schedule.
fn crossing(
    p: &Prescription,
    state: ReservoirState,
    target: Nanolitres,
    extra: u64,
) -> Option<Timestamp> {
    if state.volume <= target {
        return Some(state.now);
    }
    // Volume to use before the mark, scaled to nL·ms/day so each step is exact.
    let mut budget = u64::from(state.volume.0 - target.0) * MS_PER_DAY;
    let horizon = state.now.plus_ms(HORIZON_DAYS * MS_PER_DAY);
    let mut t = state.now;
    while t < horizon {
        let (minute, ms_in_minute) = local_week_position(t, state.offset);
        let segment = p.segment_at(minute);
        let cycle_minute = minute % p.cycle_minutes();
        let left_ms = u64::from(segment.end.saturating_sub(cycle_minute)) * MS_PER_MINUTE
            - ms_in_minute.min(MS_PER_MINUTE);
        let left_ms = left_ms.max(1);
        let flow = if state.stopped {
            MIN_FLOW
        } else {
            p.flow_for(segment.dose)
        };
        let rate = u64::from(flow.0) + extra; // nL/day
        let used = rate.saturating_mul(left_ms);
        if used >= budget && rate > 0 {
            return Some(t.plus_ms(budget.div_ceil(rate)));
        }
        budget -= used;
        t = t.plus_ms(left_ms);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drug::Drug;
    use crate::prescription::{PatientBolusRules, PrescriptionDraft, Step, TherapyMode};
    use crate::time::MinuteOfDay;
    use crate::units::{Minutes, NanogramsPerDay, NanogramsPerMillilitre};

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
        let s = ReservoirState {
            volume: Nanolitres::from_ml(20),
            now,
            offset: UtcOffset(60),
            stopped: false,
        };
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
        let s = ReservoirState {
            volume: Nanolitres(2_500_000),
            now: midnight,
            offset: UtcOffset(0),
            stopped: false,
        };
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
            volume: Nanolitres::from_ml(1),
            now,
            offset: UtcOffset(0),
            stopped: true,
        };
        let proj = project(&p, s);
        assert_eq!(proj.low_at, Some(now));
        // 1 mL at the minimum flow 0.048 mL/day: 20.83 days.
        assert_eq!(
            proj.empty_at,
            Some(now.plus_ms((1_000_000u64 * MS_PER_DAY).div_ceil(48_000)))
        );
    }
}
