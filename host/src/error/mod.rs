//! What can go wrong talking to a pump, told apart so a clinician knows what to do next.

use std::time::Duration;

use thecal_protocol::frame::{BodyError, EncodeError};
use thecal_protocol::message::{Refusal, Request, Revision, Role};
use thecal_protocol::rules::ScheduleError;

use crate::keys::KeyFileError;

mod words;

#[cfg(feature = "serial")]
pub(crate) use words::port_words;
pub use words::{quantity_words, refusal_words, request_words, rule_words};

/// The longest bolus the pump gives and its fastest bolus flow (the contract's limits).
pub use thecal_protocol::rules::{MAX_BOLUS_DURATION, MAX_BOLUS_FLOW};

/// An error from [`crate::Client`]. Each variant says what the clinician should do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pump answered and refused; nothing changed on the pump.
    #[error(
        "the pump refused {}: {}",
        request_words(request),
        refusal_words(refusal, None)
    )]
    Refused {
        /// Request name.
        request: &'static str,
        /// The pump's reason.
        refusal: Refusal,
    },
    /// A read-only request got no answer after every retry. Nothing was changed.
    #[error(
        "no answer from the pump to {} after {attempts} attempts ({} each); \
         check the port, the telemetry head position and that the pump is awake",
        request_words(request),
        fmt_duration(*timeout)
    )]
    Timeout {
        /// Request name.
        request: &'static str,
        /// Attempts made (first try plus retries).
        attempts: u32,
        /// Timeout of each attempt.
        timeout: Duration,
    },
    /// A therapy-changing request was sent but no answer came back: the pump may or
    /// may not have carried it out. `read_back` says what to read to find out before
    /// trying again (a program renders it in its own words, with its own commands).
    #[error(
        "OUTCOME UNCERTAIN: {} was sent ({attempts} attempts) and {cause}; the pump \
         may or may not have carried it out. Before repeating it, {read_back}",
        request_words(request)
    )]
    Uncertain {
        /// Request name.
        request: &'static str,
        /// Attempts made.
        attempts: u32,
        /// Why no answer settles it.
        cause: UncertainCause,
        /// What to read back to learn the outcome.
        read_back: ReadBack,
    },
    /// The pump answered with a message that does not answer the request.
    #[error(
        "the pump's answer to {} was an answer to another request; protocol mismatch? \
         (run with -v to see the link traffic)",
        request_words(request)
    )]
    UnexpectedResponse {
        /// Request name.
        request: &'static str,
        /// Answer name.
        got: &'static str,
    },
    /// A frame for this request arrived intact but its body did not decode: the pump
    /// speaks another revision of the messages.
    #[error(
        "the answer to {} does not decode ({source}); protocol mismatch?",
        request_words(request)
    )]
    Decode {
        /// Request name.
        request: &'static str,
        /// Why.
        source: BodyError,
    },
    /// Intact frames came back in another protocol version (their version byte), and
    /// nothing this programmer can read: the pump's firmware speaks another protocol.
    #[error(
        "protocol mismatch: no answer to {} this programmer can read; the pump answers \
         in protocol {pump_protocol} frames, this programmer speaks protocol {host_protocol}; \
         use a programmer built for this pump's firmware",
        request_words(request)
    )]
    OtherProtocol {
        /// Request name.
        request: &'static str,
        /// The version byte of the pump's frames.
        pump_protocol: u8,
        /// Ours.
        host_protocol: u8,
    },
    /// The pump speaks another protocol version or message schema; nothing is sent
    /// beyond identification.
    #[error(
        "protocol mismatch: the pump speaks protocol {pump_protocol} with schema {pump_schema:#010x}, \
         this programmer speaks protocol {host_protocol} with schema {host_schema:#010x}; \
         use a programmer built for this pump's firmware"
    )]
    Incompatible {
        /// Pump's protocol version.
        pump_protocol: u8,
        /// Pump's schema hash.
        pump_schema: u32,
        /// Ours.
        host_protocol: u8,
        /// Ours.
        host_schema: u32,
    },
    /// The prescription breaks a rule; it was not sent.
    #[error("prescription not sent: {}", rule_words(.0))]
    Invalid(ScheduleError),
    /// A write was accepted but reading it back did not return what was written.
    #[error(
        "read-back mismatch after writing revision {written}: the pump reports revision {read} \
         with a different prescription; read the prescription and check it by hand"
    )]
    VerifyFailed {
        /// Revision the pump said it stored.
        written: u32,
        /// Revision read back.
        read: u32,
    },
    /// A request could not be encoded (a bug or an oversize message).
    #[error("request could not be encoded: {0}")]
    Encode(EncodeError),
    /// The link failed (the port vanished, the pty closed).
    #[error("link I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The serial port could not be opened or configured.
    #[cfg(feature = "serial")]
    #[error("{}", port_words(path, source))]
    Port {
        /// Port path.
        path: String,
        /// Why.
        source: tokio_serial::Error,
    },
    /// The pump's handshake proof did not verify with the role key: the key is wrong, or
    /// the device is not the pump the key is for (or not a genuine pump). This
    /// programmer's own proof was not sent.
    #[error(
        "the pump did not prove it holds the {} key — wrong key file, or not the pump you think",
        role.name()
    )]
    PumpNotAuthenticated {
        /// Role of the key.
        role: Role,
    },
    /// The pump refused this programmer's proof of the role key.
    #[error(
        "authentication failed: the pump refused the {} key (wrong key for this role and \
         pump, or another programmer started a handshake at the same moment); each failure \
         makes the pump wait longer before it accepts the next attempt",
        role.name()
    )]
    AuthenticationFailed {
        /// Role of the key.
        role: Role,
    },
    /// The pump kept answering `Busy`: every one of its handshake slots was taken by a
    /// recent `SessionHello` (another programmer nearby, or a stranger flooding the link).
    #[error(
        "the pump is busy with other handshakes (another programmer nearby, or interference \
         on the link); try again in a few seconds. At the patient's side, the magnet opens \
         emergency access (`--role emergency`) whatever the link is doing"
    )]
    Busy,
    /// The emergency role was asked for without the pump's physical-presence signal.
    #[error(
        "emergency access needs the magnet: hold it over the pump (simulator: --magnet, or \
         type `magnet`), then run the command again within 5 minutes"
    )]
    PresenceRequired,
    /// The pump ended the session (reset, or 5 minutes idle) and a new one could not be
    /// opened.
    #[error(
        "session expired: the pump ended the session during {} (reset, or 5 minutes \
         without a request) and a new one could not be opened: {reason}",
        request_words(request)
    )]
    SessionExpired {
        /// Request name.
        request: &'static str,
        /// Why the renewal failed.
        reason: String,
    },
    /// A therapy-changing request was given to [`crate::Client::pipelined`]: only
    /// read-only requests are kept in flight together. Nothing was sent.
    #[error(
        "{} changes therapy and is never pipelined; nothing was sent",
        request_words(request)
    )]
    NotPipelinable {
        /// Request name.
        request: &'static str,
    },
    /// The session's role may not make this request (the pump refused it).
    #[error(
        "not permitted: the {} role may not ask for {}; {}",
        role.name(),
        request_words(request),
        needs(allowed)
    )]
    NotPermitted {
        /// Request name.
        request: &'static str,
        /// Role of the session.
        role: Role,
        /// Roles that may make it.
        allowed: Vec<Role>,
    },
    /// The pump has no device secret yet, so it has no role keys.
    #[error(
        "the pump is not provisioned: it has no device secret, so no key opens a session; a \
         fresh pump is provisioned once (`thecal provision --key-dir DIR`)"
    )]
    NotProvisioned,
    /// `Provision` was refused: the pump already holds a device secret (for life).
    #[error(
        "the pump is already provisioned: use the key files written when it was \
         provisioned (a service session can re-provision it: `thecal keys reprovision`)"
    )]
    AlreadyProvisioned,
    /// The pump's provisioning confirmation did not verify: it is not the pump of that
    /// static key (check the public key on its label), or the exchange was tampered with.
    #[error(
        "the pump did not confirm the agreed device secret: it is not the pump whose public \
         key was used (compare `thecal info` with the label), or the link was tampered with; \
         no key file was kept"
    )]
    ProvisionNotConfirmed,
    /// The role key named another epoch than the one in force on the pump.
    #[error(
        "the {} key of epoch {epoch} is no longer in force on the pump (its key is at epoch \
         {current}): it was rotated or revoked; use the current key file",
        .role.name()
    )]
    StaleKey {
        /// The role.
        role: Role,
        /// The epoch of the key used.
        epoch: u32,
        /// The epoch in force.
        current: u32,
    },
    /// A key file cannot be used.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A sealed body could not be made.
    #[error("request could not be sealed: {0}")]
    Seal(thecal_protocol::session::SealError),
    /// The operating system's random source failed (no fresh nonce, no secret).
    #[error("no random bytes from the operating system: {0}")]
    Random(getrandom::Error),
}

