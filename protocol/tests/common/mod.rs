//! Shared sample messages and frame helpers for the integration tests and the benchmark.
//!
//! Every sample here is a plausible message from a real session (morphine 10 mg/mL, a
//! three-step daily profile, a patient bolus running) so the documented vectors read
//! like a clinic visit, not like noise.
#![allow(dead_code)]

pub mod annotate;
pub mod arb;
pub mod shape;

use heapless::{String, Vec as HVec};
use thecal_protocol::frame::{self, decode_body, Feed, FrameDecoder, FrameError, Header};
use thecal_protocol::message::{
    AlarmEntry, AlarmKind, BatteryReport, BatteryState, BolusKind, BolusProgress, BolusReport,
    BolusRequest, Capabilities, DrugChange, Event, Identity, LinkStats, LogEntry, LogPage,
    PrescriptionRecord, Refusal, ReservoirReport, ResetCause, Revision, Role, StatusReport,
    TherapyState, Version, MAX_LOG_PAGE,
};
use thecal_protocol::prescription::{
    DaySteps, PatientBolusRules, Step, TherapyMode, MAX_PROFILE_DAYS, MAX_STEPS_PER_DAY,
};
use thecal_protocol::rules::{At, ScheduleError};
use thecal_protocol::time::{MinuteOfDay, Timestamp, UtcOffset, Weekday};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
};
use thecal_protocol::{Drug, Prescription, PrescriptionDraft, Request, Response, SCHEMA_HASH};

/// 2026-11-23T09:30:00Z, a Monday.
pub const NOW: Timestamp = Timestamp(1_795_426_200_000);
/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;

// ---------------------------------------------------------------------------------------
// Frames

/// Encodes `message` as a wire frame (delimiter included).
pub fn encode_frame<T: serde::Serialize + ?Sized>(header: Header, message: &T) -> Vec<u8> {
    let mut out = [0u8; frame::MAX_WIRE];
    let n = frame::encode(header, message, &mut out).unwrap();
    out[..n].to_vec()
}

/// COBS-encodes `raw` (no delimiter), independently of the frame encoder.
pub fn cobs_encode(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0; cobs::max_encoding_length(raw.len())];
    let n = cobs::encode(raw, &mut out);
    out.truncate(n);
    out
}

/// A message of either direction, so vectors and samples can be listed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Request(Request),
    Response(Response),
}

impl Msg {
    pub fn encode(&self, header: Header) -> Vec<u8> {
        match self {
            Msg::Request(r) => encode_frame(header, r),
            Msg::Response(r) => encode_frame(header, r),
        }
    }

    pub fn body(&self) -> Vec<u8> {
        match self {
            Msg::Request(r) => postcard::to_stdvec(r).unwrap(),
            Msg::Response(r) => postcard::to_stdvec(r).unwrap(),
        }
    }

    /// Decodes `body` as the same kind of message as `self`.
    pub fn decode_like(&self, body: &[u8]) -> Msg {
        match self {
            Msg::Request(_) => Msg::Request(decode_body(body).unwrap()),
            Msg::Response(_) => Msg::Response(decode_body(body).unwrap()),
        }
    }

    /// Rust-ish notation of the message, as printed in PROTOCOL.md.
    pub fn notation(&self) -> std::string::String {
        match self {
            Msg::Request(r) => compact(&format!("Request::{r:#?}")),
            Msg::Response(r) => compact(&format!("Response::{r:#?}")),
        }
    }
}

/// Pretty `Debug` output with one-value wrappers on one line: `Revision(\n    3,\n)`
/// becomes `Revision(3)`.
pub fn compact(pretty: &str) -> std::string::String {
    let lines: Vec<&str> = pretty.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let (Some(open), Some(inner), Some(close)) =
            (lines.get(i), lines.get(i + 1), lines.get(i + 2))
        {
            let inner = inner.trim();
            let close = close.trim();
            let scalar = inner.ends_with(',') && !inner.contains(['(', ')', '{', '}', '[', ']']);
            if open.ends_with('(') && scalar && (close == ")" || close == "),") {
                out.push(format!("{open}{}{close}", inner.trim_end_matches(',')));
                i += 3;
                continue;
            }
        }
        out.push(lines[i].to_string());
        i += 1;
    }
    out.join("\n")
}

