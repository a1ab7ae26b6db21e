//! Messages: [`Request`] from the programmer, [`Response`] from the pump.
//!
//! Bodies are postcard-encoded. Every collection is a `heapless` type with a bound
//! stated beside it, so every message has a maximum encoded size; the largest one fits
//! in [`crate::frame::MAX_BODY`] (asserted by a test).

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::update::{UpdateProgress, UpdateReport};

mod access;
pub mod endpoint;
mod log;
mod page;
mod refusal;
mod report;
mod request;

pub use access::permitted;
pub use endpoint::Endpoint;
pub use log::{BolusEnd, BolusOutcome, Event, LinkAbuse, LogEntry, ResetCause, SessionEnd};
pub use page::{LogPage, PageEntry, PageError};
pub use refusal::Refusal;
pub use report::{
    AlarmEntry, AlarmKind, BatteryReport, BatteryState, BolusKind, BolusProgress, Capabilities,
    Identity, KeyEpochs, LinkStats, PrescriptionRecord, ReservoirReport, Standing, StatusReport,
    TherapyState, Version, Withheld, MAX_ALARMS, MAX_ID_LEN,
};
pub use request::{BolusRequest, Command, OpKey, Request, MAX_LOG_PAGE};

use crate::time::Timestamp;
use crate::units::{Nanograms, Nanolitres};

/// Revision of the prescription memory. Starts at 1 and increases with every change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Revision(pub u32);

/// Session roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Patient's therapy manager: status and patient bolus.
    Patient,
    /// Clinician programmer: everything therapeutic.
    Clinician,
    /// Manufacturer service: provisioning and diagnostics.
    Service,
    /// Anyone at the patient's side while the physical-presence signal is active (a
    /// magnet over the implant): no key file, only `Identify`, `Status`, `ReadAlarms` and
    /// `StopTherapy`, for a bounded time. See PROTOCOL.md 2.9.
    Emergency,
}

impl Role {
    /// Every role, in tag order.
    pub const ALL: [Role; 4] = [
        Role::Patient,
        Role::Clinician,
        Role::Service,
        Role::Emergency,
    ];

    /// Position in [`Role::ALL`] (the postcard tag).
    pub const fn index(self) -> usize {
        match self {
            Role::Patient => 0,
            Role::Clinician => 1,
            Role::Service => 2,
            Role::Emergency => 3,
        }
    }
}

/// A bolus the pump accepted and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BolusReport {
    /// Kind.
    pub kind: BolusKind,
    /// Dose.
    pub dose: Nanograms,
    /// Volume.
    pub volume: Nanolitres,
    /// Planned end.
    pub ends_at: Timestamp,
}

