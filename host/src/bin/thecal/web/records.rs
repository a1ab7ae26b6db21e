//! The event log (filter, export as CSV or JSON), the link's health, and the session
//! report (printable HTML — the browser prints it to PDF — and JSON).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use thecal_host::eventlog::{read_log_pipelined, LogRange, WINDOW};
use thecal_host::quantity;
use thecal_host::report::{Change, Interrogation, SessionReport};
use thecal_host::view::{LinkView, LogEntryView};
use thecal_protocol::units::{Nanograms, NanogramsPerMillilitre, Nanolitres};

use super::desk::Desk;
use super::{html, page, text, Shared};
use crate::out;

/// The log's filters.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    /// Words the entry must contain (its description or kind).
    #[serde(default)]
    q: String,
    /// Only the newest N entries read.
    #[serde(default)]
    last: Option<u32>,
    /// `csv` or `json` to download.
    #[serde(default)]
    format: String,
}

/// `GET /log?q=&last=&format=`.
pub async fn log(State(app): State<Shared>, Query(f): Query<LogQuery>) -> Response {
    let mut desk = app.desk.lock().await;
    let banner = desk.banner();
    let read = async {
        let status = desk.session.client.status().await?;
        let t = thecal_host::view::PumpTime {
            now: status.now,
            offset: status.offset,
        };
        let range = LogRange {
            from: None,
            last: Some(f.last.unwrap_or(200)),
        };
        let read = read_log_pipelined(&mut desk.session.client, range, WINDOW, |_, _| {}).await?;
        anyhow::Ok(
            read.entries
                .iter()
                .map(|e| LogEntryView::new(e, &t))
                .collect::<Vec<_>>(),
        )
    }
    .await;
    let entries = match read {
        Ok(e) => e,
        Err(e) => {
            return html(page::page(
                &banner,
                "/log",
                "Event log",
                page::problem(&out::message(&e, desk.time().as_ref())),
            ))
        }
    };
    drop(desk);
    let needle = f.q.trim().to_lowercase();
    let kind = |e: &LogEntryView| {
        serde_json::to_value(&e.event)
            .ok()
            .and_then(|v| v.get("event").and_then(|k| k.as_str()).map(str::to_string))
            .unwrap_or_default()
    };
    let shown: Vec<&LogEntryView> = entries
        .iter()
        .filter(|e| {
            needle.is_empty()
                || e.description.to_lowercase().contains(&needle)
                || kind(e).contains(&needle)
        })
        .collect();
    match f.format.as_str() {
        "json" => {
            let body = serde_json::to_string_pretty(&shown).unwrap_or_else(|e| e.to_string());
            return download(body, "application/json", "thecal-log.json");
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut rows = vec![[
                "index".to_string(),
                "at".into(),
                "event".into(),
                "description".into(),
            ]];
            rows.extend(shown.iter().map(|e| {
                [
                    e.index.to_string(),
                    e.at.clone(),
                    kind(e),
                    e.description.clone(),
                ]
            }));
            for r in rows {
                if w.write_record(&r).is_err() {
                    break;
                }
            }
            let body = w
                .into_inner()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return download(body, "text/csv; charset=utf-8", "thecal-log.csv");
        }
        _ => {}
    }
    let last = f.last.unwrap_or(200);
    let query = format!("q={}&last={last}", urlencode(&f.q));
    let body = html! {
        form method="get" action="/log" {
            label { "Contains " input type="text" name="q" value=(f.q) placeholder="bolus, refill, alarm…"; }
            " "
            label { "Newest " input type="text" name="last" value=(last) size="4"; " entries" }
            " " button type="submit" { "Filter" }
            " " a href={ "/log?" (query) "&format=csv" } { "Export CSV" }
            " · " a href={ "/log?" (query) "&format=json" } { "Export JSON" }
        }
        p.hint { (shown.len()) " of " (entries.len()) " entries read" }
        table data-testid="log" {
            thead { tr { th { "#" } th { "When" } th { "Event" } } }
            tbody { @for e in shown.iter().rev() { tr { td { (e.index) } td { (page::date(&e.at)) } td { (e.description) } } } }
        }
    };
    html(page::page(&banner, "/log", "Event log", body))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn download(body: String, content_type: &'static str, name: &str) -> Response {
    let mut r = text(StatusCode::OK, content_type, body);
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut()
            .insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `GET /link`: the pump's link counters and this programmer's.
pub async fn link(State(app): State<Shared>) -> Response {
    let mut desk = app.desk.lock().await;
    let banner = desk.banner();
    let body = match desk.session.client.link_stats().await {
        Ok(s) => {
            let p = LinkView::from(&s);
            let c = desk.session.client.counters();
            let rtt = desk
                .session
                .client
                .ping()
                .await
                .map_or_else(|e| e.to_string(), |d| format!("{} ms", d.as_millis()));
            page::fields(&[
                ("Round trip", rtt),
                (
                    "Pump: frames in / out",
                    format!("{} / {}", p.frames_in, p.frames_out),
                ),
                (
                    "Pump: dropped",
                    format!(
                        "{} bad CRC, {} malformed, {} oversize, {} resyncs",
                        p.bad_crc, p.malformed, p.oversize, p.resyncs
                    ),
                ),
                (
                    "Pump: refused / replayed",
                    format!("{} / {}", p.refusals, p.replays),
                ),
                ("Pump: forged frames dropped", p.forged.to_string()),
                ("Pump: quiet (energy budget spent)", p.quiet.to_string()),
                (
                    "Programmer: requests / retries",
                    format!("{} / {}", c.requests, c.retries),
                ),
                (
                    "Programmer: stale / bad / unauthentic answers",
                    format!("{} / {} / {}", c.stale, c.bad_frames, c.unauthentic),
                ),
                ("Programmer: sessions opened", c.sessions.to_string()),
            ])
        }
        Err(e) => page::problem(&out::message(&e.into(), desk.time().as_ref())),
    };
    html(page::page(&banner, "/link", "Link", body))
}

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
    download(body, "application/json", "thecal-session.json")
}

/// The page `POST /end` answers with: the final report, standalone (the server stops).
pub fn final_report(desk: &mut Desk) -> Markup {
    desk.report.ended_utc = Some(super::desk::utc_now());
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Session report — thecal programmer" } style { (PreEscaped(page::css())) } }
            body { main {
                h1 { "Session ended" }
                p.noprint { "The session with the pump is closed and this programmer has stopped. Print this report for the chart (Ctrl+P)." }
                (report_body(&desk.report))
            } }
        }
    }
}
