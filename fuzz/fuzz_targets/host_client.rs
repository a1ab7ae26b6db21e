//! `host_client`: arbitrary device replies into the host client's response handling.
//!
//! `thecal_host::Client` runs over a `tokio::io::duplex` pipe on a paused-clock runtime
//! (timeouts cost nothing); the other end is a scripted pump that answers whatever the
//! fuzz input says. Input: byte 0 `b` gives the number of calls (1 + b % 4), the next
//! bytes pick them; `b & 0x80` is **session mode**: the client first opens a session
//! with the key of role `(b >> 5) & 3` ([`Role::ALL`]; the emergency role's is public)
//! and seals everything but `Identify` and the handshake. The rest is the pump's
//! script, one operation per byte (low 3 bits):
//!
//! | op | bytes after it | the pump … |
//! |---|---|---|
//! | 0 | — | waits for the client's next request frame |
//! | 1 | `u8` n, n bytes | writes raw bytes |
//! | 2 | `u8` d, `u8` f, `u16` n, n bytes | writes a frame with a valid CRC: id = last request id + d (as i8), kind from f's low 2 bits, flags f >> 2 |
//! | 3 | `u8` t | sleeps t × 50 ms |
//! | 4 | — | hangs up |
//! | 5 | `u16` n, n bytes | answers the last request with this body (valid frame, same id) |
//! | 6 | session mode: 16 bytes after a `SessionHello` | session mode: answers the last handshake step genuinely (a `SessionChallenge` with that device nonce and the pump's proof, or `SessionEstablished` after a `SessionProof`); otherwise as 5 |
//! | 7 | `u16` n, n bytes | session mode with a session: answers the last request with this body **sealed** under the session's key; otherwise as 5 |
//!
//! The pump reads every frame the client sends (at op 0, and after the script until the
//! client hangs up) and checks it: a request that decodes (a sealed one opens under the
//! key of a session whose proof the pump verified, and its plaintext is a `Command`); a
//! `SessionProof` names the nonce of a `SessionHello` the pump challenged and verifies; a
//! therapy change carries an idempotency key, the same in every attempt with the same
//! id.
//!
//! Checked: no panic; every call ends within its attempts × timeout (no hang, handshakes
//! included); a call that succeeds was answered by a response frame carrying its own
//! request id (never another request's answer), sealed and opening under the session
//! key when the request was sealed; errors display.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use thecal_fuzz::reader::Reader;
use thecal_host::client::Trace;
use thecal_host::eventlog::{read_log, LogRange};
use thecal_host::{Client, ClientConfig, Error, RoleKey};
use thecal_protocol::frame::{
    decode_body, encode, encode_raw, Feed, Flags, FrameDecoder, FrameKind, Header, MAX_BODY,
    MAX_WIRE,
};
use thecal_protocol::message::{AlarmKind, BolusRequest, Command, OpKey, Revision, Role};
use thecal_protocol::session::{
    device_proof, role_key, session_keys, verify_host_proof, Opener, Sealer, Secret, Transcript,
};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};
use thecal_protocol::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const FIRST_ID: u16 = 0x0301;
/// The scripted pump's device secret and serial (session mode).
const SECRET: Secret = Secret([0x3C; 32]);
const SERIAL: &str = "SN0042";
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

/// What the scripted pump saw and sent, for the checks after the run.
#[derive(Default)]
struct Seen {
    /// Every byte the pump wrote.
    sent: Vec<u8>,
    /// Ids of the request frames the pump read, and whether each was sealed.
    requests: HashMap<u16, bool>,
    /// Sealed answers the pump wrote: id, and whether the plaintext decodes.
    sealed: Vec<(u16, bool)>,
}

/// A session whose proof the scripted pump verified.
struct PumpSession {
    opener: Opener,
    sealer: Sealer,
}

/// The scripted pump's side of the link and its view of the client.
struct Pump {
    io: DuplexStream,
    session_mode: bool,
    seen: Arc<Mutex<Seen>>,
    decoder: Box<FrameDecoder>,
    /// Bytes read and not yet decoded.
    pending: Vec<u8>,
    last_id: u16,
    /// The last request read, and whether it came sealed.
    last: Option<(Request, bool)>,
    /// Challenges sent: host nonce → (role, device nonces).
    challenges: HashMap<[u8; 16], (Role, Vec<[u8; 16]>)>,
    /// Sessions opened by verified proofs, newest last.
    sessions: Vec<PumpSession>,
    /// Idempotency key of each sealed request id, and the id of each key.
    keys: HashMap<u16, Option<OpKey>>,
    key_ids: HashMap<OpKey, u16>,
}

