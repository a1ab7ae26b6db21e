//! Plots: the dose profile over a day or a week, and the projected reservoir volume.
//!
//! Drawn with `plotters` to SVG or PNG (by the output file's extension). Axes are in
//! integer units (minutes, ng/day, nL, ms), so nothing here rounds a dose through floating
//! point. Text needs a TrueType font: `THECAL_FONT` if set, else the first of a few
//! common system fonts (DejaVu Sans, Liberation Sans, Arial); without one, plotting
//! fails with a clear error instead of drawing a chart without labels.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use thecal_protocol::message::AlarmKind;
use thecal_protocol::prescription::Prescription;
use thecal_protocol::projection::{project, ReservoirState};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Nanolitres, MINUTES_PER_DAY, MS_PER_DAY};

use crate::{clock, quantity};

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

/// `2.4 mg/day`-style label for an axis value in ng/day.
fn dose_label(ng: &u64) -> String {
    quantity::dose_rate(thecal_protocol::units::NanogramsPerDay(
        u32::try_from(*ng).unwrap_or(u32::MAX),
    ))
}

/// The basal dose profile: one day (every day alike) or Monday–Sunday.
pub fn plot_schedule(
    p: &Prescription,
    week: bool,
    title: &str,
    out: &Path,
) -> Result<(), PlotError> {
    let day = u32::from(MINUTES_PER_DAY);
    let span = if week { 7 * day } else { day };
    // Step points over [0, span): the segment running at each boundary.
    let mut points: Vec<(u32, u64)> = Vec::new();
    let mut m = 0;
    while m < span {
        let seg = p.segment_at(m);
        let end = (m - m % p.cycle_minutes() + seg.end).min(span).max(m + 1);
        points.push((m, u64::from(seg.dose.0)));
        points.push((end, u64::from(seg.dose.0)));
        m = end;
    }
    let top = points.iter().map(|(_, d)| *d).max().unwrap_or(1);
    let limit = u64::from(p.daily_limit().0);
    let y_max = (top.max(limit) * 11 / 10).max(1);
    with_backend(
        out,
        (1000, 500),
        |a| schedule_chart(a, title, &points, span, y_max, limit, week),
        |a| schedule_chart(a, title, &points, span, y_max, limit, week),
    )
}

fn schedule_chart<DB: DrawingBackend>(
    root: Area<'_, DB>,
    caption: &str,
    points: &[(u32, u64)],
    span: u32,
    y_max: u64,
    limit: u64,
    week: bool,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let day = u32::from(MINUTES_PER_DAY);
    let step = if week { day / 2 } else { 120 };
    let keys: Vec<u32> = (0..=span).step_by(step as usize).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(110)
        .build_cartesian_2d((0u32..span).with_key_points(keys), 0u64..y_max)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|m: &u32| {
            let hm = format!("{:02}:{:02}", (m % day) / 60, m % 60);
            if week && m.is_multiple_of(day) && *m < span {
                thecal_protocol::time::Weekday::from_index(m / day)
                    .name()
                    .get(..3)
                    .unwrap_or("")
                    .to_string()
            } else {
                hm
            }
        })
        .y_label_formatter(&dose_label)
        .y_desc("basal dose rate")
        .x_desc("local time")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))?
        .label("basal dose rate")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            [(0, limit), (span, limit)],
            RED.stroke_width(1),
        ))?
        .label("hard daily limit")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Where the projected volume curve crosses each level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservoirCurve {
    /// `(ms after now, volume)` on the basal schedule, until empty or the horizon.
    pub basal: Vec<(u64, Nanolitres)>,
    /// The same if the patient takes every allowed bolus.
    pub worst: Vec<(u64, Nanolitres)>,
    /// Low threshold.
    pub low: Nanolitres,
}

/// The projected volume curve, computed with the shared projection: the time the
/// volume falls to level `L` is the time a reservoir holding `volume − L` would take
/// to empty, so every point comes from [`thecal_protocol::projection::project`].
pub fn reservoir_curve(p: &Prescription, state: ReservoirState) -> ReservoirCurve {
    const SAMPLES: u32 = 80;
    let v = u64::from(state.volume.0);
    let low = p.low_reservoir_alarm();
    let mut levels: Vec<u64> = (0..=SAMPLES)
        .map(|k| v - v * u64::from(k) / u64::from(SAMPLES))
        .collect();
    if u64::from(low.0) < v {
        levels.push(u64::from(low.0));
    }
    levels.sort_unstable_by(|a, b| b.cmp(a));
    levels.dedup();
    let curve = |worst: bool| {
        let mut out = Vec::new();
        for level in &levels {
            let used = Nanolitres(u32::try_from(v - level).unwrap_or(u32::MAX));
            let proj = project(
                p,
                ReservoirState {
                    volume: used,
                    ..state
                },
            );
            let at = if worst {
                proj.worst_empty_at
            } else {
                proj.empty_at
            };
            match at {
                Some(at) => out.push((
                    at.since(state.now),
                    Nanolitres(u32::try_from(*level).unwrap_or(0)),
                )),
                None => break,
            }
        }
        out
    };
    ReservoirCurve {
        basal: curve(false),
        worst: curve(true),
        low,
    }
}

/// Delivery halted by a critical alarm (the status's `therapy` and `halted_since`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    /// The alarm that halts delivery.
    pub by: AlarmKind,
    /// Since when (wall clock), if the pump says.
    pub since: Option<Timestamp>,
}

/// How far a halted pump's flat line is drawn.
const HALTED_SPAN_MS: u64 = 7 * MS_PER_DAY;

