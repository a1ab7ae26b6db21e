//! Requests: `handle(now, request) -> response`. Every handler checks everything first
//! and changes state only when it answers with success; a refusal changes nothing but the
//! event log.

use heapless::Vec;
use thecal_protocol::message::{
    AlarmKind, BolusEnd, BolusKind, BolusReport, BolusRequest, Event, LogPage, PrescriptionRecord,
    Refusal, Request, Response, Revision, Role, Standing,
};
use thecal_protocol::prescription::{Prescription, PrescriptionDraft};
use thecal_protocol::rules::RULES_VERSION;
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres, MS_PER_DAY, MS_PER_MINUTE};

use super::Pump;
use crate::store::{RefillFacts, SavedBolus, Storage, StoredPrescription};
use crate::therapy::motor::{Motor, STROKE_NL};

/// Wall clock values the pump accepts: 2020-01-01 ..= 2100-01-01 UTC.
pub const CLOCK_RANGE: core::ops::RangeInclusive<u64> = 1_577_836_800_000..=4_102_444_800_000;
/// Longest bolus, ms ([`thecal_protocol::rules::MAX_BOLUS_DURATION`]).
pub const MAX_BOLUS_MS: u64 = thecal_protocol::rules::MAX_BOLUS_DURATION.0 as u64 * 60_000;
/// Fastest bolus flow the mechanism allows, nL/day
/// ([`thecal_protocol::rules::MAX_BOLUS_FLOW`]: 2.5 mL/h, 60 mL/day).
pub const MAX_BOLUS_FLOW: u64 = thecal_protocol::rules::MAX_BOLUS_FLOW.0 as u64;

impl<S: Storage, M: Motor> Pump<S, M> {
    /// Serves one request at device time `now` as a clinician at the bedside would make
    /// it (tests, benchmarks, examples). The request server calls [`Pump::handle_as`]
    /// with the role of the session, after its role check.
    pub fn handle(&mut self, now: Timestamp, request: &Request) -> Response {
        self.handle_as(now, Role::Clinician, request)
    }

    /// Serves one request of a session of `role` at device time `now`: the events it
    /// logs name `role`. The role check is the caller's (the request server's).
    pub fn handle_as(&mut self, now: Timestamp, role: Role, request: &Request) -> Response {
        self.tick(now);
        self.actor = role;
        let response = match self.serve(now, request) {
            Ok(response) => response,
            Err(refusal) => {
                self.log_noise(
                    now,
                    Event::Refused {
                        by: role,
                        request: request.tag(),
                        reason: refusal.code(),
                        count: 1,
                    },
                );
                Response::Refused(refusal)
            }
        };
        self.evaluate_alarms(now);
        response
    }

    fn serve(&mut self, now: Timestamp, request: &Request) -> Result<Response, Refusal> {
        Ok(match request {
            Request::Identify => Response::Identity(self.identity()),
            Request::Ping { token } => Response::Pong { token: *token },
            Request::Status => Response::Status(self.status(now)),
            Request::Battery => Response::Battery(self.battery_report()),
            Request::Reservoir => Response::Reservoir(self.reservoir_report(now)),
            Request::ReadPrescription => Response::Prescription(self.therapy.record.clone()),
            Request::WritePrescription {
                expected,
                prescription,
            } => self.write_prescription(now, *expected, prescription)?,
            Request::Refill {
                expected,
                volume,
                prescription,
            } => self.refill(now, *expected, *volume, prescription.as_ref())?,
            Request::ClinicianBolus(b) => Response::BolusStarted(self.clinician_bolus(now, *b)?),
            Request::PatientBolus => Response::PatientBolusStarted(self.patient_bolus(now)?),
            Request::StopTherapy => {
                if !self.therapy.stopped {
                    self.therapy.stopped = true;
                    self.persist(now, |p| p.therapy.stopped = false)?;
                    self.log_event(now, Event::TherapyStopped { by: self.actor });
                    // A stop ends the bolus; the snapshot just stored still counts all
                    // of it, the one `end_bolus` stores only what it delivered.
                    self.end_bolus(now, BolusEnd::Stopped);
                }
                Response::TherapyStopped
            }
            Request::ResumeTherapy => self.resume(now)?,
            Request::ReadAlarms => {
                let clock = &self.clock;
                Response::Alarms(self.health.alarms.entries(now, |t| clock.wall(t)))
            }
            Request::AcknowledgeAlarm { alarm } => {
                if !self.health.alarms.acknowledge(*alarm, now) {
                    return Err(Refusal::AlarmNotActive(*alarm));
                }
                // An acknowledgement that is not stored still holds until a reset.
                self.save_snapshot(now);
                self.log_event(
                    now,
                    Event::AlarmAcknowledged {
                        alarm: *alarm,
                        by: self.actor,
                    },
                );
                Response::AlarmAcknowledged
            }
            Request::ReadLog { first, max } => Response::LogPage(self.read_log(*first, *max)?),
            Request::SetClock { now: wall, offset } => self.set_clock(now, *wall, *offset)?,
            // Served by the request server (link counters, sessions, provisioning).
            Request::Provision { ephemeral } => match self.provision(now, ephemeral, true) {
                Response::Refused(refusal) => return Err(refusal),
                response => response,
            },
            Request::RotateKey { role, epoch, key } => {
                self.rotate_key(now, self.actor, *role, *epoch, key)?
            }
            Request::CancelBolus => Response::BolusCancelled(self.cancel_bolus(now)?),
            Request::LinkStats
            | Request::SessionHello { .. }
            | Request::SessionProof { .. }
            | Request::SessionClose => return Err(Refusal::Unsupported),
            // Served by the request server's updater (crate::update), not the pump core.
            Request::UpdateBegin { .. }
            | Request::UpdateChunk { .. }
            | Request::UpdateFinish
            | Request::UpdateStatus => return Err(Refusal::Unsupported),
        })
    }

