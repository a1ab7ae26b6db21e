//! Every row of the rule table in protocol/src/rules.rs: a case just inside the rule is
//! accepted, a case just outside is refused with the right variant, fields and message
//! (which names the day and step where there is one).

mod common;

use common::arb;
use proptest::prelude::*;
use thecal_protocol::cycle::{min_flow_dose, Segment};
use thecal_protocol::drug::Drug;
use thecal_protocol::prescription::{DaySteps, PatientBolusRules, TherapyMode, MAX_STEPS_PER_DAY};
use thecal_protocol::rules::{At, ScheduleError, MAX_FLOW, MIN_FLOW};
use thecal_protocol::time::{MinuteOfDay, Weekday};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
};
use thecal_protocol::{Prescription, PrescriptionDraft};

const MG: u32 = 1_000_000;

/// Morphine 10 mg/mL, limit 6 mg/day, a weekly profile with the same three steps every
/// day (00:00 3 mg/day, 07:00 5 mg/day, 22:00 4 mg/day), no patient bolus, alarm at 2 mL.
fn weekly() -> PrescriptionDraft {
    weekly_at(NanogramsPerMillilitre(10 * MG), [3 * MG, 5 * MG, 4 * MG])
}

fn weekly_at(c: NanogramsPerMillilitre, doses: [u32; 3]) -> PrescriptionDraft {
    let day = common::day(&[
        common::step(0, 0, NanogramsPerDay(doses[0])),
        common::step(7, 0, NanogramsPerDay(doses[1])),
        common::step(22, 0, NanogramsPerDay(doses[2])),
    ]);
    PrescriptionDraft {
        drug: Drug::Morphine,
        concentration: c,
        daily_limit: NanogramsPerDay(6 * MG),
        mode: TherapyMode::Flexible {
            days: (0..7).map(|_| day.clone()).collect(),
        },
        patient_bolus: None,
        low_reservoir_alarm: Nanolitres::from_ml(2),
    }
}

fn days(d: &mut PrescriptionDraft) -> &mut heapless::Vec<DaySteps, 7> {
    match &mut d.mode {
        TherapyMode::Flexible { days } => days,
        other => panic!("not flexible: {other:?}"),
    }
}

/// Tuesday's third step (22:00 in [`weekly`]).
fn tuesday_step_3(d: &mut PrescriptionDraft) -> &mut thecal_protocol::prescription::Step {
    &mut days(d)[1][2]
}

fn at(day: Option<Weekday>, number: u8, h: u16, m: u16) -> At {
    At::Step {
        day,
        number,
        start: MinuteOfDay::hm(h, m),
    }
}

#[track_caller]
fn accepted(d: PrescriptionDraft) -> Prescription {
    Prescription::new(d.clone()).unwrap_or_else(|e| panic!("refused ({e}): {d:?}"))
}

/// Refused with exactly `error`, whose message contains `text`.
#[track_caller]
fn refused(d: PrescriptionDraft, error: ScheduleError, text: &str) {
    let got = Prescription::new(d).expect_err("accepted");
    assert_eq!(got, error);
    let message = got.to_string();
    assert!(
        message.contains(text),
        "{message:?} does not contain {text:?}"
    );
}

#[test]
fn the_base_schedule_is_valid() {
    let p = accepted(weekly());
    assert_eq!(p.cycle_minutes(), 7 * 1_440);
    // 3 mg × 7 h + 5 mg × 15 h + 4 mg × 2 h = 104/24 mg, rounded down.
    assert_eq!(p.daily_totals(), [Nanograms(4_333_333); 7]);
}

