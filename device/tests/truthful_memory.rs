//! What the pump stores and what it says agree, across failing writes, power cuts,
//! damaged records and rule changes (issue 15, items 1–3):
//!
//! * a refill that changes the solution is one atomic record: whatever write fails, the
//!   answer tells the truth, and after a reboot prescription and reservoir agree;
//! * a fallback to an older prescription is logged, alarmed and visible in `Status` and
//!   `ReadPrescription`; across a refill it stops therapy rather than run the old
//!   prescription on the new solution;
//! * a prescription valid under the rules it was written under stays in force under a
//!   firmware whose rules it breaks, flagged for review; a record failing its own rules,
//!   or with an unsound structure, is corrupt.

mod common;

use common::*;
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use thecal_device::pump::Pump;
use thecal_device::store::flash::{FlashError, RamFlash};
use thecal_device::store::layout::{PRESCRIPTION_OFFSET, SNAPSHOT_OFFSET};
use thecal_device::store::{FlashStore, Storage, StoredPrescription};
use thecal_device::therapy::battery::BatteryConfig;
use thecal_device::therapy::motor::CountingMotor;
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{
    AlarmKind, Event, PrescriptionRecord, Refusal, Request, ResetCause, Response, Revision,
    StatusReport, TherapyState,
};
use thecal_protocol::prescription::{Prescription, PrescriptionDraft, TherapyMode};
use thecal_protocol::rules::RULES_VERSION;
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, MS_PER_DAY};

/// A RAM flash whose `n`-th write or erase from arming fails once, changing nothing
/// (a transient driver error: the flash works again afterwards).
struct Flaky {
    inner: RamFlash<FLASH>,
    fail_at: Option<u64>,
    ops: u64,
}

impl Flaky {
    fn new() -> Self {
        Self {
            inner: RamFlash::new(),
            fail_at: None,
            ops: 0,
        }
    }
    fn arm(&mut self, n: u64) {
        self.fail_at = Some(n);
        self.ops = 0;
    }
    fn op(&mut self) -> Result<(), FlashError> {
        let n = self.ops;
        self.ops += 1;
        if self.fail_at == Some(n) {
            self.fail_at = None;
            return Err(FlashError::Io);
        }
        Ok(())
    }
    /// Whether the armed failure is still to come (the operation used fewer ops).
    fn pending(&self) -> bool {
        self.fail_at.is_some()
    }
}

impl ErrorType for Flaky {
    type Error = FlashError;
}

impl ReadNorFlash for Flaky {
    const READ_SIZE: usize = RamFlash::<FLASH>::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl NorFlash for Flaky {
    const WRITE_SIZE: usize = RamFlash::<FLASH>::WRITE_SIZE;
    const ERASE_SIZE: usize = RamFlash::<FLASH>::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.op()?;
        self.inner.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.op()?;
        self.inner.write(offset, bytes)
    }
}

type FlakyPump = Pump<FlashStore<Flaky>, CountingMotor>;

fn boot_on<F: NorFlash>(flash: F) -> Pump<FlashStore<F>, CountingMotor> {
    Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(250), Nanolitres::from_ml(20)),
        FlashStore::new(flash).unwrap(),
        CountingMotor::default(),
        BOOT,
        ResetCause::PowerOn,
    )
}

/// Baclofen 2 mg/mL (from the factory's 500 µg/mL): the same dose, a quarter of the flow.
fn concentrated() -> Prescription {
    let mut d = draft(TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(250),
    });
    d.concentration = NanogramsPerMillilitre::from_ug_per_ml(2_000);
    Prescription::new(d).unwrap()
}

/// Morphine 10 mg/mL, 5 mg/day: another drug.
fn morphine() -> Prescription {
    let mut d = draft(TherapyMode::Continuous {
        dose: NanogramsPerDay::from_mg(5),
    });
    d.drug = Drug::Morphine;
    d.concentration = NanogramsPerMillilitre::from_mg_per_ml(10);
    d.daily_limit = NanogramsPerDay::from_mg(10);
    d.patient_bolus = None;
    Prescription::new(d).unwrap()
}

