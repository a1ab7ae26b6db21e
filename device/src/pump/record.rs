//! The prescription record: what is stored, and what is put in force at boot.
//!
//! A record is stored as it was written ([`StoredPrescription`]: the draft, the rule set
//! that validated it, and a refill that changed the solution, in one atomic record). At
//! boot the newest admissible record is put in force and its standing is made visible:
//!
//! * **fallback** — a newer record was found damaged (the store fell back past it), or
//!   the snapshot names a newer revision than any record left: an older prescription
//!   runs. Logged, the critical `PrescriptionFallback` alarm, `standing.fallback` in
//!   `Status` and `ReadPrescription`, until a clinician writes a prescription. If the
//!   older record is for another solution than the reservoir holds (the fallback crossed
//!   a refill), it must not run on it: therapy is stopped (minimum flow) and cannot be
//!   resumed until a refill records the solution with its prescription.
//! * **review** — the record breaks a rule of this firmware but names an older rule set:
//!   a clinician approved it, so it stays in force, logged, with the non-critical
//!   `PrescriptionReview` alarm, until a clinician writes a new one. A record failing
//!   the rules it names is corrupt and is never put in force (the store skips it).
//! * **refill** — a record written with a refill whose snapshot was not stored after it
//!   (power cut, failed write) carries the refill: its reservoir, refill time and window
//!   change are applied at boot, so prescription and reservoir never disagree.

use thecal_protocol::message::{Event, PrescriptionRecord, Revision, Standing};
use thecal_protocol::prescription::Prescription;
use thecal_protocol::rules::RULES_VERSION;
use thecal_protocol::time::Timestamp;

use super::Pump;
use crate::store::{RefillFacts, Snapshot, Solution, Storage, StoredPrescription};
use crate::therapy::motor::Motor;

impl<S: Storage, M: Motor> Pump<S, M> {
    /// The solution the prescription in force is for.
    pub(super) fn solution(&self) -> Solution {
        let p = &self.therapy.record.prescription;
        Solution {
            drug: p.drug(),
            concentration: p.concentration(),
        }
    }

    /// The record in force as stored, with `refill` if it was written with one.
    pub(super) fn stored_record(&self, refill: Option<RefillFacts>) -> StoredPrescription {
        let r = &self.therapy.record;
        StoredPrescription {
            revision: r.revision,
            written_at: r.written_at,
            rules: RULES_VERSION,
            draft: r.prescription.draft().clone(),
            refill,
        }
    }

    /// Puts a stored record in force at boot, after the snapshot was restored.
    pub(super) fn put_in_force(
        &mut self,
        stored: StoredPrescription,
        fell_back: bool,
        snapshot: Option<&Snapshot>,
        now: Timestamp,
    ) {
        let solution = stored.solution();
        let Ok((prescription, broken)) = Prescription::admit(stored.draft) else {
            // The store admits only records with a sound structure; defence in depth.
            self.health.store_unreadable = true;
            self.therapy.stopped = true;
            return;
        };
        let saved = snapshot.map_or(Revision(0), |s| s.revision);
        let fallback = fell_back || saved.0 > stored.revision.0;
        self.therapy.record = PrescriptionRecord {
            revision: stored.revision,
            written_at: stored.written_at,
            prescription,
            standing: Standing {
                newest: Revision(stored.revision.0.max(saved.0)),
                fallback,
                review: broken.is_some(),
            },
        };
        let refill = stored.refill.filter(|_| saved.0 < stored.revision.0);
        if let Some(refill) = refill {
            self.apply_refill(refill, now);
        } else if snapshot
            .and_then(|s| s.solution)
            .is_some_and(|held| held != solution)
        {
            self.health.solution_mismatch = true;
            self.therapy.stopped = true;
        }
        if fallback {
            let standing = self.therapy.record.standing;
            self.log_event(
                now,
                Event::PrescriptionFallback {
                    in_force: stored.revision,
                    newest: standing.newest,
                },
            );
        }
        if broken.is_some() {
            self.log_event(
                now,
                Event::PrescriptionReview {
                    revision: stored.revision,
                    rules: stored.rules,
                },
            );
        }
    }

    /// Applies the reservoir side of a refill that changed the solution to `refill.from`
    /// → the solution in force: the reservoir holds the new volume, the outstanding
    /// reservation is void, and the rolling window counts drug as the new solution's
    /// volume (cleared for another drug, rescaled for another concentration).
    pub(super) fn apply_refill(&mut self, refill: RefillFacts, now: Timestamp) {
        let to = self.solution();
        if to.drug != refill.from.drug {
            self.ledger.window.clear();
        } else {
            self.ledger
                .window
                .rescale(refill.from.concentration.0, to.concentration.0);
        }
        self.ledger.reservoir = refill.volume;
        self.ledger.reserve_left = 0;
        self.ledger.last_refill = Some(refill.at);
        let _ = now;
    }
}
