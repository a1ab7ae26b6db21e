//! `thecal resume`

use serde::Serialize;
use thecal_host::quantity;

use crate::out;
use crate::session::{Global, Session};

/// Resume therapy.
#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct Resumed {
    therapy: &'static str,
    basal_dose_ng_per_day: u32,
}

pub async fn run(_: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
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
