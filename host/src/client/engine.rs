//! The one retry/renew engine: every request the client makes, alone or pipelined,
//! goes through [`Client::run`]. Stop-and-wait is its window of one.
//!
//! Per request: a fresh id; a therapy change draws one idempotency key for every attempt;
//! a lost answer is retried after [`super::ClientConfig::timeout`] with the **same id**
//! and [`Flags::RETRY`](thecal_protocol::frame::Flags::RETRY) (sealed again with the
//! session's next counter), at most [`super::ClientConfig::retries`] times, then
//! [`Error::Timeout`] (or [`Error::Uncertain`] for a change). A session the pump lost
//! (a plain `SessionRequired` answering a sealed request) is renewed once per request and
//! every request in flight is sent again (same id, `RETRY`), except that a change with
//! an unanswered attempt is never sent again after the pump lost the session: it may
//! have been carried out and the pump reset, losing its reply cache. A sending counter
//! at its maximum renews the session too.

use std::collections::VecDeque;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::{Endpoint, OpKey};
use thecal_protocol::session::SealError;
use thecal_protocol::{Request, Response};

use super::wire::Outcome;
use super::{Client, Trace};
use crate::error::{Error, ReadBack, UncertainCause};

/// A request waiting for its answer.
struct InFlight<K> {
    /// The caller's key for it.
    tag: K,
    request: Request,
    /// Its idempotency key (a change), the same for every attempt.
    op: Option<OpKey>,
    id: u16,
    sealed: bool,
    /// Attempts sent.
    sent: u32,
    /// Attempts that timed out.
    timeouts: u32,
    /// A renewal after a lost session was already made for it.
    renewed: bool,
    started: Instant,
    /// When the current attempt times out.
    deadline: tokio::time::Instant,
}

