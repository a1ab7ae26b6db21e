//! A firmware update keeps therapy: a flash image written by protocol-4 firmware (format-1
//! records, `fixtures/protocol4.flash.txt`) boots under this firmware with the same
//! prescription, reservoir, rolling window and log, migrated in memory and rewritten in
//! the current format by the next saves; nothing is flagged, nothing stops.

mod common;

use common::*;
use thecal_device::pump::Pump;
use thecal_device::store::flash::RamFlash;
use thecal_device::store::{FlashStore, Storage};
use thecal_device::therapy::battery::BatteryConfig;
use thecal_device::therapy::motor::CountingMotor;
use thecal_protocol::message::{Event, Request, ResetCause, Response, Revision, TherapyState};
use thecal_protocol::prescription::{Prescription, TherapyMode};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{NanogramsPerDay, Nanolitres};

/// The protocol-4 image, rebuilt from its text form.
fn protocol4_flash() -> RamFlash<FLASH> {
    let mut flash = RamFlash::new();
    let text = include_str!("fixtures/protocol4.flash.txt");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (offset, hex) = line.split_once(' ').unwrap();
        let offset = usize::from_str_radix(offset, 16).unwrap();
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
            flash.as_bytes_mut()[offset + i] = byte;
        }
    }
    flash
}

/// What protocol-4 firmware had in force when it wrote the image.
const RESERVOIR_P4: u32 = 19_212_500;
const WINDOW_P4: u64 = 787_500;
const END_P4: u64 = BOOT.0 + DAY;

fn in_force_p4() -> Prescription {
    let mut d = draft(TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(400),
    });
    d.patient_bolus = None;
    Prescription::new(d).unwrap()
}

#[test]
fn a_protocol_4_flash_boots_with_its_therapy_intact() {
    let store = FlashStore::new(protocol4_flash()).unwrap();
    // Booted where device time stood when the old firmware stopped (it never goes
    // back). The factory values differ from the stored ones: anything taken from them
    // would show.
    let mut pump = Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(100), Nanolitres::from_ml(40)),
        store,
        CountingMotor::default(),
        Timestamp(END_P4),
        ResetCause::PowerOn,
    );
    let now = Timestamp(END_P4 + 1);
    pump.tick(now);
    assert_eq!(pump.record().revision, Revision(2));
    assert_eq!(pump.record().prescription, in_force_p4());
    // The snapshot is net of the 10 µL reserved ahead of delivery: never above the truth,
    // at most one reservation below.
    let reservoir = pump.reservoir().0;
    assert!(
        reservoir <= RESERVOIR_P4
            && reservoir + 2 * thecal_device::pump::RESERVE_NL >= RESERVOIR_P4,
        "{reservoir}"
    );
    let window = pump.window_total(now);
    assert!(
        (WINDOW_P4..=WINDOW_P4 + 2 * u64::from(thecal_device::pump::RESERVE_NL)).contains(&window),
        "{window}"
    );
    let Response::Status(s) = pump.handle(now, &Request::Status) else {
        panic!()
    };
    assert_eq!(s.therapy, TherapyState::Running);
    assert!(
        !s.standing.fallback && !s.standing.review,
        "{:?}",
        s.standing
    );
    assert_eq!(s.standing.newest, Revision(2));
    assert!(!s.critical, "no alarm from a migration");
    // The old log is readable, followed by this boot's reset.
    let Response::LogPage(page) = pump.handle(now, &Request::ReadLog { first: 0, max: 24 }) else {
        panic!()
    };
    let events: Vec<Event> = page.entries.iter().map(|e| e.event).collect();
    assert!(matches!(events[0], Event::Reset { .. }), "{events:?}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::PrescriptionChanged {
                new: Revision(2),
                ..
            }
        )),
        "{events:?}"
    );
    // The boot already rewrote the snapshot in format 2; a prescription write rewrites
    // that record. Both still load after another reboot.
    let answer = pump.handle(
        now,
        &Request::WritePrescription {
            expected: Revision(2),
            prescription: continuous(300).into(),
        },
    );
    assert_eq!(
        answer,
        Response::PrescriptionWritten {
            revision: Revision(3)
        }
    );
    let mut store = pump.into_storage();
    let stored = store.load().unwrap();
    assert_eq!(stored.prescription.unwrap().revision, Revision(3));
    // The boot's snapshot, format 2, with the revision it knew.
    assert_eq!(stored.snapshot.unwrap().revision, Revision(2));
    assert!(!stored.prescription_fell_back);
}
