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
    /// The file is larger than any schedule.
    #[error("{file}: larger than {} KiB, so not a schedule file", max / 1024)]
    TooLarge {
        /// Path.
        file: String,
        /// The largest accepted, bytes.
        max: u64,
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
            ScheduleFileError::Read { .. } | ScheduleFileError::TooLarge { .. } => None,
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

/// The largest schedule file read: a prescription of seven day profiles of 48 steps
/// each is under 20 KiB; anything larger is not a schedule.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Reads and validates a schedule file (at most [`MAX_FILE_BYTES`], UTF-8 text).
pub fn load(path: &Path) -> Result<Prescription, ScheduleFileError> {
    use std::io::Read as _;
    let file = path.display().to_string();
    let read_error = |source| ScheduleFileError::Read {
        file: file.clone(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ScheduleFileError::TooLarge {
            file,
            max: MAX_FILE_BYTES,
        });
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Err(not_utf8(&file, e.as_bytes(), e.utf8_error())),
    };
    parse(&file, &text)
}

/// Where the first byte that is not UTF-8 is: line, column, byte offset.
fn not_utf8(file: &str, bytes: &[u8], e: std::str::Utf8Error) -> ScheduleFileError {
    let at = e.valid_up_to();
    let valid = std::str::from_utf8(bytes.get(..at).unwrap_or(&[])).unwrap_or("");
    let (line, column, _) = position(valid, at);
    let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
    let rest = bytes.get(line_start..).unwrap_or(&[]);
    let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let source_line = String::from_utf8_lossy(rest.get(..end).unwrap_or(&[])).into_owned();
    let byte = bytes.get(at).copied().unwrap_or(0);
    ScheduleFileError::Invalid(Box::new(Invalid {
        file: file.to_string(),
        line,
        column,
        field: None,
        message: format!(
            "the file is not UTF-8 text: byte 0x{byte:02X} at byte offset {at} (shown as �); \
             save it as UTF-8 (write µ as µ, or as u: \"50 ug\")"
        ),
        rule: None,
        source_line,
    }))
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
        let message = e.message().trim();
        if message.starts_with("invalid type") {
            let field = field_at(text, span.start);
            let hint = type_hint(message, field.as_deref());
            return invalid(span, field, hint, None);
        }
        let field = field_of_toml_error(message, text, span.start);
        invalid(span, field, message.to_string(), None)
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

/// The path of the value at byte `offset`: `steps[2].dose`, `profile[1].days[3]`
/// (indices from 1).
fn field_at(text: &str, offset: usize) -> Option<String> {
    let table = toml::de::DeTable::parse(text).ok()?;
    table_path(table.get_ref(), offset)
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || span.start == offset
}

/// Within a table (whose span may be its header only): the key whose value holds
/// `offset`.
fn table_path(table: &toml::de::DeTable<'_>, offset: usize) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let rest = value_path(value, offset)?;
        Some(format!("{}{rest}", key.get_ref()))
    })
}

/// `""` for the value itself, `[2].dose` inside it; `None` if `offset` is elsewhere.
fn value_path(value: &toml::Spanned<toml::de::DeValue<'_>>, offset: usize) -> Option<String> {
    match value.get_ref() {
        toml::de::DeValue::Table(t) => table_path(t, offset).map(|p| format!(".{p}")),
        toml::de::DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            value_path(item, offset).map(|rest| format!("[{}]{rest}", i + 1))
        }),
        _ => covers(&value.span(), offset).then(String::new),
    }
}

/// A type error in a clinician's words, with the fix: quantities and times are quoted
/// text with their unit, counts are bare whole numbers.
fn type_hint(message: &str, field: Option<&str>) -> String {
    let found = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split(", expected").next())
        .unwrap_or("a value");
    let name = field
        .and_then(|f| f.rsplit('.').next())
        .map(|n| n.split('[').next().unwrap_or(n))
        .unwrap_or("");
    let example = match name {
        "dose" if field.is_some_and(|f| f.starts_with("patient_bolus")) => "\"25 µg\"",
        "dose" | "daily_limit" => "\"250 µg/day\"",
        "concentration" => "\"500 µg/mL\"",
        "low_reservoir_alarm" => "\"2 mL\"",
        "lockout" => "\"2 h\"",
        "from" => "\"07:00\"",
        "drug" => "\"baclofen\"",
        "mode" => "\"continuous\"",
        "days" => "[\"monday\", \"weekend\"]",
        _ => "",
    };
    if message.ends_with("expected i64") || message.ends_with("expected an integer") {
        return format!(
            "{found} is not a whole number: write a count without quotes, e.g. {name} = 4"
        );
    }
    if example.is_empty() {
        format!("{found} is not the kind of value this field takes")
    } else {
        format!("{found} is not text: write it in quotes with its unit, e.g. {name} = {example}")
    }
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
