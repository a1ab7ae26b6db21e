//! Secure sessions from the programmer's side (issue 6), library and CLI, against the
//! simulated pump and against a bench pump: the device crate's `Server` on a pty, which
//! a test can reset, whose link clock it can move past the idle timeout, and which can
//! start unprovisioned.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{key_file, port, s, sim, thecal, CONFIG};
use thecal_device::link::server::Server;
use thecal_device::link::session::IDLE_TIMEOUT_MS;
use thecal_device::pump::Pump;
use thecal_device::sim::{SimStore, Simulator};
use thecal_device::therapy::motor::CountingMotor;
use thecal_host::{schedule, serial, Client, Error, KeyFile, RoleKey};
use thecal_protocol::message::{
    AlarmKind, BolusKind, BolusRequest, Event, Refusal, ResetCause, Role, TherapyState,
};
use thecal_protocol::session::{
    role_key, Ephemeral, ProvisionKeys, ProvisionTranscript, Secret, FIRST_EPOCH,
};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};
use thecal_protocol::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

/// The bench pump's static X25519 secret, the factory's ephemeral secret it is
/// provisioned with (key agreement, as `thecal provision` does), and its serial number.
const BENCH_IDENTITY: [u8; 32] = [0x42; 32];
const BENCH_FACTORY: [u8; 32] = [0x43; 32];
const BENCH_SEED: u64 = 31;
const BENCH_SERIAL: &str = "SIM000031";

enum Control {
    /// A reset: the session and the reply cache are lost, the pump's memory is kept.
    Reset,
    /// Moves the link clock (the session clock) forward.
    AgeLink(u64),
}

/// A pump core on a pty, served on its own thread.
struct Bench {
    path: String,
    control: mpsc::Sender<(Control, mpsc::Sender<()>)>,
    frames_in: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bench {
    /// A bench pump, provisioned by the bench factory key if `provisioned`.
    fn start(provisioned: bool) -> Bench {
        let (control, commands) = mpsc::channel::<(Control, mpsc::Sender<()>)>();
        let (path_tx, path_rx) = mpsc::channel();
        let frames_in = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (frames, halt) = (Arc::clone(&frames_in), Arc::clone(&stop));
        let guard = common::fork_guard();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(provisioned, path_tx, commands, frames, halt));
        });
        let path = path_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the bench pump starts");
        drop(guard);
        Bench {
            path,
            control,
            frames_in,
            stop,
            thread: Some(thread),
        }
    }

    fn send(&self, c: Control) {
        let (ack, done) = mpsc::channel();
        self.control.send((c, ack)).unwrap();
        done.recv_timeout(Duration::from_secs(10))
            .expect("the bench pump obeys");
    }

    /// Frames the pump received so far.
    fn frames_in(&self) -> u32 {
        self.frames_in.load(Ordering::SeqCst)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    provisioned: bool,
    path: mpsc::Sender<String>,
    commands: mpsc::Receiver<(Control, mpsc::Sender<()>)>,
    frames_in: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
) {
    let (mut master, slave) = SerialStream::pair().unwrap();
    let name = tokio_serial::SerialPort::name(&slave).unwrap();
    drop(slave);
    path.send(name).unwrap();
    let started = Instant::now();
    let now = || Timestamp(started.elapsed().as_millis() as u64);
    let prescription = thecal_device::pump::demo::demo_prescription().unwrap();
    let mut pump = Pump::boot(
        thecal_device::pump::demo::demo_info(BENCH_SEED),
        thecal_device::pump::demo::demo_factory(Timestamp(1_767_225_600_000), prescription),
        SimStore::open(None, false).unwrap(),
        CountingMotor::default(),
        now(),
        ResetCause::PowerOn,
    );
    // Its static key pair, as at its first boot.
    assert!(pump.create_identity(&Secret::new(BENCH_IDENTITY)));
    if provisioned {
        let factory = Ephemeral::from_bytes(BENCH_FACTORY);
        let answer = pump.provision(now(), &factory.public(), false);
        assert!(
            matches!(answer, Response::Provisioned { epoch: 1, .. }),
            "{answer:?}"
        );
    }
    let mut server = Server::new(pump);
    server.stir(&entropy());
    let mut link_offset = 0;
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        while let Ok((command, ack)) = commands.try_recv() {
            match command {
                Control::Reset => server = Server::new(server.into_pump()),
                Control::AgeLink(ms) => link_offset += ms,
            }
            let _ = ack.send(());
        }
        server.tick(now());
        if server.wants_entropy() {
            server.stir(&entropy());
        }
        match tokio::time::timeout(Duration::from_millis(10), master.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let t = now();
                let mut out = Vec::new();
                server.receive_at(t, Timestamp(t.0 + link_offset), &buf[..n], &mut |b| {
                    out.extend_from_slice(b)
                });
                frames_in.store(server.stats().frames_in, Ordering::SeqCst);
                if !out.is_empty() {
                    let _ = master.write_all(&out).await;
                }
            }
            // EIO while no programmer holds the pty open.
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(_) => {}
        }
    }
}

