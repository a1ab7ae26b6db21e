//! The handshake against a programmer's side built from the protocol crate.

use super::*;
use thecal_protocol::session::{emergency_key, nonce_key, role_key};

const SERIAL: &str = "S";
const BINDING: Binding = Binding {
    version: 3,
    schema: 0x1234_5678,
    capabilities: 0x7f,
};
/// The epoch of every role key of the test pump.
const EPOCH: u32 = 1;

fn device_secret() -> Secret {
    Secret::new([1; 32])
}

/// The key of `role` in force and its epoch, as the server hands it over.
fn key_of(role: Role) -> (u32, Secret) {
    match role {
        Role::Emergency => (0, emergency_key(SERIAL)),
        _ => (EPOCH, role_key(&device_secret(), role, EPOCH, SERIAL)),
    }
}

/// The context of a hello for `role` at `now` on the provisioned test pump.
fn cx(now: u64, role: Role, presence: bool) -> HelloContext<'static> {
    HelloContext {
        now: Timestamp(now),
        serial: SERIAL,
        binding: BINDING,
        key: Some(key_of(role)),
        nonce_key: nonce_key(&device_secret(), SERIAL),
        presence,
    }
}

/// The same on an unprovisioned pump (only the public emergency key).
fn unprovisioned(now: u64, role: Role, presence: bool) -> HelloContext<'static> {
    HelloContext {
        key: (role == Role::Emergency).then(|| key_of(role)),
        nonce_key: emergency_key(SERIAL),
        ..cx(now, role, presence)
    }
}

fn sessions(epoch: u64) -> Sessions {
    Sessions::new(epoch, &nonce_key(&device_secret(), SERIAL))
}

/// The programmer's ephemeral secret of the hello with nonce `n`.
fn host_secret(n: [u8; 16]) -> Ephemeral {
    let mut random = [0x5c; 32];
    random[..16].copy_from_slice(&n);
    Ephemeral::from_bytes(random)
}

/// A programmer's hello of `role`, with the key in force's epoch.
fn hello(role: Role, n: [u8; 16]) -> Hello {
    Hello {
        role,
        epoch: key_of(role).0,
        nonce: n,
        ephemeral: host_secret(n).public(),
    }
}

/// The programmer's side of `challenge` (its answer to `hello(role, n)`): checks
/// the pump's proof and returns its own, and its session keys.
fn host_side(role: Role, n: [u8; 16], challenge: &Step) -> ([u8; 32], SessionKeys) {
    let Step::Challenge {
        nonce,
        ephemeral,
        proof,
    } = challenge
    else {
        panic!("no challenge: {challenge:?}");
    };
    let (epoch, key) = key_of(role);
    let host_ephemeral = host_secret(n).public();
    let th = Transcript {
        binding: BINDING,
        role,
        epoch,
        serial: SERIAL,
        host_nonce: &n,
        host_ephemeral: &host_ephemeral,
        device_nonce: nonce,
        device_ephemeral: ephemeral,
    }
    .hash();
    let shared = host_secret(n).agree(ephemeral).expect("a valid pump key");
    let keys = HandshakeKeys::derive(&shared, &key, &th);
    assert!(
        keys.verify_device_proof(&th, proof),
        "the pump proved the key"
    );
    (keys.host_proof(&th), keys.into_session())
}

/// A whole handshake of `role` with nonce `h`: hello at `cx`, proof 10 ms later.
fn answer(s: &mut Sessions, cx: HelloContext<'_>, role: Role, h: [u8; 16]) -> Step {
    let (now, presence) = (cx.now, cx.presence);
    let challenge = s.hello(cx, hello(role, h));
    if !matches!(challenge, Step::Challenge { .. }) {
        return challenge;
    }
    let (proof, _) = host_side(role, h, &challenge);
    s.proof(now.plus_ms(10), &h, &proof, presence)
}

