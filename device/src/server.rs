//! The request server: bytes in → frames → requests → pump → responses → bytes out.
//!
//! * Frames that fail COBS, CRC or header checks are dropped and counted (the link
//!   counters a clinic reads to diagnose a poor radio link); the decoder resynchronises at
//!   the next delimiter.
//! * An intact request frame whose body is not a valid `Request` is answered with
//!   `Refused(Malformed)` under the same id.
//! * **Exactly once.** The answers to the last [`CACHE_ENTRIES`] therapy-changing requests
//!   are kept with their request id and a CRC-32 of the request body. A frame flagged
//!   `RETRY` whose id and body match an entry gets the cached answer, byte for byte, and
//!   is not executed again: a retried bolus is delivered once. A frame without the flag
//!   is always a new request (a programmer that restarted and reuses ids cannot be
//!   mistaken for a retry). Reads are executed again on retry; they change nothing.

use crc::{Crc, CRC_32_ISO_HDLC};
use heapless::{Deque, Vec};
use thecal_protocol::frame::{
    self, decode_body, Feed, Flags, FrameDecoder, FrameError, FrameKind, Header, MAX_WIRE,
};
use thecal_protocol::message::{LinkStats, Refusal, Request, Response};
use thecal_protocol::time::Timestamp;

use crate::motor::Motor;
use crate::pump::Pump;
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
    tx: [u8; MAX_WIRE],
}

impl<S: Storage, M: Motor> Server<S, M> {
    /// Serves `pump`.
    pub fn new(pump: Pump<S, M>) -> Self {
        Self {
            pump,
            decoder: FrameDecoder::new(),
            cache: Deque::new(),
            stats: LinkStats::default(),
            tx: [0; MAX_WIRE],
        }
    }

    /// The pump.
    pub fn pump(&self) -> &Pump<S, M> {
        &self.pump
    }

    /// The pump, mutably (platform hooks, fault injection).
    pub fn pump_mut(&mut self) -> &mut Pump<S, M> {
        &mut self.pump
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

    /// Feeds received bytes; each complete answer frame is passed to `send`.
    pub fn receive(&mut self, now: Timestamp, bytes: &[u8], send: &mut dyn FnMut(&[u8])) {
        let mut input = bytes;
        loop {
            let (request, rest) = match self.decoder.feed(input) {
                Feed::Consumed => return,
                Feed::Error { error, remaining } => {
                    count_error(&mut self.stats, error);
                    (None, remaining)
                }
                Feed::Frame { frame, remaining } => {
                    self.stats.frames_in = self.stats.frames_in.wrapping_add(1);
                    let parsed = (frame.header.kind == FrameKind::Request).then(|| {
                        (
                            frame.header,
                            decode_body::<Request>(frame.body).ok(),
                            CRC32.checksum(frame.body),
                        )
                    });
                    if parsed.is_none() {
                        // A response or event sent to the pump: not ours to answer.
                        self.stats.malformed = self.stats.malformed.wrapping_add(1);
                    }
                    (parsed, remaining)
                }
            };
            input = rest;
            if let Some((header, request, fingerprint)) = request {
                self.pump.charge_frame();
                self.serve(now, header, request, fingerprint, send);
            }
        }
    }

    fn serve(
        &mut self,
        now: Timestamp,
        header: Header,
        request: Option<Request>,
        fingerprint: u32,
        send: &mut dyn FnMut(&[u8]),
    ) {
        let id = header.id;
        if header.flags.has(Flags::RETRY) {
            let hit = self
                .cache
                .iter()
                .find(|c| c.id == id && c.fingerprint == fingerprint)
                .map(|c| c.body.clone());
            if let Some(body) = hit {
                self.stats.replays = self.stats.replays.wrapping_add(1);
                if let Ok(n) = frame::encode_raw(Header::response(id), &body, &mut self.tx) {
                    self.emit(n, send);
                }
                return;
            }
        }
        let response = match &request {
            None => Response::Refused(Refusal::Malformed),
            Some(Request::LinkStats) => Response::LinkStats(self.stats),
            Some(r) => self.pump.handle(now, r),
        };
        if matches!(response, Response::Refused(_)) {
            self.stats.refusals = self.stats.refusals.wrapping_add(1);
        }
        let n = match frame::encode(Header::response(id), &response, &mut self.tx) {
            Ok(n) => n,
            Err(_) => return,
        };
        if request.as_ref().is_some_and(Request::changes_therapy) {
            self.remember(id, fingerprint, &response);
        }
        self.emit(n, send);
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
