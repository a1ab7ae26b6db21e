//! Flash devices with real NOR semantics: [`RamFlash`] (no_std, with power-cut injection)
//! for tests, [`SliceFlash`] (no_std, over memory a platform lends it) for the QEMU
//! firmware's retained RAM, and `FileFlash` (feature `sim`) for the simulator's
//! `--state FILE`.
//!
//! # NOR semantics (every device here)
//!
//! * Geometry: [`WORD`] = 4 bytes is both `READ_SIZE` and `WRITE_SIZE`; [`PAGE`] = 4096
//!   bytes is `ERASE_SIZE`. A misaligned or out-of-range call returns
//!   [`FlashError::NotAligned`] / [`FlashError::OutOfBounds`] and changes nothing.
//! * Erase sets every byte of a page to `0xFF`.
//! * A write can only clear bits: writing a word **ANDs** the new bits into the old ones,
//!   as a real NOR array does when a word is programmed twice. Nothing fails; writing over
//!   non-erased data silently produces the AND. That is why every device here also implements
//!   `MultiwriteNorFlash` truthfully. (The store in [`crate::store`] never writes a word
//!   twice and only needs `NorFlash`.)
//!
//! # Power cuts ([`PowerCut`])
//!
//! Every word write and every page erase is one *operation*, counted by
//! [`FlashStats`]. A test arms a budget of `n` operations; the next `n` complete, and the
//! one after that is **torn**:
//!
//! * a torn write has applied the words before it in full; the torn word has cleared only a
//!   random subset of the bits it was going to clear (possibly none, possibly all); the
//!   words after it are untouched;
//! * a torn erase leaves the page *partly* erased in one of three patterns picked by a
//!   seeded generator: a prefix of its words erased, a suffix erased, or random bits of
//!   every word set back to 1. The `embedded-storage` contract says only that the page is
//!   "undefined" after a power loss during erase, so nothing may rely on the order in
//!   which a page erases.
//!
//! The torn operation and every later operation (reads too) fail with
//! [`FlashError::PowerLoss`] until [`RamFlash::reboot`], which keeps the contents.
//!
//! The panic rule holds here as everywhere in the crate: no operation panics, whatever the
//! arguments.

mod nor;
mod ram;
mod slice;

#[cfg(feature = "sim")]
mod file;

#[cfg(feature = "sim")]
pub use file::{FileFlash, FileFlashError};
pub use nor::{FlashStats, PowerCut};
pub use ram::RamFlash;
pub use slice::SliceFlash;

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};

/// Read and write granularity of the flash devices here, bytes.
pub const WORD: usize = 4;
/// Erase granularity (one page), bytes.
pub const PAGE: usize = 4096;

/// Why a flash operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlashError {
    /// Offset or length not a multiple of the read/write/erase size.
    NotAligned,
    /// The range leaves the device (or `from > to`).
    OutOfBounds,
    /// Power was lost (injected); nothing works until the device is rebooted.
    PowerLoss,
    /// The backing file could not be read or written (`FileFlash` only).
    Io,
}

impl core::fmt::Display for FlashError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FlashError::NotAligned => "flash access not aligned",
            FlashError::OutOfBounds => "flash access out of bounds",
            FlashError::PowerLoss => "power lost during a flash operation",
            FlashError::Io => "flash backing file error",
        })
    }
}

impl core::error::Error for FlashError {}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FlashError::PowerLoss | FlashError::Io => NorFlashErrorKind::Other,
        }
    }
}
