//! The session report: what a programming session saw and changed, for the patient's
//! chart. A programmer builds one per session ([`SessionReport::new`], then
//! [`SessionReport::interrogated`] and [`SessionReport::record`] as the session goes);
//! it is kept in the session records, printed (HTML, the browser's print to PDF) and
//! exported (JSON, HL7 FHIR).
//!
//! The report holds its own owned, plain values (no enum of the contract, no borrowed
//! name), so it reads back from the records unchanged: its JSON is a stable document with
//! a schema version ([`REPORT_SCHEMA`]). Quantities are integers in the contract's units
//! (`_ng`, `_nl`, `_ng_per_day`), with the same names as the CLI's `--json`; times are
//! RFC 3339 in the patient's local time (the pump's clock and UTC offset) unless named
//! `_utc` (the programmer's clock).

use serde::{Deserialize, Serialize};

use thecal_protocol::message::{AlarmEntry, Identity, PrescriptionRecord, Role, StatusReport};
use thecal_protocol::Prescription;

use crate::view::{AlarmView, Comparison, PrescriptionView, PumpTime, StatusView};

/// The version of the report document; a change of meaning or a removed field bumps it.
pub const REPORT_SCHEMA: u32 = 1;

/// One programming session, from the first interrogation to the close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReport {
    /// [`REPORT_SCHEMA`].
    pub schema: u32,
    /// This session's identifier (32 hex digits, random).
    pub id: String,
    /// The pump.
    pub pump: PumpRecord,
    /// The programmer: `thecal` and its version.
    pub programmer: String,
    /// The role the session was opened as: `clinician`, `patient`, `service`,
    /// `emergency`.
    pub role: String,
    /// When the session began, by the programmer's clock (UTC).
    pub started_utc: String,
    /// When it ended (`null` while it runs).
    pub ended_utc: Option<String>,
    /// The first interrogation of the session: the pump as it was found.
    pub before: Option<Interrogation>,
    /// The latest interrogation: the pump as it was left (the new alarm date).
    pub after: Option<Interrogation>,
    /// Every change made, in order.
    pub changes: Vec<ChangeRecord>,
    /// Every alarm seen active during the session (once each, as first seen).
    pub alarms_seen: Vec<AlarmRecord>,
}

/// The pump's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PumpRecord {
    /// Serial number.
    pub serial: String,
    /// Model name.
    pub model: String,
    /// Firmware version.
    pub firmware: String,
    /// Reservoir capacity.
    pub reservoir_capacity_nl: u32,
}

/// The pump's state, read at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrogation {
    /// Pump clock at the reading.
    pub at: String,
    /// `running`, `stopped` or `halted`.
    pub therapy: String,
    /// Prescription revision in force.
    pub revision: u32,
    /// The prescription in force.
    pub prescription: PrescriptionSummary,
    /// Reservoir volume.
    pub reservoir_nl: u32,
    /// The low-reservoir alarm date, as the pump projects it (`null`: not within the
    /// horizon, or nothing drains).
    pub low_reservoir_at: Option<String>,
    /// When the reservoir is empty.
    pub empty_reservoir_at: Option<String>,
    /// Delivered in the last 24 h.
    pub delivered_24h_ng: u32,
    /// `ok`, `elective_replacement`, `end_of_service`.
    pub battery: String,
    /// Active alarms.
    pub alarms: Vec<AlarmRecord>,
}

/// A prescription as the chart needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrescriptionSummary {
    /// Drug.
    pub drug: String,
    /// Concentration.
    pub concentration_ng_per_ml: u32,
    /// Hard daily limit.
    pub daily_limit_ng_per_day: u32,
    /// `stopped`, `continuous` or `flexible`.
    pub mode: String,
    /// Basal dose of each day, Monday first.
    pub daily_totals_ng: [u32; 7],
    /// The steps, one line per group of days (`Mon–Fri: 00:00 2.4 µg/day, …`).
    pub steps: Vec<String>,
    /// Patient bolus, in words (`null`: none allowed).
    pub patient_bolus: Option<String>,
}

/// An alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmRecord {
    /// `low_reservoir`, `motor_stall`, … (as `thecal alarms ack` takes it).
    pub kind: String,
    /// Readable name.
    pub name: String,
    /// Needs action now.
    pub critical: bool,
    /// When raised.
    pub raised_at: String,
    /// Whether it was acknowledged (by the end of the session).
    pub acknowledged: bool,
}

