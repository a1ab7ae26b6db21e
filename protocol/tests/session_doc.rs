//! The worked examples of docs/PROTOCOL.md section 2.9, byte for byte: a forward-secret
//! handshake (role key, nonces, X25519 keys, shared secret, transcript hash, the four
//! handshake keys, both proofs, then a sealed Ping and its sealed Pong) and a
//! provisioning by key agreement.
//!
//! Each block is printed from what the crate's session API computes
//! (`common::session`), and every number in it is recomputed here a second time, the way
//! a stranger would from the document: straight from the primitives (SHA-256,
//! HKDF-SHA256, HMAC-SHA256, X25519, ChaCha20-Poly1305, CRC-16, COBS) and the labels the
//! document states. The two proof keys are not exposed by the crate; they are checked
//! through the proofs they key.

mod common;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use common::session::{self as ex, handshake_example, provision_example, Sealed};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thecal_protocol::frame::{decode_body, Feed, Flags, FrameDecoder, CRC16};
use thecal_protocol::message::{Command, Request, Response, Role};
use thecal_protocol::session::{Binding, Opener, Secret, FIRST_EPOCH};

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lines of a block: `name: hex` for up to 32 bytes, longer values below their name,
/// 16 bytes a line; `indent` nests a line under a heading.
#[derive(Default)]
struct Block(Vec<String>);

impl Block {
    fn text(&mut self, indent: usize, line: &str) {
        self.0.push(format!("{}{line}", "  ".repeat(indent)));
    }

    fn bytes(&mut self, indent: usize, name: &str, value: &[u8]) {
        let pad = "  ".repeat(indent);
        if value.len() <= 32 {
            self.0.push(format!("{pad}{name}: {}", hex(value)));
        } else {
            self.0.push(format!("{pad}{name} ({} bytes):", value.len()));
            for chunk in value.chunks(16) {
                self.0.push(format!("{pad}    {}", hex(chunk)));
            }
        }
    }

    fn render(self) -> String {
        self.0.join("\n")
    }
}

/// The fenced block after `marker`.
fn documented(marker: &str) -> String {
    let start = DOC
        .find(marker)
        .unwrap_or_else(|| panic!("PROTOCOL.md lacks {marker}"));
    let rest = &DOC[start..];
    let open = rest.find("```text\n").expect("fenced block") + "```text\n".len();
    let close = rest[open..].find("```").expect("closing fence") + open;
    rest[open..close].trim_end().to_string()
}

// ---------------------------------------------------------------------------------------
// The primitives, straight from the document

type HmacSha256 = Hmac<Sha256>;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hmac(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    for d in data {
        m.update(d);
    }
    m.finalize().into_bytes().into()
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let mut okm = vec![0u8; len];
    hkdf::Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut okm)
        .unwrap();
    okm
}

fn x25519(scalar: [u8; 32], point: [u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(scalar, point)
}

const BASEPOINT: [u8; 32] = x25519_dalek::X25519_BASEPOINT_BYTES;

fn key32(okm: &[u8], index: usize) -> [u8; 32] {
    okm[index * 32..(index + 1) * 32].try_into().unwrap()
}

/// A sealed body: counter (u32 LE) ‖ ChaCha20-Poly1305(key, nonce = counter ‖ 0 × 8,
/// aad = header) ‖ tag; then the wire frame: COBS(header ‖ body ‖ CRC-16 LE) ‖ 00.
fn seal(key: &[u8; 32], header: &[u8; 5], counter: u32, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&counter.to_le_bytes());
    let mut text = plaintext.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(nonce), header, text.as_mut_slice().into())
        .unwrap();
    // The nonce takes the whole counter; the body carries its low 16 bits.
    let body = [&counter.to_le_bytes()[..2], &text, &tag].concat();
    let raw = [&header[..], &body].concat();
    let crc = CRC16.checksum(&raw).to_le_bytes();
    let wire = [common::cobs_encode(&[&raw[..], &crc].concat()), vec![0]].concat();
    (body, wire)
}

/// `serial length (u8) ‖ serial`.
fn serial_field() -> Vec<u8> {
    [&[ex::SERIAL.len() as u8][..], ex::SERIAL.as_bytes()].concat()
}

fn role_tag(role: Role) -> u8 {
    postcard::to_stdvec(&role).unwrap()[0]
}

// ---------------------------------------------------------------------------------------
// The handshake

