//! The interrogation screen: status, battery with its replacement dates, the alarms
//! (acknowledge), the bolus running.

use axum::extract::{Form, State};
use axum::response::{Redirect, Response};
use maud::html;
use serde::Deserialize;
use thecal_host::report::Change;
use thecal_host::view::{alarm_key, BatteryView};
use thecal_protocol::message::AlarmKind;

use super::{html, page, Shared};
use crate::cmd::status::summary;
use crate::out;

/// `GET /`: interrogates the pump and shows what it holds.
pub async fn show(State(app): State<Shared>) -> Response {
    let mut desk = app.desk.lock().await;
    let read = desk.interrogate().await;
    let battery = desk.session.client.battery().await;
    let banner = desk.banner();
    let body = match read {
        Err(e) => page::problem(&out::message(&e, desk.time().as_ref())),
        Ok((current, alarms)) => {
            let t = current.time();
            let rows = summary(&current.status, &desk.session.identity, &t, false);
            let battery = battery.map(|b| BatteryView::new(&b, &t));
            html! {
                section data-testid="status" { (page::fields(&rows)) }
                h2 { "Battery" }
                @match battery {
                    Ok(b) => (page::fields(&[
                        ("Battery", format!("{} mV, {} %", b.millivolts, b.percent)),
                        ("State", b.state.replace('_', " ")),
                        ("Replacement indicator (ERI)", days(b.days_to_eri, &b.eri_at)),
                        ("End of service (EOS)", days(b.days_to_eos, &b.eos_at)),
                    ])),
                    Err(e) => (page::problem(&e.to_string())),
                }
                h2 { "Alarms" }
                @if alarms.is_empty() {
                    p data-testid="alarms" { "No active alarms." }
                } @else {
                    table data-testid="alarms" {
                        thead { tr { th { "Alarm" } th { "Severity" } th { "Raised" } th { "Acknowledged" } th {} } }
                        tbody {
                            @for a in &alarms {
                                tr {
                                    td { (a.kind.name()) }
                                    td class=[a.kind.is_critical().then_some("critical")] {
                                        (match (a.kind.is_critical(), a.kind.halts_delivery()) {
                                            (true, true) => "CRITICAL, delivery halted",
                                            (true, false) => "CRITICAL",
                                            _ => "advisory",
                                        })
                                    }
                                    td { (page::date(&t.rfc3339(a.raised_at))) }
                                    td { (if a.acknowledged { "yes" } else { "no" }) }
                                    td {
                                        @if !a.acknowledged {
                                            form method="post" action="/alarms/ack" {
                                                input type="hidden" name="kind" value=(alarm_key(a.kind));
                                                button type="submit" { "Acknowledge" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html(page::page(&banner, "/", "Interrogation", body))
}

fn days(n: u16, at: &str) -> String {
    if n == 0 {
        "reached".into()
    } else {
        format!("{} (in {n} days)", page::date(at).get(..10).unwrap_or(at))
    }
}

/// The alarm to acknowledge.
#[derive(Debug, Deserialize)]
pub struct Ack {
    kind: String,
}

/// `POST /alarms/ack`: acknowledges one alarm (it silences the reminder; a critical
/// alarm comes back while its cause remains). Not a therapy change: no confirmation.
pub async fn acknowledge(State(app): State<Shared>, Form(a): Form<Ack>) -> Response {
    let Some(kind) = AlarmKind::ALL.into_iter().find(|k| alarm_key(*k) == a.kind) else {
        return super::html(page::bare(
            "Not an alarm",
            &format!("`{}` is not an alarm kind", a.kind),
        ));
    };
    let mut desk = app.desk.lock().await;
    match desk.session.client.acknowledge(kind).await {
        Ok(()) => {
            desk.record(Change::AlarmAcknowledged {
                alarm: alarm_key(kind).to_string(),
            });
            desk.save().await;
            drop(desk);
            axum::response::IntoResponse::into_response(Redirect::to("/"))
        }
        Err(e) => {
            let banner = desk.banner();
            let text = out::message(&e.into(), desk.time().as_ref());
            html(page::page(
                &banner,
                "/",
                "Interrogation",
                page::problem(&text),
            ))
        }
    }
}
