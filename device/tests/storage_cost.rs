//! What writes cost in flash operations and bytes (printed: run with `--nocapture`), and
//! that the largest records the types allow fit the store.

mod storage_common;

use heapless::Vec;
use storage_common::*;
use thecal_device::store::flash::FlashStats;
use thecal_device::store::layout::{MAX_LOG_ENTRY, MAX_RECORD};
use thecal_device::store::{
    RefillFacts, SavedBolus, Snapshot, Solution, Storage, StoredPrescription, MAX_ACKNOWLEDGED,
    MAX_PATIENT_HISTORY, WINDOW_BUCKETS,
};
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{AlarmKind, BolusKind, Event, LogEntry, Revision, Role};
use thecal_protocol::prescription::{
    DaySteps, PatientBolusRules, Prescription, PrescriptionDraft, Step, TherapyMode,
    MAX_PROFILE_DAYS, MAX_STEPS_PER_DAY,
};
use thecal_protocol::time::{MinuteOfDay, Timestamp, UtcOffset};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};

/// The largest prescription the rules accept: seven days of the most steps, with doses
/// whose encodings are as long as any valid dose's.
fn largest_record() -> StoredPrescription {
    let mut days = Vec::new();
    for d in 0..MAX_PROFILE_DAYS {
        let mut day: DaySteps = Vec::new();
        for s in 0..MAX_STEPS_PER_DAY {
            day.push(Step {
                start: MinuteOfDay((s * 89) as u16),
                dose: NanogramsPerDay(19_000_000 + (d * 100 + s) as u32),
            })
            .unwrap();
        }
        days.push(day).unwrap();
    }
    let draft = PrescriptionDraft {
        drug: Drug::Bupivacaine,
        concentration: NanogramsPerMillilitre::from_mg_per_ml(30),
        daily_limit: NanogramsPerDay::from_mg(20),
        mode: TherapyMode::Flexible { days },
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms(900_000),
            lockout: Minutes(1_000),
            max_per_day: 1,
        }),
        low_reservoir_alarm: Nanolitres(9_999_999),
    };
    Prescription::new(draft.clone()).unwrap();
    StoredPrescription {
        revision: Revision(u32::MAX),
        written_at: Timestamp(u64::MAX),
        rules: u16::MAX,
        draft,
        refill: Some(RefillFacts {
            volume: Nanolitres(u32::MAX),
            at: Timestamp(u64::MAX),
            from: Solution {
                drug: Drug::Ziconotide,
                concentration: NanogramsPerMillilitre(u32::MAX),
            },
        }),
    }
}

/// The largest snapshot the types allow.
fn largest_snapshot() -> Snapshot {
    let mut s = snapshot(1);
    s.seq = u32::MAX;
    s.saved_at = Timestamp(u64::MAX);
    s.wall_offset_ms = i64::MIN;
    s.utc_offset = UtcOffset(i16::MIN);
    s.reservoir = Nanolitres(u32::MAX);
    s.last_refill = Some(Timestamp(u64::MAX));
    s.delivered_total = u64::MAX;
    s.reserved = u32::MAX;
    s.battery_used_nah = u64::MAX;
    s.window_epoch = u64::MAX;
    s.window = Vec::from_slice(&[u32::MAX; WINDOW_BUCKETS]).unwrap();
    s.patient_boluses = Vec::from_slice(&[Timestamp(u64::MAX); MAX_PATIENT_HISTORY]).unwrap();
    s.acknowledged = Vec::from_slice(&[AlarmKind::DeliveryWithheld; MAX_ACKNOWLEDGED]).unwrap();
    s.legacy_secret = Some([0xFF; 32]);
    s.boot_count = u32::MAX;
    s.revision = Revision(u32::MAX);
    s.basal_carry = u64::MAX;
    s.bolus = Some(SavedBolus {
        kind: BolusKind::Priming,
        dose: Nanograms(u32::MAX),
        strokes: u32::MAX,
        delivered: u32::MAX,
        start: Timestamp(u64::MAX),
        duration_ms: u64::MAX,
    });
    s.withheld = Some((Timestamp(u64::MAX), u32::MAX));
    s.halted_since = Some(Timestamp(u64::MAX));
    let solution = Solution {
        drug: Drug::Ziconotide,
        concentration: NanogramsPerMillilitre(u32::MAX),
    };
    s.old_solution = Some(solution);
    s.solution = Some(solution);
    s
}

fn largest_entry() -> LogEntry {
    LogEntry {
        index: u32::MAX,
        at: Timestamp(u64::MAX),
        event: Event::ClockChanged {
            from: Timestamp(u64::MAX),
            to: Timestamp(u64::MAX),
            offset: UtcOffset(i16::MIN),
            by: Role::Emergency,
        },
    }
}

