//! The checks of the end-to-end suite. Each one opens the port, talks to the pump and
//! closes the port again, the way a programmer at the bedside would; they run in this
//! order against one pump, so later checks see what earlier ones wrote.

use std::time::{Duration, Instant};

use std::path::Path;

use thecal_host::{schedule, serial, Client, ClientConfig, RoleKey};
use thecal_protocol::frame::{encode, Header};
use thecal_protocol::message::{BatteryState, Event, Refusal, Revision, Role, TherapyState};
use thecal_protocol::units::{NanogramsPerDay, Nanolitres};
use thecal_protocol::{Request, Response};
use tokio::io::AsyncWriteExt;
use tokio_serial::SerialStream;

use crate::common;

/// Client policy for the suite: generous enough for an emulated UART on a busy CI
/// machine, short enough that a dead target fails in seconds.
const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(3_000),
    retries: 2,
};

/// How long a check waits for the port's lock (see [`Target::open`]); a port that is
/// really held by another program fails after this.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// What a check runs against.
pub struct Target<'a> {
    /// `simulator` or `qemu`, for messages.
    pub name: &'static str,
    /// The serial port (a pty).
    pub port: &'a str,
    /// The pump's clinician key (every check but identification runs in a session).
    pub key: RoleKey,
    /// The same key as a key file (mode 0600), for the CLI.
    pub key_file: &'a Path,
    /// Applies the pump's physical-presence signal (the magnet), returning once the pump
    /// has it.
    pub presence: &'a mut dyn FnMut(),
}

impl Target<'_> {
    /// Opens the port, waiting up to [`LOCK_WAIT`] for its lock. Each check closes the
    /// port and the next opens it again, while the other target's test thread spawns CLI
    /// processes: a child spawned while this thread still had the port open holds a copy
    /// of the descriptor, and with it the port's `flock`, until its exec has closed it —
    /// which the kernel finishes only after `spawn` has returned ("Unable to acquire
    /// exclusive lock"; seen in CI about once in 25 runs, even with the fork guard).
    fn open(&self) -> SerialStream {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match serial::open(self.port, serial::DEFAULT_BAUD) {
                Ok(stream) => return stream,
                Err(e) if e.to_string().contains("exclusive lock") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("[{}] open {}: {e}", self.name, self.port),
            }
        }
    }

    async fn connect(&self) -> Client<SerialStream> {
        let (client, _) = Client::connect(self.open(), CONFIG, self.key.clone())
            .await
            .unwrap_or_else(|e| panic!("[{}] connect: {e}", self.name));
        client
    }

    /// Runs `thecal --port <port> --key-file <key file> args…`.
    fn thecal(&self, args: &[&str]) -> common::Run {
        let key_file = self.key_file.to_str().expect("utf-8 path");
        let mut all = vec!["--port", self.port, "--key-file", key_file];
        all.extend_from_slice(args);
        common::thecal(&all)
    }
}

/// Runs every check in order against `target`, naming each on the test's output.
pub async fn run_all(target: &mut Target<'_>) {
    let step = |name: &str| println!("[{}] {name}", target.name);
    step("identify");
    identify(target).await;
    step("status, battery, reservoir");
    status_battery_reservoir(target).await;
    step("read the prescription");
    read_prescription(target).await;
    step("write every example schedule and read it back");
    write_examples(target).await;
    step("a bad schedule sent raw is refused by the pump");
    bad_schedule_refused(target).await;
    step("garbage on the line, then a good request");
    garbage_then_good_request(target).await;
    step("the thecal CLI on --port");
    cli(target).await;
    step("emergency stop: only with the magnet, without a key file");
    emergency_stop(target).await;
}

async fn identify(t: &Target<'_>) {
    let mut c = t.connect().await;
    let id = c.identify().await.unwrap();
    assert_eq!(id.protocol, thecal_protocol::PROTOCOL_VERSION);
    assert_eq!(id.schema, thecal_protocol::SCHEMA_HASH, "[{}]", t.name);
    assert!(!id.model.is_empty() && !id.serial.is_empty(), "{id:?}");
    assert!(
        [Nanolitres::from_ml(20), Nanolitres::from_ml(40)].contains(&id.reservoir_capacity),
        "{id:?}"
    );
}

