//! The records on SQLite (a temporary file) and on PostgreSQL (`THECAL_TEST_POSTGRES`,
//! which `.ci/postgres` starts: under CI its absence fails the test), and the FHIR
//! export checked against the official FHIR R4 JSON schema (`THECAL_FHIR_SCHEMA`,
//! which `.ci/fhir-schema` fetches: under CI its absence fails the test).

use super::*;
use crate::report::{Change, Interrogation, PrescriptionSummary, Review};
use crate::view::Comparison;
use crate::workflow::refill::tests::{current, prescription, MORPHINE};
use thecal_protocol::message::{Capabilities, Identity, KeyEpochs, Role, Version};
use thecal_protocol::units::Nanolitres;

fn identity(serial: &str) -> Identity {
    Identity {
        model: "duplex".try_into().unwrap(),
        serial: serial.try_into().unwrap(),
        firmware: Version {
            major: 1,
            minor: 2,
            patch: 3,
        },
        protocol: thecal_protocol::PROTOCOL_VERSION,
        schema: 0,
        capabilities: Capabilities(0),
        reservoir_capacity: Nanolitres::from_ml(20),
        public_key: [0; 32],
        key_epochs: KeyEpochs::default(),
    }
}

/// A random 32-hex-digit id, like a programmer's.
fn fresh_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A session of pump `serial` begun at `started`, interrogated once, nothing changed.
fn session(serial: &str, started: &str) -> SessionReport {
    let c = current(300_000);
    let mut r = SessionReport::new(
        fresh_id(),
        &identity(serial),
        Role::Clinician,
        started.into(),
    );
    r.interrogated(Interrogation::new(&c.status, &c.record, &[]));
    r
}

fn bolus(dose_ng: u32, started_at: &str, ends_at: &str) -> Change {
    Change::Bolus {
        bolus: "single".into(),
        drug: "baclofen".into(),
        dose_ng,
        volume_nl: 25_000,
        started_at: started_at.into(),
        ends_at: ends_at.into(),
    }
}

/// Save, save again (replacing), get, list newest first (by pump), latest.
async fn round_trip(records: &Records, fresh_database: bool) {
    // Serials of this run only: a PostgreSQL database may hold earlier runs' sessions.
    let tag = fresh_id();
    let (a, b) = (format!("TA-{}", &tag[..8]), format!("TB-{}", &tag[..8]));
    let mut first = session(&a, "2026-12-01T09:00:00Z");
    let second = session(&b, "2026-12-02T09:00:00Z");
    let third = session(&a, "2026-12-03T09:00:00Z");
    assert_eq!(records.get(&first.id).await.unwrap(), None);
    for r in [&first, &second, &third] {
        records.save(r).await.unwrap();
    }
    assert_eq!(records.get(&first.id).await.unwrap().as_ref(), Some(&first));

    // The session goes on: a bolus, then its end; each save replaces the row.
    first.record(
        "2026-12-01T09:05:00+00:00".into(),
        bolus(
            50_000,
            "2026-12-01T09:05:00+00:00",
            "2026-12-01T09:35:00+00:00",
        ),
    );
    records.save(&first).await.unwrap();
    first.ended_utc = Some("2026-12-01T09:40:00Z".into());
    records.save(&first).await.unwrap();
    assert_eq!(records.get(&first.id).await.unwrap().as_ref(), Some(&first));

    let of_a = records.list(Some(&a), 10).await.unwrap();
    let ids: Vec<&str> = of_a.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [third.id.as_str(), first.id.as_str()]);
    let saved = &of_a[1];
    assert_eq!(
        (
            saved.pump_serial.as_str(),
            saved.role.as_str(),
            saved.changed
        ),
        (a.as_str(), "clinician", true)
    );
    assert_eq!(saved.ended_utc.as_deref(), Some("2026-12-01T09:40:00Z"));
    assert!(!of_a[0].changed && of_a[0].ended_utc.is_none());
    assert_eq!(records.list(Some(&a), 1).await.unwrap().len(), 1);
    assert_eq!(records.list(Some(&b), 10).await.unwrap()[0].id, second.id);
    assert!(records.list(Some("TX-none"), 10).await.unwrap().is_empty());

    assert_eq!(records.latest(Some(&a)).await.unwrap(), Some(third.clone()));
    assert_eq!(
        records.latest(Some(&b)).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(records.latest(Some("TX-none")).await.unwrap(), None);
    if fresh_database {
        let all = records.list(None, 10).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, [&third.id, &second.id, &first.id]);
        assert_eq!(records.latest(None).await.unwrap(), Some(third));
    }
}

