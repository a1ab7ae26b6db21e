//! `thecal-sim`: a simulated thecal pump behind a pseudo-terminal.
//!
//! Prints the pty path on the first line of stdout, then serves until Ctrl-C, which
//! persists the state and exits. A line `magnet` on standard input applies the
//! physical-presence signal (as a magnet held over the implant would): emergency access
//! for five minutes.

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
    /// Apply the physical-presence signal (a magnet over the implant) at start: the
    /// emergency role (`thecal --role emergency`) works for five minutes. Type `magnet`
    /// on standard input to apply it again.
    #[arg(long)]
    magnet: bool,
    /// A firmware image installed by `thecal update` fails its self-test: the pump
    /// restarts without confirming it and the bootloader returns to the previous image.
    #[arg(long)]
    update_self_test_fails: bool,
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
        magnet: args.magnet,
        update_self_test_fails: args.update_self_test_fails,
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
        // (The emergency role has no key file: it needs the magnet instead.)
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
    let magnet = tx.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = tx.send(false);
    }) {
        eprintln!("thecal-sim: cannot handle Ctrl-C: {e}");
    }
    // Standard input: `magnet` lines apply the presence signal; the reader ends with it.
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line {
                Ok(l) if l.trim() == "magnet" => {
                    if magnet.send(true).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    while let Ok(true) = rx.recv() {
        sim.apply_presence();
        eprintln!("thecal-sim: magnet applied: emergency access for 5 minutes");
    }
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
