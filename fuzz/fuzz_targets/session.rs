//! `session`: the secure-session layer of protocol 3 (forward-secret X25519 handshake,
//! key epochs and rotation, provisioning by key agreement) with every check on. A genuine
//! factory provisions the pump over the link: on blank flash the pump stirs its entropy
//! pool (which makes its static key pair), answers `Identify` (its binding and public
//! key, every epoch 0) and a plain `Provision`, whose confirmation the factory checks;
//! every role key is then at epoch 1. That is the same in every run, so it is done once
//! per process, and every run boots the pump from a copy of the flash it left (stirring
//! its pool, as a platform does at boot). The input is a script of operations against
//! that pump's request server (link clock from 0, device clock from [`BOOT`], both moved
//! together; the pool is stirred again whenever the server asks for entropy):
//!
//! | op byte % 8 | bytes after it | operation |
//! |---|---|---|
//! | 0 | `u8` n, n bytes | raw bytes straight onto the link (the attacker) |
//! | 1 | 16 bytes, `u8` d if downgraded, then the attack script if interleaved | a genuine handshake with the role's key in force; `v = op >> 3`: bit 0 interleaves an attack script between `SessionHello` and `SessionProof`; bits 1–2 the role (0 clinician, 1 emergency, 2 service, 3 patient); bit 3 applies the physical-presence signal first; bit 4 downgrades the binding in the programmer's transcript (`d`, below), as if an attacker had rewritten `Identify` |
//! | 2 | an attacker hello (below), 32 bytes | an attacker's handshake: that `SessionHello`, then a guessed `SessionProof` for its nonce |
//! | 3 | `u8` m, per mode …, then `u8` at, `u8` x if tampered | a genuine sealed request (below); `m & 1` changes byte `at` of its header or body (`^= x \| 1`) and re-frames it |
//! | 4 | `u8` s, … | a programmer holding a stale or wrong key, or a challenge kept for later (below) |
//! | 5 | `u8` s | the clocks move on `s / 64` idle timeouts |
//! | 6 | `u8` f, `u8` n, n bytes | a well-formed plain frame (valid COBS and CRC, `RETRY` from f) with an arbitrary body (the attacker) |
//! | 7 | `u8` k, … | the attacker's key operations (below) |
//!
//! **Sealed plaintexts** (`(m >> 1) % 6`): 0 `u8` n, n bytes as they are; 1 `u8` n, n
//! bytes as a `Command` without key (`0x00` ‖ bytes); 2 8 key bytes, `u8` n, n bytes as a
//! `Command` with that key (`0x01` ‖ key ‖ bytes); 3 the last keyed change again (no
//! bytes); 4 `u8` w: a genuine key rotation, `RotateKey` for role `Role::ALL[w % 4]` at
//! epoch (`(w >> 2) & 3`) in force + 1, in force, in force + 2 or 0, with a fresh random key
//! and idempotency key; 5 `u8` s: a genuine re-provisioning, `Provision` with a fresh
//! ephemeral key (`s & 1 == 0`) or the small-order point `s >> 1` (`fuzz/src/x25519.rs`).
//! A `Provision` in a plaintext of modes 0–2 is sent with the public key of its 32 bytes
//! (the genuine programmer holds the secret of what it sends; small-order points stay).
//! After a rotation or re-provisioning the pump confirmed, the old key of the role (the
//! rotated one; for a re-provisioning role `(s >> 1) % 3` of patient, clinician, service)
//! is checked at once: a hello naming its epoch is refused `StaleKey`, and the challenge to
//! a hello naming the new epoch proves the new key and not the old one; that handshake is
//! completed when the role is the session's, or `w & 0x10` (`s & 0x10`), else kept (op 4,
//! mode 3).
//!
//! **Attacker hello**: `u8` r, `u32` e if `(r >> 2) & 3 == 3`, 16 nonce bytes, `u8` p,
//! then 32 bytes unless `p & 0x80`: `SessionHello` for role `Role::ALL[r % 4]`, epoch (by
//! `(r >> 2) & 3`) in force, in force + 1, in force − 1 or e, that nonce, and as ephemeral
//! key the 32 bytes or the small-order point `p & 0x7f`.
//!
//! **Op 4** (`u8` s; role `Role::ALL[s % 4]`, mode `(s >> 2) & 3`): 0 a retired key of the
//! role (the `s >> 4`-th newest) naming its own epoch, or with none retired the key in
//! force naming epoch `u32` e (made ≠ the epoch in force): refused `StaleKey`; 1 a retired
//! key (with none, 32 bytes as the key) naming the epoch in force: the challenge proves the
//! key in force and not that one, and its holder's proof is refused
//! `AuthenticationFailed`; 2 the key in force: a hello whose challenge is checked and kept
//! unanswered (replacing any kept one); 3 the kept challenge answered now with the key it
//! was made for: it may open a session only if that key is still the one in force.
//!
//! **Op 7** (`u8` k): `k % 4` = 0 a plain `RotateKey` for role `(k >> 2) % 4`, the next
//! epoch, 32 key bytes; 1 a plain `Provision` with 32 bytes, or the small-order point
//! `k >> 3` if `k & 4`; 2 a frame flagged `SEALED` carrying a keyed `RotateKey` `Command`
//! (role `(k >> 2) % 4`, the next epoch, 32 key bytes) in the clear behind a made-up
//! counter and tag; 3 the last genuine sealed frame again, verbatim (a replay).
//!
//! **The interleaved attack script**: `u8` k, then `k % 16` actions, each an action byte
//! `a`: `a % 8` = 0 an attacker hello; 1 by `(a >> 3) % 5`: 0–2 the genuine nonce and
//! ephemeral key for another role (refused `Busy`), 3 the genuine nonce and role with
//! another ephemeral key (32 bytes: the pending challenge again, still bound to the genuine
//! key), 4 the genuine nonce, role and ephemeral key naming another epoch (in force + 1 +
//! `u8`: `StaleKey`); 2 the genuine `SessionHello` repeated; 3 `SessionProof` with the genuine
//! nonce and 32 bytes of wrong proof; 4 `SessionProof` with 16 nonce bytes and 32 proof
//! bytes; 5 `u8` n, n raw bytes; 6 `u8` d: the clocks move `8 d` ms (never 2 s or more in
//! all since the genuine hello: any programmer answers its challenge faster); 7 a plain
//! frame as op 6.
//!
//! **Downgrade** `d`: `d % 4` = 0 protocol version `(d >> 2) % 3`; 1 the capabilities
//! without `KEY_LIFECYCLE`; 2 capability bit `(d >> 2) % 32` flipped; 3 schema-hash bit
//! `(d >> 2) % 32` flipped.
//!
//! The genuine programmers' randomness (nonces, new keys, idempotency keys) is drawn from
//! a hash of all the input before the operation: the attacker sees what goes on the air
//! (the script's actions use it) but cannot send it before the genuine programmer does.
//! Their ephemeral X25519 secrets are picked by it from 64 fixed ones whose public keys
//! are computed once (X25519 is most of a run's work; the attacker gains nothing from
//! knowing a public key that goes on the air anyway).
//!
//! **Invariants**, checked after every step (a model of the pump's keys, therapy and
//! session): no panic; the pump's key epochs and role keys are exactly the model's — they
//! change only through a genuine sealed `RotateKey` answered `KeyRotated` (epoch in force
//! + 1, the role one the session may rotate; any other epoch is refused `StaleKey` with the
//! epoch in force) or a genuine sealed `Provision` of a service session answered
//! `Provisioned` (every key to one epoch above all so far, derived from the agreed secret,
//! the confirmation verifying), never through plain or forged frames, replays, tampered
//! frames or a repeat within the reply cache's lifetime (answered from the cache); a key
//! no longer in force never opens a session (a hello naming its epoch is refused
//! `StaleKey`, a challenge never proves it, a challenge made for it is not completed with
//! it); a sealed answer is only ever sent while the fuzzer holds a genuine session and
//! opens under its key; every open session is one a genuine handshake opened; **plain
//! frames never end or replace the open session**, nor do tampered sealed frames; a
//! guessed proof never opens a session; an emergency `SessionHello` without presence is
//! refused `PresenceRequired`; an emergency session is open only while presence is; an
//! attacker's hello is refused `StaleKey` for any epoch but the one in force, `Malformed`
//! exactly for a small-order ephemeral key (or `Busy`), and otherwise challenged (or
//! `Busy`); every challenge carries a fresh device nonce and a fresh ephemeral key not of
//! small order, unless it repeats the pending challenge of a hello with the same nonce,
//! role and epoch (then whatever the repeat's ephemeral key: the challenge stays bound to
//! the first one); a challenge pending when its role's key changed is never sent again
//! nor completed; the pump's proof
//! verifies under the real binding and not under a downgraded one, and the proof made
//! under a downgraded one is refused; therapy (prescription revision, stopped/running, a
//! running bolus) changes only through a genuine sealed therapy change carrying a key —
//! never through raw bytes, forged handshakes, tampered frames, a change without a key
//! (refused), key operations, or a repeat of a keyed change within the reply cache's
//! lifetime (answered from the cache, with the first answer); an emergency session can
//! only stop therapy. During a genuine handshake: the pump's challenge proves the role
//! key; interleaved attackers' hellos (any role, epoch, nonce or ephemeral key, the genuine
//! nonce for another role, key or epoch) and wrong proofs for the pending nonce do not
//! spoil the pending challenge — a repeated genuine hello gets the same challenge, and the
//! genuine proof opens the session. Answers the pump legitimately withholds (its
//! unauthenticated energy budget spent: `LinkStats::quiet` grew) are accepted.
//!
//! `SESSION_TRACE=1` in the environment prints every request and answer (link time,
//! plain or sealed) to stderr: to see what a corpus input exercises.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use thecal_device::link::server::{Server, CACHE_TTL_MS};
use thecal_device::link::session::{permitted, IDLE_TIMEOUT_MS, MIN_PENDING_MS};
use thecal_device::pump::demo;
use thecal_device::pump::Pump;
use thecal_device::store::flash::RamFlash;
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::therapy::motor::CountingMotor;
use thecal_fuzz::x25519::{is_low_order, low_order_point};
use thecal_protocol::frame::{self, Feed, Flags, FrameDecoder, FrameKind, Header};
use thecal_protocol::message::{
    Capabilities, Command, KeyEpochs, OpKey, Refusal, Request, ResetCause, Response, Revision,
    Role, TherapyState,
};
use thecal_protocol::session::{
    device_nonce, emergency_key, role_key, Binding, Ephemeral, HandshakeKeys, Opener,
    ProvisionKeys, ProvisionTranscript, Sealer, Secret, Transcript, FIRST_EPOCH,
};
use thecal_protocol::time::Timestamp;
use thecal_protocol::{PROTOCOL_VERSION, SCHEMA_HASH};

