//! The dosing engine: turns flow rates into motor strokes, exactly.
//!
//! Basal delivery accumulates `flow × elapsed` in nL·ms/day (an exact integer) and emits a
//! stroke each time the accumulator passes one stroke's worth, carrying the remainder. The
//! elapsed time is split at every schedule boundary, so over a whole schedule cycle the
//! strokes delivered equal the programmed integral exactly (to less than one stroke, which
//! is carried into the next cycle), and at any instant the delivery lags the programmed
//! integral by less than one stroke.
//!
//! Time is *device* time (monotonic). The schedule is looked up in the patient's local wall
//! time through the `flow_at` function the pump passes in, so a clock change only changes
//! which step is running from then on: nothing is ever "caught up" and no step is
//! delivered twice.
//!
//! A bolus runs beside the basal flow: `n` whole strokes (the requested volume rounded
//! down: never more than asked), stroke `k` due at `start + ceil(k × duration / n)`.
//!
//! The alarm dates are projected from the engine's real state ([`Dosing::outlook`]: the
//! carried part-stroke and what is left of the bolus), with the same rule
//! ([`thecal_protocol::projection`]). The part-stroke survives a reset: the snapshot
//! keeps it with the device time it was saved at, and the next boot
//! ([`Dosing::resumed`]) carries it on from that time.

use thecal_protocol::message::BolusKind;
use thecal_protocol::projection::{BolusLeft, STROKE_UNITS};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Nanograms, Nanolitres, NanolitresPerDay};

use crate::therapy::motor::STROKE_NL;

// The shared projection counts strokes of the motor's volume.
const _: () = assert!(STROKE_NL == thecal_protocol::projection::STROKE_NL);

/// A running bolus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bolus {
    /// Kind.
    pub kind: BolusKind,
    /// Dose (of the whole strokes).
    pub dose: Nanograms,
    /// Strokes in all.
    pub strokes: u32,
    /// Strokes that have fallen due.
    pub due: u32,
    /// Strokes delivered.
    pub delivered: u32,
    /// Device time started.
    pub start: Timestamp,
    /// Duration, ms (> 0).
    pub duration_ms: u64,
}

impl Bolus {
    /// Device time of the planned end.
    pub fn end(&self) -> Timestamp {
        self.start.plus_ms(self.duration_ms)
    }

    /// Strokes due by `now`.
    fn due_at(&self, now: Timestamp) -> u32 {
        let elapsed = u128::from(now.since(self.start).min(self.duration_ms));
        let due = elapsed * u128::from(self.strokes) / u128::from(self.duration_ms.max(1));
        u32::try_from(due).unwrap_or(self.strokes).min(self.strokes)
    }

    /// Device time stroke number `k` (from 1) falls due.
    fn time_of(&self, k: u32) -> Timestamp {
        let t = (u128::from(k) * u128::from(self.duration_ms))
            .div_ceil(u128::from(self.strokes.max(1)));
        self.start.plus_ms(u64::try_from(t).unwrap_or(u64::MAX))
    }
}

/// Strokes that fell due in one [`Dosing::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Basal strokes.
    pub basal: u32,
    /// Bolus strokes.
    pub bolus: u32,
}

/// The flow in force at a device time, and the device time it next changes.
pub type FlowAt<'a> = &'a dyn Fn(Timestamp) -> (NanolitresPerDay, Timestamp);

/// Basal accumulator and bolus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dosing {
    last: Timestamp,
    acc: u64,
    bolus: Option<Bolus>,
}

