//! The `schedule_validate` pieces: structure-aware drafts, and an independent statement of
//! the hard limits that every accepted prescription must meet.
//!
//! The checker does not reuse `thecal_protocol::rules`: it expands the schedule to one
//! dose rate per minute of its cycle and slides a 1 440-minute window over it, so it
//! shares no code (and no boundary-window shortcut) with the validator it checks.

use arbitrary::{Result, Unstructured};
use heapless::Vec as HVec;
use thecal_protocol::prescription::{
    DaySteps, PatientBolusRules, Prescription, PrescriptionDraft, Step, TherapyMode,
    MAX_PROFILE_DAYS, MAX_STEPS_PER_DAY,
};
use thecal_protocol::rules::{
    MAX_FLOW, MAX_LOW_ALARM, MAX_PATIENT_BOLUSES, MIN_FLOW, MIN_LOCKOUT, MIN_LOW_ALARM,
};
use thecal_protocol::time::MinuteOfDay;
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NL_PER_ML,
};
use thecal_protocol::Drug;

const DAY: usize = 1_440;

/// A value for a quantity whose limit is `max`: mostly within 0..=max, sometimes exactly
/// at the edge, sometimes anything.
fn near(u: &mut Unstructured, max: u32) -> Result<u32> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => u.arbitrary::<u32>()?,
        1 => max.saturating_add(u.int_in_range(0..=2)?).saturating_sub(1),
        2 => u.int_in_range(0..=max / 16)?,
        _ => u.int_in_range(0..=max)?,
    })
}

/// A draft built from fuzz bytes, shaped so that a fair share of drafts is valid.
pub fn draft(u: &mut Unstructured) -> Result<PrescriptionDraft> {
    let drug = *u.choose(&Drug::ALL)?;
    let ceiling = drug.ceiling();
    let concentration = NanogramsPerMillilitre(near(u, ceiling.max_concentration.0)?);
    let daily_limit = NanogramsPerDay(near(u, ceiling.max_per_day.0)?);
    let mode = match u.int_in_range(0..=5u8)? {
        0 => TherapyMode::Stopped,
        1 => TherapyMode::Continuous {
            dose: NanogramsPerDay(near(u, daily_limit.0)?),
        },
        _ => {
            let days = match u.int_in_range(0..=7u8)? {
                0 => u.int_in_range(0..=MAX_PROFILE_DAYS)?,
                1..=3 => MAX_PROFILE_DAYS,
                _ => 1,
            };
            let mut profiles = HVec::new();
            for _ in 0..days {
                let _ = profiles.push(day(u, daily_limit)?);
            }
            TherapyMode::Flexible { days: profiles }
        }
    };
    let patient_bolus = if u.arbitrary()? {
        let max_per_day = u.int_in_range(0..=MAX_PATIENT_BOLUSES + 1)?;
        let share = daily_limit.0 / u32::from(max_per_day.max(1));
        Some(PatientBolusRules {
            dose: Nanograms(near(u, share)?),
            lockout: Minutes(near(u, 240)? as u16),
            max_per_day,
        })
    } else {
        None
    };
    let low_reservoir_alarm =
        Nanolitres(u.int_in_range(MIN_LOW_ALARM.0 - 1..=MAX_LOW_ALARM.0 + 1)?);
    Ok(PrescriptionDraft {
        drug,
        concentration,
        daily_limit,
        mode,
        patient_bolus,
        low_reservoir_alarm,
    })
}

fn day(u: &mut Unstructured, limit: NanogramsPerDay) -> Result<DaySteps> {
    let steps = u.int_in_range(0..=MAX_STEPS_PER_DAY)?;
    let mut out = DaySteps::new();
    let mut start: u16 = if u.ratio(1, 16)? {
        u.int_in_range(1..=30)?
    } else {
        0
    };
    for _ in 0..steps {
        let _ = out.push(Step {
            start: MinuteOfDay(start),
            dose: NanogramsPerDay(near(u, limit.0)?),
        });
        start = if u.ratio(1, 32)? {
            u.arbitrary()?
        } else {
            start.saturating_add(u.int_in_range(1..=240)?)
        };
    }
    Ok(out)
}

/// Flow of a dose rate: nL/day = floor(ng/day × 10⁶ / (ng/mL)), as documented.
fn flow(dose: u32, c: u32) -> u128 {
    u128::from(dose) * u128::from(NL_PER_ML) / u128::from(c.max(1))
}

