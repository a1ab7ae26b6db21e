//! proptest strategies for every type on the wire. `arb_*` values are arbitrary (any
//! bit pattern the type allows, valid or not); [`valid_prescription`] builds only
//! prescriptions that pass every rule, because `Prescription` cannot exist otherwise.

use heapless::{String, Vec as HVec};
use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use thecal_protocol::frame::{Flags, FrameKind, Header};
use thecal_protocol::message::{
    AlarmEntry, AlarmKind, BatteryReport, BatteryState, BolusKind, BolusProgress, BolusReport,
    BolusRequest, Capabilities, Event, Identity, KeyEpochs, LinkAbuse, LinkStats, LogEntry,
    LogPage, PrescriptionRecord, Refusal, ReservoirReport, ResetCause, Revision, Role, SessionEnd,
    Standing, StatusReport, TherapyState, Version, Withheld, MAX_ALARMS, MAX_ID_LEN, MAX_LOG_PAGE,
};
use thecal_protocol::prescription::{
    DaySteps, PatientBolusRules, Step, TherapyMode, MAX_PROFILE_DAYS, MAX_STEPS_PER_DAY,
};
use thecal_protocol::rules::{self, At, ScheduleError};
use thecal_protocol::time::{MinuteOfDay, Timestamp, UtcOffset, Weekday};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
    MINUTES_PER_DAY, NL_PER_ML,
};
use thecal_protocol::{Drug, Prescription, PrescriptionDraft, Request, Response};

/// One of several strategies of the same value type, each equally likely.
fn one_of<T: std::fmt::Debug + 'static>(arms: Vec<BoxedStrategy<T>>) -> BoxedStrategy<T> {
    Union::new(arms).boxed()
}

// ---------------------------------------------------------------------------------------
// Scalars

pub fn nl() -> impl Strategy<Value = Nanolitres> + Clone {
    any::<u32>().prop_map(Nanolitres)
}
pub fn ng() -> impl Strategy<Value = Nanograms> + Clone {
    any::<u32>().prop_map(Nanograms)
}
pub fn ng_day() -> impl Strategy<Value = NanogramsPerDay> + Clone {
    any::<u32>().prop_map(NanogramsPerDay)
}
pub fn nl_day() -> impl Strategy<Value = NanolitresPerDay> + Clone {
    any::<u32>().prop_map(NanolitresPerDay)
}
pub fn ng_ml() -> impl Strategy<Value = NanogramsPerMillilitre> + Clone {
    any::<u32>().prop_map(NanogramsPerMillilitre)
}
pub fn minutes() -> impl Strategy<Value = Minutes> + Clone {
    any::<u16>().prop_map(Minutes)
}
pub fn minute_of_day() -> impl Strategy<Value = MinuteOfDay> + Clone {
    any::<u16>().prop_map(MinuteOfDay)
}
pub fn ts() -> impl Strategy<Value = Timestamp> + Clone {
    any::<u64>().prop_map(Timestamp)
}
pub fn offset() -> impl Strategy<Value = UtcOffset> + Clone {
    any::<i16>().prop_map(UtcOffset)
}
pub fn revision() -> impl Strategy<Value = Revision> + Clone {
    any::<u32>().prop_map(Revision)
}
pub fn drug() -> impl Strategy<Value = Drug> + Clone {
    select(Drug::ALL.to_vec())
}
pub fn alarm() -> impl Strategy<Value = AlarmKind> + Clone {
    select(AlarmKind::ALL.to_vec())
}
pub fn weekday() -> impl Strategy<Value = Weekday> + Clone {
    select(Weekday::ALL.to_vec())
}
pub fn bolus_kind() -> impl Strategy<Value = BolusKind> + Clone {
    select(vec![
        BolusKind::Single,
        BolusKind::Priming,
        BolusKind::Bridge,
        BolusKind::Patient,
    ])
}
pub fn role() -> impl Strategy<Value = Role> + Clone {
    select(Role::ALL.to_vec())
}
pub fn battery_state() -> impl Strategy<Value = BatteryState> + Clone {
    select(vec![
        BatteryState::Ok,
        BatteryState::ElectiveReplacement,
        BatteryState::EndOfService,
    ])
}
pub fn reset_cause() -> impl Strategy<Value = ResetCause> + Clone {
    select(vec![
        ResetCause::PowerOn,
        ResetCause::Watchdog,
        ResetCause::Software,
        ResetCause::Unknown,
    ])
}

