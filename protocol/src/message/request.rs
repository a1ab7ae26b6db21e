//! Requests from a programmer to the pump.

use serde::{Deserialize, Serialize};

use crate::message::{AlarmKind, Revision, Role};
use crate::prescription::PrescriptionDraft;
use crate::time::{Timestamp, UtcOffset};
use crate::units::{Minutes, Nanograms, Nanolitres};
use crate::update::{HEADER_LEN, MAX_CHUNK};
use heapless::Vec;

/// Most log entries one [`Request::ReadLog`] may ask for: 24 of the longest encode to
/// 972 bytes, 990 sealed, within [`crate::frame::MAX_BODY`] (protocol 4; 8 before).
pub const MAX_LOG_PAGE: usize = 24;

/// A request. The postcard tag of each variant is its position, starting at 0; the
/// answer's tag is the request's tag plus one (see [`crate::message::Response`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// 0: model, serial, firmware and protocol versions. Served without a session.
    Identify,
    /// 1: liveness check; the token comes back unchanged.
    Ping {
        /// Echoed.
        token: u32,
    },
    /// 2: one-screen summary.
    Status,
    /// 3: battery report.
    Battery,
    /// 4: reservoir report with projections.
    Reservoir,
    /// 5: the active prescription and its revision.
    ReadPrescription,
    /// 6: replace the prescription, atomically. Refused unless `expected` is the
    /// revision in force (another programmer may have written since it was read).
    WritePrescription {
        /// Revision the programmer read.
        expected: Revision,
        /// The new prescription.
        prescription: PrescriptionDraft,
    },
    /// 7: record a refill: the reservoir now holds `volume`. A refill with a new drug or
    /// concentration carries the whole new prescription (its doses are for the new
    /// solution); it is validated and stored with the refill, as the next revision.
    Refill {
        /// Revision the programmer read.
        expected: Revision,
        /// Volume in the reservoir after the refill.
        volume: Nanolitres,
        /// The prescription for the new solution, if the drug or concentration changed.
        prescription: Option<PrescriptionDraft>,
    },
    /// 8: a bolus given by the clinician.
    ClinicianBolus(BolusRequest),
    /// 9: a patient-activated bolus, under the prescription's patient-bolus rules.
    PatientBolus,
    /// 10: stop therapy (the pump keeps the catheter open at the minimum flow).
    StopTherapy,
    /// 11: resume the prescription after a stop.
    ResumeTherapy,
    /// 12: the active alarms.
    ReadAlarms,
    /// 13: acknowledge an alarm (a critical one re-asserts while its cause remains).
    AcknowledgeAlarm {
        /// Which.
        alarm: AlarmKind,
    },
    /// 14: a page of the event log, from entry index `first`.
    ReadLog {
        /// First index to return.
        first: u32,
        /// At most this many (capped at [`MAX_LOG_PAGE`]).
        max: u8,
    },
    /// 15: set the device clock and the patient's UTC offset.
    SetClock {
        /// UTC now.
        now: Timestamp,
        /// Patient's offset from UTC.
        offset: UtcOffset,
    },
    /// 16: link counters (frames in/out, CRC errors, resyncs, …).
    LinkStats,
    /// 17: opens a session (plain frame): the role asked for, the epoch of the role key
    /// the programmer holds, its fresh nonce and ephemeral X25519 public key. See
    /// [`crate::session::handshake`].
    SessionHello {
        /// Role asked for.
        role: Role,
        /// Epoch of the programmer's role key.
        epoch: u32,
        /// Programmer's fresh random nonce.
        nonce: [u8; 16],
        /// Programmer's ephemeral X25519 public key.
        ephemeral: [u8; 32],
    },
    /// 18: completes the handshake (plain frame): the programmer's proof of the role key,
    /// for the challenge that answered the `SessionHello` carrying `nonce`.
    SessionProof {
        /// The programmer's nonce of that `SessionHello`: names the pending challenge.
        nonce: [u8; 16],
        /// `host_proof` over the handshake transcript.
        proof: [u8; 32],
    },
    /// 19: ends the session (sealed).
    SessionClose,
    /// 20: establishes the device secret by key agreement with the pump's static key
    /// ([`crate::session::provision`]): in a plain frame while the pump is unprovisioned
    /// (the factory), sealed in a service session to re-provision it (a new device
    /// secret; every role key moves to a new epoch). The secret itself is never sent.
    Provision {
        /// The provisioning programmer's ephemeral X25519 public key.
        ephemeral: [u8; 32],
    },
    /// 21: replaces the key of `role` (sealed; a clinician session for the patient and
    /// clinician keys, a service session for the service key). `epoch` must be the
    /// role's epoch in force plus one; from the answer on, only the new key opens a
    /// session of that role.
    RotateKey {
        /// Whose key.
        role: Role,
        /// The new key's epoch.
        epoch: u32,
        /// The new key (random, drawn by the programmer).
        key: [u8; 32],
    },
    /// 22: ends the running bolus now (clinician or emergency session). The strokes
    /// already delivered stay counted; the rest of the reserved volume is released.
    CancelBolus,
    /// 23: starts a firmware update (clinician or service session): the signed image
    /// header ([`crate::update`], exactly [`crate::update::HEADER_LEN`] bytes). Checked
    /// at once (signature, board, security version, size); the same header again
    /// resumes the transfer in progress. No idempotency key: it is idempotent itself.
    UpdateBegin {
        /// The signed header.
        header: Vec<u8, HEADER_LEN>,
    },
    /// 24: the image bytes at `offset`. Written only if `offset` is the one the pump
    /// expects; the answer names the next offset either way (resumption, retries).
    UpdateChunk {
        /// Offset in the image.
        offset: u32,
        /// At most [`MAX_CHUNK`] bytes; a multiple of 4 unless it ends the image.
        data: Vec<u8, MAX_CHUNK>,
    },
    /// 25: verifies the whole image against its signed hash and marks it to be swapped
    /// in at a moment the pump chooses (no bolus running).
    UpdateFinish,
    /// 26: both firmware slots: version and state.
    UpdateStatus,
}

