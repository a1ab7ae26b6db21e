//! The QEMU firmware as a test target: boots `device/firmware/qemu-mps2` under its
//! bootloader on QEMU's `mps2-an385` behind a pty, and stops it again, whatever happens.
//!
//! * The images come from the directory `THECAL_QEMU_IMAGES` names (`.ci/qemu-images`
//!   builds them; `.ci/run` runs it and sets the variable): the bootloader is QEMU's
//!   `-kernel`, the factory package is loaded at the staging address of the memory map
//!   (`device/firmware/qemu-mps2/src/layout.rs`), where the bootloader's factory step
//!   takes it from; a second signed build is the update the suite installs, a third one that fails its
//!   self-test the one it sees rolled back. Without the
//!   variable (or without `qemu-system-arm`) the QEMU half of the suite is skipped with
//!   a message on the real stderr (visible even when the test harness captures output),
//!   except when `CI` is set: then it fails.
//! * QEMU discards UART output while nobody holds the pty open, so it starts halted
//!   (`-S`); the harness opens the pty and keeps one descriptor on it for the whole run
//!   (the clients come and go), then sends `cont` on the monitor socket.
//! * UART1 is a unix socket the harness holds: the firmware prints its stack high-water
//!   marks there (collected by a thread), and an `M` written to it is the firmware's
//!   physical-presence signal ([`Qemu::apply_presence`]).
//! * Every wait is bounded; [`Qemu`]'s `Drop` kills QEMU, so a failing test never leaves
//!   it running.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The QEMU image's memory map (the staging address of the factory package).
#[allow(dead_code)]
#[path = "../../../device/firmware/qemu-mps2/src/layout.rs"]
mod layout;

/// Environment variable naming the directory of the QEMU images.
pub const IMAGES_VAR: &str = "THECAL_QEMU_IMAGES";
/// The QEMU binary.
const QEMU: &str = "qemu-system-arm";
/// Longest QEMU may take to print its pty and open its monitor socket.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Longest QEMU may take to exit after `quit` before it is killed.
const QUIT_LIMIT: Duration = Duration::from_secs(5);
/// Bytes of stack the firmware paints and measures (`MEASURED` in its `stack.rs`).
pub const STACK_MEASURED: usize = 64 * 1024;
/// `O_NOCTTY` on Linux: opening the pty must not make it the test's controlling terminal.
const O_NOCTTY: i32 = 0o400;

/// What `.ci/qemu-images` built.
pub struct Images {
    /// The bootloader ELF.
    pub boot: PathBuf,
    /// The factory package (the application, signed as 0.1.0).
    pub factory: PathBuf,
    /// The second build, signed as 0.2.0: the update.
    pub second: PathBuf,
    /// A third build, signed as 0.3.0, that fails its self-test: rolled back.
    pub failing: PathBuf,
}

/// The firmware to boot, or why there is none.
pub enum Firmware {
    /// Boot these.
    Images(Images),
    /// Nothing to boot here; the reason is for the skip message.
    Missing(String),
}

/// Finds the QEMU images and QEMU.
pub fn firmware() -> Firmware {
    let Some(dir) = std::env::var_os(IMAGES_VAR).filter(|v| !v.is_empty()) else {
        return Firmware::Missing(format!(
            "{IMAGES_VAR} is not set (.ci/run builds the images with .ci/qemu-images and sets it)"
        ));
    };
    let dir = PathBuf::from(dir);
    let images = Images {
        boot: dir.join("boot.elf"),
        factory: dir.join("factory.thfw"),
        second: dir.join("second.thfw"),
        failing: dir.join("failing.thfw"),
    };
    // A directory that was asked for but is incomplete is always an error, CI or not.
    for file in [
        &images.boot,
        &images.factory,
        &images.second,
        &images.failing,
    ] {
        assert!(
            file.is_file(),
            "{IMAGES_VAR}={}: no {} (run .ci/qemu-images)",
            dir.display(),
            file.display()
        );
    }
    let found = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Firmware::Missing(format!(
            "{QEMU} is not installed (apt-get install qemu-system-arm)"
        ));
    }
    Firmware::Images(images)
}

