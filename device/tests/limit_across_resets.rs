//! The hard daily limit across resets and refills: what the pump counted before a power
//! cut or a change of strength, it still counts after it. Found by the `device_server`
//! fuzz target (a power cut after a bolus made the restored rolling window count less
//! than the motor had delivered; a dilution and back within a day did the same).

mod common;

use common::*;
use thecal_device::therapy::battery::BatteryConfig;
use thecal_device::therapy::motor::STROKE_NL;
use thecal_protocol::message::{BolusRequest, Request, Response};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

/// (device time, strokes delivered so far over every life of the pump).
type Trace = Vec<(Timestamp, u64)>;

/// Largest volume (nL) delivered in any closed 24 h window of the trace.
fn max_24h(trace: &[(Timestamp, u64)]) -> u64 {
    let mut worst = 0;
    for (i, &(t, s)) in trace.iter().enumerate() {
        // Strokes before the window start: the count at the last point before it.
        let before = trace[..i]
            .iter()
            .rev()
            .find(|(u, _)| u.plus_ms(DAY) < t)
            .map_or(0, |&(_, s)| s);
        worst = worst.max((s - before) * u64::from(STROKE_NL));
    }
    worst
}

/// Ticks like a platform until `end`, or until the flash loses power; then the pump is
/// rebooted from its flash at that instant. Strokes of a tick in which power failed are
/// not counted (the processor died with the flash).
fn run(pump: TestPump, end: Timestamp, trace: &mut Trace, base: &mut u64) -> TestPump {
    let mut pump = pump;
    loop {
        let wake = pump.next_wake().min(end);
        pump.tick(wake);
        if pump.storage_mut().flash_mut().is_powered_off() {
            *base = trace.last().map_or(0, |&(_, s)| s);
            let mut flash = pump.into_storage().into_inner();
            flash.reboot();
            let store = thecal_device::store::FlashStore::new(flash).unwrap();
            pump = reboot(store, wake);
        } else {
            trace.push((wake, *base + pump.motor().strokes));
        }
        if wake >= end {
            return pump;
        }
    }
}

fn reboot(store: Store, now: Timestamp) -> TestPump {
    thecal_device::pump::Pump::boot(
        info(BatteryConfig::default()),
        factory(continuous(250), Nanolitres::from_ml(40)),
        store,
        thecal_device::therapy::motor::CountingMotor::default(),
        now,
        thecal_protocol::message::ResetCause::PowerOn,
    )
}

fn bolus(ug: u32, minutes: u16) -> Request {
    Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms::from_ug(ug),
        duration: Minutes(minutes),
    })
}

/// A pump at 500 µg/mL, limit 1 000 µg/day, basal 250 µg/day, that has just started a
/// clinician bolus of `ug` over `minutes`; its trace and stroke base.
fn after_a_bolus(ug: u32, minutes: u16) -> (TestPump, Trace, u64) {
    let mut pump = boot(continuous(250), Nanolitres::from_ml(40));
    let answer = pump.handle(BOOT, &bolus(ug, minutes));
    assert!(matches!(answer, Response::BolusStarted(_)), "{answer:?}");
    (pump, vec![(BOOT, 0)], 0)
}

/// Asks at `at` for the largest one-hour bolus the pump accepts (50 µg steps).
fn largest_bolus(pump: &mut TestPump, at: Timestamp) {
    for ug in (50..=1_000).rev().step_by(50) {
        if matches!(pump.handle(at, &bolus(ug, 60)), Response::BolusStarted(_)) {
            return;
        }
    }
}

/// No 24 h of the trace delivered more than the 2 mL (1 000 µg) limit.
fn assert_within_limit(trace: &[(Timestamp, u64)]) {
    let limit = 2_000_000;
    assert!(
        max_24h(trace) <= limit,
        "{} nL delivered in 24 h, limit {limit} nL",
        max_24h(trace)
    );
}

