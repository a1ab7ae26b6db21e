//! The refill wizard. The pump's reservoir volume is a calculation (it counts strokes),
//! not a measurement, and drug injected beside the reservoir ("pocket fill") has
//! killed patients: so the wizard starts from the field record — the volume aspirated
//! from the reservoir, compared with the volume the pump expects
//! (`thecal_host::workflow::aspiration`) — and walks the checklist before anything is
//! recorded: the label's drug and concentration typed and compared with the
//! prescription, the needle confirmed in the reservoir, the volume within the
//! reservoir's capacity, and a bridge bolus choice for a drug or concentration change.

use axum::extract::{Form, State};
use axum::response::Response;
use maud::{html, Markup};
use thecal_host::quantity;
use thecal_host::report::{Change, ChecklistAnswer, Review};
use thecal_host::view::PrescriptionView;
use thecal_host::workflow::refill::{self, Bridge, Discrepancy, RefillInputs, RefillPlan};
use thecal_host::workflow::Current;
use thecal_protocol::Prescription;

use super::desk::{Action, Desk};
use super::schedule_form::{FormError, ScheduleForm};
use super::{html, page, Shared};
use crate::out;
use crate::usage::arg;

/// What the wizard's form holds.
struct Wizard {
    pairs: Vec<(String, String)>,
}

impl Wizard {
    fn get(&self, k: &str) -> &str {
        self.pairs
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.trim())
    }
}

fn wizard_form(current: &Current, w: &Wizard, problem: Option<&FormError>) -> Markup {
    let expected = current.status.reservoir;
    let v = PrescriptionView::from_record(&current.record, &current.time());
    let schedule = if w.pairs.iter().any(|(k, _)| k == "mode") {
        ScheduleForm::from_pairs(w.pairs.clone())
    } else {
        ScheduleForm::from_view(&v)
    };
    let bad = |name: &str| problem.and_then(|e| e.field.as_deref()) == Some(name);
    let input = |name: &str, label: &str, hint: &str| {
        html! {
            label for=(name) { (label) }
            input type="text" id=(name) name=(name) value=(w.get(name)) class=[bad(name).then_some("bad")];
            span.hint { " " (hint) }
        }
    };
    let change = w.get("change");
    html! {
        @if let Some(e) = problem {
            (page::problem(&match &e.field { Some(f) => format!("{f}: {}", e.message), None => e.message.clone() }))
        }
        (page::fields(&[
            ("In the pump now", format!("{} {}", v.drug, quantity::concentration(current.record.prescription.concentration()))),
            ("The pump expects", format!("{} in the reservoir (a calculation from its strokes, not a measurement)", quantity::volume(expected))),
        ]))
        form.stack #refill method="post" action="/refill/review" {
            fieldset {
                legend { "1. Empty the reservoir" }
                (input("aspirated", "Volume aspirated", "what came out of the reservoir, e.g. 2.8 mL"))
            }
            fieldset {
                legend { "2. Checklist" }
                (input("label_drug", "Drug on the label", "as printed"))
                (input("label_concentration", "Concentration on the label", "e.g. 500 µg/mL"))
                label.check {
                    input type="checkbox" name="needle" value="yes" checked[w.get("needle") == "yes"] class=[bad("needle").then_some("bad")];
                    " The needle is in the reservoir: fluid returned through the template's needle when aspirating"
                }
                (input("volume", "Volume injected (in the reservoir after the refill)", "e.g. 20 mL"))
            }
            fieldset {
                legend { "3. Solution" }
                label.check { input type="radio" name="change" value="same" checked[change != "new"]; " Same drug and concentration" }
                label.check { input type="radio" name="change" value="new" checked[change == "new"]; " A new drug or concentration: the prescription below is stored with the refill" }
                (input("bridge_volume", "Bridge bolus (new solution only)", "old drug left in the pump and catheter, e.g. 0.25 mL; empty for none"))
                details open[change == "new"] {
                    summary { "Prescription for the new solution" }
                    (schedule.render(problem))
                }
            }
            p { button.primary type="submit" data-testid="refill-review" { "Review the refill" } }
        }
        script src="/app.js" {}
    }
}

/// `GET /refill`.
pub async fn wizard(State(app): State<Shared>) -> Response {
    let mut desk = app.desk.lock().await;
    let banner = desk.banner();
    let body = match Current::read(&mut desk.session.client).await {
        Ok(c) => wizard_form(&c, &Wizard { pairs: Vec::new() }, None),
        Err(e) => page::problem(&out::message(&e.into(), desk.time().as_ref())),
    };
    html(page::page(&banner, "/refill", "Refill", body))
}

fn located(field: &str, message: impl Into<String>) -> FormError {
    FormError {
        field: Some(field.into()),
        message: message.into(),
    }
}

