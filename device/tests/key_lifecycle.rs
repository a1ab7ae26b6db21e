//! Protocol 3's key lifecycle over the real request server: forward secrecy of a recorded
//! session, key rotation (who may, epochs, the reply cache, the log, reboots), power cuts
//! during a rotation, an eavesdropper on provisioning, secrets kept apart from therapy,
//! re-provisioning and downgrade attempts.

mod common;

use std::collections::BTreeSet;

use common::client::{self, frames, plain_answer, plain_frame, Failure, Hello, Peer, RoleKey};
use common::*;
use thecal_device::link::server::Server;
use thecal_device::pump::Pump;
use thecal_device::store::flash::RamFlash;
use thecal_device::store::layout::{LOG_OFFSET, PRESCRIPTION_OFFSET, SECRETS_OFFSET};
use thecal_device::store::FlashStore;
use thecal_device::therapy::battery::BatteryConfig;
use thecal_device::therapy::motor::CountingMotor;
use thecal_protocol::frame::{decode_body, Flags, HEADER_LEN};
use thecal_protocol::message::{
    AlarmKind, BolusRequest, Command, Event, KeyEpochs, Refusal, Request, ResetCause, Response,
    Revision, Role, TherapyState,
};
use thecal_protocol::session::{
    emergency_key, nonce_key, Ephemeral, HandshakeKeys, Opener, Pool, Secret, Transcript,
};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

/// Link time between two handshakes: what the unauthenticated budget refills for a
/// refused or failed one (its frames and answers), so a long test never goes quiet.
const HANDSHAKE_GAP_MS: u64 = 6 * 60_000;

/// A provisioned pump on a link whose clock moves on with every handshake.
struct Bench {
    server: TestServer,
    device_secret: Secret,
    t: Timestamp,
    nonce: u64,
    id: u16,
}

impl Bench {
    fn new() -> Bench {
        let (server, device_secret) = provisioned_server(continuous(100), Nanolitres::from_ml(18));
        Bench {
            server,
            device_secret,
            t: BOOT,
            nonce: 0,
            id: 0,
        }
    }

    /// The key of `role` at `epoch` the factory derived.
    fn factory_key(&self, role: Role, epoch: u32) -> RoleKey {
        RoleKey::derived(&self.device_secret, role, epoch, SERIAL)
    }

    fn next_nonce(&mut self) -> [u8; 16] {
        self.nonce += 1;
        (u128::from(self.nonce) | 0xB0 << 120).to_le_bytes()
    }

    /// A handshake with `key`, after [`HANDSHAKE_GAP_MS`] of link time.
    fn open(&mut self, key: &RoleKey) -> Result<client::Session, Failure> {
        self.t = self.t.plus_ms(HANDSHAKE_GAP_MS);
        let nonce = self.next_nonce();
        let peer = peer(&self.server);
        client::handshake(
            &mut exchange_at(&mut self.server, self.t),
            key,
            &peer,
            nonce,
        )
    }

    /// An emergency session: the magnet applied, then the handshake at once.
    fn open_emergency(&mut self) -> Result<client::Session, Failure> {
        self.t = self.t.plus_ms(HANDSHAKE_GAP_MS);
        self.server.apply_presence(self.t, self.t);
        let nonce = self.next_nonce();
        let peer = peer(&self.server);
        let key = RoleKey::emergency(SERIAL);
        client::handshake(
            &mut exchange_at(&mut self.server, self.t),
            &key,
            &peer,
            nonce,
        )
    }

    /// The pump's answer to a hello with `key` (after [`HANDSHAKE_GAP_MS`]).
    fn hello(&mut self, key: &RoleKey) -> Response {
        self.t = self.t.plus_ms(HANDSHAKE_GAP_MS);
        let nonce = self.next_nonce();
        let frame = Hello::with(key, nonce).frame(1);
        plain_answer(&exchange_at(&mut self.server, self.t)(&frame))
    }

    /// Whether `key` opens a session (the handshake completes both ways).
    fn opens(&mut self, key: &RoleKey) -> bool {
        self.open(key).is_ok()
    }

    fn call(&mut self, s: &mut client::Session, request: &Request) -> Response {
        self.id += 1;
        s.request(&mut exchange_at(&mut self.server, self.t), self.id, request)
    }

    fn rotate(&mut self, s: &mut client::Session, key: &RoleKey) -> Response {
        let rotate = Request::RotateKey {
            role: key.role,
            epoch: key.epoch,
            key: *key.key.as_bytes(),
        };
        self.call(s, &rotate)
    }

    /// A reset: the same flash, a new pump core and server (RAM state lost), at link and
    /// device time `t`.
    fn reboot(self) -> Bench {
        let mut flash = self.server.into_pump().into_storage().into_inner();
        flash.reboot();
        Bench {
            server: boot_server(flash, self.t),
            ..self
        }
    }
}

/// A pump core booted at `now` over `flash` behind a server, stirred as a platform does.
fn boot_server(flash: RamFlash<FLASH>, now: Timestamp) -> TestServer {
    let pump = Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(100), Nanolitres::from_ml(18)),
        FlashStore::new(flash).expect("store mounts"),
        CountingMotor::default(),
        now,
        ResetCause::PowerOn,
    );
    let mut server = Server::new_at(pump, now);
    server.stir(&ENTROPY);
    server
}

/// A new key for `role` at `epoch` (random, as a programmer draws it).
fn new_key(role: Role, epoch: u32, fill: u8) -> RoleKey {
    RoleKey {
        role,
        epoch,
        key: Secret::new([fill; 32]),
    }
}

fn stale(epoch: u32, current: u32) -> Response {
    Response::Refused(Refusal::StaleKey { epoch, current })
}

// ---------------------------------------------------------------------------------------
// Forward secrecy.

