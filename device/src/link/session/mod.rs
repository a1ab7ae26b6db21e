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
mod tests;
