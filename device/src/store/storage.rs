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
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{AlarmKind, BolusKind, LogEntry, Revision, MAX_LOG_PAGE};
use thecal_protocol::prescription::PrescriptionDraft;
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Nanograms, NanogramsPerMillilitre, Nanolitres};

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
    pub acknowledged: Vec<AlarmKind, MAX_ACKNOWLEDGED>,
    /// Protocol 2 kept the device secret here. Never written (always `None`); kept so
    /// that a snapshot written by protocol 2 firmware still decodes (the secret moved to
    /// [`Secrets`], and a pump updated from protocol 2 must be provisioned again).
    pub legacy_secret: Option<[u8; 32]>,
    /// Boots of the pump up to the one that saved this snapshot; the next boot counts
    /// one more and makes it part of its nonce epoch (see `Pump::boot_epoch`).
    pub boot_count: u32,
    // ---- format 2 (protocol 5) from here; a format-1 snapshot loads with the defaults
    // of `Snapshot::migrated` ----
    /// The newest prescription revision written, as far as the pump knew at the save (the
    /// one in force, or the lost one after a fallback): a prescription record older than
    /// this at boot means the newest one was lost (a fallback, made visible, and kept
    /// visible across resets until a clinician writes a prescription).
    pub revision: Revision,
    /// The basal accumulator's part-stroke, nL·ms/day (so a reset does not drop it).
    pub basal_carry: u64,
    /// The bolus running at the save, if any (a reset ends it; the next boot logs it).
    pub bolus: Option<SavedBolus>,
    /// Device time since which the daily limit holds back basal strokes, and the volume
    /// held back so far, nL.
    pub withheld: Option<(Timestamp, u32)>,
    /// Device time since which delivery is halted by a critical alarm.
    pub halted_since: Option<Timestamp>,
    /// The solution the refill replaced, while it may still be in the pump and
    /// catheter (a bridge bolus delivers it, not the new one).
    pub old_solution: Option<Solution>,
    /// The solution in the reservoir at the save (`None` in a migrated snapshot): a
    /// prescription record for another solution found at boot (a fallback across a
    /// refill) must not run on it.
    pub solution: Option<Solution>,
}

/// Most acknowledged alarms a snapshot keeps (one per kind).
pub const MAX_ACKNOWLEDGED: usize = 10;

/// A drug at a concentration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solution {
    /// Drug.
    pub drug: Drug,
    /// Concentration.
    pub concentration: NanogramsPerMillilitre,
}

/// A running bolus as a snapshot keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBolus {
    /// Kind.
    pub kind: BolusKind,
    /// Dose of its whole strokes.
    pub dose: Nanograms,
    /// Strokes planned.
    pub strokes: u32,
    /// Strokes delivered by the save.
    pub delivered: u32,
    /// Device time it started.
    pub start: Timestamp,
    /// Duration, ms.
    pub duration_ms: u64,
}

/// The prescription record as stored: the prescription as it was written (checked
/// again at load, under the rule set it names), and — for a refill that changed the
/// solution — the refill itself, so prescription and reservoir change in one atomic
/// record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPrescription {
    /// Its revision.
    pub revision: Revision,
    /// Wall clock when written.
    pub written_at: Timestamp,
    /// [`thecal_protocol::rules::RULES_VERSION`] of the firmware that validated it.
    pub rules: u16,
    /// The prescription.
    pub draft: PrescriptionDraft,
    /// The refill this record was written with, if any.
    pub refill: Option<RefillFacts>,
}

impl StoredPrescription {
    /// Whether this record may be put in force by this firmware: its structure is one the
    /// pump can run, and it passes every rule — or breaks one only because it was
    /// validated under another rule set (it then runs, flagged for review). A record that
    /// fails the rules it names is corrupt.
    pub fn admissible(&self) -> bool {
        use thecal_protocol::rules::{check_structure, validate, RULES_VERSION};
        check_structure(&self.draft).is_ok()
            && (self.rules != RULES_VERSION || validate(&self.draft).is_ok())
    }

    /// The solution it prescribes for.
    pub fn solution(&self) -> Solution {
        Solution {
            drug: self.draft.drug,
            concentration: self.draft.concentration,
        }
    }
}

/// A refill recorded together with the prescription for the new solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefillFacts {
    /// Reservoir volume after the refill.
    pub volume: Nanolitres,
    /// Device time of the refill.
    pub at: Timestamp,
    /// The solution before it.
    pub from: Solution,
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
    /// The newest prescription record that decodes, if one was ever written.
    pub prescription: Option<StoredPrescription>,
    /// A newer committed prescription record than `prescription` was found damaged, or
    /// it does not stand under this firmware (see [`StoredPrescription::admissible`]).
    pub prescription_fell_back: bool,
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
    fn save_prescription(&mut self, record: &StoredPrescription) -> Result<(), StoreError>;
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
