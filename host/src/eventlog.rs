//! Reading the pump's event log page by page.
//!
//! One reader, [`read_log_pipelined`]: after one page that tells where the log ends,
//! the remaining pages are requested with `window` requests in flight
//! ([`Client::pipelined`]; the CLI uses [`WINDOW`]), so the line never idles waiting
//! for a round trip. [`read_log`] is its window of one: stop-and-wait, one page per
//! round trip (the baseline of the link benchmark).

use std::collections::{BTreeMap, VecDeque};

use thecal_protocol::message::endpoint::ReadLog;
use thecal_protocol::message::{LogEntry, LogPage, MAX_LOG_PAGE};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{Client, Error};

/// Which entries to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogRange {
    /// First index (default: the oldest stored).
    pub from: Option<u32>,
    /// Only the newest `last` entries (applied after `from`).
    pub last: Option<u32>,
}

/// Entries read, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    /// Index of the oldest entry the pump still stores.
    pub oldest: u32,
    /// Index the next event will get.
    pub next: u32,
    /// Entries read.
    pub entries: Vec<LogEntry>,
}

/// What the first page says about the range to read.
struct Probe {
    /// First index to read.
    start: u32,
    /// One past the last index (the pump's `next` on the first page).
    end: u32,
    /// Entries to read.
    total: u64,
    /// The first page's entries within `start..end`.
    entries: Vec<LogEntry>,
    /// The oldest index the pump still holds.
    oldest: u32,
}

/// Reads the first page and works out the index range `range` stands for.
async fn probe<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    range: LogRange,
) -> Result<Probe, Error> {
    let page = client
        .log_page(range.from.unwrap_or(0), MAX_LOG_PAGE as u8)
        .await?;
    let end = page.next;
    let mut start = range.from.unwrap_or(page.oldest).max(page.oldest);
    if let Some(last) = range.last {
        start = start.max(end.saturating_sub(last));
    }
    let entries = page
        .entries
        .iter()
        .filter(|e| e.index >= start && e.index < end)
        .copied()
        .collect();
    Ok(Probe {
        start,
        end,
        total: u64::from(end.saturating_sub(start)),
        entries,
        oldest: page.oldest,
    })
}

/// Reads `range` of the event log, stop-and-wait: one page per round trip (the
/// reference, and the link benchmark's baseline). It is [`read_log_pipelined`] with a
/// window of one. `progress(done, total)` is called after every page. Events logged
/// while reading are not chased: the read ends at the `next` index seen on the first
/// page, so it always ends.
pub async fn read_log<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    range: LogRange,
    progress: impl FnMut(u64, u64),
) -> Result<LogRead, Error> {
    read_log_pipelined(client, range, 1, progress).await
}

/// `ReadLog` requests kept in flight by [`read_log_pipelined`]. Four pages of answers
/// (a page of 24 entries is typically about 140 bytes on the wire, 12 ms at 115 200
/// baud; at most about 1 000 bytes) cover the round trip — a request's own wire time, the pump's work and the link's latency — with room
/// to spare, so the answers follow each other back to back; more would only queue
/// requests in the pump's input. The pump serves frames in order and keeps no state
/// between them, so nothing has to be negotiated.
pub const WINDOW: usize = 4;

/// Reads `range` of the event log like [`read_log`], with `window` page requests in
/// flight ([`WINDOW`] is the documented choice; 1 is stop-and-wait). Every page covers a
/// fixed index range; answers are matched by request id and assembled in index order,
/// each entry once. A page that comes back short (an entry overwritten, or one the pump
/// could not read) is followed by a request for the rest of its range. `progress(done,
/// total)` is called after every page.
pub async fn read_log_pipelined<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    range: LogRange,
    window: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<LogRead, Error> {
    let page_len = MAX_LOG_PAGE as u8;
    let Probe {
        start,
        end,
        total,
        entries: first,
        oldest: first_oldest,
    } = probe(client, range).await?;
    let cursor = first.last().map_or(start, |e| e.index + 1);
    let mut done = first.len() as u64;
    progress(done, total);
    // Pages by their first index: assembled in index order whatever the answer order.
    let mut pages: BTreeMap<u32, Vec<LogEntry>> = BTreeMap::new();
    pages.insert(start, first);
    let mut oldest = first_oldest;
    let mut queue = VecDeque::new();
    let mut lo = cursor;
    while lo < end {
        let hi = end.min(lo.saturating_add(u32::from(page_len)));
        queue.push_back(((lo, hi), page_request(lo, hi)));
        lo = hi;
    }
    client
        .pipelined(window, queue, |(lo, hi), page: LogPage, queue| {
            oldest = oldest.max(page.oldest);
            let fresh: Vec<LogEntry> = page
                .entries
                .iter()
                .filter(|e| e.index >= lo && e.index < hi)
                .copied()
                .collect();
            let reached = match fresh.last() {
                Some(last) => last.index + 1,
                // Overwritten while we read: what is still stored starts later.
                None if page.oldest > lo => page.oldest.min(hi),
                // Nothing there: the range is done (as stop-and-wait ends its read).
                None => hi,
            };
            if reached > lo && reached < hi {
                queue.push_front(((reached, hi), page_request(reached, hi)));
            }
            done += fresh.len() as u64;
            if !fresh.is_empty() {
                pages.insert(lo, fresh);
            }
            progress(done, total);
            Ok(())
        })
        .await?;
    Ok(LogRead {
        oldest,
        next: end,
        entries: pages.into_values().flatten().collect(),
    })
}

/// The `ReadLog` request for the entries `[lo, hi)` (at most a page).
fn page_request(lo: u32, hi: u32) -> ReadLog {
    let max = hi.saturating_sub(lo).min(MAX_LOG_PAGE as u32) as u8;
    ReadLog { first: lo, max }
}
