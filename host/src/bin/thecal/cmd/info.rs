//! `thecal info`

use thecal_host::quantity;
use thecal_host::view::InfoView;
use thecal_protocol::units::Nanolitres;

use crate::out;
use crate::session::{Global, Session};

/// Identify the pump.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let v = InfoView::from(&s.identity);
    if g.json {
        return out::json(&v);
    }
    let protocol = if v.compatible {
        format!(
            "{} (schema {}), matches this programmer",
            v.protocol, v.schema
        )
    } else {
        format!(
            "{} (schema {}): MISMATCH, this programmer speaks {} (schema {}); it will not program this pump",
            v.protocol, v.schema, v.programmer_protocol, v.programmer_schema
        )
    };
    out::fields(&[
        ("Model", v.model.clone()),
        ("Serial", v.serial.clone()),
        ("Firmware", v.firmware.clone()),
        ("Protocol", protocol),
        ("Capabilities", v.capabilities.join(", ").replace('_', " ")),
        (
            "Reservoir",
            quantity::volume(Nanolitres(v.reservoir_capacity_nl)),
        ),
        ("Public key", v.public_key.clone()),
        (
            "Key epochs",
            if v.key_epochs.service == 0 {
                "unprovisioned".to_string()
            } else {
                format!(
                    "patient {}, clinician {}, service {}",
                    v.key_epochs.patient, v.key_epochs.clinician, v.key_epochs.service
                )
            },
        ),
    ])?;
    Ok(())
}
