//! The scripted pump: a small fake pump written with the protocol crate, for the
//! client's transport and session tests over an in-memory pipe (`client_*.rs`). It
//! performs the pump's side of the forward-secret handshake (ephemeral X25519, the
//! transcript bound to what it announced in `Identify`, the role key of the epoch in
//! force), key rotation and provisioning by key agreement, and seals its answers like the
//! real one (PROTOCOL.md 2.9); it can drop, delay, corrupt, forge or misdirect answers,
//! lose the session deterministically, and lie in `Identify` (see [`Script`]). The tests
//! run on tokio's paused clock, so timeouts cost nothing and never flake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thecal_host::client::{Client, ClientConfig};
use thecal_host::RoleKey;
use thecal_protocol::frame::{
    decode_body, encode, encode_raw, Feed, Flags, FrameDecoder, FrameKind, Header,
};
use thecal_protocol::message::permitted;
use thecal_protocol::message::{
    BolusKind, BolusReport, BolusRequest, Capabilities, Command, Event, Identity, KeyEpochs,
    LogEntry, LogPage, OpKey, Refusal, Revision, Role, Version,
};
use thecal_protocol::prescription::{PrescriptionDraft, TherapyMode};
use thecal_protocol::session::{
    device_nonce, nonce_key, role_key, Binding, Ephemeral, HandshakeKeys, Opener, Pool,
    ProvisionKeys, ProvisionTranscript, Sealer, Secret, Transcript, PUBLIC_LEN,
};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};
use thecal_protocol::{Drug, Request, Response, PROTOCOL_VERSION, SCHEMA_HASH};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The scripted pump's serial number and device secret.
pub const SERIAL: &str = "T1";
pub const DEVICE_SECRET: [u8; 32] = [0x5a; 32];
/// The scripted pump's static X25519 secret (its public key is on its label).
pub const STATIC_KEY: [u8; 32] = [0x77; 32];
/// The capabilities the scripted pump has (announces, and binds into every handshake).
pub const CAPABILITIES: u32 = Capabilities::SECURE_SESSION | Capabilities::KEY_LIFECYCLE;

/// What a sealed request that arrives without a session is recorded as.
pub const NO_SESSION: &str = "<sealed, no session>";

/// How the scripted pump misbehaves. Everything but the handshake options applies to
/// the requests after the handshake (and `Identify`, `Provision`), except the first
/// `Identify` of the link: that is the client connecting, always answered truthfully
/// (but for `schema` and `announce`) and not recorded in [`Seen::frames`].
#[derive(Clone, Default)]
pub struct Script {
    /// Ignore this many request frames before answering.
    pub drop_first: u32,
    /// Carry out this many requests but lose their answers.
    pub lose_answers: u32,
    /// Send an answer with another id before the real one.
    pub stale_first: bool,
    /// Send garbage and a corrupt frame before the real answer.
    pub noise_first: bool,
    /// Inside a session, send a plain copy of the answer and a forged sealed one before
    /// the real answer.
    pub unauthentic_first: bool,
    /// Inside a session, answer only with plain frames.
    pub plain_answers: bool,
    /// Never answer.
    pub silent: bool,
    /// Close the link on the first request.
    pub hang_up: bool,
    /// Answer with a different schema hash.
    pub schema: Option<u32>,
    /// Announce these capabilities in `Identify` while binding its real ones
    /// ([`CAPABILITIES`]) into the handshake: what a client sees when a man in the
    /// middle rewrote `Identify` (a downgrade).
    pub announce: Option<u32>,
    /// Refuse everything with this.
    pub refuse: Option<Refusal>,
    /// Answer everything with `Pong` (a wrong answer).
    pub wrong: bool,
    /// The pump forgets the session just before these sealed frames (counted from 0);
    /// `reset` also empties its reply cache, like a reboot.
    pub lose_session_before: Vec<u32>,
    pub reset: bool,
    /// No device secret yet (`Provision` accepted once).
    pub unprovisioned: bool,
    /// Every role key at this epoch (derived from the device secret) instead of 1.
    pub epoch: Option<u32>,
    /// The pump proves another key than the programmer's (not the pump it thinks).
    pub impostor: bool,
    /// Refuse every host proof.
    pub refuse_proof: bool,
    /// Refuse hellos with `Busy` once this many sessions were opened.
    pub busy_after: Option<u32>,
    /// The first session's receiving counter starts after this one instead of 0 (a
    /// programmer that has sent that many frames in it; a sender cannot jump further
    /// than 65 535 ahead of the receiver).
    pub first_counter_after: u32,
    /// An event log of this many entries (indices 0..log) served to `ReadLog`.
    pub log: u32,
    /// Lose the answer to the first attempt of these request ids (a retry is answered).
    pub lose_answer_to: Vec<u16>,
    /// Collect request frames until none arrived for this long, then answer them all:
    /// each batch is what the client had in flight (recorded in `Seen::batches`).
    pub hold: Option<Duration>,
}

