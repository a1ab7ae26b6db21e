//! Feature `boot`: firmware updates under the A/B bootloader (`../nrf52840-boot`).
//!
//! The NVMC is shared by three partitions of `embassy-embedded-hal`: the therapy store
//! (where it always was), `embassy-boot`'s state partition and the update slot, at the
//! addresses `layout/boot.x` gives. The pump's [`Updater`] writes the update slot and the
//! state partition only; the bootloader swaps. The running image's header is read from
//! the active slot's trailer.

use core::cell::RefCell;
use core::ptr::addr_of;

use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_nrf::nvmc::{Nvmc, PAGE_SIZE};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embedded_storage::nor_flash::ReadNorFlash;
use static_cell::StaticCell;
use thecal_device::update::{read_header, Geometry, Updater, TRUSTED_KEY};
use thecal_protocol::message::Version;
use thecal_protocol::update::{Board, ImageHeader};

/// The NVMC, shared by the partitions.
pub type Flash = Mutex<NoopRawMutex, RefCell<Nvmc<'static>>>;
/// A partition of it.
pub type Part = BlockingPartition<'static, NoopRawMutex, Nvmc<'static>>;
/// The updater of this image.
pub type FwUpdater = Updater<Part, Part>;

extern "C" {
    static __bootloader_state_start: u8;
    static __bootloader_state_end: u8;
    static __bootloader_active_start: u8;
    static __bootloader_active_end: u8;
    static __bootloader_dfu_start: u8;
    static __bootloader_dfu_end: u8;
}

/// A partition between two linker symbols (only their addresses are taken).
fn part(flash: &'static Flash, start: *const u8, end: *const u8) -> Part {
    let (start, end) = (start as u32, end as u32);
    BlockingPartition::new(flash, start, end.saturating_sub(start))
}

/// Shares the NVMC (once).
pub fn share(nvmc: Nvmc<'static>) -> &'static Flash {
    static FLASH: StaticCell<Flash> = StaticCell::new();
    FLASH.init(Mutex::new(RefCell::new(nvmc)))
}

/// A partition from `start` of `len` bytes (the store's region).
pub fn region(flash: &'static Flash, start: u32, len: u32) -> Part {
    BlockingPartition::new(flash, start, len)
}

/// The updater over the state partition and the update slot; `None` if the linker's
/// partitions do not make the slot layout.
pub fn updater(flash: &'static Flash) -> Option<FwUpdater> {
    let mut active = part(
        flash,
        addr_of!(__bootloader_active_start),
        addr_of!(__bootloader_active_end),
    );
    let dfu = part(
        flash,
        addr_of!(__bootloader_dfu_start),
        addr_of!(__bootloader_dfu_end),
    );
    let state = part(
        flash,
        addr_of!(__bootloader_state_start),
        addr_of!(__bootloader_state_end),
    );
    let geometry = Geometry::of(dfu.capacity(), PAGE_SIZE)?;
    if geometry.active_bytes() as usize != active.capacity() {
        return None;
    }
    let running = read_header(&mut active, geometry.trailer()).unwrap_or_else(unsigned);
    Updater::new(dfu, state, TRUSTED_KEY, Board::NRF52840_DK, running)
}

/// The header of an image flashed without one (by a probe, during development): this
/// crate's version at security version 0.
fn unsigned() -> ImageHeader {
    defmt::warn!("the active slot has no image header: security version 0");
    let n = |s: &str| s.parse().unwrap_or(0);
    thecal_device::update::unsigned(
        Board::NRF52840_DK,
        Version {
            major: n(env!("CARGO_PKG_VERSION_MAJOR")),
            minor: n(env!("CARGO_PKG_VERSION_MINOR")),
            patch: n(env!("CARGO_PKG_VERSION_PATCH")),
        },
    )
}
