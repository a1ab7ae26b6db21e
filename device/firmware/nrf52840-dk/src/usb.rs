//! USB CDC-ACM on the nRF USB port (J3): the telemetry link.
//!
//! The board enumerates as a USB serial port (`/dev/ttyACM0` on Linux, a COM port on
//! Windows, `/dev/cu.usbmodem…` on macOS) with VID:PID 1209:0001 (pid.codes' test PID:
//! fine for a development board, never for a product), manufacturer "thecal", product
//! "thecal pump (nRF52840-DK)" and the board's serial number. The baud rate the host
//! sets is ignored: USB full speed carries the bytes.
//!
//! USB buffers (the "USB driver buffers" of the footprint budget): the configuration and
//! BOS descriptors, the control buffer and the CDC-ACM state, all in statics.

use embassy_nrf::peripherals::USBD;
use embassy_nrf::usb::vbus_detect::HardwareVbusDetect;
use embassy_nrf::usb::Driver;
use embassy_nrf::{bind_interrupts, usb, Peri};
use embassy_usb::class::cdc_acm::{CdcAcmClass, State};
use embassy_usb::driver::EndpointError;
use embassy_usb::{Builder, Config, UsbDevice};
use heapless::String;
use static_cell::StaticCell;

bind_interrupts!(struct Irqs {
    USBD => usb::InterruptHandler<USBD>;
    CLOCK_POWER => usb::vbus_detect::InterruptHandler;
});

/// The nRF USB driver, VBUS detected by the POWER peripheral.
pub type UsbDriver = Driver<'static, HardwareVbusDetect>;
/// The CDC-ACM serial port.
pub type Class = CdcAcmClass<'static, UsbDriver>;

/// Full-speed bulk packet size.
pub const PACKET: usize = 64;

/// The host closed the port or the cable was pulled.
#[derive(Debug, Clone, Copy)]
pub struct Disconnected;

impl From<EndpointError> for Disconnected {
    fn from(_: EndpointError) -> Self {
        Disconnected
    }
}

/// Builds the USB device (run it with [`run`]) and its serial port.
pub fn build(
    usbd: Peri<'static, USBD>,
    serial: String<16>,
) -> (UsbDevice<'static, UsbDriver>, Class) {
    let driver = Driver::new(usbd, Irqs, HardwareVbusDetect::new(Irqs));

    static SERIAL: StaticCell<String<16>> = StaticCell::new();
    let serial: &'static str = SERIAL.init(serial).as_str();
    let mut config = Config::new(0x1209, 0x0001);
    config.manufacturer = Some("thecal");
    config.product = Some("thecal pump (nRF52840-DK)");
    config.serial_number = Some(serial);
    config.max_power = 100;
    config.max_packet_size_0 = 64;

    static CONFIG_DESC: StaticCell<[u8; 256]> = StaticCell::new();
    static BOS_DESC: StaticCell<[u8; 256]> = StaticCell::new();
    static CONTROL_BUF: StaticCell<[u8; 64]> = StaticCell::new();
    static STATE: StaticCell<State> = StaticCell::new();
    let mut builder = Builder::new(
        driver,
        config,
        CONFIG_DESC.init([0; 256]),
        BOS_DESC.init([0; 256]),
        &mut [], // no Microsoft OS descriptors
        CONTROL_BUF.init([0; 64]),
    );
    let class = CdcAcmClass::new(&mut builder, STATE.init(State::new()), PACKET as u16);
    (builder.build(), class)
}

/// Runs the USB device stack (enumeration, suspend, resume) for ever.
#[embassy_executor::task]
pub async fn run(mut device: UsbDevice<'static, UsbDriver>) {
    device.run().await;
}

/// Sends `bytes` in full packets, ending with a short (possibly empty) packet so hosts
/// that wait for the end of a transfer see it at once.
pub async fn write(class: &mut Class, bytes: &[u8]) -> Result<(), Disconnected> {
    for chunk in bytes.chunks(PACKET) {
        class.write_packet(chunk).await?;
    }
    if bytes.len().is_multiple_of(PACKET) {
        class.write_packet(&[]).await?;
    }
    Ok(())
}
