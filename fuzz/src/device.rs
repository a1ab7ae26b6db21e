//! The `device_server` harness: the real request server and pump core on RAM-backed NOR
//! flash, driven by a fuzz input of bytes, clock advances and power cuts, with an
//! independent ledger of what the motor did.
//!
//! # Input format
//!
//! A sequence of operations; the low 3 bits of the first byte pick one:
//!
//! | op | bytes after it | what happens |
//! |---|---|---|
//! | 0 step | `u16` s | the clock advances `s` seconds in ticks: at every `next_wake` like a platform (`byte >> 3` = 0) or every 1, 5, 15 or 60 minutes (1, 2, 3, ≥ 4) |
//! | 1 jump | `u16` s | the clock advances `s` seconds in one tick (a platform that slept) |
//! | 2 nudge | — | the clock advances `(byte >> 3) + 1` ms, one tick |
//! | 3, 7 raw | `u8` n, n bytes | the bytes go to `Server::receive` |
//! | 4 frame | `u16` id, `u8` flags, `u16` n, n bytes | a frame with a valid CRC around the body; flag bit 7 makes it an event frame |
//! | 5 cut | `u16` k | the flash loses power after `k` more operations; the device dies there and reboots |
//! | 6 retry | — | the last `frame` again with the RETRY flag |
//!
//! # What is checked after every operation
//!
//! * **Daily limit, independently.** Every tick's motor strokes go into a ledger of
//!   (device time, drug mass) kept here, outside the pump. The mass delivered in every
//!   closed 24 h window ending at a delivery never exceeds the daily limit in force
//!   (exact integers: nL × ng/mL against limit × 10⁶). A drug change starts a new ledger
//!   (the documented rule: the old drug's deliveries do not count against the new one's
//!   limit). Bridge strokes the pump delivers as the old solution after a refill
//!   (`Pump::old_solution_delivered`, PROTOCOL.md 5.7) go into the ledger as that
//!   solution: at its concentration for the same drug, not at all for another — and then
//!   at most `BRIDGE_OLD_MAX` of them per ledger. Also, the pump's own rolling window never counts less drug than the ledger
//!   (or, when the ledger holds more than the limit now in force, less than that limit).
//! * **Reservoir.** It never rises, except in a step whose answers include `Refilled`
//!   with at least that volume, or — when the device died in that step — whose input
//!   held a `Refill` request for at least that volume (the answer may have been lost).
//! * **Lifetime counter.** `delivered_total` grows by exactly the motor's strokes.
//! * **Answers.** Every frame the server sends is a response that decodes. The server
//!   may legitimately send none: every plain frame, served as a clinician's here, is paid
//!   from the unauthenticated energy budget (`thecal_device::link::budget`: 40 frames at
//!   once, one more per 90 s of link time, which is device time here); when it is spent
//!   the link goes quiet and input is dropped undecoded (`LinkStats::quiet`).
//! * **No allocation** on the device path (checked by the target's allocator), no panic.
//!
//! One input advances the clock by at most [`MAX_ADVANCE_MS`] in at most [`MAX_TICKS`]
//! ticks (a tick with instrumentation costs tens of microseconds; this keeps the target
//! above a thousand inputs a second).
//!
//! # Power cuts
//!
//! A real pump's processor loses power together with its flash. Here the flash goes
//! dark at the armed operation; from then on the motor stops counting strokes (the
//! device is dead), answers are no longer sent, and at the end of the operation the pump
//! is rebooted from the flash contents, as a reset would.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use thecal_device::link::server::Server;
use thecal_device::pump::demo;
use thecal_device::pump::Pump;
use thecal_device::store::flash::{FlashError, RamFlash};
use thecal_device::store::FlashStore;
use thecal_device::therapy::motor::{Motor, MotorStall, STROKE_NL};
use thecal_protocol::frame::{
    decode_body, encode_raw, Feed, Flags, FrameDecoder, FrameKind, Header,
};
use thecal_protocol::message::{ResetCause, Response};
use thecal_protocol::rules::BRIDGE_OLD_MAX;
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{MS_PER_DAY, NL_PER_ML};
use thecal_protocol::{Drug, Request};

use crate::reader::Reader;

/// Bytes of flash the store needs.
pub const FLASH_SIZE: usize = thecal_device::store::FLASH_SIZE;
/// Device time at the first boot.
pub const BOOT: Timestamp = Timestamp(1_000_000);
/// Wall clock at device time zero: 2026-11-23T00:00Z (a Monday) at `BOOT`.
pub const WALL_AT_ZERO: Timestamp = Timestamp(1_795_392_000_000 - BOOT.0);

