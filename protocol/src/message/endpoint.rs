//! Typed endpoints: each request type names the answer it gets.
//!
//! On the wire a request and its answer are paired by the tag convention (the answer's
//! postcard tag is the request's plus one, [`super::Response`]). Here the pairing is a
//! type: [`Endpoint::Answer`] is what a successful answer carries, and
//! [`Endpoint::answer`] picks it out of a [`Response`] (anything else, a refusal
//! included, is handed back). A programmer written against these types cannot expect
//! the wrong answer: `client.call(ReadPrescription)` returns a
//! [`super::PrescriptionRecord`], and a mismatch does not compile.
//!
//! Every endpoint is a plain struct with the request's fields; [`Endpoint::request`]
//! turns it into the [`Request`] that goes on the wire.

// `answer` hands an unexpected response back by value, as large as the largest answer:
// no heap to box it into (the same reason as the crate-level `large_enum_variant`).
#![allow(clippy::result_large_err)]

use heapless::Vec;

use super::{
    AlarmEntry, AlarmKind, BatteryReport, BolusOutcome, BolusReport, BolusRequest, Identity,
    LinkStats as Links, LogPage, PrescriptionRecord, ReservoirReport, Revision, Role, StatusReport,
    MAX_ALARMS,
};
use super::{Request, Response};
use crate::prescription::PrescriptionDraft;
use crate::time::{Timestamp, UtcOffset};
use crate::units::Nanolitres;
use crate::update::{UpdateProgress, UpdateReport, HEADER_LEN, MAX_CHUNK};

/// A request type and the answer it gets.
pub trait Endpoint {
    /// What a successful answer carries.
    type Answer;
    /// The request's name ([`Request::name`]).
    const NAME: &'static str;
    /// The request as it goes on the wire.
    fn request(self) -> Request;
    /// The answer picked out of `response`; any other response (a refusal, or an answer
    /// to another request) is handed back unchanged.
    fn answer(response: Response) -> Result<Self::Answer, Response>;
}

/// One endpoint struct: a unit struct, or one with the request's fields.
macro_rules! endpoint_struct {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
    };
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty),* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }
    };
}

