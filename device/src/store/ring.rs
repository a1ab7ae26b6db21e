//! An append-only ring of records over `P` store pages: the one mechanism behind all three
//! regions.
//!
//! * Records are appended one after another in a page (format in [`super::record`]);
//!   before a record is written, the bytes it will occupy are read and must be erased.
//! * When the current page has no room (or holds unusable bytes), the ring moves to the
//!   next page in ring order, **skipping the page that holds the newest valid record**,
//!   erases it if it is not blank, checks it reads back blank, and writes there.
//! * The newest valid record is the one with the highest sequence number.
//!
//! Why a power cut cannot lose the newest valid record: it is only ever made older by a
//! record that has been written, read back and committed; no write touches its bytes
//! (writes only go to bytes that read erased); and no erase touches its page. A torn
//! write or erase elsewhere only produces records that do not count (see the table in
//! [`super::record`]). This holds whatever pattern a torn erase leaves, because nothing
//! here infers a page's state from a few marker words.
//!
//! The ring keeps a summary of every page in RAM, built by one scan and updated by its own
//! appends; any error drops it, so the next operation scans the flash again.

use core::ops::ControlFlow;

use embedded_storage::nor_flash::NorFlash;

use super::io::{equals_padded, erase, is_blank, payload_crc, read, write_padded};
use super::layout::STORE_PAGE;
use super::record::{padded, record_len, Header, COMMIT, COMMIT_WORD, CRC, HEADER};
use crate::store::StoreError;

const PAGE: usize = STORE_PAGE;

/// Where a valid record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) seq: u32,
    pub(crate) page: usize,
    /// Absolute address of the payload.
    pub(crate) payload: u32,
    pub(crate) len: u16,
    pub(crate) crc: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageInfo {
    /// Lowest and highest sequence number of the valid records in the page.
    seqs: Option<(u32, u32)>,
    /// Offset after the last record parsed; appends go here if the bytes are erased.
    /// `PAGE` when the page cannot take more records.
    free: usize,
}

impl PageInfo {
    const EMPTY: PageInfo = PageInfo {
        seqs: None,
        free: 0,
    };

    fn note(&mut self, seq: u32) {
        self.seqs = Some(match self.seqs {
            None => (seq, seq),
            Some((lo, hi)) => (lo.min(seq), hi.max(seq)),
        });
    }
}

/// What one scan of the ring found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary<const P: usize> {
    pages: [PageInfo; P],
    /// The valid record with the highest sequence number.
    pub(crate) newest: Option<Loc>,
    /// Some committed record failed its CRC, or some page holds bytes no write of ours
    /// can have left.
    pub(crate) corrupt: bool,
}

impl<const P: usize> Summary<P> {
    /// Lowest sequence number of any valid record.
    pub(crate) fn oldest(&self) -> Option<u32> {
        self.pages
            .iter()
            .filter_map(|p| p.seqs.map(|(lo, _)| lo))
            .min()
    }
}

/// How a page walk ended.
struct PageWalk {
    /// See [`PageInfo::free`].
    free: usize,
    corrupt: bool,
    /// The visitor asked to stop.
    stopped: bool,
}

/// A ring of `P` pages starting at `base`, holding records tagged `magic`.
#[derive(Debug, Clone)]
pub(crate) struct Ring<const P: usize> {
    base: u32,
    magic: u16,
    summary: Option<Summary<P>>,
}

impl<const P: usize> Ring<P> {
    pub(crate) const fn new(base: u32, magic: u16) -> Self {
        Self {
            base,
            magic,
            summary: None,
        }
    }

    /// Forgets the summary: the next operation scans the flash.
    pub(crate) fn invalidate(&mut self) {
        self.summary = None;
    }

    /// The summary, scanning the flash if there is none.
    pub(crate) fn summary<F: NorFlash>(&mut self, flash: &mut F) -> Result<Summary<P>, StoreError> {
        if let Some(s) = self.summary {
            return Ok(s);
        }
        let s = self.scan(flash)?;
        self.summary = Some(s);
        Ok(s)
    }

    /// Address of `page`; errors if the page would not end below 4 GiB (so no address
    /// inside a page can overflow).
    fn page_addr(&self, page: usize) -> Result<u32, StoreError> {
        let start = page
            .checked_mul(PAGE)
            .and_then(|o| u32::try_from(o).ok())
            .and_then(|o| self.base.checked_add(o))
            .ok_or(StoreError::Flash)?;
        start.checked_add(PAGE as u32).ok_or(StoreError::Flash)?;
        Ok(start)
    }