/// Any text of at most `MAX_ID_LEN` bytes of UTF-8 (multi-byte characters included).
pub fn id_text() -> impl Strategy<Value = String<MAX_ID_LEN>> + Clone {
    "\\PC{0,16}".prop_map(|s: std::string::String| {
        let mut out = String::new();
        for c in s.chars() {
            if out.push(c).is_err() {
                break;
            }
        }
        out
    })
}

pub fn header() -> impl Strategy<Value = Header> + Clone {
    (
        select(vec![
            FrameKind::Request,
            FrameKind::Response,
            FrameKind::Event,
        ]),
        any::<u16>(),
        select(vec![0, Flags::RETRY]),
    )
        .prop_map(|(kind, id, flags)| Header {
            kind,
            id,
            flags: Flags(flags),
        })
}

// ---------------------------------------------------------------------------------------
// Prescriptions (arbitrary, not validated)

pub fn step() -> impl Strategy<Value = Step> + Clone {
    (minute_of_day(), ng_day()).prop_map(|(start, dose)| Step { start, dose })
}

pub fn day_steps() -> impl Strategy<Value = DaySteps> + Clone {
    vec(step(), 0..=MAX_STEPS_PER_DAY).prop_map(|v| v.into_iter().collect())
}

pub fn therapy_mode() -> BoxedStrategy<TherapyMode> {
    one_of(vec![
        Just(TherapyMode::Stopped).boxed(),
        ng_day()
            .prop_map(|dose| TherapyMode::Continuous { dose })
            .boxed(),
        vec(day_steps(), 0..=MAX_PROFILE_DAYS)
            .prop_map(|days| TherapyMode::Flexible {
                days: days.into_iter().collect(),
            })
            .boxed(),
    ])
}

pub fn patient_bolus_rules() -> impl Strategy<Value = PatientBolusRules> + Clone {
    (ng(), minutes(), any::<u8>()).prop_map(|(dose, lockout, max_per_day)| PatientBolusRules {
        dose,
        lockout,
        max_per_day,
    })
}