    /// Stores the snapshot of a change just made; if that fails, `undo` reverts the
    /// change and the request is refused: the pump never acknowledges a change it could
    /// lose at the next reset.
    fn persist(&mut self, now: Timestamp, undo: impl FnOnce(&mut Self)) -> Result<(), Refusal> {
        if self.try_save_snapshot(now) {
            Ok(())
        } else {
            undo(self);
            Err(Refusal::StorageFault)
        }
    }

    fn check_revision(&self, expected: Revision) -> Result<(), Refusal> {
        if expected != self.therapy.record.revision {
            return Err(Refusal::RevisionMismatch {
                expected,
                current: self.therapy.record.revision,
            });
        }
        Ok(())
    }

    /// Stores `prescription` as the next revision — with `refill`, if it is written with
    /// one, in the same record — then puts it in force: validate → store → verify →
    /// activate. Nothing changes unless the record is stored.
    fn commit(
        &mut self,
        now: Timestamp,
        prescription: Prescription,
        refill: Option<RefillFacts>,
    ) -> Result<Revision, Refusal> {
        let old = self.therapy.record.revision;
        // Past the newest revision ever written: after a fallback, the lost revision's
        // number is not reused for a different prescription.
        let newest = old.0.max(self.therapy.record.standing.newest.0);
        let revision = Revision(newest.wrapping_add(1).max(1));
        let record = PrescriptionRecord {
            revision,
            written_at: self.wall(now),
            prescription,
            standing: Standing {
                newest: revision,
                fallback: false,
                review: false,
            },
        };
        let stored = StoredPrescription {
            revision,
            written_at: record.written_at,
            rules: RULES_VERSION,
            draft: record.prescription.draft().clone(),
            refill,
        };
        if self.storage.save_prescription(&stored).is_err() {
            self.note_storage(false);
            return Err(Refusal::StorageFault);
        }
        self.therapy.record = record;
        self.log_event(
            now,
            Event::PrescriptionChanged {
                old,
                new: revision,
                by: self.actor,
            },
        );
        Ok(revision)
    }

    fn write_prescription(
        &mut self,
        now: Timestamp,
        expected: Revision,
        draft: &PrescriptionDraft,
    ) -> Result<Response, Refusal> {
        let prescription =
            Prescription::new(draft.clone()).map_err(Refusal::InvalidPrescription)?;
        self.check_revision(expected)?;
        let current = &self.therapy.record.prescription;
        if prescription.drug() != current.drug()
            || prescription.concentration() != current.concentration()
        {
            return Err(Refusal::DrugChangeNeedsRefill);
        }
        let revision = self.commit(now, prescription, None)?;
        Ok(Response::PrescriptionWritten { revision })
    }

