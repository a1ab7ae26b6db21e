//! Serial transport: open a port raw at 8N1, list USB serial ports.

use tokio_serial::{
    DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialPortType, SerialStream, StopBits,
};

use crate::error::Error;

/// Default baud rate of the telemetry head.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Opens `path` raw (no line discipline, no echo), 8 data bits, no parity, one stop bit,
/// no flow control, exclusively (a second programmer cannot open the same port).
pub fn open(path: &str, baud: u32) -> Result<SerialStream, Error> {
    tokio_serial::new(path, baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .open_native_async()
        .map_err(|source| Error::Port {
            path: path.to_string(),
            source,
        })
}

/// A serial port found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortInfo {
    /// Device path, e.g. `/dev/ttyACM0`.
    pub path: String,
    /// `usb`, `pci`, `bluetooth` or `unknown`.
    pub kind: &'static str,
    /// USB vendor id.
    pub vid: Option<u16>,
    /// USB product id.
    pub pid: Option<u16>,
    /// USB manufacturer string.
    pub manufacturer: Option<String>,
    /// USB product string.
    pub product: Option<String>,
    /// USB serial number.
    pub serial_number: Option<String>,
}

/// Serial ports on this machine, USB ones first, each group sorted by path. On Linux the
/// USB details (VID, PID, strings) come from sysfs.
pub fn ports() -> Result<Vec<PortInfo>, Error> {
    // serialport's sysfs scan panics when /sys is not mounted (some containers).
    if cfg!(target_os = "linux") && !std::path::Path::new("/sys/class/tty").is_dir() {
        return Ok(Vec::new());
    }
    let found = tokio_serial::available_ports().map_err(|source| Error::Port {
        path: "(enumeration)".to_string(),
        source,
    })?;
    let mut ports: Vec<PortInfo> = found
        .into_iter()
        .map(|p| {
            let mut info = PortInfo {
                path: p.port_name,
                kind: "unknown",
                vid: None,
                pid: None,
                manufacturer: None,
                product: None,
                serial_number: None,
            };
            match p.port_type {
                SerialPortType::UsbPort(usb) => {
                    info.kind = "usb";
                    info.vid = Some(usb.vid);
                    info.pid = Some(usb.pid);
                    info.manufacturer = usb.manufacturer;
                    info.product = usb.product;
                    info.serial_number = usb.serial_number;
                }
                SerialPortType::PciPort => info.kind = "pci",
                SerialPortType::BluetoothPort => info.kind = "bluetooth",
                SerialPortType::Unknown => {}
            }
            info
        })
        .collect();
    ports.sort_by(|a, b| (a.kind != "usb", &a.path).cmp(&(b.kind != "usb", &b.path)));
    Ok(ports)
}
