//! The pump core: a sans-IO state machine.
//!
//! The platform calls [`Pump::tick`] at least by [`Pump::next_wake`] and
//! [`Pump::handle`] for each request; both take `now`, the *device time*: a monotonic
//! millisecond clock that never goes backwards, not even across a reset (on a real pump,
//! the always-on RTC). The wall clock (UTC) is device time plus an offset set by
//! `SetClock`; the schedule runs in the patient's local time (UTC plus the patient's
//! offset). Everything that enforces safety — the rolling 24 h limit, patient-bolus
//! lockouts — runs on device time, so setting the clock cannot bypass it.
//!
//! ## Persistence
//!
//! The snapshot (reservoir, counters, window, clock, patient-bolus history) is written
//! *ahead* of delivery: before a stroke, the pump reserves [`RESERVE_NL`] and stores a
//! snapshot in which that volume is already delivered. After a reset the pump therefore
//! believes it delivered up to [`RESERVE_NL`] more than it did: the reservoir estimate is
//! at most 10 µL low and the rolling window at most 10 µL full — both on the safe side.
//! The snapshot records the reservation in the window's bucket of the moment it was
//! saved, but the reserved volume may be delivered any time until the next snapshot —
//! hours later for a long bolus, whose whole volume is reserved at its start. The
//! snapshot therefore keeps the outstanding reservation, and at boot the pump moves it to
//! the current bucket, so nothing delivered leaves the rolling window early. (Moved, not
//! counted twice, and a boot stores a snapshot with nothing reserved: a pump that resets
//! again and again does not pile up charges that would block its basal delivery.)
//! A running bolus is reserved apart from the basal reservation: its strokes not yet
//! delivered are stored as delivered in every snapshot, with the bolus itself. A reset
//! ends it (its whole volume stays counted, for the limit and the lockout) and the boot
//! logs it as interrupted (see the `bolus` module for how boluses end, what a bridge
//! bolus counts, and the withheld and halted states).
//!
//! ## Therapy first
//!
//! A failed flash write raises the critical storage-fault alarm but never stops basal
//! delivery: stopping an intrathecal infusion abruptly (baclofen withdrawal) is itself
//! dangerous. Only an empty reservoir, a motor stall and end of battery service halt it.

use heapless::String;
use thecal_protocol::message::{
    AlarmKind, BatteryState, BolusEnd, Event, LogEntry, PrescriptionRecord, Revision, Role, Version,
};
use thecal_protocol::prescription::Prescription;
use thecal_protocol::rules::MIN_FLOW;
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Nanolitres, NanolitresPerDay};

use crate::store::{Snapshot, Storage};
use crate::therapy::alarms::Change;
use crate::therapy::battery::BatteryConfig;
use crate::therapy::dosing::Dosing;
use crate::therapy::motor::{Motor, STROKE_NL};

mod bolus;
mod boot;
pub mod demo;
mod handle;
pub mod keys;
pub mod noise;
mod record;
mod report;
mod state;

use state::{Clock, EventLog, Health, KeyState, Ledger, Therapy};

/// Volume reserved (persisted as delivered) ahead of delivery: 10 µL, 40 strokes.
pub const RESERVE_NL: u32 = 10_000;
/// Longest the core sleeps between ticks, so alarms and the battery stay current.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// Fixed facts about this pump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Model name.
    pub model: String<16>,
    /// Serial number.
    pub serial: String<16>,
    /// Firmware version.
    pub firmware: Version,
    /// Reservoir capacity.
    pub capacity: Nanolitres,
    /// Battery parameters.
    pub battery: BatteryConfig,
}

/// The state a never-programmed pump starts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factory {
    /// Prescription in force until a clinician writes one.
    pub prescription: Prescription,
    /// Reservoir volume.
    pub volume: Nanolitres,
    /// Wall clock (UTC) at device time zero.
    pub wall_at_zero: Timestamp,
    /// Patient's UTC offset.
    pub utc_offset: UtcOffset,
    /// Charge already used (fault injection; normally 0).
    pub battery_used_nah: u64,
}

/// The pump core over a storage and a motor.
pub struct Pump<S, M> {
    info: DeviceInfo,
    storage: S,
    motor: M,
    therapy: Therapy,
    clock: Clock,
    ledger: Ledger,
    /// Delivery in progress (basal integration and a running bolus).
    dosing: Dosing,
    health: Health,
    keys: KeyState,
    log: EventLog,
    /// Role of the session whose request is being served (named by therapy events).
    actor: Role,
}

