//! `thecal-sim`: a simulated thecal pump behind a pseudo-terminal.
//!
//! Prints the pty path on the first line of stdout, then serves until Ctrl-C, which
//! persists the state and exits.

use std::path::PathBuf;
use std::sync::mpsc;

use clap::Parser;
use thecal_device::sim::{Fault, SimOptions, Simulator};
use thecal_protocol::message::Role;

/// A simulated intrathecal drug pump running the real pump core behind a pty.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Create a stable symlink to the pty at this path.
    #[arg(long, value_name = "PATH")]
    link: Option<PathBuf>,
    /// Keep the pump's flash in this file, so it survives restarts.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Run the virtual clock N times faster than real time (3600: an hour a second).
    #[arg(long, value_name = "N", default_value_t = 1)]
    speed: u32,
    /// Inject a fault: motor-stall, storage or low-battery.
    #[arg(long, value_name = "FAULT")]
    fault: Option<Fault>,
    /// Seed for the serial number and fault timing.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Write the role key files here (default: beside --state, or a temporary directory).
    #[arg(long, value_name = "DIR")]
    keys: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let opts = SimOptions {
        state: args.state,
        speed: args.speed,
        fault: args.fault,
        seed: args.seed,
        link: args.link,
        keys: args.keys,
    };
    let sim = match Simulator::start(opts) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("thecal-sim: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", sim.path().display());
    for role in [Role::Clinician, Role::Patient, Role::Service] {
        if let Some(path) = sim.key_file(role) {
            eprintln!("thecal-sim: {role:?} key file {}", path.display());
        }
    }
    eprintln!(
        "thecal-sim: serving {} (speed {}x); Ctrl-C saves and exits",
        sim.path().display(),
        args.speed.max(1)
    );
    let (tx, rx) = mpsc::channel();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = tx.send(());
    }) {
        eprintln!("thecal-sim: cannot handle Ctrl-C: {e}");
    }
    let _ = rx.recv();
    match sim.shutdown() {
        Ok(()) => {
            eprintln!("thecal-sim: state saved");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("thecal-sim: shutdown failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