async fn status_battery_reservoir(t: &Target<'_>) {
    let mut c = t.connect().await;
    let status = c.status().await.unwrap();
    assert_eq!(
        status.therapy,
        TherapyState::Running,
        "[{}] {status:?}",
        t.name
    );
    assert!(!status.critical, "{status:?}");
    assert!(status.basal_dose <= status.daily_limit, "{status:?}");
    let battery = c.battery().await.unwrap();
    assert!(
        battery.percent <= 100 && battery.millivolts > 2_000,
        "{battery:?}"
    );
    assert_eq!(battery.state, BatteryState::Ok, "{battery:?}");
    assert!(battery.days_to_eri < battery.days_to_eos, "{battery:?}");
    let reservoir = c.reservoir().await.unwrap();
    assert!(reservoir.volume <= reservoir.capacity, "{reservoir:?}");
    assert!(reservoir.volume > reservoir.low_threshold, "{reservoir:?}");
    assert_eq!(reservoir.drug, status.drug);
    // Delivery goes on between the two reads; only down, never up.
    assert!(
        reservoir.volume <= status.reservoir,
        "{reservoir:?} {status:?}"
    );
    assert!(reservoir.low_at.is_some(), "{reservoir:?}");
}

async fn read_prescription(t: &Target<'_>) {
    let mut c = t.connect().await;
    let status = c.status().await.unwrap();
    let record = c.prescription().await.unwrap();
    assert_eq!(record.revision, status.revision);
    assert_eq!(record.prescription.draft().drug, status.drug);
    // What the pump holds is a valid schedule file's worth, and round-trips through one.
    let text = schedule::to_toml(&record.prescription);
    let parsed = schedule::parse("in-force.toml", &text).unwrap();
    assert_eq!(parsed, record.prescription, "[{}]\n{text}", t.name);
}

async fn write_examples(t: &Target<'_>) {
    let mut c = t.connect().await;
    for file in common::examples() {
        let what = format!("[{}] {}", t.name, file.display());
        let p = schedule::load(&file).unwrap();
        let before = c.prescription().await.unwrap();
        let same_solution = p.drug() == before.prescription.drug()
            && p.concentration() == before.prescription.concentration();
        let mut revision = before.revision;
        if !same_solution {
            // Another drug or concentration only comes with a refill: a plain write of it
            // is refused and changes nothing; the refill stores it as the next revision.
            let e = c
                .write_prescription(p.draft().clone(), revision)
                .await
                .unwrap_err();
            assert_eq!(
                e.refusal(),
                Some(&Refusal::DrugChangeNeedsRefill),
                "{what}: {e:?}"
            );
            let (record, reservoir) = c
                .refill_and_verify(revision, Nanolitres::from_ml(20), p.draft().clone())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(record.revision, Revision(revision.0 + 1), "{what}");
            assert_eq!(record.prescription, p, "{what}");
            assert_eq!(reservoir.volume, Nanolitres::from_ml(20), "{what}");
            assert_eq!(reservoir.drug, p.drug(), "{what}");
            revision = record.revision;
        }
        // The same solution: a prescription write, verified by reading it back.
        let record = c
            .write_and_verify(p.draft().clone(), revision)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(record.revision, Revision(revision.0 + 1), "{what}");
        assert_eq!(c.prescription().await.unwrap().prescription, p, "{what}");
        let status = c.status().await.unwrap();
        assert_eq!(status.revision, record.revision, "{what}");
        assert_eq!(status.drug, p.drug(), "{what}");
    }
}

async fn bad_schedule_refused(t: &Target<'_>) {
    let mut c = t.connect().await;
    let before = c.prescription().await.unwrap();
    // The prescription in force with its hard daily limit raised above the drug's
    // ceiling: the client refuses to send it, so it goes raw, and the pump must refuse it
    // on its own.
    let mut draft = before.prescription.draft().clone();
    let ceiling = draft.drug.ceiling().max_per_day;
    draft.daily_limit = NanogramsPerDay(ceiling.0 + 1);
    assert!(c
        .write_prescription(draft.clone(), before.revision)
        .await
        .is_err());
    let request = Request::WritePrescription {
        expected: before.revision,
        prescription: draft,
    };
    // A plain frame, outside the session: refused before anything else is looked at.
    let answer = common::raw_request(c.link_mut(), 50_000, &request).await;
    assert_eq!(
        answer,
        Response::Refused(Refusal::SessionRequired),
        "[{}]",
        t.name
    );
    // Inside the session, as it is (the client's checks bypassed).
    let answer = c.send_unchecked(&request).await.unwrap();
    assert!(
        matches!(answer, Response::Refused(Refusal::InvalidPrescription(_))),
        "[{}] {answer:?}",
        t.name
    );
    assert_eq!(
        c.prescription().await.unwrap(),
        before,
        "a refused write changes nothing"
    );
}

