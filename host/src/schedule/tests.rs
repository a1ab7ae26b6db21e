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

const HEAD: &str = "drug = \"baclofen\"\nconcentration = \"500 µg/mL\"\n\
                    daily_limit = \"600 µg/day\"\nlow_reservoir_alarm = \"2 mL\"\n";

#[test]
fn a_type_error_names_the_field_path_and_the_fix() {
    let i = invalid(&format!(
        "{HEAD}mode = \"flexible\"\nsteps = [\n  {{ from = \"00:00\", dose = \"150 µg/day\" }},\n  \
         {{ from = \"06:00\", dose = 250 }},\n]\n"
    ));
    assert_eq!(i.field.as_deref(), Some("steps[2].dose"), "{i}");
    assert_eq!(i.line, 8, "{i}");
    assert_eq!(
        i.message,
        "integer `250` is not text: write it in quotes with its unit, e.g. dose = \"250 µg/day\""
    );
    let i = invalid(&format!(
        "{HEAD}mode = \"continuous\"\ndose = \"150 µg/day\"\n[patient_bolus]\n\
         dose = \"25 µg\"\nlockout = \"2 h\"\nmax_per_day = \"4\"\n"
    ));
    assert_eq!(i.field.as_deref(), Some("patient_bolus.max_per_day"), "{i}");
    assert!(!i.message.contains("i64"), "{i}");
    assert!(i.message.contains("e.g. max_per_day = 4"), "{i}");
}

#[test]
fn a_quantity_without_its_unit_or_with_a_decimal_comma_says_so() {
    let i = invalid(&format!("{HEAD}mode = \"continuous\"\ndose = \"150\"\n"));
    assert_eq!(
        i.message,
        "missing unit: write \"150 µg/day\" (units: µg/day or mg/day)"
    );
    let i = invalid(&format!(
        "{HEAD}mode = \"continuous\"\ndose = \"0,15 mg/day\"\n"
    ));
    assert_eq!(
        i.message,
        "`0,15 mg/day`: use a decimal point, not a comma: \"0.15 mg/day\""
    );
}

#[test]
fn a_file_that_is_not_utf8_is_located_and_a_huge_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.toml");
    let mut bytes = format!("{HEAD}mode = \"continuous\"\ndose = \"150 ").into_bytes();
    let offset = bytes.len();
    bytes.extend_from_slice(b"\xb5g/day\"\n");
    std::fs::write(&latin1, &bytes).unwrap();
    match load(&latin1) {
        Err(ScheduleFileError::Invalid(i)) => {
            assert_eq!((i.line, i.column), (6, 13), "{i}");
            assert!(
                i.message
                    .contains(&format!("byte 0xB5 at byte offset {offset}")),
                "{i}"
            );
            assert!(i.message.contains("save it as UTF-8"), "{i}");
        }
        other => panic!("{other:?}"),
    }
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, vec![b'#'; 70_000]).unwrap();
    let e = load(&huge).unwrap_err();
    assert!(matches!(e, ScheduleFileError::TooLarge { .. }), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("larger than 64 KiB, so not a schedule file"),
        "{e}"
    );
    // A schedule file of the usual size still loads.
    let ok = dir.path().join("ok.toml");
    std::fs::write(
        &ok,
        format!("{HEAD}mode = \"continuous\"\ndose = \"150 µg/day\"\n"),
    )
    .unwrap();
    assert!(load(&ok).is_ok());
}
