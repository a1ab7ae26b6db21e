//! The I/O shell: carries bytes between a programmer side and a device side, both any
//! `AsyncRead + AsyncWrite` (a pty, a serial port, an in-memory pipe), through one
//! [`Impairments`] per direction.
//!
//! Each direction is a reader (read what the sender sent, hand it to
//! [`Impairments::apply`] with the time since the link started) and a writer (sleep
//! until each [`crate::impair::Delivery`] is due, write it), all in one task. When either
//! side closes or fails, the link is down: both sides are dropped, so the other one sees
//! the cable pulled too. [`Link::unplug`] does the same on demand.

use std::io;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::impair::{Delivery, Event, Impairment, Impairments, Stats};

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Programmer → device (requests).
    ToDevice,
    /// Device → programmer (answers).
    ToProgrammer,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::ToDevice => "programmer->device",
            Direction::ToProgrammer => "device->programmer",
        })
    }
}

/// Both directions of a link and its seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Programmer → device.
    pub to_device: Impairment,
    /// Device → programmer.
    pub to_programmer: Impairment,
    /// Seed of all randomness (each direction derives its own stream from it).
    pub seed: u64,
}

impl LinkConfig {
    /// The same impairment both ways.
    pub fn symmetric(impairment: Impairment, seed: u64) -> Self {
        Self {
            to_device: impairment,
            to_programmer: impairment,
            seed,
        }
    }
}

/// Called with every event when the link logs (`-v`).
pub type EventLog = Arc<dyn Fn(Direction, &Event) + Send + Sync>;

/// Counts of both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Programmer → device.
    pub to_device: Stats,
    /// Device → programmer.
    pub to_programmer: Stats,
}

/// A running link.
#[derive(Debug)]
pub struct Link {
    stats: Arc<Mutex<LinkStats>>,
    task: JoinHandle<io::Result<()>>,
}

impl Link {
    /// Starts carrying bytes between `programmer` and `device` on the current tokio
    /// runtime. `log` gets every event if given.
    pub fn spawn<P, D>(programmer: P, device: D, config: LinkConfig, log: Option<EventLog>) -> Link
    where
        P: AsyncRead + AsyncWrite + Send + 'static,
        D: AsyncRead + AsyncWrite + Send + 'static,
    {
        let stats = Arc::new(Mutex::new(LinkStats::default()));
        let task = tokio::spawn(run(programmer, device, config, log, Arc::clone(&stats)));
        Link { stats, task }
    }

    /// The counts so far.
    pub fn stats(&self) -> LinkStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the link went down by itself (a side closed or failed).
    pub fn is_down(&self) -> bool {
        self.task.is_finished()
    }

    /// Pulls the cable: both sides are dropped now, bytes in flight are lost.
    pub async fn unplug(self) -> LinkStats {
        self.task.abort();
        let _ = self.task.await;
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a side closes; returns the counts and what ended the link.
    pub async fn join(self) -> (LinkStats, io::Result<()>) {
        let end = match self.task.await {
            Ok(end) => end,
            Err(e) => Err(io::Error::other(e)),
        };
        (*self.stats.lock().unwrap_or_else(|e| e.into_inner()), end)
    }
}

/// Carries bytes until a side closes. Both sides are dropped on return.
pub async fn run<P, D>(
    programmer: P,
    device: D,
    config: LinkConfig,
    log: Option<EventLog>,
    stats: Arc<Mutex<LinkStats>>,
) -> io::Result<()>
where
    P: AsyncRead + AsyncWrite + Send + 'static,
    D: AsyncRead + AsyncWrite + Send + 'static,
{
    let origin = Instant::now();
    let (p_read, p_write) = tokio::io::split(programmer);
    let (d_read, d_write) = tokio::io::split(device);
    let seed_back = config.seed ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut to_device = Direction::ToDevice.half(config.to_device, config.seed, &log, &stats);
    let mut to_programmer =
        Direction::ToProgrammer.half(config.to_programmer, seed_back, &log, &stats);
    let a = to_device.carry(p_read, d_write, origin);
    let b = to_programmer.carry(d_read, p_write, origin);
    // The first direction to end takes the link down.
    tokio::select! {
        r = a => r,
        r = b => r,
    }
}

struct Half {
    direction: Direction,
    impairments: Impairments,
    log: Option<EventLog>,
    stats: Arc<Mutex<LinkStats>>,
}

impl Direction {
    fn half(
        self,
        cfg: Impairment,
        seed: u64,
        log: &Option<EventLog>,
        stats: &Arc<Mutex<LinkStats>>,
    ) -> Half {
        let mut impairments = Impairments::new(cfg, seed);
        impairments.record_events(log.is_some());
        Half {
            direction: self,
            impairments,
            log: log.clone(),
            stats: Arc::clone(stats),
        }
    }
}

impl Half {
    /// Carries one direction until the sender closes or the receiver fails. Reader and
    /// writer run in this one future, so dropping it (the link going down) drops both
    /// sides at once, bytes in flight included.
    async fn carry<R, W>(&mut self, from: R, to: W, origin: Instant) -> io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (tx, rx) = mpsc::unbounded_channel::<Delivery>();
        tokio::select! {
            r = self.read(from, tx, origin) => r,
            r = deliver(rx, to, origin) => r,
        }
    }

