//! Why the pump refused a request, in terms a clinician can act on.

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::message::{AlarmKind, Revision};
use crate::rules::ScheduleError;
use crate::time::Timestamp;
use crate::units::{Nanograms, NanogramsPerDay, Nanolitres};
use crate::update::UpdateRefusal;

/// A refusal. Nothing changed on the pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Refusal {
    /// 0: the frame was intact but its body is not a request this pump understands.
    Malformed,
    /// 1: the request is known but not served by this pump or in this state.
    Unsupported,
    /// 2: the request needs an authenticated session.
    SessionRequired,
    /// 3: the session's role may not make this request.
    NotPermitted,
    /// 4: the prescription breaks a rule.
    InvalidPrescription(ScheduleError),
    /// 5: the prescription changed since the programmer read it.
    RevisionMismatch {
        /// What the programmer read.
        expected: Revision,
        /// What is in force.
        current: Revision,
    },
    /// 6: the bolus would exceed the hard daily limit (rolling 24 h).
    DailyLimit {
        /// Delivered in the last 24 h.
        delivered: Nanograms,
        /// Requested.
        requested: Nanograms,
        /// Limit.
        limit: NanogramsPerDay,
    },
    /// 7: the prescription allows no patient bolus.
    PatientBolusNotAllowed,
    /// 8: the patient-bolus lockout is running.
    PatientLockout {
        /// When the next bolus is allowed.
        until: Timestamp,
    },
    /// 9: the patient has had the maximum boluses in the last 24 h.
    PatientDailyMaximum {
        /// Allowed per 24 h.
        max: u8,
    },
    /// 10: a bolus is already running.
    BolusInProgress,
    /// 11: the bolus is empty, too fast for the pump, or too long.
    BolusInvalid,
    /// 12: therapy is stopped; resume first.
    TherapyStopped,
    /// 13: a critical alarm prevents this.
    Alarm(AlarmKind),
    /// 14: the refill volume exceeds the reservoir.
    AboveCapacity {
        /// Requested.
        volume: Nanolitres,
        /// Capacity.
        capacity: Nanolitres,
    },
    /// 15: that alarm is not active.
    AlarmNotActive(AlarmKind),
    /// 16: the clock or offset is out of range.
    ClockInvalid,
    /// 17: the change could not be stored and verified; the old state is in force.
    StorageFault,
    /// 18: a prescription write may not change the drug or its concentration: the pump
    /// derives every flow from the concentration, so it changes only with a refill
    /// (which records what is really in the reservoir).
    DrugChangeNeedsRefill,
    /// 19: the pump is answering as many handshakes as it will at the moment (every
    /// pending challenge is younger than 2 s); try again in a few seconds.
    Busy,
    /// 20: the handshake proof did not verify (wrong key for this role and pump).
    AuthenticationFailed,
    /// 21: the pump has no device secret yet; it must be provisioned first.
    NotProvisioned,
    /// 22: the emergency role exists only while the physical-presence signal (a magnet
    /// over the implant) is active.
    PresenceRequired,
    /// 23: the programmer's role key is not the one in force: it was rotated (or the
    /// pump re-provisioned). Use the key of epoch `current`.
    StaleKey {
        /// The epoch the programmer named.
        epoch: u32,
        /// The role's epoch in force.
        current: u32,
    },
    /// 24: no bolus is running (nothing to cancel).
    NoBolus,
    /// 25: a refill must leave at least one stroke of drug in the reservoir (a refill
    /// of less would only halt delivery).
    RefillTooSmall {
        /// Requested.
        volume: Nanolitres,
        /// Least accepted.
        min: Nanolitres,
    },
    /// 26: a firmware update request was refused; the update slot, the active firmware
    /// and therapy are unchanged (see [`UpdateRefusal`]).
    Update(UpdateRefusal),
}