async fn garbage_then_good_request(t: &Target<'_>) {
    let mut c = t.connect().await;
    let before = c.link_stats().await.unwrap();
    let garbage = garbage();
    c.link_mut().write_all(&garbage.bytes).await.unwrap();
    // The very next request is answered at the first attempt.
    let status = c.status().await.unwrap();
    assert_eq!(status.therapy, TherapyState::Running);
    assert_eq!(c.counters().retries, 0, "[{}] {:?}", t.name, c.counters());
    let after = c.link_stats().await.unwrap();
    assert!(
        after.resyncs >= before.resyncs + garbage.errors,
        "[{}] {before:?} -> {after:?}",
        t.name
    );
    assert!(after.bad_crc > before.bad_crc, "{before:?} -> {after:?}");
    assert!(after.oversize > before.oversize, "{before:?} -> {after:?}");
}

/// Line noise, each piece closed by a delimiter, and how many frame errors it is.
struct Garbage {
    bytes: Vec<u8>,
    errors: u32,
}

fn garbage() -> Garbage {
    let mut bytes = vec![0, 0]; // empty frames: ignored, not errors
                                // Noise that is not COBS of anything valid.
    bytes.extend_from_slice(b"\x07\xfe thecal line noise \x01\x02\x03\x00");
    // A real status request with one byte of its body damaged: a CRC error.
    let mut frame = [0u8; 64];
    let n = encode(Header::request(7), &Request::Status, &mut frame).unwrap();
    let mut damaged = frame[..n].to_vec();
    let at = cobs_data_byte(&damaged);
    damaged[at] ^= 0x80;
    bytes.extend_from_slice(&damaged);
    // Longer than any frame: an overflow, then a resync at the delimiter.
    bytes.extend(std::iter::repeat_n(0x55, 1_500));
    bytes.push(0);
    // Half of a real frame, then the delimiter.
    bytes.extend_from_slice(&frame[..n / 2]);
    bytes.push(0);
    Garbage { bytes, errors: 4 }
}

/// Index of the last byte of a COBS-encoded frame (delimiter at the end) that is data,
/// not a code byte, and stays non-zero when its top bit flips.
fn cobs_data_byte(frame: &[u8]) -> usize {
    let end = frame.len() - 1;
    let mut codes = Vec::new();
    let mut i = 0;
    while i < end {
        codes.push(i);
        i += usize::from(frame[i]);
    }
    (0..end)
        .rev()
        .find(|i| !codes.contains(i) && frame[*i] != 0x80)
        .expect("a data byte")
}

async fn cli(t: &Target<'_>) {
    // The last example written is in force.
    let last = common::examples().pop().expect("an example schedule");
    let p = schedule::load(&last).unwrap();
    let info = t.thecal(&["info"]);
    assert!(info.ok().contains("matches this programmer"), "{info:?}");
    let v = t.thecal(&["--json", "status"]).json();
    assert_eq!(v["therapy"], "running", "[{}] {v}", t.name);
    let v = t.thecal(&["--json", "prescription"]).json();
    assert!(v["revision"].as_u64().is_some_and(|r| r > 1), "{v}");
    let exported = t.thecal(&["prescription", "--toml"]);
    assert_eq!(schedule::parse("exported.toml", exported.ok()).unwrap(), p);
}

/// The emergency role on the real port: refused without the presence signal, then (with
/// it, and no key file) status and stop; a clinician resumes.
async fn emergency_stop(t: &mut Target<'_>) {
    let emergency = |args: &[&str]| {
        let mut all = vec!["--port", t.port, "--role", "emergency", "--json"];
        all.extend_from_slice(args);
        common::thecal(&all)
    };
    let out = emergency(&["stop", "--yes"]);
    assert_eq!(out.code, Some(8), "[{}] {out:?}", t.name);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "presence_required", "[{}] {v}", t.name);
    (t.presence)();
    let v = emergency(&["status"]).json();
    assert_eq!(v["therapy"], "running", "[{}] {v}", t.name);
    emergency(&["stop", "--yes"]).ok();
    let v = emergency(&["status"]).json();
    assert_eq!(v["therapy"], "stopped", "[{}] {v}", t.name);
    // Anything else is refused to the emergency role.
    assert_eq!(emergency(&["resume"]).code, Some(3), "[{}]", t.name);
    // The clinician resumes; the log names who stopped it.
    t.thecal(&["resume"]).ok();
    let mut c = t.connect().await;
    let log = thecal_host::eventlog::read_log(
        &mut c,
        thecal_host::eventlog::LogRange {
            from: None,
            last: Some(30),
        },
        |_, _| {},
    )
    .await
    .unwrap();
    let events: Vec<_> = log.entries.iter().map(|e| e.event).collect();
    for wanted in [
        Event::PresenceApplied,
        Event::TherapyStopped {
            by: Role::Emergency,
        },
        Event::TherapyResumed {
            by: Role::Clinician,
        },
    ] {
        assert!(
            events.contains(&wanted),
            "[{}] {wanted:?} in {events:?}",
            t.name
        );
    }
}