/// The basal dose rate (ng/day) of every minute of the cycle.
fn per_minute(d: &PrescriptionDraft) -> Result<Vec<u32>, String> {
    let c = d.concentration.0;
    match &d.mode {
        // Stopped runs at the minimum flow: its dose, rounded up.
        TherapyMode::Stopped => {
            let ng = (u128::from(MIN_FLOW.0) * u128::from(c)).div_ceil(u128::from(NL_PER_ML));
            Ok(vec![
                u32::try_from(ng)
                    .map_err(|_| "stopped dose overflows")?;
                DAY
            ])
        }
        TherapyMode::Continuous { dose } => {
            check_flow(dose.0, c)?;
            Ok(vec![dose.0; DAY])
        }
        TherapyMode::Flexible { days } => {
            if days.len() != 1 && days.len() != MAX_PROFILE_DAYS {
                return Err(format!("{} day profiles accepted", days.len()));
            }
            let mut minutes = Vec::with_capacity(DAY * days.len());
            for steps in days {
                let first = steps.first().ok_or("an empty day accepted")?;
                if first.start.0 != 0 {
                    return Err("a day not starting at 00:00 accepted".into());
                }
                for (i, s) in steps.iter().enumerate() {
                    check_flow(s.dose.0, c)?;
                    let end = steps.get(i + 1).map_or(DAY, |n| usize::from(n.start.0));
                    let start = usize::from(s.start.0);
                    if start >= end || end > DAY {
                        return Err(format!("step {i} from {start} to {end} accepted"));
                    }
                    minutes.extend(std::iter::repeat_n(s.dose.0, end - start));
                }
            }
            Ok(minutes)
        }
    }
}

fn check_flow(dose: u32, c: u32) -> Result<(), String> {
    let f = flow(dose, c);
    if f < u128::from(MIN_FLOW.0) || f > u128::from(MAX_FLOW.0) {
        return Err(format!("flow {f} nL/day accepted"));
    }
    Ok(())
}

/// Largest basal dose in any rolling 24 h of the repeating cycle, ng × minutes/day.
fn worst_window(minutes: &[u32]) -> u128 {
    let n = minutes.len();
    let at = |i: usize| u128::from(minutes.get(i % n).copied().unwrap_or(0));
    let mut sum: u128 = (0..DAY).map(at).sum();
    let mut worst = sum;
    for s in 1..n {
        sum = sum + at(s + DAY - 1) - at(s - 1);
        worst = worst.max(sum);
    }
    worst
}

/// Every hard limit an accepted prescription must meet, checked independently.
pub fn check_accepted(p: &Prescription) -> Result<(), String> {
    let d = p.draft();
    let ceiling = d.drug.ceiling();
    if d.concentration.0 == 0 || d.concentration > ceiling.max_concentration {
        return Err("concentration outside the drug's range".into());
    }
    if d.daily_limit.0 == 0 || d.daily_limit > ceiling.max_per_day {
        return Err("daily limit above the drug's ceiling".into());
    }
    if d.low_reservoir_alarm < MIN_LOW_ALARM || d.low_reservoir_alarm > MAX_LOW_ALARM {
        return Err("low-reservoir alarm out of range".into());
    }
    let minutes = per_minute(d)?;
    let limit = u128::from(d.daily_limit.0) * DAY as u128;
    let basal = worst_window(&minutes);
    if basal > limit {
        return Err(format!("basal {basal} ng·min/day in 24 h above {limit}"));
    }
    if let Some(b) = d.patient_bolus {
        if b.dose.0 == 0
            || b.lockout < MIN_LOCKOUT
            || b.max_per_day == 0
            || b.max_per_day > MAX_PATIENT_BOLUSES
        {
            return Err(format!("patient bolus rules {b:?} accepted"));
        }
        let boluses = u128::from(b.dose.0) * u128::from(b.max_per_day) * DAY as u128;
        if basal + boluses > limit {
            return Err(format!(
                "basal {basal} + boluses {boluses} ng·min/day above {limit}"
            ));
        }
    }
    check_segments(p, &minutes)
}

/// The segments the pump doses from agree with the schedule, minute for minute.
fn check_segments(p: &Prescription, minutes: &[u32]) -> Result<(), String> {
    let cycle = p.cycle_minutes() as usize;
    if cycle != minutes.len() {
        return Err(format!("cycle {cycle} min, schedule {} min", minutes.len()));
    }
    for s in p.segments() {
        for m in [s.start, s.end.saturating_sub(1)] {
            let want = minutes.get(m as usize).copied();
            let got = p.segment_at(m).dose.0;
            if want != Some(got) {
                return Err(format!("segment_at({m}) = {got}, schedule {want:?}"));
            }
        }
    }
    for (d, total) in p.daily_totals().iter().enumerate() {
        let start = (d * DAY) % cycle;
        let exact: u128 = (start..start + DAY)
            .map(|m| u128::from(minutes.get(m % cycle).copied().unwrap_or(0)))
            .sum();
        if u128::from(total.0) != exact / DAY as u128 {
            return Err(format!(
                "daily total of day {d}: {} ng, schedule {}",
                total.0,
                exact / DAY as u128
            ));
        }
    }
    Ok(())
}
