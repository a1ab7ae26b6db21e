//! `thecal-sim`: the pump core behind a pseudo-terminal, on a virtual clock.
//!
//! [`Simulator::start`] runs the very same [`crate::link::server::Server`] and
//! [`crate::pump::Pump`] as the firmware, on its own thread, with a counting motor, a
//! RAM or file-backed NOR flash (`--state FILE`: the pump survives restarts) and a
//! clock that can run `speed` times faster than real time. The programmer opens
//! [`Simulator::path`] like any serial port.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use thecal_protocol::message::{ResetCause, Response, Role};
use thecal_protocol::session::{Ephemeral, ProvisionKeys, ProvisionTranscript, Secret};
use thecal_protocol::time::Timestamp;

use crate::link::server::Server;
use crate::pump::demo;
use crate::pump::Pump;
use crate::store::StoreError;
use crate::therapy::motor::CountingMotor;
use crate::update::Boot;
use slots::{SimUpdater, SlotFlash};

mod clock;
pub mod keys;
pub mod slots;
mod store;

pub use clock::VirtualClock;
pub use store::SimStore;

/// Faults the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The motor stalls after a few dozen strokes.
    MotorStall,
    /// Every flash write fails.
    Storage,
    /// The battery is 20 days from end of service.
    LowBattery,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "motor-stall" => Ok(Fault::MotorStall),
            "storage" => Ok(Fault::Storage),
            "low-battery" => Ok(Fault::LowBattery),
            other => Err(format!(
                "unknown fault '{other}' (expected motor-stall, storage or low-battery)"
            )),
        }
    }
}

/// How to run the simulator.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// File-backed flash; `None` keeps the state in RAM for this run only.
    pub state: Option<PathBuf>,
    /// Virtual clock speed (0 or 1: real time).
    pub speed: u32,
    /// Fault to inject.
    pub fault: Option<Fault>,
    /// Seed for the serial number and fault timing.
    pub seed: u64,
    /// A stable symlink to the pty.
    pub link: Option<PathBuf>,
    /// Where to write the role key files: default beside the state file, or a fresh
    /// temporary directory without one.
    pub keys: Option<PathBuf>,
    /// Apply the physical-presence signal (the magnet) at start: emergency access for
    /// five minutes (see [`Simulator::apply_presence`]).
    pub magnet: bool,
    /// A firmware image swapped in "fails its self-test": the simulator restarts
    /// without confirming it, and the bootloader rolls it back.
    pub update_self_test_fails: bool,
}

/// A running simulated pump.
pub struct Simulator {
    /// A key directory the simulator created for itself (removed at shutdown).
    temp_keys: Option<PathBuf>,
    serial: String,
    keys: Vec<(Role, u32, Secret)>,
    key_files: Vec<(Role, PathBuf)>,
    path: PathBuf,
    link: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    presence: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Simulator {
    /// Boots the pump and starts serving its pty.
    pub fn start(opts: SimOptions) -> io::Result<Simulator> {
        let (mut master, mut slave) = TTYPort::pair().map_err(io::Error::other)?;
        close_on_exec(&master)?;
        close_on_exec(&slave)?;
        let path = PathBuf::from(
            slave
                .name()
                .ok_or_else(|| io::Error::other("pty has no name"))?,
        );
        // Let the programmer open the slave end exclusively; we only keep the master.
        slave.set_exclusive(false).map_err(io::Error::other)?;
        drop(slave);
        master
            .set_timeout(Duration::from_millis(5))
            .map_err(io::Error::other)?;
        if let Some(link) = &opts.link {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(&path, link)?;
        }
        let sidecar = opts.state.as_ref().map(|p| p.with_extension("clock"));
        let clock = VirtualClock::start(opts.speed, sidecar);
        let store = SimStore::open(opts.state.as_deref(), opts.fault == Some(Fault::Storage))?;
        let slots = SlotFlash::open(opts.state.as_deref())?;
        let mut server = boot(store, &slots, &opts, clock.now(), ResetCause::PowerOn)?;
        server.stir(&keys::random_secret()?);
        let fresh = provision(&mut server, clock.now())?;
        let serial = server.pump().serial().to_string();
        let keys: Vec<(Role, u32, Secret)> = [Role::Clinician, Role::Patient, Role::Service]
            .into_iter()
            .filter_map(|role| server.pump().role_key(role).map(|(e, k)| (role, e, k)))
            .collect();
        let (dir, stem, temporary) = key_location(&opts)?;
        let key_files = keys::write_key_files(&dir, &stem, &serial, &keys, fresh)?;
        let stop = Arc::new(AtomicBool::new(false));
        let presence = Arc::new(AtomicBool::new(opts.magnet));
        let flags = (Arc::clone(&stop), Arc::clone(&presence));
        let thread = std::thread::Builder::new()
            .name("thecal-sim".into())
            .spawn({
                let opts = opts.clone();
                move || run(server, master, clock, &flags, (&slots, &opts))
            })?;
        Ok(Simulator {
            temp_keys: temporary.then(|| dir.clone()),
            serial,
            keys,
            key_files,
            path,
            link: opts.link,
            stop,
            presence,
            thread: Some(thread),
        })
    }

    /// Applies the physical-presence signal (a magnet held over the implant): the pump
    /// opens emergency access and a presence energy budget for five minutes, and logs it.
    /// Returns once the pump has it (at most about a second).
    pub fn apply_presence(&self) {
        self.presence.store(true, Ordering::SeqCst);
        // The serving loop takes it within one read timeout (20 ms).
        for _ in 0..100 {
            if !self.presence.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The pty to open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pump's serial number.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The key of `role` in force at start, and its epoch (what its key file holds).
    pub fn role_key(&self, role: Role) -> Option<(u32, Secret)> {
        self.keys
            .iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, e, k)| (*e, k.duplicate()))
    }

    /// The key file written for `role`.
    pub fn key_file(&self, role: Role) -> Option<&Path> {
        self.key_files
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| p.as_path())
    }

