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

/// Old and new side by side; changed rows are marked with `◀`.
pub fn side_by_side(
    old_title: &str,
    new_title: &str,
    rows: &[ComparisonRow],
) -> std::io::Result<()> {
    let lw = rows.iter().map(|r| width(&r.label)).max().unwrap_or(0);
    let ow = rows
        .iter()
        .flat_map(|r| r.old.iter().map(|l| width(l)))
        .chain([width(old_title)])
        .max()
        .unwrap_or(0);
    outln!("{}  {}  │ {}", pad("", lw), pad(old_title, ow), new_title)?;
    outln!(
        "{}──{}──┼─{}",
        "─".repeat(lw),
        "─".repeat(ow),
        "─".repeat(ow)
    )?;
    for r in rows {
        let n = r.old.len().max(r.new.len()).max(1);
        for i in 0..n {
            let label = if i == 0 { r.label.as_str() } else { "" };
            let old = r.old.get(i).map_or("", |s| s.as_str());
            let new = r.new.get(i).map_or("", |s| s.as_str());
            let mark = if i == 0 && r.changed() {
                "  ◀ changed"
            } else {
                ""
            };
            let line = format!(
                "{}  {}  │ {}{}",
                pad(label, lw),
                pad(old, ow),
                pad(new, ow),
                mark
            );
            outln!("{}", line.trim_end())?;
        }
    }
    Ok(())
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