#[test]
fn concentration_is_positive_and_within_the_drug_ceiling() {
    let ceiling = Drug::Morphine.ceiling().max_concentration;
    accepted(PrescriptionDraft {
        concentration: ceiling,
        ..weekly()
    });
    refused(
        PrescriptionDraft {
            concentration: NanogramsPerMillilitre(0),
            ..weekly()
        },
        ScheduleError::ConcentrationOutOfRange {
            drug: Drug::Morphine,
            concentration: NanogramsPerMillilitre(0),
            max: ceiling,
        },
        "concentration 0 µg/mL of morphine is outside 0 < c ≤ 20000 µg/mL",
    );
    refused(
        PrescriptionDraft {
            concentration: NanogramsPerMillilitre(ceiling.0 + 1),
            ..weekly()
        },
        ScheduleError::ConcentrationOutOfRange {
            drug: Drug::Morphine,
            concentration: NanogramsPerMillilitre(ceiling.0 + 1),
            max: ceiling,
        },
        "concentration 20000.001 µg/mL of morphine",
    );
}

#[test]
fn daily_limit_is_positive_and_within_the_drug_ceiling() {
    let ceiling = Drug::Morphine.ceiling().max_per_day;
    accepted(PrescriptionDraft {
        daily_limit: ceiling,
        ..weekly()
    });
    for limit in [NanogramsPerDay(0), NanogramsPerDay(ceiling.0 + 1)] {
        refused(
            PrescriptionDraft {
                daily_limit: limit,
                ..weekly()
            },
            ScheduleError::DailyLimitOutOfRange {
                drug: Drug::Morphine,
                limit,
                ceiling,
            },
            "the firmware ceiling for morphine",
        );
    }
}

#[test]
fn low_reservoir_alarm_is_between_half_a_millilitre_and_ten() {
    for ok in [Nanolitres(500_000), Nanolitres::from_ml(10)] {
        accepted(PrescriptionDraft {
            low_reservoir_alarm: ok,
            ..weekly()
        });
    }
    refused(
        PrescriptionDraft {
            low_reservoir_alarm: Nanolitres(499_999),
            ..weekly()
        },
        ScheduleError::LowReservoirAlarmOutOfRange {
            threshold: Nanolitres(499_999),
        },
        "low-reservoir alarm 0.499999 mL is outside 0.5 mL ..= 10 mL",
    );
    refused(
        PrescriptionDraft {
            low_reservoir_alarm: Nanolitres(10_000_001),
            ..weekly()
        },
        ScheduleError::LowReservoirAlarmOutOfRange {
            threshold: Nanolitres(10_000_001),
        },
        "10.000001 mL",
    );
}

#[test]
fn a_flexible_schedule_has_one_or_seven_day_profiles() {
    let mut one = weekly();
    days(&mut one).truncate(1);
    accepted(one);
    for n in [0, 2, 6] {
        let mut d = weekly();
        days(&mut d).truncate(n);
        refused(
            d,
            ScheduleError::ProfileDays { days: n as u8 },
            &format!("1 or 7 day profiles, not {n}"),
        );
    }
}

#[test]
fn every_day_has_a_step() {
    let mut d = weekly();
    days(&mut d)[2].clear();
    refused(
        d,
        ScheduleError::EmptyDay {
            day: Some(Weekday::Wednesday),
        },
        "Wednesday: the day profile has no steps",
    );
    let mut d = weekly();
    days(&mut d).truncate(1);
    days(&mut d)[0].clear();
    refused(
        d,
        ScheduleError::EmptyDay { day: None },
        "daily profile: the day profile has no steps",
    );
}

#[test]
fn the_first_step_starts_at_midnight() {
    // Accepted: a single step at 00:00 covers the day.
    let mut d = weekly();
    days(&mut d)[1].truncate(1);
    accepted(d);
    let mut d = weekly();
    days(&mut d)[1][0].start = MinuteOfDay::hm(0, 30);
    refused(
        d,
        ScheduleError::FirstStepNotAtMidnight {
            day: Some(Weekday::Tuesday),
            start: MinuteOfDay::hm(0, 30),
        },
        "Tuesday step 1 starts at 00:30",
    );
}

#[test]
fn step_starts_are_within_the_day() {
    let mut d = weekly();
    tuesday_step_3(&mut d).start = MinuteOfDay::hm(23, 59);
    accepted(d);
    let mut d = weekly();
    tuesday_step_3(&mut d).start = MinuteOfDay(1_440);
    refused(
        d,
        ScheduleError::StepStartOutOfRange {
            at: at(Some(Weekday::Tuesday), 3, 24, 0),
        },
        "Tuesday step 3 (from 24:00): start time is not within 00:00–23:59",
    );
}

