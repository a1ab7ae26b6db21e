// The QEMU image's memory map: mps2-an385's 4 MiB of code RAM at 0 stands in for the
// flash of a real pump. Plain constants, shared by the application (src/main.rs), the
// bootloader (../qemu-mps2-boot), both build scripts (they write memory.x from these)
// and the end-to-end harness (host/tests/e2e/qemu.rs); keep it free of `//!` and `use`.
//
// QEMU keeps RAM across a system reset and restores only the images it loaded: the
// bootloader (BOOT) and the factory package (STAGING). So the slots, the state partition
// and the therapy store keep what the pump wrote across the restart an update makes, as
// flash would; they are lost when QEMU exits (power off).

/// Erase page of the memory-backed flash, bytes (`thecal_device::store::flash::PAGE`).
pub const PAGE: u32 = 4096;

/// The bootloader (embassy-boot): vector table at 0, where the Cortex-M3 starts.
pub const BOOT: u32 = 0x0000_0000;
/// Bytes of the bootloader region.
pub const BOOT_LEN: u32 = 0x0001_0000;

/// embassy-boot's state partition (swap, trial and revert marks; swap progress).
pub const STATE: u32 = 0x0001_0000;
/// Bytes of the state partition.
pub const STATE_LEN: u32 = PAGE;

/// The active slot: the running image (linked here), its signed header in the last page.
pub const ACTIVE: u32 = 0x0002_0000;
/// Pages of the active slot (`N`).
pub const ACTIVE_PAGES: u32 = 64;
/// Bytes of the active slot.
pub const ACTIVE_LEN: u32 = ACTIVE_PAGES * PAGE;
/// Largest image: the active slot without its trailer page.
pub const IMAGE_LEN: u32 = ACTIVE_LEN - PAGE;

/// The update slot (embassy-boot's DFU partition): `N + 1` pages.
pub const DFU: u32 = 0x0006_0000;
/// Bytes of the update slot.
pub const DFU_LEN: u32 = (ACTIVE_PAGES + 1) * PAGE;

/// The therapy store (`thecal_device::store::FLASH_SIZE` bytes): never written by an
/// update.
pub const STORE: u32 = 0x000B_0000;
/// Bytes of the therapy store region.
pub const STORE_LEN: u32 = 84 * 1024;

/// Retained words of the platform: the bootloader's factory mark and the application's
/// restart reason.
pub const RETAINED: u32 = 0x000F_F000;
/// Bytes of the retained page.
pub const RETAINED_LEN: u32 = PAGE;

/// Where the QEMU command line loads the factory package (`thecal-sign` output: signed
/// header + image): `-device loader,file=PACKAGE,addr=0x200000,force-raw=on`. The
/// bootloader programs it into the active slot on the first boot only (the factory
/// step); QEMU restores it at every reset, which then changes nothing.
pub const STAGING: u32 = 0x0020_0000;
/// Bytes of the staging region.
pub const STAGING_LEN: u32 = 0x0010_0000;

/// Data RAM (both programs; the bootloader's is free once the application runs).
pub const RAM: u32 = 0x2000_0000;
/// Bytes of data RAM.
pub const RAM_LEN: u32 = 0x0040_0000;
