//! A session report as an HL7 FHIR R4 (4.0.1) `Bundle` of type `collection`, for a
//! clinic's record system.
//!
//! The bundle holds:
//!
//! - a `Patient` with no identifying data at all: the programmer does not know who the
//!   patient is, only the pump. The receiving system links it to its patient (its
//!   `text` says so); every patient reference in the bundle points at it.
//! - the `Device`: the pump (serial number, model, firmware version).
//! - one `MedicationAdministration` per bolus (`dosage.dose` in µg, UCUM `ug`), per
//!   prescription written, and per refill that stored a new prescription (an infusion:
//!   `dosage.rateQuantity`, the week's mean daily dose in `ug/d`, the steps in
//!   `dosage.text`).
//! - one `AuditEvent` for the session (DICOM 110100 "Application Activity"): who (the
//!   role), when, with which pump.
//!
//! Resource ids are UUIDs derived from the session id and the resource's place in the
//! report (SHA-256, RFC 9562 version 8), so exporting a session twice gives the same
//! bundle; every `fullUrl` is `urn:uuid:` and that id, and references use the `fullUrl`.
//! Quantities are exact decimals written from the report's integers (`scaled`), times
//! the report's RFC 3339 text (FHIR `dateTime` and `instant` take it as is).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::quantity::scaled;
use crate::report::{Change, ChangeRecord, PrescriptionSummary, SessionReport};

/// SNOMED CT.
const SNOMED: &str = "http://snomed.info/sct";
/// UCUM units.
const UCUM: &str = "http://unitsofmeasure.org";
/// DICOM controlled terminology (AuditEvent types).
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// The bundle of `report` (see the module documentation).
pub fn bundle(report: &SessionReport) -> Value {
    let ids = Ids(&report.id);
    let patient = ids.urn("patient");
    let device = ids.urn("device");
    let mut entries = vec![
        entry(&patient, patient_resource(report, &patient)),
        entry(&device, device_resource(report, &device, &patient)),
    ];
    for (index, change) in report.changes.iter().enumerate() {
        if let Some(resource) = administration(report, index, change, &patient, &device) {
            let url = ids.urn(&format!("change-{index}"));
            entries.push(entry(&url, with_id(resource, &url)));
        }
    }
    let audit = ids.urn("audit");
    entries.push(entry(&audit, audit_event(report, &audit, &device)));
    let bundle = ids.urn("bundle");
    json!({
        "resourceType": "Bundle",
        "id": id_of(&bundle),
        "type": "collection",
        "timestamp": report.ended_utc.as_deref().unwrap_or(&report.started_utc),
        "entry": entries,
    })
}

/// Name-based UUIDs within one session.
struct Ids<'a>(&'a str);

impl Ids<'_> {
    /// `urn:uuid:…` of the resource named `name`.
    fn urn(&self, name: &str) -> String {
        let digest = Sha256::new()
            .chain_update(b"thecal session ")
            .chain_update(self.0.as_bytes())
            .chain_update(b" ")
            .chain_update(name.as_bytes())
            .finalize();
        let mut b = [0u8; 16];
        for (out, d) in b.iter_mut().zip(digest.iter()) {
            *out = *d;
        }
        b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom (RFC 9562)
        b[8] = (b[8] & 0x3f) | 0x80; // the RFC's variant
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let part = |r: std::ops::Range<usize>| hex.get(r).unwrap_or("");
        format!(
            "urn:uuid:{}-{}-{}-{}-{}",
            part(0..8),
            part(8..12),
            part(12..16),
            part(16..20),
            part(20..32)
        )
    }
}

/// The resource id of a `urn:uuid:` URL: the UUID.
fn id_of(urn: &str) -> &str {
    urn.strip_prefix("urn:uuid:").unwrap_or(urn)
}

fn entry(full_url: &str, resource: Value) -> Value {
    json!({ "fullUrl": full_url, "resource": resource })
}

fn with_id(mut resource: Value, urn: &str) -> Value {
    if let Some(object) = resource.as_object_mut() {
        object.insert("id".into(), Value::String(id_of(urn).to_string()));
    }
    resource
}

