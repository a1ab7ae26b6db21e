//! The pump's side of secure sessions (see `thecal_protocol::session` and PROTOCOL.md
//! section 2.9): the handshake, role checks, sealing and opening, idle timeout and
//! back-off after failed handshakes.
//!
//! Session time is *link time*: on the pump it is the device clock; the simulator passes
//! real time, so a session does not expire in milliseconds when its virtual clock runs
//! 3600 times faster. Nothing here touches therapy: whatever happens to a session, the
//! pump core keeps dosing.

use thecal_protocol::message::{Refusal, Request, Role};
use thecal_protocol::session::{
    device_nonce, device_proof, role_key, session_keys, verify_host_proof, Opener, SealError,
    Sealer, Secret, Transcript, NONCE_LEN, PROOF_LEN,
};
use thecal_protocol::time::Timestamp;

/// A session ends after this long without a valid frame.
pub const IDLE_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// A handshake must complete within this long of its `SessionHello`.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 30 * 1000;
/// Longest back-off after failed handshakes.
pub const MAX_LOCKOUT_MS: u64 = 15 * 60 * 1000;

/// Whether `role` may make `request` inside a session.
pub fn permitted(role: Role, request: &Request) -> bool {
    use Request as R;
    let read = matches!(
        request,
        R::Identify | R::Ping { .. } | R::Status | R::Battery | R::Reservoir | R::ReadAlarms
    );
    let always = matches!(request, R::SessionClose);
    match role {
        Role::Clinician => !matches!(request, R::Provision { .. }),
        Role::Patient => read || always || matches!(request, R::PatientBolus),
        Role::Service => read || always || matches!(request, R::ReadLog { .. } | R::LinkStats),
    }
}

struct Open {
    role: Role,
    opener: Opener,
    sealer: Sealer,
    last_activity: Timestamp,
}

struct Challenged {
    role: Role,
    key: Secret,
    host_nonce: [u8; NONCE_LEN],
    device_nonce: [u8; NONCE_LEN],
    at: Timestamp,
}

enum State {
    Idle,
    Challenged(Challenged),
    Open(Open),
}

/// What the server must do after a handshake step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answer `SessionChallenge` with these.
    Challenge {
        /// Pump nonce.
        nonce: [u8; NONCE_LEN],
        /// Pump proof.
        proof: [u8; PROOF_LEN],
    },
    /// The session is open.
    Established,
    /// Refuse; `failures` is set when a failed attempt must be logged.
    Refuse {
        /// Why.
        refusal: Refusal,
        /// Consecutive failures, to log as a security event.
        failures: Option<(Role, u8)>,
    },
}

/// The session state of one link.
pub struct Sessions {
    state: State,
    failures: u8,
    locked_until: Timestamp,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    /// No session.
    pub fn new() -> Self {
        Self {
            state: State::Idle,
            failures: 0,
            locked_until: Timestamp(0),
        }
    }

    /// The role of the open session at link time `now`, ending it if it idled out.
    pub fn role(&mut self, now: Timestamp) -> Option<Role> {
        self.expire(now);
        match &self.state {
            State::Open(open) => Some(open.role),
            _ => None,
        }
    }

    fn expire(&mut self, now: Timestamp) {
        let expired = match &self.state {
            State::Open(o) => now.since(o.last_activity) >= IDLE_TIMEOUT_MS,
            State::Challenged(c) => now.since(c.at) >= HANDSHAKE_TIMEOUT_MS,
            State::Idle => false,
        };
        if expired {
            self.state = State::Idle;
        }
    }

    /// Ends the session.
    pub fn close(&mut self) {
        self.state = State::Idle;
    }

    /// `SessionHello`: starts a handshake with the pump's `n`-th nonce (the caller
    /// reserves `n` in persistent storage first).
    pub fn hello(
        &mut self,
        now: Timestamp,
        secret: Option<&Secret>,
        serial: &str,
        role: Role,
        host_nonce: [u8; NONCE_LEN],
        n: Option<u64>,
    ) -> Step {
        // A new hello always ends the current session.
        self.state = State::Idle;
        if now < self.locked_until {
            return refuse(Refusal::LockedOut {
                retry_after_ms: u32::try_from(self.locked_until.since(now)).unwrap_or(u32::MAX),
            });
        }
        let Some(secret) = secret else {
            return refuse(Refusal::NotProvisioned);
        };
        let Some(n) = n else {
            return refuse(Refusal::StorageFault);
        };
        let key = role_key(secret, role, serial);
        let nonce = device_nonce(secret, n);
        let proof = device_proof(
            &key,
            &Transcript {
                role,
                host_nonce: &host_nonce,
                device_nonce: &nonce,
                serial,
            },
        );
        self.state = State::Challenged(Challenged {
            role,
            key,
            host_nonce,
            device_nonce: nonce,
            at: now,
        });
        Step::Challenge { nonce, proof }
    }

