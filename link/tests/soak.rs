//! Soak: thousands of mixed commands from the host client through the lossy link to the
//! simulated pump. Every command ends in success or a clear error; nothing is done twice
//! (the pump's event log — bolus entries and prescription changes — equals the host's
//! record of what succeeded, with every "outcome uncertain" reconciled by reading back);
//! no answer is matched to the wrong request (the client would report an unexpected
//! answer; reads are checked against what the host knows).
//!
//! `THECAL_SOAK_COMMANDS` sets the number of commands of the main soak (default 10 000;
//! docs/BENCHMARKS.md, "Soak", has the figures).

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{through, LogFollower};
use thecal_host::client::ClientCounters;
use thecal_host::{Client, ClientConfig, Error};
use thecal_link::impair::Impairment;
use thecal_link::rng::Rng;
use thecal_link::LinkConfig;
use thecal_protocol::message::{BolusKind, BolusRequest, Refusal, Revision};
use thecal_protocol::prescription::{PrescriptionDraft, TherapyMode};
use thecal_protocol::units::{Minutes, Nanograms, NanogramsPerDay};
use tokio::io::DuplexStream;

/// Three prescriptions of the simulator's drug and concentration to write in turn.
fn drafts() -> Vec<PrescriptionDraft> {
    let demo = thecal_device::pump::demo::demo_prescription()
        .unwrap()
        .draft()
        .clone();
    let mut lower = demo.clone();
    if let TherapyMode::Flexible { days } = &mut lower.mode {
        days[0][0].dose = NanogramsPerDay::from_ug(190);
    }
    let mut flat = demo.clone();
    flat.mode = TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(180),
    };
    vec![demo, lower, flat]
}

/// What the host knows happened.
#[derive(Debug, Default)]
struct Record {
    /// Revision in force.
    revision: u32,
    /// Index of the draft in force.
    draft: usize,
    /// Prescription changes that happened (old, new), in order.
    changes: Vec<(u32, u32)>,
    /// Boluses that happened (kind, dose ng), in order.
    boluses: Vec<(BolusKind, u32)>,
    /// Counts.
    ok: u64,
    refused: u64,
    read_timeouts: u64,
    uncertain: u64,
    uncertain_happened: u64,
}

struct Soak {
    client: Client<DuplexStream>,
    log: LogFollower,
    record: Record,
    drafts: Vec<PrescriptionDraft>,
    rng: Rng,
    n: u64,
}

impl Soak {
    async fn command(&mut self) {
        self.n += 1;
        let pick = self.rng.below(100);
        match pick {
            0..=9 => self.step_log().await,
            10..=59 => self.read().await,
            60..=74 => self.write().await,
            75..=94 => self.bolus(false).await,
            _ => self.bolus(true).await,
        }
        if self.n.is_multiple_of(100) {
            self.log.catch_up(&mut self.client).await;
            self.check_log();
        }
    }

    async fn step_log(&mut self) {
        match self.log.step(&mut self.client).await {
            Ok(_) => self.record.ok += 1,
            Err(e) => self.read_error(e),
        }
    }

    async fn read(&mut self) {
        let c = &mut self.client;
        let r: Result<(), Error> = match self.rng.below(8) {
            0 => c.status().await.map(|s| {
                assert_eq!(
                    s.revision.0, self.record.revision,
                    "status of another pump state"
                );
            }),
            1 => c.prescription().await.map(|p| {
                assert_eq!(p.revision.0, self.record.revision);
                assert_eq!(p.prescription.draft(), &self.drafts[self.record.draft]);
            }),
            2 => c.battery().await.map(drop),
            3 => c.reservoir().await.map(drop),
            4 => c.alarms().await.map(drop),
            5 => c.link_stats().await.map(drop),
            6 => c.identify().await.map(drop),
            _ => c.ping().await.map(drop),
        };
        match r {
            Ok(()) => self.record.ok += 1,
            Err(e) => self.read_error(e),
        }
    }

