//! `store_load`: a damaged flash image into the store and a booting pump. The base image
//! is a real one (a pump that had its prescription rewritten, was refilled with morphine
//! and delivered for a day, made once per process); the input patches it: a sequence of
//! `offset (3 bytes, modulo the store) · mode (1 byte: bit 0 XOR else set) · length (1
//! byte, modulo 33) · bytes`, so single bit rot, torn words, whole forged records and
//! wiped pages are all reachable. Then the pump boots on it and runs a day.
//!
//! Checked: no panic; the prescription in force has a structure the engine can run
//! (`check_structure`), and it breaks a rule only when it is flagged for review; the
//! `Status` and `Prescription` answers encode and decode (what a programmer reads back);
//! over the day the motor delivers no more than the daily limit in force.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use thecal_device::pump::{demo, Pump};
use thecal_device::store::flash::RamFlash;
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::therapy::motor::{CountingMotor, STROKE_NL};
use thecal_fuzz::reader::Reader;
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{Request, ResetCause, Response, Revision};
use thecal_protocol::prescription::{Prescription, TherapyMode};
use thecal_protocol::rules::{check_structure, validate};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, MS_PER_DAY};

const WALL_AT_ZERO: Timestamp = Timestamp(1_795_392_000_000);
const BOOT: Timestamp = Timestamp(1_000);

type FuzzPump = Pump<FlashStore<RamFlash<FLASH_SIZE>>, CountingMotor>;

fn boot(flash: RamFlash<FLASH_SIZE>, now: Timestamp) -> FuzzPump {
    let prescription = demo::demo_prescription().expect("the demo prescription is valid");
    Pump::boot(
        demo::demo_info(1),
        demo::demo_factory(WALL_AT_ZERO, prescription),
        FlashStore::new(flash).expect("the store fits the flash"),
        CountingMotor::default(),
        now,
        ResetCause::PowerOn,
    )
}

fn run(pump: &mut FuzzPump, end: Timestamp) {
    loop {
        let wake = pump.next_wake();
        if wake > end {
            pump.tick(end);
            return;
        }
        pump.tick(wake);
    }
}

/// The base image and the device time it was left at.
fn base() -> &'static (Vec<u8>, Timestamp) {
    static BASE: OnceLock<(Vec<u8>, Timestamp)> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut pump = boot(RamFlash::new(), BOOT);
        let demo = demo::demo_prescription().expect("valid");
        let mut rewritten = demo.draft().clone();
        rewritten.daily_limit = NanogramsPerDay::from_ug(900);
        let t = BOOT.plus_ms(3_600_000);
        pump.handle(
            t,
            &Request::WritePrescription {
                expected: Revision(1),
                prescription: rewritten,
            },
        );
        let mut morphine = demo.draft().clone();
        morphine.drug = Drug::Morphine;
        morphine.concentration = NanogramsPerMillilitre::from_mg_per_ml(10);
        morphine.daily_limit = NanogramsPerDay::from_mg(10);
        morphine.mode = TherapyMode::Continuous {
            dose: NanogramsPerDay::from_mg(5),
        };
        morphine.patient_bolus = None;
        pump.handle(
            t.plus_ms(60_000),
            &Request::Refill {
                expected: Revision(2),
                volume: Nanolitres::from_ml(18),
                prescription: Some(morphine),
            },
        );
        let end = t.plus_ms(MS_PER_DAY);
        run(&mut pump, end);
        let flash = pump.into_storage().into_inner();
        (flash.as_bytes().to_vec(), end)
    })
}

fn limit_nl(p: &Prescription) -> u64 {
    p.daily_limit()
        .to_flow(p.concentration())
        .map_or(0, |f| u64::from(f.0))
}

fuzz_target!(|data: &[u8]| {
    let (image, end) = base();
    let mut flash = RamFlash::<FLASH_SIZE>::new();
    flash.as_bytes_mut().copy_from_slice(image);
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let at = r.take(3);
        let offset = at.iter().fold(0usize, |a, b| a << 8 | usize::from(*b)) % FLASH_SIZE;
        let xor = r.u8().unwrap_or(0) & 1 == 1;
        let len = usize::from(r.u8().unwrap_or(0)) % 33;
        let bytes = r.take(len);
        let target = flash.as_bytes_mut();
        for (i, b) in bytes.iter().enumerate() {
            if let Some(t) = target.get_mut(offset + i) {
                *t = if xor { *t ^ b } else { *b };
            }
        }
    }
    let now = end.plus_ms(1);
    let mut pump = boot(flash, now);
    let record = pump.record().clone();
    let draft = record.prescription.draft();
    assert!(check_structure(draft).is_ok(), "an unsound prescription is in force");
    if validate(draft).is_err() {
        assert!(record.standing.review, "a rule is broken without review: {draft:?}");
    }
    for request in [Request::Status, Request::ReadPrescription, Request::Reservoir] {
        let answer = pump.handle(now, &request);
        let bytes = postcard::to_stdvec(&answer).expect("encodes");
        let back: Response = postcard::from_bytes(&bytes).expect("a programmer decodes it");
        assert_eq!(back, answer);
    }
    let strokes_before = pump.motor().strokes;
    let limit = limit_nl(&pump.record().prescription.clone());
    run(&mut pump, now.plus_ms(MS_PER_DAY));
    let delivered = u64::from(pump.motor().strokes - strokes_before) * u64::from(STROKE_NL);
    // The prescription in force cannot change without a request: the limit holds.
    assert!(delivered <= limit, "{delivered} nL over a day, limit {limit} nL");
});