#[test]
fn a_power_cut_after_a_long_bolus_does_not_reopen_the_daily_limit() {
    // 700 µg over 24 h: the whole 1.4 mL is reserved (stored as delivered) at the start.
    let (mut pump, mut trace, mut base) = after_a_bolus(700, 24 * 60);
    // The reservation lasts about 17 h; the flash dies at the next snapshot after it.
    pump.storage_mut().flash_mut().cut_power_after(0);
    let mut pump = run(pump, BOOT.plus_ms(20 * HOUR), &mut trace, &mut base);
    assert!(base > 0, "the power cut happened during the bolus");
    // A day after the bolus started, the clinician asks for as much as the pump allows.
    let later = BOOT.plus_ms(DAY + HOUR);
    pump = run(pump, later, &mut trace, &mut base);
    largest_bolus(&mut pump, later);
    run(pump, BOOT.plus_ms(3 * DAY), &mut trace, &mut base);
    assert_within_limit(&trace);
}

#[test]
fn the_restored_window_counts_what_the_motor_delivered() {
    // The fuzz case: 500 µg over 30 min, a power cut at the first snapshot after it.
    let (mut pump, mut trace, mut base) = after_a_bolus(500, 30);
    pump.storage_mut().flash_mut().cut_power_after(0);
    let mut pump = run(pump, BOOT.plus_ms(12 * HOUR), &mut trace, &mut base);
    assert!(base > 0, "the power cut happened");
    // Every 5 minutes around the time the bolus leaves the window: the pump's window
    // never counts less than the motor delivered.
    let mut t = BOOT.plus_ms(23 * HOUR);
    while t < BOOT.plus_ms(26 * HOUR) {
        t = t.plus_ms(5 * 60_000);
        pump = run(pump, t, &mut trace, &mut base);
        let (&(_, now_strokes), earlier) = trace.split_last().unwrap();
        let before = earlier
            .iter()
            .rev()
            .find(|(u, _)| u.plus_ms(DAY) < t)
            .map_or(0, |&(_, s)| s);
        let delivered = (now_strokes - before) * u64::from(STROKE_NL);
        let counted = pump.window_total(t);
        assert!(
            counted >= delivered,
            "at +{} min the pump counts {counted} nL, the motor delivered {delivered} nL",
            (t.0 - BOOT.0) / 60_000
        );
    }
}

#[test]
fn a_power_cut_during_a_refill_to_another_strength_keeps_the_drug_counted() {
    // 500 µg/mL, limit 1 000 µg/day; refilled with 250 or 1 000 µg/mL of the same drug.
    for ug_per_ml in [250, 1_000] {
        refill_with_cuts(ug_per_ml);
    }
}

fn refill_with_cuts(ug_per_ml: u32) {
    use thecal_protocol::message::Revision;
    use thecal_protocol::prescription::TherapyMode;
    use thecal_protocol::units::{NanogramsPerDay, NanogramsPerMillilitre};
    let mut other = draft(TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(250),
    });
    other.concentration = NanogramsPerMillilitre::from_ug_per_ml(ug_per_ml);
    let refill = Request::Refill {
        expected: Revision(1),
        volume: Nanolitres::from_ml(20),
        prescription: Some(other),
    };
    let at = BOOT.plus_ms(3 * HOUR);
    for k in 0..400 {
        let (mut pump, _, _) = after_a_bolus(600, 60);
        run_until(&mut pump, at);
        let delivered_ng = motor_nl(&pump) * 500 / 1_000;
        pump.storage_mut().flash_mut().cut_power_after(k);
        let answer = pump.handle(at, &refill);
        let powered_off = pump.storage_mut().flash_mut().is_powered_off();
        let mut flash = pump.into_storage().into_inner();
        flash.reboot();
        let mut pump = reboot(thecal_device::store::FlashStore::new(flash).unwrap(), at);
        let c = u64::from(pump.record().prescription.concentration().0);
        let counted_ng = pump.window_total(at) * c / 1_000_000;
        assert!(
            counted_ng >= delivered_ng,
            "{ug_per_ml} µg/mL, cut {k}: after the reset the window counts {counted_ng} ng \
             at {c} ng/mL, {delivered_ng} ng were delivered"
        );
        if !powered_off {
            assert!(matches!(answer, Response::Refilled { .. }), "{answer:?}");
            return;
        }
    }
    panic!("the refill never completed");
}