/// Most device time one input may advance: three days, enough for the rolling window to
/// turn over a few times.
pub const MAX_ADVANCE_MS: u64 = 3 * MS_PER_DAY;
/// Most ticks one input may make.
pub const MAX_TICKS: u32 = 500;

/// Whether the device has lost power (shared by the flash and the motor).
#[derive(Debug, Clone, Default)]
pub struct Power(Rc<Cell<bool>>);

impl Power {
    /// Whether power is lost.
    pub fn is_dead(&self) -> bool {
        self.0.get()
    }
}

/// [`RamFlash`] that reports its power loss to the rest of the device.
#[derive(Clone)]
pub struct FuzzFlash {
    inner: Box<RamFlash<FLASH_SIZE>>,
    power: Power,
}

impl FuzzFlash {
    fn note<T>(&self, result: Result<T, FlashError>) -> Result<T, FlashError> {
        if self.inner.is_powered_off() {
            self.power.0.set(true);
        }
        result
    }
}

impl ErrorType for FuzzFlash {
    type Error = FlashError;
}

impl ReadNorFlash for FuzzFlash {
    const READ_SIZE: usize = RamFlash::<FLASH_SIZE>::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let r = self.inner.read(offset, bytes);
        self.note(r)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl NorFlash for FuzzFlash {
    const WRITE_SIZE: usize = RamFlash::<FLASH_SIZE>::WRITE_SIZE;
    const ERASE_SIZE: usize = RamFlash::<FLASH_SIZE>::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let r = self.inner.erase(from, to);
        self.note(r)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let r = self.inner.write(offset, bytes);
        self.note(r)
    }
}

/// A motor that counts strokes while the device has power.
pub struct FuzzMotor {
    /// Strokes done in this life of the device.
    pub strokes: u64,
    power: Power,
}

impl Motor for FuzzMotor {
    fn stroke(&mut self) -> Result<(), MotorStall> {
        if !self.power.is_dead() {
            self.strokes += 1;
        }
        Ok(())
    }
}

/// The server under test.
pub type FuzzServer = Server<FlashStore<FuzzFlash>, FuzzMotor>;

/// Independent record of the drug the motor delivered in the last 24 h: (device time,
/// nL × ng/mL), oldest first, and their sum.
#[derive(Debug, Default)]
struct Ledger {
    drug: Option<Drug>,
    entries: VecDeque<(Timestamp, u128)>,
    sum: u128,
    /// Old solution of another drug delivered by bridge boluses since this ledger
    /// started, nL: not in `entries`, and at most `BRIDGE_OLD_MAX`.
    uncounted_nl: u64,
}

impl Ledger {
    fn push(&mut self, t: Timestamp, mass: u128) {
        self.entries.push_back((t, mass));
        self.sum += mass;
    }

    /// Mass (nL × ng/mL) delivered in the closed 24 h window ending at `now` (time only
    /// moves forward, so older entries are dropped for good).
    fn window(&mut self, now: Timestamp) -> u128 {
        let start = now.0.saturating_sub(MS_PER_DAY);
        while let Some(&(at, mass)) = self.entries.front() {
            if at.0 >= start {
                break;
            }
            self.sum -= mass;
            self.entries.pop_front();
        }
        self.sum
    }
}

/// What the server sent during one operation.
#[derive(Debug, Default)]
struct Sent {
    /// Largest reservoir volume reported by a `Refilled` answer.
    refilled: Option<u32>,
}

/// The device under test and everything the harness knows about it.
pub struct Device {
    server: Box<FuzzServer>,
    power: Power,
    now: Timestamp,
    ledger: Ledger,
    /// `delivered_total` and strokes at the start of this life.
    life_start: (u64, u64),
    /// `old_solution_delivered` when last recorded in this life.
    old_seen: u64,
    /// The old solution before the operation being checked (bridge strokes deliver it).
    old_before: Option<thecal_device::store::Solution>,
    last_frame: Option<(Header, Vec<u8>)>,
    /// The server's decoder, mirrored, to see which requests it got.
    mirror: Box<FrameDecoder>,
    /// Device time this input may still advance (bounds the work per input).
    budget_ms: u64,
    /// Ticks this input may still make.
    budget_ticks: u32,
}