/// Declares endpoint structs and their [`Endpoint`] impls. Each line: the struct (unit,
/// or with the request's fields), its answer type, how it becomes a [`Request`], and the
/// [`Response`] pattern with the value it yields.
macro_rules! endpoints {
    ($(
        $(#[$meta:meta])*
        $name:ident $({ $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)? })? -> $answer:ty
            = $request:expr ; $pattern:pat => $value:expr ;
    )*) => {$(
        endpoint_struct!($(#[$meta])* $name $({ $($(#[$fmeta])* $field: $ty),* })?);

        impl Endpoint for $name {
            type Answer = $answer;
            const NAME: &'static str = stringify!($name);
            #[allow(unused_variables)]
            fn request(self) -> Request {
                let $name $({ $($field),* })? = self;
                $request
            }
            fn answer(response: Response) -> Result<$answer, Response> {
                match response {
                    $pattern => Ok($value),
                    other => Err(other),
                }
            }
        }
    )*};
}

endpoints! {
    /// Model, serial, versions, static key and key epochs.
    Identify -> Identity = Request::Identify; Response::Identity(i) => i;
    /// Liveness check; the answer is the echoed token.
    Ping { /** Echoed. */ token: u32 } -> u32
        = Request::Ping { token }; Response::Pong { token } => token;
    /// One-screen summary.
    Status -> StatusReport = Request::Status; Response::Status(s) => s;
    /// Battery report.
    Battery -> BatteryReport = Request::Battery; Response::Battery(b) => b;
    /// Reservoir report with projections.
    Reservoir -> ReservoirReport = Request::Reservoir; Response::Reservoir(r) => r;
    /// The prescription in force and its revision.
    ReadPrescription -> PrescriptionRecord
        = Request::ReadPrescription; Response::Prescription(p) => p;
    /// Replaces the prescription if `expected` is the revision in force; the answer is
    /// the new revision.
    WritePrescription {
        /// Revision the programmer read.
        expected: Revision,
        /// The new prescription.
        prescription: PrescriptionDraft,
    } -> Revision
        = Request::WritePrescription { expected, prescription };
        Response::PrescriptionWritten { revision } => revision;
    /// Records a refill; the answer is the revision in force and the new reservoir.
    Refill {
        /// Revision the programmer read.
        expected: Revision,
        /// Volume in the reservoir after the refill.
        volume: Nanolitres,
        /// The prescription for a new drug or concentration.
        prescription: Option<PrescriptionDraft>,
    } -> (Revision, ReservoirReport)
        = Request::Refill { expected, volume, prescription };
        Response::Refilled { revision, reservoir } => (revision, reservoir);
    /// A clinician bolus.
    ClinicianBolus { /** Which bolus. */ bolus: BolusRequest } -> BolusReport
        = Request::ClinicianBolus(bolus); Response::BolusStarted(b) => b;
    /// A patient-activated bolus.
    PatientBolus -> BolusReport = Request::PatientBolus; Response::PatientBolusStarted(b) => b;
    /// Stops therapy (minimum flow).
    StopTherapy -> () = Request::StopTherapy; Response::TherapyStopped => ();
    /// Resumes the prescription.
    ResumeTherapy -> () = Request::ResumeTherapy; Response::TherapyResumed => ();
    /// The active alarms.
    ReadAlarms -> Vec<AlarmEntry, MAX_ALARMS> = Request::ReadAlarms; Response::Alarms(a) => a;
    /// Acknowledges an alarm.
    AcknowledgeAlarm { /** Which. */ alarm: AlarmKind } -> ()
        = Request::AcknowledgeAlarm { alarm }; Response::AlarmAcknowledged => ();
    /// A page of the event log.
    ReadLog {
        /// First index to return.
        first: u32,
        /// At most this many.
        max: u8,
    } -> LogPage = Request::ReadLog { first, max }; Response::LogPage(p) => p;
    /// Sets the clock and the patient's UTC offset; the answer is the clock before.
    SetClock {
        /// UTC now.
        now: Timestamp,
        /// Patient's offset from UTC.
        offset: UtcOffset,
    } -> Timestamp = Request::SetClock { now, offset }; Response::ClockSet { previous } => previous;
    /// The pump's link counters.
    LinkStats -> Links = Request::LinkStats; Response::LinkStats(s) => s;
    /// Opens a session; the answer is the challenge: the pump's nonce, ephemeral key and
    /// proof.
    SessionHello {
        /// Role asked for.
        role: Role,
        /// Epoch of the programmer's role key.
        epoch: u32,
        /// Programmer's fresh nonce.
        nonce: [u8; 16],
        /// Programmer's ephemeral X25519 public key.
        ephemeral: [u8; 32],
    } -> ([u8; 16], [u8; 32], [u8; 32])
        = Request::SessionHello { role, epoch, nonce, ephemeral };
        Response::SessionChallenge { nonce, ephemeral, proof } => (nonce, ephemeral, proof);
    /// Completes the handshake.
    SessionProof {
        /// The nonce of the `SessionHello`.
        nonce: [u8; 16],
        /// The programmer's proof.
        proof: [u8; 32],
    } -> () = Request::SessionProof { nonce, proof }; Response::SessionEstablished => ();
    /// Ends the session.
    SessionClose -> () = Request::SessionClose; Response::SessionClosed => ();
    /// Establishes the device secret by key agreement; the answer is the pump's key
    /// confirmation and the epoch of every role key.
    Provision { /** The programmer's ephemeral public key. */ ephemeral: [u8; 32] }
        -> ([u8; 32], u32)
        = Request::Provision { ephemeral };
        Response::Provisioned { confirm, epoch } => (confirm, epoch);
    /// Replaces a role's key; the answer names the role and epoch now in force.
    RotateKey {
        /// Whose key.
        role: Role,
        /// The new key's epoch.
        epoch: u32,
        /// The new key.
        key: [u8; 32],
    } -> (Role, u32)
        = Request::RotateKey { role, epoch, key };
        Response::KeyRotated { role, epoch } => (role, epoch);
    /// Ends the running bolus; the answer is what it delivered.
    CancelBolus -> BolusOutcome = Request::CancelBolus; Response::BolusCancelled(o) => o;
    /// Starts or resumes a firmware update with a signed header.
    UpdateBegin { /** The signed header. */ header: Vec<u8, HEADER_LEN> } -> UpdateProgress
        = Request::UpdateBegin { header }; Response::UpdateStarted(p) => p;
    /// One chunk of the image; the answer names the next offset expected.
    UpdateChunk {
        /// Offset in the image.
        offset: u32,
        /// The bytes.
        data: Vec<u8, MAX_CHUNK>,
    } -> UpdateProgress
        = Request::UpdateChunk { offset, data }; Response::ChunkWritten(p) => p;
    /// Verifies and marks the image.
    UpdateFinish -> UpdateProgress = Request::UpdateFinish; Response::UpdateVerified(p) => p;
    /// Both firmware slots.
    UpdateStatus -> UpdateReport = Request::UpdateStatus; Response::UpdateStatus(r) => r;
}

#[cfg(test)]
mod tests {
    //! Each endpoint's answer pattern is the response whose tag is its request's plus
    //! one: the typed pairing and the wire convention agree (checked for every endpoint
    //! whose answer is built from a few literals; the report-carrying ones pair by the
    //! same macro line).
    use super::*;
    use crate::message::Refusal;
    use crate::time::{Timestamp, UtcOffset};

    /// The postcard tag (first byte; every tag here is below 128) of `value`.
    fn tag<T: serde::Serialize>(value: &T) -> u8 {
        let mut buf = [0u8; 1024];
        match postcard::to_slice(value, &mut buf) {
            Ok(bytes) => bytes.first().copied().unwrap_or(u8::MAX),
            Err(_) => u8::MAX,
        }
    }

    fn pairs<E: Endpoint>(endpoint: E, answer: Response) {
        let request = endpoint.request();
        assert_eq!(E::NAME, request.name());
        assert_eq!(tag(&request), request.tag());
        assert_eq!(tag(&answer), request.tag() + 1, "{}", E::NAME);
        assert!(E::answer(answer).is_ok(), "{}", E::NAME);
        let refused = Response::Refused(Refusal::Busy);
        assert!(matches!(E::answer(refused.clone()), Err(r) if r == refused));
    }

    #[test]
    fn every_answer_has_its_request_tag_plus_one() {
        let none = Response::SessionClosed;
        assert!(Status::answer(none.clone()).is_err());
        pairs(Ping { token: 7 }, Response::Pong { token: 7 });
        pairs(StopTherapy, Response::TherapyStopped);
        pairs(ResumeTherapy, Response::TherapyResumed);
        pairs(ReadAlarms, Response::Alarms(Vec::new()));
        pairs(
            AcknowledgeAlarm {
                alarm: AlarmKind::LowReservoir,
            },
            Response::AlarmAcknowledged,
        );
        pairs(
            SetClock {
                now: Timestamp(1),
                offset: UtcOffset(0),
            },
            Response::ClockSet {
                previous: Timestamp(0),
            },
        );
        pairs(
            SessionHello {
                role: Role::Clinician,
                epoch: 1,
                nonce: [0; 16],
                ephemeral: [0; 32],
            },
            Response::SessionChallenge {
                nonce: [0; 16],
                ephemeral: [0; 32],
                proof: [0; 32],
            },
        );
        pairs(
            SessionProof {
                nonce: [0; 16],
                proof: [0; 32],
            },
            Response::SessionEstablished,
        );
        pairs(SessionClose, none);
        let progress = UpdateProgress {
            next: 0,
            length: 1,
            pending: false,
        };
        pairs(
            UpdateBegin { header: Vec::new() },
            Response::UpdateStarted(progress),
        );
        pairs(
            UpdateChunk {
                offset: 0,
                data: Vec::new(),
            },
            Response::ChunkWritten(progress),
        );
        pairs(UpdateFinish, Response::UpdateVerified(progress));
        pairs(
            CancelBolus,
            Response::BolusCancelled(BolusOutcome {
                kind: crate::message::BolusKind::Single,
                end: crate::message::BolusEnd::Completed,
                delivered: Nanolitres(0),
                planned: Nanolitres(250),
            }),
        );
        pairs(
            Provision { ephemeral: [0; 32] },
            Response::Provisioned {
                confirm: [0; 32],
                epoch: 1,
            },
        );
        pairs(
            RotateKey {
                role: Role::Patient,
                epoch: 2,
                key: [0; 32],
            },
            Response::KeyRotated {
                role: Role::Patient,
                epoch: 2,
            },
        );
    }
}