/// Bytes on the link, in order, with their direction.
#[derive(Default)]
struct Recording {
    /// (sent by the programmer, bytes).
    chunks: Vec<(bool, Vec<u8>)>,
}

impl Recording {
    /// An exchange with `server` at `now` that records both directions.
    fn tap<'a>(
        &'a mut self,
        server: &'a mut TestServer,
        now: Timestamp,
    ) -> impl FnMut(&[u8]) -> Vec<u8> + 'a {
        move |bytes: &[u8]| {
            self.chunks.push((true, bytes.to_vec()));
            let out = exchange_at(server, now)(bytes);
            self.chunks.push((false, out.clone()));
            out
        }
    }

    /// Every frame recorded: (from the programmer, header bytes, body).
    fn frames(&self) -> Vec<(bool, [u8; HEADER_LEN], Vec<u8>)> {
        self.chunks
            .iter()
            .flat_map(|(up, bytes)| {
                frames(bytes)
                    .into_iter()
                    .map(move |a| (*up, a.header.to_bytes(), a.body))
            })
            .collect()
    }

    /// All bytes seen, both directions.
    fn bytes(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|(_, b)| b.clone()).collect()
    }
}

/// Every distinct 32-byte window of `bytes`.
fn windows(bytes: &[u8]) -> BTreeSet<[u8; 32]> {
    bytes
        .windows(32)
        .map(|w| w.try_into().expect("32 bytes"))
        .collect()
}

/// Whether `body` (sealed under `header`) opens with `key`.
fn opens_with(key: &Secret, header: &[u8; HEADER_LEN], body: &[u8]) -> bool {
    let mut copy = body.to_vec();
    Opener::new(key).open(header, &mut copy).is_ok()
}

#[test]
fn a_recorded_session_stays_secret_after_the_role_key_and_the_device_secret_leak() {
    let mut b = Bench::new();
    // The platform's RNG: bytes no attacker ever sees.
    b.server
        .stir(&thecal_device::sim::keys::random_secret().unwrap());
    let t = b.t;
    let key = key_in_force(&b.server, Role::Clinician);
    let mut rec = Recording::default();
    // A programmer's whole visit: Identify, the handshake, a status, a therapy change.
    let identity = plain_answer(&rec.tap(&mut b.server, t)(&plain_frame(
        1,
        &Request::Identify,
    )));
    let Response::Identity(identity) = identity else {
        panic!("{identity:?}")
    };
    let peer = Peer::from_identity(&identity);
    let mut s = client::handshake(&mut rec.tap(&mut b.server, t), &key, &peer, [0x3C; 16])
        .expect("handshake");
    let write = Request::WritePrescription {
        expected: Revision(1),
        prescription: flexible().into(),
    };
    let bolus = Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms::from_ug(20),
        duration: Minutes(5),
    });
    let sent = [Request::Status, write, bolus];
    let mut answers = Vec::new();
    for (i, r) in sent.iter().enumerate() {
        answers.push(s.request(&mut rec.tap(&mut b.server, t), 10 + i as u16, r));
    }
    assert!(matches!(answers[0], Response::Status(_)), "{answers:?}");
    assert_eq!(
        answers[1],
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    assert!(
        matches!(answers[2], Response::BolusStarted(_)),
        "{answers:?}"
    );

    // What the attacker reads off the recording: the transcript (Identify, hello and
    // challenge are in the clear) and the sealed frames.
    let recorded = rec.frames();
    let plain = |up: bool| {
        recorded
            .iter()
            .filter(move |(u, h, _)| *u == up && h[4] & Flags::SEALED == 0)
            .map(|(_, _, body)| body.clone())
    };
    let hello = plain(true)
        .filter_map(|body| decode_body::<Request>(&body).ok())
        .find_map(|r| match r {
            Request::SessionHello {
                role,
                epoch,
                nonce,
                ephemeral,
            } => Some((role, epoch, nonce, ephemeral)),
            _ => None,
        })
        .expect("a recorded hello");
    let challenge = plain(false)
        .filter_map(|body| decode_body::<Response>(&body).ok())
        .find_map(|r| client::Challenge::of(&r))
        .expect("a recorded challenge");
    let th = Transcript {
        binding: peer.binding,
        role: hello.0,
        epoch: hello.1,
        serial: &peer.serial,
        host_nonce: &hello.2,
        host_ephemeral: &hello.3,
        device_nonce: &challenge.nonce,
        device_ephemeral: &challenge.ephemeral,
    }
    .hash();
    assert_eq!(th, s.th, "the attacker has the whole transcript");
    let sealed: Vec<(bool, [u8; HEADER_LEN], Vec<u8>)> = recorded
        .iter()
        .filter(|(_, h, _)| h[4] & Flags::SEALED != 0)
        .cloned()
        .collect();
    assert_eq!(sealed.len(), 2 * sent.len());

    // Later the attacker obtains the role key, the device secret and the whole secrets
    // region of the flash (static key included).
    let (_, role_key) = b.server.pump().role_key(Role::Clinician).unwrap();
    let device_secret = b.device_secret.duplicate();
    let nonce_key = nonce_key(&device_secret, SERIAL);
    let flash = b
        .server
        .pump_mut()
        .storage_mut()
        .flash()
        .as_bytes()
        .to_vec();
    let secrets_region = &flash[SECRETS_OFFSET as usize..PRESCRIPTION_OFFSET as usize];
    let stored = windows(secrets_region);
    // What might stand in for the shared secret: every key it has, the public values of
    // the handshake, zeros, the shared secrets its keys make with the public keys when
    // used as X25519 secrets, and the pump's ephemeral secret as its pool would draw it
    // without the platform's entropy (seeded from the nonce key or the public emergency
    // key and the boot epoch, stirred or not with the tests' boot entropy).
    let public_key = b.server.pump().public_key().unwrap();
    let mut dh: Vec<Secret> = vec![
        role_key.duplicate(),
        device_secret.duplicate(),
        nonce_key.duplicate(),
        Secret::new(hello.3),
        Secret::new(challenge.ephemeral),
        Secret::new(public_key),
        Secret::new([0; 32]),
        Secret::new(th),
        Secret::new(challenge.proof),
    ];
    for secret in [&role_key, &device_secret, &nonce_key] {
        let as_x25519 = Ephemeral::from_bytes(*secret.as_bytes());
        dh.extend(as_x25519.agree(&hello.3));
        dh.extend(as_x25519.agree(&challenge.ephemeral));
    }
    let epoch = b.server.pump().boot_epoch();
    for seed in [nonce_key.duplicate(), emergency_key(SERIAL)] {
        for stir in [false, true] {
            let mut pool = Pool::new(&seed, epoch);
            if stir {
                pool.stir(&ENTROPY);
            }
            for _ in 0..4 {
                dh.extend(pool.draw().agree(&hello.3));
            }
        }
    }
    // (The candidates so far are few; the stored windows' follow.)
    let few = dh.len();
    for w in &stored {
        let as_x25519 = Ephemeral::from_bytes(*w);
        dh.extend(as_x25519.agree(&hello.3));
        dh.extend(as_x25519.agree(&challenge.ephemeral));
    }
    // And what might stand in for the role key: the keys it has.
    let role_keys = [
        role_key.duplicate(),
        device_secret.duplicate(),
        nonce_key.duplicate(),
    ];
    let mut tried = 0u64;
    let try_keys = |keys: &HandshakeKeys, tried: &mut u64| {
        for (up, header, body) in &sealed {
            let key = if *up { &keys.to_device } else { &keys.to_host };
            *tried += 1;
            assert!(!opens_with(key, header, body), "a recorded frame opened");
        }
    };
    for d in &dh {
        for rk in &role_keys {
            try_keys(&HandshakeKeys::derive(d, rk, &th), &mut tried);
        }
    }
    // Every stored window as the shared secret (with the role key), as the role key
    // (with the candidates that are no window) and directly as a session key.
    for w in &stored {
        let w = Secret::new(*w);
        try_keys(&HandshakeKeys::derive(&w, &role_key, &th), &mut tried);
        for d in &dh[..few] {
            try_keys(&HandshakeKeys::derive(d, &w, &th), &mut tried);
        }
        for (_, header, body) in &sealed {
            tried += 1;
            assert!(!opens_with(&w, header, body));
        }
    }
    eprintln!(
        "forward secrecy: {} candidate shared secrets, {} role keys, {} stored windows: {tried} attempts to open {} frames, none opened",
        dh.len(),
        role_keys.len(),
        stored.len(),
        sealed.len()
    );
    // The shared secret the programmer kept opens every frame, and they are the visit.
    let keys = HandshakeKeys::derive(&s.shared, &role_key, &th);
    let (mut to_device, mut to_host) = (Opener::new(&keys.to_device), Opener::new(&keys.to_host));
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for (up, header, body) in &sealed {
        let mut body = body.clone();
        if *up {
            let plain = to_device.open(header, &mut body).expect("opens");
            requests.push(decode_body::<Command>(plain).unwrap().request);
        } else {
            let plain = to_host.open(header, &mut body).expect("opens");
            responses.push(decode_body::<Response>(plain).unwrap());
        }
    }
    assert_eq!(requests, sent);
    assert_eq!(responses, answers);
}