/// Why the session is renewed with requests in flight.
#[derive(Clone, Copy)]
enum Renewal {
    /// The sending counter is used up.
    Exhausted,
    /// The pump no longer holds the session (it answered `request` so).
    Lost { request: &'static str },
}

/// Any request as an endpoint whose answer is whatever the pump answered other than a
/// refusal ([`Client::send_unchecked`] gets refusals too): for diagnostics, tests, and
/// pipelining requests of several types together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchecked(pub Request);

impl Endpoint for Unchecked {
    type Answer = Response;
    const NAME: &'static str = "(unchecked request)";
    fn request(self) -> Request {
        self.0
    }
    fn answer(response: Response) -> Result<Response, Response> {
        Ok(response)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    /// One request with its retries and renewal: the first acceptable answer carrying
    /// its id, whatever it says (a refusal included).
    pub(super) async fn call_raw(&mut self, request: Request) -> Result<Response, Error> {
        let name = request.name();
        // A new key never crosses the link in a plain frame, whoever asks.
        if matches!(request, Request::RotateKey { .. }) && !self.seals(&request) {
            self.require_session(name)?;
        }
        let mut queue = VecDeque::from([((), Unchecked(request))]);
        let mut answer = None;
        self.run(1, true, &mut queue, |(), _, response, _| {
            answer = Some(response);
            Ok(())
        })
        .await?;
        // `run` returns `Ok` only once every request it was given was answered.
        answer.ok_or(Error::UnexpectedResponse {
            request: name,
            got: "nothing",
        })
    }

    /// Sends the requests of `queue` with up to `window` unanswered at once (a `window`
    /// of 0 counts as 1) and hands every first acceptable answer to `on_answer`, with
    /// its request, in the order the answers arrive; `on_answer` may queue follow-ups
    /// (served before the rest). Changes (`Request::changes_state`) are sent only when
    /// `changes` allows them and refused before sending otherwise
    /// ([`Error::NotPipelinable`]).
    pub(super) async fn run<K, E: Endpoint>(
        &mut self,
        window: usize,
        changes: bool,
        queue: &mut VecDeque<(K, E)>,
        on_answer: impl FnMut(K, &Request, Response, &mut VecDeque<(K, E)>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let window = window.max(1);
        let mut flight = Vec::with_capacity(window);
        let result = self
            .drive(window, changes, queue, &mut flight, on_answer)
            .await;
        match result {
            // A change in flight when the link failed: it may have been carried out.
            Err(Error::Io(e)) => match flight
                .iter()
                .find(|f| f.request.changes_state() && f.sent > 0)
            {
                Some(f) => Err(uncertain(
                    &f.request,
                    f.sent,
                    UncertainCause::LinkFailed(e.to_string()),
                )),
                None => Err(Error::Io(e)),
            },
            other => other,
        }
    }

    async fn drive<K, E: Endpoint>(
        &mut self,
        window: usize,
        changes: bool,
        queue: &mut VecDeque<(K, E)>,
        flight: &mut Vec<InFlight<K>>,
        mut on_answer: impl FnMut(K, &Request, Response, &mut VecDeque<(K, E)>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        loop {
            // Fill the window.
            while flight.len() < window {
                let Some((tag, endpoint)) = queue.pop_front() else {
                    break;
                };
                let request = endpoint.request();
                if request.changes_state() && !changes {
                    return Err(Error::NotPipelinable {
                        request: request.name(),
                    });
                }
                let f = self.launch(tag, request).await?;
                flight.push(f);
                if let Some(f) = flight.last_mut() {
                    if !self.send_attempt(f).await? {
                        self.renew(flight, Renewal::Exhausted).await?;
                    }
                }
            }
            let Some(deadline) = flight.iter().map(|f| f.deadline).min() else {
                return Ok(());
            };
            let ids: Vec<u16> = flight.iter().map(|f| f.id).collect();
            let received =
                tokio::time::timeout_at(deadline, self.receive_where(&|i| ids.contains(&i))).await;
            let Ok(received) = received else {
                self.expire(flight).await?;
                continue;
            };
            let (header, body) = received?;
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
                    on_answer(f.tag, &f.request, response, queue)?;
                }
                Some(Outcome::SessionLost) => {
                    self.trace(Trace::SessionLost { id: header.id });
                    self.session = None;
                    // Checked first, renewed before or not: an earlier attempt may have
                    // been carried out before the pump lost the session; after a reset
                    // its reply cache is gone too, so sending it again could carry it out
                    // twice. The session is renewed for what comes next; the answer is
                    // uncertain anyway.
                    if f.request.changes_state() && f.timeouts > 0 {
                        let (request, sent) = (f.request.clone(), f.sent);
                        let _ = self.handshake().await;
                        return Err(uncertain(
                            &request,
                            sent,
                            UncertainCause::SessionEndedAfterUnanswered,
                        ));
                    }
                    if f.renewed {
                        return Err(Error::SessionExpired {
                            request: name,
                            reason: "the pump ended the new session at once as well".into(),
                        });
                    }
                    for f in flight.iter_mut() {
                        f.renewed = true;
                    }
                    self.renew(flight, Renewal::Lost { request: name }).await?;
                }
            }
        }
    }

    /// A request ready for its first attempt: a session opened first if it goes sealed,
    /// a fresh id, and for a change its idempotency key.
    async fn launch<K>(&mut self, tag: K, request: Request) -> Result<InFlight<K>, Error> {
        let sealed = self.seals(&request);
        if sealed && self.session.is_none() {
            self.handshake().await?;
        }
        let op = if request.changes_state() {
            Some(fresh_key()?)
        } else {
            None
        };
        let id = self.fresh_id();
        self.counters.requests += 1;
        Ok(InFlight {
            tag,
            request,
            op,
            id,
            sealed,
            sent: 0,
            timeouts: 0,
            renewed: false,
            started: Instant::now(),
            deadline: tokio::time::Instant::now(),
        })
    }

    /// Counts a timeout for every request whose attempt expired and sends it again, or
    /// gives up on one that had its every attempt.
    async fn expire<K>(&mut self, flight: &mut [InFlight<K>]) -> Result<(), Error> {
        let now = tokio::time::Instant::now();
        let attempts = self.config.retries.saturating_add(1);
        let mut exhausted = false;
        for f in flight.iter_mut() {
            if f.deadline > now {
                continue;
            }
            f.timeouts += 1;
            self.trace(Trace::TimedOut {
                id: f.id,
                attempt: f.timeouts,
            });
            if f.timeouts >= attempts {
                return Err(self.unanswered(&f.request, f.timeouts));
            }
            if !self.send_attempt(f).await? {
                exhausted = true;
                break;
            }
        }
        if exhausted {
            self.renew(flight, Renewal::Exhausted).await?;
        }
        Ok(())
    }

    /// Sends one attempt (a retry once it was sent before); `false` when the session's
    /// sending counter is used up (nothing was sent).
    async fn send_attempt<K>(&mut self, f: &mut InFlight<K>) -> Result<bool, Error> {
        let retry = f.sent > 0;
        let frame = match self.frame(&f.request, f.id, retry, f.sealed, f.op) {
            Ok(frame) => frame,
            Err(Error::Seal(SealError::Exhausted)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if retry {
            self.counters.retries += 1;
        }
        f.sent += 1;
        self.write_attempt(&frame, f.id, &f.request, retry).await?;
        f.deadline = tokio::time::Instant::now() + self.config.timeout;
        Ok(true)
    }

    /// Opens a new session and sends every request in flight again (same id, `RETRY`,
    /// sealed under the new session); answers still coming under the old one are
    /// dropped by the handshake as stale.
    async fn renew<K>(&mut self, flight: &mut [InFlight<K>], why: Renewal) -> Result<(), Error> {
        self.session = None;
        if let Err(e) = self.handshake().await {
            return Err(match why {
                Renewal::Exhausted => match flight
                    .iter()
                    .find(|f| f.request.changes_state() && f.sent > 0)
                {
                    Some(f) => uncertain(
                        &f.request,
                        f.sent,
                        UncertainCause::NoNewSession(e.to_string()),
                    ),
                    None => e,
                },
                Renewal::Lost { .. } if matches!(e, Error::Io(_)) => e,
                Renewal::Lost { request } => Error::SessionExpired {
                    request,
                    reason: e.to_string(),
                },
            });
        }
        for f in flight.iter_mut() {
            // One that went out before goes with the RETRY flag (the pump may have it in
            // its reply cache); one whose counter ran out before it left goes fresh.
            if !self.send_attempt(f).await? {
                return Err(Error::Seal(SealError::Exhausted));
            }
        }
        Ok(())
    }

    /// The error for a request whose every attempt went unanswered.
    fn unanswered(&self, request: &Request, attempts: u32) -> Error {
        if let Some(pump_protocol) = self.foreign_version {
            // Intact frames of another version came back: nothing we sent can have
            // been read as ours either (the pump drops frames of other versions).
            return Error::OtherProtocol {
                request: request.name(),
                pump_protocol,
                host_protocol: thecal_protocol::PROTOCOL_VERSION,
            };
        }
        if request.changes_state() {
            uncertain(request, attempts, UncertainCause::Unanswered)
        } else {
            Error::Timeout {
                request: request.name(),
                attempts,
                timeout: self.config.timeout,
            }
        }
    }

    pub(super) fn fresh_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        id
    }
}

fn uncertain(request: &Request, attempts: u32, cause: UncertainCause) -> Error {
    Error::Uncertain {
        request: request.name(),
        attempts,
        cause,
        read_back: ReadBack::of(request),
    }
}

/// A fresh idempotency key from the operating system's random source.
fn fresh_key() -> Result<OpKey, Error> {
    let mut key = [0u8; 8];
    getrandom::fill(&mut key).map_err(Error::Random)?;
    Ok(key)
}
