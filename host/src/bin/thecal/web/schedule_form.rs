//! The schedule editor's form: its fields are named after the schedule file's field
//! paths (`profile[2].steps[3].dose`), so an error the schedule-file checker locates
//! (`thecal_host::schedule::parse`) lands on the input that holds it.
//!
//! The form becomes a schedule file (TOML, built with the `toml` crate, so whatever is
//! typed stays a string value) and goes through the same parser and rules as
//! `thecal schedule check`; the pump checks the same rules again when it is written.

use std::collections::BTreeMap;

use maud::{html, Markup};
use thecal_host::quantity;
use thecal_host::schedule::{self, ScheduleFileError};
use thecal_host::view::PrescriptionView;
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};
use thecal_protocol::Prescription;

/// Groups of days the editor offers.
pub const GROUPS: usize = 4;
/// Step rows per group (the pump's most steps in a day).
pub const ROWS: usize = thecal_protocol::prescription::MAX_STEPS_PER_DAY;
/// Blank rows shown after a group's steps.
const SPARE_ROWS: usize = 3;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// What the form holds: every field by name (days as the list of ticked days).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleForm {
    fields: BTreeMap<String, String>,
    days: BTreeMap<usize, Vec<String>>,
}

/// Where the form is wrong: the input's name (when known) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    /// The form field, e.g. `profile[1].steps[2].dose`.
    pub field: Option<String>,
    /// What is wrong, and the fix.
    pub message: String,
}

