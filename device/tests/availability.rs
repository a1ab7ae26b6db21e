//! Availability under a hostile link: strangers' handshake floods during a session,
//! interleaved handshakes, the energy and flash cost of a day-long flood, device nonces
//! across boots with store rollbacks, the emergency role, the reply cache's binding to
//! role and key, the security log's aggregation and rate limit, and the quiet link.
//!
//! Figures are printed (run with `--nocapture`): `cargo test -p thecal-device --features
//! std --test availability -- --nocapture`.

mod common;

use std::collections::{HashMap, HashSet};

use common::client::{self, frames, plain_answer, plain_frame, Challenge, Hello, Provisioner};
use common::*;
use thecal_device::link::budget::{PRESENCE_WINDOW_MS, UNAUTH_BURST_NAH};
use thecal_device::link::server::{Server, CACHE_TTL_MS};
use thecal_device::link::session::MIN_PENDING_MS;
use thecal_device::pump::noise::{BURST, HOLD_MS};
use thecal_device::pump::Pump;
use thecal_device::store::flash::{FlashStats, RamFlash};
use thecal_device::store::layout::{LOG_OFFSET, SNAPSHOT_OFFSET};
use thecal_device::store::FlashStore;
use thecal_device::store::Storage;
use thecal_device::therapy::battery::BatteryConfig;
use thecal_device::therapy::motor::CountingMotor;
use thecal_protocol::frame::{encode_raw, Flags, FrameKind, Header};
use thecal_protocol::message::{
    AlarmKind, BolusRequest, Event, LinkAbuse, LinkStats, LogEntry, Refusal, Request, ResetCause,
    Response, Revision, Role, SessionEnd, TherapyState, MAX_LOG_PAGE,
};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

type S = Server<Store, CountingMotor>;

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = self.next() as u8;
        }
        out
    }
}

fn send(server: &mut S, now: Timestamp, bytes: &[u8]) -> Vec<u8> {
    exchange_at(server, now)(bytes)
}

/// A `SessionHello` naming the epoch of the keys a freshly provisioned pump holds.
fn hello(id: u16, role: Role, nonce: [u8; 16]) -> Vec<u8> {
    let epoch = if role == Role::Emergency { 0 } else { 1 };
    Hello::new(role, epoch, nonce).frame(id)
}

fn proof(id: u16, nonce: [u8; 16], proof: [u8; 32]) -> Vec<u8> {
    plain_frame(id, &Request::SessionProof { nonce, proof })
}

fn log_next(server: &mut S) -> u32 {
    let mut page = heapless::Vec::<LogEntry, MAX_LOG_PAGE>::new();
    server
        .pump_mut()
        .storage_mut()
        .read_log(u32::MAX, 0, &mut page)
        .expect("log readable")
        .next
}

fn bolus_count(server: &mut S) -> usize {
    log_events(server)
        .iter()
        .filter(|e| matches!(e, Event::Bolus { .. }))
        .count()
}

fn stopped(server: &S) -> bool {
    matches!(server.pump().therapy_state(), TherapyState::Stopped)
}

fn bolus_20ug_5min() -> Request {
    Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms::from_ug(20),
        duration: Minutes(5),
    })
}

/// One request of every kind (the sealed variants of the plain-frame ones included).
fn every_request() -> Vec<Request> {
    vec![
        Request::Identify,
        Request::Ping { token: 7 },
        Request::Status,
        Request::Battery,
        Request::Reservoir,
        Request::ReadPrescription,
        Request::WritePrescription {
            expected: Revision(1),
            prescription: flexible().into(),
        },
        Request::Refill {
            expected: Revision(1),
            volume: Nanolitres::from_ml(20),
            prescription: None,
        },
        bolus_20ug_5min(),
        Request::PatientBolus,
        Request::StopTherapy,
        Request::ResumeTherapy,
        Request::ReadAlarms,
        Request::AcknowledgeAlarm {
            alarm: AlarmKind::LowReservoir,
        },
        Request::ReadLog { first: 0, max: 8 },
        Request::SetClock {
            now: Timestamp(1_800_000_000_000),
            offset: UtcOffset(60),
        },
        Request::LinkStats,
        Hello::new(Role::Emergency, 0, [1; 16]).request(),
        Request::SessionProof {
            nonce: [1; 16],
            proof: [2; 32],
        },
        Request::SessionClose,
        Request::Provision { ephemeral: [3; 32] },
        Request::RotateKey {
            role: Role::Patient,
            epoch: 2,
            key: [4; 32],
        },
    ]
}

// ---------------------------------------------------------------------------------------
// 1. A stranger's Hello/Proof flood during a clinician session.

#[test]
fn a_strangers_handshake_flood_leaves_the_clinician_session_working() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let t0 = BOOT;
    let mut s = session(&mut server, Role::Clinician, t0);
    assert_eq!(server.session(), Some((Role::Clinician, 1)));
    // The clinician starts a renewal whose proof is "lost": its nonce is pending.
    let renewal = [0xC1; 16];
    assert!(matches!(
        plain_answer(&send(
            &mut server,
            t0,
            &hello(0xF100, Role::Clinician, renewal)
        )),
        Response::SessionChallenge { .. }
    ));
    let mut rng = Rng::new(1);
    let mut answered = 0usize;
    let stats_before = server.stats();
    // No tick runs during the flood: the battery's change is the frames' charge alone.
    let used_before = server.pump().battery_used_nah();
    let mut flood_bytes = 0usize;
    for round in 0..4u64 {
        let at = t0.plus_ms(1_000 + round * 30_000);
        let mut flood = Vec::new();
        for i in 0..500u16 {
            let role = Role::ALL[rng.below(4) as usize];
            flood.extend(hello(i, role, rng.bytes()));
            // Guessed proofs: for random nonces, for the clinician's first (now used)
            // nonce, for the pending renewal, and for the attacker's own hello with the
            // clinician's first nonce.
            flood.extend(proof(i, rng.bytes(), rng.bytes()));
            flood.extend(proof(i, [7; 16], rng.bytes()));
            flood.extend(proof(i, renewal, rng.bytes()));
            if i % 50 == 0 {
                flood.extend(hello(i, Role::Clinician, [7; 16]));
            }
        }
        flood_bytes += flood.len();
        let out = send(&mut server, at, &flood);
        for a in frames(&out) {
            assert!(!a.header.flags.has(Flags::SEALED));
            let r: Response = thecal_protocol::frame::decode_body(&a.body).unwrap();
            assert!(
                matches!(
                    r,
                    Response::SessionChallenge { .. }
                        | Response::Refused(
                            Refusal::AuthenticationFailed
                                | Refusal::SessionRequired
                                | Refusal::Busy
                                | Refusal::PresenceRequired
                        )
                ),
                "{r:?}"
            );
            answered += 1;
        }
        assert_eq!(
            server.session(),
            Some((Role::Clinician, 1)),
            "round {round}"
        );
    }
    let stats = server.stats();
    let sent = 4 * (500 * 4 + 10);
    assert_eq!(stats.frames_in - stats_before.frames_in, sent as u32);
    // The budget answered a few dozen; the rest went unanswered.
    assert!(answered < 100, "{answered} answers to {sent} frames");
    assert!(stats.quiet > stats_before.quiet + 7_000, "{stats:?}");
    let charged = server.pump().battery_used_nah() - used_before;
    let battery = BatteryConfig::default();
    let line_s = flood_bytes as f64 / LINE_BYTES_PER_S as f64;
    eprintln!(
        "flood during an open session: {sent} frames, {flood_bytes} B ({line_s:.1} s at line rate), {answered} answered, {charged} nAh charged = {:.1} h of the pump's own drain; at line rate {:.0} nAh/s = {:.1} h of drain per second",
        charged as f64 / battery.per_hour_nah as f64,
        charged as f64 / line_s,
        charged as f64 / line_s / battery.per_hour_nah as f64,
    );
    // The clinician's session works, with correct answers.
    let at = t0.plus_ms(2 * 60_000);
    let expected = server.pump().record().revision;
    assert_eq!(expected, Revision(1));
    let write = Request::WritePrescription {
        expected,
        prescription: flexible().into(),
    };
    assert_eq!(
        s.request(&mut exchange_at(&mut server, at), 1, &write),
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    assert_eq!(server.pump().record().prescription, flexible());
    assert_eq!(
        s.request(&mut exchange_at(&mut server, at), 2, &Request::StopTherapy),
        Response::TherapyStopped
    );
    assert!(stopped(&server));
    assert_eq!(server.session(), Some((Role::Clinician, 1)));
    let events = log_events(&mut server);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::SessionOpened { .. }))
            .count(),
        1,
        "{events:?}"
    );
    assert!(events.contains(&Event::TherapyStopped {
        by: Role::Clinician
    }));
}