#[tokio::test]
async fn sqlite_keeps_replaces_and_lists_sessions_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new folder").join("records.sqlite");
    let records = Records::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(records.location(), path.display().to_string());
    round_trip(&records, true).await;
    records.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }
    // Opened again (the schema already there, `sqlite:` form), the sessions are kept.
    let again = Records::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(again.list(None, 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn postgresql_keeps_replaces_and_lists_sessions_newest_first() {
    let Ok(url) = std::env::var("THECAL_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must test the records on PostgreSQL: set THECAL_TEST_POSTGRES (.ci/postgres)"
        );
        eprintln!("skipped: THECAL_TEST_POSTGRES is not set (.ci/postgres starts a server)");
        return;
    };
    // Programmers opening the records at once (the first time on a fresh server: they
    // migrate once, one after the other), and again (nothing left to migrate).
    let (records, again) = tokio::join!(Records::open(&url), Records::open(&url));
    let (records, again) = (records.unwrap(), again.unwrap());
    round_trip(&records, false).await;
    assert!(!again.list(None, 3).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_file_that_is_not_records_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "this is a text file, not a database, ".repeat(100)).unwrap();
    let e = Records::open(path.to_str().unwrap()).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, RecordsError::Open { .. }), "{e:?}");
    assert!(
        text.starts_with(&format!(
            "cannot open the session records at {}: ",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains("not a database"), "{text}");
}

#[tokio::test]
async fn a_row_of_another_schema_is_named_not_misread() {
    let records = Records::open("sqlite::memory:").await.unwrap();
    let r = session("TH-0001", "2026-12-03T09:00:00Z");
    records.save(&r).await.unwrap();
    sqlx::query("UPDATE sessions SET report = $1 WHERE id = $2")
        .bind(r#"{"schema": 2, "id": "x"}"#)
        .bind(r.id.as_str())
        .execute(&records.pool)
        .await
        .unwrap();
    let e = records.get(&r.id).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "record {} is not a session report of schema 1: it is of schema 2",
            r.id
        )
    );
}

#[tokio::test]
async fn records_of_a_newer_schema_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.sqlite");
    let url = path.to_str().unwrap();
    let records = Records::open(url).await.unwrap();
    sqlx::query("INSERT INTO thecal_schema (version, description) VALUES (99, 'future')")
        .execute(&records.pool)
        .await
        .unwrap();
    records.close().await;
    let e = Records::open(url).await.unwrap_err();
    assert!(
        matches!(e, RecordsError::NewerSchema { found: 99, .. }),
        "{e:?}"
    );
}

#[test]
fn a_postgresql_location_is_named_without_its_password() {
    assert_eq!(
        redact("postgres://thecal:s3cret@db.clinic:5432/records"),
        "postgres://thecal@db.clinic:5432/records"
    );
    assert_eq!(redact("postgres://db/records"), "postgres://db/records");
    assert_eq!(
        url_path(Path::new("/a b/x?y#%.sqlite")),
        "/a b/x%3Fy%23%25.sqlite"
    );
}

#[test]
fn the_default_file_is_under_the_user_data_folder() {
    let p = Records::default_location();
    assert!(p.ends_with("thecal/records.sqlite") || p == Path::new("thecal-records.sqlite"));
}

// ---- FHIR ----

/// A session with a prescription written, two boluses (the second cancelled) and a
/// refill storing a new prescription.
fn eventful() -> SessionReport {
    let c = current(300_000);
    let mut r = session("TH-0042", "2026-12-03T10:00:00Z");
    let new = prescription(MORPHINE);
    let comparison = Comparison::new(&c.record, &new, Some(c.reservoir_state()));
    r.record(
        "2026-12-03T10:03:00+00:00".into(),
        Change::Prescription {
            old_revision: 4,
            new_revision: 5,
            review: Review::from(&comparison),
            new: PrescriptionSummary::new(&new),
        },
    );
    r.record(
        "2026-12-03T10:05:00+00:00".into(),
        bolus(
            50_000,
            "2026-12-03T10:05:00+00:00",
            "2026-12-03T10:35:00+00:00",
        ),
    );
    r.record(
        "2026-12-03T10:40:00+00:00".into(),
        bolus(
            2_400,
            "2026-12-03T10:40:00+00:00",
            "2026-12-03T10:50:00+00:00",
        ),
    );
    r.record(
        "2026-12-03T10:45:00+00:00".into(),
        Change::BolusCancelled {
            delivered_nl: 1_000,
        },
    );
    r.record(
        "2026-12-03T10:55:00+00:00".into(),
        Change::Refill {
            revision: 6,
            expected_nl: 3_000_000,
            aspirated_nl: Some(2_900_000),
            tolerance_nl: Some(1_000_000),
            discrepancy: None,
            volume_nl: 20_000_000,
            drug: "morphine".into(),
            concentration_ng_per_ml: 10_000_000,
            checklist: Vec::new(),
            review: Some(Review::from(&comparison)),
            bridge_bolus_nl: None,
            warnings: Vec::new(),
        },
    );
    r.record(
        "2026-12-03T10:56:00+00:00".into(),
        Change::AlarmAcknowledged {
            alarm: "low_reservoir".into(),
        },
    );
    r.ended_utc = Some("2026-12-03T11:00:00Z".into());
    r
}