impl Default for Device {
    fn default() -> Self {
        Self::new()
    }
}

impl Device {
    /// A factory-fresh device (demo prescription, 18 mL) on blank flash.
    pub fn new() -> Self {
        let power = Power::default();
        let flash = FuzzFlash {
            inner: Box::new(RamFlash::new()),
            power: power.clone(),
        };
        let server = boot(flash, &power, BOOT, ResetCause::PowerOn);
        let mut device = Device {
            server,
            power,
            now: BOOT,
            ledger: Ledger::default(),
            life_start: (0, 0),
            old_seen: 0,
            old_before: None,
            last_frame: None,
            mirror: Box::default(),
            budget_ms: MAX_ADVANCE_MS,
            budget_ticks: MAX_TICKS,
        };
        device.start_life();
        device
    }

    /// Runs the whole fuzz input.
    pub fn run(&mut self, data: &[u8]) {
        let mut r = Reader::new(data);
        let mut ops = 0;
        while let Some(op) = r.u8() {
            // Bound the work per input (the fuzzer's timeout is for hangs, not long inputs).
            ops += 1;
            if ops > 256 {
                return;
            }
            match op & 7 {
                0 => {
                    let ms = self.spend(u64::from(r.u16()) * 1_000);
                    let every = [0, 1, 5, 15, 60][usize::from(op >> 3).min(4)] * 60_000;
                    self.advance_stepping(ms, every);
                }
                1 => {
                    let ms = self.spend(u64::from(r.u16()) * 1_000);
                    self.tick_to(self.now.plus_ms(ms));
                }
                2 => {
                    let ms = self.spend(u64::from(op >> 3) + 1);
                    self.tick_to(self.now.plus_ms(ms));
                }
                3 | 7 => {
                    let n = usize::from(r.u8().unwrap_or(0));
                    self.receive(r.take(n));
                }
                4 => {
                    let id = r.u16();
                    let flags = r.u8().unwrap_or(0);
                    let n = usize::from(r.u16());
                    let body = r.take(n).to_vec();
                    let kind = if flags & 0x80 != 0 {
                        FrameKind::Event
                    } else {
                        FrameKind::Request
                    };
                    let header = Header {
                        kind,
                        id,
                        flags: Flags(flags & 0x7F),
                    };
                    self.send_frame(header, &body);
                    self.last_frame = Some((header, body));
                }
                5 => {
                    let k = r.u16();
                    self.flash_mut().cut_power_after(u64::from(k));
                }
                _ => {
                    if let Some((mut header, body)) = self.last_frame.clone() {
                        header.flags = Flags(header.flags.0 | Flags::RETRY);
                        self.send_frame(header, &body);
                    }
                }
            }
        }
    }

    fn spend(&mut self, ms: u64) -> u64 {
        let ms = ms.min(self.budget_ms);
        self.budget_ms -= ms;
        ms
    }

    fn flash_mut(&mut self) -> &mut RamFlash<FLASH_SIZE> {
        &mut self.server.pump_mut().storage_mut().flash_mut().inner
    }

    fn send_frame(&mut self, header: Header, body: &[u8]) {
        let mut wire = vec![0u8; thecal_protocol::frame::MAX_WIRE];
        // Bodies above MAX_BODY do not encode; the raw op covers oversize input.
        if let Ok(n) = encode_raw(header, body, &mut wire) {
            wire.truncate(n);
            self.receive(&wire);
        }
    }

    /// Ticks until `ms` from now: at every wake like a platform (`every` = 0) or every
    /// `every` ms; the last tick lands on the end even when the tick budget runs out.
    fn advance_stepping(&mut self, ms: u64, every: u64) {
        let end = self.now.plus_ms(ms);
        while self.now < end {
            let next = if every == 0 {
                self.server.next_wake()
            } else {
                self.now.plus_ms(every)
            };
            let t = if self.budget_ticks <= 1 {
                end
            } else {
                next.min(end)
            };
            self.tick_to(t.max(self.now.plus_ms(1)));
        }
    }

    /// One tick at `t`.
    fn tick_to(&mut self, t: Timestamp) {
        self.budget_ticks = self.budget_ticks.saturating_sub(1);
        let before = self.check_before();
        no_alloc(|| self.server.tick(t));
        self.now = t;
        self.after(before, &Sent::default(), &[]);
    }

