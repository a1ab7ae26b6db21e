//! [`FlashStore`]: the [`Storage`] trait over any `embedded-storage` [`NorFlash`],
//! power-fail safe.
//!
//! # Layout
//!
//! Four regions from the store's base address, sized in [`layout`]: the secrets (2
//! pages), the prescription record (2 pages), the snapshot (8 pages) and the event log
//! (9 pages), 86 016 bytes in all ([`STORE_BYTES`]). Each region is a ring of append-only, CRC-protected, committed
//! records (format in `record`, mechanism in `ring`); the prescription and the snapshot
//! are the newest valid record of their ring, the log is every valid record of its ring.
//! Records are postcard-encoded.
//!
//! A blank (all `0xFF`) region is an empty region, so a new device needs no formatting;
//! [`FlashStore::format`] erases the whole store (factory provisioning, or a device that
//! held something else).
//!
//! # Guarantees
//!
//! * `save_prescription` / `save_snapshot`: after a power cut at any instant, `load`
//!   returns the old record or the new one, whole. `Ok` means the new record has been
//!   read back byte for byte and committed; a mismatch returns [`StoreError::Verify`] and
//!   leaves the record uncommitted, so the old one stays the one `load` returns.
//! * Event log: indices increase by one per entry; when the ring is full the oldest page
//!   (at least [`layout::LOG_ENTRIES_PER_PAGE_MIN`] entries) is dropped; at least
//!   [`layout::LOG_CAPACITY_MIN`] entries are kept (each power cut during an append may end
//!   a page early, so the ring turns over a little sooner after cuts). A cut during an
//!   append loses at most that entry, and the entries older than it stay, except those of
//!   the page the append was about to drop anyway.
//! * Bit rot: a damaged record is skipped; `load` falls back to the newest older valid
//!   copy, or returns [`StoreError::Corrupt`] when damage is found and no valid copy is
//!   left. Damaged log entries are skipped without error. Nothing panics, whatever the
//!   flash holds.
//!
//! # Why not `sequential-storage`
//!
//! Its map was the first choice. Driven through [`crate::store::flash::RamFlash`] with power cut
//! at every operation of 39 successive 1.5 kB writes to one key (3 pages, ~118 000 cuts),
//! 18 cuts — all of them *torn page erases* during its page migration — made the next
//! fetch return nothing or a value several writes old, after which every store failed with
//! `Corrupted`. (As far as its source shows, page states are read from marker words at
//! the start and end of a page, so a torn erase that leaves a marker programmed makes a
//! half-erased page look live, and its repair then erases the good copy.) The
//! `embedded-storage` contract only promises "undefined" contents after a torn erase, and
//! real NOR erases all cells of a sector together; this store therefore never infers
//! anything from a partial page and never erases the page holding the newest record.
//!
//! # Dependencies
//!
//! `embedded-storage` (the flash trait the boards implement), `postcard` and `serde`
//! (record encoding, as on the wire), `crc` (CRC-32C of headers and payloads, already
//! used by the protocol crate). No async runtime and no allocator.

pub mod flash;
mod format;
mod io;
pub mod layout;
mod record;
mod ring;
mod storage;

pub use layout::{STORE_BYTES, STORE_PAGE};
/// The store's CRC-32C, shared with the request server's reply cache (its request
/// fingerprints live in RAM only): one CRC implementation in the image.
pub(crate) use record::CRC as CRC32C;
pub use storage::{
    LogBounds, RefillFacts, RoleSlot, SavedBolus, Secrets, Snapshot, Solution, Storage, StoreError,
    Stored, StoredPrescription, MAX_ACKNOWLEDGED, MAX_PATIENT_HISTORY, WINDOW_BUCKETS,
};

