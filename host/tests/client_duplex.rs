//! The client's transport and session rules over an in-memory pipe, against a small
//! scripted pump written here with the protocol crate: it performs the pump's side of the
//! forward-secret handshake (ephemeral X25519, the transcript bound to what it announced
//! in `Identify`, the role key of the epoch in force), key rotation and provisioning by
//! key agreement, and seals its answers like the real one (PROTOCOL.md 2.9); it can drop,
//! delay, corrupt, forge or misdirect answers, lose the session deterministically, and
//! lie in `Identify`. Time is paused, so timeouts cost nothing and never flake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thecal_host::client::{Agreement, Client, ClientConfig, Unchecked};
use thecal_host::error::{ReadBack, UncertainCause};
use thecal_host::{Error, RoleKey};
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
const SERIAL: &str = "T1";
const DEVICE_SECRET: [u8; 32] = [0x5a; 32];
/// The scripted pump's static X25519 secret (its public key is on its label).
const STATIC_KEY: [u8; 32] = [0x77; 32];
/// The capabilities the scripted pump has (announces, and binds into every handshake).
const CAPABILITIES: u32 = Capabilities::SECURE_SESSION | Capabilities::KEY_LIFECYCLE;

/// What a sealed request that arrives without a session is recorded as.
const NO_SESSION: &str = "<sealed, no session>";

/// How the scripted pump misbehaves. Everything but the handshake options applies to
/// the requests after the handshake (and `Identify`, `Provision`), except the first
/// `Identify` of the link: that is the client connecting, always answered truthfully
/// (but for `schema` and `announce`) and not recorded in [`Seen::frames`].
#[derive(Clone, Default)]
struct Script {
    /// Ignore this many request frames before answering.
    drop_first: u32,
    /// Carry out this many requests but lose their answers.
    lose_answers: u32,
    /// Send an answer with another id before the real one.
    stale_first: bool,
    /// Send garbage and a corrupt frame before the real answer.
    noise_first: bool,
    /// Inside a session, send a plain copy of the answer and a forged sealed one before
    /// the real answer.
    unauthentic_first: bool,
    /// Inside a session, answer only with plain frames.
    plain_answers: bool,
    /// Never answer.
    silent: bool,
    /// Close the link on the first request.
    hang_up: bool,
    /// Answer with a different schema hash.
    schema: Option<u32>,
    /// Announce these capabilities in `Identify` while binding its real ones
    /// ([`CAPABILITIES`]) into the handshake: what a client sees when a man in the
    /// middle rewrote `Identify` (a downgrade).
    announce: Option<u32>,
    /// Refuse everything with this.
    refuse: Option<Refusal>,
    /// Answer everything with `Pong` (a wrong answer).
    wrong: bool,
    /// The pump forgets the session just before these sealed frames (counted from 0);
    /// `reset` also empties its reply cache, like a reboot.
    lose_session_before: Vec<u32>,
    reset: bool,
    /// No device secret yet (`Provision` accepted once).
    unprovisioned: bool,
    /// Every role key at this epoch (derived from the device secret) instead of 1.
    epoch: Option<u32>,
    /// The pump proves another key than the programmer's (not the pump it thinks).
    impostor: bool,
    /// Refuse every host proof.
    refuse_proof: bool,
    /// Refuse hellos with `Busy` once this many sessions were opened.
    busy_after: Option<u32>,
    /// An event log of this many entries (indices 0..log) served to `ReadLog`.
    log: u32,
    /// Lose the answer to the first attempt of these request ids (a retry is answered).
    lose_answer_to: Vec<u16>,
    /// Collect request frames until none arrived for this long, then answer them all:
    /// each batch is what the client had in flight (recorded in `Seen::batches`).
    hold: Option<Duration>,
}