    /// Feeds `bytes` at the current time (after bringing the pump up to it).
    fn receive(&mut self, bytes: &[u8]) {
        let before = self.check_before();
        let power = self.power.clone();
        let mut sent = Sent::default();
        let mut out_decoder: Box<FrameDecoder> = Box::default();
        let now = self.now;
        let server = &mut self.server;
        no_alloc(|| {
            server.receive(now, bytes, &mut |frame| {
                if !power.is_dead() {
                    check_answer(&mut out_decoder, frame, &mut sent);
                }
            })
        });
        let requested = refill_volumes(&mut self.mirror, bytes);
        // A server that cannot pay for another unauthenticated frame goes quiet: it drops
        // the rest of the input undecoded and resets its decoder (a frame split across
        // two receives is lost). The mirror follows, so it never misses a request the
        // server decodes (it may see more: its refill volumes only excuse a rise).
        if self.server.budget_nah() < self.server.pump().frame_nah() {
            self.mirror.reset();
        }
        self.after(before, &sent, &requested);
    }

    fn check_before(&mut self) -> u32 {
        self.old_before = self.server.pump().old_solution();
        self.server.pump().reservoir().0
    }

    /// The checks after every operation; reboots a device that died.
    fn after(&mut self, reservoir_before: u32, sent: &Sent, refills: &[u32]) {
        let died = self.power.is_dead();
        self.record_strokes();
        if died {
            self.reboot();
        }
        let pump = self.server.pump();
        let reservoir = pump.reservoir().0;
        if reservoir > reservoir_before {
            let answered = sent.refilled.is_some_and(|v| v >= reservoir);
            let requested = died && refills.iter().any(|&v| v >= reservoir);
            assert!(
                answered || requested,
                "reservoir rose from {reservoir_before} to {reservoir} nL without a refill \
                 (answers {sent:?}, refill requests {refills:?}, died {died})"
            );
        }
        self.check_drug();
        self.check_pump_window();
    }

    /// Moves this life's new strokes into the ledger and checks the limit.
    fn record_strokes(&mut self) {
        let pump = self.server.pump();
        let strokes = pump.motor().strokes - self.life_start.1;
        self.life_start.1 = pump.motor().strokes;
        if !self.power.is_dead() {
            let delivered = pump.delivered_total() - self.life_start.0;
            assert_eq!(
                delivered,
                pump.motor().strokes * u64::from(STROKE_NL),
                "delivered_total moved by other than the motor's strokes"
            );
        }
        let old_total = pump.old_solution_delivered();
        let old_nl = old_total - self.old_seen;
        self.old_seen = old_total;
        if strokes == 0 {
            assert_eq!(old_nl, 0, "old solution delivered without a stroke");
            return;
        }
        self.check_drug();
        let p = &self.server.pump().record().prescription;
        let c = u128::from(p.concentration().0);
        let limit = u128::from(p.daily_limit().0) * u128::from(NL_PER_ML);
        let (drug, volume) = (p.drug(), u64::from(STROKE_NL) * strokes);
        assert!(old_nl <= volume, "more old solution than strokes");
        // Bridge strokes of the old solution count as it (PROTOCOL.md 5.7).
        let old_mass = match self.old_before {
            Some(old) if old.drug == drug => u128::from(old_nl) * u128::from(old.concentration.0),
            Some(_) => {
                self.ledger.uncounted_nl += old_nl;
                assert!(
                    self.ledger.uncounted_nl <= u64::from(BRIDGE_OLD_MAX.0),
                    "{} nL of another drug delivered uncounted since the drug change",
                    self.ledger.uncounted_nl
                );
                0
            }
            None => {
                assert_eq!(old_nl, 0, "old solution delivered with none kept");
                0
            }
        };
        let mass = u128::from(volume - old_nl) * c + old_mass;
        self.ledger.push(self.now, mass);
        let window = self.ledger.window(self.now);
        assert!(
            window <= limit,
            "{} ng delivered in the 24 h ending at device time {} ms, limit {} ng/day",
            window / u128::from(NL_PER_ML),
            self.now.0,
            limit / u128::from(NL_PER_ML),
        );
    }

    /// A new drug starts a new ledger.
    fn check_drug(&mut self) {
        let drug = self.server.pump().record().prescription.drug();
        if self.ledger.drug != Some(drug) {
            self.ledger = Ledger {
                drug: Some(drug),
                ..Ledger::default()
            };
        }
    }

