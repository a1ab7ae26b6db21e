//! `thecal refill`

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use thecal_host::quantity::{self, parse_volume};
use thecal_host::schedule;
use thecal_host::view::{alarm_date, BolusView, Comparison, ReservoirView};
use thecal_protocol::message::{BolusRequest, TherapyState};
use thecal_protocol::projection::ReservoirState;
use thecal_protocol::units::{Minutes, Nanolitres, NanolitresPerDay};
use thecal_protocol::Prescription;

use crate::cmd::UsageError;
use crate::out;
use crate::session::{Access, Global, Session};

/// Record a refill.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Volume in the reservoir after the refill, e.g. "20 mL".
    #[arg(long, value_parser = parse_volume)]
    volume: Nanolitres,
    /// The prescription for the new solution (a schedule file), stored with the refill:
    /// the only way to change the drug or concentration. Its doses are for the new
    /// solution.
    #[arg(long, value_name = "FILE")]
    schedule: Option<PathBuf>,
    /// With a drug or concentration change: the volume of old drug still in the pump
    /// and catheter, delivered as a bridge bolus at the old rate, e.g. "0.25 mL".
    #[arg(long, value_parser = parse_volume, requires = "schedule", conflicts_with = "no_bridge")]
    bridge_volume: Option<Nanolitres>,
    /// With a drug or concentration change: give no bridge bolus.
    #[arg(long, requires = "schedule")]
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
    /// The schedule file given with `--schedule`.
    file: Option<String>,
    /// In force vs the file, projected from the refilled volume (`--schedule` only).
    comparison: Option<Comparison>,
    /// Whether a new prescription was stored with the refill (and read back identical).
    prescription_written: bool,
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

pub async fn run(a: Args, g: &Global) -> anyhow::Result<()> {
    // A schedule file is checked completely before the port is even opened.
    let new = a.schedule.as_deref().map(schedule::load).transpose()?;
    let mut s = Session::open(g, Access::Session).await?;
    let result = refill(&a, new, &mut s, g).await;
    let closed = s.close().await;
    result.and(closed)
}

async fn refill(
    a: &Args,
    new: Option<Prescription>,
    s: &mut Session,
    g: &Global,
) -> anyhow::Result<()> {
    let (status, t) = s.time().await?;
    let record = s.client.prescription().await?;
    let old = &record.prescription;
    let file = a.schedule.as_ref().map(|f| f.display().to_string());
    // The projection after the refill: the new volume from now.
    let refilled = ReservoirState {
        volume: a.volume,
        now: status.now,
        offset: status.offset,
        stopped: status.therapy == TherapyState::Stopped,
    };
    let comparison = new
        .as_ref()
        .map(|new| Comparison::new(&record, new, Some(refilled)));
    let drug_change = comparison.as_ref().is_some_and(Comparison::changes_drug);
    // An identical prescription is not stored again: the refill alone.
    let draft = new
        .as_ref()
        .zip(comparison.as_ref())
        .filter(|(_, c)| !c.is_unchanged())
        .map(|(p, _)| p.draft().clone());

    let mut plan = vec![format!(
        "reservoir {} → {}",
        quantity::volume(status.reservoir),
        quantity::volume(a.volume)
    )];
    let mut bridge = None;
    if let (Some(new), true) = (&new, drug_change) {
        plan.push(format!(
            "drug {} {} → {} {}, with the prescription from {} as the next revision",
            old.drug(),
            quantity::concentration(old.concentration()),
            new.drug(),
            quantity::concentration(new.concentration()),
            file.as_deref().unwrap_or_default(),
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
                     the pump and catheter) or --no-bridge; nothing was sent"
                        .into(),
                )
                .into())
            }
        }
    } else if a.bridge_volume.is_some() || a.no_bridge {
        return Err(UsageError(format!(
            "--bridge-volume and --no-bridge are for a drug or concentration change, and {} \
             keeps {} {}; nothing was sent",
            file.as_deref().unwrap_or_default(),
            old.drug(),
            quantity::concentration(old.concentration()),
        ))
        .into());
    } else if draft.is_some() {
        plan.push(format!(
            "same drug and concentration; the prescription from {} is stored with the refill \
             as the next revision",
            file.as_deref().unwrap_or_default()
        ));
    } else if new.is_some() {
        plan.push("the pump already holds this prescription; only the refill is recorded".into());
    }

    if !g.json {
        outln!(
            "Refill of pump {} {}: prescription revision {} in force",
            s.identity.model,
            s.identity.serial,
            record.revision.0
        )?;
        if let Some(c) = &comparison {
            outln!(
                "Alarm dates projected from the refilled volume, {}:\n",
                quantity::volume(a.volume)
            )?;
            out::side_by_side(
                &format!("in force (revision {})", record.revision.0),
                "new",
                c.rows(),
            )?;
            outln!()?;
        }
        for line in &plan {
            outln!("  {line}")?;
        }
    }
    let question = if draft.is_some() {
        format!(
            "Record this refill with the new prescription on pump {} (replacing revision {})?",
            s.identity.serial, record.revision.0
        )
    } else {
        "Record this refill?".to_string()
    };
    out::confirm(&question, a.yes)?;
    let prescription_written = draft.is_some();
    let (revision, reservoir) = match draft {
        Some(draft) => {
            let (written, reservoir) = s
                .client
                .refill_and_verify(record.revision, a.volume, draft)
                .await
                .context(if bridge.is_some() {
                    "the refill with the new prescription was not confirmed; no bridge bolus \
                     was started"
                } else {
                    "the refill with the new prescription was not confirmed"
                })?;
            (written.revision, reservoir)
        }
        None => s.client.refill(record.revision, a.volume, None).await?,
    };
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
            file,
            comparison,
            prescription_written,
        });
    }
    outln!(
        "Refill recorded: {} of {} {}; prescription revision {}.",
        quantity::volume(reservoir.volume),
        reservoir.drug,
        quantity::concentration(reservoir.concentration),
        revision.0
    )?;
    if prescription_written {
        outln!(
            "New prescription written and verified: revision {} is in force (read back identical).",
            revision.0
        )?;
    }
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
