//! `thecal clock sync`

use serde::Serialize;
use thecal_host::clock;
use thecal_protocol::time::UtcOffset;

use crate::out;
use crate::session::{Global, Session};
use crate::usage::UsageError;

/// The pump clock.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set the pump clock to this computer's clock and its UTC offset.
    Sync {
        /// The patient's UTC offset instead of this computer's, e.g. +01:00 or -05:30.
        #[arg(long, allow_hyphen_values = true)]
        offset: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Serialize)]
struct Synced {
    previous: String,
    now: String,
    utc_offset: String,
    /// Pump clock minus host clock before the change, in ms.
    drift_ms: i64,
}

pub async fn run(c: Command, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let Command::Sync { offset, yes } = c;
    let offset: UtcOffset = match offset {
        Some(text) => clock::parse_offset(&text).ok_or_else(|| {
            UsageError(format!(
                "`{text}` is not a UTC offset like +01:00 (within ±14:00)"
            ))
        })?,
        None => clock::host_offset(),
    };
    let (_, pump) = s.time().await?;
    let host = clock::host_now();
    out::confirm(
        &format!(
            "Set the clock of pump {} from {} (UTC{}) to {} (UTC{})? Schedule steps start \
             by the pump's local time",
            s.identity.serial,
            clock::short(pump.now, pump.offset),
            clock::fmt_offset(pump.offset),
            clock::short(host, offset),
            clock::fmt_offset(offset)
        ),
        yes,
    )?;
    let now = clock::host_now();
    let previous = s.client.set_clock(now, offset).await?;
    let drift = i64::try_from(previous.0).unwrap_or(i64::MAX) - i64::try_from(now.0).unwrap_or(0);
    let v = Synced {
        previous: clock::rfc3339(previous, offset),
        now: clock::rfc3339(now, offset),
        utc_offset: clock::fmt_offset(offset),
        drift_ms: drift,
    };
    if g.json {
        return out::json(&v);
    }
    let how = match drift {
        d if d.abs() < 1_000 => "within a second".to_string(),
        d if d > 0 => format!("{} s ahead", d / 1_000),
        d => format!("{} s behind", -d / 1_000),
    };
    out::fields(&[
        (
            "Pump clock set to",
            format!("{} (UTC{})", clock::short(now, offset), v.utc_offset),
        ),
        (
            "It was",
            format!("{} ({how})", clock::short(previous, offset)),
        ),
    ])?;
    Ok(())
}