    /// `SessionProof`: completes the handshake, or counts a failure.
    pub fn proof(&mut self, now: Timestamp, serial: &str, proof: &[u8; PROOF_LEN]) -> Step {
        self.expire(now);
        let State::Challenged(c) = core::mem::replace(&mut self.state, State::Idle) else {
            return refuse(Refusal::SessionRequired);
        };
        let t = Transcript {
            role: c.role,
            host_nonce: &c.host_nonce,
            device_nonce: &c.device_nonce,
            serial,
        };
        if !verify_host_proof(&c.key, &t, proof) {
            self.failures = self.failures.saturating_add(1);
            let shift = u32::from(self.failures.saturating_sub(1)).min(20);
            let backoff = (1000u64 << shift).min(MAX_LOCKOUT_MS);
            self.locked_until = now.plus_ms(backoff);
            return Step::Refuse {
                refusal: Refusal::AuthenticationFailed,
                failures: Some((c.role, self.failures)),
            };
        }
        self.failures = 0;
        let keys = session_keys(&c.key, &t);
        self.state = State::Open(Open {
            role: c.role,
            opener: Opener::new(&keys.to_device),
            sealer: Sealer::new(&keys.to_host),
            last_activity: now,
        });
        Step::Established
    }

    /// Opens a sealed request body in place; refreshes the idle timer on success.
    pub fn open<'b>(
        &mut self,
        now: Timestamp,
        header: &[u8; 5],
        body: &'b mut [u8],
    ) -> Result<&'b [u8], Option<SealError>> {
        self.expire(now);
        let State::Open(open) = &mut self.state else {
            return Err(None);
        };
        let plain = open.opener.open(header, body).map_err(Some)?;
        open.last_activity = now;
        Ok(plain)
    }

    /// Seals a response body; `None` without a session or with an exhausted counter
    /// (the programmer must then renew the session).
    pub fn seal(&mut self, header: &[u8; 5], plain: &[u8], out: &mut [u8]) -> Option<usize> {
        match &mut self.state {
            State::Open(open) => open.sealer.seal(header, plain, out).ok(),
            _ => None,
        }
    }

    /// The role of the open session, without checking the idle timeout (the frame being
    /// served was just opened, which refreshed it).
    pub fn current_role(&self) -> Option<Role> {
        match &self.state {
            State::Open(open) => Some(open.role),
            _ => None,
        }
    }

    /// Whether a session is open (without expiring it).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }
}

fn refuse(refusal: Refusal) -> Step {
    Step::Refuse {
        refusal,
        failures: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_see_only_their_requests() {
        let write = Request::StopTherapy;
        assert!(permitted(Role::Clinician, &write));
        assert!(!permitted(Role::Patient, &write));
        assert!(!permitted(Role::Service, &write));
        assert!(permitted(Role::Patient, &Request::PatientBolus));
        assert!(!permitted(Role::Service, &Request::PatientBolus));
        assert!(permitted(Role::Service, &Request::LinkStats));
        assert!(!permitted(
            Role::Clinician,
            &Request::Provision { secret: [0; 32] }
        ));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let mut s = Sessions::new();
        let secret = Secret([1; 32]);
        let mut now = Timestamp(0);
        let mut last = 0;
        for i in 0..14u64 {
            assert!(matches!(
                s.hello(now, Some(&secret), "S", Role::Clinician, [0; 16], Some(i)),
                Step::Challenge { .. }
            ));
            assert!(matches!(
                s.proof(now, "S", &[0; 32]),
                Step::Refuse {
                    refusal: Refusal::AuthenticationFailed,
                    ..
                }
            ));
            let wait = s.locked_until.since(now);
            assert!(wait >= last && wait <= MAX_LOCKOUT_MS, "{wait}");
            last = wait;
            // Still locked just before the end.
            assert!(matches!(
                s.hello(
                    now.plus_ms(wait - 1),
                    Some(&secret),
                    "S",
                    Role::Clinician,
                    [0; 16],
                    Some(99)
                ),
                Step::Refuse {
                    refusal: Refusal::LockedOut { .. },
                    ..
                }
            ));
            now = now.plus_ms(wait);
        }
        assert_eq!(last, MAX_LOCKOUT_MS);
    }
}