/// What a decoder produced for one chunk: a frame (header and owned body) or an error.
pub type Outcome = Result<(Header, Vec<u8>), FrameError>;

/// Feeds `input` to `decoder` in one call loop and collects every outcome.
pub fn feed_all<const N: usize>(decoder: &mut FrameDecoder<N>, mut input: &[u8]) -> Vec<Outcome> {
    let mut out = Vec::new();
    loop {
        match decoder.feed(input) {
            Feed::Consumed => return out,
            Feed::Frame { frame, remaining } => {
                out.push(Ok((frame.header, frame.body.to_vec())));
                input = remaining;
            }
            Feed::Error { error, remaining } => {
                out.push(Err(error));
                input = remaining;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Prescriptions

pub fn step(h: u16, m: u16, dose: NanogramsPerDay) -> Step {
    Step {
        start: MinuteOfDay::hm(h, m),
        dose,
    }
}

pub fn day(steps: &[Step]) -> DaySteps {
    HVec::from_slice(steps).unwrap()
}

/// Morphine 10 mg/mL, limit 6 mg/day, one daily profile of three steps, patient boluses
/// of 0.2 mg (lockout 60 min, at most 4 a day), low-reservoir alarm at 2 mL. Valid.
pub fn morphine_draft() -> PrescriptionDraft {
    PrescriptionDraft {
        drug: Drug::Morphine,
        concentration: NanogramsPerMillilitre::from_mg_per_ml(10),
        daily_limit: NanogramsPerDay::from_mg(6),
        mode: TherapyMode::Flexible {
            days: HVec::from_slice(&[day(&[
                step(0, 0, NanogramsPerDay::from_mg(3)),
                step(7, 0, NanogramsPerDay::from_mg(5)),
                step(22, 0, NanogramsPerDay::from_mg(4)),
            ])])
            .unwrap(),
        },
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms::from_ug(200),
            lockout: Minutes(60),
            max_per_day: 4,
        }),
        low_reservoir_alarm: Nanolitres::from_ml(2),
    }
}

pub fn morphine() -> Prescription {
    Prescription::new(morphine_draft()).unwrap()
}

/// A valid weekly prescription using every step slot: 7 days × 16 steps of 90 minutes.
pub fn full_weekly() -> Prescription {
    let mut days = HVec::<DaySteps, MAX_PROFILE_DAYS>::new();
    for d in 0..MAX_PROFILE_DAYS as u32 {
        let mut steps = DaySteps::new();
        for i in 0..MAX_STEPS_PER_DAY as u32 {
            let dose = NanogramsPerDay(1_000_000 + i * 123_457 + d * 1_000);
            steps
                .push(Step {
                    start: MinuteOfDay((i * 90) as u16),
                    dose,
                })
                .unwrap();
        }
        days.push(steps).unwrap();
    }
    Prescription::new(PrescriptionDraft {
        drug: Drug::Morphine,
        concentration: NanogramsPerMillilitre::from_mg_per_ml(10),
        daily_limit: NanogramsPerDay::from_mg(15),
        mode: TherapyMode::Flexible { days },
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms::from_ug(500),
            lockout: Minutes(120),
            max_per_day: 6,
        }),
        low_reservoir_alarm: Nanolitres::from_ml(3),
    })
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Records

pub fn identity() -> Identity {
    Identity {
        model: String::try_from("TP-40").unwrap(),
        serial: String::try_from("SN0042").unwrap(),
        firmware: Version {
            major: 0,
            minor: 1,
            patch: 0,
        },
        protocol: thecal_protocol::PROTOCOL_VERSION,
        schema: SCHEMA_HASH,
        capabilities: Capabilities(
            Capabilities::FLEXIBLE
                | Capabilities::WEEKLY
                | Capabilities::PATIENT_BOLUS
                | Capabilities::EVENT_LOG,
        ),
        reservoir_capacity: Nanolitres::from_ml(40),
    }
}

pub fn status_report() -> StatusReport {
    StatusReport {
        now: NOW,
        offset: UtcOffset(60),
        therapy: TherapyState::Running,
        revision: Revision(3),
        drug: Drug::Morphine,
        basal_dose: NanogramsPerDay::from_mg(5),
        basal_flow: NanolitresPerDay(500_000),
        delivered_24h: Nanograms(4_180_000),
        daily_limit: NanogramsPerDay::from_mg(6),
        reservoir: Nanolitres(31_250_000),
        battery: BatteryState::Ok,
        alarms: 0,
        critical: false,
        bolus: Some(BolusProgress {
            kind: BolusKind::Patient,
            delivered: Nanolitres(5_000),
            total: Nanolitres(20_000),
            ends_at: NOW.plus_ms(60_000),
        }),
    }
}

pub fn battery_report() -> BatteryReport {
    BatteryReport {
        millivolts: 3_050,
        percent: 81,
        state: BatteryState::Ok,
        days_to_eri: 1_650,
        days_to_eos: 1_740,
    }
}

pub fn reservoir_report() -> ReservoirReport {
    ReservoirReport {
        capacity: Nanolitres::from_ml(40),
        volume: Nanolitres(31_250_000),
        low_threshold: Nanolitres::from_ml(2),
        drug: Drug::Morphine,
        concentration: NanogramsPerMillilitre::from_mg_per_ml(10),
        low_at: Some(NOW.plus_ms(67 * DAY_MS)),
        empty_at: Some(NOW.plus_ms(72 * DAY_MS)),
        worst_low_at: Some(NOW.plus_ms(57 * DAY_MS)),
        worst_empty_at: Some(NOW.plus_ms(60 * DAY_MS)),
        last_refill: Some(Timestamp(NOW.0 - 21 * DAY_MS)),
    }
}

pub fn log_page() -> LogPage {
    LogPage {
        oldest: 0,
        next: 42,
        entries: HVec::from_slice(&[
            LogEntry {
                index: 39,
                at: Timestamp(NOW.0 - 3_600_000),
                event: Event::PrescriptionChanged {
                    old: Revision(2),
                    new: Revision(3),
                },
            },
            LogEntry {
                index: 40,
                at: Timestamp(NOW.0 - 60_000),
                event: Event::Bolus {
                    kind: BolusKind::Patient,
                    dose: Nanograms::from_ug(200),
                },
            },
            LogEntry {
                index: 41,
                at: NOW,
                event: Event::AlarmRaised(AlarmKind::LowReservoir),
            },
        ])
        .unwrap(),
    }
}

pub fn bolus_report() -> BolusReport {
    BolusReport {
        kind: BolusKind::Single,
        dose: Nanograms::from_ug(500),
        volume: Nanolitres(50_000),
        ends_at: NOW.plus_ms(30 * 60_000),
    }
}

pub fn tuesday_step_3() -> At {
    At::Step {
        day: Some(Weekday::Tuesday),
        number: 3,
        start: MinuteOfDay::hm(22, 0),
    }
}

// ---------------------------------------------------------------------------------------
// One sample per enum variant, in tag order (the tag tests check the order).

pub fn request_samples() -> Vec<Request> {
    vec![
        Request::Identify,
        Request::Ping { token: 0x00C0_FFEE },
        Request::Status,
        Request::Battery,
        Request::Reservoir,
        Request::ReadPrescription,
        Request::WritePrescription {
            expected: Revision(3),
            prescription: morphine_draft(),
        },
        Request::Refill {
            expected: Revision(3),
            volume: Nanolitres::from_ml(40),
            change: Some(DrugChange {
                drug: Drug::Hydromorphone,
                concentration: NanogramsPerMillilitre::from_mg_per_ml(2),
            }),
        },
        Request::ClinicianBolus(BolusRequest::Single {
            dose: Nanograms::from_ug(500),
            duration: Minutes(30),
        }),
        Request::PatientBolus,
        Request::StopTherapy,
        Request::ResumeTherapy,
        Request::ReadAlarms,
        Request::AcknowledgeAlarm {
            alarm: AlarmKind::LowReservoir,
        },
        Request::ReadLog { first: 39, max: 8 },
        Request::SetClock {
            now: NOW,
            offset: UtcOffset(60),
        },
        Request::LinkStats,
        Request::SessionHello {
            role: Role::Clinician,
            nonce: [0x5A; 16],
        },
        Request::SessionProof { proof: [0xA5; 32] },
    ]
}

pub fn response_samples() -> Vec<Response> {
    vec![
        Response::Refused(Refusal::SessionRequired),
        Response::Identity(identity()),
        Response::Pong { token: 0x00C0_FFEE },
        Response::Status(status_report()),
        Response::Battery(battery_report()),
        Response::Reservoir(reservoir_report()),
        Response::Prescription(PrescriptionRecord {
            revision: Revision(3),
            written_at: Timestamp(NOW.0 - 3_600_000),
            prescription: morphine(),
        }),
        Response::PrescriptionWritten {
            revision: Revision(4),
        },
        Response::Refilled {
            revision: Revision(4),
            reservoir: reservoir_report(),
        },
        Response::BolusStarted(bolus_report()),
        Response::PatientBolusStarted(BolusReport {
            kind: BolusKind::Patient,
            ..bolus_report()
        }),
        Response::TherapyStopped,
        Response::TherapyResumed,
        Response::Alarms(
            HVec::from_slice(&[AlarmEntry {
                kind: AlarmKind::LowReservoir,
                raised_at: NOW,
                acknowledged: false,
            }])
            .unwrap(),
        ),
        Response::AlarmAcknowledged,
        Response::LogPage(log_page()),
        Response::ClockSet {
            previous: Timestamp(NOW.0 - 2_000),
        },
        Response::LinkStats(LinkStats {
            frames_in: 120,
            frames_out: 119,
            bad_crc: 1,
            ..LinkStats::default()
        }),
        Response::SessionChallenge {
            nonce: [0x11; 16],
            proof: [0x22; 32],
        },
        Response::SessionEstablished,
    ]
}

pub fn refusal_samples() -> Vec<Refusal> {
    vec![
        Refusal::Malformed,
        Refusal::Unsupported,
        Refusal::SessionRequired,
        Refusal::NotPermitted,
        Refusal::InvalidPrescription(ScheduleError::ProfileDays { days: 2 }),
        Refusal::RevisionMismatch {
            expected: Revision(2),
            current: Revision(3),
        },
        Refusal::DailyLimit {
            delivered: Nanograms(5_900_000),
            requested: Nanograms::from_ug(200),
            limit: NanogramsPerDay::from_mg(6),
        },
        Refusal::PatientBolusNotAllowed,
        Refusal::PatientLockout {
            until: NOW.plus_ms(600_000),
        },
        Refusal::PatientDailyMaximum { max: 4 },
        Refusal::BolusInProgress,
        Refusal::BolusInvalid,
        Refusal::TherapyStopped,
        Refusal::Alarm(AlarmKind::MotorStall),
        Refusal::AboveCapacity {
            volume: Nanolitres::from_ml(41),
            capacity: Nanolitres::from_ml(40),
        },
        Refusal::AlarmNotActive(AlarmKind::LowBattery),
        Refusal::ClockInvalid,
        Refusal::StorageFault,
    ]
}

pub fn schedule_error_samples() -> Vec<ScheduleError> {
    let at = tuesday_step_3();
    let limit = NanogramsPerDay::from_mg(6);
    vec![
        ScheduleError::ConcentrationOutOfRange {
            drug: Drug::Morphine,
            concentration: NanogramsPerMillilitre::from_mg_per_ml(25),
            max: NanogramsPerMillilitre::from_mg_per_ml(20),
        },
        ScheduleError::DailyLimitOutOfRange {
            drug: Drug::Morphine,
            limit: NanogramsPerDay::from_mg(16),
            ceiling: NanogramsPerDay::from_mg(15),
        },
        ScheduleError::LowReservoirAlarmOutOfRange {
            threshold: Nanolitres::from_ml(11),
        },
        ScheduleError::ProfileDays { days: 2 },
        ScheduleError::EmptyDay {
            day: Some(Weekday::Wednesday),
        },
        ScheduleError::FirstStepNotAtMidnight {
            day: None,
            start: MinuteOfDay::hm(0, 30),
        },
        ScheduleError::StepStartOutOfRange { at },
        ScheduleError::StepOutOfOrder {
            at,
            previous: MinuteOfDay::hm(23, 0),
        },
        ScheduleError::FlowBelowMinimum {
            at,
            flow: NanolitresPerDay(40_000),
        },
        ScheduleError::FlowAboveMaximum {
            at,
            dose: NanogramsPerDay::from_mg(250),
        },
        ScheduleError::StepAboveDailyLimit {
            at,
            dose: NanogramsPerDay::from_mg(7),
            limit,
        },
        ScheduleError::RollingTotalAboveLimit {
            day: None,
            start: MinuteOfDay::MIDNIGHT,
            total: Nanograms(960_000),
            limit: NanogramsPerDay::from_ug(500),
        },
        ScheduleError::PatientBolusInvalid {
            dose: Nanograms::ZERO,
            lockout: Minutes(60),
            max_per_day: 4,
        },
        ScheduleError::BolusAllowanceAboveLimit {
            basal: Nanograms(4_333_334),
            boluses: Nanograms(2_000_000),
            limit,
        },
    ]
}

pub fn at_samples() -> Vec<At> {
    vec![At::Continuous, tuesday_step_3()]
}

pub fn event_samples() -> Vec<Event> {
    vec![
        Event::Reset {
            cause: ResetCause::PowerOn,
        },
        Event::PrescriptionChanged {
            old: Revision(2),
            new: Revision(3),
        },
        Event::Refilled {
            volume: Nanolitres::from_ml(40),
            drug: Drug::Morphine,
            concentration: NanogramsPerMillilitre::from_mg_per_ml(10),
        },
        Event::Bolus {
            kind: BolusKind::Patient,
            dose: Nanograms::from_ug(200),
        },
        Event::TherapyStopped,
        Event::TherapyResumed,
        Event::AlarmRaised(AlarmKind::LowReservoir),
        Event::AlarmCleared(AlarmKind::LowReservoir),
        Event::AlarmAcknowledged(AlarmKind::LowReservoir),
        Event::ClockChanged {
            from: Timestamp(NOW.0 - 2_000),
            to: NOW,
            offset: UtcOffset(60),
        },
        Event::Refused {
            request: 6,
            reason: 4,
        },
        Event::Security {
            role: Role::Patient,
            failures: 3,
        },
    ]
}

pub fn therapy_mode_samples() -> Vec<TherapyMode> {
    vec![
        TherapyMode::Stopped,
        TherapyMode::Continuous {
            dose: NanogramsPerDay::from_mg(3),
        },
        morphine_draft().mode,
    ]
}

pub fn bolus_request_samples() -> Vec<BolusRequest> {
    vec![
        BolusRequest::Single {
            dose: Nanograms::from_ug(500),
            duration: Minutes(30),
        },
        BolusRequest::Priming {
            volume: Nanolitres(200_000),
            duration: Minutes(10),
        },
        BolusRequest::Bridge {
            volume: Nanolitres(300_000),
            duration: Minutes(120),
        },
    ]
}

pub fn therapy_state_samples() -> Vec<TherapyState> {
    vec![
        TherapyState::Running,
        TherapyState::Stopped,
        TherapyState::Halted(AlarmKind::EmptyReservoir),
    ]
}

pub fn battery_state_samples() -> Vec<BatteryState> {
    vec![
        BatteryState::Ok,
        BatteryState::ElectiveReplacement,
        BatteryState::EndOfService,
    ]
}

pub fn bolus_kind_samples() -> Vec<BolusKind> {
    vec![
        BolusKind::Single,
        BolusKind::Priming,
        BolusKind::Bridge,
        BolusKind::Patient,
    ]
}

pub fn reset_cause_samples() -> Vec<ResetCause> {
    vec![
        ResetCause::PowerOn,
        ResetCause::Watchdog,
        ResetCause::Software,
        ResetCause::Unknown,
    ]
}

pub fn role_samples() -> Vec<Role> {
    vec![Role::Patient, Role::Clinician, Role::Service]
}

// ---------------------------------------------------------------------------------------
// Documented vectors (docs/PROTOCOL.md, "Worked examples"). Ids count up as in a session.

pub struct Vector {
    pub name: &'static str,
    pub header: Header,
    pub msg: Msg,
}

fn v(name: &'static str, header: Header, msg: Msg) -> Vector {
    Vector { name, header, msg }
}

pub fn vectors() -> Vec<Vector> {
    use Msg::{Request as Q, Response as A};
    let retry = Header {
        flags: frame::Flags(frame::Flags::RETRY),
        ..Header::request(0x0303)
    };
    vec![
        v(
            "identify-request",
            Header::request(0x0301),
            Q(Request::Identify),
        ),
        v(
            "identity-response",
            Header::response(0x0301),
            A(Response::Identity(identity())),
        ),
        v(
            "ping-request",
            Header::request(0x0302),
            Q(Request::Ping { token: 0x00C0_FFEE }),
        ),
        v(
            "pong-response",
            Header::response(0x0302),
            A(Response::Pong { token: 0x00C0_FFEE }),
        ),
        v(
            "status-request",
            Header::request(0x0303),
            Q(Request::Status),
        ),
        v("status-request-retry", retry, Q(Request::Status)),
        v(
            "status-response",
            Header::response(0x0303),
            A(Response::Status(status_report())),
        ),
        v(
            "write-prescription-request",
            Header::request(0x0304),
            Q(Request::WritePrescription {
                expected: Revision(3),
                prescription: morphine_draft(),
            }),
        ),
        v(
            "refused-invalid-prescription-response",
            Header::response(0x0304),
            A(Response::Refused(Refusal::InvalidPrescription(
                ScheduleError::StepAboveDailyLimit {
                    at: tuesday_step_3(),
                    dose: NanogramsPerDay::from_mg(7),
                    limit: NanogramsPerDay::from_mg(6),
                },
            ))),
        ),
        v(
            "prescription-written-response",
            Header::response(0x0305),
            A(Response::PrescriptionWritten {
                revision: Revision(4),
            }),
        ),
        v(
            "clinician-bolus-request",
            Header::request(0x0306),
            Q(Request::ClinicianBolus(BolusRequest::Single {
                dose: Nanograms::from_ug(500),
                duration: Minutes(30),
            })),
        ),
        v(
            "reservoir-response",
            Header::response(0x0307),
            A(Response::Reservoir(reservoir_report())),
        ),
        v(
            "log-page-response",
            Header::response(0x0308),
            A(Response::LogPage(log_page())),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Worst cases: the largest value of each large message, every varint at its longest.

/// A draft (not valid, it need not be) with every collection full and every number at
/// its longest encoding.
pub fn largest_draft() -> PrescriptionDraft {
    let full_day: DaySteps = (0..MAX_STEPS_PER_DAY)
        .map(|_| Step {
            start: MinuteOfDay(u16::MAX),
            dose: NanogramsPerDay(u32::MAX),
        })
        .collect();
    PrescriptionDraft {
        drug: Drug::Clonidine,
        concentration: NanogramsPerMillilitre(u32::MAX),
        daily_limit: NanogramsPerDay(u32::MAX),
        mode: TherapyMode::Flexible {
            days: (0..MAX_PROFILE_DAYS).map(|_| full_day.clone()).collect(),
        },
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms(u32::MAX),
            lockout: Minutes(u16::MAX),
            max_per_day: u8::MAX,
        }),
        low_reservoir_alarm: Nanolitres(u32::MAX),
    }
}

/// The largest *valid* prescription: 7 × 16 steps, starts and doses at their longest
/// encodings that still pass validation.
pub fn largest_prescription() -> Prescription {
    // Morphine at its ceiling concentration (20 mg/mL) and daily ceiling (15 mg/day):
    // every dose takes a 4-byte varint (≥ 2^21), every start after 02:08 a 2-byte one,
    // and the patient-bolus rules are present with their longest encodings.
    let dose = NanogramsPerDay::from_mg(12);
    let mut days = HVec::<DaySteps, MAX_PROFILE_DAYS>::new();
    for _ in 0..MAX_PROFILE_DAYS {
        let steps: DaySteps = (0..MAX_STEPS_PER_DAY as u16)
            .map(|i| Step {
                start: MinuteOfDay(if i == 0 { 0 } else { 1_424 + i - 1 }),
                dose,
            })
            .collect();
        days.push(steps).unwrap();
    }
    Prescription::new(PrescriptionDraft {
        drug: Drug::Morphine,
        concentration: NanogramsPerMillilitre::from_mg_per_ml(20),
        daily_limit: NanogramsPerDay::from_mg(15),
        mode: TherapyMode::Flexible { days },
        // 12 mg basal + one 2.1 mg bolus stays under the 15 mg limit.
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms(1 << 21),
            lockout: Minutes(u16::MAX),
            max_per_day: 1,
        }),
        low_reservoir_alarm: Nanolitres::from_ml(10),
    })
    .unwrap()
}

