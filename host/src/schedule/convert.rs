//! From the TOML shape to a [`PrescriptionDraft`], remembering where each value came from
//! so a rule broken later can be pinned to its line.

use std::ops::Range;

use heapless::Vec as HVec;
use thecal_protocol::drug::Drug;
use thecal_protocol::prescription::{
    DaySteps, PatientBolusRules, PrescriptionDraft, Step, TherapyMode, MAX_STEPS_PER_DAY,
};
use thecal_protocol::rules::{At, ScheduleError};
use thecal_protocol::time::{MinuteOfDay, Weekday};
use toml::Spanned;

use super::file::{FileToml, PatientBolusToml, ProfileToml, StepToml};
use crate::quantity::{self, QuantityError};

/// A problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub span: Range<usize>,
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            span,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Where one day profile of the draft came from.
#[derive(Debug, Clone)]
pub(crate) struct DaySource {
    /// `steps` or `profile[2].steps`.
    pub field: String,
    pub span: Range<usize>,
    /// Each step's span, in order.
    pub steps: Vec<Range<usize>>,
}

/// Source positions of the draft's values.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub concentration: Range<usize>,
    pub daily_limit: Range<usize>,
    pub low_reservoir_alarm: Range<usize>,
    pub mode: Range<usize>,
    pub dose: Option<Range<usize>>,
    pub patient_bolus: Option<Range<usize>>,
    /// Per day profile of the draft (1, or 7 Monday first).
    pub days: Vec<DaySource>,
}

fn quantity<T>(
    value: &Spanned<String>,
    field: &str,
    parse: fn(&str) -> Result<T, QuantityError>,
) -> Result<T, FieldError> {
    parse(value.get_ref()).map_err(|e| {
        FieldError::new(
            value.span(),
            field,
            crate::error::quantity_words(value.get_ref(), &e),
        )
    })
}

/// Converts the file to a draft (not yet validated against the rules).
pub(crate) fn to_draft(f: &FileToml) -> Result<(PrescriptionDraft, Sources), FieldError> {
    let drug = Drug::from_name(f.drug.get_ref().trim()).ok_or_else(|| {
        let names: Vec<&str> = Drug::ALL.iter().map(|d| d.name()).collect();
        FieldError::new(
            f.drug.span(),
            "drug",
            format!(
                "unknown drug `{}`; one of: {}",
                f.drug.get_ref(),
                names.join(", ")
            ),
        )
    })?;
    let concentration = quantity(
        &f.concentration,
        "concentration",
        quantity::parse_concentration,
    )?;
    let daily_limit = quantity(&f.daily_limit, "daily_limit", quantity::parse_dose_rate)?;
    let low_reservoir_alarm = quantity(
        &f.low_reservoir_alarm,
        "low_reservoir_alarm",
        quantity::parse_volume,
    )?;
    let (mode, days) = mode(f)?;
    let patient_bolus = f.patient_bolus.as_ref().map(patient_bolus).transpose()?;
    let sources = Sources {
        concentration: f.concentration.span(),
        daily_limit: f.daily_limit.span(),
        low_reservoir_alarm: f.low_reservoir_alarm.span(),
        mode: f.mode.span(),
        dose: f.dose.as_ref().map(|d| d.span()),
        patient_bolus: f.patient_bolus.as_ref().map(|p| p.span()),
        days,
    };
    let draft = PrescriptionDraft {
        drug,
        concentration,
        daily_limit,
        mode,
        patient_bolus,
        low_reservoir_alarm,
    };
    Ok((draft, sources))
}

fn forbid<T>(value: &Option<Spanned<T>>, field: &str, mode: &str) -> Result<(), FieldError> {
    match value {
        Some(v) => Err(FieldError::new(
            v.span(),
            field,
            format!("`{field}` does not belong in a `{mode}` schedule"),
        )),
        None => Ok(()),
    }
}

