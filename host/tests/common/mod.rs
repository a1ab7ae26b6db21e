//! Shared by the simulator tests: start the simulated pump behind a real pty, connect
//! the library to it, and run the `thecal` binary as a process with a bounded wait; and,
//! in [`scripted`], the scripted pump of the client tests (`client_*.rs`) over an
//! in-memory pipe.
//!
//! Each test binary uses a different part of this (dead code allowed, the submodule
//! included).
#![allow(dead_code)]

pub mod scripted;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thecal_device::sim::{SimOptions, Simulator};
use thecal_host::{serial, Client, ClientConfig, RoleKey};
use thecal_protocol::frame::{decode_body, encode, Feed, FrameDecoder, Header};
use thecal_protocol::message::Role;
use thecal_protocol::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

/// Longest any CLI run may take before the test fails (no hang, ever).
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// Client policy for tests: the pty answers in microseconds.
pub const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(1_000),
    retries: 2,
};

/// Held while a test creates a pty pair and while it spawns a process. serialport's
/// `TTYPort::pair` opens the slave end without `O_CLOEXEC` and flocks it; a process forked
/// by another test thread in that window inherits it and holds the lock until it exits,
/// and opening the port then fails ("Unable to acquire exclusive lock").
pub fn fork_guard() -> MutexGuard<'static, ()> {
    static GUARD: Mutex<()> = Mutex::new(());
    GUARD.lock().unwrap_or_else(|e| e.into_inner())
}

/// A simulated pump in RAM.
pub fn sim() -> Simulator {
    let _guard = fork_guard();
    Simulator::start(SimOptions {
        seed: 7,
        ..Default::default()
    })
    .expect("simulator starts")
}

/// A simulated pump whose memory is the state file `state` (mode 0600; created if
/// missing): its key files are beside it, `<state file name>.<role>.key`, written when
/// it is first provisioned and kept from then on. Seeded as `thecal --sim` seeds its
/// pump (serial SIM000001), so `thecal --sim --sim-state` can take the same state over.
pub fn sim_with_state(state: &Path) -> Simulator {
    let _guard = fork_guard();
    Simulator::start(SimOptions {
        seed: 1,
        state: Some(state.to_path_buf()),
        ..Default::default()
    })
    .expect("simulator starts")
}

/// The pty path as a string.
pub fn port(sim: &Simulator) -> String {
    sim.path().display().to_string()
}

/// The key of `role` in force on `sim` when it started, at its epoch.
pub fn key(sim: &Simulator, role: Role) -> RoleKey {
    let (epoch, key) = sim
        .role_key(role)
        .expect("the simulator is provisioned and has a key for that role");
    RoleKey { role, epoch, key }
}

/// The simulator's clinician key file.
pub fn key_file(sim: &Simulator) -> &Path {
    sim.key_file(Role::Clinician)
        .expect("the simulator writes a clinician key file")
}

/// How long [`open_port`] waits for a port's lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens `path`, waiting up to [`LOCK_WAIT`] for its lock. A `thecal` child that another
/// test thread spawned while this one had the port open holds a copy of the descriptor,
/// and with it the port's `flock`, until its exec has closed it, which the kernel
/// finishes only after `spawn` has returned ("Unable to acquire exclusive lock"); a port
/// that is really held by another program still fails after the wait.
pub fn open_port(path: &str) -> SerialStream {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match serial::open(path, serial::DEFAULT_BAUD) {
            Ok(stream) => return stream,
            Err(e) if e.to_string().contains("exclusive lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open {path}: {e}"),
        }
    }
}

/// A checked, connected client on the simulator's pty, in a clinician session.
pub async fn connect(sim: &Simulator) -> Client<SerialStream> {
    connect_as(sim, Role::Clinician).await
}

/// A checked, connected client on the simulator's pty, in a session as `role`.
pub async fn connect_as(sim: &Simulator, role: Role) -> Client<SerialStream> {
    let stream = open_port(&port(sim));
    let (client, _) = Client::connect(stream, CONFIG, key(sim, role))
        .await
        .expect("pump answers");
    client
}

/// Sends one plain request frame by hand (bypassing the client and its session) and
/// returns the answer with the same id; frames with other ids are skipped. Fails the test
/// if no answer comes within 5 s. The pump serves only `Identify`, the handshake and
/// `Provision` so; anything else is refused with `SessionRequired`.
pub async fn raw_request(stream: &mut SerialStream, id: u16, request: &Request) -> Response {
    let mut buf = vec![0u8; 2048];
    let n = encode(Header::request(id), request, &mut buf).unwrap();
    stream.write_all(&[0]).await.unwrap();
    stream.write_all(&buf[..n]).await.unwrap();
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let mut chunk = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, AsyncReadExt::read(stream, &mut chunk))
            .await
            .expect("the pump answers within 5 s")
            .unwrap();
        let mut input = &chunk[..n];
        loop {
            match decoder.feed(input) {
                Feed::Consumed => break,
                Feed::Error { remaining, .. } => input = remaining,
                Feed::Frame { frame, remaining } => {
                    if frame.header.id == id {
                        return decode_body(frame.body).unwrap();
                    }
                    input = remaining;
                }
            }
        }
    }
}

/// What a `thecal` run produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "thecal failed: {self:#?}");
        &self.stdout
    }
    /// Asserts success and parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// Runs `thecal args…` with stdin closed (not a terminal), killing it after
/// [`PROCESS_LIMIT`].
pub fn thecal(args: &[&str]) -> Run {
    thecal_in(args, None)
}

/// [`thecal`] in a working directory.
pub fn thecal_in(args: &[&str], dir: Option<&Path>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thecal"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = {
        let _guard = fork_guard();
        cmd.spawn().expect("thecal starts")
    };
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + PROCESS_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("thecal {args:?} did not finish within {PROCESS_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `examples/schedules/NAME` at the repository root.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/schedules")
        .join(name)
}

/// Every example schedule.
pub fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/schedules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("examples/schedules exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// `host/tests/data/NAME`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A path as `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
