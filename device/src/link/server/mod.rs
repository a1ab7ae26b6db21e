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
//!   unanswered. Every request is checked against the session's role ([`crate::link::session::permitted`]).
//! * **Energy budget** ([`crate::link::budget`]): everything but the open session's frames is
//!   paid from the unauthenticated budget; when it is spent the link goes quiet instead
//!   of spending battery.
//! * **Exactly once.** Every therapy change carries an idempotency key inside its sealed
//!   body ([`Command`]). The answers to the last [`CACHE_ENTRIES`] therapy changes are
//!   kept with the session's role, the key and a CRC-32C of the plaintext request, for
//!   [`CACHE_TTL_MS`] of link time. A therapy change whose role, key and body match an
//!   entry gets the cached answer and is not executed again: a retried bolus is
//!   delivered once. No other request can reach a cached answer (another role, another
//!   programmer, a later operation: another key).
//! * **Security log**: sessions opened and ended, refusals (with `NotPermitted`),
//!   failed handshakes, link abuse, provisioning and physical presence, aggregated and
//!   rate-limited by the pump ([`crate::pump::noise`]).

use heapless::{Deque, Vec};
use thecal_protocol::frame::{
    self, decode_body, Feed, Flags, FrameDecoder, FrameError, FrameKind, Header, MAX_BODY, MAX_WIRE,
};
use thecal_protocol::message::{
    Command, Event, LinkAbuse, LinkStats, Refusal, Request, Response, Role, SessionEnd,
};
use thecal_protocol::session::{emergency_key, Secret};
use thecal_protocol::time::Timestamp;

use crate::link::budget::{Budget, HANDSHAKE_RESERVE_FRAMES};
use crate::link::session::Sessions;
use crate::pump::Pump;
use crate::store::{Storage, CRC32C};
use crate::therapy::motor::Motor;
use crate::update::{Firmware, NoUpdates};

mod cache;
mod handshake;
mod platform;

use cache::Cached;
pub use cache::{CACHE_BODY, CACHE_ENTRIES, CACHE_TTL_MS, LARGEST_CACHED};
pub use platform::SelfTest;

/// Request tag logged for a sealed body that is not a valid `Command`.
pub const UNDECODABLE: u8 = 0xFF;

/// The pump behind a byte link, and its firmware updater (`U`; [`NoUpdates`] for a
/// pump without an update slot).
pub struct Server<S, M, U = NoUpdates> {
    pump: Pump<S, M>,
    firmware: U,
    decoder: FrameDecoder<MAX_WIRE>,
    cache: Deque<Cached, CACHE_ENTRIES>,
    stats: LinkStats,
    sessions: Sessions,
    budget: Budget,
    /// Link time of the last plain `Identify` answered (refunded with the handshake that
    /// follows it, once).
    identified_at: Option<Timestamp>,
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

impl<S: Storage, M: Motor> Server<S, M, NoUpdates> {
    /// Serves `pump`, with a full unauthenticated budget at link time 0.
    pub fn new(pump: Pump<S, M>) -> Self {
        Self::new_at(pump, Timestamp(0))
    }

