//! `thecal prescription`

use thecal_host::view::PrescriptionView;
use thecal_host::{clock, quantity, schedule};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
};

use crate::out;
use crate::session::{Global, Session};

/// Read the prescription memory.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print it as a schedule file (TOML) instead, e.g. to edit and write back.
    #[arg(long, conflicts_with = "json")]
    pub toml: bool,
}

pub async fn run(a: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let (_, t) = s.time().await?;
    let record = s.client.prescription().await?;
    if a.toml {
        outln!(
            "# Prescription revision {} read from pump {} {} on {}",
            record.revision.0,
            s.identity.model,
            s.identity.serial,
            clock::short(t.now, t.offset)
        )?;
        outw!("{}", schedule::to_toml(&record.prescription))?;
        return Ok(());
    }
    let v = PrescriptionView::from_record(&record, &t);
    if g.json {
        return out::json(&v);
    }
    print(&v)?;
    Ok(())
}

fn day_names(days: &[&str]) -> String {
    match days.len() {
        7 => "every day".to_string(),
        _ => days
            .iter()
            .map(|d| {
                let mut c = d.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Prints a prescription as fields and a steps table per day profile.
pub fn print(v: &PrescriptionView) -> std::io::Result<()> {
    let mut rows = Vec::new();
    if let (Some(rev), Some(at)) = (v.revision, &v.written_at) {
        rows.push(("Revision", format!("{rev}, stored {at}")));
        if let Some(warning) = v.standing.as_ref().and_then(|s| s.warning(rev)) {
            rows.push(("Standing", warning));
        }
    }
    rows.push((
        "Drug",
        format!(
            "{} {}",
            v.drug,
            quantity::concentration(NanogramsPerMillilitre(v.concentration_ng_per_ml))
        ),
    ));
    rows.push((
        "Daily limit",
        format!(
            "{} (hard limit, boluses included)",
            quantity::dose_rate(NanogramsPerDay(v.daily_limit_ng_per_day))
        ),
    ));
    rows.push((
        "Low-reservoir alarm",
        format!(
            "at {}",
            quantity::volume(Nanolitres(v.low_reservoir_alarm_nl))
        ),
    ));
    let mode = match (v.mode, v.weekly) {
        ("flexible", true) => "flexible, by weekday",
        ("flexible", false) => "flexible, same every day",
        ("continuous", _) => "simple continuous",
        _ => "stopped (minimum flow only)",
    };
    rows.push(("Mode", mode.to_string()));
    rows.push((
        "Patient bolus",
        match &v.patient_bolus {
            Some(b) => format!(
                "{} per bolus, lockout {}, at most {} per 24 h",
                quantity::dose(Nanograms(b.dose_ng)),
                quantity::duration(Minutes(b.lockout_min)),
                b.max_per_day
            ),
            None => "not allowed".into(),
        },
    ));
    out::fields(&rows)?;
    for p in &v.profiles {
        outln!()?;
        outln!("Steps, {}:", day_names(&p.days))?;
        let table: Vec<Vec<String>> = p
            .steps
            .iter()
            .map(|s| {
                vec![
                    s.from.clone(),
                    quantity::dose_rate(NanogramsPerDay(s.dose_ng_per_day)),
                    quantity::flow(NanolitresPerDay(s.flow_nl_per_day)),
                ]
            })
            .collect();
        out::table(&["From", "Dose", "Flow"], &table)?;
    }
    outln!()?;
    let totals = v.daily_totals_ng;
    if totals.iter().all(|t| *t == totals[0]) {
        outln!(
            "Daily basal total: {} every day",
            quantity::dose(Nanograms(totals[0]))
        )?;
    } else {
        let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let text: Vec<String> = names
            .iter()
            .zip(totals)
            .map(|(d, t)| format!("{d} {}", quantity::dose(Nanograms(t))))
            .collect();
        outln!("Daily basal totals: {}", text.join(", "))?;
    }
    Ok(())
}
