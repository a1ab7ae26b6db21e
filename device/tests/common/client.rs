//! A minimal programmer for tests: the forward-secret handshake, provisioning by key
//! agreement and sealed requests over any exchange function (bytes of one request frame
//! in, bytes of the answer frames out).
//!
//! Every test that opens a session goes through [`Hello`] (one step at a time, for tests
//! that interleave) or [`handshake`] (all steps); every test that provisions goes through
//! [`Provisioner`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use thecal_protocol::frame::{decode_body, encode, encode_raw, Feed, Flags, FrameDecoder, Header};

use thecal_protocol::message::{Command, Identity, OpKey, Request, Response, Role};
use thecal_protocol::session::{
    emergency_key, role_key, Binding, Ephemeral, HandshakeKeys, Opener, ProvisionKeys,
    ProvisionTranscript, Sealer, Secret, Transcript,
};

/// One decoded answer frame.
pub struct Answer {
    pub header: Header,
    pub body: Vec<u8>,
}

pub fn frames(bytes: &[u8]) -> Vec<Answer> {
    let mut d: FrameDecoder = FrameDecoder::new();
    let mut out = Vec::new();
    let mut input = bytes;
    loop {
        match d.feed(input) {
            Feed::Consumed => return out,
            Feed::Error { remaining, .. } => input = remaining,
            Feed::Frame { frame, remaining } => {
                out.push(Answer {
                    header: frame.header,
                    body: frame.body.to_vec(),
                });
                input = remaining;
            }
        }
    }
}

pub fn plain_frame(id: u16, request: &Request) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let n = encode(Header::request(id), request, &mut buf).unwrap();
    buf[..n].to_vec()
}

pub fn plain_answer(bytes: &[u8]) -> Response {
    let answers = frames(bytes);
    assert_eq!(answers.len(), 1, "one answer expected");
    assert!(!answers[0].header.flags.has(Flags::SEALED));
    decode_body(&answers[0].body).unwrap()
}

/// What a programmer knows of the pump before a handshake: its serial number and what
/// its `Identify` announced (bound into every transcript).
#[derive(Debug, Clone)]
pub struct Peer {
    pub serial: String,
    pub binding: Binding,
}

impl Peer {
    /// The peer an `Identify` answer describes.
    pub fn from_identity(id: &Identity) -> Peer {
        Peer {
            serial: id.serial.as_str().into(),
            binding: Binding {
                version: id.protocol,
                schema: id.schema,
                capabilities: id.capabilities.0,
            },
        }
    }
}

/// A role key a programmer holds (what a key file holds).
#[derive(Debug)]
pub struct RoleKey {
    pub role: Role,
    pub epoch: u32,
    pub key: Secret,
}

impl RoleKey {
    /// The key of `role` at `epoch` derived from a device secret (what provisioning hands
    /// out); the emergency role's public key at epoch 0 for [`Role::Emergency`].
    pub fn derived(device_secret: &Secret, role: Role, epoch: u32, serial: &str) -> RoleKey {
        if role == Role::Emergency {
            return RoleKey::emergency(serial);
        }
        RoleKey {
            role,
            epoch,
            key: role_key(device_secret, role, epoch, serial),
        }
    }

    /// The emergency role's public key.
    pub fn emergency(serial: &str) -> RoleKey {
        RoleKey {
            role: Role::Emergency,
            epoch: 0,
            key: emergency_key(serial),
        }
    }

    /// A copy.
    pub fn duplicate(&self) -> RoleKey {
        RoleKey {
            role: self.role,
            epoch: self.epoch,
            key: self.key.duplicate(),
        }
    }
}

/// A `SessionHello` the programmer sent (or will send), with its ephemeral secret.
pub struct Hello {
    pub role: Role,
    pub epoch: u32,
    pub nonce: [u8; 16],
    secret: Ephemeral,
}

/// The pump's `SessionChallenge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: [u8; 16],
    pub ephemeral: [u8; 32],
    pub proof: [u8; 32],
}

impl Challenge {
    /// The challenge in `response`, if it is one.
    pub fn of(response: &Response) -> Option<Challenge> {
        match *response {
            Response::SessionChallenge {
                nonce,
                ephemeral,
                proof,
            } => Some(Challenge {
                nonce,
                ephemeral,
                proof,
            }),
            _ => None,
        }
    }
}

