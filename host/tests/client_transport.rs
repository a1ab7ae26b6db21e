//! The client's transport rules: typed answers and advancing ids, retries with the same
//! id and the RETRY flag, stale answers and noise discarded, only authentic sealed answers
//! inside a session, bounded timeouts, uncertain changes, refusals, wrong answers, schema
//! mismatch, invalid prescriptions never sent, and a closed link.
//!
//! Against the scripted pump (`common/scripted.rs`) over an in-memory pipe, on tokio's
//! paused clock: timeouts cost nothing and never flake.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::scripted::*;
use thecal_host::client::Client;
use thecal_host::error::ReadBack;
use thecal_host::Error;
use thecal_protocol::message::{Refusal, Revision, Role};
use thecal_protocol::units::{Nanograms, NanogramsPerDay, Nanolitres};
use thecal_protocol::SCHEMA_HASH;

#[tokio::test(start_paused = true)]
async fn answers_come_back_typed_and_ids_advance() {
    let (mut c, seen) = start(Script::default()).await;
    assert_eq!(c.identify().await.unwrap().serial.as_str(), "T1");
    c.ping().await.unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(
        s.frames.as_slice(),
        &[(100, false, "Identify"), (101, false, "Ping")]
    );
    // Inside a session everything goes sealed, Identify too (a plain frame would be
    // unauthenticated traffic the pump pays from its budget); counters from 1.
    assert_eq!(s.counters, vec![1, 2]);
    assert_eq!((s.hellos, s.proofs, s.sessions), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn lost_answer_is_retried_with_the_same_id_and_retry_flag() {
    let (mut c, seen) = start(Script {
        drop_first: 2,
        ..Script::default()
    })
    .await;
    c.identify().await.unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(
        s.frames,
        vec![
            (100, false, "Identify"),
            (100, true, "Identify"),
            (100, true, "Identify")
        ]
    );
    assert_eq!(c.counters().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn retried_bolus_is_executed_once_and_sealed_again_with_the_next_counter() {
    // The pump executes the bolus but the answer is lost; the retry (same id, RETRY
    // flag, a new counter) is answered from the reply cache.
    let (mut c, seen) = start(Script {
        lose_answers: 1,
        ..Script::default()
    })
    .await;
    let report = c.bolus(bolus()).await.unwrap();
    assert_eq!(report.dose, Nanograms(50_000));
    let s = seen.lock().unwrap();
    assert_eq!(s.executed, 1, "the retry must not execute again");
    assert_eq!(
        s.frames,
        vec![
            (100, false, "ClinicianBolus"),
            (100, true, "ClinicianBolus")
        ]
    );
    assert_eq!(s.counters, vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn stale_answers_and_noise_are_discarded() {
    let (mut c, _) = start(Script {
        stale_first: true,
        noise_first: true,
        ..Script::default()
    })
    .await;
    let id = c.identify().await.unwrap();
    assert_eq!(id.serial.as_str(), "T1");
    let counters = c.counters();
    assert_eq!(counters.stale, 1);
    assert!(counters.bad_frames >= 1, "{counters:?}");
    assert_eq!(counters.retries, 0);
    // Inside the session too (the stale answer is sealed: its counter is skipped).
    c.ping().await.unwrap();
    c.ping().await.unwrap();
    let counters = c.counters();
    assert_eq!(counters.stale, 3);
    assert_eq!(counters.retries, 0);
}

#[tokio::test(start_paused = true)]
async fn inside_a_session_only_authentic_sealed_answers_count() {
    // A plain copy and a forged sealed answer (another key) with the awaited id come
    // first: both are dropped, the authentic one is taken.
    let (mut c, _) = start(Script {
        unauthentic_first: true,
        ..Script::default()
    })
    .await;
    c.stop().await.unwrap();
    assert_eq!(c.counters().unauthentic, 2);
    assert_eq!(c.counters().retries, 0);
    // A pump that answers only in the clear is never believed: a read times out, a
    // change is uncertain.
    let (mut c, seen) = start(Script {
        plain_answers: true,
        ..Script::default()
    })
    .await;
    let e = c.ping().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { attempts: 3, .. }), "{e:?}");
    let e = c.stop().await.unwrap_err();
    assert!(matches!(e, Error::Uncertain { .. }), "{e:?}");
    assert_eq!(c.counters().unauthentic, 6);
    assert_eq!(seen.lock().unwrap().counters, vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test(start_paused = true)]
async fn silent_pump_times_out_after_bounded_retries() {
    let (mut c, seen) = start(Script {
        silent: true,
        ..Script::default()
    })
    .await;
    let started = tokio::time::Instant::now();
    let e = c.identify().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                request: "Identify",
                attempts: 3,
                ..
            }
        ),
        "{e:?}"
    );
    // Three attempts of 200 ms each, on the paused clock.
    assert_eq!(started.elapsed(), Duration::from_millis(600));
    assert_eq!(seen.lock().unwrap().frames.len(), 3);
    assert!(e.to_string().contains("no answer"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn unanswered_change_is_uncertain_and_says_what_to_read() {
    let (mut c, _) = start(Script {
        silent: true,
        ..Script::default()
    })
    .await;
    let e = c
        .write_prescription(draft(), Revision(4))
        .await
        .unwrap_err();
    match &e {
        Error::Uncertain {
            request, read_back, ..
        } => {
            assert_eq!(*request, "WritePrescription");
            assert_eq!(
                *read_back,
                ReadBack::Prescription {
                    expected: Revision(4)
                }
            );
            assert!(e.to_string().contains("revision is now above 4"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let e = c.bolus(bolus()).await.unwrap_err();
    assert!(matches!(e, Error::Uncertain { .. }), "{e:?}");
    assert!(e.to_string().contains("before giving another bolus"), "{e}");
    // A refill with a new prescription: read back the revision and the reservoir.
    let e = c
        .refill(Revision(4), Nanolitres::from_ml(20), Some(draft()))
        .await
        .unwrap_err();
    match &e {
        Error::Uncertain {
            request, read_back, ..
        } => {
            assert_eq!(*request, "Refill");
            assert_eq!(
                *read_back,
                ReadBack::Refill {
                    expected: Revision(4),
                    with_prescription: true
                }
            );
            assert!(e.to_string().contains("revision is now above 4"), "{e}");
            assert!(e.to_string().contains("read the prescription"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn refusal_carries_the_reason() {
    let (mut c, _) = start(Script {
        refuse: Some(Refusal::RevisionMismatch {
            expected: Revision(1),
            current: Revision(2),
        }),
        ..Script::default()
    })
    .await;
    let e = c
        .write_prescription(draft(), Revision(1))
        .await
        .unwrap_err();
    assert_eq!(
        e.refusal(),
        Some(&Refusal::RevisionMismatch {
            expected: Revision(1),
            current: Revision(2)
        })
    );
    assert!(e.to_string().contains("changed since it was read"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn wrong_answer_is_unexpected() {
    let (mut c, _) = start(Script {
        wrong: true,
        ..Script::default()
    })
    .await;
    let e = c.stop().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnexpectedResponse {
                request: "StopTherapy",
                got: "Pong"
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn schema_mismatch_is_refused_on_connect() {
    let (ours, theirs) = tokio::io::duplex(4096);
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(pump(
        theirs,
        Script {
            schema: Some(SCHEMA_HASH ^ 1),
            ..Script::default()
        },
        Arc::clone(&seen),
    ));
    let e = Client::connect(ours, CONFIG, key(Role::Clinician))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Incompatible { .. }), "{e:?}");
    assert!(e.to_string().contains("protocol mismatch"));
    // Nothing but identification was sent: not even a handshake.
    let s = seen.lock().unwrap();
    assert!(s.connected);
    assert!(s.frames.is_empty(), "{:?}", s.frames);
    assert_eq!(s.hellos, 0);
}

#[tokio::test(start_paused = true)]
async fn invalid_prescription_is_not_sent() {
    let (mut c, seen) = start(Script::default()).await;
    let mut bad = draft();
    bad.daily_limit = NanogramsPerDay::from_mg(1); // below the 3 mg/day rate
    let e = c
        .write_prescription(bad.clone(), Revision(1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    // Nor is a refill carrying it: the refill is not recorded either.
    let e = c
        .refill(Revision(1), Nanolitres::from_ml(20), Some(bad.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    let e = c
        .refill_and_verify(Revision(1), Nanolitres::from_ml(20), bad)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    c.ping().await.unwrap();
    assert_eq!(seen.lock().unwrap().frames, vec![(100, false, "Ping")]);
}

#[tokio::test(start_paused = true)]
async fn closed_link_is_an_io_error_or_uncertain_for_a_change() {
    let (mut c, _) = start(Script {
        hang_up: true,
        ..Script::default()
    })
    .await;
    let e = c.identify().await.unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    let (mut c, _) = start(Script {
        hang_up: true,
        ..Script::default()
    })
    .await;
    let e = c.stop().await.unwrap_err();
    assert!(matches!(e, Error::Uncertain { .. }), "{e:?}");
    assert!(e.to_string().contains("link failed"), "{e}");
}

/// COBS (for a pump of another protocol version, written by hand below).
fn cobs(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    let mut code_at = 0;
    for &b in raw {
        if b == 0 || out.len() - code_at == 255 {
            out[code_at] = (out.len() - code_at) as u8;
            code_at = out.len();
            out.push(0);
            if b == 0 {
                continue;
            }
        }
        out.push(b);
    }
    out[code_at] = (out.len() - code_at) as u8;
    out
}

#[tokio::test(start_paused = true)]
async fn a_pump_answering_in_another_protocol_version_is_named_as_such() {
    use thecal_protocol::frame::{Feed, FrameDecoder, CRC16};
    let (ours, mut theirs) = tokio::io::duplex(4096);
    // A protocol-3 pump: it answers every request it can decode with an intact frame
    // whose version byte is 3 (its `Identity` would not decode here anyway).
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let mut buf = [0u8; 512];
        loop {
            let Ok(n) = theirs.read(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            let mut input = &buf[..n];
            let mut ids = Vec::new();
            loop {
                match decoder.feed(input) {
                    Feed::Consumed => break,
                    Feed::Frame { frame, remaining } => {
                        ids.push(frame.header.id);
                        input = remaining;
                    }
                    Feed::Error { remaining, .. } => input = remaining,
                }
            }
            for id in ids {
                let [lo, hi] = id.to_le_bytes();
                let mut raw = vec![3, 2, lo, hi, 0, 0x02, 0x07];
                raw.extend_from_slice(&CRC16.checksum(&raw).to_le_bytes());
                let mut wire = cobs(&raw);
                wire.push(0);
                if theirs.write_all(&wire).await.is_err() {
                    return;
                }
            }
        }
    });
    let e = Client::connect(ours, CONFIG, key(Role::Clinician))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::OtherProtocol {
                request: "Identify",
                pump_protocol: 3,
                host_protocol: thecal_protocol::PROTOCOL_VERSION,
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("protocol mismatch") && text.contains("answers in protocol 3 frames"),
        "{text}"
    );
}