// ---------------------------------------------------------------------------------------
// 2. Interleaved attacker handshakes never fail a correct proof.

#[test]
fn interleaved_attacker_handshakes_never_fail_a_correct_proof() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let key = key_in_force(&server, Role::Clinician);
    let peer = peer(&server);
    let t0 = BOOT;
    let mine = [0xAB; 16];
    let my_hello = Hello::with(&key, mine);
    let answer = plain_answer(&send(&mut server, t0, &my_hello.frame(1)));
    let challenge = Challenge::of(&answer).unwrap_or_else(|| panic!("{answer:?}"));
    // Attackers' hellos take the other slots …
    for (i, role) in [Role::Patient, Role::Clinician, Role::Service]
        .into_iter()
        .enumerate()
    {
        let at = t0.plus_ms(100 * (i as u64 + 1));
        assert!(matches!(
            plain_answer(&send(&mut server, at, &hello(10, role, [i as u8; 16]))),
            Response::SessionChallenge { .. }
        ));
    }
    // … and then every slot is young: busy, the clinician's is not displaced.
    let at = t0.plus_ms(500);
    assert_eq!(
        plain_answer(&send(&mut server, at, &hello(11, Role::Clinician, [9; 16]))),
        Response::Refused(Refusal::Busy)
    );
    // The clinician's nonce for another role: busy; for the same role: the same challenge.
    assert_eq!(
        plain_answer(&send(&mut server, at, &hello(12, Role::Patient, mine))),
        Response::Refused(Refusal::Busy)
    );
    assert_eq!(
        Challenge::of(&plain_answer(&send(&mut server, at, &my_hello.frame(13)))),
        Some(challenge)
    );
    // Garbage proofs for the clinician's challenge fail and spoil nothing.
    let mut rng = Rng::new(2);
    for i in 0..5u16 {
        let at = t0.plus_ms(1_000 + u64::from(i) * 150);
        assert_eq!(
            plain_answer(&send(&mut server, at, &proof(20 + i, mine, rng.bytes()))),
            Response::Refused(Refusal::AuthenticationFailed)
        );
    }
    assert_eq!(server.session(), None);
    // The clinician's proof, within MIN_PENDING_MS of its hello.
    let at = t0.plus_ms(MIN_PENDING_MS - 1);
    let done = my_hello
        .complete(&key.key, &peer, &challenge)
        .expect("a valid ephemeral key");
    assert!(done.device_proof_ok);
    assert_eq!(
        plain_answer(&send(&mut server, at, &plain_frame(30, &done.proof))),
        Response::SessionEstablished
    );
    assert_eq!(server.session(), Some((Role::Clinician, 1)));
    // The session's keys work.
    let mut s = done.session;
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, at), 31, &Request::Status),
        Response::Status(_)
    ));
    // The five failures are one aggregated entry, written when the session opened.
    let events = log_events(&mut server);
    assert!(
        events.contains(&Event::HandshakeFailed {
            role: Role::Clinician,
            count: 5
        }),
        "{events:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Flood energy and flash.

/// 115 200 baud, 8N1: 11 520 bytes a second.
const LINE_BYTES_PER_S: u64 = 11_520;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FloodKind {
    Garbage,
    Identify,
    Hello,
}

struct FloodResult {
    kind: FloodKind,
    frames: u64,
    bytes: u64,
    span_ms: u64,
    sending_ms: u64,
    extra_nah: u64,
    idle_nah: u64,
    extra_log_entries: u32,
    extra_flash: FlashStats,
    extra_snapshots: i64,
    answers: u64,
    stats: LinkStats,
}

fn flood_frame(kind: FloodKind, rng: &mut Rng, id: u16) -> Vec<u8> {
    match kind {
        FloodKind::Garbage => {
            let len = 8 + rng.below(24) as usize;
            let mut f: Vec<u8> = (0..len).map(|_| (rng.below(255) + 1) as u8).collect();
            f.push(0);
            f
        }
        FloodKind::Identify => plain_frame(id, &Request::Identify),
        FloodKind::Hello => hello(id, Role::ALL[rng.below(4) as usize], rng.bytes()),
    }
}

fn snapshot_seq(server: &mut S) -> u32 {
    server
        .pump_mut()
        .storage_mut()
        .load()
        .expect("store readable")
        .snapshot
        .expect("a snapshot")
        .seq
}

/// `frames` frames of `kind` in bursts sent at line rate, the bursts spread evenly over
/// `span_ms`, at a pump with no session open; the same pump booted identically and left
/// idle is the reference.
fn flood(kind: FloodKind, frames: u64, span_ms: u64) -> FloodResult {
    const PER_CHUNK: u64 = 100;
    const CHUNKS_PER_BURST: u64 = 10;
    let mut rng = Rng::new(3 + kind as u64);
    // A few distinct chunks, reused: encoding a million frames would dominate the test.
    let chunks: Vec<Vec<u8>> = (0..16)
        .map(|c| {
            (0..PER_CHUNK)
                .flat_map(|i| flood_frame(kind, &mut rng, (c * PER_CHUNK + i) as u16))
                .collect()
        })
        .collect();
    let mut flooded = server(continuous(100), Nanolitres::from_ml(18));
    let mut idle = server(continuous(100), Nanolitres::from_ml(18));
    let used0 = (
        flooded.pump().battery_used_nah(),
        idle.pump().battery_used_nah(),
    );
    let logs0 = (log_next(&mut flooded), log_next(&mut idle));
    let flash0 = (
        flooded.pump_mut().storage_mut().flash().stats(),
        idle.pump_mut().storage_mut().flash().stats(),
    );
    let seq0 = (snapshot_seq(&mut flooded), snapshot_seq(&mut idle));
    assert_eq!(used0.0, used0.1);
    let bursts = frames.div_ceil(PER_CHUNK * CHUNKS_PER_BURST);
    let (mut sent, mut bytes, mut answers, mut sending_us) = (0u64, 0u64, 0u64, 0u64);
    let mut c = 0usize;
    for b in 0..bursts {
        // Link time in µs: each chunk takes its bytes at line rate.
        let mut us = (BOOT.0 + b * span_ms / bursts) * 1_000;
        for _ in 0..CHUNKS_PER_BURST {
            if sent >= frames {
                break;
            }
            let chunk = &chunks[c % chunks.len()];
            c += 1;
            let now = Timestamp(us / 1_000);
            run_until(flooded.pump_mut(), now);
            run_until(idle.pump_mut(), now);
            flooded.receive_at(now, now, chunk, &mut |out: &[u8]| {
                answers += out.iter().filter(|&&x| x == 0).count() as u64
            });
            let took = chunk.len() as u64 * 1_000_000 / LINE_BYTES_PER_S;
            us += took;
            sending_us += took;
            sent += PER_CHUNK;
            bytes += chunk.len() as u64;
        }
    }
    let end = BOOT.plus_ms(span_ms);
    run_until(flooded.pump_mut(), end);
    run_until(idle.pump_mut(), end);
    let used = flooded.pump().battery_used_nah() - used0.0;
    let idle_used = idle.pump().battery_used_nah() - used0.1;
    let extra_log =
        (log_next(&mut flooded) - logs0.0) as i64 - (log_next(&mut idle) - logs0.1) as i64;
    let fl = flooded
        .pump_mut()
        .storage_mut()
        .flash()
        .stats()
        .since(&flash0.0);
    let il = idle
        .pump_mut()
        .storage_mut()
        .flash()
        .stats()
        .since(&flash0.1);
    let extra_snapshots =
        (snapshot_seq(&mut flooded) - seq0.0) as i64 - (snapshot_seq(&mut idle) - seq0.1) as i64;
    // Same therapy on both.
    assert_eq!(flooded.pump().motor().strokes, idle.pump().motor().strokes);
    FloodResult {
        kind,
        frames: sent,
        bytes,
        span_ms,
        sending_ms: sending_us / 1_000,
        extra_nah: used.saturating_sub(idle_used),
        idle_nah: idle_used,
        extra_log_entries: u32::try_from(extra_log).expect("no fewer entries than idle"),
        extra_flash: FlashStats {
            word_writes: fl.word_writes.saturating_sub(il.word_writes),
            page_erases: fl.page_erases.saturating_sub(il.page_erases),
            reads: 0,
        },
        extra_snapshots,
        answers,
        stats: flooded.stats(),
    }
}

fn report_and_check(r: &FloodResult) {
    let battery = BatteryConfig::default();
    let hours = r.span_ms as f64 / HOUR as f64;
    let days = r.span_ms as f64 / DAY as f64;
    let idle_per_day = r.idle_nah as f64 / days;
    let eos_days_per_day = r.extra_nah as f64 / idle_per_day / days;
    eprintln!(
        "| {:?} | {} | {} B | {:.1} h ({:.0} s sending at line rate) | {} nAh | {:.0} nAh/day | {:.3} | {} log entries ({} word writes, {} erases) | {} | quiet {} | frames_in {} | frames_out {} | answers {} | bad_crc {} malformed {} |",
        r.kind,
        r.frames,
        r.bytes,
        hours,
        r.sending_ms as f64 / 1_000.0,
        r.extra_nah,
        idle_per_day,
        eos_days_per_day,
        r.extra_log_entries,
        r.extra_flash.word_writes,
        r.extra_flash.page_erases,
        r.extra_snapshots,
        r.stats.quiet,
        r.stats.frames_in,
        r.stats.frames_out,
        r.answers,
        r.stats.bad_crc,
        r.stats.malformed,
    );
    // The goal: a day of flooding costs less than a day of the pump's own drain.
    let own_day = 24 * battery.per_hour_nah;
    assert!(
        r.extra_nah as f64 <= days * own_day as f64,
        "{:?}: flood cost {} nAh over {days:.2} days, above {} nAh/day",
        r.kind,
        r.extra_nah,
        own_day
    );
    // It was a flood the pump actually received (the figures would be void otherwise).
    assert!(r.extra_nah >= UNAUTH_BURST_NAH, "{}", r.extra_nah);
    assert!(
        u64::from(r.stats.quiet) >= r.frames * 99 / 100,
        "{:?}",
        r.stats
    );
    // Flash: at most one (aggregated LinkAbuse) log entry per hour, no snapshot.
    assert!(
        f64::from(r.extra_log_entries) <= hours,
        "{:?}: {} log entries in {hours:.1} h",
        r.kind,
        r.extra_log_entries
    );
    assert_eq!(r.extra_snapshots, 0, "{:?}", r.kind);
}

#[test]
fn a_million_frame_flood_costs_less_than_a_day_of_drain_per_day() {
    const FRAMES: u64 = 1_000_000;
    let span = DAY;
    let battery = BatteryConfig::default();
    eprintln!(
        "| flood | frames | bytes | simulated time | extra charge | pump's own drain | EOS days moved per day | flash writes caused | extra snapshots | LinkStats quiet | frames_in | frames_out | answers sent | errors |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut results = Vec::new();
    for kind in [FloodKind::Garbage, FloodKind::Identify, FloodKind::Hello] {
        let r = flood(kind, FRAMES, span);
        report_and_check(&r);
        results.push(r);
    }
    let old = FRAMES * 2 * battery.per_frame_nah;
    let own_day = 24 * battery.per_hour_nah;
    for r in &results {
        let idle_per_day = r.idle_nah as f64 / (r.span_ms as f64 / DAY as f64);
        eprintln!(
            "{:?}: old behaviour (every frame charged and answered, {} × {} nAh) = {} nAh = {:.0} days of EOS (at {:.0} nAh/day); now {} nAh = {:.3} days ({:.0}× less)",
            r.kind,
            FRAMES,
            2 * battery.per_frame_nah,
            old,
            old as f64 / idle_per_day,
            idle_per_day,
            r.extra_nah,
            r.extra_nah as f64 / idle_per_day,
            old as f64 / r.extra_nah.max(1) as f64,
        );
        assert!(r.extra_nah * 100 < old, "{}", r.extra_nah);
        assert!(r.extra_nah <= own_day);
    }
}

// ---------------------------------------------------------------------------------------
// 4. Device nonces never repeat across 1 000 boots with random store rollbacks.

#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The device clock keeps running across resets (a real pump's RTC).
    Monotonic,
    /// The device clock restarts at the same value at every boot ("ms since boot", the
    /// QEMU board).
    Restarting(u64),
    /// The device clock resumes just after the newest stored snapshot's `saved_at` (the
    /// nRF52840-DK, `device/firmware/nrf52840-dk/src/clock.rs`), the board's boot taking
    /// the same few ms every time.
    ResumesAfterSnapshot,
}

fn boot_on(flash: RamFlash<FLASH>, now: Timestamp) -> TestPump {
    Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(100), Nanolitres::from_ml(18)),
        FlashStore::new(flash).unwrap(),
        CountingMotor::default(),
        now,
        ResetCause::PowerOn,
    )
}

