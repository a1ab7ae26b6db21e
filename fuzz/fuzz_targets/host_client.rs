//! `host_client`: arbitrary device replies into the host client's response handling.
//!
//! `thecal_host::Client` runs over a `tokio::io::duplex` pipe on a paused-clock runtime
//! (timeouts cost nothing); the other end is a scripted pump that answers whatever the
//! fuzz input says. Input: byte 0 `b` gives the number of calls (1 + b % 4), the next
//! bytes pick them (`which % 21`: the 18 reads and changes of protocol 2, then
//! `rotate_key`, `reprovision`, `provision`); `b & 0x80` is **session mode**: the client
//! first opens a session with the epoch-1 key of role `(b >> 5) & 3` ([`Role::ALL`]; the
//! emergency role's is public, epoch 0) and seals everything but `Identify`, the
//! handshake and (without a session) `Provision`. The pump is provisioned (device secret
//! [`SECRET`], every key at epoch 1) in session mode, unprovisioned otherwise (a
//! `provision` call can then succeed). The rest is the pump's script, one operation per
//! byte (low 3 bits):
//!
//! | op | bytes after it | the pump … |
//! |---|---|---|
//! | 0 | — | waits for the client's next request frame |
//! | 1 | `u8` n, n bytes | writes raw bytes |
//! | 2 | `u8` d, `u8` f, `u16` n, n bytes | writes a frame with a valid CRC: id = last request id + d (as i8), kind from f's low 2 bits, flags f >> 2 |
//! | 3 | `u8` t | sleeps t × 50 ms |
//! | 4 | — | hangs up |
//! | 5 | `u16` n, n bytes | answers the last request with this body (valid frame, same id) |
//! | 6 | per request, below | answers the last request genuinely, as a protocol-3 pump would (with the protocol crate's key agreement, proofs and confirmation; sealed when it came sealed); nothing for other requests |
//! | 7 | `u16` n, n bytes | with a session: answers the last request with this body **sealed** under the session's key; otherwise as 5 |
//!
//! Op 6 by request: `Identify` — `u8` i: the pump's identity (its static public key, its
//! key epochs) with its real binding, or (`i & 1`) a binding downgraded by `i >> 1`
//! (`thecal_fuzz::binding`), as if rewritten in transit — the pump's transcripts keep the
//! real one; `SessionHello` — `u8` c, 16 bytes of device nonce, 32 bytes of ephemeral
//! secret: `StaleKey` for an epoch not in force, `NotProvisioned` without keys, else a
//! challenge with that nonce, the public key of that secret (or, `c & 1`, the small-order
//! point `c >> 1` with the proof of an all-zero shared secret) and the pump's proof;
//! `SessionProof` — `SessionEstablished`; `Provision` — `Provisioned` with the key
//! confirmation (plain: only while unprovisioned, epoch 1; sealed: only a service session,
//! every key to the next epoch), refusals as the pump's; `RotateKey` — `KeyRotated` for the
//! next epoch of a role the session may rotate, else the pump's refusal.
//!
//! The pump reads every frame the client sends (at op 0, and after the script until the
//! client hangs up) and checks it: a request that decodes (a sealed one opens under the
//! key of a session whose proof the pump verified, and its plaintext is a `Command`); a
//! `RotateKey` (a new role key) never in the clear; a `SessionHello` never with an
//! ephemeral key of small order; a `SessionProof` names the nonce of a `SessionHello` the
//! pump challenged genuinely (never one answered with a small-order key, nor one whose
//! challenge the client could only have checked under a downgraded binding) and verifies;
//! a change (`changes_state`: therapy, key rotation, provisioning) carries an idempotency
//! key, the same in every attempt with the same id.
//!
//! Checked: no panic; every call ends within its attempts × timeout (no hang, handshakes
//! included); a call that succeeds was answered by a response frame carrying its own
//! request id (never another request's answer), sealed and opening under the session
//! key when the request was sealed; once the client accepted a `KeyRotated` for its own
//! role, it never again names an older epoch of that role in a `SessionHello`; errors
//! display.
//!
//! `HOST_CLIENT_TRACE=1` in the environment prints what the pump reads and answers
//! genuinely, and every call's outcome, to stderr.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use thecal_protocol::message::permitted;
use thecal_fuzz::binding::downgraded;
use thecal_fuzz::reader::Reader;
use thecal_fuzz::x25519::{is_low_order, low_order_point};
use thecal_host::client::{Agreement, Trace};
use thecal_host::eventlog::{read_log, LogRange};
use thecal_host::{Client, ClientConfig, Error, RoleKey};
use thecal_protocol::frame::{
    decode_body, encode_raw, Feed, Flags, FrameDecoder, FrameKind, Header, MAX_BODY, MAX_WIRE,
};
use thecal_protocol::message::{
    AlarmKind, BolusRequest, Capabilities, Command, Identity, KeyEpochs, OpKey, Refusal, Revision,
    Role, Version,
};
use thecal_protocol::session::{
    emergency_key, role_key, Binding, Ephemeral, HandshakeKeys, Opener, ProvisionKeys,
    ProvisionTranscript, Sealer, Secret, Transcript, FIRST_EPOCH,
};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};
use thecal_protocol::{Request, Response, PROTOCOL_VERSION, SCHEMA_HASH};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const FIRST_ID: u16 = 0x0301;
/// The scripted pump's device secret in session mode, and its serial.
const SECRET: [u8; 32] = [0x3C; 32];
const SERIAL: &str = "SN0042";
/// The scripted pump's static X25519 secret.
const STATIC: [u8; 32] = [0x51; 32];
/// What the scripted pump announces and binds (a protocol-3 pump's).
const BINDING: Binding = Binding {
    version: PROTOCOL_VERSION,
    schema: SCHEMA_HASH,
    capabilities: Capabilities::FLEXIBLE
        | Capabilities::WEEKLY
        | Capabilities::PATIENT_BOLUS
        | Capabilities::EVENT_LOG
        | Capabilities::SECURE_SESSION
        | Capabilities::EMERGENCY_ACCESS
        | Capabilities::KEY_LIFECYCLE,
};
/// Calls the target knows.
const CALLS: u8 = 21;