/// What the platform stirs into the pump's pool at boot (its static key comes from it).
const BOOT_ENTROPY: &[u8] = b"session fuzz target: boot entropy";
/// The factory's ephemeral secret (the provisioning before the script).
const FACTORY: [u8; 32] = [0xFA; 32];
/// Key of the genuine programmers' randomness (see the module docs).
const RNG_KEY: [u8; 32] = [0xA7; 32];
/// Ephemeral secrets the genuine programmers draw from (see [`host_ephemeral`]).
const HOST_EPHEMERALS: usize = 64;
const BOOT: Timestamp = Timestamp(1_000_000);
/// The roles with a stored key, in the order of [`Keys`].
const KEYED: [Role; 3] = [Role::Patient, Role::Clinician, Role::Service];

type S = Server<FlashStore<Box<RamFlashBox>>, CountingMotor>;

/// Whether `SESSION_TRACE` is set (module docs).
fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SESSION_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// `RamFlash` on the heap (it is larger than the fuzzer's stack likes).
#[derive(Clone)]
struct RamFlashBox(RamFlash<FLASH_SIZE>);

impl embedded_storage::nor_flash::ErrorType for Box<RamFlashBox> {
    type Error = thecal_device::store::flash::FlashError;
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

/// What the factory's provisioning leaves: the same in every run, so it is done once per
/// process (its X25519 work would otherwise dominate every run) and every run boots the
/// pump from a copy of the flash it left.
struct Factory {
    flash: Box<RamFlashBox>,
    serial: String,
    binding: Binding,
    public: [u8; 32],
    device_secret: [u8; 32],
}

thread_local! {
    static FACTORY_DONE: OnceLock<Factory> = const { OnceLock::new() };
    static HOST_KEYS: OnceLock<Vec<([u8; 32], [u8; 32])>> = const { OnceLock::new() };
}

/// A genuine programmer's ephemeral X25519 secret and its public key: one of
/// [`HOST_EPHEMERALS`] fixed secrets, picked by the programmer's randomness `r`. Their
/// public keys are computed once (X25519 is most of a run's work); the programmer's
/// nonces, which the attacker must not be able to send first, stay fresh.
fn host_ephemeral(r: [u8; 32]) -> (Ephemeral, [u8; 32]) {
    HOST_KEYS.with(|k| {
        let keys = k.get_or_init(|| {
            (0..HOST_EPHEMERALS)
                .map(|i| {
                    let mut secret = [0x6B; 32];
                    secret[0] = i as u8;
                    (secret, Ephemeral::from_bytes(secret).public())
                })
                .collect()
        });
        let (secret, public) = keys[usize::from(r[0]) % HOST_EPHEMERALS];
        (Ephemeral::from_bytes(secret), public)
    })
}

/// The factory: a new pump on blank flash stirs its pool (its static key pair), answers
/// `Identify` and is provisioned over the link by key agreement, every answer checked.
fn factory() -> Factory {
    let store = FlashStore::new(Box::new(RamFlashBox(RamFlash::new()))).expect("store");
    let prescription = demo::demo_prescription().expect("demo prescription");
    let pump = Pump::boot(
        demo::demo_info(7),
        demo::demo_factory(Timestamp(0), prescription),
        store,
        CountingMotor::default(),
        BOOT,
        ResetCause::PowerOn,
    );
    let serial = pump.serial().to_string();
    let mut server = Box::new(Server::new(pump));
    server.stir(BOOT_ENTROPY);
    let public = server
        .pump()
        .public_key()
        .expect("stirring made the static key");
    let mut link = Link {
        server,
        now: BOOT,
        link_now: Timestamp(0),
        decoder: FrameDecoder::new(),
        stirred: 0,
    };
    let Some(Response::Identity(identity)) = link.plain(1, &Request::Identify) else {
        panic!("no Identity")
    };
    assert_eq!(
        identity.public_key, public,
        "Identify shows another static key"
    );
    assert_eq!(
        identity.key_epochs,
        KeyEpochs::default(),
        "epochs before provisioning"
    );
    assert_eq!(identity.serial.as_str(), serial);
    let binding = Binding {
        version: identity.protocol,
        schema: identity.schema,
        capabilities: identity.capabilities.0,
    };
    assert_eq!(binding, link.server.pump().binding());
    assert_eq!(
        (binding.version, binding.schema),
        (PROTOCOL_VERSION, SCHEMA_HASH)
    );
    assert!(identity.capabilities.has(
        Capabilities::SECURE_SESSION | Capabilities::EMERGENCY_ACCESS | Capabilities::KEY_LIFECYCLE
    ));
    let factory = Ephemeral::from_bytes(FACTORY);
    let ephemeral = factory.public();
    let answer = link.plain(2, &Request::Provision { ephemeral });
    let Some(Response::Provisioned { confirm, epoch }) = answer else {
        panic!("the factory's Provision was answered {answer:?}")
    };
    assert_eq!(epoch, FIRST_EPOCH);
    let agreed = ProvisionKeys::derive(
        &factory
            .agree(&public)
            .expect("the pump's static key is of small order"),
        &ProvisionTranscript {
            serial: &serial,
            pump_public: &public,
            ephemeral: &ephemeral,
        },
    );
    assert!(
        agreed.verify(&confirm),
        "the pump's confirmation does not verify"
    );
    let flash = link.server.pump_mut().storage_mut().clone().into_inner();
    Factory {
        flash,
        serial,
        binding,
        public,
        device_secret: *agreed.device_secret.as_bytes(),
    }
}

/// The model of the pump's keys: what the genuine factory agreed and the genuine
/// programmers rotated since.
struct Keys {
    /// Epoch of each keyed role ([`KEYED`] order).
    epochs: [u32; 3],
    /// The key in force of each keyed role.
    keys: [Secret; 3],
    /// Every key that was in force once and is no longer: role, epoch, key.
    retired: Vec<(Role, u32, Secret)>,
}

fn slot(role: Role) -> Option<usize> {
    KEYED.iter().position(|&r| r == role)
}

impl Keys {
    /// Every key derived from `secret` at `epoch`.
    fn derived(secret: &Secret, epoch: u32, serial: &str) -> [Secret; 3] {
        KEYED.map(|role| role_key(secret, role, epoch, serial))
    }