/// A change made during the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// Pump clock when it was confirmed by the pump.
    pub at: String,
    /// What it was.
    #[serde(flatten)]
    pub change: Change,
}

/// Kinds of change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A new prescription written and read back.
    Prescription {
        /// The revision replaced.
        old_revision: u32,
        /// The revision in force after.
        new_revision: u32,
        /// Old and new side by side.
        review: Review,
        /// The new prescription.
        new: PrescriptionSummary,
    },
    /// A refill recorded.
    Refill {
        /// The revision in force after.
        revision: u32,
        /// The pump's estimate before the refill.
        expected_nl: u32,
        /// What was aspirated (`null`: not measured).
        aspirated_nl: Option<u32>,
        /// The tolerance the aspirated volume was checked against.
        tolerance_nl: Option<u32>,
        /// `less` or `more` beyond the tolerance; `null` within it or unmeasured.
        discrepancy: Option<String>,
        /// The volume in the reservoir after the refill.
        volume_nl: u32,
        /// The drug and concentration filled.
        drug: String,
        /// Its concentration.
        concentration_ng_per_ml: u32,
        /// The checklist, question and answer.
        checklist: Vec<ChecklistAnswer>,
        /// The prescription change stored with the refill, if any.
        review: Option<Review>,
        /// The bridge bolus started (volume of old drug).
        bridge_bolus_nl: Option<u32>,
        /// The warnings the clinician confirmed despite.
        warnings: Vec<String>,
    },
    /// A bolus started.
    Bolus {
        /// `single`, `priming`, `bridge`, `patient`.
        bolus: String,
        /// Drug.
        drug: String,
        /// Dose.
        dose_ng: u32,
        /// Volume.
        volume_nl: u32,
        /// When it started.
        started_at: String,
        /// Its planned end.
        ends_at: String,
    },
    /// The running bolus cancelled.
    BolusCancelled {
        /// Volume delivered.
        delivered_nl: u32,
    },
    /// Therapy stopped.
    Stopped,
    /// Therapy resumed.
    Resumed,
    /// An alarm acknowledged.
    AlarmAcknowledged {
        /// Its kind.
        alarm: String,
    },
    /// The pump clock set.
    ClockSet {
        /// The pump's clock before.
        old: String,
        /// After.
        new: String,
    },
}

/// A refill checklist item and the clinician's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistAnswer {
    /// The question, as asked.
    pub question: String,
    /// The answer, as given.
    pub answer: String,
}

/// Old and new side by side: the rows of the comparison and both alarm dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The rows: what, in force, new.
    pub rows: Vec<ReviewRow>,
    /// What differs (`drug`, `steps`, …).
    pub changed: Vec<String>,
    /// The low-reservoir alarm date in force (projected).
    pub old_low_at: Option<String>,
    /// The low-reservoir alarm date under the new prescription.
    pub new_low_at: Option<String>,
}

/// One row of the side-by-side review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRow {
    /// What the row shows.
    pub label: String,
    /// In force.
    pub old: Vec<String>,
    /// New.
    pub new: Vec<String>,
    /// Whether they differ.
    pub changed: bool,
}

impl From<&Comparison> for Review {
    fn from(c: &Comparison) -> Self {
        Review {
            rows: c
                .rows()
                .iter()
                .map(|r| ReviewRow {
                    label: r.label.clone(),
                    old: r.old.clone(),
                    new: r.new.clone(),
                    changed: r.changed(),
                })
                .collect(),
            changed: c.changed.iter().map(|s| s.to_string()).collect(),
            old_low_at: c.old_projection.as_ref().and_then(|p| p.low_at.clone()),
            new_low_at: c.new_projection.as_ref().and_then(|p| p.low_at.clone()),
        }
    }
}

