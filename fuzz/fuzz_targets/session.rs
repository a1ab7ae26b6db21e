//! `session`: the secure-session layer with every check on. The input is a script of
//! operations against a provisioned pump's request server (link clock from 0, device
//! clock from [`BOOT`], both moved together):
//!
//! | op byte % 7 | bytes after it | operation |
//! |---|---|---|
//! | 0 | `u8` n, n bytes | raw bytes straight onto the link (the attacker) |
//! | 6 | `u8` f, `u8` n, n bytes | a well-formed plain frame (valid COBS and CRC, `RETRY` from f) with an arbitrary body (the attacker) |
//! | 1 | 16 bytes, then the script if interleaved | a genuine handshake; `v = op / 7`: bit 0 interleaves an attack script between `SessionHello` and `SessionProof`, bit 1 asks for the emergency role (public key) instead of the clinician's, bit 2 applies the physical-presence signal first |
//! | 2 | `u8` r, 16 bytes, 32 bytes | an attacker's handshake: `SessionHello` for role `r % 4` with that nonce, and a guessed `SessionProof` for it |
//! | 3, 4 | `u8` m, per mode …, then `u8` at, `u8` x if tampered | a genuine sealed request (see below); `m & 1` changes byte `at` of its header or body (`^= x \| 1`) and re-frames it |
//! | 5 | `u8` s | the clocks move on `s / 64` idle timeouts |
//!
//! Sealed plaintexts (`(m >> 1) & 3`): 0 `u8` n, n bytes as they are; 1 `u8` n, n bytes
//! as a `Command` without key (`0x00` ‖ bytes); 2 8 key bytes, `u8` n, n bytes as a
//! `Command` with that key (`0x01` ‖ key ‖ bytes); 3 the last keyed therapy change again
//! (no bytes).
//!
//! The interleaved attack script: `u8` k, then `k % 16` actions, each an action byte `a`:
//! `a % 8` = 0 `SessionHello` for role `(a >> 3) % 4` with 16 nonce bytes; 1 `SessionHello`
//! with the genuine nonce for another role; 2 the genuine `SessionHello` repeated; 3
//! `SessionProof` with the genuine nonce and 32 bytes of wrong proof; 4 `SessionProof` with
//! 16 nonce bytes and 32 proof bytes; 5 `u8` n, n raw bytes; 6 `u8` d: the clocks move
//! `8 d` ms (never 2 s or more in all since the genuine hello: any programmer answers its
//! challenge faster); 7 a plain frame as op 6.
//!
//! The genuine programmer's nonce is drawn from a hash of all the input before it: the
//! attacker sees it on the air (the script's actions use it) but cannot send it before
//! the genuine `SessionHello` (a real programmer's nonce is random).
//!
//! Invariants, checked after every step: no panic; a sealed answer is only ever sent
//! while the fuzzer holds a genuine session and opens under its key; every open session
//! is one a genuine handshake opened; **plain frames never end or replace the open
//! session**, nor do tampered sealed frames; a guessed proof never opens a session; an
//! emergency `SessionHello` without presence is refused `PresenceRequired`; an emergency
//! session is open only while presence is; therapy (prescription revision,
//! stopped/running, a running bolus) changes only through a genuine sealed therapy
//! change carrying a key — never through raw bytes, forged handshakes, tampered frames,
//! a therapy change without a key (refused), or a repeat of a keyed change within the
//! reply cache's lifetime (answered from the cache, with the first answer); an
//! emergency session can only stop therapy. During a genuine handshake: the pump's
//! challenge proves the role key; interleaved attackers' hellos (any role, any nonce, the
//! genuine nonce for another role) and wrong proofs for the pending nonce do not spoil
//! the pending challenge — a repeated genuine hello gets the same challenge, and the
//! genuine proof opens the session. Answers the pump legitimately withholds (its
//! unauthenticated energy budget spent: `LinkStats::quiet` grew) are accepted.
#![no_main]

use std::hash::{DefaultHasher, Hasher};

