//! `thecal records` as a process, over a SQLite file the library wrote: list, show,
//! FHIR export, and the errors (an unknown session, a file that is not records).

mod common;

use common::thecal;
use thecal_host::records::Records;
use thecal_host::report::{Change, SessionReport};
use thecal_protocol::message::{Capabilities, Identity, KeyEpochs, Role, Version};
use thecal_protocol::units::Nanolitres;

fn report(id: &str, serial: &str, started: &str) -> SessionReport {
    let identity = Identity {
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
    };
    SessionReport::new(id.into(), &identity, Role::Clinician, started.into())
}

/// A records file holding two sessions of TH-0001 (the newer with a bolus) and one of
/// TH-0002.
fn records_file(dir: &std::path::Path) -> String {
    let path = dir.join("records.sqlite").display().to_string();
    let mut newer = report(&"b".repeat(32), "TH-0001", "2026-12-03T10:00:00Z");
    newer.record(
        "2026-12-03T10:05:00+00:00".into(),
        Change::Bolus {
            bolus: "single".into(),
            drug: "baclofen".into(),
            dose_ng: 50_000,
            volume_nl: 100_000,
            started_at: "2026-12-03T10:05:00+00:00".into(),
            ends_at: "2026-12-03T10:35:00+00:00".into(),
        },
    );
    newer.ended_utc = Some("2026-12-03T10:40:00Z".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let records = Records::open(&path).await.unwrap();
        for r in [
            report(&"a".repeat(32), "TH-0001", "2026-12-01T10:00:00Z"),
            report(&"c".repeat(32), "TH-0002", "2026-12-02T10:00:00Z"),
            newer,
        ] {
            records.save(&r).await.unwrap();
        }
        records.close().await;
    });
    path
}

#[test]
fn records_are_listed_shown_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let path = records_file(dir.path());
    let at = ["--records", path.as_str()];
    let run = |args: &[&str]| thecal(&[&at[..], args].concat());

    let listed = run(&["records", "list", "--serial", "TH-0001"]);
    let text = listed.ok();
    let b = text.find(&"b".repeat(32)).expect("the newer session");
    let a = text.find(&"a".repeat(32)).expect("the older session");
    assert!(b < a, "newest first: {text}");
    assert!(!text.contains("TH-0002"), "{text}");

    let all = run(&["--json", "records", "list", "--limit", "2"]).json();
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b".repeat(32), "c".repeat(32)]);
    assert_eq!(all[0]["changed"], true);

    let shown = run(&["records", "show", "--last", "--serial", "TH-0001"]);
    let text = shown.ok();
    assert!(text.contains("single bolus: 50 µg baclofen"), "{text}");
    assert!(text.contains("TH-0001 (duplex, firmware 1.2.3)"), "{text}");
    let doc = run(&["--json", "records", "show", &"c".repeat(32)]).json();
    assert_eq!(
        (doc["schema"].as_u64(), doc["pump"]["serial"].as_str()),
        (Some(1), Some("TH-0002"))
    );

    let bundle = run(&["records", "fhir", "--last"]).json();
    assert_eq!(bundle["resourceType"], "Bundle");
    let kinds: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Patient",
            "Device",
            "MedicationAdministration",
            "AuditEvent"
        ]
    );
}

#[test]
fn an_unknown_session_and_a_file_that_is_not_records_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = records_file(dir.path());
    let unknown = thecal(&["--records", &path, "records", "show", "0123"]);
    assert_eq!(unknown.code, Some(2), "{unknown:#?}");
    assert!(
        unknown.stderr.contains("no session 0123 in the records at"),
        "{unknown:#?}"
    );

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a database at all, ".repeat(100)).unwrap();
    let notes = notes.display().to_string();
    let bad = thecal(&["--records", &notes, "records", "list"]);
    assert_eq!(bad.code, Some(1), "{bad:#?}");
    assert!(
        bad.stderr.starts_with(&format!(
            "error: cannot open the session records at {notes}: "
        )),
        "{bad:#?}"
    );
    let run = thecal(&["--json", "--records", &notes, "records", "list"]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["error"]["kind"], "records");
}
