//! The pump's side of secure sessions (see `thecal_protocol::session` and PROTOCOL.md
//! section 2.9): pending challenges, the open session, role checks, sealing and opening,
//! idle timeout.
//!
//! Availability rules (docs/SECURITY.md "Availability"):
//!
//! * **Only a verified proof changes the open session.** A `SessionHello` takes one of
//!   [`PENDING`] challenge slots, keyed by the programmer's nonce; the open session is
//!   untouched until a `SessionProof` for one of them verifies, and only then replaced.
//! * **A pending challenge cannot be spoiled.** A slot is freed by its own verified
//!   proof, by expiry ([`HANDSHAKE_TIMEOUT_MS`]), or — when every slot is taken — by a
//!   new `SessionHello` once it is older than [`MIN_PENDING_MS`] (longer than any
//!   programmer's round trip). A wrong proof for a slot leaves the slot as it was, and a
//!   `SessionHello` repeating a pending nonce gets the same challenge again.
//! * **No lockout.** A 256-bit role key cannot be guessed online, so failed proofs lock
//!   nobody out; they are counted, logged (aggregated) and paid for from the link's
//!   energy budget like any unauthenticated frame (see [`crate::link::budget`]).
//! * **No flash write.** Device nonces come from the boot epoch (new at every boot, see
//!   [`crate::pump::Pump::boot_epoch`]) and a RAM counter.
//! * **Forward secrecy.** Each challenge draws a fresh X25519 secret from a ratcheting
//!   pool the platform stirs with entropy; the shared secret and the proof and session
//!   keys are derived at once and the ephemeral secret dropped
//!   (`thecal_protocol::session::handshake`).
//! * **Key epochs.** A hello naming another epoch than the role's key in force is
//!   refused `StaleKey` before any work.
//!
//! Session time is *link time*: on the pump it is the device clock; the simulator passes
//! real time, so a session does not expire in milliseconds when its virtual clock runs
//! 3600 times faster. Nothing here touches therapy: whatever happens to a session, the
//! pump core keeps dosing.

use thecal_protocol::message::{Refusal, Role, SessionEnd};
use thecal_protocol::session::{
    device_nonce, proofs_match, Binding, Ephemeral, HandshakeKeys, Opener, Pool, SealError, Sealer,
    Secret, SessionKeys, Transcript, NONCE_LEN, PROOF_LEN, PUBLIC_LEN,
};
use thecal_protocol::time::Timestamp;

/// A session ends after this long without a valid frame.
pub const IDLE_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// A pending challenge is dropped this long after its `SessionHello`.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 30 * 1000;
/// Challenges pending at once.
pub const PENDING: usize = 4;
/// A pending challenge younger than this is never displaced by a new `SessionHello`.
pub const MIN_PENDING_MS: u64 = 2 * 1000;

/// The role table (who may make which request), shared with the programmer.
pub use thecal_protocol::message::permitted;

struct Open {
    role: Role,
    id: u16,
    opener: Opener,
    sealer: Sealer,
    last_activity: Timestamp,
}

struct Pending {
    role: Role,
    host_nonce: [u8; NONCE_LEN],
    device_nonce: [u8; NONCE_LEN],
    device_ephemeral: [u8; PUBLIC_LEN],
    proof: [u8; PROOF_LEN],
    /// The programmer's proof this challenge expects.
    host_proof: [u8; PROOF_LEN],
    /// The session keys (the pump's ephemeral secret and the proof keys are gone).
    keys: SessionKeys,
    at: Timestamp,
}

/// A session that ended, to be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Its role.
    pub role: Role,
    /// Its number.
    pub session: u16,
    /// How.
    pub reason: SessionEnd,
}

