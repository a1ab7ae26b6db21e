//! Shared builders for the pump-level tests: a pump on real (RAM-backed NOR) flash with a
//! counting motor, a few prescriptions, and a loop that drives it the way a platform
//! does (tick at `next_wake`).
#![allow(dead_code)]

pub mod client;

use heapless::{String, Vec};
use thecal_device::pump::{DeviceInfo, Factory, Pump};
use thecal_device::store::flash::RamFlash;
use thecal_device::store::FlashStore;
use thecal_device::therapy::battery::BatteryConfig;
use thecal_device::therapy::motor::CountingMotor;
use thecal_protocol::drug::Drug;
use thecal_protocol::message::{ResetCause, Version};
use thecal_protocol::prescription::{
    DaySteps, PatientBolusRules, Prescription, PrescriptionDraft, Step, TherapyMode,
};
use thecal_protocol::time::{MinuteOfDay, Timestamp, UtcOffset};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, MS_PER_DAY,
};

pub const FLASH: usize = thecal_device::store::FLASH_SIZE;
pub type Store = FlashStore<RamFlash<FLASH>>;
pub type TestPump = Pump<Store, CountingMotor>;

/// 2026-11-23T00:00:00Z, a Monday.
pub const MONDAY: Timestamp = Timestamp(1_795_392_000_000);
/// Device time at boot in these tests (the platform's monotonic clock is arbitrary).
pub const BOOT: Timestamp = Timestamp(1_000_000);
pub const HOUR: u64 = 3_600_000;
pub const DAY: u64 = MS_PER_DAY;

pub fn info(battery: BatteryConfig) -> DeviceInfo {
    let mut model = String::new();
    model.push_str("test pump").unwrap();
    let mut serial = String::new();
    serial.push_str("T0001").unwrap();
    DeviceInfo {
        model,
        serial,
        firmware: Version {
            major: 0,
            minor: 1,
            patch: 0,
        },
        capacity: Nanolitres::from_ml(40),
        battery,
    }
}

pub fn draft(mode: TherapyMode) -> PrescriptionDraft {
    PrescriptionDraft {
        drug: Drug::Baclofen,
        concentration: NanogramsPerMillilitre::from_ug_per_ml(500),
        daily_limit: NanogramsPerDay::from_ug(1_000),
        mode,
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms::from_ug(50),
            lockout: Minutes(60),
            max_per_day: 3,
        }),
        low_reservoir_alarm: Nanolitres::from_ml(2),
    }
}

pub fn continuous(ug_per_day: u32) -> Prescription {
    Prescription::new(draft(TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(ug_per_day),
    }))
    .unwrap()
}

pub fn day(steps: &[(u16, u16, u32)]) -> DaySteps {
    let mut d = Vec::new();
    for &(h, m, ug) in steps {
        d.push(Step {
            start: MinuteOfDay::hm(h, m),
            dose: NanogramsPerDay::from_ug(ug),
        })
        .unwrap();
    }
    d
}

/// 150 µg/day at night, 400 µg/day 07:00–09:30, 250 µg/day 09:30–22:00.
pub fn flexible_day() -> DaySteps {
    day(&[(0, 0, 150), (7, 0, 400), (9, 30, 250), (22, 0, 150)])
}

pub fn flexible() -> Prescription {
    let mut days = Vec::new();
    days.push(flexible_day()).unwrap();
    Prescription::new(draft(TherapyMode::Flexible { days })).unwrap()
}

/// Weekdays as `flexible_day`, weekends a flat 200 µg/day.
pub fn weekly() -> Prescription {
    let mut days = Vec::new();
    for d in 0..7 {
        days.push(if d < 5 {
            flexible_day()
        } else {
            day(&[(0, 0, 200)])
        })
        .unwrap();
    }
    Prescription::new(draft(TherapyMode::Flexible { days })).unwrap()
}

pub fn factory(p: Prescription, volume: Nanolitres) -> Factory {
    Factory {
        prescription: p,
        volume,
        // Wall clock = Monday 00:00 UTC at boot.
        wall_at_zero: Timestamp(MONDAY.0 - BOOT.0),
        utc_offset: UtcOffset(0),
        battery_used_nah: 0,
    }
}

pub fn blank_store() -> Store {
    FlashStore::new(RamFlash::new()).unwrap()
}

pub fn boot(p: Prescription, volume: Nanolitres) -> TestPump {
    boot_with(p, volume, BatteryConfig::default(), blank_store())
}

pub fn boot_with(
    p: Prescription,
    volume: Nanolitres,
    battery: BatteryConfig,
    store: Store,
) -> TestPump {
    Pump::boot(
        info(battery),
        factory(p, volume),
        store,
        CountingMotor::default(),
        BOOT,
        ResetCause::PowerOn,
    )
}

/// Drives the pump like a platform: tick at every wake until `end` (device time).
pub fn run_until(pump: &mut TestPump, end: Timestamp) {
    loop {
        let wake = pump.next_wake();
        if wake > end {
            pump.tick(end);
            return;
        }
        pump.tick(wake);
    }
}

/// Delivered volume in nL, counted at the motor.
pub fn motor_nl(pump: &TestPump) -> u64 {
    pump.motor().strokes * u64::from(thecal_device::therapy::motor::STROKE_NL)
}