/// The handshake's transcript, built from the document's formula.
fn handshake_transcript(binding: Binding, role: Role, epoch: u32) -> Vec<u8> {
    let e = handshake_example();
    [
        &b"thecal/handshake/v3"[..],
        &[binding.version],
        &binding.schema.to_le_bytes(),
        &binding.capabilities.to_le_bytes(),
        &[role_tag(role)],
        &epoch.to_le_bytes(),
        &serial_field(),
        &ex::HOST_NONCE,
        &e.host_ephemeral,
        &e.device_nonce,
        &e.device_ephemeral,
    ]
    .concat()
}

fn sealed_lines(b: &mut Block, s: &Sealed) {
    b.bytes(1, "header", &s.header.to_bytes());
    b.bytes(1, "plaintext", &s.plaintext);
    b.bytes(1, "sealed body", &s.body);
    b.bytes(1, "wire frame", &s.wire);
}

fn handshake_block() -> String {
    let e = handshake_example();
    let binding = ex::binding();
    let mut b = Block::default();
    b.bytes(0, "device secret", &ex::DEVICE_SECRET);
    b.bytes(0, "serial \"SIM000001\"", ex::SERIAL.as_bytes());
    b.text(
        0,
        &format!(
            "binding (from Identify): version {}, schema {:#010x}, capabilities {:#04x}",
            binding.version, binding.schema, binding.capabilities
        ),
    );
    b.text(
        0,
        &format!(
            "role: clinician (tag {}), key epoch {}",
            role_tag(ex::ROLE),
            ex::KEY_EPOCH
        ),
    );
    b.bytes(0, "K_r (role key, clinician, key epoch 1)", &e.role_key);
    b.bytes(0, "nonce key", &e.nonce_key);
    b.bytes(0, "nonce_h", &ex::HOST_NONCE);
    b.bytes(0, "nonce_d (boot epoch 7, n = 1)", &e.device_nonce);
    b.bytes(0, "e_h (programmer's ephemeral secret)", &ex::HOST_SECRET);
    b.bytes(0, "E_h = X25519(e_h, 9)", &e.host_ephemeral);
    b.bytes(0, "e_d (pump's ephemeral secret)", &ex::PUMP_SECRET);
    b.bytes(0, "E_d = X25519(e_d, 9)", &e.device_ephemeral);
    b.bytes(0, "dh = X25519(e_d, E_h) = X25519(e_h, E_d)", &e.shared);
    b.bytes(
        0,
        "transcript",
        &handshake_transcript(binding, ex::ROLE, ex::KEY_EPOCH),
    );
    b.bytes(0, "th = SHA-256(transcript)", &e.th);
    b.text(
        0,
        "HKDF-SHA256(salt = th, ikm = dh ‖ K_r, info = \"thecal/session/v3\"), 128 bytes:",
    );
    let okm = hkdf(
        &e.th,
        &[e.shared, e.role_key].concat(),
        b"thecal/session/v3",
        128,
    );
    b.bytes(1, "device proof key", &okm[0..32]);
    b.bytes(1, "host proof key", &okm[32..64]);
    b.bytes(1, "key programmer→pump", &e.to_device);
    b.bytes(1, "key pump→programmer", &e.to_host);
    b.bytes(
        0,
        "proof_d = HMAC-SHA256(device proof key, th)",
        &e.device_proof,
    );
    b.bytes(
        0,
        "proof_h = HMAC-SHA256(host proof key, th)",
        &e.host_proof,
    );
    b.text(
        0,
        "first sealed request, id 0x0102, counter 1: Command { key: None, request: Ping { token: 12648430 } }",
    );
    sealed_lines(&mut b, &e.request);
    b.text(
        0,
        "its answer, id 0x0102, counter 1: Pong { token: 12648430 }",
    );
    sealed_lines(&mut b, &e.response);
    b.bytes(0, "K_e (emergency key, SIM000001)", &e.emergency_key);
    b.render()
}

#[test]
fn the_documented_handshake_example_is_what_the_code_computes() {
    let block = handshake_block();
    assert!(
        documented("<!-- session-vector -->") == block,
        "section 2.9 (handshake) should read:\n```text\n{block}\n```"
    );
}