fn resources<'a>(bundle: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

#[test]
fn the_bundle_holds_the_pump_each_administration_and_the_session_audit() {
    let r = eventful();
    let b = fhir::bundle(&r);
    assert_eq!(
        (b["resourceType"].as_str(), b["type"].as_str()),
        (Some("Bundle"), Some("collection"))
    );
    assert_eq!(b["timestamp"], "2026-12-03T11:00:00Z");

    let devices = resources(&b, "Device");
    assert_eq!(devices.len(), 1);
    let device = devices[0];
    assert_eq!(device["serialNumber"], "TH-0042");
    assert_eq!(device["modelNumber"], "duplex");
    assert_eq!(device["version"][0]["value"], "1.2.3");
    assert_eq!(device["type"]["text"], "Implantable intrathecal drug pump");
    assert_eq!(resources(&b, "Patient").len(), 1);

    // Two boluses, the prescription written, the refill's prescription; the
    // cancellation and the alarm acknowledgement are no administration.
    let given = resources(&b, "MedicationAdministration");
    assert_eq!(given.len(), 4);
    let doses: Vec<&serde_json::Value> = given
        .iter()
        .filter_map(|m| m["dosage"].get("dose"))
        .collect();
    assert_eq!(doses.len(), 2);
    assert_eq!(doses[0]["value"], serde_json::json!(50));
    assert_eq!(doses[1]["value"], serde_json::json!(2.4));
    assert_eq!(
        (doses[0]["system"].as_str(), doses[0]["code"].as_str()),
        (Some("http://unitsofmeasure.org"), Some("ug"))
    );
    let statuses: Vec<&str> = given
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["in-progress", "completed", "stopped", "in-progress"]
    );
    let infusion = given[0];
    assert_eq!(
        infusion["medicationCodeableConcept"]["text"],
        "morphine 10 mg/mL"
    );
    assert_eq!(infusion["dosage"]["rateQuantity"]["code"], "ug/d");
    assert_eq!(
        infusion["dosage"]["rateQuantity"]["value"],
        serde_json::json!(3000)
    );
    assert_eq!(
        infusion["effectivePeriod"]["start"],
        "2026-12-03T10:03:00+00:00"
    );
    assert_eq!(
        given[1]["medicationCodeableConcept"]["text"],
        "baclofen 500 µg/mL"
    );

    let audits = resources(&b, "AuditEvent");
    assert_eq!(audits.len(), 1);
    let audit = audits[0];
    assert_eq!(audit["type"]["code"], "110100");
    assert_eq!(audit["recorded"], "2026-12-03T10:00:00Z");
    assert_eq!(audit["agent"][0]["role"][0]["text"], "clinician");

    // Every reference resolves to an entry's fullUrl, which is its resource's id.
    let entries = b["entry"].as_array().unwrap();
    for e in entries {
        let url = e["fullUrl"].as_str().unwrap();
        assert_eq!(url.strip_prefix("urn:uuid:"), e["resource"]["id"].as_str());
    }
    let urls: Vec<&str> = entries
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect();
    let device_url = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Device")
        .unwrap()["fullUrl"]
        .as_str()
        .unwrap();
    assert_eq!(audit["entity"][0]["what"]["reference"], device_url);
    for m in &given {
        assert!(urls.contains(&m["subject"]["reference"].as_str().unwrap()));
        assert_eq!(m["device"][0]["reference"], device_url);
    }
    // The same session exports to the same bundle.
    assert_eq!(fhir::bundle(&r), b);
    let mut unique = urls.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), urls.len());
}

#[test]
fn the_bundles_are_valid_against_the_fhir_r4_json_schema() {
    let Some(path) = std::env::var_os("THECAL_FHIR_SCHEMA") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check the FHIR export: set THECAL_FHIR_SCHEMA to fhir.schema.json \
             (.ci/fhir-schema fetches it)"
        );
        eprintln!("skipped: THECAL_FHIR_SCHEMA is not set (.ci/fhir-schema fetches it)");
        return;
    };
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let quiet = session("TH-0001", "2026-12-03T09:00:00Z");
    for r in [eventful(), quiet] {
        let b = fhir::bundle(&r);
        let errors: Vec<String> = validator
            .iter_errors(&b)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
    // The check does check: a wrong field type is refused.
    let mut bad = fhir::bundle(&eventful());
    bad["entry"][1]["resource"]["serialNumber"] = serde_json::json!(42);
    assert!(!validator.is_valid(&bad));
}