/// Boots `boots` times on one flash, each boot running the pump for up to an hour and
/// asking for `PER_BOOT` challenges; at random boots the snapshot region is first
/// restored from an older boot's image (the pump then loads an older snapshot while the
/// log is current). Returns a description of every repeated device nonce and every boot
/// epoch that did not grow.
fn nonces_across_boots(clock: Clock, boots: usize, seed: u64) -> Vec<String> {
    const PER_BOOT: u64 = 3;
    let snap = SNAPSHOT_OFFSET as usize..LOG_OFFSET as usize;
    let mut rng = Rng::new(seed);
    let mut flash = RamFlash::<FLASH>::new();
    // Each boot's snapshot region as that boot left it.
    let mut regions: Vec<Vec<u8>> = Vec::new();
    let mut seen: HashMap<[u8; 16], usize> = HashMap::new();
    let mut epochs: Vec<u64> = Vec::new();
    let mut problems = Vec::new();
    let mut device_ms = BOOT.0;
    let mut rollbacks = 0;
    for boot in 0..boots {
        let mut rolled_to = None;
        if boot > 1 && rng.chance(20) {
            let j = rng.below(regions.len() as u64 - 1) as usize;
            flash.as_bytes_mut()[snap.clone()].copy_from_slice(&regions[j]);
            rollbacks += 1;
            rolled_to = Some(j);
        }
        let start = match clock {
            Clock::Monotonic => Timestamp(device_ms + 1 + rng.below(10_000)),
            Clock::Restarting(at) => Timestamp(at),
            Clock::ResumesAfterSnapshot => {
                let stored = FlashStore::new(&mut flash).unwrap().load().unwrap();
                Timestamp(stored.snapshot.map_or(0, |s| s.saved_at.0 + 1) + 3)
            }
        };
        let mut server = Server::new_at(boot_on(flash, start), start);
        server.stir(&ENTROPY);
        if boot == 0 {
            provision(server.pump_mut(), start);
        }
        assert!(server.pump().is_provisioned());
        let epoch = server.pump().boot_epoch();
        if let Some(&last) = epochs.last() {
            if epoch <= last {
                problems.push(format!(
                    "boot {boot} at device time {}: epoch {epoch} not above the previous {last} (snapshot rolled back to boot {rolled_to:?}'s)",
                    start.0
                ));
            }
        }
        epochs.push(epoch);
        let run = rng.below(HOUR);
        for k in 0..PER_BOOT {
            let at = start.plus_ms(run * k / (PER_BOOT - 1));
            run_until(server.pump_mut(), at);
            let mut host = [0u8; 16];
            host[..8].copy_from_slice(&(boot as u64).to_le_bytes());
            host[8] = k as u8;
            let out = send(&mut server, at, &hello(k as u16, Role::Clinician, host));
            let Some(Challenge { nonce, .. }) = Challenge::of(&plain_answer(&out)) else {
                panic!("boot {boot}: no challenge");
            };
            if let Some(first) = seen.insert(nonce, boot) {
                problems.push(format!(
                    "boot {boot} (epoch {epoch}, snapshot rolled back to boot {rolled_to:?}'s): device nonce {nonce:02x?} already given at boot {first} (epoch {})",
                    epochs[first]
                ));
            }
        }
        device_ms = start.0 + run;
        flash = server.into_pump().into_storage().into_inner();
        regions.push(flash.as_bytes()[snap.clone()].to_vec());
    }
    let distinct: HashSet<u64> = epochs.iter().copied().collect();
    eprintln!(
        "{clock:?}: {boots} boots, {rollbacks} snapshot rollbacks, {} distinct nonces of {}, {} distinct epochs ({}..={}), {} problems",
        seen.len(),
        boots as u64 * PER_BOOT,
        distinct.len(),
        epochs.iter().min().unwrap(),
        epochs.iter().max().unwrap(),
        problems.len()
    );
    assert!(rollbacks > boots / 10, "the rollbacks happened");
    problems
}