fn reference(urn: &str, display: &str) -> Value {
    json!({ "reference": urn, "display": display })
}

fn patient_display(report: &SessionReport) -> String {
    format!("patient of pump {}", report.pump.serial)
}

fn patient_resource(report: &SessionReport, urn: &str) -> Value {
    let words = format!(
        "The patient with the implanted pump {} (the programmer does not know who: link \
         this to the patient's record)",
        report.pump.serial
    );
    json!({
        "resourceType": "Patient",
        "id": id_of(urn),
        "text": { "status": "generated", "div": narrative(&words) },
    })
}

fn device_resource(report: &SessionReport, urn: &str, patient: &str) -> Value {
    let pump = &report.pump;
    json!({
        "resourceType": "Device",
        "id": id_of(urn),
        "serialNumber": pump.serial,
        "deviceName": [{ "name": pump.model, "type": "model-name" }],
        "modelNumber": pump.model,
        "type": { "text": "Implantable intrathecal drug pump" },
        "version": [{ "value": pump.firmware }],
        "patient": reference(patient, &patient_display(report)),
    })
}

/// The MedicationAdministration of a change, if it is one: a bolus, a prescription
/// written, a refill that stored a new prescription.
fn administration(
    report: &SessionReport,
    index: usize,
    change: &ChangeRecord,
    patient: &str,
    device: &str,
) -> Option<Value> {
    let (status, medication, effective, dosage) = match &change.change {
        Change::Bolus {
            bolus,
            drug,
            dose_ng,
            started_at,
            ends_at,
            ..
        } => {
            let concentration = concentration_at(report, index, drug);
            let dosage = json!({
                "text": format!("{bolus} bolus of {}", crate::quantity::dose(
                    thecal_protocol::units::Nanograms(*dose_ng))),
                "route": intrathecal(),
                "dose": { "value": micrograms(u64::from(*dose_ng)), "unit": "µg",
                          "system": UCUM, "code": "ug" },
            });
            (
                bolus_status(report, index, ends_at),
                medication_text(drug, concentration),
                (
                    "effectivePeriod",
                    json!({ "start": started_at, "end": ends_at }),
                ),
                dosage,
            )
        }
        Change::Prescription { new, .. } => (
            "in-progress",
            medication_text(&new.drug, Some(new.concentration_ng_per_ml)),
            ("effectivePeriod", json!({ "start": change.at })),
            infusion(Some(new)),
        ),
        Change::Refill {
            revision,
            drug,
            concentration_ng_per_ml,
            review: Some(_),
            ..
        } => {
            let stored = report
                .after
                .as_ref()
                .filter(|a| a.revision == *revision)
                .map(|a| &a.prescription);
            (
                "in-progress",
                medication_text(drug, Some(*concentration_ng_per_ml)),
                ("effectivePeriod", json!({ "start": change.at })),
                infusion(stored),
            )
        }
        _ => return None,
    };
    let mut resource = json!({
        "resourceType": "MedicationAdministration",
        "status": status,
        "medicationCodeableConcept": { "text": medication },
        "subject": reference(patient, &patient_display(report)),
        "device": [reference(device, &format!("pump {}", report.pump.serial))],
        "dosage": dosage,
    });
    if let Some(object) = resource.as_object_mut() {
        object.insert(effective.0.into(), effective.1);
    }
    Some(resource)
}

/// `stopped` if it was cancelled in the session, `completed` if the session ended after
/// its planned end, else `in-progress`.
fn bolus_status(report: &SessionReport, index: usize, ends_at: &str) -> &'static str {
    // A cancellation before the next bolus started is this bolus's.
    let cancelled = report
        .changes
        .iter()
        .skip(index + 1)
        .take_while(|c| !matches!(c.change, Change::Bolus { .. }))
        .any(|c| matches!(c.change, Change::BolusCancelled { .. }));
    if cancelled {
        return "stopped";
    }
    let ended = report
        .ended_utc
        .as_deref()
        .and_then(|e| e.parse::<jiff::Timestamp>().ok());
    let end = ends_at.parse::<jiff::Timestamp>().ok();
    match (ended, end) {
        (Some(ended), Some(end)) if ended >= end => "completed",
        _ => "in-progress",
    }
}