/// Whether `HOST_CLIENT_TRACE` is set (module docs).
fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HOST_CLIENT_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}
const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(500),
    retries: 2,
};

/// The scripted pump's static public key.
fn pump_public() -> [u8; 32] {
    thread_local! {
        static PUBLIC: [u8; 32] = Ephemeral::from_bytes(STATIC).public();
    }
    PUBLIC.with(|p| *p)
}

/// The client's calls; returns the request id it used, if it got an answer.
async fn call(client: &mut Client<DuplexStream>, which: u8) -> Result<(), Error> {
    let p = which / CALLS;
    match which % CALLS {
        0 => client.identify().await.map(drop),
        1 => client.ping().await.map(drop),
        2 => client.status().await.map(drop),
        3 => client.battery().await.map(drop),
        4 => client.reservoir().await.map(drop),
        5 => client.prescription().await.map(drop),
        6 => {
            let draft = thecal_device::pump::demo::demo_prescription()
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
        17 => read_log(client, LogRange::default(), |_, _| {})
            .await
            .map(drop),
        // The key of role `p % 4` to epoch 2 + p / 4.
        18 => {
            let new = RoleKey {
                role: Role::ALL[usize::from(p % 4)],
                epoch: FIRST_EPOCH + 1 + u32::from(p / 4),
                key: Secret::new([which; 32]),
            };
            client.rotate_key(&new).await
        }
        19 => client
            .reprovision(&Agreement::new(SERIAL, &pump_public())?)
            .await
            .map(drop),
        _ => {
            client
                .provision(&Agreement::new(SERIAL, &pump_public())?)
                .await
        }
    }
}

/// How many request ids a call may use (the log reader pages; provisioning also opens and
/// closes a session).
fn ids_used(which: u8) -> u32 {
    if matches!(which % CALLS, 18 | 19) {
        // Plain mode: the client refuses a key rotation or a re-provisioning without a
        // session, and sends nothing.
        0
    } else if matches!(which % CALLS, 17 | 20) {
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
    /// In order: the client's hellos, the pump's confirmed rotations and provisionings,
    /// and the answers the client accepted.
    log: Vec<Logged>,
}

/// One entry of [`Seen::log`].
#[derive(Debug, Clone, Copy)]
enum Logged {
    /// The client sent a `SessionHello`.
    Hello { role: Role, epoch: u32 },
    /// The pump sent `KeyRotated` (matching the request) as the answer to `id`.
    Rotated { id: u16, role: Role, epoch: u32 },
    /// The pump sent `Provisioned` (a new key lineage).
    Provisioned,
    /// The client accepted the answer to `id`.
    Answered(u16),
}

/// A session whose proof the scripted pump verified.
struct PumpSession {
    role: Role,
    opener: Opener,
    sealer: Sealer,
}

/// The scripted pump's keys: epochs and keys in force ([`Role::ALL`] order, the first
/// three).
struct PumpKeys {
    epochs: [u32; 3],
    keys: [Secret; 3],
}

impl PumpKeys {
    fn derived(secret: &Secret, epoch: u32) -> Self {
        PumpKeys {
            epochs: [epoch; 3],
            keys: [Role::Patient, Role::Clinician, Role::Service]
                .map(|r| role_key(secret, r, epoch, SERIAL)),
        }
    }
}

/// A challenge the pump sent: its role, the keys it derived, and the transcript hash.
struct PumpChallenge {
    role: Role,
    keys: HandshakeKeys,
    th: [u8; 32],
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
    /// The last request read, and the session it came sealed in (`None`: plain).
    last: Option<(Request, Option<usize>)>,
    /// Genuine challenges sent, by host nonce.
    challenges: HashMap<[u8; 16], Vec<PumpChallenge>>,
    /// Challenges sent with an ephemeral key of small order, by host nonce.
    low_order: HashMap<[u8; 16], Vec<PumpChallenge>>,
    /// Sessions opened by verified proofs, newest last.
    sessions: Vec<PumpSession>,
    /// Keys in force (`None`: unprovisioned).
    role_keys: Option<PumpKeys>,
    /// The static key pair.
    identity: Ephemeral,
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
            assert!(
                !matches!(request, Request::RotateKey { .. }),
                "the client sent a RotateKey (a new role key) in the clear"
            );
            if self.session_mode {
                assert!(
                    matches!(
                        request,
                        Request::Identify
                            | Request::SessionHello { .. }
                            | Request::SessionProof { .. }
                            | Request::Provision { .. }
                    ),
                    "the client sent {} in the clear in a session",
                    request.name()
                );
            }
            match &request {
                Request::SessionProof { nonce, proof } => self.verify_proof(nonce, proof),
                Request::SessionHello {
                    role,
                    epoch,
                    ephemeral,
                    ..
                } => {
                    assert!(
                        !is_low_order(ephemeral),
                        "the client's ephemeral key is of small order"
                    );
                    self.seen.lock().unwrap().log.push(Logged::Hello {
                        role: *role,
                        epoch: *epoch,
                    });
                }
                _ => {}
            }
            trace!("pump read  {id:#06x} plain  {request:?}");
            self.last = Some((request, None));
            return;
        }
        let hb = header.to_bytes();
        let (index, plain) = self
            .sessions
            .iter_mut()
            .enumerate()
            .rev()
            .find_map(|(i, s)| {
                let mut b = body.to_vec();
                s.opener.open(&hb, &mut b).ok().map(|p| (i, p.to_vec()))
            })
            .expect("a sealed request under no key of a session whose proof the pump verified");
        let command: Command =
            decode_body(&plain).expect("the client's sealed plaintext is a Command");
        assert_eq!(
            command.key.is_some(),
            command.request.changes_state(),
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
        trace!("pump read  {id:#06x} sealed {command:?}");
        self.last = Some((command.request, Some(index)));
    }

    /// A `SessionProof` names the nonce of a `SessionHello` this pump challenged
    /// genuinely, and verifies for one of those challenges; its session's keys are kept.
    fn verify_proof(&mut self, nonce: &[u8; 16], proof: &[u8; 32]) {
        if let Some(low) = self.low_order.get(nonce) {
            assert!(
                !low.iter().any(|c| c.keys.verify_host_proof(&c.th, proof)),
                "the client proved a challenge whose ephemeral key is of small order"
            );
        }
        let challenges = self
            .challenges
            .get(nonce)
            .expect("a SessionProof naming a nonce the pump never challenged genuinely");
        let (role, keys) = challenges
            .iter()
            .find(|c| c.keys.verify_host_proof(&c.th, proof))
            .map(|c| (c.role, &c.keys))
            .expect("the client's SessionProof does not verify");
        self.sessions.push(PumpSession {
            role,
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

    /// Answers the last request with `response`: sealed under its session when it came
    /// sealed, plain otherwise.
    async fn respond(&mut self, response: &Response) -> bool {
        let body = postcard::to_allocvec(response).expect("encodes");
        match self.last.as_ref().and_then(|(_, s)| *s) {
            Some(session) => self.sealed_answer(&body, Some(session)).await,
            None => self.frame(Header::response(self.last_id), &body).await,
        }
    }

    /// The role key in force of `role` and its epoch (`None`: unprovisioned).
    fn role_key(&self, role: Role) -> Option<(u32, Secret)> {
        match role {
            Role::Emergency => Some((0, emergency_key(SERIAL))),
            _ => {
                let keys = self.role_keys.as_ref()?;
                let i = role.index();
                Some((keys.epochs[i], keys.keys[i].duplicate()))
            }
        }
    }

    fn identity(&self, binding: Binding) -> Identity {
        let epochs = self.role_keys.as_ref().map_or([0; 3], |k| k.epochs);
        Identity {
            model: "thecal-fuzz".try_into().expect("fits"),
            serial: SERIAL.try_into().expect("fits"),
            firmware: Version {
                major: 3,
                minor: 0,
                patch: 0,
            },
            protocol: binding.version,
            schema: binding.schema,
            capabilities: Capabilities(binding.capabilities),
            reservoir_capacity: Nanolitres::from_ml(20),
            public_key: self.identity.public(),
            key_epochs: KeyEpochs {
                patient: epochs[0],
                clinician: epochs[1],
                service: epochs[2],
            },
        }
    }

    /// Op 6: the genuine answer to the last request, as a protocol-3 pump would give it.
    async fn genuine(&mut self, r: &mut Reader<'_>) -> bool {
        let Some((request, session)) = self.last.clone() else {
            return true;
        };
        let session_role = session.and_then(|i| self.sessions.get(i)).map(|s| s.role);
        let response = match request {
            Request::Identify => {
                let i = r.u8().unwrap_or(0);
                let binding = if i & 1 != 0 {
                    downgraded(BINDING, i >> 1)
                } else {
                    BINDING
                };
                Response::Identity(self.identity(binding))
            }
            Request::SessionHello {
                role,
                epoch,
                nonce,
                ephemeral,
            } if session.is_none() => {
                let c = r.u8().unwrap_or(0);
                let mut dn = [0u8; 16];
                dn.copy_from_slice(&[r.take(16), &[0u8; 16]].concat()[..16]);
                let mut secret = [0u8; 32];
                secret.copy_from_slice(&[r.take(32), &[0u8; 32]].concat()[..32]);
                match self.role_key(role) {
                    None => Response::Refused(Refusal::NotProvisioned),
                    Some((current, _)) if current != epoch => {
                        Response::Refused(Refusal::StaleKey { epoch, current })
                    }
                    Some((_, key)) => {
                        let (de, shared) = if c & 1 != 0 {
                            // A fake pump that forces the all-zero shared secret.
                            (
                                low_order_point(usize::from(c >> 1)),
                                Some(Secret::new([0; 32])),
                            )
                        } else {
                            let e = Ephemeral::from_bytes(secret);
                            (e.public(), e.agree(&ephemeral))
                        };
                        let Some(shared) = shared else {
                            // Checked when read: never reached.
                            return self.respond(&Response::Refused(Refusal::Malformed)).await;
                        };
                        let th = Transcript {
                            binding: BINDING,
                            role,
                            epoch,
                            serial: SERIAL,
                            host_nonce: &nonce,
                            host_ephemeral: &ephemeral,
                            device_nonce: &dn,
                            device_ephemeral: &de,
                        }
                        .hash();
                        let keys = HandshakeKeys::derive(&shared, &key, &th);
                        let proof = keys.device_proof(&th);
                        let table = if c & 1 != 0 {
                            &mut self.low_order
                        } else {
                            &mut self.challenges
                        };
                        table
                            .entry(nonce)
                            .or_default()
                            .push(PumpChallenge { role, keys, th });
                        Response::SessionChallenge {
                            nonce: dn,
                            ephemeral: de,
                            proof,
                        }
                    }
                }
            }
            // The proof verified when it was read.
            Request::SessionProof { .. } if session.is_none() => Response::SessionEstablished,
            Request::Provision { ephemeral } => {
                let allowed = match session_role {
                    None => self.role_keys.is_none(),
                    Some(role) => permitted(role, &request),
                };
                match self.identity.agree(&ephemeral) {
                    _ if !allowed => Response::Refused(Refusal::NotPermitted),
                    None => Response::Refused(Refusal::Malformed),
                    Some(dh) => {
                        let public = self.identity.public();
                        let agreed = ProvisionKeys::derive(
                            &dh,
                            &ProvisionTranscript {
                                serial: SERIAL,
                                pump_public: &public,
                                ephemeral: &ephemeral,
                            },
                        );
                        let epoch = self
                            .role_keys
                            .as_ref()
                            .map_or(FIRST_EPOCH, |k| k.epochs.into_iter().max().unwrap_or(0) + 1);
                        self.role_keys = Some(PumpKeys::derived(&agreed.device_secret, epoch));
                        self.seen.lock().unwrap().log.push(Logged::Provisioned);
                        Response::Provisioned {
                            confirm: agreed.confirm(),
                            epoch,
                        }
                    }
                }
            }
            Request::RotateKey { role, epoch, key } if session.is_some() => {
                let current = self.role_key(role).map(|(e, _)| e);
                match (session_role, current) {
                    (Some(by), _) if !permitted(by, &request) => {
                        Response::Refused(Refusal::NotPermitted)
                    }
                    (_, None) => Response::Refused(Refusal::NotProvisioned),
                    (_, Some(current)) if current.checked_add(1) != Some(epoch) => {
                        Response::Refused(Refusal::StaleKey { epoch, current })
                    }
                    _ => {
                        self.rotate(role, epoch, key);
                        Response::KeyRotated { role, epoch }
                    }
                }
            }
            _ => return true,
        };
        trace!("pump genuine answer {response:?}");
        self.respond(&response).await
    }

    /// The pump's key of `role` is now `key` at `epoch` (it answers `KeyRotated`).
    fn rotate(&mut self, role: Role, epoch: u32, key: [u8; 32]) {
        if let Some(keys) = self.role_keys.as_mut() {
            let i = role.index();
            keys.epochs[i] = epoch;
            keys.keys[i] = Secret::new(key);
        }
        self.seen.lock().unwrap().log.push(Logged::Rotated {
            id: self.last_id,
            role,
            epoch,
        });
    }

    /// Op 7 (and sealed genuine answers): `body` sealed under session `session` (by
    /// default the newest). A `KeyRotated` that confirms the last request's rotation
    /// rotates the pump's key (whatever the script answers in a session, the pump said).
    async fn sealed_answer(&mut self, body: &[u8], session: Option<usize>) -> bool {
        let header = Header {
            kind: FrameKind::Response,
            id: self.last_id,
            flags: Flags(Flags::SEALED),
        };
        let index = session.unwrap_or(self.sessions.len().wrapping_sub(1));
        let Some(s) = self.sessions.get_mut(index) else {
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
        let decoded = decode_body::<Response>(body).ok();
        if let (
            Some(Response::KeyRotated { role, epoch }),
            Some((
                Request::RotateKey {
                    role: r,
                    epoch: e,
                    key,
                },
                Some(_),
            )),
        ) = (&decoded, &self.last)
        {
            if (role, epoch) == (r, e) && session.is_none() {
                let (role, epoch, key) = (*role, *epoch, *key);
                self.rotate(role, epoch, key);
            }
        }
        self.seen
            .lock()
            .unwrap()
            .sealed
            .push((header.id, decoded.is_some()));
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
        low_order: HashMap::new(),
        sessions: Vec::new(),
        role_keys: session_mode.then(|| PumpKeys::derived(&Secret::new(SECRET), FIRST_EPOCH)),
        identity: Ephemeral::from_bytes(STATIC),
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
            6 => p.genuine(&mut r).await,
            7 => {
                let n = usize::from(r.u16());
                p.sealed_answer(r.take(n), None).await
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

/// Longest a handshake may take: the `Identify` before it and every try's two messages
/// time out, and the pump is busy as often as the client waits it out.
fn handshake_bound() -> Duration {
    let tries = CONFIG.retries + 1;
    CONFIG.timeout * (2 * tries + 1)
        + thecal_host::client::BUSY_WAIT * thecal_host::client::BUSY_RETRIES
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
        let logged = Arc::clone(&seen);
        client.set_tracer(move |t| {
            if let Trace::Answered { id, .. } = t {
                traced.lock().unwrap().push(*id);
                logged.lock().unwrap().log.push(Logged::Answered(*id));
            }
        });
        if session_mode {
            let key = match role {
                Role::Emergency => RoleKey::emergency(SERIAL),
                _ => RoleKey {
                    role,
                    epoch: FIRST_EPOCH,
                    key: role_key(&Secret::new(SECRET), role, FIRST_EPOCH, SERIAL),
                },
            };
            let bound = handshake_bound() + Duration::from_secs(60);
            let result = tokio::time::timeout(bound, client.authenticate(key, SERIAL))
                .await
                .unwrap_or_else(|_| panic!("the handshake hung past {bound:?}"));
            if let Err(e) = &result {
                let _ = e.to_string();
            }
            trace!("authenticate: {result:?}");
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
            trace!("call {which} ({}): {result:?}", which % CALLS);
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
    // Once the client accepted a `KeyRotated` for a role, it never again names an older
    // epoch of that role (a re-provisioning starts the epochs afresh).
    let mut confirmed: HashMap<Role, u32> = HashMap::new();
    let mut rotated: HashMap<u16, (Role, u32)> = HashMap::new();
    for entry in &seen.log {
        match *entry {
            Logged::Rotated { id, role, epoch } => {
                rotated.insert(id, (role, epoch));
            }
            Logged::Provisioned => confirmed.clear(),
            Logged::Answered(id) => {
                if let Some(&(role, epoch)) = rotated.get(&id) {
                    let c = confirmed.entry(role).or_insert(epoch);
                    *c = (*c).max(epoch);
                }
            }
            Logged::Hello { role, epoch } => {
                if let Some(&c) = confirmed.get(&role) {
                    assert!(
                        epoch >= c,
                        "the client named {role:?} key epoch {epoch} after it accepted the rotation to {c}"
                    );
                }
            }
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
        if used == 0 {
            continue;
        }
        if used == 1 {
            id = id.wrapping_add(1);
        } else {
            // The log reader used an unknown number of ids; stop checking.
            break;
        }
    }
});
