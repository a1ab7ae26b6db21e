//! Printing: aligned tables for people, JSON for scripts, errors with exit codes, and
//! confirmation prompts.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use thecal_host::error::{refusal_words, request_words, ReadBack};
use thecal_host::keys::KeyFileError;
use thecal_host::schedule::ScheduleFileError;
use thecal_host::view::{ComparisonRow, PumpTime};
use thecal_host::Error;
use thecal_protocol::message::{Refusal, Role};

/// Exit codes (documented in the README).
pub mod code {
    /// Bad input: arguments or a schedule file.
    pub const INVALID_INPUT: u8 = 2;
    /// The pump refused; nothing changed.
    pub const REFUSED: u8 = 3;
    /// No answer (timeout) or the link failed.
    pub const NO_ANSWER: u8 = 4;
    /// A therapy change may or may not have happened.
    pub const UNCERTAIN: u8 = 5;
    /// Protocol mismatch, unexpected answer, or read-back mismatch.
    pub const MISMATCH: u8 = 6;
    /// The clinician did not confirm.
    pub const NOT_CONFIRMED: u8 = 7;
    /// No session: wrong key, locked out, session expired and not renewed, pump not
    /// provisioned.
    pub const AUTHENTICATION: u8 = 8;
}

/// The clinician declined (or could not be asked).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotConfirmed(pub String);

/// `println!` that returns the write error instead of panicking, so `thecal … | head`
/// ends quietly (see [`report_error`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` that returns the write error.
macro_rules! outw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    outln!("{text}")?;
    Ok(())
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(s))));
    out
}

/// `key   value` lines with aligned values; a value may span several lines.
pub fn fields(rows: &[(&str, String)]) -> std::io::Result<()> {
    let w = rows.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    for (k, v) in rows {
        let mut lines = v.lines();
        outln!("{}  {}", pad(k, w), lines.next().unwrap_or(""))?;
        for more in lines {
            outln!("{}  {more}", pad("", w))?;
        }
    }
    Ok(())
}

/// Key files, one row per role: `clinician  /path/SERIAL.clinician.key`.
pub fn key_files(files: &[(Role, PathBuf)]) -> std::io::Result<()> {
    let rows: Vec<(&str, String)> = files
        .iter()
        .map(|(r, p)| (r.name(), p.display().to_string()))
        .collect();
    fields(&rows)
}

/// A table with a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| pad(c, *w)).collect();
        outln!("{}", text.join("  ").trim_end())
    };
    line(headers.iter().map(|h| h.to_string()).collect())?;
    line(widths.iter().map(|w| "─".repeat(*w)).collect())?;
    for row in rows {
        line(row.clone())?;
    }
    Ok(())
}

/// The width of the terminal the output goes to: `COLUMNS` if it is set to a number,
/// else the width of the terminal on stdout, else 80 (a pipe or a file).
fn terminal_columns() -> usize {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0);
    from_env
        .or_else(|| {
            console::Term::stdout()
                .size_checked()
                .map(|(_, cols)| usize::from(cols))
        })
        .unwrap_or(80)
}

/// Old and new side by side; changed rows are marked with `◀`. When the terminal is too
/// narrow for the two columns, each row is stacked instead: its label, then its
/// `in force:` and `new:` lines (see [`comparison_lines`]).
pub fn side_by_side(
    old_title: &str,
    new_title: &str,
    rows: &[ComparisonRow],
) -> std::io::Result<()> {
    for line in comparison_lines(old_title, new_title, rows, terminal_columns()) {
        outln!("{line}")?;
    }
    Ok(())
}

const CHANGED: &str = "  ◀ changed";

/// The comparison as lines of at most `columns` characters where the text allows: two
/// columns if they fit, else stacked. A value is never cut: a line too long for the
/// terminal is wrapped between words, never inside a quantity (`220 µg/day` stays on
/// one line), and a single word longer than the line is printed whole.
fn comparison_lines(
    old_title: &str,
    new_title: &str,
    rows: &[ComparisonRow],
    columns: usize,
) -> Vec<String> {
    let wide = two_columns(old_title, new_title, rows);
    if wide.iter().all(|l| width(l) <= columns) {
        wide
    } else {
        stacked(old_title, new_title, rows, columns)
    }
}