impl Error {
    /// The pump's refusal, if this is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused { refusal, .. } => Some(refusal),
            Error::NotPermitted { .. } => Some(&Refusal::NotPermitted),
            Error::AuthenticationFailed { .. } => Some(&Refusal::AuthenticationFailed),
            Error::NotProvisioned => Some(&Refusal::NotProvisioned),
            _ => None,
        }
    }
}

/// Why the outcome of a change is uncertain ([`Error::Uncertain`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UncertainCause {
    /// Every attempt went unanswered.
    #[error("no answer came")]
    Unanswered,
    /// The session's sending counter was used up after an attempt and no new session
    /// could be opened to send it again.
    #[error("no new session could be opened to send it again ({0})")]
    NoNewSession(String),
    /// The pump ended the session after an unanswered attempt: it may have carried it
    /// out and reset (losing its reply cache), so it was not sent again.
    #[error(
        "the pump ended the session after an unanswered attempt (it may have been reset), \
         so it was not sent again"
    )]
    SessionEndedAfterUnanswered,
    /// The link failed while it was in flight.
    #[error("the link failed ({0})")]
    LinkFailed(String),
}

/// What to read back to learn whether an unanswered change happened
/// ([`Error::Uncertain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadBack {
    /// The prescription: a revision above `expected` means the new one is in force.
    Prescription {
        /// The revision the write expected.
        expected: Revision,
    },
    /// The reservoir (last refill time and volume) and the prescription revision.
    Refill {
        /// The revision the refill expected.
        expected: Revision,
        /// Whether the refill carried a new prescription (a revision above `expected`
        /// then means it was stored).
        with_prescription: bool,
    },
    /// The status (a running bolus, the dose delivered in 24 h) and the event log.
    Bolus,
    /// The status: whether therapy runs or is stopped.
    TherapyState,
    /// The status: the pump clock.
    Clock,
    /// The pump's key epochs (`Identify`): whether `role` is at `epoch` now.
    KeyEpoch {
        /// Whose key.
        role: Role,
        /// The epoch the change would have reached.
        epoch: u32,
    },
    /// The status.
    Status,
}