    fn scan<F: NorFlash>(&self, flash: &mut F) -> Result<Summary<P>, StoreError> {
        let mut summary = Summary {
            pages: [PageInfo::EMPTY; P],
            newest: None,
            corrupt: false,
        };
        for (page, info) in summary.pages.iter_mut().enumerate() {
            let newest = &mut summary.newest;
            let walk = self.walk(flash, page, |_, loc| {
                info.note(loc.seq);
                if newest.is_none_or(|n| loc.seq > n.seq) {
                    *newest = Some(loc);
                }
                Ok(ControlFlow::Continue(()))
            })?;
            info.free = walk.free;
            summary.corrupt |= walk.corrupt;
        }
        Ok(summary)
    }

    /// The valid record with the highest sequence number below `bound`.
    pub(crate) fn newest_below<F: NorFlash>(
        &self,
        flash: &mut F,
        bound: u32,
    ) -> Result<Option<Loc>, StoreError> {
        let mut best: Option<Loc> = None;
        for page in 0..P {
            self.walk(flash, page, |_, loc| {
                if loc.seq < bound && best.is_none_or(|b| loc.seq > b.seq) {
                    best = Some(loc);
                }
                Ok(ControlFlow::Continue(()))
            })?;
        }
        Ok(best)
    }

    /// Calls `visit` for the valid records with sequence numbers from `first` on, in
    /// increasing order (strictly: a record not above the last one visited is skipped),
    /// until it returns `Break`.
    pub(crate) fn for_each_from<F: NorFlash>(
        &mut self,
        flash: &mut F,
        first: u32,
        mut visit: impl FnMut(&mut F, Loc) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        let summary = self.summary(flash)?;
        // Pages in the order of their oldest record.
        let mut order = [(u32::MAX, u32::MAX, usize::MAX); P];
        for ((slot, info), page) in order.iter_mut().zip(&summary.pages).zip(0..) {
            if let Some((lo, hi)) = info.seqs {
                *slot = (lo, hi, page);
            }
        }
        order.sort_unstable();
        let mut last: Option<u32> = None;
        for &(_, hi, page) in order.iter().filter(|(_, _, page)| *page < P) {
            if hi < first {
                continue;
            }
            let walk = self.walk(flash, page, |flash, loc| {
                if loc.seq < first || last.is_some_and(|l| loc.seq <= l) {
                    return Ok(ControlFlow::Continue(()));
                }
                last = Some(loc.seq);
                visit(flash, loc)
            })?;
            if walk.stopped {
                break;
            }
        }
        Ok(())
    }

