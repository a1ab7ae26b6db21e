//! Workflows: the therapy and key operations a programmer application runs, as plans
//! and outcomes. The `thecal` CLI and any other front end (the web programmer) call the
//! same functions; they print nothing, ask nothing and name no command or flag.
//!
//! Each workflow is **plan → confirm → execute**: a `plan` function checks the inputs
//! against what the pump holds ([`Current`]) and returns a plan value (or a plan error
//! that names the input at fault, before anything is sent); the caller shows the plan
//! and asks the clinician to confirm it; `execute` carries out exactly that plan and
//! returns a typed outcome. Errors are one enum per operation, so a caller can tell
//! "nothing happened" from "it happened, but the follow-up did not" from "unknown".
//!
//! * [`refill`] — a refill, checked against the volume aspirated ([`aspiration`]), with a new prescription and the bridge bolus for a drug or
//!   concentration change.
//! * [`schedule`] — a prescription write: compare, (confirm), write, read back.
//! * [`provision`] — the factory step: key agreement and the three role key files.
//! * [`keys`] — key rotation and re-provisioning: the `.next` file, promote, settle.
//! * [`update`] — a signed firmware update: package check, versions, resumable transfer.

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::{PrescriptionRecord, StatusReport};
use thecal_protocol::projection::ReservoirState;

use crate::view::PumpTime;
use crate::{Client, Error};

pub mod aspiration;
pub mod keys;
pub mod provision;
pub mod refill;
pub mod schedule;
pub mod update;

/// What the pump holds now, read before a plan is made: its status and the
/// prescription in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The pump's status (clock, reservoir, flow now, therapy state).
    pub status: StatusReport,
    /// The prescription in force and its revision.
    pub record: PrescriptionRecord,
}

impl Current {
    /// Reads the status, then the prescription in force.
    pub async fn read<T: AsyncRead + AsyncWrite + Unpin>(
        client: &mut Client<T>,
    ) -> Result<Current, Error> {
        let status = client.status().await?;
        let record = client.prescription().await?;
        Ok(Current { status, record })
    }

    /// The pump's clock, to show its times.
    pub fn time(&self) -> PumpTime {
        PumpTime {
            now: self.status.now,
            offset: self.status.offset,
        }
    }

    /// The reservoir now, the start of a projection.
    pub fn reservoir_state(&self) -> ReservoirState {
        reservoir_state(&self.status)
    }
}

/// The start of a projection on the programmer, from the pump's status: its volume,
/// clock and therapy state. The programmer does not see the dosing engine's carried
/// part-stroke nor a bolus's schedule (zero and none): its dates are for comparing
/// prescriptions; the date the pump reports (`StatusReport::low_at`) is the one that
/// holds to the stroke.
pub fn reservoir_state(status: &StatusReport) -> ReservoirState {
    ReservoirState {
        volume: status.reservoir,
        now: status.now,
        offset: status.offset,
        therapy: status.therapy,
        carry: 0,
        bolus: None,
    }
}
