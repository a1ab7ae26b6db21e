//! `session`: the secure-session layer with every check on. The input is a script of
//! operations against a provisioned pump's request server:
//!
//! | op byte % 7 | operation |
//! |---|---|
//! | 0 | raw bytes (length from the next byte) straight onto the link |
//! | 6 | a well-formed plain frame (valid COBS and CRC) with an arbitrary body |
//! | 1 | a genuine handshake with the clinician key (host nonce from the input) |
//! | 2 | an attacker's handshake: `SessionHello` for a role and a guessed `SessionProof` |
//! | 3 | a genuine sealed request with an arbitrary plaintext body |
//! | 4 | a genuine sealed request with one byte of its header or body changed |
//! | 5 | the clocks move on (up to beyond the idle timeout) |
//!
//! Invariants, checked after every step: no panic; a sealed answer is only ever sent
//! while the fuzzer holds a genuine session and opens under its key; therapy (prescription
//! revision, stopped/running, a running bolus) changes only through a genuine sealed
//! request — never through raw bytes, forged handshakes or tampered frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thecal_device::flash::RamFlash;
use thecal_device::motor::CountingMotor;
use thecal_device::pump::Pump;
use thecal_device::server::Server;
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::{demo, session::IDLE_TIMEOUT_MS};
use thecal_protocol::frame::{self, Feed, Flags, FrameDecoder, FrameKind, Header};
use thecal_protocol::message::{Request, ResetCause, Response, Revision, Role, TherapyState};
use thecal_protocol::session::{
    host_proof, role_key, session_keys, Opener, Sealer, Secret, Transcript,
};
use thecal_protocol::time::Timestamp;

const SECRET: [u8; 32] = [0x5E; 32];
const BOOT: Timestamp = Timestamp(1_000_000);

type S = Server<FlashStore<Box<RamFlashBox>>, CountingMotor>;

/// `RamFlash` on the heap (it is larger than the fuzzer's stack likes).
struct RamFlashBox(RamFlash<FLASH_SIZE>);

impl embedded_storage::nor_flash::ErrorType for Box<RamFlashBox> {
    type Error = thecal_device::flash::FlashError;
}
impl embedded_storage::nor_flash::ReadNorFlash for Box<RamFlashBox> {
    const READ_SIZE: usize = 4;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}
