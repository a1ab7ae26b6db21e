//! The basal dose profile over a day or a week.

use std::path::Path;

use plotters::prelude::*;
use thecal_protocol::prescription::Prescription;
use thecal_protocol::time::Weekday;
use thecal_protocol::units::{NanogramsPerDay, MINUTES_PER_DAY};

use super::{dose_label, title, with_backend, with_title, Area, DrawResult, PlotError, SIZE};
use crate::quantity;

/// The basal dose profile: one day (every day alike) or Monday–Sunday. The title is
/// `heading` (the pump and revision, or the file), the drug and its concentration.
pub fn plot_schedule(
    p: &Prescription,
    week: bool,
    heading: &str,
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
    let what = if week {
        "basal dose profile, Monday to Sunday"
    } else {
        "basal dose profile, every day"
    };
    let chart = Chart {
        title: title(heading, p, what),
        points,
        span,
        y_max,
        limit,
        week,
    };
    with_backend(out, SIZE, |a| chart.draw(a), |a| chart.draw(a))
}

struct Chart {
    title: String,
    points: Vec<(u32, u64)>,
    span: u32,
    y_max: u64,
    limit: u64,
    week: bool,
}

impl Chart {
    fn draw<DB: DrawingBackend>(&self, root: Area<'_, DB>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let area = with_title(&root, &self.title)?;
        let (day, span, week) = (u32::from(MINUTES_PER_DAY), self.span, self.week);
        let step = if week { day / 2 } else { 120 };
        let keys: Vec<u32> = (0..=span).step_by(step as usize).collect();
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            // The last time label is centred on the right end of the axis.
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d((0u32..span).with_key_points(keys), 0u64..self.y_max)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|m: &u32| {
                if week && m.is_multiple_of(day) && *m < span {
                    Weekday::from_index(m / day)
                        .name()
                        .get(..3)
                        .unwrap_or("")
                        .to_string()
                } else {
                    format!("{:02}:{:02}", (m % day) / 60, m % 60)
                }
            })
            .y_label_formatter(&dose_label)
            .y_desc("basal dose rate")
            .x_desc("patient's local time")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                self.points.iter().copied(),
                BLUE.stroke_width(2),
            ))?
            .label("basal dose rate")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        let limit_text = quantity::dose_rate(NanogramsPerDay(
            u32::try_from(self.limit).unwrap_or(u32::MAX),
        ));
        chart
            .draw_series(LineSeries::new(
                [(0, self.limit), (span, self.limit)],
                RED.stroke_width(1),
            ))?
            .label(format!("hard daily limit, boluses included ({limit_text})"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
        Ok(())
    }
}
