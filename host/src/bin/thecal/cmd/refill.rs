//! `thecal refill`

use anyhow::Context;
use serde::Serialize;
use thecal_host::quantity::{self, parse_concentration, parse_volume};
use thecal_host::view::{alarm_date, BolusView, ReservoirView};
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{BolusRequest, DrugChange};
use thecal_protocol::units::{Minutes, Nanolitres, NanolitresPerDay};

use crate::cmd::UsageError;
use crate::out;
use crate::session::{Global, Session};

/// Record a refill.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Volume in the reservoir after the refill, e.g. "20 mL".
    #[arg(long, value_parser = parse_volume)]
    volume: Nanolitres,
    /// New drug, when it changes (with --concentration).
    #[arg(long, requires = "concentration")]
    drug: Option<String>,
    /// New concentration, when it changes, e.g. "20 mg/mL".
    #[arg(long, value_parser = parse_concentration)]
    concentration: Option<thecal_protocol::units::NanogramsPerMillilitre>,
    /// With a drug or concentration change: the volume of old drug still in the pump
    /// and catheter, delivered as a bridge bolus at the old rate, e.g. "0.25 mL".
    #[arg(long, value_parser = parse_volume, conflicts_with = "no_bridge")]
    bridge_volume: Option<Nanolitres>,
    /// With a drug or concentration change: give no bridge bolus.
    #[arg(long)]
    no_bridge: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Serialize)]
struct RefillJson {
    revision: u32,
    reservoir: ReservoirView,
    bridge_bolus: Option<BolusView>,
}

/// Minutes to deliver `volume` at `flow`, rounded up; `None` if the flow is zero or it
/// would take more than a day.
fn bridge_minutes(volume: Nanolitres, flow: NanolitresPerDay) -> Option<Minutes> {
    if flow.0 == 0 {
        return None;
    }
    let m = (u64::from(volume.0) * 1_440).div_ceil(u64::from(flow.0));
    u16::try_from(m)
        .ok()
        .filter(|m| (1..=1_440).contains(m))
        .map(Minutes)
}

pub async fn run(a: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let (status, t) = s.time().await?;
    let record = s.client.prescription().await?;
    let old = &record.prescription;
    let change = match (&a.drug, a.concentration) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(UsageError("--drug needs --concentration".into()).into());
        }
        (drug, Some(concentration)) => {
            let drug = match drug {
                Some(name) => Drug::from_name(name)
                    .ok_or_else(|| UsageError(format!("unknown drug `{name}`")))?,
                None => old.drug(),
            };
            Some(DrugChange {
                drug,
                concentration,
            })
        }
    };
    let change = change.filter(|c| c.drug != old.drug() || c.concentration != old.concentration());
    let mut bridge = None;
    let mut plan = vec![format!(
        "reservoir {} → {}",
        quantity::volume(status.reservoir),
        quantity::volume(a.volume)
    )];
    if let Some(c) = change {
        // The doses stay; the new concentration must keep every rule.
        old.with_drug(c.drug, c.concentration).map_err(|e| {
            UsageError(format!(
                "with the new drug or concentration the prescription breaks a rule: {e}"
            ))
        })?;
        plan.push(format!(
            "drug {} {} → {} {} (doses per day unchanged; flows change)",
            old.drug(),
            quantity::concentration(old.concentration()),
            c.drug,
            quantity::concentration(c.concentration)
        ));
        match (a.bridge_volume, a.no_bridge) {
            (Some(v), _) => {
                let minutes = bridge_minutes(v, status.basal_flow).ok_or_else(|| {
                    UsageError(format!(
                        "a bridge bolus of {} at the current flow {} would take more than a day",
                        quantity::volume(v),
                        quantity::flow(status.basal_flow)
                    ))
                })?;
                plan.push(format!(
                    "then a bridge bolus of {} over {} (the old drug at the current rate {})",
                    quantity::volume(v),
                    quantity::duration(minutes),
                    quantity::flow(status.basal_flow)
                ));
                bridge = Some(BolusRequest::Bridge {
                    volume: v,
                    duration: minutes,
                });
            }
            (None, true) => plan.push("no bridge bolus (--no-bridge)".into()),
            (None, false) => {
                return Err(UsageError(
                    "a drug or concentration change needs --bridge-volume VOL (old drug left in \
                     the pump and catheter) or --no-bridge"
                        .into(),
                )
                .into())
            }
        }
    }
    if !g.json {
        outln!("Refill of pump {}:", s.identity.serial)?;
        for line in &plan {
            outln!("  {line}")?;
        }
    }
    out::confirm("Record this refill?", a.yes)?;
    let (revision, reservoir) = s.client.refill(record.revision, a.volume, change).await?;
    let bolus = match bridge {
        Some(b) => Some(
            s.client
                .bolus(b)
                .await
                .context("the refill is recorded, but the bridge bolus was not started")?,
        ),
        None => None,
    };
    if g.json {
        return out::json(&RefillJson {
            revision: revision.0,
            reservoir: ReservoirView::new(&reservoir, &t),
            bridge_bolus: bolus.map(|b| BolusView::new(&b, &t)),
        });
    }
    outln!(
        "Refill recorded: {} of {} {}; prescription revision {}.",
        quantity::volume(reservoir.volume),
        reservoir.drug,
        quantity::concentration(reservoir.concentration),
        revision.0
    )?;
    if let Some(b) = bolus {
        outln!(
            "Bridge bolus started: {}, ends {}.",
            quantity::volume(b.volume),
            t.spelled(b.ends_at)
        )?;
    }
    outln!("New alarm date: {}", alarm_date(&reservoir, &t))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_duration_rounds_up_and_is_bounded() {
        // 0.25 mL at 0.5 mL/day = 12 h.
        assert_eq!(
            bridge_minutes(Nanolitres(250_000), NanolitresPerDay(500_000)),
            Some(Minutes(720))
        );
        // 1 nL at 1 mL/day: 0.00144 min -> 1 min.
        assert_eq!(
            bridge_minutes(Nanolitres(1), NanolitresPerDay(1_000_000)),
            Some(Minutes(1))
        );
        assert_eq!(
            bridge_minutes(Nanolitres(2_000_000), NanolitresPerDay(48_000)),
            None
        );
        assert_eq!(bridge_minutes(Nanolitres(1), NanolitresPerDay(0)), None);
    }
}