    /// The pump's own window never counts less drug than was delivered — or, when more
    /// was delivered than the limit now in force allows (a same-drug refill to a lower
    /// limit or a much weaker solution), at least that limit, which stops delivery.
    fn check_pump_window(&mut self) {
        let now = self.now;
        let c = u128::from(self.server.pump().record().prescription.concentration().0);
        let limit = u128::from(self.server.pump().limit_nl()) * c;
        let counted = u128::from(self.server.pump_mut().window_total(now)) * c;
        let delivered = self.ledger.window(now);
        assert!(
            counted >= delivered.min(limit),
            "the pump's rolling window counts {} ng, the motor delivered {} ng",
            counted / u128::from(NL_PER_ML),
            delivered / u128::from(NL_PER_ML),
        );
    }

    /// Power back on: the pump boots from what the flash holds.
    fn reboot(&mut self) {
        let store = self.server.pump_mut().storage_mut().clone();
        let mut flash = store.into_inner();
        flash.inner.reboot();
        let power = Power::default();
        flash.power = power.clone();
        self.power = power;
        self.server = boot(flash, &self.power, self.now, ResetCause::PowerOn);
        self.mirror.reset();
        self.start_life();
    }

    fn start_life(&mut self) {
        let pump = self.server.pump();
        self.life_start = (pump.delivered_total(), pump.motor().strokes);
        self.old_seen = pump.old_solution_delivered();
    }
}

fn boot(flash: FuzzFlash, power: &Power, now: Timestamp, cause: ResetCause) -> Box<FuzzServer> {
    let store = FlashStore::new(flash).expect("the store fits the flash");
    let prescription = demo::demo_prescription().expect("the demo prescription is valid");
    let motor = FuzzMotor {
        strokes: 0,
        power: power.clone(),
    };
    let pump = Pump::boot(
        demo::demo_info(1),
        demo::demo_factory(WALL_AT_ZERO, prescription),
        store,
        motor,
        now,
        cause,
    );
    let server = Box::new(Server::new(pump));
    // Plain requests are served as a clinician's: a fuzzer cannot forge sealed frames,
    // and this target is about the pump core (the `session` target attacks sessions).
    #[cfg(fuzzing)]
    let server = {
        let mut server = server;
        server.serve_plain_requests();
        server
    };
    server
}

/// Every frame the server sends is a response that decodes.
fn check_answer(decoder: &mut FrameDecoder, bytes: &[u8], sent: &mut Sent) {
    let mut input = bytes;
    let mut frames = 0;
    loop {
        match decoder.feed(input) {
            Feed::Consumed => break,
            Feed::Error { error, .. } => panic!("the server sent a bad frame: {error}"),
            Feed::Frame { frame, remaining } => {
                frames += 1;
                assert_eq!(frame.header.kind, FrameKind::Response);
                let response: Response = decode_body(frame.body)
                    .unwrap_or_else(|e| panic!("the server sent an undecodable answer: {e}"));
                if let Response::Refilled { reservoir, .. } = response {
                    let v = reservoir.volume.0;
                    sent.refilled = Some(sent.refilled.map_or(v, |w: u32| w.max(v)));
                }
                input = remaining;
            }
        }
    }
    assert_eq!(frames, 1, "one send, one frame");
}

/// Volumes of the `Refill` requests in `bytes`, through a mirror of the server's decoder.
fn refill_volumes(decoder: &mut FrameDecoder, bytes: &[u8]) -> Vec<u32> {
    let mut input = bytes;
    let mut out = Vec::new();
    loop {
        match decoder.feed(input) {
            Feed::Consumed => return out,
            Feed::Error { remaining, .. } => input = remaining,
            Feed::Frame { frame, remaining } => {
                if let Ok(Request::Refill { volume, .. }) = decode_body(frame.body) {
                    out.push(volume.0);
                }
                input = remaining;
            }
        }
    }
}

thread_local! {
    static GUARD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with allocation forbidden (see [`CountingAlloc`]).
pub fn no_alloc<R>(f: impl FnOnce() -> R) -> R {
    GUARD.with(|g| g.set(true));
    let r = f();
    GUARD.with(|g| g.set(false));
    r
}

/// The system allocator, failing loudly if the device path allocates: the pump core is
/// `no_std` without `alloc`, and this keeps it so.
pub struct CountingAlloc;

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if GUARD.try_with(Cell::get).unwrap_or(false) {
            GUARD.with(|g| g.set(false));
            panic!("the device path allocated {} bytes", layout.size());
        }
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}
