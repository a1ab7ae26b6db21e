//! What the CLI shows: stable output records built from the pump's reports.
//!
//! These structs *are* the `--json` format (documented in the README, "JSON output"); the
//! human tables are rendered from the same records, so both carry the same facts. The
//! protocol types are never serialised directly, so the JSON stays stable when the wire
//! format evolves.
//!
//! Conventions: amounts are exact integers in the protocol's base units, named by their
//! unit (`_ng`, `_ng_per_day`, `_ng_per_ml`, `_nl`, `_nl_per_day`, `_min`); times are
//! RFC 3339 strings in the pump's local offset (`null` when there is none); enumerations
//! are `snake_case` strings.

mod bolus;
mod log;
mod prescription;

use serde::Serialize;
use thecal_protocol::message::{
    AlarmEntry, AlarmKind, BatteryReport, BatteryState, BolusEnd, BolusKind, BolusOutcome,
    BolusProgress, BolusReport, Capabilities, Identity, LinkStats, ReservoirReport, StatusReport,
    TherapyState,
};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::MS_PER_DAY;
use thecal_protocol::{PROTOCOL_VERSION, SCHEMA_HASH};

use crate::clock;

pub use crate::clock::PumpTime;
pub use bolus::{bolus_problem, bolus_volume};
pub use log::{EventView, LogEntryView};
pub(crate) use prescription::chart_step_lines;
pub use prescription::{
    Comparison, ComparisonRow, PatientBolusView, PrescriptionView, ProfileView, ProjectionView,
    StandingView, StepView, LARGE_DOSE_CHANGE_PERCENT,
};

/// `snake_case` key of an alarm kind.
pub fn alarm_key(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::LowReservoir => "low_reservoir",
        AlarmKind::EmptyReservoir => "empty_reservoir",
        AlarmKind::ElectiveReplacement => "elective_replacement",
        AlarmKind::LowBattery => "low_battery",
        AlarmKind::EndOfService => "end_of_service",
        AlarmKind::MotorStall => "motor_stall",
        AlarmKind::StorageFault => "storage_fault",
        AlarmKind::PrescriptionFallback => "prescription_fallback",
        AlarmKind::PrescriptionReview => "prescription_review",
        AlarmKind::DeliveryWithheld => "delivery_withheld",
    }
}

/// `snake_case` key of a bolus kind.
pub fn bolus_key(kind: BolusKind) -> &'static str {
    match kind {
        BolusKind::Single => "single",
        BolusKind::Priming => "priming",
        BolusKind::Bridge => "bridge",
        BolusKind::Patient => "patient",
    }
}

/// `snake_case` key of a battery state.
pub fn battery_key(state: BatteryState) -> &'static str {
    match state {
        BatteryState::Ok => "ok",
        BatteryState::ElectiveReplacement => "elective_replacement",
        BatteryState::EndOfService => "end_of_service",
    }
}

/// `info`: who the pump is and whether this programmer speaks its protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InfoView {
    /// Model name.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Firmware version `major.minor.patch`.
    pub firmware: String,
    /// Pump's wire protocol version.
    pub protocol: u8,
    /// Pump's message schema hash, `0x` + 8 hex digits.
    pub schema: String,
    /// Whether protocol and schema match this programmer's.
    pub compatible: bool,
    /// This programmer's protocol version and schema, for comparison.
    pub programmer_protocol: u8,
    /// This programmer's schema hash.
    pub programmer_schema: String,
    /// Supported features: `flexible`, `weekly`, `patient_bolus`, `event_log`,
    /// `secure_session`.
    pub capabilities: Vec<&'static str>,
    /// Reservoir capacity.
    pub reservoir_capacity_nl: u32,
    /// The pump's static X25519 public key, 64 hex digits (compare with the label before
    /// provisioning).
    pub public_key: String,
    /// Epochs of the patient, clinician and service keys in force (0: unprovisioned).
    pub key_epochs: KeyEpochsView,
}

/// Key epochs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct KeyEpochsView {
    pub patient: u32,
    pub clinician: u32,
    pub service: u32,
}

