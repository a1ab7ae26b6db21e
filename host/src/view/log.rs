//! Event-log entries as shown and exported.

use serde::Serialize;
use thecal_protocol::message::{Event, LogEntry, ResetCause, Role};

use super::{alarm_key, bolus_key, PumpTime};
use crate::{clock, quantity};

/// What happened, with its facts (`event` names the variant in JSON).
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
    },
    /// A refill was recorded.
    Refilled {
        volume_nl: u32,
        drug: &'static str,
        concentration_ng_per_ml: u32,
    },
    /// A bolus started.
    Bolus { kind: &'static str, dose_ng: u32 },
    /// Therapy stopped by a clinician.
    TherapyStopped,
    /// Therapy resumed.
    TherapyResumed,
    /// An alarm was raised.
    AlarmRaised { alarm: &'static str },
    /// An alarm's cause went away.
    AlarmCleared { alarm: &'static str },
    /// An alarm was acknowledged.
    AlarmAcknowledged { alarm: &'static str },
    /// The clock was set.
    ClockChanged {
        from: String,
        to: String,
        utc_offset: String,
    },
    /// A request was refused; names from the message schema.
    Refused { request: String, reason: String },
    /// A security event (failed handshake, lockout).
    Security { role: &'static str, failures: u8 },
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
        Event::PrescriptionChanged { old, new } => (
            EventView::PrescriptionChanged {
                old_revision: old.0,
                new_revision: new.0,
            },
            format!("prescription revision {} replaced {}", new.0, old.0),
        ),
        Event::Refilled {
            volume,
            drug,
            concentration,
        } => (
            EventView::Refilled {
                volume_nl: volume.0,
                drug: drug.name(),
                concentration_ng_per_ml: concentration.0,
            },
            format!(
                "refilled to {} of {drug} {}",
                quantity::volume(volume),
                quantity::concentration(concentration)
            ),
        ),
        Event::Bolus { kind, dose } => (
            EventView::Bolus {
                kind: bolus_key(kind),
                dose_ng: dose.0,
            },
            format!(
                "{} bolus of {} started",
                bolus_key(kind),
                quantity::dose(dose)
            ),
        ),
        Event::TherapyStopped => (EventView::TherapyStopped, "therapy stopped".into()),
        Event::TherapyResumed => (EventView::TherapyResumed, "therapy resumed".into()),
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
        Event::AlarmAcknowledged(a) => (
            EventView::AlarmAcknowledged {
                alarm: alarm_key(a),
            },
            format!("alarm acknowledged: {a}"),
        ),
        Event::ClockChanged { from, to, offset } => (
            EventView::ClockChanged {
                from: clock::rfc3339(from, offset),
                to: clock::rfc3339(to, offset),
                utc_offset: clock::fmt_offset(offset),
            },
            format!(
                "clock set from {} to {} (UTC{})",
                clock::short(from, offset),
                clock::short(to, offset),
                clock::fmt_offset(offset)
            ),
        ),
        Event::Refused { request, reason } => {
            let (request, reason) = (
                schema_name("Request", request),
                schema_name("Refusal", reason),
            );
            let text = format!("{request} refused: {reason}");
            (EventView::Refused { request, reason }, text)
        }
        Event::Security { role, failures } => {
            let role = match role {
                Role::Patient => "patient",
                Role::Clinician => "clinician",
                Role::Service => "service",
            };
            (
                EventView::Security { role, failures },
                format!("security: {failures} failed {role} attempts"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_come_from_the_schema() {
        assert_eq!(schema_name("Request", 6), "WritePrescription");
        assert_eq!(schema_name("Refusal", 5), "RevisionMismatch");
        assert_eq!(schema_name("Refusal", 200), "Refusal 200");
    }
}
