//! Power cut at every flash operation of each kind of write, on `RamFlash` (real NOR
//! semantics, torn writes and torn erases), then reboot and load: the prescription is the
//! old or the new one whole, the snapshot likewise, the log keeps every earlier entry, and
//! the store works again.

mod storage_common;

use std::collections::BTreeSet;

use storage_common::*;
use thecal_device::store::layout::LOG_CAPACITY_MIN;
use thecal_device::store::{LogBounds, Storage, StoreError};

/// Tear patterns tried when the torn operation is an erase (prefix, suffix or random bits
/// are picked by the seed); a torn word write is tried with one.
const ERASE_SEEDS: u64 = 4;

type Op<'a> = &'a dyn Fn(&mut dyn Storage) -> Result<(), StoreError>;

/// Runs `op` on copies of `base` with power failing at each of its operations in turn and
/// hands each powered-off flash to `check` (with the cut, whether it is the first tear
/// pattern tried there, and whether `op` answered `Ok`: only an op that is committed
/// before its last operation (`may_answer_ok`, the secrets' second copy) may). Returns
/// the number of cuts.
fn cut_at_every_op(
    base: &Flash,
    op: Op,
    may_answer_ok: bool,
    mut check: impl FnMut(&mut Flash, u64, bool, bool),
) -> u64 {
    let mut uncut = Box::new(base.clone());
    op(&mut mount(&mut uncut)).unwrap();
    let ops = uncut.stats().since(&base.stats()).ops();
    assert!(ops > 0);
    let mut runs = 0;
    let mut erases_before_cut = 0;
    for cut in 0..ops {
        let mut seed = 0;
        loop {
            let mut flash = Box::new(base.clone());
            flash.seed_tearing(cut * 7_919 + seed);
            flash.cut_power_after(cut);
            let result = op(&mut mount(&mut flash));
            assert!(
                may_answer_ok || result.is_err(),
                "power failed at op {cut}, yet Ok"
            );
            assert!(flash.is_powered_off());
            let erases = flash.stats().since(&base.stats()).page_erases;
            check(&mut flash, cut, seed == 0, result.is_ok());
            runs += 1;
            seed += 1;
            // The torn operation was an erase: try the other tear patterns too.
            if erases == erases_before_cut || seed == ERASE_SEEDS {
                erases_before_cut = erases;
                break;
            }
        }
    }
    runs
}

/// Which store page a write changed first (to find writes that move to another page).
fn first_changed_page(before: &Flash, after: &Flash) -> Option<usize> {
    let (a, b) = (before.as_bytes(), after.as_bytes());
    a.iter().zip(b).position(|(x, y)| x != y).map(|i| i / 4096)
}

/// Writes `values` with `write`, cutting power at every operation of each write that
/// starts a page or erases one, and of every fifth other one; `check` gets the powered-off flash, the old
/// value, the new one and whether to check the store works again. Returns (cuts, erases
/// among the writes tested).
fn exhaust_writes<T: Clone>(
    flash: &mut Flash,
    values: impl Iterator<Item = T>,
    mut old: Option<T>,
    write: impl Fn(&mut dyn Storage, &T) -> Result<(), StoreError>,
    may_answer_ok: bool,
    check: impl Fn(&mut Flash, &Option<T>, &T, u64, bool, bool),
) -> (u64, u64) {
    let (mut cuts, mut erases) = (0, 0);
    let mut last_page = None;
    for (n, new) in values.enumerate() {
        let before = Box::new(flash.clone());
        write(&mut mount(flash), &new).unwrap();
        let page = first_changed_page(&before, flash);
        let erased = flash.stats().since(&before.stats()).page_erases > 0;
        if page != last_page || erased || n % 5 == 0 {
            let op = |s: &mut dyn Storage| write(s, &new);
            cuts += cut_at_every_op(&before, &op, may_answer_ok, |f, cut, first, ok| {
                check(f, &old, &new, cut, first, ok)
            });
            erases += flash.stats().since(&before.stats()).page_erases;
        }
        last_page = page;
        old = Some(new);
    }
    (cuts, erases)
}