    fn refill(
        &mut self,
        now: Timestamp,
        expected: Revision,
        volume: Nanolitres,
        draft: Option<&PrescriptionDraft>,
    ) -> Result<Response, Refusal> {
        self.check_revision(expected)?;
        if volume > self.info.capacity {
            return Err(Refusal::AboveCapacity {
                volume,
                capacity: self.info.capacity,
            });
        }
        if volume.0 < STROKE_NL {
            return Err(Refusal::RefillTooSmall {
                volume,
                min: Nanolitres(STROKE_NL),
            });
        }
        let prescription = match draft {
            Some(d) => Some(Prescription::new(d.clone()).map_err(Refusal::InvalidPrescription)?),
            None => None,
        };
        if let Some(p) = prescription {
            // One atomic record: the prescription for the new solution with the refill.
            // Once it is stored, both are in force — a reset before the snapshot below
            // applies the refill from the record (see `record`) — so a failed snapshot
            // raises the storage alarm but does not make the answer untrue.
            let facts = RefillFacts {
                volume,
                at: now,
                from: self.solution(),
            };
            self.commit(now, p, Some(facts))?;
            self.apply_refill(facts);
            self.keep_old_solution(facts.from);
            self.health.solution_mismatch = false;
            self.save_snapshot(now);
        } else {
            // The reservoir is what the clinician put in; the outstanding reservation
            // was drawn from the old fill and is void.
            let before = (
                self.ledger.reservoir,
                self.ledger.reserve_left,
                self.ledger.last_refill,
            );
            let old = self.ledger.old;
            self.ledger.reservoir = volume;
            self.ledger.reserve_left = 0;
            self.ledger.last_refill = Some(now);
            // The next refill forgets the solution an earlier one replaced.
            self.ledger.old = None;
            self.persist(now, |p| {
                (
                    p.ledger.reservoir,
                    p.ledger.reserve_left,
                    p.ledger.last_refill,
                ) = before;
                p.ledger.old = old;
            })?;
        }
        let p = &self.therapy.record.prescription;
        let (drug, concentration) = (p.drug(), p.concentration());
        self.log_event(
            now,
            Event::Refilled {
                volume,
                drug,
                concentration,
                by: self.actor,
            },
        );
        self.evaluate_alarms(now);
        Ok(Response::Refilled {
            revision: self.therapy.record.revision,
            reservoir: self.reservoir_report(now),
        })
    }

    fn check_can_dose(&self) -> Result<(), Refusal> {
        if let Some(kind) = self.halted() {
            return Err(Refusal::Alarm(kind));
        }
        if self.therapy.stopped {
            return Err(Refusal::TherapyStopped);
        }
        if self.dosing.bolus().is_some() {
            return Err(Refusal::BolusInProgress);
        }
        Ok(())
    }

    /// Checks a bolus of `volume` over `duration_ms` against the pump and the limit;
    /// returns its whole strokes.
    fn check_bolus(
        &mut self,
        now: Timestamp,
        kind: BolusKind,
        volume: Nanolitres,
        duration_ms: u64,
    ) -> Result<u32, Refusal> {
        let strokes = volume.0 / STROKE_NL;
        if strokes == 0 || duration_ms == 0 || duration_ms > MAX_BOLUS_MS {
            return Err(Refusal::BolusInvalid);
        }
        let whole = u64::from(strokes) * u64::from(STROKE_NL);
        // nL/day = nL × ms_per_day / ms.
        if whole * MS_PER_DAY / duration_ms > MAX_BOLUS_FLOW {
            return Err(Refusal::BolusInvalid);
        }
        if kind == BolusKind::Bridge {
            self.check_bridge(Nanolitres(strokes * STROKE_NL))?;
        }
        // As the window will count it (a bridge of the old solution counts as it).
        let counted = self.counted(kind, strokes * STROKE_NL, 0);
        let delivered = self.ledger.window.total(now);
        if delivered + u64::from(counted) > self.limit_nl() {
            let c = self.therapy.record.prescription.concentration();
            let to_dose = |nl: u64| {
                Nanolitres(u32::try_from(nl).unwrap_or(u32::MAX))
                    .to_dose(c)
                    .unwrap_or(Nanograms(u32::MAX))
            };
            return Err(Refusal::DailyLimit {
                delivered: to_dose(delivered),
                requested: to_dose(u64::from(counted)),
                limit: self.therapy.record.prescription.daily_limit(),
            });
        }
        Ok(strokes)
    }

    fn start_bolus(
        &mut self,
        now: Timestamp,
        kind: BolusKind,
        strokes: u32,
        duration_ms: u64,
    ) -> Result<BolusReport, Refusal> {
        let volume = Nanolitres(strokes * STROKE_NL);
        let dose = volume
            .to_dose(self.therapy.record.prescription.concentration())
            .unwrap_or(Nanograms(u32::MAX));
        // Reserve the whole bolus ahead (with the patient history already updated by the
        // caller): every snapshot stores its strokes not yet delivered as delivered, so
        // after a reset it counts for the limit and the lockout.
        self.ledger.bolus = Some(SavedBolus {
            kind,
            dose,
            strokes,
            delivered: 0,
            start: now,
            duration_ms: duration_ms.max(1),
        });
        self.persist(now, |p| {
            p.ledger.bolus = None;
            if kind == BolusKind::Patient {
                p.therapy.patient.pop();
            }
        })?;
        self.dosing
            .start_bolus(kind, dose, strokes, duration_ms, now);
        self.log_event(
            now,
            Event::Bolus {
                kind,
                dose,
                by: self.actor,
            },
        );
        Ok(BolusReport {
            kind,
            dose,
            volume,
            ends_at: self.wall(now.plus_ms(duration_ms)),
        })
    }

