//! Event log records.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::drug::Drug;
use crate::message::request::MAX_LOG_PAGE;
use crate::message::{AlarmKind, BolusKind, Revision, Role};
use crate::time::{Timestamp, UtcOffset};
use crate::units::{Nanograms, NanogramsPerMillilitre, Nanolitres};

/// Why the device (re)started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ResetCause {
    PowerOn,
    Watchdog,
    Software,
    Unknown,
}

/// Something that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    /// 0: the device started.
    Reset {
        /// Why.
        cause: ResetCause,
    },
    /// 1: a new prescription is in force.
    PrescriptionChanged {
        /// Revision before.
        old: Revision,
        /// Revision after.
        new: Revision,
    },
    /// 2: a refill was recorded.
    Refilled {
        /// Volume after.
        volume: Nanolitres,
        /// Drug.
        drug: Drug,
        /// Concentration.
        concentration: NanogramsPerMillilitre,
    },
    /// 3: a bolus started.
    Bolus {
        /// Kind (`Patient` for patient-activated).
        kind: BolusKind,
        /// Dose.
        dose: Nanograms,
    },
    /// 4: therapy stopped by a clinician.
    TherapyStopped,
    /// 5: therapy resumed.
    TherapyResumed,
    /// 6: an alarm was raised.
    AlarmRaised(AlarmKind),
    /// 7: an alarm's cause went away.
    AlarmCleared(AlarmKind),
    /// 8: an alarm was acknowledged.
    AlarmAcknowledged(AlarmKind),
    /// 9: the clock was set.
    ClockChanged {
        /// Clock before.
        from: Timestamp,
        /// Clock after.
        to: Timestamp,
        /// UTC offset after.
        offset: UtcOffset,
    },
    /// 10: a request was refused.
    Refused {
        /// Request tag.
        request: u8,
        /// [`crate::message::Refusal::code`].
        reason: u8,
    },
    /// 11: a security-relevant event (failed handshake, lockout).
    Security {
        /// Role concerned.
        role: Role,
        /// Consecutive failures.
        failures: u8,
    },
}

/// One log record. `index` counts every event ever logged; the oldest are overwritten
/// when the ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogEntry {
    /// Sequence number.
    pub index: u32,
    /// When.
    pub at: Timestamp,
    /// What.
    pub event: Event,
}

/// A page of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// Index of the oldest entry still stored.
    pub oldest: u32,
    /// Index the next event will get (one past the newest).
    pub next: u32,
    /// Entries from the requested index, oldest first.
    pub entries: Vec<LogEntry, MAX_LOG_PAGE>,
}
