//! The checks of the end-to-end suite. Each one opens the port, talks to the pump and
//! closes the port again, the way a programmer at the bedside would; they run in this
//! order against one pump, so later checks see what earlier ones wrote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thecal_host::{schedule, Client, ClientConfig, Error, KeyFile, RoleKey};
use thecal_protocol::frame::{encode, Header};
use thecal_protocol::message::{BatteryState, Event, Refusal, Revision, Role, TherapyState};
use thecal_protocol::units::{NanogramsPerDay, Nanolitres};
use thecal_protocol::{Request, Response};
use tokio::io::AsyncWriteExt;
use tokio_serial::SerialStream;

use crate::common;

/// Client policy for the suite: generous enough for an emulated UART on a busy CI
/// machine, short enough that a dead target fails in seconds.
pub const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(3_000),
    retries: 2,
};

/// What a check runs against.
pub struct Target<'a> {
    /// `simulator` or `qemu`, for messages.
    pub name: &'static str,
    /// The serial port (a pty).
    pub port: &'a str,
    /// The pump's clinician key in force (every check but identification runs in a
    /// session); replaced when [`rotate_keys`] rotates it.
    pub key: RoleKey,
    /// The directory holding the pump's key files (one `*.ROLE.key`, mode 0600, for the
    /// clinician, patient and service roles): the CLI reads them, and `thecal keys
    /// rotate` rotates them in place.
    pub key_dir: &'a Path,
    /// Applies the pump's physical-presence signal (the magnet), returning once the pump
    /// has it.
    pub presence: &'a mut dyn FnMut(),
}

impl Target<'_> {
    /// Opens the port, waiting for its lock ([`common::open_port`]): each check closes
    /// the port and the next opens it again, while the other target's test thread
    /// spawns CLI processes (seen in CI about once in 25 runs, even with the fork guard).
    fn open(&self) -> SerialStream {
        common::open_port(self.port)
    }

    async fn connect(&self) -> Client<SerialStream> {
        let (client, _) = Client::connect(self.open(), CONFIG, self.key.duplicate())
            .await
            .unwrap_or_else(|e| panic!("[{}] connect: {e}", self.name));
        client
    }

    /// The key file of `role` in [`Target::key_dir`]: the one `*.ROLE.key` there.
    fn key_file(&self, role: Role) -> PathBuf {
        let suffix = format!(".{}.key", role.name());
        let found: Vec<PathBuf> = std::fs::read_dir(self.key_dir)
            .unwrap_or_else(|e| panic!("[{}] {}: {e}", self.name, self.key_dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(&suffix))
            .collect();
        match found.as_slice() {
            [one] => one.clone(),
            other => panic!("[{}] {} key files: {other:?}", self.name, role.name()),
        }
    }

    /// Runs `thecal --port <port> --key-file <clinician key file> args…`.
    pub fn thecal(&self, args: &[&str]) -> common::Run {
        self.thecal_as(Role::Clinician, &self.key_file(Role::Clinician), args)
    }

    /// Runs `thecal --port <port> --role <role> --key-file <file> args…`.
    fn thecal_as(&self, role: Role, file: &Path, args: &[&str]) -> common::Run {
        let file = file.to_str().expect("utf-8 path");
        let mut all = vec![
            "--port",
            self.port,
            "--role",
            role.name(),
            "--key-file",
            file,
        ];
        all.extend_from_slice(args);
        common::thecal(&all)
    }
}