use libfuzzer_sys::fuzz_target;
use thecal_device::demo;
use thecal_device::flash::RamFlash;
use thecal_device::motor::CountingMotor;
use thecal_device::pump::Pump;
use thecal_device::server::{Server, CACHE_TTL_MS};
use thecal_device::session::{permitted, IDLE_TIMEOUT_MS, MIN_PENDING_MS};
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_protocol::frame::{self, Feed, Flags, FrameDecoder, FrameKind, Header};
use thecal_protocol::message::{
    Command, Refusal, Request, ResetCause, Response, Revision, Role, TherapyState,
};
use thecal_protocol::session::{
    device_nonce, host_proof, role_key, session_keys, verify_device_proof, Opener, Sealer, Secret,
    Transcript,
};
use thecal_protocol::time::Timestamp;

const SECRET: [u8; 32] = [0x5E; 32];
/// Key of the genuine programmer's nonces (see the module docs).
const NONCE_KEY: [u8; 32] = [0xA7; 32];
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

/// What an operation may do to therapy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum May {
    /// Nothing (it may only move on by itself: a bolus ending, an alarm halting it).
    Nothing,
    /// Stop it (an emergency session's sealed request).
    Stop,
    /// Anything (a genuine clinician's keyed therapy change).
    Anything,
}

fn check_therapy(before: Therapy, after: Therapy, may: May) {
    if may == May::Anything {
        return;
    }
    assert_eq!(
        after.revision, before.revision,
        "prescription changed without a genuine therapy change"
    );
    assert!(
        !(after.bolus && !before.bolus),
        "a bolus started without a genuine therapy change"
    );
    assert!(
        !(matches!(after.state, TherapyState::Running)
            && matches!(before.state, TherapyState::Stopped)),
        "therapy resumed without a genuine therapy change"
    );
    if may == May::Nothing {
        assert!(
            !(matches!(after.state, TherapyState::Stopped)
                && !matches!(before.state, TherapyState::Stopped)),
            "therapy stopped without a genuine therapy change"
        );
    }
}

struct Link {
    server: Box<S>,
    /// Device time.
    now: Timestamp,
    /// Link time (sessions, the energy budget, the reply cache).
    link_now: Timestamp,
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

    fn session(&self) -> Option<(Role, u16)> {
        self.server.session()
    }

    fn quiet(&self) -> u32 {
        self.server.stats().quiet
    }

    fn presence(&self) -> bool {
        self.server.presence(self.link_now)
    }

    /// Ends what timed out by now (as the next receive would), so that what changes
    /// during an operation's frames is their doing.
    fn settle(&mut self) {
        self.server.poll(self.now, self.link_now);
    }

    /// Both clocks move on `ms`.
    fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
        self.link_now = self.link_now.plus_ms(ms);
        self.server.tick(self.now);
        self.settle();
    }

    /// Sends bytes; returns the answer frames (header, body).
    fn send(&mut self, bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        let (now, link_now) = (self.now, self.link_now);
        self.server
            .receive_at(now, link_now, bytes, &mut |b| out.extend_from_slice(b));
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

    /// The genuine programmer's plain request; its plain answer, if the pump sent one.
    /// Like the host client, it sends a lone `0x00` first: that ends whatever partial
    /// frame the attacker left in the pump's decoder.
    fn plain(&mut self, id: u16, request: &Request) -> Option<Response> {
        let mut buf = [0u8; 256];
        let n = frame::encode(Header::request(id), request, &mut buf[1..]).expect("encodes");
        let answers = self.send(&buf[..n + 1]);
        assert!(answers.len() <= 1, "two answers to one frame");
        let (header, body) = answers.first()?;
        assert!(
            !header.flags.has(Flags::SEALED),
            "sealed answer to a plain frame"
        );
        assert_eq!(header.id, id, "answer with another request's id");
        Some(frame::decode_body(body).expect("the pump's answer decodes"))
    }

    /// The attacker's bytes: never answered sealed, and the open session is untouched.
    fn attack(&mut self, bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
        self.settle();
        let before = self.session();
        let answers = self.send(bytes);
        for (header, _) in &answers {
            assert!(
                !header.flags.has(Flags::SEALED),
                "the attacker's bytes were answered sealed"
            );
        }
        assert_eq!(
            self.session(),
            before,
            "plain frames ended or replaced the open session"
        );
        answers
    }

    /// The attacker's plain request (after a lone `0x00`, as [`Link::plain`]); its
    /// answer, if any.
    fn attack_request(&mut self, id: u16, request: &Request) -> Option<Response> {
        let mut buf = [0u8; 256];
        let n = frame::encode(Header::request(id), request, &mut buf[1..]).expect("encodes");
        let answers = self.attack(&buf[..n + 1]);
        assert!(answers.len() <= 1, "two answers to one frame");
        let (header, body) = answers.first()?;
        assert_eq!(header.id, id, "answer with another request's id");
        Some(frame::decode_body(body).expect("the pump's answer decodes"))
    }

    /// A well-formed plain frame with any body, from the attacker.
    fn attack_frame(&mut self, id: u16, input: &mut &[u8]) {
        let flags = byte(input) & Flags::RETRY;
        let n = usize::from(byte(input));
        let body = take(input, n).to_vec();
        let header = Header {
            kind: FrameKind::Request,
            id,
            flags: Flags(flags),
        };
        let mut wire = vec![0u8; 2 * body.len() + 32];
        if let Ok(len) = frame::encode_raw(header, &body, &mut wire) {
            self.attack(&wire[..len]);
        }
    }
}

