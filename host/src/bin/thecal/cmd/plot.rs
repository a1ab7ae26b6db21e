//! `thecal plot schedule` and `thecal plot reservoir`

use std::path::PathBuf;

use serde::Serialize;
use thecal_host::{plot, schedule};
use thecal_protocol::message::TherapyState;

use crate::out;
use crate::session::{Access, Global, Session};

/// Plots.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The basal dose profile over a day (or a week with --week).
    Schedule {
        /// Output file, .svg or .png.
        #[arg(long)]
        out: PathBuf,
        /// Draw Monday to Sunday.
        #[arg(long)]
        week: bool,
        /// Plot a schedule file instead of the pump's prescription (offline).
        #[arg(long, value_name = "SCHEDULE")]
        file: Option<PathBuf>,
    },
    /// Projected reservoir volume until the low-reservoir and empty marks.
    Reservoir {
        /// Output file, .svg or .png.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Serialize)]
struct Plotted {
    plot: &'static str,
    file: String,
}

pub async fn run(c: Command, g: &Global) -> anyhow::Result<()> {
    let (kind, file) = match c {
        Command::Schedule {
            out,
            week,
            file: Some(schedule_file),
        } => {
            let p = schedule::load(&schedule_file)?;
            // The file's name (a full path would crowd the title).
            let title = schedule_file
                .file_name()
                .unwrap_or(schedule_file.as_os_str())
                .to_string_lossy()
                .into_owned();
            plot::plot_schedule(&p, week, &title, &out)?;
            ("schedule", out)
        }
        Command::Schedule {
            out,
            week,
            file: None,
        } => {
            let mut s = Session::open(g, Access::Session).await?;
            let result = async {
                let record = s.client.prescription().await?;
                let title = format!(
                    "Pump {}, prescription revision {}",
                    s.identity.serial, record.revision.0
                );
                plot::plot_schedule(&record.prescription, week, &title, &out)?;
                anyhow::Ok(())
            }
            .await;
            let closed = s.close().await;
            result.and(closed)?;
            ("schedule", out)
        }
        Command::Reservoir { out } => {
            let mut s = Session::open(g, Access::Session).await?;
            let result = async {
                let record = s.client.prescription().await?;
                let status = s.client.status().await?;
                let state = thecal_host::workflow::reservoir_state(&status);
                let halted = match status.therapy {
                    TherapyState::Halted(by) => Some(plot::Halt {
                        by,
                        since: status.halted_since,
                    }),
                    _ => None,
                };
                let title = format!(
                    "Pump {}, prescription revision {}",
                    s.identity.serial, record.revision.0
                );
                plot::plot_reservoir(&record.prescription, state, halted, &title, &out)?;
                anyhow::Ok(())
            }
            .await;
            let closed = s.close().await;
            result.and(closed)?;
            ("reservoir", out)
        }
    };
    if g.json {
        return out::json(&Plotted {
            plot: kind,
            file: file.display().to_string(),
        });
    }
    outln!("{kind} plot written to {}", file.display())?;
    Ok(())
}
