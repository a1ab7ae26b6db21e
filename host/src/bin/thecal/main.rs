//! `thecal`: the clinician programmer for the thecal intrathecal drug pump.
//!
//! The binary parses arguments and prints; the `thecal_host` library does the work.
//! One file per subcommand under `cmd/`.

#[macro_use]
mod out;
mod cmd;
mod session;
#[cfg(feature = "sim")]
mod sim;
mod usage;
#[cfg(feature = "serve")]
mod web;

use std::process::ExitCode;

use clap::Parser;

use cmd::Command;
use session::Global;

/// Clinician programmer for the thecal intrathecal drug pump.
///
/// Talk to a pump through a telemetry head on a serial port (`--port`), or try it
/// without hardware against the built-in simulated pump (`--sim`).
#[derive(Debug, Parser)]
#[command(
    name = "thecal",
    version,
    propagate_version = true,
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Examples and exit codes, after the options of `thecal --help`.
const AFTER_HELP: &str = "\
Examples:
  thecal --sim status                          try it on the built-in simulated pump
  thecal ports                                 find the telemetry head's port
  thecal --port /dev/ttyACM0 info              identify a pump (no key needed)
  thecal --port /dev/ttyACM0 --key-file SERIAL.clinician.key status
  thecal --sim schedule check examples/schedules/flexible-baclofen-day.toml
  thecal --sim schedule write FILE             compare, confirm, write, verify
  thecal --sim bolus single --dose \"50 µg\" --over 30min
  thecal records list --serial SERIAL          the sessions kept, newest first
  thecal records fhir --last                   the newest session as a FHIR R4 bundle

Exit codes:
  0  done
  1  other error
  2  invalid input (argument, schedule file, key file); nothing was sent
  3  the pump refused; nothing changed
  4  no answer from the pump, or the port failed
  5  OUTCOME UNCERTAIN: a change was sent but not answered; read back before repeating
  6  protocol mismatch, unexpected answer, or read-back mismatch
  7  not confirmed
  8  no session: wrong or stale key, not provisioned, no magnet for emergency access";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return out::argument_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.global.json;
    let mut time = None;
    match runtime.block_on(cmd::run(cli.command, &cli.global, &mut time)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => out::report_error(&e, json, time.as_ref()),
    }
}
