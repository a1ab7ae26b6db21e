//! The pump's state, grouped along its seams: what is prescribed ([`Therapy`]), the
//! clocks ([`Clock`]), the delivery ledger ([`Ledger`]), the pump's health ([`Health`]),
//! its keys and boot identity ([`KeyState`]) and its event log ([`EventLog`]). Each group
//! is plain data; the rules that change them live in the `Pump` methods.

use heapless::Vec;
use thecal_protocol::message::PrescriptionRecord;
use thecal_protocol::rules::MIN_FLOW;
use thecal_protocol::time::{local_week_position, Timestamp, UtcOffset};
use thecal_protocol::units::{Nanolitres, NanolitresPerDay, MS_PER_MINUTE};

use super::noise::Noise;
use crate::store::{LogBounds, Secrets, MAX_PATIENT_HISTORY};
use crate::therapy::alarms::Alarms;
use crate::therapy::battery::Battery;
use crate::therapy::window::Window;

/// What is prescribed, and whether it runs.
pub(super) struct Therapy {
    /// The prescription record in force.
    pub(super) record: PrescriptionRecord,
    /// Stopped by a clinician (or at a boot from an unreadable store).
    pub(super) stopped: bool,
    /// Device times of the patient boluses of the last 24 h.
    pub(super) patient: Vec<Timestamp, MAX_PATIENT_HISTORY>,
}

impl Therapy {
    /// The basal flow at device time `t` and the device time it next changes.
    pub(super) fn flow_at(&self, clock: &Clock, t: Timestamp) -> (NanolitresPerDay, Timestamp) {
        if self.stopped {
            return (MIN_FLOW, Timestamp(u64::MAX));
        }
        let p = &self.record.prescription;
        let (minute, ms_in_minute) = local_week_position(clock.wall(t), clock.utc_offset);
        let segment = p.segment_at(minute);
        let cycle_minute = minute % p.cycle_minutes();
        let left = u64::from(segment.end.saturating_sub(cycle_minute)) * MS_PER_MINUTE;
        let left = left.saturating_sub(ms_in_minute).max(1);
        (p.flow_for(segment.dose), t.plus_ms(left))
    }
}

/// The wall clock and the patient's offset over device time.
pub(super) struct Clock {
    /// Wall clock (UTC ms) minus device time.
    pub(super) wall_offset_ms: i64,
    /// Patient's UTC offset.
    pub(super) utc_offset: UtcOffset,
    /// Device time of the last tick.
    pub(super) last_tick: Timestamp,
}

impl Clock {
    /// Wall clock at device time `t`.
    pub(super) fn wall(&self, t: Timestamp) -> Timestamp {
        let w = i128::from(t.0) + i128::from(self.wall_offset_ms);
        Timestamp(u64::try_from(w.max(0)).unwrap_or(u64::MAX))
    }
}

/// Where the drug went: the reservoir estimate, the counters, the rolling 24 h window and
/// the volume reserved ahead of delivery.
pub(super) struct Ledger {
    /// Reservoir estimate.
    pub(super) reservoir: Nanolitres,
    /// Device time of the last refill.
    pub(super) last_refill: Option<Timestamp>,
    /// Lifetime delivered volume, nL.
    pub(super) delivered_total: u64,
    /// Volume reserved (stored as delivered) and not delivered yet, nL.
    pub(super) reserve_left: u32,
    /// The rolling 24 h window of the hard limit.
    pub(super) window: Window,
    /// Sequence number of the last snapshot stored.
    pub(super) seq: u32,
}

/// The pump's health: battery, alarms and the faults behind them.
pub(super) struct Health {
    /// The battery model (every stroke and frame is charged to it).
    pub(super) battery: Battery,
    /// Active alarms.
    pub(super) alarms: Alarms,
    /// The motor stalled (cleared by a clinician's resume).
    pub(super) motor_stalled: bool,
    /// The last flash write failed.
    pub(super) storage_fault: bool,
    /// The store could not be read at boot: never overwrite what it holds.
    pub(super) store_unreadable: bool,
    /// At boot, the prescription in force (a fallback) is for another solution than the
    /// reservoir holds: therapy is stopped and may not resume until a clinician records
    /// the solution with its prescription (a refill).
    pub(super) solution_mismatch: bool,
}

/// The pump's keys ([`super::keys`]) and what makes each boot's handshake nonces new.
pub(super) struct KeyState {
    /// The secrets record; `None` until the identity key is made.
    pub(super) secrets: Option<Secrets>,
    /// The static public key of `secrets` (computed once).
    pub(super) public_key: Option<[u8; 32]>,
    /// The secrets region could not be read at boot: never overwrite it.
    pub(super) secrets_unreadable: bool,
    /// Damage was found in the secrets region at boot (an older or a second copy was
    /// used): the storage alarm stays until the secrets are written again.
    pub(super) secrets_damaged: bool,
    /// This boot's epoch of handshake nonces (see `Pump::boot_epoch`).
    pub(super) boot_epoch: u64,
    /// Boots since the store was new (persisted in the snapshot).
    pub(super) boot_count: u32,
}

/// The event log's bounds and the repeating entry being aggregated.
pub(super) struct EventLog {
    /// Oldest and next index of the stored log.
    pub(super) bounds: LogBounds,
    /// Repeating log entries being aggregated, and their rate limit.
    pub(super) noise: Noise,
}
