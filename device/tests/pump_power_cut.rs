//! Power cuts through the whole pump core: the flash loses power at every operation of a
//! prescription write and of a refill; after the reboot the prescription is the old one
//! or the new one, whole; an answered write is never lost; the log stays readable; the
//! reservoir estimate is never above what was really in the pump.

mod common;

use common::*;
use thecal_device::therapy::battery::BatteryConfig;
use thecal_protocol::message::{Request, Response, Revision};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::Nanolitres;

/// Runs `request` with the power failing after `k` flash operations, then reboots.
/// Returns the answer (if the pump got to answer) and the rebooted pump.
fn cut_during(k: u64, setup: impl Fn(&mut TestPump), request: &Request) -> (Response, TestPump) {
    let mut pump = boot(continuous(250), Nanolitres::from_ml(20));
    setup(&mut pump);
    let now = BOOT.plus_ms(HOUR);
    pump.storage_mut().flash_mut().cut_power_after(k);
    let answer = pump.handle(now, request);
    let mut flash = pump.into_storage().into_inner();
    flash.reboot();
    let store = thecal_device::store::FlashStore::new(flash).expect("store mounts after a cut");
    let rebooted = boot_with(
        continuous(250),
        Nanolitres::from_ml(20),
        BatteryConfig::default(),
        store,
    );
    (answer, rebooted)
}

fn log_readable(pump: &mut TestPump, now: Timestamp) {
    match pump.handle(now, &Request::ReadLog { first: 0, max: 8 }) {
        Response::LogPage(page) => assert!(!page.entries.is_empty()),
        other => panic!("log unreadable after a power cut: {other:?}"),
    }
}

#[test]
fn prescription_write_is_old_or_new_at_every_cut() {
    let old = continuous(250);
    let new = flexible();
    let write = Request::WritePrescription {
        expected: Revision(1),
        prescription: new.clone().into(),
    };
    for k in 0..2_000 {
        let (answer, mut pump) = cut_during(k, |_| {}, &write);
        let record = pump.record().clone();
        match record.revision {
            Revision(1) => assert_eq!(record.prescription, old, "cut {k}"),
            Revision(2) => assert_eq!(record.prescription, new, "cut {k}"),
            other => panic!("cut {k}: revision {other:?}"),
        }
        log_readable(&mut pump, BOOT.plus_ms(2 * HOUR));
        if answer
            == (Response::PrescriptionWritten {
                revision: Revision(2),
            })
        {
            assert_eq!(
                record.revision,
                Revision(2),
                "cut {k}: an answered write was lost"
            );
            // The budget outlasted the write: every cut point before this one was seen.
            assert!(
                k > 3,
                "a prescription write takes several flash operations ({k})"
            );
            return;
        }
    }
    panic!("the write never completed");
}

#[test]
fn refill_never_raises_the_estimate_above_the_truth() {
    // Deliver for a day, then refill to 20 mL with power cuts at every operation.
    let refill = Request::Refill {
        expected: Revision(1),
        volume: Nanolitres::from_ml(20),
        prescription: None,
    };
    let day = |p: &mut TestPump| run_until(p, BOOT.plus_ms(HOUR - 1));
    for k in 0..500 {
        let (answer, mut pump) = cut_during(k, day, &refill);
        let v = pump.reservoir();
        // Before the refill the pump held 20 mL minus the basal of an hour.
        let before_refill = Nanolitres::from_ml(20).0 - 500_000 / 24;
        assert!(v.0 <= Nanolitres::from_ml(20).0, "cut {k}: {v:?}");
        if matches!(answer, Response::Refilled { .. }) {
            // Answered: the new volume is stored (less the reservation taken at boot).
            assert!(
                v.0 >= Nanolitres::from_ml(20).0 - 2 * thecal_device::pump::RESERVE_NL,
                "cut {k}: {v:?}"
            );
            return;
        }
        assert!(
            v.0 <= before_refill
                || v.0 >= Nanolitres::from_ml(20).0 - 2 * thecal_device::pump::RESERVE_NL,
            "cut {k}: {v:?}"
        );
        log_readable(&mut pump, BOOT.plus_ms(2 * HOUR));
    }
    panic!("the refill never completed");
}

#[test]
fn an_unreadable_prescription_stops_therapy_without_destroying_the_snapshot() {
    use thecal_device::store::layout::{LOG_OFFSET, PRESCRIPTION_OFFSET, SNAPSHOT_OFFSET};
    use thecal_protocol::message::{AlarmKind, TherapyState};
    let mut pump = boot(continuous(250), Nanolitres::from_ml(20));
    run_until(&mut pump, BOOT.plus_ms(DAY));
    let mut flash = pump.into_storage().into_inner();
    // Rot the whole prescription region: no valid copy is left.
    let (p0, s0, l0) = (
        PRESCRIPTION_OFFSET as usize,
        SNAPSHOT_OFFSET as usize,
        LOG_OFFSET as usize,
    );
    for (i, b) in flash.as_bytes_mut()[p0..s0].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x5A;
    }
    let snapshot_region = flash.as_bytes()[s0..l0].to_vec();
    let store = thecal_device::store::FlashStore::new(flash).unwrap();
    let mut pump = boot_with(
        continuous(250),
        Nanolitres::from_ml(20),
        BatteryConfig::default(),
        store,
    );
    assert!(pump.alarm_active(AlarmKind::StorageFault));
    match pump.handle(BOOT.plus_ms(DAY + 1), &Request::Status) {
        Response::Status(s) => assert_eq!(s.therapy, TherapyState::Stopped),
        other => panic!("{other:?}"),
    }
    let flash = pump.into_storage().into_inner();
    assert!(
        flash.as_bytes()[s0..l0] == snapshot_region[..],
        "the stored snapshot was overwritten"
    );
}
