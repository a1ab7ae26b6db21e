//! How a bolus ends, what a bridge bolus counts, and the delivery states a clinician
//! must see: basal withheld by the daily limit, delivery halted by a critical alarm.
//!
//! ## A bolus ends visibly
//!
//! Every bolus ends with a `BolusEnded` log entry naming how it ended (completed,
//! cancelled, stopped by `StopTherapy`, halted by a critical alarm, cut by a reset) and
//! what it delivered. The running bolus is kept in the ledger and in every snapshot; its
//! strokes not yet delivered are *reserved*: every snapshot stores them as delivered (in
//! the reservoir, the lifetime total and the rolling window). A reset therefore never
//! lets the limit forget a bolus: at boot the whole reservation stays counted, and the
//! boot logs `Interrupted` with the most the bolus can have delivered by then (its
//! strokes due by the boot's device time). Ending a bolus releases the reservation of
//! its strokes not delivered: the rolling window in memory only ever counts strokes the
//! motor made, and the next snapshot no longer stores the rest — until it is stored,
//! the older snapshot counts more, never less.
//!
//! ## Bridge accounting
//!
//! After a refill that changed the solution, the pump keeps the old solution
//! ([`OldSolution`]) together with the volume of it that may still be in the pump and
//! catheter: [`OLD_SOLUTION_MAX_NL`] at the refill, less every stroke delivered since
//! (the old solution leaves the catheter first, basal strokes included). A *bridge*
//! bolus delivers that old solution, so its strokes count in the rolling window (which
//! is kept in volumes of the solution in force) as the old solution: nothing for another
//! drug (whose deliveries do not count against the new drug's limit), rescaled for
//! another concentration of the same drug (rounded up). A bridge stroke beyond the old
//! volume left counts as the new solution. Other boluses and basal strokes always count
//! as the new solution (they may push old drug out, which then counts more, never less).
//!
//! The old solution is forgotten, and every stroke counts as the solution in force,
//! when the first of these happens: a bridge bolus ends (in any way: the old drug it
//! was for is out, or the clinician gave up on it), the old volume left reaches zero,
//! the next refill, or — when the pump cannot tell how much was delivered since the
//! refill — a reset.
//!
//! ## Withheld and halted
//!
//! A basal stroke the hard daily limit holds back starts the *withheld* state: logged
//! (`BasalWithheld`), reported in `Status` (`withheld`: since when, how much) and the
//! critical `DeliveryWithheld` alarm until the next basal stroke is delivered, which
//! logs `BasalResumed` with the volume held back. A critical alarm that halts delivery
//! sets `halted_since`; both are kept in the snapshot.

use thecal_protocol::message::{BolusEnd, BolusKind, BolusOutcome, Event, Refusal};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::Nanolitres;

use super::state::OldSolution;
use super::Pump;
use crate::store::{RefillFacts, SavedBolus, Snapshot, Solution, Storage};
use crate::therapy::motor::{Motor, STROKE_NL};
use crate::therapy::window::rescaled;

/// The most of a bridge bolus that counts as the old solution, nL (the shared
/// [`thecal_protocol::rules::BRIDGE_OLD_MAX`]: more than the fluid pathway of the pump
/// and the longest catheter hold together). A bridge cannot make more than this
/// uncounted against the new drug's limit, whatever volume is asked for.
pub const OLD_SOLUTION_MAX_NL: u32 = thecal_protocol::rules::BRIDGE_OLD_MAX.0;

impl<S: Storage, M: Motor> Pump<S, M> {
    /// What `nl` of bolus counts in the rolling window (volumes of the solution in
    /// force) when delivered now; `pushed` nL of other strokes may come first (they
    /// push old solution out before it).
    pub(super) fn counted(&self, kind: BolusKind, nl: u32, pushed: u32) -> u32 {
        self.split(kind, nl, pushed).0
    }

