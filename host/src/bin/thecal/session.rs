//! Global options and the connection to a pump (a serial port, or the built-in
//! simulator behind a pty).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use thecal_host::client::{check_compatible, Trace};
use thecal_host::view::PumpTime;
use thecal_host::workflow::keys::authenticate_settling;
use thecal_host::{serial, Client, ClientConfig, KeyFile, RoleKey};
use thecal_protocol::message::{Identity, Role, StatusReport};
use tokio_serial::SerialStream;

use crate::usage::UsageError;

/// Options every command takes (shown apart from a command's own, under "Global
/// options").
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
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
    /// Hold the magnet over the simulated pump (its physical-presence signal): emergency
    /// access (`--role emergency`) for five minutes.
    #[arg(long, global = true)]
    pub sim_magnet: bool,
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
    /// The role to act as: a patient (status, battery, reservoir, alarms, patient
    /// bolus), a clinician (everything therapeutic), service (diagnostics) or
    /// emergency (no key file: `status`, `alarms`, `stop` only, while the magnet is held
    /// over the pump).
    #[arg(long, global = true, value_enum, default_value_t = RoleArg::Clinician)]
    pub role: RoleArg,
    /// The key file of that role for this pump (mode 0600; `thecal provision` writes
    /// them). Needed with --port by every command but `ports` and `info`; with --sim the
    /// simulated pump supplies its key.
    #[arg(long, global = true, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// The session records: a SQLite file (default:
    /// $XDG_DATA_HOME/thecal/records.sqlite, else ~/.local/share/thecal/records.sqlite)
    /// or a clinic's PostgreSQL server, postgres://USER@HOST/DATABASE (the password from
    /// PGPASSWORD or ~/.pgpass, not the command line).
    #[cfg(feature = "records")]
    #[arg(long, global = true, value_name = "URL")]
    pub records: Option<String>,
}

/// `--role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Patient's therapy manager.
    Patient,
    /// Clinician programmer.
    Clinician,
    /// Manufacturer service.
    Service,
    /// Anyone at the patient's side with the magnet: no key file.
    Emergency,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Patient => Role::Patient,
            RoleArg::Clinician => Role::Clinician,
            RoleArg::Service => Role::Service,
            RoleArg::Emergency => Role::Emergency,
        }
    }
}

/// What a command needs from the pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Identification only (`info`): no key, and a pump of another protocol is shown,
    /// not refused.
    Identify,
    /// Identification, and a session too when a key is at hand (`--key-file` or the
    /// simulator's): `info`, which shows the firmware slots only
    /// a session may read. A pump of another protocol is shown, not refused.
    Survey,
    /// A compatible pump, no session (`provision`).
    Plain,
    /// A session as `--role` (every other command).
    Session,
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
    /// The pump's clock as last read ([`Session::time`]), to show the times in an error
    /// (a lockout's end) in the patient's local time.
    pub last_time: Option<PumpTime>,
    link: Link,
}

/// What stays behind the port: the simulator, if any.
struct Link {
    #[cfg(feature = "sim")]
    sim: Option<crate::sim::SimPump>,
}

impl Link {
    /// The port of `--port`, or the pty of a simulator started for `--sim` (both:
    /// refused by [`Session::open`]).
    fn start(g: &Global) -> anyhow::Result<(String, Link)> {
        match (&g.port, g.sim) {
            (Some(port), _) => Ok((port.clone(), Link::port())),
            (None, true) => Link::simulator(g),
            (None, false) => Err(UsageError(
                "no pump given: use --port PATH (list ports with `thecal ports`) or --sim \
                 for the simulated pump"
                    .into(),
            )
            .into()),
        }
    }

    fn port() -> Link {
        Link {
            #[cfg(feature = "sim")]
            sim: None,
        }
    }

    #[cfg(feature = "sim")]
    fn simulator(g: &Global) -> anyhow::Result<(String, Link)> {
        let sim = crate::sim::SimPump::start(g)?;
        Ok((sim.path(), Link { sim: Some(sim) }))
    }

    #[cfg(not(feature = "sim"))]
    fn simulator(_: &Global) -> anyhow::Result<(String, Link)> {
        Err(UsageError(
            "this thecal was built without the simulated pump (cargo feature `sim`): \
             --sim is not available; use --port PATH, or rebuild with --features sim"
                .into(),
        )
        .into())
    }

    /// The simulated pump's key of `role`, if the link is to a simulator.
    fn sim_key(&self, role: Role) -> Option<anyhow::Result<RoleKey>> {
        #[cfg(feature = "sim")]
        if let Some(sim) = &self.sim {
            return Some(sim.role_key(role));
        }
        let _ = role;
        None
    }

    /// Stops the simulator (it persists its state) and removes its throw-away key files.
    fn close(self) -> anyhow::Result<()> {
        #[cfg(feature = "sim")]
        if let Some(sim) = self.sim {
            return sim.stop();
        }
        Ok(())
    }
}

