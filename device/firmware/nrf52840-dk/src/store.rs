//! The persistent store in the nRF52840's internal flash, and the board's identity.
//!
//! The store takes the top [`STORE_BYTES`] of the 1 MiB flash, a region `memory.x`
//! reserves (`STORE`) so code can never be linked into it. The NVMC's geometry matches
//! the store's: 4 KiB erase pages, 4-byte word writes. Erasing a page takes up to 85 ms
//! with the CPU stalled; the store erases only when a ring wraps.

use core::ptr::{addr_of, read_volatile};

use embassy_nrf::nvmc::{Nvmc, FLASH_SIZE, PAGE_SIZE};
use embedded_storage::nor_flash::ReadNorFlash;
use heapless::String;
use thecal_device::store::{FlashStore, STORE_BYTES, STORE_PAGE};

const _: () = assert!(
    PAGE_SIZE == STORE_PAGE,
    "NVMC pages must be the store's pages"
);

extern "C" {
    /// Start of the `STORE` region (memory.x).
    static __thecal_store_start: u8;
    /// End of the `STORE` region (memory.x).
    static __thecal_store_end: u8;
}

/// The store on the NVMC at the linker-reserved region, or `None` if memory.x and the
/// store layout disagree (the region must be exactly [`STORE_BYTES`] long and end at the
/// top of flash).
#[cfg_attr(feature = "boot", allow(dead_code))]
pub fn open(nvmc: Nvmc<'static>) -> Option<FlashStore<Nvmc<'static>>> {
    // Only the addresses of the linker symbols are taken, never their contents.
    let start = addr_of!(__thecal_store_start) as usize;
    let end = addr_of!(__thecal_store_end) as usize;
    let fits = end.checked_sub(start) == Some(STORE_BYTES)
        && end == FLASH_SIZE
        && nvmc.capacity() == FLASH_SIZE;
    if !fits {
        defmt::error!(
            "STORE region {=usize:#x}..{=usize:#x}, store needs {=usize} B at the top of flash",
            start,
            end,
            STORE_BYTES
        );
        return None;
    }
    let base = u32::try_from(start).ok()?;
    FlashStore::at(nvmc, base).ok()
}

/// Feature `boot`: the store on its partition of the shared NVMC (same region, same
/// checks as [`open`]).
#[cfg(feature = "boot")]
pub fn open_shared(
    flash: &'static crate::update::Flash,
) -> Option<FlashStore<crate::update::Part>> {
    let start = addr_of!(__thecal_store_start) as usize;
    let end = addr_of!(__thecal_store_end) as usize;
    if end.checked_sub(start) != Some(STORE_BYTES) || end != FLASH_SIZE {
        defmt::error!("STORE region does not match the store layout");
        return None;
    }
    let region = crate::update::region(flash, u32::try_from(start).ok()?, STORE_BYTES as u32);
    FlashStore::new(region).ok()
}

/// `DK-` and the low 32 bits of the chip's factory device id (FICR.DEVICEID[0]): unique
/// per board, shown as the pump's serial and the USB serial number.
pub fn serial_number() -> String<16> {
    const DEVICEID0: *const u32 = 0x1000_0060 as *const u32;
    // SAFETY: FICR.DEVICEID[0] of the nRF52840, a read-only factory register.
    let id = unsafe { read_volatile(DEVICEID0) };
    let mut s = String::new();
    let _ = s.push_str("DK-");
    for shift in (0..32).step_by(4).rev() {
        let digit = (id >> shift) & 0xF;
        let _ = s.push(char::from_digit(digit, 16).map_or('?', |c| c.to_ascii_uppercase()));
    }
    s
}
