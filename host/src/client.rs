//! The typed async client: one method per request, over any byte link.
//!
//! ## Transport rules
//!
//! * Every request gets a fresh 16-bit request id (a counter from a random start, so two
//!   programmer sessions rarely reuse each other's ids in the pump's reply cache).
//! * Each attempt waits at most [`ClientConfig::timeout`] for the answer. A lost answer is
//!   retried up to [`ClientConfig::retries`] times with the **same id** and the
//!   [`Flags::RETRY`] bit set. A therapy change carries an idempotency key (8 random
//!   bytes, drawn once per operation, inside the sealed body, [`Command`]); the pump
//!   answers a repeat of the same key from its reply cache instead of executing it
//!   again, so a retried bolus or schedule write happens once.
//! * Answers carrying another id (late answers to an earlier request) and pump events
//!   are discarded; corrupt frames are dropped (the decoder resynchronises) and count as
//!   lost.
//! * When every attempt of a therapy-changing request goes unanswered the result is
//!   [`Error::Uncertain`], which names what to read back; a read-only request gives
//!   [`Error::Timeout`].
//!
//! Every frame is preceded by a lone `0x00`, which flushes any partial frame the pump's
//! decoder still holds (see the frame codec docs).
//!
//! ## Sessions (PROTOCOL.md 2.9)
//!
//! A client given a [`RoleKey`] ([`Client::connect`], [`Client::authenticate`]) opens a
//! session before its first request and keeps it:
//!
//! * **Handshake.** `SessionHello` with 16 fresh random bytes from the operating system;
//!   the pump's proof is checked before anything else is sent, and a pump that does not
//!   prove it holds the role key gets nothing more ([`Error::PumpNotAuthenticated`]). Then
//!   `SessionProof` naming that nonce, and both sides derive the session keys. A pump
//!   whose challenge slots are all taken answers `Busy`: the client waits
//!   [`BUSY_WAIT`] and tries again, a few times, before [`Error::Busy`]. The emergency
//!   role needs no key file ([`RoleKey::emergency`]), only the pump's physical-presence
//!   signal. Each handshake message is
//!   sent once per try with a fresh request id (a late answer to an earlier try is then
//!   stale, never mistaken for the current one); a try that goes unanswered starts over.
//! * **Sealed frames.** Every request except the handshake and `Provision` (and
//!   `Identify` before a session is open) is sealed (the [`Flags::SEALED`] bit, its own counter); while a session is open only
//!   sealed answers that open under the session key are accepted: anything else carrying
//!   the request's id is dropped and counted ([`ClientCounters::unauthentic`]). A retry
//!   after a timeout is sealed again with the next counter, same id, `RETRY` flag.
//! * **Renewal.** A plain `Refused(SessionRequired)` in answer to a
//!   sealed request means the pump lost the session (reset, idle timeout, another
//!   programmer): the client performs the handshake again, once, and sends the request
//!   again with the same id and the `RETRY` flag. If that fails the result is
//!   [`Error::SessionExpired`]. One exception, for safety: when an earlier attempt of a
//!   therapy-changing request went unanswered, the pump may have carried it out and then
//!   reset, losing its reply cache, so the request is **not** sent again: the session is
//!   renewed and the result is [`Error::Uncertain`]. A sending counter at its maximum
//!   renews the session too.
//! * [`Client::close`] ends the session (`SessionClose`).

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use thecal_protocol::frame::{
    decode_body, encode, encode_raw, EncodeError, Feed, Flags, FrameDecoder, FrameError, FrameKind,
    Header, MAX_BODY, MAX_WIRE,
};
use thecal_protocol::message::{
    AlarmEntry, AlarmKind, BatteryReport, BolusReport, BolusRequest, Command, Identity, LinkStats,
    LogPage, OpKey, PrescriptionRecord, Refusal, ReservoirReport, Revision, Role, StatusReport,
};
use thecal_protocol::prescription::{Prescription, PrescriptionDraft};
use thecal_protocol::session::{
    role_key, Binding, Ephemeral, HandshakeKeys, Opener, ProvisionKeys, ProvisionTranscript,
    SealError, Sealer, Secret, Transcript, FIRST_EPOCH, NONCE_LEN, PUBLIC_LEN, SEAL_OVERHEAD,
};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::Nanolitres;
use thecal_protocol::{Request, Response, PROTOCOL_VERSION, SCHEMA_HASH};

use crate::error::Error;
use crate::keys::{KeyFile, RoleKey};

/// How long the client waits before trying a handshake again after `Busy`.
pub const BUSY_WAIT: Duration = Duration::from_millis(1_000);
/// `Busy` answers a handshake waits out before giving up ([`Error::Busy`]).
pub const BUSY_RETRIES: u32 = 4;

/// Timeout and retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long one attempt waits for its answer.
    pub timeout: Duration,
    /// Repeats after the first attempt (same id, [`Flags::RETRY`] set).
    pub retries: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(1_500),
            retries: 2,
        }
    }
}

/// What the client did on the link, for `-v` output and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trace {
    /// A request frame was written.
    Sent {
        /// Request id.
        id: u16,
        /// Request name.
        request: &'static str,
        /// Whether it carried the retry flag.
        retry: bool,
        /// Wire bytes, delimiters included.
        bytes: usize,
    },
    /// The answer arrived.
    Answered {
        /// Request id.
        id: u16,
        /// Answer name.
        response: &'static str,
        /// Time since the first attempt was sent.
        elapsed: Duration,
    },
    /// An attempt timed out.
    TimedOut {
        /// Request id.
        id: u16,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// An answer to another request id was discarded.
    Stale {
        /// Its id.
        id: u16,
    },
    /// A frame that is not an answer (a pump event) was skipped.
    NotAnAnswer {
        /// Its id.
        id: u16,
    },
    /// A corrupt chunk was dropped.
    BadFrame(FrameError),
    /// A session was opened.
    SessionOpened {
        /// Its role.
        role: Role,
    },
    /// The pump answered a sealed request with a plain `SessionRequired`:
    /// it no longer holds the session.
    SessionLost {
        /// Request id.
        id: u16,
    },
    /// An answer with the awaited id was dropped: not sealed, or it did not open under
    /// the session key (forged, replayed, another session's).
    Unauthentic {
        /// Its id.
        id: u16,
    },
}

