//! `thecal ping`

use serde::Serialize;

use crate::out;
use crate::session::{Global, Session};

/// Round trips.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of pings.
    #[arg(long, short = 'c', default_value_t = 3)]
    count: u32,
}

#[derive(Serialize)]
struct PingJson {
    round_trips_us: Vec<u64>,
}

pub async fn run(a: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let mut rtts = Vec::new();
    for _ in 0..a.count.max(1) {
        let rtt = s.client.ping().await?;
        if !g.json {
            outln!(
                "pong from {}: {:.1} ms",
                s.identity.serial,
                rtt.as_secs_f64() * 1e3
            )?;
        }
        rtts.push(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
    }
    if g.json {
        return out::json(&PingJson {
            round_trips_us: rtts,
        });
    }
    Ok(())
}
