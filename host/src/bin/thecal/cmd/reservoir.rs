//! `thecal reservoir`

use thecal_host::quantity;
use thecal_host::view::{alarm_date, mark_date, ReservoirView};

use crate::out;
use crate::session::{Global, Session};

/// Reservoir report and alarm date.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_: Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let (st, t) = s.time().await?;
    let r = s.client.reservoir().await?;
    if g.json {
        return out::json(&ReservoirView::new(&r, &t));
    }
    let when = |at| mark_date(at, st.therapy, &t);
    let mut rows = vec![
        (
            "Volume",
            format!(
                "{} of {}",
                quantity::volume(r.volume),
                quantity::volume(r.capacity)
            ),
        ),
        (
            "Drug",
            format!("{} {}", r.drug, quantity::concentration(r.concentration)),
        ),
        (
            "Low-reservoir alarm",
            format!("at {}", quantity::volume(r.low_threshold)),
        ),
        (
            "Alarm date",
            match r.low_at {
                None => when(None),
                Some(_) => alarm_date(&r, &t),
            },
        ),
        ("Empty", when(r.empty_at)),
    ];
    if r.worst_low_at != r.low_at {
        rows.push(("Alarm date, every bolus taken", when(r.worst_low_at)));
        rows.push(("Empty, every bolus taken", when(r.worst_empty_at)));
    }
    rows.push((
        "Last refill",
        r.last_refill
            .map_or("not recorded".to_string(), |at| t.spelled(at)),
    ));
    out::fields(&rows)?;
    Ok(())
}