impl ReadBack {
    /// What to read back after `request` went unanswered.
    pub fn of(request: &Request) -> ReadBack {
        match request {
            Request::WritePrescription { expected, .. } => ReadBack::Prescription {
                expected: *expected,
            },
            Request::Refill {
                expected,
                prescription,
                ..
            } => ReadBack::Refill {
                expected: *expected,
                with_prescription: prescription.is_some(),
            },
            Request::ClinicianBolus(_) | Request::PatientBolus | Request::CancelBolus => {
                ReadBack::Bolus
            }
            Request::StopTherapy | Request::ResumeTherapy => ReadBack::TherapyState,
            Request::SetClock { .. } => ReadBack::Clock,
            Request::RotateKey { role, epoch, .. } => ReadBack::KeyEpoch {
                role: *role,
                epoch: *epoch,
            },
            _ => ReadBack::Status,
        }
    }
}

impl std::fmt::Display for ReadBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadBack::Prescription { expected } => write!(
                f,
                "read the prescription: if its revision is now above {} the new schedule is \
                 in force, otherwise the previous one still is",
                expected.0
            ),
            ReadBack::Refill {
                expected,
                with_prescription: false,
            } => write!(
                f,
                "read the reservoir (last refill time and volume) and the prescription \
                 revision (read {}) to see whether the refill was recorded",
                expected.0
            ),
            ReadBack::Refill {
                expected,
                with_prescription: true,
            } => write!(
                f,
                "read the prescription (if its revision is now above {} the new prescription \
                 is stored) and the reservoir (last refill time, volume, drug and \
                 concentration) to see whether the refill was recorded",
                expected.0
            ),
            ReadBack::Bolus => f.write_str(
                "read the status (a running bolus, delivered in 24 h) and the event log \
                 before giving another bolus",
            ),
            ReadBack::TherapyState => {
                f.write_str("read the status to see whether therapy is running or stopped")
            }
            ReadBack::Clock => f.write_str("read the status to see the pump clock"),
            ReadBack::KeyEpoch { role, epoch } => write!(
                f,
                "read the pump's key epochs (identify): if the {} key is at epoch {epoch} \
                 the new key is in force",
                role.name()
            ),
            ReadBack::Status => f.write_str("read the status"),
        }
    }
}