    fn clinician_bolus(&mut self, now: Timestamp, b: BolusRequest) -> Result<BolusReport, Refusal> {
        self.check_can_dose()?;
        let c = self.therapy.record.prescription.concentration();
        let (kind, volume, duration) = match b {
            BolusRequest::Single { dose, duration } => (
                BolusKind::Single,
                dose.to_volume(c).ok_or(Refusal::BolusInvalid)?,
                duration,
            ),
            BolusRequest::Priming { volume, duration } => (BolusKind::Priming, volume, duration),
            BolusRequest::Bridge { volume, duration } => (BolusKind::Bridge, volume, duration),
        };
        let duration_ms = duration.as_ms();
        let strokes = self.check_bolus(now, kind, volume, duration_ms)?;
        self.start_bolus(now, kind, strokes, duration_ms)
    }

    fn patient_bolus(&mut self, now: Timestamp) -> Result<BolusReport, Refusal> {
        let rules = self
            .therapy
            .record
            .prescription
            .patient_bolus()
            .ok_or(Refusal::PatientBolusNotAllowed)?;
        self.check_can_dose()?;
        self.therapy.patient.retain(|t| now.since(*t) < MS_PER_DAY);
        if self.therapy.patient.len() >= usize::from(rules.max_per_day) {
            return Err(Refusal::PatientDailyMaximum {
                max: rules.max_per_day,
            });
        }
        if let Some(last) = self.therapy.patient.iter().max() {
            let until = last.plus_ms(rules.lockout.as_ms());
            if now < until {
                return Err(Refusal::PatientLockout {
                    until: self.wall(until),
                });
            }
        }
        let volume = rules
            .dose
            .to_volume(self.therapy.record.prescription.concentration())
            .ok_or(Refusal::BolusInvalid)?;
        // As fast as the pump allows, but at least a minute.
        let fastest = (u64::from(volume.0) * MS_PER_DAY).div_ceil(MAX_BOLUS_FLOW);
        let duration_ms = fastest.max(Minutes(1).as_ms()).div_ceil(MS_PER_MINUTE) * MS_PER_MINUTE;
        let strokes = self.check_bolus(now, BolusKind::Patient, volume, duration_ms)?;
        if self.therapy.patient.push(now).is_err() {
            return Err(Refusal::PatientDailyMaximum {
                max: rules.max_per_day,
            });
        }
        self.start_bolus(now, BolusKind::Patient, strokes, duration_ms)
    }

    fn resume(&mut self, now: Timestamp) -> Result<Response, Refusal> {
        if self.health.solution_mismatch {
            // The prescription in force is for another solution than the reservoir
            // holds: a refill must record the solution with its prescription first.
            return Err(Refusal::Alarm(AlarmKind::PrescriptionFallback));
        }
        if let Some(kind) = self.halted() {
            if kind != AlarmKind::MotorStall {
                return Err(Refusal::Alarm(kind));
            }
            // A clinician's resume retries the motor; a new stall raises it again.
            self.health.motor_stalled = false;
        }
        if self.therapy.stopped {
            self.therapy.stopped = false;
            self.persist(now, |p| p.therapy.stopped = true)?;
            self.log_event(now, Event::TherapyResumed { by: self.actor });
        }
        Ok(Response::TherapyResumed)
    }

    fn read_log(&mut self, first: u32, max: u8) -> Result<LogPage, Refusal> {
        let mut entries = Vec::new();
        let bounds = self
            .storage
            .read_log(first, usize::from(max), &mut entries)
            .map_err(|_| Refusal::StorageFault)?;
        Ok(LogPage {
            oldest: bounds.oldest,
            next: bounds.next,
            entries,
        })
    }

    fn set_clock(
        &mut self,
        now: Timestamp,
        wall: Timestamp,
        offset: UtcOffset,
    ) -> Result<Response, Refusal> {
        if !CLOCK_RANGE.contains(&wall.0) || !offset.is_valid() {
            return Err(Refusal::ClockInvalid);
        }
        let previous = self.wall(now);
        let before = (self.clock.wall_offset_ms, self.clock.utc_offset);
        self.clock.wall_offset_ms = i64::try_from(i128::from(wall.0) - i128::from(now.0))
            .map_err(|_| Refusal::ClockInvalid)?;
        self.clock.utc_offset = offset;
        self.persist(now, |p| {
            (p.clock.wall_offset_ms, p.clock.utc_offset) = before
        })?;
        self.log_event(
            now,
            Event::ClockChanged {
                from: previous,
                to: wall,
                offset,
                by: self.actor,
            },
        );
        Ok(Response::ClockSet { previous })
    }
}
