//! The event log ring: indices, bounds, paging by index across the wrap point, clamping,
//! and bounds across a reboot.

mod storage_common;

use heapless::Vec;
use storage_common::*;
use thecal_device::store::layout::{LOG_CAPACITY_MIN, LOG_PAGES};
use thecal_device::store::{LogBounds, Storage};
use thecal_protocol::message::{LogEntry, MAX_LOG_PAGE};

fn page(store: &mut Store, first: u32) -> (LogBounds, std::vec::Vec<u32>) {
    page_of(store, first, MAX_LOG_PAGE)
}

fn page_of(store: &mut Store, first: u32, max: usize) -> (LogBounds, std::vec::Vec<u32>) {
    let mut out: Vec<LogEntry, MAX_LOG_PAGE> = Vec::new();
    let bounds = store.read_log(first, max, &mut out).unwrap();
    for e in &out {
        assert_eq!(*e, entry(e.index));
    }
    (bounds, out.iter().map(|e| e.index).collect())
}

#[test]
fn empty_log() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    assert_eq!(store.load().unwrap().log, LogBounds::default());
    assert_eq!(page(&mut store, 0), (LogBounds::default(), vec![]));
    assert_eq!(page(&mut store, 5), (LogBounds::default(), vec![]));
}

#[test]
fn indices_count_up_from_zero_whatever_index_the_caller_passes() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    for i in 0..5 {
        let bounds = store.append_log(&entry(i)).unwrap();
        assert_eq!(
            bounds,
            LogBounds {
                oldest: 0,
                next: i + 1
            }
        );
    }
    // A wrong index is replaced by the next one: the sequence has no gaps or repeats.
    let mut odd = entry(5);
    odd.index = 2;
    assert_eq!(store.append_log(&odd).unwrap().next, 6);
    odd.index = 1_000;
    assert_eq!(store.append_log(&odd).unwrap().next, 7);
    let (_, entries) = read_all(&mut store, 0);
    let indices: std::vec::Vec<u32> = entries.iter().map(|e| e.index).collect();
    assert_eq!(indices, (0..7).collect::<std::vec::Vec<_>>());
    assert_eq!(entries[5].event, entry(5).event);
    assert_eq!(entries[6].at, entry(5).at);
}

#[test]
fn paging_clamps_and_stops_at_next() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    let n = 2 * MAX_LOG_PAGE as u32 + 4;
    for i in 0..n {
        store.append_log(&entry(i)).unwrap();
    }
    let all = LogBounds { oldest: 0, next: n };
    let full = MAX_LOG_PAGE as u32;
    assert_eq!(page(&mut store, 0), (all, (0..full).collect()));
    assert_eq!(page(&mut store, full), (all, (full..2 * full).collect()));
    assert_eq!(page(&mut store, 2 * full), (all, (2 * full..n).collect()));
    assert_eq!(page(&mut store, n - 1), (all, vec![n - 1]));
    assert_eq!(page(&mut store, n), (all, vec![]));
    assert_eq!(page(&mut store, u32::MAX), (all, vec![]));
    // A smaller page reads only as many; none reads only the bounds; more than a page
    // is a page.
    assert_eq!(page_of(&mut store, 3, 5), (all, (3..8).collect()));
    assert_eq!(page_of(&mut store, 3, 0), (all, vec![]));
    assert_eq!(page_of(&mut store, 0, 1000), (all, (0..full).collect()));
}

#[test]
fn many_appends_keep_a_bounded_window_and_page_across_the_wrap() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    let mut bounds = LogBounds::default();
    let mut drops = 0;
    for i in 0..3_000u32 {
        let new = store.append_log(&entry(i)).unwrap();
        assert_eq!(new.next, i + 1);
        assert!(new.oldest >= bounds.oldest, "oldest never goes back");
        if new.oldest != bounds.oldest {
            drops += 1;
            // Only ever drops once the ring holds at least its guaranteed capacity.
            assert!((bounds.next - bounds.oldest) as usize >= LOG_CAPACITY_MIN);
        }
        bounds = new;
        let held = (bounds.next - bounds.oldest) as usize;
        if i as usize >= 2 * LOG_CAPACITY_MIN {
            assert!(held >= LOG_CAPACITY_MIN, "{held} at {i}");
        }
        assert!(held <= LOG_PAGES * 4096 / 20, "{held}");
    }
    // 3000 entries of ~30 bytes went round the 9-page ring more than once.
    assert!(drops > LOG_PAGES, "{drops}");
    println!(
        "log after 3000 appends: {bounds:?} ({} entries)",
        bounds.next - bounds.oldest
    );

    // Below the oldest is clamped to the oldest.
    let (b, first) = page(&mut store, 0);
    assert_eq!(b, bounds);
    assert_eq!(
        first,
        (bounds.oldest..bounds.oldest + MAX_LOG_PAGE as u32).collect::<std::vec::Vec<_>>()
    );
    assert_eq!(page(&mut store, bounds.oldest - 1).1, first);
    // Every entry from the oldest to the newest, in order, across the physical wrap.
    let (b, entries) = read_all(&mut store, 0);
    assert_eq!(b, bounds);
    let indices: std::vec::Vec<u32> = entries.iter().map(|e| e.index).collect();
    assert_eq!(
        indices,
        (bounds.oldest..bounds.next).collect::<std::vec::Vec<_>>()
    );
    for e in &entries {
        assert_eq!(*e, entry(e.index));
    }
    // A page from any index in the middle.
    for first in (bounds.oldest..bounds.next).step_by(37) {
        let want: std::vec::Vec<u32> =
            (first..bounds.next.min(first + MAX_LOG_PAGE as u32)).collect();
        assert_eq!(page(&mut store, first).1, want);
    }
    assert_eq!(page(&mut store, bounds.next).1, vec![]);

    // A reboot finds the same bounds and the same entries.
    let mut store = mount(&mut flash);
    assert_eq!(store.load().unwrap().log, bounds);
    assert_eq!(read_all(&mut store, 0).1, entries);
    // And continues the sequence.
    assert_eq!(
        store.append_log(&entry(bounds.next)).unwrap().next,
        bounds.next + 1
    );
}

#[test]
fn log_wrap_leaves_prescription_and_snapshot_alone() {
    let mut flash = blank_flash();
    let mut store = mount(&mut flash);
    store.save_prescription(&record(7)).unwrap();
    store.save_snapshot(&snapshot(9)).unwrap();
    for i in 0..2_000 {
        store.append_log(&entry(i)).unwrap();
    }
    let stored = mount(&mut flash).load().unwrap();
    assert_eq!(stored.prescription, Some(record(7)));
    assert_eq!(stored.snapshot, Some(snapshot(9)));
    assert_eq!(stored.log.next, 2_000);
}