fn two_columns(old_title: &str, new_title: &str, rows: &[ComparisonRow]) -> Vec<String> {
    let column = |title: &str, lines: &dyn Fn(&ComparisonRow) -> &[String]| {
        rows.iter()
            .flat_map(|r| lines(r).iter().map(|l| width(l)))
            .chain([width(title)])
            .max()
            .unwrap_or(0)
    };
    let lw = rows.iter().map(|r| width(&r.label)).max().unwrap_or(0);
    let ow = column(old_title, &|r| &r.old);
    let nw = column(new_title, &|r| &r.new);
    let mut out = vec![
        format!("{}  {}  │ {}", pad("", lw), pad(old_title, ow), new_title)
            .trim_end()
            .to_string(),
        format!(
            "{}──{}──┼─{}",
            "─".repeat(lw),
            "─".repeat(ow),
            "─".repeat(nw)
        ),
    ];
    for r in rows {
        let n = r.old.len().max(r.new.len()).max(1);
        for i in 0..n {
            let label = if i == 0 { r.label.as_str() } else { "" };
            let old = r.old.get(i).map_or("", |s| s.as_str());
            let new = r.new.get(i).map_or("", |s| s.as_str());
            let mark = if i == 0 && r.changed() { CHANGED } else { "" };
            let line = format!(
                "{}  {}  │ {}{}",
                pad(label, lw),
                pad(old, ow),
                pad(new, nw),
                mark
            );
            out.push(line.trim_end().to_string());
        }
    }
    out
}

/// The short name of a column title: `in force (revision 3)` → `in force`.
fn short_title(title: &str) -> &str {
    title.split(" (").next().unwrap_or(title).trim()
}

fn stacked(
    old_title: &str,
    new_title: &str,
    rows: &[ComparisonRow],
    columns: usize,
) -> Vec<String> {
    let names = [short_title(old_title), short_title(new_title)];
    let name_w = names.iter().map(|n| width(n)).max().unwrap_or(0) + 1;
    let indent = 2 + name_w + 1;
    let heading = format!("{old_title} │ {new_title}");
    let mut out = vec![heading.clone(), "─".repeat(width(&heading).min(columns))];
    // A row whose label is indented belongs to the one above (`  with every allowed
    // bolus` under `Low-reservoir alarm date`): stacked, it says whose it is.
    let mut parent = "";
    for r in rows {
        let mark = if r.changed() { CHANGED } else { "" };
        let own = r.label.trim_start();
        let label = if own.len() == r.label.len() || parent.is_empty() {
            parent = r.label.as_str();
            own.to_string()
        } else {
            format!("{parent}, {own}")
        };
        let mut pieces = wrap(&label, columns);
        match pieces.last_mut() {
            Some(last) if width(last) + width(mark) <= columns => last.push_str(mark),
            _ if !mark.is_empty() => pieces.push(mark.trim_start().to_string()),
            _ => {}
        }
        out.extend(pieces);
        for (name, lines) in names.iter().zip([&r.old, &r.new]) {
            let mut prefix = format!("  {}", pad(&format!("{name}:"), name_w));
            if lines.is_empty() {
                out.push(format!("{prefix} (none)"));
            }
            for line in lines.iter() {
                for part in wrap(line, columns.saturating_sub(indent)) {
                    out.push(format!("{prefix} {part}").trim_end().to_string());
                    prefix = " ".repeat(indent - 1);
                }
            }
        }
    }
    out
}