impl From<&Identity> for InfoView {
    fn from(i: &Identity) -> Self {
        let caps = [
            (Capabilities::FLEXIBLE, "flexible"),
            (Capabilities::WEEKLY, "weekly"),
            (Capabilities::PATIENT_BOLUS, "patient_bolus"),
            (Capabilities::EVENT_LOG, "event_log"),
            (Capabilities::SECURE_SESSION, "secure_session"),
            (Capabilities::EMERGENCY_ACCESS, "emergency_access"),
            (Capabilities::KEY_LIFECYCLE, "key_lifecycle"),
        ];
        InfoView {
            model: i.model.to_string(),
            serial: i.serial.to_string(),
            firmware: i.firmware.to_string(),
            protocol: i.protocol,
            schema: format!("{:#010x}", i.schema),
            compatible: i.protocol == PROTOCOL_VERSION && i.schema == SCHEMA_HASH,
            programmer_protocol: PROTOCOL_VERSION,
            programmer_schema: format!("{SCHEMA_HASH:#010x}"),
            capabilities: caps
                .iter()
                .filter(|(bit, _)| i.capabilities.has(*bit))
                .map(|(_, name)| *name)
                .collect(),
            reservoir_capacity_nl: i.reservoir_capacity.0,
            public_key: i.public_key.iter().map(|b| format!("{b:02x}")).collect(),
            key_epochs: KeyEpochsView {
                patient: i.key_epochs.patient,
                clinician: i.key_epochs.clinician,
                service: i.key_epochs.service,
            },
        }
    }
}

/// A bolus that is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BolusProgressView {
    /// `single`, `priming`, `bridge` or `patient`.
    pub kind: &'static str,
    /// Delivered so far.
    pub delivered_nl: u32,
    /// Total.
    pub total_nl: u32,
    /// Planned end.
    pub ends_at: String,
}

/// `status`: the one-screen summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    /// Pump clock.
    pub now: String,
    /// Patient's UTC offset, `+01:00`.
    pub utc_offset: String,
    /// `running`, `stopped` or `halted`.
    pub therapy: &'static str,
    /// The alarm that halted delivery, when `halted`.
    pub halted_by: Option<&'static str>,
    /// Prescription revision in force.
    pub revision: u32,
    /// Drug.
    pub drug: &'static str,
    /// Basal dose rate now.
    pub basal_dose_ng_per_day: u32,
    /// Basal flow now.
    pub basal_flow_nl_per_day: u32,
    /// Delivered in the last 24 h, boluses included.
    pub delivered_24h_ng: u32,
    /// Hard daily limit.
    pub daily_limit_ng_per_day: u32,
    /// Reservoir volume.
    pub reservoir_nl: u32,
    /// When the low-reservoir alarm is due, from the same instant as `now` (the pump's
    /// own date: its dosing state and a running bolus counted; never later than the
    /// alarm). `now` if reached; `null` if not within the projection horizon or while
    /// delivery is halted (`therapy`: nothing drains).
    pub low_reservoir_at: Option<String>,
    /// When the reservoir is empty (delivery halts), as `low_reservoir_at`.
    pub empty_reservoir_at: Option<String>,
    /// `ok`, `elective_replacement` or `end_of_service`.
    pub battery: &'static str,
    /// Number of active alarms.
    pub active_alarms: u8,
    /// Whether one of them is critical.
    pub critical_alarm: bool,
    /// The bolus running, if any.
    pub bolus: Option<BolusProgressView>,
    /// When `halted`: since when delivery is halted (the programmed basal is not
    /// delivered since then). `null` otherwise.
    pub halted_since: Option<String>,
    /// Basal strokes the hard daily limit holds back (`null` when none): the pump is
    /// `running` but delivers no basal until older deliveries leave the rolling 24 h.
    pub withheld: Option<WithheldView>,
    /// The newest prescription revision written, as far as the pump knows (greater
    /// than `revision` after a fallback).
    pub newest_revision: u32,
    /// An older prescription is in force: the newest record was found damaged.
    pub prescription_fallback: bool,
    /// The prescription breaks a rule of the pump's firmware (written under older
    /// rules): kept in force, to be reviewed.
    pub prescription_review: bool,
}

/// Basal delivery held back by the hard daily limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WithheldView {
    /// When the first stroke was held back.
    pub since: String,
    /// Volume held back so far.
    pub volume_nl: u32,
}