/// Link counters kept by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCounters {
    /// Requests made (not counting retries).
    pub requests: u32,
    /// Retries sent.
    pub retries: u32,
    /// Stale answers discarded.
    pub stale: u32,
    /// Corrupt chunks dropped.
    pub bad_frames: u32,
    /// Sessions opened (the first one and every renewal).
    pub sessions: u32,
    /// Answers dropped because they were not authentic inside a session.
    pub unauthentic: u32,
}

type Tracer = Box<dyn FnMut(&Trace) + Send>;

/// A typed client for one pump, over any byte link: a serial port, a pty, an in-memory
/// pipe.
pub struct Client<T> {
    io: T,
    decoder: Box<FrameDecoder>,
    /// Bytes read from the link and not yet fed to the decoder.
    pending: Vec<u8>,
    next_id: u16,
    config: ClientConfig,
    counters: ClientCounters,
    tracer: Option<Tracer>,
    /// The role key and the pump's serial number, kept to renew the session.
    credentials: Option<Credentials>,
    /// The open session, if any.
    session: Option<Session>,
    /// What the last `Identify` said: bound into every handshake transcript (an
    /// attacker who rewrote it makes the pump's proof fail), and the pump's static key.
    identity: Option<(Binding, [u8; PUBLIC_LEN])>,
}

struct Credentials {
    key: RoleKey,
    serial: String,
}

/// The programmer's half of an open session.
struct Session {
    sealer: Sealer,
    opener: Opener,
    /// Programmer → pump key (to restart the sealer at a chosen counter in tests).
    to_device: Secret,
}

/// A pipelined request waiting for its answer.
struct InFlight<K> {
    key: K,
    request: Request,
    id: u16,
    sealed: bool,
    /// Attempts sent.
    sent: u32,
    /// Attempts that timed out.
    timeouts: u32,
    /// A session renewal was already made for it.
    renewed: bool,
    started: Instant,
    /// When the current attempt times out.
    deadline: tokio::time::Instant,
}

/// How one attempt ended.
// Short-lived, on the stack of one request: not worth a box.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Answer(Response),
    TimedOut,
    /// A plain `SessionRequired` answered a sealed request.
    SessionLost,
}

impl<T> std::fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("role", &self.credentials.as_ref().map(|c| c.key.role))
            .field("session", &self.session.is_some())
            .field("next_id", &self.next_id)
            .field("config", &self.config)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Checks that the pump speaks our protocol version and message schema.