/// What the forward secrecy above rests on: a pump whose pool never got entropy (QEMU)
/// draws ephemeral keys that whoever holds the device secret can draw again, and then a
/// recording opens. (Documented in `thecal_protocol::session::handshake::Pool`.)
#[test]
fn without_platform_entropy_the_device_secret_opens_a_recording() {
    let (server, device_secret) = provisioned_server(continuous(100), Nanolitres::from_ml(18));
    // A reset: the new server's pool is seeded from the nonce key and the boot epoch only.
    let flash = server.into_pump().into_storage().into_inner();
    let pump = Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(100), Nanolitres::from_ml(18)),
        FlashStore::new(flash).unwrap(),
        CountingMotor::default(),
        BOOT,
        ResetCause::PowerOn,
    );
    let mut server = Server::new(pump);
    let key = key_in_force(&server, Role::Clinician);
    let peer = peer(&server);
    let mut rec = Recording::default();
    let mut s = client::handshake(&mut rec.tap(&mut server, BOOT), &key, &peer, [0x3D; 16])
        .expect("handshake");
    let answer = s.request(&mut rec.tap(&mut server, BOOT), 1, &Request::Status);
    assert!(matches!(answer, Response::Status(_)));
    // The attacker's pool: the same seed, the boot epoch (read off any challenge's
    // timing or guessed: it is a boot count and a log index).
    let mut pool = Pool::new(
        &nonce_key(&device_secret, SERIAL),
        server.pump().boot_epoch(),
    );
    let host_ephemeral = Hello::new(Role::Clinician, 1, [0x3D; 16]).public();
    let dh = pool.draw().agree(&host_ephemeral).unwrap();
    assert!(
        dh.ct_eq(&s.shared),
        "the pump's ephemeral key was drawn again"
    );
    let keys = HandshakeKeys::derive(&dh, &key.key, &s.th);
    let (_, header, body) = rec
        .frames()
        .into_iter()
        .rfind(|(up, h, _)| !*up && h[4] & Flags::SEALED != 0)
        .unwrap();
    assert!(opens_with(&keys.to_host, &header, &body));
}

// ---------------------------------------------------------------------------------------
// Rotation.

