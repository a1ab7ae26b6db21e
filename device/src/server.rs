//! The request server: bytes in → frames → (sessions) → requests → pump → responses →
//! bytes out.
//!
//! * Frames that fail COBS, CRC or header checks are dropped and counted (the link
//!   counters a clinic reads to diagnose a poor radio link); the decoder resynchronises at
//!   the next delimiter.
//! * **Sessions** (PROTOCOL.md 2.9). On plain frames the pump serves only `Identify`, the
//!   handshake and, while unprovisioned, `Provision`; anything else is answered
//!   `Refused(SessionRequired)`. Sealed frames are opened with the session's keys; a frame
//!   that does not open (forged, replayed, reordered, reflected) is dropped and counted,
//!   unanswered. Every request is checked against the session's role.
//! * An authentic request whose body is not a valid `Request` is answered with
//!   `Refused(Malformed)` under the same id.
//! * **Exactly once.** The answers to the last [`CACHE_ENTRIES`] therapy-changing requests
//!   are kept with their request id and a CRC-32 of the (plaintext) request body. A frame
//!   flagged `RETRY` whose id and body match an entry gets the cached answer and is not
//!   executed again: a retried bolus is delivered once. A frame without the flag is always
//!   a new request (a programmer that restarted and reuses ids cannot be mistaken for a
//!   retry). Reads are executed again on retry; they change nothing.

use crc::{Crc, CRC_32_ISO_HDLC};
use heapless::{Deque, Vec};
use thecal_protocol::frame::{
    self, decode_body, Feed, Flags, FrameDecoder, FrameError, FrameKind, Header, MAX_BODY, MAX_WIRE,
};
use thecal_protocol::message::{LinkStats, Refusal, Request, Response};
use thecal_protocol::session::Secret;
use thecal_protocol::time::Timestamp;

use crate::motor::Motor;
use crate::pump::Pump;
use crate::session::{permitted, Sessions, Step};
use crate::storage::Storage;

/// Therapy-changing answers kept for retries.
pub const CACHE_ENTRIES: usize = 8;
/// Largest cached answer body; every therapy-changing answer fits (asserted by a test).
pub const CACHE_BODY: usize = 128;

static CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

#[derive(Debug, Clone)]
struct Cached {
    id: u16,
    fingerprint: u32,
    body: Vec<u8, CACHE_BODY>,
}

/// The pump behind a byte link.
pub struct Server<S, M> {
    pump: Pump<S, M>,
    decoder: FrameDecoder<MAX_WIRE>,
    cache: Deque<Cached, CACHE_ENTRIES>,
    stats: LinkStats,
    sessions: Sessions,
    /// The body of the frame being served (opened in place when sealed).
    rx: Vec<u8, MAX_BODY>,
    /// Plaintext of the answer being sent.
    plain: [u8; MAX_BODY],
    /// Sealed answer body.
    sealed: [u8; MAX_BODY],
    tx: [u8; MAX_WIRE],
    /// Fuzzing builds only: serve plain requests as a clinician (see
    /// [`Server::serve_plain_requests`]).
    #[cfg(fuzzing)]
    plain_as_clinician: bool,
}

impl<S: Storage, M: Motor> Server<S, M> {
    /// Serves `pump`.
    pub fn new(pump: Pump<S, M>) -> Self {
        Self {
            pump,
            decoder: FrameDecoder::new(),
            cache: Deque::new(),
            stats: LinkStats::default(),
            sessions: Sessions::new(),
            rx: Vec::new(),
            plain: [0; MAX_BODY],
            sealed: [0; MAX_BODY],
            tx: [0; MAX_WIRE],
            #[cfg(fuzzing)]
            plain_as_clinician: false,
        }
    }

    /// Fuzzing builds only: serve plain requests as if a clinician session were open, so
    /// a fuzzer that cannot forge sealed frames still reaches the pump core. The
    /// `session` fuzz target leaves it off and attacks the real checks.
    #[cfg(fuzzing)]
    pub fn serve_plain_requests(&mut self) {
        self.plain_as_clinician = true;
    }

    /// The pump.
    pub fn pump(&self) -> &Pump<S, M> {
        &self.pump
    }

    /// The pump, mutably (platform hooks, fault injection).
    pub fn pump_mut(&mut self) -> &mut Pump<S, M> {
        &mut self.pump
    }

    /// Takes the server apart (a reset: sessions and the reply cache are lost).
    pub fn into_pump(self) -> Pump<S, M> {
        self.pump
    }

    /// Link counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Advances the pump to `now`.
    pub fn tick(&mut self, now: Timestamp) {
        self.pump.tick(now);
    }

