//! Global options and the connection to a pump (a serial port, or the built-in
//! simulator behind a pty).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use thecal_host::client::{check_compatible, Trace};
use thecal_host::view::PumpTime;
use thecal_host::{serial, Client, ClientConfig};
use thecal_protocol::message::{Identity, StatusReport};
use tokio_serial::SerialStream;

use crate::cmd::UsageError;

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Serial port of the telemetry head, e.g. /dev/ttyACM0 (see `thecal ports`).
    #[arg(long, global = true, value_name = "PATH")]
    pub port: Option<String>,
    /// Talk to the built-in simulated pump (a pty inside this process) instead of a port.
    #[arg(long, global = true)]
    pub sim: bool,
    /// Keep the simulated pump's memory in FILE, so it survives between commands.
    #[arg(long, global = true, value_name = "FILE")]
    pub sim_state: Option<PathBuf>,
    /// Run the simulated pump's clock N times faster than real time.
    #[arg(long, global = true, value_name = "N", default_value_t = 1)]
    pub sim_speed: u32,
    /// Baud rate of the serial port (8N1, raw).
    #[arg(long, global = true, default_value_t = serial::DEFAULT_BAUD)]
    pub baud: u32,
    /// Print JSON (stable, documented in the README) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for each answer: `1500ms`, `2s`, `2` (seconds).
    #[arg(long, global = true, value_name = "DURATION", default_value = "1500ms", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Retries of an unanswered request (same request id; the pump never executes a
    /// retried request twice).
    #[arg(long, global = true, value_name = "N", default_value_t = 2)]
    pub retries: u32,
    /// Show link traffic on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000)
    } else {
        (t, 1_000)
    };
    let n: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 1500ms or 2s"))?;
    let ms = n.saturating_mul(scale);
    if !(10..=600_000).contains(&ms) {
        return Err("the timeout must be between 10ms and 600s".into());
    }
    Ok(Duration::from_millis(ms))
}

/// A connected pump.
pub struct Session {
    /// The client.
    pub client: Client<SerialStream>,
    /// What the pump said it is.
    pub identity: Identity,
    sim: Option<thecal_device::sim::Simulator>,
}

impl Session {
    /// Opens the port (or starts the simulator), identifies the pump and, when
    /// `check` is set, refuses a pump that speaks another protocol or schema.
    pub async fn open(g: &Global, check: bool) -> anyhow::Result<Session> {
        let (path, sim) = match (&g.port, g.sim) {
            (Some(_), true) => {
                return Err(UsageError("give either --port or --sim, not both".into()).into())
            }
            (Some(port), false) => (port.clone(), None),
            (None, true) => {
                let sim = thecal_device::sim::Simulator::start(thecal_device::sim::SimOptions {
                    state: g.sim_state.clone(),
                    speed: g.sim_speed,
                    seed: 1,
                    ..Default::default()
                })
                .context("cannot start the simulated pump")?;
                (sim.path().display().to_string(), Some(sim))
            }
            (None, false) => {
                return Err(UsageError(
                    "no pump given: use --port PATH (list ports with `thecal ports`) or --sim \
                     for the simulated pump"
                        .into(),
                )
                .into())
            }
        };
        let stream = serial::open(&path, g.baud)?;
        let config = ClientConfig {
            timeout: g.timeout,
            retries: g.retries,
        };
        let mut client = Client::new(stream, config);
        if g.verbose > 0 {
            client.set_tracer(|t| eprintln!("link: {}", describe(t)));
        }
        let identity = client.identify().await?;
        if check {
            check_compatible(&identity)?;
        }
        Ok(Session {
            client,
            identity,
            sim,
        })
    }

    /// The pump's status and clock.
    pub async fn time(&mut self) -> anyhow::Result<(StatusReport, PumpTime)> {
        let status = self.client.status().await?;
        let t = PumpTime {
            now: status.now,
            offset: status.offset,
        };
        Ok((status, t))
    }

    /// Closes the link; a simulator persists its state and stops.
    pub fn close(self) -> anyhow::Result<()> {
        drop(self.client);
        if let Some(sim) = self.sim {
            sim.shutdown().context("stopping the simulated pump")?;
        }
        Ok(())
    }
}

fn describe(t: &Trace) -> String {
    match t {
        Trace::Sent {
            id,
            request,
            retry,
            bytes,
        } => format!(
            "→ #{id} {request}{} ({bytes} bytes)",
            if *retry { " RETRY" } else { "" }
        ),
        Trace::Answered {
            id,
            response,
            elapsed,
        } => format!("← #{id} {response} after {} ms", elapsed.as_millis()),
        Trace::TimedOut { id, attempt } => format!("   #{id} attempt {attempt} timed out"),
        Trace::Stale { id } => format!("   discarded a stale answer #{id}"),
        Trace::NotAnAnswer { id } => format!("   skipped a pump event #{id}"),
        Trace::BadFrame(e) => format!("   dropped a corrupt frame: {e}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("fast").is_err());
    }
}
