//! `thecal update IMAGE`

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use thecal_host::workflow::update::{self, Package};
use thecal_protocol::update::{KeyKind, SlotInfo};

use crate::out;
use crate::session::{Global, Session};

/// Install a signed firmware image (a package from `thecal-sign`) in the pump's
/// update slot. The pump keeps dosing meanwhile and installs it itself when no bolus is
/// running; run the same command again after a broken link to resume.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The signed package (header + image).
    image: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Serialize)]
struct Updated {
    from: String,
    to: String,
    bytes: u32,
    resumed_at: u32,
    pending: bool,
}

pub fn describe(slot: &SlotInfo) -> String {
    format!(
        "{} (security {}, {})",
        slot.version,
        slot.security,
        super::info::slot_state(slot.state)
    )
}

pub async fn run(a: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&a.image).with_context(|| format!("cannot read {}", a.image.display()))?;
    let package = Package::parse(&bytes).with_context(|| format!("{}", a.image.display()))?;
    let plan = update::plan(&mut s.client, package).await?;
    let h = plan.package.header;
    plan.check()
        .map_err(|e| anyhow::anyhow!("this pump would refuse the image: {e}; nothing was sent"))?;
    let key = match h.key {
        KeyKind::Development => "the public DEVELOPMENT key",
        KeyKind::Release => "a release key",
    };
    out::confirm(
        &format!(
            "Update pump {} from firmware {} to {} ({} bytes for board {}, security {}, signed with {})? \
             Therapy continues; the pump restarts into it when no bolus is running",
            s.identity.serial,
            describe(&plan.before.active),
            h.version,
            h.length,
            h.board.name(),
            h.security,
            key,
        ),
        a.yes,
    )?;
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("sending firmware {bar:40} {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !g.json {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    let outcome = update::execute(&mut s.client, &plan, |next, length| {
        bar.set_length(u64::from(length));
        bar.set_position(u64::from(next));
    })
    .await;
    bar.finish_and_clear();
    let outcome = outcome?;
    if g.json {
        return out::json(&Updated {
            from: plan.before.active.version.to_string(),
            to: h.version.to_string(),
            bytes: h.length,
            resumed_at: outcome.resumed_at,
            pending: outcome.finished.pending,
        });
    }
    if outcome.resumed_at > 0 {
        outln!(
            "Resumed the transfer at byte {} of {}.",
            outcome.resumed_at,
            h.length
        )?;
    }
    outln!(
        "Firmware {} verified by the pump (signature, board, security version, SHA-256) and \
         marked for installation. The pump restarts into it when no bolus is running; the new \
         firmware must confirm itself after its self-test, or the pump returns to {}. \
         Prescription, reservoir and log are kept. Check with `thecal info`.",
        h.version,
        plan.before.active.version
    )?;
    Ok(())
}