/// The concentration of `drug` in the reservoir when change `index` was made: the
/// latest refill before it, else the prescription in force at the first interrogation.
fn concentration_at(report: &SessionReport, index: usize, drug: &str) -> Option<u32> {
    let refilled = report
        .changes
        .iter()
        .take(index)
        .rev()
        .find_map(|c| match &c.change {
            Change::Refill {
                drug: d,
                concentration_ng_per_ml,
                ..
            } if d == drug => Some(*concentration_ng_per_ml),
            _ => None,
        });
    let found = || {
        report
            .before
            .as_ref()
            .map(|b| &b.prescription)
            .filter(|p| p.drug == drug)
            .map(|p| p.concentration_ng_per_ml)
    };
    refilled.or_else(found)
}

fn medication_text(drug: &str, concentration_ng_per_ml: Option<u32>) -> String {
    match concentration_ng_per_ml {
        Some(c) => format!(
            "{drug} {}",
            crate::quantity::concentration(thecal_protocol::units::NanogramsPerMillilitre(c))
        ),
        None => drug.to_string(),
    }
}

/// The dosage of an infusion under `prescription` (unknown: its text says so).
fn infusion(prescription: Option<&PrescriptionSummary>) -> Value {
    let Some(p) = prescription else {
        return json!({
            "text": "continuous intrathecal infusion; the new prescription was not read back \
                     in this session",
            "route": intrathecal(),
        });
    };
    let week: u64 = p.daily_totals_ng.iter().map(|d| u64::from(*d)).sum();
    let mean_ng = week / 7;
    let text = if p.steps.is_empty() {
        format!("{} intrathecal infusion", p.mode)
    } else {
        format!(
            "{} intrathecal infusion, daily limit {}; {} (rate: the mean daily dose of the week)",
            p.mode,
            crate::quantity::dose_rate(thecal_protocol::units::NanogramsPerDay(
                p.daily_limit_ng_per_day
            )),
            p.steps.join("; ")
        )
    };
    json!({
        "text": text,
        "route": intrathecal(),
        "rateQuantity": { "value": micrograms(mean_ng), "unit": "µg/d", "system": UCUM,
                          "code": "ug/d" },
    })
}

fn intrathecal() -> Value {
    json!({ "coding": [{ "system": SNOMED, "code": "72607000", "display": "Intrathecal route" }],
            "text": "intrathecal" })
}

/// `ng` as micrograms, a JSON number written from the exact decimal (`2_400` → `2.4`).
fn micrograms(ng: u64) -> Value {
    scaled(ng, 3)
        .parse::<serde_json::Number>()
        .map_or(Value::Null, Value::Number)
}

fn audit_event(report: &SessionReport, urn: &str, device: &str) -> Value {
    let mut period = json!({ "start": report.started_utc });
    if let (Some(end), Some(object)) = (&report.ended_utc, period.as_object_mut()) {
        object.insert("end".into(), Value::String(end.clone()));
    }
    let changes = report.changes.len();
    json!({
        "resourceType": "AuditEvent",
        "id": id_of(urn),
        "type": { "system": DICOM, "code": "110100", "display": "Application Activity" },
        "action": if report.changed_anything() { "U" } else { "R" },
        "period": period,
        "recorded": report.started_utc,
        "outcome": "0",
        "outcomeDesc": format!(
            "programming session {} as {}: {changes} change{}",
            report.id, report.role, if changes == 1 { "" } else { "s" }
        ),
        "agent": [{
            "type": { "text": report.role },
            "role": [{ "text": report.role }],
            "who": { "display": format!("{} ({})", report.role, report.programmer) },
            "requestor": true,
        }],
        "source": {
            "site": report.programmer,
            "observer": { "display": report.programmer },
        },
        "entity": [{
            "what": reference(device, &format!("pump {}", report.pump.serial)),
            "description": format!("session report {}", report.id),
        }],
    })
}

/// An XHTML narrative `div` holding `words` (escaped).
fn narrative(words: &str) -> String {
    let mut escaped = String::new();
    for c in words.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            c => escaped.push(c),
        }
    }
    format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{escaped}</div>")
}