fn status(pump: &mut Pump<impl Storage, CountingMotor>, now: Timestamp) -> StatusReport {
    match pump.handle(now, &Request::Status) {
        Response::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

fn read_record(pump: &mut Pump<impl Storage, CountingMotor>, now: Timestamp) -> PrescriptionRecord {
    match pump.handle(now, &Request::ReadPrescription) {
        Response::Prescription(r) => r,
        other => panic!("{other:?}"),
    }
}

fn events(pump: &mut Pump<impl Storage, CountingMotor>, now: Timestamp) -> Vec<Event> {
    let mut out = Vec::new();
    let mut first = 0;
    loop {
        let Response::LogPage(page) = pump.handle(now, &Request::ReadLog { first, max: 24 }) else {
            panic!("log unreadable")
        };
        let Some(last) = page.entries.last() else {
            return out;
        };
        first = last.index + 1;
        out.extend(page.entries.iter().map(|e| e.event));
    }
}

const REFILL_VOLUME: Nanolitres = Nanolitres(20_000_000);

/// Item 1: for every write of a refill with a new solution failing in turn, the answer
/// is the truth — `Refilled` means the new prescription and the new volume are in force
/// (now and after a reboot), `StorageFault` means neither is — and the two never mix.
#[test]
fn a_refill_with_a_new_solution_answers_the_truth_whichever_write_fails() {
    for new in [concentrated(), morphine()] {
        let mut completed = false;
        for n in 0..40 {
            let mut pump: FlakyPump = boot_on(Flaky::new());
            let now = BOOT.plus_ms(HOUR);
            while pump.next_wake() <= now {
                let wake = pump.next_wake();
                pump.tick(wake);
            }
            pump.tick(now);
            let before = pump.reservoir();
            pump.storage_mut().flash_mut().arm(n);
            let answer = pump.handle(
                now,
                &Request::Refill {
                    expected: Revision(1),
                    volume: REFILL_VOLUME,
                    prescription: Some(new.clone().into()),
                },
            );
            let refilled = match answer {
                Response::Refilled { revision, .. } => {
                    assert_eq!(revision, Revision(2), "write {n}");
                    true
                }
                Response::Refused(Refusal::StorageFault) => false,
                other => panic!("write {n}: {other:?}"),
            };
            // In memory, right after the answer.
            let (record, volume) = (pump.record().clone(), pump.reservoir());
            if refilled {
                assert_eq!(
                    record.prescription, new,
                    "write {n}: answered, not in force"
                );
                assert_eq!(volume, REFILL_VOLUME, "write {n}");
            } else {
                assert_eq!(
                    record.revision,
                    Revision(1),
                    "write {n}: refused, yet in force"
                );
                assert_eq!(
                    volume, before,
                    "write {n}: refused, yet the reservoir changed"
                );
            }
            // After a reboot: the same story, from the flash.
            let mut flash = pump.into_storage().into_inner();
            let unused = flash.pending();
            flash.fail_at = None;
            let mut rebooted = boot_on(flash);
            let (record, volume) = (rebooted.record().clone(), rebooted.reservoir());
            let slack = 2 * thecal_device::pump::RESERVE_NL;
            if refilled {
                assert_eq!(record.prescription, new, "write {n}: lost at the reboot");
                assert!(volume.0 + slack >= REFILL_VOLUME.0, "write {n}: {volume:?}");
            } else {
                assert_eq!(record.revision, Revision(1), "write {n}");
                assert!(volume <= before, "write {n}: {volume:?} > {before:?}");
            }
            let s = status(&mut rebooted, BOOT.plus_ms(2 * HOUR));
            assert!(!s.standing.fallback, "write {n}");
            if unused && refilled {
                // The failure was armed past the refill's last write: it completed.
                completed = true;
                break;
            }
        }
        assert!(completed, "the refill never completed without a failure");
    }
}

/// Item 1, power cuts: at every operation of a refill with a new solution, the rebooted
/// pump holds the old prescription with the old volume or the new with the new.
#[test]
fn a_refill_with_a_new_solution_is_old_or_new_whole_at_every_power_cut() {
    for k in 0..400 {
        let mut pump = boot(continuous(250), Nanolitres::from_ml(20));
        let now = BOOT.plus_ms(HOUR);
        run_until(&mut pump, now);
        let before = pump.reservoir();
        pump.storage_mut().flash_mut().cut_power_after(k);
        let answer = pump.handle(
            now,
            &Request::Refill {
                expected: Revision(1),
                volume: REFILL_VOLUME,
                prescription: Some(morphine().into()),
            },
        );
        let mut flash = pump.into_storage().into_inner();
        flash.reboot();
        let rebooted = boot_with(
            continuous(250),
            Nanolitres::from_ml(20),
            BatteryConfig::default(),
            FlashStore::new(flash).unwrap(),
        );
        let (record, volume) = (rebooted.record(), rebooted.reservoir());
        match record.prescription.drug() {
            Drug::Morphine => assert!(
                volume.0 + 2 * thecal_device::pump::RESERVE_NL >= REFILL_VOLUME.0,
                "cut {k}: morphine in force with {volume:?}"
            ),
            Drug::Baclofen => {
                assert_eq!(record.revision, Revision(1), "cut {k}");
                assert!(volume <= before, "cut {k}: baclofen with {volume:?}");
            }
            other => panic!("cut {k}: {other:?}"),
        }
        if matches!(answer, Response::Refilled { .. }) {
            assert_eq!(record.prescription.drug(), Drug::Morphine, "cut {k}");
            return;
        }
    }
    panic!("the refill never completed");
}

/// The prescription records in the region, in flash order: (offset, payload length).
fn prescription_records(flash: &RamFlash<FLASH>) -> Vec<(usize, usize)> {
    let bytes = flash.as_bytes();
    let (mut at, end) = (PRESCRIPTION_OFFSET as usize, SNAPSHOT_OFFSET as usize);
    let mut out = Vec::new();
    while at + 16 <= end && bytes[at..at + 4] != [0xFF; 4] {
        let len = usize::from(u16::from_le_bytes([bytes[at + 2], bytes[at + 3]]));
        out.push((at, len));
        at += 16 + len.div_ceil(4) * 4 + 4;
    }
    out
}

/// Flips one payload byte of the newest prescription record (bit rot after commit).
fn rot_newest_prescription(flash: &mut RamFlash<FLASH>) {
    let &(at, len) = prescription_records(flash).last().unwrap();
    flash.as_bytes_mut()[at + 16 + len / 2] ^= 0x10;
}

fn reboot(pump: common::TestPump) -> common::TestPump {
    reboot_after(pump, |_| {})
}

/// Reboots after flipping a payload byte of the newest prescription record.
fn reboot_with_newest_prescription_rotted(pump: common::TestPump) -> common::TestPump {
    reboot_after(pump, rot_newest_prescription)
}

/// Takes the pump apart, lets `damage` change its flash, and boots it again.
fn reboot_after(
    pump: common::TestPump,
    damage: impl FnOnce(&mut RamFlash<FLASH>),
) -> common::TestPump {
    let mut flash = pump.into_storage().into_inner();
    damage(&mut flash);
    boot_with(
        continuous(250),
        Nanolitres::from_ml(20),
        BatteryConfig::default(),
        FlashStore::new(flash).unwrap(),
    )
}

/// Item 2: a damaged newest prescription: the older copy runs, and everyone can see it.
#[test]
fn a_fallback_to_an_older_prescription_is_logged_alarmed_and_visible() {
    let mut pump = boot(continuous(250), Nanolitres::from_ml(20));
    let t = BOOT.plus_ms(HOUR);
    let answer = pump.handle(
        t,
        &Request::WritePrescription {
            expected: Revision(1),
            prescription: flexible().into(),
        },
    );
    assert_eq!(
        answer,
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    run_until(&mut pump, t.plus_ms(HOUR));
    let mut pump = reboot_with_newest_prescription_rotted(pump);
    let now = t.plus_ms(2 * HOUR);
    let s = status(&mut pump, now);
    assert_eq!(s.revision, Revision(1));
    assert!(s.standing.fallback);
    assert_eq!(s.standing.newest, Revision(2));
    assert_eq!(
        s.therapy,
        TherapyState::Running,
        "the older prescription runs"
    );
    assert!(s.critical);
    assert!(pump.alarm_active(AlarmKind::PrescriptionFallback));
    let record = read_record(&mut pump, now);
    assert_eq!(record.prescription, continuous(250));
    assert!(record.standing.fallback);
    assert!(
        events(&mut pump, now).contains(&Event::PrescriptionFallback {
            in_force: Revision(1),
            newest: Revision(2),
        })
    );
    // It stays so across another reset, until a clinician writes a prescription — whose
    // revision is past the lost one.
    let mut pump = reboot(pump);
    assert!(status(&mut pump, now).standing.fallback);
    assert_eq!(
        pump.handle(
            now,
            &Request::WritePrescription {
                expected: Revision(1),
                prescription: flexible().into(),
            },
        ),
        Response::PrescriptionWritten {
            revision: Revision(3)
        }
    );
    let s = status(&mut pump, now.plus_ms(1));
    assert!(!s.standing.fallback);
    assert_eq!(s.standing.newest, Revision(3));
    assert!(!pump.alarm_active(AlarmKind::PrescriptionFallback));
    let mut pump = reboot(pump);
    assert!(!status(&mut pump, now.plus_ms(2)).standing.fallback);
}

/// Item 2, across a refill: the older record is for the old solution; it must not run on
/// the new one. Therapy stops (minimum flow) and cannot resume until a refill records
/// the solution with its prescription.
#[test]
fn a_fallback_across_a_refill_stops_therapy_until_the_solution_is_recorded() {
    let mut pump = boot(continuous(250), Nanolitres::from_ml(20));
    let t = BOOT.plus_ms(HOUR);
    let answer = pump.handle(
        t,
        &Request::Refill {
            expected: Revision(1),
            volume: REFILL_VOLUME,
            prescription: Some(morphine().into()),
        },
    );
    assert!(matches!(answer, Response::Refilled { .. }), "{answer:?}");
    run_until(&mut pump, t.plus_ms(HOUR));
    let mut pump = reboot_with_newest_prescription_rotted(pump);
    let now = t.plus_ms(2 * HOUR);
    let s = status(&mut pump, now);
    assert_eq!(s.drug, Drug::Baclofen, "the record in force is the old one");
    assert_eq!(s.therapy, TherapyState::Stopped, "not run on the morphine");
    assert!(s.standing.fallback);
    assert!(pump.alarm_active(AlarmKind::PrescriptionFallback));
    assert_eq!(
        pump.handle(now, &Request::ResumeTherapy),
        Response::Refused(Refusal::Alarm(AlarmKind::PrescriptionFallback))
    );
    // The clinician records what is in the reservoir, with its prescription.
    let answer = pump.handle(
        now,
        &Request::Refill {
            expected: Revision(1),
            volume: Nanolitres::from_ml(19),
            prescription: Some(morphine().into()),
        },
    );
    let Response::Refilled { revision, .. } = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(revision, Revision(3));
    assert_eq!(
        pump.handle(now, &Request::ResumeTherapy),
        Response::TherapyResumed
    );
    let s = status(&mut pump, now.plus_ms(1));
    assert_eq!(s.therapy, TherapyState::Running);
    assert_eq!(s.drug, Drug::Morphine);
    assert!(!pump.alarm_active(AlarmKind::PrescriptionFallback));
}

/// A draft that breaks one rule (the low-reservoir alarm below 0.5 mL) with a sound
/// structure: what a prescription written before a rule tightened looks like.
fn broken_rule_draft() -> PrescriptionDraft {
    let mut d = continuous(300).draft().clone();
    d.low_reservoir_alarm = Nanolitres(400_000);
    assert!(Prescription::new(d.clone()).is_err());
    d
}

fn stored(revision: u32, rules: u16, draft: PrescriptionDraft) -> StoredPrescription {
    StoredPrescription {
        revision: Revision(revision),
        written_at: Timestamp(MONDAY.0),
        rules,
        draft,
        refill: None,
    }
}

/// Boots a pump whose store holds `records` (oldest first) and nothing else.
fn boot_holding(records: &[StoredPrescription]) -> common::TestPump {
    let mut store = blank_store();
    for r in records {
        store.save_prescription(r).unwrap();
    }
    boot_with(
        continuous(250),
        Nanolitres::from_ml(20),
        BatteryConfig::default(),
        store,
    )
}

/// Item 3: a rule that tightened does not brick therapy.
#[test]
fn a_prescription_valid_under_older_rules_stays_in_force_flagged_for_review() {
    let old_rules = RULES_VERSION - 1;
    let mut pump = boot_holding(&[stored(4, old_rules, broken_rule_draft())]);
    let now = BOOT.plus_ms(1);
    let s = status(&mut pump, now);
    assert_eq!(s.therapy, TherapyState::Running);
    assert_eq!(s.revision, Revision(4));
    assert!(s.standing.review && !s.standing.fallback);
    assert!(pump.alarm_active(AlarmKind::PrescriptionReview));
    assert!(!AlarmKind::PrescriptionReview.is_critical());
    assert!(!pump.alarm_active(AlarmKind::StorageFault));
    assert_eq!(pump.record().prescription.draft(), &broken_rule_draft());
    // It is delivered: a day at 300 µg/day of 500 µg/mL is 0.6 mL.
    run_until(&mut pump, BOOT.plus_ms(MS_PER_DAY));
    let delivered = motor_nl(&pump);
    assert!((599_000..=600_000).contains(&delivered), "{delivered}");
    // The programmer reads it back (the record decodes with its structure checked).
    let record = read_record(&mut pump, BOOT.plus_ms(MS_PER_DAY));
    assert!(record.standing.review);
    let mut buf = [0u8; 1024];
    let bytes = postcard::to_slice(&Response::Prescription(record.clone()), &mut buf).unwrap();
    assert_eq!(
        postcard::from_bytes::<Response>(bytes).unwrap(),
        Response::Prescription(record)
    );
    assert!(
        events(&mut pump, BOOT.plus_ms(MS_PER_DAY)).contains(&Event::PrescriptionReview {
            revision: Revision(4),
            rules: old_rules,
        })
    );
    // A clinician writes a valid one: the flag and the alarm clear, and stay cleared.
    let later = BOOT.plus_ms(MS_PER_DAY + 1);
    assert_eq!(
        pump.handle(
            later,
            &Request::WritePrescription {
                expected: Revision(4),
                prescription: continuous(300).into(),
            },
        ),
        Response::PrescriptionWritten {
            revision: Revision(5)
        }
    );
    assert!(!status(&mut pump, later).standing.review);
    assert!(!pump.alarm_active(AlarmKind::PrescriptionReview));
    let mut pump = reboot(pump);
    assert!(!status(&mut pump, later.plus_ms(1)).standing.review);
}

/// Item 3: only genuinely corrupt records are refused — a record that breaks the rules
/// it names, or whose structure the engine cannot run, is skipped, visibly.
#[test]
fn a_record_failing_its_own_rules_or_unsound_is_corrupt_and_falls_back() {
    let good = stored(3, RULES_VERSION, continuous(200).draft().clone());
    let own_rules = stored(4, RULES_VERSION, broken_rule_draft());
    let mut unsound_draft = continuous(200).draft().clone();
    unsound_draft.mode = TherapyMode::Flexible {
        days: heapless::Vec::from_slice(&[day(&[(6, 0, 200), (0, 0, 200)])]).unwrap(),
    };
    let unsound = stored(4, RULES_VERSION - 1, unsound_draft);
    for bad in [own_rules, unsound] {
        let mut pump = boot_holding(&[good.clone(), bad]);
        let s = status(&mut pump, BOOT.plus_ms(1));
        assert_eq!(s.revision, Revision(3));
        assert!(s.standing.fallback && !s.standing.review);
        assert_eq!(pump.record().prescription, continuous(200));
        assert!(pump.alarm_active(AlarmKind::PrescriptionFallback));
    }
}