/// Payload bytes of a prescription or snapshot record: the 2-byte format prefix and
/// the postcard body.
fn encoded_len<T: serde::Serialize>(value: &T) -> usize {
    2 + entry_len(value)
}

/// Payload bytes of a log entry: postcard alone.
fn entry_len<T: serde::Serialize>(value: &T) -> usize {
    postcard::to_slice(value, &mut [0u8; 4096]).unwrap().len()
}

/// Operations of `op` on a store that already holds one of each record (so no page is
/// opened or erased): the steady-state cost.
fn cost(op: impl FnOnce(&mut Store)) -> FlashStats {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    store.save_prescription(&record(1)).unwrap();
    store.save_snapshot(&snapshot(1)).unwrap();
    store.append_log(&entry(0)).unwrap();
    let before = flash.stats();
    op(&mut mount(&mut flash));
    flash.stats().since(&before)
}

fn show(what: &str, payload: usize, stats: FlashStats) {
    println!(
        "{what:<34} payload {payload:>4} B: {:>3} flash ops ({} word writes = {} B, {} erases), {} reads",
        stats.ops(),
        stats.word_writes,
        stats.bytes_written(),
        stats.page_erases,
        stats.reads
    );
}

#[test]
fn largest_records_fit_and_round_trip() {
    let (rec, snap, e) = (largest_record(), largest_snapshot(), largest_entry());
    println!(
        "largest encodings: prescription {} B, snapshot {} B, log entry {} B",
        encoded_len(&rec),
        encoded_len(&snap),
        entry_len(&e)
    );
    assert!(encoded_len(&rec) <= MAX_RECORD);
    assert!(encoded_len(&snap) <= MAX_RECORD);
    assert!(entry_len(&e) <= MAX_LOG_ENTRY);
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    store.save_prescription(&rec).unwrap();
    store.save_snapshot(&snap).unwrap();
    // The store gives the entry its index (0 here); the size bound is for any index.
    store.append_log(&e).unwrap();
    let stored = mount(&mut flash).load().unwrap();
    assert_eq!(stored.prescription, Some(rec));
    assert_eq!(stored.snapshot, Some(snap));
    let (_, entries) = read_all(&mut mount(&mut flash), 0);
    assert_eq!(entries, [LogEntry { index: 0, ..e }]);
}

#[test]
fn print_operation_counts() {
    let simple = StoredPrescription {
        revision: Revision(2),
        written_at: Timestamp(1_795_392_000_000),
        rules: thecal_protocol::rules::RULES_VERSION,
        draft: simple_prescription().draft().clone(),
        refill: None,
    };
    let largest = largest_record();
    show(
        "prescription write (simple)",
        encoded_len(&simple),
        cost(|s| s.save_prescription(&simple).unwrap()),
    );
    show(
        "prescription write (weekly, 16 steps)",
        encoded_len(&record(3)),
        cost(|s| s.save_prescription(&record(3)).unwrap()),
    );
    show(
        "prescription write (largest)",
        encoded_len(&largest),
        cost(|s| s.save_prescription(&largest).unwrap()),
    );
    // A day into a continuous 0.2 mL/day therapy: every bucket ~2 µL, two boluses.
    let mut typical = snapshot(2);
    typical.window = Vec::from_slice(&[2_083; WINDOW_BUCKETS]).unwrap();
    show(
        "snapshot write (typical)",
        encoded_len(&typical),
        cost(|s| s.save_snapshot(&typical).unwrap()),
    );
    let full = largest_snapshot();
    show(
        "snapshot write (largest)",
        encoded_len(&full),
        cost(|s| s.save_snapshot(&full).unwrap()),
    );
    show(
        "log append",
        encoded_len(&entry(1)),
        cost(|s| {
            s.append_log(&entry(1)).unwrap();
        }),
    );
    // Every field at its largest: every role key rotated, epochs at their maximum.
    let mut keys = secrets(2);
    keys.generation = u32::MAX;
    keys.device_secret = Some([0xFF; 32]);
    for slot in keys.keys.iter_mut() {
        slot.epoch = u32::MAX;
        slot.key = Some([0xFF; 32]);
    }
    assert!(encoded_len(&keys) <= MAX_RECORD);
    show(
        "secrets write (largest, two copies)",
        encoded_len(&keys),
        cost(|s| s.save_secrets(&keys).unwrap()),
    );
    show(
        "load (one of each record)",
        0,
        cost(|s| {
            s.load().unwrap();
        }),
    );
    // A write that has to reuse a page: one erase more (and a 4 KiB blank check).
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    for rev in 1..100 {
        let before = store.flash().stats();
        store.save_prescription(&record(rev)).unwrap();
        let s = store.flash().stats().since(&before);
        if s.page_erases > 0 {
            show(
                "prescription write (reuses a page)",
                encoded_len(&record(rev)),
                s,
            );
            return;
        }
    }
    panic!("no write reused a page");
}
