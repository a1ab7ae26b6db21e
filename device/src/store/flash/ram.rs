//! [`RamFlash`]: a NOR flash in a byte array, with power-cut injection.

use embedded_storage::nor_flash::{ErrorType, MultiwriteNorFlash, NorFlash, ReadNorFlash};

use super::nor::{FlashStats, Nor, PowerCut};
use super::{FlashError, PAGE, WORD};

/// A `SIZE`-byte NOR flash in RAM (no_std, no alloc). Starts erased.
///
/// See the [module docs](super) for the semantics and the power-cut model. `SIZE` should
/// be a multiple of [`PAGE`]; a trailing partial page can be read and written but never
/// erased.
#[derive(Debug, Clone)]
pub struct RamFlash<const SIZE: usize> {
    nor: Nor<[u8; SIZE]>,
}

impl<const SIZE: usize> Default for RamFlash<SIZE> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SIZE: usize> RamFlash<SIZE> {
    /// An erased device (every byte `0xFF`).
    pub const fn new() -> Self {
        Self {
            nor: Nor {
                mem: [0xFF; SIZE],
                cut: PowerCut::new(),
                stats: FlashStats {
                    word_writes: 0,
                    page_erases: 0,
                    reads: 0,
                },
            },
        }
    }

    /// The raw contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.nor.mem
    }

    /// The raw contents, writable without NOR rules (to inject bit rot in tests).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.nor.mem
    }

    /// Operations done so far.
    pub fn stats(&self) -> FlashStats {
        self.nor.stats
    }

    /// Power fails after `ops` more operations complete: the next one is torn.
    pub fn cut_power_after(&mut self, ops: u64) {
        self.nor.cut.arm(ops);
    }

    /// Cancels an armed power cut that has not happened yet.
    pub fn disarm(&mut self) {
        self.nor.cut.disarm();
    }

    /// Whether an injected power cut has happened and the device is not rebooted yet.
    pub fn is_powered_off(&self) -> bool {
        self.nor.cut.is_off()
    }

    /// Power back on: clears the fault and any armed cut; keeps the contents.
    pub fn reboot(&mut self) {
        self.nor.cut.reboot();
    }

    /// Seeds the generator that decides how torn operations tear (deterministic tests).
    pub fn seed_tearing(&mut self, seed: u64) {
        self.nor.cut.seed(seed);
    }
}

impl<const SIZE: usize> ErrorType for RamFlash<SIZE> {
    type Error = FlashError;
}

impl<const SIZE: usize> ReadNorFlash for RamFlash<SIZE> {
    const READ_SIZE: usize = WORD;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.nor.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        SIZE
    }
}

impl<const SIZE: usize> NorFlash for RamFlash<SIZE> {
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
impl<const SIZE: usize> MultiwriteNorFlash for RamFlash<SIZE> {}

#[cfg(test)]
mod tests {
    use super::*;

    type Flash = RamFlash<{ 2 * PAGE }>;

    #[test]
    fn starts_erased_and_writes_and() {
        let mut f = Flash::new();
        assert!(f.as_bytes().iter().all(|b| *b == 0xFF));
        f.write(4, &[0xF0, 0x0F, 0xAA, 0x55]).unwrap();
        f.write(4, &[0x3C, 0x3C, 0xFF, 0x00]).unwrap();
        let mut out = [0; 8];
        f.read(0, &mut out).unwrap();
        assert_eq!(out, [0xFF, 0xFF, 0xFF, 0xFF, 0x30, 0x0C, 0xAA, 0x00]);
        f.erase(0, PAGE as u32).unwrap();
        f.read(0, &mut out).unwrap();
        assert_eq!(out, [0xFF; 8]);
        assert_eq!(f.stats().ops(), 3);
    }

