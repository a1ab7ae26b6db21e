//! Plots: the dose profile over a day or a week ([`plot_schedule`]), and the projected
//! reservoir volume ([`plot_reservoir`]).
//!
//! Drawn with `plotters` to SVG or PNG (by the output file's extension). Axes are in
//! integer units (minutes, ng/day, nL, ms), so nothing here rounds a dose through floating
//! point. Text needs a TrueType font: `THECAL_FONT` if set, else the first of a few
//! common system fonts (DejaVu Sans, Liberation Sans, Arial); without one, plotting
//! fails with a clear error instead of drawing a chart without labels.
//!
//! Every title names the drug and its concentration. Every label is measured with the
//! font and placed inside the plot area (the `layout` module), a title too wide for the picture
//! is drawn smaller, and dates are the patient's local time spelled out as everywhere in
//! the CLI (`Wednesday 13 January 2027 at 05:25`).

mod layout;
mod reservoir;
mod schedule;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use layout::Layout;
use thecal_protocol::prescription::Prescription;

use crate::quantity;

pub use reservoir::{halted_curve, plot_reservoir, reservoir_curve, Halt, ReservoirCurve};
pub use schedule::plot_schedule;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// The output file's extension is not `.svg` or `.png`.
    #[error("{0}: the plot file must end in .svg or .png")]
    Format(String),
    /// No TrueType font was found for the labels.
    #[error(
        "no font for the plot labels: install fonts-dejavu-core or set THECAL_FONT to a .ttf file"
    )]
    NoFont,
    /// Drawing or writing failed.
    #[error("drawing {file}: {message}")]
    Draw {
        /// Output file.
        file: String,
        /// Why.
        message: String,
    },
}

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a system font as `sans-serif` once per process.
fn ensure_font() -> Result<(), PlotError> {
    static FONT: OnceLock<bool> = OnceLock::new();
    let ok = *FONT.get_or_init(|| {
        let candidates = std::env::var("THECAL_FONT")
            .ok()
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::NoFont)
    }
}

type Area<'a, DB> = DrawingArea<DB, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_error(out: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        file: out.display().to_string(),
        message: e.to_string(),
    }
}

/// Calls `chart` on an SVG or PNG drawing area for `out`.
fn with_backend(
    out: &Path,
    size: (u32, u32),
    svg: impl FnOnce(Area<'_, SVGBackend<'_>>) -> DrawResult,
    png: impl FnOnce(Area<'_, BitMapBackend<'_>>) -> DrawResult,
) -> Result<(), PlotError> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    ensure_font()?;
    let result = match ext.as_deref() {
        Some("svg") => svg(SVGBackend::new(out, size).into_drawing_area()),
        Some("png") => png(BitMapBackend::new(out, size).into_drawing_area()),
        _ => return Err(PlotError::Format(out.display().to_string())),
    };
    result.map_err(|e| draw_error(out, e))
}

/// Picture size, pixels.
const SIZE: (u32, u32) = (1000, 500);

/// The title: `heading — drug concentration: what`.
fn title(heading: &str, p: &Prescription, what: &str) -> String {
    let drug = format!(
        "{} {}",
        p.drug(),
        quantity::concentration(p.concentration())
    );
    if heading.is_empty() {
        format!("{drug}: {what}")
    } else {
        format!("{heading} — {drug}: {what}")
    }
}

/// The label font at `size` px.
fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font())
}

/// `(width, height)` of `text` in `style`, pixels.
fn text_size<DB: DrawingBackend>(
    area: &Area<'_, DB>,
    text: &str,
    style: &TextStyle<'_>,
) -> Result<(i32, i32), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.estimate_text_size(text, style)?;
    Ok((
        i32::try_from(w).unwrap_or(i32::MAX),
        i32::try_from(h).unwrap_or(i32::MAX),
    ))
}

/// The largest size from `size` down to 9 px at which `text` is at most `max` wide.
fn fitting_size<DB: DrawingBackend>(
    area: &Area<'_, DB>,
    text: &str,
    size: u32,
    max: i32,
) -> Result<u32, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let mut s = size;
    while s > 9 && text_size(area, text, &font(s))?.0 > max {
        s -= 1;
    }
    Ok(s)
}

/// Draws the title centred at the top of `root` (smaller if it would not fit) and
/// returns the area below it.
fn with_title<'a, DB: DrawingBackend>(
    root: &Area<'a, DB>,
    text: &str,
) -> Result<Area<'a, DB>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let (w, _) = root.dim_in_pixel();
    let w = i32::try_from(w).unwrap_or(i32::MAX);
    let size = fitting_size(root, text, 20, w - 24)?;
    let style = font(size);
    let (tw, th) = text_size(root, text, &style)?;
    root.draw(&Text::new(
        text.to_string(),
        ((w - tw).max(0) / 2, 8),
        style,
    ))?;
    let (_, below) = root.split_vertically(th + 16);
    Ok(below)
}

/// `2.4 mg/day`-style label for an axis value in ng/day.
fn dose_label(ng: &u64) -> String {
    quantity::dose_rate(thecal_protocol::units::NanogramsPerDay(
        u32::try_from(*ng).unwrap_or(u32::MAX),
    ))
}

/// The legend box (a line sample of `width` px, none for 0, and the text per row) in
/// the first free corner of the plot area `(xr, yr)`.
fn draw_legend<DB: DrawingBackend>(
    screen: &Area<'_, DB>,
    layout: &mut Layout,
    rows: &[(RGBColor, u32, String)],
    (xr, yr): (std::ops::Range<i32>, std::ops::Range<i32>),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let style = font(13);
    let mut w = 0;
    let mut row_h = 14;
    for (_, _, text) in rows {
        let (tw, th) = text_size(screen, text, &style)?;
        w = w.max(tw);
        row_h = row_h.max(th);
    }
    let (bw, bh) = (
        w + 44,
        (row_h + 6) * i32::try_from(rows.len()).unwrap_or(0) + 8,
    );
    let corners = [
        (xr.end - bw - 8, yr.start + 8),
        (xr.end - bw - 8, yr.end - bh - 8),
        (xr.start + 8, yr.end - bh - 8),
        ((xr.start + xr.end - bw) / 2, yr.start + 8),
        (xr.start + 8, yr.start + 8),
    ];
    let (x, y) = layout.place((bw, bh), &corners);
    screen.draw(&Rectangle::new(
        [(x, y), (x + bw, y + bh)],
        WHITE.mix(0.9).filled(),
    ))?;
    screen.draw(&Rectangle::new([(x, y), (x + bw, y + bh)], BLACK))?;
    let mut ry = y + 6;
    for (color, width, text) in rows {
        let mid = ry + row_h / 2;
        if *width > 0 {
            screen.draw(&PathElement::new(
                vec![(x + 8, mid), (x + 32, mid)],
                color.stroke_width(*width),
            ))?;
        }
        screen.draw(&Text::new(text.clone(), (x + 38, ry), style.clone()))?;
        ry += row_h + 6;
    }
    Ok(())
}