impl Refusal {
    /// Stable one-byte code (the postcard tag), kept in the event log.
    pub const fn code(&self) -> u8 {
        match self {
            Refusal::Malformed => 0,
            Refusal::Unsupported => 1,
            Refusal::SessionRequired => 2,
            Refusal::NotPermitted => 3,
            Refusal::InvalidPrescription(_) => 4,
            Refusal::RevisionMismatch { .. } => 5,
            Refusal::DailyLimit { .. } => 6,
            Refusal::PatientBolusNotAllowed => 7,
            Refusal::PatientLockout { .. } => 8,
            Refusal::PatientDailyMaximum { .. } => 9,
            Refusal::BolusInProgress => 10,
            Refusal::BolusInvalid => 11,
            Refusal::TherapyStopped => 12,
            Refusal::Alarm(_) => 13,
            Refusal::AboveCapacity { .. } => 14,
            Refusal::AlarmNotActive(_) => 15,
            Refusal::ClockInvalid => 16,
            Refusal::StorageFault => 17,
            Refusal::DrugChangeNeedsRefill => 18,
            Refusal::Busy => 19,
            Refusal::AuthenticationFailed => 20,
            Refusal::NotProvisioned => 21,
            Refusal::PresenceRequired => 22,
            Refusal::StaleKey { .. } => 23,
            Refusal::NoBolus => 24,
            Refusal::RefillTooSmall { .. } => 25,
            Refusal::Update(_) => 26,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed => f.write_str("the pump could not decode the request"),
            Refusal::Unsupported => f.write_str("the pump does not serve this request"),
            Refusal::SessionRequired => f.write_str("an authenticated session is required"),
            Refusal::NotPermitted => f.write_str("this role may not make this request"),
            Refusal::InvalidPrescription(e) => write!(f, "prescription refused: {e}"),
            Refusal::RevisionMismatch { expected, current } => write!(
                f,
                "the prescription changed since it was read (read revision {}, now {}); read it again",
                expected.0, current.0
            ),
            Refusal::DailyLimit { delivered, requested, limit } => write!(
                f,
                "{requested} would exceed the daily limit {limit} ({delivered} delivered in the last 24 h)"
            ),
            Refusal::PatientBolusNotAllowed => {
                f.write_str("the prescription allows no patient bolus")
            }
            Refusal::PatientLockout { until } => {
                write!(f, "patient bolus locked out until t={} ms", until.0)
            }
            Refusal::PatientDailyMaximum { max } => {
                write!(f, "the maximum of {max} patient boluses per 24 h is reached")
            }
            Refusal::BolusInProgress => f.write_str("a bolus is already running"),
            Refusal::BolusInvalid => {
                f.write_str("bolus is empty, faster than the pump's maximum flow, or too long")
            }
            Refusal::TherapyStopped => f.write_str("therapy is stopped; resume it first"),
            Refusal::Alarm(a) => write!(f, "blocked by the critical alarm: {a}"),
            Refusal::AboveCapacity { volume, capacity } => {
                write!(f, "{volume} exceeds the reservoir capacity {capacity}")
            }
            Refusal::AlarmNotActive(a) => write!(f, "alarm not active: {a}"),
            Refusal::ClockInvalid => f.write_str("clock or UTC offset out of range"),
            Refusal::StorageFault => f.write_str(
                "the change could not be stored and verified; the previous state is in force",
            ),
            Refusal::DrugChangeNeedsRefill => f.write_str(
                "a prescription write cannot change the drug or concentration; record a refill with the new drug",
            ),
            Refusal::Busy => f.write_str(
                "the pump is busy with other handshakes (another programmer, or interference); try again in a few seconds",
            ),
            Refusal::AuthenticationFailed => {
                f.write_str("authentication failed: wrong key for this role and pump")
            }
            Refusal::NotProvisioned => f.write_str("the pump is not provisioned with a device secret"),
            Refusal::PresenceRequired => f.write_str(
                "emergency access needs the magnet over the pump (physical-presence signal)",
            ),
            Refusal::StaleKey { epoch, current } => write!(
                f,
                "this role key (epoch {epoch}) is not in force on the pump: its key is at epoch {current} (rotated or re-provisioned)"
            ),
            Refusal::NoBolus => f.write_str("no bolus is running"),
            Refusal::RefillTooSmall { volume, min } => write!(
                f,
                "a refill of {volume} would leave the pump unable to deliver; record at least {min}"
            ),
            Refusal::Update(why) => write!(f, "firmware update refused: {why}"),
        }
    }
}

impl core::error::Error for Refusal {}
