//! The projected reservoir volume: the basal curve and the worst case (every allowed
//! patient bolus taken), their low-reservoir and empty dates, the pump's clock, and a
//! halted pump drawn flat.

use std::path::Path;

use plotters::prelude::*;
use thecal_protocol::message::{AlarmKind, TherapyState};
use thecal_protocol::prescription::Prescription;
use thecal_protocol::projection::{project, Projection, ReservoirState, HORIZON_DAYS};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Nanolitres, MS_PER_DAY};

use super::layout::{Layout, Rect};
use super::{
    draw_legend, font, text_size, title, with_backend, with_title, Area, DrawResult, PlotError,
    SIZE,
};
use crate::{clock, quantity};

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
/// to empty, so every point comes from [`thecal_protocol::projection::project`]. The
/// low-reservoir and empty points are the projection's own dates (the ones the CLI
/// prints), so the marks sit on the curve.
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
    let marks = project(p, state);
    let curve = |worst: bool| {
        let (low_at, empty_at) = if worst {
            (marks.worst_low_at, marks.worst_empty_at)
        } else {
            (marks.low_at, marks.empty_at)
        };
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
            let at = match *level {
                0 => empty_at,
                l if l == u64::from(low.0) && l < v => low_at,
                _ if worst => proj.worst_empty_at,
                _ => proj.empty_at,
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
pub(super) const HALTED_SPAN_MS: u64 = 7 * MS_PER_DAY;

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

/// The projected reservoir volume from the pump's clock (`state.now`, marked "now") to
/// the low-reservoir and empty marks, on the basal schedule and with every allowed
/// patient bolus; each mark labelled with its date. For a pump whose delivery is
/// `halted`, a flat line labelled `halted: <alarm>` and no dates (nothing drains). The
/// x axis has a tick at each local midnight (every few days on a long span), labelled
/// with the date. The title is `heading`, the drug and its concentration.
pub fn plot_reservoir(
    p: &Prescription,
    state: ReservoirState,
    halted: Option<Halt>,
    heading: &str,
    out: &Path,
) -> Result<(), PlotError> {
    let (curve, marks) = match halted {
        Some(_) => (halted_curve(p, state), Projection::default()),
        None => (reservoir_curve(p, state), project(p, state)),
    };
    let bolus = halted.is_none() && p.patient_bolus().is_some();
    let last = |c: &[(u64, Nanolitres)]| c.last().map_or(0, |(t, _)| *t);
    let end = last(&curve.basal).max(last(&curve.worst)).max(MS_PER_DAY);
    let end = i64::try_from(end + end / 20).unwrap_or(i64::MAX);
    // The axis runs from the local midnight before now to the one after the end.
    let day = i64::try_from(MS_PER_DAY).unwrap_or(i64::MAX);
    let since_midnight = i64::try_from(state.now.0)
        .unwrap_or(0)
        .saturating_add(i64::from(state.offset.0) * 60_000)
        .rem_euclid(day);
    let start = -since_midnight;
    let days = (end - start).div_euclid(day) + 1;
    let stride = [1, 2, 3, 7, 14, 28, 56, 91]
        .into_iter()
        .find(|k| days / k <= 10)
        .unwrap_or(182);
    let midnights: Vec<i64> = (0..=days).map(|d| start + d * day).collect();
    let chart = Chart {
        title: title(heading, p, "projected reservoir volume"),
        state,
        halted,
        bolus,
        marks,
        curve,
        x: start..start + days * day,
        ticks: midnights.iter().copied().step_by(stride as usize).collect(),
        light: if days <= 120 { midnights } else { Vec::new() },
        y_max: u64::from(state.volume.0).max(u64::from(p.low_reservoir_alarm().0)) * 11 / 10 + 1,
    };
    with_backend(out, SIZE, |a| chart.draw(a), |a| chart.draw(a))
}

struct Chart {
    title: String,
    state: ReservoirState,
    halted: Option<Halt>,
    /// The patient may take boluses: the worst case differs.
    bolus: bool,
    marks: Projection,
    curve: ReservoirCurve,
    /// ms relative to now.
    x: std::ops::Range<i64>,
    ticks: Vec<i64>,
    light: Vec<i64>,
    y_max: u64,
}

const WORST: RGBColor = RGBColor(200, 0, 160);
const NOW: RGBColor = RGBColor(0, 130, 0);

/// A mark on a curve and its label.
struct Mark {
    at: i64,
    level: u64,
    color: RGBColor,
    lines: Vec<String>,
}

impl Chart {
    fn spelled(&self, t: Timestamp) -> String {
        clock::spelled(t, self.state.offset)
    }

    fn date(&self, ms: i64) -> Timestamp {
        let now = self.state.now.0;
        Timestamp(if ms >= 0 {
            now.saturating_add(ms.unsigned_abs())
        } else {
            now.saturating_sub(ms.unsigned_abs())
        })
    }

    fn points(c: &[(u64, Nanolitres)]) -> Vec<(i64, u64)> {
        c.iter()
            .map(|(t, v)| (i64::try_from(*t).unwrap_or(i64::MAX), u64::from(v.0)))
            .collect()
    }

    /// The low and empty marks, basal and (if it differs) worst case.
    fn marks(&self) -> Vec<Mark> {
        let mut out = Vec::new();
        if self.halted.is_some() {
            return out;
        }
        let low = u64::from(self.curve.low.0);
        let m = &self.marks;
        let worst_differs = |w: Option<Timestamp>, b: Option<Timestamp>| self.bolus && w != b;
        let entries = [
            (m.low_at, low, BLUE, "low-reservoir alarm", true),
            (m.empty_at, 0, BLUE, "empty", true),
            (
                m.worst_low_at,
                low,
                WORST,
                "low, every bolus taken",
                worst_differs(m.worst_low_at, m.low_at),
            ),
            (
                m.worst_empty_at,
                0,
                WORST,
                "empty, every bolus taken",
                worst_differs(m.worst_empty_at, m.empty_at),
            ),
        ];
        for (at, level, color, what, shown) in entries {
            let Some(at) = at.filter(|_| shown) else {
                continue;
            };
            // A mark already reached sits on the curve, at the volume now.
            let (when, level) = if at <= self.state.now {
                (
                    "reached now".to_string(),
                    level.min(u64::from(self.state.volume.0)),
                )
            } else {
                (self.spelled(at), level)
            };
            out.push(Mark {
                at: i64::try_from(at.since(self.state.now)).unwrap_or(i64::MAX),
                level,
                color,
                lines: vec![format!("{what}:"), when],
            });
        }
        out
    }

    fn draw<DB: DrawingBackend>(&self, root: Area<'_, DB>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let area = with_title(&root, &self.title)?;
        // The date of each tick; the year on the first and where it changes.
        let mut year = None;
        let tick_texts: Vec<(i64, String)> = self
            .ticks
            .iter()
            .map(|ms| {
                let text =
                    clock::zoned(self.date(*ms), self.state.offset).map_or_else(String::new, |z| {
                        let format = if year == Some(z.year()) {
                            "%-d %b"
                        } else {
                            "%-d %b %Y"
                        };
                        year = Some(z.year());
                        z.strftime(format).to_string()
                    });
                (*ms, text)
            })
            .collect();
        let tick_label = |ms: &i64| {
            tick_texts
                .iter()
                .find(|(t, _)| t == ms)
                .map_or(String::new(), |(_, text)| text.clone())
        };
        let x = self
            .x
            .clone()
            .with_key_points(self.ticks.clone())
            .with_light_points(self.light.clone());
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .margin_right(48)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(x, 0u64..self.y_max)?;
        chart
            .configure_mesh()
            .x_label_formatter(&tick_label)
            .y_label_formatter(&|nl: &u64| {
                quantity::volume(Nanolitres(u32::try_from(*nl).unwrap_or(u32::MAX)))
            })
            .y_desc("reservoir volume")
            .x_desc(format!(
                "date (ticks at midnight, patient's local time, UTC{})",
                clock::fmt_offset(self.state.offset)
            ))
            .draw()?;
        let plot = chart.plotting_area();
        let px = |p: (i64, u64)| plot.map_coordinate(&p);
        let (xr, yr) = plot.get_pixel_range();
        let mut layout = Layout::new(Rect {
            x0: xr.start + 4,
            y0: yr.start + 4,
            x1: xr.end - 4,
            y1: yr.end - 4,
        });
        let low = u64::from(self.curve.low.0);
        let low_line = [(self.x.start, low), (self.x.end, low)];
        plot.draw(&PathElement::new(low_line, RED))?;
        layout.avoid_line(&low_line.map(px));
        // Now: the pump's clock when it was read.
        let now_line = [(0, 0), (0, self.y_max)];
        let dash = (self.y_max / 40).max(1);
        for k in (0..40).step_by(2) {
            plot.draw(&PathElement::new(
                [(0, k * dash), (0, (k + 1) * dash)],
                NOW.stroke_width(2),
            ))?;
        }
        layout.avoid_line(&now_line.map(px));
        let basal = Self::points(&self.curve.basal);
        let mut legend: Vec<(RGBColor, u32, String)> = Vec::new();
        if let Some(h) = self.halted {
            plot.draw(&PathElement::new(basal.clone(), RED.stroke_width(3)))?;
            let since = h
                .since
                .map_or(String::new(), |t| format!(" since {}", self.spelled(t)));
            legend.push((
                RED,
                3,
                format!(
                    "DELIVERY HALTED by the {} alarm{since}: nothing is delivered",
                    h.by
                ),
            ));
        } else {
            if self.bolus {
                let worst = Self::points(&self.curve.worst);
                plot.draw(&PathElement::new(worst.clone(), WORST.stroke_width(2)))?;
                layout.avoid_line(&worst.iter().copied().map(px).collect::<Vec<_>>());
                legend.push((WORST, 2, "every allowed patient bolus taken".into()));
            }
            plot.draw(&PathElement::new(basal.clone(), BLUE.stroke_width(2)))?;
            legend.insert(0, (BLUE, 2, "basal schedule".into()));
        }
        layout.avoid_line(&basal.iter().copied().map(px).collect::<Vec<_>>());
        legend.push((
            RED,
            1,
            format!(
                "low-reservoir alarm threshold ({})",
                quantity::volume(self.curve.low)
            ),
        ));
        legend.push((NOW, 2, "now (pump clock at reading)".into()));
        if self.halted.is_none() {
            if self.state.therapy == TherapyState::Stopped {
                legend.push((
                    BLACK,
                    0,
                    "therapy stopped by a clinician: minimum flow only".into(),
                ));
            }
            let horizon = format!("not within the {HORIZON_DAYS}-day projection");
            if self.marks.low_at.is_none() {
                legend.push((BLUE, 0, format!("low-reservoir alarm: {horizon}")));
            }
            if self.marks.empty_at.is_none() {
                legend.push((BLUE, 0, format!("empty: {horizon}")));
            }
        }
        let marks = self.marks();
        for m in &marks {
            let c = px((m.at, m.level));
            plot.draw(&Circle::new((m.at, m.level), 5, m.color.filled()))?;
            layout.avoid(Rect::at((c.0 - 6, c.1 - 6), (12, 12)));
        }
        let screen = root.clone();
        let label = |layout: &mut Layout,
                     lines: &[String],
                     color: RGBColor,
                     near: (i32, i32),
                     candidates: &[(i32, i32)]|
         -> DrawResult {
            let style = font(14).color(&color);
            let mut w = 0;
            let mut h = 0;
            for l in lines {
                let (lw, lh) = text_size(&screen, l, &style)?;
                w = w.max(lw);
                h += lh.max(14) + 2;
            }
            let cands: Vec<(i32, i32)> = candidates
                .iter()
                .map(|(dx, dy)| {
                    (
                        near.0 + if *dx < 0 { dx - w } else { *dx },
                        near.1 + if *dy < 0 { dy - h } else { *dy },
                    )
                })
                .collect();
            let (x, mut y) = layout.place((w, h), &cands);
            // A leader from the mark to the nearest point of a label set apart from it.
            let nearest = (near.0.clamp(x, x + w), near.1.clamp(y, y + h));
            let (dx, dy) = (nearest.0 - near.0, nearest.1 - near.1);
            if dx * dx + dy * dy > 20 * 20 {
                screen.draw(&PathElement::new(vec![near, nearest], color.mix(0.6)))?;
            }
            // Kept readable over the grid.
            screen.draw(&Rectangle::new(
                [(x - 2, y - 1), (x + w + 2, y + h)],
                WHITE.mix(0.85).filled(),
            ))?;
            for l in lines {
                screen.draw(&Text::new(l.clone(), (x, y), style.clone()))?;
                y += text_size(&screen, l, &style)?.1.max(14) + 2;
            }
            Ok(())
        };
        // Right or left of a mark, above or below, then further out.
        let around = [
            (8, -8),
            (-8, -8),
            (8, 8),
            (-8, 8),
            (8, -48),
            (-8, -48),
            (8, -88),
            (-8, -88),
            (-8, -128),
            (8, -128),
        ];
        for m in &marks {
            label(&mut layout, &m.lines, m.color, px((m.at, m.level)), &around)?;
        }
        let now = px((0, self.y_max));
        let now_text = vec![format!("now: {}", self.spelled(self.state.now))];
        label(
            &mut layout,
            &now_text,
            NOW,
            now,
            &[(6, 4), (-6, 4), (6, 40), (-6, 40)],
        )?;
        if let Some(h) = self.halted {
            let start = px((0, u64::from(self.state.volume.0)));
            label(
                &mut layout,
                &[format!("halted: {}", h.by), "no projected drain".into()],
                RED,
                start,
                &[(40, 8), (40, -8), (200, 8), (200, -8)],
            )?;
        }
        draw_legend(&screen, &mut layout, &legend, (xr, yr))?;
        root.present()?;
        Ok(())
    }
}