    #[test]
    fn misaligned_and_out_of_range_calls_fail_without_effect() {
        let mut f = Flash::new();
        let mut buf = [0; 4];
        assert_eq!(f.read(2, &mut buf), Err(FlashError::NotAligned));
        assert_eq!(f.read(0, &mut buf[..3]), Err(FlashError::NotAligned));
        assert_eq!(
            f.read(2 * PAGE as u32, &mut buf),
            Err(FlashError::OutOfBounds)
        );
        assert_eq!(f.read(u32::MAX, &mut buf), Err(FlashError::OutOfBounds));
        assert_eq!(f.write(1, &[0; 4]), Err(FlashError::NotAligned));
        assert_eq!(f.write(0, &[0; 6]), Err(FlashError::NotAligned));
        assert_eq!(
            f.write(2 * PAGE as u32 - 4, &[0; 8]),
            Err(FlashError::OutOfBounds)
        );
        assert_eq!(f.erase(0, 100), Err(FlashError::NotAligned));
        assert_eq!(f.erase(PAGE as u32, 0), Err(FlashError::OutOfBounds));
        assert_eq!(f.erase(0, 3 * PAGE as u32), Err(FlashError::OutOfBounds));
        assert!(f.as_bytes().iter().all(|b| *b == 0xFF));
        assert_eq!(f.stats().ops(), 0);
    }

    #[test]
    fn torn_write_applies_a_prefix_then_fails_until_reboot() {
        for seed in 0..50 {
            let mut f = Flash::new();
            f.seed_tearing(seed);
            f.cut_power_after(2);
            assert_eq!(f.write(0, &[0; 16]), Err(FlashError::PowerLoss));
            let b = f.as_bytes();
            assert_eq!(&b[..8], &[0; 8], "first two words written");
            assert!(b[12..].iter().all(|x| *x == 0xFF), "fourth word untouched");
            assert!(f.is_powered_off());
            let mut out = [0; 4];
            assert_eq!(f.read(0, &mut out), Err(FlashError::PowerLoss));
            assert_eq!(f.write(64, &[0; 4]), Err(FlashError::PowerLoss));
            assert_eq!(f.erase(0, PAGE as u32), Err(FlashError::PowerLoss));
            f.reboot();
            f.read(0, &mut out).unwrap();
            assert_eq!(out, [0; 4]);
            assert_eq!(f.stats().word_writes, 3);
        }
    }

    #[test]
    fn torn_word_only_clears_bits_it_was_asked_to_clear() {
        let mut partial = 0;
        for seed in 0..200 {
            let mut f = Flash::new();
            f.write(0, &[0xF0, 0xF0, 0xF0, 0xF0]).unwrap();
            f.seed_tearing(seed);
            f.cut_power_after(0);
            assert!(f.write(0, &[0x3C, 0x3C, 0x3C, 0x3C]).is_err());
            for b in &f.as_bytes()[..4] {
                // Bits outside 0xF0 & 0x3C's cleared set stay as they were.
                assert_eq!(b & !0xF0, 0, "no bit rose");
                assert_eq!(b & 0x30, 0x30, "bits not asked to clear stay set");
                if *b != 0xF0 && *b != 0x30 {
                    partial += 1;
                }
            }
        }
        assert!(partial > 0, "some torn words are neither old nor new");
    }

    #[test]
    fn torn_erase_leaves_the_page_partly_erased() {
        let mut patterns = [false; 2];
        for seed in 0..100 {
            let mut f = Flash::new();
            f.as_bytes_mut().fill(0);
            f.seed_tearing(seed);
            f.cut_power_after(1);
            assert_eq!(f.erase(0, 2 * PAGE as u32), Err(FlashError::PowerLoss));
            let (first, second) = f.as_bytes().split_at(PAGE);
            assert!(first.iter().all(|b| *b == 0xFF), "first page erased");
            let erased = second.iter().filter(|b| **b == 0xFF).count();
            patterns[0] |= erased > 0 && erased < PAGE;
            patterns[1] |= second.iter().any(|b| *b != 0 && *b != 0xFF);
            assert_eq!(f.stats().page_erases, 2);
        }
        assert_eq!(patterns, [true, true]);
    }
}