impl Pump {
    /// Checks one frame from the client and remembers what the script needs.
    fn read_frame(&mut self, header: Header, body: &[u8]) {
        assert_eq!(
            header.kind,
            FrameKind::Request,
            "the client sent a frame that is no request"
        );
        let id = header.id;
        self.last_id = id;
        let sealed = header.flags.has(Flags::SEALED);
        self.seen.lock().unwrap().requests.insert(id, sealed);
        if !sealed {
            let request: Request = decode_body(body).expect("the client's plain request decodes");
            if self.session_mode {
                assert!(
                    matches!(
                        request,
                        Request::Identify
                            | Request::SessionHello { .. }
                            | Request::SessionProof { .. }
                    ),
                    "the client sent {} in the clear in a session",
                    request.name()
                );
            }
            if let Request::SessionProof { nonce, proof } = &request {
                self.verify_proof(nonce, proof);
            }
            self.last = Some((request, false));
            return;
        }
        assert!(
            self.session_mode,
            "the client sealed a request without a session"
        );
        let hb = header.to_bytes();
        let plain = self
            .sessions
            .iter_mut()
            .rev()
            .find_map(|s| {
                let mut b = body.to_vec();
                s.opener.open(&hb, &mut b).ok().map(<[u8]>::to_vec)
            })
            .expect("a sealed request under no key of a session whose proof the pump verified");
        let command: Command =
            decode_body(&plain).expect("the client's sealed plaintext is a Command");
        assert_eq!(
            command.key.is_some(),
            command.request.changes_therapy(),
            "{} with idempotency key {:?}",
            command.request.name(),
            command.key
        );
        let first = *self.keys.entry(id).or_insert(command.key);
        assert_eq!(
            first, command.key,
            "attempts of request {id:#06x} with other keys"
        );
        if let Some(key) = command.key {
            let owner = *self.key_ids.entry(key).or_insert(id);
            assert_eq!(owner, id, "two operations with one idempotency key");
        }
        self.last = Some((command.request, true));
    }

    /// A `SessionProof` names the nonce of a `SessionHello` this pump challenged, and
    /// verifies for one of those challenges; its session's keys are kept.
    fn verify_proof(&mut self, nonce: &[u8; 16], proof: &[u8; 32]) {
        let (role, device_nonces) = self
            .challenges
            .get(nonce)
            .expect("a SessionProof naming a nonce the pump never challenged");
        let key = role_key(&SECRET, *role, SERIAL);
        let keys = device_nonces
            .iter()
            .map(|dn| Transcript {
                role: *role,
                host_nonce: nonce,
                device_nonce: dn,
                serial: SERIAL,
            })
            .find(|t| verify_host_proof(&key, t, proof))
            .map(|t| session_keys(&key, &t))
            .expect("the client's SessionProof does not verify");
        self.sessions.push(PumpSession {
            opener: Opener::new(&keys.to_device),
            sealer: Sealer::new(&keys.to_host),
        });
    }

    /// Decodes what was read; reads every frame found. Returns whether one was found.
    fn decode_pending(&mut self, first_only: bool) -> bool {
        let pending = std::mem::take(&mut self.pending);
        let mut input = &pending[..];
        let mut found = false;
        loop {
            match self.decoder.feed(input) {
                Feed::Consumed => {
                    input = &[];
                    break;
                }
                Feed::Error { error, .. } => panic!("the client sent a bad frame: {error}"),
                Feed::Frame { frame, remaining } => {
                    input = remaining;
                    let (header, body) = (frame.header, frame.body.to_vec());
                    self.read_frame(header, &body);
                    found = true;
                    if first_only {
                        break;
                    }
                }
            }
        }
        self.pending = input.to_vec();
        found
    }

    /// Records bytes about to be written.
    fn write(&mut self, bytes: &[u8]) {
        self.seen.lock().unwrap().sent.extend_from_slice(bytes);
    }

    /// Writes a frame (with a valid CRC); `false` once the link is gone.
    async fn frame(&mut self, header: Header, body: &[u8]) -> bool {
        let mut wire = vec![0u8; MAX_WIRE];
        match encode_raw(header, body, &mut wire) {
            Ok(n) => {
                wire.truncate(n);
                self.write(&wire);
                self.io.write_all(&wire).await.is_ok()
            }
            Err(_) => true,
        }
    }