const T_MAX: Timestamp = Timestamp(u64::MAX);

fn largest_bolus_report() -> BolusReport {
    BolusReport {
        kind: BolusKind::Patient,
        dose: Nanograms(u32::MAX),
        volume: Nanolitres(u32::MAX),
        ends_at: T_MAX,
    }
}

fn largest_reservoir() -> ReservoirReport {
    ReservoirReport {
        capacity: Nanolitres(u32::MAX),
        volume: Nanolitres(u32::MAX),
        low_threshold: Nanolitres(u32::MAX),
        drug: Drug::Clonidine,
        concentration: NanogramsPerMillilitre(u32::MAX),
        low_at: Some(T_MAX),
        empty_at: Some(T_MAX),
        worst_low_at: Some(T_MAX),
        worst_empty_at: Some(T_MAX),
        last_refill: Some(T_MAX),
    }
}

/// The largest value of every Request variant that carries data.
pub fn largest_requests() -> Vec<Request> {
    vec![
        Request::Ping { token: u32::MAX },
        Request::WritePrescription {
            expected: Revision(u32::MAX),
            prescription: largest_draft(),
        },
        Request::Refill {
            expected: Revision(u32::MAX),
            volume: Nanolitres(u32::MAX),
            change: Some(DrugChange {
                drug: Drug::Clonidine,
                concentration: NanogramsPerMillilitre(u32::MAX),
            }),
        },
        Request::ClinicianBolus(BolusRequest::Bridge {
            volume: Nanolitres(u32::MAX),
            duration: Minutes(u16::MAX),
        }),
        Request::ReadLog {
            first: u32::MAX,
            max: u8::MAX,
        },
        Request::SetClock {
            now: T_MAX,
            offset: UtcOffset(i16::MIN),
        },
        Request::SessionHello {
            role: Role::Service,
            nonce: [0xFF; 16],
        },
        Request::SessionProof { proof: [0xFF; 32] },
    ]
}

