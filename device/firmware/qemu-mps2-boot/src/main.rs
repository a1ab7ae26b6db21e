//! thecal's bootloader for QEMU's mps2-an385: what a pump's boot ROM and its factory do,
//! over the memory-backed flash of `../qemu-mps2/src/layout.rs`.
//!
//! 1. **Factory step**, on a blank board only (no factory mark in the retained page; QEMU
//!    starts with zeroed RAM): erases the state partition, both slots and the therapy
//!    store, programs the factory package that the QEMU command line loaded at
//!    [`layout::STAGING`] (`-device loader,file=PACKAGE,addr=0x200000,force-raw=on`: a
//!    `thecal-sign` package, signed header + image) into the active slot with its header
//!    in the slot's trailer, and writes the mark. QEMU restores the staging copy at every
//!    reset; after the mark it is never read again, so a restart keeps what the pump
//!    wrote.
//! 2. **embassy-boot**: a pending swap (a verified update), or the rollback of an image
//!    that did not confirm itself, page by page, power-fail safe.
//! 3. **Jump** to the active slot (its vector table; VTOR set to it).
//!
//! Before embassy-boot swaps a freshly marked image in, it checks it once more with the
//! public key built into it (`thecal_device::update::gate`: signature, board, security
//! version, SHA-256 of the update slot), as the application did before it marked it; an
//! image that fails is not installed. A swap already under way, or a revert, is never
//! stopped (the active slot is then half moved). It does not verify the active image at
//! every boot (no secure boot). The factory package
//! is checked for its form only (a header for this board, a length that fits): putting a
//! package into staging takes the QEMU command line, as programming a pump at the factory
//! takes the factory's fixture. Messages go to UART1 (the debug channel).
#![no_std]
#![no_main]

/// The memory map (shared with the application).
#[allow(dead_code)]
#[path = "../../qemu-mps2/src/layout.rs"]
mod layout;
/// The board's UARTs (the application's driver).
#[allow(dead_code)]
#[path = "../../qemu-mps2/src/uart.rs"]
mod uart;

use core::fmt::Write as _;

use cortex_m_rt::{entry, exception};
use embassy_boot::{AlignedBuffer, BlockingFirmwareState, BootLoader, BootLoaderConfig, State};
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use thecal_device::store::flash::{SliceFlash, WORD};
use thecal_device::update::gate::{check_pending, Gate};
use thecal_device::update::TRUSTED_KEY;
use thecal_protocol::update::{Board, HeaderBytes, ImageHeader, HEADER_LEN};

use uart::{Port, Uart};

/// The factory mark at the start of the retained page: the board was programmed.
const FACTORY_MARK: [u8; 16] = *b"thecal-qemu-fab1";

/// Why the factory step cannot run.
enum Factory {
    /// No package at the staging address.
    NoPackage,
    /// A package for another board.
    OtherBoard(Board),
    /// The image is larger than the active slot holds.
    TooLarge(u32),
    /// A flash operation failed.
    Flash,
}

impl core::fmt::Display for Factory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Factory::NoPackage => f.write_str("no thecal-sign package there"),
            Factory::OtherBoard(b) => write!(f, "the package is for board {}", b.name()),
            Factory::TooLarge(n) => write!(
                f,
                "the image is {n} B, the active slot holds {} B",
                layout::IMAGE_LEN
            ),
            Factory::Flash => f.write_str("a flash operation failed"),
        }
    }
}

/// The `len` bytes at `at`.
///
/// # Safety
/// `at .. at + len` is one region of [`layout`] outside this program (slots, state,
/// store, retained page, staging), lent once.
unsafe fn memory(at: u32, len: u32) -> &'static mut [u8] {
    // SAFETY: RAM of the board's memory map, valid for the program's life; the caller
    // lends it once.
    unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len as usize) }
}

