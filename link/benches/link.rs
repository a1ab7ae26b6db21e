//! The link benchmark: how close thecal gets to the serial line's limit.
//!
//! `cargo bench -p thecal-link --bench link` (results in docs/BENCHMARKS.md, "Link").
//! `-- --test` (what CI runs) does a tiny smoke run and exits 0; nothing here asserts a
//! wall-clock time.
//!
//! Everything runs in this one process, on one tokio runtime:
//!
//! * **the pump**: the simulator's pump core (`thecal-sim`'s boot: demo device,
//!   demo prescription, RAM flash, counting motor, provisioned), served by the device's
//!   own [`Server`] (frames, CRC, sessions, reply cache) on a real-time clock;
//! * **the line**: a pipe paced by the link emulator's sans-IO core
//!   ([`thecal_link::impair::Impairments`] at 115 200 baud 8N1 = 11 520 bytes/s each
//!   way, one byte after the other, handed over in pieces of up to 1 ms, no loss); its
//!   deliveries are made here to within microseconds (the last stretch waited by
//!   yielding), not by the `thecal-link` bridge, whose tokio timers round every
//!   delivery up to the next millisecond;
//! * **the programmer**: the host [`Client`] with a clinician session.
//!
//! The **bare baseline** runs over the same paced line in the same run: bare postcard +
//! COBS frames (no header, no CRC, no session), stop-and-wait, served by a loop around
//! [`Pump::handle`] written below.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thecal_device::link::server::Server;
use thecal_device::pump::demo;
use thecal_device::pump::Pump;
use thecal_device::sim::SimStore;
use thecal_device::therapy::motor::CountingMotor;
use thecal_host::eventlog::{read_log, read_log_pipelined, LogRange, WINDOW};
use thecal_host::{Client, ClientConfig, RoleKey};
use thecal_link::impair::{Delivery, Impairment, Impairments};
use thecal_protocol::frame::{encode_raw, Flags, FrameKind, Header, MAX_WIRE};
use thecal_protocol::message::{LogEntry, ResetCause, Role, MAX_LOG_PAGE};
use thecal_protocol::session::{
    role_key, Ephemeral, ProvisionKeys, ProvisionTranscript, Sealer, Secret, FIRST_EPOCH,
};
use thecal_protocol::time::Timestamp;
use thecal_protocol::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// Line rate, bit/s (8N1: ten bit times per byte).
const BAUD: u64 = 115_200;
/// Bytes per second on the line.
const LINE_RATE: f64 = BAUD as f64 / 10.0;
/// Nanoseconds one byte takes on the line.
const BYTE_NS: u64 = 10 * 1_000_000_000 / BAUD;
/// The bench pump's static X25519 secret, and the factory's ephemeral secret it is
/// provisioned with by key agreement (never a real pump's).
const IDENTITY: [u8; 32] = [0x42; 32];
const FACTORY: [u8; 32] = [0x43; 32];

type SimPump = Pump<SimStore, CountingMotor>;

/// Entries per `ReadLog` page: the protocol's most, as `eventlog` asks for.
const PAGE: u8 = MAX_LOG_PAGE as u8;

/// Sizes of one run.
#[derive(Clone, Copy)]
struct Plan {
    /// Therapy stops and resumes logged before the run (the ring keeps ≥ 544 entries).
    fill: u32,
    /// Status round trips measured.
    rtts: usize,
    /// Prescription write + read-back cycles measured.
    writes: usize,
    /// Windows of the pipelined log read.
    windows: &'static [usize],
}

const FULL: Plan = Plan {
    fill: 1_500,
    rtts: 50,
    writes: 5,
    windows: &[1, 2, WINDOW, 8],
};
const SMOKE: Plan = Plan {
    fill: 40,
    rtts: 2,
    writes: 1,
    windows: &[WINDOW],
};

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let plan = if smoke { SMOKE } else { FULL };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(run(plan));
    if smoke {
        println!("link bench: smoke run done (no figures: run without --test)");
    }
}

