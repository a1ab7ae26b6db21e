//! Shared builders for the pump-level tests: a pump on real (RAM-backed NOR) flash with a
//! counting motor, a few prescriptions, and a loop that drives it the way a platform
//! does (tick at `next_wake`).
#![allow(dead_code)]

pub mod client;

use heapless::{String, Vec};
use thecal_device::battery::BatteryConfig;
use thecal_device::flash::RamFlash;
use thecal_device::motor::CountingMotor;
use thecal_device::pump::{DeviceInfo, Factory, Pump};
use thecal_device::store::FlashStore;
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
    pump.motor().strokes * u64::from(thecal_device::motor::STROKE_NL)
}

/// The device secret the tests provision.
pub const SECRET: [u8; 32] = [0x42; 32];
/// The test pump's serial number.
pub const SERIAL: &str = "T0001";

/// A provisioned pump behind a request server.
pub fn server(
    p: Prescription,
    volume: Nanolitres,
) -> thecal_device::server::Server<Store, CountingMotor> {
    let mut pump = boot(p, volume);
    assert!(pump.provision(SECRET, BOOT));
    thecal_device::server::Server::new(pump)
}

/// Exchanges bytes with `server` at device (and link) time `now`.
pub fn exchange_at<'a>(
    server: &'a mut thecal_device::server::Server<Store, CountingMotor>,
    now: Timestamp,
) -> impl FnMut(&[u8]) -> std::vec::Vec<u8> + 'a {
    move |bytes: &[u8]| {
        let mut out = std::vec::Vec::new();
        server.receive(now, bytes, &mut |b| out.extend_from_slice(b));
        out
    }
}

/// Opens a session of `role` with the test key.
pub fn session(
    server: &mut thecal_device::server::Server<Store, CountingMotor>,
    role: thecal_protocol::message::Role,
    now: Timestamp,
) -> client::Session {
    let key = client::key(SECRET, role, SERIAL);
    client::handshake(&mut exchange_at(server, now), &key, role, SERIAL, [7; 16])
        .expect("handshake")
}

/// Bolus events in the first page of the log, read inside session `s`.
pub fn bolus_events(
    server: &mut thecal_device::server::Server<Store, CountingMotor>,
    s: &mut client::Session,
    now: Timestamp,
) -> usize {
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