/// `text` in pieces of at most `max` characters, broken only at spaces, and never at
/// the single space after a digit (a number keeps its unit: `220 µg/day`, `in 40 days`);
/// the spacing inside a piece is kept, and a piece that cannot be broken is kept whole,
/// however long.
fn wrap(text: &str, max: usize) -> Vec<String> {
    if width(text) <= max {
        return vec![text.to_string()];
    }
    // (spaces before, word) pairs; a word may hold the unbreakable spaces.
    let chars: Vec<char> = text.chars().collect();
    let mut words: Vec<(String, String)> = Vec::new();
    let (mut gap, mut word) = (String::new(), String::new());
    for (i, c) in chars.iter().enumerate() {
        let after_digit = i
            .checked_sub(1)
            .and_then(|p| chars.get(p))
            .is_some_and(char::is_ascii_digit);
        let single = chars.get(i + 1).is_some_and(|n| *n != ' ');
        if *c == ' ' && !(after_digit && single) {
            if !word.is_empty() {
                words.push((std::mem::take(&mut gap), std::mem::take(&mut word)));
            }
            gap.push(' ');
        } else {
            word.push(*c);
        }
    }
    if !word.is_empty() {
        words.push((gap, word));
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for (gap, w) in words {
        if line.is_empty() {
            line = w;
        } else if width(&line) + width(&gap) + width(&w) > max {
            lines.push(std::mem::replace(&mut line, w));
        } else {
            line.push_str(&gap);
            line.push_str(&w);
        }
    }
    lines.push(line);
    lines
}

/// Asks `question` unless `yes`. Refuses (never waits) when stdin is not a terminal.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(NotConfirmed(format!(
            "not confirmed: stdin is not a terminal, so nobody can answer \"{question}\"; \
             pass --yes to confirm non-interactively"
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(NotConfirmed("not confirmed: nothing was sent".into()).into())
    }
}

/// `(exit code, kind)` of an error.
fn classify(e: &anyhow::Error) -> (u8, &'static str) {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<Error>() {
            return match err {
                Error::Refused { .. } => (code::REFUSED, "refused"),
                Error::Timeout { .. } => (code::NO_ANSWER, "timeout"),
                Error::Io(_) | Error::Port { .. } => (code::NO_ANSWER, "link"),
                Error::Uncertain { .. } => (code::UNCERTAIN, "uncertain"),
                Error::Invalid(_) => (code::INVALID_INPUT, "invalid_prescription"),
                Error::Incompatible { .. } | Error::OtherProtocol { .. } => {
                    (code::MISMATCH, "protocol_mismatch")
                }
                Error::VerifyFailed { .. } => (code::MISMATCH, "verify_failed"),
                Error::UnexpectedResponse { .. } | Error::Decode { .. } => {
                    (code::MISMATCH, "unexpected_response")
                }
                Error::PumpNotAuthenticated { .. } | Error::AuthenticationFailed { .. } => {
                    (code::AUTHENTICATION, "authentication_failed")
                }
                Error::Busy => (code::NO_ANSWER, "busy"),
                Error::PresenceRequired => (code::AUTHENTICATION, "presence_required"),
                Error::SessionExpired { .. } => (code::AUTHENTICATION, "session_expired"),
                Error::NotProvisioned => (code::AUTHENTICATION, "not_provisioned"),
                Error::NotPermitted { .. } => (code::REFUSED, "not_permitted"),
                Error::AlreadyProvisioned => (code::REFUSED, "already_provisioned"),
                Error::StaleKey { .. } | Error::KeyFile(KeyFileError::StaleEpoch { .. }) => {
                    (code::AUTHENTICATION, "stale_key")
                }
                Error::ProvisionNotConfirmed => (code::AUTHENTICATION, "provision_not_confirmed"),
                Error::KeyFile(_) => (code::INVALID_INPUT, "key_file"),
                _ => (1, "error"),
            };
        }
        match cause.downcast_ref::<KeyFileError>() {
            Some(KeyFileError::StaleEpoch { .. }) => return (code::AUTHENTICATION, "stale_key"),
            Some(_) => return (code::INVALID_INPUT, "key_file"),
            None => {}
        }
        if cause.downcast_ref::<ScheduleFileError>().is_some() {
            return (code::INVALID_INPUT, "invalid_schedule");
        }
        if cause.downcast_ref::<NotConfirmed>().is_some() {
            return (code::NOT_CONFIRMED, "not_confirmed");
        }
        if cause.downcast_ref::<crate::usage::UsageError>().is_some() {
            return (code::INVALID_INPUT, "usage");
        }
        #[cfg(feature = "records")]
        if cause
            .downcast_ref::<thecal_host::records::RecordsError>()
            .is_some()
        {
            return (1, "records");
        }
    }
    (1, "error")
}