/// An idempotency key: 8 random bytes the programmer draws for one therapy change and
/// sends with every attempt of it (retries and sends after a session renewal alike).
pub type OpKey = [u8; 8];

/// The plaintext of a sealed request body: the request, and for a change
/// ([`Request::changes_state`]) its idempotency key. The pump answers a request whose
/// role, key and body match a recent therapy change from its reply cache instead of
/// executing it again; a change without a key is refused `Malformed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The idempotency key; `None` for requests that change nothing.
    pub key: Option<OpKey>,
    /// The request.
    pub request: Request,
}

/// A clinician bolus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BolusRequest {
    /// A single dose delivered over `duration`.
    Single {
        /// Dose.
        dose: Nanograms,
        /// Over.
        duration: Minutes,
    },
    /// Fills the catheter after implant or catheter revision.
    Priming {
        /// Volume.
        volume: Nanolitres,
        /// Over.
        duration: Minutes,
    },
    /// After a drug or concentration change: moves the old drug out of the pump and
    /// catheter at the rate that keeps the old dose.
    Bridge {
        /// Volume.
        volume: Nanolitres,
        /// Over.
        duration: Minutes,
    },
}

impl Request {
    /// Whether this request changes therapy (needs a clinician session, or the patient's
    /// for a patient bolus, or the emergency role's for a stop; carries an idempotency
    /// key and is answered from the reply cache when repeated).
    pub const fn changes_therapy(&self) -> bool {
        matches!(
            self,
            Request::WritePrescription { .. }
                | Request::Refill { .. }
                | Request::ClinicianBolus(_)
                | Request::PatientBolus
                | Request::StopTherapy
                | Request::ResumeTherapy
                | Request::SetClock { .. }
                | Request::CancelBolus
        )
    }

    /// Whether this request changes what the pump stores (a therapy change, a key
    /// rotation or a re-provisioning): it carries an idempotency key when sealed and is
    /// answered from the reply cache when repeated.
    pub const fn changes_state(&self) -> bool {
        self.changes_therapy()
            || matches!(self, Request::RotateKey { .. } | Request::Provision { .. })
    }

    /// The postcard tag of this variant (its position), as kept in the event log.
    pub const fn tag(&self) -> u8 {
        match self {
            Request::Identify => 0,
            Request::Ping { .. } => 1,
            Request::Status => 2,
            Request::Battery => 3,
            Request::Reservoir => 4,
            Request::ReadPrescription => 5,
            Request::WritePrescription { .. } => 6,
            Request::Refill { .. } => 7,
            Request::ClinicianBolus(_) => 8,
            Request::PatientBolus => 9,
            Request::StopTherapy => 10,
            Request::ResumeTherapy => 11,
            Request::ReadAlarms => 12,
            Request::AcknowledgeAlarm { .. } => 13,
            Request::ReadLog { .. } => 14,
            Request::SetClock { .. } => 15,
            Request::LinkStats => 16,
            Request::SessionHello { .. } => 17,
            Request::SessionProof { .. } => 18,
            Request::SessionClose => 19,
            Request::Provision { .. } => 20,
            Request::RotateKey { .. } => 21,
            Request::CancelBolus => 22,
            Request::UpdateBegin { .. } => 23,
            Request::UpdateChunk { .. } => 24,
            Request::UpdateFinish => 25,
            Request::UpdateStatus => 26,
        }
    }

    /// Short name, for logs.
    pub const fn name(&self) -> &'static str {
        match self {
            Request::Identify => "Identify",
            Request::Ping { .. } => "Ping",
            Request::Status => "Status",
            Request::Battery => "Battery",
            Request::Reservoir => "Reservoir",
            Request::ReadPrescription => "ReadPrescription",
            Request::WritePrescription { .. } => "WritePrescription",
            Request::Refill { .. } => "Refill",
            Request::ClinicianBolus(_) => "ClinicianBolus",
            Request::PatientBolus => "PatientBolus",
            Request::StopTherapy => "StopTherapy",
            Request::ResumeTherapy => "ResumeTherapy",
            Request::ReadAlarms => "ReadAlarms",
            Request::AcknowledgeAlarm { .. } => "AcknowledgeAlarm",
            Request::ReadLog { .. } => "ReadLog",
            Request::SetClock { .. } => "SetClock",
            Request::LinkStats => "LinkStats",
            Request::SessionHello { .. } => "SessionHello",
            Request::SessionProof { .. } => "SessionProof",
            Request::SessionClose => "SessionClose",
            Request::Provision { .. } => "Provision",
            Request::RotateKey { .. } => "RotateKey",
            Request::CancelBolus => "CancelBolus",
            Request::UpdateBegin { .. } => "UpdateBegin",
            Request::UpdateChunk { .. } => "UpdateChunk",
            Request::UpdateFinish => "UpdateFinish",
            Request::UpdateStatus => "UpdateStatus",
        }
    }
}