#[entry]
fn main() -> ! {
    let mut debug = Uart::new(Port::Uart1);
    // SAFETY: each region is lent once, here.
    let (retained, staging, state, active, dfu, store) = unsafe {
        (
            memory(layout::RETAINED, layout::RETAINED_LEN),
            memory(layout::STAGING, layout::STAGING_LEN),
            memory(layout::STATE, layout::STATE_LEN),
            memory(layout::ACTIVE, layout::ACTIVE_LEN),
            memory(layout::DFU, layout::DFU_LEN),
            memory(layout::STORE, layout::STORE_LEN),
        )
    };
    let (mut state, mut active, mut dfu, mut store) = (
        SliceFlash::new(state),
        SliceFlash::new(active),
        SliceFlash::new(dfu),
        SliceFlash::new(store),
    );
    if retained.get(..FACTORY_MARK.len()) != Some(FACTORY_MARK.as_slice()) {
        let programmed = factory(
            staging,
            &mut [&mut state, &mut dfu, &mut store],
            &mut active,
        );
        match programmed {
            Ok(header) => {
                retained.fill(0xFF);
                if let Some(mark) = retained.get_mut(..FACTORY_MARK.len()) {
                    mark.copy_from_slice(&FACTORY_MARK);
                }
                let v = header.version;
                let _ = writeln!(
                    debug,
                    "thecal-qemu-boot: factory image {}.{}.{} (security {}, {} B) programmed",
                    v.major, v.minor, v.patch, header.security, header.length
                );
            }
            Err(why) => {
                let _ = writeln!(
                    debug,
                    "thecal-qemu-boot: cannot program the factory package at {:#x}: {why}",
                    layout::STAGING
                );
                halt()
            }
        }
    }
    // The bootloader's own check of a freshly marked image (the trusted key is built in
    // here too): one that fails is not swapped in.
    let mut header = [0u8; HEADER_LEN];
    let min_security = active
        .read(layout::IMAGE_LEN, &mut header)
        .ok()
        .and_then(|()| ImageHeader::parse(&header).ok())
        .map_or(0, |h| h.security);
    let mut buf = AlignedBuffer([0u8; 256]);
    match check_pending(
        &mut dfu,
        &mut state,
        &TRUSTED_KEY,
        Board::QEMU_MPS2,
        min_security,
        &mut buf.0,
    ) {
        Gate::Idle | Gate::Underway => {}
        Gate::Install(h) => {
            let v = h.version;
            let _ = writeln!(
                debug,
                "thecal-qemu-boot: image {}.{}.{} (security {}) verified: installing",
                v.major, v.minor, v.patch, h.security
            );
        }
        Gate::Refused(why) => {
            let _ = writeln!(
                debug,
                "thecal-qemu-boot: the marked image fails the check ({why}): not installed"
            );
        }
        Gate::Flash => {
            let _ = writeln!(debug, "thecal-qemu-boot: the update slot cannot be checked");
        }
    }
    let marked = buf.0.get_mut(..WORD).and_then(|word| {
        BlockingFirmwareState::new(&mut state, word)
            .get_state()
            .ok()
    });
    let mut loader = BootLoader::new(BootLoaderConfig { active, dfu, state });
    match loader.prepare_boot(&mut buf.0) {
        Ok(booted) => {
            let what = match (marked, booted) {
                (Some(State::Swap), State::Swap) => {
                    "Swap: swapped the slots (a new image on trial, or an unconfirmed one reverted)"
                }
                (_, State::Swap) => "Swap: a swap resumed",
                (_, State::Revert) => "Revert: the previous image is back",
                _ => "Boot: the active slot as it is",
            };
            let _ = writeln!(debug, "thecal-qemu-boot: {what}");
        }
        Err(e) => {
            // As the nRF52840 bootloader does: restart and try again (a swap resumes).
            let _ = writeln!(
                debug,
                "thecal-qemu-boot: prepare failed ({e:?}); restarting"
            );
            cortex_m::peripheral::SCB::sys_reset()
        }
    }
    // SAFETY: the active slot starts with the application's vector table (its memory.x
    // links it there); nothing of this program is used after the jump.
    unsafe {
        (*cortex_m::peripheral::SCB::PTR).vtor.write(layout::ACTIVE);
        cortex_m::asm::bootload(layout::ACTIVE as *const u32)
    }
}

/// The factory step: erases `blank` and the active slot, programs the package in
/// `staging` into the active slot (image, then its header in the trailer).
fn factory(
    staging: &[u8],
    blank: &mut [&mut SliceFlash<'static>],
    active: &mut SliceFlash<'static>,
) -> Result<ImageHeader, Factory> {
    let bytes: &HeaderBytes = staging
        .get(..HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(Factory::NoPackage)?;
    let header = ImageHeader::parse(bytes).map_err(|_| Factory::NoPackage)?;
    if header.board != Board::QEMU_MPS2 {
        return Err(Factory::OtherBoard(header.board));
    }
    if header.length > layout::IMAGE_LEN {
        return Err(Factory::TooLarge(header.length));
    }
    let image = staging
        .get(HEADER_LEN..HEADER_LEN + header.length as usize)
        .ok_or(Factory::NoPackage)?;
    for flash in blank.iter_mut() {
        let len = flash.capacity() as u32;
        flash.erase(0, len).map_err(|_| Factory::Flash)?;
    }
    active
        .erase(0, layout::ACTIVE_LEN)
        .map_err(|_| Factory::Flash)?;
    let whole = image.len() - image.len() % WORD;
    let (body, tail) = image.split_at(whole);
    active.write(0, body).map_err(|_| Factory::Flash)?;
    if !tail.is_empty() {
        let mut last = [0xFF; WORD];
        last.get_mut(..tail.len())
            .ok_or(Factory::Flash)?
            .copy_from_slice(tail);
        active
            .write(whole as u32, &last)
            .map_err(|_| Factory::Flash)?;
    }
    active
        .write(layout::IMAGE_LEN, bytes)
        .map_err(|_| Factory::Flash)?;
    Ok(header)
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(_: &cortex_m_rt::ExceptionFrame) -> ! {
    cortex_m::peripheral::SCB::sys_reset();
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // embassy-boot asserts its partition geometry (fixed by layout.rs); anything else
    // that panics resets and tries again, as a swap resumes.
    cortex_m::peripheral::SCB::sys_reset();
}
