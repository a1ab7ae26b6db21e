//! Errors as the clinician reads them: in clinical words, with what to do and the exit
//! code (`main.rs` lists them), as JSON too with `--json`.

use std::process::ExitCode;

use serde::Serialize;
use thecal_host::error::{refusal_words, request_words, ReadBack};
use thecal_host::keys::KeyFileError;
use thecal_host::schedule::ScheduleFileError;
use thecal_host::view::PumpTime;
use thecal_host::Error;
use thecal_protocol::message::Refusal;

use super::{code, NotConfirmed};

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
#[cfg(feature = "serve")]
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