/// What to do next, where the error alone does not say how with this program's
/// commands: a refusal whose reason needs a refill, an outcome to read back.
fn hint(e: &anyhow::Error) -> Option<String> {
    let err = e.chain().find_map(|c| c.downcast_ref::<Error>())?;
    if let Error::Uncertain { read_back, .. } = err {
        return Some(read_back_commands(read_back));
    }
    match err.refusal()? {
        Refusal::DrugChangeNeedsRefill => Some(
            "the pump derives every flow from the concentration, so the drug or concentration \
             changes only with a refill, when the reservoir holds the new solution: record it \
             with `thecal refill --volume V --schedule FILE` (the whole prescription for the \
             new solution); the prescription in force is unchanged"
                .to_string(),
        ),
        _ => None,
    }
}

/// The commands that read back what an unanswered change may have done.
fn read_back_commands(read_back: &ReadBack) -> String {
    match read_back {
        ReadBack::Prescription { expected } => format!(
            "run `thecal prescription`: a revision above {} means the new schedule is in \
             force, otherwise the previous one still is",
            expected.0
        ),
        ReadBack::Refill {
            expected,
            with_prescription: false,
        } => format!(
            "run `thecal reservoir` (last refill time and volume) and `thecal prescription` \
             (revision {} read before) to see whether the refill was recorded",
            expected.0
        ),
        ReadBack::Refill {
            expected,
            with_prescription: true,
        } => format!(
            "run `thecal prescription` (a revision above {} means the new prescription is \
             stored) and `thecal reservoir` (last refill time, volume, drug and \
             concentration) to see whether the refill was recorded",
            expected.0
        ),
        ReadBack::Bolus => "run `thecal status` (a running bolus, delivered in 24 h) and \
             `thecal log` before giving another bolus"
            .to_string(),
        ReadBack::TherapyState => {
            "run `thecal status` to see whether therapy is running or stopped".to_string()
        }
        ReadBack::Clock => "run `thecal status` to see the pump clock".to_string(),
        ReadBack::KeyEpoch { role, epoch } => format!(
            "run `thecal info`: if the {} key is at epoch {epoch} the new key is in force \
             (the next session-opening command settles the key file)",
            role.name()
        ),
        _ => "run `thecal status`".to_string(),
    }
}

/// The error in clinical words, and what to do about it when there is something to
/// say (the programmer's screens show the same text as the command line).
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub fn message(e: &anyhow::Error, time: Option<&PumpTime>) -> String {
    match hint(e) {
        Some(h) => format!("{}\n{h}", render(e, time)),
        None => render(e, time),
    }
}

/// The error and its causes as one message, `outer: inner`: a refusal in clinical words
/// with its times in the patient's local time (`time`), and the operating system's
/// reason once, not again after the message that already tells it.
fn render(e: &anyhow::Error, time: Option<&PumpTime>) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = match cause.downcast_ref::<Error>() {
            Some(Error::Refused { request, refusal }) => format!(
                "the pump refused {}: {}",
                request_words(request),
                refusal_words(refusal, time)
            ),
            _ => cause.to_string(),
        };
        let part = without_os_codes(&part);
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
        // The library's errors already tell their cause in their own words.
        if cause.downcast_ref::<Error>().is_some()
            || cause.downcast_ref::<ScheduleFileError>().is_some()
            || is_records_error(cause)
        {
            break;
        }
    }
    text
}

/// Whether `cause` is an error of the session records (its message tells its cause).
fn is_records_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "records")]
    if cause
        .downcast_ref::<thecal_host::records::RecordsError>()
        .is_some()
    {
        return true;
    }
    let _ = cause;
    false
}

