//! `thecal-link`: a lossy radio link between a programmer and a pump.
//!
//! Creates a pty for the programmer, opens the device side, prints the programmer-side
//! path on the first line of stdout, then carries bytes both ways with the impairments
//! asked for until Ctrl-C or until the device side closes; prints the counts on exit.

use std::future::Future;
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use clap::Parser;
use thecal_link::impair::Impairment;
use thecal_link::{Direction, Link, LinkConfig, LinkStats};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};

/// A lossy radio link between a programmer and a pump, reproducible from a seed.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The device side: the simulator's pty or a serial port.
    #[arg(long, value_name = "PATH")]
    device: String,
    /// Line rate in bit/s (8N1: a tenth of it in bytes per second); 0 = unpaced.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Bit error rate (probability that a bit flips).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    ber: f64,
    /// Probability that a byte is lost.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    drop: f64,
    /// Probability that a whole frame (0x00-delimited) is lost.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    frame_drop: f64,
    /// Probability that a byte arrives twice.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    dup: f64,
    /// Probability that a burst of noise arrives before a byte.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    noise: f64,
    /// Longest noise burst, bytes.
    #[arg(long, default_value_t = 8, value_name = "BYTES")]
    noise_max: u8,
    /// One-way latency, milliseconds.
    #[arg(long, default_value_t = 0.0, value_name = "MS")]
    latency_ms: f64,
    /// Extra delay of each write, uniform in 0 ..= MS milliseconds (order is kept).
    #[arg(long, default_value_t = 0.0, value_name = "MS")]
    jitter_ms: f64,
    /// Seed of every random choice: the same seed, the same impairments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Create a stable symlink to the programmer-side pty at this path.
    #[arg(long, value_name = "PATH")]
    link: Option<PathBuf>,
    /// Log every impairment, one line each, on stderr.
    #[arg(short, long)]
    verbose: bool,
}

impl Args {
    fn impairment(&self) -> Result<Impairment, String> {
        for (name, p) in [
            ("--ber", self.ber),
            ("--drop", self.drop),
            ("--frame-drop", self.frame_drop),
            ("--dup", self.dup),
            ("--noise", self.noise),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} {p} is not a probability (0 ..= 1)"));
            }
        }
        for (name, ms) in [
            ("--latency-ms", self.latency_ms),
            ("--jitter-ms", self.jitter_ms),
        ] {
            if !(0.0..=60_000.0).contains(&ms) {
                return Err(format!("{name} {ms} is outside 0 ..= 60000"));
            }
        }
        Ok(Impairment {
            baud: (self.baud > 0).then_some(self.baud),
            latency: (self.latency_ms * 1e6) as u64,
            jitter: (self.jitter_ms * 1e6) as u64,
            drop: self.drop,
            frame_drop: self.frame_drop,
            ber: self.ber,
            dup: self.dup,
            noise: self.noise,
            noise_max: self.noise_max.max(1),
        })
    }
}

/// The programmer-side pty master. While no programmer holds the other end open, reads
/// fail with EIO and writes go nowhere: wait and try again, as a radio would.
struct ProgrammerPty {
    port: SerialStream,
    nap: Option<Pin<Box<Sleep>>>,
}

/// EIO on Linux and the BSDs: the pty's other end is closed.
const EIO: i32 = 5;

impl AsyncRead for ProgrammerPty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(nap) = this.nap.as_mut() {
                ready!(nap.as_mut().poll(cx));
                this.nap = None;
            }
            match Pin::new(&mut this.port).poll_read(cx, buf) {
                Poll::Ready(Err(e)) if e.raw_os_error() == Some(EIO) => {
                    this.nap = Some(Box::pin(tokio::time::sleep(Duration::from_millis(20))));
                }
                other => return other,
            }
        }
    }
}

impl AsyncWrite for ProgrammerPty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.get_mut().port).poll_write(cx, buf) {
            // Nobody is listening: the bytes are lost on the air.
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(EIO) => Poll::Ready(Ok(buf.len())),
            other => other,
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.get_mut().port).poll_flush(cx) {
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(EIO) => Poll::Ready(Ok(())),
            other => other,
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().port).poll_shutdown(cx)
    }
}

fn programmer_pty() -> io::Result<(ProgrammerPty, String)> {
    let (master, mut slave) = SerialStream::pair().map_err(io::Error::other)?;
    let path = slave
        .name()
        .ok_or_else(|| io::Error::other("the pty has no name"))?;
    // The programmer opens the slave end by its path; we keep only the master.
    slave.set_exclusive(false).map_err(io::Error::other)?;
    drop(slave);
    Ok((
        ProgrammerPty {
            port: master,
            nap: None,
        },
        path,
    ))
}

fn print_stats(stats: &LinkStats) {
    eprintln!("thecal-link: {}: {}", Direction::ToDevice, stats.to_device);
    eprintln!(
        "thecal-link: {}: {}",
        Direction::ToProgrammer,
        stats.to_programmer
    );
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("thecal-link: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let impairment = args.impairment()?;
    let device = tokio_serial::new(&args.device, args.baud.max(1))
        .open_native_async()
        .map_err(|e| format!("cannot open the device side {}: {e}", args.device))?;
    let (programmer, path) =
        programmer_pty().map_err(|e| format!("cannot create the programmer pty: {e}"))?;
    if let Some(link) = &args.link {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&path, link)
            .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    }
    println!("{path}");
    let _ = io::stdout().flush();
    eprintln!(
        "thecal-link: {path} <-> {} ({} baud, seed {})",
        args.device,
        impairment
            .baud
            .map_or("unpaced".to_string(), |b| b.to_string()),
        args.seed
    );
    let log: Option<thecal_link::bridge::EventLog> = args.verbose.then(|| {
        let log: thecal_link::bridge::EventLog =
            Arc::new(|d: Direction, e: &thecal_link::impair::Event| {
                eprintln!("thecal-link: {d} {e}")
            });
        log
    });
    let config = LinkConfig::symmetric(impairment, args.seed);
    let link = Link::spawn(programmer, device, config, log);
    let ended = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = wait_down(&link) => Some(()),
    };
    let stats = match ended {
        None => link.unplug().await,
        Some(()) => {
            let (stats, end) = link.join().await;
            if let Err(e) = end {
                eprintln!("thecal-link: the device side closed: {e}");
            } else {
                eprintln!("thecal-link: the device side closed");
            }
            stats
        }
    };
    print_stats(&stats);
    if let Some(link) = &args.link {
        let _ = std::fs::remove_file(link);
    }
    Ok(())
}

async fn wait_down(link: &Link) {
    while !link.is_down() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
