//! Boluses (single, priming, bridge), stop, resume, cancel a bolus, set the clock — each
//! planned and shown first — and `/confirm`, which carries out the plan held.

use axum::extract::{Form, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use thecal_host::report::{Change, PrescriptionSummary, Review};
use thecal_host::view::{bolus_key, PumpTime};
use thecal_host::workflow::{self, Current};
use thecal_host::{clock, quantity};
use thecal_protocol::message::{BolusRequest, TherapyState};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

use super::desk::{Action, Desk};
use super::{html, page, Shared};
use crate::cmd::bolus::clinician_bolus;
use crate::out;

fn shown(desk: &Desk, path: &str, title: &str, body: Markup) -> Response {
    html(page::page(&desk.banner(), path, title, body))
}

fn failed(desk: &Desk, path: &str, title: &str, e: &anyhow::Error) -> Response {
    let text = out::message(e, desk.time().as_ref());
    shown(desk, path, title, page::problem(&text))
}

/// `GET /bolus`.
pub async fn bolus_form(State(app): State<Shared>) -> Response {
    let desk = app.desk.lock().await;
    shown(
        &desk,
        "/bolus",
        "Bolus",
        bolus_inputs(&BolusInput::default(), None),
    )
}

/// The bolus asked for.
#[derive(Debug, Default, Deserialize)]
pub struct BolusInput {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    over: String,
}

fn bolus_inputs(b: &BolusInput, problem: Option<&str>) -> Markup {
    html! {
        @if let Some(p) = problem { (page::problem(p)) }
        form.stack method="post" action="/bolus/review" {
            label for="kind" { "Kind" }
            select id="kind" name="kind" {
                option value="single" selected[b.kind == "single"] { "single: a dose over a time" }
                option value="priming" selected[b.kind == "priming"] { "priming: fill the catheter (a volume)" }
                option value="bridge" selected[b.kind == "bridge"] { "bridge: old drug out after a concentration change (a volume)" }
            }
            label for="amount" { "Dose (single) or volume (priming, bridge)" }
            input type="text" id="amount" name="amount" value=(b.amount) placeholder="50 µg  or  0.2 mL";
            label for="over" { "Over" }
            input type="text" id="over" name="over" value=(b.over) placeholder="30 min";
            p { button.primary type="submit" { "Review the bolus" } }
        }
        p.hint { "A patient bolus is the patient's own (their therapy manager); a running bolus is cancelled on the Stop / resume screen." }
    }
}

fn parse_bolus(b: &BolusInput) -> Result<BolusRequest, String> {
    use crate::usage::arg;
    let duration: Minutes = arg::duration(&b.over).map_err(|e| format!("over: {e}"))?;
    match b.kind.as_str() {
        "single" => {
            let dose: Nanograms = arg::dose(&b.amount).map_err(|e| format!("dose: {e}"))?;
            Ok(BolusRequest::Single { dose, duration })
        }
        "priming" | "bridge" => {
            let volume: Nanolitres = arg::volume(&b.amount).map_err(|e| format!("volume: {e}"))?;
            Ok(if b.kind == "priming" {
                BolusRequest::Priming { volume, duration }
            } else {
                BolusRequest::Bridge { volume, duration }
            })
        }
        other => Err(format!(
            "`{other}` is not a bolus kind: single, priming or bridge"
        )),
    }
}

/// `POST /bolus/review`: the bolus with drug, dose, volume, rate and the 24 h total
/// against the limit, and its confirmation; or why it cannot be given.
pub async fn bolus_review(State(app): State<Shared>, Form(b): Form<BolusInput>) -> Response {
    let mut desk = app.desk.lock().await;
    let request = match parse_bolus(&b) {
        Ok(r) => r,
        Err(p) => return shown(&desk, "/bolus", "Bolus", bolus_inputs(&b, Some(&p))),
    };
    let current = match Current::read(&mut desk.session.client).await {
        Ok(c) => c,
        Err(e) => return failed(&desk, "/bolus", "Bolus", &e.into()),
    };
    let (details, text) =
        match clinician_bolus(&request, &current.record.prescription, &current.status) {
            Ok(d) => d,
            Err(p) => {
                return shown(
                    &desk,
                    "/bolus",
                    "Bolus",
                    bolus_inputs(&b, Some(&format!("bolus not given: {p}"))),
                )
            }
        };
    let serial = desk.session.identity.serial.to_string();
    let running = current.status.bolus.is_some();
    let body = match desk.hold(Action::Bolus(request)) {
        Ok(nonce) => html! {
            (page::fields(&details))
            @if running { (page::warning("a bolus is running: the pump refuses another until it ends or is cancelled")) }
            (page::confirm(&nonce, &format!("Give a {text} on pump {serial}?"), "Give the bolus"))
        },
        Err(e) => page::problem(&e.to_string()),
    };
    shown(&desk, "/bolus", "Review the bolus", body)
}

/// `GET /therapy`: stop or resume therapy, cancel a running bolus, set the clock.
pub async fn therapy(State(app): State<Shared>) -> Response {
    let mut desk = app.desk.lock().await;
    let status = match desk.session.client.status().await {
        Ok(s) => s,
        Err(e) => return failed(&desk, "/therapy", "Stop / resume / clock", &e.into()),
    };
    let t = PumpTime {
        now: status.now,
        offset: status.offset,
    };
    desk.session.last_time = Some(t);
    let host = clock::host_now();
    let drift = i128::from(host.0) - i128::from(status.now.0);
    let body = html! {
        (page::fields(&[
            ("Therapy", match status.therapy {
                TherapyState::Running => "running".to_string(),
                TherapyState::Stopped => "STOPPED (minimum flow only)".to_string(),
                TherapyState::Halted(a) => format!("HALTED by the {a} alarm"),
            }),
            ("Pump clock", format!("{} (UTC{})", clock::spelled(status.now, status.offset), clock::fmt_offset(status.offset))),
            ("This computer's clock", format!("{} ({} s apart)", clock::spelled(host, status.offset), drift / 1000)),
        ]))
        h2 { "Therapy" }
        form method="post" action="/therapy/review" {
            @if status.therapy == TherapyState::Running {
                button type="submit" name="what" value="stop" { "Stop therapy…" }
            } @else if status.therapy == TherapyState::Stopped {
                button type="submit" name="what" value="resume" { "Resume therapy…" }
            }
            @if let Some(b) = status.bolus {
                " "
                button type="submit" name="what" value="cancel" {
                    "Cancel the running " (bolus_key(b.kind)) " bolus…"
                }
            }
            " "
            button type="submit" name="what" value="clock" { "Set the pump clock to this computer's…" }
        }
    };
    shown(&desk, "/therapy", "Stop / resume / clock", body)
}

/// What to plan on the therapy screen.
#[derive(Debug, Deserialize)]
pub struct TherapyInput {
    what: String,
}

/// `POST /therapy/review`: the consequence in words, and its confirmation.
pub async fn therapy_review(State(app): State<Shared>, Form(i): Form<TherapyInput>) -> Response {
    let mut desk = app.desk.lock().await;
    let status = match desk.session.client.status().await {
        Ok(s) => s,
        Err(e) => return failed(&desk, "/therapy", "Stop / resume / clock", &e.into()),
    };
    let t = PumpTime {
        now: status.now,
        offset: status.offset,
    };
    let serial = desk.session.identity.serial.to_string();
    let (action, question, button) = match i.what.as_str() {
        "stop" => (Action::Stop, format!("Stop therapy on pump {serial}? The pump then gives only the minimum flow that keeps the catheter open: the patient gets NO therapeutic dose until therapy is resumed (withdrawal risk with baclofen)."), "Stop therapy"),
        "resume" => (Action::Resume, format!("Resume therapy on pump {serial} at {} now?", quantity::dose_rate(status.basal_dose)), "Resume therapy"),
        "cancel" => match status.bolus {
            Some(b) => (Action::CancelBolus, format!("Cancel the running {} bolus on pump {serial} ({} of {} delivered, planned to end {})? What was delivered stays counted against the daily limit.", bolus_key(b.kind), quantity::volume(b.delivered), quantity::volume(b.total), t.spelled(b.ends_at)), "Cancel the bolus"),
            None => return shown(&desk, "/therapy", "Stop / resume / clock", page::problem("no bolus is running; nothing was sent")),
        },
        "clock" => {
            let (now, offset) = (clock::host_now(), clock::host_offset());
            (Action::Clock { now, offset }, format!("Set the clock of pump {serial} from {} to {} (UTC{})? Schedules follow the patient's local time: the step times move with it.", clock::spelled(status.now, status.offset), clock::spelled(now, offset), clock::fmt_offset(offset)), "Set the clock")
        }
        other => return shown(&desk, "/therapy", "Stop / resume / clock", page::problem(&format!("`{other}` is not something this screen does"))),
    };
    let body = match desk.hold(action) {
        Ok(nonce) => page::confirm(&nonce, &question, button),
        Err(e) => page::problem(&e.to_string()),
    };
    shown(&desk, "/therapy", "Confirm", body)
}

/// The one-time number of the plan being confirmed.
#[derive(Debug, Deserialize)]
pub struct Confirmation {
    nonce: String,
    /// A refill with a discrepancy: the clinician's assessment ticked (`yes`).
    #[serde(default)]
    assessed: String,
}

/// `POST /confirm`: carries out the plan held under the number posted, once.
pub async fn confirm(State(app): State<Shared>, Form(c): Form<Confirmation>) -> Response {
    let mut desk = app.desk.lock().await;
    let Some(action) = desk.take(&c.nonce) else {
        return shown(&desk, "/", "Nothing to confirm", page::problem(
            "nothing is waiting for this confirmation: it was carried out already, replaced by another plan, or the programmer was restarted. Nothing was sent; check the pump's state before planning again.",
        ));
    };
    if let Action::Refill(plan, _) = &action {
        if super::refill::needs_assessment(plan) && c.assessed != "yes" {
            desk.put_back(c.nonce, action);
            return shown(&desk, "/refill", "Not recorded", page::problem(
                "the aspirated volume differs from the expected one beyond the tolerance: tick that you have assessed the discrepancy before the refill is recorded (go back to the review). Nothing was sent.",
            ));
        }
    }
    let (path, outcome) = carry_out(&mut desk, action).await;
    // The pump as left after the change; the report saved with it (also when the
    // interrogation fails).
    if desk.interrogate().await.is_err() {
        desk.save().await;
    }
    let alarm = desk
        .report
        .after
        .as_ref()
        .map(|a| {
            a.low_reservoir_at
                .as_deref()
                .map_or("not within the horizon".to_string(), page::date)
        })
        .unwrap_or_default();
    let body = match outcome {
        Ok(text) => html! {
            (page::done(&text))
            p { "Low-reservoir alarm date now: " strong data-testid="alarm-date" { (alarm) } }
            p { a href="/" { "Interrogate the pump" } " · " a href="/report" { "Session report" } }
        },
        Err(e) => page::problem(&out::message(&e, desk.time().as_ref())),
    };
    shown(&desk, path, "Done", body)
}

async fn carry_out(desk: &mut Desk, action: Action) -> (&'static str, anyhow::Result<String>) {
    let t = desk.time();
    let spelled = |at| t.map_or_else(String::new, |t| t.spelled(at));
    match action {
        Action::Schedule(plan) => {
            let done = workflow::schedule::execute(&mut desk.session.client, &plan).await;
            let r = done.map(|o| {
                desk.record(Change::Prescription {
                    old_revision: plan.expected.0,
                    new_revision: o.record.revision.0,
                    review: Review::from(&plan.comparison),
                    new: PrescriptionSummary::new(&plan.new),
                });
                format!(
                    "New prescription written and verified: revision {} is in force (read back identical).",
                    o.record.revision.0
                )
            });
            ("/schedule", r.map_err(anyhow::Error::new))
        }
        Action::Refill(plan, checklist) => {
            let r = super::refill::execute(desk, &plan, checklist).await;
            ("/refill", r)
        }
        Action::Bolus(request) => {
            let r = desk.session.client.bolus(request).await.map(|b| {
                let v = thecal_host::view::BolusView::new(
                    &b,
                    &t.unwrap_or(PumpTime {
                        now: b.ends_at,
                        offset: Default::default(),
                    }),
                );
                let drug = desk
                    .report
                    .after
                    .as_ref()
                    .map_or(String::new(), |a| a.prescription.drug.clone());
                desk.record(Change::Bolus {
                    bolus: v.kind.to_string(),
                    drug,
                    dose_ng: v.dose_ng,
                    volume_nl: v.volume_nl,
                    started_at: t.map_or_else(String::new, |t| t.rfc3339(t.now)),
                    ends_at: v.ends_at,
                });
                format!(
                    "Bolus started: {} {} ({}), ends {}.",
                    v.kind,
                    quantity::dose(b.dose),
                    quantity::volume(b.volume),
                    spelled(b.ends_at)
                )
            });
            ("/bolus", r.map_err(Into::into))
        }
        Action::CancelBolus => {
            let r = desk.session.client.cancel_bolus().await.map(|o| {
                desk.record(Change::BolusCancelled {
                    delivered_nl: o.delivered.0,
                });
                format!(
                    "Bolus cancelled: {} of {} delivered; the rest is not given.",
                    quantity::volume(o.delivered),
                    quantity::volume(o.planned)
                )
            });
            ("/therapy", r.map_err(Into::into))
        }
        Action::Stop => {
            let r = desk.session.client.stop().await.map(|()| {
                desk.record(Change::Stopped);
                "Therapy STOPPED: minimum flow only, until resumed.".to_string()
            });
            ("/therapy", r.map_err(Into::into))
        }
        Action::Resume => {
            let r = desk.session.client.resume().await.map(|()| {
                desk.record(Change::Resumed);
                "Therapy resumed.".to_string()
            });
            ("/therapy", r.map_err(Into::into))
        }
        Action::Clock { now, offset } => {
            let old = t.map_or_else(String::new, |t| t.rfc3339(t.now));
            let r = desk.session.client.set_clock(now, offset).await.map(|_| {
                desk.record(Change::ClockSet {
                    old,
                    new: clock::rfc3339(now, offset),
                });
                format!(
                    "Pump clock set to {} (UTC{}).",
                    clock::spelled(now, offset),
                    clock::fmt_offset(offset)
                )
            });
            ("/therapy", r.map_err(Into::into))
        }
    }
}
