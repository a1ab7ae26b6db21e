//! [`FileFlash`]: the NOR model of [`super::RamFlash`], persisted to a file (the
//! simulator's `--state FILE`).
//!
//! The whole array lives in memory; every write and erase writes the bytes it touched
//! through to the file before returning, so a killed simulator keeps its state. (The data
//! is handed to the OS, not `fsync`ed: it survives a killed process, not a host crash.)

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use embedded_storage::nor_flash::{ErrorType, MultiwriteNorFlash, NorFlash, ReadNorFlash};

use super::nor::{FlashStats, Nor};
use super::{FlashError, PAGE, WORD};

/// Why a state file could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileFlashError {
    /// The requested size is zero or not a multiple of [`PAGE`].
    BadSize(usize),
    /// The existing file has another size than requested.
    SizeMismatch {
        /// Requested size.
        expected: usize,
        /// Size of the file.
        found: u64,
    },
    /// Group or others may access the file (mode bits `0o077`): it holds the pump's
    /// secrets, so it is refused until `chmod 600`.
    Exposed {
        /// The file's permission bits.
        mode: u32,
    },
    /// Opening, reading or creating the file failed.
    Io(std::io::Error),
}

impl core::fmt::Display for FileFlashError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FileFlashError::BadSize(n) => {
                write!(f, "flash size {n} is not a positive multiple of {PAGE}")
            }
            FileFlashError::SizeMismatch { expected, found } => {
                write!(
                    f,
                    "state file holds {found} bytes, expected {expected} (another layout?)"
                )
            }
            FileFlashError::Exposed { mode } => write!(
                f,
                "state file has mode {mode:03o}: it holds the pump's secrets, so group and others may not access it (chmod 600)"
            ),
            FileFlashError::Io(e) => write!(f, "state file: {e}"),
        }
    }
}

impl std::error::Error for FileFlashError {}

impl From<std::io::Error> for FileFlashError {
    fn from(e: std::io::Error) -> Self {
        FileFlashError::Io(e)
    }
}

/// A NOR flash persisted to a file, written through on every write and erase.
#[derive(Debug)]
pub struct FileFlash {
    nor: Nor<Vec<u8>>,
    file: File,
}

impl FileFlash {
    /// Opens the state file at `path`, or creates it erased (`0xFF`) if it does not exist.
    /// An existing file must be exactly `size` bytes and accessible to its owner only
    /// (it holds the pump's secrets); a new one is created with mode 0600.
    pub fn open(path: impl AsRef<Path>, size: usize) -> Result<Self, FileFlashError> {
        if size == 0 || !size.is_multiple_of(PAGE) {
            return Err(FileFlashError::BadSize(size));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let meta = file.metadata()?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(FileFlashError::Exposed { mode });
        }
        let found = meta.len();
        let mem = if found == 0 {
            let mem = vec![0xFF; size];
            file.write_all(&mem)?;
            file.sync_all()?;
            mem
        } else if usize::try_from(found).ok() == Some(size) {
            let mut mem = vec![0; size];
            file.read_exact(&mut mem)?;
            mem
        } else {
            return Err(FileFlashError::SizeMismatch {
                expected: size,
                found,
            });
        };
        Ok(Self {
            nor: Nor::new(mem),
            file,
        })
    }

    /// The raw contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.nor.mem
    }

    /// Operations done since the file was opened.
    pub fn stats(&self) -> FlashStats {
        self.nor.stats
    }

    /// Writes the bytes in `span` through to the file.
    fn persist(&mut self, span: Range<usize>) -> Result<(), FlashError> {
        let start = u64::try_from(span.start).map_err(|_| FlashError::Io)?;
        let bytes = self.nor.mem.get(span).ok_or(FlashError::OutOfBounds)?;
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.write_all(bytes))
            .and_then(|()| self.file.flush())
            .map_err(|_| FlashError::Io)
    }
}

impl ErrorType for FileFlash {
    type Error = FlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = WORD;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.nor.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.nor.capacity()
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let span = self.nor.erase(from, to)?;
        self.persist(span)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let span = self.nor.write(offset, bytes)?;
        self.persist(span)
    }
}

/// Truthful: a second write of a word ANDs into it, as the trait requires.
impl MultiwriteNorFlash for FileFlash {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_reopen_and_size_is_checked() {
        let dir = std::env::temp_dir().join(format!("thecal-fileflash-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        {
            let mut f = FileFlash::open(&dir, 2 * PAGE).unwrap();
            assert!(f.as_bytes().iter().all(|b| *b == 0xFF));
            f.write(PAGE as u32 + 8, &[1, 2, 3, 4]).unwrap();
            f.write(PAGE as u32 + 8, &[0xFF, 0xFF, 0xFF, 0]).unwrap();
            f.write(0, &[0; 4]).unwrap();
            f.erase(0, PAGE as u32).unwrap();
            assert_eq!(f.write(3, &[0; 4]), Err(FlashError::NotAligned));
        }
        let mut f = FileFlash::open(&dir, 2 * PAGE).unwrap();
        let mut out = [0; 4];
        f.read(PAGE as u32 + 8, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 0]);
        f.read(0, &mut out).unwrap();
        assert_eq!(out, [0xFF; 4]);
        assert!(matches!(
            FileFlash::open(&dir, 3 * PAGE),
            Err(FileFlashError::SizeMismatch { .. })
        ));
        assert!(matches!(
            FileFlash::open(&dir, 100),
            Err(FileFlashError::BadSize(100))
        ));
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn a_state_file_others_may_read_is_refused_and_a_new_one_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("thecal-exposed-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        drop(FileFlash::open(&path, PAGE).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "created private");
        for exposed in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(exposed)).unwrap();
            assert!(
                matches!(
                    FileFlash::open(&path, PAGE),
                    Err(FileFlashError::Exposed { mode }) if mode == exposed
                ),
                "{exposed:o}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(FileFlash::open(&path, PAGE).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}