/// A store with a snapshot and a few log entries, which no prescription write may touch.
fn with_neighbours() -> Box<Flash> {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    store.save_snapshot(&snapshot(1)).unwrap();
    for i in 0..5 {
        store.append_log(&entry(i)).unwrap();
    }
    flash
}

#[test]
fn prescription_is_old_or_new_after_a_cut_at_every_operation() {
    let mut flash = with_neighbours();
    let (cuts, erases) = exhaust_writes(
        &mut flash,
        (1..=60).map(record),
        None,
        |s, r| s.save_prescription(r),
        false,
        |f, old, new, cut, first, _| {
            let stored = reboot_and_load(f);
            assert!(
                stored.prescription == *old || stored.prescription.as_ref() == Some(new),
                "revision {}, cut at op {cut}: {:?}",
                new.revision.0,
                stored.prescription.map(|p| p.revision)
            );
            assert_eq!(stored.snapshot, Some(snapshot(1)));
            assert_eq!(stored.log, LogBounds { oldest: 0, next: 5 });
            if first {
                // The store works again and the retried write wins.
                let mut store = mount(f);
                store.save_prescription(new).unwrap();
                assert_eq!(store.load().unwrap().prescription.as_ref(), Some(new));
            }
        },
    );
    // The writes went round the two-page ring: torn erases were among the cuts.
    assert!(erases >= 2, "{erases}");
    assert!(cuts > 1_000, "{cuts}");
}

#[test]
fn secrets_are_old_or_new_after_a_cut_at_every_operation() {
    let mut flash = with_neighbours();
    mount(&mut flash).save_prescription(&record(2)).unwrap();
    let (cuts, erases) = exhaust_writes(
        &mut flash,
        (1..=80).map(secrets),
        None,
        |s, k| s.save_secrets(k),
        true,
        |f, old, new, cut, first, answered| {
            f.reboot();
            let (got, _) = mount(f).load_secrets().expect("secrets load after a cut");
            assert!(
                got == *old || got.as_ref() == Some(new),
                "generation {}, cut at op {cut}: {got:?}",
                new.generation
            );
            // `Ok` is the truth: the new generation is the one in force.
            if answered {
                assert_eq!(got.as_ref(), Some(new), "answered Ok, cut at op {cut}");
            }
            // Never a mix: whatever loads is one whole record.
            if let Some(g) = &got {
                assert_eq!(*g, secrets(g.generation), "cut at op {cut}");
            }
            let stored = mount(f).load().unwrap();
            assert_eq!(stored.prescription, Some(record(2)));
            assert_eq!(stored.snapshot, Some(snapshot(1)));
            assert_eq!(stored.log, LogBounds { oldest: 0, next: 5 });
            if first {
                let mut store = mount(f);
                store.save_secrets(new).unwrap();
                assert_eq!(store.load_secrets().unwrap(), (Some(new.clone()), false));
            }
        },
    );
    // Eighty generations, two copies each, go round the two-page ring twice.
    assert!(erases >= 2, "{erases}");
    assert!(cuts > 1_000, "{cuts}");
}

#[test]
fn snapshot_is_old_or_new_after_a_cut_at_every_operation() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    store.save_prescription(&record(3)).unwrap();
    store.append_log(&entry(0)).unwrap();
    // Fill most of the ring, so the writes under test wrap it and reuse pages.
    for seq in 1..=200 {
        store.save_snapshot(&snapshot(seq)).unwrap();
    }
    let (cuts, erases) = exhaust_writes(
        &mut flash,
        (201..=290).map(snapshot),
        Some(snapshot(200)),
        |s, snap| s.save_snapshot(snap),
        false,
        |f, old, new, cut, first, _| {
            let stored = reboot_and_load(f);
            assert!(
                stored.snapshot == *old || stored.snapshot.as_ref() == Some(new),
                "snapshot {}, cut at op {cut}: {:?}",
                new.seq,
                stored.snapshot.map(|s| s.seq)
            );
            assert_eq!(stored.prescription, Some(record(3)));
            assert_eq!(stored.log, LogBounds { oldest: 0, next: 1 });
            if first {
                let mut store = mount(f);
                store.save_snapshot(new).unwrap();
                assert_eq!(store.load().unwrap().snapshot.as_ref(), Some(new));
            }
        },
    );
    assert!(erases >= 2, "{erases}");
    assert!(cuts > 500, "{cuts}");
}

