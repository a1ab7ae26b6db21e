//! Exactly once: authenticated requests through the role check, the idempotency key
//! and the reply cache (see the module docs of [`super`]).

use heapless::Vec;
use thecal_protocol::frame::decode_body;
use thecal_protocol::message::{Event, OpKey, Refusal, Request, Response, Role};
use thecal_protocol::time::Timestamp;

use super::Server;
use crate::link::session::permitted;
use crate::store::Storage;
use crate::therapy::motor::Motor;
use crate::update::Firmware;

/// Therapy-changing answers kept for repeats.
pub const CACHE_ENTRIES: usize = 8;
/// Largest cached answer body; every therapy-changing answer fits ([`LARGEST_CACHED`],
/// checked at compile time).
pub const CACHE_BODY: usize = 128;
/// A cached answer is forgotten this long after it was made, ms of link time.
pub const CACHE_TTL_MS: u64 = 10 * 60 * 1000;

// postcard's widest encodings: a u32 varint takes 5 bytes, a u64 varint 10, an enum
// variant or an `Option` flag 1 (every enum here has fewer than 128 variants).
const U32: usize = 5;
const U64: usize = 10;
const TAG: usize = 1;
const TIMESTAMP: usize = U64;
const OPTION_TIMESTAMP: usize = TAG + TIMESTAMP;
/// A `ReservoirReport`: capacity, volume, low threshold, drug, concentration, the four
/// projected dates and the last refill.
const RESERVOIR_REPORT: usize = 3 * U32 + TAG + U32 + 5 * OPTION_TIMESTAMP;
/// The largest answer to a therapy change (a request that `changes_state`): `Refilled`
/// (revision and a reservoir report with every date set). The others are smaller:
/// `BolusStarted` (kind, dose, volume, end: 1 + 5 + 5 + 10), `ClockSet` (11),
/// `KeyRotated`, `Provisioned` (a 32-byte confirmation and an epoch: 38), every
/// `Refused` (at most three u32 fields: 17).
pub const LARGEST_CACHED: usize = TAG + U32 + RESERVOIR_REPORT;
const _: () = assert!(
    LARGEST_CACHED <= CACHE_BODY,
    "an answer to a therapy change would not fit the reply cache"
);

/// A therapy change's answer, kept for its repeats.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    role: Role,
    key: OpKey,
    fingerprint: u32,
    at: Timestamp,
    body: Vec<u8, CACHE_BODY>,
}

impl<S: Storage, M: Motor, U: Firmware> Server<S, M, U> {
    pub(super) fn log_refused(&mut self, now: Timestamp, by: Role, request: u8, refusal: Refusal) {
        self.pump.log_noise(
            now,
            Event::Refused {
                by,
                request,
                reason: refusal.code(),
                count: 1,
            },
        );
    }

    /// Runs an authenticated request of `role` (role check, idempotency key, reply
    /// cache, pump).
    pub(super) fn execute(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        role: Role,
        key: Option<OpKey>,
        request: &Request,
        fingerprint: u32,
    ) -> Response {
        if !permitted(role, request) {
            self.log_refused(now, role, request.tag(), Refusal::NotPermitted);
            return Response::Refused(Refusal::NotPermitted);
        }
        let key = match (request.changes_state(), key) {
            (false, _) => None,
            (true, Some(key)) => Some(key),
            (true, None) => {
                self.log_refused(now, role, request.tag(), Refusal::Malformed);
                return Response::Refused(Refusal::Malformed);
            }
        };
        if let Some(key) = key {
            self.cache
                .retain(|c| link_now.since(c.at) < CACHE_TTL_MS && c.at <= link_now);
            let hit = self
                .cache
                .iter()
                .find(|c| c.role == role && c.key == key && c.fingerprint == fingerprint)
                .and_then(|c| decode_body::<Response>(&c.body).ok());
            if let Some(response) = hit {
                self.stats.replays = self.stats.replays.wrapping_add(1);
                return response;
            }
        }
        let response = match request {
            Request::LinkStats => Response::LinkStats(self.stats),
            Request::UpdateBegin { .. }
            | Request::UpdateChunk { .. }
            | Request::UpdateFinish
            | Request::UpdateStatus => {
                self.pump.tick(now);
                let response = self.firmware.serve(request);
                if let Response::Refused(refusal) = response {
                    self.log_refused(now, role, request.tag(), refusal);
                }
                response
            }
            r => self.pump.handle_as(now, role, r),
        };
        match response {
            // A challenge answered before the change was made with the old key: it must
            // not open a session after it.
            Response::KeyRotated { role: whose, .. } => self.sessions.drop_pending(Some(whose)),
            Response::Provisioned { .. } => {
                self.sessions.drop_pending(None);
                if let Some(key) = self.pump.nonce_key() {
                    self.sessions.stir(key.as_bytes());
                }
            }
            _ => {}
        }
        if let Some(key) = key {
            self.remember(role, key, fingerprint, link_now, &response);
        }
        response
    }

    pub(super) fn remember(
        &mut self,
        role: Role,
        key: OpKey,
        fingerprint: u32,
        at: Timestamp,
        response: &Response,
    ) {
        let mut buf = [0u8; CACHE_BODY];
        let Ok(body) = postcard::to_slice(response, &mut buf) else {
            return;
        };
        let Ok(body) = Vec::from_slice(body) else {
            return;
        };
        self.cache.retain(|c| !(c.role == role && c.key == key));
        if self.cache.is_full() {
            self.cache.pop_front();
        }
        self.cache
            .push_back(Cached {
                role,
                key,
                fingerprint,
                at,
                body,
            })
            .ok();
    }
}

#[cfg(test)]
mod tests {
    //! The compile-time bound is written out by hand; this ties it to the types: the
    //! widest `Refilled` there can be encodes to exactly [`LARGEST_CACHED`] bytes, so a
    //! field added to the answer (or a wider one) fails here before a repeat of a
    //! therapy change could miss the cache.
    use super::*;
    use thecal_protocol::message::{ReservoirReport, Revision};
    use thecal_protocol::units::{NanogramsPerMillilitre, Nanolitres};
    use thecal_protocol::Drug;

    #[test]
    fn the_widest_refilled_answer_is_the_bound() {
        let far = Some(Timestamp(u64::MAX));
        let widest = Response::Refilled {
            revision: Revision(u32::MAX),
            reservoir: ReservoirReport {
                capacity: Nanolitres(u32::MAX),
                volume: Nanolitres(u32::MAX),
                low_threshold: Nanolitres(u32::MAX),
                drug: Drug::Clonidine,
                concentration: NanogramsPerMillilitre(u32::MAX),
                low_at: far,
                empty_at: far,
                worst_low_at: far,
                worst_empty_at: far,
                last_refill: far,
            },
        };
        let mut buf = [0u8; 256];
        let body = postcard::to_slice(&widest, &mut buf).unwrap();
        assert_eq!(body.len(), LARGEST_CACHED);
    }
}