/// The device time a platform whose clock restarts from zero at every reset resumes at:
/// just after the newest stored snapshot's `saved_at` (0 on a blank store, or one that
/// cannot be read: the pump then reports the storage fault itself). Device time must
/// never run backwards, not even across resets (the snapshot, the rolling dose window and
/// the patient-bolus history are in device time); time spent off or in reset is not
/// counted, so the pump's wall clock appears to pause until a programmer sets it.
pub fn resume_time(storage: &mut impl Storage) -> thecal_protocol::time::Timestamp {
    let ms = match storage.load() {
        Ok(stored) => stored
            .snapshot
            .map_or(0, |s| s.saved_at.0.saturating_add(1)),
        Err(_) => 0,
    };
    thecal_protocol::time::Timestamp(ms)
}

/// Bytes of flash a [`FlashStore`] at address 0 needs: size a `RamFlash` or a state file
/// with this.
pub const FLASH_SIZE: usize = STORE_BYTES;

use core::ops::ControlFlow;

use embedded_storage::nor_flash::NorFlash;
use heapless::Vec;
use thecal_protocol::message::{LogEntry, MAX_LOG_PAGE};

use layout::{
    LOG_MAGIC, LOG_OFFSET, LOG_PAGES, MAX_LOG_ENTRY, MAX_RECORD, PRESCRIPTION_MAGIC,
    PRESCRIPTION_OFFSET, PRESCRIPTION_PAGES, SECRETS_MAGIC, SECRETS_OFFSET, SECRETS_PAGES,
    SNAPSHOT_MAGIC, SNAPSHOT_OFFSET, SNAPSHOT_PAGES,
};
use record::padded;
use ring::{read_payload, Ring};

/// The pump's persistent storage on a NOR flash.
///
/// Needs [`STORE_BYTES`] bytes of `F` from its base address, which must be a multiple of
/// [`STORE_PAGE`]. `F::ERASE_SIZE` must divide [`STORE_PAGE`] and `F::READ_SIZE` and
/// `F::WRITE_SIZE` must divide 4 (checked at compile time). RAM: about 1.5 kB, most of it
/// the [`layout::MAX_RECORD`]-byte scratch buffer.
#[derive(Debug, Clone)]
pub struct FlashStore<F> {
    flash: F,
    secrets: Ring<SECRETS_PAGES>,
    prescription: Ring<PRESCRIPTION_PAGES>,
    snapshot: Ring<SNAPSHOT_PAGES>,
    log: Ring<LOG_PAGES>,
    scratch: [u8; MAX_RECORD],
}

impl<F: NorFlash> FlashStore<F> {
    const GEOMETRY_OK: () = assert!(
        STORE_PAGE.is_multiple_of(F::ERASE_SIZE)
            && 4usize.is_multiple_of(F::READ_SIZE)
            && 4usize.is_multiple_of(F::WRITE_SIZE),
        "FlashStore needs an erase size dividing 4096 and read/write sizes dividing 4"
    );

    /// A store at address 0 of `flash`. A blank flash is an empty store.
    ///
    /// Does no I/O (the first operation scans the flash). Fails with
    /// [`StoreError::TooLarge`] if `flash` is smaller than [`FLASH_SIZE`].
    pub fn new(flash: F) -> Result<Self, StoreError> {
        Self::at(flash, 0)
    }

    /// A store at address `base` of `flash`. Fails with [`StoreError::TooLarge`] if
    /// `base` is not a multiple of [`STORE_PAGE`] or the store does not fit `flash` from
    /// there.
    pub fn at(flash: F, base: u32) -> Result<Self, StoreError> {
        let () = Self::GEOMETRY_OK;
        let end = usize::try_from(base)
            .ok()
            .and_then(|b| b.checked_add(STORE_BYTES))
            .filter(|end| *end <= flash.capacity() && u32::try_from(*end).is_ok());
        if end.is_none() || !base.is_multiple_of(STORE_PAGE as u32) {
            return Err(StoreError::TooLarge);
        }
        Ok(Self {
            flash,
            secrets: Ring::new(base + SECRETS_OFFSET, SECRETS_MAGIC),
            prescription: Ring::new(base + PRESCRIPTION_OFFSET, PRESCRIPTION_MAGIC),
            snapshot: Ring::new(base + SNAPSHOT_OFFSET, SNAPSHOT_MAGIC),
            log: Ring::new(base + LOG_OFFSET, LOG_MAGIC),
            scratch: [0; MAX_RECORD],
        })
    }

