//! The basal cycle: the therapy mode that programs the background infusion, and the
//! geometry of the cycle it repeats — its length, its [`Segment`]s, the segment running
//! at a given minute, the dose in any 24 h window, and the keep-open dose of a stopped
//! pump.
//!
//! A cycle is a day (stopped, continuous, or one day profile for every day) or a week
//! (seven day profiles, Monday first). Minutes are counted from the start of the cycle:
//! `0 .. 1 440` for a day, `0 .. 10 080` for a week, in the patient's local time.
//!
//! Imports: this module depends only on [`crate::time`] and [`crate::units`]. The
//! prescription model ([`crate::prescription`]) holds a [`TherapyMode`] and reads its
//! geometry through [`Cycle`]; the rules ([`crate::rules`]) check the mode and the
//! rolling 24 h windows through [`Cycle`] too. So the direction is
//! `cycle ← prescription ← rules` (and `cycle ← rules`): nothing here knows about drugs,
//! limits or validation.
//!
//! The geometry is total over any mode, validated or not: for a validated prescription
//! the segments tile the cycle from 0 to [`Cycle::minutes`], in order; for a draft they
//! are whatever its steps describe (empty days yield nothing, a step that starts before
//! its predecessor yields an empty segment). No allocation, no panics; sums are `u64`
//! and cannot overflow (at most 112 segments of at most `u32::MAX` ng/day × 1 440 min).

use core::iter::FusedIterator;

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::time::{MinuteOfDay, MINUTES_PER_WEEK};
use crate::units::{
    NanogramsPerDay, NanogramsPerMillilitre, NanolitresPerDay, MINUTES_PER_DAY, NL_PER_ML,
};

/// Steps in one day profile (real pumps allow about a dozen; at least 13 are required).
pub const MAX_STEPS_PER_DAY: usize = 16;
/// Day profiles in a flexible schedule: 1 (every day alike) or 7 (Monday … Sunday).
pub const MAX_PROFILE_DAYS: usize = 7;

/// Lowest flow the pump delivers; in [`TherapyMode::Stopped`] it keeps the catheter open
/// (0.048 mL/day, the lowest rate of a commercial pump).
pub const MIN_FLOW: NanolitresPerDay = NanolitresPerDay(48_000);

/// One step of a day profile: from `start` (local time) until the next step's start, or
/// midnight after the last step, the pump delivers `dose` per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    /// Local start time.
    pub start: MinuteOfDay,
    /// Dose rate while this step runs.
    pub dose: NanogramsPerDay,
}

/// The steps of one day, ordered by start time; the first starts at 00:00.
pub type DaySteps = Vec<Step, MAX_STEPS_PER_DAY>;

/// How the basal (background) infusion runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TherapyMode {
    /// Therapy stopped: the pump runs at [`MIN_FLOW`] only, to keep the catheter open.
    Stopped,
    /// The same dose rate all day, every day.
    Continuous {
        /// Dose per day.
        dose: NanogramsPerDay,
    },
    /// A daily profile of steps: one profile for every day, or seven (Monday first).
    Flexible {
        /// 1 or 7 day profiles.
        days: Vec<DaySteps, MAX_PROFILE_DAYS>,
    },
}

/// Dose delivered by [`MIN_FLOW`] at `c`, rounded **up** (it is used against limits).
pub fn min_flow_dose(c: NanogramsPerMillilitre) -> NanogramsPerDay {
    let ng = u64::from(MIN_FLOW.0)
        .saturating_mul(u64::from(c.0))
        .div_ceil(NL_PER_ML);
    NanogramsPerDay(u32::try_from(ng).unwrap_or(u32::MAX))
}

/// One piece of the repeating basal cycle: `[start, end)` minutes at a constant dose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First minute (of the cycle).
    pub start: u32,
    /// One past the last minute.
    pub end: u32,
    /// Dose rate.
    pub dose: NanogramsPerDay,
}

/// The basal cycle of a therapy mode at a concentration (the concentration sets the
/// keep-open dose of [`TherapyMode::Stopped`]). Cheap to copy; borrows the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle<'a> {
    mode: &'a TherapyMode,
    concentration: NanogramsPerMillilitre,
}

impl<'a> Cycle<'a> {
    /// The cycle `mode` runs at `concentration`.
    pub fn new(mode: &'a TherapyMode, concentration: NanogramsPerMillilitre) -> Self {
        Self {
            mode,
            concentration,
        }
    }

    /// Length in minutes: a week for a profile of more than one day, else a day.
    pub fn minutes(&self) -> u32 {
        match self.mode {
            TherapyMode::Flexible { days } if days.len() > 1 => MINUTES_PER_WEEK,
            _ => u32::from(MINUTES_PER_DAY),
        }
    }