/// `No such file or directory (os error 2)` → `No such file or directory`: the number
/// is for programmers.
fn without_os_codes(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        let after = rest.get(at + " (os error ".len()..).unwrap_or("");
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        out.push_str(rest.get(..at).unwrap_or(""));
        if digits > 0 && after.get(digits..).is_some_and(|s| s.starts_with(')')) {
            rest = after.get(digits + 1..).unwrap_or("");
        } else {
            out.push_str(" (os error ");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    kind: &'a str,
    exit_code: u8,
    message: String,
    /// A command line refused: why (`invalid_value`, `unknown_argument`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// A command line refused: the argument at fault (`--dose <DOSE>`), if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    argument: Option<String>,
}

/// A command line the parser refused (exit code 2). With `--json` among the arguments,
/// also the JSON error document on stdout: kind `usage`, a `reason` code and the
/// `argument` at fault. Help and version are printed as asked.
pub fn argument_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ErrorKind};
    let reason = match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8 => {
            "invalid_value"
        }
        ErrorKind::UnknownArgument => "unknown_argument",
        ErrorKind::InvalidSubcommand => "unknown_command",
        ErrorKind::MissingRequiredArgument => "missing_argument",
        ErrorKind::MissingSubcommand => "missing_command",
        ErrorKind::ArgumentConflict => "conflicting_arguments",
        ErrorKind::NoEquals
        | ErrorKind::TooManyValues
        | ErrorKind::TooFewValues
        | ErrorKind::WrongNumberOfValues => "wrong_number_of_values",
        _ => "invalid_arguments",
    };
    if std::env::args().any(|a| a == "--json") {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        let body = ErrorJson {
            error: ErrorBody {
                kind: "usage",
                exit_code: 2,
                message: first.strip_prefix("error: ").unwrap_or(first).to_string(),
                reason: Some(reason),
                argument: e.get(ContextKind::InvalidArg).map(|a| a.to_string()),
            },
        };
        if let Ok(text) = serde_json::to_string_pretty(&body) {
            let _ = outln!("{text}");
        }
    }
    let _ = e.print();
    ExitCode::from(2)
}