/// The largest value of every Response variant that carries data.
pub fn largest_responses() -> Vec<Response> {
    let long_id = String::try_from("\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}").unwrap();
    let biggest_event = Event::ClockChanged {
        from: T_MAX,
        to: T_MAX,
        offset: UtcOffset(i16::MIN),
    };
    vec![
        Response::Refused(Refusal::InvalidPrescription(
            ScheduleError::RollingTotalAboveLimit {
                day: Some(Weekday::Sunday),
                start: MinuteOfDay(u16::MAX),
                total: Nanograms(u32::MAX),
                limit: NanogramsPerDay(u32::MAX),
            },
        )),
        Response::Refused(Refusal::DailyLimit {
            delivered: Nanograms(u32::MAX),
            requested: Nanograms(u32::MAX),
            limit: NanogramsPerDay(u32::MAX),
        }),
        Response::Identity(Identity {
            model: long_id.clone(),
            serial: long_id,
            firmware: Version {
                major: u8::MAX,
                minor: u8::MAX,
                patch: u8::MAX,
            },
            protocol: u8::MAX,
            schema: u32::MAX,
            capabilities: Capabilities(u32::MAX),
            reservoir_capacity: Nanolitres(u32::MAX),
        }),
        Response::Status(StatusReport {
            now: T_MAX,
            offset: UtcOffset(i16::MIN),
            therapy: TherapyState::Halted(AlarmKind::StorageFault),
            revision: Revision(u32::MAX),
            drug: Drug::Clonidine,
            basal_dose: NanogramsPerDay(u32::MAX),
            basal_flow: NanolitresPerDay(u32::MAX),
            delivered_24h: Nanograms(u32::MAX),
            daily_limit: NanogramsPerDay(u32::MAX),
            reservoir: Nanolitres(u32::MAX),
            battery: BatteryState::EndOfService,
            alarms: u8::MAX,
            critical: true,
            bolus: Some(BolusProgress {
                kind: BolusKind::Patient,
                delivered: Nanolitres(u32::MAX),
                total: Nanolitres(u32::MAX),
                ends_at: T_MAX,
            }),
        }),
        Response::Battery(BatteryReport {
            millivolts: u16::MAX,
            percent: u8::MAX,
            state: BatteryState::EndOfService,
            days_to_eri: u16::MAX,
            days_to_eos: u16::MAX,
        }),
        Response::Reservoir(largest_reservoir()),
        Response::Prescription(PrescriptionRecord {
            revision: Revision(u32::MAX),
            written_at: T_MAX,
            prescription: largest_prescription(),
        }),
        Response::Refilled {
            revision: Revision(u32::MAX),
            reservoir: largest_reservoir(),
        },
        Response::BolusStarted(largest_bolus_report()),
        Response::PatientBolusStarted(largest_bolus_report()),
        Response::Alarms(
            (0..thecal_protocol::message::MAX_ALARMS)
                .map(|_| AlarmEntry {
                    kind: AlarmKind::StorageFault,
                    raised_at: T_MAX,
                    acknowledged: true,
                })
                .collect(),
        ),
        Response::LogPage(LogPage {
            oldest: u32::MAX,
            next: u32::MAX,
            entries: (0..MAX_LOG_PAGE)
                .map(|_| LogEntry {
                    index: u32::MAX,
                    at: T_MAX,
                    event: biggest_event,
                })
                .collect(),
        }),
        Response::ClockSet { previous: T_MAX },
        Response::LinkStats(LinkStats {
            frames_in: u32::MAX,
            frames_out: u32::MAX,
            bad_crc: u32::MAX,
            malformed: u32::MAX,
            oversize: u32::MAX,
            resyncs: u32::MAX,
            refusals: u32::MAX,
            replays: u32::MAX,
        }),
        Response::SessionChallenge {
            nonce: [0xFF; 16],
            proof: [0xFF; 32],
        },
    ]
}