#[test]
fn a_clinician_rotates_the_patient_key_and_the_old_one_is_stale() {
    let mut b = Bench::new();
    let old = b.factory_key(Role::Patient, 1);
    assert!(b.opens(&old));
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    let new = new_key(Role::Patient, 2, 0x21);
    assert_eq!(
        b.rotate(&mut c, &new),
        Response::KeyRotated {
            role: Role::Patient,
            epoch: 2
        }
    );
    assert_eq!(b.hello(&old), stale(1, 2));
    // The old key claiming the new epoch: the proofs fail.
    let liar = RoleKey {
        epoch: 2,
        ..old.duplicate()
    };
    assert!(matches!(b.open(&liar), Err(Failure::DeviceProof)));
    let mut p = b.open(&new).expect("the new key opens");
    assert!(matches!(
        b.call(&mut p, &Request::Status),
        Response::Status(_)
    ));
    assert_eq!(
        b.server.pump().identity().key_epochs,
        KeyEpochs {
            patient: 2,
            clinician: 1,
            service: 1
        }
    );
    // The other roles' keys are untouched.
    assert!(b.opens(&b.factory_key(Role::Clinician, 1)));
    assert!(b.opens(&b.factory_key(Role::Service, 1)));
}

#[test]
fn clinician_and_service_rotate_their_own_keys() {
    let mut b = Bench::new();
    for (role, fill) in [(Role::Clinician, 0x31), (Role::Service, 0x32)] {
        let old = b.factory_key(role, 1);
        let mut s = b.open(&old).unwrap();
        let new = new_key(role, 2, fill);
        assert_eq!(
            b.rotate(&mut s, &new),
            Response::KeyRotated { role, epoch: 2 }
        );
        // The session that rotated goes on with the keys it has.
        assert!(matches!(
            b.call(&mut s, &Request::Status),
            Response::Status(_)
        ));
        assert_eq!(b.hello(&old), stale(1, 2));
        assert!(b.opens(&new), "{role:?}");
    }
}

#[test]
fn each_role_rotates_only_what_it_may() {
    let mut b = Bench::new();
    let refused = [
        (Role::Patient, Role::Patient),
        (Role::Patient, Role::Clinician),
        (Role::Patient, Role::Service),
        (Role::Clinician, Role::Service),
        (Role::Service, Role::Clinician),
        (Role::Service, Role::Patient),
    ];
    for (by, whose) in refused {
        let mut s = b.open(&b.factory_key(by, 1)).unwrap();
        assert_eq!(
            b.rotate(&mut s, &new_key(whose, 2, 0x41)),
            Response::Refused(Refusal::NotPermitted),
            "{by:?} rotating {whose:?}"
        );
    }
    // The emergency role (anyone at the magnet) rotates nothing either.
    let mut e = b.open_emergency().unwrap();
    for whose in [Role::Patient, Role::Clinician, Role::Service] {
        assert_eq!(
            b.rotate(&mut e, &new_key(whose, 2, 0x42)),
            Response::Refused(Refusal::NotPermitted)
        );
    }
    assert_eq!(
        b.server.pump().key_epochs(),
        KeyEpochs {
            patient: 1,
            clinician: 1,
            service: 1
        }
    );
    for role in [Role::Patient, Role::Clinician, Role::Service] {
        assert!(b.opens(&b.factory_key(role, 1)), "{role:?}");
    }
    let events = log_events(&mut b.server);
    assert!(!events.iter().any(|e| matches!(e, Event::KeyRotated { .. })));
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Refused {
                by: Role::Patient,
                request: 21,
                ..
            }
        )),
        "{events:#?}"
    );
}

#[test]
fn a_rotation_must_name_the_next_epoch() {
    let mut b = Bench::new();
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    for epoch in [0, 1, 3, u32::MAX] {
        assert_eq!(
            b.rotate(&mut c, &new_key(Role::Patient, epoch, 0x51)),
            stale(epoch, 1),
            "epoch {epoch}"
        );
    }
    assert_eq!(b.server.pump().key_epochs().patient, 1);
    assert!(b.opens(&b.factory_key(Role::Patient, 1)));
    // The emergency key is public and has no epoch to rotate.
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    assert_eq!(
        b.rotate(&mut c, &new_key(Role::Emergency, 1, 0x52)),
        Response::Refused(Refusal::NotPermitted)
    );
}

#[test]
fn a_repeated_rotation_is_answered_from_the_reply_cache() {
    let mut b = Bench::new();
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    let new = new_key(Role::Patient, 2, 0x61);
    let rotate = Request::RotateKey {
        role: Role::Patient,
        epoch: 2,
        key: *new.key.as_bytes(),
    };
    let first = b.call(&mut c, &rotate);
    let id = b.id;
    assert_eq!(
        first,
        Response::KeyRotated {
            role: Role::Patient,
            epoch: 2
        }
    );
    // The answer was "lost": the same operation again (same idempotency key).
    let replays = b.server.stats().replays;
    let retry = c.frame(id, true, &rotate);
    assert_eq!(
        c.answer(&exchange_at(&mut b.server, b.t)(&retry)),
        first,
        "not StaleKey: it was not executed again"
    );
    assert_eq!(b.server.stats().replays, replays + 1);
    // A new operation with the same body is executed (and is stale now).
    assert_eq!(b.call(&mut c, &rotate), stale(2, 2));
    let rotated: Vec<Event> = log_events(&mut b.server)
        .into_iter()
        .filter(|e| matches!(e, Event::KeyRotated { .. }))
        .collect();
    assert_eq!(
        rotated,
        [Event::KeyRotated {
            by: Role::Clinician,
            role: Role::Patient,
            epoch: 2
        }]
    );
    assert!(b.opens(&new));
}