#[test]
fn both_sides_derive_the_same_session_keys() {
    let mut s = sessions(1);
    let h = [5; 16];
    let challenge = s.hello(cx(0, Role::Clinician, false), hello(Role::Clinician, h));
    let (proof, keys) = host_side(Role::Clinician, h, &challenge);
    assert!(matches!(
        s.proof(Timestamp(10), &h, &proof, false),
        Step::Established { .. }
    ));
    let header = [1, 1, 9, 0, 2];
    let mut body = [0u8; 64];
    let n = Sealer::new(&keys.to_device)
        .seal(&header, b"status", &mut body)
        .unwrap();
    assert_eq!(
        s.open(&header, &mut body[..n], Timestamp(20)).unwrap(),
        b"status"
    );
    let mut out = [0u8; 64];
    let m = s.seal(&header, b"answer", &mut out).unwrap();
    assert_eq!(
        Opener::new(&keys.to_host)
            .open(&header, &mut out[..m])
            .unwrap(),
        b"answer"
    );
}

#[test]
fn a_hello_naming_another_epoch_is_refused_before_any_work() {
    let mut s = sessions(1);
    for epoch in [0, 2, u32::MAX] {
        let stale = Hello {
            epoch,
            ..hello(Role::Patient, [1; 16])
        };
        assert_eq!(
            s.hello(cx(0, Role::Patient, false), stale),
            Step::Refuse(Refusal::StaleKey {
                epoch,
                current: EPOCH
            })
        );
    }
    assert_eq!(s.pending(), 0);
    assert!(matches!(
        s.hello(cx(0, Role::Patient, false), hello(Role::Patient, [1; 16])),
        Step::Challenge { .. }
    ));
}

#[test]
fn a_low_order_ephemeral_key_is_refused_malformed() {
    let mut s = sessions(1);
    let mut one = [0u8; 32];
    one[0] = 1;
    for ephemeral in [[0; 32], one] {
        let bad = Hello {
            ephemeral,
            ..hello(Role::Clinician, [2; 16])
        };
        assert_eq!(
            s.hello(cx(0, Role::Clinician, false), bad),
            Step::Refuse(Refusal::Malformed)
        );
    }
    assert_eq!(s.pending(), 0);
}

#[test]
fn every_challenge_has_its_own_ephemeral_key() {
    let mut seen = heapless::Vec::<[u8; 32], 8>::new();
    let mut s = sessions(1);
    let mut stirred = sessions(1);
    stirred.stir(b"platform entropy");
    for (i, s) in [&mut s, &mut stirred].into_iter().enumerate() {
        for n in 0..3u8 {
            let nonce = [n; 16];
            let Step::Challenge { ephemeral, .. } =
                s.hello(cx(0, Role::Clinician, false), hello(Role::Clinician, nonce))
            else {
                panic!("no challenge");
            };
            assert!(!seen.contains(&ephemeral), "run {i}, hello {n}");
            seen.push(ephemeral).unwrap();
        }
    }
}

#[test]
fn wrong_proofs_lock_nobody_out_and_spoil_no_challenge() {
    let mut s = sessions(1);
    let h = [7; 16];
    let challenge = s.hello(cx(0, Role::Clinician, false), hello(Role::Clinician, h));
    for i in 0..1000 {
        assert_eq!(
            s.proof(Timestamp(i), &h, &[i as u8; 32], false),
            Step::Failed {
                role: Role::Clinician
            }
        );
    }
    // Attackers' hellos do not displace it (every slot is young).
    for i in 0..100u8 {
        let _ = s.hello(cx(500, Role::Patient, false), hello(Role::Patient, [i; 16]));
    }
    let (proof, _) = host_side(Role::Clinician, h, &challenge);
    assert!(matches!(
        s.proof(Timestamp(1500), &h, &proof, false),
        Step::Established {
            role: Role::Clinician,
            session: 1,
            replaced: None
        }
    ));
}