/// After a cut during the append of entry `next`: the log still reads, every entry it
/// returns is the one appended under that index, and nothing is missing from `keep_from`
/// (the oldest entry a successful append would have kept) up to `next`.
fn check_log_after_cut(flash: &mut Flash, next: u32, keep_from: u32, cut: u64) {
    let stored = reboot_and_load(flash);
    let mut store = mount(flash);
    assert!(
        stored.log.next == next || stored.log.next == next + 1,
        "entry {next}, cut at {cut}: {:?}",
        stored.log
    );
    assert!(
        stored.log.oldest <= keep_from,
        "{:?} {keep_from}",
        stored.log
    );
    let (bounds, entries) = read_all(&mut store, 0);
    assert_eq!(bounds, stored.log);
    for e in &entries {
        assert_eq!(*e, entry(e.index), "cut at {cut}");
    }
    let indices: Vec<u32> = entries.iter().map(|e| e.index).collect();
    assert!(indices.windows(2).all(|w| w[0] < w[1]));
    let kept: Vec<u32> = indices
        .iter()
        .copied()
        .filter(|i| *i >= keep_from)
        .collect();
    assert_eq!(
        kept,
        (keep_from..stored.log.next).collect::<Vec<_>>(),
        "cut at {cut}"
    );
    // The next append continues the sequence.
    let after = store.append_log(&entry(stored.log.next)).unwrap();
    assert_eq!(after.next, stored.log.next + 1);
}

#[test]
fn log_append_loses_at_most_that_entry_after_a_cut_at_every_operation() {
    let mut flash = blank_flash();
    mount(&mut flash).save_prescription(&record(1)).unwrap();
    let mut cuts = 0;
    for next in 0..30 {
        let op = |s: &mut dyn Storage| s.append_log(&entry(next)).map(|_| ());
        cuts += cut_at_every_op(&flash, &op, false, |f, cut, _, _| {
            check_log_after_cut(f, next, 0, cut)
        });
        let bounds = mount(&mut flash).append_log(&entry(next)).unwrap();
        assert_eq!(
            bounds,
            LogBounds {
                oldest: 0,
                next: next + 1
            }
        );
    }
    assert!(cuts > 200, "{cuts}");
}

#[test]
fn log_append_that_wraps_the_ring_survives_a_cut_at_every_operation() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    let mut bounds = LogBounds::default();
    // Fill the ring until it has dropped a page, then go on to just before the next drop.
    while bounds.oldest == 0 {
        bounds = store.append_log(&entry(bounds.next)).unwrap();
    }
    let first_drop = bounds.next;
    let mut wraps = 0;
    while bounds.next < first_drop + 300 {
        let next = bounds.next;
        // What a successful append keeps.
        let after = mount(&mut Box::new((*flash).clone()))
            .append_log(&entry(next))
            .unwrap();
        let drops_a_page = after.oldest != bounds.oldest;
        wraps += u32::from(drops_a_page);
        if !drops_a_page && next % 16 != 0 {
            // Test every append that reuses a page, and a sample of the others.
            bounds = mount(&mut flash).append_log(&entry(next)).unwrap();
            continue;
        }
        let op = |s: &mut dyn Storage| s.append_log(&entry(next)).map(|_| ());
        cut_at_every_op(&flash, &op, false, |f, cut, _, _| {
            check_log_after_cut(f, next, after.oldest, cut)
        });
        bounds = mount(&mut flash).append_log(&entry(next)).unwrap();
        assert_eq!(bounds, after);
        assert!((bounds.next - bounds.oldest) as usize >= LOG_CAPACITY_MIN);
    }
    assert!(wraps >= 2, "{wraps}");
}

/// The indices of the log entries the store returns (checking each one's content).
fn readable(flash: &mut Flash) -> (LogBounds, BTreeSet<u32>) {
    let (bounds, entries) = read_all(&mut mount(flash), 0);
    for e in &entries {
        assert_eq!(*e, entry(e.index));
    }
    (bounds, entries.iter().map(|e| e.index).collect())
}