    /// Erases the whole store: no secrets, no prescription, no snapshot, an empty log.
    pub fn format(&mut self) -> Result<(), StoreError> {
        self.secrets.erase_all(&mut self.flash)?;
        self.prescription.erase_all(&mut self.flash)?;
        self.snapshot.erase_all(&mut self.flash)?;
        self.log.erase_all(&mut self.flash)
    }

    /// The flash.
    pub fn flash(&self) -> &F {
        &self.flash
    }

    /// The flash, for direct access. The store rescans it on its next operation.
    pub fn flash_mut(&mut self) -> &mut F {
        self.invalidate();
        &mut self.flash
    }

    /// Gives the flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    fn invalidate(&mut self) {
        self.secrets.invalidate();
        self.prescription.invalidate();
        self.snapshot.invalidate();
        self.log.invalidate();
    }

    fn log_bounds(&mut self) -> Result<LogBounds, StoreError> {
        let summary = self.log.summary(&mut self.flash)?;
        Ok(match (summary.oldest(), summary.newest) {
            (Some(oldest), Some(newest)) => LogBounds {
                oldest,
                next: newest.seq.saturating_add(1),
            },
            _ => LogBounds::default(),
        })
    }
}

/// What [`load_newest`] found.
struct Found<T> {
    /// The newest record `decode` accepts.
    value: Option<T>,
    /// Damage anywhere in the ring.
    corrupt: bool,
    /// A newer committed record than `value` did not decode.
    fell_back: bool,
}

/// The newest valid record of `ring` that `decode` accepts, falling back to older ones.
fn load_newest<T, F: NorFlash, const P: usize>(
    ring: &mut Ring<P>,
    flash: &mut F,
    scratch: &mut [u8],
    decode: fn(&[u8]) -> Option<T>,
) -> Result<Found<T>, StoreError> {
    let summary = ring.summary(flash)?;
    let mut found = Found {
        value: None,
        corrupt: summary.corrupt,
        fell_back: false,
    };
    let mut candidate = summary.newest;
    while let Some(loc) = candidate {
        if let Some(value) = read_payload(flash, loc, scratch)?.and_then(decode) {
            found.value = Some(value);
            return Ok(found);
        }
        found.corrupt = true;
        found.fell_back = true;
        candidate = ring.newest_below(flash, loc.seq)?;
    }
    Ok(found)
}

/// `load_newest` for a therapy record: damage with no valid copy left is an error.
fn load_therapy<T: format::Migrate, F: NorFlash, const P: usize>(
    ring: &mut Ring<P>,
    flash: &mut F,
    scratch: &mut [u8],
) -> Result<(Option<T>, bool), StoreError> {
    match load_newest(ring, flash, scratch, format::decode::<T>)? {
        Found {
            value: None,
            corrupt: true,
            ..
        } => Err(StoreError::Corrupt),
        found => Ok((found.value, found.fell_back)),
    }
}

/// Secrets are postcard without a format prefix (their layout has not changed).
fn decode_plain<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    postcard::from_bytes(bytes).ok()
}

fn encode_plain<'a, T: serde::Serialize>(
    value: &T,
    out: &'a mut [u8],
) -> Result<&'a [u8], StoreError> {
    postcard::to_slice(value, out)
        .map(|b| &*b)
        .map_err(|_| StoreError::TooLarge)
}

/// Encodes `value` into `scratch` with `encode` and appends it to `ring` as its newest
/// record.
fn save_newest<T, F: NorFlash, const P: usize>(
    ring: &mut Ring<P>,
    flash: &mut F,
    scratch: &mut [u8],
    value: &T,
    encode: for<'a> fn(&T, &'a mut [u8]) -> Result<&'a [u8], StoreError>,
) -> Result<(), StoreError> {
    let bytes = encode(value, scratch)?;
    let seq = match ring.summary(flash)?.newest {
        Some(newest) => newest.seq.checked_add(1).ok_or(StoreError::Corrupt)?,
        None => 1,
    };
    ring.append(flash, seq, bytes).map(|_| ())
}