fn assert_no_repeat(clock: Clock) {
    let problems = nonces_across_boots(clock, 1_000, 4);
    assert!(
        problems.is_empty(),
        "{clock:?}: {} problems, first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(4)]
    );
}

#[test]
fn nonces_never_repeat_across_boots_with_rollbacks_monotonic_clock() {
    assert_no_repeat(Clock::Monotonic);
}

#[test]
fn nonces_never_repeat_across_boots_with_rollbacks_clock_restarting_at_zero() {
    assert_no_repeat(Clock::Restarting(0));
}

/// The QEMU case with a clock that restarts at a value above the log's index (the
/// tests' BOOT; any "ms since boot" past a few dozen ms on a young log).
#[test]
fn nonces_never_repeat_across_boots_with_rollbacks_clock_restarting_at_the_same_value() {
    assert_no_repeat(Clock::Restarting(BOOT.0));
}

/// The nRF52840-DK's clock, which resumes after the newest snapshot: a rolled-back
/// snapshot rolls the clock back with it.
#[test]
fn nonces_never_repeat_across_boots_with_rollbacks_clock_resuming_after_the_snapshot() {
    assert_no_repeat(Clock::ResumesAfterSnapshot);
}

/// The smallest case of the above: four boots at the same device time; before the
/// fourth, the snapshot region is put back as the first boot left it.
#[test]
fn a_rolled_back_snapshot_with_a_restarting_clock_repeats_no_nonce() {
    let snap = SNAPSHOT_OFFSET as usize..LOG_OFFSET as usize;
    let at = BOOT;
    let mut flash = RamFlash::<FLASH>::new();
    let mut first_region = Vec::new();
    let mut given: Vec<(u64, [u8; 16])> = Vec::new();
    for boot in 0..4 {
        if boot == 3 {
            flash.as_bytes_mut()[snap.clone()].copy_from_slice(&first_region);
        }
        let mut server = Server::new_at(boot_on(flash, at), at);
        server.stir(&ENTROPY);
        if boot == 0 {
            provision(server.pump_mut(), at);
        }
        let epoch = server.pump().boot_epoch();
        let out = send(
            &mut server,
            at,
            &hello(1, Role::Clinician, [boot as u8; 16]),
        );
        let Some(Challenge { nonce, .. }) = Challenge::of(&plain_answer(&out)) else {
            panic!("no challenge")
        };
        for (b, (e, n)) in given.iter().enumerate() {
            assert!(
                epoch > *e && nonce != *n,
                "boot {boot}: epoch {epoch}, nonce {nonce:02x?}; boot {b} had epoch {e}, nonce {n:02x?}"
            );
        }
        given.push((epoch, nonce));
        flash = server.into_pump().into_storage().into_inner();
        if boot == 0 {
            first_region = flash.as_bytes()[snap.clone()].to_vec();
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5. The emergency role.

fn emergency_session(
    server: &mut S,
    now: Timestamp,
    nonce: [u8; 16],
) -> Result<client::Session, client::Failure> {
    let key = client::RoleKey::emergency(SERIAL);
    let peer = peer(server);
    client::handshake(&mut exchange_at(server, now), &key, &peer, nonce)
}

#[test]
fn emergency_access_needs_presence_and_permits_only_the_emergency_requests() {
    // An unprovisioned pump: no device secret at all.
    let mut server = Server::new(boot(continuous(100), Nanolitres::from_ml(18)));
    server.stir(&ENTROPY);
    assert!(!server.pump().is_provisioned());
    let t0 = BOOT;
    assert_eq!(
        plain_answer(&send(&mut server, t0, &hello(1, Role::Emergency, [5; 16]))),
        Response::Refused(Refusal::PresenceRequired)
    );
    assert_eq!(
        plain_answer(&send(&mut server, t0, &hello(2, Role::Clinician, [6; 16]))),
        Response::Refused(Refusal::NotProvisioned)
    );
    assert!(emergency_session(&mut server, t0, [8; 16]).is_err());
    server.apply_presence(t0, t0);
    assert!(server.presence(t0));
    let mut s = emergency_session(&mut server, t0, [9; 16]).expect("emergency handshake");
    assert_eq!(server.session(), Some((Role::Emergency, 1)));
    let allowed = [
        Request::Identify,
        Request::Status,
        Request::ReadAlarms,
        Request::StopTherapy,
        Request::SessionClose,
    ];
    let refused: Vec<Request> = every_request()
        .into_iter()
        .filter(|r| !allowed.contains(r))
        .collect();
    assert_eq!(refused.len(), 17);
    let mut id = 100u16;
    for r in &refused {
        // Twice in a row: one aggregated entry per kind.
        for _ in 0..2 {
            id += 1;
            assert_eq!(
                s.request(&mut exchange_at(&mut server, t0), id, r),
                Response::Refused(Refusal::NotPermitted),
                "{r:?}"
            );
        }
    }
    assert!(!stopped(&server));
    assert!(!server.pump().is_provisioned(), "no Provision");
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, t0), 200, &Request::Identify),
        Response::Identity(_)
    ));
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, t0), 201, &Request::Status),
        Response::Status(_)
    ));
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, t0), 202, &Request::ReadAlarms),
        Response::Alarms(_)
    ));
    assert_eq!(
        s.request(
            &mut exchange_at(&mut server, t0),
            203,
            &Request::StopTherapy
        ),
        Response::TherapyStopped
    );
    assert!(stopped(&server));
    assert_eq!(
        s.request(
            &mut exchange_at(&mut server, t0),
            204,
            &Request::SessionClose
        ),
        Response::SessionClosed
    );
    assert_eq!(server.session(), None);
    let events = log_events(&mut server);
    for e in [
        Event::PresenceApplied,
        Event::SessionOpened {
            role: Role::Emergency,
            session: 1,
        },
        Event::TherapyStopped {
            by: Role::Emergency,
        },
        Event::SessionEnded {
            role: Role::Emergency,
            session: 1,
            reason: SessionEnd::Closed,
        },
    ] {
        assert!(events.contains(&e), "{e:?} not in {events:#?}");
    }
    // The refusals: aggregated per kind (count 2), in order, as far as the rate limit
    // lets them be written (BURST entries at once; the rest waits as a Suppressed total).
    let written: Vec<(u8, u16)> = events
        .iter()
        .filter_map(|e| match *e {
            Event::Refused {
                by: Role::Emergency,
                request,
                reason,
                count,
            } => {
                assert_eq!(reason, Refusal::NotPermitted.code());
                Some((request, count))
            }
            _ => None,
        })
        .collect();
    let expected: Vec<(u8, u16)> = refused
        .iter()
        .take(usize::from(BURST))
        .map(|r| (r.tag(), 2))
        .collect();
    assert_eq!(written, expected, "{events:#?}");

    // A second emergency session (the first was closed), active until a new window ends:
    // it ends with it.
    let t1 = t0.plus_ms(60_000);
    server.apply_presence(t1, t1);
    let t0 = t1;
    let mut s = emergency_session(&mut server, t1, [10; 16]).expect("second emergency session");
    // While it is open, nobody else's emergency handshake takes it over.
    assert!(emergency_session(&mut server, t1, [12; 16]).is_err());
    assert_eq!(server.session(), Some((Role::Emergency, 2)));
    assert_eq!(server.session(), Some((Role::Emergency, 2)));
    let t2 = t0.plus_ms(PRESENCE_WINDOW_MS - 60_000);
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, t2), 300, &Request::Status),
        Response::Status(_)
    ));
    let end = t0.plus_ms(PRESENCE_WINDOW_MS);
    server.poll(end, end);
    assert_eq!(server.session(), None, "the presence window ended");
    assert!(log_events(&mut server).contains(&Event::SessionEnded {
        role: Role::Emergency,
        session: 2,
        reason: SessionEnd::PresenceEnded,
    }));
    assert!(!server.presence(end));
    // Its frames are refused in the clear; a new emergency hello needs presence again.
    let out = send(&mut server, end, &s.frame(301, false, &Request::Status));
    assert_eq!(
        plain_answer(&out),
        Response::Refused(Refusal::SessionRequired)
    );
    assert_eq!(
        plain_answer(&send(
            &mut server,
            end,
            &hello(3, Role::Emergency, [11; 16])
        )),
        Response::Refused(Refusal::PresenceRequired)
    );
}

