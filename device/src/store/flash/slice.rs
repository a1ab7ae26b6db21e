//! [`SliceFlash`]: a NOR flash over memory the platform lends it (no_std, no alloc).

use embedded_storage::nor_flash::{ErrorType, MultiwriteNorFlash, NorFlash, ReadNorFlash};

use super::nor::{FlashStats, Nor};
use super::{FlashError, PAGE, WORD};

/// A NOR flash over a borrowed byte slice, with the same semantics as
/// [`RamFlash`](super::RamFlash) (see the [module docs](super)): for memory a platform
/// keeps across resets, such as the QEMU image's retained code RAM, where its slots and
/// its therapy store live. The slice's length should be a multiple of [`PAGE`].
///
/// No power cuts are injected here (the memory is the platform's, not a test's); the
/// operation counts are kept.
#[derive(Debug)]
pub struct SliceFlash<'a> {
    nor: Nor<&'a mut [u8]>,
}

impl<'a> SliceFlash<'a> {
    /// A flash over `mem`, with its contents as they are (erased bytes are `0xFF`).
    pub fn new(mem: &'a mut [u8]) -> Self {
        Self { nor: Nor::new(mem) }
    }

    /// The raw contents.
    pub fn as_bytes(&self) -> &[u8] {
        self.nor.mem
    }

    /// Operations done so far.
    pub fn stats(&self) -> FlashStats {
        self.nor.stats
    }
}

impl ErrorType for SliceFlash<'_> {
    type Error = FlashError;
}

impl ReadNorFlash for SliceFlash<'_> {
    const READ_SIZE: usize = WORD;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.nor.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.nor.capacity()
    }
}

impl NorFlash for SliceFlash<'_> {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.nor.erase(from, to).map(|_| ())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.nor.write(offset, bytes).map(|_| ())
    }
}

/// Truthful: a second write of a word ANDs into it, as the trait requires.
impl MultiwriteNorFlash for SliceFlash<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_nor_over_the_lent_memory() {
        let mut mem = [0u8; 2 * PAGE];
        {
            let mut f = SliceFlash::new(&mut mem);
            assert_eq!(f.capacity(), 2 * PAGE);
            // Not erased yet: a write ANDs into whatever is there.
            f.write(0, &[0xFF; 4]).unwrap();
            assert_eq!(&f.as_bytes()[..4], &[0; 4]);
            f.erase(0, PAGE as u32).unwrap();
            f.write(4, &[0xF0, 0x0F, 0xAA, 0x55]).unwrap();
            f.write(4, &[0x3C, 0x3C, 0xFF, 0x00]).unwrap();
            let mut out = [0; 8];
            f.read(0, &mut out).unwrap();
            assert_eq!(out, [0xFF, 0xFF, 0xFF, 0xFF, 0x30, 0x0C, 0xAA, 0x00]);
            assert_eq!(f.read(2, &mut out[..4]), Err(FlashError::NotAligned));
            assert_eq!(f.erase(0, 3 * PAGE as u32), Err(FlashError::OutOfBounds));
            assert_eq!(f.stats().page_erases, 1);
        }
        assert!(
            mem[PAGE..].iter().all(|b| *b == 0),
            "the second page untouched"
        );
        assert_eq!(mem[4], 0x30, "the writes are in the lent memory");
    }
}
