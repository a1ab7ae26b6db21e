//! `thecal log`

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use thecal_host::eventlog::{read_log_pipelined, LogRange, WINDOW};
use thecal_host::view::LogEntryView;

use crate::out;
use crate::session::{Global, Session};

/// Read the event log.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// First entry index to read (default: the oldest stored).
    #[arg(long)]
    from: Option<u32>,
    /// Only the newest N entries.
    #[arg(long, value_name = "N")]
    last: Option<u32>,
    /// Output format (`--json` implies json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

/// `log --format json`.
#[derive(Serialize)]
struct LogJson {
    oldest: u32,
    next: u32,
    entries: Vec<LogEntryView>,
}

/// Pages at which a progress bar is worth showing.
const PROGRESS_FROM: u64 = 24;

pub async fn run(a: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let (_, t) = s.time().await?;
    let range = LogRange {
        from: a.from,
        last: a.last,
    };
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("reading event log {bar:40} {pos}/{len} entries")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let read = read_log_pipelined(&mut s.client, range, WINDOW, |done, total| {
        if total >= PROGRESS_FROM && bar.is_hidden() && done < total {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    let entries: Vec<LogEntryView> = read
        .entries
        .iter()
        .map(|e| LogEntryView::new(e, &t))
        .collect();
    let format = if g.json { Format::Json } else { a.format };
    let mut text = Vec::new();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut text,
                &LogJson {
                    oldest: read.oldest,
                    next: read.next,
                    entries,
                },
            )?;
            text.push(b'\n');
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut text);
            w.write_record(["index", "at", "event", "description"])?;
            for e in &entries {
                let event = serde_json::to_value(&e.event)?;
                let kind = event.get("event").and_then(|v| v.as_str()).unwrap_or("");
                w.write_record([&e.index.to_string(), &e.at, kind, &e.description])?;
            }
            w.flush()?;
        }
        Format::Table => {
            if a.out.is_none() {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| {
                        vec![
                            e.index.to_string(),
                            e.at.replace('T', " "),
                            e.description.clone(),
                        ]
                    })
                    .collect();
                outln!(
                    "Event log of pump {}: entries {}..{} stored, {} shown",
                    s.identity.serial,
                    read.oldest,
                    read.next,
                    entries.len()
                )?;
                out::table(&["#", "When", "Event"], &rows)?;
                return Ok(());
            }
            for e in &entries {
                writeln!(text, "{}\t{}\t{}", e.index, e.at, e.description)?;
            }
        }
    }
    match &a.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            if !g.json {
                eprintln!(
                    "{} entries written to {}",
                    read.entries.len(),
                    path.display()
                );
            }
        }
        None => std::io::stdout().write_all(&text)?,
    }
    Ok(())
}