#[test]
fn emergency_access_works_the_same_on_a_provisioned_pump() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let t0 = BOOT;
    assert_eq!(
        plain_answer(&send(&mut server, t0, &hello(1, Role::Emergency, [5; 16]))),
        Response::Refused(Refusal::PresenceRequired)
    );
    server.apply_presence(t0, t0);
    // The public emergency key, whatever the device secret.
    let mut s = emergency_session(&mut server, t0, [9; 16]).expect("emergency handshake");
    assert_eq!(
        s.request(
            &mut exchange_at(&mut server, t0),
            1,
            &Request::ResumeTherapy
        ),
        Response::Refused(Refusal::NotPermitted)
    );
    assert_eq!(
        s.request(&mut exchange_at(&mut server, t0), 2, &Request::StopTherapy),
        Response::TherapyStopped
    );
    assert!(stopped(&server));
    // The emergency session ends by its own idle timeout too, or by the next receive
    // after the window: here, the next receive.
    let end = t0.plus_ms(PRESENCE_WINDOW_MS);
    let out = send(&mut server, end, &s.frame(3, false, &Request::Status));
    assert_eq!(
        plain_answer(&out),
        Response::Refused(Refusal::SessionRequired)
    );
    assert_eq!(server.session(), None);
}

// ---------------------------------------------------------------------------------------
// 6. The reply cache is bound to role and key.