impl embedded_storage::nor_flash::NorFlash for Box<RamFlashBox> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write(offset, bytes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Therapy {
    revision: Revision,
    state: TherapyState,
    bolus: bool,
}

struct Link {
    server: Box<S>,
    now: Timestamp,
    decoder: FrameDecoder,
}

impl Link {
    fn therapy(&mut self) -> Therapy {
        let now = self.now;
        let pump = self.server.pump_mut();
        Therapy {
            revision: pump.record().revision,
            state: pump.therapy_state(),
            bolus: pump.status(now).bolus.is_some(),
        }
    }

    /// Sends bytes; returns the answer frames (header, body).
    fn send(&mut self, bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        let now = self.now;
        self.server
            .receive(now, bytes, &mut |b| out.extend_from_slice(b));
        let mut frames = Vec::new();
        let mut input = &out[..];
        loop {
            match self.decoder.feed(input) {
                Feed::Consumed => break,
                Feed::Error { error, .. } => panic!("the pump sent a bad frame: {error:?}"),
                Feed::Frame { frame, remaining } => {
                    assert_eq!(frame.header.kind, FrameKind::Response);
                    frames.push((frame.header, frame.body.to_vec()));
                    input = remaining;
                }
            }
        }
        frames
    }

    fn plain(&mut self, id: u16, request: &Request) -> Option<Response> {
        let mut buf = [0u8; 256];
        let n = frame::encode(Header::request(id), request, &mut buf).ok()?;
        let answers = self.send(&buf[..n]);
        let (header, body) = answers.first()?;
        assert!(
            !header.flags.has(Flags::SEALED),
            "sealed answer to a plain frame"
        );
        frame::decode_body(body).ok()
    }
}

struct Genuine {
    sealer: Sealer,
    opener: Opener,
}

fn sealed_frame(s: &mut Genuine, id: u16, plain: &[u8]) -> Option<Vec<u8>> {
    let header = Header {
        kind: FrameKind::Request,
        id,
        flags: Flags(Flags::SEALED),
    };
    let mut body = vec![0u8; plain.len() + 20];
    let n = s.sealer.seal(&header.to_bytes(), plain, &mut body).ok()?;
    let mut wire = vec![0u8; 2 * n + 32];
    let w = frame::encode_raw(header, &body[..n], &mut wire).ok()?;
    wire.truncate(w);
    Some(wire)
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(input.len());
    let (head, tail) = input.split_at(n);
    *input = tail;
    head
}

fn byte(input: &mut &[u8]) -> u8 {
    take(input, 1).first().copied().unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let store = FlashStore::new(Box::new(RamFlashBox(RamFlash::new()))).expect("store");
    let prescription = demo::demo_prescription().expect("demo prescription");
    let mut pump = Pump::boot(
        demo::demo_info(7),
        demo::demo_factory(Timestamp(0), prescription),
        store,
        CountingMotor::default(),
        BOOT,
        ResetCause::PowerOn,
    );
    assert!(pump.provision(SECRET, BOOT));
    let serial = pump.serial().to_string();
    let key = role_key(&Secret(SECRET), Role::Clinician, &serial);
    let mut link = Link {
        server: Box::new(Server::new(pump)),
        now: BOOT,
        decoder: FrameDecoder::new(),
    };
    let mut genuine: Option<Genuine> = None;
    let mut id: u16 = 0;
    let mut input = data;
    while !input.is_empty() {
        let before = link.therapy();
        let mut authorised = false;
        id = id.wrapping_add(1);
        match byte(&mut input) % 7 {
            0 => {
                let n = usize::from(byte(&mut input));
                let raw = take(&mut input, n).to_vec();
                // The fuzzer never sees the session keys: nothing it sends can open, so
                // nothing it sends is answered under the session.
                for (header, _) in link.send(&raw) {
                    assert!(
                        !header.flags.has(Flags::SEALED),
                        "forged bytes answered sealed"
                    );
                }
            }
            1 => {
                let mut nonce = [0u8; 16];
                nonce.copy_from_slice(&[take(&mut input, 16), &[0u8; 16]].concat()[..16]);
                genuine = None;
                let Some(Response::SessionChallenge { nonce: dn, .. }) = link.plain(
                    id,
                    &Request::SessionHello {
                        role: Role::Clinician,
                        nonce,
                    },
                ) else {
                    continue;
                };
                let t = Transcript {
                    role: Role::Clinician,
                    host_nonce: &nonce,
                    device_nonce: &dn,
                    serial: &serial,
                };
                let proof = host_proof(&key, &t);
                if link.plain(id.wrapping_add(1), &Request::SessionProof { proof })
                    == Some(Response::SessionEstablished)
                {
                    let keys = session_keys(&key, &t);
                    genuine = Some(Genuine {
                        sealer: Sealer::new(&keys.to_device),
                        opener: Opener::new(&keys.to_host),
                    });
                }
            }
            2 => {
                genuine = None;
                let role = match byte(&mut input) % 3 {
                    0 => Role::Patient,
                    1 => Role::Clinician,
                    _ => Role::Service,
                };
                let mut nonce = [0u8; 16];
                nonce.copy_from_slice(&[take(&mut input, 16), &[0u8; 16]].concat()[..16]);
                let _ = link.plain(id, &Request::SessionHello { role, nonce });
                let mut proof = [0u8; 32];
                proof.copy_from_slice(&[take(&mut input, 32), &[0u8; 32]].concat()[..32]);
                let answer = link.plain(id.wrapping_add(1), &Request::SessionProof { proof });
                assert_ne!(
                    answer,
                    Some(Response::SessionEstablished),
                    "a guessed proof opened a session"
                );
            }
            3 | 4 => {
                let tamper = byte(&mut input);
                let op_is_tamper = (tamper & 1) == 1;
                let n = usize::from(byte(&mut input));
                let plain = take(&mut input, n).to_vec();
                let Some(s) = genuine.as_mut() else { continue };
                let Some(mut wire) = sealed_frame(s, id, &plain) else {
                    continue;
                };
                if op_is_tamper {
                    // Change one byte of the raw frame (header or body), then re-frame with
                    // a valid CRC so the change reaches the session layer.
                    let mut d: FrameDecoder = FrameDecoder::new();
                    let Feed::Frame { frame, .. } = d.feed(&wire) else {
                        continue;
                    };
                    let mut raw: Vec<u8> = frame.header.to_bytes().to_vec();
                    raw.extend_from_slice(frame.body);
                    let at = usize::from(byte(&mut input)) % raw.len();
                    raw[at] ^= byte(&mut input) | 1;
                    let Ok(h) = Header::from_bytes([raw[0], raw[1], raw[2], raw[3], raw[4]]) else {
                        continue;
                    };
                    let mut w = vec![0u8; 2 * raw.len() + 32];
                    let Ok(len) = frame::encode_raw(h, &raw[5..], &mut w) else {
                        continue;
                    };
                    w.truncate(len);
                    wire = w;
                } else {
                    authorised = true;
                }
                let answers = link.send(&wire);
                for (header, body) in answers {
                    if header.flags.has(Flags::SEALED) {
                        assert!(
                            !op_is_tamper,
                            "a tampered frame was answered under the session"
                        );
                        let mut body = body;
                        s.opener
                            .open(&header.to_bytes(), &mut body)
                            .expect("a sealed answer that does not open under the session key");
                    }
                }
            }
            6 => {
                let flags = byte(&mut input) & Flags::RETRY;
                let n = usize::from(byte(&mut input));
                let body = take(&mut input, n).to_vec();
                let header = Header {
                    kind: FrameKind::Request,
                    id,
                    flags: Flags(flags),
                };
                let mut wire = vec![0u8; 2 * body.len() + 32];
                let Ok(len) = frame::encode_raw(header, &body, &mut wire) else {
                    continue;
                };
                for (header, _) in link.send(&wire[..len]) {
                    assert!(
                        !header.flags.has(Flags::SEALED),
                        "plain request answered sealed"
                    );
                }
            }
            _ => {
                let step = u64::from(byte(&mut input)) * IDLE_TIMEOUT_MS / 64;
                link.now = link.now.plus_ms(step);
                link.server.tick(link.now);
                if step >= IDLE_TIMEOUT_MS {
                    genuine = None;
                }
            }
        }
        let after = link.therapy();
        if !authorised {
            // Therapy may only move on by itself (a bolus ending, an alarm halting it),
            // never be started, stopped or reprogrammed.
            assert_eq!(
                after.revision, before.revision,
                "prescription changed without a session"
            );
            assert!(
                !(after.bolus && !before.bolus),
                "a bolus started without a session"
            );
            assert!(
                !(matches!(after.state, TherapyState::Stopped)
                    && !matches!(before.state, TherapyState::Stopped)),
                "therapy stopped without a session"
            );
            assert!(
                !(matches!(after.state, TherapyState::Running)
                    && matches!(before.state, TherapyState::Stopped)),
                "therapy resumed without a session"
            );
        }
    }
});
