//! The built-in simulated pump (`--sim`, cargo feature `sim`): the pump core behind a
//! pty inside this process.

use std::path::PathBuf;

use anyhow::Context;
use thecal_device::sim::{private_temp_dir, SimOptions, Simulator};
use thecal_host::RoleKey;
use thecal_protocol::message::Role;

use crate::session::Global;
use crate::usage::UsageError;

/// A running simulator and, without `--sim-state`, its throw-away key directory.
pub struct SimPump {
    sim: Simulator,
    /// Where a simulator without `--sim-state` wrote its key files (removed on stop).
    keys: Option<PathBuf>,
}

impl SimPump {
    /// Starts the simulator of `--sim-state`, `--sim-speed` and `--sim-magnet`.
    pub fn start(g: &Global) -> anyhow::Result<SimPump> {
        // Without a state file the key files are of no use after this run.
        let keys = match g.sim_state {
            None => Some(
                private_temp_dir("thecal-sim-keys")
                    .context("cannot create a private key directory")?,
            ),
            Some(_) => None,
        };
        let started = Simulator::start(SimOptions {
            state: g.sim_state.clone(),
            speed: g.sim_speed,
            magnet: g.sim_magnet,
            seed: 1,
            keys: keys.clone(),
            ..Default::default()
        });
        match started {
            Ok(sim) => Ok(SimPump { sim, keys }),
            Err(e) => {
                remove(keys);
                Err(anyhow::Error::new(e).context("cannot start the simulated pump"))
            }
        }
    }

    /// The path of its pty.
    pub fn path(&self) -> String {
        self.sim.path().display().to_string()
    }

    /// The key of `role` in force on the simulated pump.
    pub fn role_key(&self, role: Role) -> anyhow::Result<RoleKey> {
        let (epoch, key) = self
            .sim
            .role_key(role)
            .ok_or_else(|| UsageError("the simulated pump has no key for that role".into()))?;
        Ok(RoleKey { role, epoch, key })
    }

    /// Stops the simulator (it persists its state) and removes throw-away key files.
    pub fn stop(self) -> anyhow::Result<()> {
        let stopped = self.sim.shutdown().context("stopping the simulated pump");
        remove(self.keys);
        stopped
    }
}

fn remove(keys: Option<PathBuf>) {
    if let Some(dir) = keys {
        let _ = std::fs::remove_dir_all(dir);
    }
}
