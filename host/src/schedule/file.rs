//! The TOML shape of a schedule file, with the source position of every field.
//!
//! Only the shape is checked here (field names, types); the values are strings parsed by
//! [`crate::quantity`] and checked in [`super::convert`].

use serde::Deserialize;
use toml::Spanned;

/// A schedule file. Unknown fields are refused, so a misspelt field is an error with its
/// line, not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileToml {
    pub drug: Spanned<String>,
    pub concentration: Spanned<String>,
    pub daily_limit: Spanned<String>,
    pub low_reservoir_alarm: Spanned<String>,
    pub mode: Spanned<String>,
    /// `continuous`: the dose per day.
    pub dose: Option<Spanned<String>>,
    /// `flexible`, same every day: the steps.
    pub steps: Option<Spanned<Vec<Spanned<StepToml>>>>,
    /// `flexible`, by weekday: `[[profile]]` tables.
    pub profile: Option<Spanned<Vec<Spanned<ProfileToml>>>>,
    pub patient_bolus: Option<Spanned<PatientBolusToml>>,
}

/// One step: `{ from = "07:00", dose = "3.6 mg/day" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepToml {
    pub from: Spanned<String>,
    pub dose: Spanned<String>,
}

/// A day profile for the listed weekdays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileToml {
    pub days: Spanned<Vec<Spanned<String>>>,
    pub steps: Spanned<Vec<Spanned<StepToml>>>,
}

/// `[patient_bolus]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatientBolusToml {
    pub dose: Spanned<String>,
    pub lockout: Spanned<String>,
    pub max_per_day: Spanned<i64>,
}
