//! One sample per enum variant, in tag order (the tag tests check the order).

use super::*;

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
            prescription: Some(morphine_draft()),
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
            epoch: 2,
            nonce: [0x5A; 16],
            ephemeral: [0xE1; 32],
        },
        Request::SessionProof {
            nonce: [0x5A; 16],
            proof: [0xA5; 32],
        },
        Request::SessionClose,
        Request::Provision {
            ephemeral: [0x3C; 32],
        },
        Request::RotateKey {
            role: Role::Patient,
            epoch: 2,
            key: [0x6B; 32],
        },
        Request::CancelBolus,
        Request::UpdateBegin {
            header: heapless::Vec::from_slice(&[0x54; 128]).unwrap(),
        },
        Request::UpdateChunk {
            offset: 512,
            data: heapless::Vec::from_slice(&[0xA5; 16]).unwrap(),
        },
        Request::UpdateFinish,
        Request::UpdateStatus,
    ]
}

pub fn update_progress() -> thecal_protocol::update::UpdateProgress {
    thecal_protocol::update::UpdateProgress {
        next: 1024,
        length: 200_000,
        pending: false,
    }
}

pub fn update_report() -> thecal_protocol::update::UpdateReport {
    use thecal_protocol::update::{Board, SlotInfo, SlotState, UpdateReport};
    let version = thecal_protocol::message::Version {
        major: 1,
        minor: 2,
        patch: 0,
    };
    UpdateReport {
        board: Board::SIM,
        active: SlotInfo {
            version,
            security: 1,
            state: SlotState::Confirmed,
        },
        update: Some(SlotInfo {
            version,
            security: 1,
            state: SlotState::Pending,
        }),
    }
}

pub fn slot_state_samples() -> Vec<thecal_protocol::update::SlotState> {
    use thecal_protocol::update::SlotState as S;
    vec![
        S::Confirmed,
        S::Trial,
        S::Receiving {
            next: 512,
            length: 1024,
        },
        S::Pending,
        S::Previous,
        S::RolledBack,
    ]
}

pub fn update_refusal_samples() -> Vec<thecal_protocol::update::UpdateRefusal> {
    use thecal_protocol::update::{ImageError, UpdateRefusal as U};
    vec![
        U::Image(ImageError::HashMismatch),
        U::NotStarted,
        U::Incomplete {
            next: 512,
            length: 1024,
        },
        U::BadChunk,
        U::AwaitingConfirmation,
        U::SwapPending,
        U::Flash,
        U::NoUpdateSlot,
    ]
}

pub fn image_error_samples() -> Vec<thecal_protocol::update::ImageError> {
    use thecal_protocol::update::{Board, ImageError as E};
    vec![
        E::NotAnImage,
        E::BadSignature { dev_signed: true },
        E::WrongBoard {
            expected: Board::SIM,
            found: Board::NRF52840_DK,
        },
        E::Downgrade {
            minimum: 2,
            found: 1,
        },
        E::TooLarge {
            capacity: 1024,
            length: 2048,
        },
        E::HashMismatch,
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
            standing: Standing {
                newest: Revision(3),
                fallback: false,
                review: false,
            },
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
            ephemeral: [0xD1; 32],
            proof: [0x22; 32],
        },
        Response::SessionEstablished,
        Response::SessionClosed,
        Response::Provisioned {
            confirm: [0xC0; 32],
            epoch: 1,
        },
        Response::KeyRotated {
            role: Role::Patient,
            epoch: 2,
        },
        Response::BolusCancelled(bolus_outcome()),
        Response::UpdateStarted(update_progress()),
        Response::ChunkWritten(update_progress()),
        Response::UpdateVerified(update_progress()),
        Response::UpdateStatus(update_report()),
    ]
}

/// A patient bolus cancelled by the clinician after 5 of its 20 µL.
pub fn bolus_outcome() -> BolusOutcome {
    BolusOutcome {
        kind: BolusKind::Patient,
        end: BolusEnd::Cancelled {
            by: Role::Clinician,
        },
        delivered: Nanolitres(5_000),
        planned: Nanolitres(20_000),
    }
}

pub fn bolus_end_samples() -> Vec<BolusEnd> {
    vec![
        BolusEnd::Completed,
        BolusEnd::Cancelled {
            by: Role::Clinician,
        },
        BolusEnd::Stopped,
        BolusEnd::Halted(AlarmKind::MotorStall),
        BolusEnd::Interrupted,
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
        Refusal::DrugChangeNeedsRefill,
        Refusal::Busy,
        Refusal::AuthenticationFailed,
        Refusal::NotProvisioned,
        Refusal::PresenceRequired,
        Refusal::StaleKey {
            epoch: 1,
            current: 2,
        },
        Refusal::NoBolus,
        Refusal::RefillTooSmall {
            volume: Nanolitres(0),
            min: Nanolitres(250),
        },
        Refusal::Update(thecal_protocol::update::UpdateRefusal::NotStarted),
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
            by: Role::Clinician,
        },
        Event::Refilled {
            volume: Nanolitres::from_ml(40),
            drug: Drug::Morphine,
            concentration: NanogramsPerMillilitre::from_mg_per_ml(10),
            by: Role::Clinician,
        },
        Event::Bolus {
            kind: BolusKind::Patient,
            dose: Nanograms::from_ug(200),
            by: Role::Patient,
        },
        Event::TherapyStopped {
            by: Role::Emergency,
        },
        Event::TherapyResumed {
            by: Role::Clinician,
        },
        Event::AlarmRaised(AlarmKind::LowReservoir),
        Event::AlarmCleared(AlarmKind::LowReservoir),
        Event::AlarmAcknowledged {
            alarm: AlarmKind::LowReservoir,
            by: Role::Clinician,
        },
        Event::ClockChanged {
            from: Timestamp(NOW.0 - 2_000),
            to: NOW,
            offset: UtcOffset(60),
            by: Role::Clinician,
        },
        Event::Refused {
            by: Role::Patient,
            request: 6,
            reason: 3,
            count: 12,
        },
        Event::HandshakeFailed {
            role: Role::Clinician,
            count: 3,
        },
        Event::SessionOpened {
            role: Role::Clinician,
            session: 1,
        },
        Event::SessionEnded {
            role: Role::Clinician,
            session: 1,
            reason: SessionEnd::Expired,
        },
        Event::LinkAbuse(LinkAbuse {
            unanswered: 40_000,
            forged: 2,
        }),
        Event::Provisioned { epoch: 1 },
        Event::PresenceApplied,
        Event::Suppressed { count: 310 },
        Event::KeyRotated {
            by: Role::Clinician,
            role: Role::Patient,
            epoch: 2,
        },
        Event::BolusEnded(bolus_outcome()),
        Event::BasalWithheld,
        Event::BasalResumed {
            withheld: Nanolitres(1_250),
        },
        Event::PrescriptionFallback {
            in_force: Revision(3),
            newest: Revision(4),
        },
        Event::PrescriptionReview {
            revision: Revision(3),
            rules: 1,
        },
    ]
}

pub fn session_end_samples() -> Vec<SessionEnd> {
    vec![
        SessionEnd::Closed,
        SessionEnd::Expired,
        SessionEnd::Replaced,
        SessionEnd::CounterExhausted,
        SessionEnd::PresenceEnded,
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
    Role::ALL.to_vec()
}
