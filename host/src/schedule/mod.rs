//! Schedule files: the clinician-facing TOML format for a prescription.
//!
//! [`load`] and [`parse`] turn a file into a validated [`Prescription`] — shape, units,
//! and then every rule of [`thecal_protocol::rules`] — or a [`ScheduleFileError`] naming
//! the file, line, column and field, so a bad file is rejected before any byte is sent.
//! [`to_toml`] writes a prescription back in the same format (used to export the
//! prescription in force). The format is documented field by field in the README
//! ("Schedule files"); an example:
//!
//! ```toml
//! drug = "morphine"
//! concentration = "25 mg/mL"
//! daily_limit = "6 mg/day"
//! low_reservoir_alarm = "2 mL"
//! mode = "flexible"
//! steps = [
//!   { from = "00:00", dose = "2.4 mg/day" },
//!   { from = "07:00", dose = "3.6 mg/day" },
//! ]
//! ```

mod convert;
mod export;
mod file;

use std::fmt;
use std::ops::Range;
use std::path::Path;

use thecal_protocol::prescription::Prescription;
use thecal_protocol::rules::ScheduleError;

pub use export::to_toml;

/// Why a schedule file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleFileError {
    /// The file could not be read.
    #[error("{file}: cannot read the schedule: {source}")]
    Read {
        /// Path.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid schedule.
    #[error("{0}")]
    Invalid(Box<Invalid>),
}

impl ScheduleFileError {
    /// Details of an invalid file.
    pub fn invalid(&self) -> Option<&Invalid> {
        match self {
            ScheduleFileError::Invalid(i) => Some(i),
            ScheduleFileError::Read { .. } => None,
        }
    }
}

/// Where a schedule file is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// File name as given.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column (characters), from 1.
    pub column: usize,
    /// Field path, e.g. `profile[2].steps[3].dose` (indices from 1), if known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The prescription rule broken, when the file was well-formed but unsafe.
    pub rule: Option<ScheduleError>,
    /// The offending source line.
    pub source_line: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(
            f,
            "{}\n{:>5} | {}",
            self.message, self.line, self.source_line
        )
    }
}

impl std::error::Error for Invalid {}

/// Reads and validates a schedule file.
pub fn load(path: &Path) -> Result<Prescription, ScheduleFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScheduleFileError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

/// Parses and validates schedule `text`; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Prescription, ScheduleFileError> {
    let invalid = |span: Range<usize>, field: Option<String>, message: String, rule| {
        let (line, column, source_line) = position(text, span.start);
        ScheduleFileError::Invalid(Box::new(Invalid {
            file: file.to_string(),
            line,
            column,
            field,
            message,
            rule,
            source_line,
        }))
    };
    let shape: file::FileToml = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let field = field_of_toml_error(e.message(), text, span.start);
        invalid(span, field, e.message().trim().to_string(), None)
    })?;
    let (draft, sources) =
        convert::to_draft(&shape).map_err(|e| invalid(e.span, Some(e.field), e.message, None))?;
    Prescription::new(draft).map_err(|rule| {
        let (span, field) = convert::locate(&rule, &sources);
        invalid(
            span,
            Some(field),
            crate::error::rule_words(&rule),
            Some(rule),
        )
    })
}

/// Line and column (from 1) of byte `offset`, and that line's text.
fn position(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text
        .get(line_start..offset)
        .map_or(0, |s| s.chars().count())
        + 1;
    let source_line = text
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("")
        .to_string();
    (line, column, source_line)
}

/// The field a TOML error concerns: a name quoted in the message (`missing field
/// `dose``), else the key on the error's line.
fn field_of_toml_error(message: &str, text: &str, offset: usize) -> Option<String> {
    let quoted = message.split('`').nth(1).filter(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    });
    if let Some(name) = quoted {
        return Some(name.to_string());
    }
    let (_, _, line) = position(text, offset);
    let key = line.split_once('=')?.0.trim();
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_string())
}

#[cfg(test)]
mod tests;
