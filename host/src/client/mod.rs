//! The typed async client: one method per request, over any byte link.
//!
//! * `mod.rs` (here) — the client and its typed API: [`Client::call`] takes any
//!   [`Endpoint`] and returns its answer type; the named methods are calls with the
//!   client's own checks in front (a prescription is validated before it is sent).
//! * `engine.rs` — the one retry/renew engine; stop-and-wait is its window of one,
//!   [`Client::pipelined`] the same engine with a wider window.
//! * `session.rs` — handshake, close, provisioning and key rotation.
//! * `wire.rs` — one attempt's bytes, reading frames, classifying what arrives.
//! * `trace.rs` — trace events and counters.
//!
//! ## Transport rules
//!
//! * Every request gets a fresh 16-bit request id (a counter from a random start, so two
//!   programmer sessions rarely reuse each other's ids in the pump's reply cache).
//! * Each attempt waits at most [`ClientConfig::timeout`] for the answer. A lost answer is
//!   retried up to [`ClientConfig::retries`] times with the **same id** and the
//!   [`RETRY`](thecal_protocol::frame::Flags::RETRY) bit set. A therapy change carries an idempotency key (8 random
//!   bytes, drawn once per operation, inside the sealed body, [`Command`](thecal_protocol::message::Command)); the pump
//!   answers a repeat of the same key from its reply cache instead of executing it
//!   again, so a retried bolus or schedule write happens once.
//! * Answers carrying another id (late answers to an earlier request) and pump events
//!   are discarded; corrupt frames are dropped (the decoder resynchronises) and count as
//!   lost.
//! * When every attempt of a therapy-changing request goes unanswered the result is
//!   [`Error::Uncertain`], which names what to read back ([`crate::error::ReadBack`]);
//!   a read-only request gives [`Error::Timeout`].
//! * Sessions: see the `session` module docs (re-exported items: [`Agreement`],
//!   [`BUSY_WAIT`]).

mod engine;
mod session;
mod trace;
mod wire;

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::frame::FrameDecoder;
use thecal_protocol::message::endpoint::{
    AcknowledgeAlarm, Battery, CancelBolus, ClinicianBolus, Identify, LinkStats as ReadLinkStats,
    PatientBolus, Ping, ReadAlarms, ReadLog, ReadPrescription, Refill, Reservoir, ResumeTherapy,
    SetClock, Status, StopTherapy, WritePrescription,
};
use thecal_protocol::message::{
    AlarmEntry, AlarmKind, BatteryReport, BolusOutcome, BolusReport, BolusRequest, Endpoint,
    Identity, LinkStats, LogPage, PrescriptionRecord, Refusal, ReservoirReport, Revision, Role,
    StatusReport,
};
use thecal_protocol::prescription::{Prescription, PrescriptionDraft};
use thecal_protocol::session::{Binding, Sealer, PUBLIC_LEN};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::Nanolitres;
use thecal_protocol::{Request, Response, PROTOCOL_VERSION, SCHEMA_HASH};

use crate::error::Error;
use crate::keys::{KeyFile, RoleKey};

pub use engine::Unchecked;
pub use session::{Agreement, BUSY_RETRIES, BUSY_WAIT};
pub use trace::{ClientCounters, Trace};

use session::{Credentials, Session};
use trace::Tracer;

