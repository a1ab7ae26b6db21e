//! The prescription screen: the prescription in force, its day/week dose profile and
//! the projected reservoir volume (plots drawn by `thecal_host::plot`, as SVG).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use thecal_host::view::PrescriptionView;
use thecal_host::{plot, quantity};
use thecal_protocol::message::TherapyState;
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
};

use super::{html, page, text, Shared};
use crate::out;

/// The prescription as a table: the parts, then the steps of each group of days.
pub fn prescription_table(v: &PrescriptionView) -> Markup {
    let rate = |ng: u32| quantity::dose_rate(NanogramsPerDay(ng));
    let mut rows = vec![
        ("Drug", v.drug.to_string()),
        (
            "Concentration",
            quantity::concentration(NanogramsPerMillilitre(v.concentration_ng_per_ml)),
        ),
        ("Daily limit", rate(v.daily_limit_ng_per_day)),
        (
            "Low-reservoir alarm",
            quantity::volume(Nanolitres(v.low_reservoir_alarm_nl)),
        ),
        ("Mode", v.mode.to_string()),
        (
            "Patient bolus",
            v.patient_bolus.as_ref().map_or("not allowed".into(), |b| {
                format!(
                    "{}, at least {} apart, at most {} a day",
                    quantity::dose(Nanograms(b.dose_ng)),
                    quantity::duration(Minutes(b.lockout_min)),
                    b.max_per_day
                )
            }),
        ),
    ];
    if let (Some(r), Some(at)) = (v.revision, &v.written_at) {
        rows.insert(0, ("Revision", format!("{r}, written {}", page::date(at))));
    }
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    html! {
        (page::fields(&rows))
        h2 { "Steps" }
        table.steps data-testid="steps" {
            thead { tr { th { "Days" } th { "From" } th { "Dose rate" } th { "Flow" } } }
            tbody {
                @for g in &v.profiles {
                    @for (i, s) in g.steps.iter().enumerate() {
                        tr {
                            td { @if i == 0 { (g.days.iter().map(|d| d.get(..3).unwrap_or(d)).collect::<Vec<_>>().join(", ")) } }
                            td { (s.from) }
                            td { (rate(s.dose_ng_per_day)) }
                            td { (quantity::flow(NanolitresPerDay(s.flow_nl_per_day))) }
                        }
                    }
                }
            }
        }
        h2 { "Basal dose per day" }
        table {
            tr { @for d in days { th { (d) } } }
            tr { @for t in v.daily_totals_ng { td { (quantity::dose(Nanograms(t))) } } }
        }
    }
}

/// `GET /prescription`.
pub async fn show(State(app): State<Shared>) -> Response {
    let mut desk = app.desk.lock().await;
    let read = desk.interrogate().await;
    let banner = desk.banner();
    let body = match read {
        Err(e) => page::problem(&out::message(&e, desk.time().as_ref())),
        Ok((current, _)) => {
            let v = PrescriptionView::from_record(&current.record, &current.time());
            html! {
                @if let Some(w) = v.standing.as_ref().and_then(|s| s.warning(current.record.revision.0)) {
                    (page::warning(&w))
                }
                (prescription_table(&v))
                h2 { "Dose profile" }
                img.plot src="/plot/schedule.svg" alt="basal dose profile, Monday to Sunday" width="1000";
                h2 { "Projected reservoir volume" }
                img.plot src="/plot/reservoir.svg" alt="projected reservoir volume" width="1000";
            }
        }
    };
    html(page::page(&banner, "/prescription", "Prescription", body))
}

/// `GET /plot/schedule.svg`, `GET /plot/reservoir.svg`: drawn from the pump as read now.
pub async fn plot(State(app): State<Shared>, Path(which): Path<String>) -> Response {
    let mut desk = app.desk.lock().await;
    let serial = desk.session.identity.serial.to_string();
    let read = async {
        let record = desk.session.client.prescription().await?;
        let status = desk.session.client.status().await?;
        anyhow::Ok((record, status))
    }
    .await;
    drop(desk);
    let (record, status) = match read {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                "text/plain; charset=utf-8",
                e.to_string(),
            )
        }
    };
    let file = std::env::temp_dir().join(format!(
        "thecal-plot-{}-{which}",
        super::desk::random_hex().unwrap_or_default()
    ));
    let p = &record.prescription;
    // As `thecal plot` heads them (the plot adds the drug, concentration and what).
    let heading = format!("Pump {serial}, prescription revision {}", record.revision.0);
    let drawn = match which.as_str() {
        "schedule.svg" => plot::plot_schedule(p, true, &heading, &file),
        "reservoir.svg" => {
            let halted = match status.therapy {
                TherapyState::Halted(by) => Some(plot::Halt {
                    by,
                    since: status.halted_since,
                }),
                _ => None,
            };
            let state = thecal_host::workflow::reservoir_state(&status);
            plot::plot_reservoir(p, state, halted, &heading, &file)
        }
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "no such plot".into(),
            )
        }
    };
    let svg = drawn
        .map_err(|e| e.to_string())
        .and_then(|()| std::fs::read_to_string(&file).map_err(|e| e.to_string()));
    let _ = std::fs::remove_file(&file);
    match svg {
        Ok(svg) => text(StatusCode::OK, "image/svg+xml", svg),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            e,
        ),
    }
}
