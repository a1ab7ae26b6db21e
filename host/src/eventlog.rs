//! Reading the pump's event log page by page.

use thecal_protocol::message::{LogEntry, MAX_LOG_PAGE};
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

/// Reads `range` of the event log. `progress(done, total)` is called after every page.
/// Events logged while reading are not chased: the read ends at the `next` index seen on
/// the first page, so it always ends.
pub async fn read_log<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    range: LogRange,
    mut progress: impl FnMut(u64, u64),
) -> Result<LogRead, Error> {
    let page_len = MAX_LOG_PAGE as u8;
    let probe = client.log_page(range.from.unwrap_or(0), page_len).await?;
    let end = probe.next;
    let mut start = range.from.unwrap_or(probe.oldest).max(probe.oldest);
    if let Some(last) = range.last {
        start = start.max(end.saturating_sub(last));
    }
    let total = u64::from(end.saturating_sub(start));
    let mut entries: Vec<LogEntry> = probe
        .entries
        .iter()
        .filter(|e| e.index >= start && e.index < end)
        .copied()
        .collect();
    let mut oldest = probe.oldest;
    let mut cursor = entries.last().map_or(start, |e| e.index + 1);
    progress(entries.len() as u64, total);
    // At most one page per entry, plus slack: the loop cannot run away.
    let mut budget = total + 4;
    while cursor < end && budget > 0 {
        budget -= 1;
        let page = client.log_page(cursor, page_len).await?;
        oldest = page.oldest;
        let fresh: Vec<LogEntry> = page
            .entries
            .iter()
            .filter(|e| e.index >= cursor && e.index < end)
            .copied()
            .collect();
        match fresh.last() {
            Some(last) => cursor = last.index + 1,
            // Overwritten while we read: skip to what is still stored.
            None if page.oldest > cursor => cursor = page.oldest,
            None => break,
        }
        entries.extend(fresh);
        progress(entries.len() as u64, total);
    }
    Ok(LogRead {
        oldest,
        next: end,
        entries,
    })
}