impl StatusView {
    /// From the pump's status (one answer: its dates and its clock from one instant).
    pub fn new(s: &StatusReport) -> Self {
        let t = PumpTime {
            now: s.now,
            offset: s.offset,
        };
        let (therapy, halted_by) = match s.therapy {
            TherapyState::Running => ("running", None),
            TherapyState::Stopped => ("stopped", None),
            TherapyState::Halted(a) => ("halted", Some(alarm_key(a))),
        };
        StatusView {
            now: t.rfc3339(s.now),
            utc_offset: clock::fmt_offset(s.offset),
            therapy,
            halted_by,
            revision: s.revision.0,
            drug: s.drug.name(),
            basal_dose_ng_per_day: s.basal_dose.0,
            basal_flow_nl_per_day: s.basal_flow.0,
            delivered_24h_ng: s.delivered_24h.0,
            daily_limit_ng_per_day: s.daily_limit.0,
            reservoir_nl: s.reservoir.0,
            low_reservoir_at: t.opt(s.low_at),
            empty_reservoir_at: t.opt(s.empty_at),
            battery: battery_key(s.battery),
            active_alarms: s.alarms,
            critical_alarm: s.critical,
            bolus: s.bolus.map(|b| bolus_progress(&t, &b)),
            halted_since: t.opt(s.halted_since),
            withheld: s.withheld.map(|w| WithheldView {
                since: t.rfc3339(w.since),
                volume_nl: w.volume.0,
            }),
            newest_revision: s.standing.newest.0,
            prescription_fallback: s.standing.fallback,
            prescription_review: s.standing.review,
        }
    }
}

fn bolus_progress(t: &PumpTime, b: &BolusProgress) -> BolusProgressView {
    BolusProgressView {
        kind: bolus_key(b.kind),
        delivered_nl: b.delivered.0,
        total_nl: b.total.0,
        ends_at: t.rfc3339(b.ends_at),
    }
}

/// `battery`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatteryView {
    /// Terminal voltage.
    pub millivolts: u16,
    /// Remaining capacity, 0–100.
    pub percent: u8,
    /// `ok`, `elective_replacement` or `end_of_service`.
    pub state: &'static str,
    /// Estimated days to the elective replacement indicator (0: reached).
    pub days_to_eri: u16,
    /// Estimated days to end of service (0: reached).
    pub days_to_eos: u16,
    /// Estimated ERI date (pump clock + days).
    pub eri_at: String,
    /// Estimated EOS date.
    pub eos_at: String,
}

impl BatteryView {
    /// From the battery report, dated from the pump clock.
    pub fn new(b: &BatteryReport, t: &PumpTime) -> Self {
        let after = |days: u16| t.rfc3339(t.now.plus_ms(u64::from(days) * MS_PER_DAY));
        BatteryView {
            millivolts: b.millivolts,
            percent: b.percent,
            state: battery_key(b.state),
            days_to_eri: b.days_to_eri,
            days_to_eos: b.days_to_eos,
            eri_at: after(b.days_to_eri),
            eos_at: after(b.days_to_eos),
        }
    }
}

/// `reservoir`: volume and the alarm dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservoirView {
    /// Capacity.
    pub capacity_nl: u32,
    /// Volume now.
    pub volume_nl: u32,
    /// Low-reservoir alarm threshold.
    pub low_threshold_nl: u32,
    /// Whether the volume is at or below the threshold now.
    pub low_reached: bool,
    /// Drug.
    pub drug: &'static str,
    /// Concentration.
    pub concentration_ng_per_ml: u32,
    /// Low-reservoir alarm date on the basal schedule (the "alarm date").
    pub low_at: Option<String>,
    /// Empty on the basal schedule.
    pub empty_at: Option<String>,
    /// Low-reservoir date if the patient takes every allowed bolus.
    pub worst_low_at: Option<String>,
    /// Empty if the patient takes every allowed bolus.
    pub worst_empty_at: Option<String>,
    /// Last refill.
    pub last_refill: Option<String>,
}

impl ReservoirView {
    /// From the pump's reservoir report.
    pub fn new(r: &ReservoirReport, t: &PumpTime) -> Self {
        ReservoirView {
            capacity_nl: r.capacity.0,
            volume_nl: r.volume.0,
            low_threshold_nl: r.low_threshold.0,
            low_reached: r.volume <= r.low_threshold,
            drug: r.drug.name(),
            concentration_ng_per_ml: r.concentration.0,
            low_at: t.opt(r.low_at),
            empty_at: t.opt(r.empty_at),
            worst_low_at: t.opt(r.worst_low_at),
            worst_empty_at: t.opt(r.worst_empty_at),
            last_refill: t.opt(r.last_refill),
        }
    }
}