impl Dosing {
    /// An engine that starts at device time `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            last: now,
            acc: 0,
            bolus: None,
        }
    }

    /// An engine that starts at device time `now` carrying the part-stroke `carry` it
    /// had at device time `saved_at` (a boot, from the snapshot): the part-stroke goes
    /// on accumulating from `saved_at`, and the strokes that fell due between then and
    /// `now` are taken as delivered — they were, up to the reset, within the reservation
    /// the snapshot already counts as delivered; after it, the pump was off and nothing
    /// is caught up. So resets neither drop the part-stroke nor deliver a stroke twice,
    /// and the phase never runs ahead of the programmed integral. A carry that is not a
    /// part-stroke (a damaged value) starts from zero: later, never sooner.
    pub fn resumed(saved_at: Timestamp, carry: u64, now: Timestamp, flow_at: FlowAt<'_>) -> Self {
        let mut d = Self {
            last: saved_at.min(now),
            acc: if carry < STROKE_UNITS { carry } else { 0 },
            bolus: None,
        };
        let _taken_as_delivered = d.advance(now, flow_at);
        d
    }

    /// The basal part-stroke carried, nL·ms/day (< one stroke), at the device time the
    /// engine was last advanced to ([`Dosing::last`]).
    pub fn carry(&self) -> u64 {
        self.acc
    }

    /// The basal part-stroke at device time `now` (what a snapshot saved at `now`
    /// keeps): the strokes due by then are the pump's to deliver. 0 if the engine has
    /// already run past `now` (its carry belongs to a later time; a part-stroke later,
    /// never sooner).
    pub fn carry_at(&self, now: Timestamp, flow_at: FlowAt<'_>) -> u64 {
        if self.last > now {
            return 0;
        }
        let mut d = self.clone();
        let _due = d.advance(now, flow_at);
        d.acc
    }

    /// The device time the engine was last advanced to.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// What the engine holds toward its next strokes at device time `now`, for the
    /// projection: the basal part-stroke (plus a stroke for each stroke due by `now` and
    /// not yet delivered), and what is left of the bolus with its own part-stroke (its
    /// strokes' due times as a straight line before rounding down, rounded up).
    pub fn outlook(&self, now: Timestamp, flow_at: FlowAt<'_>) -> (u64, Option<BolusLeft>) {
        let mut d = self.clone();
        let due = d.advance(now, flow_at);
        let pending = u64::from(due.basal.saturating_add(due.bolus)).saturating_mul(STROKE_UNITS);
        let at = d.last;
        let bolus = d.bolus.map(|b| {
            let elapsed = u128::from(at.since(b.start).min(b.duration_ms));
            let exact = (elapsed * u128::from(b.strokes) * u128::from(STROKE_UNITS))
                .div_ceil(u128::from(b.duration_ms.max(1)));
            let whole = u128::from(b.due) * u128::from(STROKE_UNITS);
            BolusLeft {
                volume: Nanolitres(b.strokes.saturating_sub(b.due).saturating_mul(STROKE_NL)),
                carry: u64::try_from(exact.saturating_sub(whole)).unwrap_or(STROKE_UNITS),
                ms: b.end().since(at),
            }
        });
        (d.acc.saturating_add(pending), bolus)
    }

    /// The running bolus.
    pub fn bolus(&self) -> Option<&Bolus> {
        self.bolus.as_ref()
    }

    /// Starts a bolus of `strokes` over `duration_ms` at `now`.
    pub fn start_bolus(
        &mut self,
        kind: BolusKind,
        dose: Nanograms,
        strokes: u32,
        duration_ms: u64,
        now: Timestamp,
    ) {
        self.bolus = Some(Bolus {
            kind,
            dose,
            strokes,
            due: 0,
            delivered: 0,
            start: now,
            duration_ms: duration_ms.max(1),
        });
    }

    /// Cancels the bolus.
    pub fn cancel_bolus(&mut self) -> Option<Bolus> {
        self.bolus.take()
    }

    /// Records a delivered bolus stroke; ends the bolus after its last.
    pub fn bolus_stroke_delivered(&mut self) {
        if let Some(b) = self.bolus.as_mut() {
            b.delivered = b.delivered.saturating_add(1);
        }
    }

    /// Advances to `now` and returns the strokes that fell due. Time that runs backwards
    /// is ignored (device time is monotonic; this is defence in depth).
    pub fn advance(&mut self, now: Timestamp, flow_at: FlowAt<'_>) -> Due {
        let mut due = Due::default();
        while self.last < now {
            let (flow, change) = flow_at(self.last);
            let until = if change > self.last {
                change.min(now)
            } else {
                now
            };
            let span = until.since(self.last);
            self.acc = self
                .acc
                .saturating_add(u64::from(flow.0).saturating_mul(span));
            let strokes = self.acc / STROKE_UNITS;
            self.acc %= STROKE_UNITS;
            due.basal = due
                .basal
                .saturating_add(u32::try_from(strokes).unwrap_or(u32::MAX));
            self.last = until;
        }
        if let Some(b) = self.bolus.as_mut() {
            let now_due = b.due_at(now);
            due.bolus = now_due.saturating_sub(b.due);
            b.due = now_due;
            if b.due >= b.strokes {
                self.bolus = None;
            }
        }
        due
    }

    /// The next device time a stroke can fall due (or the flow changes).
    pub fn next_due(&self, flow_at: FlowAt<'_>) -> Timestamp {
        let (flow, change) = flow_at(self.last);
        let basal = match u64::from(flow.0) {
            0 => change,
            f => self
                .last
                .plus_ms((STROKE_UNITS - self.acc).div_ceil(f))
                .min(change),
        };
        let bolus = self.bolus.map(|b| b.time_of(b.due + 1));
        bolus.map_or(basal, |b| b.min(basal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_protocol::units::MS_PER_DAY;

    fn constant(flow: u32) -> impl Fn(Timestamp) -> (NanolitresPerDay, Timestamp) {
        move |_| (NanolitresPerDay(flow), Timestamp(u64::MAX))
    }

    #[test]
    fn a_day_at_a_constant_flow_is_exact_in_any_tick_pattern() {
        // 0.5 mL/day = 2000 strokes/day, ticked at irregular intervals.
        let f = constant(500_000);
        let mut d = Dosing::new(Timestamp(0));
        let mut total = 0;
        let mut t = 0;
        let mut step = 1;
        while t < MS_PER_DAY {
            t = (t + step).min(MS_PER_DAY);
            step = (step * 7 + 13) % 100_000 + 1;
            total += d.advance(Timestamp(t), &f).basal;
        }
        assert_eq!(total, 2_000);
    }

    #[test]
    fn next_due_is_the_stroke_time() {
        let f = constant(500_000); // one stroke every 43.2 s
        let mut d = Dosing::new(Timestamp(0));
        assert_eq!(d.next_due(&f), Timestamp(43_200));
        assert_eq!(d.advance(Timestamp(43_199), &f).basal, 0);
        assert_eq!(d.advance(Timestamp(43_200), &f).basal, 1);
    }

    #[test]
    fn bolus_strokes_spread_over_the_duration() {
        let f = constant(0);
        let mut d = Dosing::new(Timestamp(0));
        d.start_bolus(BolusKind::Single, Nanograms(1), 4, 1_000, Timestamp(0));
        assert_eq!(d.next_due(&f), Timestamp(250));
        assert_eq!(d.advance(Timestamp(499), &f).bolus, 1);
        assert_eq!(d.advance(Timestamp(10_000), &f).bolus, 3);
        assert!(d.bolus().is_none());
    }

    #[test]
    fn a_resumed_engine_carries_the_part_stroke_on_from_the_save() {
        let f = constant(500_000); // one stroke every 43.2 s
        let mut live = Dosing::new(Timestamp(0));
        assert_eq!(live.advance(Timestamp(100_000), &f).basal, 2);
        let saved = live.carry_at(Timestamp(100_000), &f);
        assert_eq!(saved, 500_000 * (100_000 - 2 * 43_200));
        // Reset at 120 000 (no stroke since the save): the next stroke is the live one's.
        let mut booted = Dosing::resumed(Timestamp(100_000), saved, Timestamp(120_000), &f);
        assert_eq!(booted.next_due(&f), Timestamp(3 * 43_200));
        assert_eq!(live.next_due(&f), Timestamp(3 * 43_200));
        // Reset after a stroke the save did not see (within the reservation): the
        // stroke is not due again, and the phase is kept.
        let mut late = Dosing::resumed(Timestamp(100_000), saved, Timestamp(140_000), &f);
        assert_eq!(late.advance(Timestamp(140_000), &f), Due::default());
        assert_eq!(late.next_due(&f), Timestamp(4 * 43_200));
        assert_eq!(booted.advance(Timestamp(4 * 43_200), &f).basal, 2);
        // A value that is not a part-stroke starts from zero.
        let damaged = Dosing::resumed(Timestamp(0), STROKE_UNITS, Timestamp(0), &f);
        assert_eq!(damaged.carry(), 0);
    }

    #[test]
    fn the_outlook_is_the_part_strokes_and_the_bolus_left() {
        let f = constant(500_000);
        let mut d = Dosing::new(Timestamp(0));
        d.start_bolus(BolusKind::Single, Nanograms(1), 4, 1_000, Timestamp(0));
        assert_eq!(d.advance(Timestamp(600), &f).bolus, 2);
        let (carry, bolus) = d.outlook(Timestamp(600), &f);
        assert_eq!(carry, 500_000 * 600);
        assert_eq!(
            bolus,
            Some(BolusLeft {
                volume: Nanolitres(2 * STROKE_NL),
                carry: STROKE_UNITS / 5 * 2, // 2.4 strokes due, 2 of them whole
                ms: 400,
            })
        );
        // Not advanced yet: the strokes due by then count as carried.
        let (carry, bolus) = d.outlook(Timestamp(43_200), &f);
        assert_eq!(carry, 3 * STROKE_UNITS);
        assert_eq!(bolus, None);
    }

    #[test]
    fn time_going_backwards_delivers_nothing() {
        let f = constant(24_000_000);
        let mut d = Dosing::new(Timestamp(1_000_000));
        assert_eq!(d.advance(Timestamp(5), &f), Due::default());
    }
}