    async fn read<R: AsyncRead + Unpin>(
        &mut self,
        mut from: R,
        tx: mpsc::UnboundedSender<Delivery>,
        origin: Instant,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match from.read(&mut buf).await? {
                0 => return Ok(()),
                n => n,
            };
            let now = origin.elapsed().as_nanos() as u64;
            let deliveries = self
                .impairments
                .apply(now, buf.get(..n).unwrap_or_default());
            self.publish();
            if deliveries.into_iter().try_for_each(|d| tx.send(d)).is_err() {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "receiver gone"));
            }
        }
    }

    fn publish(&mut self) {
        let s = self.impairments.stats();
        if let Ok(mut all) = self.stats.lock() {
            match self.direction {
                Direction::ToDevice => all.to_device = s,
                Direction::ToProgrammer => all.to_programmer = s,
            }
        }
        if let Some(log) = &self.log {
            for e in self.impairments.take_events() {
                log(self.direction, &e);
            }
        }
    }
}

async fn deliver<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    mut to: W,
    origin: Instant,
) -> io::Result<()> {
    while let Some(d) = rx.recv().await {
        tokio::time::sleep_until(origin + std::time::Duration::from_nanos(d.at)).await;
        to.write_all(&d.bytes).await?;
        to.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impair::Impairment;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn bytes_cross_with_the_latency_and_the_link_goes_down_with_a_side() {
        let (mut host, programmer) = tokio::io::duplex(1024);
        let (device, mut pump) = tokio::io::duplex(1024);
        let cfg = Impairment {
            latency: 30_000_000,
            ..Impairment::CLEAN
        };
        let link = Link::spawn(programmer, device, LinkConfig::symmetric(cfg, 1), None);
        let start = Instant::now();
        host.write_all(b"\x01\x02\x00").await.unwrap();
        let mut buf = [0u8; 3];
        pump.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"\x01\x02\x00");
        assert!(start.elapsed() >= Duration::from_millis(30));
        pump.write_all(b"\x07\x00").await.unwrap();
        let mut back = [0u8; 2];
        host.read_exact(&mut back).await.unwrap();
        assert_eq!(link.stats().to_device.frames_in, 1);
        // The pump side closes: the programmer side sees the link end.
        drop(pump);
        let (stats, _) = link.join().await;
        assert_eq!(stats.to_programmer.bytes_in, 2);
        assert_eq!(host.read(&mut back).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unplug_closes_both_sides() {
        let (mut host, programmer) = tokio::io::duplex(1024);
        let (device, mut pump) = tokio::io::duplex(1024);
        let link = Link::spawn(
            programmer,
            device,
            LinkConfig::symmetric(Impairment::CLEAN, 1),
            None,
        );
        host.write_all(b"\x01\x00").await.unwrap();
        let mut buf = [0u8; 2];
        pump.read_exact(&mut buf).await.unwrap();
        link.unplug().await;
        assert_eq!(host.read(&mut buf).await.unwrap(), 0);
        assert_eq!(pump.read(&mut buf).await.unwrap(), 0);
    }
}
