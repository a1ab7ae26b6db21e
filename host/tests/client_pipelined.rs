//! Pipelined bulk reads (issue 8): the window kept full and never exceeded, a lost
//! answer or a lost session mid-window recovered with the same ids, and therapy changes
//! never pipelined.
//!
//! Against the scripted pump (`common/scripted.rs`) over an in-memory pipe, on tokio's
//! paused clock: timeouts cost nothing and never flake.

mod common;

use std::time::Duration;

use common::scripted::*;
use thecal_host::client::Unchecked;
use thecal_host::Error;
use thecal_protocol::message::LogEntry;
use thecal_protocol::Request;

/// Reads the whole log of the scripted pump both ways; asserts both give entries
/// 0..`log` in order, each once, and returns the pump's record of the pipelined read.
async fn read_both_ways(script: Script) -> (thecal_host::client::ClientCounters, Seen) {
    use thecal_host::eventlog::{read_log, read_log_pipelined, WINDOW};
    let expected: Vec<LogEntry> = (0..script.log).map(log_entry).collect();
    let (mut c, seen) = start(script.clone()).await;
    let mut calls = 0;
    let piped = read_log_pipelined(&mut c, Default::default(), WINDOW, |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .await
    .unwrap();
    assert_eq!(piped.entries, expected);
    assert_eq!((piped.oldest, piped.next), (0, script.log));
    assert!(calls >= 2);
    let counters = c.counters();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let (mut c, _) = start(Script {
        lose_answer_to: Vec::new(),
        lose_session_before: Vec::new(),
        ..script
    })
    .await;
    let plain = read_log(&mut c, Default::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(plain, piped, "pipelined and stop-and-wait reads agree");
    (counters, seen)
}

#[tokio::test(start_paused = true)]
async fn pipelined_log_read_keeps_the_window_full_and_never_exceeds_it() {
    let (counters, seen) = read_both_ways(Script {
        log: 100,
        hold: Some(Duration::from_millis(5)),
        ..Script::default()
    })
    .await;
    // One probe page (entries 0..8), then 12 pages with 4 requests in flight.
    let reads = seen.frames.iter().filter(|f| f.2 == "ReadLog").count();
    assert_eq!(reads, 13);
    assert_eq!(counters.retries, 0);
    let max = seen.batches.iter().copied().max().unwrap();
    assert_eq!(max, thecal_host::eventlog::WINDOW, "{:?}", seen.batches);
    // Fresh ids, each sent once, sealed with strictly increasing counters.
    let ids: Vec<u16> = seen.frames.iter().map(|f| f.0).collect();
    assert_eq!(ids, (100..113).collect::<Vec<_>>());
    assert!(seen.counters.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_in_the_middle_of_the_window_is_retried_with_its_id() {
    // Probe 100; the window holds 101..104; the answer to 102 is lost. The others are
    // taken as they come (the window slides on to 105, 106, ...); 102 is sent again
    // after its timeout, same id, RETRY, next counter; its entries still land in place.
    let (counters, seen) = read_both_ways(Script {
        log: 60,
        lose_answer_to: vec![102],
        ..Script::default()
    })
    .await;
    assert_eq!(counters.retries, 1);
    let f = &seen.frames;
    let first = f
        .iter()
        .position(|x| *x == (102, false, "ReadLog"))
        .unwrap();
    let again = f.iter().position(|x| *x == (102, true, "ReadLog")).unwrap();
    assert!(
        again > first + 1,
        "later requests went out meanwhile: {f:?}"
    );
    assert_eq!(f.iter().filter(|x| x.0 == 102).count(), 2);
    assert!(
        f.iter().all(|x| x.0 == 102 || !x.1),
        "only 102 retried: {f:?}"
    );
    assert_eq!(f.len(), 1 + 7 + 1);
    assert!(seen.counters.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(start_paused = true)]
async fn a_session_lost_mid_window_is_renewed_and_the_window_sent_again() {
    // The pump forgets the session before the third sealed frame: it refuses that one
    // and the next in plain; the client opens a new session and sends every request in
    // flight again (same ids, RETRY).
    let (counters, seen) = read_both_ways(Script {
        log: 60,
        lose_session_before: vec![2],
        ..Script::default()
    })
    .await;
    assert_eq!(seen.sessions, 2);
    assert_eq!(counters.sessions, 2);
    let retried: Vec<u16> = seen.frames.iter().filter(|f| f.1).map(|f| f.0).collect();
    assert!(retried.contains(&102), "{:?}", seen.frames);
    // Every page was served under one id or another, each once.
    let pages: std::collections::BTreeSet<u16> = seen
        .frames
        .iter()
        .filter(|f| f.2 == "ReadLog")
        .map(|f| f.0)
        .collect();
    assert_eq!(pages.len(), 8, "{:?}", seen.frames);
    assert!(seen.counters.windows(2).all(|w| w[0] < w[1] || w[1] == 1));
}

#[tokio::test(start_paused = true)]
async fn therapy_changes_are_never_pipelined() {
    let (mut c, seen) = start(Script::default()).await;
    let queue = [
        (0, Unchecked(Request::Status)),
        (1, Unchecked(Request::StopTherapy)),
    ]
    .into();
    let e = c.pipelined(4, queue, |_, _, _| Ok(())).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotPipelinable {
                request: "StopTherapy"
            }
        ),
        "{e:?}"
    );
    assert!(seen.lock().unwrap().frames.is_empty(), "nothing was sent");
}