/// Timeout and retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long one attempt waits for its answer.
    pub timeout: Duration,
    /// Repeats after the first attempt (same id, [`RETRY`](thecal_protocol::frame::Flags::RETRY) set).
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
    /// The version byte of the last intact frame (CRC valid) of another protocol
    /// version: a request left unanswered is then reported as a protocol mismatch.
    foreign_version: Option<u8>,
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
            foreign_version: None,
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

    /// The role of this client's key, if it has one.
    pub fn role(&self) -> Option<Role> {
        self.credentials.as_ref().map(|c| c.key.role)
    }

    /// Whether a session is open (as far as this side knows).
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// Sends `request` as it is, inside the session, **without** the client's own checks
    /// (a prescription is not validated first), and returns whatever the pump answered,
    /// a refusal included. For diagnostics and for tests of the pump's own checks: the
    /// pump enforces every rule whoever sends the request. The transport rules are the
    /// same as for every other request (retries, renewal, [`Error::Uncertain`]).
    pub async fn send_unchecked(&mut self, request: &Request) -> Result<Response, Error> {
        self.call_raw(request.clone()).await
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

    /// Sends `endpoint`'s request (with retries, renewal and the session, as every
    /// request) and returns its answer; a refusal or an answer of another type becomes
    /// the matching error. No client-side checks: the typed methods below add them
    /// where a request carries something to check.
    pub async fn call<E: Endpoint>(&mut self, endpoint: E) -> Result<E::Answer, Error> {
        let request = endpoint.request();
        let response = self.call_raw(request.clone()).await?;
        pick::<E>(self.role(), &request, response)
    }

    /// Read-only requests with up to `window` of them in flight at once (pipelining): a
    /// bulk read (the event log) then keeps the line busy instead of idling for one
    /// round trip per request. `queue` holds the requests, each with a key of the
    /// caller's; `on_answer` gets every answer with its request's key, in the order the
    /// answers arrive, and may queue follow-up requests (served before the rest).
    ///
    /// The transport rules are those of every request, per request (the same engine):
    /// a fresh id each, answers matched by id (so whatever order they come in), a lost
    /// answer retried with the same id, then [`Error::Timeout`]. Never more than
    /// `window` requests are unanswered (a `window` of 0 counts as 1, which is
    /// stop-and-wait). A session the pump lost is renewed once per request and every
    /// request in flight is sent again (same id, `RETRY`). Each `on_answer` call happens
    /// once per request, for its first acceptable answer; a refusal ends the whole read
    /// with its error.
    ///
    /// Therapy-changing requests are not pipelined: one in `queue` is refused before
    /// anything is sent ([`Error::NotPipelinable`]), one queued by `on_answer` when it
    /// is reached.
    pub async fn pipelined<K, E: Endpoint + Clone>(
        &mut self,
        window: usize,
        mut queue: VecDeque<(K, E)>,
        mut on_answer: impl FnMut(K, E::Answer, &mut VecDeque<(K, E)>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if let Some((_, e)) = queue
            .iter()
            .find(|(_, e)| e.clone().request().changes_state())
        {
            return Err(Error::NotPipelinable {
                request: e.clone().request().name(),
            });
        }
        let role = self.role();
        self.run(
            window,
            false,
            &mut queue,
            |key, request, response, queue| {
                on_answer(key, pick::<E>(role, request, response)?, queue)
            },
        )
        .await
    }

    /// Model, serial, firmware and protocol versions, the pump's static key and key
    /// epochs (served without a session). Remembered for the next handshake.
    pub async fn identify(&mut self) -> Result<Identity, Error> {
        let identity = self.call(Identify).await?;
        self.remember(&identity);
        Ok(identity)
    }

    /// Liveness check; returns the round-trip time.
    pub async fn ping(&mut self) -> Result<Duration, Error> {
        let token = RandomState::new().hash_one(self.next_id) as u32;
        let started = Instant::now();
        match self.call(Ping { token }).await? {
            t if t == token => Ok(started.elapsed()),
            _ => Err(Error::UnexpectedResponse {
                request: Ping::NAME,
                got: "Pong with another token",
            }),
        }
    }

    /// One-screen summary.
    pub async fn status(&mut self) -> Result<StatusReport, Error> {
        self.call(Status).await
    }

    /// Battery report.
    pub async fn battery(&mut self) -> Result<BatteryReport, Error> {
        self.call(Battery).await
    }

    /// Reservoir report with the pump's projections.
    pub async fn reservoir(&mut self) -> Result<ReservoirReport, Error> {
        self.call(Reservoir).await
    }

    /// The prescription in force and its revision.
    pub async fn prescription(&mut self) -> Result<PrescriptionRecord, Error> {
        self.call(ReadPrescription).await
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
        self.call(WritePrescription {
            expected,
            prescription: draft,
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
        self.verify(written, &draft).await
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
        self.call(Refill {
            expected,
            volume,
            prescription,
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
        Ok((self.verify(written, &draft).await?, reservoir))
    }

    /// Reads the prescription back: the pump must hold exactly `draft` as `written`.
    async fn verify(
        &mut self,
        written: Revision,
        draft: &PrescriptionDraft,
    ) -> Result<PrescriptionRecord, Error> {
        let record = self.prescription().await?;
        if record.revision == written && record.prescription.draft() == draft {
            Ok(record)
        } else {
            Err(Error::VerifyFailed {
                written: written.0,
                read: record.revision.0,
            })
        }
    }

    /// A clinician bolus (single, priming or bridge).
    pub async fn bolus(&mut self, bolus: BolusRequest) -> Result<BolusReport, Error> {
        self.call(ClinicianBolus { bolus }).await
    }

    /// A patient-activated bolus under the prescription's patient-bolus rules.
    pub async fn patient_bolus(&mut self) -> Result<BolusReport, Error> {
        self.call(PatientBolus).await
    }

    /// Ends the running bolus now (a clinician or emergency session); the answer is what
    /// it delivered. Refused `NoBolus` when none runs.
    pub async fn cancel_bolus(&mut self) -> Result<BolusOutcome, Error> {
        self.call(CancelBolus).await
    }

    /// Stops therapy (the pump keeps the catheter open at the minimum flow).
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.call(StopTherapy).await
    }

    /// Resumes the prescription after a stop.
    pub async fn resume(&mut self) -> Result<(), Error> {
        self.call(ResumeTherapy).await
    }

    /// The active alarms.
    pub async fn alarms(&mut self) -> Result<Vec<AlarmEntry>, Error> {
        Ok(self.call(ReadAlarms).await?.into_iter().collect())
    }

    /// Acknowledges an alarm (a critical one re-asserts while its cause remains).
    pub async fn acknowledge(&mut self, alarm: AlarmKind) -> Result<(), Error> {
        self.call(AcknowledgeAlarm { alarm }).await
    }

    /// A page of the event log from entry `first`, at most `max` entries (the pump caps
    /// it at [`thecal_protocol::message::MAX_LOG_PAGE`]).
    pub async fn log_page(&mut self, first: u32, max: u8) -> Result<LogPage, Error> {
        self.call(ReadLog { first, max }).await
    }

    /// Sets the pump clock (UTC) and the patient's UTC offset; returns the clock before.
    pub async fn set_clock(
        &mut self,
        now: Timestamp,
        offset: UtcOffset,
    ) -> Result<Timestamp, Error> {
        self.call(SetClock { now, offset }).await
    }

    /// The pump's link counters.
    pub async fn link_stats(&mut self) -> Result<LinkStats, Error> {
        self.call(ReadLinkStats).await
    }
}

/// `E`'s answer picked out of `response` to `request`; a refusal or any other answer
/// becomes the matching error (a refusal for the session's `role` names the roles that
/// may make it).
fn pick<E: Endpoint>(
    role: Option<Role>,
    request: &Request,
    response: Response,
) -> Result<E::Answer, Error> {
    let name = request.name();
    match (response, role) {
        (Response::Refused(Refusal::NotPermitted), Some(role)) => Err(Error::NotPermitted {
            request: name,
            role,
            allowed: Role::allowed(request).collect(),
        }),
        (Response::Refused(refusal), _) => Err(Error::Refused {
            request: name,
            refusal,
        }),
        (response, _) => {
            let got = response.name();
            E::answer(response).map_err(|_| Error::UnexpectedResponse { request: name, got })
        }
    }
}
