//! `thecal refill`

use std::path::PathBuf;

use serde::Serialize;
use thecal_host::quantity;
use thecal_host::schedule;
use thecal_host::view::{alarm_date, BolusView, Comparison, ReservoirView};
use thecal_host::workflow::refill::{
    self, Aspiration, Bridge, Change, Discrepancy, RefillError, RefillInputs, RefillPlan,
    RefillPlanError,
};
use thecal_host::workflow::Current;
use thecal_protocol::units::Nanolitres;
use thecal_protocol::Prescription;

use crate::out;
use crate::session::{Access, Global, Session};
use crate::usage::{arg, UsageError};

/// Record a refill.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Volume in the reservoir after the refill, e.g. "20 mL".
    #[arg(long, value_parser = arg::volume)]
    volume: Nanolitres,
    /// The volume aspirated from the reservoir before filling, e.g. "2.8 mL": compared
    /// with the volume the pump expects, and a discrepancy beyond the tolerance (±10 %,
    /// at least ±1 mL) is flagged before the refill is recorded.
    #[arg(long, value_parser = arg::volume, value_name = "VOL")]
    aspirated: Option<Nanolitres>,
    /// The prescription for the new solution (a schedule file), stored with the refill:
    /// the only way to change the drug or concentration. Its doses are for the new
    /// solution.
    #[arg(long, value_name = "FILE")]
    schedule: Option<PathBuf>,
    /// With a drug or concentration change: the volume of old drug still in the pump
    /// and catheter, delivered as a bridge bolus at the old rate, e.g. "0.25 mL".
    #[arg(long, value_parser = arg::volume, requires = "schedule", conflicts_with = "no_bridge")]
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
    /// The volume aspirated and the volume the pump expected (`--aspirated` only).
    aspiration: Option<AspirationJson>,
    /// What the clinician confirmed despite (an aspirated volume beyond the tolerance, far below the expected volume, above the
    /// capacity, a bridge that reaches the new daily limit in the first 24 h).
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct AspirationJson {
    expected_nl: u32,
    aspirated_nl: u32,
    tolerance_nl: u32,
    /// `null` within the tolerance, `less` or `more` beyond it.
    discrepancy: Option<&'static str>,
}

impl From<Aspiration> for AspirationJson {
    fn from(a: Aspiration) -> Self {
        AspirationJson {
            expected_nl: a.expected.0,
            aspirated_nl: a.aspirated.0,
            tolerance_nl: a.tolerance.0,
            discrepancy: a.discrepancy().map(|d| match d {
                Discrepancy::Less => "less",
                Discrepancy::More => "more",
            }),
        }
    }
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
    let current = Current::read(&mut s.client).await?;
    let t = current.time();
    let file = a.schedule.as_ref().map(|f| f.display().to_string());
    let file = file.as_deref().unwrap_or_default();
    let bridge = match (a.bridge_volume, a.no_bridge) {
        (Some(v), _) => Some(Bridge::Volume(v)),
        (None, true) => Some(Bridge::None),
        (None, false) => None,
    };
    let inputs = RefillInputs {
        volume: a.volume,
        prescription: new,
        bridge,
        capacity: Some(s.identity.reservoir_capacity),
        aspirated: a.aspirated,
    };
    let plan = refill::plan(&current, inputs).map_err(|e| plan_error(e, &current, file))?;
    if !g.json {
        show(&plan, s, file)?;
    }
    // Warnings go to stderr, with --json too: they are for the person who confirms.
    for w in &plan.warnings {
        eprintln!("WARNING: {w}");
    }
    let question = if plan.writes_prescription() {
        format!(
            "Record this refill with the new prescription on pump {} (replacing revision {})?",
            s.identity.serial, plan.expected.0
        )
    } else {
        "Record this refill?".to_string()
    };
    let question = if plan.warnings.is_empty() {
        question
    } else {
        format!("{question} (despite the warnings above)")
    };
    out::confirm(&question, a.yes)?;
    let done = refill::execute(&mut s.client, &plan)
        .await
        .map_err(|e| match e {
            RefillError::Refill(e) => e.into(),
            other => anyhow::Error::new(other),
        })?;
    if g.json {
        return out::json(&RefillJson {
            revision: done.revision.0,
            reservoir: ReservoirView::new(&done.reservoir, &t),
            bridge_bolus: done.bridge_bolus.map(|b| BolusView::new(&b, &t)),
            file: a.schedule.as_ref().map(|f| f.display().to_string()),
            comparison: plan.comparison,
            aspiration: plan.aspiration.map(AspirationJson::from),
            prescription_written: done.prescription_written,
            warnings: plan.warnings.iter().map(|w| w.to_string()).collect(),
        });
    }
    let reservoir = &done.reservoir;
    outln!(
        "Refill recorded: {} of {} {}; prescription revision {}.",
        quantity::volume(reservoir.volume),
        reservoir.drug,
        quantity::concentration(reservoir.concentration),
        done.revision.0
    )?;
    if done.prescription_written {
        outln!(
            "New prescription written and verified: revision {} is in force (read back identical).",
            done.revision.0
        )?;
    }
    if let Some(b) = done.bridge_bolus {
        outln!(
            "Bridge bolus started: {}, ends {}.",
            quantity::volume(b.volume),
            t.spelled(b.ends_at)
        )?;
    }
    outln!("New alarm date: {}", alarm_date(reservoir, &t))?;
    Ok(())
}

