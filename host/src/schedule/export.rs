//! A prescription written back as a schedule file (exact: parsing the output gives the
//! same prescription).

use std::fmt::Write;

use thecal_protocol::prescription::{DaySteps, Prescription, TherapyMode};
use thecal_protocol::time::Weekday;

use crate::quantity;

fn steps_toml(out: &mut String, steps: &DaySteps) {
    out.push_str("steps = [\n");
    for s in steps {
        let _ = writeln!(
            out,
            "  {{ from = \"{}\", dose = \"{}\" }},",
            s.start,
            quantity::dose_rate(s.dose)
        );
    }
    out.push_str("]\n");
}

/// `p` as a schedule file.
pub fn to_toml(p: &Prescription) -> String {
    let d = p.draft();
    let mut out = String::new();
    let _ = writeln!(out, "drug = \"{}\"", d.drug);
    let _ = writeln!(
        out,
        "concentration = \"{}\"",
        quantity::concentration(d.concentration)
    );
    let _ = writeln!(
        out,
        "daily_limit = \"{}\"",
        quantity::dose_rate(d.daily_limit)
    );
    let _ = writeln!(
        out,
        "low_reservoir_alarm = \"{}\"",
        quantity::volume(d.low_reservoir_alarm)
    );
    let mut tables = String::new();
    match &d.mode {
        TherapyMode::Stopped => out.push_str("mode = \"stopped\"\n"),
        TherapyMode::Continuous { dose } => {
            out.push_str("mode = \"continuous\"\n");
            let _ = writeln!(out, "dose = \"{}\"", quantity::dose_rate(*dose));
        }
        TherapyMode::Flexible { days } if days.len() == 1 => {
            out.push_str("mode = \"flexible\"\n");
            if let Some(steps) = days.first() {
                steps_toml(&mut out, steps);
            }
        }
        TherapyMode::Flexible { days } => {
            out.push_str("mode = \"flexible\"\n");
            // Days with identical steps share one [[profile]].
            let mut done = [false; 7];
            for (i, steps) in days.iter().enumerate() {
                if done.get(i).copied().unwrap_or(true) {
                    continue;
                }
                let mut names = Vec::new();
                for (j, other) in days.iter().enumerate().skip(i) {
                    if other == steps {
                        if let Some(flag) = done.get_mut(j) {
                            *flag = true;
                        }
                        names.push(format!(
                            "\"{}\"",
                            Weekday::from_index(j as u32).name().to_ascii_lowercase()
                        ));
                    }
                }
                let _ = writeln!(tables, "\n[[profile]]\ndays = [{}]", names.join(", "));
                steps_toml(&mut tables, steps);
            }
        }
    }
    if let Some(b) = d.patient_bolus {
        let _ = writeln!(
            tables,
            "\n[patient_bolus]\ndose = \"{}\"\nlockout = \"{} min\"\nmax_per_day = {}",
            quantity::dose(b.dose),
            b.lockout.0,
            b.max_per_day
        );
    }
    out.push_str(&tables);
    out
}