    /// When [`Server::tick`] must be called next.
    pub fn next_wake(&self) -> Timestamp {
        self.pump.next_wake()
    }

    /// Feeds received bytes at device time `now` (also the session clock); each
    /// complete answer frame is passed to `send`.
    pub fn receive(&mut self, now: Timestamp, bytes: &[u8], send: &mut dyn FnMut(&[u8])) {
        self.receive_at(now, now, bytes, send);
    }

    /// As [`Server::receive`], with a separate link clock for session timeouts (the
    /// simulator's device clock may run faster than real time).
    pub fn receive_at(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        bytes: &[u8],
        send: &mut dyn FnMut(&[u8]),
    ) {
        let mut input = bytes;
        loop {
            let (header, rest) = match self.decoder.feed(input) {
                Feed::Consumed => return,
                Feed::Error { error, remaining } => {
                    count_error(&mut self.stats, error);
                    (None, remaining)
                }
                Feed::Frame { frame, remaining } => {
                    self.stats.frames_in = self.stats.frames_in.wrapping_add(1);
                    self.rx.clear();
                    // A frame body never exceeds MAX_BODY (the decoder checks the size).
                    let copied = self.rx.extend_from_slice(frame.body).is_ok();
                    (copied.then_some(frame.header), remaining)
                }
            };
            input = rest;
            match header {
                Some(h) if h.kind == FrameKind::Request => {
                    self.pump.charge_frame();
                    self.serve(now, link_now, h, send);
                }
                // A response or event sent to the pump: not ours to answer.
                Some(_) => self.stats.malformed = self.stats.malformed.wrapping_add(1),
                None => {}
            }
        }
    }

    fn serve(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        header: Header,
        send: &mut dyn FnMut(&[u8]),
    ) {
        let id = header.id;
        if !header.flags.has(Flags::SEALED) {
            let mut body = core::mem::take(&mut self.rx);
            let request = decode_body::<Request>(&body).ok();
            let fingerprint = CRC32.checksum(&body);
            body.clear();
            self.rx = body;
            return self.serve_plain(now, link_now, header, request, fingerprint, send);
        }
        let mut body = core::mem::take(&mut self.rx);
        let opened = self
            .sessions
            .open(link_now, &header.to_bytes(), &mut body)
            .map(|plain| (decode_body::<Request>(plain).ok(), CRC32.checksum(plain)));
        body.clear();
        self.rx = body;
        match opened {
            Ok((request, fingerprint)) => {
                self.serve_sealed(now, header, request, fingerprint, send)
            }
            // No session (expired, closed, or the pump was reset): say so in the clear.
            Err(None) => self.reply(
                id,
                &Response::Refused(Refusal::SessionRequired),
                false,
                send,
            ),
            // Forged, replayed, reordered or reflected: dropped unanswered.
            Err(Some(_)) => self.stats.malformed = self.stats.malformed.wrapping_add(1),
        }
    }

    fn serve_plain(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        header: Header,
        request: Option<Request>,
        fingerprint: u32,
        send: &mut dyn FnMut(&[u8]),
    ) {
        let response = match request {
            None => Response::Refused(Refusal::Malformed),
            Some(Request::Identify) => self.pump.handle(now, &Request::Identify),
            Some(Request::SessionHello { role, nonce }) => {
                let secret = self.pump.device_secret().map(Secret);
                // Reserve the nonce counter only for a hello that can proceed.
                let n = secret.as_ref().and_then(|_| self.pump.next_handshake(now));
                let serial: heapless::String<16> =
                    self.pump.serial().try_into().unwrap_or_default();
                let step = self
                    .sessions
                    .hello(link_now, secret.as_ref(), &serial, role, nonce, n);
                self.step_response(now, step)
            }
            Some(Request::SessionProof { proof }) => {
                let serial: heapless::String<16> =
                    self.pump.serial().try_into().unwrap_or_default();
                let step = self.sessions.proof(link_now, &serial, &proof);
                self.step_response(now, step)
            }
            Some(Request::Provision { secret }) => {
                if self.pump.provision(secret, now) {
                    Response::Provisioned
                } else {
                    Response::Refused(Refusal::NotPermitted)
                }
            }
            #[cfg(fuzzing)]
            Some(other) if self.plain_as_clinician => {
                return self.serve_sealed_as_plain(now, header, other, fingerprint, send);
            }
            Some(_) => Response::Refused(Refusal::SessionRequired),
        };
        let _ = fingerprint;
        self.reply(header.id, &response, false, send);
    }