pub fn check_compatible(identity: &Identity) -> Result<(), Error> {
    if identity.protocol == PROTOCOL_VERSION && identity.schema == SCHEMA_HASH {
        Ok(())
    } else {
        Err(Error::Incompatible {
            pump_protocol: identity.protocol,
            pump_schema: identity.schema,
            host_protocol: PROTOCOL_VERSION,
            host_schema: SCHEMA_HASH,
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    /// A client over `io`, without talking to the pump yet (see [`Client::connect`]).
    pub fn new(io: T, config: ClientConfig) -> Self {
        let start = RandomState::new().hash_one(Instant::now()) as u16;
        Self::with_first_id(io, config, start)
    }

    /// Like [`Client::new`] with a chosen first request id (for tests).
    pub fn with_first_id(io: T, config: ClientConfig, first_id: u16) -> Self {
        Self {
            io,
            decoder: Box::default(),
            pending: Vec::new(),
            next_id: first_id,
            config,
            counters: ClientCounters::default(),
            tracer: None,
            credentials: None,
            session: None,
            identity: None,
        }
    }

    /// A client over `io` that has identified the pump, checked that it speaks this
    /// programmer's protocol version and schema, and opened a session with `key`.
    pub async fn connect(
        io: T,
        config: ClientConfig,
        key: RoleKey,
    ) -> Result<(Self, Identity), Error> {
        let (mut client, identity) = Self::connect_unauthenticated(io, config).await?;
        client.authenticate(key, identity.serial.as_str()).await?;
        Ok((client, identity))
    }

    /// [`Client::connect`] with the key in `key_file`, which must be for this pump (its
    /// serial number, from `Identify`): checked before the handshake.
    pub async fn connect_with_key_file(
        io: T,
        config: ClientConfig,
        key_file: &KeyFile,
    ) -> Result<(Self, Identity), Error> {
        let (mut client, identity) = Self::connect_unauthenticated(io, config).await?;
        key_file.check_pump(identity.serial.as_str())?;
        client
            .authenticate(key_file.role_key(), identity.serial.as_str())
            .await?;
        Ok((client, identity))
    }

    /// A client over `io` that has identified the pump and checked its protocol version
    /// and schema, without a session: only `Identify` (and `Provision` on a fresh pump)
    /// is served so.
    pub async fn connect_unauthenticated(
        io: T,
        config: ClientConfig,
    ) -> Result<(Self, Identity), Error> {
        let mut client = Self::new(io, config);
        let identity = client.identify().await?;
        check_compatible(&identity)?;
        Ok((client, identity))
    }

    /// Opens a session as `key.role` on the pump with `serial` (from `Identify`); it is
    /// kept, and renewed when the pump loses it, until [`Client::close`].
    pub async fn authenticate(&mut self, key: RoleKey, serial: &str) -> Result<(), Error> {
        self.credentials = Some(Credentials {
            key,
            serial: serial.to_string(),
        });
        self.handshake().await
    }

    /// The role of this client's key, if it has one.
    pub fn role(&self) -> Option<Role> {
        self.credentials.as_ref().map(|c| c.key.role)
    }

    /// Whether a session is open (as far as this side knows).
    pub fn has_session(&self) -> bool {
        self.session.is_some()
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
            Ok(frame) => self.exchange(&frame, id, &request, true, false).await,
            Err(e) => Err(e),
        };
        self.session = None;
        match outcome? {
            Outcome::Answer(Response::SessionClosed) => {
                self.trace(Trace::Answered {
                    id,
                    response: "SessionClosed",
                    elapsed: started.elapsed(),
                });
                Ok(())
            }
            Outcome::SessionLost => Ok(()),
            Outcome::Answer(other) => Err(Error::UnexpectedResponse {
                request: request.name(),
                got: other.name(),
            }),
            Outcome::TimedOut => Err(Error::Timeout {
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
        let answer = self.call(&request).await?;
        let retried = self.counters.retries != retries_before;
        match answer {
            Response::Provisioned { confirm, .. } if agreement.keys.verify(&confirm) => {}
            Response::Provisioned { .. } => return Err(Error::ProvisionNotConfirmed),
            Response::Refused(Refusal::NotPermitted) if retried => {}
            Response::Refused(Refusal::NotPermitted) => return Err(Error::AlreadyProvisioned),
            Response::Refused(refusal) => {
                return Err(Error::Refused {
                    request: "Provision",
                    refusal,
                })
            }
            other => {
                return Err(Error::UnexpectedResponse {
                    request: "Provision",
                    got: other.name(),
                })
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
        match self.call(&request).await? {
            Response::Provisioned { confirm, epoch } if agreement.keys.verify(&confirm) => {
                Ok(epoch)
            }
            Response::Provisioned { .. } => Err(Error::ProvisionNotConfirmed),
            Response::Refused(refusal) => Err(Error::Refused {
                request: "Provision",
                refusal,
            }),
            other => Err(Error::UnexpectedResponse {
                request: "Provision",
                got: other.name(),
            }),
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
        let answer = self.call(&request).await?;
        match answer {
            Response::KeyRotated { role, epoch } if role == new.role && epoch == new.epoch => {
                if let Some(c) = self.credentials.as_mut().filter(|c| c.key.role == role) {
                    c.key = new.duplicate();
                }
                Ok(())
            }
            Response::Refused(Refusal::StaleKey { epoch, current }) => Err(Error::StaleKey {
                role: new.role,
                epoch,
                current,
            }),
            Response::Refused(refusal) => Err(Error::Refused {
                request: "RotateKey",
                refusal,
            }),
            other => Err(Error::UnexpectedResponse {
                request: "RotateKey",
                got: other.name(),
            }),
        }
    }

    /// Sends `request` as it is, inside the session, **without** the client's own checks
    /// (a prescription is not validated first), and returns whatever the pump answered,
    /// a refusal included. For diagnostics and for tests of the pump's own checks: the
    /// pump enforces every rule whoever sends the request. The transport rules are the
    /// same as for every other request (retries, renewal, [`Error::Uncertain`]).
    pub async fn send_unchecked(&mut self, request: &Request) -> Result<Response, Error> {
        self.call(request).await
    }

    /// The link, to write raw bytes on it (line-noise tests). Bytes written here bypass
    /// the session; the pump drops anything that is not a valid frame.
    pub fn link_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Restarts this side's sending counter at `next` under the current session key
    /// (tests of the counter limit: at `u32::MAX` the session is renewed).
    #[doc(hidden)]
    pub fn restart_send_counter(&mut self, next: u32) {
        if let Some(s) = self.session.as_mut() {
            s.sealer = Sealer::starting_at(&s.to_device, next);
        }
    }

    /// Calls `tracer` for everything the client does on the link.
    pub fn set_tracer(&mut self, tracer: impl FnMut(&Trace) + Send + 'static) {
        self.tracer = Some(Box::new(tracer));
    }

    /// The timeout and retry policy.
    pub fn config(&self) -> ClientConfig {
        self.config
    }

    /// Link counters of this client.
    pub fn counters(&self) -> ClientCounters {
        self.counters
    }

    /// The link, back.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// Model, serial, firmware and protocol versions, the pump's static key and key
    /// epochs (served without a session). Remembered for the next handshake.
    pub async fn identify(&mut self) -> Result<Identity, Error> {
        let identity = self
            .ask(Request::Identify, |r| match r {
                Response::Identity(i) => Some(i),
                _ => None,
            })
            .await?;
        self.remember(&identity);
        Ok(identity)
    }

    /// Refuses, without sending anything, a request that must travel sealed when this
    /// client has no key to open a session with.
    fn require_session(&self, request: &'static str) -> Result<(), Error> {
        match self.credentials {
            Some(_) => Ok(()),
            None => Err(Error::Refused {
                request,
                refusal: Refusal::SessionRequired,
            }),
        }
    }

    fn remember(&mut self, identity: &Identity) {
        self.identity = Some((
            Binding {
                version: identity.protocol,
                schema: identity.schema,
                capabilities: identity.capabilities.0,
            },
            identity.public_key,
        ));
    }

    /// Liveness check; returns the round-trip time.
    pub async fn ping(&mut self) -> Result<Duration, Error> {
        let token = RandomState::new().hash_one(self.next_id) as u32;
        let started = Instant::now();
        self.ask(Request::Ping { token }, |r| match r {
            Response::Pong { token: t } if t == token => Some(()),
            _ => None,
        })
        .await?;
        Ok(started.elapsed())
    }

    /// One-screen summary.
    pub async fn status(&mut self) -> Result<StatusReport, Error> {
        self.ask(Request::Status, |r| match r {
            Response::Status(s) => Some(s),
            _ => None,
        })
        .await
    }

    /// Battery report.
    pub async fn battery(&mut self) -> Result<BatteryReport, Error> {
        self.ask(Request::Battery, |r| match r {
            Response::Battery(b) => Some(b),
            _ => None,
        })
        .await
    }

    /// Reservoir report with the pump's projections.
    pub async fn reservoir(&mut self) -> Result<ReservoirReport, Error> {
        self.ask(Request::Reservoir, |r| match r {
            Response::Reservoir(b) => Some(b),
            _ => None,
        })
        .await
    }

    /// The prescription in force and its revision.
    pub async fn prescription(&mut self) -> Result<PrescriptionRecord, Error> {
        self.ask(Request::ReadPrescription, |r| match r {
            Response::Prescription(p) => Some(p),
            _ => None,
        })
        .await
    }

    /// Replaces the prescription, atomically, if `expected` is still the revision in
    /// force. The draft is checked against every rule first and not sent if it breaks
    /// one ([`Error::Invalid`]). Returns the new revision.
    ///
    /// The draft must keep the drug and concentration in force: the pump derives every
    /// flow from the concentration, so it changes them only with a refill (see
    /// [`Client::refill`]) and refuses such a write with
    /// [`Refusal::DrugChangeNeedsRefill`].
    pub async fn write_prescription(
        &mut self,
        draft: PrescriptionDraft,
        expected: Revision,
    ) -> Result<Revision, Error> {
        Prescription::new(draft.clone()).map_err(Error::Invalid)?;
        let request = Request::WritePrescription {
            expected,
            prescription: draft,
        };
        self.ask(request, |r| match r {
            Response::PrescriptionWritten { revision } => Some(revision),
            _ => None,
        })
        .await
    }

    /// [`Client::write_prescription`], then reads the prescription back and checks that
    /// the pump holds exactly `draft` under the new revision.
    pub async fn write_and_verify(
        &mut self,
        draft: PrescriptionDraft,
        expected: Revision,
    ) -> Result<PrescriptionRecord, Error> {
        let written = self.write_prescription(draft.clone(), expected).await?;
        let record = self.prescription().await?;
        if record.revision == written && record.prescription.draft() == &draft {
            Ok(record)
        } else {
            Err(Error::VerifyFailed {
                written: written.0,
                read: record.revision.0,
            })
        }
    }

    /// Records a refill, if `expected` is still the revision in force: the reservoir now
    /// holds `volume`. With a new drug or concentration, `prescription` is the whole
    /// prescription for the new solution (its doses are for it); the pump stores it with
    /// the refill as the next revision. The draft is checked against every rule first
    /// and nothing is sent if it breaks one ([`Error::Invalid`]). Returns the revision in
    /// force after the refill and the new reservoir report.
    pub async fn refill(
        &mut self,
        expected: Revision,
        volume: Nanolitres,
        prescription: Option<PrescriptionDraft>,
    ) -> Result<(Revision, ReservoirReport), Error> {
        if let Some(draft) = &prescription {
            Prescription::new(draft.clone()).map_err(Error::Invalid)?;
        }
        let request = Request::Refill {
            expected,
            volume,
            prescription,
        };
        self.ask(request, |r| match r {
            Response::Refilled {
                revision,
                reservoir,
            } => Some((revision, reservoir)),
            _ => None,
        })
        .await
    }

    /// [`Client::refill`] with a new prescription, then reads the prescription back and
    /// checks that the pump holds exactly `draft` under the revision the refill
    /// returned. The refill is recorded even when the read-back differs
    /// ([`Error::VerifyFailed`]).
    pub async fn refill_and_verify(
        &mut self,
        expected: Revision,
        volume: Nanolitres,
        draft: PrescriptionDraft,
    ) -> Result<(PrescriptionRecord, ReservoirReport), Error> {
        let (written, reservoir) = self.refill(expected, volume, Some(draft.clone())).await?;
        let record = self.prescription().await?;
        if record.revision == written && record.prescription.draft() == &draft {
            Ok((record, reservoir))
        } else {
            Err(Error::VerifyFailed {
                written: written.0,
                read: record.revision.0,
            })
        }
    }

    /// A clinician bolus (single, priming or bridge).
    pub async fn bolus(&mut self, bolus: BolusRequest) -> Result<BolusReport, Error> {
        self.ask(Request::ClinicianBolus(bolus), |r| match r {
            Response::BolusStarted(b) => Some(b),
            _ => None,
        })
        .await
    }

    /// A patient-activated bolus under the prescription's patient-bolus rules.
    pub async fn patient_bolus(&mut self) -> Result<BolusReport, Error> {
        self.ask(Request::PatientBolus, |r| match r {
            Response::PatientBolusStarted(b) => Some(b),
            _ => None,
        })
        .await
    }

    /// Stops therapy (the pump keeps the catheter open at the minimum flow).
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.ask(Request::StopTherapy, |r| match r {
            Response::TherapyStopped => Some(()),
            _ => None,
        })
        .await
    }

    /// Resumes the prescription after a stop.
    pub async fn resume(&mut self) -> Result<(), Error> {
        self.ask(Request::ResumeTherapy, |r| match r {
            Response::TherapyResumed => Some(()),
            _ => None,
        })
        .await
    }

    /// The active alarms.
    pub async fn alarms(&mut self) -> Result<Vec<AlarmEntry>, Error> {
        self.ask(Request::ReadAlarms, |r| match r {
            Response::Alarms(a) => Some(a.into_iter().collect()),
            _ => None,
        })
        .await
    }

    /// Acknowledges an alarm (a critical one re-asserts while its cause remains).
    pub async fn acknowledge(&mut self, alarm: AlarmKind) -> Result<(), Error> {
        self.ask(Request::AcknowledgeAlarm { alarm }, |r| match r {
            Response::AlarmAcknowledged => Some(()),
            _ => None,
        })
        .await
    }

    /// A page of the event log from entry `first`, at most `max` entries (the pump caps
    /// it at [`thecal_protocol::message::MAX_LOG_PAGE`]).
    pub async fn log_page(&mut self, first: u32, max: u8) -> Result<LogPage, Error> {
        self.ask(Request::ReadLog { first, max }, |r| match r {
            Response::LogPage(p) => Some(p),
            _ => None,
        })
        .await
    }

    /// Read-only requests with up to `window` of them in flight at once (pipelining): a
    /// bulk read (the event log) then keeps the line busy instead of idling for one
    /// round trip per request. `queue` holds the requests, each with a key of the
    /// caller's; `on_answer` gets every answer with its request's key, in the order the
    /// answers arrive, and may queue follow-up requests (served before the rest).
    ///
    /// The transport rules are those of every request, per request: a fresh id each,
    /// answers matched by id (so whatever order they come in), a lost answer retried
    /// after [`ClientConfig::timeout`] with the **same id** and [`Flags::RETRY`] (sealed
    /// again with the session's next counter), at most [`ClientConfig::retries`] times,
    /// then [`Error::Timeout`]. Never more than `window` requests are unanswered (a
    /// `window` of 0 counts as 1, which is stop-and-wait). A session the pump lost is
    /// renewed once per request and every request in flight is sent again (same id,
    /// `RETRY`). Each `on_answer` call happens once per request, for its first
    /// acceptable answer.
    ///
    /// Therapy-changing requests are not pipelined: one in `queue` is refused before
    /// anything is sent ([`Error::NotPipelinable`]), one queued by `on_answer` when it
    /// is reached.
    pub async fn pipelined<K>(
        &mut self,
        window: usize,
        mut queue: VecDeque<(K, Request)>,
        mut on_answer: impl FnMut(K, Response, &mut VecDeque<(K, Request)>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if let Some((_, request)) = queue.iter().find(|(_, r)| r.changes_state()) {
            return Err(Error::NotPipelinable {
                request: request.name(),
            });
        }
        let window = window.max(1);
        let mut flight: Vec<InFlight<K>> = Vec::with_capacity(window);
        loop {
            // Fill the window.
            while flight.len() < window {
                let Some((key, request)) = queue.pop_front() else {
                    break;
                };
                if request.changes_state() {
                    return Err(Error::NotPipelinable {
                        request: request.name(),
                    });
                }
                let sealed = self.seals(&request);
                if sealed && self.session.is_none() {
                    self.handshake().await?;
                }
                let id = self.fresh_id();
                self.counters.requests += 1;
                let mut f = InFlight {
                    key,
                    request,
                    id,
                    sealed,
                    sent: 0,
                    timeouts: 0,
                    renewed: false,
                    started: Instant::now(),
                    deadline: tokio::time::Instant::now(),
                };
                if !self.send_in_flight(&mut f).await? {
                    // The sending counter is used up: new session, everything again.
                    flight.push(f);
                    self.renew_in_flight(&mut flight).await?;
                    continue;
                }
                flight.push(f);
            }
            let Some(deadline) = flight.iter().map(|f| f.deadline).min() else {
                return Ok(());
            };
            let ids: Vec<u16> = flight.iter().map(|f| f.id).collect();
            let received =
                tokio::time::timeout_at(deadline, self.receive_where(&|i| ids.contains(&i))).await;
            let (header, body) = match received {
                Ok(frame) => frame?,
                Err(_elapsed) => {
                    let now = tokio::time::Instant::now();
                    let attempts = self.config.retries.saturating_add(1);
                    let mut exhausted = false;
                    for i in 0..flight.len() {
                        let Some(f) = flight.get_mut(i) else { break };
                        if f.deadline > now {
                            continue;
                        }
                        f.timeouts += 1;
                        let (id, attempt) = (f.id, f.timeouts);
                        self.trace(Trace::TimedOut { id, attempt });
                        let Some(f) = flight.get_mut(i) else { break };
                        if f.timeouts >= attempts {
                            return Err(self.unanswered(&f.request, f.timeouts));
                        }
                        if !self.send_in_flight(f).await? {
                            exhausted = true;
                            break;
                        }
                    }
                    if exhausted {
                        self.renew_in_flight(&mut flight).await?;
                    }
                    continue;
                }
            };
            let Some(at) = flight.iter().position(|f| f.id == header.id) else {
                continue;
            };
            let Some(f) = flight.get(at) else { continue };
            let (name, sealed) = (f.request.name(), f.sealed);
            match self.classify(header, body, name, sealed)? {
                None => {}
                Some(Outcome::Answer(response)) => {
                    let f = flight.remove(at);
                    self.trace(Trace::Answered {
                        id: f.id,
                        response: response.name(),
                        elapsed: f.started.elapsed(),
                    });
                    on_answer(f.key, response, &mut queue)?;
                }
                Some(Outcome::TimedOut) => {}
                Some(Outcome::SessionLost) => {
                    self.trace(Trace::SessionLost { id: header.id });
                    if f.renewed {
                        return Err(Error::SessionExpired {
                            request: name,
                            reason: "the pump ended the new session at once as well".into(),
                        });
                    }
                    for f in flight.iter_mut() {
                        f.renewed = true;
                    }
                    self.renew_in_flight(&mut flight)
                        .await
                        .map_err(|e| match e {
                            e @ Error::Io(_) => e,
                            e => Error::SessionExpired {
                                request: name,
                                reason: e.to_string(),
                            },
                        })?;
                }
            }
        }
    }

    /// Sends one attempt of a pipelined request (a retry once it was sent before);
    /// `false` when the session's sending counter is used up (nothing was sent).
    async fn send_in_flight<K>(&mut self, f: &mut InFlight<K>) -> Result<bool, Error> {
        let retry = f.sent > 0;
        let frame = match self.frame(&f.request, f.id, retry, f.sealed, None) {
            Ok(frame) => frame,
            Err(Error::Seal(SealError::Exhausted)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if retry {
            self.counters.retries += 1;
        }
        f.sent += 1;
        self.io.write_all(&frame).await?;
        self.io.flush().await?;
        self.trace(Trace::Sent {
            id: f.id,
            request: f.request.name(),
            retry,
            bytes: frame.len(),
        });
        f.deadline = tokio::time::Instant::now() + self.config.timeout;
        Ok(true)
    }

    /// Opens a new session and sends every request in flight again (same id, `RETRY`,
    /// sealed under the new session); answers still coming under the old one are
    /// dropped by the handshake as stale.
    async fn renew_in_flight<K>(&mut self, flight: &mut [InFlight<K>]) -> Result<(), Error> {
        self.session = None;
        self.handshake().await?;
        for f in flight.iter_mut() {
            // Counted as sent, so it goes with the RETRY flag even if it never left.
            f.sent = f.sent.max(1);
            if !self.send_in_flight(f).await? {
                return Err(Error::Seal(SealError::Exhausted));
            }
        }
        Ok(())
    }

    /// Sets the pump clock (UTC) and the patient's UTC offset; returns the clock before.
    pub async fn set_clock(
        &mut self,
        now: Timestamp,
        offset: UtcOffset,
    ) -> Result<Timestamp, Error> {
        self.ask(Request::SetClock { now, offset }, |r| match r {
            Response::ClockSet { previous } => Some(previous),
            _ => None,
        })
        .await
    }

    /// The pump's link counters.
    pub async fn link_stats(&mut self) -> Result<LinkStats, Error> {
        self.ask(Request::LinkStats, |r| match r {
            Response::LinkStats(s) => Some(s),
            _ => None,
        })
        .await
    }

    /// Sends `request` and picks the expected answer out of the response; any other
    /// answer becomes [`Error::UnexpectedResponse`].
    async fn ask<R>(
        &mut self,
        request: Request,
        pick: impl FnOnce(Response) -> Option<R>,
    ) -> Result<R, Error> {
        let response = self.call(&request).await?;
        self.pick_answer(&request, response, pick)
    }

    /// The expected answer picked out of `response`; a refusal or any other answer
    /// becomes the matching error.
    fn pick_answer<R>(
        &self,
        request: &Request,
        response: Response,
        pick: impl FnOnce(Response) -> Option<R>,
    ) -> Result<R, Error> {
        let name = request.name();
        match response {
            Response::Refused(Refusal::NotPermitted) if self.credentials.is_some() => {
                Err(Error::NotPermitted {
                    request: name,
                    role: self.role().unwrap_or(Role::Clinician),
                    allowed: Role::allowed(request).collect(),
                })
            }
            Response::Refused(refusal) => Err(Error::Refused {
                request: name,
                refusal,
            }),
            response => {
                let got = response.name();
                pick(response).ok_or(Error::UnexpectedResponse { request: name, got })
            }
        }
    }

    /// Whether `request` goes sealed: with a role key, everything but the handshake and
    /// `Provision`, and `Identify` too once a session is open (a plain frame inside a
    /// session is unauthenticated traffic the pump pays from its energy budget).
    fn seals(&self, request: &Request) -> bool {
        self.credentials.is_some()
            && (request.needs_session()
                || (matches!(request, Request::Identify | Request::Provision { .. })
                    && self.session.is_some()))
    }

    fn fresh_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        id
    }

    /// One request with its retries (and, inside a session, its renewal): returns the
    /// first acceptable answer carrying its id.
    async fn call(&mut self, request: &Request) -> Result<Response, Error> {
        let sealed = self.seals(request);
        // One idempotency key for every attempt of this operation.
        let key = if request.changes_state() {
            Some(fresh_key()?)
        } else {
            None
        };
        let id = self.fresh_id();
        self.counters.requests += 1;
        let attempts = self.config.retries.saturating_add(1);
        let started = Instant::now();
        let mut sent = 0u32;
        let mut timeouts = 0u32;
        let mut renewed = false;
        loop {
            if sealed && self.session.is_none() {
                if let Err(e) = self.handshake().await {
                    if sent > 0 && request.changes_state() {
                        return Err(Error::Uncertain {
                            request: request.name(),
                            attempts: sent,
                            read_back: format!(
                                "no new session could be opened to send it again ({e}); {}",
                                read_back_hint(request)
                            ),
                        });
                    }
                    return Err(e);
                }
            }
            let retry = sent > 0;
            let frame = match self.frame(request, id, retry, sealed, key) {
                Ok(frame) => frame,
                Err(Error::Seal(SealError::Exhausted)) => {
                    // The sending counter is used up: a new session, new keys, counter 1.
                    self.session = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if sent > 0 {
                self.counters.retries += 1;
            }
            sent += 1;
            match self.exchange(&frame, id, request, sealed, retry).await {
                Ok(Outcome::Answer(response)) => {
                    self.trace(Trace::Answered {
                        id,
                        response: response.name(),
                        elapsed: started.elapsed(),
                    });
                    return Ok(response);
                }
                Ok(Outcome::TimedOut) => {
                    timeouts += 1;
                    self.trace(Trace::TimedOut {
                        id,
                        attempt: timeouts,
                    });
                    if timeouts >= attempts {
                        return Err(self.unanswered(request, timeouts));
                    }
                }
                Ok(Outcome::SessionLost) => {
                    self.session = None;
                    self.trace(Trace::SessionLost { id });
                    if renewed {
                        return Err(Error::SessionExpired {
                            request: request.name(),
                            reason: "the pump ended the new session at once as well".into(),
                        });
                    }
                    renewed = true;
                    let renewal = self.handshake().await;
                    if timeouts > 0 && request.changes_state() {
                        // An earlier attempt may have been carried out before the pump
                        // lost the session; after a reset its reply cache is gone too,
                        // so sending it again could carry it out twice.
                        return Err(Error::Uncertain {
                            request: request.name(),
                            attempts: sent,
                            read_back: format!(
                                "the pump ended the session after an unanswered attempt (it \
                                 may have been reset), so the request was not sent again; {}",
                                read_back_hint(request)
                            ),
                        });
                    }
                    if let Err(e) = renewal {
                        return Err(Error::SessionExpired {
                            request: request.name(),
                            reason: e.to_string(),
                        });
                    }
                }
                Err(Error::Io(e)) if request.changes_state() => {
                    return Err(Error::Uncertain {
                        request: request.name(),
                        attempts: sent,
                        read_back: format!(
                            "reconnect and {} (the link failed: {e})",
                            read_back_hint(request)
                        ),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The error for a request whose every attempt went unanswered.
    fn unanswered(&self, request: &Request, attempts: u32) -> Error {
        if request.changes_state() {
            Error::Uncertain {
                request: request.name(),
                attempts,
                read_back: read_back_hint(request),
            }
        } else {
            Error::Timeout {
                request: request.name(),
                attempts,
                timeout: self.config.timeout,
            }
        }
    }

    /// Opens a session with the client's role key: up to `retries + 1` tries, each with
    /// a fresh nonce, a fresh ephemeral X25519 key and fresh request ids.
    async fn handshake(&mut self) -> Result<(), Error> {
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
        match self.exchange(&frame, id, request, false, false).await? {
            Outcome::Answer(response) => {
                self.trace(Trace::Answered {
                    id,
                    response: response.name(),
                    elapsed: started.elapsed(),
                });
                Ok(Some(response))
            }
            Outcome::TimedOut | Outcome::SessionLost => {
                self.trace(Trace::TimedOut { id, attempt: 1 });
                Ok(None)
            }
        }
    }

    /// The wire bytes of one attempt: a lone `0x00` (flushes any partial frame in the
    /// pump's decoder), then the frame, sealed with the session's next counter when
    /// `sealed` (its plaintext a [`Command`] with the idempotency `key`).
    fn frame(
        &mut self,
        request: &Request,
        id: u16,
        retry: bool,
        sealed: bool,
        key: Option<OpKey>,
    ) -> Result<Vec<u8>, Error> {
        let mut header = Header::request(id);
        if retry {
            header.flags = Flags(Flags::RETRY);
        }
        let mut wire = vec![0u8; MAX_WIRE + 1];
        let out = wire.get_mut(1..).unwrap_or_default();
        let n = if sealed {
            let session = self
                .session
                .as_mut()
                .ok_or(Error::Seal(SealError::Exhausted))?;
            header.flags = Flags(header.flags.0 | Flags::SEALED);
            let command = Command {
                key,
                request: request.clone(),
            };
            let mut plain = vec![0u8; MAX_BODY];
            let plain = postcard::to_slice(&command, &mut plain)
                .map_err(|_| Error::Encode(EncodeError::BodyTooLarge))?;
            if plain.len() + SEAL_OVERHEAD > MAX_BODY {
                return Err(Error::Encode(EncodeError::BodyTooLarge));
            }
            let mut body = vec![0u8; MAX_BODY];
            let len = session
                .sealer
                .seal(&header.to_bytes(), plain, &mut body)
                .map_err(Error::Seal)?;
            encode_raw(header, body.get(..len).unwrap_or_default(), out)
        } else {
            encode(header, request, out)
        }
        .map_err(Error::Encode)?;
        wire.truncate(n + 1);
        Ok(wire)
    }

    /// Writes one attempt and waits up to the timeout for its answer.
    async fn exchange(
        &mut self,
        frame: &[u8],
        id: u16,
        request: &Request,
        sealed: bool,
        retry: bool,
    ) -> Result<Outcome, Error> {
        self.io.write_all(frame).await?;
        self.io.flush().await?;
        self.trace(Trace::Sent {
            id,
            request: request.name(),
            retry,
            bytes: frame.len(),
        });
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.answer(id, request.name(), sealed)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Ok(Outcome::TimedOut),
        }
    }

    /// Waits for an acceptable answer to `id`: inside a session a sealed one that opens,
    /// or a plain `SessionRequired`; outside, a plain one.
    async fn answer(
        &mut self,
        id: u16,
        request: &'static str,
        sealed: bool,
    ) -> Result<Outcome, Error> {
        loop {
            let (header, body) = self.receive(id).await?;
            if let Some(outcome) = self.classify(header, body, request, sealed)? {
                return Ok(outcome);
            }
        }
    }

    /// What a frame carrying an awaited id means: `None` when it is dropped as
    /// unauthentic (inside a session: not sealed, or it does not open; outside: sealed).
    fn classify(
        &mut self,
        header: Header,
        mut body: Vec<u8>,
        request: &'static str,
        sealed: bool,
    ) -> Result<Option<Outcome>, Error> {
        let id = header.id;
        let is_sealed = header.flags.has(Flags::SEALED);
        if sealed && is_sealed {
            let opened = match self.session.as_mut() {
                Some(s) => s
                    .opener
                    .open(&header.to_bytes(), &mut body)
                    .map(decode_body::<Response>),
                None => Err(SealError::Forged),
            };
            match opened {
                Ok(decoded) => {
                    return decoded
                        .map(|r| Some(Outcome::Answer(r)))
                        .map_err(|source| Error::Decode { request, source })
                }
                Err(_) => self.unauthentic(id),
            }
        } else if sealed {
            match decode_body::<Response>(&body) {
                Ok(Response::Refused(Refusal::SessionRequired)) => {
                    return Ok(Some(Outcome::SessionLost))
                }
                _ => self.unauthentic(id),
            }
        } else if is_sealed {
            self.unauthentic(id);
        } else {
            return decode_body::<Response>(&body)
                .map(|r| Some(Outcome::Answer(r)))
                .map_err(|source| Error::Decode { request, source });
        }
        Ok(None)
    }

    fn unauthentic(&mut self, id: u16) {
        self.counters.unauthentic += 1;
        self.trace(Trace::Unauthentic { id });
    }

    /// Reads until a frame answering `id` arrives; returns its header and body.
    /// Cancel-safe: bytes read are kept in `pending` and the decoder keeps its partial
    /// frame.
    async fn receive(&mut self, id: u16) -> Result<(Header, Vec<u8>), Error> {
        self.receive_where(&|i| i == id).await
    }

    /// Reads until a frame answering an id that `wanted` accepts arrives (cancel-safe,
    /// like [`Client::receive`]).
    async fn receive_where(
        &mut self,
        wanted: &(dyn Fn(u16) -> bool + Sync),
    ) -> Result<(Header, Vec<u8>), Error> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(answer) = self.scan(wanted) {
                return Ok(answer);
            }
            let n = self.io.read(&mut buf).await?;
            if n == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the link closed",
                )));
            }
            self.pending
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    /// Feeds pending bytes to the decoder until a frame answering an id that `wanted`
    /// accepts is found.
    fn scan(&mut self, wanted: &(dyn Fn(u16) -> bool + Sync)) -> Option<(Header, Vec<u8>)> {
        let mut consumed = 0;
        let mut found = None;
        let mut traces = Vec::new();
        while consumed < self.pending.len() && found.is_none() {
            let input = self.pending.get(consumed..).unwrap_or_default();
            match self.decoder.feed(input) {
                Feed::Consumed => consumed = self.pending.len(),
                Feed::Frame { frame, remaining } => {
                    consumed = self.pending.len() - remaining.len();
                    if frame.header.kind != FrameKind::Response {
                        traces.push(Trace::NotAnAnswer {
                            id: frame.header.id,
                        });
                    } else if !wanted(frame.header.id) {
                        self.counters.stale += 1;
                        traces.push(Trace::Stale {
                            id: frame.header.id,
                        });
                    } else {
                        found = Some((frame.header, frame.body.to_vec()));
                    }
                }
                Feed::Error { error, remaining } => {
                    consumed = self.pending.len() - remaining.len();
                    self.counters.bad_frames += 1;
                    traces.push(Trace::BadFrame(error));
                }
            }
        }
        self.pending.drain(..consumed);
        for t in traces {
            self.trace(t);
        }
        found
    }

    fn trace(&mut self, event: Trace) {
        if let Some(tracer) = self.tracer.as_mut() {
            tracer(&event);
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

/// A fresh idempotency key from the operating system's random source.
fn fresh_key() -> Result<OpKey, Error> {
    let mut key = [0u8; 8];
    getrandom::fill(&mut key).map_err(Error::Random)?;
    Ok(key)
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

/// What to read back to learn whether an unanswered therapy change happened.
fn read_back_hint(request: &Request) -> String {
    match request {
        Request::WritePrescription { expected, .. } => format!(
            "read the prescription (`thecal prescription`): if its revision is now above {} \
             the new schedule is in force, otherwise the previous one still is",
            expected.0
        ),
        Request::Refill {
            expected,
            prescription: None,
            ..
        } => format!(
            "read the reservoir (`thecal reservoir`: last refill time and volume) and the \
             prescription revision (read {}) to see whether the refill was recorded",
            expected.0
        ),
        Request::Refill {
            expected,
            prescription: Some(_),
            ..
        } => format!(
            "read the prescription (`thecal prescription`: if its revision is now above {} \
             the new prescription is stored) and the reservoir (`thecal reservoir`: last \
             refill time, volume, drug and concentration) to see whether the refill was \
             recorded",
            expected.0
        ),
        Request::ClinicianBolus(_) | Request::PatientBolus => "read the status \
             (`thecal status`: a running bolus, delivered in 24 h) and the event log \
             (`thecal log`) before giving another bolus"
            .to_string(),
        Request::StopTherapy | Request::ResumeTherapy => {
            "read the status (`thecal status`) to see whether therapy is running or stopped"
                .to_string()
        }
        Request::SetClock { .. } => {
            "read the status (`thecal status`) to see the pump clock".to_string()
        }
        _ => "read the status (`thecal status`)".to_string(),
    }
}