impl PrescriptionSummary {
    /// From a prescription.
    pub fn new(p: &Prescription) -> Self {
        let v = PrescriptionView::new(p);
        let steps = crate::view::chart_step_lines(p);
        PrescriptionSummary {
            drug: v.drug.to_string(),
            concentration_ng_per_ml: v.concentration_ng_per_ml,
            daily_limit_ng_per_day: v.daily_limit_ng_per_day,
            mode: v.mode.to_string(),
            daily_totals_ng: v.daily_totals_ng,
            steps,
            patient_bolus: v.patient_bolus.map(|b| {
                format!(
                    "{} at least {} apart, at most {} a day",
                    crate::quantity::dose(thecal_protocol::units::Nanograms(b.dose_ng)),
                    crate::quantity::duration(thecal_protocol::units::Minutes(b.lockout_min)),
                    b.max_per_day
                )
            }),
        }
    }
}

impl AlarmRecord {
    /// From an alarm entry.
    pub fn new(a: &AlarmEntry, t: &PumpTime) -> Self {
        let v = AlarmView::new(a, t);
        AlarmRecord {
            kind: v.kind.to_string(),
            name: v.name.to_string(),
            critical: v.critical,
            raised_at: v.raised_at,
            acknowledged: v.acknowledged,
        }
    }
}

impl Interrogation {
    /// From one status, the prescription in force and the active alarms.
    pub fn new(status: &StatusReport, record: &PrescriptionRecord, alarms: &[AlarmEntry]) -> Self {
        let t = PumpTime {
            now: status.now,
            offset: status.offset,
        };
        let v = StatusView::new(status);
        Interrogation {
            at: v.now,
            therapy: v.therapy.to_string(),
            revision: record.revision.0,
            prescription: PrescriptionSummary::new(&record.prescription),
            reservoir_nl: v.reservoir_nl,
            low_reservoir_at: v.low_reservoir_at,
            empty_reservoir_at: v.empty_reservoir_at,
            delivered_24h_ng: v.delivered_24h_ng,
            battery: v.battery.to_string(),
            alarms: alarms.iter().map(|a| AlarmRecord::new(a, &t)).collect(),
        }
    }
}

/// The words of a role in a report.
pub fn role_key(role: Role) -> &'static str {
    match role {
        Role::Patient => "patient",
        Role::Clinician => "clinician",
        Role::Service => "service",
        Role::Emergency => "emergency",
    }
}

impl SessionReport {
    /// A new report for a session with the pump `identity` as `role`, begun at
    /// `started_utc` (RFC 3339), with the identifier `id`.
    pub fn new(id: String, identity: &Identity, role: Role, started_utc: String) -> Self {
        SessionReport {
            schema: REPORT_SCHEMA,
            id,
            pump: PumpRecord {
                serial: identity.serial.to_string(),
                model: identity.model.to_string(),
                firmware: identity.firmware.to_string(),
                reservoir_capacity_nl: identity.reservoir_capacity.0,
            },
            programmer: concat!("thecal ", env!("CARGO_PKG_VERSION")).to_string(),
            role: role_key(role).to_string(),
            started_utc,
            ended_utc: None,
            before: None,
            after: None,
            changes: Vec::new(),
            alarms_seen: Vec::new(),
        }
    }

    /// Notes an interrogation: the first is `before`, every one is `after`; alarms not
    /// seen yet are added to `alarms_seen`, and an alarm seen again updates its
    /// acknowledgement.
    pub fn interrogated(&mut self, i: Interrogation) {
        for a in &i.alarms {
            match self
                .alarms_seen
                .iter_mut()
                .find(|s| s.kind == a.kind && s.raised_at == a.raised_at)
            {
                Some(seen) => seen.acknowledged |= a.acknowledged,
                None => self.alarms_seen.push(a.clone()),
            }
        }
        if self.before.is_none() {
            self.before = Some(i.clone());
        }
        self.after = Some(i);
    }

    /// Notes a change the pump confirmed at `at` (pump clock, RFC 3339). An alarm
    /// acknowledged is marked so in `alarms_seen`.
    pub fn record(&mut self, at: String, change: Change) {
        if let Change::AlarmAcknowledged { alarm } = &change {
            for seen in self.alarms_seen.iter_mut().filter(|s| &s.kind == alarm) {
                seen.acknowledged = true;
            }
        }
        self.changes.push(ChangeRecord { at, change });
    }

    /// Whether the session changed anything.
    pub fn changed_anything(&self) -> bool {
        !self.changes.is_empty()
    }
}

#[cfg(test)]
mod tests;
