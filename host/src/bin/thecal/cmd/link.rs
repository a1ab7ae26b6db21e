//! `thecal link`

use serde::Serialize;
use thecal_host::view::LinkView;

use crate::out;
use crate::session::{Global, Session};

/// Link counters.
#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct LinkJson {
    pump: LinkView,
    programmer: Programmer,
}

#[derive(Serialize)]
struct Programmer {
    requests: u32,
    retries: u32,
    stale_answers: u32,
    bad_frames: u32,
    /// Answers dropped inside a session: not sealed, or not opening under its key.
    unauthentic_answers: u32,
    /// Sessions opened (the first and every renewal).
    sessions: u32,
}

pub async fn run(_: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let pump = LinkView::from(&s.client.link_stats().await?);
    let c = s.client.counters();
    let v = LinkJson {
        pump,
        programmer: Programmer {
            requests: c.requests,
            retries: c.retries,
            stale_answers: c.stale,
            bad_frames: c.bad_frames,
            unauthentic_answers: c.unauthentic,
            sessions: c.sessions,
        },
    };
    if g.json {
        return out::json(&v);
    }
    let p = &v.pump;
    out::fields(&[
        (
            "Pump: frames in / out",
            format!("{} / {}", p.frames_in, p.frames_out),
        ),
        (
            "Pump: dropped",
            format!(
                "{} bad CRC, {} malformed, {} oversize, {} resyncs",
                p.bad_crc, p.malformed, p.oversize, p.resyncs
            ),
        ),
        ("Pump: refusals", p.refusals.to_string()),
        ("Pump: retries answered from cache", p.replays.to_string()),
        (
            "Pump: unauthentic traffic",
            format!(
                "{} sealed frames that did not open, {} frames left unanswered (energy \
                 budget spent: the link was quiet)",
                p.forged, p.quiet
            ),
        ),
        (
            "Programmer (this session)",
            format!(
                "{} requests, {} retries, {} stale answers, {} bad frames, {} unauthentic \
                 answers, {} session{} opened",
                v.programmer.requests,
                v.programmer.retries,
                v.programmer.stale_answers,
                v.programmer.bad_frames,
                v.programmer.unauthentic_answers,
                v.programmer.sessions,
                if v.programmer.sessions == 1 { "" } else { "s" }
            ),
        ),
    ])?;
    Ok(())
}
