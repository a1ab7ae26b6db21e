//! The schedule editor: steps per group of days, checked as the clinician types (the
//! same parser and rules as `thecal schedule check`), a side-by-side review with both
//! alarm dates, then the write (compare, write, read back) after confirmation.

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use thecal_host::report::Review;
use thecal_host::view::PrescriptionView;
use thecal_host::workflow::{self, Current};

use super::desk::Action;
use super::schedule_form::{FormError, ScheduleForm};
use super::{html, page, text, Shared};
use crate::out;

fn editor_page(
    form: &ScheduleForm,
    error: Option<&FormError>,
    note: Option<maud::Markup>,
) -> maud::Markup {
    html! {
        @if let Some(n) = note { (n) }
        @if let Some(e) = error { (page::problem(&match &e.field { Some(f) => format!("{f}: {}", e.message), None => e.message.clone() })) }
        form.stack #schedule method="post" action="/schedule/review" {
            div #check role="status" aria-live="polite" data-testid="check" {}
            (form.render(error))
            p { button.primary type="submit" data-testid="to-review" { "Review the change" } }
        }
        script src="/app.js" {}
    }
}

/// `GET /schedule`: the editor, filled with the prescription in force.
pub async fn editor(State(app): State<Shared>) -> Response {
    let mut desk = app.desk.lock().await;
    let read = Current::read(&mut desk.session.client).await;
    let banner = desk.banner();
    let body = match read {
        Err(e) => page::problem(&out::message(&e.into(), desk.time().as_ref())),
        Ok(c) => {
            let v = PrescriptionView::from_record(&c.record, &c.time());
            let note = html! { p.hint { "Editing revision " (c.record.revision.0) " in force. A drug or concentration change goes in with a refill (the Refill screen)." } };
            editor_page(&ScheduleForm::from_view(&v), None, Some(note))
        }
    };
    html(page::page(&banner, "/schedule", "Schedule", body))
}

/// `POST /schedule/check`: the form checked, as JSON: `{"ok":true,"summary":…}` or
/// `{"ok":false,"field":…,"message":…}`. Nothing is sent to the pump.
pub async fn check(Form(pairs): Form<Vec<(String, String)>>) -> Response {
    let form = ScheduleForm::from_pairs(pairs);
    let body = match form.check() {
        Ok(p) => {
            let v = PrescriptionView::new(&p);
            let totals: Vec<String> = v
                .daily_totals_ng
                .iter()
                .map(|t| thecal_host::quantity::dose(thecal_protocol::units::Nanograms(*t)))
                .collect();
            serde_json::json!({
                "ok": true,
                "summary": format!("valid: {} {}; basal Mon–Sun {}", v.drug,
                    thecal_host::quantity::concentration(thecal_protocol::units::NanogramsPerMillilitre(v.concentration_ng_per_ml)),
                    totals.join(" / ")),
            })
        }
        Err(e) => serde_json::json!({ "ok": false, "field": e.field, "message": e.message }),
    };
    text(StatusCode::OK, "application/json", body.to_string())
}

/// `POST /schedule/review`: checked again, compared with the prescription in force;
/// the review and the confirmation, or the editor with its error.
pub async fn review(
    State(app): State<Shared>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = ScheduleForm::from_pairs(pairs);
    let mut desk = app.desk.lock().await;
    let banner = desk.banner();
    let new = match form.check() {
        Ok(p) => p,
        Err(e) => {
            return html(page::page(
                &banner,
                "/schedule",
                "Schedule",
                editor_page(&form, Some(&e), None),
            ))
        }
    };
    let current = match Current::read(&mut desk.session.client).await {
        Ok(c) => c,
        Err(e) => {
            let text = out::message(&e.into(), desk.time().as_ref());
            return html(page::page(
                &banner,
                "/schedule",
                "Schedule",
                page::problem(&text),
            ));
        }
    };
    let plan = workflow::schedule::plan(&current, new);
    let review = Review::from(&plan.comparison);
    let refused = plan.check().err();
    let warning = plan.comparison.dose_change_warning();
    let revision = plan.expected.0;
    let serial = desk.session.identity.serial.to_string();
    let nonce = if refused.is_none() {
        desk.hold(Action::Schedule(Box::new(plan))).ok()
    } else {
        None
    };
    let body = html! {
        p { "Pump " (serial) ": revision " (revision) " in force, and the new prescription. Changed rows are marked; the alarm dates are projected from the reservoir now." }
        (page::review(&review, &format!("in force (revision {revision})"), "new"))
        @if let Some(w) = warning { (page::warning(&w)) }
        @match (refused, nonce) {
            (Some(r), _) => {
                (page::problem(&format!("{r}: nothing will be written")))
                a href="/schedule" { "Back to the editor" }
            },
            (None, Some(n)) => (page::confirm(&n, &format!("Write this prescription to pump {serial} (replacing revision {revision})? It is read back and compared before it counts as written."), "Write to the pump")),
            (None, None) => (page::problem("no random numbers for the confirmation; nothing will be written")),
        }
    };
    html(page::page(
        &banner,
        "/schedule",
        "Review the new prescription",
        body,
    ))
}

/// `GET /app.js`: checks the schedule form as it is typed.
pub async fn script() -> Response {
    text(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        SCRIPT.to_string(),
    )
}

const SCRIPT: &str = r#"// thecal: the schedule form is checked on the server as it is typed.
(function () {
  var print = document.getElementById('print');
  if (print) print.addEventListener('click', function () { window.print(); });
  document.querySelectorAll('#refill input[name="change"]').forEach(function (r) {
    r.addEventListener('change', function () {
      var d = document.querySelector('#refill details');
      if (d && r.checked) d.open = r.value === 'new';
    });
  });
  var form = document.getElementById('schedule');
  if (!form) return;
  var box = document.getElementById('check');
  var timer = null;
  function show(r) {
    form.querySelectorAll('.bad').forEach(function (e) { e.classList.remove('bad'); });
    form.querySelectorAll('.fieldmsg').forEach(function (e) { e.textContent = ''; });
    if (r.ok) { box.className = 'done'; box.textContent = r.summary; return; }
    box.className = 'problem';
    box.textContent = (r.field ? r.field + ': ' : '') + r.message;
    if (r.field) {
      var input = form.querySelector('[name="' + r.field + '"]') ||
        form.querySelector('[name="' + r.field + '.dose"]');
      if (input) input.classList.add('bad');
      var msg = form.querySelector('.fieldmsg[data-for="' + r.field + '"]');
      if (!msg) {
        var dose = /\.(from|dose)$/.test(r.field) ? r.field.replace(/\.from$/, '.dose') : r.field + '.dose';
        msg = form.querySelector('.fieldmsg[data-for="' + dose + '"]');
      }
      if (msg) msg.textContent = r.message;
    }
  }
  var asked = 0;
  function check() {
    var body = new URLSearchParams(new FormData(form));
    var mine = ++asked;
    fetch('/schedule/check', { method: 'POST', body: body, credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (r) { if (mine === asked) show(r); })
      .catch(function () { box.className = 'problem'; box.textContent = 'cannot reach the programmer'; });
  }
  form.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(check, 250); });
  form.addEventListener('change', function () { clearTimeout(timer); timer = setTimeout(check, 50); });
  check();
})();
"#;
