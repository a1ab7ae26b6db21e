//! The client's transport rules over an in-memory pipe, against a small scripted pump
//! written here with the protocol crate: it can drop, delay, corrupt or misdirect
//! answers deterministically. Time is paused, so timeouts cost nothing and never flake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thecal_host::client::{Client, ClientConfig};
use thecal_host::Error;
use thecal_protocol::frame::{decode_body, encode, Feed, Flags, FrameDecoder, FrameKind, Header};
use thecal_protocol::message::{
    BolusKind, BolusReport, BolusRequest, Capabilities, Identity, Refusal, Revision, Version,
};
use thecal_protocol::prescription::{PrescriptionDraft, TherapyMode};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};
use thecal_protocol::{Drug, Request, Response, PROTOCOL_VERSION, SCHEMA_HASH};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How the scripted pump misbehaves.
#[derive(Clone, Default)]
struct Script {
    /// Ignore this many request frames before answering.
    drop_first: u32,
    /// Send an answer with another id before the real one.
    stale_first: bool,
    /// Send garbage and a corrupt frame before the real answer.
    noise_first: bool,
    /// Never answer.
    silent: bool,
    /// Close the link on the first request.
    hang_up: bool,
    /// Answer with a different schema hash.
    schema: Option<u32>,
    /// Refuse everything with this.
    refuse: Option<Refusal>,
    /// Answer everything with `Pong` (a wrong answer).
    wrong: bool,
}

