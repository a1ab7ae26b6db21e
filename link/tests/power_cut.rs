//! Power cuts in the middle of a schedule write, a refill and a bolus, at random points in
//! the emulated flash, seen from the host: the pump (the real request server and pump
//! core on RAM-backed NOR flash) dies mid-request and boots again from its flash; the
//! host client, over an in-memory link on a paused clock, must report the outcome as
//! uncertain, never hang, and its next commands must report the true state.
//!
//! After every cut: the stored prescription is the old one or the new one, whole (read
//! from the flash independently of the pump); the event log is readable; the host reads
//! back exactly what the flash holds; nothing was done twice (bolus and prescription
//! entries of the log equal the host's record, uncertain outcomes reconciled); the
//! reservoir never reads above what was in the pump.
//!
//! `device/tests/pump_power_cut.rs` cuts at every operation of one write and one refill
//! inside the pump core; this test adds the request server, the host and its session, the
//! bolus, and a long history (one pump lives through every cut, so the flash rings wrap).

#[macro_use]
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::LogFollower;
use thecal_device::link::server::Server;
use thecal_device::pump::{Pump, RESERVE_NL};
use thecal_device::store::flash::RamFlash;
use thecal_device::store::Storage;
use thecal_device::store::{FlashStore, FLASH_SIZE};
use thecal_device::therapy::motor::CountingMotor;
use thecal_host::{Client, ClientConfig, Error, RoleKey};
use thecal_link::rng::Rng;
use thecal_protocol::message::{
    BolusKind, BolusRequest, PrescriptionRecord, ResetCause, Response, Role,
};
use thecal_protocol::prescription::{PrescriptionDraft, TherapyMode};
use thecal_protocol::session::Ephemeral;
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms, NanogramsPerDay, Nanolitres};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

const SECRET: [u8; 32] = [0x5A; 32];
const BOOT: Timestamp = Timestamp(1_000_000);
/// Cuts of each kind of operation.
const CUTS: u32 = 1_000;

type Store = FlashStore<RamFlash<FLASH_SIZE>>;
type DemoServer = Server<Store, CountingMotor>;

fn boot(store: Store, now: Timestamp) -> Box<DemoServer> {
    let factory = thecal_device::pump::demo::demo_factory(
        Timestamp(1_795_392_000_000),
        thecal_device::pump::demo::demo_prescription().unwrap(),
    );
    let pump = Pump::boot(
        thecal_device::pump::demo::demo_info(7),
        factory,
        store,
        CountingMotor::default(),
        now,
        ResetCause::PowerOn,
    );
    Box::new(Server::new(pump))
}

/// The pump, its clock and the power-cut switch.
struct Device {
    server: Option<Box<DemoServer>>,
    origin: Instant,
    /// Cut power after this many flash operations of the next request.
    arm: Option<u64>,
    /// Whether power failed during the last request.
    died: bool,
    /// Flash operations the last uncut request took.
    ops: u64,
    /// The flash as it was when the pump died (read independently afterwards).
    dead_flash: Option<Box<RamFlash<FLASH_SIZE>>>,
}

impl Device {
    fn now(&self) -> Timestamp {
        BOOT.plus_ms(self.origin.elapsed().as_millis() as u64)
    }

    fn server(&mut self) -> &mut DemoServer {
        self.server.as_mut().unwrap()
    }

    fn flash(&mut self) -> &mut RamFlash<FLASH_SIZE> {
        self.server().pump_mut().storage_mut().flash_mut()
    }

    fn receive(&mut self, bytes: &[u8]) -> Vec<u8> {
        let now = self.now();
        self.server().tick(now);
        let armed = self.arm.take();
        if let Some(k) = armed {
            self.flash().cut_power_after(k);
        }
        let before = self.flash().stats().ops();
        let mut out = Vec::new();
        self.server()
            .receive(now, bytes, &mut |b| out.extend_from_slice(b));
        if self.flash().is_powered_off() {
            // The processor died with the flash: nothing was sent.
            self.died = true;
            self.reboot(now);
            return Vec::new();
        }
        if armed.is_some() {
            self.flash().disarm();
            self.ops = self.flash().stats().ops() - before;
        }
        out
    }

    fn reboot(&mut self, now: Timestamp) {
        let pump = self.server.take().unwrap().into_pump();
        let mut flash = pump.into_storage().into_inner();
        flash.reboot();
        self.dead_flash = Some(Box::new(flash.clone()));
        self.server = Some(boot(FlashStore::new(flash).unwrap(), now));
    }
}