#[test]
fn steps_are_strictly_increasing() {
    let mut d = weekly();
    tuesday_step_3(&mut d).start = MinuteOfDay::hm(7, 1);
    accepted(d);
    for (h, m) in [(7, 0), (6, 0)] {
        let mut d = weekly();
        tuesday_step_3(&mut d).start = MinuteOfDay::hm(h, m);
        refused(
            d,
            ScheduleError::StepOutOfOrder {
                at: at(Some(Weekday::Tuesday), 3, h, m),
                previous: MinuteOfDay::hm(7, 0),
            },
            &format!("Tuesday step 3 (from {h:02}:{m:02}): starts at or before the previous step (07:00)"),
        );
    }
    // A daily profile names no day.
    let mut d = weekly();
    days(&mut d).truncate(1);
    days(&mut d)[0][1].start = MinuteOfDay::MIDNIGHT;
    refused(
        d,
        ScheduleError::StepOutOfOrder {
            at: at(None, 2, 0, 0),
            previous: MinuteOfDay::MIDNIGHT,
        },
        "daily profile step 2 (from 00:00)",
    );
}

#[test]
fn flow_is_at_least_the_minimum() {
    // At 10 mg/mL, 0.048 mL/day carries exactly 480 µg/day.
    let mut d = weekly();
    tuesday_step_3(&mut d).dose = NanogramsPerDay(480_000);
    let p = accepted(d);
    assert_eq!(p.flow_for(NanogramsPerDay(480_000)), MIN_FLOW);
    let mut d = weekly();
    tuesday_step_3(&mut d).dose = NanogramsPerDay(479_999);
    refused(
        d,
        ScheduleError::FlowBelowMinimum {
            at: at(Some(Weekday::Tuesday), 3, 22, 0),
            flow: NanolitresPerDay(47_999),
        },
        "Tuesday step 3 (from 22:00): flow 0.047999 mL/day is below the pump's minimum 0.048 mL/day",
    );
    // A continuous rate is named as such.
    let d = PrescriptionDraft {
        mode: TherapyMode::Continuous {
            dose: NanogramsPerDay(1),
        },
        ..weekly()
    };
    refused(
        d,
        ScheduleError::FlowBelowMinimum {
            at: At::Continuous,
            flow: NanolitresPerDay(0),
        },
        "continuous rate: flow 0 mL/day",
    );
}

#[test]
fn flow_is_at_most_the_maximum() {
    // At 1 µg/mL, 24 mL/day carries exactly 24 µg/day.
    let c = NanogramsPerMillilitre(1_000);
    let mut d = weekly_at(c, [1_000, 2_000, 4_000]);
    tuesday_step_3(&mut d).dose = NanogramsPerDay(24_000);
    let p = accepted(d);
    assert_eq!(p.flow_for(NanogramsPerDay(24_000)), MAX_FLOW);
    let mut d = weekly_at(c, [1_000, 2_000, 4_000]);
    tuesday_step_3(&mut d).dose = NanogramsPerDay(24_001);
    refused(
        d,
        ScheduleError::FlowAboveMaximum {
            at: at(Some(Weekday::Tuesday), 3, 22, 0),
            dose: NanogramsPerDay(24_001),
        },
        "Tuesday step 3 (from 22:00): 24.001 µg/day needs more than the pump's maximum flow 24 mL/day",
    );
    // A flow too large to represent is refused the same way, not wrapped.
    let mut d = weekly_at(NanogramsPerMillilitre(1), [1, 2, 4]);
    tuesday_step_3(&mut d).dose = NanogramsPerDay(u32::MAX);
    refused(
        d,
        ScheduleError::FlowAboveMaximum {
            at: at(Some(Weekday::Tuesday), 3, 22, 0),
            dose: NanogramsPerDay(u32::MAX),
        },
        "Tuesday step 3",
    );
}