/// What the pump saw.
#[derive(Default)]
struct Seen {
    /// (id, retry flag, request name) of every request frame.
    frames: Vec<(u16, bool, &'static str)>,
    /// Times a therapy-changing request was executed (not answered from the cache).
    executed: u32,
}

fn identity(schema: u32) -> Identity {
    Identity {
        model: "duplex".try_into().unwrap(),
        serial: "T1".try_into().unwrap(),
        firmware: Version {
            major: 1,
            minor: 0,
            patch: 0,
        },
        protocol: PROTOCOL_VERSION,
        schema,
        capabilities: Capabilities(0),
        reservoir_capacity: Nanolitres::from_ml(20),
    }
}

fn answer(req: &Request, script: &Script) -> Response {
    if let Some(r) = script.refuse {
        return Response::Refused(r);
    }
    if script.wrong {
        return Response::Pong { token: 0 };
    }
    match req {
        Request::Identify => Response::Identity(identity(script.schema.unwrap_or(SCHEMA_HASH))),
        Request::Ping { token } => Response::Pong { token: *token },
        Request::ClinicianBolus(_) => Response::BolusStarted(BolusReport {
            kind: BolusKind::Single,
            dose: Nanograms(50_000),
            volume: Nanolitres(5_000),
            ends_at: Timestamp(1),
        }),
        Request::WritePrescription { expected, .. } => Response::PrescriptionWritten {
            revision: Revision(expected.0 + 1),
        },
        Request::StopTherapy => Response::TherapyStopped,
        _ => Response::Refused(Refusal::Unsupported),
    }
}

fn frame(header: Header, response: &Response) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = encode(header, response, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Serves `io` by `script` until the client goes away.
async fn pump(mut io: DuplexStream, script: Script, seen: Arc<Mutex<Seen>>) {
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let mut cache: HashMap<u16, Response> = HashMap::new();
    let mut dropped = 0;
    let mut buf = [0u8; 256];
    loop {
        let n = match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut input = &buf[..n];
        let mut requests = Vec::new();
        loop {
            match decoder.feed(input) {
                Feed::Consumed => break,
                Feed::Error { remaining, .. } => input = remaining,
                Feed::Frame { frame, remaining } => {
                    assert_eq!(frame.header.kind, FrameKind::Request);
                    let req: Request = decode_body(frame.body).unwrap();
                    requests.push((frame.header, req));
                    input = remaining;
                }
            }
        }
        for (header, req) in requests {
            let retry = header.flags.has(Flags::RETRY);
            seen.lock()
                .unwrap()
                .frames
                .push((header.id, retry, req.name()));
            if script.hang_up {
                return;
            }
            if script.silent || dropped < script.drop_first {
                dropped += 1;
                continue;
            }
            let response = match cache.get(&header.id) {
                Some(cached) if retry => cached.clone(),
                _ => {
                    let r = answer(&req, &script);
                    if req.changes_therapy() {
                        seen.lock().unwrap().executed += 1;
                        cache.insert(header.id, r.clone());
                    }
                    r
                }
            };
            let mut out = Vec::new();
            if script.noise_first {
                out.extend_from_slice(&[0x42, 0x13, 0x00]);
                let mut bad = frame(Header::response(header.id), &response);
                bad[2] ^= 0x55;
                out.extend_from_slice(&bad);
            }
            if script.stale_first {
                out.extend(frame(
                    Header::response(header.id.wrapping_sub(7)),
                    &Response::Pong { token: 99 },
                ));
            }
            out.extend(frame(Header::response(header.id), &response));
            if io.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(200),
    retries: 2,
};

fn start(script: Script) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    let (ours, theirs) = tokio::io::duplex(4096);
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(pump(theirs, script, Arc::clone(&seen)));
    (Client::with_first_id(ours, CONFIG, 100), seen)
}

fn bolus() -> BolusRequest {
    BolusRequest::Single {
        dose: Nanograms(50_000),
        duration: Minutes(10),
    }
}

fn draft() -> PrescriptionDraft {
    PrescriptionDraft {
        drug: Drug::Morphine,
        concentration: NanogramsPerMillilitre::from_mg_per_ml(10),
        daily_limit: NanogramsPerDay::from_mg(6),
        mode: TherapyMode::Continuous {
            dose: NanogramsPerDay::from_mg(3),
        },
        patient_bolus: None,
        low_reservoir_alarm: Nanolitres::from_ml(2),
    }
}

#[tokio::test(start_paused = true)]
async fn answers_come_back_typed_and_ids_advance() {
    let (mut c, seen) = start(Script::default());
    assert_eq!(c.identify().await.unwrap().serial.as_str(), "T1");
    c.ping().await.unwrap();
    let frames = &seen.lock().unwrap().frames;
    assert_eq!(
        frames.as_slice(),
        &[(100, false, "Identify"), (101, false, "Ping")]
    );
}

#[tokio::test(start_paused = true)]
async fn lost_answer_is_retried_with_the_same_id_and_retry_flag() {
    let (mut c, seen) = start(Script {
        drop_first: 2,
        ..Script::default()
    });
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
async fn retried_bolus_is_executed_once() {
    // The pump executes the bolus but the answer is lost; the retry is answered from
    // the reply cache.
    let (ours, theirs) = tokio::io::duplex(4096);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let lossy = LossyFirstAnswer::new(theirs);
    tokio::spawn(pump(lossy.pump_side, Script::default(), Arc::clone(&seen)));
    tokio::spawn(lossy.task);
    let mut c = Client::with_first_id(ours, CONFIG, 500);
    let report = c.bolus(bolus()).await.unwrap();
    assert_eq!(report.dose, Nanograms(50_000));
    let s = seen.lock().unwrap();
    assert_eq!(s.executed, 1, "the retry must not execute again");
    assert_eq!(
        s.frames,
        vec![
            (500, false, "ClinicianBolus"),
            (500, true, "ClinicianBolus")
        ]
    );
}

/// A link that loses the pump's first answer (after the pump has acted on it).
struct LossyFirstAnswer {
    pump_side: DuplexStream,
    task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl LossyFirstAnswer {
    fn new(client_side: DuplexStream) -> Self {
        let (pump_side, relay) = tokio::io::duplex(4096);
        let task = Box::pin(async move {
            let (mut cr, mut cw) = tokio::io::split(client_side);
            let (mut pr, mut pw) = tokio::io::split(relay);
            let up = async {
                let mut b = [0u8; 512];
                while let Ok(n @ 1..) = cr.read(&mut b).await {
                    if pw.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            };
            let down = async {
                let mut b = [0u8; 512];
                let mut first = true;
                while let Ok(n @ 1..) = pr.read(&mut b).await {
                    if first {
                        first = false;
                        continue;
                    }
                    if cw.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            };
            tokio::join!(up, down);
        });
        Self { pump_side, task }
    }
}

#[tokio::test(start_paused = true)]
async fn stale_answers_and_noise_are_discarded() {
    let (mut c, _) = start(Script {
        stale_first: true,
        noise_first: true,
        ..Script::default()
    });
    let id = c.identify().await.unwrap();
    assert_eq!(id.serial.as_str(), "T1");
    let counters = c.counters();
    assert_eq!(counters.stale, 1);
    assert!(counters.bad_frames >= 1, "{counters:?}");
    assert_eq!(counters.retries, 0);
}

#[tokio::test(start_paused = true)]
async fn silent_pump_times_out_after_bounded_retries() {
    let (mut c, seen) = start(Script {
        silent: true,
        ..Script::default()
    });
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
    });
    let e = c
        .write_prescription(draft(), Revision(4))
        .await
        .unwrap_err();
    match &e {
        Error::Uncertain {
            request, read_back, ..
        } => {
            assert_eq!(*request, "WritePrescription");
            assert!(read_back.contains("revision is now above 4"), "{read_back}");
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
            assert!(read_back.contains("revision is now above 4"), "{read_back}");
            assert!(read_back.contains("thecal reservoir"), "{read_back}");
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
    });
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
    });
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
    let e = Client::connect(ours, CONFIG).await.unwrap_err();
    assert!(matches!(e, Error::Incompatible { .. }), "{e:?}");
    assert!(e.to_string().contains("protocol mismatch"));
    // Nothing but identification was sent.
    assert_eq!(seen.lock().unwrap().frames.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn invalid_prescription_is_not_sent() {
    let (mut c, seen) = start(Script::default());
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
    });
    let e = c.identify().await.unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    let (mut c, _) = start(Script {
        hang_up: true,
        ..Script::default()
    });
    let e = c.stop().await.unwrap_err();
    assert!(matches!(e, Error::Uncertain { .. }), "{e:?}");
    assert!(e.to_string().contains("link failed"), "{e}");
}
