//! Event-log entries as shown and exported.

use serde::Serialize;
use thecal_protocol::message::{BolusEnd, Event, LinkAbuse, LogEntry, ResetCause, SessionEnd};

use super::{alarm_key, bolus_key, PumpTime};
use crate::{clock, quantity};

/// What happened, with its facts (`event` names the variant in JSON). `by` is the role
/// of the session that caused a therapy event (`patient`, `clinician`, `service`,
/// `emergency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum EventView {
    /// The pump started; `cause`: `power_on`, `watchdog`, `software`, `unknown`.
    Reset { cause: &'static str },
    /// A new prescription is in force.
    PrescriptionChanged {
        old_revision: u32,
        new_revision: u32,
        by: &'static str,
    },
    /// A refill was recorded.
    Refilled {
        volume_nl: u32,
        drug: &'static str,
        concentration_ng_per_ml: u32,
        by: &'static str,
    },
    /// A bolus started.
    Bolus {
        kind: &'static str,
        dose_ng: u32,
        by: &'static str,
    },
    /// Therapy stopped.
    TherapyStopped { by: &'static str },
    /// Therapy resumed.
    TherapyResumed { by: &'static str },
    /// An alarm was raised.
    AlarmRaised { alarm: &'static str },
    /// An alarm's cause went away.
    AlarmCleared { alarm: &'static str },
    /// An alarm was acknowledged.
    AlarmAcknowledged {
        alarm: &'static str,
        by: &'static str,
    },
    /// The clock was set.
    ClockChanged {
        from: String,
        to: String,
        utc_offset: String,
        by: &'static str,
    },
    /// A request was refused `count` times in a row; names from the message schema.
    Refused {
        by: &'static str,
        request: String,
        reason: String,
        count: u16,
    },
    /// Handshake proofs that did not verify, `count` in a row.
    HandshakeFailed { role: &'static str, count: u16 },
    /// A session opened.
    SessionOpened { role: &'static str, session: u16 },
    /// A session ended; `reason`: `closed`, `expired`, `replaced`, `counter_exhausted`,
    /// `presence_ended`.
    SessionEnded {
        role: &'static str,
        session: u16,
        reason: &'static str,
    },
    /// Unauthenticated traffic the pump did not answer (an episode, aggregated).
    LinkAbuse { unanswered: u32, forged: u32 },
    /// A device secret was agreed (factory or re-provisioning); every role key is at
    /// `epoch`.
    Provisioned { epoch: u32 },
    /// A role key was rotated (the old one is refused from now on).
    KeyRotated {
        by: &'static str,
        role: &'static str,
        epoch: u32,
    },
    /// The physical-presence signal (magnet) was applied.
    PresenceApplied,
    /// Repeating entries not written because of the log's rate limit.
    Suppressed { count: u32 },
    /// A bolus ended; `end`: `completed`, `cancelled`, `stopped`, `halted`,
    /// `interrupted` (by a reset: `delivered_nl` is an upper bound).
    BolusEnded {
        kind: &'static str,
        end: &'static str,
        delivered_nl: u32,
        planned_nl: u32,
    },
    /// The daily limit began holding back basal strokes.
    BasalWithheld,
    /// Basal delivery resumed after the daily limit held it back.
    BasalResumed { withheld_nl: u32 },
    /// The newest prescription record was damaged; an older revision is in force.
    PrescriptionFallback {
        in_force_revision: u32,
        newest_revision: u32,
    },
    /// The prescription in force breaks a rule of this firmware (older rule set).
    PrescriptionReview { revision: u32, rules: u16 },
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntryView {
    /// Sequence number.
    pub index: u32,
    /// When, in the pump's current offset.
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub event: EventView,
    /// The same in words.
    pub description: String,
}

/// The name of variant `tag` of schema type `ty` (`Request`, `Refusal`), from
/// [`thecal_protocol::SCHEMA`], so it can never drift from the wire.
fn schema_name(ty: &str, tag: u8) -> String {
    thecal_protocol::SCHEMA
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?, words.next()?))
        })
        .find(|(t, n, _)| *t == ty && n.parse() == Ok(tag))
        .map_or_else(|| format!("{ty} {tag}"), |(_, _, name)| name.to_string())
}

/// A schema name in words: `BolusInProgress` → `bolus in progress`.
fn spaced(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl LogEntryView {
    /// From a log entry; times shown in the pump's current offset.
    pub fn new(e: &LogEntry, t: &PumpTime) -> Self {
        let (event, description) = describe(&e.event);
        LogEntryView {
            index: e.index,
            at: t.rfc3339(e.at),
            event,
            description,
        }
    }
}

fn describe(e: &Event) -> (EventView, String) {
    match *e {
        Event::Reset { cause } => {
            let cause = match cause {
                ResetCause::PowerOn => "power_on",
                ResetCause::Watchdog => "watchdog",
                ResetCause::Software => "software",
                ResetCause::Unknown => "unknown",
            };
            (
                EventView::Reset { cause },
                format!("pump started ({})", cause.replace('_', " ")),
            )
        }
        Event::PrescriptionChanged { old, new, by } => (
            EventView::PrescriptionChanged {
                old_revision: old.0,
                new_revision: new.0,
                by: by.name(),
            },
            format!(
                "prescription revision {} replaced {} (by {})",
                new.0,
                old.0,
                by.name()
            ),
        ),
        Event::Refilled {
            volume,
            drug,
            concentration,
            by,
        } => (
            EventView::Refilled {
                volume_nl: volume.0,
                drug: drug.name(),
                concentration_ng_per_ml: concentration.0,
                by: by.name(),
            },
            format!(
                "refilled to {} of {drug} {} (by {})",
                quantity::volume(volume),
                quantity::concentration(concentration),
                by.name()
            ),
        ),
        Event::Bolus { kind, dose, by } => (
            EventView::Bolus {
                kind: bolus_key(kind),
                dose_ng: dose.0,
                by: by.name(),
            },
            format!(
                "{} bolus of {} started (by {})",
                bolus_key(kind),
                quantity::dose(dose),
                by.name()
            ),
        ),
        Event::TherapyStopped { by } => (
            EventView::TherapyStopped { by: by.name() },
            format!("therapy stopped (by {})", by.name()),
        ),
        Event::TherapyResumed { by } => (
            EventView::TherapyResumed { by: by.name() },
            format!("therapy resumed (by {})", by.name()),
        ),
        Event::AlarmRaised(a) => (
            EventView::AlarmRaised {
                alarm: alarm_key(a),
            },
            format!("alarm raised: {a}"),
        ),
        Event::AlarmCleared(a) => (
            EventView::AlarmCleared {
                alarm: alarm_key(a),
            },
            format!("alarm cleared: {a}"),
        ),
        Event::AlarmAcknowledged { alarm, by } => (
            EventView::AlarmAcknowledged {
                alarm: alarm_key(alarm),
                by: by.name(),
            },
            format!("alarm acknowledged: {alarm} (by {})", by.name()),
        ),
        Event::ClockChanged {
            from,
            to,
            offset,
            by,
        } => (
            EventView::ClockChanged {
                from: clock::rfc3339(from, offset),
                to: clock::rfc3339(to, offset),
                utc_offset: clock::fmt_offset(offset),
                by: by.name(),
            },
            format!(
                "clock set from {} to {} (UTC{}, by {})",
                clock::short(from, offset),
                clock::short(to, offset),
                clock::fmt_offset(offset),
                by.name()
            ),
        ),
        Event::Refused {
            by,
            request,
            reason,
            count,
        } => {
            let (request, reason) = (
                schema_name("Request", request),
                schema_name("Refusal", reason),
            );
            let times = if count > 1 {
                format!(" ({count} times)")
            } else {
                String::new()
            };
            let text = format!(
                "{} refused: {} ({}){times}",
                crate::error::request_words(&request),
                spaced(&reason),
                by.name()
            );
            (
                EventView::Refused {
                    by: by.name(),
                    request,
                    reason,
                    count,
                },
                text,
            )
        }
        Event::HandshakeFailed { role, count } => (
            EventView::HandshakeFailed {
                role: role.name(),
                count,
            },
            format!(
                "security: {count} failed handshake proof(s) for {}",
                role.name()
            ),
        ),
        Event::SessionOpened { role, session } => (
            EventView::SessionOpened {
                role: role.name(),
                session,
            },
            format!("session {session} opened ({})", role.name()),
        ),
        Event::SessionEnded {
            role,
            session,
            reason,
        } => {
            let reason = match reason {
                SessionEnd::Closed => "closed",
                SessionEnd::Expired => "expired",
                SessionEnd::Replaced => "replaced",
                SessionEnd::CounterExhausted => "counter_exhausted",
                SessionEnd::PresenceEnded => "presence_ended",
            };
            (
                EventView::SessionEnded {
                    role: role.name(),
                    session,
                    reason,
                },
                format!(
                    "session {session} ({}) ended: {}",
                    role.name(),
                    reason.replace('_', " ")
                ),
            )
        }
        Event::LinkAbuse(LinkAbuse { unanswered, forged }) => (
            EventView::LinkAbuse { unanswered, forged },
            format!(
                "security: link abuse: {unanswered} unauthenticated frame(s) not answered \
                 (energy budget spent), {forged} forged or replayed sealed frame(s)"
            ),
        ),
        Event::Provisioned { epoch } => (
            EventView::Provisioned { epoch },
            format!("security: device secret provisioned; every role key is at epoch {epoch}"),
        ),
        Event::KeyRotated { by, role, epoch } => (
            EventView::KeyRotated {
                by: by.name(),
                role: role.name(),
                epoch,
            },
            format!(
                "security: {} key rotated to epoch {epoch} by {}; the old key is refused",
                role.name(),
                by.name()
            ),
        ),
        Event::PresenceApplied => (
            EventView::PresenceApplied,
            "magnet applied: emergency access open for 5 minutes".into(),
        ),
        Event::Suppressed { count } => (
            EventView::Suppressed { count },
            format!("{count} repeated refusal or security event(s) not logged (rate limit)"),
        ),
        Event::BolusEnded(o) => {
            let (end, how) = match o.end {
                BolusEnd::Completed => ("completed", "completed".to_string()),
                BolusEnd::Cancelled { by } => ("cancelled", format!("cancelled by {}", by.name())),
                BolusEnd::Stopped => ("stopped", "ended by a therapy stop".to_string()),
                BolusEnd::Halted(a) => ("halted", format!("ended by the alarm: {a}")),
                BolusEnd::Interrupted => (
                    "interrupted",
                    "cut short by a pump reset".to_string(),
                ),
            };
            let delivered = if o.end == BolusEnd::Interrupted {
                format!("at most {}", quantity::volume(o.delivered))
            } else {
                quantity::volume(o.delivered)
            };
            (
                EventView::BolusEnded {
                    kind: bolus_key(o.kind),
                    end,
                    delivered_nl: o.delivered.0,
                    planned_nl: o.planned.0,
                },
                format!(
                    "{} bolus {how}: {delivered} of {} delivered",
                    bolus_key(o.kind),
                    quantity::volume(o.planned)
                ),
            )
        }
        Event::BasalWithheld => (
            EventView::BasalWithheld,
            "basal delivery withheld: the rolling 24 h holds the daily limit".into(),
        ),
        Event::BasalResumed { withheld } => (
            EventView::BasalResumed {
                withheld_nl: withheld.0,
            },
            format!(
                "basal delivery resumed after {} was withheld by the daily limit",
                quantity::volume(withheld)
            ),
        ),
        Event::PrescriptionFallback { in_force, newest } => (
            EventView::PrescriptionFallback {
                in_force_revision: in_force.0,
                newest_revision: newest.0,
            },
            format!(
                "stored prescription revision {} was damaged: revision {} is in force; write a new prescription",
                newest.0, in_force.0
            ),
        ),
        Event::PrescriptionReview { revision, rules } => (
            EventView::PrescriptionReview {
                revision: revision.0,
                rules,
            },
            format!(
                "prescription revision {} (written under rule set {rules}) breaks a rule of this firmware: kept in force, review it",
                revision.0
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_in_words() {
        assert_eq!(spaced("BolusInProgress"), "bolus in progress");
        let (_, text) = describe(&Event::Refused {
            by: thecal_protocol::message::Role::Patient,
            request: 9,
            reason: 8,
            count: 2,
        });
        assert_eq!(
            text,
            "the patient bolus refused: patient lockout (patient) (2 times)"
        );
    }

    #[test]
    fn schema_names_come_from_the_schema() {
        assert_eq!(schema_name("Request", 6), "WritePrescription");
        assert_eq!(schema_name("Refusal", 5), "RevisionMismatch");
        assert_eq!(schema_name("Refusal", 200), "Refusal 200");
    }
}