fn mode(f: &FileToml) -> Result<(TherapyMode, Vec<DaySource>), FieldError> {
    let name = f.mode.get_ref().trim();
    match name {
        "continuous" => {
            forbid(&f.steps, "steps", name)?;
            forbid(&f.profile, "profile", name)?;
            let dose = f.dose.as_ref().ok_or_else(|| {
                FieldError::new(
                    f.mode.span(),
                    "dose",
                    "a `continuous` schedule needs `dose = \"<amount> mg/day\"`",
                )
            })?;
            let dose = quantity(dose, "dose", quantity::parse_dose_rate)?;
            Ok((TherapyMode::Continuous { dose }, Vec::new()))
        }
        "stopped" => {
            forbid(&f.dose, "dose", name)?;
            forbid(&f.steps, "steps", name)?;
            forbid(&f.profile, "profile", name)?;
            Ok((TherapyMode::Stopped, Vec::new()))
        }
        "flexible" => {
            forbid(&f.dose, "dose", name)?;
            match (&f.steps, &f.profile) {
                (Some(steps), None) => {
                    let (day, source) = day_steps(steps, "steps")?;
                    let mut days = HVec::new();
                    let _ = days.push(day);
                    Ok((TherapyMode::Flexible { days }, vec![source]))
                }
                (None, Some(profiles)) => weekly(profiles),
                (Some(steps), Some(_)) => Err(FieldError::new(
                    steps.span(),
                    "steps",
                    "use either `steps` (every day alike) or `[[profile]]` tables (by weekday), not both",
                )),
                (None, None) => Err(FieldError::new(
                    f.mode.span(),
                    "steps",
                    "a `flexible` schedule needs `steps = [...]` or `[[profile]]` tables",
                )),
            }
        }
        other => Err(FieldError::new(
            f.mode.span(),
            "mode",
            format!("unknown mode `{other}`; one of: continuous, flexible, stopped"),
        )),
    }
}

/// `"07:00"` → minute of day; hours 00–23, minutes 00–59.
fn parse_time(text: &str) -> Option<MinuteOfDay> {
    let (h, m) = text.trim().split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || m.len() != 2 || !digits(m) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then(|| MinuteOfDay::hm(h, m))
}

fn day_steps(
    steps: &Spanned<Vec<Spanned<StepToml>>>,
    field: &str,
) -> Result<(DaySteps, DaySource), FieldError> {
    let mut out = DaySteps::new();
    let mut spans = Vec::new();
    for (i, step) in steps.get_ref().iter().enumerate() {
        let here = format!("{field}[{}]", i + 1);
        let s = step.get_ref();
        let start = parse_time(s.from.get_ref()).ok_or_else(|| {
            FieldError::new(
                s.from.span(),
                format!("{here}.from"),
                format!(
                    "`{}` is not a time of day; write \"HH:MM\" from 00:00 to 23:59",
                    s.from.get_ref()
                ),
            )
        })?;
        let dose = quantity(&s.dose, &format!("{here}.dose"), quantity::parse_dose_rate)?;
        out.push(Step { start, dose }).map_err(|_| {
            FieldError::new(
                step.span(),
                here.clone(),
                format!("a day profile has at most {MAX_STEPS_PER_DAY} steps"),
            )
        })?;
        spans.push(step.span());
    }
    let source = DaySource {
        field: field.to_string(),
        span: steps.span(),
        steps: spans,
    };
    Ok((out, source))
}

/// Day names a profile may list.
fn parse_days(name: &str) -> Option<Vec<Weekday>> {
    use Weekday::*;
    let n = name.trim().to_ascii_lowercase();
    let one = |d| Some(vec![d]);
    match n.as_str() {
        "monday" | "mon" => one(Monday),
        "tuesday" | "tue" => one(Tuesday),
        "wednesday" | "wed" => one(Wednesday),
        "thursday" | "thu" => one(Thursday),
        "friday" | "fri" => one(Friday),
        "saturday" | "sat" => one(Saturday),
        "sunday" | "sun" => one(Sunday),
        "weekdays" => Some(vec![Monday, Tuesday, Wednesday, Thursday, Friday]),
        "weekend" => Some(vec![Saturday, Sunday]),
        _ => None,
    }
}

fn weekly(
    profiles: &Spanned<Vec<Spanned<ProfileToml>>>,
) -> Result<(TherapyMode, Vec<DaySource>), FieldError> {
    let mut by_day: [Option<(usize, DaySteps, DaySource)>; 7] = Default::default();
    for (p, profile) in profiles.get_ref().iter().enumerate() {
        let field = format!("profile[{}]", p + 1);
        let pr = profile.get_ref();
        let (steps, source) = day_steps(&pr.steps, &format!("{field}.steps"))?;
        if pr.days.get_ref().is_empty() {
            return Err(FieldError::new(
                pr.days.span(),
                format!("{field}.days"),
                "list the days this profile serves, e.g. [\"weekdays\"] or [\"sat\", \"sun\"]",
            ));
        }
        for name in pr.days.get_ref() {
            let days = parse_days(name.get_ref()).ok_or_else(|| {
                FieldError::new(
                    name.span(),
                    format!("{field}.days"),
                    format!(
                        "`{}` is not a day; use monday … sunday (or mon … sun), weekdays, weekend",
                        name.get_ref()
                    ),
                )
            })?;
            for day in days {
                let slot = by_day.get_mut(day.index() as usize);
                match slot {
                    Some(Some((other, ..))) => {
                        return Err(FieldError::new(
                            name.span(),
                            format!("{field}.days"),
                            format!("{day} is already in profile[{}]", *other + 1),
                        ))
                    }
                    Some(slot) => *slot = Some((p, steps.clone(), source.clone())),
                    None => {}
                }
            }
        }
    }
    let mut days = HVec::new();
    let mut sources = Vec::new();
    for (i, slot) in by_day.into_iter().enumerate() {
        let (_, steps, source) = slot.ok_or_else(|| {
            FieldError::new(
                profiles.span(),
                "profile",
                format!(
                    "no profile serves {}; every day of the week needs exactly one",
                    Weekday::from_index(i as u32)
                ),
            )
        })?;
        let _ = days.push(steps);
        sources.push(source);
    }
    Ok((TherapyMode::Flexible { days }, sources))
}