/// The plan error in the words of this command line (its flags).
fn plan_error(e: RefillPlanError, current: &Current, file: &str) -> anyhow::Error {
    let old = &current.record.prescription;
    let text = match e {
        RefillPlanError::BridgeTooLong { volume, flow } => format!(
            "a bridge bolus of {} at the current flow {} would take more than a day",
            quantity::volume(volume),
            quantity::flow(flow)
        ),
        RefillPlanError::BridgeNeeded => "a drug or concentration change needs --bridge-volume \
                                          VOL (old drug left in the pump and catheter) or \
                                          --no-bridge; nothing was sent"
            .into(),
        RefillPlanError::BridgeWithoutDrugChange => format!(
            "--bridge-volume and --no-bridge are for a drug or concentration change, and {file} \
             keeps {} {}; nothing was sent",
            old.drug(),
            quantity::concentration(old.concentration()),
        ),
        other => other.to_string(),
    };
    UsageError(text).into()
}

/// The plan: the comparison (with a schedule), then what will be done.
fn show(plan: &RefillPlan, s: &Session, file: &str) -> anyhow::Result<()> {
    outln!(
        "Refill of pump {} {}: prescription revision {} in force",
        s.identity.model,
        s.identity.serial,
        plan.expected.0
    )?;
    if let Some(c) = &plan.comparison {
        outln!(
            "Alarm dates projected from the refilled volume, {}:\n",
            quantity::volume(plan.volume)
        )?;
        out::side_by_side(
            &format!("in force (revision {})", plan.expected.0),
            "new",
            c.rows(),
        )?;
        outln!()?;
    }
    for line in plan_lines(plan, file) {
        outln!("  {line}")?;
    }
    Ok(())
}

fn plan_lines(plan: &RefillPlan, file: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(a) = plan.aspiration {
        lines.push(format!(
            "aspirated {} (the pump expected {}, tolerance ±{}){}",
            quantity::volume(a.aspirated),
            quantity::volume(a.expected),
            quantity::volume(a.tolerance),
            if a.discrepancy().is_some() {
                ": DISCREPANCY"
            } else {
                ": within tolerance"
            }
        ));
    }
    lines.push(format!(
        "reservoir {} → {}",
        quantity::volume(plan.volume_before),
        quantity::volume(plan.volume)
    ));
    let (old, new) = (&plan.old, plan.new.as_ref());
    match (plan.change, new) {
        (Change::NewDrug { bridge }, Some(new)) => {
            lines.push(format!(
                "drug {} {} → {} {}, with the prescription from {file} as the next revision",
                old.drug(),
                quantity::concentration(old.concentration()),
                new.drug(),
                quantity::concentration(new.concentration()),
            ));
            lines.push(match bridge {
                Some(b) => format!(
                    "then a bridge bolus of {} over {} (the old drug at the current rate {})",
                    quantity::volume(b.volume),
                    quantity::duration(b.duration),
                    quantity::flow(b.flow)
                ),
                None => "no bridge bolus (--no-bridge)".into(),
            });
        }
        (Change::SameDrug, _) => lines.push(format!(
            "same drug and concentration; the prescription from {file} is stored with the refill \
             as the next revision"
        )),
        (Change::Unchanged, _) => lines
            .push("the pump already holds this prescription; only the refill is recorded".into()),
        _ => {}
    }
    lines
}