#[test]
fn rotations_are_logged_and_survive_a_reboot() {
    let mut b = Bench::new();
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    let patient2 = new_key(Role::Patient, 2, 0x71);
    let patient3 = new_key(Role::Patient, 3, 0x72);
    let clinician2 = new_key(Role::Clinician, 2, 0x73);
    for k in [&patient2, &patient3, &clinician2] {
        assert!(matches!(b.rotate(&mut c, k), Response::KeyRotated { .. }));
    }
    let mut s = b.open(&b.factory_key(Role::Service, 1)).unwrap();
    let service2 = new_key(Role::Service, 2, 0x74);
    assert!(matches!(
        b.rotate(&mut s, &service2),
        Response::KeyRotated { .. }
    ));
    let expected = [
        (Role::Clinician, Role::Patient, 2),
        (Role::Clinician, Role::Patient, 3),
        (Role::Clinician, Role::Clinician, 2),
        (Role::Service, Role::Service, 2),
    ]
    .map(|(by, role, epoch)| Event::KeyRotated { by, role, epoch });
    let logged: Vec<Event> = log_events(&mut b.server)
        .into_iter()
        .filter(|e| matches!(e, Event::KeyRotated { .. }))
        .collect();
    assert_eq!(logged, expected);
    let mut b = b.reboot();
    assert_eq!(
        b.server.pump().identity().key_epochs,
        KeyEpochs {
            patient: 3,
            clinician: 2,
            service: 2
        }
    );
    for k in [&patient3, &clinician2, &service2] {
        assert!(b.opens(k), "{:?} after the reboot", k.role);
    }
    assert_eq!(b.hello(&patient2), stale(2, 3));
    assert_eq!(b.hello(&b.factory_key(Role::Patient, 1)), stale(1, 3));
    assert_eq!(b.hello(&b.factory_key(Role::Clinician, 1)), stale(1, 2));
    assert_eq!(b.hello(&b.factory_key(Role::Service, 1)), stale(1, 2));
    // The log too.
    let logged = log_events(&mut b.server)
        .into_iter()
        .filter(|e| matches!(e, Event::KeyRotated { .. }))
        .count();
    assert_eq!(logged, 4);
}

#[test]
fn a_challenge_answered_before_a_rotation_does_not_open_a_session_after_it() {
    let mut b = Bench::new();
    let old = b.factory_key(Role::Patient, 1);
    let peer = peer(&b.server);
    // The patient's programmer said hello with the old key …
    let hello = Hello::with(&old, [0x77; 16]);
    let answer = plain_answer(&exchange_at(&mut b.server, b.t)(&hello.frame(1)));
    let challenge = client::Challenge::of(&answer).unwrap();
    let done = hello.complete(&old.key, &peer, &challenge).unwrap();
    assert!(done.device_proof_ok);
    // … a clinician rotates the patient key meanwhile …
    let clinician = b.factory_key(Role::Clinician, 1);
    let mut c = client::handshake(
        &mut exchange_at(&mut b.server, b.t),
        &clinician,
        &peer,
        [0x78; 16],
    )
    .unwrap();
    assert!(matches!(
        b.rotate(&mut c, &new_key(Role::Patient, 2, 0x79)),
        Response::KeyRotated { .. }
    ));
    // … and the old key's proof opens nothing.
    assert_eq!(
        plain_answer(&exchange_at(&mut b.server, b.t)(&plain_frame(
            2,
            &done.proof
        ))),
        Response::Refused(Refusal::SessionRequired)
    );
    assert_eq!(b.server.session(), Some((Role::Clinician, 1)));
}

// ---------------------------------------------------------------------------------------
// Power cut during a rotation.

/// What must survive any cut.
#[derive(Debug, PartialEq)]
struct Therapy {
    revision: Revision,
    prescription: thecal_protocol::prescription::Prescription,
    state: TherapyState,
}

fn therapy(server: &TestServer) -> Therapy {
    let p = server.pump();
    Therapy {
        revision: p.record().revision,
        prescription: p.record().prescription.clone(),
        state: p.therapy_state(),
    }
}

/// A bench whose patient key has been rotated `before` times (to epoch `before + 1`),
/// with a clinician session open.
fn rotated(before: u32) -> (Bench, client::Session) {
    let mut b = Bench::new();
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    for epoch in 2..before + 2 {
        let k = new_key(Role::Patient, epoch, epoch as u8);
        assert!(matches!(b.rotate(&mut c, &k), Response::KeyRotated { .. }));
    }
    (b, c)
}

/// The patient key at `epoch` as [`rotated`] made it.
fn patient_key(b: &Bench, epoch: u32) -> RoleKey {
    if epoch == 1 {
        return b.factory_key(Role::Patient, 1);
    }
    new_key(Role::Patient, epoch, epoch as u8)
}

/// Flash operations of the next rotation after `before` ones, and whether it erased a
/// page.
fn rotation_ops(before: u32) -> (u64, bool) {
    let (mut b, mut c) = rotated(before);
    let stats = b.server.pump_mut().storage_mut().flash().stats();
    let next = patient_key(&b, before + 2);
    assert!(matches!(
        b.rotate(&mut c, &next),
        Response::KeyRotated { .. }
    ));
    let done = b
        .server
        .pump_mut()
        .storage_mut()
        .flash()
        .stats()
        .since(&stats);
    (done.ops(), done.page_erases > 0)
}

