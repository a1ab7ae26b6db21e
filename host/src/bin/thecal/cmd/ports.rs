//! `thecal ports`

use thecal_host::serial;

use crate::out;
use crate::session::Global;

/// List serial ports.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only USB ports (telemetry heads are USB serial devices).
    #[arg(long)]
    pub usb: bool,
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<()> {
    let mut ports = serial::ports()?;
    if a.usb {
        ports.retain(|p| p.kind == "usb");
    }
    if g.json {
        return out::json(&ports);
    }
    if ports.is_empty() {
        outln!("no serial ports found")?;
        return Ok(());
    }
    let hex = |v: Option<u16>| v.map_or(String::new(), |v| format!("{v:04x}"));
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            vec![
                p.path.clone(),
                p.kind.to_string(),
                match (p.vid, p.pid) {
                    (Some(_), Some(_)) => format!("{}:{}", hex(p.vid), hex(p.pid)),
                    _ => String::new(),
                },
                p.manufacturer.clone().unwrap_or_default(),
                p.product.clone().unwrap_or_default(),
                p.serial_number.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out::table(
        &[
            "Port",
            "Type",
            "VID:PID",
            "Manufacturer",
            "Product",
            "Serial",
        ],
        &rows,
    )?;
    Ok(())
}
