//! What can go wrong talking to a pump, told apart so a clinician knows what to do next.

use std::time::Duration;

use thecal_protocol::frame::{BodyError, EncodeError};
use thecal_protocol::message::Refusal;
use thecal_protocol::rules::ScheduleError;

/// An error from [`crate::Client`]. Each variant says what the clinician should do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pump answered and refused; nothing changed on the pump.
    #[error("the pump refused {request}: {refusal}")]
    Refused {
        /// Request name.
        request: &'static str,
        /// The pump's reason.
        refusal: Refusal,
    },
    /// A read-only request got no answer after every retry. Nothing was changed.
    #[error(
        "no answer from the pump to {request} after {attempts} attempts ({} each); \
         check the port, the telemetry head position and that the pump is awake",
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
    /// A therapy-changing request was sent but no answer came back after every retry:
    /// the pump may or may not have carried it out. `read_back` says what to read to
    /// find out before trying again.
    #[error(
        "OUTCOME UNCERTAIN: {request} was sent but no answer came after {attempts} attempts; \
         the pump may or may not have carried it out. Before repeating it, {read_back}"
    )]
    Uncertain {
        /// Request name.
        request: &'static str,
        /// Attempts made.
        attempts: u32,
        /// What to read back to learn the outcome.
        read_back: String,
    },
    /// The pump answered with a message that does not answer the request.
    #[error("unexpected answer {got} to {request}")]
    UnexpectedResponse {
        /// Request name.
        request: &'static str,
        /// Answer name.
        got: &'static str,
    },
    /// A frame for this request arrived intact but its body did not decode: the pump
    /// speaks another revision of the messages.
    #[error("the answer to {request} does not decode ({source}); protocol mismatch?")]
    Decode {
        /// Request name.
        request: &'static str,
        /// Why.
        source: BodyError,
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
    #[error("prescription not sent: {0}")]
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
    #[error("serial port {path}: {source}")]
    Port {
        /// Port path.
        path: String,
        /// Why.
        source: tokio_serial::Error,
    },
}

impl Error {
    /// The pump's refusal, if this is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
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