/// What the pump saw.
#[derive(Default)]
struct Seen {
    /// (id, retry flag, request name) of every request frame but the handshake's and
    /// the connection's first `Identify`.
    frames: Vec<(u16, bool, &'static str)>,
    /// Counters of the sealed requests that opened, in order.
    counters: Vec<u32>,
    /// Times a state-changing request was executed (not answered from the cache).
    executed: u32,
    /// The connection's first `Identify` was served.
    connected: bool,
    /// Handshake messages received, and sessions opened.
    hellos: u32,
    proofs: u32,
    sessions: u32,
    /// The key epoch each `SessionHello` named.
    hello_epochs: Vec<u32>,
    /// Request frames answered together (see `Script::hold`).
    batches: Vec<usize>,
}

/// The scripted pump's static public key (on its label, and in `Identify`).
fn pump_public() -> [u8; PUBLIC_LEN] {
    Ephemeral::from_bytes(STATIC_KEY).public()
}

fn identity(schema: u32, capabilities: u32, key_epochs: KeyEpochs) -> Identity {
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
fn key(role: Role) -> RoleKey {
    key_at(role, 1)
}

/// The key of `role` derived from the scripted pump's device secret at `epoch`.
fn key_at(role: Role, epoch: u32) -> RoleKey {
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
fn log_entry(index: u32) -> LogEntry {
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

fn frame(header: Header, response: &Response) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = encode(header, response, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn sealed_frame(sealer: &mut Sealer, id: u16, response: &Response) -> Vec<u8> {
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

fn all_at(epoch: u32) -> KeyEpochs {
    KeyEpochs {
        patient: epoch,
        clinician: epoch,
        service: epoch,
    }
}

fn set_epoch(epochs: &mut KeyEpochs, role: Role, epoch: u32) {
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
async fn pump(mut io: DuplexStream, script: Script, seen: Arc<Mutex<Seen>>) {
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
fn decode_into(decoder: &mut FrameDecoder, mut input: &[u8], frames: &mut Vec<(Header, Vec<u8>)>) {
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
                st.session = Some((
                    p.role,
                    Opener::new(&keys.to_device),
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
        let counter = u32::from_le_bytes(body[..4].try_into().unwrap());
        let Ok(plain) = opener.open(&header.to_bytes(), &mut body) else {
            return Serve::Nothing;
        };
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

const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(200),
    retries: 2,
};

/// A pump running `script` and a clinician client in session with it, whose first
/// request after connecting (`Identify`, 97) and the handshake (98, 99) has id 100.
async fn start(script: Script) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    start_as(script, Role::Clinician).await
}

async fn start_as(script: Script, role: Role) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    let (mut c, seen) = start_plain(script, 97);
    c.authenticate(key(role), SERIAL).await.unwrap();
    (c, seen)
}

/// A pump running `script` and a client without a session.
fn start_plain(script: Script, first_id: u16) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    let (ours, theirs) = tokio::io::duplex(4096);
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(pump(theirs, script, Arc::clone(&seen)));
    (Client::with_first_id(ours, CONFIG, first_id), seen)
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

// ---- sessions (issue 6) ----

#[tokio::test(start_paused = true)]
async fn a_lost_session_is_renewed_and_the_request_sent_again_with_its_id() {
    // The pump forgets the session (idle timeout, or another programmer's hello) just
    // before the second sealed request: it answers a plain SessionRequired without
    // opening it; the client opens a new session and sends the request again, same
    // id, RETRY flag, counter 1 of the new session.
    let (mut c, seen) = start(Script {
        lose_session_before: vec![1],
        ..Script::default()
    })
    .await;
    c.ping().await.unwrap();
    c.stop().await.unwrap();
    c.ping().await.unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(
        s.frames,
        vec![
            (100, false, "Ping"),
            (101, false, NO_SESSION),
            // 102 and 103: the new handshake.
            (101, true, "StopTherapy"),
            (104, false, "Ping"),
        ]
    );
    assert_eq!(s.counters, vec![1, 1, 2]);
    assert_eq!(s.sessions, 2);
    assert_eq!(s.executed, 1);
    assert_eq!(c.counters().sessions, 2);
}

#[tokio::test(start_paused = true)]
async fn a_session_lost_after_an_unanswered_change_is_uncertain_and_not_repeated() {
    // The bolus is carried out but its answer is lost; the pump then resets (session
    // and reply cache gone). Sending it again could deliver it twice: the client renews
    // the session, does not send it again, and says what to read back.
    let (mut c, seen) = start(Script {
        lose_answers: 1,
        lose_session_before: vec![1],
        reset: true,
        ..Script::default()
    })
    .await;
    let e = c.bolus(bolus()).await.unwrap_err();
    match &e {
        Error::Uncertain {
            read_back, cause, ..
        } => {
            assert_eq!(*cause, UncertainCause::SessionEndedAfterUnanswered);
            assert_eq!(*read_back, ReadBack::Bolus);
            assert!(e.to_string().contains("may have been reset"), "{e}");
            assert!(e.to_string().contains("before giving another bolus"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.executed, 1, "never delivered twice");
        assert_eq!(
            s.frames,
            vec![(100, false, "ClinicianBolus"), (100, true, NO_SESSION)]
        );
        assert_eq!(s.sessions, 2);
    }
    // The renewed session serves the read-back.
    c.ping().await.unwrap();
    assert_eq!(seen.lock().unwrap().counters, vec![1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_pump_that_keeps_losing_the_session_gives_session_expired() {
    let (mut c, seen) = start(Script {
        lose_session_before: vec![0, 1],
        ..Script::default()
    })
    .await;
    let e = c.ping().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::SessionExpired {
                request: "Ping",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("session expired"), "{e}");
    assert_eq!(seen.lock().unwrap().sessions, 2, "renewed once, not more");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_the_pump_keeps_refusing_as_busy_is_session_expired() {
    let (mut c, seen) = start(Script {
        lose_session_before: vec![0],
        busy_after: Some(1),
        ..Script::default()
    })
    .await;
    let e = c.status().await.unwrap_err();
    assert!(matches!(e, Error::SessionExpired { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("busy"), "{text}");
    // The first hello, then the renewal's, waited out BUSY_RETRIES times.
    assert_eq!(
        seen.lock().unwrap().hellos,
        2 + thecal_host::client::BUSY_RETRIES
    );
}

#[tokio::test(start_paused = true)]
async fn a_pump_that_does_not_prove_the_key_gets_nothing_more() {
    let (mut c, seen) = start_plain(
        Script {
            impostor: true,
            ..Script::default()
        },
        100,
    );
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::PumpNotAuthenticated {
                role: Role::Clinician
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "the pump did not prove it holds the clinician key — wrong key file, or not the pump \
         you think"
    );
    let s = seen.lock().unwrap();
    assert_eq!((s.hellos, s.proofs, s.sessions), (1, 0, 0));
    assert!(!c.has_session());
}

#[tokio::test(start_paused = true)]
async fn handshake_refusals_are_told_apart() {
    let (mut c, _) = start_plain(
        Script {
            refuse_proof: true,
            ..Script::default()
        },
        100,
    );
    let e = c
        .authenticate(key(Role::Patient), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::AuthenticationFailed {
                role: Role::Patient
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("authentication failed"), "{e}");
    let (mut c, _) = start_plain(
        Script {
            busy_after: Some(0),
            ..Script::default()
        },
        100,
    );
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Busy), "{e:?}");
    assert!(e.to_string().contains("try again"), "{e}");
    let (mut c, _) = start_plain(
        Script {
            unprovisioned: true,
            ..Script::default()
        },
        100,
    );
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotProvisioned), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_the_role_may_not_make_names_the_role_needed() {
    let (mut c, _) = start_as(Script::default(), Role::Patient).await;
    c.ping().await.unwrap();
    let e = c.stop().await.unwrap_err();
    match &e {
        Error::NotPermitted {
            request,
            role,
            allowed,
        } => {
            assert_eq!(*request, "StopTherapy");
            assert_eq!(*role, Role::Patient);
            // A stop is the clinician's, or anyone's at the patient's side with the
            // magnet (emergency).
            assert_eq!(allowed, &vec![Role::Clinician, Role::Emergency]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.refusal(), Some(&Refusal::NotPermitted));
    let text = e.to_string();
    assert!(
        text.contains("the patient role may not make StopTherapy")
            && text.contains("needs the clinician or emergency role"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sending_counter_at_its_maximum_renews_the_session() {
    let (mut c, seen) = start(Script::default()).await;
    c.restart_send_counter(u32::MAX - 1);
    c.ping().await.unwrap();
    // u32::MAX is never used: a new session first.
    c.ping().await.unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(s.counters, vec![u32::MAX - 1, 1]);
    assert_eq!(s.sessions, 2);
    assert_eq!(
        s.frames,
        vec![(100, false, "Ping"), (101, false, "Ping")],
        "a fresh request, not a retry"
    );
}

#[tokio::test(start_paused = true)]
async fn close_ends_the_session_sealed() {
    let (mut c, seen) = start(Script::default()).await;
    c.ping().await.unwrap();
    c.close().await.unwrap();
    assert!(!c.has_session());
    assert_eq!(c.role(), None);
    let s = seen.lock().unwrap();
    assert_eq!(
        s.frames,
        vec![(100, false, "Ping"), (101, false, "SessionClose")]
    );
    assert_eq!(s.counters, vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn provisioning_is_proved_by_a_service_handshake() {
    let (mut c, seen) = start_plain(
        Script {
            unprovisioned: true,
            ..Script::default()
        },
        99,
    );
    let id = c.identify().await.unwrap();
    assert_eq!(id.key_epochs, all_at(0), "unprovisioned");
    assert_eq!(id.public_key, pump_public());
    let agreement = Agreement::new(SERIAL, &id.public_key).unwrap();
    c.provision(&agreement).await.unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.sessions, 1, "the service handshake");
        assert_eq!(s.hello_epochs, [1]);
        assert_eq!(
            s.frames,
            vec![(100, false, "Provision"), (103, false, "SessionClose")]
        );
    }
    assert!(!c.has_session());
    assert_eq!(c.identify().await.unwrap().key_epochs, all_at(1));
    // Once only.
    let again = Agreement::new(SERIAL, &pump_public()).unwrap();
    let e = c.provision(&again).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyProvisioned), "{e:?}");
    // The clinician key derived from the agreed secret now opens a session; one derived
    // from another secret does not.
    c.authenticate(agreement.role_key(Role::Clinician, 1), SERIAL)
        .await
        .unwrap();
    c.ping().await.unwrap();
    let e = c
        .authenticate(again.role_key(Role::Clinician, 1), SERIAL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PumpNotAuthenticated { .. }), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn provisioning_with_another_pumps_public_key_is_not_confirmed() {
    // The programmer agreed a secret with a key that is not this pump's (a wrong label,
    // or a pump swapped in on the link): the pump derives another secret and its
    // confirmation does not verify.
    let (mut c, _) = start_plain(
        Script {
            unprovisioned: true,
            ..Script::default()
        },
        99,
    );
    c.identify().await.unwrap();
    let other = Ephemeral::from_bytes([0x78; 32]).public();
    let agreement = Agreement::new(SERIAL, &other).unwrap();
    let e = c.provision(&agreement).await.unwrap_err();
    assert!(matches!(e, Error::ProvisionNotConfirmed), "{e:?}");
    assert!(e.to_string().contains("did not confirm"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn provisioning_whose_answer_was_lost_is_decided_by_the_handshake() {
    // The secret is stored but the answer lost; the retry is refused (already
    // provisioned). Whether by this programmer: the service handshake says.
    let (mut c, seen) = start_plain(
        Script {
            unprovisioned: true,
            lose_answers: 1,
            ..Script::default()
        },
        99,
    );
    c.identify().await.unwrap();
    let agreement = Agreement::new(SERIAL, &pump_public()).unwrap();
    c.provision(&agreement).await.unwrap();
    assert_eq!(seen.lock().unwrap().sessions, 1);
    // The same when another secret was already in the pump: the handshake with the
    // key from ours fails, so it was not ours.
    let (mut c, seen) = start_plain(
        Script {
            lose_answers: 1,
            ..Script::default()
        },
        99,
    );
    c.identify().await.unwrap();
    let agreement = Agreement::new(SERIAL, &pump_public()).unwrap();
    let e = c.provision(&agreement).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyProvisioned), "{e:?}");
    let s = seen.lock().unwrap();
    assert_eq!((s.hellos, s.proofs), (1, 0));
}

// ---- downgrades ----

#[tokio::test(start_paused = true)]
async fn a_pump_that_binds_other_capabilities_than_it_announced_gets_nothing() {
    // Identify announces fewer capabilities than the pump binds into its transcript
    // (what a client sees when a man in the middle stripped them): the pump's proof does
    // not verify for the Identify this client saw, so no proof and no request is sent.
    let (mut c, seen) = start_plain(
        Script {
            announce: Some(Capabilities::SECURE_SESSION),
            ..Script::default()
        },
        100,
    );
    let id = c.identify().await.unwrap();
    assert_eq!(id.capabilities, Capabilities(Capabilities::SECURE_SESSION));
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::PumpNotAuthenticated {
                role: Role::Clinician
            }
        ),
        "{e:?}"
    );
    // A request after it is not sent either: the client tries the handshake again, and
    // it fails the same way.
    let e = c.stop().await.unwrap_err();
    assert!(matches!(e, Error::PumpNotAuthenticated { .. }), "{e:?}");
    {
        let s = seen.lock().unwrap();
        assert_eq!((s.hellos, s.proofs, s.sessions), (2, 0, 0));
        assert!(
            s.frames.is_empty(),
            "no request reached the pump: {:?}",
            s.frames
        );
        assert_eq!(s.executed, 0);
    }
    // The same pump, announcing what it binds, opens a session with the same key: the
    // refusal above is the downgrade, nothing else.
    let (mut c, _) = start(Script::default()).await;
    c.stop().await.unwrap();
}

/// A man in the middle between a client and an honest scripted pump: every byte from
/// the client goes on as it is; every answer from the pump is decoded and encoded again,
/// `Identity` answers rewritten by `rewrite` first.
fn start_behind(
    script: Script,
    rewrite: fn(&mut Identity),
) -> (Client<DuplexStream>, Arc<Mutex<Seen>>) {
    let (ours, middle_client) = tokio::io::duplex(4096);
    let (middle_pump, theirs) = tokio::io::duplex(4096);
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(pump(theirs, script, Arc::clone(&seen)));
    let (mut from_client, mut to_client) = tokio::io::split(middle_client);
    let (mut from_pump, mut to_pump) = tokio::io::split(middle_pump);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_pump).await;
    });
    tokio::spawn(async move {
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let mut buf = [0u8; 256];
        loop {
            let n = match from_pump.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut out = Vec::new();
            let mut input = &buf[..n];
            loop {
                match decoder.feed(input) {
                    Feed::Consumed => break,
                    Feed::Error { remaining, .. } => input = remaining,
                    Feed::Frame {
                        frame: f,
                        remaining,
                    } => {
                        let header = f.header;
                        let plain = !header.flags.has(Flags::SEALED);
                        match decode_body::<Response>(f.body) {
                            Ok(Response::Identity(mut id)) if plain => {
                                rewrite(&mut id);
                                out.extend(frame(header, &Response::Identity(id)));
                            }
                            _ => {
                                let mut wire = vec![0u8; 2048];
                                let w = encode_raw(header, f.body, &mut wire).unwrap();
                                out.extend_from_slice(&wire[..w]);
                            }
                        }
                        input = remaining;
                    }
                }
            }
            if to_client.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    (Client::with_first_id(ours, CONFIG, 100), seen)
}

#[tokio::test(start_paused = true)]
async fn a_man_in_the_middle_who_rewrites_identify_is_refused_before_any_request() {
    // Passing everything through unchanged, the man in the middle is invisible: a session
    // opens and requests are served (so what follows fails for the rewrite alone).
    let (c, _) = start_behind(Script::default(), |_| {});
    let (mut c, _) = Client::connect(c.into_inner(), CONFIG, key(Role::Clinician))
        .await
        .unwrap();
    c.stop().await.unwrap();
    // Stripping the key-lifecycle capability from Identify (a downgrade to what an older
    // pump would offer): version and schema still match, so the client goes on to the
    // handshake, and the pump's proof, bound to what it really announced, fails.
    let (c, seen) = start_behind(Script::default(), |id| {
        id.capabilities = Capabilities(id.capabilities.0 & !Capabilities::KEY_LIFECYCLE);
    });
    let e = Client::connect(c.into_inner(), CONFIG, key(Role::Clinician))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::PumpNotAuthenticated {
                role: Role::Clinician
            }
        ),
        "{e:?}"
    );
    let s = seen.lock().unwrap();
    assert!(s.connected);
    assert_eq!((s.hellos, s.proofs, s.sessions), (1, 0, 0));
    assert!(s.frames.is_empty(), "no request: {:?}", s.frames);
}

// ---- key lifecycle ----

/// A fresh random-looking key of `role` at `epoch`.
fn new_key(role: Role, epoch: u32, byte: u8) -> RoleKey {
    RoleKey {
        role,
        epoch,
        key: Secret::new([byte; 32]),
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotated_key_is_the_one_every_later_handshake_proves() {
    // The clinician rotates its own key; the pump then loses the session (sealed frame
    // 1): the renewal proves the new key, at the new epoch.
    let (mut c, seen) = start(Script {
        lose_session_before: vec![1],
        ..Script::default()
    })
    .await;
    c.rotate_key(&new_key(Role::Clinician, 2, 0xc2))
        .await
        .unwrap();
    c.ping().await.unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.hello_epochs, [1, 2]);
        assert_eq!(s.sessions, 2);
        assert_eq!(s.executed, 1);
    }
    let epochs = c.identify().await.unwrap().key_epochs;
    assert_eq!(
        (epochs.clinician, epochs.patient, epochs.service),
        (2, 1, 1)
    );
    // The old key is refused at the hello, naming both epochs; no proof is sent for it.
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleKey {
                role: Role::Clinician,
                epoch: 1,
                current: 2
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("epoch 1") && text.contains("epoch 2") && text.contains("rotated"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().proofs, 2);
    // A key of the right epoch that is not the rotated one: the pump does not prove it.
    let e = c
        .authenticate(new_key(Role::Clinician, 2, 0xc3), SERIAL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PumpNotAuthenticated { .. }), "{e:?}");
    c.authenticate(new_key(Role::Clinician, 2, 0xc2), SERIAL)
        .await
        .unwrap();
    c.ping().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_clinician_rotates_the_patient_key_and_the_patient_cannot() {
    let (mut c, _) = start(Script::default()).await;
    c.rotate_key(&new_key(Role::Patient, 2, 0xa2))
        .await
        .unwrap();
    // The clinician's own session and key are untouched.
    assert_eq!(c.role(), Some(Role::Clinician));
    c.ping().await.unwrap();
    // A rotation must name the next epoch.
    let e = c
        .rotate_key(&new_key(Role::Patient, 4, 0xa4))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleKey {
                role: Role::Patient,
                current: 2,
                ..
            }
        ),
        "{e:?}"
    );
    // The patient's new key opens a patient session, the old one is stale; a patient may
    // not rotate any key, its own included.
    let e = c
        .authenticate(key(Role::Patient), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleKey {
                epoch: 1,
                current: 2,
                ..
            }
        ),
        "{e:?}"
    );
    c.authenticate(new_key(Role::Patient, 2, 0xa2), SERIAL)
        .await
        .unwrap();
    for whose in [Role::Patient, Role::Clinician] {
        let e = c.rotate_key(&new_key(whose, 3, 0xa3)).await.unwrap_err();
        assert_eq!(e.refusal(), Some(&Refusal::NotPermitted), "{e:?}");
    }
    let epochs = c.identify().await.unwrap().key_epochs;
    assert_eq!((epochs.patient, epochs.clinician), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_rotation_whose_answer_was_lost_is_carried_out_once() {
    let (mut c, seen) = start(Script {
        lose_answers: 1,
        ..Script::default()
    })
    .await;
    c.rotate_key(&new_key(Role::Patient, 2, 0xa2))
        .await
        .unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.executed, 1, "the retry is answered from the reply cache");
        assert_eq!(
            s.frames,
            vec![(100, false, "RotateKey"), (100, true, "RotateKey")]
        );
    }
    // Unanswered for good: uncertain, never a silent success.
    let (mut c, _) = start(Script {
        silent: true,
        ..Script::default()
    })
    .await;
    let e = c
        .rotate_key(&new_key(Role::Patient, 2, 0xa2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Uncertain {
                request: "RotateKey",
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_of_another_epoch_is_refused_at_the_hello() {
    let (mut c, seen) = start_plain(
        Script {
            epoch: Some(3),
            ..Script::default()
        },
        100,
    );
    let id = c.identify().await.unwrap();
    assert_eq!(id.key_epochs, all_at(3));
    let e = c
        .authenticate(key(Role::Clinician), SERIAL)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleKey {
                role: Role::Clinician,
                epoch: 1,
                current: 3
            }
        ),
        "{e:?}"
    );
    assert_eq!(seen.lock().unwrap().proofs, 0);
    c.authenticate(key_at(Role::Clinician, 3), SERIAL)
        .await
        .unwrap();
    c.ping().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reprovisioning_moves_every_key_to_a_new_epoch_of_a_new_secret() {
    // Only a service session may.
    let (mut c, _) = start(Script::default()).await;
    let agreement = Agreement::new(SERIAL, &pump_public()).unwrap();
    let e = c.reprovision(&agreement).await.unwrap_err();
    assert_eq!(e.refusal(), Some(&Refusal::NotPermitted), "{e:?}");
    let (mut c, seen) = start_plain(
        Script {
            epoch: Some(2),
            ..Script::default()
        },
        100,
    );
    c.authenticate(key_at(Role::Service, 2), SERIAL)
        .await
        .unwrap();
    let agreement = Agreement::new(SERIAL, &pump_public()).unwrap();
    assert_eq!(c.reprovision(&agreement).await.unwrap(), 3);
    assert_eq!(seen.lock().unwrap().executed, 1);
    let id = c.identify().await.unwrap();
    assert_eq!(id.key_epochs, all_at(3));
    for role in [Role::Patient, Role::Clinician, Role::Service] {
        // The old secret's keys: stale, and refused even at the new epoch.
        let e = c.authenticate(key_at(role, 2), SERIAL).await.unwrap_err();
        assert!(matches!(e, Error::StaleKey { current: 3, .. }), "{e:?}");
        let e = c.authenticate(key_at(role, 3), SERIAL).await.unwrap_err();
        assert!(matches!(e, Error::PumpNotAuthenticated { .. }), "{e:?}");
        c.authenticate(agreement.role_key(role, 3), SERIAL)
            .await
            .unwrap();
        c.ping().await.unwrap();
    }
}

// ---- pipelined bulk reads (issue 8) ----

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