#[test]
fn the_reply_cache_answers_only_the_same_role_key_and_body() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let t0 = BOOT;
    let bolus = bolus_20ug_5min();
    let mut s1 = session(&mut server, Role::Clinician, t0);
    let first = s1.request(&mut exchange_at(&mut server, t0), 10, &bolus);
    let Response::BolusStarted(r1) = first.clone() else {
        panic!("{first:?}")
    };
    let k1 = s1.keys[&10];
    assert_eq!(bolus_count(&mut server), 1);
    // The same plaintext again (a retry): the cached answer, delivered once.
    let at = t0.plus_ms(1_000);
    let retry = s1.frame(10, true, &bolus);
    assert_eq!(s1.answer(&send(&mut server, at, &retry)), first);
    assert_eq!(server.stats().replays, 1);
    assert_eq!(bolus_count(&mut server), 1);
    // A later session of the same role, a NEW key (same id, RETRY flag): executed anew.
    let at = t0.plus_ms(2 * 60_000);
    let mut s2 = session(&mut server, Role::Clinician, at);
    let fresh = s2.frame_with_key(10, true, Some(client::fresh_key()), &bolus);
    assert_eq!(
        s2.answer(&send(&mut server, at, &fresh)),
        Response::Refused(Refusal::BolusInProgress)
    );
    // The operation's own key after the session renewal: still the cached answer.
    let renewed = s2.frame_with_key(11, true, Some(k1), &bolus);
    assert_eq!(s2.answer(&send(&mut server, at, &renewed)), first);
    assert_eq!(server.stats().replays, 2);
    assert_eq!(bolus_count(&mut server), 1);
    // Once the first bolus is over, a new key starts a new one.
    let at = t0.plus_ms(6 * 60_000);
    let again = s2.frame_with_key(10, true, Some(client::fresh_key()), &bolus);
    let Response::BolusStarted(r2) = s2.answer(&send(&mut server, at, &again)) else {
        panic!("no second bolus")
    };
    assert!(r2.ends_at > r1.ends_at, "{r2:?} {r1:?}");
    assert_eq!(bolus_count(&mut server), 2);
    // A therapy change without a key: refused Malformed, nothing executed.
    let at = t0.plus_ms(6 * 60_000 + 1_000);
    let keyless = s2.frame_with_key(12, false, None, &Request::StopTherapy);
    assert_eq!(
        s2.answer(&send(&mut server, at, &keyless)),
        Response::Refused(Refusal::Malformed)
    );
    assert!(!stopped(&server));
    // After CACHE_TTL_MS the first answer is forgotten: the same key and body are
    // executed (the second bolus is still running).
    let at = t0.plus_ms(CACHE_TTL_MS);
    let late = s2.frame_with_key(13, true, Some(k1), &bolus);
    assert_eq!(
        s2.answer(&send(&mut server, at, &late)),
        Response::Refused(Refusal::BolusInProgress)
    );
    assert_eq!(server.stats().replays, 2);
    assert_eq!(bolus_count(&mut server), 2);
    // A patient session replaying a clinician's key: not the clinician's answer.
    let at = t0.plus_ms(12 * 60_000);
    let mut s3 = session(&mut server, Role::Clinician, at);
    let pb = s3.request(
        &mut exchange_at(&mut server, at),
        20,
        &Request::PatientBolus,
    );
    assert!(matches!(pb, Response::PatientBolusStarted(_)), "{pb:?}");
    let kp = s3.keys[&20];
    let at = at.plus_ms(1_000);
    let mut patient = session(&mut server, Role::Patient, at);
    let replay = patient.frame_with_key(20, true, Some(kp), &Request::PatientBolus);
    let got = patient.answer(&send(&mut server, at, &replay));
    assert_ne!(got, pb);
    assert_eq!(got, Response::Refused(Refusal::BolusInProgress));
    let replay = patient.frame_with_key(21, true, Some(k1), &bolus);
    assert_eq!(
        patient.answer(&send(&mut server, at, &replay)),
        Response::Refused(Refusal::NotPermitted)
    );
    assert_eq!(server.stats().replays, 2);
    assert_eq!(bolus_count(&mut server), 3);
}

// ---------------------------------------------------------------------------------------
// 7. Security log completeness and rate limit.

/// A frame flagged SEALED whose body is not sealed under the session's key.
fn forged_frame(id: u16, rng: &mut Rng) -> Vec<u8> {
    let header = Header {
        kind: FrameKind::Request,
        id,
        flags: Flags(Flags::SEALED),
    };
    let body: [u8; 40] = rng.bytes();
    let mut wire = [0u8; 128];
    let n = encode_raw(header, &body, &mut wire).unwrap();
    wire[..n].to_vec()
}