    async fn respond(&mut self, response: &Response) -> bool {
        let mut wire = vec![0u8; MAX_WIRE];
        let n = encode(Header::response(self.last_id), response, &mut wire).expect("encodes");
        wire.truncate(n);
        self.write(&wire);
        self.io.write_all(&wire).await.is_ok()
    }

    /// Op 6 in session mode: the genuine answer to the last handshake step.
    async fn handshake_step(&mut self, r: &mut Reader<'_>) -> bool {
        match self.last.clone() {
            Some((Request::SessionHello { role, nonce }, false)) => {
                let mut dn = [0u8; 16];
                dn.copy_from_slice(&[r.take(16), &[0u8; 16]].concat()[..16]);
                let key = role_key(&SECRET, role, SERIAL);
                let t = Transcript {
                    role,
                    host_nonce: &nonce,
                    device_nonce: &dn,
                    serial: SERIAL,
                };
                let proof = device_proof(&key, &t);
                self.challenges
                    .entry(nonce)
                    .or_insert((role, Vec::new()))
                    .1
                    .push(dn);
                self.respond(&Response::SessionChallenge { nonce: dn, proof })
                    .await
            }
            Some((Request::SessionProof { .. }, false)) => {
                self.respond(&Response::SessionEstablished).await
            }
            _ => true,
        }
    }

    /// Op 7 in session mode: `body` sealed under the newest session's key.
    async fn sealed_answer(&mut self, body: &[u8]) -> bool {
        let header = Header {
            kind: FrameKind::Response,
            id: self.last_id,
            flags: Flags(Flags::SEALED),
        };
        let Some(s) = self.sessions.last_mut() else {
            return self.frame(Header::response(self.last_id), body).await;
        };
        let mut sealed = vec![0u8; MAX_BODY + 32];
        let Ok(n) = s.sealer.seal(&header.to_bytes(), body, &mut sealed) else {
            return true;
        };
        let mut wire = vec![0u8; MAX_WIRE];
        let Ok(w) = encode_raw(header, &sealed[..n], &mut wire) else {
            return true;
        };
        let decodes = decode_body::<Response>(body).is_ok();
        self.seen.lock().unwrap().sealed.push((header.id, decodes));
        wire.truncate(w);
        self.write(&wire);
        self.io.write_all(&wire).await.is_ok()
    }
}