impl<F: NorFlash> Storage for FlashStore<F> {
    fn load(&mut self) -> Result<Stored, StoreError> {
        self.invalidate();
        let (prescription, prescription_fell_back) =
            load_therapy(&mut self.prescription, &mut self.flash, &mut self.scratch)?;
        let (snapshot, _) = load_therapy(&mut self.snapshot, &mut self.flash, &mut self.scratch)?;
        let log = self.log_bounds()?;
        Ok(Stored {
            prescription,
            prescription_fell_back,
            snapshot,
            log,
        })
    }

    fn save_prescription(&mut self, record: &StoredPrescription) -> Result<(), StoreError> {
        let (ring, flash, scratch) = (&mut self.prescription, &mut self.flash, &mut self.scratch);
        save_newest(ring, flash, scratch, record, format::encode)
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let (ring, flash, scratch) = (&mut self.snapshot, &mut self.flash, &mut self.scratch);
        save_newest(ring, flash, scratch, snapshot, format::encode)
    }

    /// Stores `entry` under index `next` (the index the caller passes is replaced by it, so
    /// indices stay gap-free and increasing whatever the caller believes).
    fn append_log(&mut self, entry: &LogEntry) -> Result<LogBounds, StoreError> {
        let next = self.log_bounds()?.next;
        let stored = LogEntry {
            index: next,
            ..*entry
        };
        let mut buf = [0u8; MAX_LOG_ENTRY];
        let bytes = postcard::to_slice(&stored, &mut buf).map_err(|_| StoreError::TooLarge)?;
        self.log.append(&mut self.flash, next, bytes)?;
        self.log_bounds()
    }

    /// Clears `out`, then fills it with up to `max` entries from index `first` (clamped
    /// to the oldest) on. Damaged entries are skipped.
    fn read_log(
        &mut self,
        first: u32,
        max: usize,
        out: &mut Vec<LogEntry, MAX_LOG_PAGE>,
    ) -> Result<LogBounds, StoreError> {
        out.clear();
        let bounds = self.log_bounds()?;
        let limit = max.min(out.capacity());
        if first >= bounds.next || limit == 0 {
            return Ok(bounds);
        }
        let mut buf = [0u8; padded(MAX_LOG_ENTRY)];
        self.log
            .for_each_from(&mut self.flash, first.max(bounds.oldest), |flash, loc| {
                let decoded = read_payload(flash, loc, &mut buf)?
                    .and_then(|bytes| postcard::from_bytes::<LogEntry>(bytes).ok());
                if let Some(entry) = decoded {
                    let entry = LogEntry {
                        index: loc.seq,
                        ..entry
                    };
                    if out.push(entry).is_err() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(if out.len() >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })?;
        Ok(bounds)
    }

    /// The newest valid secrets record; damage is reported, and the older copy used.
    fn load_secrets(&mut self) -> Result<(Option<Secrets>, bool), StoreError> {
        self.secrets.invalidate();
        let found = load_newest(
            &mut self.secrets,
            &mut self.flash,
            &mut self.scratch,
            decode_plain,
        )?;
        Ok((found.value, found.corrupt))
    }

    /// Appends the record twice (two copies of one generation): a cut during the first
    /// append leaves the old generation, a cut during the second the new one, and bit rot
    /// in one copy leaves the other. `Ok` once the first copy is committed (the new
    /// generation is then the one `load_secrets` returns, so saying otherwise would be
    /// untrue); the second copy is redundancy, and its failure is not the caller's.
    fn save_secrets(&mut self, secrets: &Secrets) -> Result<(), StoreError> {
        let (ring, flash, scratch) = (&mut self.secrets, &mut self.flash, &mut self.scratch);
        save_newest(ring, flash, scratch, secrets, encode_plain)?;
        let _ = save_newest(ring, flash, scratch, secrets, encode_plain);
        Ok(())
    }
}