/// A pump whose log holds therapy history: a clinician wrote revision 2 at `BOOT`.
fn server_with_history() -> S {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let mut c = session(&mut server, Role::Clinician, BOOT);
    let write = Request::WritePrescription {
        expected: Revision(1),
        prescription: flexible().into(),
    };
    assert_eq!(
        c.request(&mut exchange_at(&mut server, BOOT), 1, &write),
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    server
}

#[test]
fn a_thousand_refusals_are_one_entry_and_the_history_stays() {
    let mut server = server_with_history();
    let t0 = BOOT;
    let mut p = session(&mut server, Role::Patient, t0);
    assert!(matches!(
        p.request(&mut exchange_at(&mut server, t0), 2, &Request::PatientBolus),
        Response::PatientBolusStarted(_)
    ));
    // After the bolus (3 min), inside the lockout (60 min): a thousand presses.
    let at = t0.plus_ms(4 * 60_000);
    // The bolus has ended (and its end is logged) before the presses.
    server.pump_mut().tick(at);
    let next_before = log_next(&mut server);
    for i in 0..1_000u16 {
        let answer = p.request(
            &mut exchange_at(&mut server, at),
            100 + i,
            &Request::PatientBolus,
        );
        assert!(
            matches!(answer, Response::Refused(Refusal::PatientLockout { .. })),
            "{answer:?}"
        );
    }
    let lockout = Refusal::PatientLockout { until: MONDAY }.code();
    assert_eq!(
        server.pump().held_log_entry(),
        Some(&Event::Refused {
            by: Role::Patient,
            request: Request::PatientBolus.tag(),
            reason: lockout,
            count: 1_000
        })
    );
    assert_eq!(log_next(&mut server), next_before, "no flash write yet");
    // Forged sealed frames: counted as forged (not malformed), one LinkAbuse entry.
    let mut rng = Rng::new(7);
    let before = server.stats();
    for i in 0..10 {
        assert!(send(&mut server, at, &forged_frame(500 + i, &mut rng)).is_empty());
    }
    let stats = server.stats();
    assert_eq!(stats.forged - before.forged, 10);
    assert_eq!(stats.malformed, before.malformed);
    assert_eq!(
        server.pump().held_log_entry(),
        Some(&Event::LinkAbuse(LinkAbuse {
            unanswered: 0,
            forged: 10
        }))
    );
    // The patient's session still works; closing it writes what is held.
    assert_eq!(
        p.request(
            &mut exchange_at(&mut server, at),
            600,
            &Request::SessionClose
        ),
        Response::SessionClosed
    );
    assert_eq!(server.pump().held_log_entry(), None);
    let events = log_events(&mut server);
    let refused: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Refused { .. }))
        .collect();
    assert_eq!(
        refused,
        [&Event::Refused {
            by: Role::Patient,
            request: 9,
            reason: lockout,
            count: 1_000
        }],
        "{events:#?}"
    );
    assert!(events.contains(&Event::LinkAbuse(LinkAbuse {
        unanswered: 0,
        forged: 10
    })));
    // Three entries for all that: the refusals, the forgeries, the session's end.
    assert_eq!(log_next(&mut server), next_before + 3);
    // The therapy history is all there.
    for e in [
        Event::Provisioned { epoch: 1 },
        Event::PrescriptionChanged {
            old: Revision(1),
            new: Revision(2),
            by: Role::Clinician,
        },
        Event::SessionEnded {
            role: Role::Clinician,
            session: 1,
            reason: SessionEnd::Replaced,
        },
        Event::SessionOpened {
            role: Role::Patient,
            session: 2,
        },
        Event::SessionEnded {
            role: Role::Patient,
            session: 2,
            reason: SessionEnd::Closed,
        },
    ] {
        assert!(events.contains(&e), "{e:?} not in {events:#?}");
    }
    assert_eq!(bolus_count(&mut server), 1);
}

#[test]
fn alternating_refusals_are_rate_limited_and_nothing_is_lost() {
    let mut server = server_with_history();
    let t0 = BOOT;
    let mut p = session(&mut server, Role::Patient, t0);
    let next_before = log_next(&mut server);
    // Alternating kinds defeat aggregation: the rate limit holds the log.
    let n = 2_000u16;
    for i in 0..n {
        let r = if i % 2 == 0 {
            Request::StopTherapy
        } else {
            Request::ResumeTherapy
        };
        assert_eq!(
            p.request(&mut exchange_at(&mut server, t0), 10 + i, &r),
            Response::Refused(Refusal::NotPermitted)
        );
    }
    let written = log_next(&mut server) - next_before;
    assert!(written <= u32::from(BURST), "{written} entries");
    // An hour later a token is back: everything not written is one Suppressed total.
    let later = t0.plus_ms(HOLD_MS.max(thecal_device::pump::noise::REFILL_MS));
    server.tick(later);
    let events = log_events(&mut server);
    let represented: u32 = events
        .iter()
        .map(|e| match *e {
            Event::Refused {
                by: Role::Patient,
                count,
                ..
            } => u32::from(count),
            Event::Suppressed { count } => count,
            _ => 0,
        })
        .sum();
    assert_eq!(represented, u32::from(n), "{events:#?}");
    assert!(events.iter().any(|e| matches!(e, Event::Suppressed { .. })));
    assert!(events.contains(&Event::PrescriptionChanged {
        old: Revision(1),
        new: Revision(2),
        by: Role::Clinician
    }));
    assert!(!stopped(&server));
}

#[test]
fn provisioning_is_logged() {
    let provisioned = |e: &Event| matches!(e, Event::Provisioned { .. });
    let mut server = Server::new(boot(continuous(100), Nanolitres::from_ml(18)));
    server.stir(&ENTROPY);
    assert!(!log_events(&mut server).iter().any(provisioned));
    let factory = Provisioner::new(FACTORY);
    let answer = plain_answer(&send(
        &mut server,
        BOOT,
        &plain_frame(1, &factory.request()),
    ));
    assert!(
        matches!(answer, Response::Provisioned { epoch: 1, .. }),
        "{answer:?}"
    );
    let events = log_events(&mut server);
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == Event::Provisioned { epoch: 1 })
            .count(),
        1,
        "{events:?}"
    );
    // A second attempt is refused and logs nothing new.
    assert_eq!(
        plain_answer(&send(
            &mut server,
            BOOT,
            &plain_frame(2, &Provisioner::new([0; 32]).request())
        )),
        Response::Refused(Refusal::NotPermitted)
    );
    assert_eq!(
        log_events(&mut server)
            .iter()
            .filter(|e| provisioned(e))
            .count(),
        1
    );
}

// ---------------------------------------------------------------------------------------
// 8. Quiet.

