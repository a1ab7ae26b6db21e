//! Stack high-water mark: the stack is painted at boot and scanned after each batch of
//! requests; each image reports the deepest use seen (debug UART, defmt).

use core::ptr::{addr_of, read_volatile, write_volatile};

const PAINT: u32 = 0xCAFE_F00D;
/// How much of the stack below the top is painted and measured.
pub const MEASURED: usize = 64 * 1024;

extern "C" {
    /// Top of the stack (cortex-m-rt's link.x).
    static _stack_start: u32;
}

fn top() -> usize {
    // SAFETY: only the symbol's address is taken.
    addr_of!(_stack_start) as usize
}

/// Paints the unused part of the measured region. Call first thing in `main`.
pub fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    let bottom = top() - MEASURED;
    let mut p = bottom;
    // Leave a margin below the live frame.
    while p < sp - 256 {
        // SAFETY: [bottom, sp - 256) is stack memory nobody uses yet.
        unsafe { write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Deepest stack use so far, bytes.
pub fn high_water() -> usize {
    let bottom = top() - MEASURED;
    let mut p = bottom;
    // SAFETY: reading words of the stack region.
    while p < top() && unsafe { read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top() - p
}
