//! `thecal records`: the session records (`--records URL`, default the local SQLite
//! file): list the sessions, show one, export one as an HL7 FHIR R4 bundle.

use thecal_host::records::{fhir, Records};
use thecal_host::report::{Change, Interrogation, SessionReport};

use crate::out;
use crate::session::Global;
use crate::usage::UsageError;

/// The records' commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the sessions kept, newest first.
    List(ListArgs),
    /// Show a session's report (with --json: the report document).
    Show(Which),
    /// Print a session as an HL7 FHIR R4 Bundle (JSON): the pump, each drug
    /// administration (boluses, prescriptions), the session's audit event.
    Fhir(Which),
}

/// `records list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only the sessions with the pump of this serial number.
    #[arg(long, value_name = "SERIAL")]
    pub serial: Option<String>,
    /// At most N sessions.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
}

/// Which session.
#[derive(Debug, clap::Args)]
pub struct Which {
    /// The session's id (`thecal records list` shows them).
    #[arg(required_unless_present = "last", conflicts_with = "last")]
    pub id: Option<String>,
    /// The newest session (of the pump --serial, if given).
    #[arg(long)]
    pub last: bool,
    /// With --last: the newest session with the pump of this serial number.
    #[arg(long, value_name = "SERIAL", requires = "last")]
    pub serial: Option<String>,
}

/// The records of `--records`, or the default SQLite file.
pub fn url(g: &Global) -> String {
    match &g.records {
        Some(url) => url.clone(),
        None => Records::default_location().display().to_string(),
    }
}

pub async fn run(c: Command, g: &Global) -> anyhow::Result<()> {
    let records = Records::open(&url(g)).await?;
    let result = match c {
        Command::List(a) => list(&records, a, g).await,
        Command::Show(w) => {
            let r = find(&records, &w).await?;
            if g.json {
                out::json(&r)
            } else {
                show(&r)
            }
        }
        Command::Fhir(w) => out::json(&fhir::bundle(&find(&records, &w).await?)),
    };
    records.close().await;
    result
}

async fn list(records: &Records, a: ListArgs, g: &Global) -> anyhow::Result<()> {
    let sessions = records.list(a.serial.as_deref(), a.limit).await?;
    if g.json {
        return out::json(&sessions);
    }
    if sessions.is_empty() {
        outln!("no sessions in the records at {}", records.location())?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.pump_serial.clone(),
                s.role.clone(),
                s.started_utc.clone(),
                s.ended_utc.clone().unwrap_or_else(|| "—".into()),
                if s.changed { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    out::table(
        &[
            "Session",
            "Pump",
            "Role",
            "Started (UTC)",
            "Ended",
            "Changed",
        ],
        &rows,
    )?;
    Ok(())
}

/// The session `w` names; a missing one is an invalid argument.
pub async fn find(records: &Records, w: &Which) -> anyhow::Result<SessionReport> {
    let found = match &w.id {
        Some(id) => records.get(id).await?,
        None => records.latest(w.serial.as_deref()).await?,
    };
    found.ok_or_else(|| {
        let what = match (&w.id, &w.serial) {
            (Some(id), _) => format!("no session {id}"),
            (None, Some(serial)) => format!("no session with the pump {serial}"),
            (None, None) => "no session".into(),
        };
        UsageError(format!(
            "{what} in the records at {} (`thecal records list` shows them)",
            records.location()
        ))
        .into()
    })
}

/// The report as text: who, when, the pump before, every change, the pump after.
fn show(r: &SessionReport) -> anyhow::Result<()> {
    let mut rows = vec![
        ("Session", r.id.clone()),
        (
            "Pump",
            format!(
                "{} ({}, firmware {})",
                r.pump.serial, r.pump.model, r.pump.firmware
            ),
        ),
        ("Role", format!("{} with {}", r.role, r.programmer)),
        (
            "Time (UTC)",
            format!(
                "{} – {}",
                r.started_utc,
                r.ended_utc.as_deref().unwrap_or("not closed")
            ),
        ),
    ];
    if let Some(b) = &r.before {
        rows.push(("Found", interrogation(b)));
    }
    let changes: Vec<String> = r
        .changes
        .iter()
        .map(|c| format!("{}  {}", c.at, change(&c.change)))
        .collect();
    rows.push((
        "Changes",
        if changes.is_empty() {
            "none".into()
        } else {
            changes.join("\n")
        },
    ));
    if let Some(a) = &r.after {
        rows.push(("Left", interrogation(a)));
    }
    if !r.alarms_seen.is_empty() {
        let alarms: Vec<String> = r
            .alarms_seen
            .iter()
            .map(|a| {
                format!(
                    "{} (raised {}{})",
                    a.name,
                    a.raised_at,
                    if a.acknowledged { ", acknowledged" } else { "" }
                )
            })
            .collect();
        rows.push(("Alarms seen", alarms.join("\n")));
    }
    out::fields(&rows)?;
    Ok(())
}

fn interrogation(i: &Interrogation) -> String {
    let p = &i.prescription;
    let mut lines = vec![
        format!("{} at {} ({} therapy)", i.at, i.therapy, p.mode),
        format!(
            "{} {}, revision {}",
            p.drug,
            thecal_host::quantity::concentration(thecal_protocol::units::NanogramsPerMillilitre(
                p.concentration_ng_per_ml
            )),
            i.revision
        ),
    ];
    lines.extend(p.steps.iter().cloned());
    lines.push(format!(
        "reservoir {}, low-reservoir alarm {}",
        thecal_host::quantity::volume(thecal_protocol::units::Nanolitres(i.reservoir_nl)),
        i.low_reservoir_at
            .as_deref()
            .unwrap_or("not within the horizon")
    ));
    lines.join("\n")
}

fn change(c: &Change) -> String {
    use thecal_host::quantity::{dose, volume};
    use thecal_protocol::units::{Nanograms, Nanolitres};
    match c {
        Change::Prescription {
            old_revision,
            new_revision,
            new,
            ..
        } => format!(
            "prescription written: revision {old_revision} → {new_revision} ({} {})",
            new.drug, new.mode
        ),
        Change::Refill {
            volume_nl,
            drug,
            aspirated_nl,
            discrepancy,
            review,
            ..
        } => {
            let aspirated = match (aspirated_nl, discrepancy) {
                (Some(a), Some(d)) => {
                    format!(", aspirated {} ({d} than expected)", volume(Nanolitres(*a)))
                }
                (Some(a), None) => format!(", aspirated {}", volume(Nanolitres(*a))),
                (None, _) => String::new(),
            };
            let with = if review.is_some() {
                ", with a new prescription"
            } else {
                ""
            };
            format!(
                "refill: {} {drug}{aspirated}{with}",
                volume(Nanolitres(*volume_nl))
            )
        }
        Change::Bolus {
            bolus,
            drug,
            dose_ng,
            ends_at,
            ..
        } => format!(
            "{bolus} bolus: {} {drug}, until {ends_at}",
            dose(Nanograms(*dose_ng))
        ),
        Change::BolusCancelled { delivered_nl } => format!(
            "bolus cancelled after {} delivered",
            volume(Nanolitres(*delivered_nl))
        ),
        Change::Stopped => "therapy stopped".into(),
        Change::Resumed => "therapy resumed".into(),
        Change::AlarmAcknowledged { alarm } => format!("alarm acknowledged: {alarm}"),
        Change::ClockSet { old, new } => format!("clock set: {old} → {new}"),
    }
}
