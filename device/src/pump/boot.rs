//! Boot: the pump core comes up from what its store holds — the secrets, the snapshot
//! (restored, its reservation moved to now, the basal part-stroke carried on), the
//! prescription record (put in force with its standing, see `record`) — or from the
//! factory state on a blank store, then logs the reset and stores its own snapshot.

use heapless::Vec;
use thecal_protocol::message::{Event, PrescriptionRecord, ResetCause, Revision, Role, Standing};
use thecal_protocol::time::Timestamp;

use super::noise::Noise;
use super::state::{Clock, EventLog, Health, KeyState, Ledger, Therapy};
use super::{DeviceInfo, Factory, Pump};
use crate::store::{LogBounds, Snapshot, Storage};
use crate::therapy::alarms::Alarms;
use crate::therapy::battery::Battery;
use crate::therapy::dosing::Dosing;
use crate::therapy::motor::Motor;
use crate::therapy::window::Window;

impl<S: Storage, M: Motor> Pump<S, M> {
    /// Boots the core at device time `now`: loads the stored state (or the factory state
    /// on a blank store), logs the reset and evaluates alarms. A store that cannot be read
    /// boots into therapy-stopped with the factory prescription and a storage-fault alarm,
    /// rather than guessing a prescription.
    pub fn boot(
        info: DeviceInfo,
        factory: Factory,
        storage: S,
        motor: M,
        now: Timestamp,
        cause: ResetCause,
    ) -> Self {
        let battery = Battery::new(info.battery, factory.battery_used_nah);
        let mut pump = Pump {
            info,
            storage,
            motor,
            therapy: Therapy {
                record: PrescriptionRecord {
                    revision: Revision(1),
                    written_at: factory.wall_at_zero.plus_ms(now.0),
                    prescription: factory.prescription,
                    standing: Standing {
                        newest: Revision(1),
                        fallback: false,
                        review: false,
                    },
                },
                stopped: false,
                patient: Vec::new(),
            },
            clock: Clock {
                wall_offset_ms: i64::try_from(factory.wall_at_zero.0).unwrap_or(0),
                utc_offset: factory.utc_offset,
                last_tick: now,
            },
            ledger: Ledger {
                reservoir: factory.volume,
                last_refill: None,
                delivered_total: 0,
                reserve_left: 0,
                window: Window::new(),
                seq: 0,
                bolus: None,
                old: None,
                withheld: None,
                old_delivered: 0,
            },
            dosing: Dosing::new(now),
            health: Health {
                battery,
                alarms: Alarms::new(),
                motor_stalled: false,
                storage_fault: false,
                store_unreadable: false,
                solution_mismatch: false,
                halted_since: None,
            },
            keys: KeyState {
                secrets: None,
                public_key: None,
                secrets_unreadable: false,
                secrets_damaged: false,
                boot_epoch: 0,
                boot_count: 0,
            },
            log: EventLog {
                bounds: LogBounds::default(),
                noise: Noise::new(now),
            },
            actor: Role::Clinician,
        };
        // The secrets first, from their own region: whatever state the therapy records
        // are in, the pump stays reachable (a service session can read the log).
        match pump.storage.load_secrets() {
            Ok((secrets, damaged)) => {
                // Damage and no valid copy left: the region held secrets once. Never
                // start afresh over it (a new static key would make the pump
                // unprovisioned, and anyone could provision it in the clear): the pump
                // keeps dosing, raises its storage alarm and refuses sessions until
                // serviced.
                pump.keys.secrets_unreadable = damaged && secrets.is_none();
                pump.keys.secrets_damaged = damaged;
                pump.set_secrets(secrets);
            }
            Err(_) => {
                pump.health.storage_fault = true;
                pump.keys.secrets_unreadable = true;
            }
        }
        let mut stored_boots = 0;
        let mut interrupted = None;
        match pump.storage.load() {
            Ok(stored) => {
                pump.log.bounds = stored.log;
                if let Some(snap) = &stored.snapshot {
                    pump.restore(snap, now);
                    let refill = stored.prescription.as_ref().and_then(|r| r.refill);
                    interrupted = pump.restore_delivery(snap, refill);
                    stored_boots = snap.boot_count;
                }
                match stored.prescription {
                    Some(record) => pump.put_in_force(
                        record,
                        stored.prescription_fell_back,
                        stored.snapshot.as_ref(),
                        now,
                    ),
                    None => {
                        let record = pump.stored_record(None);
                        pump.health.storage_fault |=
                            pump.storage.save_prescription(&record).is_err();
                    }
                }
                if let Some(snap) = &stored.snapshot {
                    pump.resume_dosing(snap, now);
                }
            }
            Err(_) => {
                pump.health.storage_fault = true;
                pump.health.store_unreadable = true;
                pump.therapy.stopped = true;
            }
        }
        // The nonce epoch of this boot: the event log's next index (high 32 bits) and
        // the boot count of the snapshot, plus one (low 32 bits). The two are stored in
        // different regions and each only grows, so a store that falls back to an
        // older snapshot (or loses the newest log entry) still yields a new epoch. The
        // count is persisted by the boot's own snapshot below, not by any handshake.
        pump.keys.boot_count = stored_boots.wrapping_add(1);
        pump.keys.boot_epoch =
            (u64::from(pump.log.bounds.next) << 32) | u64::from(pump.keys.boot_count);
        pump.log_event(now, Event::Reset { cause });
        if let Some(bolus) = interrupted {
            pump.log_interrupted(bolus, now);
        }
        pump.save_snapshot(now);
        pump.evaluate_alarms(now);
        pump
    }

    fn restore(&mut self, snap: &Snapshot, now: Timestamp) {
        self.ledger.seq = snap.seq;
        self.clock.wall_offset_ms = snap.wall_offset_ms;
        self.clock.utc_offset = snap.utc_offset;
        self.ledger.reservoir = snap.reservoir;
        self.ledger.last_refill = snap.last_refill;
        self.therapy.stopped = snap.stopped;
        self.ledger.delivered_total = snap.delivered_total;
        self.health.battery = Battery::new(self.info.battery, snap.battery_used_nah);
        self.ledger.window = Window::restore(snap.window_epoch, snap.window.clone());
        // The reservation may have been delivered at any time since the snapshot: count
        // it now instead.
        self.ledger.window.move_newest(now, snap.reserved);
        self.therapy.patient = snap.patient_boluses.clone();
        for &kind in snap.acknowledged.iter() {
            self.health.alarms.set(kind, true, now);
            self.health.alarms.acknowledge(kind, now);
        }
    }

    /// Carries the snapshot's basal part-stroke on from its save (see
    /// [`Dosing::resumed`]) if it was accumulated under the flow in force now: the same
    /// prescription revision and stop state. Otherwise (a fallback, a write the snapshot
    /// does not know, a solution mismatch) the engine starts from zero: a part-stroke
    /// later, never sooner.
    fn resume_dosing(&mut self, snap: &Snapshot, now: Timestamp) {
        if snap.revision != self.therapy.record.revision || snap.stopped != self.therapy.stopped {
            return;
        }
        let (therapy, clock) = (&self.therapy, &self.clock);
        self.dosing = Dosing::resumed(snap.saved_at, snap.basal_carry, now, &|t| {
            therapy.flow_at(clock, t)
        });
    }
}