#[test]
fn a_dilution_and_back_within_a_day_keeps_the_drug_counted() {
    // The fuzz case: a bolus at 500 µg/mL, a refill of the same drug at 64 ng/mL (the
    // window's volume no longer fits a bucket), then back to 500 µg/mL and a bolus as
    // large as the pump allows. Limit 1 000 µg/day = 2 mL at 500 µg/mL.
    use thecal_protocol::message::Revision;
    use thecal_protocol::prescription::TherapyMode;
    use thecal_protocol::units::{NanogramsPerDay, NanogramsPerMillilitre};
    let (mut pump, mut trace, mut base) = after_a_bolus(600, 30);
    let at = BOOT.plus_ms(3 * HOUR);
    pump = run(pump, at, &mut trace, &mut base);
    let mut dilute = draft(TherapyMode::Stopped);
    dilute.concentration = NanogramsPerMillilitre(64);
    dilute.daily_limit = NanogramsPerDay(72);
    dilute.patient_bolus = None;
    let back = draft(TherapyMode::Continuous {
        dose: NanogramsPerDay::from_ug(250),
    });
    for (expected, prescription) in [(1, dilute), (2, back)] {
        let refill = Request::Refill {
            expected: Revision(expected),
            volume: Nanolitres::from_ml(20),
            prescription: Some(prescription),
        };
        let answer = pump.handle(at, &refill);
        assert!(matches!(answer, Response::Refilled { .. }), "{answer:?}");
    }
    let delivered = trace.last().map_or(0, |&(_, s)| s) * u64::from(STROKE_NL);
    assert!(
        pump.window_total(at) >= delivered,
        "after the refills the window counts {} nL, {delivered} nL were delivered",
        pump.window_total(at)
    );
    largest_bolus(&mut pump, at);
    run(pump, BOOT.plus_ms(3 * DAY), &mut trace, &mut base);
    assert_within_limit(&trace);
}

#[test]
fn a_pump_that_resets_again_and_again_keeps_its_basal() {
    // Limit 2 mL/day, basal 0.5 mL/day. Each reset may charge only what was reserved and
    // not yet delivered; 300 resets in a row must not fill the window and stop therapy.
    let mut pump = boot(continuous(250), Nanolitres::from_ml(40));
    run_until(&mut pump, BOOT.plus_ms(HOUR));
    let mut now = BOOT.plus_ms(HOUR);
    // One reset adds at most the outstanding reservation (moved, not counted twice).
    let delivered = pump.window_total(now);
    let flash = pump.into_storage().into_inner();
    pump = reboot(thecal_device::store::FlashStore::new(flash).unwrap(), now);
    let after = pump.window_total(now);
    assert!(
        after <= delivered + u64::from(thecal_device::pump::RESERVE_NL),
        "one reset: {delivered} -> {after} nL"
    );
    for _ in 0..300 {
        now = now.plus_ms(100);
        let flash = pump.into_storage().into_inner();
        pump = reboot(thecal_device::store::FlashStore::new(flash).unwrap(), now);
    }
    let before = pump.window_total(now);
    assert!(
        before <= 2 * u64::from(thecal_device::pump::RESERVE_NL) + 30_000,
        "300 resets charged {before} nL to the window"
    );
    let start = pump.motor().strokes;
    run_until(&mut pump, now.plus_ms(DAY));
    let delivered = (pump.motor().strokes - start) * u64::from(STROKE_NL);
    assert!(
        delivered >= 480_000,
        "basal after the resets: {delivered} nL in a day"
    );
}