#[test]
fn a_full_table_is_busy_until_the_oldest_is_two_seconds_old() {
    let mut s = sessions(1);
    let c = |now| cx(now, Role::Clinician, false);
    for i in 0..PENDING as u8 {
        assert!(matches!(
            s.hello(c(u64::from(i)), hello(Role::Clinician, [i; 16])),
            Step::Challenge { .. }
        ));
    }
    assert_eq!(
        s.hello(c(MIN_PENDING_MS - 1), hello(Role::Clinician, [99; 16])),
        Step::Refuse(Refusal::Busy)
    );
    assert!(matches!(
        s.hello(c(MIN_PENDING_MS), hello(Role::Clinician, [99; 16])),
        Step::Challenge { .. }
    ));
    // The oldest (nonce 0) went; nonce 1 is still pending.
    assert_eq!(
        s.proof(Timestamp(MIN_PENDING_MS), &[0; 16], &[0; 32], false),
        Step::Refuse(Refusal::SessionRequired)
    );
    assert!(matches!(
        s.proof(Timestamp(MIN_PENDING_MS), &[1; 16], &[0; 32], false),
        Step::Failed { .. }
    ));
}

#[test]
fn a_repeated_hello_gets_the_same_challenge_and_another_role_is_refused() {
    let mut s = sessions(1);
    let a = s.hello(
        cx(0, Role::Clinician, false),
        hello(Role::Clinician, [3; 16]),
    );
    assert_eq!(
        s.hello(
            cx(5, Role::Clinician, false),
            hello(Role::Clinician, [3; 16])
        ),
        a
    );
    assert_eq!(
        s.hello(cx(5, Role::Patient, false), hello(Role::Patient, [3; 16])),
        Step::Refuse(Refusal::Busy)
    );
    assert_eq!(s.pending(), 1);
    // Someone repeating the nonce with another ephemeral key gets the same challenge,
    // bound to the first key: of no use to it (its proof fails), and the first
    // programmer's proof still opens the session.
    let other = Hello {
        ephemeral: host_secret([4; 16]).public(),
        ..hello(Role::Clinician, [3; 16])
    };
    let b = s.hello(cx(6, Role::Clinician, false), other);
    assert_eq!(b, a);
    let Step::Challenge {
        nonce, ephemeral, ..
    } = b
    else {
        panic!("{b:?}")
    };
    let other_ephemeral = host_secret([4; 16]).public();
    let th = Transcript {
        binding: BINDING,
        role: Role::Clinician,
        epoch: EPOCH,
        serial: SERIAL,
        host_nonce: &[3; 16],
        host_ephemeral: &other_ephemeral,
        device_nonce: &nonce,
        device_ephemeral: &ephemeral,
    }
    .hash();
    let shared = host_secret([4; 16]).agree(&ephemeral).unwrap();
    let keys = HandshakeKeys::derive(&shared, &key_of(Role::Clinician).1, &th);
    assert_eq!(
        s.proof(Timestamp(7), &[3; 16], &keys.host_proof(&th), false),
        Step::Failed {
            role: Role::Clinician
        }
    );
    let (proof, _) = host_side(Role::Clinician, [3; 16], &a);
    assert!(matches!(
        s.proof(Timestamp(8), &[3; 16], &proof, false),
        Step::Established { .. }
    ));
}

#[test]
fn only_a_verified_proof_replaces_the_open_session() {
    let mut s = sessions(1);
    assert!(matches!(
        answer(
            &mut s,
            cx(0, Role::Clinician, false),
            Role::Clinician,
            [1; 16]
        ),
        Step::Established { session: 1, .. }
    ));
    let _ = s.hello(
        cx(20, Role::Clinician, false),
        hello(Role::Clinician, [2; 16]),
    );
    let _ = s.proof(Timestamp(30), &[2; 16], &[0; 32], false);
    assert_eq!(s.current(), Some((Role::Clinician, 1)));
    let Step::Established { replaced, .. } =
        answer(&mut s, cx(40, Role::Patient, false), Role::Patient, [4; 16])
    else {
        panic!()
    };
    assert_eq!(
        replaced,
        Some(Ended {
            role: Role::Clinician,
            session: 1,
            reason: SessionEnd::Replaced
        })
    );
    assert_eq!(s.current(), Some((Role::Patient, 2)));
}

/// An emergency handshake: a hello at `cx`, then the (public-key) proof, sent while
/// the presence signal is `presence`.
fn emergency(s: &mut Sessions, cx: HelloContext<'_>, n: u8, presence: bool) -> Step {
    let now = cx.now;
    let challenge = s.hello(cx, hello(Role::Emergency, [n; 16]));
    let (proof, _) = host_side(Role::Emergency, [n; 16], &challenge);
    s.proof(now.plus_ms(10), &[n; 16], &proof, presence)
}