    /// The segments of the cycle, in order.
    pub fn segments(&self) -> Segments<'a> {
        let whole = |dose| {
            Inner::Whole(Some(Segment {
                start: 0,
                end: u32::from(MINUTES_PER_DAY),
                dose,
            }))
        };
        let inner = match self.mode {
            TherapyMode::Stopped => whole(min_flow_dose(self.concentration)),
            TherapyMode::Continuous { dose } => whole(*dose),
            TherapyMode::Flexible { days } => Inner::Days {
                days,
                day: 0,
                step: 0,
            },
        };
        Segments { inner }
    }

    /// The segment running at `minute_of_week` (local; taken modulo the cycle length).
    /// Should no segment hold it (only a draft that does not cover its cycle), the last
    /// segment, or a day at the keep-open dose if there is none: the safest answer.
    pub fn segment_at(&self, minute_of_week: u32) -> Segment {
        let m = minute_of_week % self.minutes();
        let mut last = None;
        for s in self.segments() {
            if s.start <= m && m < s.end {
                return s;
            }
            last = Some(s);
        }
        last.unwrap_or(Segment {
            start: 0,
            end: u32::from(MINUTES_PER_DAY),
            dose: min_flow_dose(self.concentration),
        })
    }

    /// Exact basal dose over the 24 h window starting at cycle minute `start` (taken
    /// modulo the cycle length), in ng·min/day: divide by 1 440 for ng. A window that
    /// runs past the end of the cycle continues into the next lap.
    pub fn window_sum(&self, start: u32) -> u64 {
        let period = self.minutes();
        let a = start % period;
        let b = a.saturating_add(u32::from(MINUTES_PER_DAY));
        let mut sum = 0u64;
        for s in self.segments() {
            for lap in [0, period] {
                let lo = a.max(s.start.saturating_add(lap));
                let hi = b.min(s.end.saturating_add(lap));
                if hi > lo {
                    let part = u64::from(s.dose.0).saturating_mul(u64::from(hi - lo));
                    sum = sum.saturating_add(part);
                }
            }
        }
        sum
    }

    /// Basal dose in ng over the 24 h window starting at cycle minute `start`, rounded
    /// down.
    pub fn window_total(&self, start: u32) -> u64 {
        self.window_sum(start) / u64::from(MINUTES_PER_DAY)
    }
}

/// The segments of a [`Cycle`], in order ([`Cycle::segments`]). Borrows the mode;
/// allocates nothing.
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    inner: Inner<'a>,
}

