//! Event log records.

use serde::{Deserialize, Serialize};

use crate::drug::Drug;
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

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionEnd {
    /// 0: the programmer sent `SessionClose`.
    Closed,
    /// 1: no valid frame for the idle timeout.
    Expired,
    /// 2: a newer handshake with a verified proof replaced it.
    Replaced,
    /// 3: a direction's counter is used up.
    CounterExhausted,
    /// 4: an emergency session's physical-presence window ended.
    PresenceEnded,
}

/// Unauthenticated traffic the pump spent no answer on, aggregated into one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LinkAbuse {
    /// Frames dropped unanswered because the unauthenticated energy budget was spent
    /// (the link went quiet).
    pub unanswered: u32,
    /// Sealed frames that did not open (forged, replayed, reordered, reflected).
    pub forged: u32,
}

/// Something that happened. Therapy events name the role whose session caused them.
/// Refusals, failed handshakes and link abuse repeat: consecutive repeats are
/// aggregated into one entry with a count, and such entries are rate-limited (see
/// PROTOCOL.md 5.6), so they cannot flush the therapy history out of the ring.
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
        /// Who.
        by: Role,
    },
    /// 2: a refill was recorded.
    Refilled {
        /// Volume after.
        volume: Nanolitres,
        /// Drug.
        drug: Drug,
        /// Concentration.
        concentration: NanogramsPerMillilitre,
        /// Who.
        by: Role,
    },
    /// 3: a bolus started.
    Bolus {
        /// Kind (`Patient` for patient-activated).
        kind: BolusKind,
        /// Dose.
        dose: Nanograms,
        /// Who.
        by: Role,
    },
    /// 4: therapy stopped (by a clinician, or in an emergency session).
    TherapyStopped {
        /// Who.
        by: Role,
    },
    /// 5: therapy resumed.
    TherapyResumed {
        /// Who.
        by: Role,
    },
    /// 6: an alarm was raised.
    AlarmRaised(AlarmKind),
    /// 7: an alarm's cause went away.
    AlarmCleared(AlarmKind),
    /// 8: an alarm was acknowledged.
    AlarmAcknowledged {
        /// Which.
        alarm: AlarmKind,
        /// Who.
        by: Role,
    },
    /// 9: the clock was set.
    ClockChanged {
        /// Clock before.
        from: Timestamp,
        /// Clock after.
        to: Timestamp,
        /// UTC offset after.
        offset: UtcOffset,
        /// Who.
        by: Role,
    },
    /// 10: an authenticated request was refused (`NotPermitted` included), `count`
    /// times in a row.
    Refused {
        /// Role of the session.
        by: Role,
        /// Request tag.
        request: u8,
        /// [`crate::message::Refusal::code`].
        reason: u8,
        /// Consecutive identical refusals this entry stands for (at least 1).
        count: u16,
    },
    /// 11: handshake proofs for `role` that did not verify, `count` in a row.
    HandshakeFailed {
        /// Role asked for.
        role: Role,
        /// Consecutive failures this entry stands for (at least 1).
        count: u16,
    },
    /// 12: a session opened.
    SessionOpened {
        /// Its role.
        role: Role,
        /// Session number since the last reset (1, 2, …).
        session: u16,
    },
    /// 13: a session ended.
    SessionEnded {
        /// Its role.
        role: Role,
        /// Session number.
        session: u16,
        /// How.
        reason: SessionEnd,
    },
    /// 14: unauthenticated traffic spent no answer (an episode, aggregated).
    LinkAbuse(LinkAbuse),
    /// 15: a device secret was established (at the factory, or by a service session's
    /// re-provisioning); every role key is at `epoch`.
    Provisioned {
        /// Epoch of every role key after it.
        epoch: u32,
    },
    /// 16: the physical-presence signal (magnet) was applied: emergency access is open
    /// for a bounded time.
    PresenceApplied,
    /// 17: entries of kinds 10, 11 and 14 not written because of the rate limit.
    Suppressed {
        /// Events they stood for.
        count: u32,
    },
    /// 18: the key of `role` was replaced; from now on only epoch `epoch` opens a session
    /// of that role.
    KeyRotated {
        /// Role of the session that rotated it.
        by: Role,
        /// Whose key.
        role: Role,
        /// The new epoch.
        epoch: u32,
    },
    /// 19: a bolus ended (completed, cancelled, stopped, halted or cut by a reset).
    BolusEnded(BolusOutcome),
    /// 20: the hard daily limit began holding back basal strokes.
    BasalWithheld,
    /// 21: basal delivery resumed after the daily limit held it back.
    BasalResumed {
        /// Volume that was held back.
        withheld: Nanolitres,
    },
    /// 22: at boot, the newest prescription record was damaged and an older one is in
    /// force.
    PrescriptionFallback {
        /// Revision in force.
        in_force: Revision,
        /// Newest revision written (as far as the pump knows).
        newest: Revision,
    },
    /// 23: at boot, the prescription in force breaks a rule of this firmware (it was
    /// written under an older rule set): it stays in force, flagged for review.
    PrescriptionReview {
        /// Its revision.
        revision: Revision,
        /// Rule set it was written under ([`crate::rules::RULES_VERSION`] then).
        rules: u16,
    },
}

/// How a bolus ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BolusEnd {
    /// 0: every stroke delivered.
    Completed,
    /// 1: cancelled by a programmer.
    Cancelled {
        /// Who.
        by: Role,
    },
    /// 2: therapy was stopped.
    Stopped,
    /// 3: a critical alarm halted delivery.
    Halted(AlarmKind),
    /// 4: the pump reset while it ran (found at the next boot).
    Interrupted,
}

/// What a bolus delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BolusOutcome {
    /// Kind.
    pub kind: BolusKind,
    /// How it ended.
    pub end: BolusEnd,
    /// Volume delivered (for `Interrupted`: at most this; strokes after the last stored
    /// snapshot are not known).
    pub delivered: Nanolitres,
    /// Volume planned.
    pub planned: Nanolitres,
}

impl Event {
    /// Whether this is a repeating entry (kinds 10, 11, 14): aggregated and rate-limited.
    pub const fn is_noise(&self) -> bool {
        matches!(
            self,
            Event::Refused { .. } | Event::HandshakeFailed { .. } | Event::LinkAbuse(_)
        )
    }
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