#[test]
fn a_power_cut_at_every_flash_operation_of_a_rotation_leaves_exactly_one_key() {
    // Rotations into an empty page, into a used one, and one that must erase a page (the
    // secrets ring wraps): the first `before` that erases.
    let erasing = (0..64)
        .find(|&n| rotation_ops(n).1)
        .expect("the secrets ring wraps within 64 rotations");
    let (mut cuts, mut old_won, mut new_won) = (0, 0, 0);
    for before in [0, 1, erasing] {
        let (ops, _) = rotation_ops(before);
        let (old_epoch, new_epoch) = (before + 1, before + 2);
        for k in 0..ops {
            let (mut b, mut c) = rotated(before);
            let before_cut = therapy(&b.server);
            let reservoir = b.server.pump().reservoir();
            let flash = b.server.pump_mut().storage_mut().flash_mut();
            flash.seed_tearing(k);
            flash.cut_power_after(k);
            let answer = b.rotate(&mut c, &patient_key(&b, new_epoch));
            assert!(
                b.server.pump_mut().storage_mut().flash().is_powered_off(),
                "rotation {new_epoch}, cut {k}: the cut happened"
            );
            let mut b = b.reboot();
            cuts += 1;
            let old = b.opens(&patient_key(&b, old_epoch));
            let new = b.opens(&patient_key(&b, new_epoch));
            assert!(
                old != new,
                "rotation {new_epoch}, cut {k} of {ops}: old key opens {old}, new key opens {new}"
            );
            if answer
                == (Response::KeyRotated {
                    role: Role::Patient,
                    epoch: new_epoch,
                })
            {
                assert!(new, "cut {k}: an answered rotation was lost");
            }
            let epochs = b.server.pump().key_epochs();
            assert_eq!(epochs.patient, if new { new_epoch } else { old_epoch });
            assert_eq!((epochs.clinician, epochs.service), (1, 1), "cut {k}");
            assert!(b.opens(&b.factory_key(Role::Clinician, 1)), "cut {k}");
            old_won += u32::from(old);
            new_won += u32::from(new);
            // Therapy: the same prescription, running; the reservoir estimate at most the
            // boot's reservation lower.
            assert_eq!(therapy(&b.server), before_cut, "cut {k}");
            let now = b.server.pump().reservoir();
            assert!(
                now <= reservoir && reservoir.0 - now.0 <= 2 * thecal_device::pump::RESERVE_NL,
                "cut {k}: {reservoir:?} -> {now:?}"
            );
        }
    }
    eprintln!(
        "rotation power cuts: {cuts} cuts (the erasing rotation is number {}), old key kept {old_won}, new key in force {new_won}",
        erasing + 1
    );
    assert!(old_won > 0 && new_won > 0);
}

// ---------------------------------------------------------------------------------------
// Provisioning seen by an eavesdropper.

#[test]
fn a_provisioning_eavesdropper_learns_no_key() {
    let mut server = Server::new(boot(continuous(100), Nanolitres::from_ml(18)));
    server.stir(&thecal_device::sim::keys::random_secret().unwrap());
    let mut rec = Recording::default();
    let mut t = BOOT;
    // The factory reads the pump's public key, then provisions in the clear.
    let Response::Identity(identity) = plain_answer(&rec.tap(&mut server, t)(&plain_frame(
        1,
        &Request::Identify,
    ))) else {
        panic!("no identity")
    };
    let factory = client::Provisioner::new(thecal_device::sim::keys::random_secret().unwrap());
    let answer = plain_answer(&rec.tap(&mut server, t)(&plain_frame(
        2,
        &factory.request(),
    )));
    let (secret, epoch) = factory
        .finish(SERIAL, &identity.public_key, &answer)
        .expect("confirmed");
    let peer = Peer::from_identity(&server.pump().identity());
    // Everything the eavesdropper has: every 32-byte window of the bytes on the link and
    // of the frames they carry (header and body, COBS undone).
    let mut seen = windows(&rec.bytes());
    for (_, header, body) in rec.frames() {
        let mut frame = header.to_vec();
        frame.extend_from_slice(&body);
        seen.extend(windows(&frame));
    }
    assert!(seen.len() > 100, "{}", seen.len());
    let roles = [Role::Patient, Role::Clinician, Role::Service];
    let mut attempts = 0;
    for w in &seen {
        let w = Secret::new(*w);
        for role in roles {
            for candidate in [
                RoleKey {
                    role,
                    epoch,
                    key: w.duplicate(),
                },
                RoleKey::derived(&w, role, epoch, SERIAL),
            ] {
                // The whole handshake, the pump judging the proof (a programmer would
                // stop at the pump's proof; the eavesdropper sends its own anyway).
                t = t.plus_ms(HANDSHAKE_GAP_MS);
                attempts += 1;
                let hello = Hello::with(&candidate, (attempts as u128).to_le_bytes());
                let answer = plain_answer(&exchange_at(&mut server, t)(&hello.frame(3)));
                let challenge = client::Challenge::of(&answer)
                    .unwrap_or_else(|| panic!("attempt {attempts}: {answer:?}"));
                let done = hello.complete(&candidate.key, &peer, &challenge).unwrap();
                assert!(!done.device_proof_ok, "the pump proved a captured key");
                assert_eq!(
                    plain_answer(&exchange_at(&mut server, t)(&plain_frame(4, &done.proof))),
                    Response::Refused(Refusal::AuthenticationFailed)
                );
            }
        }
    }
    assert_eq!(server.session(), None);
    eprintln!(
        "provisioning eavesdropper: {} windows of {} bytes recorded, {attempts} handshakes, none opened",
        seen.len(),
        rec.bytes().len()
    );
    // The factory's keys open a session of every role.
    for role in roles {
        t = t.plus_ms(HANDSHAKE_GAP_MS);
        let key = RoleKey::derived(&secret, role, epoch, SERIAL);
        client::handshake(
            &mut exchange_at(&mut server, t),
            &key,
            &peer,
            [role as u8; 16],
        )
        .unwrap_or_else(|e| panic!("{role:?}: {e:?}"));
        assert_eq!(server.session().map(|s| s.0), Some(role));
    }
}

// ---------------------------------------------------------------------------------------
// Secrets apart from therapy.

