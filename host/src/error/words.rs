//! Protocol values in a clinician's words: requests, refusals, broken rules, quantities
//! and port errors, for every message the programmer shows (no request or enum names, no
//! Rust syntax).

use thecal_protocol::message::Refusal;
use thecal_protocol::projection::STROKE_NL;
use thecal_protocol::rules::{
    ScheduleError, MAX_BOLUS_DURATION, MAX_BOLUS_FLOW, MAX_LOW_ALARM, MAX_PATIENT_BOLUSES,
    MIN_LOCKOUT, MIN_LOW_ALARM,
};
use thecal_protocol::time::UtcOffset;
use thecal_protocol::units::Nanolitres;

use crate::clock::{self, PumpTime};
use crate::quantity;

/// A request in a clinician's words (`the patient bolus`, `the prescription read`), for
/// messages: the protocol's request names (`PatientBolus`) never reach a clinician.
pub fn request_words(name: &str) -> &'static str {
    match name {
        "Identify" => "the identification",
        "Ping" => "the ping",
        "Status" => "the status read",
        "Battery" => "the battery read",
        "Reservoir" => "the reservoir read",
        "ReadPrescription" => "the prescription read",
        "WritePrescription" => "the new prescription",
        "Refill" => "the refill",
        "ClinicianBolus" => "the bolus",
        "PatientBolus" => "the patient bolus",
        "StopTherapy" => "the therapy stop",
        "ResumeTherapy" => "resuming therapy",
        "ReadAlarms" => "the alarm read",
        "AcknowledgeAlarm" => "the alarm acknowledgement",
        "ReadLog" => "the event-log read",
        "SetClock" => "setting the pump clock",
        "LinkStats" => "the link-counter read",
        "SessionHello" | "SessionProof" => "opening the session",
        "SessionClose" => "closing the session",
        "Provision" => "provisioning",
        "RotateKey" => "the key change",
        "CancelBolus" => "cancelling the bolus",
        "UpdateBegin" | "UpdateChunk" | "UpdateFinish" | "UpdateStatus" => "the firmware update",
        _ => "the request",
    }
}

/// The pump's refusal in a clinician's words. `time` (the pump's clock and the
/// patient's offset) shows a lockout's end in local time; without it, in UTC.
pub fn refusal_words(refusal: &Refusal, time: Option<&PumpTime>) -> String {
    match refusal {
        Refusal::InvalidPrescription(e) => format!("prescription refused: {}", rule_words(e)),
        Refusal::PatientLockout { until } => match time {
            Some(t) => format!(
                "the patient-bolus lockout is running: the next patient bolus is allowed \
                 {}",
                t.spelled(*until)
            ),
            None => format!(
                "the patient-bolus lockout is running: the next patient bolus is allowed \
                 {} UTC",
                clock::spelled(*until, UtcOffset(0))
            ),
        },
        Refusal::PatientDailyMaximum { max } => {
            format!("the prescription allows {max} patient boluses in 24 h, and {max} were given")
        }
        Refusal::BolusInvalid => format!(
            "the pump cannot give this bolus: it must hold at least one pump stroke ({}), \
             last more than 0 min and at most {}, and be no faster than {}",
            quantity::volume(Nanolitres(STROKE_NL)),
            quantity::duration(MAX_BOLUS_DURATION),
            quantity::flow(MAX_BOLUS_FLOW)
        ),
        Refusal::Alarm(a) => format!("the {} alarm prevents it", a.name()),
        Refusal::AlarmNotActive(a) => format!("the {} alarm is not active", a.name()),
        Refusal::ClockInvalid => "the clock or UTC offset is out of range".to_string(),
        Refusal::AboveCapacity { volume, capacity } => format!(
            "{} is more than the reservoir holds ({})",
            quantity::volume(*volume),
            quantity::volume(*capacity)
        ),
        Refusal::RefillTooSmall { volume, min } => format!(
            "a refill of {} would leave the pump unable to deliver; record at least {}",
            quantity::volume(*volume),
            quantity::volume(*min)
        ),
        Refusal::DailyLimit {
            delivered,
            requested,
            limit,
        } => format!(
            "{} more would exceed the daily limit of {} ({} delivered in the last 24 h)",
            quantity::dose(*requested),
            quantity::dose_rate(*limit),
            quantity::dose(*delivered)
        ),
        other => other.to_string(),
    }
}