#[derive(Debug, Clone)]
enum Inner<'a> {
    /// Stopped or continuous: one segment over the day, until taken.
    Whole(Option<Segment>),
    /// A flexible profile: the next step is `days[day][step]`.
    Days {
        days: &'a [DaySteps],
        day: usize,
        step: usize,
    },
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        match &mut self.inner {
            Inner::Whole(segment) => segment.take(),
            Inner::Days { days, day, step } => loop {
                let steps = days.get(*day)?;
                let Some(current) = steps.get(*step) else {
                    // Past this day's last step (or an empty day): on to the next day.
                    *day = day.saturating_add(1);
                    *step = 0;
                    continue;
                };
                let next = steps.get(step.saturating_add(1));
                let segment = step_segment(*day, current, next);
                *step = step.saturating_add(1);
                return Some(segment);
            },
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.inner {
            Inner::Whole(segment) => usize::from(segment.is_some()),
            Inner::Days { days, day, step } => days
                .iter()
                .skip(*day)
                .map(|steps| steps.len())
                .sum::<usize>()
                .saturating_sub(*step),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Segments<'_> {}
impl FusedIterator for Segments<'_> {}

/// The segment of step `current` of day profile `day`, which runs until `next` starts
/// (or midnight); never negative (an out-of-order `next` makes it empty).
fn step_segment(day: usize, current: &Step, next: Option<&Step>) -> Segment {
    let day_len = u32::from(MINUTES_PER_DAY);
    // `day` < MAX_PROFILE_DAYS, so neither product nor sums come near u32::MAX.
    let base = u32::try_from(day)
        .unwrap_or(u32::MAX)
        .saturating_mul(day_len);
    let start = u32::from(current.start.0);
    let end = next.map_or(day_len, |n| u32::from(n.start.0)).max(start);
    Segment {
        start: base.saturating_add(start),
        end: base.saturating_add(end),
        dose: current.dose,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::vec::Vec as StdVec;

    const C: NanogramsPerMillilitre = NanogramsPerMillilitre(10_000_000);
    const DAY: u32 = 1_440;

    fn step(h: u16, m: u16, dose: u32) -> Step {
        Step {
            start: MinuteOfDay(h * 60 + m),
            dose: NanogramsPerDay(dose),
        }
    }

    fn day(steps: &[Step]) -> DaySteps {
        steps.iter().copied().collect()
    }

    fn flexible(days: &[DaySteps]) -> TherapyMode {
        TherapyMode::Flexible {
            days: days.iter().cloned().collect(),
        }
    }

    fn all(mode: &TherapyMode) -> StdVec<Segment> {
        Cycle::new(mode, C).segments().collect()
    }

    fn seg(start: u32, end: u32, dose: u32) -> Segment {
        Segment {
            start,
            end,
            dose: NanogramsPerDay(dose),
        }
    }

    #[test]
    fn an_empty_cycle_has_no_segments() {
        for mode in [flexible(&[]), flexible(&std::vec![day(&[]); 7])] {
            let cycle = Cycle::new(&mode, C);
            assert_eq!(cycle.segments().len(), 0);
            assert_eq!(cycle.segments().next(), None);
            assert_eq!(cycle.window_sum(0), 0);
            // Nothing covers the cycle: the keep-open dose is the answer.
            assert_eq!(cycle.segment_at(5), seg(0, DAY, min_flow_dose(C).0));
        }
    }

    #[test]
    fn stopped_and_continuous_are_one_segment_over_the_day() {
        let stopped = all(&TherapyMode::Stopped);
        assert_eq!(stopped, [seg(0, DAY, 480_000)]);
        assert_eq!(min_flow_dose(C), NanogramsPerDay(480_000));
        let continuous = TherapyMode::Continuous {
            dose: NanogramsPerDay(7),
        };
        assert_eq!(all(&continuous), [seg(0, DAY, 7)]);
        assert_eq!(Cycle::new(&continuous, C).minutes(), DAY);
    }

    #[test]
    fn a_single_step_covers_the_day() {
        let mode = flexible(&[day(&[step(0, 0, 9)])]);
        let cycle = Cycle::new(&mode, C);
        assert_eq!(all(&mode), [seg(0, DAY, 9)]);
        assert_eq!(cycle.minutes(), DAY);
        assert_eq!(cycle.segment_at(DAY + 3), seg(0, DAY, 9));
        assert_eq!(cycle.window_total(700), 9);
    }

    #[test]
    fn weekly_segments_meet_at_midnight() {
        let days: StdVec<DaySteps> = (0..7)
            .map(|d| day(&[step(0, 0, 100 + d), step(7, 30, 200 + d)]))
            .collect();
        let mode = flexible(&days);
        let cycle = Cycle::new(&mode, C);
        assert_eq!(cycle.minutes(), 7 * DAY);
        let segments = all(&mode);
        assert_eq!(segments.len(), 14);
        assert_eq!(cycle.segments().len(), 14);
        for (d, pair) in (0u32..).zip(segments.chunks(2)) {
            let base = d * DAY;
            assert_eq!(
                pair,
                [
                    seg(base, base + 450, 100 + d),
                    seg(base + 450, base + DAY, 200 + d)
                ]
            );
        }
        // Sunday's last minute, Monday's first (the next lap), and every midnight.
        assert_eq!(cycle.segment_at(7 * DAY - 1).dose.0, 206);
        assert_eq!(cycle.segment_at(7 * DAY).dose.0, 100);
        for d in 1..7 {
            assert_eq!(cycle.segment_at(d * DAY - 1).dose.0, 200 + d - 1);
            assert_eq!(cycle.segment_at(d * DAY).dose.0, 100 + d);
        }
        // The 24 h from Sunday 07:30 wrap into Monday.
        let sum = cycle.window_sum(6 * DAY + 450);
        assert_eq!(sum, u64::from(206 * (DAY - 450) + 100 * 450));
    }

    #[test]
    fn empty_days_are_skipped_and_unordered_steps_give_empty_segments() {
        let mode = flexible(&[
            day(&[]),
            day(&[step(5, 0, 1), step(2, 0, 2)]),
            day(&[]),
            day(&[step(0, 0, 3)]),
        ]);
        assert_eq!(
            all(&mode),
            [
                seg(DAY + 300, DAY + 300, 1),
                seg(DAY + 120, 2 * DAY, 2),
                seg(3 * DAY, 4 * DAY, 3),
            ]
        );
    }

    #[test]
    fn size_hint_counts_what_is_left() {
        let mode = flexible(&[day(&[step(0, 0, 1), step(1, 0, 2)]), day(&[step(0, 0, 3)])]);
        let mut it = Cycle::new(&mode, C).segments();
        for left in (0..=3).rev() {
            assert_eq!(it.size_hint(), (left, Some(left)));
            it.next();
        }
        assert_eq!(it.next(), None);
    }
}
