use super::*;
use crate::workflow::refill::tests::prescription;
use crate::workflow::refill::tests::{current, MORPHINE};
use thecal_protocol::message::{AlarmKind, Capabilities, KeyEpochs, Version};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::Nanolitres;

fn identity() -> Identity {
    Identity {
        model: "duplex".try_into().unwrap(),
        serial: "TH-0001".try_into().unwrap(),
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

fn alarm(kind: AlarmKind, acknowledged: bool) -> AlarmEntry {
    AlarmEntry {
        kind,
        raised_at: Timestamp(500_000),
        acknowledged,
    }
}

#[test]
fn the_first_interrogation_is_before_the_latest_after_and_alarms_are_kept_once() {
    let c = current(300_000);
    let mut r = SessionReport::new(
        "00".repeat(16),
        &identity(),
        Role::Clinician,
        "2026-12-03T10:00:00Z".into(),
    );
    assert_eq!((r.schema, r.role.as_str()), (REPORT_SCHEMA, "clinician"));
    assert_eq!(r.pump.firmware, "1.2.3");
    let low = alarm(AlarmKind::LowReservoir, false);
    r.interrogated(Interrogation::new(&c.status, &c.record, &[low]));
    let mut later = c.status.clone();
    later.reservoir = Nanolitres::from_ml(20);
    r.interrogated(Interrogation::new(&later, &c.record, &[low]));
    assert_eq!(r.before.as_ref().map(|b| b.reservoir_nl), Some(3_000_000));
    assert_eq!(r.after.as_ref().map(|a| a.reservoir_nl), Some(20_000_000));
    assert_eq!(r.alarms_seen.len(), 1);
    assert!(!r.alarms_seen[0].acknowledged);
    r.record(
        "2026-12-03T10:05:00+00:00".into(),
        Change::AlarmAcknowledged {
            alarm: "low_reservoir".into(),
        },
    );
    assert!(r.alarms_seen[0].acknowledged && r.changed_anything());
}

#[test]
fn the_report_reads_back_from_its_json_unchanged() {
    let c = current(300_000);
    let mut r = SessionReport::new(
        "ab".repeat(16),
        &identity(),
        Role::Clinician,
        "2026-12-03T10:00:00Z".into(),
    );
    r.interrogated(Interrogation::new(&c.status, &c.record, &[]));
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
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["changes"][0]["kind"], "prescription");
    assert_eq!(json["changes"][0]["new"]["drug"], "morphine");
    assert_eq!(
        json["changes"][0]["new"]["steps"][0],
        "every day: 00:00 3 mg/day"
    );
    let review = &json["changes"][0]["review"];
    assert!(review["rows"]
        .as_array()
        .is_some_and(|rows| !rows.is_empty()));
    assert!(review["changed"]
        .as_array()
        .is_some_and(|c| c.iter().any(|x| x == "drug")));
    let back: SessionReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}
