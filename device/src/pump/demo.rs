//! What a fresh simulated or development pump contains, so a new user sees real data.
//! Shared by the simulator and the QEMU firmware.

use heapless::{String, Vec};
use thecal_protocol::drug::Drug;
use thecal_protocol::message::Version;
use thecal_protocol::prescription::{
    DaySteps, PatientBolusRules, Prescription, PrescriptionDraft, Step, TherapyMode,
};
use thecal_protocol::time::{MinuteOfDay, Timestamp, UtcOffset};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};

use crate::pump::{DeviceInfo, Factory};
use crate::therapy::battery::BatteryConfig;

/// The demo prescription: baclofen 500 µg/mL on a five-step day profile (more at
/// night for spasms that wake the patient), limit 600 µg/day, patient boluses of 25 µg.
pub fn demo_prescription() -> Option<Prescription> {
    let steps: [(u16, u16, u32); 5] = [
        (0, 0, 220),
        (7, 0, 160),
        (12, 0, 180),
        (18, 0, 200),
        (22, 0, 260),
    ];
    let mut day: DaySteps = Vec::new();
    for (h, m, ug) in steps {
        day.push(Step {
            start: MinuteOfDay::hm(h, m),
            dose: NanogramsPerDay::from_ug(ug),
        })
        .ok()?;
    }
    let mut days = Vec::new();
    days.push(day).ok()?;
    Prescription::new(PrescriptionDraft {
        drug: Drug::Baclofen,
        concentration: NanogramsPerMillilitre::from_ug_per_ml(500),
        daily_limit: NanogramsPerDay::from_ug(600),
        mode: TherapyMode::Flexible { days },
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms::from_ug(25),
            lockout: Minutes(120),
            max_per_day: 4,
        }),
        low_reservoir_alarm: Nanolitres::from_ml(2),
    })
    .ok()
}

/// Firmware version reported by every thecal build.
pub const FIRMWARE_VERSION: Version = Version {
    major: 0,
    minor: 1,
    patch: 0,
};

/// A development pump's fixed facts: a 20 mL reservoir and the default battery. Text
/// longer than 16 bytes is cut.
pub fn device_info(model: &str, serial: &str) -> DeviceInfo {
    DeviceInfo {
        model: truncated(model),
        serial: truncated(serial),
        firmware: FIRMWARE_VERSION,
        capacity: Nanolitres::from_ml(20),
        battery: BatteryConfig::default(),
    }
}

fn truncated(s: &str) -> String<16> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// The simulated pump's fixed facts; the serial number comes from the seed.
pub fn demo_info(seed: u64) -> DeviceInfo {
    let mut serial: String<16> = String::new();
    // "SIM" + 6 digits always fits in 16 bytes.
    let _ = core::fmt::Write::write_fmt(&mut serial, format_args!("SIM{:06}", seed % 1_000_000));
    device_info("thecal-sim 20", &serial)
}

/// The demo factory state at wall time `wall_at_zero` (device time zero).
pub fn demo_factory(wall_at_zero: Timestamp, prescription: Prescription) -> Factory {
    Factory {
        prescription,
        volume: Nanolitres::from_ml(18),
        wall_at_zero,
        utc_offset: UtcOffset(0),
        battery_used_nah: 0,
    }
}