/// Every number of the handshake block, from the document's formulas alone.
#[test]
fn the_handshake_example_follows_from_the_documented_formulas() {
    let e = handshake_example();
    let secret = ex::DEVICE_SECRET;
    let serial = ex::SERIAL.as_bytes();
    // Role key of epoch e: HKDF(salt "thecal/role-key/v3", ikm secret, info tag ‖ e ‖ serial).
    let info = [
        &[role_tag(Role::Clinician)][..],
        &1u32.to_le_bytes(),
        serial,
    ]
    .concat();
    let k_r = key32(&hkdf(b"thecal/role-key/v3", &secret, &info, 32), 0);
    assert_eq!(k_r, e.role_key, "role key");
    let nonce_key = key32(&hkdf(b"thecal/nonce-key/v3", &secret, serial, 32), 0);
    assert_eq!(nonce_key, e.nonce_key, "nonce key");
    let nonce_d = hmac(
        &nonce_key,
        &[
            b"thecal/device-nonce/v3",
            &ex::BOOT_EPOCH.to_le_bytes(),
            &ex::CHALLENGE.to_le_bytes(),
        ],
    );
    assert_eq!(nonce_d[..16], e.device_nonce, "device nonce");
    let e_h = x25519(ex::HOST_SECRET, BASEPOINT);
    let e_d = x25519(ex::PUMP_SECRET, BASEPOINT);
    assert_eq!(e_h, e.host_ephemeral, "e_h");
    assert_eq!(e_d, e.device_ephemeral, "e_d");
    let dh = x25519(ex::PUMP_SECRET, e_h);
    assert_eq!(dh, x25519(ex::HOST_SECRET, e_d), "both sides agree");
    assert_eq!(dh, e.shared, "dh");
    let th = sha256(&[&handshake_transcript(
        ex::binding(),
        ex::ROLE,
        ex::KEY_EPOCH,
    )]);
    assert_eq!(th, e.th, "transcript hash");
    let okm = hkdf(&th, &[dh, k_r].concat(), b"thecal/session/v3", 128);
    assert_eq!(hmac(&okm[0..32], &[&th]), e.device_proof, "device proof");
    assert_eq!(hmac(&okm[32..64], &[&th]), e.host_proof, "host proof");
    assert_eq!(key32(&okm, 2), e.to_device, "programmer→pump key");
    assert_eq!(key32(&okm, 3), e.to_host, "pump→programmer key");
    // The sealed exchange.
    for (s, key, name) in [
        (&e.request, e.to_device, "request"),
        (&e.response, e.to_host, "response"),
    ] {
        let (body, wire) = seal(&key, &s.header.to_bytes(), 1, &s.plaintext);
        assert_eq!(body, s.body, "sealed {name}");
        assert_eq!(wire, s.wire, "{name} wire frame");
    }
    assert_eq!(e.request.plaintext, [0x00, 0x01, 0xee, 0xff, 0x83, 0x06]);
    assert_eq!(e.response.plaintext, [0x02, 0xee, 0xff, 0x83, 0x06]);
    // 2.8: a Ping, in its Command and sealed, is 33 bytes on the wire.
    assert_eq!(e.request.wire.len(), 33);
    // The emergency key: HKDF(salt "thecal/emergency-key/v3", ikm serial, info "emergency").
    let k_e = hkdf(b"thecal/emergency-key/v3", serial, b"emergency", 32);
    assert_eq!(k_e, e.emergency_key, "emergency key");
}

/// Downgrade protection: every field of the binding, the role and the key epoch is in
/// the transcript, so changing any of them changes `th` and the proofs.
#[test]
fn the_transcript_binds_version_schema_capabilities_role_and_epoch() {
    let b = ex::binding();
    let th = |binding, role, epoch| sha256(&[&handshake_transcript(binding, role, epoch)]);
    let genuine = th(b, ex::ROLE, ex::KEY_EPOCH);
    for (binding, role, epoch) in [
        (Binding { version: 2, ..b }, ex::ROLE, ex::KEY_EPOCH),
        (
            Binding {
                schema: b.schema ^ 1,
                ..b
            },
            ex::ROLE,
            ex::KEY_EPOCH,
        ),
        (
            Binding {
                capabilities: b.capabilities & !(1 << 6),
                ..b
            },
            ex::ROLE,
            ex::KEY_EPOCH,
        ),
        (b, Role::Service, ex::KEY_EPOCH),
        (b, ex::ROLE, ex::KEY_EPOCH + 1),
    ] {
        let other = th(binding, role, epoch);
        assert_ne!(other, genuine);
        let e = handshake_example();
        let okm = hkdf(
            &other,
            &[e.shared, e.role_key].concat(),
            b"thecal/session/v3",
            128,
        );
        assert_ne!(hmac(&okm[0..32], &[&other]), e.device_proof);
    }
}