/// What the server must do after a handshake step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answer `SessionChallenge` with these.
    Challenge {
        /// Pump nonce.
        nonce: [u8; NONCE_LEN],
        /// Pump ephemeral public key.
        ephemeral: [u8; PUBLIC_LEN],
        /// Pump proof.
        proof: [u8; PROOF_LEN],
    },
    /// The session is open; `replaced` is the one it replaced.
    Established {
        /// Role of the new session.
        role: Role,
        /// Its number.
        session: u16,
        /// The session it replaced, if one was open.
        replaced: Option<Ended>,
    },
    /// The proof did not verify: answer `AuthenticationFailed` and log it (aggregated).
    Failed {
        /// Role of the challenge.
        role: Role,
    },
    /// Refuse, without logging.
    Refuse(Refusal),
}

/// What a `SessionHello` needs from the pump.
#[derive(Debug)]
pub struct HelloContext<'a> {
    /// Link time.
    pub now: Timestamp,
    /// Serial number.
    pub serial: &'a str,
    /// Version, schema and capabilities, as `Identify` announces them.
    pub binding: Binding,
    /// The asked role's key in force and its epoch (`None`: none, the pump is
    /// unprovisioned; the emergency role's is its public key at epoch 0).
    pub key: Option<(u32, Secret)>,
    /// The key of the device nonces (the emergency key on an unprovisioned pump).
    pub nonce_key: Secret,
    /// Whether the physical-presence signal is active.
    pub presence: bool,
}

/// A `SessionHello`'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Role asked for.
    pub role: Role,
    /// Epoch of the programmer's key.
    pub epoch: u32,
    /// Programmer's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Programmer's ephemeral public key.
    pub ephemeral: [u8; PUBLIC_LEN],
}

/// The session state of one link.
pub struct Sessions {
    pending: [Option<Pending>; PENDING],
    open: Option<Open>,
    /// Boot epoch of the device nonces.
    epoch: u64,
    /// Handshakes answered since boot (the nonce counter).
    counter: u64,
    /// Sessions opened since boot.
    opened: u16,
    /// Source of the pump's ephemeral secrets.
    pool: Pool,
    /// A draw was made since the platform last stirred the pool.
    drawn: bool,
}

impl Sessions {
    /// No session; device nonces of boot `epoch`; the ephemeral pool seeded from `seed`
    /// (the nonce key) and `epoch`, until the platform stirs in entropy ([`Sessions::stir`]).
    pub fn new(epoch: u64, seed: &Secret) -> Self {
        Self {
            pending: [const { None }; PENDING],
            open: None,
            epoch,
            counter: 0,
            opened: 0,
            pool: Pool::new(seed, epoch),
            drawn: true,
        }
    }

    /// Mixes platform entropy (a hardware RNG, the OS) into the ephemeral pool.
    pub fn stir(&mut self, entropy: &[u8]) {
        self.pool.stir(entropy);
        self.drawn = false;
    }

    /// Whether the pool was drawn from since it was last stirred (the platform should
    /// stir in fresh entropy).
    pub fn wants_entropy(&self) -> bool {
        self.drawn
    }

    /// A fresh X25519 secret from the pool (the pump's identity key at its first boot).
    pub fn draw(&mut self) -> Ephemeral {
        self.drawn = true;
        self.pool.draw()
    }

    /// A new physical-presence signal: an emergency session still open ends (the hand on
    /// the magnet now decides who may open the next one).
    pub fn arm_emergency(&mut self) -> Option<Ended> {
        if self.open_role() == Some(Role::Emergency) {
            return self.end(SessionEnd::Replaced);
        }
        None
    }