    #[cfg(fuzzing)]
    fn serve_sealed_as_plain(
        &mut self,
        now: Timestamp,
        header: Header,
        request: Request,
        fingerprint: u32,
        send: &mut dyn FnMut(&[u8]),
    ) {
        let response = self.execute(now, header, &request, fingerprint);
        self.reply(header.id, &response, false, send);
    }

    fn step_response(&mut self, now: Timestamp, step: Step) -> Response {
        match step {
            Step::Challenge { nonce, proof } => Response::SessionChallenge { nonce, proof },
            Step::Established => Response::SessionEstablished,
            Step::Refuse { refusal, failures } => {
                if let Some((role, n)) = failures {
                    self.pump.log_security(now, role, n);
                }
                Response::Refused(refusal)
            }
        }
    }

    fn serve_sealed(
        &mut self,
        now: Timestamp,
        header: Header,
        request: Option<Request>,
        fingerprint: u32,
        send: &mut dyn FnMut(&[u8]),
    ) {
        let id = header.id;
        let response = match request {
            None => Response::Refused(Refusal::Malformed),
            Some(Request::SessionClose) => {
                self.reply(id, &Response::SessionClosed, true, send);
                self.sessions.close();
                return;
            }
            Some(r) => self.execute(now, header, &r, fingerprint),
        };
        self.reply(id, &response, true, send);
    }

    /// Runs an authorised request (role check, reply cache, pump).
    fn execute(
        &mut self,
        now: Timestamp,
        header: Header,
        request: &Request,
        fingerprint: u32,
    ) -> Response {
        let role = self.sessions.current_role();
        if let Some(role) = role {
            if !permitted(role, request) {
                return Response::Refused(Refusal::NotPermitted);
            }
        }
        if header.flags.has(Flags::RETRY) {
            let hit = self
                .cache
                .iter()
                .find(|c| c.id == header.id && c.fingerprint == fingerprint)
                .and_then(|c| decode_body::<Response>(&c.body).ok());
            if let Some(response) = hit {
                self.stats.replays = self.stats.replays.wrapping_add(1);
                return response;
            }
        }
        let response = match request {
            Request::LinkStats => Response::LinkStats(self.stats),
            Request::SessionHello { .. } | Request::SessionProof { .. } => {
                Response::Refused(Refusal::Unsupported)
            }
            Request::Provision { .. } => Response::Refused(Refusal::NotPermitted),
            r => self.pump.handle(now, r),
        };
        if request.changes_therapy() {
            self.remember(header.id, fingerprint, &response);
        }
        response
    }

    fn remember(&mut self, id: u16, fingerprint: u32, response: &Response) {
        let mut buf = [0u8; CACHE_BODY];
        let Ok(body) = postcard::to_slice(response, &mut buf) else {
            return;
        };
        let Ok(body) = Vec::from_slice(body) else {
            return;
        };
        self.cache.retain(|c| c.id != id);
        if self.cache.is_full() {
            self.cache.pop_front();
        }
        self.cache
            .push_back(Cached {
                id,
                fingerprint,
                body,
            })
            .ok();
    }

    /// Encodes (and seals, inside a session) `response` and sends it.
    fn reply(&mut self, id: u16, response: &Response, sealed: bool, send: &mut dyn FnMut(&[u8])) {
        if matches!(response, Response::Refused(_)) {
            self.stats.refusals = self.stats.refusals.wrapping_add(1);
        }
        let Ok(plain) = postcard::to_slice(response, &mut self.plain) else {
            return;
        };
        let n = if sealed {
            let header = Header {
                kind: FrameKind::Response,
                id,
                flags: Flags(Flags::SEALED),
            };
            let Some(len) = self
                .sessions
                .seal(&header.to_bytes(), plain, &mut self.sealed)
            else {
                // Counter exhausted: the session is over.
                self.sessions.close();
                return;
            };
            let Some(body) = self.sealed.get(..len) else {
                return;
            };
            frame::encode_raw(header, body, &mut self.tx)
        } else {
            frame::encode_raw(Header::response(id), plain, &mut self.tx)
        };
        if let Ok(n) = n {
            self.emit(n, send);
        }
    }

    fn emit(&mut self, n: usize, send: &mut dyn FnMut(&[u8])) {
        if let Some(bytes) = self.tx.get(..n) {
            self.stats.frames_out = self.stats.frames_out.wrapping_add(1);
            self.pump.charge_frame();
            send(bytes);
        }
    }
}

fn count_error(stats: &mut LinkStats, error: FrameError) {
    stats.resyncs = stats.resyncs.wrapping_add(1);
    let counter = match error {
        FrameError::Crc { .. } => &mut stats.bad_crc,
        FrameError::Oversize => &mut stats.oversize,
        _ => &mut stats.malformed,
    };
    *counter = counter.wrapping_add(1);
}