/// The programmer's side of a challenge.
pub struct Completion {
    /// Whether the pump proved the programmer's key (a real programmer stops if not).
    pub device_proof_ok: bool,
    /// The `SessionProof` to send.
    pub proof: Request,
    /// The session it opens once the pump accepts the proof.
    pub session: Session,
}

impl Hello {
    /// A hello of `role` naming key `epoch`; its ephemeral secret is made from the nonce
    /// (unique per nonce, as a random one would be).
    pub fn new(role: Role, epoch: u32, nonce: [u8; 16]) -> Hello {
        let mut random = [0u8; 32];
        random[..16].copy_from_slice(&nonce);
        for (i, b) in random[16..].iter_mut().enumerate() {
            *b = nonce[i] ^ 0xA5 ^ i as u8;
        }
        Hello {
            role,
            epoch,
            nonce,
            secret: Ephemeral::from_bytes(random),
        }
    }

    /// The hello for `key`.
    pub fn with(key: &RoleKey, nonce: [u8; 16]) -> Hello {
        Hello::new(key.role, key.epoch, nonce)
    }

    /// The ephemeral public key it carries.
    pub fn public(&self) -> [u8; 32] {
        self.secret.public()
    }

    pub fn request(&self) -> Request {
        Request::SessionHello {
            role: self.role,
            epoch: self.epoch,
            nonce: self.nonce,
            ephemeral: self.public(),
        }
    }

    pub fn frame(&self, id: u16) -> Vec<u8> {
        plain_frame(id, &self.request())
    }

    /// The transcript of this hello and `challenge` as the programmer sees it.
    pub fn transcript_hash(&self, peer: &Peer, challenge: &Challenge) -> [u8; 32] {
        let host_ephemeral = self.public();
        Transcript {
            binding: peer.binding,
            role: self.role,
            epoch: self.epoch,
            serial: &peer.serial,
            host_nonce: &self.nonce,
            host_ephemeral: &host_ephemeral,
            device_nonce: &challenge.nonce,
            device_ephemeral: &challenge.ephemeral,
        }
        .hash()
    }

    /// Checks the pump's proof with `key` and makes the programmer's proof and session
    /// keys. `None` if the pump's ephemeral key is of low order.
    pub fn complete(&self, key: &Secret, peer: &Peer, challenge: &Challenge) -> Option<Completion> {
        let shared = self.secret.agree(&challenge.ephemeral)?;
        let th = self.transcript_hash(peer, challenge);
        let keys = HandshakeKeys::derive(&shared, key, &th);
        let device_proof_ok = keys.verify_device_proof(&th, &challenge.proof);
        let proof = Request::SessionProof {
            nonce: self.nonce,
            proof: keys.host_proof(&th),
        };
        let keys = keys.into_session();
        Some(Completion {
            device_proof_ok,
            proof,
            session: Session {
                sealer: Sealer::new(&keys.to_device),
                opener: Opener::new(&keys.to_host),
                role: self.role,
                to_device: keys.to_device,
                shared,
                th,
                keys: HashMap::new(),
            },
        })
    }
}

/// Why a handshake did not open a session.
#[derive(Debug)]
pub enum Failure {
    /// The pump answered this instead of a challenge or `SessionEstablished`.
    Refused(Box<Response>),
    /// The pump's proof did not verify with the programmer's key (the programmer stopped
    /// before sending its own).
    DeviceProof,
}

/// An open session, programmer side.
pub struct Session {
    pub sealer: Sealer,
    pub opener: Opener,
    pub role: Role,
    /// The programmer→pump key (tests that jump the counter).
    pub to_device: Secret,
    /// The X25519 shared secret of the handshake (the pump forgot its half; a test that
    /// shows what a recording needs keeps it).
    pub shared: Secret,
    /// The transcript hash.
    pub th: [u8; 32],
    /// Idempotency key of each request id's operation (kept for its retries).
    pub keys: HashMap<u16, OpKey>,
}

/// A fresh idempotency key (unique in the test process, as a random one would be).
pub fn fresh_key() -> OpKey {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (NEXT.fetch_add(1, Ordering::SeqCst) ^ 0x5EED_0000_0000_0000).to_le_bytes()
}

