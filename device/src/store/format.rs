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
#[cfg_attr(test, derive(Serialize))]
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
#[cfg_attr(test, derive(Serialize))]
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

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_protocol::drug::Drug;
    use thecal_protocol::prescription::TherapyMode;
    use thecal_protocol::units::{NanogramsPerDay, NanogramsPerMillilitre};

    fn draft() -> PrescriptionDraft {
        PrescriptionDraft {
            drug: Drug::Baclofen,
            concentration: NanogramsPerMillilitre::from_ug_per_ml(500),
            daily_limit: NanogramsPerDay::from_ug(1_000),
            mode: TherapyMode::Continuous {
                dose: NanogramsPerDay::from_ug(250),
            },
            patient_bolus: None,
            low_reservoir_alarm: Nanolitres::from_ml(2),
        }
    }

    #[test]
    fn a_format_1_prescription_migrates_under_rule_set_1() {
        let mut buf = [0u8; 256];
        // Format-1 bytes are exactly what protocol-4 firmware wrote: its
        // `PrescriptionRecord` encoded the prescription as its draft.
        let old = PrescriptionFormat1 {
            revision: Revision(7),
            written_at: Timestamp(1_795_392_000_000),
            draft: draft(),
        };
        let bytes = postcard::to_slice(&old, &mut buf).unwrap();
        assert_ne!(bytes[0], 0, "a format-1 record never starts with 00");
        let migrated: StoredPrescription = decode(bytes).unwrap();
        assert_eq!(
            migrated,
            StoredPrescription {
                revision: Revision(7),
                written_at: Timestamp(1_795_392_000_000),
                rules: 1,
                draft: draft(),
                refill: None,
            }
        );
    }

    #[test]
    fn a_format_1_snapshot_migrates_with_nothing_invented() {
        let old = SnapshotFormat1 {
            seq: 41,
            saved_at: Timestamp(5_000_000),
            wall_offset_ms: 1_795_391_000_000,
            utc_offset: UtcOffset(60),
            reservoir: Nanolitres(12_345_000),
            last_refill: Some(Timestamp(4_000)),
            stopped: true,
            delivered_total: 9_990_000,
            reserved: 7_500,
            battery_used_nah: 123_456,
            window_epoch: 5,
            window: Vec::from_slice(&[250, 500, 0, 750]).unwrap(),
            patient_boluses: Vec::from_slice(&[Timestamp(4_500_000)]).unwrap(),
            acknowledged: Vec::from_slice(&[AlarmKind::LowReservoir]).unwrap(),
            legacy_secret: None,
            boot_count: 12,
        };
        let mut buf = [0u8; 1024];
        let bytes = postcard::to_slice(&old, &mut buf).unwrap();
        let s: Snapshot = decode(bytes).unwrap();
        assert_eq!(
            (
                s.seq,
                s.saved_at,
                s.wall_offset_ms,
                s.utc_offset,
                s.reservoir
            ),
            (
                41,
                old.saved_at,
                old.wall_offset_ms,
                old.utc_offset,
                old.reservoir
            )
        );
        assert_eq!(
            (s.last_refill, s.stopped, s.delivered_total, s.reserved),
            (old.last_refill, true, old.delivered_total, old.reserved)
        );
        assert_eq!(
            (s.battery_used_nah, s.window_epoch, &s.window[..]),
            (old.battery_used_nah, 5, &old.window[..])
        );
        assert_eq!(&s.patient_boluses[..], &old.patient_boluses[..]);
        assert_eq!(&s.acknowledged[..], &[AlarmKind::LowReservoir]);
        assert_eq!(s.boot_count, 12);
        // What format 1 did not keep is empty, never guessed.
        assert_eq!(s.revision, Revision(0));
        assert_eq!((s.basal_carry, s.bolus, s.withheld), (0, None, None));
        assert_eq!(
            (s.halted_since, s.old_solution, s.solution),
            (None, None, None)
        );
    }

    #[test]
    fn the_current_format_round_trips_and_unknown_formats_do_not_decode() {
        let record = StoredPrescription {
            revision: Revision(9),
            written_at: Timestamp(77),
            rules: 1,
            draft: draft(),
            refill: None,
        };
        let mut buf = [0u8; 256];
        let bytes = encode(&record, &mut buf).unwrap().to_vec();
        assert_eq!(&bytes[..PREFIX], &[0, FORMAT]);
        assert_eq!(decode::<StoredPrescription>(&bytes).as_ref(), Some(&record));
        // A newer firmware's format (a downgrade): not decoded, counted as damage.
        let mut newer = bytes.clone();
        newer[1] = FORMAT + 1;
        assert_eq!(decode::<StoredPrescription>(&newer), None);
        // Truncated: not decoded.
        assert_eq!(
            decode::<StoredPrescription>(&bytes[..bytes.len() - 1]),
            None
        );
        assert!(encode(&record, &mut [0u8; 8]).is_err());
    }
}