/// The scripted pump.
async fn pump(io: DuplexStream, script: Vec<u8>, session_mode: bool, seen: Arc<Mutex<Seen>>) {
    let mut p = Pump {
        io,
        session_mode,
        seen,
        decoder: Box::default(),
        pending: Vec::new(),
        last_id: FIRST_ID,
        last: None,
        challenges: HashMap::new(),
        sessions: Vec::new(),
        keys: HashMap::new(),
        key_ids: HashMap::new(),
    };
    let mut r = Reader::new(&script);
    let mut buf = [0u8; 512];
    while let Some(op) = r.u8() {
        let alive = match op & 7 {
            0 => loop {
                // Next request frame from the client.
                if p.decode_pending(true) {
                    break true;
                }
                match p.io.read(&mut buf).await {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => p.pending.extend_from_slice(&buf[..n]),
                }
            },
            1 => {
                let n = usize::from(r.u8().unwrap_or(0));
                let bytes = r.take(n).to_vec();
                p.write(&bytes);
                p.io.write_all(&bytes).await.is_ok()
            }
            2 => {
                let delta = r.u8().unwrap_or(0) as i8;
                let f = r.u8().unwrap_or(0);
                let n = usize::from(r.u16());
                let header = Header {
                    kind: FrameKind::from_code(f & 3).unwrap_or(FrameKind::Response),
                    id: p.last_id.wrapping_add_signed(i16::from(delta)),
                    flags: Flags(f >> 2),
                };
                p.frame(header, r.take(n)).await
            }
            3 => {
                let t = u64::from(r.u8().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(t * 50)).await;
                true
            }
            4 => return,
            6 if session_mode => p.handshake_step(&mut r).await,
            7 if session_mode => {
                let n = usize::from(r.u16());
                p.sealed_answer(r.take(n)).await
            }
            _ => {
                let n = usize::from(r.u16());
                p.frame(Header::response(p.last_id), r.take(n)).await
            }
        };
        if !alive {
            return;
        }
    }
    // Script done: keep the link open and silent, so the client's timeouts end it; what
    // the client still sends is checked.
    loop {
        p.decode_pending(false);
        match p.io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => p.pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// Plain response frames (id, decodes) in what the pump sent.
fn answers(sent: &[u8]) -> Vec<(u16, bool)> {
    let mut d: Box<FrameDecoder> = Box::default();
    let mut input = sent;
    let mut out = Vec::new();
    loop {
        match d.feed(input) {
            Feed::Consumed => return out,
            Feed::Error { remaining, .. } => input = remaining,
            Feed::Frame { frame, remaining } => {
                if frame.header.kind == FrameKind::Response
                    && !frame.header.flags.has(Flags::SEALED)
                {
                    let ok = decode_body::<Response>(frame.body).is_ok();
                    out.push((frame.header.id, ok));
                }
                input = remaining;
            }
        }
    }
}

/// Longest a handshake may take: every try's two messages time out, and the pump is
/// busy as often as the client waits it out.
fn handshake_bound() -> Duration {
    let tries = CONFIG.retries + 1;
    CONFIG.timeout * 2 * tries + thecal_host::client::BUSY_WAIT * thecal_host::client::BUSY_RETRIES
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let session_mode = n & 0x80 != 0;
    let role = Role::ALL[usize::from(n >> 5) & 3];
    let calls = usize::from(n % 4) + 1;
    let (calls, script) = rest.split_at(calls.min(rest.len()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let results = rt.block_on(async {
        let (host, device) = tokio::io::duplex(4096);
        let device = tokio::spawn(pump(
            device,
            script.to_vec(),
            session_mode,
            Arc::clone(&seen),
        ));
        let mut client = Client::with_first_id(host, CONFIG, FIRST_ID);
        let traced = Arc::clone(&answered);
        client.set_tracer(move |t| {
            if let Trace::Answered { id, .. } = t {
                traced.lock().unwrap().push(*id);
            }
        });
        if session_mode {
            let key = RoleKey {
                role,
                key: role_key(&SECRET, role, SERIAL),
            };
            let bound = handshake_bound() + Duration::from_secs(60);
            let result = tokio::time::timeout(bound, client.authenticate(key, SERIAL))
                .await
                .unwrap_or_else(|_| panic!("the handshake hung past {bound:?}"));
            if let Err(e) = &result {
                let _ = e.to_string();
            }
        }
        let mut results = Vec::new();
        for &which in calls {
            let attempts = CONFIG.retries + 1;
            let mut bound = CONFIG.timeout * attempts * ids_used(which) + Duration::from_secs(60);
            if session_mode {
                // A handshake first (no session yet), and one renewal.
                bound += handshake_bound() * 2;
            }
            let result = tokio::time::timeout(bound, call(&mut client, which))
                .await
                .unwrap_or_else(|_| panic!("call {which} hung past {bound:?}"));
            if let Err(e) = &result {
                let _ = e.to_string();
            }
            results.push((which, result.is_ok()));
        }
        drop(client);
        if let Err(e) = device.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        results
    });
    let seen = seen.lock().unwrap();
    let plain = answers(&seen.sent);
    // Every answer the client accepted was a response carrying its request's id: sealed
    // (and opening under the session key) for a sealed request, plain for a plain one.
    for &id in answered.lock().unwrap().iter() {
        let plain_ok = plain.iter().any(|&(a, decodes)| a == id && decodes);
        let sealed_ok = seen.sealed.iter().any(|&(a, decodes)| a == id && decodes);
        match seen.requests.get(&id) {
            Some(true) => assert!(
                sealed_ok,
                "a sealed request {id:#06x} was answered without a sealed answer carrying its id"
            ),
            Some(false) => assert!(
                plain_ok,
                "a plain request {id:#06x} was answered without a plain answer carrying its id"
            ),
            None => assert!(
                plain_ok || sealed_ok,
                "request {id:#06x} was answered without an answer carrying its id"
            ),
        }
    }
    if session_mode {
        // Handshakes use ids of their own: the sequence below is the plain mode's.
        return;
    }
    // A call that succeeded got an intact answer carrying its own id.
    let mut id = FIRST_ID;
    for (which, ok) in results {
        let used = ids_used(which);
        if ok && used == 1 {
            assert!(
                plain.iter().any(|&(a, decodes)| a == id && decodes),
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