    /// Persists the state and stops.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(dir) = self.temp_keys.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(link) = self.link.take() {
            let _ = std::fs::remove_file(link);
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("simulator thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop_thread();
    }
}

type SimServer = Server<SimStore, CountingMotor, SimUpdater>;

/// Boots the pump: the bootloader over the slots first (a pending swap or a rollback
/// happens here), then the pump from its store, on the firmware version in the active
/// slot; a trial image confirms itself once the pump is up (its "self-test"), unless
/// `update_self_test_fails`.
fn boot(
    store: SimStore,
    slots: &SlotFlash,
    opts: &SimOptions,
    now: Timestamp,
    cause: ResetCause,
) -> io::Result<SimServer> {
    let (updater, _) = slots.boot()?;
    let prescription = demo::demo_prescription()
        .ok_or_else(|| io::Error::other("demo prescription is invalid"))?;
    let mut motor = CountingMotor::default();
    if opts.fault == Some(Fault::MotorStall) {
        motor.stall_after = Some(20 + opts.seed % 40);
    }
    let mut info = demo::demo_info(opts.seed);
    info.firmware = updater.running().version;
    let battery = info.battery;
    let mut pump = Pump::boot(
        info,
        demo::demo_factory(Timestamp(0), prescription),
        store,
        motor,
        now,
        cause,
    );
    if opts.fault == Some(Fault::LowBattery) {
        // Leave 20 days of awake drain: below the 30-day low-battery mark.
        let left = 20 * 24 * battery.per_hour_nah;
        let target = battery.capacity_nah.saturating_sub(left);
        pump.inject_battery_use(target.saturating_sub(pump.battery_used_nah()), now);
    }
    pump.tick(now);
    let mut server = Server::with_firmware(pump, updater, Timestamp(0));
    if server.firmware().boot() == Boot::Trial && !opts.update_self_test_fails {
        server
            .firmware_mut()
            .confirm()
            .map_err(|e| io::Error::other(format!("confirming the new firmware: {e}")))?;
    }
    Ok(server)
}

/// Restarts the pump as firmware would after an update: the state stored, the
/// bootloader run (the swap), the pump booted again from the same store (prescription,
/// reservoir, window and log as they were), sessions and the reply cache lost.
fn restart(
    server: SimServer,
    now: Timestamp,
    slots: &SlotFlash,
    opts: &SimOptions,
) -> io::Result<SimServer> {
    let mut server = server;
    server.tick(now);
    server.pump_mut().save_snapshot(now);
    let (pump, updater) = server.into_parts();
    drop(updater);
    let mut server = boot(pump.into_storage(), slots, opts, now, ResetCause::Software)?;
    server.stir(&keys::random_secret()?);
    Ok(server)
}