/// The device's real-time clock (Unix ms, as the simulator at speed 1).
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    wall: u64,
}

impl Clock {
    fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            start: Instant::now(),
            wall,
        }
    }
    fn now(&self) -> Timestamp {
        Timestamp(self.wall + self.start.elapsed().as_millis() as u64)
    }
}

/// Bytes the device received and sent.
#[derive(Default)]
struct Wire {
    rx: AtomicU64,
    tx: AtomicU64,
}

impl Wire {
    fn get(&self) -> (u64, u64) {
        (
            self.rx.load(Ordering::SeqCst),
            self.tx.load(Ordering::SeqCst),
        )
    }
}

/// The simulator's pump, booted and provisioned, with `fill` therapy stops and resumes
/// logged.
fn boot(clock: Clock, fill: u32) -> SimPump {
    let prescription = demo::demo_prescription().expect("the demo prescription is valid");
    let store = SimStore::open(None, false).expect("a RAM store");
    // The entries are spread over the days before now, 1 s to 16.7 min apart (as a
    // real log's are, not all in the same millisecond, which packed pages would carry
    // in a byte each).
    let gap = |n: u32| 1_000 * (1 + u64::from(n.wrapping_mul(7_919) % 1_000));
    let span: u64 = (0..fill).map(gap).sum();
    let mut at = Timestamp(clock.now().0 - span);
    let mut pump = Pump::boot(
        demo::demo_info(7),
        demo::demo_factory(Timestamp(0), prescription),
        store,
        CountingMotor::default(),
        at,
        ResetCause::PowerOn,
    );
    assert!(pump.create_identity(&Secret::new(IDENTITY)), "identity");
    let factory = Ephemeral::from_bytes(FACTORY).public();
    let answer = pump.provision(at, &factory, false);
    assert!(
        matches!(answer, Response::Provisioned { .. }),
        "provisioned: {answer:?}"
    );
    for n in 0..fill {
        // Therapy stopped and resumed in turn: each is an entry of its own (refusals
        // would be aggregated into one entry and rate-limited).
        let request = if n % 2 == 0 {
            Request::StopTherapy
        } else {
            Request::ResumeTherapy
        };
        at = Timestamp(at.0 + gap(n));
        let _ = pump.handle(at, &request);
    }
    pump
}

/// The bench pump's device secret: what the factory key agreed with its static key.
fn device_secret(serial: &str) -> Secret {
    let pump_public = Ephemeral::from_bytes(IDENTITY).public();
    let factory = Ephemeral::from_bytes(FACTORY);
    let ephemeral = factory.public();
    let dh = factory.agree(&pump_public).expect("not a low-order key");
    let transcript = ProvisionTranscript {
        serial,
        pump_public: &pump_public,
        ephemeral: &ephemeral,
    };
    ProvisionKeys::derive(&dh, &transcript).device_secret
}

/// A pipe whose two directions are each paced at the line rate: (programmer end,
/// device end).
fn paced_line() -> (DuplexStream, DuplexStream) {
    let (programmer, a) = tokio::io::duplex(64 * 1024);
    let (b, device) = tokio::io::duplex(64 * 1024);
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    tokio::spawn(carry(a_read, b_write));
    tokio::spawn(carry(b_read, a_write));
    (programmer, device)
}

