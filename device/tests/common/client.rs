//! A minimal programmer for tests: the handshake and sealed requests over any exchange
//! function (bytes of one request frame in, bytes of the answer frames out).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use thecal_protocol::frame::{decode_body, encode, encode_raw, Feed, Flags, FrameDecoder, Header};

use thecal_protocol::message::{Command, OpKey, Request, Response, Role};
use thecal_protocol::session::{
    host_proof, role_key, session_keys, verify_device_proof, Opener, Sealer, Secret, Transcript,
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

/// An open session, programmer side.
pub struct Session {
    pub sealer: Sealer,
    pub opener: Opener,
    pub role: Role,
    /// The programmer→pump key (tests that jump the counter).
    pub to_device: Secret,
    /// Idempotency key of each request id's operation (kept for its retries).
    pub keys: HashMap<u16, OpKey>,
}

/// A fresh idempotency key (unique in the test process, as a random one would be).
pub fn fresh_key() -> OpKey {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (NEXT.fetch_add(1, Ordering::SeqCst) ^ 0x5EED_0000_0000_0000).to_le_bytes()
}

/// The clinician (or other) key of the pump with `serial` and device `secret`.
pub fn key(secret: [u8; 32], role: Role, serial: &str) -> Secret {
    role_key(&Secret(secret), role, serial)
}

/// Runs the handshake; `Err` carries the pump's answer when it refused.
#[allow(clippy::result_large_err)]
pub fn handshake(
    exchange: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    key: &Secret,
    role: Role,
    serial: &str,
    host_nonce: [u8; 16],
) -> Result<Session, Response> {
    let answer = plain_answer(&exchange(&plain_frame(
        0xF000,
        &Request::SessionHello {
            role,
            nonce: host_nonce,
        },
    )));
    let Response::SessionChallenge { nonce, proof } = answer else {
        return Err(answer);
    };
    let t = Transcript {
        role,
        host_nonce: &host_nonce,
        device_nonce: &nonce,
        serial,
    };
    assert!(
        verify_device_proof(key, &t, &proof),
        "the pump did not prove the key"
    );
    let mine = host_proof(key, &t);
    let answer = plain_answer(&exchange(&plain_frame(
        0xF001,
        &Request::SessionProof {
            nonce: host_nonce,
            proof: mine,
        },
    )));
    if answer != Response::SessionEstablished {
        return Err(answer);
    }
    let keys = session_keys(key, &t);
    Ok(Session {
        sealer: Sealer::new(&keys.to_device),
        opener: Opener::new(&keys.to_host),
        role,
        to_device: keys.to_device,
        keys: HashMap::new(),
    })
}

impl Session {
    /// A sealed request frame: a new operation (a fresh idempotency key for a therapy
    /// change), or with `retry` a re-send of the last one under `id` (same key).
    pub fn frame(&mut self, id: u16, retry: bool, request: &Request) -> Vec<u8> {
        let key = match (retry, self.keys.get(&id)) {
            (true, Some(key)) => *key,
            _ => fresh_key(),
        };
        self.keys.insert(id, key);
        let key = request.changes_therapy().then_some(key);
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
