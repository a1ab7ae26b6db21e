//! Printing: aligned tables for people, JSON for scripts, errors with exit codes, and
//! confirmation prompts.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use serde::Serialize;
use thecal_protocol::message::Role;

/// Exit codes (documented in the README).
pub mod code {
    /// Bad input: arguments or a schedule file.
    pub const INVALID_INPUT: u8 = 2;
    /// The pump refused; nothing changed.
    pub const REFUSED: u8 = 3;
    /// No answer (timeout) or the link failed.
    pub const NO_ANSWER: u8 = 4;
    /// A therapy change may or may not have happened.
    pub const UNCERTAIN: u8 = 5;
    /// Protocol mismatch, unexpected answer, or read-back mismatch.
    pub const MISMATCH: u8 = 6;
    /// The clinician did not confirm.
    pub const NOT_CONFIRMED: u8 = 7;
    /// No session: wrong key, locked out, session expired and not renewed, pump not
    /// provisioned.
    pub const AUTHENTICATION: u8 = 8;
}

/// The clinician declined (or could not be asked).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotConfirmed(pub String);

/// `println!` that returns the write error instead of panicking, so `thecal … | head`
/// ends quietly (see [`report_error`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` that returns the write error.
macro_rules! outw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod errors;
mod review;

#[cfg(feature = "serve")]
pub use errors::message;
pub use errors::{argument_error, report_error};
pub use review::side_by_side;

/// Pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    outln!("{text}")?;
    Ok(())
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(s))));
    out
}

/// `key   value` lines with aligned values; a value may span several lines.
pub fn fields(rows: &[(&str, String)]) -> std::io::Result<()> {
    let w = rows.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    for (k, v) in rows {
        let mut lines = v.lines();
        outln!("{}  {}", pad(k, w), lines.next().unwrap_or(""))?;
        for more in lines {
            outln!("{}  {more}", pad("", w))?;
        }
    }
    Ok(())
}

/// Key files, one row per role: `clinician  /path/SERIAL.clinician.key`.
pub fn key_files(files: &[(Role, PathBuf)]) -> std::io::Result<()> {
    let rows: Vec<(&str, String)> = files
        .iter()
        .map(|(r, p)| (r.name(), p.display().to_string()))
        .collect();
    fields(&rows)
}

/// A table with a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| pad(c, *w)).collect();
        outln!("{}", text.join("  ").trim_end())
    };
    line(headers.iter().map(|h| h.to_string()).collect())?;
    line(widths.iter().map(|w| "─".repeat(*w)).collect())?;
    for row in rows {
        line(row.clone())?;
    }
    Ok(())
}

/// Asks `question` unless `yes`. Refuses (never waits) when stdin is not a terminal.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(NotConfirmed(format!(
            "not confirmed: stdin is not a terminal, so nobody can answer \"{question}\"; \
             pass --yes to confirm non-interactively"
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(NotConfirmed("not confirmed: nothing was sent".into()).into())
    }
}