/// One direction, paced by the link emulator's own model ([`Impairments`] at 115 200
/// baud, nothing else impaired): each byte takes [`BYTE_NS`] on the line after the one
/// before it, and bytes are handed over in pieces of up to a millisecond, as a UART
/// driver would.
async fn carry(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
    let origin = tokio::time::Instant::now();
    let reader = async move {
        let line = Impairment {
            baud: Some(BAUD as u32),
            ..Impairment::CLEAN
        };
        let mut impairments = Impairments::new(line, 1);
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let now = origin.elapsed().as_nanos() as u64;
            for delivery in impairments.apply(now, &buf[..n]) {
                if tx.send(delivery).is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        while let Some(delivery) = rx.recv().await {
            let at = origin + Duration::from_nanos(delivery.at);
            // tokio's timers tick in whole milliseconds, which alone would add up to a
            // millisecond per direction to every exchange (the `thecal-link` bridge
            // sleeps so): sleep to just short of `at`, then yield (other tasks run)
            // until it is due, to within microseconds.
            tokio::time::sleep_until(at - Duration::from_micros(1_500)).await;
            while tokio::time::Instant::now() < at {
                tokio::task::yield_now().await;
            }
            if to.write_all(&delivery.bytes).await.is_err() || to.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

/// Serves the thecal protocol (the device's own server) on `io`.
async fn serve_thecal(mut io: DuplexStream, pump: SimPump, clock: Clock, wire: Arc<Wire>) {
    let mut server = Server::new(pump);
    let mut buf = [0u8; 512];
    let mut out = Vec::new();
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            return;
        }
        wire.rx.fetch_add(n as u64, Ordering::SeqCst);
        out.clear();
        server.receive(clock.now(), &buf[..n], &mut |b| out.extend_from_slice(b));
        if !out.is_empty() {
            wire.tx.fetch_add(out.len() as u64, Ordering::SeqCst);
            if io.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

/// The bare baseline's device: postcard + COBS frames, no header, no CRC, no session.
async fn serve_bare(mut io: DuplexStream, mut pump: SimPump, clock: Clock, wire: Arc<Wire>) {
    let mut buf = [0u8; 512];
    let mut frame = Vec::new();
    let mut out = vec![0u8; MAX_WIRE * 2];
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            return;
        }
        wire.rx.fetch_add(n as u64, Ordering::SeqCst);
        for &byte in &buf[..n] {
            frame.push(byte);
            if byte != 0 {
                continue;
            }
            let request = postcard::from_bytes_cobs::<Request>(&mut frame).ok();
            frame.clear();
            let Some(request) = request else { continue };
            let response = pump.handle(clock.now(), &request);
            let Ok(bytes) = postcard::to_slice_cobs(&response, &mut out) else {
                continue;
            };
            wire.tx.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            if io.write_all(bytes).await.is_err() {
                return;
            }
        }
    }
}

/// The bare baseline's programmer: one request, then its answer (stop-and-wait).
struct Bare {
    io: DuplexStream,
    pending: Vec<u8>,
}

impl Bare {
    async fn call(&mut self, request: &Request) -> Response {
        let mut buf = vec![0u8; MAX_WIRE * 2];
        let bytes = postcard::to_slice_cobs(request, &mut buf).expect("encodes");
        self.io.write_all(bytes).await.expect("written");
        let mut chunk = [0u8; 512];
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == 0) {
                let mut frame: Vec<u8> = self.pending.drain(..=end).collect();
                return postcard::from_bytes_cobs(&mut frame).expect("a valid answer");
            }
            let n = self.io.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the baseline pump hung up");
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// The whole log, stop-and-wait, paged exactly as `eventlog::read_log`.
    async fn read_log(&mut self) -> Vec<LogEntry> {
        let page = |r: Response| match r {
            Response::LogPage(p) => p,
            other => panic!("not a page: {other:?}"),
        };
        let probe = page(
            self.call(&Request::ReadLog {
                first: 0,
                max: PAGE,
            })
            .await,
        );
        let end = probe.next;
        let mut entries: Vec<LogEntry> = probe.entries.iter().copied().collect();
        let mut cursor = entries.last().map_or(probe.oldest, |e| e.index + 1);
        while cursor < end {
            let p = page(
                self.call(&Request::ReadLog {
                    first: cursor,
                    max: PAGE,
                })
                .await,
            );
            let fresh: Vec<LogEntry> = p
                .entries
                .iter()
                .filter(|e| e.index >= cursor)
                .copied()
                .collect();
            let Some(last) = fresh.last() else { break };
            cursor = last.index + 1;
            entries.extend(fresh);
        }
        entries
    }
}

/// Useful payload of a log read: the postcard bytes of its records.
fn useful_bytes(entries: &[LogEntry]) -> u64 {
    entries
        .iter()
        .map(|e| {
            let mut buf = [0u8; 64];
            postcard::to_slice(e, &mut buf).expect("encodes").len() as u64
        })
        .sum()
}

/// Wire time of `bytes` at the line rate.
fn wire_time(bytes: u64) -> Duration {
    Duration::from_nanos(bytes * BYTE_NS)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// One log download: (label, entries, useful bytes, time, bytes to the device, bytes
/// from it).
struct Download {
    label: String,
    entries: usize,
    useful: u64,
    time: Duration,
    up: u64,
    down: u64,
}

impl Download {
    fn row(&self) {
        let goodput = self.useful as f64 / self.time.as_secs_f64();
        println!(
            "| {} | {} | {} B | {} | {:.0} B/s | **{:.1} %** | {} B / {} B | {:.1} % |",
            self.label,
            self.entries,
            self.useful,
            ms(self.time),
            goodput,
            100.0 * goodput / LINE_RATE,
            self.up,
            self.down,
            100.0 * self.useful as f64 / self.down as f64,
        );
    }
}

async fn run(plan: Plan) {
    let clock = Clock::new();
    println!(
        "thecal link benchmark: {BAUD} baud 8N1 ({LINE_RATE:.0} B/s each way), log filled \
         with {} therapy stops and resumes, {} status round trips",
        plan.fill, plan.rtts
    );

    // ---- thecal: device server, sessions, pipelining ----
    let pump = boot(clock, plan.fill);
    let serial = pump.serial().to_string();
    let wire = Arc::new(Wire::default());
    let (programmer, device) = paced_line();
    tokio::spawn(serve_thecal(device, pump, clock, Arc::clone(&wire)));
    let key = RoleKey {
        role: Role::Clinician,
        epoch: FIRST_EPOCH,
        key: role_key(
            &device_secret(&serial),
            Role::Clinician,
            FIRST_EPOCH,
            &serial,
        ),
    };
    let config = ClientConfig {
        timeout: Duration::from_secs(2),
        retries: 2,
    };
    let started = Instant::now();
    let (mut client, _) = Client::connect(programmer, config, key)
        .await
        .expect("a session with the bench pump");
    let connect_time = started.elapsed();
    let (rx, tx) = wire.get();
    let connect_floor = wire_time(rx + tx);

    // Status round trips.
    let (rx0, tx0) = wire.get();
    let mut rtts = Vec::new();
    for _ in 0..plan.rtts {
        let t = Instant::now();
        client.status().await.expect("status");
        rtts.push(t.elapsed());
    }
    let (rx1, tx1) = wire.get();
    let per = |d: u64| d as f64 / plan.rtts as f64;
    let (st_up, st_down) = (per(rx1 - rx0), per(tx1 - tx0));
    let st_floor = wire_time((st_up + st_down).round() as u64);
    let st_min = *rtts.iter().min().expect("measured");
    let st_median = median(&mut rtts);

    // Prescription write + read-back verification.
    let mut writes = Vec::new();
    let (rx0, tx0) = wire.get();
    for _ in 0..plan.writes {
        let record = client.prescription().await.expect("read");
        let t = Instant::now();
        client
            .write_and_verify(record.prescription.draft().clone(), record.revision)
            .await
            .expect("write and verify");
        writes.push(t.elapsed());
    }
    let (rx1, tx1) = wire.get();
    // The read before each write is not part of the timed step: subtract its bytes.
    let record = client.prescription().await.expect("read");
    let (rx2, tx2) = wire.get();
    let read_bytes = (rx2 - rx1) + (tx2 - tx1);
    let write_bytes = ((rx1 - rx0) + (tx1 - tx0)) / plan.writes as u64 - read_bytes;
    let write_floor = wire_time(write_bytes);
    let write_median = median(&mut writes);
    drop(record);

    // Event-log downloads: stop-and-wait (the reference), then pipelined.
    let mut downloads = Vec::new();
    let (rx0, tx0) = wire.get();
    let t = Instant::now();
    let reference = read_log(&mut client, LogRange::default(), |_, _| {})
        .await
        .expect("log");
    let time = t.elapsed();
    let (rx1, tx1) = wire.get();
    println!(
        "thecal pump's log: entries {}..{} stored (the ring has wrapped: {})",
        reference.oldest,
        reference.next,
        reference.oldest > 0
    );
    downloads.push(Download {
        label: "thecal, stop-and-wait (`read_log`)".into(),
        entries: reference.entries.len(),
        useful: useful_bytes(&reference.entries),
        time,
        up: rx1 - rx0,
        down: tx1 - tx0,
    });
    for &w in plan.windows {
        let (rx0, tx0) = wire.get();
        let t = Instant::now();
        let read = read_log_pipelined(&mut client, LogRange::default(), w, |_, _| {})
            .await
            .expect("log");
        let time = t.elapsed();
        let (rx1, tx1) = wire.get();
        assert_eq!(
            read, reference,
            "the pipelined read returns the same entries"
        );
        downloads.push(Download {
            label: format!("thecal, pipelined W = {w}"),
            entries: read.entries.len(),
            useful: useful_bytes(&read.entries),
            time,
            up: rx1 - rx0,
            down: tx1 - tx0,
        });
    }
    let counters = client.counters();
    assert_eq!(counters.retries, 0, "a clean line needs no retry");
    client.close().await.expect("closed");

    // ---- bare baseline: postcard + COBS, stop-and-wait ----
    let pump = boot(clock, plan.fill);
    let bare_wire = Arc::new(Wire::default());
    let (programmer, device) = paced_line();
    tokio::spawn(serve_bare(device, pump, clock, Arc::clone(&bare_wire)));
    let mut bare = Bare {
        io: programmer,
        pending: Vec::new(),
    };
    let (rx0, tx0) = bare_wire.get();
    let mut bare_rtts = Vec::new();
    for _ in 0..plan.rtts {
        let t = Instant::now();
        match bare.call(&Request::Status).await {
            Response::Status(_) => {}
            other => panic!("not a status: {other:?}"),
        }
        bare_rtts.push(t.elapsed());
    }
    let (rx1, tx1) = bare_wire.get();
    let (bare_up, bare_down) = (per(rx1 - rx0), per(tx1 - tx0));
    let bare_floor = wire_time((bare_up + bare_down).round() as u64);
    let bare_min = *bare_rtts.iter().min().expect("measured");
    let bare_median = median(&mut bare_rtts);
    let (rx0, tx0) = bare_wire.get();
    let t = Instant::now();
    let entries = bare.read_log().await;
    let time = t.elapsed();
    let (rx1, tx1) = bare_wire.get();
    downloads.push(Download {
        label: "bare postcard + COBS, stop-and-wait".into(),
        entries: entries.len(),
        useful: useful_bytes(&entries),
        time,
        up: rx1 - rx0,
        down: tx1 - tx0,
    });

    // ---- report ----
    println!();
    println!("## Status round trip (goal: median ≤ 1.15 × wire floor)");
    println!();
    println!("| path | bytes up + down | wire floor | median | min | median ÷ floor |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| thecal (sealed, session open) | {st_up:.0} + {st_down:.0} B | {} | {} | {} | **{:.2}×** |",
        ms(st_floor),
        ms(st_median),
        ms(st_min),
        st_median.as_secs_f64() / st_floor.as_secs_f64()
    );
    println!(
        "| bare postcard + COBS | {bare_up:.0} + {bare_down:.0} B | {} | {} | {} | **{:.2}×** |",
        ms(bare_floor),
        ms(bare_median),
        ms(bare_min),
        bare_median.as_secs_f64() / bare_floor.as_secs_f64()
    );
    println!();
    println!("## Event-log download, whole log (goal: goodput ≥ 90 % of {LINE_RATE:.0} B/s)");
    println!();
    println!(
        "| path | entries | useful bytes | time | goodput | of line rate | bytes up / down | \
         useful ÷ bytes down |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for d in &downloads {
        d.row();
    }
    println!();
    println!("## Other steps");
    println!();
    println!("| step | bytes on the wire | wire floor | median | ÷ floor |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| prescription write + read-back verification ({} runs) | {} B | {} | {} | {:.2}× |",
        plan.writes,
        write_bytes,
        ms(write_floor),
        ms(write_median),
        write_median.as_secs_f64() / write_floor.as_secs_f64()
    );
    println!(
        "| connect: Identify + handshake (one run) | {} B | {} | {} | {:.2}× |",
        rx + tx,
        ms(connect_floor),
        ms(connect_time),
        connect_time.as_secs_f64() / connect_floor.as_secs_f64()
    );
    println!();
    overheads();
}

/// Per-frame overhead: wire bytes beyond the postcard body, for plain and sealed thecal
/// frames and for bare postcard + COBS.
fn overheads() {
    /// (postcard body, bare postcard + COBS frame length) of a message.
    fn sizes<T: serde::Serialize>(message: &T) -> (Vec<u8>, usize) {
        let mut buf = vec![0u8; MAX_WIRE * 2];
        let body = postcard::to_slice(message, &mut buf)
            .expect("encodes")
            .to_vec();
        let bare = postcard::to_slice_cobs(message, &mut buf)
            .expect("encodes")
            .len();
        (body, bare)
    }
    let messages = [
        ("`Request::Status`", sizes(&Request::Status), true),
        (
            "`Response::Status`",
            sizes(&Response::Status(status_sample())),
            false,
        ),
        (
            "`Request::ReadLog`",
            sizes(&Request::ReadLog {
                first: 600,
                max: PAGE,
            }),
            true,
        ),
        (
            "`Response::LogPage` (a full page)",
            sizes(&Response::LogPage(page_sample())),
            false,
        ),
    ];
    println!("## Per-frame overhead (wire bytes beyond the postcard body)");
    println!();
    println!(
        "| message | postcard body | bare COBS | thecal plain | thecal sealed | overhead: bare / \
         plain / sealed |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, (body, bare), request) in messages {
        let header = |flags| Header {
            kind: if request {
                FrameKind::Request
            } else {
                FrameKind::Response
            },
            id: 0x1234,
            flags: Flags(flags),
        };
        // The programmer sends a lone 0x00 before each request.
        let lead = usize::from(request);
        let mut out = vec![0u8; MAX_WIRE];
        let plain = encode_raw(header(0), &body, &mut out).expect("encodes") + lead;
        let mut sealer = Sealer::new(&Secret::new([9; 32]));
        let mut sealed_body = vec![0u8; body.len() + 64];
        let h = header(Flags::SEALED);
        let n = sealer
            .seal(&h.to_bytes(), &body, &mut sealed_body)
            .expect("seals");
        let sealed = encode_raw(h, &sealed_body[..n], &mut out).expect("encodes") + lead;
        println!(
            "| {name} | {} B | {bare} B | {plain} B | {sealed} B | +{} / +{} / +{} B |",
            body.len(),
            bare - body.len(),
            plain - body.len(),
            sealed - body.len()
        );
    }
}

/// A status report as the simulator sends it.
fn status_sample() -> thecal_protocol::message::StatusReport {
    let clock = Clock::new();
    let mut pump = boot(clock, 0);
    match pump.handle(clock.now(), &Request::Status) {
        Response::Status(s) => s,
        other => panic!("not a status: {other:?}"),
    }
}

/// A full page of the simulator's event log.
fn page_sample() -> thecal_protocol::message::LogPage {
    let clock = Clock::new();
    let mut pump = boot(clock, 20);
    match pump.handle(
        clock.now(),
        &Request::ReadLog {
            first: 4,
            max: PAGE,
        },
    ) {
        Response::LogPage(p) => p,
        other => panic!("not a page: {other:?}"),
    }
}
