//! The simulator's firmware slots: `embassy-boot`'s state partition, the active slot
//! and the update slot on one NOR flash of their own (`--state FILE` keeps them in
//! `FILE.slots`; the therapy store's file is a separate flash, which an update never
//! touches).
//!
//! What the simulator can and cannot do: it runs the real updater and the real
//! `embassy-boot` bootloader (swap, trial, rollback) over these slots, and after a swap
//! it reports the version in the active slot's header (`Identify`, `UpdateStatus`). It
//! cannot *execute* the image: the code that keeps running is the simulator binary, so
//! an image is only data here. Its "self-test" is that the pump booted from its store
//! and ticked.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use embassy_boot::{AlignedBuffer, BootLoader, BootLoaderConfig, State};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use thecal_protocol::message::Version;
use thecal_protocol::update::{self, Board, ImageHeader, KeyKind, DEV_SECRET_KEY, HEADER_LEN};

use crate::store::flash::{FileFlash, FlashError, RamFlash, PAGE};
use crate::update::{read_header, Geometry, Updater, TRUSTED_KEY};

/// Pages of the simulator's active slot (256 KiB; images up to 252 KiB).
pub const ACTIVE_PAGES: usize = 64;
/// Bytes of the slot flash: state (1 page), active (`N`), update (`N + 1`).
pub const SLOTS_BYTES: usize = (2 * ACTIVE_PAGES + 2) * PAGE;
const STATE_AT: u32 = 0;
const ACTIVE_AT: u32 = PAGE as u32;
const DFU_AT: u32 = ((ACTIVE_PAGES + 1) * PAGE) as u32;

enum Backing {
    /// One RAM flash per page (a 520 KiB array would be built on the stack first).
    Ram(Vec<RamFlash<PAGE>>),
    File(FileFlash),
}

impl Backing {
    fn flash(&mut self) -> &mut dyn Nor {
        match self {
            Backing::Ram(pages) => pages,
            Backing::File(f) => f,
        }
    }
}

/// Pages of RAM flash as one device: each call split at page boundaries.
impl Nor for Vec<RamFlash<PAGE>> {
    fn nor_read(&mut self, at: u32, b: &mut [u8]) -> Result<(), FlashError> {
        let mut done = 0;
        while done < b.len() {
            let (page, off, n) = span(at, done, b.len())?;
            let f = self.get_mut(page).ok_or(FlashError::OutOfBounds)?;
            let piece = b.get_mut(done..done + n).ok_or(FlashError::OutOfBounds)?;
            ReadNorFlash::read(f, off, piece)?;
            done += n;
        }
        Ok(())
    }
    fn nor_write(&mut self, at: u32, b: &[u8]) -> Result<(), FlashError> {
        let mut done = 0;
        while done < b.len() {
            let (page, off, n) = span(at, done, b.len())?;
            let f = self.get_mut(page).ok_or(FlashError::OutOfBounds)?;
            let piece = b.get(done..done + n).ok_or(FlashError::OutOfBounds)?;
            NorFlash::write(f, off, piece)?;
            done += n;
        }
        Ok(())
    }
    fn nor_erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        if !from.is_multiple_of(PAGE as u32) || !to.is_multiple_of(PAGE as u32) {
            return Err(FlashError::NotAligned);
        }
        for page in from / PAGE as u32..to / PAGE as u32 {
            let f = self.get_mut(page as usize).ok_or(FlashError::OutOfBounds)?;
            NorFlash::erase(f, 0, PAGE as u32)?;
        }
        Ok(())
    }
}

/// The page, offset in it and length of the piece of a `len`-byte access at `at` that
/// starts `done` bytes in.
fn span(at: u32, done: usize, len: usize) -> Result<(usize, u32, usize), FlashError> {
    let pos = at as usize + done;
    let (page, off) = (pos / PAGE, pos % PAGE);
    let n = (PAGE - off).min(len - done);
    Ok((
        page,
        u32::try_from(off).map_err(|_| FlashError::OutOfBounds)?,
        n,
    ))
}

/// The three flash calls, object-safe.
trait Nor {
    fn nor_read(&mut self, at: u32, b: &mut [u8]) -> Result<(), FlashError>;
    fn nor_write(&mut self, at: u32, b: &[u8]) -> Result<(), FlashError>;
    fn nor_erase(&mut self, from: u32, to: u32) -> Result<(), FlashError>;
}

impl Nor for FileFlash {
    fn nor_read(&mut self, at: u32, b: &mut [u8]) -> Result<(), FlashError> {
        ReadNorFlash::read(self, at, b)
    }
    fn nor_write(&mut self, at: u32, b: &[u8]) -> Result<(), FlashError> {
        NorFlash::write(self, at, b)
    }
    fn nor_erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        NorFlash::erase(self, from, to)
    }
}

/// The slot flash, shared by its partitions (the simulator's thread owns them all).
#[derive(Clone)]
pub struct SlotFlash(Arc<Mutex<Backing>>);

