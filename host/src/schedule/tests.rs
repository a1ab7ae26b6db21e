use thecal_protocol::drug::Drug;
use thecal_protocol::prescription::{PatientBolusRules, TherapyMode};
use thecal_protocol::rules::ScheduleError;
use thecal_protocol::time::{MinuteOfDay, Weekday};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};

use super::*;

const CONTINUOUS: &str = include_str!("../../../examples/schedules/continuous-morphine.toml");
const FLEXIBLE: &str = include_str!("../../../examples/schedules/flexible-baclofen-day.toml");
const WEEKDAY: &str = include_str!("../../../examples/schedules/weekday-ziconotide.toml");

fn invalid(text: &str) -> Invalid {
    match parse("t.toml", text) {
        Err(ScheduleFileError::Invalid(i)) => *i,
        other => panic!("expected an invalid file, got {other:?}"),
    }
}

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn continuous_example_converts_exactly() {
    let p = parse("c.toml", CONTINUOUS).unwrap();
    let d = p.draft();
    assert_eq!(d.drug, Drug::Morphine);
    assert_eq!(d.concentration, NanogramsPerMillilitre(10_000_000));
    assert_eq!(d.daily_limit, NanogramsPerDay(6_000_000));
    assert_eq!(d.low_reservoir_alarm, Nanolitres(2_000_000));
    assert_eq!(
        d.mode,
        TherapyMode::Continuous {
            dose: NanogramsPerDay(3_000_000)
        }
    );
    assert_eq!(
        d.patient_bolus,
        Some(PatientBolusRules {
            dose: Nanograms(250_000),
            lockout: Minutes(120),
            max_per_day: 4
        })
    );
}

#[test]
fn flexible_example_has_one_profile_in_order() {
    let p = parse("f.toml", FLEXIBLE).unwrap();
    let TherapyMode::Flexible { days } = &p.draft().mode else {
        panic!("not flexible");
    };
    assert_eq!(days.len(), 1);
    let starts: Vec<u16> = days[0].iter().map(|s| s.start.0).collect();
    assert_eq!(starts, [0, 360, 600, 1320]);
    assert_eq!(days[0][1].dose, NanogramsPerDay(250_000));
    assert_eq!(p.daily_totals()[0], Nanograms(191_666));
}

#[test]
fn weekday_example_expands_to_seven_days() {
    let p = parse("w.toml", WEEKDAY).unwrap();
    let TherapyMode::Flexible { days } = &p.draft().mode else {
        panic!("not flexible");
    };
    assert_eq!(days.len(), 7);
    for d in 0..5 {
        assert_eq!(days[d].len(), 3, "weekday {d}");
    }
    assert_eq!(days[5].len(), 1);
    assert_eq!(days[6], days[5]);
    let totals = p.daily_totals();
    assert_eq!(totals[0], Nanograms(3_000));
    assert_eq!(totals[6], Nanograms(2_400));
}

#[test]
fn export_round_trips_every_example() {
    for text in [CONTINUOUS, FLEXIBLE, WEEKDAY] {
        let p = parse("x.toml", text).unwrap();
        let again = parse("export.toml", &to_toml(&p)).unwrap();
        assert_eq!(again, p, "{}", to_toml(&p));
    }
}

#[test]
fn syntax_error_names_file_line_and_field() {
    let e = invalid(&data("bad-syntax.toml"));
    assert_eq!((e.file.as_str(), e.line), ("t.toml", 2));
    assert_eq!(e.field.as_deref(), Some("concentration"));
    assert!(e.to_string().starts_with("t.toml:2:"), "{e}");
}

#[test]
fn unit_error_points_at_the_step_dose() {
    let e = invalid(&data("bad-unit.toml"));
    assert_eq!(e.line, 8);
    assert_eq!(e.field.as_deref(), Some("steps[2].dose"));
    assert!(e.message.contains("mg/hour"), "{}", e.message);
    assert!(e.source_line.contains("07:00"));
}

#[test]
fn rule_errors_name_the_rule_and_the_step() {
    let e = invalid(&data("bad-rate-above-limit.toml"));
    assert_eq!(e.line, 9);
    assert_eq!(e.field.as_deref(), Some("steps[2]"));
    assert!(matches!(
        e.rule,
        Some(ScheduleError::StepAboveDailyLimit { .. })
    ));
    assert!(e.message.contains("step 2 (from 07:00)"), "{}", e.message);

    let e = invalid(&data("bad-step-order.toml"));
    assert_eq!((e.line, e.field.as_deref()), (9, Some("steps[3]")));
    assert!(matches!(e.rule, Some(ScheduleError::StepOutOfOrder { .. })));

    let e = invalid(&data("bad-daily-limit-above-ceiling.toml"));
    assert_eq!((e.line, e.field.as_deref()), (4, Some("daily_limit")));
    assert!(matches!(
        e.rule,
        Some(ScheduleError::DailyLimitOutOfRange { .. })
    ));

    let e = invalid(&data("bad-bolus-allowance.toml"));
    assert_eq!(e.field.as_deref(), Some("patient_bolus"));
    assert!(matches!(
        e.rule,
        Some(ScheduleError::BolusAllowanceAboveLimit { .. })
    ));

    let e = invalid(&data("bad-flow-below-minimum.toml"));
    assert_eq!((e.line, e.field.as_deref()), (7, Some("dose")));
    assert!(matches!(
        e.rule,
        Some(ScheduleError::FlowBelowMinimum { .. })
    ));
}

#[test]
fn weekly_profile_errors() {
    let e = invalid(&data("bad-missing-day.toml"));
    assert!(e.message.contains("Wednesday"), "{}", e.message);
    let e = invalid(&WEEKDAY.replace("[\"sat\", \"sun\"]", "[\"sat\", \"sun\", \"fri\"]"));
    assert!(
        e.message.contains("Friday is already in profile[1]"),
        "{}",
        e.message
    );
    assert_eq!(e.field.as_deref(), Some("profile[2].days"));
    // A rule broken on one weekday names that day and points into its profile.
    let e = invalid(&WEEKDAY.replace("3.6 µg/day", "5 µg/day"));
    assert!(
        e.message.starts_with("Monday step 2 (from 08:00)"),
        "{}",
        e.message
    );
    assert_eq!(e.field.as_deref(), Some("profile[1].steps[2]"));
    assert_eq!(e.line, 17);
    let _ = (Weekday::Monday, MinuteOfDay(0));
}

#[test]
fn unknown_fields_and_modes_are_refused() {
    let e = invalid(&data("bad-unknown-field.toml"));
    assert_eq!(e.line, 7);
    assert_eq!(e.field.as_deref(), Some("dailylimit"));
    let e = invalid(&CONTINUOUS.replace("\"continuous\"", "\"bolus\""));
    assert_eq!(e.field.as_deref(), Some("mode"));
    let e = invalid(&CONTINUOUS.replace("dose = \"3 mg/day\"\n", ""));
    assert_eq!(e.field.as_deref(), Some("dose"));
    let e = invalid(&CONTINUOUS.replace("\"morphine\"", "\"aspirin\""));
    assert!(e.message.contains("unknown drug `aspirin`"));
}

#[test]
fn missing_file_is_a_read_error() {
    let e = load(Path::new("/nonexistent/x.toml")).unwrap_err();
    assert!(matches!(e, ScheduleFileError::Read { .. }));
}
