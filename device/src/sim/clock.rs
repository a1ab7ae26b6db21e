//! The simulator's virtual device clock: real time scaled by `speed`, never going
//! backwards, not even across restarts (the last value is kept beside the state file).

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use thecal_protocol::time::Timestamp;

/// A scaled monotonic clock.
#[derive(Debug)]
pub struct VirtualClock {
    start_real: Instant,
    start_device: u64,
    speed: u64,
    sidecar: Option<PathBuf>,
}

impl VirtualClock {
    /// Starts at the later of the real Unix time and the time stored in `sidecar`.
    pub fn start(speed: u32, sidecar: Option<PathBuf>) -> Self {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let stored = sidecar
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Self {
            start_real: Instant::now(),
            start_device: real.max(stored.saturating_add(1)),
            speed: u64::from(speed.max(1)),
            sidecar,
        }
    }

    /// Device time now.
    pub fn now(&self) -> Timestamp {
        let elapsed = self.start_real.elapsed().as_millis() as u64;
        Timestamp(self.start_device + elapsed.saturating_mul(self.speed))
    }

    /// Real milliseconds since the clock started (the simulator's link clock).
    pub fn real_elapsed_ms(&self) -> u64 {
        self.start_real.elapsed().as_millis() as u64
    }

    /// Real milliseconds until device time `t` (0 if past).
    pub fn real_ms_until(&self, t: Timestamp) -> u64 {
        t.since(self.now()).div_ceil(self.speed)
    }

    /// Writes the current device time beside the state.
    pub fn persist(&self) {
        if let Some(p) = &self.sidecar {
            let _ = std::fs::write(p, self.now().0.to_string());
        }
    }
}