/// The key file of `--key-file`, read and checked (mode, format, role) before the port
/// is opened; `None` when `access` needs no key, for the emergency role, or with `--sim`
/// (the simulated pump supplies its key).
fn load_key_file(g: &Global, access: Access, role: Role) -> anyhow::Result<Option<KeyFile>> {
    if access == Access::Survey && g.key_file.is_none() {
        return Ok(None);
    }
    if access != Access::Session && access != Access::Survey {
        return Ok(None);
    }
    match &g.key_file {
        Some(_) if role == Role::Emergency => Err(UsageError(
            "the emergency role has no key file: drop --key-file (it needs the magnet \
             over the pump instead)"
                .into(),
        )
        .into()),
        Some(path) => {
            let file = KeyFile::load(path)?;
            file.check_role(role)?;
            Ok(Some(file))
        }
        None if g.port.is_some() && role != Role::Emergency => Err(UsageError(format!(
            "this command needs a session with the pump: give --key-file PATH, the {} \
             key file of this pump (`thecal provision` writes them; pass --role for \
             another role). Only `thecal info` and `thecal ports` work without a key",
            role.name()
        ))
        .into()),
        None => Ok(None),
    }
}

/// A client over the port at `path`, with `--timeout`, `--retries` and `--verbose`.
fn connect_port(path: &str, g: &Global) -> anyhow::Result<Client<SerialStream>> {
    let stream = serial::open(path, g.baud)?;
    let config = ClientConfig {
        timeout: g.timeout,
        retries: g.retries,
    };
    let mut client = Client::new(stream, config);
    if g.verbose > 0 {
        client.set_tracer(|t| eprintln!("link: {}", describe(t)));
    }
    Ok(client)
}

/// Identifies the pump and, as `access` asks, checks it and opens the session: with the
/// key file (an interrupted rotation of it settled), the simulator's key, or the
/// emergency key.
async fn start(
    client: &mut Client<SerialStream>,
    link: &Link,
    access: Access,
    role: Role,
    key_file: Option<&KeyFile>,
) -> anyhow::Result<Identity> {
    let identity = client.identify().await?;
    if access == Access::Identify {
        return Ok(identity);
    }
    if access == Access::Survey {
        let keyed = key_file.is_some() || link.sim_key(role).is_some();
        if !keyed || check_compatible(&identity).is_err() {
            return Ok(identity);
        }
    }
    check_compatible(&identity)?;
    if access == Access::Plain {
        return Ok(identity);
    }
    let serial = identity.serial.as_str();
    let key = match (key_file, link.sim_key(role)) {
        // No key file: the physical-presence signal authorises the emergency role.
        _ if role == Role::Emergency => RoleKey::emergency(serial),
        (Some(file), _) => {
            file.check_pump(serial)?;
            let epoch = identity.key_epochs.of(role);
            authenticate_settling(client, &file.path, serial, epoch).await?;
            return Ok(identity);
        }
        (None, Some(key)) => key?,
        // `load_key_file` refuses --port without a key file.
        (None, None) => return Err(UsageError("no key file".into()).into()),
    };
    client.authenticate(key, serial).await?;
    Ok(identity)
}

impl Session {
    /// Opens the port (or starts the simulator) and identifies the pump; then, as
    /// `access` asks, refuses a pump that speaks another protocol or schema and opens a
    /// session with the `--role` key. A key file is read and checked (mode, format,
    /// role) before the port is opened, and tied to the pump's serial number before the
    /// handshake.
    pub async fn open(g: &Global, access: Access) -> anyhow::Result<Session> {
        let role = Role::from(g.role);
        if g.port.is_some() && g.sim {
            return Err(UsageError("give either --port or --sim, not both".into()).into());
        }
        let key_file = load_key_file(g, access, role)?;
        let (path, link) = Link::start(g)?;
        let mut client = match connect_port(&path, g) {
            Ok(client) => client,
            Err(e) => {
                link.close()?;
                return Err(e);
            }
        };
        match start(&mut client, &link, access, role, key_file.as_ref()).await {
            Ok(identity) => Ok(Session {
                client,
                identity,
                last_time: None,
                link,
            }),
            Err(e) => {
                drop(client);
                link.close()?;
                Err(e)
            }
        }
    }

    /// The pump's status and clock.
    pub async fn time(&mut self) -> anyhow::Result<(StatusReport, PumpTime)> {
        let status = self.client.status().await?;
        let t = PumpTime {
            now: status.now,
            offset: status.offset,
        };
        self.last_time = Some(t);
        Ok((status, t))
    }

    /// Ends the session (best effort: one attempt, errors ignored) and closes the link;
    /// a simulator persists its state and stops.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let _ = self.client.close().await;
        drop(self.client);
        self.link.close()
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
        Trace::SessionOpened { role } => format!("   session opened as {}", role.name()),
        Trace::SessionLost { id } => {
            format!("   #{id}: the pump no longer holds the session; opening a new one")
        }
        Trace::Unauthentic { id } => format!("   dropped an unauthentic answer #{id}"),
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
