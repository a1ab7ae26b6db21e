//! Worst cases: the largest value of each message that carries data, every collection
//! full and every varint at its longest, for the size-limit tests.

use super::*;

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
            prescription: Some(largest_draft()),
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
            epoch: u32::MAX,
            nonce: [0xFF; 16],
            ephemeral: [0xFF; 32],
        },
        Request::SessionProof {
            nonce: [0xFF; 16],
            proof: [0xFF; 32],
        },
        Request::Provision {
            ephemeral: [0xFF; 32],
        },
        Request::RotateKey {
            role: Role::Emergency,
            epoch: u32::MAX,
            key: [0xFF; 32],
        },
        Request::UpdateBegin {
            header: heapless::Vec::from_slice(&[0xFF; thecal_protocol::update::HEADER_LEN])
                .unwrap(),
        },
        Request::UpdateChunk {
            offset: u32::MAX,
            data: heapless::Vec::from_slice(&[0xFF; thecal_protocol::update::MAX_CHUNK]).unwrap(),
        },
    ]
}

/// The largest value of every Response variant that carries data.
pub fn largest_responses() -> Vec<Response> {
    let long_id = String::try_from("\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}").unwrap();
    let biggest_event = Event::ClockChanged {
        from: T_MAX,
        to: T_MAX,
        offset: UtcOffset(i16::MIN),
        by: Role::Emergency,
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
            public_key: [0xFF; 32],
            key_epochs: KeyEpochs {
                patient: u32::MAX,
                clinician: u32::MAX,
                service: u32::MAX,
            },
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
            halted_since: Some(T_MAX),
            withheld: Some(Withheld {
                since: T_MAX,
                volume: Nanolitres(u32::MAX),
            }),
            standing: Standing {
                newest: Revision(u32::MAX),
                fallback: true,
                review: true,
            },
            low_at: Some(T_MAX),
            empty_at: Some(T_MAX),
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
            standing: Standing {
                newest: Revision(u32::MAX),
                fallback: true,
                review: true,
            },
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
        Response::LogPage(largest_log_page(biggest_event)),
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
            forged: u32::MAX,
            quiet: u32::MAX,
        }),
        Response::Refused(Refusal::StaleKey {
            epoch: u32::MAX,
            current: u32::MAX,
        }),
        Response::SessionChallenge {
            nonce: [0xFF; 16],
            ephemeral: [0xFF; 32],
            proof: [0xFF; 32],
        },
        Response::Provisioned {
            confirm: [0xFF; 32],
            epoch: u32::MAX,
        },
        Response::KeyRotated {
            role: Role::Emergency,
            epoch: u32::MAX,
        },
        Response::UpdateStatus({
            use thecal_protocol::update::{Board, SlotInfo, SlotState, UpdateReport};
            let slot = |state| SlotInfo {
                version: thecal_protocol::message::Version {
                    major: u8::MAX,
                    minor: u8::MAX,
                    patch: u8::MAX,
                },
                security: u32::MAX,
                state,
            };
            UpdateReport {
                board: Board(u16::MAX),
                active: slot(SlotState::Confirmed),
                update: Some(slot(SlotState::Receiving {
                    next: u32::MAX,
                    length: u32::MAX,
                })),
            }
        }),
    ]
}

/// The largest log page: full, every event the longest, every time difference ±2^63
/// (10-byte varints: the times alternate between 2^63 and 0), and `oldest` and the
/// indices as far apart as `u32` allows: `oldest` and 14 skips of 2^28 (5-byte varints; a
/// 16th would pass `u32::MAX`), then skips of 2^21 (4 bytes).
pub fn largest_log_page(event: Event) -> LogPage {
    let oldest = 1 << 28;
    let mut index = oldest;
    let entries = (0..MAX_LOG_PAGE)
        .map(|n| {
            let skip = if n < 14 { 1 << 28 } else { 1 << 21 };
            index += skip + u32::from(n > 0);
            LogEntry {
                index,
                at: Timestamp(if n % 2 == 0 { 1 << 63 } else { 0 }),
                event,
            }
        })
        .collect();
    LogPage {
        oldest,
        next: u32::MAX,
        entries,
    }
}