    fn new(secret: &Secret, epoch: u32, serial: &str) -> Self {
        Keys {
            epochs: [epoch; 3],
            keys: Self::derived(secret, epoch, serial),
            retired: Vec::new(),
        }
    }

    /// The epoch in force of `role` (the emergency role's is always 0).
    fn epoch(&self, role: Role) -> u32 {
        slot(role).map_or(0, |i| self.epochs[i])
    }

    /// The key in force of `role` and its epoch (the emergency key is public).
    fn get(&self, role: Role, serial: &str) -> (u32, Secret) {
        match slot(role) {
            Some(i) => (self.epochs[i], self.keys[i].duplicate()),
            None => (0, emergency_key(serial)),
        }
    }

    fn max_epoch(&self) -> u32 {
        self.epochs.into_iter().max().unwrap_or(0)
    }

    fn as_epochs(&self) -> KeyEpochs {
        KeyEpochs {
            patient: self.epochs[0],
            clinician: self.epochs[1],
            service: self.epochs[2],
        }
    }

    /// `role`'s key is now `key` at `epoch`; returns the old epoch and key.
    fn rotate(&mut self, role: Role, epoch: u32, key: Secret) -> (u32, Secret) {
        let i = slot(role).expect("a keyed role");
        let old_epoch = std::mem::replace(&mut self.epochs[i], epoch);
        let old = std::mem::replace(&mut self.keys[i], key);
        self.retired.push((role, old_epoch, old.duplicate()));
        (old_epoch, old)
    }

    /// Every key derived from a new device secret at `epoch`; returns the old ones.
    fn reprovision(&mut self, secret: &Secret, epoch: u32, serial: &str) -> [(u32, Secret); 3] {
        let keys = Self::derived(secret, epoch, serial);
        let old: Vec<_> = KEYED
            .into_iter()
            .zip(keys)
            .map(|(role, key)| self.rotate(role, epoch, key))
            .collect();
        old.try_into().ok().expect("three keys")
    }

    /// The `n`-th newest retired key of `role`.
    fn retired_of(&self, role: Role, n: usize) -> Option<(u32, Secret)> {
        let of: Vec<_> = self.retired.iter().filter(|r| r.0 == role).collect();
        if of.is_empty() {
            return None;
        }
        let (_, epoch, key) = of[of.len() - 1 - n % of.len()];
        Some((*epoch, key.duplicate()))
    }
}

struct Link {
    server: Box<S>,
    /// Device time.
    now: Timestamp,
    /// Link time (sessions, the energy budget, the reply cache).
    link_now: Timestamp,
    decoder: FrameDecoder,
    /// Times the pool was stirred after it asked for entropy.
    stirred: u64,
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

    /// As a platform: fresh entropy into the pool whenever the server asks for it.
    fn entropy(&mut self) {
        if self.server.wants_entropy() {
            self.stirred += 1;
            let mut entropy = b"session fuzz target: entropy ".to_vec();
            entropy.extend_from_slice(&self.stirred.to_le_bytes());
            self.server.stir(&entropy);
        }
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
        let Some((header, body)) = answers.first() else {
            trace!("{:>9} genuine  {request:?} → (none)", self.link_now.0);
            return None;
        };
        assert!(
            !header.flags.has(Flags::SEALED),
            "sealed answer to a plain frame"
        );
        assert_eq!(header.id, id, "answer with another request's id");
        let answer = frame::decode_body(body).expect("the pump's answer decodes");
        trace!("{:>9} genuine  {request:?} → {answer:?}", self.link_now.0);
        Some(answer)
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
        let answer = self.attack_answer(id, &buf[..n + 1]);
        trace!("{:>9} attacker {request:?} → {answer:?}", self.link_now.0);
        answer
    }