/// Runs every check in order against `target`, naming each on the test's output.
pub async fn run_all(target: &mut Target<'_>) {
    let target_name = target.name;
    let step = |name: &str| println!("[{target_name}] {name}");
    step("identify");
    identify(target).await;
    step("status, battery, reservoir");
    status_battery_reservoir(target).await;
    step("read the prescription");
    read_prescription(target).await;
    step("rotate the clinician and patient keys (thecal keys rotate); on with the new ones");
    rotate_keys(target).await;
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

pub async fn identify(t: &Target<'_>) {
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

pub async fn status_battery_reservoir(t: &Target<'_>) {
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

pub async fn read_prescription(t: &Target<'_>) {
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

/// `thecal keys rotate` for the clinician key (from a clinician session) and then the
/// patient key (from a clinician session of the new clinician key): each new key file
/// works, a copy of the old one is refused naming the epochs, the pump itself refuses
/// the old key at the hello, `info` shows the new epochs. Every later check runs with
/// the rotated clinician key.
async fn rotate_keys(t: &mut Target<'_>) {
    let old_copies = tempfile::tempdir().unwrap();
    let dir = t.key_dir.to_str().expect("utf-8 path").to_string();
    let before = t.thecal(&["--json", "info"]).json()["key_epochs"].clone();
    for role in [Role::Clinician, Role::Patient] {
        let name = role.name();
        let what = format!("[{}] {name}", t.name);
        let file = t.key_file(role);
        let old = KeyFile::load(&file).unwrap();
        let copy = old_copies.path().join(format!("old.{name}.key"));
        std::fs::copy(&file, &copy).unwrap();
        let v = common::thecal(&[
            "--port",
            t.port,
            "--json",
            "keys",
            "rotate",
            "--role",
            name,
            "--key-dir",
            &dir,
        ])
        .json();
        assert_eq!(v["role"], name, "{what}: {v}");
        assert_eq!(v["epoch"], old.epoch + 1, "{what}: {v}");
        assert_eq!(v["key_file"], file.to_str().unwrap(), "{what}: {v}");
        assert!(!KeyFile::next_path(&file).exists(), "{what}: promoted");
        let new = KeyFile::load(&file).unwrap();
        assert_eq!(new.epoch, old.epoch + 1, "{what}");
        assert!(!new.role_key().key.ct_eq(&old.role_key().key), "{what}");
        // The new key file opens a session; a copy of the old one is refused with a
        // message naming both epochs.
        let v = t.thecal_as(role, &file, &["--json", "status"]).json();
        assert_eq!(v["therapy"], "running", "{what}: {v}");
        let out = t.thecal_as(role, &copy, &["--json", "status"]);
        assert_eq!(out.code, Some(8), "{what}: {out:?}");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "stale_key", "{what}: {v}");
        let (was, now) = (
            format!("epoch {}", old.epoch),
            format!("epoch {}", new.epoch),
        );
        assert!(
            out.stderr.contains("rotated")
                && out.stderr.contains(&was)
                && out.stderr.contains(&now),
            "{what}: {out:?}"
        );
        // The pump itself refuses the old key at the hello.
        let e = Client::connect(t.open(), CONFIG, old.role_key())
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::StaleKey { role: r, epoch, current }
                if r == role && epoch == old.epoch && current == new.epoch),
            "{what}: {e:?}"
        );
        if role == Role::Clinician {
            t.key = new.role_key();
        }
    }
    let after = t.thecal(&["--json", "info"]).json()["key_epochs"].clone();
    let epoch = |v: &serde_json::Value, role: &str| v[role].as_u64().unwrap();
    assert_eq!(
        epoch(&after, "clinician"),
        epoch(&before, "clinician") + 1,
        "[{}]",
        t.name
    );
    assert_eq!(
        epoch(&after, "patient"),
        epoch(&before, "patient") + 1,
        "[{}]",
        t.name
    );
    assert_eq!(
        epoch(&after, "service"),
        epoch(&before, "service"),
        "[{}]",
        t.name
    );
    // The library with the rotated key, as every later check.
    let mut c = t.connect().await;
    let id = c.identify().await.unwrap();
    assert_eq!(id.key_epochs.clinician, t.key.epoch, "[{}]", t.name);
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

pub async fn cli(t: &Target<'_>) {
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
    assert_eq!(
        emergency(&["resume", "--yes"]).code,
        Some(3),
        "[{}]",
        t.name
    );
    // The clinician resumes; the log names who stopped it.
    t.thecal(&["resume", "--yes"]).ok();
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