    fn read_error(&mut self, e: Error) {
        match e {
            Error::Timeout { .. } | Error::SessionExpired { .. } => self.record.read_timeouts += 1,
            other => panic!("command {}: a read failed unclearly: {other}", self.n),
        }
    }

    async fn write(&mut self) {
        let next = (self.record.draft + 1 + self.rng.below(2) as usize) % self.drafts.len();
        let draft = self.drafts[next].clone();
        let expected = Revision(self.record.revision);
        match self
            .client
            .write_prescription(draft.clone(), expected)
            .await
        {
            Ok(revision) => {
                assert_eq!(revision.0, expected.0 + 1, "a write skipped a revision");
                self.happened_write(next);
                self.record.ok += 1;
            }
            Err(Error::Refused { refusal, .. }) => {
                assert!(
                    !matches!(refusal, Refusal::RevisionMismatch { .. }),
                    "command {}: the pump's revision is not the host's: {refusal}",
                    self.n
                );
                self.record.refused += 1;
            }
            Err(e) => {
                self.uncertain(&e);
                // Reconcile: the revision says whether the write happened.
                let p = read!(self.client, prescription());
                if p.revision.0 == expected.0 + 1 {
                    assert_eq!(p.prescription.draft(), &draft);
                    self.happened_write(next);
                    self.record.uncertain_happened += 1;
                } else {
                    assert_eq!(p.revision, expected, "command {}: {e}", self.n);
                }
            }
        }
    }

    fn happened_write(&mut self, draft: usize) {
        let old = self.record.revision;
        self.record.changes.push((old, old + 1));
        self.record.revision = old + 1;
        self.record.draft = draft;
    }

    async fn bolus(&mut self, patient: bool) {
        // A dose of its own (a whole number of 125 ng strokes) so log entries match up.
        let dose = 125 * (8 + (self.n % 56) as u32);
        let (kind, result) = if patient {
            (BolusKind::Patient, self.client.patient_bolus().await)
        } else {
            let bolus = BolusRequest::Single {
                dose: Nanograms(dose),
                duration: Minutes(1),
            };
            (BolusKind::Single, self.client.bolus(bolus).await)
        };
        match result {
            Ok(report) => {
                assert_eq!(report.kind, kind);
                self.record.boluses.push((kind, report.dose.0));
                self.record.ok += 1;
            }
            Err(Error::Refused { .. }) => self.record.refused += 1,
            Err(e) => {
                self.uncertain(&e);
                // Reconcile: the log says whether the bolus was given.
                self.log.catch_up(&mut self.client).await;
                let extra = self
                    .log
                    .boluses
                    .len()
                    .checked_sub(self.record.boluses.len())
                    .expect("a bolus the host saw succeed is missing from the log");
                assert!(
                    extra <= 1,
                    "command {}: {extra} unexplained boluses",
                    self.n
                );
                if extra == 1 {
                    let (k, d) = *self.log.boluses.last().unwrap();
                    assert_eq!(k, kind);
                    if !patient {
                        assert_eq!(d, dose);
                    }
                    self.record.boluses.push((k, d));
                    self.record.uncertain_happened += 1;
                }
            }
        }
    }

    fn uncertain(&mut self, e: &Error) {
        match e {
            Error::Uncertain { .. } | Error::Timeout { .. } | Error::SessionExpired { .. } => {
                self.record.uncertain += 1;
            }
            other => panic!(
                "command {}: a therapy change failed unclearly: {other}",
                self.n
            ),
        }
    }

    /// Nothing done twice, nothing done unrecorded.
    fn check_log(&self) {
        let n = self.log.boluses.len().min(self.record.boluses.len());
        assert_eq!(self.log.boluses[..n], self.record.boluses[..n]);
        assert!(
            self.log.boluses.len() <= self.record.boluses.len(),
            "the pump gave boluses the host does not know of: {:?}",
            &self.log.boluses[n..]
        );
        assert_eq!(
            self.log.changes,
            self.record.changes[..self.log.changes.len()]
        );
    }
}