/// The test pump's serial number.
pub const SERIAL: &str = "T0001";
/// What the tests' platform stirs into a pump's ephemeral pool at boot (the first stir
/// makes the pump's static key pair).
pub const ENTROPY: [u8; 32] = [0xE7; 32];
/// The factory station's ephemeral secret in the tests.
pub const FACTORY: [u8; 32] = [0xFA; 32];

pub type TestServer = thecal_device::link::server::Server<Store, CountingMotor>;

/// Provisions `pump` as the factory station does (key agreement with its static key, as
/// a plain `Provision` would; handed to the core directly, so the link's budget is
/// untouched), checks the pump's confirmation and returns the device secret. The pump
/// must have its static key (`Server::stir` makes it).
pub fn provision(pump: &mut TestPump, now: Timestamp) -> thecal_protocol::session::Secret {
    let public = pump.public_key().expect("the pump has its static key");
    let factory = client::Provisioner::new(FACTORY);
    let thecal_protocol::message::Request::Provision { ephemeral } = factory.request() else {
        unreachable!()
    };
    let answer = pump.provision(now, &ephemeral, false);
    let (secret, epoch) = factory
        .finish(SERIAL, &public, &answer)
        .unwrap_or_else(|| panic!("provisioning failed: {answer:?}"));
    assert_eq!(epoch, thecal_protocol::session::FIRST_EPOCH);
    secret
}

/// A provisioned pump behind a request server, stirred with [`ENTROPY`] at boot.
pub fn server(p: Prescription, volume: Nanolitres) -> TestServer {
    provisioned_server(p, volume).0
}

/// [`server`], and the device secret the factory agreed with it.
pub fn provisioned_server(
    p: Prescription,
    volume: Nanolitres,
) -> (TestServer, thecal_protocol::session::Secret) {
    let mut server = thecal_device::link::server::Server::new(boot(p, volume));
    server.stir(&ENTROPY);
    let secret = provision(server.pump_mut(), BOOT);
    (server, secret)
}

/// Every entry the log holds, read from the pump's store (not over the link, so any
/// role's test can look).
pub fn log_entries(server: &mut TestServer) -> std::vec::Vec<thecal_protocol::message::LogEntry> {
    use thecal_device::store::Storage;
    use thecal_protocol::message::{LogEntry, MAX_LOG_PAGE};
    let mut out = std::vec::Vec::new();
    let mut first = 0;
    loop {
        let mut page = Vec::<LogEntry, MAX_LOG_PAGE>::new();
        let bounds = server
            .pump_mut()
            .storage_mut()
            .read_log(first, MAX_LOG_PAGE, &mut page)
            .expect("log readable");
        let Some(last) = page.last() else {
            return out;
        };
        first = last.index + 1;
        out.extend(page.iter().copied());
        if first >= bounds.next {
            return out;
        }
    }
}

/// The events of [`log_entries`].
pub fn log_events(server: &mut TestServer) -> std::vec::Vec<thecal_protocol::message::Event> {
    log_entries(server).into_iter().map(|e| e.event).collect()
}

/// The pump as its programmers know it: serial number and what `Identify` announces.
pub fn peer(server: &TestServer) -> client::Peer {
    client::Peer::from_identity(&server.pump().identity())
}

/// The key of `role` in force on the pump and its epoch (what the simulator writes to
/// its key files); the public key for the emergency role.
pub fn key_in_force(server: &TestServer, role: thecal_protocol::message::Role) -> client::RoleKey {
    if role == thecal_protocol::message::Role::Emergency {
        return client::RoleKey::emergency(SERIAL);
    }
    let (epoch, key) = server.pump().role_key(role).expect("a provisioned pump");
    client::RoleKey { role, epoch, key }
}

/// Exchanges bytes with `server` at device (and link) time `now`.
pub fn exchange_at<'a>(
    server: &'a mut TestServer,
    now: Timestamp,
) -> impl FnMut(&[u8]) -> std::vec::Vec<u8> + 'a {
    move |bytes: &[u8]| {
        let mut out = std::vec::Vec::new();
        server.receive(now, bytes, &mut |b| out.extend_from_slice(b));
        out
    }
}

/// Opens a session of `role` with the key in force.
pub fn session(
    server: &mut TestServer,
    role: thecal_protocol::message::Role,
    now: Timestamp,
) -> client::Session {
    let key = key_in_force(server, role);
    let peer = peer(server);
    client::handshake(&mut exchange_at(server, now), &key, &peer, [7; 16]).expect("handshake")
}

/// Bolus events in the first page of the log, read inside session `s`.
pub fn bolus_events(server: &mut TestServer, s: &mut client::Session, now: Timestamp) -> usize {
    use thecal_protocol::message::{Event, Request, Response};
    match s.request(
        &mut exchange_at(server, now),
        900,
        &Request::ReadLog { first: 0, max: 8 },
    ) {
        Response::LogPage(p) => p
            .entries
            .iter()
            .filter(|e| matches!(e.event, Event::Bolus { .. }))
            .count(),
        other => panic!("{other:?}"),
    }
}