/// `it needs the clinician role`, `it needs the patient, clinician or service role`.
fn needs(allowed: &[Role]) -> String {
    let names: Vec<&str> = allowed.iter().map(|r| r.name()).collect();
    match names.as_slice() {
        [] => "no role may make it".to_string(),
        [one] => format!("it needs the {one} role (--role {one} with its key file)"),
        [init @ .., last] => format!("it needs the {} or {last} role", init.join(", ")),
    }
}

/// `1.5 s`, `300 ms`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{}.{:03} s", d.as_secs(), d.subsec_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::PumpTime;
    use thecal_protocol::time::{Timestamp, UtcOffset};
    use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

    #[test]
    fn refusals_read_as_clinical_words() {
        let e = Error::Refused {
            request: "PatientBolus",
            refusal: Refusal::PatientLockout {
                until: Timestamp(1_796_172_390_620),
            },
        };
        let text = e.to_string();
        assert!(
            text.starts_with("the pump refused the patient bolus: "),
            "{text}"
        );
        assert!(!text.contains("t=") && !text.contains(" ms"), "{text}");
        assert!(
            text.contains("2026 at ") && text.ends_with(" UTC"),
            "{text}"
        );
        let t = PumpTime {
            now: Timestamp(1_796_172_000_000),
            offset: UtcOffset(60),
        };
        let local = refusal_words(
            &Refusal::PatientLockout {
                until: Timestamp(1_796_172_390_620),
            },
            Some(&t),
        );
        assert!(local.contains("(in 6 min)"), "{local}");
        let busy = Error::Refused {
            request: "ClinicianBolus",
            refusal: Refusal::BolusInProgress,
        };
        assert_eq!(
            busy.to_string(),
            "the pump refused the bolus: a bolus is already running"
        );
        let timeout = Error::Timeout {
            request: "ReadPrescription",
            attempts: 3,
            timeout: Duration::from_millis(1500),
        };
        assert!(
            timeout
                .to_string()
                .starts_with("no answer from the pump to the prescription read after 3"),
            "{timeout}"
        );
        let odd = Error::UnexpectedResponse {
            request: "ReadPrescription",
            got: "Status",
        };
        assert_eq!(
            odd.to_string(),
            "the pump's answer to the prescription read was an answer to another request; \
             protocol mismatch? (run with -v to see the link traffic)"
        );
        let limit = refusal_words(
            &Refusal::DailyLimit {
                delivered: Nanograms(580_000),
                requested: Nanograms(50_000),
                limit: thecal_protocol::units::NanogramsPerDay(600_000),
            },
            None,
        );
        assert_eq!(
            limit,
            "50 µg more would exceed the daily limit of 600 µg/day (580 µg delivered in \
             the last 24 h)"
        );
    }

    #[test]
    fn rules_have_no_rust_ranges() {
        let low = rule_words(&ScheduleError::LowReservoirAlarmOutOfRange {
            threshold: Nanolitres(100_000),
        });
        assert_eq!(
            low,
            "low-reservoir alarm 0.1 mL must be from 0.5 mL to 10 mL"
        );
        let pb = rule_words(&ScheduleError::PatientBolusInvalid {
            dose: Nanograms(0),
            lockout: Minutes(5),
            max_per_day: 30,
        });
        assert!(!pb.contains("..="), "{pb}");
        assert!(pb.contains("from 1 to 24 boluses per 24 h"), "{pb}");
    }
}