struct Genuine {
    role: Role,
    /// The pump's number of the session.
    number: u16,
    sealer: Sealer,
    opener: Opener,
}

/// The last keyed therapy change the pump executed: a repeat must get its answer again.
struct Keyed {
    plain: Vec<u8>,
    role: Role,
    at: Timestamp,
    answer: Response,
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
    let w = frame::encode_raw(header, &body[..n], &mut wire[1..]).ok()?;
    // A lone 0x00 first, as the host client sends (see `Link::plain`).
    wire.truncate(w + 1);
    Some(wire)
}

/// `wire` with byte `at` of its header or body changed, re-framed with a valid CRC so the
/// change reaches the session layer.
fn tampered(wire: &[u8], at: u8, x: u8) -> Option<Vec<u8>> {
    let mut d: FrameDecoder = FrameDecoder::new();
    let Feed::Frame { frame, .. } = d.feed(wire.strip_prefix(&[0]).unwrap_or(wire)) else {
        return None;
    };
    let mut raw: Vec<u8> = frame.header.to_bytes().to_vec();
    raw.extend_from_slice(frame.body);
    let at = usize::from(at) % raw.len();
    raw[at] ^= x | 1;
    let h = Header::from_bytes([raw[0], raw[1], raw[2], raw[3], raw[4]]).ok()?;
    let mut w = vec![0u8; 2 * raw.len() + 32];
    let len = frame::encode_raw(h, &raw[5..], &mut w).ok()?;
    w.truncate(len);
    Some(w)
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

fn array<const N: usize>(input: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let got = take(input, N);
    out[..got.len()].copy_from_slice(got);
    out
}

struct Harness {
    link: Link,
    serial: String,
    genuine: Option<Genuine>,
    last_keyed: Option<Keyed>,
    id: u16,
    handshakes: u64,
}

impl Harness {
    fn new() -> Self {
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
        Harness {
            link: Link {
                server: Box::new(Server::new(pump)),
                now: BOOT,
                link_now: Timestamp(0),
                decoder: FrameDecoder::new(),
            },
            serial,
            genuine: None,
            last_keyed: None,
            id: 0,
            handshakes: 0,
        }
    }

    fn next_id(&mut self) -> u16 {
        self.id = self.id.wrapping_add(1);
        self.id
    }

    /// After every operation: every open session is the genuine one, and an emergency
    /// session is open only while presence is.
    fn check_sessions(&mut self) {
        self.link.settle();
        match (self.link.session(), &self.genuine) {
            (None, _) => self.genuine = None,
            (Some(open), Some(g)) if open == (g.role, g.number) => {}
            (Some(open), _) => panic!("session {open:?} is open that no genuine handshake opened"),
        }
        if let Some((Role::Emergency, n)) = self.link.session() {
            assert!(
                self.link.presence(),
                "emergency session {n} is open without the physical-presence signal \
                 (device time {} ms, link time {} ms)",
                self.link.now.0,
                self.link.link_now.0,
            );
        }
    }

    /// Op 1: a genuine handshake, maybe with attacks interleaved.
    fn genuine_handshake(&mut self, v: u8, input: &mut &[u8], before_nonce: &[u8]) {
        let interleave = v & 1 != 0;
        let role = if v & 2 != 0 {
            Role::Emergency
        } else {
            Role::Clinician
        };
        if v & 4 != 0 {
            self.link
                .server
                .apply_presence(self.link.now, self.link.link_now);
        }
        // The programmer's random nonce: unpredictable from anything sent before it.
        let mut h = DefaultHasher::new();
        h.write(before_nonce);
        h.write(&array::<16>(input));
        self.handshakes += 1;
        let nonce = device_nonce(&Secret(NONCE_KEY), h.finish(), self.handshakes);
        let key = role_key(&Secret(SECRET), role, &self.serial);
        let serial = self.serial.clone();

        self.link.settle();
        let presence = self.link.presence();
        let quiet = self.link.quiet();
        let id = self.next_id();
        let (dn, dp) = match self.link.plain(id, &Request::SessionHello { role, nonce }) {
            Some(Response::SessionChallenge { nonce, proof }) => (nonce, proof),
            None => {
                assert!(
                    self.link.quiet() > quiet,
                    "a genuine SessionHello went unanswered though the link was not quiet"
                );
                return;
            }
            Some(Response::Refused(Refusal::PresenceRequired))
                if role == Role::Emergency && !presence =>
            {
                return
            }
            // Every challenge slot is younger than 2 s: legitimately busy.
            Some(Response::Refused(Refusal::Busy)) => return,
            Some(other) => {
                panic!(
                    "a genuine {role:?} SessionHello was answered {other:?} (presence {presence})"
                )
            }
        };
        assert!(
            role != Role::Emergency || presence,
            "an emergency challenge without the physical-presence signal"
        );
        let t = Transcript {
            role,
            host_nonce: &nonce,
            device_nonce: &dn,
            serial: &serial,
        };
        assert!(
            verify_device_proof(&key, &t, &dp),
            "the pump's challenge does not prove the role key"
        );
        let proof = host_proof(&key, &t);
        if interleave {
            self.interleave(input, role, nonce, (dn, dp), proof);
        }

        let quiet = self.link.quiet();
        let before = self.link.session();
        let id = self.next_id();
        match self.link.plain(id, &Request::SessionProof { nonce, proof }) {
            Some(Response::SessionEstablished) => {
                let open = self
                    .link
                    .session()
                    .expect("SessionEstablished without an open session");
                assert_eq!(open.0, role, "a session of another role opened");
                assert_ne!(
                    Some(open),
                    before,
                    "SessionEstablished, but the same session"
                );
                let keys = session_keys(&key, &t);
                self.genuine = Some(Genuine {
                    role,
                    number: open.1,
                    sealer: Sealer::new(&keys.to_device),
                    opener: Opener::new(&keys.to_host),
                });
            }
            None => assert!(
                self.link.quiet() > quiet,
                "the genuine SessionProof went unanswered though the link was not quiet"
            ),
            // An emergency challenge dies with the presence window that allowed it; and
            // (its key being public) an emergency proof never replaces a clinician or
            // service session, nor opens a second emergency session in one window.
            Some(Response::Refused(Refusal::SessionRequired))
                if role == Role::Emergency && !self.link.presence() =>
            {
                assert_eq!(self.link.session(), before, "the session changed");
            }
            Some(Response::Refused(Refusal::Busy)) if role == Role::Emergency => {
                assert_eq!(self.link.session(), before, "the session changed");
            }
            Some(other) => panic!(
                "the genuine proof for a pending challenge was answered {other:?} \
                 (attacks interleaved: {interleave})"
            ),
        }
    }

    /// Attacks between a genuine `SessionHello` and its `SessionProof`.
    fn interleave(
        &mut self,
        input: &mut &[u8],
        role: Role,
        nonce: [u8; 16],
        challenge: ([u8; 16], [u8; 32]),
        proof: [u8; 32],
    ) {
        let mut elapsed = 0;
        for _ in 0..byte(input) % 16 {
            let a = byte(input);
            let id = self.next_id();
            let presence = self.link.presence();
            let quiet = self.link.quiet();
            match a % 8 {
                0 => {
                    let role = Role::ALL[usize::from(a >> 3) % 4];
                    let nonce = array::<16>(input);
                    let answer = self
                        .link
                        .attack_request(id, &Request::SessionHello { role, nonce });
                    if role == Role::Emergency && !presence {
                        assert!(
                            matches!(
                                answer,
                                None | Some(Response::Refused(Refusal::PresenceRequired))
                            ),
                            "an emergency SessionHello without presence was answered {answer:?}"
                        );
                    }
                }
                1 => {
                    let other = Role::ALL[(role.index() + 1 + usize::from(a >> 3) % 3) % 4];
                    let answer = self
                        .link
                        .attack_request(id, &Request::SessionHello { role: other, nonce });
                    let ok = match answer {
                        None => self.link.quiet() > quiet,
                        Some(Response::Refused(Refusal::Busy)) => true,
                        Some(Response::Refused(Refusal::PresenceRequired)) => {
                            other == Role::Emergency && !presence
                        }
                        Some(_) => false,
                    };
                    assert!(
                        ok,
                        "a SessionHello for {other:?} with the pending {role:?} nonce was answered {answer:?}"
                    );
                }
                2 => {
                    let answer = self
                        .link
                        .attack_request(id, &Request::SessionHello { role, nonce });
                    let ok = match answer {
                        None => self.link.quiet() > quiet,
                        Some(Response::SessionChallenge { nonce, proof }) => {
                            (nonce, proof) == challenge
                        }
                        Some(Response::Refused(Refusal::PresenceRequired)) => {
                            role == Role::Emergency && !presence
                        }
                        Some(_) => false,
                    };
                    assert!(
                        ok,
                        "a repeated SessionHello did not get the pending challenge again: {answer:?}"
                    );
                }
                3 => {
                    let mut wrong = array::<32>(input);
                    if wrong == proof {
                        wrong[0] ^= 1;
                    }
                    let answer = self.link.attack_request(
                        id,
                        &Request::SessionProof {
                            nonce,
                            proof: wrong,
                        },
                    );
                    let ok = match answer {
                        None => self.link.quiet() > quiet,
                        Some(Response::Refused(Refusal::AuthenticationFailed)) => true,
                        Some(_) => false,
                    };
                    assert!(
                        ok,
                        "a wrong proof for the pending challenge was answered {answer:?}"
                    );
                }
                4 => {
                    let nonce = array::<16>(input);
                    let proof = array::<32>(input);
                    let answer = self
                        .link
                        .attack_request(id, &Request::SessionProof { nonce, proof });
                    assert_ne!(
                        answer,
                        Some(Response::SessionEstablished),
                        "a guessed proof opened a session"
                    );
                }
                5 => {
                    let n = usize::from(byte(input));
                    let raw = take(input, n).to_vec();
                    self.link.attack(&raw);
                }
                6 => {
                    let d = (u64::from(byte(input)) * 8).min(MIN_PENDING_MS - 1 - elapsed);
                    elapsed += d;
                    self.link.advance(d);
                }
                _ => self.link.attack_frame(id, input),
            }
        }
    }

    /// Op 2: an attacker's handshake with a guessed proof.
    fn forged_handshake(&mut self, input: &mut &[u8]) {
        let role = Role::ALL[usize::from(byte(input)) % 4];
        let nonce = array::<16>(input);
        let proof = array::<32>(input);
        self.link.settle();
        let presence = self.link.presence();
        let id = self.next_id();
        let answer = self
            .link
            .attack_request(id, &Request::SessionHello { role, nonce });
        if role == Role::Emergency && !presence {
            assert!(
                matches!(
                    answer,
                    None | Some(Response::Refused(Refusal::PresenceRequired))
                ),
                "an emergency SessionHello without presence was answered {answer:?}"
            );
        }
        let id = self.next_id();
        let answer = self
            .link
            .attack_request(id, &Request::SessionProof { nonce, proof });
        assert_ne!(
            answer,
            Some(Response::SessionEstablished),
            "a guessed proof opened a session"
        );
    }

    /// Ops 3 and 4: a genuine sealed request, maybe tampered with. Returns what it may do
    /// to therapy.
    fn sealed(&mut self, input: &mut &[u8]) -> May {
        let m = byte(input);
        let tamper = m & 1 == 1;
        let mode = (m >> 1) & 3;
        let repeat = mode == 3;
        let plain = match mode {
            0 => {
                let n = usize::from(byte(input));
                take(input, n).to_vec()
            }
            1 => {
                let n = usize::from(byte(input));
                [&[0u8][..], take(input, n)].concat()
            }
            2 => {
                let key = array::<8>(input);
                let n = usize::from(byte(input));
                [&[1u8][..], &key[..], take(input, n)].concat()
            }
            _ => self
                .last_keyed
                .as_ref()
                .map(|k| k.plain.clone())
                .unwrap_or_default(),
        };
        let (at, x) = if tamper {
            (byte(input), byte(input))
        } else {
            (0, 0)
        };
        let id = self.next_id();
        let Some(s) = self.genuine.as_mut() else {
            return May::Nothing;
        };
        let role = s.role;
        let Some(wire) = sealed_frame(s, id, &plain) else {
            return May::Nothing;
        };
        if tamper {
            if let Some(wire) = tampered(&wire, at, x) {
                // Nothing tampered is answered sealed, or touches the session.
                self.link.attack(&wire);
            }
            return May::Nothing;
        }

        let command = frame::decode_body::<Command>(&plain).ok();
        let cached = self.last_keyed.as_ref().and_then(|k| {
            (repeat && k.role == role && self.link.link_now.since(k.at) < CACHE_TTL_MS)
                .then(|| k.answer.clone())
        });
        let replays = self.link.server.stats().replays;
        let answers = self.link.send(&wire);
        let replayed = self.link.server.stats().replays > replays;
        assert_eq!(
            answers.len(),
            1,
            "a genuine sealed request got {} answers",
            answers.len()
        );
        let (header, mut body) = answers.into_iter().next().expect("one answer");
        assert!(
            header.flags.has(Flags::SEALED),
            "a genuine sealed request was answered in the clear"
        );
        assert_eq!(header.id, id, "answer with another request's id");
        let s = self.genuine.as_mut().expect("still held");
        let answer: Response = {
            let opened = s
                .opener
                .open(&header.to_bytes(), &mut body)
                .expect("a sealed answer that does not open under the session key");
            frame::decode_body(opened).expect("the sealed answer decodes")
        };

        let Some(Command { key, request }) = command else {
            assert_eq!(
                answer,
                Response::Refused(Refusal::Malformed),
                "a sealed body that is no Command"
            );
            return May::Nothing;
        };
        if !permitted(role, &request) {
            assert_eq!(
                answer,
                Response::Refused(Refusal::NotPermitted),
                "{} answered to a {role:?} session",
                request.name()
            );
            return May::Nothing;
        }
        if !request.changes_therapy() {
            if request == Request::SessionClose {
                assert_eq!(answer, Response::SessionClosed);
            }
            // Only therapy changes change therapy (an acknowledgement may end a halt,
            // which the checks allow).
            return May::Nothing;
        }
        if key.is_none() {
            assert_eq!(
                answer,
                Response::Refused(Refusal::Malformed),
                "a therapy change without a key"
            );
            return May::Nothing;
        }
        if let Some(first) = cached {
            assert!(replayed, "a repeated therapy change was executed again");
            assert_eq!(
                answer, first,
                "a repeated therapy change within the cache lifetime got another answer"
            );
            return May::Nothing;
        }
        if replayed {
            // The same key and body as an earlier change (not the last): its answer again.
            return May::Nothing;
        }
        self.last_keyed = Some(Keyed {
            plain,
            role,
            at: self.link.link_now,
            answer,
        });
        if role == Role::Emergency {
            May::Stop
        } else {
            May::Anything
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    let mut input = data;
    while !input.is_empty() {
        let before = h.link.therapy();
        let op = byte(&mut input);
        let may = match op % 7 {
            0 => {
                let n = usize::from(byte(&mut input));
                let raw = take(&mut input, n).to_vec();
                // The fuzzer never sees the session keys: nothing it sends can open, so
                // nothing it sends is answered under the session.
                h.link.attack(&raw);
                May::Nothing
            }
            1 => {
                let consumed = data.len() - input.len();
                h.genuine_handshake(op / 7, &mut input, &data[..consumed]);
                May::Nothing
            }
            2 => {
                h.forged_handshake(&mut input);
                May::Nothing
            }
            3 | 4 => h.sealed(&mut input),
            6 => {
                let id = h.next_id();
                h.link.attack_frame(id, &mut input);
                May::Nothing
            }
            _ => {
                let step = u64::from(byte(&mut input)) * IDLE_TIMEOUT_MS / 64;
                h.link.advance(step);
                May::Nothing
            }
        };
        h.check_sessions();
        let after = h.link.therapy();
        check_therapy(before, after, may);
    }
});