/// Provisions a fresh pump as a factory station would: key agreement with its static
/// key from an ephemeral key of the OS random source, checking the pump's confirmation.
/// `true` if it provisioned the pump now.
fn provision(server: &mut SimServer, now: Timestamp) -> io::Result<bool> {
    if server.pump().is_provisioned() {
        return Ok(false);
    }
    let pump_public = server
        .pump()
        .public_key()
        .ok_or_else(|| io::Error::other("the pump has no static key: cannot store secrets"))?;
    let factory = Ephemeral::from_bytes(keys::random_secret()?);
    let ephemeral = factory.public();
    let answer = server.pump_mut().provision(now, &ephemeral, false);
    let Response::Provisioned { confirm, .. } = answer else {
        return Err(io::Error::other(format!(
            "provisioning refused: {answer:?}"
        )));
    };
    let dh = factory
        .agree(&pump_public)
        .ok_or_else(|| io::Error::other("the pump's static key is of low order"))?;
    let serial = server.pump().serial().to_string();
    let agreed = ProvisionKeys::derive(
        &dh,
        &ProvisionTranscript {
            serial: &serial,
            pump_public: &pump_public,
            ephemeral: &ephemeral,
        },
    );
    if !agreed.verify(&confirm) {
        return Err(io::Error::other(
            "the pump's provisioning confirmation does not verify",
        ));
    }
    Ok(true)
}

/// A new directory `PREFIX-<32 random hex digits>` in the system's temporary directory,
/// mode 0700, created here (so nobody can have prepared it, e.g. as a symlink).
pub fn private_temp_dir(prefix: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let random = keys::random_secret()?;
    let tag: String = random.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("{prefix}-{tag}"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// Directory and file-name stem of the key files, and whether the directory is a
/// temporary one of this run.
fn key_location(opts: &SimOptions) -> io::Result<(PathBuf, String, bool)> {
    let stem = |p: &Path| {
        p.file_name()
            .map_or_else(|| "thecal-sim".into(), |n| n.to_string_lossy().into_owned())
    };
    Ok(match (&opts.keys, &opts.state) {
        (Some(dir), Some(state)) => (dir.clone(), stem(state), false),
        (Some(dir), None) => (dir.clone(), "thecal-sim".into(), false),
        (None, Some(state)) => (
            state
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            stem(state),
            false,
        ),
        (None, None) => (private_temp_dir("thecal-sim")?, "thecal-sim".into(), true),
    })
}

/// Marks a pty descriptor close-on-exec.
#[allow(unsafe_code)]
fn close_on_exec(port: &TTYPort) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor the port owns; F_SETFD takes an int flag.
    let rc = unsafe { libc::fcntl(port.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn run(
    mut server: SimServer,
    mut port: TTYPort,
    clock: VirtualClock,
    (stop, presence): &(Arc<AtomicBool>, Arc<AtomicBool>),
    (slots, opts): (&SlotFlash, &SimOptions),
) -> io::Result<()> {
    let mut buf = [0u8; 512];
    let mut last_persist = clock.now();
    while !stop.load(Ordering::SeqCst) {
        let now = clock.now();
        server.tick(now);
        let link_now = Timestamp(clock.real_elapsed_ms());
        if presence.swap(false, Ordering::SeqCst) {
            server.apply_presence(now, link_now);
        }
        server.poll(now, link_now);
        let wait = clock.real_ms_until(server.next_wake()).clamp(1, 20);
        let _ = port.set_timeout(Duration::from_millis(wait));
        match port.read(&mut buf) {
            Ok(n) if n > 0 => {
                let now = clock.now();
                let mut out: Vec<u8> = Vec::new();
                // Sessions time out in real time, whatever the virtual clock's speed.
                let link_now = Timestamp(clock.real_elapsed_ms());
                server.receive_at(now, link_now, buf.get(..n).unwrap_or(&[]), &mut |b| {
                    out.extend_from_slice(b)
                });
                if !out.is_empty() {
                    // A programmer that went away is not an error for the pump.
                    let _ = port.write_all(&out).and_then(|_| port.flush());
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            // EIO while no programmer holds the pty open.
            Err(_) => std::thread::sleep(Duration::from_millis(wait)),
        }
        // A verified image waits and no bolus runs: restart into it (the pump's choice).
        // A trial image that failed its self-test: restart without confirming it (the
        // watchdog of a real pump), and the bootloader rolls back.
        let swap = server
            .firmware()
            .wants_restart(server.pump().bolus_running());
        let failed_trial = server.firmware().boot() == Boot::Trial;
        if swap || failed_trial {
            server = restart(server, clock.now(), slots, opts)?;
        }
        if server.wants_entropy() {
            // Fresh OS entropy for the next handshake's ephemeral key.
            server.stir(&keys::random_secret()?);
        }
        if clock.now().since(last_persist) > 60_000 {
            clock.persist();
            last_persist = clock.now();
        }
    }
    let now = clock.now();
    server.tick(now);
    server.pump_mut().save_snapshot(now);
    clock.persist();
    Ok(())
}

/// Maps a store failure to an I/O error for the simulator's callers.
pub(crate) fn store_error(e: StoreError) -> io::Error {
    io::Error::other(format!("state store: {e}"))
}