#[test]
fn no_step_exceeds_the_daily_limit() {
    let mut d = weekly();
    tuesday_step_3(&mut d).dose = NanogramsPerDay(6 * MG);
    accepted(d);
    let mut d = weekly();
    tuesday_step_3(&mut d).dose = NanogramsPerDay(7 * MG);
    refused(
        d,
        ScheduleError::StepAboveDailyLimit {
            at: at(Some(Weekday::Tuesday), 3, 22, 0),
            dose: NanogramsPerDay(7 * MG),
            limit: NanogramsPerDay(6 * MG),
        },
        "Tuesday step 3 (from 22:00): rate 7000 µg/day exceeds the daily limit 6000 µg/day",
    );
}

#[test]
fn the_rolling_24h_basal_stays_within_the_limit() {
    // With every step at or below the limit, no 24 h window can exceed it; the rule bites
    // when therapy is stopped and the catheter-open minimum flow alone carries more drug
    // than the limit: 0.048 mL/day at 20 mg/mL is 960 µg/day.
    let stopped = |limit: u32| PrescriptionDraft {
        concentration: NanogramsPerMillilitre(20 * MG),
        daily_limit: NanogramsPerDay(limit),
        mode: TherapyMode::Stopped,
        ..weekly()
    };
    accepted(stopped(960_000));
    refused(
        stopped(959_999),
        ScheduleError::RollingTotalAboveLimit {
            day: None,
            start: MinuteOfDay::MIDNIGHT,
            total: Nanograms(960_000),
            limit: NanogramsPerDay(959_999),
        },
        "the 24 h from daily profile 00:00 deliver 960 µg, above the daily limit 959.999 µg/day",
    );
    // A weekly profile at the limit on every step of every day is accepted: 24 h at the
    // limit is exactly the limit.
    accepted(weekly_at(NanogramsPerMillilitre(10 * MG), [6 * MG; 3]));
}

#[test]
fn patient_bolus_rules_are_sane() {
    let rules = |dose: u32, lockout: u16, max_per_day: u8| PrescriptionDraft {
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms(dose),
            lockout: Minutes(lockout),
            max_per_day,
        }),
        ..weekly()
    };
    accepted(rules(1, 10, 1));
    accepted(rules(1_000, 10, 24));
    for (dose, lockout, n) in [
        (0, 60, 4),
        (200_000, 9, 4),
        (200_000, 60, 0),
        (1_000, 60, 25),
    ] {
        refused(
            rules(dose, lockout, n),
            ScheduleError::PatientBolusInvalid {
                dose: Nanograms(dose),
                lockout: Minutes(lockout),
                max_per_day: n,
            },
            &format!("lockout {lockout} min, {n} per 24 h"),
        );
    }
}

#[test]
fn basal_plus_every_allowed_bolus_stays_within_the_limit() {
    // Basal: 104/24 mg = 4 333 333.3 ng, counted as 4 333 334 (rounded up). Room left
    // under 6 mg: 1 666 666 ng.
    let with = |dose: u32, n: u8| PrescriptionDraft {
        patient_bolus: Some(PatientBolusRules {
            dose: Nanograms(dose),
            lockout: Minutes(60),
            max_per_day: n,
        }),
        ..weekly()
    };
    accepted(with(833_333, 2));
    refused(
        with(833_334, 2),
        ScheduleError::BolusAllowanceAboveLimit {
            basal: Nanograms(4_333_334),
            boluses: Nanograms(1_666_668),
            limit: NanogramsPerDay(6 * MG),
        },
        "basal 4333.334 µg plus all allowed patient boluses 1666.668 µg in 24 h exceed the daily limit 6000 µg/day",
    );
}

#[test]
fn the_first_broken_rule_is_reported() {
    // Zero concentration and a bad step: the concentration rule comes first.
    let mut d = weekly();
    d.concentration = NanogramsPerMillilitre(0);
    tuesday_step_3(&mut d).start = MinuteOfDay(2_000);
    assert!(matches!(
        Prescription::new(d),
        Err(ScheduleError::ConcentrationOutOfRange { .. })
    ));
}

