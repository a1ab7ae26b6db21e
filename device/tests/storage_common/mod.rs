//! Shared by the storage tests: records to store, a seeded generator, a full-log reader and
//! the "reboot" that power-cut tests need (power back on, RAM state forgotten).
#![allow(dead_code)]

use heapless::Vec;
use thecal_device::store::flash::RamFlash;
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::store::{
    LogBounds, RefillFacts, RoleSlot, SavedBolus, Secrets, Snapshot, Solution, Storage, Stored,
    StoredPrescription,
};
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{
    AlarmKind, BolusKind, Event, LogEntry, Revision, Role, MAX_LOG_PAGE,
};
use thecal_protocol::prescription::{
    DaySteps, PatientBolusRules, Prescription, PrescriptionDraft, Step, TherapyMode,
};
use thecal_protocol::time::{MinuteOfDay, Timestamp, UtcOffset};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};

pub type Flash = RamFlash<FLASH_SIZE>;
/// The store borrows a boxed flash, so a test can keep the flash across "reboots".
pub type Store<'f> = FlashStore<&'f mut Flash>;

pub fn blank_flash() -> Box<Flash> {
    Box::new(Flash::new())
}

pub fn mount(flash: &mut Flash) -> Store<'_> {
    FlashStore::new(flash).unwrap()
}

/// Power back on and boot: clears the injected fault, then loads from a fresh store.
pub fn reboot_and_load(flash: &mut Flash) -> Stored {
    flash.reboot();
    mount(flash).load().expect("load after a power cut")
}

/// A tiny deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn draft(mode: TherapyMode, bolus: bool) -> PrescriptionDraft {
    PrescriptionDraft {
        drug: Drug::Baclofen,
        concentration: NanogramsPerMillilitre::from_ug_per_ml(500),
        daily_limit: NanogramsPerDay::from_ug(1_000),
        mode,
        patient_bolus: bolus.then_some(PatientBolusRules {
            dose: Nanograms::from_ug(50),
            lockout: Minutes(60),
            max_per_day: 3,
        }),
        low_reservoir_alarm: Nanolitres::from_ml(2),
    }
}

/// A simple prescription: 100 µg/day continuous, as in the task brief.
pub fn simple_prescription() -> Prescription {
    Prescription::new(PrescriptionDraft {
        drug: Drug::Baclofen,
        concentration: NanogramsPerMillilitre::from_ug_per_ml(500),
        daily_limit: NanogramsPerDay::from_ug(300),
        mode: TherapyMode::Continuous {
            dose: NanogramsPerDay::from_ug(100),
        },
        patient_bolus: None,
        low_reservoir_alarm: Nanolitres::from_ml(2),
    })
    .unwrap()
}

/// A flexible profile of `days` days (1 or 7) with `steps` steps each.
fn profile(days: usize, steps: usize, salt: u32) -> TherapyMode {
    let mut all = Vec::new();
    for d in 0..days {
        let mut day: DaySteps = Vec::new();
        for s in 0..steps {
            let start = MinuteOfDay((s * 1440 / steps) as u16);
            let ug = 100 + (salt + d as u32 * 7 + s as u32 * 13) % 300;
            day.push(Step {
                start,
                dose: NanogramsPerDay::from_ug(ug),
            })
            .unwrap();
        }
        all.push(day).unwrap();
    }
    TherapyMode::Flexible { days: all }
}

/// Revision `rev`: sizes vary from a few dozen bytes to a full weekly 16-step profile.
pub fn record(rev: u32) -> StoredPrescription {
    let mode = match rev % 4 {
        0 => TherapyMode::Continuous {
            dose: NanogramsPerDay::from_ug(100 + rev % 200),
        },
        1 => profile(1, 1 + (rev as usize % 16), rev),
        2 => profile(7, 4 + (rev as usize % 13), rev),
        _ => profile(7, 16, rev),
    };
    let draft = draft(mode, rev.is_multiple_of(3));
    Prescription::new(draft.clone()).unwrap();
    StoredPrescription {
        revision: Revision(rev),
        written_at: Timestamp(1_795_392_000_000 + u64::from(rev) * 60_000),
        rules: thecal_protocol::rules::RULES_VERSION,
        draft: draft.clone(),
        refill: rev.is_multiple_of(5).then_some(RefillFacts {
            volume: Nanolitres(20_000_000 + rev),
            at: Timestamp(u64::from(rev) * 1_000),
            from: Solution {
                drug: draft.drug,
                concentration: draft.concentration,
            },
        }),
    }
}