/// The wizard's answers as a plan, and the checklist as recorded; or the first answer
/// at fault.
fn plan(
    current: &Current,
    capacity: thecal_protocol::units::Nanolitres,
    w: &Wizard,
) -> Result<(RefillPlan, Vec<ChecklistAnswer>), FormError> {
    let aspirated = arg::volume(w.get("aspirated")).map_err(|e| located("aspirated", e))?;
    let volume = arg::volume(w.get("volume")).map_err(|e| located("volume", e))?;
    if volume > capacity {
        return Err(located(
            "volume",
            format!(
                "{} is more than the reservoir holds ({}): inject at most the capacity",
                quantity::volume(volume),
                quantity::volume(capacity)
            ),
        ));
    }
    let new: Option<Prescription> = match w.get("change") {
        "new" => Some(ScheduleForm::from_pairs(w.pairs.clone()).check()?),
        _ => None,
    };
    let target = new.as_ref().unwrap_or(&current.record.prescription);
    let label_drug = w.get("label_drug");
    if !label_drug.eq_ignore_ascii_case(target.drug().name()) {
        return Err(located("label_drug", format!(
            "the label says `{label_drug}`, the prescription {} is for {}: do not fill; check the vial (or choose a new solution)",
            if new.is_some() { "for the new solution" } else { "in force" },
            target.drug().name()
        )));
    }
    let label_c = thecal_host::quantity::parse_concentration(w.get("label_concentration"))
        .map_err(|e| {
            located(
                "label_concentration",
                thecal_host::error::quantity_words(w.get("label_concentration"), &e),
            )
        })?;
    if label_c != target.concentration() {
        return Err(located(
            "label_concentration",
            format!(
                "the label says {}, the prescription says {}: do not fill; check the vial",
                quantity::concentration(label_c),
                quantity::concentration(target.concentration())
            ),
        ));
    }
    if w.get("needle") != "yes" {
        return Err(located("needle", "confirm the needle is in the reservoir (fluid returned) before filling: an injection beside the reservoir goes into the tissue"));
    }
    let bridge = match (new.is_some(), w.get("bridge_volume")) {
        (false, "") => None,
        (false, _) => {
            return Err(located(
                "bridge_volume",
                "a bridge bolus is only for a new drug or concentration",
            ))
        }
        (true, "") => Some(Bridge::None),
        (true, v) => Some(Bridge::Volume(
            arg::volume(v).map_err(|e| located("bridge_volume", e))?,
        )),
    };
    let drug_changes = new.as_ref().is_some_and(|n| {
        n.drug() != current.record.prescription.drug()
            || n.concentration() != current.record.prescription.concentration()
    });
    let bridge = if drug_changes {
        bridge
    } else {
        bridge.filter(|b| *b != Bridge::None)
    };
    let inputs = RefillInputs {
        volume,
        prescription: new,
        bridge,
        capacity: Some(capacity),
        aspirated: Some(aspirated),
    };
    let plan = refill::plan(current, inputs).map_err(|e| FormError {
        field: Some(match e {
            refill::RefillPlanError::VolumeTooSmall { .. } => "volume".into(),
            _ => "bridge_volume".into(),
        }),
        message: e.to_string(),
    })?;
    let answer = |q: &str, a: String| ChecklistAnswer {
        question: q.into(),
        answer: a,
    };
    let checklist = vec![
        answer("Volume aspirated", quantity::volume(aspirated)),
        answer("Drug on the label", label_drug.to_string()),
        answer(
            "Concentration on the label",
            quantity::concentration(label_c),
        ),
        answer("Needle in the reservoir (fluid returned)", "yes".into()),
        answer(
            "Volume injected",
            format!(
                "{} (capacity {})",
                quantity::volume(volume),
                quantity::volume(capacity)
            ),
        ),
        answer(
            "Bridge bolus",
            match plan.bridge() {
                Some(b) => format!(
                    "{} over {}",
                    quantity::volume(b.volume),
                    quantity::duration(b.duration)
                ),
                None if drug_changes => "none (chosen)".into(),
                None => "not needed (same solution)".into(),
            },
        ),
    ];
    Ok((plan, checklist))
}