pub fn draft() -> impl Strategy<Value = PrescriptionDraft> {
    (
        drug(),
        ng_ml(),
        ng_day(),
        therapy_mode(),
        option::of(patient_bolus_rules()),
        nl(),
    )
        .prop_map(
            |(drug, concentration, daily_limit, mode, patient_bolus, low_reservoir_alarm)| {
                PrescriptionDraft {
                    drug,
                    concentration,
                    daily_limit,
                    mode,
                    patient_bolus,
                    low_reservoir_alarm,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------
// Valid prescriptions

/// Lowest dose rate whose flow at `c` reaches `MIN_FLOW` (flow rounds down).
fn lowest_dose(c: NanogramsPerMillilitre) -> u32 {
    rules::min_flow_dose(c).0
}

/// Highest dose rate whose flow at `c` stays within `MAX_FLOW`.
fn highest_dose(c: NanogramsPerMillilitre) -> u32 {
    let c = u64::from(c.0);
    let max_flow = u64::from(rules::MAX_FLOW.0);
    // floor(d × 10⁶ / c) ≤ max  ⇔  d × 10⁶ < (max + 1) × c
    let d = ((max_flow + 1) * c - 1) / NL_PER_ML;
    u32::try_from(d).unwrap_or(u32::MAX)
}

/// One day profile: a step at 00:00, then up to 15 more at distinct later minutes.
fn valid_day(lo: u32, hi: u32) -> impl Strategy<Value = DaySteps> {
    btree_set(1..MINUTES_PER_DAY, 0..MAX_STEPS_PER_DAY).prop_flat_map(move |later| {
        let starts: Vec<u16> = std::iter::once(0).chain(later).collect();
        vec(lo..=hi, starts.len()).prop_map(move |doses| {
            starts
                .iter()
                .zip(doses)
                .map(|(&s, d)| Step {
                    start: MinuteOfDay(s),
                    dose: NanogramsPerDay(d),
                })
                .collect()
        })
    })
}

fn valid_mode(lo: u32, hi: u32) -> BoxedStrategy<TherapyMode> {
    one_of(vec![
        Just(TherapyMode::Stopped).boxed(),
        (lo..=hi)
            .prop_map(|d| TherapyMode::Continuous {
                dose: NanogramsPerDay(d),
            })
            .boxed(),
        prop_oneof![Just(1), Just(MAX_PROFILE_DAYS)]
            .prop_flat_map(move |n| vec(valid_day(lo, hi), n))
            .prop_map(|days| TherapyMode::Flexible {
                days: days.into_iter().collect(),
            })
            .boxed(),
    ])
}

/// Prescriptions that pass every rule, across every drug, concentration, mode and
/// profile shape the rules allow.
pub fn valid_prescription() -> impl Strategy<Value = Prescription> {
    drug()
        .prop_flat_map(|drug| (Just(drug), 1..=drug.ceiling().max_concentration.0))
        .prop_flat_map(|(drug, c)| {
            let c = NanogramsPerMillilitre(c);
            let lo = lowest_dose(c);
            (Just(drug), Just(c), lo..=drug.ceiling().max_per_day.0)
        })
        .prop_flat_map(|(drug, c, limit)| {
            let lo = lowest_dose(c);
            let hi = highest_dose(c).min(limit);
            (
                Just(drug),
                Just(c),
                Just(limit),
                valid_mode(lo, hi),
                option::of((1u8..=rules::MAX_PATIENT_BOLUSES).prop_flat_map(move |n| {
                    let most = (limit / u32::from(n) / 2).max(1);
                    (1..=most, rules::MIN_LOCKOUT.0..=u16::MAX, Just(n))
                })),
                rules::MIN_LOW_ALARM.0..=rules::MAX_LOW_ALARM.0,
            )
        })
        .prop_map(|(drug, c, limit, mode, bolus, low)| {
            let draft = PrescriptionDraft {
                drug,
                concentration: c,
                daily_limit: NanogramsPerDay(limit),
                mode,
                patient_bolus: bolus.map(|(dose, lockout, n)| PatientBolusRules {
                    dose: Nanograms(dose),
                    lockout: Minutes(lockout),
                    max_per_day: n,
                }),
                low_reservoir_alarm: Nanolitres(low),
            };
            match Prescription::new(draft.clone()) {
                Ok(p) => p,
                // The basal may leave no room for the boluses drawn; drop them.
                Err(ScheduleError::BolusAllowanceAboveLimit { .. }) => {
                    Prescription::new(PrescriptionDraft {
                        patient_bolus: None,
                        ..draft
                    })
                    .unwrap_or_else(|e| panic!("valid without boluses, but: {e}"))
                }
                Err(e) => panic!("the strategy built an invalid prescription ({e}): {draft:?}"),
            }
        })
}

// ---------------------------------------------------------------------------------------
// Refusals and schedule errors

pub fn at() -> BoxedStrategy<At> {
    one_of(vec![
        Just(At::Continuous).boxed(),
        (option::of(weekday()), any::<u8>(), minute_of_day())
            .prop_map(|(day, number, start)| At::Step { day, number, start })
            .boxed(),
    ])
}

pub fn schedule_error() -> BoxedStrategy<ScheduleError> {
    use ScheduleError as E;
    one_of(vec![
        (drug(), ng_ml(), ng_ml())
            .prop_map(|(drug, concentration, max)| E::ConcentrationOutOfRange {
                drug,
                concentration,
                max,
            })
            .boxed(),
        (drug(), ng_day(), ng_day())
            .prop_map(|(drug, limit, ceiling)| E::DailyLimitOutOfRange {
                drug,
                limit,
                ceiling,
            })
            .boxed(),
        nl().prop_map(|threshold| E::LowReservoirAlarmOutOfRange { threshold })
            .boxed(),
        any::<u8>().prop_map(|days| E::ProfileDays { days }).boxed(),
        option::of(weekday())
            .prop_map(|day| E::EmptyDay { day })
            .boxed(),
        (option::of(weekday()), minute_of_day())
            .prop_map(|(day, start)| E::FirstStepNotAtMidnight { day, start })
            .boxed(),
        at().prop_map(|at| E::StepStartOutOfRange { at }).boxed(),
        (at(), minute_of_day())
            .prop_map(|(at, previous)| E::StepOutOfOrder { at, previous })
            .boxed(),
        (at(), nl_day())
            .prop_map(|(at, flow)| E::FlowBelowMinimum { at, flow })
            .boxed(),
        (at(), ng_day())
            .prop_map(|(at, dose)| E::FlowAboveMaximum { at, dose })
            .boxed(),
        (at(), ng_day(), ng_day())
            .prop_map(|(at, dose, limit)| E::StepAboveDailyLimit { at, dose, limit })
            .boxed(),
        (option::of(weekday()), minute_of_day(), ng(), ng_day())
            .prop_map(|(day, start, total, limit)| E::RollingTotalAboveLimit {
                day,
                start,
                total,
                limit,
            })
            .boxed(),
        (ng(), minutes(), any::<u8>())
            .prop_map(|(dose, lockout, max_per_day)| E::PatientBolusInvalid {
                dose,
                lockout,
                max_per_day,
            })
            .boxed(),
        (ng(), ng(), ng_day())
            .prop_map(|(basal, boluses, limit)| E::BolusAllowanceAboveLimit {
                basal,
                boluses,
                limit,
            })
            .boxed(),
    ])
}

pub fn refusal() -> BoxedStrategy<Refusal> {
    use Refusal as R;
    one_of(vec![
        Just(R::Malformed).boxed(),
        Just(R::Unsupported).boxed(),
        Just(R::SessionRequired).boxed(),
        Just(R::NotPermitted).boxed(),
        schedule_error().prop_map(R::InvalidPrescription).boxed(),
        (revision(), revision())
            .prop_map(|(expected, current)| R::RevisionMismatch { expected, current })
            .boxed(),
        (ng(), ng(), ng_day())
            .prop_map(|(delivered, requested, limit)| R::DailyLimit {
                delivered,
                requested,
                limit,
            })
            .boxed(),
        Just(R::PatientBolusNotAllowed).boxed(),
        ts().prop_map(|until| R::PatientLockout { until }).boxed(),
        any::<u8>()
            .prop_map(|max| R::PatientDailyMaximum { max })
            .boxed(),
        Just(R::BolusInProgress).boxed(),
        Just(R::BolusInvalid).boxed(),
        Just(R::TherapyStopped).boxed(),
        alarm().prop_map(R::Alarm).boxed(),
        (nl(), nl())
            .prop_map(|(volume, capacity)| R::AboveCapacity { volume, capacity })
            .boxed(),
        alarm().prop_map(R::AlarmNotActive).boxed(),
        Just(R::ClockInvalid).boxed(),
        Just(R::StorageFault).boxed(),
        Just(R::DrugChangeNeedsRefill).boxed(),
        Just(R::Busy).boxed(),
        Just(R::AuthenticationFailed).boxed(),
        Just(R::NotProvisioned).boxed(),
        Just(R::PresenceRequired).boxed(),
        (any::<u32>(), any::<u32>())
            .prop_map(|(epoch, current)| R::StaleKey { epoch, current })
            .boxed(),
    ])
}

// ---------------------------------------------------------------------------------------
// Log

pub fn session_end() -> impl Strategy<Value = SessionEnd> + Clone {
    select(vec![
        SessionEnd::Closed,
        SessionEnd::Expired,
        SessionEnd::Replaced,
        SessionEnd::CounterExhausted,
        SessionEnd::PresenceEnded,
    ])
}

pub fn event() -> BoxedStrategy<Event> {
    one_of(vec![
        reset_cause()
            .prop_map(|cause| Event::Reset { cause })
            .boxed(),
        (revision(), revision(), role())
            .prop_map(|(old, new, by)| Event::PrescriptionChanged { old, new, by })
            .boxed(),
        (nl(), drug(), ng_ml(), role())
            .prop_map(|(volume, drug, concentration, by)| Event::Refilled {
                volume,
                drug,
                concentration,
                by,
            })
            .boxed(),
        (bolus_kind(), ng(), role())
            .prop_map(|(kind, dose, by)| Event::Bolus { kind, dose, by })
            .boxed(),
        role().prop_map(|by| Event::TherapyStopped { by }).boxed(),
        role().prop_map(|by| Event::TherapyResumed { by }).boxed(),
        alarm().prop_map(Event::AlarmRaised).boxed(),
        alarm().prop_map(Event::AlarmCleared).boxed(),
        (alarm(), role())
            .prop_map(|(alarm, by)| Event::AlarmAcknowledged { alarm, by })
            .boxed(),
        (ts(), ts(), offset(), role())
            .prop_map(|(from, to, offset, by)| Event::ClockChanged {
                from,
                to,
                offset,
                by,
            })
            .boxed(),
        (role(), any::<u8>(), any::<u8>(), any::<u16>())
            .prop_map(|(by, request, reason, count)| Event::Refused {
                by,
                request,
                reason,
                count,
            })
            .boxed(),
        (role(), any::<u16>())
            .prop_map(|(role, count)| Event::HandshakeFailed { role, count })
            .boxed(),
        (role(), any::<u16>())
            .prop_map(|(role, session)| Event::SessionOpened { role, session })
            .boxed(),
        (role(), any::<u16>(), session_end())
            .prop_map(|(role, session, reason)| Event::SessionEnded {
                role,
                session,
                reason,
            })
            .boxed(),
        (any::<u32>(), any::<u32>())
            .prop_map(|(unanswered, forged)| Event::LinkAbuse(LinkAbuse { unanswered, forged }))
            .boxed(),
        any::<u32>()
            .prop_map(|epoch| Event::Provisioned { epoch })
            .boxed(),
        Just(Event::PresenceApplied).boxed(),
        any::<u32>()
            .prop_map(|count| Event::Suppressed { count })
            .boxed(),
        (role(), role(), any::<u32>())
            .prop_map(|(by, role, epoch)| Event::KeyRotated { by, role, epoch })
            .boxed(),
    ])
}

pub fn log_entry() -> impl Strategy<Value = LogEntry> {
    (any::<u32>(), ts(), event()).prop_map(|(index, at, event)| LogEntry { index, at, event })
}

/// A page the pump could send: entries strictly ascending from `oldest`, below `next`
/// (the packed wire form holds no other); indices, times and gaps arbitrary.
pub fn log_page() -> impl Strategy<Value = LogPage> {
    let skip = prop_oneof![0..3u32, any::<u32>()];
    (
        any::<u32>(),
        vec((skip, ts(), event()), 0..=MAX_LOG_PAGE),
        prop_oneof![Just(0u32), any::<u32>()],
    )
        .prop_map(|(oldest, raw, slack)| {
            let mut entries = HVec::new();
            let mut base = Some(oldest);
            for (skip, at, event) in raw {
                let Some(index) = base
                    .and_then(|b| b.checked_add(skip))
                    .filter(|&i| i < u32::MAX)
                else {
                    break;
                };
                entries.push(LogEntry { index, at, event }).unwrap();
                base = index.checked_add(1);
            }
            let floor = entries.last().map_or(oldest, |e: &LogEntry| e.index + 1);
            LogPage {
                oldest,
                next: floor.saturating_add(slack),
                entries,
            }
        })
}

// ---------------------------------------------------------------------------------------
// Reports

pub fn key_epochs() -> impl Strategy<Value = KeyEpochs> + Clone {
    any::<(u32, u32, u32)>().prop_map(|(patient, clinician, service)| KeyEpochs {
        patient,
        clinician,
        service,
    })
}

pub fn identity() -> impl Strategy<Value = Identity> {
    (
        (id_text(), id_text()),
        any::<(u8, u8, u8)>(),
        (any::<u8>(), any::<u32>(), any::<u32>()),
        nl(),
        any::<[u8; 32]>(),
        key_epochs(),
    )
        .prop_map(
            |(
                (model, serial),
                (major, minor, patch),
                (protocol, schema, caps),
                capacity,
                public_key,
                key_epochs,
            )| Identity {
                model,
                serial,
                firmware: Version {
                    major,
                    minor,
                    patch,
                },
                protocol,
                schema,
                capabilities: Capabilities(caps),
                reservoir_capacity: capacity,
                public_key,
                key_epochs,
            },
        )
}

pub fn therapy_state() -> BoxedStrategy<TherapyState> {
    one_of(vec![
        Just(TherapyState::Running).boxed(),
        Just(TherapyState::Stopped).boxed(),
        alarm().prop_map(TherapyState::Halted).boxed(),
    ])
}

pub fn bolus_progress() -> impl Strategy<Value = BolusProgress> + Clone {
    (bolus_kind(), nl(), nl(), ts()).prop_map(|(kind, delivered, total, ends_at)| BolusProgress {
        kind,
        delivered,
        total,
        ends_at,
    })
}

pub fn status_report() -> impl Strategy<Value = StatusReport> {
    (
        (ts(), offset(), therapy_state(), revision(), drug()),
        (ng_day(), nl_day(), ng(), ng_day(), nl()),
        (
            battery_state(),
            any::<u8>(),
            any::<bool>(),
            option::of(bolus_progress()),
        ),
        (
            option::of(ts()),
            option::of((ts(), nl()).prop_map(|(since, volume)| Withheld { since, volume })),
            (revision(), any::<bool>(), any::<bool>()).prop_map(|(newest, fallback, review)| {
                Standing {
                    newest,
                    fallback,
                    review,
                }
            }),
            option::of(ts()),
            option::of(ts()),
        ),
    )
        .prop_map(
            |(
                (now, offset, therapy, revision, drug),
                (basal_dose, basal_flow, delivered_24h, daily_limit, reservoir),
                (battery, alarms, critical, bolus),
                (halted_since, withheld, standing, low_at, empty_at),
            )| StatusReport {
                now,
                offset,
                therapy,
                revision,
                drug,
                basal_dose,
                basal_flow,
                delivered_24h,
                daily_limit,
                reservoir,
                battery,
                alarms,
                critical,
                bolus,
                halted_since,
                withheld,
                standing,
                low_at,
                empty_at,
            },
        )
}

pub fn battery_report() -> impl Strategy<Value = BatteryReport> {
    (
        any::<u16>(),
        any::<u8>(),
        battery_state(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(
            |(millivolts, percent, state, days_to_eri, days_to_eos)| BatteryReport {
                millivolts,
                percent,
                state,
                days_to_eri,
                days_to_eos,
            },
        )
}

pub fn reservoir_report() -> impl Strategy<Value = ReservoirReport> + Clone {
    let when = || option::of(ts());
    (
        (nl(), nl(), nl(), drug(), ng_ml()),
        (when(), when(), when(), when(), when()),
    )
        .prop_map(
            |(
                (capacity, volume, low_threshold, drug, concentration),
                (low_at, empty_at, worst_low_at, worst_empty_at, last_refill),
            )| ReservoirReport {
                capacity,
                volume,
                low_threshold,
                drug,
                concentration,
                low_at,
                empty_at,
                worst_low_at,
                worst_empty_at,
                last_refill,
            },
        )
}

pub fn bolus_report() -> impl Strategy<Value = BolusReport> + Clone {
    (bolus_kind(), ng(), nl(), ts()).prop_map(|(kind, dose, volume, ends_at)| BolusReport {
        kind,
        dose,
        volume,
        ends_at,
    })
}

pub fn alarm_entry() -> impl Strategy<Value = AlarmEntry> {
    (alarm(), ts(), any::<bool>()).prop_map(|(kind, raised_at, acknowledged)| AlarmEntry {
        kind,
        raised_at,
        acknowledged,
    })
}

pub fn link_stats() -> impl Strategy<Value = LinkStats> {
    any::<[u32; 10]>().prop_map(|c| LinkStats {
        frames_in: c[0],
        frames_out: c[1],
        bad_crc: c[2],
        malformed: c[3],
        oversize: c[4],
        resyncs: c[5],
        refusals: c[6],
        replays: c[7],
        forged: c[8],
        quiet: c[9],
    })
}

pub fn prescription_record() -> impl Strategy<Value = PrescriptionRecord> {
    (revision(), ts(), valid_prescription(), any::<bool>()).prop_map(
        |(revision, written_at, prescription, fallback)| PrescriptionRecord {
            revision,
            written_at,
            prescription,
            standing: Standing {
                newest: Revision(revision.0.saturating_add(u32::from(fallback))),
                fallback,
                review: false,
            },
        },
    )
}

pub fn bolus_request() -> BoxedStrategy<BolusRequest> {
    one_of(vec![
        (ng(), minutes())
            .prop_map(|(dose, duration)| BolusRequest::Single { dose, duration })
            .boxed(),
        (nl(), minutes())
            .prop_map(|(volume, duration)| BolusRequest::Priming { volume, duration })
            .boxed(),
        (nl(), minutes())
            .prop_map(|(volume, duration)| BolusRequest::Bridge { volume, duration })
            .boxed(),
    ])
}

// ---------------------------------------------------------------------------------------
// Messages

pub fn request() -> BoxedStrategy<Request> {
    use Request as Q;
    one_of(vec![
        Just(Q::Identify).boxed(),
        any::<u32>().prop_map(|token| Q::Ping { token }).boxed(),
        Just(Q::Status).boxed(),
        Just(Q::Battery).boxed(),
        Just(Q::Reservoir).boxed(),
        Just(Q::ReadPrescription).boxed(),
        (revision(), draft())
            .prop_map(|(expected, prescription)| Q::WritePrescription {
                expected,
                prescription,
            })
            .boxed(),
        (revision(), nl(), option::of(draft()))
            .prop_map(|(expected, volume, prescription)| Q::Refill {
                expected,
                volume,
                prescription,
            })
            .boxed(),
        bolus_request().prop_map(Q::ClinicianBolus).boxed(),
        Just(Q::PatientBolus).boxed(),
        Just(Q::StopTherapy).boxed(),
        Just(Q::ResumeTherapy).boxed(),
        Just(Q::ReadAlarms).boxed(),
        alarm()
            .prop_map(|alarm| Q::AcknowledgeAlarm { alarm })
            .boxed(),
        (any::<u32>(), any::<u8>())
            .prop_map(|(first, max)| Q::ReadLog { first, max })
            .boxed(),
        (ts(), offset())
            .prop_map(|(now, offset)| Q::SetClock { now, offset })
            .boxed(),
        Just(Q::LinkStats).boxed(),
        (role(), any::<u32>(), any::<[u8; 16]>(), any::<[u8; 32]>())
            .prop_map(|(role, epoch, nonce, ephemeral)| Q::SessionHello {
                role,
                epoch,
                nonce,
                ephemeral,
            })
            .boxed(),
        (any::<[u8; 16]>(), any::<[u8; 32]>())
            .prop_map(|(nonce, proof)| Q::SessionProof { nonce, proof })
            .boxed(),
        Just(Q::SessionClose).boxed(),
        any::<[u8; 32]>()
            .prop_map(|ephemeral| Q::Provision { ephemeral })
            .boxed(),
        (role(), any::<u32>(), any::<[u8; 32]>())
            .prop_map(|(role, epoch, key)| Q::RotateKey { role, epoch, key })
            .boxed(),
    ])
}

pub fn response() -> BoxedStrategy<Response> {
    use Response as A;
    one_of(vec![
        refusal().prop_map(A::Refused).boxed(),
        identity().prop_map(A::Identity).boxed(),
        any::<u32>().prop_map(|token| A::Pong { token }).boxed(),
        status_report().prop_map(A::Status).boxed(),
        battery_report().prop_map(A::Battery).boxed(),
        reservoir_report().prop_map(A::Reservoir).boxed(),
        prescription_record().prop_map(A::Prescription).boxed(),
        revision()
            .prop_map(|revision| A::PrescriptionWritten { revision })
            .boxed(),
        (revision(), reservoir_report())
            .prop_map(|(revision, reservoir)| A::Refilled {
                revision,
                reservoir,
            })
            .boxed(),
        bolus_report().prop_map(A::BolusStarted).boxed(),
        bolus_report().prop_map(A::PatientBolusStarted).boxed(),
        Just(A::TherapyStopped).boxed(),
        Just(A::TherapyResumed).boxed(),
        vec(alarm_entry(), 0..=MAX_ALARMS)
            .prop_map(|v| A::Alarms(v.into_iter().collect::<HVec<_, MAX_ALARMS>>()))
            .boxed(),
        Just(A::AlarmAcknowledged).boxed(),
        log_page().prop_map(A::LogPage).boxed(),
        ts().prop_map(|previous| A::ClockSet { previous }).boxed(),
        link_stats().prop_map(A::LinkStats).boxed(),
        (any::<[u8; 16]>(), any::<[u8; 32]>(), any::<[u8; 32]>())
            .prop_map(|(nonce, ephemeral, proof)| A::SessionChallenge {
                nonce,
                ephemeral,
                proof,
            })
            .boxed(),
        Just(A::SessionEstablished).boxed(),
        Just(A::SessionClosed).boxed(),
        (any::<[u8; 32]>(), any::<u32>())
            .prop_map(|(confirm, epoch)| A::Provisioned { confirm, epoch })
            .boxed(),
        (role(), any::<u32>())
            .prop_map(|(role, epoch)| A::KeyRotated { role, epoch })
            .boxed(),
    ])
}