#[test]
fn the_documented_sealed_frames_open_in_their_direction_only() {
    let e = handshake_example();
    let open = |key: [u8; 32], wire: &[u8]| {
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let Feed::Frame { frame, .. } = decoder.feed(wire) else {
            panic!("frame")
        };
        assert!(frame.header.flags.has(Flags::SEALED));
        let mut body = frame.body.to_vec();
        Opener::new(&Secret::new(key))
            .open(&frame.header.to_bytes(), &mut body)
            .map(<[u8]>::to_vec)
    };
    let plain = open(e.to_device, &e.request.wire).unwrap();
    assert_eq!(
        decode_body::<Command>(&plain).unwrap(),
        Command {
            key: None,
            request: Request::Ping { token: ex::TOKEN }
        }
    );
    let plain = open(e.to_host, &e.response.wire).unwrap();
    assert_eq!(
        decode_body::<Response>(&plain).unwrap(),
        Response::Pong { token: ex::TOKEN }
    );
    assert!(open(e.to_host, &e.request.wire).is_err(), "reflected");
    assert!(open(e.to_device, &e.response.wire).is_err(), "reflected");
}

// ---------------------------------------------------------------------------------------
// Provisioning

fn provision_transcript(pump_public: &[u8; 32], ephemeral: &[u8; 32]) -> Vec<u8> {
    [
        &b"thecal/provision/v3"[..],
        &serial_field(),
        pump_public,
        ephemeral,
    ]
    .concat()
}

fn provision_block() -> String {
    let p = provision_example();
    let mut b = Block::default();
    b.bytes(0, "serial \"SIM000001\"", ex::SERIAL.as_bytes());
    b.bytes(0, "p (pump's static secret)", &ex::PUMP_STATIC);
    b.bytes(0, "P = X25519(p, 9)", &p.pump_public);
    b.bytes(0, "e_f (factory's ephemeral secret)", &ex::FACTORY_SECRET);
    b.bytes(0, "E_f = X25519(e_f, 9)", &p.ephemeral);
    b.bytes(0, "dh = X25519(p, E_f) = X25519(e_f, P)", &p.shared);
    b.bytes(
        0,
        "transcript",
        &provision_transcript(&p.pump_public, &p.ephemeral),
    );
    b.bytes(0, "th = SHA-256(transcript)", &p.th);
    b.text(
        0,
        "HKDF-SHA256(salt = th, ikm = dh, info = \"thecal/device-secret/v3\"), 64 bytes:",
    );
    let okm = hkdf(&p.th, &p.shared, b"thecal/device-secret/v3", 64);
    b.bytes(1, "device secret", &p.device_secret);
    b.bytes(1, "confirmation key", &okm[32..64]);
    b.bytes(0, "confirm = HMAC-SHA256(confirmation key, th)", &p.confirm);
    b.bytes(0, "K_r (role key, service, key epoch 1)", &p.service_key);
    b.render()
}

#[test]
fn the_documented_provisioning_example_is_what_the_code_computes() {
    let block = provision_block();
    assert!(
        documented("<!-- provision-vector -->") == block,
        "section 2.9 (provisioning) should read:\n```text\n{block}\n```"
    );
}

#[test]
fn the_provisioning_example_follows_from_the_documented_formulas() {
    let p = provision_example();
    let pump_public = x25519(ex::PUMP_STATIC, BASEPOINT);
    let e_f = x25519(ex::FACTORY_SECRET, BASEPOINT);
    assert_eq!(pump_public, p.pump_public, "P");
    assert_eq!(e_f, p.ephemeral, "E_f");
    let dh = x25519(ex::PUMP_STATIC, e_f);
    assert_eq!(
        dh,
        x25519(ex::FACTORY_SECRET, pump_public),
        "both ends agree"
    );
    assert_eq!(dh, p.shared, "dh");
    let th = sha256(&[&provision_transcript(&pump_public, &e_f)]);
    assert_eq!(th, p.th, "th");
    let okm = hkdf(&th, &dh, b"thecal/device-secret/v3", 64);
    assert_eq!(key32(&okm, 0), p.device_secret, "device secret");
    assert_eq!(hmac(&okm[32..64], &[&th]), p.confirm, "confirm");
    let info = [
        &[role_tag(Role::Service)][..],
        &FIRST_EPOCH.to_le_bytes(),
        ex::SERIAL.as_bytes(),
    ]
    .concat();
    assert_eq!(
        key32(&hkdf(b"thecal/role-key/v3", &okm[..32], &info, 32), 0),
        p.service_key,
        "service key"
    );
}

/// The document states every label the formulas above use.
#[test]
fn the_document_states_every_label() {
    for label in [
        "thecal/role-key/v3",
        "thecal/nonce-key/v3",
        "thecal/device-nonce/v3",
        "thecal/emergency-key/v3",
        "thecal/handshake/v3",
        "thecal/session/v3",
        "thecal/provision/v3",
        "thecal/device-secret/v3",
    ] {
        assert!(
            DOC.contains(&format!("\"{label}\"")),
            "PROTOCOL.md should state the label \"{label}\""
        );
    }
}