    /// Ends what timed out at link time `now`; returns the session that idled out.
    pub fn expire(&mut self, now: Timestamp) -> Option<Ended> {
        for slot in self.pending.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|p| now.since(p.at) >= HANDSHAKE_TIMEOUT_MS)
            {
                *slot = None;
            }
        }
        let expired = self
            .open
            .as_ref()
            .is_some_and(|o| now.since(o.last_activity) >= IDLE_TIMEOUT_MS);
        if expired {
            return self.end(SessionEnd::Expired);
        }
        None
    }

    /// Ends the open session, if any, for `reason`.
    pub fn end(&mut self, reason: SessionEnd) -> Option<Ended> {
        self.open.take().map(|o| Ended {
            role: o.role,
            session: o.id,
            reason,
        })
    }

    /// The presence window closed: drops pending emergency challenges, and ends the open
    /// session if it is an emergency one.
    pub fn end_emergency(&mut self) -> Option<Ended> {
        self.drop_emergency_challenges();
        if self.open_role() == Some(Role::Emergency) {
            return self.end(SessionEnd::PresenceEnded);
        }
        None
    }

    /// Drops the pending challenges of `role` (of every role for `None`): its key just
    /// changed, and a challenge made with the old one must not open a session.
    pub fn drop_pending(&mut self, role: Option<Role>) {
        for slot in self.pending.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|p| role.is_none_or(|r| r == p.role))
            {
                *slot = None;
            }
        }
    }

    fn drop_emergency_challenges(&mut self) {
        for slot in self.pending.iter_mut() {
            if slot.as_ref().is_some_and(|p| p.role == Role::Emergency) {
                *slot = None;
            }
        }
    }

    /// `SessionHello`: a challenge in a free slot, or the same challenge again for a
    /// hello already pending. Never touches the open session.
    pub fn hello(&mut self, cx: HelloContext<'_>, hello: Hello) -> Step {
        self.expire(cx.now);
        let Hello {
            role,
            epoch,
            nonce: host_nonce,
            ephemeral: host_ephemeral,
        } = hello;
        if role == Role::Emergency && !cx.presence {
            return Step::Refuse(Refusal::PresenceRequired);
        }
        let Some((current, key)) = cx.key else {
            return Step::Refuse(Refusal::NotProvisioned);
        };
        if epoch != current {
            return Step::Refuse(Refusal::StaleKey { epoch, current });
        }
        if let Some(p) = self
            .pending
            .iter()
            .flatten()
            .find(|p| p.host_nonce == host_nonce)
        {
            // A repeated hello (its challenge was lost): the same challenge, whatever
            // ephemeral key it carries (the challenge is bound to the first one, so it is
            // of no use to anyone else). The same nonce for another role would spoil the
            // pending one: refused.
            if p.role != role {
                return Step::Refuse(Refusal::Busy);
            }
            return Step::Challenge {
                nonce: p.device_nonce,
                ephemeral: p.device_ephemeral,
                proof: p.proof,
            };
        }
        let Some(index) = self.free_slot(cx.now) else {
            return Step::Refuse(Refusal::Busy);
        };
        let secret = self.draw();
        let Some(shared) = secret.agree(&host_ephemeral) else {
            return Step::Refuse(Refusal::Malformed);
        };
        let device_ephemeral = secret.public();
        drop(secret);
        self.counter = self.counter.wrapping_add(1);
        let device_nonce = device_nonce(&cx.nonce_key, self.epoch, self.counter);
        let th = Transcript {
            binding: cx.binding,
            role,
            epoch,
            serial: cx.serial,
            host_nonce: &host_nonce,
            host_ephemeral: &host_ephemeral,
            device_nonce: &device_nonce,
            device_ephemeral: &device_ephemeral,
        }
        .hash();
        let keys = HandshakeKeys::derive(&shared, &key, &th);
        let proof = keys.device_proof(&th);
        let host_proof = keys.host_proof(&th);
        let keys = keys.into_session();
        let Some(slot) = self.pending.get_mut(index) else {
            return Step::Refuse(Refusal::Busy);
        };
        *slot = Some(Pending {
            role,
            host_nonce,
            device_nonce,
            device_ephemeral,
            proof,
            host_proof,
            keys,
            at: cx.now,
        });
        Step::Challenge {
            nonce: device_nonce,
            ephemeral: device_ephemeral,
            proof,
        }
    }

    /// A free slot, else the oldest one past [`MIN_PENDING_MS`].
    fn free_slot(&self, now: Timestamp) -> Option<usize> {
        let mut best: Option<(usize, Timestamp)> = None;
        for (i, slot) in self.pending.iter().enumerate() {
            match slot {
                None => {
                    best = Some((i, Timestamp(0)));
                    break;
                }
                Some(p) if now.since(p.at) >= MIN_PENDING_MS => {
                    if best.is_none_or(|(_, at)| p.at < at) {
                        best = Some((i, p.at));
                    }
                }
                Some(_) => {}
            }
        }
        best.map(|(i, _)| i)
    }

    /// `SessionProof` for the challenge of `host_nonce`: opens a session (replacing the
    /// open one) only if the proof verifies; a wrong proof changes nothing. An emergency
    /// challenge is good only while the physical-presence signal is (`presence`): one
    /// answered after the window closed is dropped.
    pub fn proof(
        &mut self,
        now: Timestamp,
        host_nonce: &[u8; NONCE_LEN],
        proof: &[u8; PROOF_LEN],
        presence: bool,
    ) -> Step {
        self.expire(now);
        if !presence {
            self.drop_emergency_challenges();
        }
        let Some(slot) = self
            .pending
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|p| &p.host_nonce == host_nonce))
        else {
            return Step::Refuse(Refusal::SessionRequired);
        };
        let Some(p) = slot.as_ref() else {
            return Step::Refuse(Refusal::SessionRequired);
        };
        if !proofs_match(&p.host_proof, proof) {
            return Step::Failed { role: p.role };
        }
        let Some(p) = slot.take() else {
            return Step::Refuse(Refusal::SessionRequired);
        };
        let role = p.role;
        if role == Role::Emergency
            && matches!(
                self.open_role(),
                Some(Role::Clinician | Role::Service | Role::Emergency)
            )
        {
            // The emergency key is public: an emergency proof never takes over an open
            // session but a patient's (a responder's session cannot be stolen; applying
            // the magnet again ends it).
            return Step::Refuse(Refusal::Busy);
        }
        let keys = p.keys;
        let replaced = self.end(SessionEnd::Replaced);
        self.opened = self.opened.wrapping_add(1).max(1);
        self.open = Some(Open {
            role,
            id: self.opened,
            opener: Opener::new(&keys.to_device),
            sealer: Sealer::new(&keys.to_host),
            last_activity: now,
        });
        Step::Established {
            role,
            session: self.opened,
            replaced,
        }
    }

    /// Opens a sealed request body in place; refreshes the idle timer on success.
    /// `Err(None)`: no session.
    pub fn open<'b>(
        &mut self,
        header: &[u8; 5],
        body: &'b mut [u8],
        now: Timestamp,
    ) -> Result<&'b [u8], Option<SealError>> {
        let Some(open) = self.open.as_mut() else {
            return Err(None);
        };
        let plain = open.opener.open(header, body).map_err(Some)?;
        open.last_activity = now;
        Ok(plain)
    }

    /// Seals a response body; `None` without a session or with an exhausted counter
    /// (the programmer must then renew the session).
    pub fn seal(&mut self, header: &[u8; 5], plain: &[u8], out: &mut [u8]) -> Option<usize> {
        self.open
            .as_mut()
            .and_then(|open| open.sealer.seal(header, plain, out).ok())
    }

    /// Whether the open session can seal another answer.
    pub fn can_seal(&self) -> bool {
        self.open.as_ref().is_some_and(|o| !o.sealer.exhausted())
    }

    /// The role of the open session (without checking the idle timeout).
    pub fn open_role(&self) -> Option<Role> {
        self.open.as_ref().map(|o| o.role)
    }

    /// Number and role of the open session.
    pub fn current(&self) -> Option<(Role, u16)> {
        self.open.as_ref().map(|o| (o.role, o.id))
    }

    /// Challenges pending.
    pub fn pending(&self) -> usize {
        self.pending.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
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
}
