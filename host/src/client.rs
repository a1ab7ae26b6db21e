//! The typed async client: one method per request, over any byte link.
//!
//! ## Transport rules
//!
//! * Every request gets a fresh 16-bit request id (a counter from a random start, so two
//!   programmer sessions rarely reuse each other's ids in the pump's reply cache).
//! * Each attempt waits at most [`ClientConfig::timeout`] for the answer. A lost answer is
//!   retried up to [`ClientConfig::retries`] times with the **same id** and the
//!   [`Flags::RETRY`] bit set; the pump answers a repeat from its reply cache instead of
//!   executing it again, so a retried bolus or schedule write happens once.
//! * Answers carrying another id (late answers to an earlier request) and pump events
//!   are discarded; corrupt frames are dropped (the decoder resynchronises) and count as
//!   lost.
//! * When every attempt of a therapy-changing request goes unanswered the result is
//!   [`Error::Uncertain`], which names what to read back; a read-only request gives
//!   [`Error::Timeout`].
//!
//! Every frame is preceded by a lone `0x00`, which flushes any partial frame the pump's
//! decoder still holds (see the frame codec docs).

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use thecal_protocol::frame::{
    decode_body, encode, Feed, Flags, FrameDecoder, FrameError, FrameKind, Header, MAX_WIRE,
};
use thecal_protocol::message::{
    AlarmEntry, AlarmKind, BatteryReport, BolusReport, BolusRequest, Identity, LinkStats, LogPage,
    PrescriptionRecord, ReservoirReport, Revision, StatusReport,
};
use thecal_protocol::prescription::{Prescription, PrescriptionDraft};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::Nanolitres;
use thecal_protocol::{Request, Response, PROTOCOL_VERSION, SCHEMA_HASH};

use crate::error::Error;

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
}

impl<T> std::fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
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
        }
    }

    /// A client over `io` that has identified the pump and checked that it speaks this
    /// programmer's protocol version and schema.
    pub async fn connect(io: T, config: ClientConfig) -> Result<(Self, Identity), Error> {
        let mut client = Self::new(io, config);
        let identity = client.identify().await?;
        check_compatible(&identity)?;
        Ok((client, identity))
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

    /// Model, serial, firmware and protocol versions (served without a session).
    pub async fn identify(&mut self) -> Result<Identity, Error> {
        self.ask(Request::Identify, |r| match r {
            Response::Identity(i) => Some(i),
            _ => None,
        })
        .await
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
    /// [`Refusal::DrugChangeNeedsRefill`](thecal_protocol::message::Refusal::DrugChangeNeedsRefill).
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
        let name = request.name();
        match self.call(&request).await? {
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

    /// One request with its retries: returns the first answer carrying its id.
    async fn call(&mut self, request: &Request) -> Result<Response, Error> {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        self.counters.requests += 1;
        let attempts = self.config.retries.saturating_add(1);
        let started = Instant::now();
        for attempt in 1..=attempts {
            let retry = attempt > 1;
            if retry {
                self.counters.retries += 1;
            }
            let outcome = self.attempt(request, id, retry).await;
            match outcome {
                Ok(Some(response)) => {
                    self.trace(Trace::Answered {
                        id,
                        response: response.name(),
                        elapsed: started.elapsed(),
                    });
                    return Ok(response);
                }
                Ok(None) => self.trace(Trace::TimedOut { id, attempt }),
                Err(Error::Io(e)) if request.changes_therapy() => {
                    return Err(Error::Uncertain {
                        request: request.name(),
                        attempts: attempt,
                        read_back: format!(
                            "reconnect and {} (the link failed: {e})",
                            read_back_hint(request)
                        ),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Err(if request.changes_therapy() {
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
        })
    }

    /// Sends one attempt and waits up to the timeout; `Ok(None)` when it timed out.
    async fn attempt(
        &mut self,
        request: &Request,
        id: u16,
        retry: bool,
    ) -> Result<Option<Response>, Error> {
        let mut header = Header::request(id);
        if retry {
            header.flags = Flags(Flags::RETRY);
        }
        let mut wire = vec![0u8; MAX_WIRE + 1];
        // wire[0] stays 0x00: flushes any partial frame in the pump's decoder.
        let n = encode(header, request, wire.get_mut(1..).unwrap_or_default())
            .map_err(Error::Encode)?;
        let frame = wire.get(..n + 1).unwrap_or_default();
        self.io.write_all(frame).await?;
        self.io.flush().await?;
        self.trace(Trace::Sent {
            id,
            request: request.name(),
            retry,
            bytes: frame.len(),
        });
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.receive(id, request.name())).await {
            Ok(answer) => answer.map(Some),
            Err(_elapsed) => Ok(None),
        }
    }

    /// Reads until an answer with `id` arrives. Cancel-safe: bytes read are kept in
    /// `pending` and the decoder keeps its partial frame.
    async fn receive(&mut self, id: u16, request: &'static str) -> Result<Response, Error> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(answer) = self.scan(id, request) {
                return answer;
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

    /// Feeds pending bytes to the decoder until the answer to `id` is found.
    fn scan(&mut self, id: u16, request: &'static str) -> Option<Result<Response, Error>> {
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
                    } else if frame.header.id != id {
                        self.counters.stale += 1;
                        traces.push(Trace::Stale {
                            id: frame.header.id,
                        });
                    } else {
                        found = Some(
                            decode_body::<Response>(frame.body)
                                .map_err(|source| Error::Decode { request, source }),
                        );
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
