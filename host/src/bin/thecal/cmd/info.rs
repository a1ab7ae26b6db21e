//! `thecal info`

use serde::Serialize;
use thecal_host::quantity;
use thecal_host::view::InfoView;
use thecal_host::workflow::update as firmware;
use thecal_host::Error;
use thecal_protocol::message::Refusal;
use thecal_protocol::units::Nanolitres;
use thecal_protocol::update::{SlotState, UpdateRefusal, UpdateReport};

use crate::out;
use crate::session::{Global, Session};

/// Identify the pump.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// The slot state in words.
pub fn slot_state(state: SlotState) -> String {
    match state {
        SlotState::Confirmed => "active, confirmed".into(),
        SlotState::Trial => "active, on trial (not confirmed yet)".into(),
        SlotState::Receiving { next, length } => format!("receiving, {next} of {length} bytes"),
        SlotState::Pending => "pending: installed at the pump's next restart".into(),
        SlotState::Previous => "previous image".into(),
        SlotState::RolledBack => "rolled back (did not confirm itself)".into(),
    }
}

#[derive(Serialize)]
struct SlotJson {
    version: String,
    security: u32,
    state: String,
}

#[derive(Serialize)]
struct Slots {
    board: String,
    active: SlotJson,
    update: Option<SlotJson>,
}

impl From<&UpdateReport> for Slots {
    fn from(r: &UpdateReport) -> Slots {
        let slot = |s: &thecal_protocol::update::SlotInfo| SlotJson {
            version: s.version.to_string(),
            security: s.security,
            state: slot_state(s.state),
        };
        Slots {
            board: r.board.name().into(),
            active: slot(&r.active),
            update: r.update.as_ref().map(slot),
        }
    }
}

#[derive(Serialize)]
struct InfoJson<'a> {
    #[serde(flatten)]
    identity: &'a InfoView,
    #[serde(skip_serializing_if = "Option::is_none")]
    slots: Option<Slots>,
}

pub async fn run(_: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let v = InfoView::from(&s.identity);
    // The slots need a session (opened when a key is at hand).
    let slots = if s.client.has_session() {
        match firmware::slots(&mut s.client).await {
            Ok(r) => Some(Ok(r)),
            Err(Error::Refused {
                refusal: Refusal::Update(UpdateRefusal::NoUpdateSlot),
                ..
            }) => None,
            Err(e) => Some(Err(e)),
        }
    } else {
        None
    };
    if g.json {
        let slots = match slots {
            Some(Ok(r)) => Some(Slots::from(&r)),
            _ => None,
        };
        return out::json(&InfoJson {
            identity: &v,
            slots,
        });
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
    match slots {
        Some(Ok(r)) => {
            let mut rows = vec![("Active slot", super::update::describe(&r.active))];
            rows.push((
                "Update slot",
                r.update
                    .as_ref()
                    .map_or_else(|| "empty".to_string(), super::update::describe),
            ));
            out::fields(&rows)?;
        }
        Some(Err(e)) => out::fields(&[("Firmware slots", format!("not read: {e}"))])?,
        None => {}
    }
    Ok(())
}
