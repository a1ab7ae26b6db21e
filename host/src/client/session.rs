//! Sessions (PROTOCOL.md 2.9): the handshake, renewal's first half, close, and the key
//! lifecycle requests that only make sense with a session (provisioning, rotation).
//!
//! A client given a [`RoleKey`] ([`Client::connect`], [`Client::authenticate`]) opens a
//! session before its first request and keeps it:
//!
//! * **Handshake.** `SessionHello` with 16 fresh random bytes from the operating system
//!   and a fresh ephemeral X25519 key; the pump's proof is checked before anything else
//!   is sent, and a pump that does not prove it holds the role key gets nothing more
//!   ([`Error::PumpNotAuthenticated`]). Then `SessionProof` naming that nonce, and both
//!   sides derive the session keys. A pump whose challenge slots are all taken answers
//!   `Busy`: the client waits [`BUSY_WAIT`] and tries again, a few times, before
//!   [`Error::Busy`]. The emergency role needs no key file ([`RoleKey::emergency`]),
//!   only the pump's physical-presence signal. Each handshake message is sent once per
//!   try with a fresh request id (a late answer to an earlier try is then stale, never
//!   mistaken for the current one); a try that goes unanswered starts over.
//! * **Sealed frames.** Every request except the handshake and `Provision` (and
//!   `Identify` before a session is open) is sealed (the `SEALED` flag, its own
//!   counter); while a session is open only sealed answers that open under the session
//!   key are accepted: anything else carrying the request's id is dropped and counted
//!   ([`super::ClientCounters::unauthentic`]).
//! * **Renewal** is the engine's (`engine.rs`): a plain `Refused(SessionRequired)` in
//!   answer to a sealed request means the pump lost the session.
//! * [`Client::close`] ends the session (`SessionClose`).

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::endpoint::{Provision, RotateKey};
use thecal_protocol::message::{Identity, Refusal, Role};
use thecal_protocol::session::{
    role_key, Binding, Ephemeral, HandshakeKeys, Opener, ProvisionKeys, ProvisionTranscript,
    Sealer, Secret, Transcript, FIRST_EPOCH, NONCE_LEN, PUBLIC_LEN,
};
use thecal_protocol::{Request, Response};

use super::wire::Outcome;
use super::{Client, Trace};
use crate::error::Error;
use crate::keys::RoleKey;

/// How long the client waits before trying a handshake again after `Busy`.
pub const BUSY_WAIT: Duration = Duration::from_millis(1_000);
/// `Busy` answers a handshake waits out before giving up ([`Error::Busy`]).
pub const BUSY_RETRIES: u32 = 4;

/// The role key and the pump's serial number, kept to renew the session.
pub(super) struct Credentials {
    pub(super) key: RoleKey,
    pub(super) serial: String,
}

/// The programmer's half of an open session.
pub(super) struct Session {
    pub(super) sealer: Sealer,
    pub(super) opener: Opener,
    /// Programmer → pump key (to restart the sealer at a chosen counter in tests).
    pub(super) to_device: Secret,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    /// Opens a session as `key.role` on the pump with `serial` (from `Identify`); it is
    /// kept, and renewed when the pump loses it, until [`Client::close`].
    pub async fn authenticate(&mut self, key: RoleKey, serial: &str) -> Result<(), Error> {
        self.credentials = Some(Credentials {
            key,
            serial: serial.to_string(),
        });
        self.handshake().await
    }

    /// Ends the session (`SessionClose`, one attempt, best effort: a pump that already
    /// lost it has nothing to close). The client forgets its key: a later request is
    /// sent without a session.
    pub async fn close(&mut self) -> Result<(), Error> {
        self.credentials = None;
        if self.session.is_none() {
            return Ok(());
        }
        let request = Request::SessionClose;
        let id = self.fresh_id();
        self.counters.requests += 1;
        let started = Instant::now();
        let outcome = match self.frame(&request, id, false, true, None) {
            Ok(frame) => self.exchange(&frame, id, &request, true).await,
            Err(e) => Err(e),
        };
        self.session = None;
        match outcome? {
            Some(Outcome::Answer(Response::SessionClosed)) => {
                self.trace(Trace::Answered {
                    id,
                    response: "SessionClosed",
                    elapsed: started.elapsed(),
                });
                Ok(())
            }
            Some(Outcome::SessionLost) => Ok(()),
            Some(Outcome::Answer(other)) => Err(Error::UnexpectedResponse {
                request: request.name(),
                got: other.name(),
            }),
            None => Err(Error::Timeout {
                request: request.name(),
                attempts: 1,
                timeout: self.config.timeout,
            }),
        }
    }

