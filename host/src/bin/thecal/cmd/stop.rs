//! `thecal stop`

use serde::Serialize;
use thecal_protocol::rules::MIN_FLOW;

use thecal_host::quantity;

use crate::out;
use crate::session::{Global, Session};

/// Stop therapy.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Serialize)]
struct Stopped {
    therapy: &'static str,
}

pub async fn run(a: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    out::confirm(
        &format!(
            "Stop therapy on pump {}? It will deliver only {} to keep the catheter open; \
             abrupt withdrawal can harm the patient",
            s.identity.serial,
            quantity::flow(MIN_FLOW)
        ),
        a.yes,
    )?;
    s.client.stop().await?;
    if g.json {
        return out::json(&Stopped { therapy: "stopped" });
    }
    outln!(
        "Therapy STOPPED: the pump delivers only {}. Resume with `thecal resume`.",
        quantity::flow(MIN_FLOW)
    )?;
    if s.client.role() == Some(thecal_protocol::message::Role::Emergency) {
        // The emergency key is public: this answer could not prove it came from the pump.
        outln!(
            "Emergency access: confirm the stop on the pump itself, and have a clinician \
             read the pump with the clinician key as soon as possible (a clinician resumes)."
        )?;
    }
    Ok(())
}
