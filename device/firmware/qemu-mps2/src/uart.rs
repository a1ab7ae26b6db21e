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

/// One of the board's UARTs: the only addresses a [`Uart`] can be made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// UART0: the telemetry link.
    Uart0,
    /// UART1: the debug channel (stack high-water mark).
    Uart1,
}

impl Port {
    /// Base address of the port's register block (mps2-an385 memory map).
    const fn base(self) -> usize {
        match self {
            Port::Uart0 => 0x4000_4000,
            Port::Uart1 => 0x4000_5000,
        }
    }
}

/// A CMSDK UART of this board.
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Enables transmit and receive. BAUDDIV must be at least 16 or QEMU drops data;
    /// the value is otherwise irrelevant on a pty.
    pub fn new(port: Port) -> Self {
        let uart = Uart { base: port.base() };
        uart.write_reg(BAUDDIV, 16);
        uart.write_reg(CTRL, TX_EN | RX_EN);
        uart
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `base` is a [`Port`]'s, so `base + offset` is a CMSDK UART register on
        // this board (volatile MMIO, no memory the program owns).
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
