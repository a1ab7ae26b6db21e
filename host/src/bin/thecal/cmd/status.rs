//! `thecal status`

use thecal_host::view::{mark_date, status_alarm_date, PumpTime, StatusView};
use thecal_host::{clock, quantity};
use thecal_protocol::message::{BatteryState, Identity, StatusReport, TherapyState};

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
    out::fields(&summary(&st, &s.identity, &t, true))?;
    Ok(())
}

/// The one-screen summary as label–value rows (also the programmer's interrogation
/// screen); `hints` adds the commands that go further (`thecal alarms`).
pub fn summary(
    st: &StatusReport,
    identity: &Identity,
    t: &PumpTime,
    hints: bool,
) -> Vec<(&'static str, String)> {
    let see = |cmd: &str| {
        if hints {
            format!(" (see `thecal {cmd}`)")
        } else {
            String::new()
        }
    };
    let since = |at| t.spelled(at);
    let therapy = match (st.therapy, st.withheld) {
        (TherapyState::Halted(a), _) => match st.halted_since {
            Some(at) => format!(
                "HALTED by the {a} alarm since {}: NO drug is delivered",
                since(at)
            ),
            None => format!("HALTED by the {a} alarm: NO drug is delivered"),
        },
        (TherapyState::Running, Some(w)) => format!(
            "running, but BASAL WITHHELD by the daily limit since {} ({} held back so far)",
            since(w.since),
            quantity::volume(w.volume)
        ),
        (TherapyState::Running, None) => "running".to_string(),
        (TherapyState::Stopped, _) => {
            "STOPPED (minimum flow only, to keep the catheter open)".into()
        }
    };
    let basal = format!(
        "{} ({})",
        quantity::dose_rate(st.basal_dose),
        quantity::flow(st.basal_flow)
    );
    let basal = match (st.therapy, st.halted_since, st.withheld) {
        (TherapyState::Halted(_), Some(at), _) => {
            format!("{basal} programmed, NOT delivered since {}", since(at))
        }
        (TherapyState::Halted(_), None, _) => format!("{basal} programmed, NOT delivered"),
        (_, _, Some(w)) => format!(
            "{basal} programmed, NOT delivered since {} (daily limit reached)",
            since(w.since)
        ),
        _ => basal,
    };
    let battery = match st.battery {
        BatteryState::Ok => "ok",
        BatteryState::ElectiveReplacement => "elective replacement indicator: plan a replacement",
        BatteryState::EndOfService => "END OF SERVICE: replace now",
    };
    let alarms = match (st.alarms, st.critical) {
        (0, _) => "none".to_string(),
        (n, true) => format!("{n} active, CRITICAL{}", see("alarms")),
        (n, false) => format!("{n} active{}", see("alarms")),
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
        ("Pump", format!("{} {}", identity.model, identity.serial)),
        ("Therapy", therapy),
        ("Prescription", prescription_line(st)),
        ("Drug", st.drug.to_string()),
        ("Basal now", basal),
        (
            "Delivered, last 24 h",
            format!(
                "{} (daily limit {})",
                quantity::dose(st.delivered_24h),
                quantity::dose_rate(st.daily_limit)
            ),
        ),
        ("Reservoir", quantity::volume(st.reservoir)),
        ("Alarm date", status_alarm_date(st)),
        ("Empty", mark_date(st.empty_at, st.therapy, t)),
        ("Battery", battery.to_string()),
        ("Alarms", alarms),
    ];
    if let Some(b) = st.bolus {
        rows.push((
            "Bolus running",
            format!(
                "{} bolus: {} of {} delivered, ends {}{}",
                thecal_host::view::bolus_key(b.kind),
                quantity::volume(b.delivered),
                quantity::volume(b.total),
                clock::short(b.ends_at, st.offset),
                if hints {
                    " (`thecal bolus cancel` ends it)"
                } else {
                    ""
                }
            ),
        ));
    }
    rows
}

/// The revision in force, and what stands against it (PROTOCOL.md 5.7).
fn prescription_line(st: &thecal_protocol::message::StatusReport) -> String {
    let mut line = format!("revision {}", st.revision.0);
    if st.standing.fallback {
        line += &format!(
            " — OLDER PRESCRIPTION IN FORCE: revision {} was written and found damaged \
             (`thecal prescription` shows what runs; write a new one)",
            st.standing.newest.0
        );
    }
    if st.standing.review {
        line += " — REVIEW: written under older rules, it breaks a rule of this firmware \
                 (`thecal prescription` names it); it stays in force until a new one is written";
    }
    line
}