    /// [`Pump::counted`], and how much of `nl` is delivered as the old solution.
    pub(super) fn split(&self, kind: BolusKind, nl: u32, pushed: u32) -> (u32, u32) {
        let Some(old) = self.ledger.old.filter(|_| kind == BolusKind::Bridge) else {
            return (nl, 0);
        };
        let as_old = nl.min(old.left.saturating_sub(pushed));
        let to = self.solution();
        let old_part = if old.solution.drug == to.drug {
            rescaled(as_old, old.solution.concentration.0, to.concentration.0)
        } else {
            0
        };
        (old_part.saturating_add(nl - as_old), as_old)
    }

    /// The solution a refill replaced, while a bridge bolus may still deliver it.
    pub fn old_solution(&self) -> Option<Solution> {
        self.ledger.old.map(|o| o.solution)
    }

    /// Volume delivered as the old solution since boot, nL: bridge strokes the rolling
    /// window counted as the solution a refill replaced (for the fuzz target's
    /// independent ledger).
    pub fn old_solution_delivered(&self) -> u64 {
        self.ledger.old_delivered
    }

    /// A bridge of `volume` asked for now: refused if the old drug it delivers (another
    /// drug, whose deliveries the window no longer counts) is more than that drug's
    /// firmware ceiling for a day.
    pub(super) fn check_bridge(&self, volume: Nanolitres) -> Result<(), Refusal> {
        let Some(old) = self.ledger.old else {
            return Ok(());
        };
        if old.solution.drug == self.solution().drug {
            return Ok(());
        }
        let as_old = Nanolitres(volume.0.min(old.left));
        let ceiling = old.solution.drug.ceiling().max_per_day.0;
        match as_old.to_dose(old.solution.concentration) {
            Some(dose) if dose.0 <= ceiling => Ok(()),
            _ => Err(Refusal::BolusInvalid),
        }
    }

    /// A stroke of `nl` was delivered: that much less old solution may be left.
    pub(super) fn push_old(&mut self, nl: u32) {
        if let Some(old) = self.ledger.old.as_mut() {
            old.left = old.left.saturating_sub(nl);
            if old.left == 0 {
                self.ledger.old = None;
            }
        }
    }

    /// After a refill from `facts.from` to the solution in force: the old solution is
    /// kept while it may be in the pump and catheter (forgotten if the solution is the
    /// same: nothing to bridge).
    pub(super) fn keep_old_solution(&mut self, from: Solution) {
        self.ledger.old = (from != self.solution()).then_some(OldSolution {
            solution: from,
            left: OLD_SOLUTION_MAX_NL,
        });
    }

    /// Ends the running bolus (`end` says how), logs it, stores a snapshot without it and
    /// returns what it delivered; `None` if none runs. The snapshot releases the
    /// reservation of its strokes not delivered, and a reset after it finds no bolus to
    /// log as interrupted. (Logged first: a power cut between the two may log a bolus
    /// end twice, never not at all. A snapshot that cannot be stored leaves the older
    /// one, which counts the whole bolus: more, never less.)
    pub(super) fn end_bolus(&mut self, now: Timestamp, end: BolusEnd) -> Option<BolusOutcome> {
        self.dosing.cancel_bolus();
        let b = self.ledger.bolus.take()?;
        if b.kind == BolusKind::Bridge {
            self.ledger.old = None;
        }
        let outcome = BolusOutcome {
            kind: b.kind,
            end,
            delivered: Nanolitres(b.delivered.saturating_mul(STROKE_NL)),
            planned: Nanolitres(b.strokes.saturating_mul(STROKE_NL)),
        };
        self.log_event(now, Event::BolusEnded(outcome));
        self.save_snapshot(now);
        Some(outcome)
    }

    /// `CancelBolus`: ends the running bolus now; the strokes delivered stay counted,
    /// the rest of its reservation is released.
    pub(super) fn cancel_bolus(&mut self, now: Timestamp) -> Result<BolusOutcome, Refusal> {
        let by = self.actor;
        // The bolus stops whether or not its end can be stored (see `end_bolus`).
        self.end_bolus(now, BolusEnd::Cancelled { by })
            .ok_or(Refusal::NoBolus)
    }

