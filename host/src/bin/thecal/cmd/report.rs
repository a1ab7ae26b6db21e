//! `thecal report`: a session's report from the session records, for the chart — HTML
//! (the page `thecal serve` shows), PDF (that page printed by a headless Chromium) or
//! JSON (the report document).

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::Context;
use thecal_host::records::Records;

use super::records::{find, url, Which};
use crate::session::Global;
use crate::usage::UsageError;

/// A session's report.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    which: Which,
    /// Write it to FILE: `.html`, `.pdf` (printed by Chromium, headless) or `.json`.
    /// Without it: HTML on stdout (JSON with --json).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub async fn run(a: Args, g: &Global) -> anyhow::Result<()> {
    let records = Records::open(&url(g)).await?;
    let found = find(&records, &a.which).await;
    records.close().await;
    let report = found?;
    let html = || crate::web::report::standalone(&report, "Session report", "").into_string();
    let json = || serde_json::to_string_pretty(&report).map(|j| j + "\n");
    let Some(out) = &a.out else {
        let text = if g.json { json()? } else { html() };
        print!("{text}");
        return Ok(());
    };
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => write(out, &html())?,
        Some("json") => write(out, &json()?)?,
        Some("pdf") => print_pdf(&html(), out)?,
        _ => {
            return Err(UsageError(format!(
                "--out {}: give a file ending in .html, .pdf or .json",
                out.display()
            ))
            .into())
        }
    }
    eprintln!("session {} report written to {}", report.id, out.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A fresh directory only this user can read, for the page and the browser's profile.
fn private_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("thecal-report-{}", crate::web::random_hex()?));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The browser that prints: `THECAL_CHROMIUM`, else the first Chromium on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("THECAL_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .map(move |name| dir.join(name))
        })
        .find(|p| p.is_file())
}

/// Prints `html` to the PDF `out` with a headless Chromium (the same rendering as the
/// browser's print of the report page).
fn print_pdf(html: &str, out: &Path) -> anyhow::Result<()> {
    let browser = chromium().ok_or_else(|| {
        UsageError(
            "a PDF is printed by Chromium, and none was found (install it, e.g. `apt-get \
             install chromium`, or set THECAL_CHROMIUM); or write --out FILE.html and print \
             it from a browser"
                .into(),
        )
    })?;
    let dir = private_dir()?;
    let page = dir.join("report.html");
    let result = (|| {
        write(&page, html)?;
        let out_abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
        let status = Process::new(&browser)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-pdf-header-footer",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--print-to-pdf={}", out_abs.display()))
            .arg(format!("file://{}", page.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .with_context(|| format!("starting {}", browser.display()))?;
        let printed = std::fs::read(out)
            .map(|b| b.starts_with(b"%PDF"))
            .unwrap_or(false);
        if !status.success() || !printed {
            anyhow::bail!(
                "{} did not print the report to {} ({status})",
                browser.display(),
                out.display()
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