    /// Provisions an unprovisioned pump (plain frame): sends the ephemeral public key of
    /// `agreement` ([`Agreement::new`]: the device secret is agreed, never sent), checks
    /// the pump's confirmation, then proves the secret took by opening a service session
    /// with the epoch-1 service key and closing it again.
    ///
    /// A pump that already holds a secret refuses: [`Error::AlreadyProvisioned`]. When
    /// the first attempt went unanswered and a retry is refused, the first one may have
    /// been stored: the handshake decides.
    pub async fn provision(&mut self, agreement: &Agreement) -> Result<(), Error> {
        let retries_before = self.counters.retries;
        let request = Request::Provision {
            ephemeral: agreement.ephemeral,
        };
        let answer = self.call_raw(request.clone()).await?;
        let retried = self.counters.retries != retries_before;
        match answer {
            // A retry refused: the first attempt may have been stored (see below).
            Response::Refused(Refusal::NotPermitted) if retried => {}
            Response::Refused(Refusal::NotPermitted) => return Err(Error::AlreadyProvisioned),
            answer => {
                let (confirm, _) = super::pick::<Provision>(None, &request, answer)?;
                if !agreement.keys.verify(&confirm) {
                    return Err(Error::ProvisionNotConfirmed);
                }
            }
        }
        let service = agreement.role_key(Role::Service, FIRST_EPOCH);
        match self.authenticate(service, &agreement.serial).await {
            Ok(()) => self.close().await,
            Err(Error::PumpNotAuthenticated { .. }) if retried => Err(Error::AlreadyProvisioned),
            Err(e) => Err(e),
        }
    }

    /// Re-provisions the pump from an open service session: a new device secret agreed
    /// from `agreement`, every role key moved to one new epoch (returned) and derived from
    /// it; every older key is refused from then on. The session stays open.
    pub async fn reprovision(&mut self, agreement: &Agreement) -> Result<u32, Error> {
        self.require_session("Provision")?;
        let request = Request::Provision {
            ephemeral: agreement.ephemeral,
        };
        let answer = self.call_raw(request.clone()).await?;
        // `None`: a refusal stays `Error::Refused` (the key workflows take it as certain).
        let (confirm, epoch) = super::pick::<Provision>(None, &request, answer)?;
        if agreement.keys.verify(&confirm) {
            Ok(epoch)
        } else {
            Err(Error::ProvisionNotConfirmed)
        }
    }

    /// Replaces the key of `new.role` with `new` (its epoch must be the role's epoch in
    /// force plus one): a clinician session for the patient and clinician keys, a service
    /// session for the service key. The key travels only inside the sealed session. A
    /// rotation of this session's own role keeps the session open; the next handshake
    /// needs the new key.
    pub async fn rotate_key(&mut self, new: &RoleKey) -> Result<(), Error> {
        // Never in a plain frame: the new key would cross the link in the clear.
        self.require_session("RotateKey")?;
        let request = Request::RotateKey {
            role: new.role,
            epoch: new.epoch,
            key: *new.key.as_bytes(),
        };
        let answer = self.call_raw(request.clone()).await?;
        if let Response::Refused(Refusal::StaleKey { epoch, current }) = answer {
            return Err(Error::StaleKey {
                role: new.role,
                epoch,
                current,
            });
        }
        // `None`: a refusal stays `Error::Refused` (the key workflows take it as certain).
        match super::pick::<RotateKey>(None, &request, answer)? {
            (role, epoch) if role == new.role && epoch == new.epoch => {
                if let Some(c) = self.credentials.as_mut().filter(|c| c.key.role == role) {
                    c.key = new.duplicate();
                }
                Ok(())
            }
            _ => Err(Error::UnexpectedResponse {
                request: request.name(),
                got: "KeyRotated for another role or epoch",
            }),
        }
    }