/// Fresh bytes from the operating system for the bench pump's ephemeral keys.
fn entropy() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

/// The bench pump's device secret: what the bench factory agreed with its static key.
fn bench_secret() -> Secret {
    let identity = Ephemeral::from_bytes(BENCH_IDENTITY).public();
    let factory = Ephemeral::from_bytes(BENCH_FACTORY);
    let ephemeral = factory.public();
    let dh = factory.agree(&identity).unwrap();
    let keys = ProvisionKeys::derive(
        &dh,
        &ProvisionTranscript {
            serial: BENCH_SERIAL,
            pump_public: &identity,
            ephemeral: &ephemeral,
        },
    );
    keys.device_secret
}

fn bench_key(role: Role) -> RoleKey {
    RoleKey {
        role,
        epoch: FIRST_EPOCH,
        key: role_key(&bench_secret(), role, FIRST_EPOCH, BENCH_SERIAL),
    }
}

async fn bench_client(bench: &Bench, role: Role) -> Client<SerialStream> {
    let stream = serial::open(&bench.path, serial::DEFAULT_BAUD).unwrap();
    Client::connect(stream, CONFIG, bench_key(role))
        .await
        .unwrap()
        .0
}

/// Runs `thecal --port <sim> --key-file <file> args…`.
fn with_key(sim: &Simulator, file: &Path, args: &[&str]) -> common::Run {
    let p = port(sim);
    let mut all = vec!["--port", p.as_str(), "--key-file", s(file)];
    all.extend_from_slice(args);
    thecal(&all)
}

/// The prescription revision in force, read with the simulator's clinician key file.
fn revision(sim: &Simulator) -> u64 {
    with_key(sim, key_file(sim), &["--json", "prescription"]).json()["revision"]
        .as_u64()
        .unwrap()
}