#[test]
fn emergency_needs_presence_but_no_secret() {
    let mut s = Sessions::new(1, &emergency_key(SERIAL));
    assert_eq!(
        s.hello(
            unprovisioned(0, Role::Emergency, false),
            hello(Role::Emergency, [1; 16])
        ),
        Step::Refuse(Refusal::PresenceRequired)
    );
    assert_eq!(
        s.hello(
            unprovisioned(0, Role::Clinician, false),
            hello(Role::Clinician, [1; 16])
        ),
        Step::Refuse(Refusal::NotProvisioned)
    );
    let c = || unprovisioned(0, Role::Emergency, true);
    // The window closes before the proof: the challenge is gone.
    assert_eq!(
        emergency(&mut s, c(), 1, false),
        Step::Refuse(Refusal::SessionRequired)
    );
    assert_eq!(s.current(), None);
    // Within the window it opens.
    assert_eq!(s.arm_emergency(), None);
    assert!(matches!(
        emergency(&mut s, c(), 2, true),
        Step::Established {
            role: Role::Emergency,
            ..
        }
    ));
    // A second emergency handshake does not take it over …
    assert_eq!(emergency(&mut s, c(), 3, true), Step::Refuse(Refusal::Busy));
    assert_eq!(s.current().map(|c| c.0), Some(Role::Emergency));
    // … a new application of the magnet ends it, and then one opens again.
    assert!(s.arm_emergency().is_some());
    assert!(matches!(
        emergency(&mut s, c(), 4, true),
        Step::Established { .. }
    ));
    // So does closing it.
    assert!(s.end(SessionEnd::Closed).is_some());
    assert!(matches!(
        emergency(&mut s, c(), 6, true),
        Step::Established { .. }
    ));
}

#[test]
fn an_emergency_handshake_never_replaces_a_clinician_session() {
    let mut s = sessions(1);
    assert!(matches!(
        answer(
            &mut s,
            cx(0, Role::Clinician, false),
            Role::Clinician,
            [1; 16]
        ),
        Step::Established { .. }
    ));
    s.arm_emergency();
    assert_eq!(
        emergency(&mut s, cx(20, Role::Emergency, true), 5, true),
        Step::Refuse(Refusal::Busy)
    );
    assert_eq!(s.current(), Some((Role::Clinician, 1)));
}

#[test]
fn a_key_change_drops_only_the_challenges_of_its_role() {
    let mut s = sessions(1);
    let pending = |s: &mut Sessions, role, n| {
        let challenge = s.hello(cx(0, role, false), hello(role, [n; 16]));
        host_side(role, [n; 16], &challenge).0
    };
    let patient = pending(&mut s, Role::Patient, 1);
    let clinician = pending(&mut s, Role::Clinician, 2);
    s.drop_pending(Some(Role::Patient));
    assert_eq!(s.pending(), 1);
    assert_eq!(
        s.proof(Timestamp(10), &[1; 16], &patient, false),
        Step::Refuse(Refusal::SessionRequired)
    );
    let service = pending(&mut s, Role::Service, 3);
    s.drop_pending(None);
    assert_eq!(s.pending(), 0);
    for (n, proof) in [(2, clinician), (3, service)] {
        assert_eq!(
            s.proof(Timestamp(10), &[n; 16], &proof, false),
            Step::Refuse(Refusal::SessionRequired)
        );
    }
}

#[test]
fn nonces_differ_between_epochs_and_handshakes() {
    let mut seen: heapless::Vec<[u8; 16], 150> = heapless::Vec::new();
    for epoch in 1..4 {
        let mut s = sessions(epoch);
        for i in 0..50u8 {
            let Step::Challenge { nonce, .. } = s.hello(
                cx(u64::from(i) * 3000, Role::Clinician, false),
                hello(Role::Clinician, [i; 16]),
            ) else {
                panic!()
            };
            assert!(!seen.contains(&nonce));
            seen.push(nonce).unwrap();
        }
    }
}