/// The alarm date as a clinician reads it: `Thursday 3 December 2026 at 14:20 (in 12
/// days)`, `reached now`, or `not within the projection horizon`.
pub fn alarm_date(r: &ReservoirReport, t: &PumpTime) -> String {
    if r.volume <= r.low_threshold {
        return REACHED.into();
    }
    match r.low_at {
        Some(at) => t.spelled(at),
        None => "not within the projection horizon".into(),
    }
}

const REACHED: &str = "reached: the reservoir is at or below the alarm threshold; refill now";

/// The low-reservoir alarm date of a status (date and clock from one answer), as
/// [`alarm_date`] reads it; while delivery is halted, says so instead of a date.
pub fn status_alarm_date(s: &StatusReport) -> String {
    let t = PumpTime {
        now: s.now,
        offset: s.offset,
    };
    match s.low_at {
        Some(at) if at <= s.now => REACHED.into(),
        at => mark_date(at, s.therapy, &t),
    }
}

/// A projected date (`low_at`, `empty_at`, …) as a clinician reads it: `reached`, the
/// date spelled with how far away it is, or why there is none — delivery halted (the
/// reservoir does not drain, so no date is right until it resumes) or beyond the
/// projection horizon.
pub fn mark_date(at: Option<Timestamp>, therapy: TherapyState, t: &PumpTime) -> String {
    match (at, therapy) {
        (Some(at), _) if at <= t.now => "reached".into(),
        (Some(at), _) => t.spelled(at),
        (None, TherapyState::Halted(alarm)) => format!(
            "none while delivery is halted by the {alarm} alarm (the reservoir does not drain); projected again when delivery resumes"
        ),
        (None, _) => "not within the projection horizon".into(),
    }
}

/// `alarms`: one active alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmView {
    /// `low_reservoir`, `empty_reservoir`, `elective_replacement`, `low_battery`,
    /// `end_of_service`, `motor_stall`, `storage_fault`.
    pub kind: &'static str,
    /// Readable name.
    pub name: &'static str,
    /// Needs action now.
    pub critical: bool,
    /// Delivery is halted while it lasts.
    pub halts_delivery: bool,
    /// When raised.
    pub raised_at: String,
    /// Whether a programmer acknowledged it.
    pub acknowledged: bool,
}

impl AlarmView {
    /// From an alarm entry.
    pub fn new(a: &AlarmEntry, t: &PumpTime) -> Self {
        AlarmView {
            kind: alarm_key(a.kind),
            name: a.kind.name(),
            critical: a.kind.is_critical(),
            halts_delivery: a.kind.halts_delivery(),
            raised_at: t.rfc3339(a.raised_at),
            acknowledged: a.acknowledged,
        }
    }
}

/// A bolus the pump started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BolusView {
    /// `single`, `priming`, `bridge` or `patient`.
    pub kind: &'static str,
    /// Dose.
    pub dose_ng: u32,
    /// Volume.
    pub volume_nl: u32,
    /// Planned end.
    pub ends_at: String,
}

impl BolusView {
    /// From the pump's bolus report.
    pub fn new(b: &BolusReport, t: &PumpTime) -> Self {
        BolusView {
            kind: bolus_key(b.kind),
            dose_ng: b.dose.0,
            volume_nl: b.volume.0,
            ends_at: t.rfc3339(b.ends_at),
        }
    }
}

/// `bolus cancel`: how the bolus ended and what it delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BolusOutcomeView {
    /// `single`, `priming`, `bridge` or `patient`.
    pub kind: &'static str,
    /// `completed`, `cancelled`, `stopped`, `halted` or `interrupted`.
    pub end: &'static str,
    /// Volume delivered (for `interrupted`: at most this).
    pub delivered_nl: u32,
    /// Volume planned.
    pub planned_nl: u32,
}

impl From<&BolusOutcome> for BolusOutcomeView {
    fn from(o: &BolusOutcome) -> Self {
        BolusOutcomeView {
            kind: bolus_key(o.kind),
            end: bolus_end_key(o.end),
            delivered_nl: o.delivered.0,
            planned_nl: o.planned.0,
        }
    }
}

