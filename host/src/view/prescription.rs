//! The prescription as shown, and the side-by-side comparison before a write.

use serde::Serialize;
use thecal_protocol::message::PrescriptionRecord;
use thecal_protocol::prescription::{Prescription, TherapyMode};
use thecal_protocol::projection::{project, Projection, ReservoirState};
use thecal_protocol::time::{MinuteOfDay, Weekday};
use thecal_protocol::units::{Nanograms, NanogramsPerDay, MINUTES_PER_DAY};

use super::PumpTime;
use crate::quantity;

/// One step: from `from` (local time) the pump delivers this dose rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    /// Local start time, `HH:MM`.
    pub from: String,
    /// Dose rate.
    pub dose_ng_per_day: u32,
    /// Flow rate it takes at the prescription's concentration (rounded down).
    pub flow_nl_per_day: u32,
}

/// Days that share the same steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileView {
    /// `monday` … `sunday`.
    pub days: Vec<&'static str>,
    /// The steps, in order; the first starts at 00:00.
    pub steps: Vec<StepView>,
}

/// Patient-bolus rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatientBolusView {
    /// Dose of one bolus.
    pub dose_ng: u32,
    /// Minimum time between the starts of two boluses.
    pub lockout_min: u16,
    /// Most boluses in any 24 h.
    pub max_per_day: u8,
}

/// `prescription`: a prescription (in force, or from a schedule file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrescriptionView {
    /// Revision (`null` for a file).
    pub revision: Option<u32>,
    /// When the pump stored it (`null` for a file).
    pub written_at: Option<String>,
    /// Drug.
    pub drug: &'static str,
    /// Concentration.
    pub concentration_ng_per_ml: u32,
    /// Hard daily limit, boluses included.
    pub daily_limit_ng_per_day: u32,
    /// Low-reservoir alarm threshold.
    pub low_reservoir_alarm_nl: u32,
    /// `stopped`, `continuous` or `flexible`.
    pub mode: &'static str,
    /// Whether the profile differs by weekday.
    pub weekly: bool,
    /// Day profiles; days with identical steps are grouped. A continuous schedule is
    /// one step at 00:00 every day; a stopped one is the minimum flow.
    pub profiles: Vec<ProfileView>,
    /// Basal dose of each day, Monday first.
    pub daily_totals_ng: [u32; 7],
    /// Patient-bolus rules, if the patient may take boluses.
    pub patient_bolus: Option<PatientBolusView>,
    /// How the pump's prescription stands (`null` for a file).
    pub standing: Option<StandingView>,
}

/// Whether the prescription in force is the newest written and stands under the
/// firmware's rules (PROTOCOL.md 5.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StandingView {
    /// The newest revision written, as far as the pump knows.
    pub newest_revision: u32,
    /// An older copy is in force: the newest record was found damaged.
    pub fallback: bool,
    /// Written under an older rule set and breaking a rule of the pump's firmware: kept
    /// in force, to be reviewed.
    pub review: bool,
    /// The rule it breaks, in words (checked by this programmer), if any.
    pub broken_rule: Option<String>,
}

impl StandingView {
    /// From a record read from the pump.
    pub fn new(r: &PrescriptionRecord) -> Self {
        StandingView {
            newest_revision: r.standing.newest.0,
            fallback: r.standing.fallback,
            review: r.standing.review,
            broken_rule: thecal_protocol::rules::validate(r.prescription.draft())
                .err()
                .map(|e| e.to_string()),
        }
    }