/// Runs the handshake with `key` against `peer`, nonce `host_nonce`.
pub fn handshake(
    exchange: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    key: &RoleKey,
    peer: &Peer,
    host_nonce: [u8; 16],
) -> Result<Session, Failure> {
    let hello = Hello::with(key, host_nonce);
    let answer = plain_answer(&exchange(&hello.frame(0xF000)));
    let Some(challenge) = Challenge::of(&answer) else {
        return Err(Failure::Refused(Box::new(answer)));
    };
    let Some(done) = hello.complete(&key.key, peer, &challenge) else {
        return Err(Failure::DeviceProof);
    };
    if !done.device_proof_ok {
        return Err(Failure::DeviceProof);
    }
    let answer = plain_answer(&exchange(&plain_frame(0xF001, &done.proof)));
    if answer != Response::SessionEstablished {
        return Err(Failure::Refused(Box::new(answer)));
    }
    Ok(done.session)
}

/// A provisioning programmer: the factory station (plain `Provision`), or a service
/// session re-provisioning the pump (sealed).
pub struct Provisioner {
    secret: Ephemeral,
}

impl Provisioner {
    /// With the ephemeral secret made from `seed`.
    pub fn new(seed: [u8; 32]) -> Provisioner {
        Provisioner {
            secret: Ephemeral::from_bytes(seed),
        }
    }

    pub fn request(&self) -> Request {
        Request::Provision {
            ephemeral: self.secret.public(),
        }
    }

    /// The device secret and the epoch of every role key, if `answer` is the pump's
    /// confirmation of the same secret (the pump holding `pump_public`'s private key).
    pub fn finish(
        &self,
        serial: &str,
        pump_public: &[u8; 32],
        answer: &Response,
    ) -> Option<(Secret, u32)> {
        let Response::Provisioned { confirm, epoch } = *answer else {
            return None;
        };
        let ephemeral = self.secret.public();
        let keys = ProvisionKeys::derive(
            &self.secret.agree(pump_public)?,
            &ProvisionTranscript {
                serial,
                pump_public,
                ephemeral: &ephemeral,
            },
        );
        keys.verify(&confirm)
            .then(|| (keys.device_secret.duplicate(), epoch))
    }
}

impl Session {
    /// A sealed request frame: a new operation (a fresh idempotency key for a change of
    /// state), or with `retry` a re-send of the last one under `id` (same key).
    pub fn frame(&mut self, id: u16, retry: bool, request: &Request) -> Vec<u8> {
        let key = match (retry, self.keys.get(&id)) {
            (true, Some(key)) => *key,
            _ => fresh_key(),
        };
        self.keys.insert(id, key);
        let key = request.changes_state().then_some(key);
        self.frame_with_key(id, retry, key, request)
    }

    /// A sealed request frame with idempotency key `key`.
    pub fn frame_with_key(
        &mut self,
        id: u16,
        retry: bool,
        key: Option<OpKey>,
        request: &Request,
    ) -> Vec<u8> {
        let command = Command {
            key,
            request: request.clone(),
        };
        let flags = Flags::SEALED | if retry { Flags::RETRY } else { 0 };
        let header = Header {
            kind: thecal_protocol::frame::FrameKind::Request,
            id,
            flags: Flags(flags),
        };
        let mut plain = [0u8; 1100];
        let plain = postcard::to_slice(&command, &mut plain).unwrap();
        let mut body = [0u8; 1100];
        let n = self
            .sealer
            .seal(&header.to_bytes(), plain, &mut body)
            .unwrap();
        let mut wire = [0u8; 2048];
        let w = encode_raw(header, &body[..n], &mut wire).unwrap();
        wire[..w].to_vec()
    }

    /// Opens one sealed answer.
    pub fn answer(&mut self, bytes: &[u8]) -> Response {
        let answers = frames(bytes);
        assert_eq!(answers.len(), 1, "one answer expected");
        let a = &answers[0];
        if !a.header.flags.has(Flags::SEALED) {
            return decode_body(&a.body).unwrap();
        }
        let mut body = a.body.clone();
        let plain = self
            .opener
            .open(&a.header.to_bytes(), &mut body)
            .expect("authentic answer");
        decode_body(plain).unwrap()
    }

    /// A sealed request and its answer.
    pub fn request(
        &mut self,
        exchange: &mut dyn FnMut(&[u8]) -> Vec<u8>,
        id: u16,
        request: &Request,
    ) -> Response {
        let f = self.frame(id, false, request);
        let out = exchange(&f);
        self.answer(&out)
    }
}
