//! A page of the event log, and its packed wire form.
//!
//! In memory a page holds whole [`LogEntry`] records. On the wire (protocol 4) each entry
//! is a [`PageEntry`]: its index as the number of indices skipped since the previous
//! entry (since `oldest` for the first), its time as the signed difference in
//! milliseconds from the previous entry's (from 0 for the first), and its event. A page of
//! consecutive entries a few seconds apart so spends one byte on the index and two or
//! three on the time, instead of three to five and six; the event is unchanged.
//!
//! The packed form only holds a page whose entries ascend strictly, from `oldest` on and
//! below `next`; the pump never makes any other, encoding any other fails, and decoding
//! refuses one (an index past `u32::MAX` or at or after `next`).

use heapless::Vec;
use serde::ser::{Error as _, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::message::request::MAX_LOG_PAGE;
use crate::message::{Event, LogEntry};
use crate::time::Timestamp;

/// A page of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PackedPage")]
pub struct LogPage {
    /// Index of the oldest entry still stored.
    pub oldest: u32,
    /// Index the next event will get (one past the newest).
    pub next: u32,
    /// Entries from the requested index, oldest first, strictly ascending, each in
    /// `oldest..next`.
    pub entries: Vec<LogEntry, MAX_LOG_PAGE>,
}

/// One entry of a page as it travels: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEntry {
    /// Indices between the previous entry (or, for the first, `oldest` − 1) and this
    /// one: entries the pump skipped because they were damaged, usually 0.
    pub skip: u32,
    /// Milliseconds from the previous entry's time (for the first, from 0), wrapping:
    /// negative after the clock was set back.
    pub delta: i64,
    /// What.
    pub event: Event,
}

/// Why a page cannot take the packed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PageError {
    /// Entry `at` (position in the page) is below `oldest` or not above the one before.
    OutOfOrder {
        /// Position in the page.
        at: usize,
    },
    /// Entry `at` is at or after `next` (or its index would pass `u32::MAX`).
    PastNext {
        /// Position in the page.
        at: usize,
    },
    /// `oldest` is after `next`.
    Bounds,
}

impl core::fmt::Display for PageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PageError::OutOfOrder { at } => {
                write!(f, "log page entry {at} is not after the one before it")
            }
            PageError::PastNext { at } => write!(f, "log page entry {at} is not before `next`"),
            PageError::Bounds => f.write_str("log page `oldest` is after `next`"),
        }
    }
}

impl core::error::Error for PageError {}

/// Where the entry at position `at` is packed against: the index it would have with a
/// skip of 0, and the time its delta is from (`oldest` and 0 for the first entry).
fn base(previous: Option<(u32, u64)>, oldest: u32, at: usize) -> Result<(u32, u64), PageError> {
    match previous {
        None => Ok((oldest, 0)),
        Some((index, time)) => Ok((
            index.checked_add(1).ok_or(PageError::PastNext { at })?,
            time,
        )),
    }
}

impl LogPage {
    /// The wire form of each entry, in order; `Err` if the page breaks the ordering rule.
    pub fn packed(&self) -> impl Iterator<Item = Result<PageEntry, PageError>> + '_ {
        let mut previous: Option<(u32, u64)> = None;
        let (oldest, next) = (self.oldest, self.next);
        self.entries.iter().enumerate().map(move |(at, entry)| {
            if oldest > next {
                return Err(PageError::Bounds);
            }
            let (base, time) = base(previous, oldest, at)?;
            let skip = entry
                .index
                .checked_sub(base)
                .ok_or(PageError::OutOfOrder { at })?;
            if entry.index >= next {
                return Err(PageError::PastNext { at });
            }
            previous = Some((entry.index, entry.at.0));
            Ok(PageEntry {
                skip,
                // Two's complement: a wrapping difference, undone by a wrapping add.
                delta: entry.at.0.wrapping_sub(time) as i64,
                event: entry.event,
            })
        })
    }
}

impl Serialize for LogPage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Entries<'a>(&'a LogPage);
        impl Serialize for Entries<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.entries.len()))?;
                for entry in self.0.packed() {
                    seq.serialize_element(&entry.map_err(S::Error::custom)?)?;
                }
                seq.end()
            }
        }
        if self.oldest > self.next {
            return Err(S::Error::custom(PageError::Bounds));
        }
        let mut page = serializer.serialize_struct("LogPage", 3)?;
        page.serialize_field("oldest", &self.oldest)?;
        page.serialize_field("next", &self.next)?;
        page.serialize_field("entries", &Entries(self))?;
        page.end()
    }
}

/// The wire form of a whole page, as decoded before its entries are unpacked.
#[derive(Deserialize)]
#[serde(rename = "LogPage")]
struct PackedPage {
    oldest: u32,
    next: u32,
    entries: Vec<PageEntry, MAX_LOG_PAGE>,
}

impl TryFrom<PackedPage> for LogPage {
    type Error = PageError;

