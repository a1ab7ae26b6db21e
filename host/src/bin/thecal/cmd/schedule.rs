//! `thecal schedule check FILE` and `thecal schedule write FILE`

use std::path::PathBuf;

use serde::Serialize;
use thecal_host::view::{alarm_date, Comparison, PrescriptionView};
use thecal_host::workflow::schedule::{self as write_flow, WriteError};
use thecal_host::workflow::Current;
use thecal_host::{quantity, schedule};

use crate::cmd::prescription;
use crate::out;
use crate::session::{Access, Global, Session};
use crate::usage::UsageError;

/// Schedule files.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a schedule file offline (nothing is sent).
    Check {
        /// The schedule file (TOML).
        file: PathBuf,
    },
    /// Write a schedule file to the pump: show old and new side by side, confirm,
    /// write with the revision read, read back and verify. The file must keep the drug
    /// and concentration in force (a new one comes with a refill: `thecal refill
    /// --volume V --schedule FILE`).
    Write(WriteArgs),
}

/// `schedule write`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// The schedule file (TOML).
    file: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Stop after showing the comparison; nothing is written.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Serialize)]
struct CheckJson {
    file: String,
    valid: bool,
    prescription: PrescriptionView,
}

#[derive(Serialize)]
struct WriteJson {
    file: String,
    dry_run: bool,
    unchanged: bool,
    /// The file changes the drug or concentration: it can only go with a refill.
    needs_refill: bool,
    written: bool,
    verified: bool,
    revision: u32,
    comparison: Comparison,
    low_reservoir_at: Option<String>,
}

pub async fn run(c: Command, g: &Global) -> anyhow::Result<()> {
    match c {
        Command::Check { file } => check(file, g),
        Command::Write(a) => write(a, g).await,
    }
}

fn check(file: PathBuf, g: &Global) -> anyhow::Result<()> {
    let p = schedule::load(&file)?;
    let view = PrescriptionView::new(&p);
    if g.json {
        return out::json(&CheckJson {
            file: file.display().to_string(),
            valid: true,
            prescription: view,
        });
    }
    outln!(
        "{}: valid; every prescription rule holds.\n",
        file.display()
    )?;
    prescription::print(&view)?;
    Ok(())
}

async fn write(a: WriteArgs, g: &Global) -> anyhow::Result<()> {
    // The file is checked completely before the port is even opened.
    let new = schedule::load(&a.file)?;
    let mut s = Session::open(g, Access::Session).await?;
    let result = write_to(&a, new, &mut s, g).await;
    let closed = s.close().await;
    result.and(closed)
}

async fn write_to(
    a: &WriteArgs,
    new: thecal_protocol::Prescription,
    s: &mut Session,
    g: &Global,
) -> anyhow::Result<()> {
    let file = a.file.display().to_string();
    let current = Current::read(&mut s.client).await?;
    let t = current.time();
    let plan = write_flow::plan(&current, new);
    let mut result = WriteJson {
        file: file.clone(),
        dry_run: a.dry_run,
        unchanged: plan.comparison.is_unchanged(),
        needs_refill: plan.comparison.changes_drug(),
        written: false,
        verified: false,
        revision: plan.expected.0,
        comparison: plan.comparison.clone(),
        low_reservoir_at: None,
    };
    if !g.json {
        outln!(
            "Pump {} {}: prescription revision {} in force; new schedule from {file}\n",
            s.identity.model,
            s.identity.serial,
            plan.expected.0
        )?;
        out::side_by_side(
            &format!("in force (revision {})", plan.expected.0),
            "new",
            plan.comparison.rows(),
        )?;
        outln!()?;
    }
    if result.unchanged || a.dry_run {
        if g.json {
            return out::json(&result);
        }
        if result.unchanged {
            outln!("The pump already holds this prescription; nothing to write.")?;
        } else {
            outln!("Dry run: nothing was written.")?;
            if result.needs_refill {
                outln!("Note: {}.", needs_refill(&plan.old, &plan.new, &file))?;
            }
        }
        return Ok(());
    }
    // The pump refuses such a write (DrugChangeNeedsRefill): say so before sending it.
    if plan.check().is_err() {
        let why = needs_refill(&plan.old, &plan.new, &file);
        return Err(UsageError(format!("{why}; nothing was written")).into());
    }
    let warning = plan.comparison.dose_change_warning();
    if let Some(w) = &warning {
        eprintln!("WARNING: {w}.");
    }
    out::confirm(
        &format!(
            "Write this prescription to pump {} (replacing revision {}){}?",
            s.identity.serial,
            plan.expected.0,
            if warning.is_some() {
                ", with this large dose change"
            } else {
                ""
            }
        ),
        a.yes,
    )?;
    let done = write_flow::execute(&mut s.client, &plan)
        .await
        .map_err(|e| match e {
            WriteError::Reservoir(e) => e.into(),
            other => anyhow::Error::new(other),
        })?;
    result.written = true;
    result.verified = true;
    result.revision = done.record.revision.0;
    result.low_reservoir_at = t.opt(done.reservoir.low_at);
    if g.json {
        return out::json(&result);
    }
    outln!(
        "Written and verified: revision {} is in force (read back identical).",
        done.record.revision.0
    )?;
    outln!("Alarm date: {}", alarm_date(&done.reservoir, &t))?;
    Ok(())
}

/// Why a schedule with another drug or concentration goes in with a refill, not a write.
fn needs_refill(
    old: &thecal_protocol::Prescription,
    new: &thecal_protocol::Prescription,
    file: &str,
) -> String {
    format!(
        "the schedule changes the drug or concentration ({} {} in force, {} {} in {file}). \
         A schedule write cannot do that: the pump derives every flow from the \
         concentration, so it changes only with a refill, when the reservoir holds the new \
         solution. Record the refill with this prescription: \
         `thecal refill --volume V --schedule {file}`",
        old.drug(),
        quantity::concentration(old.concentration()),
        new.drug(),
        quantity::concentration(new.concentration()),
    )
}
