//! Shared pieces of the soak and fault tests: the simulated pump behind the lossy link,
//! the host client on the programmer side, and a follower of the pump's event log that
//! counts what the pump really did.
#![allow(dead_code)]

use std::time::Duration;

use thecal_device::sim::{SimOptions, Simulator};
use thecal_host::{Client, ClientConfig, Error, RoleKey};
use thecal_link::impair::Impairment;
use thecal_link::{Link, LinkConfig};
use thecal_protocol::message::{Event, LogEntry, Role};
use tokio::io::DuplexStream;

/// A simulated pump on a virtual clock `speed` times real time.
pub fn sim(speed: u32, seed: u64) -> Simulator {
    Simulator::start(SimOptions {
        speed,
        seed,
        ..SimOptions::default()
    })
    .expect("the simulator starts")
}

/// The clinician's key of `sim`.
pub fn clinician(sim: &Simulator) -> RoleKey {
    let (epoch, key) = sim
        .role_key(Role::Clinician)
        .expect("the simulator is provisioned");
    RoleKey {
        role: Role::Clinician,
        epoch,
        key,
    }
}

/// The host client, connected (identified, session open) to `sim` through a lossy link
/// with `impairment` both ways. The handshake itself crosses the lossy link, so it is
/// tried a few times.
pub async fn through_link(
    sim: &Simulator,
    impairment: Impairment,
    seed: u64,
    config: ClientConfig,
) -> (Client<DuplexStream>, Link) {
    through(sim, LinkConfig::symmetric(impairment, seed), config).await
}

/// [`through_link`] with each direction's impairment given.
pub async fn through(
    sim: &Simulator,
    link: LinkConfig,
    config: ClientConfig,
) -> (Client<DuplexStream>, Link) {
    for attempt in 0..5 {
        let device = thecal_host::serial::open(&sim.path().display().to_string(), 115_200)
            .expect("the simulator's pty opens");
        let (host, programmer) = tokio::io::duplex(64 * 1024);
        let config_n = LinkConfig {
            seed: link.seed + attempt,
            ..link
        };
        let link = Link::spawn(programmer, device, config_n, None);
        match Client::connect(host, config, clinician(sim)).await {
            Ok((client, _)) => return (client, link),
            Err(e) => {
                eprintln!("connect attempt {attempt} failed: {e}");
                link.unplug().await;
            }
        }
    }
    panic!("no session through the link after 5 attempts");
}

/// Runs a read until it gets an answer (a lossy link may eat every attempt of one call):
/// `read!(client, status())`.
macro_rules! read {
    ($client:expr, $($call:tt)+) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            match $client.$($call)+.await {
                Ok(v) => break v,
                Err(thecal_host::Error::Timeout { .. } | thecal_host::Error::SessionExpired { .. })
                    if tries < 20 => {}
                Err(e) => panic!("{} failed after {tries} tries: {e}", stringify!($($call)+)),
            }
        }
    }};
}

/// What the pump's event log says happened, read page by page as the test goes.
#[derive(Debug, Default)]
pub struct LogFollower {
    /// Index of the next entry to read.
    pub cursor: u32,
    /// Bolus entries seen (kind, dose in ng).
    pub boluses: Vec<(thecal_protocol::message::BolusKind, u32)>,
    /// Prescription changes seen (old, new revision).
    pub changes: Vec<(u32, u32)>,
    /// Resets seen.
    pub resets: u32,
    /// Entries read.
    pub entries: u64,
}

impl LogFollower {
    /// Starts at the pump's current end of log (earlier events are not counted).
    pub async fn at_end(client: &mut Client<DuplexStream>) -> Self {
        let page = read!(client, log_page(u32::MAX, 1));
        LogFollower {
            cursor: page.next,
            ..Self::default()
        }
    }

    /// Reads one page from the cursor; `true` when the end was reached.
    pub async fn step(&mut self, client: &mut Client<DuplexStream>) -> Result<bool, Error> {
        let page = client.log_page(self.cursor, 8).await?;
        assert!(
            page.oldest <= self.cursor,
            "the pump dropped log entries {}..{} before the test read them",
            self.cursor,
            page.oldest
        );
        let from = self.cursor;
        for entry in page.entries.iter().filter(|e| e.index >= from) {
            assert_eq!(
                entry.index, self.cursor,
                "log entries out of order: {entry:?}"
            );
            self.note(entry);
            self.cursor += 1;
        }
        Ok(self.cursor >= page.next)
    }

    /// Reads to the end of the log.
    pub async fn catch_up(&mut self, client: &mut Client<DuplexStream>) {
        for _ in 0..10_000 {
            match self.step(client).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(Error::Timeout { .. } | Error::SessionExpired { .. }) => {}
                Err(e) => panic!("reading the log failed: {e}"),
            }
        }
        panic!("the log never ended");
    }

    fn note(&mut self, entry: &LogEntry) {
        self.entries += 1;
        match entry.event {
            Event::Bolus { kind, dose, .. } => self.boluses.push((kind, dose.0)),
            Event::PrescriptionChanged { old, new, .. } => self.changes.push((old.0, new.0)),
            Event::Reset { .. } => self.resets += 1,
            _ => {}
        }
    }
}

/// A bound on how long a call may take: every attempt times out, plus one session
/// renewal and some slack. Used to prove "never hangs", not to measure speed.
pub fn call_bound(config: ClientConfig) -> Duration {
    config.timeout * (config.retries + 1) * 3 + Duration::from_secs(10)
}