    /// Serves `pump`; the link clock starts at `link_now`.
    pub fn new_at(pump: Pump<S, M>, link_now: Timestamp) -> Self {
        Server::with_firmware(pump, NoUpdates, link_now)
    }
}

impl<S: Storage, M: Motor, U: Firmware> Server<S, M, U> {
    /// Serves `pump` and its firmware updater `firmware`; the link clock starts at
    /// `link_now`.
    pub fn with_firmware(pump: Pump<S, M>, firmware: U, link_now: Timestamp) -> Self {
        let epoch = pump.boot_epoch();
        let seed = nonce_key_of(&pump);
        Self {
            pump,
            firmware,
            decoder: FrameDecoder::new(),
            cache: Deque::new(),
            stats: LinkStats::default(),
            sessions: Sessions::new(epoch, &seed),
            budget: Budget::new(link_now),
            identified_at: None,
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

    /// Mixes platform entropy (the board's RNG, the OS) into the pool the pump's
    /// ephemeral keys come from; on a pump with no static key pair yet, makes it (one
    /// flash write in the device's life). Call at boot and whenever
    /// [`Server::wants_entropy`] says so.
    pub fn stir(&mut self, entropy: &[u8]) {
        self.sessions.stir(entropy);
        if self.pump.public_key().is_none() {
            let identity = self.sessions.draw();
            let _ = self.pump.create_identity(identity.as_secret());
        }
    }

    /// Whether the pool was drawn from since it was last stirred.
    pub fn wants_entropy(&self) -> bool {
        self.sessions.wants_entropy()
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

    /// Takes the server apart, keeping the updater too.
    pub fn into_parts(self) -> (Pump<S, M>, U) {
        (self.pump, self.firmware)
    }

    /// The firmware updater.
    pub fn firmware(&self) -> &U {
        &self.firmware
    }

    /// The firmware updater, mutably (the platform confirms a trial boot, asks whether
    /// to restart for a swap).
    pub fn firmware_mut(&mut self) -> &mut U {
        &mut self.firmware
    }

    /// Link counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The unauthenticated budget left, nAh.
    pub fn budget_nah(&self) -> u64 {
        self.budget.level()
    }

    /// Role and number of the open session.
    pub fn session(&self) -> Option<(Role, u16)> {
        self.sessions.current()
    }

    /// Advances the pump to `now`.
    pub fn tick(&mut self, now: Timestamp) {
        self.pump.tick(now);
    }

    /// When [`Server::tick`] must be called next.
    pub fn next_wake(&self) -> Timestamp {
        self.pump.next_wake()
    }

    /// The physical-presence signal (a magnet over the implant, a button on a dev board)
    /// at device time `now`, link time `link_now`: opens emergency access and a presence
    /// budget for [`crate::link::budget::PRESENCE_WINDOW_MS`], and logs it.
    pub fn apply_presence(&mut self, now: Timestamp, link_now: Timestamp) {
        self.budget.apply_presence(link_now);
        self.pump.log(now, Event::PresenceApplied);
        if let Some(ended) = self.sessions.arm_emergency() {
            self.log_ended(now, ended);
        }
    }

    /// Whether the physical-presence window is open at link time `link_now`.
    pub fn presence(&self, link_now: Timestamp) -> bool {
        self.budget.presence(link_now)
    }

    /// Feeds received bytes at device time `now` (also the session clock); each
    /// complete answer frame is passed to `send`.
    pub fn receive(&mut self, now: Timestamp, bytes: &[u8], send: &mut dyn FnMut(&[u8])) {
        self.receive_at(now, now, bytes, send);
    }

    /// Ends what ran out at link time `link_now`: an idle session, the presence window
    /// (and an emergency session with it). Logged at device time `now`.
    pub fn poll(&mut self, now: Timestamp, link_now: Timestamp) {
        if let Some(ended) = self.sessions.expire(link_now) {
            self.log_ended(now, ended);
        }
        if self.budget.presence_ended(link_now) {
            if let Some(ended) = self.sessions.end_emergency() {
                self.log_ended(now, ended);
            }
        }
    }

    /// As [`Server::receive`], with a separate link clock for session timeouts and the
    /// energy budget (the simulator's device clock may run faster than real time).
    pub fn receive_at(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        bytes: &[u8],
        send: &mut dyn FnMut(&[u8]),
    ) {
        self.poll(now, link_now);
        let frame_nah = self.pump.frame_nah();
        let mut input = bytes;
        loop {
            if !self.listening(link_now, frame_nah) {
                return self.go_quiet(now, input);
            }
            let (header, rest) = match self.decoder.feed(input) {
                Feed::Consumed => return,
                Feed::Error { error, remaining } => {
                    count_error(&mut self.stats, error);
                    self.unauthenticated_frame(now, link_now, frame_nah);
                    (None, remaining)
                }
                Feed::Frame { frame, remaining } => {
                    self.stats.frames_in = self.stats.frames_in.wrapping_add(1);
                    self.rx.clear();
                    // A body over MAX_BODY fits the receive buffer but not the protocol:
                    // dropped unanswered, like any frame over the limit.
                    let copied = self.rx.extend_from_slice(frame.body).is_ok();
                    if !copied {
                        self.stats.oversize = self.stats.oversize.wrapping_add(1);
                    }
                    (Some((copied, frame.header)), remaining)
                }
            };
            input = rest;
            let header = match header {
                Some((true, h)) => Some(h),
                Some((false, _)) => {
                    self.unauthenticated_frame(now, link_now, frame_nah);
                    None
                }
                None => None,
            };
            match header {
                Some(h) if h.kind == FrameKind::Request => self.serve(now, link_now, h, send),
                // A response or event sent to the pump: not ours to answer.
                Some(_) => {
                    self.stats.malformed = self.stats.malformed.wrapping_add(1);
                    self.unauthenticated_frame(now, link_now, frame_nah);
                }
                None => {}
            }
        }
    }

    /// Whether the receiver decodes: always with a session open or presence (the
    /// session's frames must be found), otherwise while the budget can pay a frame (a
    /// `SessionProof`, the cheapest thing served).
    fn listening(&mut self, link_now: Timestamp, frame_nah: u64) -> bool {
        #[cfg(fuzzing)]
        if self.plain_as_clinician {
            return true;
        }
        self.sessions.open_role().is_some()
            || self.budget.presence(link_now)
            || self.budget.can_pay(link_now, frame_nah)
    }

    /// Quiet: the rest of `input` is dropped undecoded (a real receiver is off); the
    /// frames it held are counted by their delimiters.
    fn go_quiet(&mut self, now: Timestamp, input: &[u8]) {
        self.decoder.reset();
        let frames = input.iter().filter(|&&b| b == 0).count();
        let frames = u32::try_from(frames).unwrap_or(u32::MAX);
        if frames > 0 {
            self.note_quiet(now, frames);
        }
    }

    fn note_quiet(&mut self, now: Timestamp, frames: u32) {
        self.stats.quiet = self.stats.quiet.wrapping_add(frames);
        self.pump.log_noise(
            now,
            Event::LinkAbuse(LinkAbuse {
                unanswered: frames,
                forged: 0,
            }),
        );
    }

    /// Pays a received unauthenticated frame that is no request (garbage, a failed
    /// CRC, a sealed frame that does not open, …) from the budget, leaving
    /// [`HANDSHAKE_RESERVE_FRAMES`] for handshakes, and charges it to the battery;
    /// `false` (counted as quiet, not charged: the pump does no work on it) if the budget
    /// could not, and the frame must be dropped unanswered. A trickle of garbage
    /// therefore never keeps the budget below what a handshake needs.
    fn unauthenticated_frame(&mut self, now: Timestamp, link_now: Timestamp, nah: u64) -> bool {
        let reserve = nah.saturating_mul(HANDSHAKE_RESERVE_FRAMES);
        if self.budget.can_pay(link_now, reserve.saturating_add(nah))
            && self.budget.spend(link_now, nah)
        {
            self.pump.charge_frame();
            return true;
        }
        self.note_quiet(now, 1);
        false
    }

    /// Pays a received plain request and its answer's share of the budget check: served
    /// only if the budget can pay both; `false` (quiet, not charged) otherwise.
    fn unauthenticated_request(&mut self, now: Timestamp, link_now: Timestamp, nah: u64) -> bool {
        if self.budget.can_pay(link_now, nah.saturating_mul(2)) && self.budget.spend(link_now, nah)
        {
            self.pump.charge_frame();
            return true;
        }
        self.note_quiet(now, 1);
        false
    }

    fn serve(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        header: Header,
        send: &mut dyn FnMut(&[u8]),
    ) {
        let frame_nah = self.pump.frame_nah();
        #[cfg(fuzzing)]
        if self.plain_as_clinician && !header.flags.has(Flags::SEALED) {
            // Fuzzing builds only: the budget would starve the fuzzer of the pump core.
            let mut body = core::mem::take(&mut self.rx);
            let request = decode_body::<Request>(&body).ok();
            let fingerprint = CRC32C.checksum(&body);
            body.clear();
            self.rx = body;
            if let Some(request) = request {
                self.pump.charge_frame();
                let key = Some(fuzz_key(header.id));
                let response =
                    self.execute(now, link_now, Role::Clinician, key, &request, fingerprint);
                return self.reply(header.id, &response, false, send);
            }
        }
        if !header.flags.has(Flags::SEALED) {
            let mut body = core::mem::take(&mut self.rx);
            let request = decode_body::<Request>(&body).ok();
            body.clear();
            self.rx = body;
            // A plain request is worth serving only if its answer can be paid too (a
            // budget that refills one frame at a time must not be spent on receiving
            // requests it cannot answer); a body that is no request is garbage.
            let paid = match request {
                // A verified proof's answer is the session's (free); a failed one's is
                // paid when it can be.
                Some(Request::SessionProof { .. }) => {
                    self.budget.spend(link_now, frame_nah) && {
                        self.pump.charge_frame();
                        true
                    }
                }
                Some(_) => self.unauthenticated_request(now, link_now, frame_nah),
                None => self.unauthenticated_frame(now, link_now, frame_nah),
            };
            if !paid && matches!(request, Some(Request::SessionProof { .. })) {
                self.note_quiet(now, 1);
            }
            if !paid {
                return;
            }
            let response = self.serve_plain(now, link_now, request);
            if response == Response::SessionEstablished {
                // The answer to a verified proof is the new session's first frame.
                return self.reply(header.id, &response, false, send);
            }
            return self.reply_unauthenticated(now, link_now, header.id, &response, send);
        }
        let mut body = core::mem::take(&mut self.rx);
        let opened = self
            .sessions
            .open(&header.to_bytes(), &mut body, link_now)
            .map(|plain| (decode_body::<Command>(plain).ok(), CRC32C.checksum(plain)));
        body.clear();
        self.rx = body;
        match opened {
            Ok((command, fingerprint)) => {
                self.pump.charge_frame();
                self.serve_sealed(now, link_now, header, command, fingerprint, send)
            }
            // No session (expired, closed, or the pump was reset): say so in the clear.
            Err(None) => {
                if self.unauthenticated_request(now, link_now, frame_nah) {
                    let refusal = Response::Refused(Refusal::SessionRequired);
                    self.reply_unauthenticated(now, link_now, header.id, &refusal, send);
                }
            }
            // Forged, replayed, reordered or reflected: dropped unanswered.
            Err(Some(_)) => {
                self.stats.forged = self.stats.forged.wrapping_add(1);
                self.unauthenticated_frame(now, link_now, frame_nah);
                self.pump.log_noise(
                    now,
                    Event::LinkAbuse(LinkAbuse {
                        unanswered: 0,
                        forged: 1,
                    }),
                );
            }
        }
    }

    fn serve_sealed(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        header: Header,
        command: Option<Command>,
        fingerprint: u32,
        send: &mut dyn FnMut(&[u8]),
    ) {
        let id = header.id;
        let Some(role) = self.sessions.open_role() else {
            return;
        };
        if role == Role::Emergency && !self.budget.presence(link_now) {
            // The presence window closed (poll ends the session; this is the guard).
            if let Some(ended) = self.sessions.end(SessionEnd::PresenceEnded) {
                self.log_ended(now, ended);
            }
            let refusal = Response::Refused(Refusal::SessionRequired);
            return self.reply_unauthenticated(now, link_now, id, &refusal, send);
        }
        if !self.sessions.can_seal() {
            // No answer could be sealed: end the session before executing anything.
            if let Some(ended) = self.sessions.end(SessionEnd::CounterExhausted) {
                self.log_ended(now, ended);
            }
            let refusal = Response::Refused(Refusal::SessionRequired);
            return self.reply_unauthenticated(now, link_now, id, &refusal, send);
        }
        let response = match command {
            None => {
                self.log_refused(now, role, UNDECODABLE, Refusal::Malformed);
                Response::Refused(Refusal::Malformed)
            }
            Some(Command {
                request: Request::SessionClose,
                ..
            }) => {
                self.reply(id, &Response::SessionClosed, true, send);
                if let Some(ended) = self.sessions.end(SessionEnd::Closed) {
                    self.log_ended(now, ended);
                }
                return;
            }
            Some(Command { key, request }) => {
                self.execute(now, link_now, role, key, &request, fingerprint)
            }
        };
        self.reply(id, &response, true, send);
    }

    /// Answers a plain (unauthenticated) request if the budget pays for the answer.
    fn reply_unauthenticated(
        &mut self,
        now: Timestamp,
        link_now: Timestamp,
        id: u16,
        response: &Response,
        send: &mut dyn FnMut(&[u8]),
    ) {
        // The answer's charge is the emit's; the budget pays for it here.
        let frame_nah = self.pump.frame_nah();
        if self.budget.spend(link_now, frame_nah) {
            self.reply(id, response, false, send);
        } else {
            self.note_quiet(now, 1);
        }
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
                // Not reached: the counter is checked before a request is served.
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

/// Fuzzing builds only: the idempotency key of a plain request served as a clinician's
/// (the request id, so a repeat with the same id is answered from the cache).
#[cfg(fuzzing)]
fn fuzz_key(id: u16) -> thecal_protocol::message::OpKey {
    let [a, b] = id.to_le_bytes();
    [a, b, 0, 0, 0, 0, 0, 0]
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

/// The pump's nonce key, or on an unprovisioned pump the (public) emergency key: the seed
/// of the device nonces and of the ephemeral pool.
fn nonce_key_of<S: Storage, M: Motor>(pump: &Pump<S, M>) -> Secret {
    pump.nonce_key()
        .unwrap_or_else(|| emergency_key(pump.serial()))
}
