//! `host_client`: arbitrary device replies into the host client's response handling.
//!
//! `thecal_host::Client` runs over a `tokio::io::duplex` pipe on a paused-clock runtime
//! (timeouts cost nothing); the other end is a scripted pump that answers whatever the
//! fuzz input says. Input: byte 0 gives the number of calls (1 + b % 4), the next bytes
//! pick them; the rest is the pump's script, one operation per byte (low 3 bits):
//!
//! | op | bytes after it | the pump … |
//! |---|---|---|
//! | 0 | — | waits for the client's next request frame |
//! | 1 | `u8` n, n bytes | writes raw bytes |
//! | 2 | `u8` d, `u8` f, `u16` n, n bytes | writes a frame with a valid CRC: id = last request id + d (as i8), kind from f's low 2 bits, flags f >> 2 |
//! | 3 | `u8` t | sleeps t × 50 ms |
//! | 4 | — | hangs up |
//! | 5–7 | `u16` n, n bytes | answers the last request with this body (valid frame, same id) |
//!
//! Checked: no panic; every call ends within its attempts × timeout (no hang); a call
//! that succeeds was answered by a response frame carrying its own request id (never
//! another request's answer); errors display.
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use thecal_fuzz::reader::Reader;
use thecal_host::eventlog::{read_log, LogRange};
use thecal_host::{Client, ClientConfig, Error};
use thecal_protocol::frame::{
    decode_body, encode_raw, Feed, Flags, FrameDecoder, FrameKind, Header, MAX_WIRE,
};
use thecal_protocol::message::{AlarmKind, BolusRequest, Revision};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};
use thecal_protocol::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const FIRST_ID: u16 = 0x0301;
const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(500),
    retries: 2,
};

/// The client's calls; returns the request id it used, if it got an answer.
async fn call(client: &mut Client<DuplexStream>, which: u8) -> Result<(), Error> {
    match which % 18 {
        0 => client.identify().await.map(drop),
        1 => client.ping().await.map(drop),
        2 => client.status().await.map(drop),
        3 => client.battery().await.map(drop),
        4 => client.reservoir().await.map(drop),
        5 => client.prescription().await.map(drop),
        6 => {
            let draft = thecal_device::demo::demo_prescription()
                .expect("valid")
                .draft()
                .clone();
            client
                .write_prescription(draft, Revision(1))
                .await
                .map(drop)
        }
        7 => client
            .bolus(BolusRequest::Single {
                dose: Nanograms::from_ug(20),
                duration: Minutes(5),
            })
            .await
            .map(drop),
        8 => client.patient_bolus().await.map(drop),
        9 => client.stop().await,
        10 => client.resume().await,
        11 => client.alarms().await.map(drop),
        12 => client.acknowledge(AlarmKind::LowReservoir).await,
        13 => client.log_page(0, 8).await.map(drop),
        14 => client
            .set_clock(Timestamp(1_795_392_000_000), UtcOffset(60))
            .await
            .map(drop),
        15 => client.link_stats().await.map(drop),
        16 => client
            .refill(Revision(1), Nanolitres::from_ml(20), None)
            .await
            .map(drop),
        _ => read_log(client, LogRange::default(), |_, _| {})
            .await
            .map(drop),
    }
}

/// How many request ids a call may use (the log reader pages).
fn ids_used(which: u8) -> u32 {
    if which % 18 == 17 {
        // Bounded by the pages the script can answer; generous.
        4_096
    } else {
        1
    }
}