/// A bench with therapy history (revision 2 written by a clinician) and its flash.
fn with_history() -> Bench {
    let mut b = Bench::new();
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    let write = Request::WritePrescription {
        expected: Revision(1),
        prescription: flexible().into(),
    };
    assert_eq!(
        b.call(&mut c, &write),
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    b
}

/// Takes the bench's pump down, lets `damage` have its flash, boots it again.
fn damaged(b: Bench, damage: impl FnOnce(&mut [u8])) -> Bench {
    let mut flash = b.server.into_pump().into_storage().into_inner();
    damage(flash.as_bytes_mut());
    Bench {
        server: boot_server(flash, b.t),
        ..b
    }
}

fn rot(bytes: &mut [u8]) {
    for (i, x) in bytes.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(37) ^ 0x5A;
    }
}

#[test]
fn destroyed_therapy_records_leave_the_keys_and_the_log() {
    let b = with_history();
    let p = PRESCRIPTION_OFFSET as usize..LOG_OFFSET as usize;
    let mut b = damaged(b, |f| rot(&mut f[p]));
    assert_eq!(b.server.pump().therapy_state(), TherapyState::Stopped);
    assert!(b.server.pump().alarm_active(AlarmKind::StorageFault));
    assert!(b.server.pump().is_provisioned());
    let mut s = b
        .open(&b.factory_key(Role::Service, 1))
        .expect("a service session opens");
    let Response::LogPage(page) = b.call(&mut s, &Request::ReadLog { first: 0, max: 8 }) else {
        panic!("no log page")
    };
    assert!(
        page.entries.iter().any(|e| e.event
            == Event::PrescriptionChanged {
                old: Revision(1),
                new: Revision(2),
                by: Role::Clinician
            }),
        "{:#?}",
        page.entries
    );
    assert!(b.opens(&b.factory_key(Role::Clinician, 1)));
}

/// Therapy after the secrets region was destroyed: the prescription of revision 2,
/// running, no session but the emergency one.
fn therapy_without_secrets(b: &mut Bench) {
    let pump = b.server.pump();
    assert_eq!(pump.record().revision, Revision(2));
    assert_eq!(pump.record().prescription, flexible());
    assert_eq!(pump.therapy_state(), TherapyState::Running);
    assert!(!pump.is_provisioned());
    assert_eq!(pump.key_epochs(), KeyEpochs::default());
    let before = pump.motor().strokes;
    b.t = b.t.plus_ms(6 * HOUR);
    b.server.tick(b.t);
    // Six hours of the flexible day's 150 µg/day night rate: 3.75 µL at least.
    assert!(b.server.pump().motor().strokes - before >= 15);
    for role in [Role::Patient, Role::Clinician, Role::Service] {
        assert_eq!(
            b.hello(&b.factory_key(role, 1)),
            Response::Refused(Refusal::NotProvisioned)
        );
    }
    // The emergency role still reaches it (its key is public).
    let mut e = b.open_emergency().expect("emergency");
    assert!(matches!(
        b.call(&mut e, &Request::Status),
        Response::Status(_)
    ));
}

#[test]
fn an_erased_secrets_region_leaves_therapy_running_and_the_pump_new() {
    let b = with_history();
    let k = SECRETS_OFFSET as usize..PRESCRIPTION_OFFSET as usize;
    let mut b = damaged(b, |f| f[k].fill(0xFF));
    therapy_without_secrets(&mut b);
    // An erased region is a new pump's: no alarm, a new static key at the first stir,
    // and anyone in range may provision it in the clear again.
    assert!(!b.server.pump().alarm_active(AlarmKind::StorageFault));
    let public = b.server.pump().public_key().expect("a new static key");
    let factory = client::Provisioner::new([0x0E; 32]);
    let answer = plain_answer(&exchange_at(&mut b.server, b.t)(&plain_frame(
        9,
        &factory.request(),
    )));
    assert!(
        factory.finish(SERIAL, &public, &answer).is_some(),
        "{answer:?}"
    );
}

#[test]
fn a_corrupted_secrets_region_leaves_therapy_running_and_raises_the_storage_alarm() {
    let b = with_history();
    let k = SECRETS_OFFSET as usize..PRESCRIPTION_OFFSET as usize;
    let mut b = damaged(b, |f| rot(&mut f[k]));
    therapy_without_secrets(&mut b);
    // Damage with no valid copy: never started afresh.
    assert!(b.server.pump().alarm_active(AlarmKind::StorageFault));
    assert_eq!(b.server.pump().public_key(), None);
    let factory = client::Provisioner::new([0x0C; 32]);
    assert_eq!(
        plain_answer(&exchange_at(&mut b.server, b.t)(&plain_frame(
            9,
            &factory.request()
        ))),
        Response::Refused(Refusal::Unsupported)
    );
}

#[test]
fn one_damaged_copy_of_the_newest_secrets_keeps_the_rotation() {
    let mut b = Bench::new();
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    let new = new_key(Role::Patient, 2, 0xA7);
    assert!(matches!(
        b.rotate(&mut c, &new),
        Response::KeyRotated { .. }
    ));
    // The rotated key is stored in the newest generation only: in its two copies.
    let flash = b
        .server
        .pump_mut()
        .storage_mut()
        .flash()
        .as_bytes()
        .to_vec();
    let region = SECRETS_OFFSET as usize..PRESCRIPTION_OFFSET as usize;
    let copies: Vec<usize> = flash[region.clone()]
        .windows(32)
        .enumerate()
        .filter(|(_, w)| *w == new.key.as_bytes())
        .map(|(i, _)| region.start + i)
        .collect();
    assert_eq!(copies.len(), 2, "written twice");
    let old = b.factory_key(Role::Patient, 1);
    for damaged_copy in [copies[0], copies[1]] {
        let mut b = Bench::new();
        let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
        assert!(matches!(
            b.rotate(&mut c, &new),
            Response::KeyRotated { .. }
        ));
        let mut b = damaged(b, |f| f[damaged_copy + 3] ^= 0x40);
        assert!(b.opens(&new), "copy at {damaged_copy:#x} damaged");
        assert_eq!(b.hello(&old), stale(1, 2));
    }
    // Both copies damaged: the generation before it, whole (the rotation is lost, the
    // old key works again, nothing in between).
    let mut b = Bench::new();
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    assert!(matches!(
        b.rotate(&mut c, &new),
        Response::KeyRotated { .. }
    ));
    let mut b = damaged(b, |f| {
        for at in &copies {
            f[at + 3] ^= 0x40;
        }
    });
    assert!(b.opens(&old));
    assert_eq!(b.hello(&new), stale(2, 1));
    assert!(b.opens(&b.factory_key(Role::Clinician, 1)));
}