/// A copy of `from` in `dir` with the given mode and, if given, another key.
fn key_copy(from: &Path, dir: &Path, name: &str, mode: u32, key: Option<&str>) -> PathBuf {
    let mut text = std::fs::read_to_string(from).unwrap();
    if let Some(key) = key {
        let start = text.find("key = \"").unwrap() + 7;
        text.replace_range(start..start + 64, key);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

// ---- session life ----

#[tokio::test]
async fn a_pump_reset_mid_use_is_renewed_transparently() {
    let bench = Bench::start(true);
    let mut c = bench_client(&bench, Role::Clinician).await;
    let before = c.prescription().await.unwrap();
    bench.send(Control::Reset);
    // The same client keeps working: the pump answers SessionRequired in the clear, the
    // client opens a new session and sends the request again.
    let status = c.status().await.unwrap();
    assert_eq!(status.therapy, TherapyState::Running);
    assert_eq!(c.counters().sessions, 2);
    // A therapy change right after another reset is carried out exactly once.
    bench.send(Control::Reset);
    let single = BolusRequest::Single {
        dose: Nanograms::from_ug(10),
        duration: Minutes(30),
    };
    let report = c.bolus(single).await.unwrap();
    assert_eq!(report.kind, BolusKind::Single);
    assert_eq!(c.counters().sessions, 3);
    let log = c.log_page(0, 64).await.unwrap();
    let boluses = log
        .entries
        .iter()
        .filter(|e| matches!(e.event, Event::Bolus { .. }))
        .count();
    assert_eq!(boluses, 1, "{log:?}");
    assert_eq!(c.prescription().await.unwrap(), before);
}

#[tokio::test]
async fn an_idle_session_expires_and_is_renewed_transparently() {
    let bench = Bench::start(true);
    let mut c = bench_client(&bench, Role::Clinician).await;
    c.status().await.unwrap();
    // Just under the idle timeout: the session holds.
    bench.send(Control::AgeLink(IDLE_TIMEOUT_MS - 5_000));
    c.status().await.unwrap();
    assert_eq!(c.counters().sessions, 1);
    // Past it (counted from the last valid frame): the pump ended the session.
    bench.send(Control::AgeLink(IDLE_TIMEOUT_MS + 1_000));
    c.stop().await.unwrap();
    assert_eq!(c.counters().sessions, 2);
    assert_eq!(c.status().await.unwrap().therapy, TherapyState::Stopped);
}

// ---- provisioning ----

/// The bench pump's static public key as 64 hex digits (as on its label).
fn bench_public_hex() -> String {
    Ephemeral::from_bytes(BENCH_IDENTITY)
        .public()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_unprovisioned_pump_says_so_to_any_key_file() {
    let bench = Bench::start(false);
    let dir = tempfile::tempdir().unwrap();
    // Identification works, and shows the pump's public key and no key epochs.
    let v = thecal(&["--port", &bench.path, "--json", "info"]).json();
    assert_eq!(v["serial"], BENCH_SERIAL);
    assert_eq!(v["public_key"], bench_public_hex(), "{v}");
    for role in ["patient", "clinician", "service"] {
        assert_eq!(v["key_epochs"][role], 0, "{v}");
    }
    let info = thecal(&["--port", &bench.path, "info"]);
    assert!(info.ok().contains("unprovisioned"), "{info:?}");
    // No key opens a session, and the error says why: the pump has no secret yet (not
    // that the key was rotated).
    let stray = dir.path().join("stray.key");
    KeyFile::create(&stray, BENCH_SERIAL, &bench_key(Role::Clinician)).unwrap();
    let out = thecal(&["--port", &bench.path, "--key-file", s(&stray), "status"]);
    assert_eq!(out.code, Some(8), "{out:?}");
    assert!(out.stderr.contains("not provisioned"), "{out:?}");
    assert!(!out.stderr.contains("rotated"), "{out:?}");
}

#[test]
fn key_commands_on_an_unprovisioned_pump_say_so() {
    let bench = Bench::start(false);
    let dir = tempfile::tempdir().unwrap();
    for role in [Role::Clinician, Role::Patient, Role::Service] {
        let path = dir.path().join(KeyFile::file_name(BENCH_SERIAL, role));
        KeyFile::create(&path, BENCH_SERIAL, &bench_key(role)).unwrap();
    }
    let frames = bench.frames_in();
    for args in [
        vec![
            "keys",
            "rotate",
            "--role",
            "patient",
            "--key-dir",
            s(dir.path()),
        ],
        vec!["keys", "reprovision", "--key-dir", s(dir.path())],
    ] {
        let mut all = vec!["--port", bench.path.as_str()];
        all.extend_from_slice(&args);
        let out = thecal(&all);
        assert_eq!(out.code, Some(8), "{args:?}: {out:?}");
        assert!(out.stderr.contains("not provisioned"), "{args:?}: {out:?}");
        assert!(!out.stderr.contains("rotated"), "{args:?}: {out:?}");
    }
    // Identification only; no file changed, none pending.
    assert_eq!(bench.frames_in(), frames + 2);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "SIM000031.clinician.key",
            "SIM000031.patient.key",
            "SIM000031.service.key"
        ]
    );
}

#[test]
fn a_fresh_pump_is_provisioned_once_and_its_key_files_open_sessions() {
    let bench = Bench::start(false);
    let dir = tempfile::tempdir().unwrap();
    let stray = dir.path().join("stray.key");
    KeyFile::create(&stray, BENCH_SERIAL, &bench_key(Role::Clinician)).unwrap();
    assert!(thecal(&["--port", &bench.path, "info"])
        .ok()
        .contains(BENCH_SERIAL));
    // A label key that is not this pump's: refused before anything is agreed, and no
    // key file is written.
    let wrong = dir.path().join("wrong-label");
    let out = thecal(&[
        "--port",
        &bench.path,
        "provision",
        "--key-dir",
        s(&wrong),
        "--pump-key",
        &"ab".repeat(32),
    ]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("not the one given with --pump-key")
            && out.stderr.contains(&bench_public_hex()),
        "{out:?}"
    );
    assert_eq!(std::fs::read_dir(&wrong).unwrap().count(), 0);
    let v = thecal(&["--port", &bench.path, "--json", "info"]).json();
    assert_eq!(v["key_epochs"]["service"], 0, "still unprovisioned: {v}");
    // Provision into a new directory, with the key on the label.
    let keys = dir.path().join("keys");
    let label = bench_public_hex();
    let out = thecal(&[
        "--port",
        &bench.path,
        "--json",
        "provision",
        "--key-dir",
        s(&keys),
        "--pump-key",
        &label,
    ]);
    let v = out.json();
    assert_eq!(v["serial"], BENCH_SERIAL);
    for role in ["clinician", "patient", "service"] {
        let path = keys.join(format!("{BENCH_SERIAL}.{role}.key"));
        assert_eq!(v["key_files"][role], s(&path), "{v}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        let file = KeyFile::load(&path).unwrap();
        assert_eq!(file.pump, BENCH_SERIAL);
        assert_eq!(file.epoch, FIRST_EPOCH);
        // Agreed with a fresh ephemeral key: not the bench factory's secret.
        assert!(!file.role_key().key.ct_eq(&bench_key(file.role).key));
    }
    let v = thecal(&["--port", &bench.path, "--json", "info"]).json();
    for role in ["patient", "clinician", "service"] {
        assert_eq!(v["key_epochs"][role], 1, "{v}");
    }
    // The key files open sessions in their roles.
    let clinician = keys.join(format!("{BENCH_SERIAL}.clinician.key"));
    let patient = keys.join(format!("{BENCH_SERIAL}.patient.key"));
    let v = thecal(&[
        "--port",
        &bench.path,
        "--key-file",
        s(&clinician),
        "--json",
        "prescription",
    ])
    .json();
    assert_eq!(v["revision"], 1);
    let v = thecal(&[
        "--port",
        &bench.path,
        "--role",
        "patient",
        "--key-file",
        s(&patient),
        "--json",
        "status",
    ])
    .json();
    assert_eq!(v["therapy"], "running");
    // The stray key (not derived from the new secret) does not.
    let out = thecal(&["--port", &bench.path, "--key-file", s(&stray), "status"]);
    assert_eq!(out.code, Some(8), "{out:?}");
    // A directory that already holds key files is refused before anything is sent.
    let frames = bench.frames_in();
    let out = thecal(&["--port", &bench.path, "provision", "--key-dir", s(&keys)]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("already holds key files"), "{out:?}");
    assert_eq!(bench.frames_in(), frames, "nothing was sent");
    // Once in the pump's life: refused, and no key file is left behind.
    let again = dir.path().join("again");
    let out = thecal(&["--port", &bench.path, "provision", "--key-dir", s(&again)]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("already provisioned"), "{out:?}");
    assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0);
    // The first secret is still the one in force.
    thecal(&["--port", &bench.path, "--key-file", s(&clinician), "status"]).ok();
}

// ---- keys ----

#[test]
fn a_wrong_key_file_is_a_clear_error_and_changes_nothing() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let wrong = key_copy(
        key_file(&sim),
        dir.path(),
        "wrong.key",
        0o600,
        Some(&"ab".repeat(32)),
    );
    let file = common::example("flexible-baclofen-day.toml");
    for args in [
        vec!["schedule", "write", s(&file), "--yes"],
        vec!["stop", "--yes"],
        vec!["status"],
    ] {
        let out = with_key(&sim, &wrong, &args);
        assert_eq!(out.code, Some(8), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(
                "the pump did not prove it holds the clinician key — wrong key file, or not \
                 the pump you think"
            ),
            "{out:?}"
        );
    }
    let mut json = vec!["--json"];
    json.extend(["stop", "--yes"]);
    let out = with_key(&sim, &wrong, &json);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "authentication_failed");
    // Nothing changed.
    assert_eq!(revision(&sim), 1);
    let v = with_key(&sim, key_file(&sim), &["--json", "status"]).json();
    assert_eq!(v["therapy"], "running");
    sim.shutdown().unwrap();
}