    /// Refuses, without sending anything, a request that must travel sealed when this
    /// client has no key to open a session with.
    pub(super) fn require_session(&self, request: &'static str) -> Result<(), Error> {
        match self.credentials {
            Some(_) => Ok(()),
            None => Err(Error::Refused {
                request,
                refusal: Refusal::SessionRequired,
            }),
        }
    }

    /// Remembers what `Identify` said: bound into every handshake transcript.
    pub(super) fn remember(&mut self, identity: &Identity) {
        self.identity = Some((
            Binding {
                version: identity.protocol,
                schema: identity.schema,
                capabilities: identity.capabilities.0,
            },
            identity.public_key,
        ));
    }

    /// Whether `request` goes sealed: with a role key, everything but the handshake and
    /// `Provision`, and `Identify` too once a session is open (a plain frame inside a
    /// session is unauthenticated traffic the pump pays from its energy budget).
    pub(super) fn seals(&self, request: &Request) -> bool {
        self.credentials.is_some()
            && (request.needs_session()
                || (matches!(request, Request::Identify | Request::Provision { .. })
                    && self.session.is_some()))
    }

    /// Opens a session with the client's role key: up to `retries + 1` tries, each with
    /// a fresh nonce, a fresh ephemeral X25519 key and fresh request ids.
    pub(super) async fn handshake(&mut self) -> Result<(), Error> {
        self.session = None;
        if self.identity.is_none() {
            // The transcript binds what `Identify` announced.
            match self.once(&Request::Identify).await? {
                Some(Response::Identity(identity)) => self.remember(&identity),
                _ => {
                    return Err(Error::Timeout {
                        request: "Identify",
                        attempts: 1,
                        timeout: self.config.timeout,
                    })
                }
            }
        }
        let Some(Credentials { key, serial }) = self.credentials.as_ref() else {
            return Err(Error::Refused {
                request: "SessionHello",
                refusal: Refusal::SessionRequired,
            });
        };
        let (key, serial) = (key.duplicate(), serial.clone());
        let role = key.role;
        let Some((binding, _)) = self.identity else {
            return Err(Error::NotProvisioned);
        };
        let tries = self.config.retries.saturating_add(1);
        let mut busy = 0;
        let mut tried = 0;
        while tried < tries {
            tried += 1;
            let mut host_nonce = [0u8; NONCE_LEN];
            getrandom::fill(&mut host_nonce).map_err(Error::Random)?;
            let ephemeral = Ephemeral::from_bytes(
                *crate::keys::random_secret()
                    .map_err(Error::Random)?
                    .as_bytes(),
            );
            let host_ephemeral = ephemeral.public();
            let hello = Request::SessionHello {
                role,
                epoch: key.epoch,
                nonce: host_nonce,
                ephemeral: host_ephemeral,
            };
            let (device_nonce, device_ephemeral, device_proof) = match self.once(&hello).await? {
                None => continue,
                Some(Response::SessionChallenge {
                    nonce,
                    ephemeral,
                    proof,
                }) => (nonce, ephemeral, proof),
                // Every challenge slot is young (another programmer, or a stranger):
                // they free up within 2 s.
                Some(Response::Refused(Refusal::Busy)) if busy < BUSY_RETRIES => {
                    busy += 1;
                    tried -= 1;
                    tokio::time::sleep(BUSY_WAIT).await;
                    continue;
                }
                Some(Response::Refused(refusal)) => return Err(handshake_refusal(refusal, role)),
                Some(other) => {
                    return Err(Error::UnexpectedResponse {
                        request: hello.name(),
                        got: other.name(),
                    })
                }
            };
            let th = Transcript {
                binding,
                role,
                epoch: key.epoch,
                serial: &serial,
                host_nonce: &host_nonce,
                host_ephemeral: &host_ephemeral,
                device_nonce: &device_nonce,
                device_ephemeral: &device_ephemeral,
            }
            .hash();
            // A low-order point is no pump's key: nothing more for it.
            let Some(shared) = ephemeral.agree(&device_ephemeral) else {
                return Err(Error::PumpNotAuthenticated { role });
            };
            drop(ephemeral);
            let keys = HandshakeKeys::derive(&shared, &key.key, &th);
            if !keys.verify_device_proof(&th, &device_proof) {
                // Nothing more for a device that does not hold the key (or that was
                // shown another Identify than the pump announced: a downgrade).
                return Err(Error::PumpNotAuthenticated { role });
            }
            let proof = Request::SessionProof {
                nonce: host_nonce,
                proof: keys.host_proof(&th),
            };
            match self.once(&proof).await? {
                // Unanswered, or the pump no longer waits for this proof: start over.
                None | Some(Response::Refused(Refusal::SessionRequired)) => continue,
                Some(Response::SessionEstablished) => {
                    let keys = keys.into_session();
                    self.session = Some(Session {
                        sealer: Sealer::new(&keys.to_device),
                        opener: Opener::new(&keys.to_host),
                        to_device: keys.to_device,
                    });
                    self.counters.sessions += 1;
                    self.trace(Trace::SessionOpened { role });
                    return Ok(());
                }
                Some(Response::Refused(refusal)) => return Err(handshake_refusal(refusal, role)),
                Some(other) => {
                    return Err(Error::UnexpectedResponse {
                        request: proof.name(),
                        got: other.name(),
                    })
                }
            }
        }
        Err(Error::Timeout {
            request: "SessionHello",
            attempts: tries,
            timeout: self.config.timeout,
        })
    }

