//! What the pump persists, and the [`Storage`] trait the core reaches it through.
//!
//! Three kinds of record, each with its own power-fail rule:
//!
//! * the **prescription record** — written rarely, atomically: after
//!   [`Storage::save_prescription`] returns `Ok`, the new record is stored and has been
//!   read back and compared; if power fails at any instant before that, the next
//!   [`Storage::load`] returns the old record, whole.
//! * the **snapshot** — reservoir estimate, delivery counters, clock, patient-bolus
//!   history; written often (see [`crate::pump`] for when). A power cut loses at most the
//!   changes since the last snapshot, and the pump writes the snapshot *ahead* of
//!   delivery, so what is lost errs on the safe side.
//! * the **event log** — an append-only ring; the oldest entries are dropped when full.
//!   A power cut during an append loses at most that entry; older entries stay readable.
//! * the **secrets** ([`Secrets`]) — the pump's static key, the device secret and the
//!   role keys with their epochs; written only at first boot, provisioning and key
//!   rotation, in a region of their own, each save written twice. A damaged therapy
//!   store never takes the secrets with it, nor the other way round. After a power cut
//!   at any instant of [`Storage::save_secrets`], [`Storage::load_secrets`] returns the
//!   old record or the new one, whole: never a mix of old and new keys.

use heapless::Vec;
use serde::{Deserialize, Serialize};
use thecal_protocol::message::{AlarmKind, LogEntry, PrescriptionRecord, MAX_LOG_PAGE};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::Nanolitres;

/// Buckets of the rolling 24 h delivery window (15 min each: the current one and the 96
/// before it, so the window always looks back at least 24 h).
pub const WINDOW_BUCKETS: usize = 97;
/// Most patient boluses remembered (the rules allow at most 24 per 24 h).
pub const MAX_PATIENT_HISTORY: usize = 24;

/// The frequently written state. `device time` below is the monotonic clock the
/// platform hands to the core (it never goes backwards, not even across a reset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Increases with every save.
    pub seq: u32,
    /// Device time of the save.
    pub saved_at: Timestamp,
    /// Wall clock (UTC ms) minus device time.
    pub wall_offset_ms: i64,
    /// Patient's UTC offset.
    pub utc_offset: UtcOffset,
    /// Reservoir volume, net of any volume reserved ahead of delivery.
    pub reservoir: Nanolitres,
    /// Device time of the last refill.
    pub last_refill: Option<Timestamp>,
    /// Therapy stopped by a clinician.
    pub stopped: bool,
    /// Lifetime delivered volume, nL (reserved volume included).
    pub delivered_total: u64,
    /// Volume reserved ahead of delivery at the save, nL (already counted as delivered in
    /// `reservoir`, `delivered_total` and `window`): after a reset it may have been
    /// delivered at any time since `saved_at`, so the pump counts it again at boot.
    pub reserved: u32,
    /// Battery charge used, nAh.
    pub battery_used_nah: u64,
    /// Rolling window: device time of the start of bucket 0's period, in bucket units.
    pub window_epoch: u64,
    /// Delivered volume per bucket, nL (bucket `i` covers window period `epoch + i`, modulo the length).
    pub window: Vec<u32, WINDOW_BUCKETS>,
    /// Device times of recent patient boluses.
    pub patient_boluses: Vec<Timestamp, MAX_PATIENT_HISTORY>,
    /// Alarms acknowledged by a programmer (cleared when the alarm clears).
    pub acknowledged: Vec<AlarmKind, 8>,
    /// Protocol 2 kept the device secret here. Never written (always `None`); kept so
    /// that a snapshot written by protocol 2 firmware still decodes (the secret moved to
    /// [`Secrets`], and a pump updated from protocol 2 must be provisioned again).
    pub legacy_secret: Option<[u8; 32]>,
    /// Boots of the pump up to the one that saved this snapshot; the next boot counts
    /// one more and makes it part of its nonce epoch (see `Pump::boot_epoch`).
    pub boot_count: u32,
}

/// One role's key: its epoch and, once rotated, the key itself.
#[derive(Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoleSlot {
    /// The epoch in force (0: no key, the pump is unprovisioned).
    pub epoch: u32,
    /// The key a programmer sent with `RotateKey`; `None`: the key derived from the
    /// device secret at `epoch` (`thecal_protocol::session::role_key`).
    pub key: Option<[u8; 32]>,
}

/// The rarely written secrets record.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Increases with every save.
    pub generation: u32,
    /// The pump's static X25519 private key (made at its first boot from its RNG).
    pub identity: [u8; 32],
    /// The device secret, once provisioned.
    pub device_secret: Option<[u8; 32]>,
    /// Keys of the patient, clinician and service roles, in that order.
    pub keys: [RoleSlot; 3],
}

impl core::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Secrets")
            .field("generation", &self.generation)
            .field("provisioned", &self.device_secret.is_some())
            .field("epochs", &self.keys.map(|k| k.epoch))
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for RoleSlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RoleSlot")
            .field("epoch", &self.epoch)
            .field("rotated", &self.key.is_some())
            .finish()
    }
}

/// Where the event log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogBounds {
    /// Index of the oldest entry still stored.
    pub oldest: u32,
    /// Index the next entry will get.
    pub next: u32,
}

/// What [`Storage::load`] found at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The prescription in force, if one was ever written.
    pub prescription: Option<PrescriptionRecord>,
    /// The latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The event log's bounds.
    pub log: LogBounds,
}

/// Why storage failed. Every failure leaves the previously stored state readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The flash driver reported an error.
    Flash,
    /// A record did not read back as written.
    Verify,
    /// A stored record is corrupt (CRC or decode failure) and no older copy exists.
    Corrupt,
    /// A record does not fit the space reserved for it.
    TooLarge,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StoreError::Flash => "flash driver error",
            StoreError::Verify => "record did not read back as written",
            StoreError::Corrupt => "stored record is corrupt",
            StoreError::TooLarge => "record too large for its flash region",
        })
    }
}

impl core::error::Error for StoreError {}

/// Persistent storage of the pump core.
pub trait Storage {
    /// Reads everything needed at boot. A blank store returns empty values.
    fn load(&mut self) -> Result<Stored, StoreError>;
    /// Stores the prescription record atomically, reads it back and verifies it.
    fn save_prescription(&mut self, record: &PrescriptionRecord) -> Result<(), StoreError>;
    /// Stores the snapshot (replacing the previous one, atomically).
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// Appends `entry` (whose index must be the current `next`); returns the new bounds.
    fn append_log(&mut self, entry: &LogEntry) -> Result<LogBounds, StoreError>;
    /// Reads up to `max` entries (at most `out.capacity()`) from index `first` (clamped
    /// to the oldest); no entry past the `max`-th is read from flash.
    fn read_log(
        &mut self,
        first: u32,
        max: usize,
        out: &mut Vec<LogEntry, MAX_LOG_PAGE>,
    ) -> Result<LogBounds, StoreError>;
    /// Reads the secrets record (`None` on a new pump). `Ok((secrets, damaged))`:
    /// `damaged` when a damaged record was found (and an older valid copy returned).
    fn load_secrets(&mut self) -> Result<(Option<Secrets>, bool), StoreError>;
    /// Stores the secrets record atomically (read back and verified).
    fn save_secrets(&mut self, secrets: &Secrets) -> Result<(), StoreError>;
}
