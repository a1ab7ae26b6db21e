//! The simulator's storage: the real [`FlashStore`] over a file-backed NOR flash
//! (`--state FILE`) or a RAM one, with the `storage` fault (every write fails) on top.

use std::io;
use std::path::Path;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use heapless::Vec;
use thecal_protocol::message::{LogEntry, MAX_LOG_PAGE};

use crate::store::flash::{FileFlash, FlashError, RamFlash};
use crate::store::{FlashStore, FLASH_SIZE};
use crate::store::{LogBounds, Secrets, Snapshot, Storage, StoreError, Stored, StoredPrescription};

/// A RAM flash on the heap (it is larger than a thread's stack likes).
pub struct HeapFlash(Box<RamFlash<FLASH_SIZE>>);

impl ErrorType for HeapFlash {
    type Error = FlashError;
}

impl ReadNorFlash for HeapFlash {
    const READ_SIZE: usize = RamFlash::<FLASH_SIZE>::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl NorFlash for HeapFlash {
    const WRITE_SIZE: usize = RamFlash::<FLASH_SIZE>::WRITE_SIZE;
    const ERASE_SIZE: usize = RamFlash::<FLASH_SIZE>::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.0.write(offset, bytes)
    }
}

enum Inner {
    Ram(FlashStore<HeapFlash>),
    File(FlashStore<FileFlash>),
}

/// The simulator's store.
pub struct SimStore {
    inner: Inner,
    fail_writes: bool,
}

impl SimStore {
    /// Opens `state` (created if missing) or a blank RAM flash; `fail_writes` injects the
    /// storage fault.
    pub fn open(state: Option<&Path>, fail_writes: bool) -> io::Result<Self> {
        let inner = match state {
            Some(path) => {
                let flash = FileFlash::open(path, FLASH_SIZE).map_err(io::Error::other)?;
                Inner::File(FlashStore::new(flash).map_err(super::store_error)?)
            }
            None => {
                let flash = HeapFlash(Box::new(RamFlash::new()));
                Inner::Ram(FlashStore::new(flash).map_err(super::store_error)?)
            }
        };
        Ok(Self { inner, fail_writes })
    }

    fn store(&mut self) -> &mut dyn Storage {
        match &mut self.inner {
            Inner::Ram(s) => s,
            Inner::File(s) => s,
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.fail_writes {
            Err(StoreError::Flash)
        } else {
            Ok(())
        }
    }
}

impl Storage for SimStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        self.store().load()
    }
    fn save_prescription(&mut self, record: &StoredPrescription) -> Result<(), StoreError> {
        self.writable()?;
        self.store().save_prescription(record)
    }
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.writable()?;
        self.store().save_snapshot(snapshot)
    }
    fn append_log(&mut self, entry: &LogEntry) -> Result<LogBounds, StoreError> {
        self.writable()?;
        self.store().append_log(entry)
    }
    fn read_log(
        &mut self,
        first: u32,
        max: usize,
        out: &mut Vec<LogEntry, MAX_LOG_PAGE>,
    ) -> Result<LogBounds, StoreError> {
        self.store().read_log(first, max, out)
    }
    fn load_secrets(&mut self) -> Result<(Option<Secrets>, bool), StoreError> {
        self.store().load_secrets()
    }
    fn save_secrets(&mut self, secrets: &Secrets) -> Result<(), StoreError> {
        self.writable()?;
        self.store().save_secrets(secrets)
    }
}