impl SlotFlash {
    /// `state.slots` beside the state file (created if missing), or RAM.
    pub fn open(state: Option<&Path>) -> io::Result<SlotFlash> {
        let backing = match state {
            Some(p) => Backing::File(
                FileFlash::open(p.with_extension("slots"), SLOTS_BYTES)
                    .map_err(io::Error::other)?,
            ),
            None => Backing::Ram((0..SLOTS_BYTES / PAGE).map(|_| RamFlash::new()).collect()),
        };
        Ok(SlotFlash(Arc::new(Mutex::new(backing))))
    }

    fn part(&self, base: u32, pages: usize) -> Part {
        Part {
            flash: self.clone(),
            base,
            size: (pages * PAGE) as u32,
        }
    }

    /// The update slot and the state partition, for the updater.
    pub fn updater_parts(&self) -> (Part, Part) {
        (self.part(DFU_AT, ACTIVE_PAGES + 1), self.part(STATE_AT, 1))
    }

    /// Runs the bootloader (a swap or a rollback if one is due), installs the factory
    /// image on a blank active slot, and returns the updater of the booted image.
    pub fn boot(&self) -> io::Result<(SimUpdater, State)> {
        let mut active = self.part(ACTIVE_AT, ACTIVE_PAGES);
        let (dfu, state) = self.updater_parts();
        let mut loader = BootLoader::new(BootLoaderConfig {
            active: self.part(ACTIVE_AT, ACTIVE_PAGES),
            dfu: self.part(DFU_AT, ACTIVE_PAGES + 1),
            state: self.part(STATE_AT, 1),
        });
        let mut buf = AlignedBuffer([0u8; 256]);
        let booted = loader
            .prepare_boot(&mut buf.0)
            .map_err(|e| io::Error::other(format!("bootloader: {e:?}")))?;
        let geometry = Geometry::of((ACTIVE_PAGES + 1) * PAGE, PAGE)
            .ok_or_else(|| io::Error::other("slot geometry"))?;
        let running = match read_header(&mut active, geometry.trailer()) {
            Some(h) => h,
            None => factory_image(&mut active, geometry)?,
        };
        let updater = Updater::new(dfu, state, TRUSTED_KEY, Board::SIM, running)
            .ok_or_else(|| io::Error::other("update slots unreadable"))?;
        Ok((updater, booted))
    }
}

/// The simulator's updater.
pub type SimUpdater = Updater<Part, Part>;

/// The version of the simulator's factory image: the crate's.
pub fn factory_version() -> Version {
    let n = |s: &str| s.parse().unwrap_or(0);
    Version {
        major: n(env!("CARGO_PKG_VERSION_MAJOR")),
        minor: n(env!("CARGO_PKG_VERSION_MINOR")),
        patch: n(env!("CARGO_PKG_VERSION_PATCH")),
    }
}

/// Programs a blank active slot as the factory would: a stand-in image (the simulator
/// cannot run code from it) and its dev-signed header at security version 1.
fn factory_image(active: &mut Part, g: Geometry) -> io::Result<ImageHeader> {
    let mut image = Vec::with_capacity(PAGE);
    image.extend_from_slice(b"thecal-sim factory image ");
    image.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    image.resize(PAGE, 0xA5);
    let header = ImageHeader {
        key: KeyKind::Development,
        board: Board::SIM,
        version: factory_version(),
        security: 1,
        length: image.len() as u32,
        sha256: update::sha256(&image),
    };
    let signed = update::sign(&header, &DEV_SECRET_KEY);
    let fail = |e: FlashError| io::Error::other(format!("slot flash: {e}"));
    active.erase(0, PAGE as u32).map_err(fail)?;
    active.write(0, &image).map_err(fail)?;
    let t = g.trailer();
    active.erase(t, t + PAGE as u32).map_err(fail)?;
    active.write(t, &signed[..HEADER_LEN]).map_err(fail)?;
    Ok(header)
}

/// A partition of the slot flash (bounds-checked offsets from `base`).
pub struct Part {
    flash: SlotFlash,
    base: u32,
    size: u32,
}

impl Part {
    fn at(&self, offset: u32, len: usize) -> Result<u32, FlashError> {
        let len = u32::try_from(len).map_err(|_| FlashError::OutOfBounds)?;
        let end = offset.checked_add(len).ok_or(FlashError::OutOfBounds)?;
        if end > self.size {
            return Err(FlashError::OutOfBounds);
        }
        Ok(self.base + offset)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn Nor) -> Result<T, FlashError>,
    ) -> Result<T, FlashError> {
        let mut guard = self.flash.0.lock().map_err(|_| FlashError::Io)?;
        f(guard.flash())
    }
}

impl ErrorType for Part {
    type Error = FlashError;
}

impl ReadNorFlash for Part {
    const READ_SIZE: usize = RamFlash::<PAGE>::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let at = self.at(offset, bytes.len())?;
        self.with(|f| f.nor_read(at, bytes))
    }
    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl NorFlash for Part {
    const WRITE_SIZE: usize = RamFlash::<PAGE>::WRITE_SIZE;
    const ERASE_SIZE: usize = RamFlash::<PAGE>::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        if from > to {
            return Err(FlashError::OutOfBounds);
        }
        let at = self.at(from, (to - from) as usize)?;
        self.with(|f| f.nor_erase(at, at + (to - from)))
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let at = self.at(offset, bytes.len())?;
        self.with(|f| f.nor_write(at, bytes))
    }
}