/// Snapshot number `seq`, with a window and bolus history whose size depends on `seq`.
pub fn snapshot(seq: u32) -> Snapshot {
    let mut window = Vec::new();
    let buckets = (seq as usize * 7) % (thecal_device::store::WINDOW_BUCKETS + 1);
    for i in 0..buckets {
        window.push(2_083 + (i as u32 * 997 + seq) % 5_000).unwrap();
    }
    let mut patient_boluses = Vec::new();
    for i in 0..(seq % 5) {
        patient_boluses
            .push(Timestamp(1_795_392_000_000 + u64::from(i) * 3_600_000))
            .unwrap();
    }
    let mut acknowledged = Vec::new();
    if seq.is_multiple_of(3) {
        acknowledged.push(AlarmKind::LowReservoir).unwrap();
    }
    Snapshot {
        seq,
        saved_at: Timestamp(1_000_000 + u64::from(seq) * 900_000),
        wall_offset_ms: 1_795_391_000_000,
        utc_offset: UtcOffset(60),
        reservoir: Nanolitres(40_000_000 - seq * 10_000),
        last_refill: seq.is_multiple_of(2).then_some(Timestamp(5_000)),
        stopped: seq.is_multiple_of(7),
        delivered_total: u64::from(seq) * 10_000,
        reserved: seq % 3 * 10_000,
        battery_used_nah: u64::from(seq) * 12_345,
        window_epoch: u64::from(seq / 96),
        window,
        patient_boluses,
        acknowledged,
        legacy_secret: seq.is_multiple_of(5).then_some([0x5A; 32]),
        boot_count: seq * 16,
        revision: Revision(seq / 2),
        basal_carry: u64::from(seq) * 86_399_999 % (250 * 86_400_000),
        bolus: seq.is_multiple_of(4).then_some(SavedBolus {
            kind: BolusKind::Bridge,
            dose: Nanograms(seq),
            strokes: 400,
            delivered: seq % 400,
            start: Timestamp(u64::from(seq) * 1_000),
            duration_ms: 3_600_000,
        }),
        withheld: seq
            .is_multiple_of(6)
            .then_some((Timestamp(u64::from(seq)), seq * 250)),
        halted_since: seq.is_multiple_of(11).then_some(Timestamp(7)),
        old_solution: seq.is_multiple_of(4).then_some(Solution {
            drug: Drug::Morphine,
            concentration: NanogramsPerMillilitre(seq),
        }),
        solution: Some(Solution {
            drug: Drug::Baclofen,
            concentration: NanogramsPerMillilitre(2_000_000),
        }),
    }
}

/// Secrets record of generation `generation`: the same static key, a device secret and
/// role keys that change with it (rotated keys on some, derived on others).
pub fn secrets(generation: u32) -> Secrets {
    let g = generation as u8;
    Secrets {
        generation,
        identity: [0x1D; 32],
        device_secret: (generation > 1).then_some([g ^ 0x5A; 32]),
        keys: [
            RoleSlot {
                epoch: generation,
                key: generation.is_multiple_of(2).then_some([g; 32]),
            },
            RoleSlot {
                epoch: 1 + generation / 3,
                key: generation.is_multiple_of(3).then_some([g ^ 0xC3; 32]),
            },
            RoleSlot {
                epoch: 1,
                key: None,
            },
        ],
    }
}

/// Log entry `index`; events of varying size.
pub fn entry(index: u32) -> LogEntry {
    let event = match index % 5 {
        0 => Event::AlarmRaised(AlarmKind::LowReservoir),
        1 => Event::Bolus {
            kind: BolusKind::Patient,
            dose: Nanograms::from_ug(50 + index % 100),
            by: Role::Patient,
        },
        2 => Event::PrescriptionChanged {
            old: Revision(index),
            new: Revision(index + 1),
            by: Role::Clinician,
        },
        3 => Event::ClockChanged {
            from: Timestamp(u64::from(index) * 1_000_003),
            to: Timestamp(1_795_392_000_000 + u64::from(index)),
            offset: UtcOffset(-300),
            by: Role::Clinician,
        },
        _ => Event::TherapyResumed {
            by: Role::Clinician,
        },
    };
    LogEntry {
        index,
        at: Timestamp(1_795_392_000_000 + u64::from(index) * 1_000),
        event,
    }
}

/// Every entry from `first`, paging `MAX_LOG_PAGE` at a time as a programmer does.
pub fn read_all(store: &mut impl Storage, first: u32) -> (LogBounds, std::vec::Vec<LogEntry>) {
    let mut all = std::vec::Vec::new();
    let mut from = first;
    let mut page: Vec<LogEntry, MAX_LOG_PAGE> = Vec::new();
    let mut bounds = store.read_log(from, MAX_LOG_PAGE, &mut page).unwrap();
    while let Some(last) = page.last() {
        from = last.index + 1;
        all.extend(page.iter().copied());
        bounds = store.read_log(from, MAX_LOG_PAGE, &mut page).unwrap();
        assert!(page.len() <= MAX_LOG_PAGE);
    }
    (bounds, all)
}