/// Serves the host until it goes away. The pump is brought up to date when bytes arrive
/// (one tick covers the time since the last: the core delivers what was due), so hours
/// between operations cost nothing.
async fn serve(io: DuplexStream, device: Rc<RefCell<Device>>) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = [0u8; 1024];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let out = device.borrow_mut().receive(&buf[..n]);
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn drafts() -> Vec<PrescriptionDraft> {
    let demo = thecal_device::pump::demo::demo_prescription()
        .unwrap()
        .draft()
        .clone();
    let mut flat = demo.clone();
    flat.mode = TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(180),
    };
    vec![demo, flat]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Refill,
    Bolus,
}

/// What the host knows.
struct Host {
    client: Client<DuplexStream>,
    log: LogFollower,
    record: PrescriptionRecord,
    boluses: Vec<(BolusKind, u32)>,
    changes: Vec<(u32, u32)>,
    uncertain: u32,
}

impl Host {
    /// The host's next command after a cut: it must report what the flash holds.
    async fn check_true_state(
        &mut self,
        device: &Rc<RefCell<Device>>,
        op: Op,
        old: &PrescriptionRecord,
    ) {
        let read = read!(self.client, prescription());
        // Old or new, whole: read from the dead pump's flash by a store of our own.
        if let Some(flash) = device.borrow_mut().dead_flash.take() {
            let stored = FlashStore::new(*flash)
                .unwrap()
                .load()
                .expect("the flash loads after a cut")
                .prescription
                .expect("a prescription is stored");
            assert_eq!(
                (read.revision, read.written_at, read.prescription.draft()),
                (stored.revision, stored.written_at, &stored.draft),
                "the host does not read what the flash holds"
            );
        }
        if read.revision == old.revision {
            assert_eq!(
                read.prescription, old.prescription,
                "the old prescription, changed"
            );
        } else {
            assert_eq!(op, Op::Write, "the revision moved without a write");
            assert_eq!(read.revision.0, old.revision.0 + 1);
            self.changes.push((old.revision.0, read.revision.0));
        }
        let status = read!(self.client, status());
        assert_eq!(status.revision, read.revision);
        assert!(status.bolus.is_none() || op == Op::Bolus);
        self.record = read;
    }
}

