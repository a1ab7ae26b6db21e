//! The session report for the chart: printable HTML (the browser prints it to PDF; the
//! same page is `thecal report`'s), and its JSON document.

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use thecal_host::quantity;
use thecal_host::report::{Change, Interrogation, SessionReport};
use thecal_protocol::units::{Nanograms, NanogramsPerMillilitre, Nanolitres};

use super::desk::Desk;
use super::{html, page, Shared};

fn interrogation(i: &Interrogation) -> Markup {
    let p = &i.prescription;
    page::fields(&[
        ("Read at", page::date(&i.at)),
        ("Therapy", i.therapy.clone()),
        (
            "Prescription",
            format!(
                "revision {}: {} {}, limit {}",
                i.revision,
                p.drug,
                quantity::concentration(NanogramsPerMillilitre(p.concentration_ng_per_ml)),
                quantity::dose_rate(thecal_protocol::units::NanogramsPerDay(
                    p.daily_limit_ng_per_day
                ))
            ),
        ),
        ("Steps", p.steps.join("; ")),
        ("Reservoir", quantity::volume(Nanolitres(i.reservoir_nl))),
        (
            "Low-reservoir alarm date",
            i.low_reservoir_at
                .as_deref()
                .map_or("not within the horizon".into(), page::date),
        ),
        (
            "Delivered, last 24 h",
            quantity::dose(Nanograms(i.delivered_24h_ng)),
        ),
        ("Battery", i.battery.replace('_', " ")),
        (
            "Active alarms",
            if i.alarms.is_empty() {
                "none".into()
            } else {
                i.alarms
                    .iter()
                    .map(|a| a.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ])
}

fn change(c: &Change) -> Markup {
    match c {
        Change::Prescription {
            old_revision,
            new_revision,
            review,
            ..
        } => html! {
            p { strong { "Prescription written: revision " (old_revision) " → " (new_revision) " (read back identical)" } }
            (page::review(review, &format!("revision {old_revision}"), &format!("revision {new_revision}")))
        },
        Change::Refill {
            revision,
            expected_nl,
            aspirated_nl,
            tolerance_nl,
            discrepancy,
            volume_nl,
            drug,
            concentration_ng_per_ml,
            checklist,
            review,
            bridge_bolus_nl,
            warnings,
        } => html! {
            p { strong { "Refill recorded: " (quantity::volume(Nanolitres(*volume_nl))) " of " (drug) " " (quantity::concentration(NanogramsPerMillilitre(*concentration_ng_per_ml))) ", revision " (revision) } }
            (page::fields(&[
                ("Expected in the reservoir", quantity::volume(Nanolitres(*expected_nl))),
                ("Aspirated", aspirated_nl.map_or("not measured".into(), |a| quantity::volume(Nanolitres(a)))),
                ("Tolerance", tolerance_nl.map_or(String::new(), |t| format!("±{}", quantity::volume(Nanolitres(t))))),
                ("Discrepancy", discrepancy.as_deref().map_or("none".into(), |d| format!("YES: {d} than expected"))),
                ("Bridge bolus", bridge_bolus_nl.map_or("none".into(), |b| quantity::volume(Nanolitres(b)))),
            ]))
            table { @for a in checklist { tr { th { (a.question) } td { (a.answer) } } } }
            @for w in warnings { (page::warning(w)) }
            @if let Some(r) = review { (page::review(r, "before", "with the refill")) }
        },
        Change::Bolus {
            bolus,
            drug,
            dose_ng,
            volume_nl,
            started_at,
            ends_at,
        } => html! {
            p { strong { (bolus) " bolus" } ": " (quantity::dose(Nanograms(*dose_ng))) " of " (drug) " (" (quantity::volume(Nanolitres(*volume_nl))) "), from " (page::date(started_at)) " to " (page::date(ends_at)) }
        },
        Change::BolusCancelled { delivered_nl } => {
            html! { p { strong { "Bolus cancelled" } ", " (quantity::volume(Nanolitres(*delivered_nl))) " delivered" } }
        }
        Change::Stopped => html! { p { strong { "Therapy stopped" } } },
        Change::Resumed => html! { p { strong { "Therapy resumed" } } },
        Change::AlarmAcknowledged { alarm } => {
            html! { p { strong { "Alarm acknowledged: " } (alarm.replace('_', " ")) } }
        }
        Change::ClockSet { old, new } => {
            html! { p { strong { "Clock set" } ": " (page::date(old)) " → " (page::date(new)) } }
        }
    }
}

/// The report as the chart gets it (printable: the screen's frame is hidden in print).
pub fn report_body(r: &SessionReport) -> Markup {
    html! {
        section.report data-testid="report" {
            (page::fields(&[
                ("Pump", format!("{} {}, firmware {}", r.pump.model, r.pump.serial, r.pump.firmware)),
                ("Programmer", format!("{}, as {}", r.programmer, r.role)),
                ("Session", format!("{} – {} (UTC)", r.started_utc, r.ended_utc.as_deref().unwrap_or("open"))),
                ("Session id", r.id.clone()),
            ]))
            h2 { "Interrogation at the start" }
            @if let Some(b) = &r.before { (interrogation(b)) } @else { p { "none" } }
            h2 { "Changes" }
            @if r.changes.is_empty() { p { "No change was made." } }
            ol { @for c in &r.changes { li { span.hint { (page::date(&c.at)) } (change(&c.change)) } } }
            h2 { "Alarms seen" }
            @if r.alarms_seen.is_empty() { p { "none" } }
            ul { @for a in &r.alarms_seen { li { (a.name) " (raised " (page::date(&a.raised_at)) "): " (if a.acknowledged { "acknowledged" } else { "NOT acknowledged" }) } } }
            h2 { "The pump as left" }
            @if let Some(a) = &r.after { (interrogation(a)) } @else { p { "none" } }
        }
    }
}

/// `GET /report`.
pub async fn report(State(app): State<Shared>) -> Response {
    let mut desk = app.desk.lock().await;
    let _ = desk.interrogate().await;
    let banner = desk.banner();
    let body = html! {
        p.noprint { button type="button" id="print" { "Print / save as PDF" } " · " a href="/report.json" download="thecal-session.json" { "Download JSON" } }
        (report_body(&desk.report))
        script src="/app.js" {}
    };
    html(page::page(&banner, "/report", "Session report", body))
}

/// `GET /report.json`: the report document ([`SessionReport`], schema versioned).
pub async fn report_json(State(app): State<Shared>) -> Response {
    let desk = app.desk.lock().await;
    let body = serde_json::to_string_pretty(&desk.report).unwrap_or_else(|e| e.to_string());
    super::log::download(body, "application/json", "thecal-session.json")
}

/// The report as a page of its own (`thecal report`, and the page `POST /end` answers
/// with), `heading` above it.
pub fn standalone(r: &SessionReport, heading: &str, note: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Session report " (r.pump.serial) " " (r.started_utc) " — thecal" }
                style { (PreEscaped(page::css())) }
            }
            body { main {
                h1 { (heading) }
                @if !note.is_empty() { p.noprint { (note) } }
                (report_body(r))
            } }
        }
    }
}

/// The page `POST /end` answers with: the final report, standalone (the server stops).
pub fn final_report(desk: &mut Desk) -> Markup {
    desk.report.ended_utc = Some(super::desk::utc_now());
    standalone(
        &desk.report,
        "Session ended",
        "The session with the pump is closed and this programmer has stopped. Print this \
         report for the chart (Ctrl+P).",
    )
}
