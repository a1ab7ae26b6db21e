//! Shared sample messages and frame helpers for the integration tests and the benchmark.
//!
//! Every sample here is a plausible message from a real session (morphine 10 mg/mL, a
//! three-step daily profile, a patient bolus running) so the documented vectors read
//! like a clinic visit, not like noise.
#![allow(dead_code)]

pub mod annotate;
pub mod arb;
pub mod doc;
mod largest;
pub mod session;
pub mod shape;
mod variants;
mod vectors;

// Each test binary (and the benchmark) uses a different part of these.
#[allow(unused_imports)]
pub use largest::*;
#[allow(unused_imports)]
pub use variants::*;
#[allow(unused_imports)]
pub use vectors::*;

use heapless::{String, Vec as HVec};
use thecal_protocol::frame::{self, decode_body, Feed, FrameDecoder, FrameError, Header};
use thecal_protocol::message::{
    AlarmEntry, AlarmKind, BatteryReport, BatteryState, BolusEnd, BolusKind, BolusOutcome,
    BolusProgress, BolusReport, BolusRequest, Capabilities, Event, Identity, KeyEpochs, LinkAbuse,
    LinkStats, LogEntry, LogPage, PrescriptionRecord, Refusal, ReservoirReport, ResetCause,
    Revision, Role, SessionEnd, Standing, StatusReport, TherapyState, Version, Withheld,
    MAX_LOG_PAGE,
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
            Msg::Request(r) => compact(&byte_arrays(&format!("Request::{r:#?}"))),
            Msg::Response(r) => compact(&byte_arrays(&format!("Response::{r:#?}"))),
        }
    }
}

/// Pretty `Debug` output with byte arrays (`[u8; N]`, one number per line) written as
/// hex: `[0x22; 16]` when every byte is the same, else 8 bytes a line.
pub fn byte_arrays(pretty: &str) -> std::string::String {
    let lines: Vec<&str> = pretty.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let bytes: Vec<u8> = lines[i + 1..]
            .iter()
            .map_while(|l| l.trim().strip_suffix(',')?.parse().ok())
            .collect();
        let close = lines.get(i + 1 + bytes.len()).map(|l| l.trim());
        if line.ends_with('[') && bytes.len() >= 8 && matches!(close, Some("]" | "],")) {
            let indent = &line[..line.len() - line.trim_start().len()];
            let comma = if close == Some("],") { "," } else { "" };
            if bytes.iter().all(|b| *b == bytes[0]) {
                out.push(format!("{line}{:#04x}; {}]{comma}", bytes[0], bytes.len()));
            } else {
                out.push(line.to_string());
                for chunk in bytes.chunks(8) {
                    let hex: Vec<_> = chunk.iter().map(|b| format!("{b:#04x}")).collect();
                    out.push(format!("{indent}    {},", hex.join(", ")));
                }
                out.push(format!("{indent}]{comma}"));
            }
            i += bytes.len() + 2;
            continue;
        }
        out.push(line.to_string());
        i += 1;
    }
    out.join("\n")
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

/// The static X25519 public key of the pump in the examples (its secret is `42 × 32`).
pub fn pump_public_key() -> [u8; 32] {
    thecal_protocol::session::Ephemeral::from_bytes([0x42; 32]).public()
}

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
                | Capabilities::EVENT_LOG
                | Capabilities::SECURE_SESSION
                | Capabilities::EMERGENCY_ACCESS
                | Capabilities::KEY_LIFECYCLE,
        ),
        reservoir_capacity: Nanolitres::from_ml(40),
        public_key: pump_public_key(),
        // The clinician key was rotated once since provisioning.
        key_epochs: KeyEpochs {
            patient: 1,
            clinician: 2,
            service: 1,
        },
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
        halted_since: None,
        withheld: None,
        standing: Standing {
            newest: Revision(3),
            fallback: false,
            review: false,
        },
        low_at: Some(Timestamp(NOW.0 + 38 * 86_400_000)),
        empty_at: Some(Timestamp(NOW.0 + 62 * 86_400_000)),
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
                    by: Role::Clinician,
                },
            },
            LogEntry {
                index: 40,
                at: Timestamp(NOW.0 - 60_000),
                event: Event::Bolus {
                    kind: BolusKind::Patient,
                    dose: Nanograms::from_ug(200),
                    by: Role::Patient,
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