/// The scripted pump. Returns every byte it wrote.
async fn pump(mut io: DuplexStream, script: Vec<u8>, sent: Arc<Mutex<Vec<u8>>>) {
    let mut r = Reader::new(&script);
    let mut decoder: Box<FrameDecoder> = Box::default();
    let mut last_id: u16 = FIRST_ID;
    let mut buf = [0u8; 512];
    let mut pending: Vec<u8> = Vec::new();
    let write = |bytes: Vec<u8>| {
        sent.lock().unwrap().extend_from_slice(&bytes);
        bytes
    };
    while let Some(op) = r.u8() {
        match op & 7 {
            0 => loop {
                // Next request frame from the client.
                let mut found = None;
                let mut input = &pending[..];
                loop {
                    match decoder.feed(input) {
                        Feed::Consumed => {
                            input = &[];
                            break;
                        }
                        Feed::Error { remaining, .. } => input = remaining,
                        Feed::Frame { frame, remaining } => {
                            input = remaining;
                            found = Some(frame.header.id);
                            break;
                        }
                    }
                }
                pending = input.to_vec();
                if let Some(id) = found {
                    last_id = id;
                    break;
                }
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            },
            1 => {
                let n = usize::from(r.u8().unwrap_or(0));
                let bytes = write(r.take(n).to_vec());
                if io.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            2 => {
                let delta = r.u8().unwrap_or(0) as i8;
                let f = r.u8().unwrap_or(0);
                let n = usize::from(r.u16());
                let header = Header {
                    kind: FrameKind::from_code(f & 3).unwrap_or(FrameKind::Response),
                    id: last_id.wrapping_add_signed(i16::from(delta)),
                    flags: Flags(f >> 2),
                };
                if !answer(&mut io, header, r.take(n), &write).await {
                    return;
                }
            }
            3 => {
                let t = u64::from(r.u8().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(t * 50)).await;
            }
            4 => return,
            _ => {
                let n = usize::from(r.u16());
                if !answer(&mut io, Header::response(last_id), r.take(n), &write).await {
                    return;
                }
            }
        }
    }
    // Script done: keep the link open and silent, so the client's timeouts end it.
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn answer(
    io: &mut DuplexStream,
    header: Header,
    body: &[u8],
    write: &impl Fn(Vec<u8>) -> Vec<u8>,
) -> bool {
    let mut wire = vec![0u8; MAX_WIRE];
    match encode_raw(header, body, &mut wire) {
        Ok(n) => {
            wire.truncate(n);
            io.write_all(&write(wire)).await.is_ok()
        }
        Err(_) => true,
    }
}

/// Response frames (id, decodes) in what the pump sent.
fn answers(sent: &[u8]) -> Vec<(u16, bool)> {
    let mut d: Box<FrameDecoder> = Box::default();
    let mut input = sent;
    let mut out = Vec::new();
    loop {
        match d.feed(input) {
            Feed::Consumed => return out,
            Feed::Error { remaining, .. } => input = remaining,
            Feed::Frame { frame, remaining } => {
                if frame.header.kind == FrameKind::Response {
                    let ok = decode_body::<Response>(frame.body).is_ok();
                    out.push((frame.header.id, ok));
                }
                input = remaining;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let calls = usize::from(n % 4) + 1;
    let (calls, script) = rest.split_at(calls.min(rest.len()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let results = rt.block_on(async {
        let (host, device) = tokio::io::duplex(4096);
        let device = tokio::spawn(pump(device, script.to_vec(), Arc::clone(&sent)));
        let mut client = Client::with_first_id(host, CONFIG, FIRST_ID);
        let mut results = Vec::new();
        for &which in calls {
            let attempts = CONFIG.retries + 1;
            let bound = CONFIG.timeout * attempts * ids_used(which) + Duration::from_secs(60);
            let result = tokio::time::timeout(bound, call(&mut client, which))
                .await
                .unwrap_or_else(|_| panic!("call {which} hung past {bound:?}"));
            if let Err(e) = &result {
                let _ = e.to_string();
            }
            results.push((which, result.is_ok()));
        }
        drop(client);
        let _ = device.await;
        results
    });
    // A call that succeeded got an intact answer carrying its own id.
    let answers = answers(&sent.lock().unwrap());
    let mut id = FIRST_ID;
    for (which, ok) in results {
        let used = ids_used(which);
        if ok && used == 1 {
            assert!(
                answers.iter().any(|&(a, decodes)| a == id && decodes),
                "call {which} succeeded without an answer carrying id {id:#06x}"
            );
        }
        if used == 1 {
            id = id.wrapping_add(1);
        } else {
            // The log reader used an unknown number of ids; stop checking.
            break;
        }
    }
});