/// A halted pump's curve: the volume stays where it is (nothing is delivered, so there
/// is no low or empty date), drawn flat over a week.
pub fn halted_curve(p: &Prescription, state: ReservoirState) -> ReservoirCurve {
    let flat = vec![(0, state.volume), (HALTED_SPAN_MS, state.volume)];
    ReservoirCurve {
        basal: flat.clone(),
        worst: flat,
        low: p.low_reservoir_alarm(),
    }
}

/// The projected reservoir volume from now until the low and empty marks; for a pump
/// whose delivery is `halted`, a flat line that says so (it does not drain).
pub fn plot_reservoir(
    p: &Prescription,
    state: ReservoirState,
    halted: Option<Halt>,
    title: &str,
    out: &Path,
) -> Result<(), PlotError> {
    let curve = match halted {
        Some(_) => halted_curve(p, state),
        None => reservoir_curve(p, state),
    };
    let end = curve
        .basal
        .last()
        .map_or(MS_PER_DAY, |(t, _)| *t)
        .max(MS_PER_DAY);
    let x_max = end + end / 20;
    let y_max = u64::from(state.volume.0).max(u64::from(curve.low.0)) * 11 / 10 + 1;
    with_backend(
        out,
        (1000, 500),
        |a| reservoir_chart(a, title, &curve, 0..x_max, y_max, state, halted),
        |a| reservoir_chart(a, title, &curve, 0..x_max, y_max, state, halted),
    )
}

fn reservoir_chart<DB: DrawingBackend>(
    root: Area<'_, DB>,
    caption: &str,
    curve: &ReservoirCurve,
    x: Range<u64>,
    y_max: u64,
    state: ReservoirState,
    halted: Option<Halt>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let x_end = x.end;
    let local = |t: Timestamp| {
        clock::zoned(t, state.offset)
            .map(|z| z.strftime("%-d %b %Y %H:%M").to_string())
            .unwrap_or_default()
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x, 0u64..y_max)?;
    chart
        .configure_mesh()
        .x_labels(10)
        .x_label_formatter(&|ms: &u64| {
            clock::zoned(state.now.plus_ms(*ms), state.offset)
                .map(|z| z.strftime("%-d %b").to_string())
                .unwrap_or_default()
        })
        .y_label_formatter(&|nl: &u64| {
            quantity::volume(Nanolitres(u32::try_from(*nl).unwrap_or(u32::MAX)))
        })
        .y_desc("reservoir volume")
        .x_desc("date (pump local time)")
        .draw()?;
    let pts = |c: &[(u64, Nanolitres)]| {
        c.iter()
            .map(|(t, v)| (*t, u64::from(v.0)))
            .collect::<Vec<_>>()
    };
    if let Some(h) = halted {
        let label = match h.since {
            Some(t) => format!(
                "DELIVERY HALTED by the {} alarm since {}: nothing is delivered",
                h.by,
                local(t)
            ),
            None => format!(
                "DELIVERY HALTED by the {} alarm: nothing is delivered",
                h.by
            ),
        };
        chart
            .draw_series(LineSeries::new(pts(&curve.basal), RED.stroke_width(3)))?
            .label(label.clone())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(3)));
        chart.draw_series(std::iter::once(Text::new(
            label,
            (x_end / 40, u64::from(state.volume.0) / 2),
            ("sans-serif", 18).into_font().color(&RED),
        )))?;
    } else {
        chart
            .draw_series(LineSeries::new(pts(&curve.basal), BLUE.stroke_width(2)))?
            .label("basal schedule")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    }
    if halted.is_none() && curve.worst != curve.basal {
        chart
            .draw_series(LineSeries::new(pts(&curve.worst), MAGENTA))?
            .label("with every allowed patient bolus")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    }
    let low = u64::from(curve.low.0);
    chart
        .draw_series(LineSeries::new([(0, low), (x_end, low)], RED))?
        .label(format!(
            "low-reservoir alarm ({})",
            quantity::volume(curve.low)
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    // Marks where the basal curve reaches low and empty (a halted pump reaches neither).
    for (t, v) in curve.basal.iter().filter(|_| halted.is_none()) {
        if v.0 == curve.low.0 || v.0 == 0 {
            let what = if v.0 == 0 { "empty" } else { "low" };
            let label = format!("{what}: {}", local(state.now.plus_ms(*t)));
            chart.draw_series(std::iter::once(Circle::new(
                (*t, u64::from(v.0)),
                5,
                RED.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                label,
                (*t, u64::from(v.0) + y_max / 25),
                ("sans-serif", 14),
            )))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_protocol::time::UtcOffset;

    #[test]
    fn a_halted_pump_is_drawn_flat() {
        let p = crate::schedule::parse(
            "p.toml",
            include_str!("../../examples/schedules/flexible-baclofen-day.toml"),
        )
        .unwrap();
        let state = ReservoirState {
            volume: Nanolitres(10_000_000),
            now: Timestamp(1_795_392_000_000),
            offset: UtcOffset(0),
            therapy: thecal_protocol::message::TherapyState::Running,
            carry: 0,
            bolus: None,
        };
        let flat = halted_curve(&p, state);
        assert!(flat.basal.iter().all(|(_, v)| *v == state.volume));
        assert_eq!(flat.basal.last().map(|(t, _)| *t), Some(HALTED_SPAN_MS));
        // Running, it drains.
        let running = reservoir_curve(&p, state);
        assert!(running
            .basal
            .last()
            .is_some_and(|(_, v)| v.0 < state.volume.0));
    }
}