#[test]
fn a_spent_budget_makes_the_link_quiet_until_presence() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let frame_nah = BatteryConfig::default().per_frame_nah;
    let t0 = BOOT;
    let identify = plain_frame(1, &Request::Identify);
    let mut answered = 0;
    let mut unanswered = 0;
    for _ in 0..100 {
        let out = send(&mut server, t0, &identify);
        match frames(&out).len() {
            0 => unanswered += 1,
            1 => {
                assert!(unanswered == 0, "an answer after the link went quiet");
                answered += 1;
            }
            n => panic!("{n} answers"),
        }
    }
    // Each answered Identify costs its frame and its answer.
    assert_eq!(answered as u64, UNAUTH_BURST_NAH / (2 * frame_nah));
    assert_eq!(server.budget_nah(), 0);
    assert_eq!(server.stats().quiet, unanswered);
    // A genuine programmer is not heard either …
    assert!(send(&mut server, t0, &hello(2, Role::Clinician, [1; 16])).is_empty());
    assert_eq!(server.stats().quiet, unanswered + 1);
    // … until the magnet.
    let t1 = t0.plus_ms(1_000);
    server.apply_presence(t1, t1);
    assert!(matches!(
        plain_answer(&send(&mut server, t1, &identify)),
        Response::Identity(_)
    ));
    let mut s = session(&mut server, Role::Clinician, t1);
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, t1), 3, &Request::Status),
        Response::Status(_)
    ));
    assert_eq!(server.stats().quiet, unanswered + 1);
}

/// A handshake at a full budget leaves it full.
#[test]
fn a_genuine_handshake_at_a_fresh_budget_is_refunded() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    assert_eq!(server.budget_nah(), UNAUTH_BURST_NAH);
    let _s = session(&mut server, Role::Clinician, BOOT);
    assert_eq!(server.budget_nah(), UNAUTH_BURST_NAH);
}

#[test]
fn a_genuine_handshake_is_refunded_and_a_strangers_is_not() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let t0 = BOOT;
    // A part-spent budget: Identify, hello and proof (and their answers) cost nothing in
    // the end …
    for i in 0..5 {
        assert!(matches!(
            plain_answer(&send(&mut server, t0, &plain_frame(i, &Request::Identify))),
            Response::Identity(_)
        ));
    }
    let level = server.budget_nah();
    assert_eq!(level, UNAUTH_BURST_NAH - 5 * 1_000);
    assert!(matches!(
        plain_answer(&send(&mut server, t0, &plain_frame(9, &Request::Identify))),
        Response::Identity(_)
    ));
    let _s = session(&mut server, Role::Clinician, t0);
    assert_eq!(server.budget_nah(), level);
    // … while a stranger's failed handshake is paid for.
    assert!(matches!(
        plain_answer(&send(&mut server, t0, &hello(20, Role::Clinician, [3; 16]))),
        Response::SessionChallenge { .. }
    ));
    assert_eq!(
        plain_answer(&send(&mut server, t0, &proof(21, [3; 16], [0; 32]))),
        Response::Refused(Refusal::AuthenticationFailed)
    );
    assert_eq!(server.budget_nah(), level - 4 * 500);
}

// ---------------------------------------------------------------------------------------
// Review findings: levers a key holder or a trickle could still pull.

#[test]
fn a_key_holder_looping_handshakes_neither_raises_the_budget_nor_floods_the_log() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let t0 = BOOT;
    // A part-spent budget, so a refund larger than the cost would show.
    for i in 0..10 {
        plain_answer(&send(&mut server, t0, &plain_frame(i, &Request::Identify)));
    }
    let level = server.budget_nah();
    assert!(level < UNAUTH_BURST_NAH);
    let next = log_next(&mut server);
    let patient = key_in_force(&server, Role::Patient);
    let peer = peer(&server);
    let loops = 2_000u64;
    for i in 0..loops {
        let t = t0.plus_ms(i * 50);
        let nonce = (i as u128).to_le_bytes();
        client::handshake(&mut exchange_at(&mut server, t), &patient, &peer, nonce)
            .expect("the patient's handshake");
    }
    // Exactly what each handshake paid came back: the budget is where it was, but for
    // the one Identify just before the first handshake (refunded with it, once) and
    // what the 100 s of link time refilled (at most 556 nAh).
    let refilled = 100_000 * 20_000 / 3_600_000;
    assert!(
        server.budget_nah() <= level + 1_000 + refilled,
        "{}",
        server.budget_nah()
    );
    // Each handshake opened a session and ended the one before: 4 000 session entries,
    // of which the rate limit writes a burst (48) and one per 10 min.
    let written = log_next(&mut server) - next;
    assert!(
        written <= 48 + 2,
        "{written} entries for {loops} handshakes"
    );
}

#[test]
fn an_emergency_handshake_loop_cannot_take_over_a_clinician_session() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let t0 = BOOT;
    let mut clinician = session(&mut server, Role::Clinician, t0);
    server.apply_presence(t0, t0);
    // Anyone in range holds the emergency key while the magnet is on.
    for i in 0..50u8 {
        assert!(emergency_session(&mut server, t0.plus_ms(u64::from(i) * 100), [i; 16]).is_err());
    }
    assert_eq!(server.session(), Some((Role::Clinician, 1)));
    let t = t0.plus_ms(6_000);
    assert_eq!(
        clinician.request(&mut exchange_at(&mut server, t), 1, &Request::StopTherapy),
        Response::TherapyStopped
    );
    // Emergency handshakes are refunded nothing.
    let level = server.budget_nah();
    server.poll(t, t.plus_ms(PRESENCE_WINDOW_MS));
    assert!(server.budget_nah() <= UNAUTH_BURST_NAH && level <= UNAUTH_BURST_NAH);
}

#[test]
fn a_trickle_of_garbage_never_keeps_a_handshake_out() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let mut rng = Rng::new(77);
    let mut t = BOOT;
    // Drain the budget with a burst of garbage …
    for _ in 0..200 {
        send(
            &mut server,
            t,
            &flood_frame(FloodKind::Garbage, &mut rng, 0),
        );
    }
    // … then one garbage frame every 10 s, for 6 hours; a clinician tries every 15 min.
    let mut opened = 0;
    for step in 0..(6 * 360) {
        t = t.plus_ms(10_000);
        send(
            &mut server,
            t,
            &flood_frame(FloodKind::Garbage, &mut rng, 0),
        );
        if step % 90 == 89 {
            let key = key_in_force(&server, Role::Clinician);
            let peer = peer(&server);
            let nonce = (step as u128).to_le_bytes();
            if client::handshake(&mut exchange_at(&mut server, t), &key, &peer, nonce).is_ok() {
                opened += 1;
            }
            // The clinician closes again.
            server.poll(t, t.plus_ms(thecal_device::link::session::IDLE_TIMEOUT_MS));
        }
    }
    assert_eq!(opened, 24, "every attempt gets through the garbage");
}