#[test]
fn random_operations_with_a_thousand_random_power_cuts() {
    let mut rng = Rng::new(0x7EC4_2026);
    let mut flash = blank_flash();
    // Newest acknowledged revision / snapshot number, and the log's next index.
    let (mut prescription, mut snap, mut next) = (None::<u32>, None::<u32>, 0u32);
    let (mut rev, mut seq) = (0u32, 0u32);
    let (mut cuts, mut steps, mut cut_appends) = (0, 0, 0);
    while cuts < 1_200 {
        steps += 1;
        let kind = rng.below(100);
        let op = |s: &mut dyn Storage| -> Result<(), StoreError> {
            if kind < 15 {
                s.save_prescription(&record(rev + 1))
            } else if kind < 50 {
                s.save_snapshot(&snapshot(seq + 1))
            } else {
                s.append_log(&entry(next)).map(|_| ())
            }
        };
        let acknowledged = |rev: &mut u32, seq: &mut u32, next: &mut u32| match kind {
            0..15 => *rev += 1,
            15..50 => *seq += 1,
            _ => *next += 1,
        };
        if !rng.chance(30) {
            op(&mut mount(&mut flash)).unwrap();
            acknowledged(&mut rev, &mut seq, &mut next);
            (prescription, snap) = ((rev > 0).then_some(rev), (seq > 0).then_some(seq));
            continue;
        }
        // Cut power somewhere in this operation (or just after it).
        let (log_before, kept_before) = readable(&mut flash);
        let mut uncut = Box::new((*flash).clone());
        op(&mut mount(&mut uncut)).unwrap();
        let (log_after_success, _) = readable(&mut uncut);
        let ops = uncut.stats().since(&flash.stats()).ops();
        flash.seed_tearing(rng.next());
        flash.cut_power_after(rng.below(ops + 1));
        let result = op(&mut mount(&mut flash));
        flash.disarm();
        if result.is_ok() {
            // The cut fell after the last operation.
            assert!(!flash.is_powered_off());
            acknowledged(&mut rev, &mut seq, &mut next);
            (prescription, snap) = ((rev > 0).then_some(rev), (seq > 0).then_some(seq));
            continue;
        }
        cuts += 1;
        let stored = reboot_and_load(&mut flash);
        // Prescription and snapshot: the old or (for the one being written) the new one.
        let got = stored.prescription.as_ref().map(|p| p.revision.0);
        let allowed_new = (kind < 15).then_some(rev + 1);
        assert!(
            got == prescription || got == allowed_new,
            "step {steps}: {got:?}"
        );
        assert_eq!(
            stored.prescription,
            got.map(record),
            "whole record, step {steps}"
        );
        if got == allowed_new {
            (rev, prescription) = (rev + 1, got);
        }
        let got = stored.snapshot.as_ref().map(|s| s.seq);
        let allowed_new = (15..50).contains(&kind).then_some(seq + 1);
        assert!(got == snap || got == allowed_new, "step {steps}: {got:?}");
        assert_eq!(
            stored.snapshot,
            got.map(snapshot),
            "whole snapshot, step {steps}"
        );
        if got == allowed_new {
            (seq, snap) = (seq + 1, got);
        }
        // The log: every entry readable before is still readable, except those the append
        // was about to drop; at most the new entry is lost.
        let (bounds, kept) = readable(&mut flash);
        assert_eq!(bounds, stored.log);
        let keep_from = if kind < 50 {
            assert_eq!(bounds, log_before, "step {steps}");
            log_before.oldest
        } else {
            cut_appends += 1;
            assert!(
                bounds.next == next || bounds.next == next + 1,
                "step {steps}"
            );
            log_after_success.oldest
        };
        for index in kept_before.range(keep_from..) {
            assert!(kept.contains(index), "step {steps}: entry {index} lost");
        }
        next = bounds.next;
    }
    assert!(steps > 3_000, "{steps}");
    assert!(cut_appends > 300, "{cut_appends}");
    assert!(
        next as usize > 2 * LOG_CAPACITY_MIN,
        "the log wrapped: {next}"
    );
}