/// A response. `Refused` is tag 0; every other answer has its request's tag plus one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// 0: the request was refused; nothing changed.
    Refused(Refusal),
    /// 1: answers [`Request::Identify`].
    Identity(Identity),
    /// 2: answers [`Request::Ping`].
    Pong {
        /// The request's token.
        token: u32,
    },
    /// 3: answers [`Request::Status`].
    Status(StatusReport),
    /// 4: answers [`Request::Battery`].
    Battery(BatteryReport),
    /// 5: answers [`Request::Reservoir`].
    Reservoir(ReservoirReport),
    /// 6: answers [`Request::ReadPrescription`].
    Prescription(PrescriptionRecord),
    /// 7: answers [`Request::WritePrescription`]: stored, verified and in force.
    PrescriptionWritten {
        /// New revision.
        revision: Revision,
    },
    /// 8: answers [`Request::Refill`].
    Refilled {
        /// Revision in force (new if the drug changed).
        revision: Revision,
        /// Reservoir after the refill, with new projections.
        reservoir: ReservoirReport,
    },
    /// 9: answers [`Request::ClinicianBolus`].
    BolusStarted(BolusReport),
    /// 10: answers [`Request::PatientBolus`].
    PatientBolusStarted(BolusReport),
    /// 11: answers [`Request::StopTherapy`].
    TherapyStopped,
    /// 12: answers [`Request::ResumeTherapy`].
    TherapyResumed,
    /// 13: answers [`Request::ReadAlarms`].
    Alarms(Vec<AlarmEntry, MAX_ALARMS>),
    /// 14: answers [`Request::AcknowledgeAlarm`].
    AlarmAcknowledged,
    /// 15: answers [`Request::ReadLog`].
    LogPage(LogPage),
    /// 16: answers [`Request::SetClock`].
    ClockSet {
        /// Clock before the change.
        previous: Timestamp,
    },
    /// 17: answers [`Request::LinkStats`].
    LinkStats(LinkStats),
    /// 18: answers [`Request::SessionHello`].
    SessionChallenge {
        /// Pump's fresh nonce.
        nonce: [u8; 16],
        /// Pump's ephemeral X25519 public key.
        ephemeral: [u8; 32],
        /// Pump's proof of the role key (over the transcript hash).
        proof: [u8; 32],
    },
    /// 19: answers [`Request::SessionProof`]: every frame from now on is sealed.
    SessionEstablished,
    /// 20: answers [`Request::SessionClose`].
    SessionClosed,
    /// 21: answers [`Request::Provision`]: the pump derived the device secret.
    Provisioned {
        /// The pump's key confirmation ([`crate::session::ProvisionKeys::confirm`]).
        confirm: [u8; 32],
        /// Epoch of every role key now (1 at the factory).
        epoch: u32,
    },
    /// 22: answers [`Request::RotateKey`]: the new key is stored and the only one of its
    /// role.
    KeyRotated {
        /// Whose key.
        role: Role,
        /// Its epoch.
        epoch: u32,
    },
    /// 23: answers [`Request::CancelBolus`]: the bolus ended; what it delivered.
    BolusCancelled(BolusOutcome),
    /// 24: answers [`Request::UpdateBegin`]: where the transfer stands.
    UpdateStarted(UpdateProgress),
    /// 25: answers [`Request::UpdateChunk`]: the next offset expected.
    ChunkWritten(UpdateProgress),
    /// 26: answers [`Request::UpdateFinish`]: verified and marked (`pending`).
    UpdateVerified(UpdateProgress),
    /// 27: answers [`Request::UpdateStatus`].
    UpdateStatus(UpdateReport),
}

impl Response {
    /// Short name, for logs.
    pub const fn name(&self) -> &'static str {
        match self {
            Response::Refused(_) => "Refused",
            Response::Identity(_) => "Identity",
            Response::Pong { .. } => "Pong",
            Response::Status(_) => "Status",
            Response::Battery(_) => "Battery",
            Response::Reservoir(_) => "Reservoir",
            Response::Prescription(_) => "Prescription",
            Response::PrescriptionWritten { .. } => "PrescriptionWritten",
            Response::Refilled { .. } => "Refilled",
            Response::BolusStarted(_) => "BolusStarted",
            Response::PatientBolusStarted(_) => "PatientBolusStarted",
            Response::TherapyStopped => "TherapyStopped",
            Response::TherapyResumed => "TherapyResumed",
            Response::Alarms(_) => "Alarms",
            Response::AlarmAcknowledged => "AlarmAcknowledged",
            Response::LogPage(_) => "LogPage",
            Response::ClockSet { .. } => "ClockSet",
            Response::LinkStats(_) => "LinkStats",
            Response::SessionChallenge { .. } => "SessionChallenge",
            Response::SessionEstablished => "SessionEstablished",
            Response::SessionClosed => "SessionClosed",
            Response::Provisioned { .. } => "Provisioned",
            Response::KeyRotated { .. } => "KeyRotated",
            Response::BolusCancelled(_) => "BolusCancelled",
            Response::UpdateStarted(_) => "UpdateStarted",
            Response::ChunkWritten(_) => "ChunkWritten",
            Response::UpdateVerified(_) => "UpdateVerified",
            Response::UpdateStatus(_) => "UpdateStatus",
        }
    }
}
