//! The subcommands, one file each. Every `run` parses nothing and computes nothing of
//! its own: it calls the library and prints.

use clap::Subcommand;
use thecal_host::view::PumpTime;

use crate::session::{Access, Global, Session};

mod alarms;
mod battery;
pub mod bolus;
mod clock;
mod info;
mod keys;
mod link;
mod log;
mod ping;
mod plot;
mod ports;
mod prescription;
mod provision;
#[cfg(feature = "records")]
pub mod records;
mod refill;
#[cfg(feature = "serve")]
mod report;
mod reservoir;
mod resume;
mod schedule;
pub mod status;
mod stop;
mod update;

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List serial ports (USB ports with VID:PID, manufacturer and product).
    Ports(ports::Args),
    /// Identify the pump: model, serial, firmware, protocol; with a key (or --sim), both
    /// firmware slots.
    Info(info::Args),
    /// One-screen summary: therapy, dose now, reservoir, alarm date, battery, alarms.
    Status(status::Args),
    /// Battery voltage, state and replacement dates.
    Battery(battery::Args),
    /// Reservoir volume and the low-reservoir alarm date.
    Reservoir(reservoir::Args),
    /// Read the prescription memory (the prescription in force).
    Prescription(prescription::Args),
    /// Check a schedule file, or write it to the pump.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            thecal schedule check examples/schedules/flexible-baclofen-day.toml\n  \
            thecal --sim schedule write FILE --dry-run     compare only\n  \
            thecal --sim schedule write FILE               compare, confirm, write, verify"
    )]
    Schedule(schedule::Command),
    /// Record a refill: the new volume; a new drug or concentration with its whole
    /// prescription (`--schedule FILE`) and the bridge bolus.
    Refill(refill::Args),
    /// Give a clinician bolus (single, priming, bridge) or a patient bolus, or cancel the
    /// running bolus (`bolus cancel`).
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            thecal --sim bolus single --dose \"50 µg\" --over 30min\n  \
            thecal --sim bolus priming --volume \"0.2 mL\" --over 10min\n  \
            thecal --sim --role patient bolus patient\n  \
            thecal --sim bolus cancel"
    )]
    Bolus(bolus::Command),
    /// Stop therapy (the pump keeps the catheter open at the minimum flow).
    Stop(stop::Args),
    /// Resume therapy after a stop.
    Resume(resume::Args),
    /// List active alarms, or acknowledge one (`alarms ack KIND`).
    Alarms(alarms::Args),
    /// Read the event log (table, JSON or CSV).
    Log(log::Args),
    /// Set the pump clock.
    #[command(subcommand)]
    Clock(clock::Command),
    /// Draw the dose profile or the projected reservoir volume (SVG or PNG).
    #[command(subcommand)]
    Plot(plot::Command),
    /// Link counters (the pump's and this programmer's).
    Link(link::Args),
    /// Check the link and measure the round-trip time.
    Ping(ping::Args),
    /// Factory step for a fresh pump: agree its device secret by key agreement (once in
    /// the pump's life) and write its three role key files (mode 0600) into a directory.
    Provision(provision::Args),
    /// Rotate a role's key (revoking the old one), or re-provision the pump (service).
    #[command(subcommand)]
    Keys(keys::Command),
    /// Install a signed firmware image (resumable; the pump installs it when no bolus runs).
    Update(update::Args),
    /// The programmer in the browser: serve the clinician's screens on this machine
    /// (loopback only, with a per-launch token in the address it prints).
    #[cfg(feature = "serve")]
    #[command(after_help = "Examples:\n  \
        thecal serve --sim                  try it on the built-in simulated pump\n  \
        thecal --port /dev/ttyACM0 --key-file SERIAL.clinician.key serve")]
    Serve(crate::web::Args),
    /// A session's report from the session records, for the chart: HTML, PDF (printed by
    /// a headless Chromium) or JSON.
    #[cfg(feature = "serve")]
    #[command(after_help = "Examples:\n  \
        thecal report --last --out session.pdf\n  \
        thecal report ID --out session.html\n  \
        thecal --json report --last --serial SIM000001")]
    Report(report::Args),
    /// The session records (--records): list the sessions, show one, export one as an
    /// HL7 FHIR R4 bundle.
    #[cfg(feature = "records")]
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            thecal records list --serial TH-0001\n  \
            thecal records show --last --serial TH-0001\n  \
            thecal records fhir ID > session.fhir.json\n  \
            thecal --records postgres://thecal@records.clinic/thecal records list"
    )]
    Records(records::Command),
}

/// Runs `command`. Commands that need the pump open a session and close it (a
/// simulator persists its state) whatever the outcome. `time` is left holding the pump's
/// clock if it was read, so an error shows its times in the patient's local time.
pub async fn run(command: Command, g: &Global, time: &mut Option<PumpTime>) -> anyhow::Result<()> {
    match command {
        Command::Ports(a) => ports::run(a, g),
        Command::Schedule(c) => schedule::run(c, g).await,
        Command::Refill(a) => refill::run(a, g).await,
        Command::Plot(c) => plot::run(c, g).await,
        Command::Provision(a) => provision::run(a, g).await,
        Command::Keys(c) => keys::run(c, g).await,
        #[cfg(feature = "serve")]
        Command::Serve(a) => crate::web::run(a, g).await,
        #[cfg(feature = "serve")]
        Command::Report(a) => report::run(a, g).await,
        #[cfg(feature = "records")]
        Command::Records(c) => records::run(c, g).await,
        other => {
            let access = if matches!(other, Command::Info(_)) {
                Access::Survey
            } else {
                Access::Session
            };
            let mut session = Session::open(g, access).await?;
            let result = online(other, &mut session, g).await;
            *time = session.last_time;
            let closed = session.close().await;
            result.and(closed)
        }
    }
}

async fn online(command: Command, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    match command {
        Command::Info(a) => info::run(a, s, g).await,
        Command::Status(a) => status::run(a, s, g).await,
        Command::Battery(a) => battery::run(a, s, g).await,
        Command::Reservoir(a) => reservoir::run(a, s, g).await,
        Command::Prescription(a) => prescription::run(a, s, g).await,
        Command::Bolus(c) => bolus::run(c, s, g).await,
        Command::Stop(a) => stop::run(a, s, g).await,
        Command::Resume(a) => resume::run(a, s, g).await,
        Command::Alarms(a) => alarms::run(a, s, g).await,
        Command::Log(a) => log::run(a, s, g).await,
        Command::Clock(c) => clock::run(c, s, g).await,
        Command::Link(a) => link::run(a, s, g).await,
        Command::Ping(a) => ping::run(a, s, g).await,
        Command::Update(a) => update::run(a, s, g).await,
        Command::Ports(_)
        | Command::Schedule(_)
        | Command::Refill(_)
        | Command::Plot(_)
        | Command::Provision(_)
        | Command::Keys(_) => Ok(()),
        #[cfg(feature = "serve")]
        Command::Serve(_) | Command::Report(_) => Ok(()),
        #[cfg(feature = "records")]
        Command::Records(_) => Ok(()),
    }
}