/// A running QEMU with the firmware, its telemetry UART on a pty.
pub struct Qemu {
    child: Child,
    monitor: UnixStream,
    pty: String,
    _keeper: File,
    /// UART1, for writing; what it sends is collected in `debug`.
    uart1: UnixStream,
    debug: Arc<Mutex<String>>,
    output: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

/// Longest the firmware may take to confirm the presence signal on UART1.
const PRESENCE_LIMIT: Duration = Duration::from_secs(5);

impl Qemu {
    /// Starts QEMU halted with the bootloader and the factory package, opens the pty,
    /// then lets the CPU run.
    pub fn boot(images: &Images) -> Qemu {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("monitor.sock");
        let uart1 = dir.path().join("uart1.sock");
        // Spawned under the fork guard: a pty another test creates meanwhile must not
        // leak into QEMU, which would hold its lock for the whole run.
        let guard = crate::common::fork_guard();
        let mut child = Command::new(QEMU)
            .args(["-M", "mps2-an385", "-display", "none", "-S"])
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", socket.display()))
            .args(["-serial", "pty", "-serial"])
            .arg(format!("unix:{},server=on,wait=off", uart1.display()))
            .arg("-kernel")
            .arg(&images.boot)
            .arg("-device")
            .arg(format!(
                "loader,file={},addr={:#x},force-raw=on",
                images.factory.display(),
                layout::STAGING
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-arm starts");
        drop(guard);
        let (tx, pty) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        watch(
            child.stdout.take().expect("stdout"),
            tx.clone(),
            Arc::clone(&log),
        );
        watch(child.stderr.take().expect("stderr"), tx, Arc::clone(&log));
        // From here on, a panic kills QEMU through Drop.
        let mut guard = Partial {
            child: Some(child),
            log: Arc::clone(&log),
        };
        let pty = match pty.recv_timeout(START_LIMIT) {
            Ok(pty) => pty,
            Err(_) => panic!(
                "QEMU printed no pty within {START_LIMIT:?}; output:\n{}",
                guard.log()
            ),
        };
        // Held for QEMU's whole life: QEMU then always sees the pty connected.
        let keeper = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(O_NOCTTY)
            .open(&pty)
            .unwrap_or_else(|e| panic!("open {pty}: {e}"));
        let mut monitor = connect_monitor(&socket, &mut guard);
        // UART1 before the CPU runs, so nothing the firmware prints is lost.
        let uart1 = connect_monitor(&uart1, &mut guard);
        let debug = Arc::new(Mutex::new(String::new()));
        collect(uart1.try_clone().expect("UART1 socket"), Arc::clone(&debug));
        monitor
            .write_all(b"cont\n")
            .expect("cont on the QEMU monitor");
        Qemu {
            child: guard.child.take().expect("child"),
            monitor,
            pty,
            _keeper: keeper,
            uart1,
            debug,
            output: log,
            _dir: dir,
        }
    }

    /// The physical-presence signal: an `M` on UART1; returns once the firmware has
    /// confirmed it there.
    pub fn apply_presence(&mut self) {
        let confirmations = |d: &Mutex<String>| {
            d.lock()
                .map(|s| s.matches("magnet applied").count())
                .unwrap_or(0)
        };
        let before = confirmations(&self.debug);
        self.uart1.write_all(b"M").expect("write to UART1");
        let deadline = Instant::now() + PRESENCE_LIMIT;
        while confirmations(&self.debug) == before {
            assert!(
                Instant::now() < deadline,
                "the firmware did not confirm the presence signal within {PRESENCE_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (up to `limit`) until the firmware's debug UART has printed `text` `count`
    /// times in all; returns what it printed.
    pub fn wait_debug(&self, text: &str, count: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let debug = self.debug.lock().map(|s| s.clone()).unwrap_or_default();
            if debug.matches(text).count() >= count {
                return debug;
            }
            assert!(
                Instant::now() < deadline,
                "the firmware did not print {text:?} ({count}×) within {limit:?}; debug UART:\n{debug}\nQEMU:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pty to open as the serial port.
    pub fn port(&self) -> &str {
        &self.pty
    }

    /// Stops QEMU and returns what the firmware printed on its debug UART.
    pub fn stop(mut self) -> String {
        self.shut_down();
        self.debug.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What QEMU wrote on stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn shut_down(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.monitor.write_all(b"quit\n");
            let deadline = Instant::now() + QUIT_LIMIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// QEMU while it is still starting: killed if the start fails.
struct Partial {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Partial {
    fn log(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads one of QEMU's output pipes on a thread until it closes (so QEMU never blocks on
/// a full pipe): sends the pty path once it is printed (stdout or stderr, depending on
/// the QEMU version), and keeps every line for diagnostics.
fn watch(pipe: impl Read + Send + 'static, pty: mpsc::Sender<String>, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            // "char device redirected to /dev/pts/3 (label serial0)"
            if let Some(rest) = line.split("redirected to ").nth(1) {
                if line.contains("serial0") {
                    let path = rest.split_whitespace().next().unwrap_or_default();
                    let _ = pty.send(path.to_string());
                }
            }
            if let Ok(mut log) = log.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
}

/// Collects what QEMU sends on `socket` (UART1) until it closes.
fn collect(mut socket: UnixStream, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            match socket.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut s) = into.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            }
        }
    });
}

/// Connects to one of QEMU's unix sockets, waiting (bounded) for QEMU to create it.
fn connect_monitor(socket: &Path, guard: &mut Partial) -> UnixStream {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!(
                "QEMU monitor {} not reachable within {START_LIMIT:?}: {e}; output:\n{}",
                socket.display(),
                guard.log()
            ),
            Err(_) => {
                if let Some(Ok(Some(status))) = guard.child.as_mut().map(|c| c.try_wait()) {
                    panic!("QEMU exited ({status}); output:\n{}", guard.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The firmware's stack high-water marks, from its debug UART: (at boot, deepest while
/// serving), in bytes.
pub fn stack_marks(debug: &str) -> (Option<usize>, Option<usize>) {
    let number = |line: &str, key: &str| -> Option<usize> {
        line.split(key)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let boot = debug
        .lines()
        .find_map(|l| number(l, "boot stack high-water "));
    let serving = debug
        .lines()
        .filter_map(|l| number(l, "serving stack high-water "))
        .max();
    (boot, serving)
}