/// `POST /refill/review`: the aspirated volume against the expected one (a
/// discrepancy flagged), the checklist, the prescription change side by side, the
/// bridge bolus; and the confirmation.
pub async fn review(
    State(app): State<Shared>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let w = Wizard { pairs };
    let mut desk = app.desk.lock().await;
    let banner = desk.banner();
    let current = match Current::read(&mut desk.session.client).await {
        Ok(c) => c,
        Err(e) => {
            let text = out::message(&e.into(), desk.time().as_ref());
            return html(page::page(
                &banner,
                "/refill",
                "Refill",
                page::problem(&text),
            ));
        }
    };
    let capacity = desk.session.identity.reservoir_capacity;
    let (plan, checklist) = match plan(&current, capacity, &w) {
        Ok(p) => p,
        Err(e) => {
            return html(page::page(
                &banner,
                "/refill",
                "Refill",
                wizard_form(&current, &w, Some(&e)),
            ))
        }
    };
    let serial = desk.session.identity.serial.to_string();
    let aspiration = plan.aspiration;
    let discrepancy = aspiration.and_then(|a| a.discrepancy());
    let warnings: Vec<String> = plan.warnings.iter().map(|w| w.to_string()).collect();
    let review = plan.comparison.as_ref().map(Review::from);
    let question = if plan.writes_prescription() {
        format!("Record this refill with the new prescription on pump {serial} (replacing revision {})?", plan.expected.0)
    } else {
        format!("Record this refill on pump {serial}?")
    };
    let nonce = desk.hold(Action::Refill(Box::new(plan), checklist.clone()));
    let body = html! {
        @if let Some(a) = aspiration {
            div class=(if discrepancy.is_some() { "problem" } else { "done" }) data-testid="aspiration" {
                strong { (match discrepancy {
                    Some(Discrepancy::Less) => "DISCREPANCY: less came out than the pump expects",
                    Some(Discrepancy::More) => "DISCREPANCY: more came out than the pump expects",
                    None => "Aspirated volume within tolerance",
                }) }
                br;
                "Aspirated " (quantity::volume(a.aspirated)) ", expected " (quantity::volume(a.expected))
                ", difference " (signed(a.difference())) ", tolerance ±" (quantity::volume(a.tolerance)) "."
            }
        }
        @for w in &warnings { (page::warning(w)) }
        h2 { "Checklist" }
        table data-testid="checklist" {
            @for c in &checklist { tr { th { (c.question) } td { (c.answer) } } }
        }
        @if let Some(r) = &review {
            h2 { "Prescription" }
            (page::review(r, "in force", "with the refill"))
        }
        @match nonce {
            Ok(n) => {
                form.confirm method="post" action="/confirm" {
                    input type="hidden" name="nonce" value=(n);
                    @if discrepancy.is_some() {
                        label.check { input type="checkbox" name="assessed" value="yes" required; " I have assessed the discrepancy (patient, pump and catheter) and decide to refill" }
                    }
                    p { strong { (question) } }
                    button.primary type="submit" data-testid="confirm" { "Record the refill" }
                    " " a href="/refill" { "Cancel" }
                }
            }
            Err(e) => (page::problem(&e.to_string())),
        }
    };
    html(page::page(&banner, "/refill", "Review the refill", body))
}

fn signed(nl: i64) -> String {
    let v = quantity::volume(thecal_protocol::units::Nanolitres(
        u32::try_from(nl.unsigned_abs()).unwrap_or(u32::MAX),
    ));
    if nl < 0 {
        format!("−{v}")
    } else {
        format!("+{v}")
    }
}

/// Whether the refill plan needs the clinician's assessment of a discrepancy.
pub fn needs_assessment(plan: &RefillPlan) -> bool {
    plan.aspiration.and_then(|a| a.discrepancy()).is_some()
}

/// Records the refill (then its bridge bolus) and notes it in the report.
pub async fn execute(
    desk: &mut Desk,
    plan: &RefillPlan,
    checklist: Vec<ChecklistAnswer>,
) -> anyhow::Result<String> {
    let outcome = refill::execute(&mut desk.session.client, plan).await;
    let recorded = match &outcome {
        Ok(o) => Some(o.clone()),
        Err(refill::RefillError::BridgeNotStarted { recorded, .. }) => Some((**recorded).clone()),
        Err(_) => None,
    };
    if let Some(o) = &recorded {
        let a = plan.aspiration;
        desk.record(Change::Refill {
            revision: o.revision.0,
            expected_nl: plan.volume_before.0,
            aspirated_nl: a.map(|a| a.aspirated.0),
            tolerance_nl: a.map(|a| a.tolerance.0),
            discrepancy: a.and_then(|a| a.discrepancy()).map(|d| match d {
                Discrepancy::Less => "less".into(),
                Discrepancy::More => "more".into(),
            }),
            volume_nl: o.reservoir.volume.0,
            drug: o.reservoir.drug.to_string(),
            concentration_ng_per_ml: o.reservoir.concentration.0,
            checklist,
            review: plan.comparison.as_ref().map(Review::from),
            bridge_bolus_nl: o.bridge_bolus.map(|b| b.volume.0),
            warnings: plan.warnings.iter().map(|w| w.to_string()).collect(),
        });
    }
    let o = outcome.map_err(|e| match e {
        refill::RefillError::Refill(e) => anyhow::Error::new(e),
        other => anyhow::Error::new(other),
    })?;
    let mut text = format!(
        "Refill recorded: {} of {} {}; prescription revision {}.",
        quantity::volume(o.reservoir.volume),
        o.reservoir.drug,
        quantity::concentration(o.reservoir.concentration),
        o.revision.0
    );
    if o.prescription_written {
        text += " New prescription written and verified (read back identical).";
    }
    if let Some(b) = o.bridge_bolus {
        text += &format!(" Bridge bolus started: {}.", quantity::volume(b.volume));
    }
    Ok(text)
}