/// Prints `e` (as JSON on stdout with `--json`, else on stderr) and returns its exit
/// code.
pub fn report_error(e: &anyhow::Error, json_out: bool, time: Option<&PumpTime>) -> ExitCode {
    // The reader of our output went away (`thecal log | head`): nothing to report.
    let broken_pipe = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let (code, kind) = classify(e);
    let text = render(e, time);
    let message = match hint(e) {
        Some(hint) => format!("{text}\nhint: {hint}"),
        None => text,
    };
    if json_out {
        let body = ErrorJson {
            error: ErrorBody {
                kind,
                exit_code: code,
                message: message.clone(),
                reason: None,
                argument: None,
            },
        };
        if let Ok(text) = serde_json::to_string_pretty(&body) {
            let _ = outln!("{text}");
        }
    }
    eprintln!("error: {message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_host::error::UncertainCause;
    use thecal_protocol::message::Revision;

    fn row(label: &str, old: &[&str], new: &[&str]) -> ComparisonRow {
        ComparisonRow {
            label: label.into(),
            old: old.iter().map(|s| s.to_string()).collect(),
            new: new.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn review_rows() -> Vec<ComparisonRow> {
        vec![
            row("Drug", &["baclofen"], &["ziconotide"]),
            row(
                "Steps (Mon–Fri)",
                &[
                    "00:00  220 µg/day  (0.44 mL/day)",
                    "07:00  160 µg/day  (0.32 mL/day)",
                ],
                &["00:00  2.4 µg/day  (0.096 mL/day)"],
            ),
            row(
                "Patient bolus",
                &["25 µg per bolus, lockout 2 h, at most 4 per 24 h"],
                &["not allowed"],
            ),
            row("Mode", &["flexible"], &["flexible"]),
            row("Alarm date", &["Monday"], &["Tuesday"]),
            row("  with every allowed bolus", &["Sunday"], &["Monday"]),
        ]
    }

    #[test]
    fn the_review_keeps_two_columns_when_they_fit_and_stacks_them_when_not() {
        let rows = review_rows();
        let wide = comparison_lines("in force (revision 1)", "new", &rows, 200);
        assert!(wide.iter().any(|l| l.contains("│ ziconotide")), "{wide:#?}");
        // The new column is as wide as its own longest line (the ruler too).
        let ruler = wide.get(1).unwrap();
        let longest = wide.iter().map(|l| width(l)).max().unwrap();
        assert!(width(ruler) <= longest, "{wide:#?}");
        let narrow = comparison_lines("in force (revision 1)", "new", &rows, 80);
        assert!(narrow.iter().all(|l| width(l) <= 80), "{narrow:#?}");
        let text = narrow.join("\n");
        for needle in [
            "Drug  ◀ changed\n  in force: baclofen\n  new:      ziconotide",
            "  in force: 00:00  220 µg/day  (0.44 mL/day)\n            07:00  160 µg/day",
            "  new:      00:00  2.4 µg/day  (0.096 mL/day)",
            "Mode\n  in force: flexible\n  new:      flexible",
            "Alarm date, with every allowed bolus  ◀ changed\n  in force: Sunday",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
    }

    #[test]
    fn a_long_value_wraps_between_words_never_inside_a_quantity() {
        let rows = review_rows();
        let lines = comparison_lines("in force (revision 1)", "new", &rows, 40);
        let text = lines.join("\n");
        assert!(lines.iter().all(|l| width(l) <= 40), "{text}");
        for kept in ["25 µg", "2 h", "4 per", "24 h", "220 µg/day", "0.44 mL/day"] {
            assert!(text.contains(kept), "{kept:?} split:\n{text}");
        }
        // Narrower than a word: the word is printed whole, not cut.
        assert_eq!(wrap("0.096 mL/day", 3), vec!["0.096 mL/day".to_string()]);
        assert_eq!(
            wrap("00:00  2.4 µg/day  (0.096 mL/day)", 16),
            vec!["00:00", "2.4 µg/day", "(0.096 mL/day)"]
        );
        assert_eq!(wrap("short", 80), vec!["short"]);
    }

    #[test]
    fn a_drug_change_refusal_says_to_refill_with_the_schedule() {
        let refused = anyhow::Error::new(Error::Refused {
            request: "WritePrescription",
            refusal: Refusal::DrugChangeNeedsRefill,
        })
        .context("the new prescription was not confirmed in force");
        assert_eq!(classify(&refused), (code::REFUSED, "refused"));
        let h = hint(&refused).expect("a hint");
        assert!(
            h.contains("thecal refill --volume V --schedule FILE"),
            "{h}"
        );
        let other = anyhow::Error::new(Error::Refused {
            request: "WritePrescription",
            refusal: Refusal::BolusInProgress,
        });
        assert_eq!(hint(&other), None);
    }

    #[test]
    fn an_os_reason_is_told_once_without_its_number() {
        let io = std::io::Error::from_raw_os_error(2);
        let e = anyhow::Error::new(ScheduleFileError::Read {
            file: "x.toml".into(),
            source: io,
        });
        assert_eq!(
            render(&e, None),
            "x.toml: cannot read the schedule: No such file or directory"
        );
        let wrapped =
            anyhow::Error::new(std::io::Error::from_raw_os_error(2)).context("reading x.key");
        assert_eq!(
            render(&wrapped, None),
            "reading x.key: No such file or directory"
        );
        assert_eq!(without_os_codes("a (os error x) b"), "a (os error x) b");
    }

    #[test]
    fn an_uncertain_change_names_the_commands_that_read_it_back() {
        let uncertain = anyhow::Error::new(Error::Uncertain {
            request: "WritePrescription",
            attempts: 3,
            cause: UncertainCause::Unanswered,
            read_back: ReadBack::Prescription {
                expected: Revision(4),
            },
        });
        assert_eq!(classify(&uncertain), (code::UNCERTAIN, "uncertain"));
        let h = hint(&uncertain).expect("a hint");
        assert!(h.contains("`thecal prescription`"), "{h}");
        assert!(h.contains("above 4"), "{h}");
        let bolus = read_back_commands(&ReadBack::Bolus);
        assert!(bolus.contains("`thecal status`") && bolus.contains("`thecal log`"));
        let refill = read_back_commands(&ReadBack::Refill {
            expected: Revision(2),
            with_prescription: true,
        });
        assert!(refill.contains("`thecal reservoir`"), "{refill}");
    }
}