/// `snake_case` key of how a bolus ended.
pub fn bolus_end_key(end: BolusEnd) -> &'static str {
    match end {
        BolusEnd::Completed => "completed",
        BolusEnd::Cancelled { .. } => "cancelled",
        BolusEnd::Stopped => "stopped",
        BolusEnd::Halted(_) => "halted",
        BolusEnd::Interrupted => "interrupted",
    }
}

/// `link`: the pump's link counters and the programmer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    /// Valid frames the pump received.
    pub frames_in: u32,
    /// Frames the pump sent.
    pub frames_out: u32,
    /// Frames the pump dropped for a bad CRC.
    pub bad_crc: u32,
    /// Frames dropped for bad COBS, header or length.
    pub malformed: u32,
    /// Frames dropped for exceeding the buffer.
    pub oversize: u32,
    /// Decoder resynchronisations.
    pub resyncs: u32,
    /// Requests refused.
    pub refusals: u32,
    /// Repeated therapy changes answered from the reply cache.
    pub replays: u32,
    /// Sealed frames that did not open (forged, replayed, reflected).
    pub forged: u32,
    /// Frames not answered or not decoded: the unauthenticated energy budget was spent.
    pub quiet: u32,
}

impl From<&LinkStats> for LinkView {
    fn from(s: &LinkStats) -> Self {
        LinkView {
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            bad_crc: s.bad_crc,
            malformed: s.malformed,
            oversize: s.oversize,
            resyncs: s.resyncs,
            refusals: s.refusals,
            replays: s.replays,
            forged: s.forged,
            quiet: s.quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_protocol::drug::Drug;
    use thecal_protocol::message::Revision;
    use thecal_protocol::time::UtcOffset;
    use thecal_protocol::units::{Nanograms, NanogramsPerDay, Nanolitres, NanolitresPerDay};

    /// 2026-12-03T12:00:00Z.
    const NOW: u64 = 1_796_313_600_000;

    fn status(low_at: Option<u64>, empty_at: Option<u64>, therapy: TherapyState) -> StatusReport {
        StatusReport {
            now: Timestamp(NOW),
            offset: UtcOffset(60),
            therapy,
            revision: Revision(3),
            drug: Drug::Baclofen,
            basal_dose: NanogramsPerDay(150_000),
            basal_flow: NanolitresPerDay(300_000),
            delivered_24h: Nanograms(0),
            daily_limit: NanogramsPerDay(300_000),
            reservoir: Nanolitres(5_000_000),
            battery: BatteryState::Ok,
            alarms: 0,
            critical: false,
            bolus: None,
            halted_since: None,
            withheld: None,
            standing: Default::default(),
            low_at: low_at.map(Timestamp),
            empty_at: empty_at.map(Timestamp),
        }
    }

    #[test]
    fn the_status_dates_come_from_the_status_itself() {
        let now = NOW;
        let day = MS_PER_DAY;
        let s = status(
            Some(now + 12 * day),
            Some(now + 20 * day),
            TherapyState::Running,
        );
        let v = StatusView::new(&s);
        let t = PumpTime {
            now: s.now,
            offset: s.offset,
        };
        assert_eq!(v.low_reservoir_at, t.opt(s.low_at));
        assert_eq!(v.empty_reservoir_at, t.opt(s.empty_at));
        assert!(
            status_alarm_date(&s).ends_with("(in 12 days)"),
            "{}",
            status_alarm_date(&s)
        );
        let reached = status(Some(now), Some(now + day), TherapyState::Running);
        assert!(status_alarm_date(&reached).starts_with("reached"));
        let far = status(None, None, TherapyState::Running);
        assert_eq!(status_alarm_date(&far), "not within the projection horizon");
    }

    #[test]
    fn halted_delivery_has_no_date_and_says_why() {
        let s = status(None, None, TherapyState::Halted(AlarmKind::MotorStall));
        let said = status_alarm_date(&s);
        assert!(said.contains("halted by the motor stall alarm"), "{said}");
        assert!(said.contains("does not drain"), "{said}");
        assert_eq!(StatusView::new(&s).low_reservoir_at, None);
        // Empty and halted for it: reached, not "none".
        let empty = status(
            Some(s.now.0),
            Some(s.now.0),
            TherapyState::Halted(AlarmKind::EmptyReservoir),
        );
        let t = PumpTime {
            now: empty.now,
            offset: empty.offset,
        };
        assert_eq!(mark_date(empty.empty_at, empty.therapy, &t), "reached");
    }
}