    /// A basal stroke was held back by the daily limit.
    pub(super) fn withhold(&mut self, now: Timestamp) {
        match self.ledger.withheld.as_mut() {
            Some((_, volume)) => *volume = volume.saturating_add(STROKE_NL),
            None => {
                self.ledger.withheld = Some((now, STROKE_NL));
                self.log_event(now, Event::BasalWithheld);
                self.save_snapshot(now);
            }
        }
    }

    /// A basal stroke was delivered: a withheld state ends.
    pub(super) fn basal_delivered(&mut self, now: Timestamp) {
        if let Some((_, volume)) = self.ledger.withheld.take() {
            self.log_event(
                now,
                Event::BasalResumed {
                    withheld: Nanolitres(volume),
                },
            );
            self.save_snapshot(now);
        }
    }

    /// Keeps `halted_since` in step with the halting alarms (stored when it changes).
    pub(super) fn note_halt(&mut self, now: Timestamp) {
        let halted = self.halted().is_some();
        if halted != self.health.halted_since.is_some() {
            self.health.halted_since = halted.then_some(now);
            self.save_snapshot(now);
        }
    }

    /// The snapshot's share of the running bolus: `(volume, window)` of its strokes not
    /// yet delivered, nL, with `pushed` nL of basal reservation that may be delivered
    /// before them.
    pub(super) fn bolus_reserved(&self, pushed: u32) -> (u32, u32) {
        match self.ledger.bolus {
            Some(b) => {
                let left = b
                    .strokes
                    .saturating_sub(b.delivered)
                    .saturating_mul(STROKE_NL);
                (left, self.counted(b.kind, left, pushed))
            }
            None => (0, 0),
        }
    }

    /// Restores the delivery states of `snap` at boot; returns the bolus the reset cut.
    /// The old solution is kept only when the refill record that replaced it says how
    /// much was delivered since (`refill`, the newest stored record's refill).
    pub(super) fn restore_delivery(
        &mut self,
        snap: &Snapshot,
        refill: Option<RefillFacts>,
    ) -> Option<SavedBolus> {
        self.ledger.withheld = snap.withheld;
        self.health.halted_since = snap.halted_since;
        self.ledger.old = match (snap.old_solution, refill) {
            (Some(solution), Some(r)) if r.from == solution && snap.last_refill == Some(r.at) => {
                // The snapshot's reservoir is net of its reservation: the delivery since
                // the refill is over-estimated, the old volume left under-estimated.
                let delivered = r.volume.0.saturating_sub(snap.reservoir.0);
                let left = OLD_SOLUTION_MAX_NL.saturating_sub(delivered);
                (left > 0).then_some(OldSolution { solution, left })
            }
            _ => None,
        };
        snap.bolus
    }

    /// Logs the bolus a reset cut (found at boot): delivered at most the strokes due by
    /// `now` (or stored as delivered, if more). Its whole reservation stays counted.
    pub(super) fn log_interrupted(&mut self, b: SavedBolus, now: Timestamp) {
        if b.kind == BolusKind::Bridge {
            self.ledger.old = None;
        }
        let elapsed = u128::from(now.since(b.start).min(b.duration_ms));
        let due = elapsed * u128::from(b.strokes) / u128::from(b.duration_ms.max(1));
        let due = u32::try_from(due).unwrap_or(b.strokes);
        let delivered = due.max(b.delivered).min(b.strokes);
        let outcome = BolusOutcome {
            kind: b.kind,
            end: BolusEnd::Interrupted,
            delivered: Nanolitres(delivered.saturating_mul(STROKE_NL)),
            planned: Nanolitres(b.strokes.saturating_mul(STROKE_NL)),
        };
        self.log_event(now, Event::BolusEnded(outcome));
    }
}