/// Runs the soak; returns the client's counters.
async fn soak(commands: u64, link: LinkConfig, config: ClientConfig) -> ClientCounters {
    let seed = link.seed;
    let sim = common::sim(3_600, seed);
    let started = Instant::now();
    let (mut client, link) = through(&sim, link, config).await;
    let log = LogFollower::at_end(&mut client).await;
    let p = read!(client, prescription());
    let drafts = drafts();
    let draft = drafts
        .iter()
        .position(|d| d == p.prescription.draft())
        .expect("the simulator starts with the demo prescription");
    let mut soak = Soak {
        client,
        log,
        record: Record {
            revision: p.revision.0,
            draft,
            ..Record::default()
        },
        drafts,
        rng: Rng::new(seed),
        n: 0,
    };
    for _ in 0..commands {
        let bound = common::call_bound(config) * 3;
        tokio::time::timeout(bound, soak.command())
            .await
            .unwrap_or_else(|_| panic!("command {} hung", soak.n + 1));
    }
    soak.log.catch_up(&mut soak.client).await;
    soak.check_log();
    // Exactly once: the log holds every bolus and change the host saw succeed, and no more.
    assert_eq!(soak.log.boluses, soak.record.boluses);
    assert_eq!(soak.log.changes, soak.record.changes);
    let pump = read!(soak.client, link_stats());
    let counters = soak.client.counters();
    let elapsed = started.elapsed();
    let link = link.unplug().await;
    let r = &soak.record;
    eprintln!(
        "soak: {commands} commands in {:.1} s ({:.0}/s): {} ok, {} refused, {} read timeouts, \
         {} uncertain ({} had happened); {} boluses, {} prescription changes; \
         client: {} retries, {} stale, {} bad frames, {} sessions; pump: {} replays from the \
         reply cache, {} bad CRC; link: {} + {} frames dropped, {} + {} bits flipped",
        elapsed.as_secs_f64(),
        commands as f64 / elapsed.as_secs_f64(),
        r.ok,
        r.refused,
        r.read_timeouts,
        r.uncertain,
        r.uncertain_happened,
        r.boluses.len(),
        r.changes.len(),
        counters.retries,
        counters.stale,
        counters.bad_frames,
        counters.sessions,
        pump.replays,
        pump.bad_crc,
        link.to_device.frames_dropped,
        link.to_programmer.frames_dropped,
        link.to_device.bits_flipped,
        link.to_programmer.bits_flipped,
    );
    assert!(
        r.boluses.len() > 10 && r.changes.len() > 10,
        "the soak exercised too little"
    );
    drop(soak);
    sim.shutdown().unwrap();
    counters
}

fn commands() -> u64 {
    std::env::var("THECAL_SOAK_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_commands_through_one_percent_frame_loss_and_1e_5_ber() {
    let impairment = Impairment {
        frame_drop: 0.01,
        ber: 1e-5,
        ..Impairment::CLEAN
    };
    let config = ClientConfig {
        timeout: Duration::from_millis(200),
        retries: 2,
    };
    soak(commands(), LinkConfig::symmetric(impairment, 1), config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harsh_link_ends_in_reconciled_uncertain_outcomes() {
    // 10 % frame loss and a single retry: many commands lose every attempt.
    let impairment = Impairment {
        frame_drop: 0.10,
        ber: 1e-4,
        ..Impairment::CLEAN
    };
    let config = ClientConfig {
        timeout: Duration::from_millis(150),
        retries: 1,
    };
    soak(300, LinkConfig::symmetric(impairment, 2), config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answers_are_never_taken_for_the_next_request() {
    // Answers delayed by up to 150 ms against a 100 ms timeout: most requests are sent
    // again, and the answers to the extra attempts arrive while the next request waits.
    let late = Impairment {
        jitter: 150_000_000,
        frame_drop: 0.01,
        ..Impairment::CLEAN
    };
    let link = LinkConfig {
        to_device: Impairment::CLEAN,
        to_programmer: late,
        seed: 3,
    };
    let config = ClientConfig {
        timeout: Duration::from_millis(100),
        retries: 3,
    };
    let counters = soak(200, link, config).await;
    assert!(counters.stale > 20, "too few late answers: {counters:?}");
}