fn patient_bolus(p: &Spanned<PatientBolusToml>) -> Result<PatientBolusRules, FieldError> {
    let p = p.get_ref();
    let dose = quantity(&p.dose, "patient_bolus.dose", quantity::parse_dose)?;
    let lockout = quantity(
        &p.lockout,
        "patient_bolus.lockout",
        quantity::parse_duration,
    )?;
    let max_per_day = u8::try_from(*p.max_per_day.get_ref()).map_err(|_| {
        FieldError::new(
            p.max_per_day.span(),
            "patient_bolus.max_per_day",
            "must be a whole number from 1 to 24",
        )
    })?;
    Ok(PatientBolusRules {
        dose,
        lockout,
        max_per_day,
    })
}

/// Pins a broken rule to the field it concerns.
pub(crate) fn locate(e: &ScheduleError, s: &Sources) -> (Range<usize>, String) {
    use ScheduleError::*;
    let day_source = |day: Option<Weekday>| {
        let i = day.map_or(0, |d| d.index() as usize);
        s.days.get(i)
    };
    let at = |at: &At| match at {
        At::Continuous => (s.dose.clone().unwrap_or(s.mode.clone()), "dose".to_string()),
        At::Step { day, number, .. } => match day_source(*day) {
            Some(src) => {
                let i = usize::from(*number).saturating_sub(1);
                let span = src.steps.get(i).cloned().unwrap_or(src.span.clone());
                (span, format!("{}[{number}]", src.field))
            }
            None => (s.mode.clone(), "mode".to_string()),
        },
    };
    match e {
        ConcentrationOutOfRange { .. } => (s.concentration.clone(), "concentration".into()),
        DailyLimitOutOfRange { .. } => (s.daily_limit.clone(), "daily_limit".into()),
        LowReservoirAlarmOutOfRange { .. } => {
            (s.low_reservoir_alarm.clone(), "low_reservoir_alarm".into())
        }
        EmptyDay { day }
        | FirstStepNotAtMidnight { day, .. }
        | RollingTotalAboveLimit { day, .. } => match day_source(*day) {
            Some(src) if matches!(e, FirstStepNotAtMidnight { .. }) => (
                src.steps.first().cloned().unwrap_or(src.span.clone()),
                format!("{}[1]", src.field),
            ),
            Some(src) => (src.span.clone(), src.field.clone()),
            None => (s.mode.clone(), "mode".into()),
        },
        StepStartOutOfRange { at: a }
        | StepOutOfOrder { at: a, .. }
        | FlowBelowMinimum { at: a, .. }
        | FlowAboveMaximum { at: a, .. }
        | StepAboveDailyLimit { at: a, .. } => at(a),
        PatientBolusInvalid { .. } | BolusAllowanceAboveLimit { .. } => (
            s.patient_bolus.clone().unwrap_or(s.daily_limit.clone()),
            "patient_bolus".into(),
        ),
        _ => (s.mode.clone(), "mode".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time("00:00"), Some(MinuteOfDay(0)));
        assert_eq!(parse_time("7:30"), Some(MinuteOfDay(450)));
        assert_eq!(parse_time("23:59"), Some(MinuteOfDay(1439)));
        for bad in [
            "24:00", "12:60", "12", "12:5", "aa:bb", "-1:00", "123:00", "",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn day_names() {
        assert_eq!(parse_days("Sat"), Some(vec![Weekday::Saturday]));
        assert_eq!(parse_days("weekend").map(|d| d.len()), Some(2));
        assert_eq!(parse_days("weekdays").map(|d| d.len()), Some(5));
        assert_eq!(parse_days("funday"), None);
    }
}