#[test]
fn a_key_file_others_can_read_is_refused_before_anything_is_sent() {
    let sim = sim();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let frames_in = || {
        rt.block_on(async {
            common::connect(&sim)
                .await
                .link_stats()
                .await
                .unwrap()
                .frames_in
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let open = key_copy(key_file(&sim), dir.path(), "open.key", 0o644, None);
    let before = frames_in();
    let out = with_key(&sim, &open, &["stop", "--yes"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let expected = format!(
        "key file {} is readable by others (mode 0644); chmod 600 {}",
        open.display(),
        open.display()
    );
    assert!(out.stderr.contains(&expected), "{out:?}");
    // Group-readable too.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = with_key(&sim, &open, &["status"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("(mode 0640)"), "{out:?}");
    // Only this check's own frames (identify, hello, proof, link stats) reached the pump.
    assert_eq!(frames_in(), before + 4, "the refused runs sent nothing");
    // The same file, private again, works.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).unwrap();
    with_key(&sim, &open, &["status"]).ok();
    sim.shutdown().unwrap();
}

#[test]
fn key_files_of_another_role_or_pump_or_none_at_all_are_clear_errors() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let patient = sim.key_file(Role::Patient).unwrap();
    // The patient's file for the clinician role.
    let out = with_key(&sim, patient, &["status"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("holds the patient key") && out.stderr.contains("--role patient"),
        "{out:?}"
    );
    // Another pump's file.
    let text = std::fs::read_to_string(key_file(&sim))
        .unwrap()
        .replace(sim.serial(), "SIM999999");
    let other = dir.path().join("other.key");
    std::fs::write(&other, text).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = with_key(&sim, &other, &["status"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("is for pump SIM999999, but the pump on this link is SIM000007"),
        "{out:?}"
    );
    // No key file over --port: said so; `info` needs none.
    let p = port(&sim);
    let out = thecal(&["--port", &p, "status"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("give --key-file PATH"), "{out:?}");
    assert!(thecal(&["--port", &p, "info"]).ok().contains("SIM000007"));
    // A missing file.
    let out = with_key(&sim, &dir.path().join("none.key"), &["status"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("none.key"), "{out:?}");
    sim.shutdown().unwrap();
}

#[test]
fn the_builtin_simulator_supplies_the_key_of_the_role_and_writes_key_files_by_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let sim_args = ["--sim", "--sim-state", s(&state)];
    let run = |extra: &[&str]| {
        let mut all = sim_args.to_vec();
        all.extend_from_slice(extra);
        thecal(&all)
    };
    run(&["status"]).ok();
    run(&["--role", "patient", "status"]).ok();
    let refused = run(&["--role", "patient", "stop", "--yes"]);
    assert_eq!(refused.code, Some(3), "{refused:?}");
    // The key files beside the state are private, and work with --sim too.
    let clinician = dir.path().join("pump.state.clinician.key");
    let mode = std::fs::metadata(&clinician).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    run(&["--key-file", s(&clinician), "status"]).ok();
    let patient = dir.path().join("pump.state.patient.key");
    run(&["--role", "patient", "--key-file", s(&patient), "status"]).ok();
}

// ---- roles ----

#[test]
fn a_patient_key_reads_status_and_gives_a_patient_bolus_but_cannot_program() {
    let sim = sim();
    let patient = sim.key_file(Role::Patient).unwrap();
    let as_patient = |args: &[&str]| {
        let mut all = vec!["--role", "patient"];
        all.extend_from_slice(args);
        with_key(&sim, patient, &all)
    };
    let v = as_patient(&["--json", "status"]).json();
    assert_eq!(v["therapy"], "running");
    as_patient(&["battery"]).ok();
    as_patient(&["reservoir"]).ok();
    as_patient(&["alarms"]).ok();
    let v = as_patient(&["--json", "bolus", "patient", "--yes"]).json();
    assert_eq!(v["kind"], "patient", "{v}");
    // Programming is the clinician's: refused by the pump, nothing changed.
    let file = common::example("flexible-baclofen-day.toml");
    for args in [
        vec!["schedule", "write", s(&file), "--yes"],
        vec!["stop", "--yes"],
        vec!["prescription"],
    ] {
        let out = as_patient(&args);
        assert_eq!(out.code, Some(3), "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains("not permitted: the patient role may not ask for")
                && out.stderr.contains("it needs the clinician"),
            "{out:?}"
        );
    }
    let out = as_patient(&["--json", "stop", "--yes"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "not_permitted");
    assert_eq!(revision(&sim), 1);
    let v = with_key(&sim, key_file(&sim), &["--json", "status"]).json();
    assert_eq!(v["therapy"], "running");
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn every_therapy_change_is_refused_to_patient_and_service_sessions() {
    let sim = sim();
    let mut clinician = common::connect(&sim).await;
    let record = clinician.prescription().await.unwrap();
    let status = clinician.status().await.unwrap();
    drop(clinician);
    let other = schedule::load(&common::example("flexible-baclofen-day.toml")).unwrap();
    let changes = [
        Request::WritePrescription {
            expected: record.revision,
            prescription: other.draft().clone(),
        },
        Request::Refill {
            expected: record.revision,
            volume: Nanolitres::from_ml(20),
            prescription: None,
        },
        Request::ClinicianBolus(BolusRequest::Single {
            dose: Nanograms::from_ug(10),
            duration: Minutes(30),
        }),
        Request::StopTherapy,
        Request::ResumeTherapy,
        Request::SetClock {
            now: Timestamp(1_800_000_000_000),
            offset: UtcOffset(60),
        },
        Request::AcknowledgeAlarm {
            alarm: AlarmKind::LowReservoir,
        },
    ];
    for role in [Role::Patient, Role::Service] {
        let mut c = common::connect_as(&sim, role).await;
        for request in &changes {
            let answer = c.send_unchecked(request).await.unwrap();
            assert_eq!(
                answer,
                Response::Refused(Refusal::NotPermitted),
                "{role:?} {}",
                request.name()
            );
        }
        // Through the typed API: the error names the role needed.
        let e = c.stop().await.unwrap_err();
        assert!(
            matches!(&e, Error::NotPermitted { role: r, allowed, .. }
                if *r == role && allowed == &vec![Role::Clinician, Role::Emergency]),
            "{e:?}"
        );
        let e = c.patient_bolus().await;
        assert_eq!(e.is_ok(), role == Role::Patient, "{role:?}: {e:?}");
    }
    // Nothing a refused request touches has changed.
    let mut c = common::connect(&sim).await;
    assert_eq!(c.prescription().await.unwrap(), record);
    let after = c.status().await.unwrap();
    assert_eq!(after.therapy, TherapyState::Running);
    assert_eq!(after.revision, status.revision);
    assert_eq!(after.offset, status.offset);
    assert!(after.now.since(status.now) < 3_600_000, "clock untouched");
    let reservoir = c.reservoir().await.unwrap();
    assert!(reservoir.volume <= status.reservoir && reservoir.volume > Nanolitres::from_ml(17));
    drop(c);
    sim.shutdown().unwrap();
}

// ---- without a session, and brute force ----

#[tokio::test]
async fn a_therapy_change_without_a_session_is_refused_and_changes_nothing() {
    let sim = sim();
    let mut stream = serial::open(&port(&sim), serial::DEFAULT_BAUD).unwrap();
    for (id, request) in [
        (60_000, Request::StopTherapy),
        (60_001, Request::PatientBolus),
        (60_002, Request::Status),
    ] {
        let answer = common::raw_request(&mut stream, id, &request).await;
        assert_eq!(answer, Response::Refused(Refusal::SessionRequired));
    }
    // The library without a key: the same refusal.
    let mut c = Client::new(stream, CONFIG);
    let e = c.stop().await.unwrap_err();
    assert_eq!(e.refusal(), Some(&Refusal::SessionRequired), "{e:?}");
    drop(c);
    let mut c = common::connect(&sim).await;
    let status = c.status().await.unwrap();
    assert_eq!(status.therapy, TherapyState::Running);
    assert_eq!(status.bolus, None);
    drop(c);
    sim.shutdown().unwrap();
}

/// One failed handshake by hand: hello with `nonce` (and a fresh ephemeral key, at the
/// epoch in force), then a bogus proof for it.
async fn failed_handshake(stream: &mut SerialStream, id: u16, nonce: [u8; 16]) {
    let hello = Request::SessionHello {
        role: Role::Clinician,
        epoch: FIRST_EPOCH,
        nonce,
        ephemeral: Ephemeral::from_bytes([nonce[0]; 32]).public(),
    };
    match common::raw_request(stream, id, &hello).await {
        Response::SessionChallenge { .. } => {}
        other => panic!("{other:?}"),
    }
    let proof = Request::SessionProof {
        nonce,
        proof: [0; 32],
    };
    assert_eq!(
        common::raw_request(stream, id + 1, &proof).await,
        Response::Refused(Refusal::AuthenticationFailed)
    );
}

#[tokio::test]
async fn failed_handshakes_lock_nobody_out_and_are_logged() {
    let sim = sim();
    // Someone without the key tries three proofs, right before the clinician.
    let mut stream = serial::open(&port(&sim), serial::DEFAULT_BAUD).unwrap();
    for (i, id) in [61_000u16, 61_002, 61_004].into_iter().enumerate() {
        failed_handshake(&mut stream, id, [i as u8 + 1; 16]).await;
    }
    drop(stream);
    // The right key opens a session at once: no lockout.
    let out = with_key(&sim, key_file(&sim), &["--json", "status"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    // The failures are one aggregated security entry, and therapy went on throughout.
    let mut c = common::connect(&sim).await;
    assert_eq!(c.status().await.unwrap().therapy, TherapyState::Running);
    let log = thecal_host::eventlog::read_log(&mut c, Default::default(), |_, _| {})
        .await
        .unwrap();
    let failed: Vec<_> = log
        .entries
        .iter()
        .filter_map(|e| match e.event {
            Event::HandshakeFailed { role, count } => Some((role, count)),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [(Role::Clinician, 3)], "{log:?}");
    drop(c);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn the_emergency_role_stops_therapy_without_a_key_file_only_with_the_magnet() {
    let state = tempfile::tempdir().unwrap();
    let state = state.path().join("pump.state");
    let sim_args = |magnet: bool| {
        let mut a = vec!["--sim", "--sim-state", state.to_str().unwrap()];
        if magnet {
            a.push("--sim-magnet");
        }
        a.extend(["--role", "emergency", "--json"]);
        a
    };
    // Without the magnet: refused, with a clear kind, nothing stopped.
    let out = thecal(&[sim_args(false), vec!["stop", "--yes"]].concat());
    assert_ne!(out.code, Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "presence_required", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("magnet"),
        "{v}"
    );
    // With it: status, then stop, with no key file at all.
    let v = thecal(&[sim_args(true), vec!["status"]].concat()).json();
    assert_eq!(v["therapy"], "running", "{v}");
    thecal(&[sim_args(true), vec!["stop", "--yes"]].concat()).ok();
    let v = thecal(&[sim_args(true), vec!["status"]].concat()).json();
    assert_eq!(v["therapy"], "stopped", "{v}");
    // Nothing else: programming is refused to the emergency role.
    let out = thecal(&[sim_args(true), vec!["resume", "--yes"]].concat());
    assert_eq!(out.code, Some(3), "{out:?}");
    // A key file is not what authorises it.
    let out = thecal(&[sim_args(true), vec!["--key-file", "/dev/null", "status"]].concat());
    assert_eq!(out.code, Some(2), "{out:?}");
}
