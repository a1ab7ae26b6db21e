//! The simulator started as a process: a host-side test opens its pty and exchanges
//! frames, then stops it with SIGTERM and restarts it on the same state file.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod common;

use common::client::{self, Peer, RoleKey, Session};
use thecal_protocol::frame::{decode_body, encode, Feed, FrameDecoder, Header};
use thecal_protocol::message::{Request, Response, Revision, Role};
use thecal_protocol::session::Secret;

/// Held while a test holds a pty open and while one starts a process: the tests run in
/// parallel, and serialport's descriptors are inherited by a child started meanwhile,
/// which then holds the pty's exclusive lock ("Unable to acquire exclusive lock").
static PORTS: Mutex<()> = Mutex::new(());

fn ports() -> MutexGuard<'static, ()> {
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

struct Sim {
    child: Child,
    path: String,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let spawning = ports();
        let mut child = Command::new(env!("CARGO_BIN_EXE_thecal-sim"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start thecal-sim");
        drop(spawning);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let path = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("pty path on stdout");
        Sim {
            child,
            path: path.trim().to_string(),
        }
    }

    fn request(&self, id: u16, request: &Request) -> Response {
        let _open = ports();
        let mut port = serialport::new(&self.path, 115_200)
            .timeout(Duration::from_millis(100))
            .open()
            .expect("open pty");
        let mut buf = [0u8; 2048];
        let n = encode(Header::request(id), request, &mut buf).unwrap();
        port.write_all(&buf[..n]).unwrap();
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 256];
        while Instant::now() < deadline {
            let got = match port.read(&mut chunk) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) => panic!("read: {e}"),
            };
            let mut input = &chunk[..got];
            loop {
                match decoder.feed(input) {
                    Feed::Consumed => break,
                    Feed::Error { remaining, .. } => input = remaining,
                    Feed::Frame { frame, remaining } => {
                        assert_eq!(frame.header, Header::response(id));
                        let response = decode_body(frame.body).unwrap();
                        let _ = remaining;
                        return response;
                    }
                }
            }
        }
        panic!("no answer from the simulator within 10 s");
    }

    /// Sends `frame` and returns the bytes of the first complete answer frame.
    fn exchange(&self, frame: &[u8]) -> Vec<u8> {
        let _open = ports();
        let mut port = serialport::new(&self.path, 115_200)
            .timeout(Duration::from_millis(100))
            .open()
            .expect("open pty");
        port.write_all(frame).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 256];
        while Instant::now() < deadline {
            match port.read(&mut chunk) {
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
            if got.contains(&0) {
                return got;
            }
        }
        panic!("no answer from the simulator within 10 s");
    }

    /// A clinician session with the key file the simulator wrote, as a programmer
    /// opens one: `Identify` first (what the transcript binds), then the handshake.
    fn session(&self, key_file: &std::path::Path) -> Session {
        let text = std::fs::read_to_string(key_file).expect("key file");
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(" = "))
                .unwrap_or_else(|| panic!("no {name} in the key file"))
                .trim_matches('"')
                .to_string()
        };
        assert_eq!(field("role"), "clinician");
        let hex = field("key");
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let key = RoleKey {
            role: Role::Clinician,
            epoch: field("epoch").parse().expect("an epoch"),
            key: Secret::new(key),
        };
        let Response::Identity(identity) = self.request(0xF100, &Request::Identify) else {
            panic!("no identity");
        };
        let peer = Peer::from_identity(&identity);
        assert_eq!(peer.serial, field("pump"));
        assert_eq!(identity.key_epochs.clinician, key.epoch);
        client::handshake(&mut |f| self.exchange(f), &key, &peer, [3; 16]).expect("handshake")
    }

    fn sealed(&self, s: &mut Session, id: u16, request: &Request) -> Response {
        s.request(&mut |f| self.exchange(f), id, request)
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let spawning = ports();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        drop(spawning);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "simulator did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn identify_and_status_over_the_pty() {
    let dir = thecal_device::sim::private_temp_dir("thecal-sim-keys").unwrap();
    let sim = Sim::start(&[
        "--speed",
        "3600",
        "--seed",
        "42",
        "--keys",
        dir.to_str().unwrap(),
    ]);
    match sim.request(1, &Request::Identify) {
        Response::Identity(id) => {
            assert_eq!(id.serial.as_str(), "SIM000042");
            assert_eq!(id.schema, thecal_protocol::SCHEMA_HASH);
        }
        other => panic!("{other:?}"),
    }
    // Without a session only Identify is served.
    assert_eq!(
        sim.request(2, &Request::Status),
        Response::Refused(thecal_protocol::message::Refusal::SessionRequired)
    );
    let key_file = dir.join("thecal-sim.clinician.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "key file readable by others");
    let mut s = sim.session(&key_file);
    match sim.sealed(&mut s, 3, &Request::Status) {
        Response::Status(st) => assert_eq!(st.revision, Revision(1)),
        other => panic!("{other:?}"),
    }
    assert!(sim.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn state_survives_a_restart() {
    let dir = thecal_device::sim::private_temp_dir("thecal-sim-test").unwrap();
    let state = dir.join("pump.state");
    let state_arg = state.to_str().unwrap();
    let sim = Sim::start(&["--state", state_arg]);
    let key_file = dir.join("pump.state.clinician.key");
    let mut s = sim.session(&key_file);
    let record = match sim.sealed(&mut s, 1, &Request::ReadPrescription) {
        Response::Prescription(r) => r,
        other => panic!("{other:?}"),
    };
    let write = Request::WritePrescription {
        expected: record.revision,
        prescription: record.prescription.clone().into(),
    };
    assert_eq!(
        sim.sealed(&mut s, 2, &write),
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    assert!(sim.terminate().success());
    // The restarted pump keeps its secret: the same key file opens a session.
    let sim = Sim::start(&["--state", state_arg]);
    let mut s = sim.session(&key_file);
    match sim.sealed(&mut s, 1, &Request::ReadPrescription) {
        Response::Prescription(r) => {
            assert_eq!(r.revision, Revision(2));
            assert_eq!(r.prescription, record.prescription);
        }
        other => panic!("{other:?}"),
    }
    assert!(sim.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_in_process_simulator_cleans_up_its_temporary_key_files() {
    use thecal_device::sim::{SimOptions, Simulator};
    let starting = ports();
    let sim = Simulator::start(SimOptions::default()).expect("start");
    drop(starting);
    let key = sim
        .key_file(Role::Clinician)
        .expect("key file")
        .to_path_buf();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // The file holds the key in force and its epoch, as the simulator reports them.
    let (epoch, secret) = sim.role_key(Role::Clinician).expect("a provisioned pump");
    assert_eq!(epoch, 1);
    let hex: String = secret
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.contains("epoch = 1\n"), "{text}");
    assert!(text.contains(&format!("key = \"{hex}\"")));
    assert_eq!(sim.role_key(Role::Emergency).map(|k| k.0), None);
    sim.shutdown().unwrap();
    assert!(!key.exists(), "temporary key file left behind");
    assert!(!key.parent().unwrap().exists());
}