    fn try_from(packed: PackedPage) -> Result<Self, PageError> {
        if packed.oldest > packed.next {
            return Err(PageError::Bounds);
        }
        let mut entries = Vec::new();
        let mut previous: Option<(u32, u64)> = None;
        for (at, entry) in packed.entries.iter().enumerate() {
            let (base, time) = base(previous, packed.oldest, at)?;
            let index = base
                .checked_add(entry.skip)
                .filter(|&i| i < packed.next)
                .ok_or(PageError::PastNext { at })?;
            let time = time.wrapping_add(entry.delta as u64);
            previous = Some((index, time));
            // Never full: both vectors hold MAX_LOG_PAGE.
            entries
                .push(LogEntry {
                    index,
                    at: Timestamp(time),
                    event: entry.event,
                })
                .map_err(|_| PageError::PastNext { at })?;
        }
        Ok(LogPage {
            oldest: packed.oldest,
            next: packed.next,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ResetCause, Role};

    fn entry(index: u32, at: u64, event: Event) -> LogEntry {
        LogEntry {
            index,
            at: Timestamp(at),
            event,
        }
    }

    fn page(oldest: u32, next: u32, entries: &[LogEntry]) -> LogPage {
        LogPage {
            oldest,
            next,
            entries: entries.iter().copied().collect(),
        }
    }

    fn round_trip(p: &LogPage) -> LogPage {
        let mut buf = [0u8; 1024];
        let bytes = postcard::to_slice(p, &mut buf).unwrap();
        postcard::from_bytes(bytes).unwrap()
    }

    const OPENED: Event = Event::SessionOpened {
        role: Role::Clinician,
        session: 1,
    };

    #[test]
    fn a_page_packs_indices_and_times_as_differences() {
        let p = page(
            600,
            700,
            &[
                entry(600, 1_764_000_000_000, OPENED),
                entry(601, 1_764_000_002_500, OPENED),
                // 602 was damaged and skipped; the clock was set back 1 s before 603.
                entry(603, 1_763_999_999_000, OPENED),
            ],
        );
        let mut buf = [0u8; 64];
        let bytes = postcard::to_slice(&p, &mut buf).unwrap();
        #[rustfmt::skip]
        let want: &[u8] = &[
            0xD8, 0x04, 0xBC, 0x05, 3, // oldest 600, next 700, 3 entries
            0, 0x80, 0xA0, 0xBF, 0xE9, 0xD6, 0x66, 12, 1, 1, // skip 0, delta 1 764 000 000 000, event
            0, 0x88, 0x27, 12, 1, 1, // skip 0, delta +2 500 (zigzag 5 000)
            1, 0xD7, 0x36, 12, 1, 1, // skip 1, delta −3 500 (zigzag 6 999)
        ];
        assert_eq!(bytes, want);
        assert_eq!(round_trip(&p), p);
    }

    #[test]
    fn extreme_indices_and_times_round_trip() {
        let reset = Event::Reset {
            cause: ResetCause::PowerOn,
        };
        let p = page(
            0,
            u32::MAX,
            &[
                entry(0, u64::MAX, reset),
                entry(1, 0, reset),
                entry(u32::MAX - 1, u64::MAX / 2 + 1, reset),
            ],
        );
        assert_eq!(round_trip(&p), p);
        let empty = page(u32::MAX, u32::MAX, &[]);
        assert_eq!(round_trip(&empty), empty);
    }

    #[test]
    fn a_page_out_of_order_does_not_encode() {
        let mut buf = [0u8; 256];
        let cases = [
            (
                page(10, 20, &[entry(9, 0, OPENED)]),
                PageError::OutOfOrder { at: 0 },
            ),
            (
                page(10, 20, &[entry(12, 0, OPENED), entry(12, 0, OPENED)]),
                PageError::OutOfOrder { at: 1 },
            ),
            (
                page(10, 20, &[entry(12, 0, OPENED), entry(11, 0, OPENED)]),
                PageError::OutOfOrder { at: 1 },
            ),
            (
                page(10, 20, &[entry(20, 0, OPENED)]),
                PageError::PastNext { at: 0 },
            ),
            (page(21, 20, &[entry(21, 0, OPENED)]), PageError::Bounds),
        ];
        for (p, error) in cases {
            assert_eq!(p.packed().find_map(Result::err), Some(error), "{p:?}");
            assert!(postcard::to_slice(&p, &mut buf).is_err(), "{p:?}");
        }
        assert!(postcard::to_slice(&page(21, 20, &[]), &mut buf).is_err());
    }

    #[test]
    fn a_packed_page_past_its_bounds_does_not_decode() {
        // oldest 5, next 7: entries at 5 + 2 = 7 (past next), and oldest > next.
        let past: &[u8] = &[5, 7, 1, 2, 0, 16];
        assert!(postcard::from_bytes::<LogPage>(past).is_err());
        let inverted: &[u8] = &[8, 7, 0];
        assert!(postcard::from_bytes::<LogPage>(inverted).is_err());
        // An index past u32::MAX.
        let mut buf = [0u8; 32];
        let mut w = postcard::to_slice(&(0u32, u32::MAX, 2u8), &mut buf)
            .unwrap()
            .to_vec();
        w.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0x0F, 0, 16, 5, 0, 16]);
        assert!(postcard::from_bytes::<LogPage>(&w).is_err());
        // The same page one entry shorter decodes.
        let ok: &[u8] = &[5, 7, 1, 1, 0, 16];
        let p: LogPage = postcard::from_bytes(ok).unwrap();
        assert_eq!(p.entries[0].index, 6);
    }
}
