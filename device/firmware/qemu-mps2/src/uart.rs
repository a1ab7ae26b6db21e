//! The CMSDK APB UART of the mps2-an385 board (polled; QEMU models a 1-byte buffer per
//! direction and holds input back while RXFULL is set, so polling loses nothing).

use core::ptr::{read_volatile, write_volatile};

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const TX_FULL: u32 = 1 << 0;
const RX_FULL: u32 = 1 << 1;
const TX_EN: u32 = 1 << 0;
const RX_EN: u32 = 1 << 1;

/// A UART at a fixed base address.
pub struct Uart {
    base: usize,
}

impl Uart {
    /// UART0: the telemetry link.
    pub const UART0: usize = 0x4000_4000;
    /// UART1: the debug channel (stack high-water mark).
    pub const UART1: usize = 0x4000_5000;

    /// Enables transmit and receive. BAUDDIV must be at least 16 or QEMU drops data;
    /// the value is otherwise irrelevant on a pty.
    pub fn new(base: usize) -> Self {
        let uart = Uart { base };
        uart.write_reg(BAUDDIV, 16);
        uart.write_reg(CTRL, TX_EN | RX_EN);
        uart
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `base + offset` is a CMSDK UART register on this board.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: as above.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// A received byte, if one is waiting.
    pub fn try_read(&self) -> Option<u8> {
        (self.read_reg(STATE) & RX_FULL != 0).then(|| self.read_reg(DATA) as u8)
    }

    /// Sends `bytes`, waiting for room.
    pub fn write_all(&self, bytes: &[u8]) {
        for &b in bytes {
            while self.read_reg(STATE) & TX_FULL != 0 {}
            self.write_reg(DATA, u32::from(b));
        }
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_all(s.as_bytes());
        Ok(())
    }
}