    /// Parses the records of `page` in order, handing each valid one to `visit`.
    fn walk<F: NorFlash>(
        &self,
        flash: &mut F,
        page: usize,
        mut visit: impl FnMut(&mut F, Loc) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<PageWalk, StoreError> {
        let start = self.page_addr(page)?;
        let mut walk = PageWalk {
            free: 0,
            corrupt: false,
            stopped: false,
        };
        let mut off = 0usize;
        while off + HEADER <= PAGE {
            let at = start + off as u32;
            let mut raw = [0u8; HEADER];
            read(flash, at, &mut raw)?;
            if raw.iter().all(|b| *b == 0xFF) {
                break;
            }
            let header = Header::decode(&raw, self.magic)
                .filter(|h| off + record_len(usize::from(h.len)) <= PAGE);
            let Some(header) = header else {
                // Can't tell where the next record starts: the page is done. A torn
                // header write leaves everything after it erased; anything else is
                // damage.
                let rest = off + HEADER;
                walk.corrupt |= !is_blank(flash, start + rest as u32, PAGE - rest)?;
                walk.free = PAGE;
                return Ok(walk);
            };
            let len = usize::from(header.len);
            let payload = at + HEADER as u32;
            let crc_ok = payload_crc(flash, payload, len)? == header.payload_crc;
            let mut commit = [0u8; COMMIT];
            read(flash, payload + padded(len) as u32, &mut commit)?;
            let committed = commit != [0xFF; COMMIT];
            off += record_len(len);
            match (crc_ok, committed) {
                (true, true) => {
                    let loc = Loc {
                        seq: header.seq,
                        page,
                        payload,
                        len: header.len,
                        crc: header.payload_crc,
                    };
                    if visit(flash, loc)?.is_break() {
                        walk.stopped = true;
                        walk.free = off;
                        return Ok(walk);
                    }
                }
                (false, true) => walk.corrupt = true,
                // Torn, or never committed: does not count.
                (_, false) => {}
            }
        }
        walk.free = off;
        Ok(walk)
    }

    /// Appends a record with sequence number `seq`; returns where it went. On `Ok` the
    /// record has been read back, verified and committed.
    pub(crate) fn append<F: NorFlash>(
        &mut self,
        flash: &mut F,
        seq: u32,
        payload: &[u8],
    ) -> Result<Loc, StoreError> {
        let result = self.try_append(flash, seq, payload);
        if result.is_err() {
            self.invalidate();
        }
        result
    }

    fn try_append<F: NorFlash>(
        &mut self,
        flash: &mut F,
        seq: u32,
        payload: &[u8],
    ) -> Result<Loc, StoreError> {
        let len = u16::try_from(payload.len()).map_err(|_| StoreError::TooLarge)?;
        let rec = record_len(payload.len());
        if rec > PAGE {
            return Err(StoreError::TooLarge);
        }
        let mut summary = self.summary(flash)?;
        let keep = summary.newest.map(|n| n.page);
        let mut page = keep.unwrap_or(0);
        let mut off = summary.pages.get(page).map_or(PAGE, |p| p.free);
        // At most: the current page, then one fresh page (more only if erases fail to
        // leave a blank page, which then errors out anyway).
        for _ in 0..=P {
            let at = self.page_addr(page)?;
            if off + rec <= PAGE && is_blank(flash, at + off as u32, rec)? {
                let loc = self.write_record(flash, page, off, seq, len, payload)?;
                if let Some(info) = summary.pages.get_mut(page) {
                    info.note(seq);
                    info.free = off + rec;
                }
                if summary.newest.is_none_or(|n| seq > n.seq) {
                    summary.newest = Some(loc);
                }
                self.summary = Some(summary);
                return Ok(loc);
            }
            if let Some(info) = summary.pages.get_mut(page) {
                info.free = PAGE;
            }
            page = next_page(page, keep, P);
            self.make_blank(flash, page)?;
            if let Some(info) = summary.pages.get_mut(page) {
                *info = PageInfo::EMPTY;
            }
            off = 0;
        }
        Err(StoreError::Flash)
    }

    /// Erases `page` unless it already reads blank, and checks that it then does.
    fn make_blank<F: NorFlash>(&self, flash: &mut F, page: usize) -> Result<(), StoreError> {
        let at = self.page_addr(page)?;
        for _ in 0..2 {
            if is_blank(flash, at, PAGE)? {
                return Ok(());
            }
            erase(flash, at)?;
        }
        if is_blank(flash, at, PAGE)? {
            Ok(())
        } else {
            Err(StoreError::Flash)
        }
    }

    fn write_record<F: NorFlash>(
        &self,
        flash: &mut F,
        page: usize,
        off: usize,
        seq: u32,
        len: u16,
        payload: &[u8],
    ) -> Result<Loc, StoreError> {
        let at = self.page_addr(page)? + off as u32;
        let crc = CRC.checksum(payload);
        let header = Header {
            magic: self.magic,
            len,
            seq,
            payload_crc: crc,
        }
        .encode();
        let payload_at = at + HEADER as u32;
        let commit_at = payload_at + padded(payload.len()) as u32;
        write_padded(flash, at, &header)?;
        write_padded(flash, payload_at, payload)?;
        if !(equals_padded(flash, at, &header)? && equals_padded(flash, payload_at, payload)?) {
            return Err(StoreError::Verify);
        }
        write_padded(flash, commit_at, &COMMIT_WORD)?;
        let mut commit = [0u8; COMMIT];
        read(flash, commit_at, &mut commit)?;
        if commit == [0xFF; COMMIT] {
            return Err(StoreError::Verify);
        }
        Ok(Loc {
            seq,
            page,
            payload: payload_at,
            len,
            crc,
        })
    }

    /// Erases every page of the ring.
    pub(crate) fn erase_all<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), StoreError> {
        self.invalidate();
        for page in 0..P {
            erase(flash, self.page_addr(page)?)?;
        }
        Ok(())
    }
}

/// The page after `page` in ring order that is not `keep`.
fn next_page(page: usize, keep: Option<usize>, pages: usize) -> usize {
    let mut next = (page + 1) % pages;
    if Some(next) == keep {
        next = (next + 1) % pages;
    }
    next
}

/// Reads `loc`'s payload into `buf` and checks its CRC again. `None` if it does not fit
/// `buf` or no longer matches.
pub(crate) fn read_payload<'b, F: NorFlash>(
    flash: &mut F,
    loc: Loc,
    buf: &'b mut [u8],
) -> Result<Option<&'b [u8]>, StoreError> {
    let len = usize::from(loc.len);
    let whole = padded(len);
    let Some(dst) = buf.get_mut(..whole) else {
        return Ok(None);
    };
    read(flash, loc.payload, dst)?;
    let bytes = dst.get(..len).unwrap_or_default();
    Ok((CRC.checksum(bytes) == loc.crc).then_some(bytes))
}