    /// One line for a clinician, if anything is to be said.
    pub fn warning(&self, revision: u32) -> Option<String> {
        let mut parts = Vec::new();
        if self.fallback {
            parts.push(format!(
                "OLDER PRESCRIPTION IN FORCE: revision {revision} runs because the newest \
                 written (revision {}) was found damaged; check it and write a new one",
                self.newest_revision
            ));
        }
        if self.review || self.broken_rule.is_some() {
            let rule = self
                .broken_rule
                .as_deref()
                .map_or(String::new(), |r| format!(" ({r})"));
            parts.push(format!(
                "REVIEW: written under older rules, it breaks a rule of this firmware{rule}; \
                 it stays in force until a new prescription is written"
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The steps running on weekday `d` (0 = Monday).
pub(crate) fn day_steps(p: &Prescription, d: u32) -> Vec<(MinuteOfDay, NanogramsPerDay)> {
    let day = u32::from(MINUTES_PER_DAY);
    let start = (d * day) % p.cycle_minutes();
    let mut out = Vec::new();
    for s in p.segments() {
        if s.start >= start && s.start < start + day {
            out.push((MinuteOfDay((s.start - start) as u16), s.dose));
        }
    }
    out
}

fn step_view(p: &Prescription, (start, dose): (MinuteOfDay, NanogramsPerDay)) -> StepView {
    StepView {
        from: start.to_string(),
        dose_ng_per_day: dose.0,
        flow_nl_per_day: p.flow_for(dose).0,
    }
}

fn day_key(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

impl PrescriptionView {
    /// The prescription in force.
    pub fn from_record(r: &PrescriptionRecord, t: &PumpTime) -> Self {
        let mut v = Self::new(&r.prescription);
        v.revision = Some(r.revision.0);
        v.written_at = Some(t.rfc3339(r.written_at));
        v.standing = Some(StandingView::new(r));
        v
    }

    /// A prescription without revision (e.g. from a schedule file).
    pub fn new(p: &Prescription) -> Self {
        let d = p.draft();
        let mode = match d.mode {
            TherapyMode::Stopped => "stopped",
            TherapyMode::Continuous { .. } => "continuous",
            TherapyMode::Flexible { .. } => "flexible",
        };
        let mut profiles: Vec<ProfileView> = Vec::new();
        for day in Weekday::ALL {
            let steps: Vec<StepView> = day_steps(p, day.index())
                .into_iter()
                .map(|s| step_view(p, s))
                .collect();
            match profiles.iter_mut().find(|pr| pr.steps == steps) {
                Some(pr) => pr.days.push(day_key(day)),
                None => profiles.push(ProfileView {
                    days: vec![day_key(day)],
                    steps,
                }),
            }
        }
        PrescriptionView {
            revision: None,
            written_at: None,
            drug: d.drug.name(),
            concentration_ng_per_ml: d.concentration.0,
            daily_limit_ng_per_day: d.daily_limit.0,
            low_reservoir_alarm_nl: d.low_reservoir_alarm.0,
            mode,
            weekly: p.cycle_minutes() > u32::from(MINUTES_PER_DAY),
            profiles,
            daily_totals_ng: p.daily_totals().map(|n| n.0),
            patient_bolus: d.patient_bolus.map(|b| PatientBolusView {
                dose_ng: b.dose.0,
                lockout_min: b.lockout.0,
                max_per_day: b.max_per_day,
            }),
            standing: None,
        }
    }
}

/// Projected reservoir dates under one prescription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionView {
    /// Low-reservoir alarm date, basal schedule only (the "alarm date").
    pub low_at: Option<String>,
    /// Empty, basal schedule only.
    pub empty_at: Option<String>,
    /// Low-reservoir date if the patient takes every allowed bolus.
    pub worst_low_at: Option<String>,
    /// Empty if the patient takes every allowed bolus.
    pub worst_empty_at: Option<String>,
}

impl ProjectionView {
    fn new(p: &Projection, t: &PumpTime) -> Self {
        ProjectionView {
            low_at: t.opt(p.low_at),
            empty_at: t.opt(p.empty_at),
            worst_low_at: t.opt(p.worst_low_at),
            worst_empty_at: t.opt(p.worst_empty_at),
        }
    }
}

/// One row of the side-by-side table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparisonRow {
    /// What the row shows.
    pub label: String,
    /// Lines in the "in force" column.
    pub old: Vec<String>,
    /// Lines in the "new" column.
    pub new: Vec<String>,
}

impl ComparisonRow {
    /// Whether old and new differ.
    pub fn changed(&self) -> bool {
        self.old != self.new
    }
}

/// Old and new prescription side by side, with the projected alarm dates, shown before
/// a schedule write or a refill with a new prescription (`schedule write`, `refill
/// --schedule`, also their `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// The prescription in force.
    pub old: PrescriptionView,
    /// The new one.
    pub new: PrescriptionView,
    /// What differs: `drug`, `concentration`, `daily_limit`, `low_reservoir_alarm`,
    /// `mode`, `steps`, `patient_bolus`.
    pub changed: Vec<&'static str>,
    /// Projection under the prescription in force (from the current volume and clock).
    pub old_projection: Option<ProjectionView>,
    /// Projection under the new prescription.
    pub new_projection: Option<ProjectionView>,
    #[serde(skip)]
    rows: Vec<ComparisonRow>,
}

impl Comparison {
    /// Compares the prescription in force with `new`; with `state`, projects the alarm
    /// dates under both (shared [`thecal_protocol::projection`], as the pump does).
    pub fn new(
        old: &PrescriptionRecord,
        new: &Prescription,
        state: Option<ReservoirState>,
    ) -> Self {
        let o = &old.prescription;
        let t = state.map(|s| PumpTime {
            now: s.now,
            offset: s.offset,
        });
        let (od, nd) = (o.draft(), new.draft());
        let mut changed = Vec::new();
        let checks = [
            (od.drug != nd.drug, "drug"),
            (od.concentration != nd.concentration, "concentration"),
            (od.daily_limit != nd.daily_limit, "daily_limit"),
            (
                od.low_reservoir_alarm != nd.low_reservoir_alarm,
                "low_reservoir_alarm",
            ),
            (mode_text(o) != mode_text(new), "mode"),
            (
                (0..7).any(|d| day_steps(o, d) != day_steps(new, d)),
                "steps",
            ),
            (od.patient_bolus != nd.patient_bolus, "patient_bolus"),
        ];
        for (differs, name) in checks {
            if differs {
                changed.push(name);
            }
        }
        let projections = state.zip(t).map(|(s, t)| {
            (
                ProjectionView::new(&project(o, s), &t),
                ProjectionView::new(&project(new, s), &t),
            )
        });
        let rows = rows(o, new, state, t.as_ref());
        let (old_projection, new_projection) = projections.unzip();
        Comparison {
            old: PrescriptionView::from_record(
                old,
                &t.unwrap_or(PumpTime {
                    now: old.written_at,
                    offset: Default::default(),
                }),
            ),
            new: PrescriptionView::new(new),
            changed,
            old_projection,
            new_projection,
            rows,
        }
    }

    /// Whether the new prescription is the one in force.
    pub fn is_unchanged(&self) -> bool {
        self.changed.is_empty()
    }

    /// Whether the new prescription has another drug or concentration. The pump takes
    /// such a prescription only with a refill (the reservoir must hold that solution),
    /// never as a prescription write.
    pub fn changes_drug(&self) -> bool {
        self.changed
            .iter()
            .any(|c| *c == "drug" || *c == "concentration")
    }

    /// The side-by-side rows for a human table.
    pub fn rows(&self) -> &[ComparisonRow] {
        &self.rows
    }

    /// A warning when the daily dose changes by [`LARGE_DOSE_CHANGE_PERCENT`] or more on
    /// some day (a `stopped` schedule is a cut of 90 % or more): the largest change, in
    /// percent, with the day and both totals.
    pub fn dose_change_warning(&self) -> Option<String> {
        let (old, new) = (&self.old.daily_totals_ng, &self.new.daily_totals_ng);
        let (day, percent) = (0..7)
            .filter_map(|d| {
                let (o, n) = (i64::from(*old.get(d)?), i64::from(*new.get(d)?));
                (o > 0).then(|| (d, (n - o) * 100 / o))
            })
            .max_by_key(|(_, p)| p.abs())?;
        if percent.abs() < LARGE_DOSE_CHANGE_PERCENT {
            return None;
        }
        let total = |v: &[u32; 7]| quantity::dose(Nanograms(v.get(day).copied().unwrap_or(0)));
        let when = if self.old.weekly || self.new.weekly {
            format!(" on {}", WEEKDAYS.get(day).copied().unwrap_or("one day"))
        } else {
            String::new()
        };
        let (how, risk) = if percent < 0 {
            (
                "falls",
                "an abrupt cut can bring on withdrawal (life-threatening with baclofen)",
            )
        } else {
            (
                "rises",
                "check the new doses against the intended prescription",
            )
        };
        Some(format!(
            "the daily dose {how} by {}%{when}: {} a day in force, {} a day new; {risk}",
            percent.abs(),
            total(old),
            total(new)
        ))
    }
}

/// A change of the daily dose by this much (up or down) is warned about before a write.
pub const LARGE_DOSE_CHANGE_PERCENT: i64 = 25;

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn mode_text(p: &Prescription) -> String {
    match &p.draft().mode {
        TherapyMode::Stopped => "stopped (minimum flow only)".into(),
        TherapyMode::Continuous { .. } => "simple continuous".into(),
        TherapyMode::Flexible { days } if days.len() > 1 => "flexible, by weekday".into(),
        TherapyMode::Flexible { .. } => "flexible, same every day".into(),
    }
}

fn bolus_text(p: &Prescription) -> String {
    match p.patient_bolus() {
        Some(b) => format!(
            "{} per bolus, lockout {}, at most {} per 24 h",
            quantity::dose(b.dose),
            quantity::duration(b.lockout),
            b.max_per_day
        ),
        None => "not allowed".into(),
    }
}

fn step_lines(p: &Prescription, d: u32) -> Vec<String> {
    day_steps(p, d)
        .into_iter()
        .map(|(start, dose)| {
            format!(
                "{start}  {}  ({})",
                quantity::dose_rate(dose),
                quantity::flow(p.flow_for(dose))
            )
        })
        .collect()
}

/// `Mon–Fri`, `Sat`, `every day` for a run of days `first..=last`.
fn day_span(first: u32, last: u32) -> String {
    let short = |d: u32| {
        Weekday::from_index(d)
            .name()
            .get(..3)
            .unwrap_or("?")
            .to_string()
    };
    match (first, last) {
        (0, 6) => "every day".into(),
        (a, b) if a == b => short(a),
        (a, b) => format!("{}–{}", short(a), short(b)),
    }
}

/// The steps of `p`, one line per run of days with the same steps:
/// `Mon–Fri: 00:00 2.4 µg/day, 08:00 3.6 µg/day`.
pub(crate) fn chart_step_lines(p: &Prescription) -> Vec<String> {
    let mut rows = Vec::new();
    by_day("", &mut rows, |d| {
        let steps = day_steps(p, d)
            .into_iter()
            .map(|(start, dose)| format!("{start} {}", quantity::dose_rate(dose)))
            .collect::<Vec<_>>();
        (vec![steps.join(", ")], Vec::new())
    });
    rows.into_iter()
        .map(|r| {
            let days = r.label.trim_start_matches(" (").trim_end_matches(')');
            format!("{days}: {}", r.old.join(""))
        })
        .collect()
}

/// Groups consecutive weekdays whose (old, new) lines are equal into one row each.
fn by_day(
    label: &str,
    rows: &mut Vec<ComparisonRow>,
    lines: impl Fn(u32) -> (Vec<String>, Vec<String>),
) {
    let mut first = 0;
    let mut current = lines(0);
    for d in 1..=7 {
        let next = (d < 7).then(|| lines(d));
        if next.as_ref() != Some(&current) {
            let (old, new) = std::mem::replace(&mut current, next.unwrap_or_default());
            rows.push(ComparisonRow {
                label: format!("{label} ({})", day_span(first, d - 1)),
                old,
                new,
            });
            first = d;
        }
    }
}

fn rows(
    o: &Prescription,
    n: &Prescription,
    state: Option<ReservoirState>,
    t: Option<&PumpTime>,
) -> Vec<ComparisonRow> {
    let row = |label: &str, old: String, new: String| ComparisonRow {
        label: label.into(),
        old: vec![old],
        new: vec![new],
    };
    let mut rows = vec![
        row("Drug", o.drug().to_string(), n.drug().to_string()),
        row(
            "Concentration",
            quantity::concentration(o.concentration()),
            quantity::concentration(n.concentration()),
        ),
        row(
            "Daily limit",
            quantity::dose_rate(o.daily_limit()),
            quantity::dose_rate(n.daily_limit()),
        ),
        row(
            "Low-reservoir alarm",
            quantity::volume(o.low_reservoir_alarm()),
            quantity::volume(n.low_reservoir_alarm()),
        ),
        row("Mode", mode_text(o), mode_text(n)),
    ];
    by_day("Steps", &mut rows, |d| (step_lines(o, d), step_lines(n, d)));
    let (ot, nt) = (o.daily_totals(), n.daily_totals());
    by_day("Daily basal total", &mut rows, |d| {
        let i = d as usize;
        let text = |t: &[thecal_protocol::units::Nanograms; 7]| {
            vec![t.get(i).map_or(String::new(), |n| quantity::dose(*n))]
        };
        (text(&ot), text(&nt))
    });
    rows.push(row("Patient bolus", bolus_text(o), bolus_text(n)));
    if let (Some(s), Some(t)) = (state, t) {
        let date = |p: &Prescription, worst: bool| {
            let proj = project(p, s);
            let at = if worst {
                proj.worst_low_at
            } else {
                proj.low_at
            };
            match at {
                Some(at) if at <= s.now => "reached now".to_string(),
                Some(at) => t.spelled(at),
                None => "not within the projection horizon".into(),
            }
        };
        rows.push(row(
            "Low-reservoir alarm date",
            date(o, false),
            date(n, false),
        ));
        if o.patient_bolus().is_some() || n.patient_bolus().is_some() {
            rows.push(row(
                "  with every allowed bolus",
                date(o, true),
                date(n, true),
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule;
    use thecal_protocol::message::{Revision, TherapyState};
    use thecal_protocol::time::{Timestamp, UtcOffset};
    use thecal_protocol::units::Nanolitres;

    fn file(name: &str) -> Prescription {
        let path = format!(
            "{}/../examples/schedules/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        schedule::load(std::path::Path::new(&path)).unwrap()
    }

    fn record(p: Prescription) -> PrescriptionRecord {
        PrescriptionRecord {
            revision: Revision(3),
            written_at: Timestamp(1_795_000_000_000),
            prescription: p,
            standing: Default::default(),
        }
    }

    #[test]
    fn a_fallback_and_a_review_are_said_in_words() {
        let mut r = record(file("flexible-baclofen-day.toml"));
        assert_eq!(StandingView::new(&r).warning(3), None);
        r.standing.fallback = true;
        r.standing.newest = Revision(4);
        let w = StandingView::new(&r).warning(3).unwrap();
        assert!(
            w.contains("OLDER PRESCRIPTION IN FORCE") && w.contains("revision 3"),
            "{w}"
        );
        assert!(w.contains("revision 4") && w.contains("damaged"), "{w}");
        // A prescription under review: admitted by structure, breaking one rule.
        let mut draft = r.prescription.draft().clone();
        draft.low_reservoir_alarm = thecal_protocol::units::Nanolitres(400_000);
        let (p, broken) = Prescription::admit(draft).unwrap();
        assert!(broken.is_some());
        let mut r = record(p);
        r.standing.review = true;
        let v = StandingView::new(&r);
        let w = v.warning(3).unwrap();
        assert!(w.starts_with("REVIEW"), "{w}");
        assert!(w.contains(v.broken_rule.as_deref().unwrap()), "{w}");
        assert!(!w.contains("LowReservoir"), "no enum names: {w}");
    }

    #[test]
    fn comparison_groups_days_and_names_changes() {
        let old = record(file("flexible-baclofen-day.toml"));
        let new = file("weekday-ziconotide.toml");
        let c = Comparison::new(&old, &new, None);
        assert_eq!(
            c.changed,
            [
                "drug",
                "concentration",
                "daily_limit",
                "low_reservoir_alarm",
                "mode",
                "steps"
            ]
        );
        let labels: Vec<&str> = c.rows().iter().map(|r| r.label.as_str()).collect();
        assert!(labels.contains(&"Steps (Mon–Fri)"), "{labels:?}");
        assert!(labels.contains(&"Steps (Sat–Sun)"), "{labels:?}");
        assert!(
            labels.contains(&"Daily basal total (Sat–Sun)"),
            "{labels:?}"
        );
        let steps = c
            .rows()
            .iter()
            .find(|r| r.label == "Steps (Mon–Fri)")
            .unwrap();
        assert_eq!(steps.old.len(), 4);
        assert_eq!(steps.new[1], "08:00  3.6 µg/day  (0.144 mL/day)");
        assert!(c.changes_drug());
        assert!(c.old_projection.is_none());
        assert_eq!(c.old.revision, Some(3));
        assert_eq!(c.new.revision, None);
    }

    #[test]
    fn same_prescription_is_unchanged_and_projections_match_the_shared_function() {
        let p = file("continuous-morphine.toml");
        let state = ReservoirState {
            volume: Nanolitres::from_ml(20),
            now: Timestamp(1_795_000_000_000),
            offset: UtcOffset(60),
            therapy: TherapyState::Running,
            carry: 0,
            bolus: None,
        };
        let c = Comparison::new(&record(p.clone()), &p, Some(state));
        assert!(c.is_unchanged());
        assert!(!c.changes_drug());
        assert!(c.rows().iter().all(|r| !r.changed()));
        // 3 mg/day at 10 mg/mL = 0.3 mL/day: 18 mL to the 2 mL mark = 60 days.
        let expected = project(&p, state).low_at.unwrap();
        assert_eq!(expected.since(state.now), 60 * 86_400_000);
        let t = PumpTime {
            now: state.now,
            offset: state.offset,
        };
        assert_eq!(
            c.new_projection.as_ref().unwrap().low_at,
            Some(t.rfc3339(expected))
        );
        let row = c
            .rows()
            .iter()
            .find(|r| r.label == "Low-reservoir alarm date")
            .unwrap();
        assert!(row.new[0].contains("(in 60 days)"), "{:?}", row.new);
    }

    #[test]
    fn a_new_concentration_alone_is_a_drug_change_new_doses_are_not() {
        let old = file("flexible-baclofen-day.toml");
        let mut stronger = old.draft().clone();
        stronger.concentration = thecal_protocol::units::NanogramsPerMillilitre(1_000_000);
        let c = Comparison::new(
            &record(old.clone()),
            &Prescription::new(stronger).unwrap(),
            None,
        );
        assert_eq!(c.changed, ["concentration"]);
        assert!(c.changes_drug());
        let mut lower = old.draft().clone();
        lower.low_reservoir_alarm = Nanolitres::from_ml(3);
        let c = Comparison::new(&record(old), &Prescription::new(lower).unwrap(), None);
        assert_eq!(c.changed, ["low_reservoir_alarm"]);
        assert!(!c.changes_drug());
    }

    #[test]
    fn view_lists_profiles_and_totals() {
        let v = PrescriptionView::new(&file("weekday-ziconotide.toml"));
        assert_eq!(v.mode, "flexible");
        assert!(v.weekly);
        assert_eq!(v.profiles.len(), 2);
        assert_eq!(v.profiles[1].days, ["saturday", "sunday"]);
        assert_eq!(
            v.daily_totals_ng,
            [3_000, 3_000, 3_000, 3_000, 3_000, 2_400, 2_400]
        );
        let v = PrescriptionView::new(&file("continuous-morphine.toml"));
        assert_eq!(v.profiles.len(), 1);
        assert_eq!(v.profiles[0].days.len(), 7);
        assert_eq!(v.profiles[0].steps[0].flow_nl_per_day, 300_000);
    }
}
