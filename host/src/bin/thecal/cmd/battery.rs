//! `thecal battery`

use thecal_host::clock;
use thecal_host::view::BatteryView;
use thecal_protocol::message::BatteryState;
use thecal_protocol::units::MS_PER_DAY;

use crate::out;
use crate::session::{Global, Session};

/// Battery report.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let (_, t) = s.time().await?;
    let b = s.client.battery().await?;
    if g.json {
        return out::json(&BatteryView::new(&b, &t));
    }
    let date = |days: u16| {
        if days == 0 {
            "reached".to_string()
        } else {
            let at = t.now.plus_ms(u64::from(days) * MS_PER_DAY);
            format!(
                "{} (in {days} days)",
                clock::spelled(at, t.offset)
                    .split(" at ")
                    .next()
                    .unwrap_or_default()
            )
        }
    };
    let state = match b.state {
        BatteryState::Ok => "ok",
        BatteryState::ElectiveReplacement => {
            "ELECTIVE REPLACEMENT INDICATOR: schedule a replacement"
        }
        BatteryState::EndOfService => "END OF SERVICE: replace now",
    };
    out::fields(&[
        ("Battery", format!("{} mV, {} %", b.millivolts, b.percent)),
        ("State", state.to_string()),
        ("Replacement indicator (ERI)", date(b.days_to_eri)),
        ("End of service (EOS)", date(b.days_to_eos)),
    ])?;
    Ok(())
}