/// What the pump saw.
#[derive(Default)]
pub struct Seen {
    /// (id, retry flag, request name) of every request frame but the handshake's and
    /// the connection's first `Identify`.
    pub frames: Vec<(u16, bool, &'static str)>,
    /// Counters of the sealed requests that opened, in order.
    pub counters: Vec<u32>,
    /// Times a state-changing request was executed (not answered from the cache).
    pub executed: u32,
    /// The connection's first `Identify` was served.
    pub connected: bool,
    /// Handshake messages received, and sessions opened.
    pub hellos: u32,
    pub proofs: u32,
    pub sessions: u32,
    /// The key epoch each `SessionHello` named.
    pub hello_epochs: Vec<u32>,
    /// Request frames answered together (see `Script::hold`).
    pub batches: Vec<usize>,
}

/// The scripted pump's static public key (on its label, and in `Identify`).
pub fn pump_public() -> [u8; PUBLIC_LEN] {
    Ephemeral::from_bytes(STATIC_KEY).public()
}

pub fn identity(schema: u32, capabilities: u32, key_epochs: KeyEpochs) -> Identity {
    Identity {
        model: "duplex".try_into().unwrap(),
        serial: SERIAL.try_into().unwrap(),
        firmware: Version {
            major: 1,
            minor: 0,
            patch: 0,
        },
        protocol: PROTOCOL_VERSION,
        schema,
        capabilities: Capabilities(capabilities),
        reservoir_capacity: Nanolitres::from_ml(20),
        public_key: pump_public(),
        key_epochs,
    }
}

/// The key of `role` on the scripted pump, at epoch 1.
pub fn key(role: Role) -> RoleKey {
    key_at(role, 1)
}

/// The key of `role` derived from the scripted pump's device secret at `epoch`.
pub fn key_at(role: Role, epoch: u32) -> RoleKey {
    RoleKey {
        role,
        epoch,
        key: role_key(&Secret::new(DEVICE_SECRET), role, epoch, SERIAL),
    }
}

fn answer(req: &Request, script: &Script, identity: Identity) -> Response {
    if let Some(r) = script.refuse {
        return Response::Refused(r);
    }
    if script.wrong {
        return Response::Pong { token: 0 };
    }
    match req {
        Request::Identify => Response::Identity(identity),
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
        Request::ReadLog { first, max } => {
            let count = u32::from(*max).min(8);
            let entries = (*first..script.log.min(first.saturating_add(count)))
                .map(log_entry)
                .collect::<Vec<_>>();
            Response::LogPage(LogPage {
                oldest: 0,
                next: script.log,
                entries: entries.as_slice().try_into().unwrap(),
            })
        }
        _ => Response::Refused(Refusal::Unsupported),
    }
}

/// Entry `index` of the scripted pump's event log.
pub fn log_entry(index: u32) -> LogEntry {
    LogEntry {
        index,
        at: Timestamp(1_700_000_000_000 + u64::from(index) * 1_000),
        event: if index.is_multiple_of(2) {
            Event::TherapyStopped {
                by: Role::Clinician,
            }
        } else {
            Event::TherapyResumed {
                by: Role::Clinician,
            }
        },
    }
}

pub fn frame(header: Header, response: &Response) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = encode(header, response, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

pub fn sealed_frame(sealer: &mut Sealer, id: u16, response: &Response) -> Vec<u8> {
    let header = Header {
        kind: FrameKind::Response,
        id,
        flags: Flags(Flags::SEALED),
    };
    let mut plain = vec![0u8; 2048];
    let plain = postcard::to_slice(response, &mut plain).unwrap();
    let mut body = vec![0u8; plain.len() + 64];
    let n = sealer.seal(&header.to_bytes(), plain, &mut body).unwrap();
    let mut buf = vec![0u8; 2048];
    let w = encode_raw(header, &body[..n], &mut buf).unwrap();
    buf.truncate(w);
    buf
}

/// A challenge waiting for the programmer's proof.
struct Pending {
    role: Role,
    host_nonce: [u8; 16],
    th: [u8; 32],
    keys: HandshakeKeys,
}

/// The scripted pump's memory.
struct State {
    /// The device secret, once provisioned.
    secret: Option<Secret>,
    /// Epoch of each role key in force.
    epochs: KeyEpochs,
    /// Keys rotated since the last provisioning (random, not derived).
    rotated: HashMap<Role, [u8; 32]>,
    /// Source of the pump's ephemeral X25519 secrets.
    pool: Pool,
    nonces: u64,
    challenged: Option<Pending>,
    session: Option<(Role, Opener, Sealer)>,
    /// Answers to state changes by request id, with the idempotency key they came with.
    cache: HashMap<u16, (Option<OpKey>, Response)>,
    dropped: u32,
    lost: u32,
    sealed_seen: u32,
}

pub fn all_at(epoch: u32) -> KeyEpochs {
    KeyEpochs {
        patient: epoch,
        clinician: epoch,
        service: epoch,
    }
}

pub fn set_epoch(epochs: &mut KeyEpochs, role: Role, epoch: u32) {
    match role {
        Role::Patient => epochs.patient = epoch,
        Role::Clinician => epochs.clinician = epoch,
        Role::Service => epochs.service = epoch,
        Role::Emergency => {}
    }
}

impl State {
    /// The key of `role` in force and its epoch; `None` while unprovisioned.
    fn key_in_force(&self, role: Role) -> Option<(u32, Secret)> {
        let secret = self.secret.as_ref()?;
        let epoch = self.epochs.of(role);
        let key = match self.rotated.get(&role) {
            Some(key) => Secret::new(*key),
            None => role_key(secret, role, epoch, SERIAL),
        };
        Some((epoch, key))
    }

    /// What `Identify` says (the capabilities as announced, which may be a lie).
    fn identity(&self, script: &Script) -> Identity {
        identity(
            script.schema.unwrap_or(SCHEMA_HASH),
            script.announce.unwrap_or(CAPABILITIES),
            self.epochs,
        )
    }

    /// What the pump binds into its handshakes: its real version, schema and
    /// capabilities.
    fn binding(&self, script: &Script) -> Binding {
        Binding {
            version: PROTOCOL_VERSION,
            schema: script.schema.unwrap_or(SCHEMA_HASH),
            capabilities: CAPABILITIES,
        }
    }
}

/// Serves `io` by `script` until the client goes away.
pub async fn pump(mut io: DuplexStream, script: Script, seen: Arc<Mutex<Seen>>) {
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let provisioned = !script.unprovisioned;
    let epoch = if provisioned {
        script.epoch.unwrap_or(1)
    } else {
        0
    };
    let mut st = State {
        secret: provisioned.then(|| Secret::new(DEVICE_SECRET)),
        epochs: all_at(epoch),
        rotated: HashMap::new(),
        pool: Pool::new(&Secret::new([0x33; 32]), 1),
        nonces: 0,
        challenged: None,
        session: None,
        cache: HashMap::new(),
        dropped: 0,
        lost: 0,
        sealed_seen: 0,
    };
    let mut buf = [0u8; 256];
    loop {
        let n = match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut frames = Vec::new();
        decode_into(&mut decoder, &buf[..n], &mut frames);
        if let Some(hold) = script.hold {
            // Keep collecting until the client stops sending.
            loop {
                match tokio::time::timeout(hold, io.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(n)) => decode_into(&mut decoder, &buf[..n], &mut frames),
                    Err(_quiet) => break,
                }
            }
            seen.lock().unwrap().batches.push(frames.len());
        }
        for (header, body) in frames {
            match serve(&mut st, &script, &seen, header, body) {
                Serve::HangUp => return,
                Serve::Nothing => {}
                Serve::Send(out) => {
                    if io.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Decodes the request frames in `input` into `frames`.
pub fn decode_into(
    decoder: &mut FrameDecoder,
    mut input: &[u8],
    frames: &mut Vec<(Header, Vec<u8>)>,
) {
    loop {
        match decoder.feed(input) {
            Feed::Consumed => break,
            Feed::Error { remaining, .. } => input = remaining,
            Feed::Frame { frame, remaining } => {
                assert_eq!(frame.header.kind, FrameKind::Request);
                frames.push((frame.header, frame.body.to_vec()));
                input = remaining;
            }
        }
    }
}

enum Serve {
    HangUp,
    Nothing,
    Send(Vec<u8>),
}

/// `SessionHello`: the pump's challenge (its nonce, ephemeral key and proof over the
/// transcript), or a refusal.
fn hello(
    st: &mut State,
    script: &Script,
    role: Role,
    epoch: u32,
    host_nonce: [u8; 16],
    host_ephemeral: [u8; 32],
) -> Response {
    let Some((current, key)) = st.key_in_force(role) else {
        return Response::Refused(Refusal::NotProvisioned);
    };
    if epoch != current {
        return Response::Refused(Refusal::StaleKey { epoch, current });
    }
    let secret = st.pool.draw();
    let Some(shared) = secret.agree(&host_ephemeral) else {
        return Response::Refused(Refusal::Malformed);
    };
    let device_ephemeral = secret.public();
    drop(secret);
    st.nonces += 1;
    let nonces = nonce_key(st.secret.as_ref().unwrap(), SERIAL);
    let d = device_nonce(&nonces, 1, st.nonces);
    let th = Transcript {
        binding: st.binding(script),
        role,
        epoch,
        serial: SERIAL,
        host_nonce: &host_nonce,
        host_ephemeral: &host_ephemeral,
        device_nonce: &d,
        device_ephemeral: &device_ephemeral,
    }
    .hash();
    let proving = if script.impostor {
        role_key(&Secret::new([0x11; 32]), role, epoch, SERIAL)
    } else {
        key
    };
    let keys = HandshakeKeys::derive(&shared, &proving, &th);
    let proof = keys.device_proof(&th);
    st.challenged = Some(Pending {
        role,
        host_nonce,
        th,
        keys,
    });
    Response::SessionChallenge {
        nonce: d,
        ephemeral: device_ephemeral,
        proof,
    }
}

fn serve(
    st: &mut State,
    script: &Script,
    seen: &Mutex<Seen>,
    header: Header,
    mut body: Vec<u8>,
) -> Serve {
    let id = header.id;
    let retry = header.flags.has(Flags::RETRY);
    let plain_reply = |r: &Response| Serve::Send(frame(Header::response(id), r));
    if !header.flags.has(Flags::SEALED) {
        let req: Request = decode_body(&body).unwrap();
        match req {
            Request::SessionHello {
                role,
                epoch,
                nonce,
                ephemeral,
            } => {
                {
                    let mut s = seen.lock().unwrap();
                    s.hellos += 1;
                    s.hello_epochs.push(epoch);
                }
                st.session = None;
                st.challenged = None;
                if let Some(after) = script.busy_after {
                    if seen.lock().unwrap().sessions >= after {
                        return plain_reply(&Response::Refused(Refusal::Busy));
                    }
                }
                plain_reply(&hello(st, script, role, epoch, nonce, ephemeral))
            }
            Request::SessionProof { nonce, proof } => {
                seen.lock().unwrap().proofs += 1;
                let Some(p) = st.challenged.take() else {
                    return plain_reply(&Response::Refused(Refusal::SessionRequired));
                };
                // The proof names the challenge it answers.
                assert_eq!(
                    nonce, p.host_nonce,
                    "SessionProof must carry its hello's nonce"
                );
                if script.refuse_proof || !p.keys.verify_host_proof(&p.th, &proof) {
                    return plain_reply(&Response::Refused(Refusal::AuthenticationFailed));
                }
                let keys = p.keys.into_session();
                let after = if seen.lock().unwrap().sessions == 0 {
                    script.first_counter_after
                } else {
                    0
                };
                st.session = Some((
                    p.role,
                    Opener::after(&keys.to_device, after),
                    Sealer::new(&keys.to_host),
                ));
                seen.lock().unwrap().sessions += 1;
                plain_reply(&Response::SessionEstablished)
            }
            Request::Identify if !seen.lock().unwrap().connected => {
                // The client connecting: answered whatever the script says.
                seen.lock().unwrap().connected = true;
                plain_reply(&Response::Identity(st.identity(script)))
            }
            Request::Identify | Request::Provision { .. } => {
                seen.lock().unwrap().frames.push((id, retry, req.name()));
                match execute(st, script, seen, id, retry, None, &req) {
                    Err(serve) => serve,
                    Ok(response) => Serve::Send(reply(script, id, &response, None)),
                }
            }
            other => {
                seen.lock().unwrap().frames.push((id, retry, other.name()));
                plain_reply(&Response::Refused(Refusal::SessionRequired))
            }
        }
    } else {
        let index = st.sealed_seen;
        st.sealed_seen += 1;
        if script.lose_session_before.contains(&index) {
            st.session = None;
            if script.reset {
                st.cache.clear();
            }
        }
        let Some((role, opener, _)) = st.session.as_mut() else {
            seen.lock().unwrap().frames.push((id, retry, NO_SESSION));
            return plain_reply(&Response::Refused(Refusal::SessionRequired));
        };
        let role = *role;
        let Ok(plain) = opener.open(&header.to_bytes(), &mut body) else {
            return Serve::Nothing;
        };
        // The whole counter the frame was placed at (its low 16 bits travel).
        let counter = opener.last();
        let Command { key, request: req } = decode_body(plain).unwrap();
        // Every state change carries an idempotency key; nothing else does.
        assert_eq!(key.is_some(), req.changes_state(), "{req:?} key {key:?}");
        {
            let mut s = seen.lock().unwrap();
            s.counters.push(counter);
            s.frames.push((id, retry, req.name()));
        }
        if req == Request::SessionClose {
            let (_, _, mut sealer) = st.session.take().unwrap();
            return Serve::Send(sealed_frame(&mut sealer, id, &Response::SessionClosed));
        }
        let response = if permitted(role, &req) {
            match execute(st, script, seen, id, retry, key, &req) {
                Err(serve) => return serve,
                Ok(response) => response,
            }
        } else {
            Response::Refused(Refusal::NotPermitted)
        };
        let (_, _, sealer) = st.session.as_mut().unwrap();
        Serve::Send(reply(script, id, &response, Some(sealer)))
    }
}

/// `Provision { ephemeral }`: key agreement with the static key; plain only while
/// unprovisioned, sealed (a service session, checked before) to re-provision: every
/// role key to one epoch above all so far.
fn provision(st: &mut State, ephemeral: &[u8; 32], sealed: bool) -> Response {
    if st.secret.is_some() && !sealed {
        return Response::Refused(Refusal::NotPermitted);
    }
    let own = Ephemeral::from_bytes(STATIC_KEY);
    let Some(dh) = own.agree(ephemeral) else {
        return Response::Refused(Refusal::Malformed);
    };
    let keys = ProvisionKeys::derive(
        &dh,
        &ProvisionTranscript {
            serial: SERIAL,
            pump_public: &own.public(),
            ephemeral,
        },
    );
    let e = st.epochs;
    let epoch = match st.secret {
        None => 1,
        Some(_) => e.patient.max(e.clinician).max(e.service) + 1,
    };
    st.secret = Some(keys.device_secret.duplicate());
    st.epochs = all_at(epoch);
    st.rotated.clear();
    Response::Provisioned {
        confirm: keys.confirm(),
        epoch,
    }
}

/// `RotateKey`: the next epoch's key of `role` (who may rotate what was checked before).
fn rotate(st: &mut State, role: Role, epoch: u32, key: &[u8; 32]) -> Response {
    if st.secret.is_none() {
        return Response::Refused(Refusal::NotProvisioned);
    }
    let current = st.epochs.of(role);
    if current + 1 != epoch {
        return Response::Refused(Refusal::StaleKey { epoch, current });
    }
    set_epoch(&mut st.epochs, role, epoch);
    st.rotated.insert(role, *key);
    Response::KeyRotated { role, epoch }
}

/// The misbehaviour and the pump's work for one request (not the handshake); `Err`
/// when nothing (or something else) is sent. `key` is the idempotency key of a sealed
/// request (`None` for a plain one).
fn execute(
    st: &mut State,
    script: &Script,
    seen: &Mutex<Seen>,
    id: u16,
    retry: bool,
    key: Option<OpKey>,
    req: &Request,
) -> Result<Response, Serve> {
    if script.hang_up {
        return Err(Serve::HangUp);
    }
    if script.silent || st.dropped < script.drop_first {
        st.dropped += 1;
        return Err(Serve::Nothing);
    }
    let response = match (st.cache.get(&id), req) {
        (Some((k, cached)), _) if retry => {
            // A retry is the same operation: the same key.
            assert_eq!(*k, key, "a retry must carry the original's idempotency key");
            cached.clone()
        }
        _ => {
            let r = match req {
                Request::Provision { ephemeral } => provision(st, ephemeral, key.is_some()),
                Request::RotateKey { role, epoch, key } => rotate(st, *role, *epoch, key),
                _ => answer(req, script, st.identity(script)),
            };
            // The reply cache holds sealed state changes (they carry a key).
            if req.changes_state() && key.is_some() {
                seen.lock().unwrap().executed += 1;
                st.cache.insert(id, (key, r.clone()));
            }
            r
        }
    };
    if st.lost < script.lose_answers {
        st.lost += 1;
        return Err(Serve::Nothing);
    }
    if !retry && script.lose_answer_to.contains(&id) {
        return Err(Serve::Nothing);
    }
    Ok(response)
}

/// The answer frame, after whatever the script sends first; sealed with `sealer`
/// inside a session.
fn reply(
    script: &Script,
    id: u16,
    response: &Response,
    mut sealer: Option<&mut Sealer>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if script.unauthentic_first && sealer.is_some() {
        out.extend(frame(Header::response(id), response));
        out.extend(sealed_frame(
            &mut Sealer::new(&Secret::new([3; 32])),
            id,
            response,
        ));
    }
    if script.noise_first {
        out.extend_from_slice(&[0x42, 0x13, 0x00]);
        let mut bad = frame(Header::response(id), response);
        bad[2] ^= 0x55;
        out.extend_from_slice(&bad);
    }
    if script.stale_first {
        let stale = Response::Pong { token: 99 };
        out.extend(match sealer.as_deref_mut() {
            Some(s) => sealed_frame(s, id.wrapping_sub(7), &stale),
            None => frame(Header::response(id.wrapping_sub(7)), &stale),
        });
    }
    out.extend(match sealer {
        Some(s) if !script.plain_answers => sealed_frame(s, id, response),
        _ => frame(Header::response(id), response),
    });
    out
}

pub const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(200),
    retries: 2,
};

/// A pump running `script` and a clinician client in session with it, whose first
/// request after connecting (`Identify`, 97) and the handshake (98, 99) has id 100.
pub async fn start(script: Script) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    start_as(script, Role::Clinician).await
}

pub async fn start_as(script: Script, role: Role) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    let (mut c, seen) = start_plain(script, 97);
    c.authenticate(key(role), SERIAL).await.unwrap();
    (c, seen)
}

/// A pump running `script` and a client without a session.
pub fn start_plain(script: Script, first_id: u16) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    let (ours, theirs) = tokio::io::duplex(4096);
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(pump(theirs, script, Arc::clone(&seen)));
    (Client::with_first_id(ours, CONFIG, first_id), seen)
}

pub fn bolus() -> BolusRequest {
    BolusRequest::Single {
        dose: Nanograms(50_000),
        duration: Minutes(10),
    }
}

pub fn draft() -> PrescriptionDraft {
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
