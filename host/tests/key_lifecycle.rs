//! The key lifecycle (protocol 3) end to end, against the simulated pump with a state
//! file behind a real pty and the `thecal` binary as a process: `thecal keys rotate` for
//! every role, rotations interrupted on either side of the pump's confirmation, and
//! `thecal keys reprovision`. Every old key is refused afterwards, by the CLI (naming
//! the epochs) and by the pump itself; every new one works, across restarts of the pump.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{port, s, sim_with_state, thecal, CONFIG};
use thecal_device::sim::Simulator;
use thecal_host::keys::random_secret;
use thecal_host::{Client, Error, KeyFile, RoleKey};
use thecal_protocol::frame::{decode_body, encode, encode_raw, Feed, Flags, FrameDecoder};
use thecal_protocol::message::{Identity, Refusal, Role};
use thecal_protocol::session::Ephemeral;
use thecal_protocol::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

/// The serial number of [`sim_with_state`]'s pump.
const SERIAL: &str = "SIM000001";

/// Where the simulator with the state file `dir/pump.state` keeps the key file of
/// `role`.
fn key_path(dir: &Path, role: Role) -> PathBuf {
    dir.join(format!("pump.state.{}.key", role.name()))
}

/// Runs `thecal --port <sim> args…`.
fn on(sim: &Simulator, args: &[&str]) -> common::Run {
    let p = port(sim);
    let mut all = vec!["--port", p.as_str()];
    all.extend_from_slice(args);
    thecal(&all)
}

/// Runs `thecal --port <sim> --role <role> --key-file <file> args…`.
fn as_role(sim: &Simulator, role: Role, file: &Path, args: &[&str]) -> common::Run {
    let mut all = vec!["--role", role.name(), "--key-file", s(file)];
    all.extend_from_slice(args);
    on(sim, &all)
}

/// The key epochs `thecal info --json` shows: (patient, clinician, service).
fn epochs(sim: &Simulator) -> (u64, u64, u64) {
    let v = on(sim, &["--json", "info"]).json();
    let e = |role: &str| v["key_epochs"][role].as_u64().unwrap();
    (e("patient"), e("clinician"), e("service"))
}

/// Asserts that `file` opens a session as `role` (the pump answers `status`).
fn works(sim: &Simulator, role: Role, file: &Path) {
    let v = as_role(sim, role, file, &["--json", "status"]).json();
    assert_eq!(v["therapy"], "running", "{}: {v}", file.display());
}

/// Asserts that the CLI refuses `file` (a key of epoch `was`; the pump is at `now`)
/// with a message naming both epochs (exit code 8, kind `stale_key`).
fn refused_as_stale(sim: &Simulator, role: Role, file: &Path, was: u32, now: u32) {
    let out = as_role(sim, role, file, &["status"]);
    assert_eq!(out.code, Some(8), "{out:?}");
    let e = &out.stderr;
    assert!(
        e.contains("rotated")
            && e.contains(&format!("epoch {was}"))
            && e.contains(&format!("epoch {now}")),
        "{out:?}"
    );
    let out = as_role(sim, role, file, &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "stale_key", "{v}");
}