/// A prescription rule broken, in a clinician's words (no `..=` ranges).
pub fn rule_words(e: &ScheduleError) -> String {
    match *e {
        ScheduleError::ConcentrationOutOfRange {
            drug,
            concentration,
            max,
        } => format!(
            "concentration {} of {drug} must be above 0 and at most {}",
            quantity::concentration(concentration),
            quantity::concentration(max)
        ),
        ScheduleError::DailyLimitOutOfRange {
            drug,
            limit,
            ceiling,
        } => format!(
            "daily limit {} must be above 0 and at most {}, the firmware ceiling for {drug}",
            quantity::dose_rate(limit),
            quantity::dose_rate(ceiling)
        ),
        ScheduleError::LowReservoirAlarmOutOfRange { threshold } => format!(
            "low-reservoir alarm {} must be from {} to {}",
            quantity::volume(threshold),
            quantity::volume(MIN_LOW_ALARM),
            quantity::volume(MAX_LOW_ALARM)
        ),
        ScheduleError::PatientBolusInvalid {
            dose,
            lockout,
            max_per_day,
        } => format!(
            "patient bolus rules (dose {}, lockout {}, {max_per_day} per 24 h): the dose must \
             be above 0, the lockout at least {}, and from 1 to {MAX_PATIENT_BOLUSES} \
             boluses per 24 h",
            quantity::dose(dose),
            quantity::duration(lockout),
            quantity::duration(MIN_LOCKOUT)
        ),
        ref other => other.to_string(),
    }
}

/// Why a serial port cannot be used, said once: the operating system's reason is not
/// repeated, and a device that is not a serial port (`/dev/null`) is called that.
#[cfg(feature = "serial")]
pub(crate) fn port_words(path: &str, e: &tokio_serial::Error) -> String {
    let reason = e.description.as_str();
    let lower = reason.to_ascii_lowercase();
    if matches!(
        e.kind,
        tokio_serial::ErrorKind::Io(std::io::ErrorKind::NotFound)
    ) || lower.contains("no such file")
    {
        format!("serial port {path} does not exist; list the ports with `thecal ports`")
    } else if lower.contains("not a typewriter") || lower.contains("inappropriate ioctl") {
        format!(
            "{path} is not a serial port (the telemetry head is a serial device such as \
             /dev/ttyACM0; list the ports with `thecal ports`)"
        )
    } else if lower.contains("permission denied") {
        format!(
            "serial port {path}: permission denied (add your user to the group that owns \
             it, often `dialout`)"
        )
    } else {
        format!("serial port {path}: {reason}")
    }
}

/// A quantity that did not parse, with the fix: a number without its unit says "missing
/// unit" with an example, a decimal comma says "use a decimal point".
pub fn quantity_words(text: &str, e: &quantity::QuantityError) -> String {
    let t = text.trim();
    let comma = t.contains(',');
    match e {
        _ if comma && t.chars().any(|c| c.is_ascii_digit()) => format!(
            "`{t}`: use a decimal point, not a comma: \"{}\"",
            t.replacen(',', ".", 1)
        ),
        quantity::QuantityError::Unit { unit, expected } if unit.is_empty() => {
            let first = expected
                .split([',', ' '])
                .find(|s| !s.is_empty())
                .unwrap_or("");
            format!("missing unit: write \"{t} {first}\" (units: {expected})")
        }
        other => other.to_string(),
    }
}