async fn run(host_io: DuplexStream, device: Rc<RefCell<Device>>, key: RoleKey, seed: u64) {
    let config = ClientConfig {
        timeout: Duration::from_millis(400),
        retries: 2,
    };
    let (mut client, _) = Client::connect(host_io, config, key).await.unwrap();
    let log = LogFollower::at_end(&mut client).await;
    let record = read!(client, prescription());
    let mut host = Host {
        client,
        log,
        record,
        boluses: Vec::new(),
        changes: Vec::new(),
        uncertain: 0,
    };
    let drafts = drafts();
    let mut rng = Rng::new(seed);
    let mut cuts = [0u32; 3];
    // Cut points are drawn below a limit: 5/4 of the most flash operations an uncut run
    // of the kind took (the first run of each kind is uncut, to measure).
    let mut limit = [0u64; 3];
    let mut n = 0u32;
    let mut unlogged = 0u32;
    let mut refused = 0u32;
    while cuts.iter().any(|&c| c < CUTS) {
        n += 1;
        // The kinds that still need cuts, in turn at random.
        let open: Vec<usize> = (0..3).filter(|&i| cuts[i] < CUTS).collect();
        let i = open[rng.below(open.len() as u64) as usize];
        let op = [Op::Write, Op::Refill, Op::Bolus][i];
        // A read first: it renews the session a previous cut ended, so the cut lands in
        // the operation itself.
        let mut reservoir_before = read!(host.client, reservoir()).volume.0;
        if reservoir_before < 5_000_000 {
            // Keep the pump from running dry (not a cut point).
            let rev = host.record.revision;
            match host.client.refill(rev, Nanolitres::from_ml(18), None).await {
                Ok(_) => {}
                Err(e) => panic!("iteration {n}: a refill without a cut failed: {e}"),
            }
            reservoir_before = read!(host.client, reservoir()).volume.0;
        }
        let old = host.record.clone();
        let k = if limit[i] == 0 {
            u64::MAX
        } else {
            rng.below(limit[i])
        };
        {
            let mut d = device.borrow_mut();
            d.arm = Some(k);
            d.died = false;
        }
        let volume = Nanolitres::from_ml(15 + (n % 5));
        let dose = 125 * (4 + n % 16);
        let bound = common::call_bound(config);
        let result: Result<Option<(BolusKind, u32)>, Error> = tokio::time::timeout(bound, async {
            match op {
                Op::Write => {
                    let next = drafts
                        .iter()
                        .find(|d| *d != old.prescription.draft())
                        .unwrap()
                        .clone();
                    host.client
                        .write_prescription(next, old.revision)
                        .await
                        .map(|_| None)
                }
                Op::Refill => host
                    .client
                    .refill(old.revision, volume, None)
                    .await
                    .map(|_| None),
                Op::Bolus => host
                    .client
                    .bolus(BolusRequest::Single {
                        dose: Nanograms(dose),
                        duration: Minutes(1),
                    })
                    .await
                    .map(|b| Some((b.kind, b.dose.0))),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("iteration {n}: the host hung"));
        let died = device.borrow().died;
        if died {
            cuts[i] += 1;
            match &result {
                Err(Error::Uncertain { .. }) => host.uncertain += 1,
                other => panic!("iteration {n}: {op:?} cut at {k}: the host said {other:?}"),
            }
        } else {
            let ops = device.borrow().ops;
            limit[i] = limit[i].max(ops * 5 / 4 + 1);
            match &result {
                Ok(Some(b)) => host.boluses.push(*b),
                Ok(None) => {}
                Err(Error::Refused { .. }) => refused += 1,
                Err(e) => panic!("iteration {n}: {op:?} without a cut failed: {e}"),
            }
        }
        host.check_true_state(&device, op, &old).await;
        // The log is readable and says what happened; a bolus whose answer was lost is
        // reconciled from it.
        host.log.catch_up(&mut host.client).await;
        let extra = host.log.boluses.len() as i64 - host.boluses.len() as i64;
        assert!(
            extra == 0 || (died && op == Op::Bolus && extra == 1),
            "iteration {n}: {extra} boluses the host does not know of"
        );
        if extra == 1 {
            host.boluses.push(*host.log.boluses.last().unwrap());
        }
        assert_eq!(host.log.boluses, host.boluses, "iteration {n}");
        // A cut between storing a prescription and logging it leaves the change in force
        // (the host reads it back) without its log entry: the log loses at most the entry
        // being written. Only then may an entry be missing.
        if died && host.log.changes.len() + 1 == host.changes.len() {
            let missing = host.changes.pop().unwrap();
            assert_eq!(missing.0, old.revision.0, "iteration {n}");
            unlogged += 1;
        }
        assert_eq!(host.log.changes, host.changes, "iteration {n}");
        // The reservoir never reads above what was in the pump.
        let after = read!(host.client, reservoir()).volume.0;
        let refilled = op == Op::Refill && after > reservoir_before;
        if refilled {
            assert!(
                after <= volume.0 && after + 2 * RESERVE_NL >= volume.0,
                "iteration {n}: {after}"
            );
        } else {
            assert!(
                after <= reservoir_before,
                "iteration {n}: {reservoir_before} -> {after}"
            );
        }
        // An hour of therapy before the next operation: the bolus ends, and resets stay far
        // enough apart that what each one must count as delivered (the reservation it may
        // have used) leaves room under the daily limit.
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    }
    eprintln!(
        "power cuts: {n} operations, {} + {} + {} cuts (write, refill, bolus; cut points drawn \
         below {:?} flash operations), {} uncertain outcomes, {} boluses and {} prescription changes \
         checked against the log ({} changes in force whose log entry the cut took), {} resets \
         logged, {} refusals",
        cuts[0], cuts[1], cuts[2], limit, host.uncertain, host.boluses.len(), host.changes.len(),
        unlogged, host.log.resets, refused
    );
    assert_eq!(host.log.resets, cuts.iter().sum::<u32>());
}

#[tokio::test(start_paused = true)]
async fn power_cuts_during_writes_refills_and_boluses() {
    let origin = Instant::now();
    let mut server = boot(FlashStore::new(RamFlash::new()).unwrap(), BOOT);
    // The factory step: a static key pair from "entropy", then provisioning by key
    // agreement; the clinician's key of epoch 1 is then the pump's own.
    server.stir(&SECRET);
    let factory = Ephemeral::from_bytes([0xA5; 32]);
    assert!(matches!(
        server.pump_mut().provision(BOOT, &factory.public(), false),
        Response::Provisioned { .. }
    ));
    let (epoch, clinician_key) = server
        .pump()
        .role_key(Role::Clinician)
        .expect("provisioned");
    let device = Rc::new(RefCell::new(Device {
        server: Some(server),
        origin,
        arm: None,
        died: false,
        ops: 0,
        dead_flash: None,
    }));
    let key = RoleKey {
        role: Role::Clinician,
        epoch,
        key: clinician_key,
    };
    let (host_io, device_io) = tokio::io::duplex(64 * 1024);
    let serving = serve(device_io, Rc::clone(&device));
    tokio::select! {
        () = run(host_io, Rc::clone(&device), key, 5) => {}
        () = serving => panic!("the device stopped serving"),
    }
}