    /// One plain attempt with a fresh id and no retry; `None` when it timed out.
    async fn once(&mut self, request: &Request) -> Result<Option<Response>, Error> {
        let id = self.fresh_id();
        self.counters.requests += 1;
        let started = Instant::now();
        let frame = self.frame(request, id, false, false, None)?;
        match self.exchange(&frame, id, request, false).await? {
            Some(Outcome::Answer(response)) => {
                self.trace(Trace::Answered {
                    id,
                    response: response.name(),
                    elapsed: started.elapsed(),
                });
                Ok(Some(response))
            }
            None | Some(Outcome::SessionLost) => {
                self.trace(Trace::TimedOut { id, attempt: 1 });
                Ok(None)
            }
        }
    }
}

/// The provisioning programmer's side of a key agreement with the pump's static key:
/// the device secret (known before anything is sent, so the key files can be written
/// first) and the ephemeral public key `Provision` carries.
#[derive(Debug)]
pub struct Agreement {
    /// The pump's serial number.
    pub serial: String,
    /// The ephemeral public key to send.
    pub ephemeral: [u8; PUBLIC_LEN],
    keys: ProvisionKeys,
}

impl Agreement {
    /// Agrees a device secret with the pump of `serial` whose static public key is
    /// `pump_public` (from its label, or from `Identify`), from a fresh ephemeral key of
    /// the operating system's random source. The ephemeral secret is dropped here.
    pub fn new(serial: &str, pump_public: &[u8; PUBLIC_LEN]) -> Result<Agreement, Error> {
        let secret = Ephemeral::from_bytes(
            *crate::keys::random_secret()
                .map_err(Error::Random)?
                .as_bytes(),
        );
        let ephemeral = secret.public();
        let dh = secret
            .agree(pump_public)
            .ok_or(Error::ProvisionNotConfirmed)?;
        let keys = ProvisionKeys::derive(
            &dh,
            &ProvisionTranscript {
                serial,
                pump_public,
                ephemeral: &ephemeral,
            },
        );
        Ok(Agreement {
            serial: serial.to_string(),
            ephemeral,
            keys,
        })
    }

    /// The key of `role` at `epoch` derived from the agreed device secret.
    pub fn role_key(&self, role: Role, epoch: u32) -> RoleKey {
        RoleKey {
            role,
            epoch,
            key: role_key(&self.keys.device_secret, role, epoch, &self.serial),
        }
    }
}

/// A handshake refusal, told apart.
fn handshake_refusal(refusal: Refusal, role: Role) -> Error {
    match refusal {
        Refusal::Busy => Error::Busy,
        Refusal::PresenceRequired => Error::PresenceRequired,
        Refusal::AuthenticationFailed => Error::AuthenticationFailed { role },
        Refusal::NotProvisioned => Error::NotProvisioned,
        Refusal::StaleKey { epoch, current } => Error::StaleKey {
            role,
            epoch,
            current,
        },
        refusal => Error::Refused {
            request: "SessionHello",
            refusal,
        },
    }
}