impl ScheduleForm {
    /// From posted `name=value` pairs (repeated `profile[G].days` for ticked days).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> ScheduleForm {
        let mut f = ScheduleForm::default();
        for (k, v) in pairs {
            if let Some(g) = k
                .strip_prefix("profile[")
                .and_then(|r| r.strip_suffix("].days"))
                .and_then(|g| g.parse::<usize>().ok())
            {
                f.days.entry(g).or_default().push(v);
            } else if k != "nonce" {
                f.fields.insert(k, v);
            }
        }
        f
    }

    /// The prescription `v` as the form shows it.
    pub fn from_view(v: &PrescriptionView) -> ScheduleForm {
        let mut f = ScheduleForm::default();
        let mut set = |k: &str, v: String| {
            f.fields.insert(k.to_string(), v);
        };
        set("drug", v.drug.to_string());
        set(
            "concentration",
            quantity::concentration(NanogramsPerMillilitre(v.concentration_ng_per_ml)),
        );
        set(
            "daily_limit",
            quantity::dose_rate(NanogramsPerDay(v.daily_limit_ng_per_day)),
        );
        set(
            "low_reservoir_alarm",
            quantity::volume(Nanolitres(v.low_reservoir_alarm_nl)),
        );
        set("mode", v.mode.to_string());
        if v.mode == "continuous" {
            if let Some(s) = v.profiles.first().and_then(|g| g.steps.first()) {
                set(
                    "dose",
                    quantity::dose_rate(NanogramsPerDay(s.dose_ng_per_day)),
                );
            }
        }
        if let Some(b) = &v.patient_bolus {
            set("patient_bolus.dose", quantity::dose(Nanograms(b.dose_ng)));
            set(
                "patient_bolus.lockout",
                quantity::duration(Minutes(b.lockout_min)),
            );
            set("patient_bolus.max_per_day", b.max_per_day.to_string());
        }
        if v.mode == "flexible" {
            for (gi, g) in v.profiles.iter().take(GROUPS).enumerate() {
                let n = gi + 1;
                for (si, s) in g.steps.iter().enumerate() {
                    set(
                        &format!("profile[{n}].steps[{}].from", si + 1),
                        s.from.clone(),
                    );
                    set(
                        &format!("profile[{n}].steps[{}].dose", si + 1),
                        quantity::dose_rate(NanogramsPerDay(s.dose_ng_per_day)),
                    );
                }
                f.days.insert(
                    n,
                    g.days
                        .iter()
                        .map(|d| d.get(..3).unwrap_or(d).to_string())
                        .collect(),
                );
            }
        }
        f
    }

    fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", |v| v.trim())
    }

    fn ticked(&self, g: usize, day: &str) -> bool {
        self.days
            .get(&g)
            .is_some_and(|d| d.iter().any(|x| x == day))
    }

    /// The form as a schedule file, and the map from the file's field paths to the
    /// form's names (blank rows and groups are left out, so the numbers can differ).
    pub fn to_toml(&self) -> Result<(String, Vec<(String, String)>), FormError> {
        use toml::{Table, Value};
        let mut t = Table::new();
        let mut names = Vec::new();
        for k in [
            "drug",
            "concentration",
            "daily_limit",
            "low_reservoir_alarm",
            "mode",
        ] {
            t.insert(k.into(), Value::String(self.get(k).into()));
        }
        match self.get("mode") {
            "continuous" => {
                t.insert("dose".into(), Value::String(self.get("dose").into()));
            }
            "flexible" => {
                // Each group in use: its days and its rows (with their form numbers).
                let mut groups = Vec::new();
                for g in 1..=GROUPS {
                    let days: Vec<Value> = DAYS
                        .iter()
                        .filter(|d| self.ticked(g, d))
                        .map(|d| Value::String((*d).into()))
                        .collect();
                    let mut steps = Vec::new();
                    for s in 1..=ROWS {
                        let (from, dose) = (
                            self.get(&format!("profile[{g}].steps[{s}].from")),
                            self.get(&format!("profile[{g}].steps[{s}].dose")),
                        );
                        if from.is_empty() && dose.is_empty() {
                            continue;
                        }
                        let mut step = Table::new();
                        step.insert("from".into(), Value::String(from.into()));
                        step.insert("dose".into(), Value::String(dose.into()));
                        steps.push((s, Value::Table(step)));
                    }
                    if !(days.is_empty() && steps.is_empty()) {
                        groups.push((g, days, steps));
                    }
                }
                // One group for every day is the file's `steps` (same every day).
                let every_day = matches!(groups.as_slice(), [(_, days, _)] if days.len() == 7);
                let mut profiles = Vec::new();
                for (i, (g, days, steps)) in groups.into_iter().enumerate() {
                    let file = if every_day {
                        String::new()
                    } else {
                        format!("profile[{}].", i + 1)
                    };
                    for (k, (s, _)) in steps.iter().enumerate() {
                        names.push((
                            format!("{file}steps[{}]", k + 1),
                            format!("profile[{g}].steps[{s}]"),
                        ));
                    }
                    let steps: Vec<Value> = steps.into_iter().map(|(_, v)| v).collect();
                    if every_day {
                        t.insert("steps".into(), Value::Array(steps));
                        continue;
                    }
                    names.push((format!("{file}days"), format!("profile[{g}].days")));
                    names.push((format!("profile[{}]", i + 1), format!("profile[{g}]")));
                    let mut p = Table::new();
                    p.insert("days".into(), Value::Array(days));
                    p.insert("steps".into(), Value::Array(steps));
                    profiles.push(Value::Table(p));
                }
                if !every_day {
                    t.insert("profile".into(), Value::Array(profiles));
                }
            }
            _ => {}
        }
        let bolus = [
            "patient_bolus.dose",
            "patient_bolus.lockout",
            "patient_bolus.max_per_day",
        ];
        if bolus.iter().any(|k| !self.get(k).is_empty()) {
            let max = self.get("patient_bolus.max_per_day");
            let max: i64 = max.parse().map_err(|_| FormError {
                field: Some("patient_bolus.max_per_day".into()),
                message: format!("`{max}` is not a whole number of boluses a day, e.g. 4"),
            })?;
            let mut b = Table::new();
            b.insert("dose".into(), Value::String(self.get(bolus[0]).into()));
            b.insert("lockout".into(), Value::String(self.get(bolus[1]).into()));
            b.insert("max_per_day".into(), Value::Integer(max));
            t.insert("patient_bolus".into(), Value::Table(b));
        }
        let text = toml::to_string(&t).map_err(|e| FormError {
            field: None,
            message: e.to_string(),
        })?;
        Ok((text, names))
    }

    /// Groups shown: those in use and one more (at least two, at most [`GROUPS`]).
    fn groups_shown(&self) -> usize {
        let in_use = (1..=GROUPS)
            .filter(|g| {
                self.days.get(g).is_some_and(|d| !d.is_empty())
                    || self.fields.iter().any(|(k, v)| {
                        k.starts_with(&format!("profile[{g}].")) && !v.trim().is_empty()
                    })
            })
            .max()
            .unwrap_or(0);
        (in_use + 1).clamp(2, GROUPS)
    }

    /// The prescription the form describes, checked with every rule; or where it is
    /// wrong.
    pub fn check(&self) -> Result<Prescription, FormError> {
        let (text, names) = self.to_toml()?;
        schedule::parse("the schedule", &text).map_err(|e| match &e {
            ScheduleFileError::Invalid(i) => FormError {
                field: i.field.as_deref().map(|f| form_name(f, &names)),
                message: i.message.clone(),
            },
            other => FormError {
                field: None,
                message: other.to_string(),
            },
        })
    }

    /// The editor: every field, the error (if any) on its input.
    pub fn render(&self, error: Option<&FormError>) -> Markup {
        let bad = |name: &str| error.and_then(|e| e.field.as_deref()) == Some(name);
        let at = |name: &str| {
            error
                .filter(|e| e.field.as_deref() == Some(name))
                .map(|e| e.message.clone())
        };
        let input = |name: &str, label: &str, hint: &str| {
            html! {
                label for=(name) { (label) }
                input type="text" id=(name) name=(name) value=(self.get(name)) class=[bad(name).then_some("bad")];
                span.hint { " " (hint) }
                div.fieldmsg data-for=(name) { @if let Some(m) = at(name) { (m) } }
            }
        };
        let mode = self.get("mode");
        html! {
            fieldset {
                legend { "Drug" }
                (input("drug", "Drug", "as on the label"))
                (input("concentration", "Concentration", "e.g. 500 µg/mL"))
                (input("daily_limit", "Hard daily limit", "boluses included, e.g. 300 µg/day"))
                (input("low_reservoir_alarm", "Low-reservoir alarm", "e.g. 2 mL"))
            }
            fieldset {
                legend { "Basal schedule" }
                label for="mode" { "Mode" }
                select id="mode" name="mode" {
                    @for m in ["continuous", "flexible", "stopped"] {
                        option value=(m) selected[mode == m] { (m) }
                    }
                }
                div.fieldmsg data-for="mode" { @if let Some(m) = at("mode") { (m) } }
                (input("dose", "Continuous dose", "continuous mode: e.g. 3 mg/day"))
                p.hint { "Flexible mode: steps for each group of days (a step runs from its time until the next; the first starts at 00:00)." }
                @for g in 1..=self.groups_shown() {
                    @let used = (1..=ROWS).filter(|s| !self.get(&format!("profile[{g}].steps[{s}].from")).is_empty() || !self.get(&format!("profile[{g}].steps[{s}].dose")).is_empty()).max().unwrap_or(0);
                    @let shown = (used + SPARE_ROWS).min(ROWS);
                    @let days_name = format!("profile[{g}].days");
                    div.group data-group=(g) {
                        h3 { "Days group " (g) }
                        div class=[bad(&days_name).then_some("bad")] {
                            @for d in DAYS {
                                label.day { input type="checkbox" name=(days_name) value=(d) checked[self.ticked(g, d)]; " " (d) " " }
                            }
                        }
                        div.fieldmsg data-for=(days_name) { @if let Some(m) = at(&days_name) { (m) } }
                        table.steps {
                            thead { tr { th { "#" } th { "From (HH:MM)" } th { "Dose rate" } th {} } }
                            tbody {
                                @for s in 1..=shown {
                                    @let from = format!("profile[{g}].steps[{s}].from");
                                    @let dose = format!("profile[{g}].steps[{s}].dose");
                                    tr {
                                        td { (s) }
                                        td { input type="text" name=(from) value=(self.get(&from)) class=[(bad(&from) || bad(&format!("profile[{g}].steps[{s}]"))).then_some("bad")]; }
                                        td { input type="text" name=(dose) value=(self.get(&dose)) class=[bad(&dose).then_some("bad")]; }
                                        td { div.fieldmsg data-for=(dose) { @if let Some(m) = at(&dose).or_else(|| at(&from)).or_else(|| at(&format!("profile[{g}].steps[{s}]"))) { (m) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            fieldset {
                legend { "Patient bolus (leave empty for none)" }
                (input("patient_bolus.dose", "Dose", "e.g. 0.25 mg"))
                (input("patient_bolus.lockout", "Lockout", "least time between two, e.g. 2 h"))
                (input("patient_bolus.max_per_day", "Most per day", "e.g. 4"))
            }
        }
    }
}

/// The form's name for the file's field path `field` (`profile[2].steps[3].dose`):
/// the longest mapped prefix replaced.
fn form_name(field: &str, names: &[(String, String)]) -> String {
    names
        .iter()
        .filter(|(file, _)| {
            field == file
                || field
                    .strip_prefix(file.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .max_by_key(|(file, _)| file.len())
        .map_or_else(
            || field.to_string(),
            |(file, form)| format!("{form}{}", &field[file.len()..]),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> ScheduleForm {
        ScheduleForm::from_pairs(
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn weekly(bad_dose: &str) -> ScheduleForm {
        pairs(&[
            ("drug", "ziconotide"),
            ("concentration", "25 µg/mL"),
            ("daily_limit", "4.8 µg/day"),
            ("low_reservoir_alarm", "3 mL"),
            ("mode", "flexible"),
            ("profile[1].days", "mon"),
            ("profile[1].days", "tue"),
            ("profile[1].days", "wed"),
            ("profile[1].days", "thu"),
            ("profile[1].days", "fri"),
            ("profile[1].steps[1].from", "00:00"),
            ("profile[1].steps[1].dose", "2.4 µg/day"),
            ("profile[1].steps[2].from", ""),
            ("profile[1].steps[2].dose", ""),
            ("profile[1].steps[3].from", "08:00"),
            ("profile[1].steps[3].dose", bad_dose),
            ("profile[3].days", "sat"),
            ("profile[3].days", "sun"),
            ("profile[3].steps[1].from", "00:00"),
            ("profile[3].steps[1].dose", "2.4 µg/day"),
        ])
    }

    #[test]
    fn a_weekly_form_is_the_same_prescription_as_its_file() {
        let p = weekly("3.6 µg/day").check().unwrap();
        let file = include_str!("../../../../../examples/schedules/weekday-ziconotide.toml");
        let from_file = schedule::parse("f", file).unwrap();
        // The file has a third step at 20:00; without it the days differ only there.
        assert_eq!(p.drug(), from_file.drug());
        assert_eq!(p.concentration(), from_file.concentration());
        let v = PrescriptionView::new(&p);
        assert_eq!(v.daily_totals_ng[0], 8 * 100 + 16 * 150);
        assert_eq!(v.daily_totals_ng[5], 2_400);
    }

    #[test]
    fn an_error_lands_on_the_input_that_holds_it_though_blank_rows_were_skipped() {
        // The third row of group 1 is the file's second step.
        let e = weekly("3.6").check().unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("profile[1].steps[3].dose"),
            "{e:?}"
        );
        assert!(e.message.contains("unit"), "{}", e.message);
        // A rule broken by a step (above the daily limit) names the step.
        let e = weekly("40 µg/day").check().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("profile[1].steps[3]"), "{e:?}");
        assert!(e.message.contains("daily limit"), "{}", e.message);
        // Group 3 is the file's second profile.
        let mut f = weekly("3.6 µg/day");
        f.fields
            .insert("profile[3].steps[1].from".into(), "25:00".into());
        let e = f.check().unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("profile[3].steps[1].from"),
            "{e:?}"
        );
    }

    #[test]
    fn what_is_typed_stays_a_value() {
        let mut f = weekly("3.6 µg/day");
        f.fields
            .insert("drug".into(), "x\"\nmode = \"stopped".into());
        let (text, _) = f.to_toml().unwrap();
        let back: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(back["mode"].as_str(), Some("flexible"));
        let e = f.check().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("drug"), "{e:?}");
    }

    #[test]
    fn the_form_of_a_prescription_checks_back_to_it() {
        for file in [
            include_str!("../../../../../examples/schedules/weekday-ziconotide.toml"),
            include_str!("../../../../../examples/schedules/continuous-morphine.toml"),
            include_str!("../../../../../examples/schedules/flexible-baclofen-day.toml"),
        ] {
            let p = schedule::parse("f", file).unwrap();
            let f = ScheduleForm::from_view(&PrescriptionView::new(&p));
            assert_eq!(f.check().unwrap(), p);
        }
    }
}