    /// The attacker's frame `wire` with request id `id`; its only answer, if any.
    fn attack_answer(&mut self, id: u16, wire: &[u8]) -> Option<Response> {
        let answers = self.attack(wire);
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

/// The last keyed change the pump executed: a repeat must get its answer again.
struct Keyed {
    plain: Vec<u8>,
    role: Role,
    at: Timestamp,
    answer: Response,
}

/// A genuine programmer's hello that the pump challenged, and what the programmer made
/// of the challenge.
struct Challenged {
    role: Role,
    epoch: u32,
    /// The key the programmer holds (the challenge was checked against it).
    key: Secret,
    nonce: [u8; 16],
    public: [u8; 32],
    /// Device nonce, ephemeral key and proof.
    challenge: ([u8; 16], [u8; 32], [u8; 32]),
    shared: Secret,
    th: [u8; 32],
    keys: HandshakeKeys,
}

/// What a genuine programmer's `SessionHello` got.
enum Hello {
    /// A challenge.
    Challenged(Challenged),
    /// A refusal.
    Refused(Refusal),
    /// No answer (the link was quiet: checked).
    Quiet,
}

/// A challenge the pump sent, to check that every challenge is fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeenChallenge {
    role: Role,
    epoch: u32,
    host_nonce: [u8; 16],
    host_ephemeral: [u8; 32],
    device_ephemeral: [u8; 32],
    proof: [u8; 32],
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

fn u32_le(input: &mut &[u8]) -> u32 {
    u32::from_le_bytes(array::<4>(input))
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// The binding `b` rewritten as the downgrade `d` says (`thecal_fuzz::binding`); never
/// `b` itself.
fn downgraded(b: Binding, d: u8) -> Binding {
    let out = thecal_fuzz::binding::downgraded(b, d);
    assert_ne!(out, b, "a downgrade that changes nothing");
    out
}

/// Which plain answers a hello may get from the pump whatever its slot table holds,
/// given the key model: the checks before any slot is looked at (presence, epoch), and
/// `Malformed` exactly for a small-order ephemeral key; a challenge to a small-order key
/// only when it repeats the pending challenge of the same nonce and role (`seen`: every
/// challenge sent so far, by device nonce).
fn check_hello_answer(
    answer: &Response,
    (role, epoch, nonce): (Role, u32, &[u8; 16]),
    current: u32,
    ephemeral: &[u8; 32],
    presence: bool,
    seen: &HashMap<[u8; 16], SeenChallenge>,
) {
    if role == Role::Emergency && !presence {
        assert_eq!(
            answer,
            &Response::Refused(Refusal::PresenceRequired),
            "an emergency SessionHello without presence"
        );
        return;
    }
    if epoch != current {
        assert_eq!(
            answer,
            &Response::Refused(Refusal::StaleKey { epoch, current }),
            "a {role:?} SessionHello naming epoch {epoch} (in force: {current})"
        );
        return;
    }
    match answer {
        Response::Refused(Refusal::Busy) => {}
        Response::Refused(Refusal::Malformed) => assert!(
            is_low_order(ephemeral),
            "a SessionHello with an ephemeral key not of small order was refused Malformed"
        ),
        Response::SessionChallenge { nonce: dn, .. } => assert!(
            !is_low_order(ephemeral)
                || seen
                    .get(dn)
                    .is_some_and(|c| c.role == role && &c.host_nonce == nonce),
            "a SessionHello with a small-order ephemeral key got a new challenge"
        ),
        other => panic!("a {role:?} SessionHello at the epoch in force was answered {other:?}"),
    }
}

struct Harness {
    link: Link,
    serial: String,
    /// What `Identify` announced.
    binding: Binding,
    /// The pump's static public key.
    public: [u8; 32],
    keys: Keys,
    genuine: Option<Genuine>,
    last_keyed: Option<Keyed>,
    /// The last genuine sealed frame (for replays).
    last_sealed: Option<(u16, Vec<u8>)>,
    /// A genuine challenge kept unanswered (op 4).
    held: Option<Challenged>,
    /// The ephemeral secrets of the `Provision`s the genuine programmers sent.
    factories: Vec<([u8; 32], Secret)>,
    /// Every challenge the pump sent, by device nonce.
    challenges: HashMap<[u8; 16], SeenChallenge>,
    /// Every device ephemeral key the pump sent.
    device_ephemerals: HashSet<[u8; 32]>,
    id: u16,
    /// Whether a re-provisioning was confirmed in this run.
    reprovisioned: bool,
    /// Hash of the input before this operation, and draws made from it.
    seed: u64,
    draws: u64,
}

impl Harness {
    /// The pump the factory provisioned, booted from the flash it left (the platform
    /// stirs its pool at boot).
    fn new() -> Self {
        FACTORY_DONE.with(|f| {
            let f = f.get_or_init(factory);
            let store = FlashStore::new(f.flash.clone()).expect("store");
            let prescription = demo::demo_prescription().expect("demo prescription");
            let pump = Pump::boot(
                demo::demo_info(7),
                demo::demo_factory(Timestamp(0), prescription),
                store,
                CountingMotor::default(),
                BOOT,
                ResetCause::PowerOn,
            );
            let mut server = Box::new(Server::new(pump));
            server.stir(BOOT_ENTROPY);
            let h = Harness {
                link: Link {
                    server,
                    now: BOOT,
                    link_now: Timestamp(0),
                    decoder: FrameDecoder::new(),
                    stirred: 0,
                },
                serial: f.serial.clone(),
                binding: f.binding,
                public: f.public,
                keys: Keys::new(&Secret::new(f.device_secret), FIRST_EPOCH, &f.serial),
                genuine: None,
                last_keyed: None,
                last_sealed: None,
                held: None,
                factories: Vec::new(),
                challenges: HashMap::new(),
                device_ephemerals: HashSet::new(),
                id: 0,
                reprovisioned: false,
                seed: 0,
                draws: 0,
            };
            h.check_keys();
            h
        })
    }

    fn next_id(&mut self) -> u16 {
        self.id = self.id.wrapping_add(1);
        self.id
    }

    /// 32 bytes of the genuine programmers' randomness.
    fn random(&mut self) -> [u8; 32] {
        let key = Secret::new(RNG_KEY);
        self.draws += 1;
        let a = device_nonce(&key, self.seed, 2 * self.draws);
        let b = device_nonce(&key, self.seed, 2 * self.draws + 1);
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&a);
        out[16..].copy_from_slice(&b);
        out
    }

    fn random_op_key(&mut self) -> OpKey {
        let r = self.random();
        let mut k = [0u8; 8];
        k.copy_from_slice(&r[..8]);
        k
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

    /// After every operation: the pump's keys are the model's.
    fn check_keys(&self) {
        let pump = self.link.server.pump();
        assert!(pump.is_provisioned(), "the pump lost its device secret");
        assert_eq!(
            pump.key_epochs(),
            self.keys.as_epochs(),
            "key epochs changed without a genuine rotation or re-provisioning"
        );
        for role in KEYED {
            let (epoch, key) = pump
                .role_key(role)
                .expect("a provisioned pump has every key");
            let (want_epoch, want) = self.keys.get(role, &self.serial);
            assert_eq!(epoch, want_epoch, "{role:?} key epoch");
            assert!(
                key.ct_eq(&want),
                "the {role:?} key changed without a genuine rotation or re-provisioning"
            );
        }
    }

    /// A challenge the pump sent: fresh, unless it repeats the challenge of a hello with
    /// the same nonce, role and epoch (whatever ephemeral key the repeat carries: the
    /// challenge stays bound to the first one).
    fn record_challenge(&mut self, seen: SeenChallenge, device_nonce: [u8; 16]) {
        if let Some(earlier) = self.challenges.get(&device_nonce) {
            assert_eq!(
                earlier,
                &SeenChallenge {
                    host_ephemeral: earlier.host_ephemeral,
                    ..seen
                },
                "a device nonce of an earlier challenge sent again for another hello \
                 (another role, nonce or epoch: a challenge made before a key change?)"
            );
            return;
        }
        assert!(
            !is_low_order(&seen.device_ephemeral),
            "the pump's ephemeral key is of small order"
        );
        assert!(
            self.device_ephemerals.insert(seen.device_ephemeral),
            "the pump sent an ephemeral key of an earlier challenge again, for another hello"
        );
        self.challenges.insert(device_nonce, seen);
    }

    /// A genuine programmer's `SessionHello` for `role` naming `epoch`, holding `key`: a
    /// fresh nonce and ephemeral key. A challenge is checked against `key` and the real
    /// binding (`verifies`: whether it must verify; `Some(false)`: must not).
    fn hello(&mut self, role: Role, epoch: u32, key: Secret, verifies: Option<bool>) -> Hello {
        let nonce: [u8; 16] = self.random()[..16].try_into().expect("16 bytes");
        let (secret, public) = host_ephemeral(self.random());
        self.link.settle();
        let quiet = self.link.quiet();
        let presence = self.link.presence();
        let id = self.next_id();
        let request = Request::SessionHello {
            role,
            epoch,
            nonce,
            ephemeral: public,
        };
        let answer = self.link.plain(id, &request);
        let Some(answer) = answer else {
            assert!(
                self.link.quiet() > quiet,
                "a genuine SessionHello went unanswered though the link was not quiet"
            );
            return Hello::Quiet;
        };
        check_hello_answer(
            &answer,
            (role, epoch, &nonce),
            self.keys.epoch(role),
            &public,
            presence,
            &self.challenges,
        );
        let (dn, de, dp) = match answer {
            Response::SessionChallenge {
                nonce,
                ephemeral,
                proof,
            } => (nonce, ephemeral, proof),
            Response::Refused(refusal) => return Hello::Refused(refusal),
            other => panic!("a genuine SessionHello was answered {other:?}"),
        };
        self.record_challenge(
            SeenChallenge {
                role,
                epoch,
                host_nonce: nonce,
                host_ephemeral: public,
                device_ephemeral: de,
                proof: dp,
            },
            dn,
        );
        let shared = secret
            .agree(&de)
            .expect("the pump's ephemeral key gives an all-zero shared secret");
        let th = Transcript {
            binding: self.binding,
            role,
            epoch,
            serial: &self.serial,
            host_nonce: &nonce,
            host_ephemeral: &public,
            device_nonce: &dn,
            device_ephemeral: &de,
        }
        .hash();
        let keys = HandshakeKeys::derive(&shared, &key, &th);
        if let Some(v) = verifies {
            assert_eq!(
                keys.verify_device_proof(&th, &dp),
                v,
                "the pump's challenge to a {role:?} hello at epoch {epoch} {} the key held",
                if v { "does not prove" } else { "proves" }
            );
        }
        Hello::Challenged(Challenged {
            role,
            epoch,
            key,
            nonce,
            public,
            challenge: (dn, de, dp),
            shared,
            th,
            keys,
        })
    }

    /// The programmer's `SessionProof` for `c`. `may_open`: whether the pump may open a
    /// session for it (the key it was made for is in force); `kept`: the challenge was
    /// kept for a while, and may have expired or been displaced since.
    fn prove(&mut self, c: Challenged, may_open: bool, kept: bool) {
        let role = c.role;
        let quiet = self.link.quiet();
        let before = self.link.session();
        let id = self.next_id();
        let proof = c.keys.host_proof(&c.th);
        let nonce = c.nonce;
        match self.link.plain(id, &Request::SessionProof { nonce, proof }) {
            Some(Response::SessionEstablished) => {
                assert!(
                    may_open,
                    "a {role:?} challenge made for a key no longer in force (epoch {}, rotated \
                     or re-provisioned since) opened a session",
                    c.epoch
                );
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
                let keys = c.keys.into_session();
                self.genuine = Some(Genuine {
                    role,
                    number: open.1,
                    sealer: Sealer::new(&keys.to_device),
                    opener: Opener::new(&keys.to_host),
                });
            }
            None => assert!(
                self.link.quiet() > quiet,
                "a genuine SessionProof went unanswered though the link was not quiet"
            ),
            // An emergency challenge dies with the presence window that allowed it (and
            // its nonce may have been taken by another hello since); and (its key being
            // public) an emergency proof never replaces a clinician or service session,
            // nor opens a second emergency session in one window.
            Some(Response::Refused(Refusal::SessionRequired | Refusal::AuthenticationFailed))
                if role == Role::Emergency && !self.link.presence() =>
            {
                assert_eq!(self.link.session(), before, "the session changed");
            }
            Some(Response::Refused(Refusal::Busy)) if role == Role::Emergency => {
                assert_eq!(self.link.session(), before, "the session changed");
            }
            Some(Response::Refused(Refusal::SessionRequired)) if kept => {
                assert_eq!(self.link.session(), before, "the session changed");
            }
            // A challenge for a key no longer in force: it may be dropped or refused.
            Some(Response::Refused(Refusal::SessionRequired | Refusal::AuthenticationFailed))
                if !may_open =>
            {
                assert_eq!(self.link.session(), before, "the session changed");
            }
            Some(other) => {
                panic!("the genuine proof for a pending challenge was answered {other:?}")
            }
        }
    }

    /// Whether `c` was made for the key in force of its role.
    fn in_force(&self, c: &Challenged) -> bool {
        let (epoch, key) = self.keys.get(c.role, &self.serial);
        epoch == c.epoch && key.ct_eq(&c.key)
    }

    /// Op 1: a genuine handshake, maybe with attacks interleaved.
    fn genuine_handshake(&mut self, v: u8, input: &mut &[u8]) {
        let interleave = v & 1 != 0;
        let role = [
            Role::Clinician,
            Role::Emergency,
            Role::Service,
            Role::Patient,
        ][usize::from(v >> 1) & 3];
        if v & 8 != 0 {
            self.link
                .server
                .apply_presence(self.link.now, self.link.link_now);
        }
        // The fuzzer's say in the programmer's randomness (still unpredictable).
        let mut h = DefaultHasher::new();
        h.write_u64(self.seed);
        h.write(&array::<16>(input));
        self.seed = h.finish();
        let downgrade = (v & 16 != 0).then(|| downgraded(self.binding, byte(input)));
        let (epoch, key) = self.keys.get(role, &self.serial);
        let c = match self.hello(role, epoch, key, Some(true)) {
            Hello::Challenged(c) => c,
            Hello::Quiet | Hello::Refused(_) => return,
        };
        if interleave {
            self.interleave(input, &c);
        }
        match downgrade {
            None => self.prove(c, true, false),
            Some(b) => self.downgraded_proof(c, b),
        }
    }

    /// The programmer was shown `binding` instead of the pump's: the pump's proof must not
    /// verify under it, and a proof made under it is refused.
    fn downgraded_proof(&mut self, c: Challenged, binding: Binding) {
        let (dn, de, dp) = c.challenge;
        let th = Transcript {
            binding,
            role: c.role,
            epoch: c.epoch,
            serial: &self.serial,
            host_nonce: &c.nonce,
            host_ephemeral: &c.public,
            device_nonce: &dn,
            device_ephemeral: &de,
        }
        .hash();
        let keys = HandshakeKeys::derive(&c.shared, &c.key, &th);
        assert!(
            !keys.verify_device_proof(&th, &dp),
            "the pump's proof verifies under a downgraded binding {binding:?}"
        );
        let quiet = self.link.quiet();
        let before = self.link.session();
        let id = self.next_id();
        let proof = keys.host_proof(&th);
        let answer = self.link.plain(
            id,
            &Request::SessionProof {
                nonce: c.nonce,
                proof,
            },
        );
        let ok = match answer {
            None => self.link.quiet() > quiet,
            Some(Response::Refused(Refusal::AuthenticationFailed)) => true,
            Some(Response::Refused(Refusal::SessionRequired)) => {
                c.role == Role::Emergency && !self.link.presence()
            }
            Some(_) => false,
        };
        assert!(
            ok,
            "a proof made under a downgraded binding was answered {answer:?}"
        );
        assert_eq!(self.link.session(), before, "the session changed");
    }

    /// An attacker's `SessionHello` (module docs); checked; returns its nonce.
    fn attacker_hello(&mut self, input: &mut &[u8]) -> [u8; 16] {
        let r = byte(input);
        let role = Role::ALL[usize::from(r) % 4];
        let current = self.keys.epoch(role);
        let epoch = match (r >> 2) & 3 {
            0 => current,
            1 => current.wrapping_add(1),
            2 => current.wrapping_sub(1),
            _ => u32_le(input),
        };
        let nonce = array::<16>(input);
        let p = byte(input);
        let ephemeral = if p & 0x80 != 0 {
            low_order_point(usize::from(p & 0x7f))
        } else {
            array::<32>(input)
        };
        self.link.settle();
        let presence = self.link.presence();
        let quiet = self.link.quiet();
        let id = self.next_id();
        let request = Request::SessionHello {
            role,
            epoch,
            nonce,
            ephemeral,
        };
        match self.link.attack_request(id, &request) {
            None => assert!(
                self.link.quiet() > quiet,
                "an attacker's SessionHello went unanswered though the link was not quiet"
            ),
            Some(answer) => {
                check_hello_answer(
                    &answer,
                    (role, epoch, &nonce),
                    current,
                    &ephemeral,
                    presence,
                    &self.challenges,
                );
                if let Response::SessionChallenge {
                    nonce: dn,
                    ephemeral: de,
                    proof,
                } = answer
                {
                    self.record_challenge(
                        SeenChallenge {
                            role,
                            epoch,
                            host_nonce: nonce,
                            host_ephemeral: ephemeral,
                            device_ephemeral: de,
                            proof,
                        },
                        dn,
                    );
                }
            }
        }
        nonce
    }

    /// An attacker's `SessionProof` that is not the genuine one: never opens a session.
    fn attacker_proof(&mut self, nonce: [u8; 16], proof: [u8; 32]) {
        let quiet = self.link.quiet();
        let id = self.next_id();
        let answer = self
            .link
            .attack_request(id, &Request::SessionProof { nonce, proof });
        let ok = match answer {
            None => self.link.quiet() > quiet,
            Some(Response::Refused(Refusal::AuthenticationFailed | Refusal::SessionRequired)) => {
                true
            }
            Some(_) => false,
        };
        assert!(ok, "a guessed proof was answered {answer:?}");
    }

    /// Attacks between a genuine `SessionHello` and its `SessionProof`.
    fn interleave(&mut self, input: &mut &[u8], c: &Challenged) {
        let (role, epoch, nonce, public) = (c.role, c.epoch, c.nonce, c.public);
        let proof = c.keys.host_proof(&c.th);
        let mut elapsed = 0;
        for _ in 0..byte(input) % 16 {
            let a = byte(input);
            let id = self.next_id();
            let presence = self.link.presence();
            let quiet = self.link.quiet();
            match a % 8 {
                0 => {
                    self.attacker_hello(input);
                }
                1 => {
                    let sub = (a >> 3) % 5;
                    let (other, e, ephemeral) = match sub {
                        0..=2 => {
                            let other = Role::ALL[(role.index() + 1 + usize::from(sub)) % 4];
                            (other, self.keys.epoch(other), public)
                        }
                        3 => {
                            let mut e = array::<32>(input);
                            if e == public {
                                e[0] ^= 1;
                            }
                            (role, epoch, e)
                        }
                        _ => (role, epoch.wrapping_add(1 + u32::from(byte(input))), public),
                    };
                    let answer = self.link.attack_request(
                        id,
                        &Request::SessionHello {
                            role: other,
                            epoch: e,
                            nonce,
                            ephemeral,
                        },
                    );
                    if role == Role::Emergency && !self.link.presence() {
                        // The presence window closed: the emergency challenge went with
                        // it, and its nonce is free again.
                        if let Some(answer) = &answer {
                            check_hello_answer(
                                answer,
                                (other, e, &nonce),
                                self.keys.epoch(other),
                                &ephemeral,
                                presence,
                                &self.challenges,
                            );
                        }
                        continue;
                    }
                    let ok = match answer {
                        None => self.link.quiet() > quiet,
                        Some(Response::Refused(Refusal::PresenceRequired)) => {
                            other == Role::Emergency && !presence
                        }
                        Some(Response::Refused(Refusal::StaleKey {
                            epoch: named,
                            current,
                        })) => named == e && current == self.keys.epoch(other) && e != current,
                        // The same nonce for another role would spoil the pending one.
                        Some(Response::Refused(Refusal::Busy)) => {
                            other != role && e == self.keys.epoch(other)
                        }
                        // The same nonce and role with another key: the pending challenge
                        // again (it stays bound to the genuine key, of no use to another).
                        Some(Response::SessionChallenge {
                            nonce,
                            ephemeral,
                            proof,
                        }) => other == role && (nonce, ephemeral, proof) == c.challenge,
                        Some(_) => false,
                    };
                    assert!(
                        ok,
                        "a SessionHello for {other:?} at epoch {e} with the pending {role:?} \
                         nonce (action {sub}) was answered {answer:?}"
                    );
                }
                2 => {
                    let answer = self.link.attack_request(
                        id,
                        &Request::SessionHello {
                            role,
                            epoch,
                            nonce,
                            ephemeral: public,
                        },
                    );
                    let ok = match answer {
                        None => self.link.quiet() > quiet,
                        Some(Response::SessionChallenge {
                            nonce,
                            ephemeral,
                            proof,
                        }) => (nonce, ephemeral, proof) == c.challenge,
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
                        // The presence window closed: the emergency challenge went with it.
                        Some(Response::Refused(Refusal::SessionRequired)) => {
                            role == Role::Emergency && !self.link.presence()
                        }
                        Some(_) => false,
                    };
                    assert!(
                        ok,
                        "a wrong proof for the pending challenge was answered {answer:?}"
                    );
                }
                4 => {
                    let nonce = array::<16>(input);
                    let mut guess = array::<32>(input);
                    if guess == proof {
                        guess[0] ^= 1;
                    }
                    self.attacker_proof(nonce, guess);
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
        let nonce = self.attacker_hello(input);
        let proof = array::<32>(input);
        self.attacker_proof(nonce, proof);
    }

    /// Op 4: a programmer holding a stale or wrong key, or a kept challenge.
    fn stale(&mut self, input: &mut &[u8]) {
        let s = byte(input);
        let role = Role::ALL[usize::from(s) % 4];
        let current = self.keys.epoch(role);
        let retired = self.keys.retired_of(role, usize::from(s >> 4));
        match (s >> 2) & 3 {
            0 => {
                let (epoch, key) = match retired {
                    Some(r) => r,
                    None => {
                        let mut e = u32_le(input);
                        if e == current {
                            e = e.wrapping_add(1);
                        }
                        (e, self.keys.get(role, &self.serial).1)
                    }
                };
                // `hello` checks the refusal: StaleKey naming both epochs.
                match self.hello(role, epoch, key, None) {
                    Hello::Challenged(_) => panic!("a hello naming a stale epoch was challenged"),
                    Hello::Quiet | Hello::Refused(_) => {}
                }
            }
            1 => {
                let key = match retired {
                    Some((_, key)) => key,
                    None => {
                        let mut k = array::<32>(input);
                        if k == *self.keys.get(role, &self.serial).1.as_bytes() {
                            k[0] ^= 1;
                        }
                        Secret::new(k)
                    }
                };
                if let Hello::Challenged(c) = self.hello(role, current, key, Some(false)) {
                    // The challenge proves the key in force.
                    let (_, in_force) = self.keys.get(role, &self.serial);
                    let (_, _, dp) = c.challenge;
                    assert!(
                        HandshakeKeys::derive(&c.shared, &in_force, &c.th)
                            .verify_device_proof(&c.th, &dp),
                        "the pump's challenge does not prove the {role:?} key in force"
                    );
                    let quiet = self.link.quiet();
                    let before = self.link.session();
                    let id = self.next_id();
                    let proof = c.keys.host_proof(&c.th);
                    let answer = self.link.plain(
                        id,
                        &Request::SessionProof {
                            nonce: c.nonce,
                            proof,
                        },
                    );
                    let ok = match answer {
                        None => self.link.quiet() > quiet,
                        Some(Response::Refused(Refusal::AuthenticationFailed)) => true,
                        Some(Response::Refused(Refusal::SessionRequired)) => {
                            role == Role::Emergency && !self.link.presence()
                        }
                        Some(_) => false,
                    };
                    assert!(
                        ok,
                        "the proof of a {role:?} key not in force was answered {answer:?}"
                    );
                    assert_eq!(self.link.session(), before, "the session changed");
                }
            }
            2 => {
                let (epoch, key) = self.keys.get(role, &self.serial);
                if let Hello::Challenged(c) = self.hello(role, epoch, key, Some(true)) {
                    self.held = Some(c);
                }
            }
            _ => {
                if let Some(c) = self.held.take() {
                    let may_open = self.in_force(&c);
                    self.prove(c, may_open, true);
                }
            }
        }
    }

    /// After a confirmed rotation or re-provisioning of `role`'s key (old: `old`): a hello
    /// with the old key naming its epoch is refused `StaleKey`; a hello naming the new epoch
    /// is challenged with a proof of the new key, not of the old one; that handshake is
    /// completed (`complete`, or the role is the session's) or kept.
    fn check_new_key(&mut self, role: Role, old: (u32, Secret), complete: bool) {
        let (old_epoch, old_key) = old;
        match self.hello(role, old_epoch, old_key.duplicate(), None) {
            Hello::Challenged(_) => {
                panic!("a hello naming the {role:?} epoch just retired was challenged")
            }
            Hello::Refused(r) => assert_eq!(
                r,
                Refusal::StaleKey {
                    epoch: old_epoch,
                    current: self.keys.epoch(role)
                }
            ),
            Hello::Quiet => return,
        }
        let (epoch, key) = self.keys.get(role, &self.serial);
        let Hello::Challenged(c) = self.hello(role, epoch, key, Some(true)) else {
            return;
        };
        let (_, _, dp) = c.challenge;
        assert!(
            !HandshakeKeys::derive(&c.shared, &old_key, &c.th).verify_device_proof(&c.th, &dp),
            "the pump's challenge for the new {role:?} key proves the old one"
        );
        if complete || self.genuine.as_ref().is_some_and(|g| g.role == role) {
            self.prove(c, true, false);
        } else {
            self.held = Some(c);
        }
    }

    /// Op 7: the attacker's key operations; nothing may change (checked after the op).
    fn key_attack(&mut self, input: &mut &[u8]) {
        let k = byte(input);
        self.link.settle();
        let role = Role::ALL[usize::from(k >> 2) % 4];
        let next = self.keys.epoch(role).wrapping_add(1);
        let quiet = self.link.quiet();
        let open = self.link.session().is_some();
        let id = self.next_id();
        let (answer, refusal) = match k % 4 {
            0 => {
                let key = array::<32>(input);
                let request = Request::RotateKey {
                    role,
                    epoch: next,
                    key,
                };
                (
                    self.link.attack_request(id, &request),
                    Some(Refusal::SessionRequired),
                )
            }
            1 => {
                let ephemeral = if k & 4 != 0 {
                    low_order_point(usize::from(k >> 3))
                } else {
                    array::<32>(input)
                };
                let request = Request::Provision { ephemeral };
                (
                    self.link.attack_request(id, &request),
                    Some(Refusal::NotPermitted),
                )
            }
            2 => {
                let key = array::<32>(input);
                let command = Command {
                    key: Some([0x5A; 8]),
                    request: Request::RotateKey {
                        role,
                        epoch: next,
                        key,
                    },
                };
                let mut body = postcard::to_allocvec(&command).expect("encodes");
                body.extend_from_slice(&[0x11; 20]);
                let header = Header {
                    kind: FrameKind::Request,
                    id,
                    flags: Flags(Flags::SEALED),
                };
                let mut wire = vec![0u8; 2 * body.len() + 32];
                let n = frame::encode_raw(header, &body, &mut wire[1..]).expect("fits");
                wire.truncate(n + 1);
                let answer = self.link.attack_answer(id, &wire);
                (answer, (!open).then_some(Refusal::SessionRequired))
            }
            _ => {
                let Some((sealed_id, wire)) = self.last_sealed.clone() else {
                    return;
                };
                let answers = self.link.attack(&wire);
                assert!(answers.len() <= 1, "two answers to one frame");
                let answer = answers.first().map(|(header, body)| {
                    assert_eq!(header.id, sealed_id, "answer with another request's id");
                    frame::decode_body(body).expect("the pump's answer decodes")
                });
                (answer, (!open).then_some(Refusal::SessionRequired))
            }
        };
        let ok = match (&answer, refusal) {
            (None, _) => refusal.is_none() || self.link.quiet() > quiet,
            (Some(Response::Refused(got)), Some(want)) => *got == want,
            (Some(_), _) => false,
        };
        assert!(
            ok,
            "the attacker's key operation {} was answered {answer:?} (session open: {open})",
            k % 4
        );
    }

    /// Op 3: a genuine sealed request, maybe tampered with. Returns what it may do to
    /// therapy.
    fn sealed(&mut self, input: &mut &[u8]) -> May {
        let m = byte(input);
        let tamper = m & 1 == 1;
        let mode = (m >> 1) % 6;
        let repeat = mode == 3;
        // The role to check after a key change, and whether to complete its handshake.
        let mut follow = (Role::Clinician, false);
        let mut plain = match mode {
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
            3 => self
                .last_keyed
                .as_ref()
                .map(|k| k.plain.clone())
                .unwrap_or_default(),
            4 => {
                let w = byte(input);
                let role = Role::ALL[usize::from(w) % 4];
                let current = self.keys.epoch(role);
                let epoch = match (w >> 2) & 3 {
                    0 => current.wrapping_add(1),
                    1 => current,
                    2 => current.wrapping_add(2),
                    _ => 0,
                };
                follow = (role, w & 0x10 != 0);
                let key = self.random();
                let command = Command {
                    key: Some(self.random_op_key()),
                    request: Request::RotateKey { role, epoch, key },
                };
                postcard::to_allocvec(&command).expect("encodes")
            }
            _ => {
                let s = byte(input);
                let ephemeral = if s & 1 != 0 {
                    low_order_point(usize::from(s >> 1))
                } else {
                    let (secret, public) = host_ephemeral(self.random());
                    self.factories
                        .push((public, Secret::new(*secret.as_secret().as_bytes())));
                    public
                };
                follow = (KEYED[usize::from(s >> 1) % 3], s & 0x10 != 0);
                let command = Command {
                    key: Some(self.random_op_key()),
                    request: Request::Provision { ephemeral },
                };
                postcard::to_allocvec(&command).expect("encodes")
            }
        };
        if mode <= 2 {
            // A Provision carries the public key of the secret the programmer holds.
            if let Ok(Command {
                key,
                request: Request::Provision { ephemeral },
            }) = frame::decode_body::<Command>(&plain)
            {
                if !is_low_order(&ephemeral) {
                    let public = Ephemeral::from_bytes(ephemeral).public();
                    self.factories.push((public, Secret::new(ephemeral)));
                    let command = Command {
                        key,
                        request: Request::Provision { ephemeral: public },
                    };
                    plain = postcard::to_allocvec(&command).expect("encodes");
                }
            }
        }
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
        self.last_sealed = Some((id, wire.clone()));
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
        trace!(
            "{:>9} sealed   {:?} → {answer:?}",
            self.link.link_now.0,
            frame::decode_body::<Command>(&plain).map(|c| c.request)
        );

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
        if !request.changes_state() {
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
                "a change without a key"
            );
            return May::Nothing;
        }
        if let Some(first) = cached {
            assert!(replayed, "a repeated change was executed again");
            assert_eq!(
                answer, first,
                "a repeated change within the cache lifetime got another answer"
            );
            return May::Nothing;
        }
        if replayed {
            // The same key and body as an earlier change (not the last): its answer again.
            return May::Nothing;
        }
        let may = match &request {
            Request::RotateKey {
                role: whose,
                epoch,
                key: new,
            } => {
                let current = self.keys.epoch(*whose);
                if Some(*epoch) == current.checked_add(1) {
                    assert_eq!(
                        answer,
                        Response::KeyRotated {
                            role: *whose,
                            epoch: *epoch
                        },
                        "a rotation of the {whose:?} key to the next epoch"
                    );
                    let old = self.keys.rotate(*whose, *epoch, Secret::new(*new));
                    self.check_new_key(*whose, old, mode == 4 && follow.1);
                } else {
                    assert_eq!(
                        answer,
                        Response::Refused(Refusal::StaleKey {
                            epoch: *epoch,
                            current
                        }),
                        "a rotation of the {whose:?} key to epoch {epoch} (in force: {current})"
                    );
                }
                May::Nothing
            }
            Request::Provision { ephemeral } => {
                if is_low_order(ephemeral) {
                    assert_eq!(
                        answer,
                        Response::Refused(Refusal::Malformed),
                        "a re-provisioning with a small-order ephemeral key"
                    );
                } else {
                    let Response::Provisioned { confirm, epoch } = answer else {
                        panic!("a genuine re-provisioning was answered {answer:?}")
                    };
                    assert_eq!(
                        Some(epoch),
                        self.keys.max_epoch().checked_add(1),
                        "re-provisioned to an epoch not above every one so far"
                    );
                    let secret = self
                        .factories
                        .iter()
                        .find(|(p, _)| p == ephemeral)
                        .map(|(_, s)| Ephemeral::from_bytes(*s.as_bytes()))
                        .expect("the programmer holds the secret of its Provision");
                    let agreed = ProvisionKeys::derive(
                        &secret
                            .agree(&self.public)
                            .expect("the pump's static key is of small order"),
                        &ProvisionTranscript {
                            serial: &self.serial,
                            pump_public: &self.public,
                            ephemeral,
                        },
                    );
                    assert!(
                        agreed.verify(&confirm),
                        "the pump's re-provisioning confirmation does not verify"
                    );
                    let old = self
                        .keys
                        .reprovision(&agreed.device_secret, epoch, &self.serial);
                    self.reprovisioned = true;
                    let (whose, complete) = follow;
                    let i = slot(whose).expect("a keyed role");
                    let old = old.into_iter().nth(i).expect("three keys");
                    self.check_new_key(whose, old, mode == 5 && complete);
                }
                May::Nothing
            }
            _ if role == Role::Emergency => May::Stop,
            _ => May::Anything,
        };
        self.last_keyed = Some(Keyed {
            plain,
            role,
            at: self.link.link_now,
            answer,
        });
        may
    }
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    let mut input = data;
    while !input.is_empty() {
        h.seed = hash(&data[..data.len() - input.len()]);
        h.draws = 0;
        let before = h.link.therapy();
        let op = byte(&mut input);
        let may = match op % 8 {
            0 => {
                let n = usize::from(byte(&mut input));
                let raw = take(&mut input, n).to_vec();
                // The fuzzer never sees the session keys: nothing it sends can open, so
                // nothing it sends is answered under the session.
                h.link.attack(&raw);
                May::Nothing
            }
            1 => {
                h.genuine_handshake(op >> 3, &mut input);
                May::Nothing
            }
            2 => {
                h.forged_handshake(&mut input);
                May::Nothing
            }
            3 => h.sealed(&mut input),
            4 => {
                h.stale(&mut input);
                May::Nothing
            }
            5 => {
                let step = u64::from(byte(&mut input)) * IDLE_TIMEOUT_MS / 64;
                trace!("{:>9} clock +{step} ms", h.link.link_now.0);
                h.link.advance(step);
                May::Nothing
            }
            6 => {
                let id = h.next_id();
                h.link.attack_frame(id, &mut input);
                May::Nothing
            }
            _ => {
                h.key_attack(&mut input);
                May::Nothing
            }
        };
        h.link.entropy();
        h.check_sessions();
        h.check_keys();
        let after = h.link.therapy();
        check_therapy(before, after, may);
    }
    if h.reprovisioned {
        // A re-provisioning rewrote the secrets record: the static key must survive it.
        assert_eq!(
            h.link.server.pump().public_key(),
            Some(h.public),
            "the pump's static key changed"
        );
    }
});