#[test]
fn a_full_day_of_steps_is_accepted() {
    accepted(common::full_weekly().draft().clone());
    assert_eq!(MAX_STEPS_PER_DAY, 16);
}

proptest! {
    /// Brute force against the rule engine: for every valid prescription, the basal dose
    /// in every 24 h window starting at any minute of the cycle, plus every allowed patient
    /// bolus, is within the daily limit.
    #[test]
    fn valid_prescriptions_never_exceed_the_limit_in_any_window(p in arb::valid_prescription()) {
        let cycle = p.cycle_minutes() as usize;
        // Exact basal per minute in ng·min/day (dose per day × 1 minute).
        let per_minute: Vec<u64> = (0..cycle as u32)
            .map(|m| u64::from(p.segment_at(m).dose.0))
            .collect();
        let mut window: u64 = (0..1_440).map(|m| per_minute[m % cycle]).sum();
        let mut worst = window;
        for start in 1..cycle {
            window = window + per_minute[(start + 1_439) % cycle] - per_minute[start - 1];
            worst = worst.max(window);
        }
        let boluses = p
            .patient_bolus()
            .map_or(0, |b| u64::from(b.dose.0) * u64::from(b.max_per_day));
        let limit = u64::from(p.daily_limit().0);
        prop_assert!(worst <= limit * 1_440, "basal {worst}/1440 ng > limit {limit}");
        prop_assert!(worst.div_ceil(1_440) + boluses <= limit);
    }

    /// Segments tile the cycle: contiguous, from 0 to the cycle length.
    #[test]
    fn segments_cover_the_cycle(p in arb::valid_prescription()) {
        let mut end = 0;
        for s in p.segments() {
            prop_assert_eq!(s.start, end);
            prop_assert!(s.end > s.start);
            end = s.end;
        }
        prop_assert_eq!(end, p.cycle_minutes());
    }

    /// `segments()` yields exactly what indexing the cycle segment by segment (the
    /// geometry before it had an iterator) yields, for any draft, valid or not; and a
    /// validated prescription iterates the same segments as its draft.
    #[test]
    fn segments_match_indexing(d in arb::draft()) {
        let by_index: Vec<Segment> = (0..).map_while(|i| indexed_segment(&d, i)).collect();
        let iterated: Vec<Segment> = d.segments().collect();
        prop_assert_eq!(d.segments().len(), by_index.len());
        prop_assert_eq!(&iterated, &by_index);
        if let Ok(p) = Prescription::new(d) {
            prop_assert_eq!(p.segments().collect::<Vec<_>>(), by_index);
        }
    }

    /// Validation is total: any draft is accepted or refused, never a panic, and a refusal
    /// always renders a message.
    #[test]
    fn any_draft_is_judged(d in arb::draft()) {
        if let Err(e) = Prescription::new(d) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

/// Segment `i` of a draft's basal cycle, computed as the crate did before
/// `cycle::Segments`: the oracle for `segments_match_indexing`.
fn indexed_segment(d: &PrescriptionDraft, i: usize) -> Option<Segment> {
    let day_len = 1_440u32;
    match &d.mode {
        TherapyMode::Stopped => (i == 0).then(|| Segment {
            start: 0,
            end: day_len,
            dose: min_flow_dose(d.concentration),
        }),
        TherapyMode::Continuous { dose } => (i == 0).then_some(Segment {
            start: 0,
            end: day_len,
            dose: *dose,
        }),
        TherapyMode::Flexible { days } => {
            let mut remaining = i;
            for (day, steps) in days.iter().enumerate() {
                if remaining < steps.len() {
                    let step = steps[remaining];
                    let base = day as u32 * day_len;
                    let end = steps
                        .get(remaining + 1)
                        .map_or(day_len, |n| u32::from(n.start.0));
                    return Some(Segment {
                        start: base + u32::from(step.start.0),
                        end: base + end.max(u32::from(step.start.0)),
                        dose: step.dose,
                    });
                }
                remaining -= steps.len();
            }
            None
        }
    }
}
