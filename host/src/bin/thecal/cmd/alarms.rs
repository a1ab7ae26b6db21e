//! `thecal alarms` and `thecal alarms ack KIND`

use clap::ValueEnum;
use serde::Serialize;
use thecal_host::view::{alarm_key, AlarmView};
use thecal_protocol::message::AlarmKind;

use crate::out;
use crate::session::{Global, Session};

/// Active alarms.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Acknowledge an alarm (a critical one re-asserts while its cause remains).
    Ack {
        /// Which alarm.
        kind: Kind,
    },
}

/// Alarm kinds on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    LowReservoir,
    EmptyReservoir,
    ElectiveReplacement,
    LowBattery,
    EndOfService,
    MotorStall,
    StorageFault,
    DeliveryWithheld,
}

impl From<Kind> for AlarmKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::LowReservoir => AlarmKind::LowReservoir,
            Kind::EmptyReservoir => AlarmKind::EmptyReservoir,
            Kind::ElectiveReplacement => AlarmKind::ElectiveReplacement,
            Kind::LowBattery => AlarmKind::LowBattery,
            Kind::EndOfService => AlarmKind::EndOfService,
            Kind::MotorStall => AlarmKind::MotorStall,
            Kind::StorageFault => AlarmKind::StorageFault,
            Kind::DeliveryWithheld => AlarmKind::DeliveryWithheld,
        }
    }
}

#[derive(Serialize)]
struct Acked {
    acknowledged: &'static str,
}

pub async fn run(a: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let (_, t) = s.time().await?;
    if let Some(Action::Ack { kind }) = a.action {
        let kind = AlarmKind::from(kind);
        s.client.acknowledge(kind).await?;
        if g.json {
            return out::json(&Acked {
                acknowledged: alarm_key(kind),
            });
        }
        outln!("Acknowledged: {kind}.")?;
        if kind.is_critical() {
            outln!("It is critical: it comes back while its cause remains.")?;
        }
        return Ok(());
    }
    let alarms: Vec<AlarmView> = s
        .client
        .alarms()
        .await?
        .iter()
        .map(|e| AlarmView::new(e, &t))
        .collect();
    if g.json {
        return out::json(&alarms);
    }
    if alarms.is_empty() {
        outln!("No active alarms.")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = alarms
        .iter()
        .map(|a| {
            vec![
                a.name.to_string(),
                a.kind.replace('_', "-"),
                match (a.critical, a.halts_delivery) {
                    (true, true) => "CRITICAL, delivery halted".into(),
                    (true, false) => "CRITICAL".into(),
                    _ => "advisory".into(),
                },
                a.raised_at.replace('T', " "),
                if a.acknowledged { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    out::table(
        &[
            "Alarm",
            "Kind (for `alarms ack`)",
            "Severity",
            "Raised",
            "Acknowledged",
        ],
        &rows,
    )?;
    Ok(())
}
