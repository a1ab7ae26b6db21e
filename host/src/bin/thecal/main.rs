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

use std::process::ExitCode;

use clap::Parser;

use cmd::Command;
use session::Global;

/// Clinician programmer for the thecal intrathecal drug pump.
///
/// Talk to a pump through a telemetry head on a serial port (`--port`), or try it
/// without hardware against the built-in simulated pump (`--sim`).
#[derive(Debug, Parser)]
#[command(name = "thecal", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