impl<S: Storage, M: Motor> Pump<S, M> {
    /// The prescription record in force.
    pub fn record(&self) -> &PrescriptionRecord {
        &self.therapy.record
    }

    /// Whether a bolus is running (a firmware swap waits for it to end).
    pub fn bolus_running(&self) -> bool {
        self.dosing.bolus().is_some()
    }

    /// Reservoir estimate.
    pub fn reservoir(&self) -> Nanolitres {
        self.ledger.reservoir
    }

    /// Lifetime delivered volume, nL.
    pub fn delivered_total(&self) -> u64 {
        self.ledger.delivered_total
    }

    /// Battery charge used, nAh.
    pub fn battery_used_nah(&self) -> u64 {
        self.health.battery.used_nah()
    }

    /// The motor.
    pub fn motor(&self) -> &M {
        &self.motor
    }

    /// Takes the pump apart (a reset: everything not in storage is lost).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The storage.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Volume delivered in the rolling 24 h ending at `now`, nL (as the limit sees it).
    pub fn window_total(&mut self, now: Timestamp) -> u64 {
        self.ledger.window.total(now)
    }

    /// Whether `kind` is active.
    pub fn alarm_active(&self, kind: AlarmKind) -> bool {
        self.health.alarms.is_active(kind)
    }

    /// Hard daily limit as a volume, nL: at most `u32::MAX` (a limit whose volume does not
    /// fit is 0, and nothing is delivered; the rolling window relies on this bound).
    pub fn limit_nl(&self) -> u64 {
        let p = &self.therapy.record.prescription;
        p.daily_limit()
            .to_flow(p.concentration())
            .map_or(0, |f| u64::from(f.0))
    }

    /// This boot's epoch of handshake nonces: `log next index << 32 | boot count`, both
    /// read at boot; new at every boot even when one of the two stores fell back to an
    /// older record (each of them only grows).
    pub fn boot_epoch(&self) -> u64 {
        self.keys.boot_epoch
    }

    /// Logs `event` (the request server's security events: sessions, presence).
    pub fn log(&mut self, now: Timestamp, event: Event) {
        self.log_event(now, event);
    }

    /// Logs a repeating event (refusal, failed handshake, link abuse): aggregated with
    /// its repeats and rate-limited (see [`crate::pump::noise`]).
    pub fn log_noise(&mut self, now: Timestamp, event: Event) {
        if let Some(previous) = self.log.noise.add(event, now) {
            self.append_log(now, previous);
        }
    }

    /// Logs a session opened or ended: rate-limited (see [`crate::pump::noise`]), so a key
    /// holder looping handshakes cannot flush the log or wear the flash.
    pub fn log_session(&mut self, now: Timestamp, event: Event) {
        if let Some(entry) = self.log.noise.admit_session(event, now) {
            self.log_event(now, entry);
        }
    }

    /// The repeating entry being aggregated, not yet written.
    pub fn held_log_entry(&self) -> Option<&Event> {
        self.log.noise.held()
    }

    /// Charge of one telemetry frame, nAh.
    pub fn frame_nah(&self) -> u64 {
        self.info.battery.per_frame_nah
    }

    /// Device time of the last tick.
    pub fn last_tick(&self) -> Timestamp {
        self.clock.last_tick
    }

    /// The serial number.
    pub fn serial(&self) -> &str {
        self.info.serial.as_str()
    }

    /// Consumes the battery as if `nah` were used (fault injection).
    pub fn inject_battery_use(&mut self, nah: u64, now: Timestamp) {
        self.health.battery.use_nah(nah);
        self.evaluate_alarms(now);
    }

    /// Charges one telemetry frame to the battery.
    pub fn charge_frame(&mut self) {
        self.health.battery.drain_frame();
    }

    /// Wall clock at device time `t`.
    pub fn wall(&self, t: Timestamp) -> Timestamp {
        self.clock.wall(t)
    }

    /// Brings delivery, battery and alarms up to device time `now`.
    pub fn tick(&mut self, now: Timestamp) {
        if now <= self.clock.last_tick {
            return;
        }
        self.health
            .battery
            .drain_awake(now.since(self.clock.last_tick));
        self.clock.last_tick = now;
        self.deliver(now);
        self.evaluate_alarms(now);
        if let Some(entry) = self.log.noise.release(now, true) {
            self.append_log(now, entry);
        }
    }

    /// The latest device time by which [`Pump::tick`] must be called again.
    pub fn next_wake(&self) -> Timestamp {
        let due = self.dosing.next_due(&|t| self.flow_at(t));
        due.min(self.clock.last_tick.plus_ms(MAX_SLEEP_MS))
            .max(self.clock.last_tick.plus_ms(1))
    }