// ---------------------------------------------------------------------------------------
// Re-provisioning.

#[test]
fn re_provisioning_makes_every_old_key_stale() {
    let mut b = Bench::new();
    // Epochs 2 (patient), 1 (clinician), 1 (service) before.
    let mut c = b.open(&b.factory_key(Role::Clinician, 1)).unwrap();
    let patient2 = new_key(Role::Patient, 2, 0x81);
    assert!(matches!(
        b.rotate(&mut c, &patient2),
        Response::KeyRotated { .. }
    ));
    // A clinician may not re-provision.
    let factory = client::Provisioner::new([0x82; 32]);
    assert_eq!(
        b.call(&mut c, &factory.request()),
        Response::Refused(Refusal::NotPermitted)
    );
    let public = b.server.pump().public_key().unwrap();
    let mut s = b.open(&b.factory_key(Role::Service, 1)).unwrap();
    let answer = b.call(&mut s, &factory.request());
    let (secret, epoch) = factory
        .finish(SERIAL, &public, &answer)
        .unwrap_or_else(|| panic!("{answer:?}"));
    assert_eq!(epoch, 3, "one above every epoch so far");
    assert!(!secret.ct_eq(&b.device_secret));
    assert!(log_events(&mut b.server).contains(&Event::Provisioned { epoch: 3 }));
    // Every old key of every role is stale …
    for old in [
        b.factory_key(Role::Patient, 1),
        patient2.duplicate(),
        b.factory_key(Role::Clinician, 1),
        b.factory_key(Role::Service, 1),
    ] {
        assert_eq!(b.hello(&old), stale(old.epoch, 3), "{:?}", old.role);
    }
    // … the old secret's keys at the new epoch fail the proof …
    for role in [Role::Patient, Role::Clinician, Role::Service] {
        assert!(matches!(
            b.open(&b.factory_key(role, 3)),
            Err(Failure::DeviceProof)
        ));
    }
    // … the new ones open, also after a reboot.
    b.device_secret = secret;
    for role in [Role::Patient, Role::Clinician, Role::Service] {
        assert!(b.opens(&b.factory_key(role, 3)), "{role:?}");
    }
    let mut b = b.reboot();
    for role in [Role::Patient, Role::Clinician, Role::Service] {
        assert!(b.opens(&b.factory_key(role, 3)), "{role:?} after a reboot");
    }
}

#[test]
fn plain_provisioning_of_a_provisioned_pump_is_refused() {
    let mut b = Bench::new();
    let factory = client::Provisioner::new([0x91; 32]);
    assert_eq!(
        plain_answer(&exchange_at(&mut b.server, b.t)(&plain_frame(
            1,
            &factory.request()
        ))),
        Response::Refused(Refusal::NotPermitted)
    );
    assert_eq!(b.server.pump().key_epochs().clinician, 1);
    assert!(b.opens(&b.factory_key(Role::Clinician, 1)));
}

// ---------------------------------------------------------------------------------------
// Downgrade.

#[test]
fn a_transcript_binding_other_than_the_pump_announced_fails_both_proofs() {
    let mut b = Bench::new();
    let key = b.factory_key(Role::Clinician, 1);
    // What Identify announced, as the programmer read it.
    let Response::Identity(identity) = plain_answer(&exchange_at(&mut b.server, b.t)(
        &plain_frame(1, &Request::Identify),
    )) else {
        panic!("no identity")
    };
    let announced = Peer::from_identity(&identity);
    assert_eq!(announced.binding, b.server.pump().binding());
    let a = announced.binding;
    for binding in [
        thecal_protocol::session::Binding {
            version: a.version - 1,
            ..a
        },
        thecal_protocol::session::Binding {
            schema: a.schema ^ 1,
            ..a
        },
        thecal_protocol::session::Binding {
            capabilities: a.capabilities & !thecal_protocol::message::Capabilities::KEY_LIFECYCLE,
            ..a
        },
        thecal_protocol::session::Binding {
            capabilities: 0,
            ..a
        },
    ] {
        let downgraded = Peer {
            binding,
            ..announced.clone()
        };
        b.t = b.t.plus_ms(HANDSHAKE_GAP_MS);
        let nonce = b.next_nonce();
        let hello = Hello::with(&key, nonce);
        let answer = plain_answer(&exchange_at(&mut b.server, b.t)(&hello.frame(2)));
        let challenge = client::Challenge::of(&answer).unwrap();
        let done = hello.complete(&key.key, &downgraded, &challenge).unwrap();
        assert!(
            !done.device_proof_ok,
            "{binding:?}: the pump's proof verified"
        );
        assert_eq!(
            plain_answer(&exchange_at(&mut b.server, b.t)(&plain_frame(
                3,
                &done.proof
            ))),
            Response::Refused(Refusal::AuthenticationFailed),
            "{binding:?}"
        );
        assert_eq!(b.server.session(), None);
    }
    // The binding announced opens the session.
    b.t = b.t.plus_ms(HANDSHAKE_GAP_MS);
    client::handshake(
        &mut exchange_at(&mut b.server, b.t),
        &key,
        &announced,
        [0xD0; 16],
    )
    .expect("handshake");
}
