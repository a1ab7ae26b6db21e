//! `thecal bolus single|priming|bridge|patient`

use thecal_host::quantity;
use thecal_host::view::{bolus_key, bolus_problem, bolus_volume, BolusOutcomeView, BolusView};
use thecal_protocol::message::{BolusRequest, Role, StatusReport};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres, NanolitresPerDay};
use thecal_protocol::Prescription;

use crate::out;
use crate::session::{Global, Session};
use crate::usage::{arg, UsageError};

/// Boluses.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// A single dose over a duration, e.g. `bolus single --dose "50 µg" --over 30min`.
    Single {
        /// Dose, e.g. "50 µg" or "0.5 mg".
        #[arg(long, value_parser = arg::dose)]
        dose: Nanograms,
        /// Duration, e.g. "30 min" or "1 h".
        #[arg(long, value_parser = arg::duration)]
        over: Minutes,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Fill the catheter after implant or revision, e.g. `--volume "0.2 mL" --over 10min`.
    Priming {
        /// Volume.
        #[arg(long, value_parser = arg::volume)]
        volume: Nanolitres,
        /// Duration.
        #[arg(long, value_parser = arg::duration)]
        over: Minutes,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Move old drug out of pump and catheter after a concentration change.
    Bridge {
        /// Volume.
        #[arg(long, value_parser = arg::volume)]
        volume: Nanolitres,
        /// Duration.
        #[arg(long, value_parser = arg::duration)]
        over: Minutes,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// A patient-activated bolus, under the prescription's patient-bolus rules.
    Patient {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// End the running bolus now (clinician or emergency key); what it delivered stays
    /// counted against the daily limit.
    Cancel {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(c: Command, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let (request, yes) = match c {
        Command::Cancel { yes } => return cancel(s, g, yes).await,
        Command::Single { dose, over, yes } => (
            Some(BolusRequest::Single {
                dose,
                duration: over,
            }),
            yes,
        ),
        Command::Priming { volume, over, yes } => (
            Some(BolusRequest::Priming {
                volume,
                duration: over,
            }),
            yes,
        ),
        Command::Bridge { volume, over, yes } => (
            Some(BolusRequest::Bridge {
                volume,
                duration: over,
            }),
            yes,
        ),
        Command::Patient { yes } => (None, yes),
    };
    let (status, t) = s.time().await?;
    // A patient session may not read the prescription: its bolus is confirmed with
    // what the status tells.
    let rx = if s.client.role() == Some(Role::Patient) {
        None
    } else {
        Some(s.client.prescription().await?.prescription)
    };
    let mut details = Vec::new();
    let text = match (&request, &rx) {
        (Some(r), Some(rx)) => {
            let (d, text) = clinician_bolus(r, rx, &status)
                .map_err(|problem| UsageError(format!("bolus not given: {problem}")))?;
            details = d;
            text
        }
        (None, Some(rx)) => {
            let Some(rules) = rx.patient_bolus() else {
                return Err(UsageError(format!(
                    "bolus not given: the prescription on pump {} allows no patient bolus",
                    s.identity.serial
                ))
                .into());
            };
            let c = rx.concentration();
            let volume = rules.dose.to_volume(c).unwrap_or(Nanolitres(0));
            details.push((
                "Drug",
                format!("{} {}", rx.drug().name(), quantity::concentration(c)),
            ));
            details.push((
                "Dose",
                format!(
                    "{} = {}, as fast as the pump allows; then locked out for {} ({} per 24 h \
                     at most)",
                    quantity::dose(rules.dose),
                    quantity::volume(volume),
                    quantity::duration(rules.lockout),
                    rules.max_per_day
                ),
            ));
            details.push(last_24h(&status, rules.dose));
            format!("patient bolus of {}", quantity::dose(rules.dose))
        }
        (Some(r), None) => describe(r),
        (None, None) => "patient bolus".to_string(),
    };
    if !yes && !g.json && !details.is_empty() {
        eprintln!("Bolus on pump {}:", s.identity.serial);
        let w = details.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &details {
            eprintln!("  {k:<w$}  {v}");
        }
    }
    out::confirm(
        &format!("Give a {text} on pump {}?", s.identity.serial),
        yes,
    )?;
    let report = match request {
        Some(r) => s.client.bolus(r).await?,
        None => s.client.patient_bolus().await?,
    };
    let v = BolusView::new(&report, &t);
    if g.json {
        return out::json(&v);
    }
    outln!(
        "Bolus started: {} {} ({}), ends {}.",
        v.kind,
        quantity::dose(report.dose),
        quantity::volume(report.volume),
        t.spelled(report.ends_at)
    )?;
    Ok(())
}

/// Label–value lines shown before a bolus is confirmed.
pub type Details = Vec<(&'static str, String)>;

/// A clinician bolus on the pump as `status` shows it, under the prescription `rx`:
/// the lines to confirm (drug, dose with volume, time and rate, the last 24 h against
/// the limit) and its name; or which of the pump's bolus limits it breaks (checked here
/// so the clinician hears which one and by how much: the pump refuses them all with one
/// reason).
pub fn clinician_bolus(
    r: &BolusRequest,
    rx: &Prescription,
    status: &StatusReport,
) -> Result<(Details, String), String> {
    let c = rx.concentration();
    if let Some(problem) = bolus_problem(r, c) {
        return Err(problem);
    }
    let volume = bolus_volume(r, c).unwrap_or(Nanolitres(0));
    let over = duration_of(r);
    let dose = volume.to_dose(c).unwrap_or(Nanograms(u32::MAX));
    let details = vec![
        (
            "Drug",
            format!("{} {}", rx.drug().name(), quantity::concentration(c)),
        ),
        (
            "Dose",
            format!(
                "{} = {} over {} ({})",
                quantity::dose(dose),
                quantity::volume(volume),
                quantity::duration(over),
                quantity::flow(rate(volume, over))
            ),
        ),
        last_24h(status, dose),
    ];
    Ok((details, describe(r)))
}

/// The flow of `volume` over `over`.
fn rate(volume: Nanolitres, over: Minutes) -> NanolitresPerDay {
    let per_day = u64::from(volume.0) * 1_440 / u64::from(over.0.max(1));
    NanolitresPerDay(u32::try_from(per_day).unwrap_or(u32::MAX))
}

/// `Last 24 h  120 µg delivered; 170 µg with this bolus, daily limit 600 µg/day`.
fn last_24h(status: &StatusReport, dose: Nanograms) -> (&'static str, String) {
    let after = Nanograms(status.delivered_24h.0.saturating_add(dose.0));
    (
        "Last 24 h",
        format!(
            "{} delivered; {} with this bolus, daily limit {}",
            quantity::dose(status.delivered_24h),
            quantity::dose(after),
            quantity::dose_rate(status.daily_limit)
        ),
    )
}

fn duration_of(request: &BolusRequest) -> Minutes {
    match *request {
        BolusRequest::Single { duration, .. }
        | BolusRequest::Priming { duration, .. }
        | BolusRequest::Bridge { duration, .. } => duration,
    }
}

/// `single bolus of 50 µg over 30 min`, `bridge bolus of 0.1 mL over 2 h`.
pub fn describe(request: &BolusRequest) -> String {
    let (kind, amount, over) = match *request {
        BolusRequest::Single { dose, duration } => ("single", quantity::dose(dose), duration),
        BolusRequest::Priming { volume, duration } => {
            ("priming", quantity::volume(volume), duration)
        }
        BolusRequest::Bridge { volume, duration } => ("bridge", quantity::volume(volume), duration),
    };
    format!("{kind} bolus of {amount} over {}", quantity::duration(over))
}

/// `bolus cancel`: shows the running bolus, asks, cancels and prints what it delivered.
async fn cancel(s: &mut Session, g: &Global, yes: bool) -> anyhow::Result<()> {
    let (status, t) = s.time().await?;
    let Some(running) = status.bolus else {
        return Err(UsageError(format!(
            "no bolus is running on pump {}; nothing was sent",
            s.identity.serial
        ))
        .into());
    };
    out::confirm(
        &format!(
            "Cancel the running {} bolus on pump {} ({} of {} delivered, planned to end {})?",
            bolus_key(running.kind),
            s.identity.serial,
            quantity::volume(running.delivered),
            quantity::volume(running.total),
            t.spelled(running.ends_at)
        ),
        yes,
    )?;
    let outcome = s.client.cancel_bolus().await?;
    if g.json {
        return out::json(&BolusOutcomeView::from(&outcome));
    }
    outln!(
        "Bolus cancelled: {} bolus, {} of {} delivered; the rest is not given. What was \
         delivered stays counted against the daily limit.",
        bolus_key(outcome.kind),
        quantity::volume(outcome.delivered),
        quantity::volume(outcome.planned)
    )?;
    if s.client.role() == Some(thecal_protocol::message::Role::Emergency) {
        // The emergency key is public: this answer could not prove it came from the pump.
        outln!(
            "Emergency access: confirm on the pump itself that the bolus ended, and have a \
             clinician read the pump with the clinician key as soon as possible."
        )?;
    }
    Ok(())
}
