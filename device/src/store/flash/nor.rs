//! The NOR array model shared by [`super::RamFlash`] and `FileFlash`: bounds and
//! alignment checks, AND-writes, page erases, operation counters and power-cut injection.

use core::ops::Range;

use super::{FlashError, PAGE, WORD};

/// What a flash device has done since it was created (or since [`FlashStats::default`]
/// was subtracted). One *operation* is one word write or one page erase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlashStats {
    /// Word writes started, torn ones included.
    pub word_writes: u64,
    /// Page erases started, torn ones included.
    pub page_erases: u64,
    /// Read calls.
    pub reads: u64,
}

impl FlashStats {
    /// Word writes plus page erases: the unit a [`PowerCut`] budget counts.
    pub const fn ops(&self) -> u64 {
        self.word_writes.saturating_add(self.page_erases)
    }

    /// Bytes written (word writes times the word size).
    pub const fn bytes_written(&self) -> u64 {
        self.word_writes.saturating_mul(WORD as u64)
    }

    /// The counts done since `earlier`.
    pub const fn since(&self, earlier: &FlashStats) -> FlashStats {
        FlashStats {
            word_writes: self.word_writes.saturating_sub(earlier.word_writes),
            page_erases: self.page_erases.saturating_sub(earlier.page_erases),
            reads: self.reads.saturating_sub(earlier.reads),
        }
    }
}

/// Power-cut injection: a budget of operations until power fails, and the "off" state
/// that follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerCut {
    budget: Option<u64>,
    off: bool,
    rng: u64,
}

impl Default for PowerCut {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the operation about to start completes.
enum Fate {
    Completes,
    Torn,
}

impl PowerCut {
    /// No cut armed, power on.
    pub const fn new() -> Self {
        Self {
            budget: None,
            off: false,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The next `ops` operations complete; the one after is torn and power is off.
    pub fn arm(&mut self, ops: u64) {
        self.budget = Some(ops);
    }

    /// Cancels an armed cut (power stays as it is).
    pub fn disarm(&mut self) {
        self.budget = None;
    }

    /// Whether power is off (a cut happened and no reboot since).
    pub const fn is_off(&self) -> bool {
        self.off
    }

    /// Power back on: clears the fault and any armed cut.
    pub fn reboot(&mut self) {
        self.off = false;
        self.budget = None;
    }

    /// Seeds the generator that decides how a torn operation tears.
    pub fn seed(&mut self, seed: u64) {
        // xorshift must not start at zero.
        self.rng = seed | 1;
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn random_word(&mut self) -> [u8; WORD] {
        let [a, b, c, d, ..] = self.next_random().to_le_bytes();
        [a, b, c, d]
    }

    fn begin(&mut self) -> Result<Fate, FlashError> {
        if self.off {
            return Err(FlashError::PowerLoss);
        }
        match self.budget {
            Some(0) => {
                self.budget = None;
                self.off = true;
                Ok(Fate::Torn)
            }
            Some(n) => {
                self.budget = Some(n - 1);
                Ok(Fate::Completes)
            }
            None => Ok(Fate::Completes),
        }
    }
}

/// A NOR array over any byte buffer.
#[derive(Debug, Clone)]
pub(crate) struct Nor<M> {
    pub(crate) mem: M,
    pub(crate) cut: PowerCut,
    pub(crate) stats: FlashStats,
}

impl<M: AsRef<[u8]> + AsMut<[u8]>> Nor<M> {
    pub(crate) fn new(mem: M) -> Self {
        Self {
            mem,
            cut: PowerCut::new(),
            stats: FlashStats::default(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.mem.as_ref().len()
    }

    /// The byte range `offset .. offset + len`, if it is inside the device and aligned.
    fn span(&self, offset: u32, len: usize, align: usize) -> Result<Range<usize>, FlashError> {
        let start = usize::try_from(offset).map_err(|_| FlashError::OutOfBounds)?;
        let end = start.checked_add(len).ok_or(FlashError::OutOfBounds)?;
        if end > self.capacity() {
            return Err(FlashError::OutOfBounds);
        }
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(FlashError::NotAligned);
        }
        Ok(start..end)
    }

    pub(crate) fn read(&mut self, offset: u32, out: &mut [u8]) -> Result<(), FlashError> {
        let span = self.span(offset, out.len(), WORD)?;
        if self.cut.is_off() {
            return Err(FlashError::PowerLoss);
        }
        self.stats.reads = self.stats.reads.saturating_add(1);
        let src = self.mem.as_ref().get(span).ok_or(FlashError::OutOfBounds)?;
        out.copy_from_slice(src);
        Ok(())
    }

    /// Writes `bytes` at `offset` word by word, ANDing into the array. Returns the byte
    /// range touched (for write-through), also when power failed part-way.
    pub(crate) fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<Range<usize>, FlashError> {
        let span = self.span(offset, bytes.len(), WORD)?;
        let Nor { mem, cut, stats } = self;
        let dst = mem
            .as_mut()
            .get_mut(span.clone())
            .ok_or(FlashError::OutOfBounds)?;
        for (old, new) in dst.chunks_exact_mut(WORD).zip(bytes.chunks_exact(WORD)) {
            let fate = cut.begin()?;
            stats.word_writes = stats.word_writes.saturating_add(1);
            match fate {
                Fate::Completes => old.iter_mut().zip(new).for_each(|(o, n)| *o &= *n),
                Fate::Torn => {
                    // Only some of the bits that were to be cleared are cleared.
                    let keep = cut.random_word();
                    old.iter_mut()
                        .zip(new)
                        .zip(keep)
                        .for_each(|((o, n), k)| *o &= *n | k);
                    return Err(FlashError::PowerLoss);
                }
            }
        }
        Ok(span)
    }

    /// Erases the pages `from .. to`. Returns the byte range (for write-through).
    pub(crate) fn erase(&mut self, from: u32, to: u32) -> Result<Range<usize>, FlashError> {
        let len = to.checked_sub(from).ok_or(FlashError::OutOfBounds)?;
        let len = usize::try_from(len).map_err(|_| FlashError::OutOfBounds)?;
        let span = self.span(from, len, PAGE)?;
        let Nor { mem, cut, stats } = self;
        let dst = mem
            .as_mut()
            .get_mut(span.clone())
            .ok_or(FlashError::OutOfBounds)?;
        for page in dst.chunks_exact_mut(PAGE) {
            let fate = cut.begin()?;
            stats.page_erases = stats.page_erases.saturating_add(1);
            match fate {
                Fate::Completes => page.fill(0xFF),
                Fate::Torn => {
                    tear_erase(page, cut);
                    return Err(FlashError::PowerLoss);
                }
            }
        }
        Ok(span)
    }
}

/// Leaves `page` partly erased, in a pattern chosen by the generator.
fn tear_erase(page: &mut [u8], cut: &mut PowerCut) {
    let words = page.len() / WORD;
    let pattern = cut.next_random() % 3;
    let split = usize::try_from(cut.next_random() % (words as u64 + 1)).unwrap_or(0);
    let split_byte = split.saturating_mul(WORD).min(page.len());
    let (head, tail) = page.split_at_mut(split_byte);
    match pattern {
        // The first `split` words erased.
        0 => head.fill(0xFF),
        // The last `words - split` words erased.
        1 => tail.fill(0xFF),
        // Some bits of every word back to 1.
        _ => {
            for word in page.chunks_exact_mut(WORD) {
                let set = cut.random_word();
                word.iter_mut().zip(set).for_each(|(b, s)| *b |= s);
            }
        }
    }
}
