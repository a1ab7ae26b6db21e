//! `thecal status`

use thecal_host::view::{mark_date, status_alarm_date, StatusView};
use thecal_host::{clock, quantity};
use thecal_protocol::message::{BatteryState, TherapyState};

use crate::out;
use crate::session::{Global, Session};

/// One-screen summary.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    // One answer: the alarm dates come from the same instant as the pump clock.
    let (st, t) = s.time().await?;
    if g.json {
        return out::json(&StatusView::new(&st));
    }
    let therapy = match st.therapy {
        TherapyState::Running => "running".to_string(),
        TherapyState::Stopped => "STOPPED (minimum flow only, to keep the catheter open)".into(),
        TherapyState::Halted(a) => format!("HALTED by the {a} alarm"),
    };
    let battery = match st.battery {
        BatteryState::Ok => "ok",
        BatteryState::ElectiveReplacement => "elective replacement indicator: plan a replacement",
        BatteryState::EndOfService => "END OF SERVICE: replace now",
    };
    let alarms = match (st.alarms, st.critical) {
        (0, _) => "none".to_string(),
        (n, true) => format!("{n} active, CRITICAL (see `thecal alarms`)"),
        (n, false) => format!("{n} active (see `thecal alarms`)"),
    };
    let mut rows = vec![
        (
            "Pump clock",
            format!(
                "{} (UTC{})",
                clock::spelled(st.now, st.offset),
                clock::fmt_offset(st.offset)
            ),
        ),
        (
            "Pump",
            format!("{} {}", s.identity.model, s.identity.serial),
        ),
        ("Therapy", therapy),
        ("Prescription", format!("revision {}", st.revision.0)),
        ("Drug", st.drug.to_string()),
        (
            "Basal now",
            format!(
                "{} ({})",
                quantity::dose_rate(st.basal_dose),
                quantity::flow(st.basal_flow)
            ),
        ),
        (
            "Delivered, last 24 h",
            format!(
                "{} (daily limit {})",
                quantity::dose(st.delivered_24h),
                quantity::dose_rate(st.daily_limit)
            ),
        ),
        ("Reservoir", quantity::volume(st.reservoir)),
        ("Alarm date", status_alarm_date(&st)),
        ("Empty", mark_date(st.empty_at, st.therapy, &t)),
        ("Battery", battery.to_string()),
        ("Alarms", alarms),
    ];
    if let Some(b) = st.bolus {
        rows.push((
            "Bolus running",
            format!(
                "{:?}: {} of {} delivered, ends {}",
                b.kind,
                quantity::volume(b.delivered),
                quantity::volume(b.total),
                clock::short(b.ends_at, st.offset)
            ),
        ));
    }
    out::fields(&rows)?;
    Ok(())
}
