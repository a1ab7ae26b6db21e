//! Record formats and their migrations.
//!
//! A record's payload is postcard. Format 1 (firmware of protocols 1 to 4) is the bare
//! encoding of the record. Every later format starts with a `0x00` byte and the format
//! number, then the encoding:
//!
//! ```text
//! format 1:   <postcard of the format-1 record>      first byte never 0x00 (*)
//! format ≥ 2: 00 <format u8> <postcard of the record of that format>
//! ```
//!
//! (*) A format-1 prescription record starts with its revision, never 0 (revisions
//! start at 1); a format-1 snapshot with its sequence number, which is 0 only after
//! 2³² saves — far beyond the flash's endurance.
//!
//! Loading migrates: a format-1 record is decoded as it was written and converted
//! ([`Migrate`]); a record of a format newer than this firmware's (firmware downgraded
//! below the one that wrote it) does not decode and counts as damaged, so the store falls
//! back to an older copy and says so. Migrations are pure functions with tests below.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thecal_protocol::message::{AlarmKind, Revision};
use thecal_protocol::prescription::PrescriptionDraft;
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::Nanolitres;

use super::storage::{Snapshot, StoredPrescription, MAX_ACKNOWLEDGED, MAX_PATIENT_HISTORY};
use super::{StoreError, WINDOW_BUCKETS};
use heapless::Vec;

/// The format this firmware writes.
pub(crate) const FORMAT: u8 = 2;
/// Bytes before the postcard body of a format ≥ 2 record.
pub(crate) const PREFIX: usize = 2;

/// A stored record type and the format-1 layout it migrates from.
pub(crate) trait Migrate: Serialize + DeserializeOwned {
    /// The record as firmware of protocols 1 to 4 wrote it.
    type Format1: DeserializeOwned;
    /// Converts a format-1 record.
    fn migrate(old: Self::Format1) -> Self;
    /// Whether a decoded record may be used (else it counts as damaged).
    fn admissible(&self) -> bool {
        true
    }
}

/// Encodes `value` in the current format into `out`.
pub(crate) fn encode<'a, T: Serialize>(
    value: &T,
    out: &'a mut [u8],
) -> Result<&'a [u8], StoreError> {
    let (prefix, body) = out
        .split_first_chunk_mut::<PREFIX>()
        .ok_or(StoreError::TooLarge)?;
    *prefix = [0, FORMAT];
    let n = postcard::to_slice(value, body)
        .map_err(|_| StoreError::TooLarge)?
        .len();
    out.get(..PREFIX + n).ok_or(StoreError::TooLarge)
}

/// Decodes a record of any format this firmware knows; `None` if it does not decode.
pub(crate) fn decode<T: Migrate>(bytes: &[u8]) -> Option<T> {
    match bytes {
        [0, FORMAT, body @ ..] => postcard::from_bytes(body).ok(),
        [0, ..] => None,
        _ => postcard::from_bytes::<T::Format1>(bytes)
            .ok()
            .map(T::migrate),
    }
    .filter(T::admissible)
}

/// A format-1 prescription record (the protocol-4 `PrescriptionRecord`).
#[derive(Deserialize)]
pub(crate) struct PrescriptionFormat1 {
    revision: Revision,
    written_at: Timestamp,
    draft: PrescriptionDraft,
}

impl Migrate for StoredPrescription {
    type Format1 = PrescriptionFormat1;
    /// Format 1 was validated under rule set 1 and never carried a refill.
    fn migrate(old: PrescriptionFormat1) -> Self {
        StoredPrescription {
            revision: old.revision,
            written_at: old.written_at,
            rules: 1,
            draft: old.draft,
            refill: None,
        }
    }
    fn admissible(&self) -> bool {
        StoredPrescription::admissible(self)
    }
}

/// A format-1 snapshot: the fields of [`Snapshot`] up to `boot_count`.
#[derive(Deserialize)]
pub(crate) struct SnapshotFormat1 {
    seq: u32,
    saved_at: Timestamp,
    wall_offset_ms: i64,
    utc_offset: UtcOffset,
    reservoir: Nanolitres,
    last_refill: Option<Timestamp>,
    stopped: bool,
    delivered_total: u64,
    reserved: u32,
    battery_used_nah: u64,
    window_epoch: u64,
    window: Vec<u32, WINDOW_BUCKETS>,
    patient_boluses: Vec<Timestamp, MAX_PATIENT_HISTORY>,
    acknowledged: Vec<AlarmKind, MAX_ACKNOWLEDGED>,
    legacy_secret: Option<[u8; 32]>,
    boot_count: u32,
}

impl Migrate for Snapshot {
    type Format1 = SnapshotFormat1;
    /// What format 1 did not keep starts empty: the revision in force is unknown (0, so
    /// no fallback is inferred from it), no part-stroke, no bolus (format 1 firmware
    /// logged none), nothing withheld or halted, no old solution.
    fn migrate(old: SnapshotFormat1) -> Self {
        Snapshot {
            seq: old.seq,
            saved_at: old.saved_at,
            wall_offset_ms: old.wall_offset_ms,
            utc_offset: old.utc_offset,
            reservoir: old.reservoir,
            last_refill: old.last_refill,
            stopped: old.stopped,
            delivered_total: old.delivered_total,
            reserved: old.reserved,
            battery_used_nah: old.battery_used_nah,
            window_epoch: old.window_epoch,
            window: old.window,
            patient_boluses: old.patient_boluses,
            acknowledged: old.acknowledged,
            legacy_secret: old.legacy_secret,
            boot_count: old.boot_count,
            revision: Revision(0),
            basal_carry: 0,
            bolus: None,
            withheld: None,
            halted_since: None,
            old_solution: None,
            solution: None,
        }
    }
}