    /// The basal flow at device time `t` and the device time it next changes.
    fn flow_at(&self, t: Timestamp) -> (NanolitresPerDay, Timestamp) {
        self.therapy.flow_at(&self.clock, t)
    }

    /// Average strokes per day under the prescription in force (for the battery model).
    fn strokes_per_day(&self) -> u64 {
        let p = &self.therapy.record.prescription;
        if self.therapy.stopped {
            return u64::from(MIN_FLOW.0 / STROKE_NL);
        }
        let mut sum = 0u64;
        for s in p.segments() {
            sum += u64::from(p.flow_for(s.dose).0) * u64::from(s.end - s.start);
        }
        sum / u64::from(p.cycle_minutes().max(1)) / u64::from(STROKE_NL)
    }

    fn halted(&self) -> Option<AlarmKind> {
        if self.health.motor_stalled {
            return Some(AlarmKind::MotorStall);
        }
        if self.health.battery.state(0) == BatteryState::EndOfService {
            return Some(AlarmKind::EndOfService);
        }
        if self.ledger.reservoir.0 < STROKE_NL {
            return Some(AlarmKind::EmptyReservoir);
        }
        None
    }

    fn deliver(&mut self, now: Timestamp) {
        let (therapy, clock) = (&self.therapy, &self.clock);
        let due = self.dosing.advance(now, &|t| therapy.flow_at(clock, t));
        if let Some(kind) = self.halted() {
            self.end_bolus(now, BolusEnd::Halted(kind));
            return;
        }
        let limit = self.limit_nl();
        for k in 0..due.basal.saturating_add(due.bolus) {
            let bolus = if k >= due.basal {
                self.ledger.bolus.map(|b| b.kind)
            } else {
                None
            };
            if let Some(kind) = self.halted() {
                self.end_bolus(now, BolusEnd::Halted(kind));
                return;
            }
            let (counted, as_old) =
                bolus.map_or((STROKE_NL, 0), |kind| self.split(kind, STROKE_NL, 0));
            // The hard limit, stroke by stroke, whatever was requested.
            if self.ledger.window.total(now) + u64::from(counted) > limit {
                if bolus.is_none() {
                    self.withhold(now);
                }
                continue;
            }
            // A bolus stroke is reserved with its bolus; a basal stroke from the pool.
            if bolus.is_none() && self.ledger.reserve_left < STROKE_NL {
                self.reserve(RESERVE_NL, now);
            }
            if self.motor.stroke().is_err() {
                self.health.motor_stalled = true;
                self.end_bolus(now, BolusEnd::Halted(AlarmKind::MotorStall));
                return;
            }
            match self.ledger.bolus.as_mut().filter(|_| bolus.is_some()) {
                Some(b) => {
                    b.delivered = b.delivered.saturating_add(1);
                    self.dosing.bolus_stroke_delivered();
                }
                None => {
                    self.ledger.reserve_left = self.ledger.reserve_left.saturating_sub(STROKE_NL);
                    self.basal_delivered(now);
                }
            }
            self.ledger.reservoir = self.ledger.reservoir.saturating_sub(Nanolitres(STROKE_NL));
            self.ledger.delivered_total += u64::from(STROKE_NL);
            self.ledger.window.add(now, counted);
            self.ledger.old_delivered += u64::from(as_old);
            self.push_old(STROKE_NL);
            self.health.battery.drain_stroke();
        }
        if self.dosing.bolus().is_none() {
            // Every stroke of the bolus fell due (some may have been held back by the
            // limit: it delivered less than planned).
            self.end_bolus(now, BolusEnd::Completed);
        }
    }

    /// Reserves `nl` more ahead of delivery and persists the snapshot.
    fn reserve(&mut self, nl: u32, now: Timestamp) {
        self.ledger.reserve_left = self.ledger.reserve_left.saturating_add(nl);
        self.save_snapshot(now);
    }

