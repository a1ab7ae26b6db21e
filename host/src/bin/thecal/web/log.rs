//! The event log (filter, export as CSV or JSON) and the link's health.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use thecal_host::eventlog::{read_log_pipelined, LogRange, WINDOW};
use thecal_host::view::{LinkView, LogEntryView};

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

pub fn download(body: String, content_type: &'static str, name: &str) -> Response {
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
