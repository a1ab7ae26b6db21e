//! `thecal resume`

use serde::Serialize;
use thecal_host::quantity;

use crate::out;
use crate::session::{Global, Session};

/// Resume therapy.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Serialize)]
struct Resumed {
    therapy: &'static str,
    basal_dose_ng_per_day: u32,
}

pub async fn run(a: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let (before, _) = s.time().await?;
    out::confirm(
        &format!(
            "Resume therapy on pump {}? It returns to delivering its prescription \
             (revision {}, {})",
            s.identity.serial,
            before.revision.0,
            before.drug.name()
        ),
        a.yes,
    )?;
    s.client.resume().await?;
    let (status, _) = s.time().await?;
    if g.json {
        return out::json(&Resumed {
            therapy: "running",
            basal_dose_ng_per_day: status.basal_dose.0,
        });
    }
    outln!(
        "Therapy resumed: basal now {} ({}).",
        quantity::dose_rate(status.basal_dose),
        quantity::flow(status.basal_flow)
    )?;
    Ok(())
}