    /// The snapshot of the current state with the outstanding reservation delivered.
    fn snapshot(&self, now: Timestamp) -> Snapshot {
        // Reserved: the basal pool, and the running bolus's strokes not yet delivered
        // (in the window as what they count, see `bolus`).
        let basal = self.ledger.reserve_left;
        let (bolus, bolus_counted) = self.bolus_reserved(basal);
        let volume = basal.saturating_add(bolus);
        let counted = basal.saturating_add(bolus_counted);
        let mut window = self.ledger.window.clone();
        window.add(now, counted);
        let (epoch, buckets) = window.parts();
        Snapshot {
            seq: self.ledger.seq,
            saved_at: now,
            wall_offset_ms: self.clock.wall_offset_ms,
            utc_offset: self.clock.utc_offset,
            reservoir: self.ledger.reservoir.saturating_sub(Nanolitres(volume)),
            last_refill: self.ledger.last_refill,
            stopped: self.therapy.stopped,
            delivered_total: self.ledger.delivered_total + u64::from(volume),
            // What the boot moves to its own bucket: the reservation as the window
            // counts it.
            reserved: counted,
            battery_used_nah: self.health.battery.used_nah(),
            window_epoch: epoch,
            window: buckets.clone(),
            patient_boluses: self.therapy.patient.clone(),
            acknowledged: self.health.alarms.acknowledged().collect(),
            legacy_secret: None,
            boot_count: self.keys.boot_count,
            revision: Revision(
                (self.therapy.record.revision.0).max(self.therapy.record.standing.newest.0),
            ),
            basal_carry: self.dosing.carry_at(now, &|t| self.flow_at(t)),
            bolus: self.ledger.bolus,
            withheld: self.ledger.withheld,
            halted_since: self.health.halted_since,
            old_solution: self.ledger.old.map(|o| o.solution),
            solution: Some(self.solution()),
        }
    }

    /// Persists the snapshot; a failure raises the storage-fault alarm.
    pub fn save_snapshot(&mut self, now: Timestamp) {
        let _ = self.try_save_snapshot(now);
    }

    /// Persists the snapshot; `false` (and the storage-fault alarm) on failure.
    fn try_save_snapshot(&mut self, now: Timestamp) -> bool {
        if self.health.store_unreadable {
            // An unreadable store may still hold a good snapshot (only the prescription
            // may be damaged): never overwrite it with factory values. The pump runs at
            // the minimum flow with the storage-fault alarm until serviced.
            return false;
        }
        self.ledger.seq = self.ledger.seq.wrapping_add(1);
        let snap = self.snapshot(now);
        let ok = self.storage.save_snapshot(&snap).is_ok();
        self.note_storage(ok);
        ok
    }

    fn note_storage(&mut self, ok: bool) {
        // A later successful write clears the fault.
        self.health.storage_fault = !ok;
    }

    /// Logs `event`, after the repeating entry being aggregated, if any.
    fn log_event(&mut self, now: Timestamp, event: Event) {
        if let Some(held) = self.log.noise.release(now, false) {
            self.append_log(now, held);
        }
        self.append_log(now, event);
    }

    fn append_log(&mut self, now: Timestamp, event: Event) {
        let entry = LogEntry {
            index: self.log.bounds.next,
            at: self.wall(now),
            event,
        };
        match self.storage.append_log(&entry) {
            Ok(bounds) => self.log.bounds = bounds,
            Err(_) => self.health.storage_fault = true,
        }
    }

    /// Re-evaluates every alarm condition, logging raises and clears.
    fn evaluate_alarms(&mut self, now: Timestamp) {
        self.note_halt(now);
        let spd = self.strokes_per_day();
        let threshold = self.therapy.record.prescription.low_reservoir_alarm();
        let battery = self.health.battery.state(spd);
        let conditions = [
            (AlarmKind::LowReservoir, self.ledger.reservoir <= threshold),
            (
                AlarmKind::EmptyReservoir,
                self.ledger.reservoir.0 < STROKE_NL,
            ),
            (
                AlarmKind::ElectiveReplacement,
                battery >= BatteryState::ElectiveReplacement,
            ),
            (AlarmKind::LowBattery, self.health.battery.is_low(spd)),
            (
                AlarmKind::EndOfService,
                battery == BatteryState::EndOfService,
            ),
            (AlarmKind::MotorStall, self.health.motor_stalled),
            (
                AlarmKind::PrescriptionFallback,
                self.therapy.record.standing.fallback || self.health.solution_mismatch,
            ),
            (
                AlarmKind::PrescriptionReview,
                self.therapy.record.standing.review,
            ),
            (AlarmKind::DeliveryWithheld, self.ledger.withheld.is_some()),
            (
                AlarmKind::StorageFault,
                self.health.storage_fault
                    || self.keys.secrets_unreadable
                    || self.keys.secrets_damaged,
            ),
        ];
        for (kind, condition) in conditions {
            match self.health.alarms.set(kind, condition, now) {
                Change::Raised => self.log_event(now, Event::AlarmRaised(kind)),
                Change::Cleared => self.log_event(now, Event::AlarmCleared(kind)),
                Change::None => {}
            }
        }
    }
}