/// Asserts that the pump itself refuses `key` at the hello: `StaleKey` naming both
/// epochs.
async fn pump_refuses(sim: &Simulator, key: RoleKey, current: u32) {
    let (role, epoch) = (key.role, key.epoch);
    let stream = common::open_port(&port(sim));
    let e = Client::connect(stream, CONFIG, key).await.unwrap_err();
    assert!(
        matches!(e, Error::StaleKey { role: r, epoch: e, current: c }
            if r == role && e == epoch && c == current),
        "{e:?}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A copy of the key file `file` in `dir` (mode kept: 0600), named by its epoch.
fn copy_of(file: &Path, dir: &Path) -> PathBuf {
    let epoch = KeyFile::load(file).unwrap().epoch;
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let copy = dir.join(format!("epoch{epoch}-{name}"));
    assert!(!copy.exists(), "{}", copy.display());
    std::fs::copy(file, &copy).unwrap();
    copy
}

#[tokio::test]
async fn every_role_key_is_rotated_through_the_cli_and_the_old_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let keys = s(dir.path()).to_string();
    let sim = sim_with_state(&state);
    assert_eq!(mode(&state), 0o600, "the state holds the pump's secrets");
    assert_eq!(epochs(&sim), (1, 1, 1));
    let old = tempfile::tempdir().unwrap();
    // The patient key from a clinician session, the clinician's own, then service's own.
    let mut copies = Vec::new();
    for role in [Role::Patient, Role::Clinician, Role::Service] {
        let name = role.name();
        let file = key_path(dir.path(), role);
        assert_eq!(sim.key_file(role), Some(file.as_path()));
        let before = KeyFile::load(&file).unwrap();
        assert_eq!((before.pump.as_str(), before.epoch), (SERIAL, 1));
        let copy = copy_of(&file, old.path());
        let v = on(
            &sim,
            &[
                "--json",
                "keys",
                "rotate",
                "--role",
                name,
                "--key-dir",
                &keys,
            ],
        )
        .json();
        assert_eq!(
            v,
            serde_json::json!({
                "serial": SERIAL,
                "role": name,
                "epoch": 2,
                "key_file": s(&file),
            })
        );
        // Promoted in place: no pending file, private, the new key at the new epoch.
        assert!(!KeyFile::next_path(&file).exists());
        assert_eq!(mode(&file), 0o600);
        let after = KeyFile::load(&file).unwrap();
        assert_eq!((after.role, after.epoch), (role, 2));
        assert!(!after.role_key().key.ct_eq(&before.role_key().key));
        works(&sim, role, &file);
        refused_as_stale(&sim, role, &copy, 1, 2);
        pump_refuses(&sim, before.role_key(), 2).await;
        copies.push((role, copy));
    }
    assert_eq!(epochs(&sim), (2, 2, 2));
    let info = on(&sim, &["info"]);
    assert!(
        info.ok().contains("patient 2, clinician 2, service 2"),
        "{info:?}"
    );
    // Once more for the patient, as a table: epoch 3, the holder told what to do.
    let patient = key_path(dir.path(), Role::Patient);
    let out = on(
        &sim,
        &["keys", "rotate", "--role", "patient", "--key-dir", &keys],
    );
    let text = out.ok();
    assert!(
        text.contains("rotated to epoch 3") && text.contains(s(&patient)),
        "{text}"
    );
    assert_eq!(epochs(&sim), (3, 2, 2));
    // The pump keeps the rotated keys, and the simulator the rotated key files, across a
    // restart.
    sim.shutdown().unwrap();
    let sim = sim_with_state(&state);
    for (role, epoch) in [(Role::Patient, 3), (Role::Clinician, 2), (Role::Service, 2)] {
        let file = KeyFile::load(&key_path(dir.path(), role)).unwrap();
        assert_eq!(file.epoch, epoch, "{role:?}");
        let (in_force, key) = sim.role_key(role).unwrap();
        assert_eq!(in_force, epoch, "{role:?}");
        assert!(key.ct_eq(&file.role_key().key), "{role:?}");
        works(&sim, role, &file.path);
    }
    for (role, copy) in &copies {
        let now = if *role == Role::Patient { 3 } else { 2 };
        refused_as_stale(&sim, *role, copy, 1, now);
    }
    sim.shutdown().unwrap();
    // The built-in simulator on the same state: it supplies the rotated keys itself, the
    // rotated files work with it, the old ones do not.
    let builtin = |args: &[&str]| {
        let mut all = vec!["--sim", "--sim-state", s(&state)];
        all.extend_from_slice(args);
        thecal(&all)
    };
    let v = builtin(&["--role", "patient", "--json", "status"]).json();
    assert_eq!(v["therapy"], "running", "{v}");
    builtin(&["--role", "patient", "--key-file", s(&patient), "status"]).ok();
    let (_, old_patient) = &copies[0];
    let out = builtin(&["--role", "patient", "--key-file", s(old_patient), "status"]);
    assert_eq!(out.code, Some(8), "{out:?}");
    assert!(out.stderr.contains("rotated"), "{out:?}");
    // A rotation through the built-in simulator persists as well.
    let clinician = key_path(dir.path(), Role::Clinician);
    let v = builtin(&[
        "--json",
        "keys",
        "rotate",
        "--role",
        "clinician",
        "--key-dir",
        &keys,
    ])
    .json();
    assert_eq!(v["epoch"], 3, "{v}");
    builtin(&["--key-file", s(&clinician), "status"]).ok();
    let v = builtin(&["--json", "info"]).json();
    assert_eq!(v["key_epochs"]["clinician"], 3, "{v}");
    // A state file others may read is refused: it holds the pump's secrets.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = builtin(&["status"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("chmod 600"), "{out:?}");
}

#[tokio::test]
async fn a_rotation_the_pump_took_but_nobody_promoted_is_completed_at_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let sim = sim_with_state(&state);
    let file = key_path(dir.path(), Role::Patient);
    let next = KeyFile::next_path(&file);
    let old = KeyFile::load(&file).unwrap();
    // As `thecal keys rotate` does: the new key on disk first, then RotateKey in a
    // clinician session. The pump stores it; its answer is then dropped unread and the
    // file never promoted (the programmer, or its link, died in between).
    let new = RoleKey {
        role: Role::Patient,
        epoch: 2,
        key: random_secret().unwrap(),
    };
    KeyFile::create(&next, SERIAL, &new).unwrap();
    let mut c = common::connect(&sim).await;
    let _dropped = c
        .send_unchecked(&Request::RotateKey {
            role: Role::Patient,
            epoch: 2,
            key: *new.key.as_bytes(),
        })
        .await
        .unwrap();
    drop(c);
    assert_eq!(epochs(&sim), (2, 1, 1), "the pump took the new key");
    assert!(next.exists());
    assert_eq!(KeyFile::load(&file).unwrap().epoch, 1, "not promoted");
    // A normal CLI connection with the old path settles on the key in force and works.
    works(&sim, Role::Patient, &file);
    assert!(!next.exists(), "promoted");
    let settled = KeyFile::load(&file).unwrap();
    assert_eq!(settled.epoch, 2);
    assert!(settled.role_key().key.ct_eq(&new.key));
    assert_eq!(mode(&file), 0o600);
    pump_refuses(&sim, old.role_key(), 2).await;
    // The same through the library: settle against the epoch `Identify` reports, then
    // open the session with what it returns. This time the clinician rotates its own
    // key and the rotation is confirmed, but not promoted.
    let clinician = key_path(dir.path(), Role::Clinician);
    let newer = RoleKey {
        role: Role::Clinician,
        epoch: 2,
        key: random_secret().unwrap(),
    };
    KeyFile::create(&KeyFile::next_path(&clinician), SERIAL, &newer).unwrap();
    let mut c = common::connect(&sim).await;
    c.rotate_key(&newer).await.unwrap();
    drop(c);
    let stream = common::open_port(&port(&sim));
    let (mut c, identity) = Client::connect_unauthenticated(stream, CONFIG)
        .await
        .unwrap();
    let in_force = identity.key_epochs.of(Role::Clinician);
    assert_eq!(in_force, 2);
    let settled = KeyFile::settle(&clinician, in_force).unwrap();
    settled.check_epoch(in_force).unwrap();
    assert!(!KeyFile::next_path(&clinician).exists());
    assert!(settled.role_key().key.ct_eq(&newer.key));
    c.authenticate(settled.role_key(), identity.serial.as_str())
        .await
        .unwrap();
    c.status().await.unwrap();
    drop(c);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn a_rotation_the_pump_never_took_is_dropped_and_the_old_key_kept() {
    let dir = tempfile::tempdir().unwrap();
    let keys = s(dir.path()).to_string();
    let state = dir.path().join("pump.state");
    let sim = sim_with_state(&state);
    let file = key_path(dir.path(), Role::Patient);
    let next = KeyFile::next_path(&file);
    let old = KeyFile::load(&file).unwrap();
    // The new key was written, but RotateKey never reached the pump.
    let lost = RoleKey {
        role: Role::Patient,
        epoch: 2,
        key: random_secret().unwrap(),
    };
    KeyFile::create(&next, SERIAL, &lost).unwrap();
    works(&sim, Role::Patient, &file);
    assert!(!next.exists(), "the pending key is removed");
    let kept = KeyFile::load(&file).unwrap();
    assert_eq!(kept.epoch, 1);
    assert!(kept.role_key().key.ct_eq(&old.role_key().key));
    // Sent, but refused (not the next epoch): not taken either. `keys rotate` settles
    // it first, then rotates as usual.
    let mut c = common::connect(&sim).await;
    let answer = c
        .send_unchecked(&Request::RotateKey {
            role: Role::Patient,
            epoch: 3,
            key: *lost.key.as_bytes(),
        })
        .await
        .unwrap();
    assert_eq!(
        answer,
        Response::Refused(Refusal::StaleKey {
            epoch: 3,
            current: 1
        })
    );
    drop(c);
    let refused = RoleKey {
        role: Role::Patient,
        epoch: 3,
        key: random_secret().unwrap(),
    };
    KeyFile::create(&next, SERIAL, &refused).unwrap();
    let v = on(
        &sim,
        &[
            "--json",
            "keys",
            "rotate",
            "--role",
            "patient",
            "--key-dir",
            &keys,
        ],
    )
    .json();
    assert_eq!(v["epoch"], 2, "{v}");
    assert!(!next.exists());
    let rotated = KeyFile::load(&file).unwrap();
    assert_eq!(rotated.epoch, 2);
    for stale in [&old.role_key().key, &lost.key, &refused.key] {
        assert!(!rotated.role_key().key.ct_eq(stale));
    }
    works(&sim, Role::Patient, &file);
    assert_eq!(epochs(&sim), (2, 1, 1));
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn reprovisioning_refuses_every_old_key_file_and_the_new_ones_work() {
    let dir = tempfile::tempdir().unwrap();
    let keys = s(dir.path()).to_string();
    let state = dir.path().join("pump.state");
    let sim = sim_with_state(&state);
    let old = tempfile::tempdir().unwrap();
    // The patient key was rotated once: every key moves one above the highest epoch.
    let first_patient = copy_of(&key_path(dir.path(), Role::Patient), old.path());
    on(
        &sim,
        &["keys", "rotate", "--role", "patient", "--key-dir", &keys],
    )
    .ok();
    assert_eq!(epochs(&sim), (2, 1, 1));
    let mut copies = vec![(Role::Patient, first_patient, 1)];
    let mut before = Vec::new();
    for role in Role::KEYED {
        let file = key_path(dir.path(), role);
        let loaded = KeyFile::load(&file).unwrap();
        copies.push((role, copy_of(&file, old.path()), loaded.epoch));
        before.push(loaded.role_key());
    }
    // Only the service key may re-provision: without it, nothing happens.
    let service = key_path(dir.path(), Role::Service);
    std::fs::rename(&service, old.path().join("aside.key")).unwrap();
    let out = on(&sim, &["keys", "reprovision", "--key-dir", &keys]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("no service key file"), "{out:?}");
    assert_eq!(epochs(&sim), (2, 1, 1));
    std::fs::rename(old.path().join("aside.key"), &service).unwrap();
    let v = on(&sim, &["--json", "keys", "reprovision", "--key-dir", &keys]).json();
    let rows = v.as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(rows.len(), 3, "{v}");
    for row in rows {
        let role = Role::from_name(row["role"].as_str().unwrap()).unwrap();
        assert_eq!(row["serial"], SERIAL, "{v}");
        assert_eq!(row["epoch"], 3, "{v}");
        assert_eq!(row["key_file"], s(&key_path(dir.path(), role)), "{v}");
    }
    assert_eq!(epochs(&sim), (3, 3, 3));
    for role in Role::KEYED {
        let file = key_path(dir.path(), role);
        assert!(!KeyFile::next_path(&file).exists());
        assert_eq!(mode(&file), 0o600);
        assert_eq!(KeyFile::load(&file).unwrap().epoch, 3);
        works(&sim, role, &file);
    }
    // Every old key file is refused, by the CLI and by the pump.
    for (role, copy, epoch) in &copies {
        refused_as_stale(&sim, *role, copy, *epoch, 3);
    }
    for key in before {
        pump_refuses(&sim, key, 3).await;
    }
    // After a restart the new key files are kept and still the keys in force.
    sim.shutdown().unwrap();
    let sim = sim_with_state(&state);
    for role in Role::KEYED {
        let file = KeyFile::load(&key_path(dir.path(), role)).unwrap();
        let (epoch, key) = sim.role_key(role).unwrap();
        assert_eq!(epoch, 3);
        assert!(key.ct_eq(&file.role_key().key), "{role:?}");
        works(&sim, role, &file.path);
    }
    sim.shutdown().unwrap();
}

#[test]
fn a_rotation_that_cannot_open_its_session_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = s(dir.path()).to_string();
    let state = dir.path().join("pump.state");
    let sim = sim_with_state(&state);
    let aside = tempfile::tempdir().unwrap();
    // The clinician file holds a key of the right epoch that is not the pump's.
    let clinician = key_path(dir.path(), Role::Clinician);
    let good = copy_of(&clinician, aside.path());
    std::fs::remove_file(&clinician).unwrap();
    let wrong = RoleKey {
        role: Role::Clinician,
        epoch: 1,
        key: random_secret().unwrap(),
    };
    KeyFile::create(&clinician, SERIAL, &wrong).unwrap();
    let patient = key_path(dir.path(), Role::Patient);
    let before = std::fs::read(&patient).unwrap();
    let out = on(
        &sim,
        &["keys", "rotate", "--role", "patient", "--key-dir", &keys],
    );
    assert_eq!(out.code, Some(8), "{out:?}");
    assert!(
        out.stderr
            .contains("did not prove it holds the clinician key"),
        "{out:?}"
    );
    // Nothing changed: no pending file, the patient key as it was, in force.
    assert!(!KeyFile::next_path(&patient).exists());
    assert!(!KeyFile::next_path(&clinician).exists());
    assert_eq!(std::fs::read(&patient).unwrap(), before);
    assert_eq!(epochs(&sim), (1, 1, 1));
    works(&sim, Role::Patient, &patient);
    works(&sim, Role::Clinician, &good);
    // The same for a re-provisioning with a service key that is not the pump's.
    let service = key_path(dir.path(), Role::Service);
    let good_service = copy_of(&service, aside.path());
    std::fs::remove_file(&service).unwrap();
    let wrong = RoleKey {
        role: Role::Service,
        epoch: 1,
        key: random_secret().unwrap(),
    };
    KeyFile::create(&service, SERIAL, &wrong).unwrap();
    let out = on(&sim, &["keys", "reprovision", "--key-dir", &keys]);
    assert_eq!(out.code, Some(8), "{out:?}");
    assert!(
        out.stderr
            .contains("did not prove it holds the service key"),
        "{out:?}"
    );
    for role in Role::KEYED {
        let path = key_path(dir.path(), role);
        assert!(!KeyFile::next_path(&path).exists(), "{role:?}");
    }
    assert_eq!(epochs(&sim), (1, 1, 1));
    works(&sim, Role::Service, &good_service);
    sim.shutdown().unwrap();
}

// ---- a man in the middle ----

/// A man in the middle on the line: a pty that `thecal` opens as its port, relayed to
/// the simulator's. Every byte from the programmer goes on as it is; every plain
/// `Identity` answer from the pump is rewritten by `rewrite` on the way back (what the
/// pump announces outside a session, which nothing authenticates); everything else,
/// sealed answers included, goes back unchanged.
struct Mitm {
    path: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mitm {
    fn start(sim: &Simulator, rewrite: fn(&mut Identity)) -> Mitm {
        let sim_port = port(sim);
        let stop = Arc::new(AtomicBool::new(false));
        let halt = Arc::clone(&stop);
        let (tx, rx) = mpsc::channel();
        let guard = common::fork_guard();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(relay(sim_port, rewrite, tx, halt));
        });
        let path = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the relay starts");
        drop(guard);
        Mitm {
            path,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn relay(
    sim_port: String,
    rewrite: fn(&mut Identity),
    path: mpsc::Sender<String>,
    stop: Arc<AtomicBool>,
) {
    let (master, slave) = SerialStream::pair().unwrap();
    let name = tokio_serial::SerialPort::name(&slave).unwrap();
    drop(slave);
    let pump = common::open_port(&sim_port);
    path.send(name).unwrap();
    let (mut from_host, mut to_host) = tokio::io::split(master);
    let (mut from_pump, mut to_pump) = tokio::io::split(pump);
    let quiet = Duration::from_millis(10);
    let up = async {
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::SeqCst) {
            match tokio::time::timeout(quiet, from_host.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => to_pump.write_all(&buf[..n]).await.unwrap(),
                // EIO while no programmer holds the pty open.
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(_) => {}
            }
        }
    };
    let down = async {
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::SeqCst) {
            let n = match tokio::time::timeout(quiet, from_pump.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => continue,
            };
            let mut out = Vec::new();
            let mut input = &buf[..n];
            loop {
                match decoder.feed(input) {
                    Feed::Consumed => break,
                    Feed::Error { remaining, .. } => input = remaining,
                    Feed::Frame { frame, remaining } => {
                        let header = frame.header;
                        let mut wire = vec![0u8; 2048];
                        let plain = !header.flags.has(Flags::SEALED);
                        let w = match decode_body::<Response>(frame.body) {
                            Ok(Response::Identity(mut id)) if plain => {
                                rewrite(&mut id);
                                encode(header, &Response::Identity(id), &mut wire).unwrap()
                            }
                            _ => encode_raw(header, frame.body, &mut wire).unwrap(),
                        };
                        out.extend_from_slice(&wire[..w]);
                        input = remaining;
                    }
                }
            }
            // A programmer that went away is not the relay's problem.
            let _ = to_host.write_all(&out).await;
        }
    };
    tokio::join!(up, down);
}

/// Runs `thecal --port <the man in the middle> args…`.
fn through(mitm: &Mitm, args: &[&str]) -> common::Run {
    let mut all = vec!["--port", mitm.path.as_str()];
    all.extend_from_slice(args);
    thecal(&all)
}

#[test]
fn a_forged_identify_cannot_make_keys_rotate_promote_a_key_the_pump_never_took() {
    let dir = tempfile::tempdir().unwrap();
    let keys = s(dir.path()).to_string();
    let state = dir.path().join("pump.state");
    let sim = sim_with_state(&state);
    let patient = key_path(dir.path(), Role::Patient);
    // A rotation whose RotateKey never reached the pump left its key behind.
    let lost = RoleKey {
        role: Role::Patient,
        epoch: 2,
        key: random_secret().unwrap(),
    };
    KeyFile::create(&KeyFile::next_path(&patient), SERIAL, &lost).unwrap();
    // The man in the middle claims the pump took it.
    let mitm = Mitm::start(&sim, |id| id.key_epochs.patient = 2);
    let v = through(&mitm, &["--json", "info"]).json();
    assert_eq!(v["key_epochs"]["patient"], 2, "the rewrite works: {v}");
    // The rotation goes by what the pump says inside the session: patient at epoch 1,
    // so the pending key is dropped and the new key is epoch 2; the patient is never
    // left with a key the pump does not hold.
    let out = through(
        &mitm,
        &[
            "--json",
            "keys",
            "rotate",
            "--role",
            "patient",
            "--key-dir",
            &keys,
        ],
    );
    drop(mitm);
    let rotated = KeyFile::load(&patient).unwrap();
    assert!(
        !rotated.role_key().key.ct_eq(&lost.key),
        "the key the pump never took was promoted: {out:?}"
    );
    assert_eq!(out.json()["epoch"], 2);
    assert_eq!(rotated.epoch, 2);
    assert!(!KeyFile::next_path(&patient).exists());
    works(&sim, Role::Patient, &patient);
    assert_eq!(epochs(&sim), (2, 1, 1));
    sim.shutdown().unwrap();
}

#[test]
fn a_forged_public_key_in_identify_cannot_make_keys_reprovision_lock_every_key_out() {
    let dir = tempfile::tempdir().unwrap();
    let keys = s(dir.path()).to_string();
    let state = dir.path().join("pump.state");
    let sim = sim_with_state(&state);
    let real = on(&sim, &["--json", "info"]).json()["public_key"].clone();
    // The man in the middle shows its own static key: a secret agreed with that key is
    // one the pump does not derive.
    let mitm = Mitm::start(&sim, |id| {
        id.public_key = Ephemeral::from_bytes([0x99; 32]).public();
    });
    let shown = through(&mitm, &["--json", "info"]).json()["public_key"].clone();
    assert_ne!(shown, real, "the rewrite works");
    let out = through(
        &mitm,
        &["--json", "keys", "reprovision", "--key-dir", &keys],
    );
    drop(mitm);
    // Whatever the CLI said, the key files it left must open sessions with the pump.
    let on_pump = epochs(&sim);
    for role in Role::KEYED {
        let file = key_path(dir.path(), role);
        assert!(
            as_role(&sim, role, &file, &["status"]).code == Some(0),
            "{role:?}: the {} key file opens no session (pump at {on_pump:?}): {out:?}",
            role.name()
        );
    }
    let v = out.json();
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(epochs(&sim), (2, 2, 2));
    sim.shutdown().unwrap();
}
