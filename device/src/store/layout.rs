//! Where the store keeps what: four regions of 4096-byte pages, back to back from the
//! store's base address.
//!
//! | region       | pages | bytes  | offset from base   | magic (bytes) |
//! |--------------|-------|--------|--------------------|---------------|
//! | secrets      | 2     | 8 192  | 0x0000 .. 0x2000   | `K1`          |
//! | prescription | 2     | 8 192  | 0x2000 .. 0x4000   | `P1`          |
//! | snapshot     | 8     | 32 768 | 0x4000 .. 0xC000   | `S1`          |
//! | event log    | 9     | 36 864 | 0xC000 .. 0x15000  | `L1`          |
//! | **total**    | 21    | 86 016 |                    |               |
//!
//! The secrets region comes first so that, on a board whose store ends at the top of
//! flash (the nRF52840-DK), the three older regions stayed where protocol 2 firmware had
//! them: an update keeps the prescription, snapshot and log.
//!
//! Sizing:
//! * **secrets** — a record of about 190 bytes, written at first boot, at provisioning
//!   and at each key rotation, twice each time (two copies: one damaged record still
//!   leaves the same generation readable). Twenty generations fit a page, and a page is
//!   erased only when it does not hold the newest record: two pages last the device's
//!   life.
//! * **prescription** — at most [`MAX_RECORD`] bytes (the largest valid one encodes to
//!   well under 1 000), so at least three records fit a page; two pages are enough because a page is erased only when it does not hold the
//!   newest valid record (see `ring`).
//! * **snapshot** — written every 10 µL delivered and on clinician actions: about 20 a day
//!   at 0.2 mL/day, a few hundred at the highest flows. A typical snapshot record is
//!   300–450 bytes, about ten to a page; eight pages spread the erases so that even
//!   200 snapshots a day for ten years stay under 10 000 erase cycles per page.
//! * **event log** — a [`LogEntry`](thecal_protocol::message::LogEntry) record takes at
//!   most [`MAX_LOG_RECORD`] bytes (typically 32–36), so a page holds at least
//!   [`LOG_ENTRIES_PER_PAGE_MIN`]. When the ring is full the oldest *page* is erased, so
//!   the log always holds at least [`LOG_CAPACITY_MIN`] entries (eight full pages, 544)
//!   and typically about a thousand. (A power cut during an append may end a page early:
//!   the ring then turns over that much sooner.)
//!
//! The magic is two ASCII bytes: region letter and format version (`P1` = prescription,
//! format 1). A firmware that changes the encoding of a record must change the magic.

use super::record::record_len;
use crate::store::flash::PAGE;

/// Pages of the secrets region.
pub const SECRETS_PAGES: usize = 2;
/// Pages of the prescription region.
pub const PRESCRIPTION_PAGES: usize = 2;
/// Pages of the snapshot region.
pub const SNAPSHOT_PAGES: usize = 8;
/// Pages of the event log region.
pub const LOG_PAGES: usize = 9;

/// Size of a store page (the store's erase unit), bytes. The flash's own erase size must
/// divide it.
pub const STORE_PAGE: usize = PAGE;

/// Bytes of flash the store occupies from its base address.
pub const STORE_BYTES: usize =
    (SECRETS_PAGES + PRESCRIPTION_PAGES + SNAPSHOT_PAGES + LOG_PAGES) * STORE_PAGE;

/// Offset of the secrets region from the store's base.
pub const SECRETS_OFFSET: u32 = 0;
/// Offset of the prescription region from the store's base.
pub const PRESCRIPTION_OFFSET: u32 = (SECRETS_PAGES * STORE_PAGE) as u32;
/// Offset of the snapshot region from the store's base.
pub const SNAPSHOT_OFFSET: u32 = PRESCRIPTION_OFFSET + (PRESCRIPTION_PAGES * STORE_PAGE) as u32;
/// Offset of the event log region from the store's base.
pub const LOG_OFFSET: u32 = SNAPSHOT_OFFSET + (SNAPSHOT_PAGES * STORE_PAGE) as u32;

/// Largest encoded prescription record or snapshot, bytes (the store's scratch buffer).
pub const MAX_RECORD: usize = 1024;
/// Largest encoded log entry, bytes.
pub const MAX_LOG_ENTRY: usize = 40;
/// Largest log record in flash, bytes.
pub const MAX_LOG_RECORD: usize = record_len(MAX_LOG_ENTRY);
/// Log records that fit a page in the worst case.
pub const LOG_ENTRIES_PER_PAGE_MIN: usize = STORE_PAGE / MAX_LOG_RECORD;
/// Entries the log keeps at least (all pages full but the one being reused).
pub const LOG_CAPACITY_MIN: usize = (LOG_PAGES - 1) * LOG_ENTRIES_PER_PAGE_MIN;

pub(crate) const SECRETS_MAGIC: u16 = u16::from_le_bytes(*b"K1");
pub(crate) const PRESCRIPTION_MAGIC: u16 = u16::from_le_bytes(*b"P1");
pub(crate) const SNAPSHOT_MAGIC: u16 = u16::from_le_bytes(*b"S1");
pub(crate) const LOG_MAGIC: u16 = u16::from_le_bytes(*b"L1");

const _: () = assert!(record_len(MAX_RECORD) <= STORE_PAGE);
// The regions follow one another without overlap and fill the store exactly.
const _: () = assert!(
    SECRETS_OFFSET as usize + SECRETS_PAGES * STORE_PAGE == PRESCRIPTION_OFFSET as usize
        && PRESCRIPTION_OFFSET as usize + PRESCRIPTION_PAGES * STORE_PAGE
            == SNAPSHOT_OFFSET as usize
        && SNAPSHOT_OFFSET as usize + SNAPSHOT_PAGES * STORE_PAGE == LOG_OFFSET as usize
        && LOG_OFFSET as usize + LOG_PAGES * STORE_PAGE == STORE_BYTES
);
const _: () = assert!(MAX_RECORD <= u16::MAX as usize);
const _: () = assert!(LOG_CAPACITY_MIN >= 500);
const _: () =
    assert!(SECRETS_PAGES >= 2 && PRESCRIPTION_PAGES >= 2 && SNAPSHOT_PAGES >= 2 && LOG_PAGES >= 2);
