//! What stops a clinician bolus, said specifically and with its limit, before it is
//! sent (the pump answers all of these with one refusal).

use thecal_protocol::message::BolusRequest;
use thecal_protocol::projection::STROKE_NL;
use thecal_protocol::units::{Minutes, NanogramsPerMillilitre, Nanolitres, MS_PER_DAY};

use crate::quantity;
use thecal_protocol::rules::{MAX_BOLUS_DURATION, MAX_BOLUS_FLOW};

/// The volume of `request` at `concentration` (`None`: a dose too large to hold).
pub fn bolus_volume(
    request: &BolusRequest,
    concentration: NanogramsPerMillilitre,
) -> Option<Nanolitres> {
    match *request {
        BolusRequest::Single { dose, .. } => dose.to_volume(concentration),
        BolusRequest::Priming { volume, .. } | BolusRequest::Bridge { volume, .. } => Some(volume),
    }
}

fn duration_of(request: &BolusRequest) -> Minutes {
    match *request {
        BolusRequest::Single { duration, .. }
        | BolusRequest::Priming { duration, .. }
        | BolusRequest::Bridge { duration, .. } => duration,
    }
}

/// Why the pump cannot give `request` at `concentration`, with the limit it breaks;
/// `None` when the pump's bolus limits allow it (the daily limit is the pump's to check).
pub fn bolus_problem(
    request: &BolusRequest,
    concentration: NanogramsPerMillilitre,
) -> Option<String> {
    let duration = duration_of(request);
    let Some(volume) = bolus_volume(request, concentration) else {
        return Some(format!(
            "the dose is too large for the reservoir at {}",
            quantity::concentration(concentration)
        ));
    };
    if volume.0 < STROKE_NL {
        let least = Nanolitres(STROKE_NL);
        let dose = match least.to_dose(concentration) {
            Some(d) if matches!(request, BolusRequest::Single { .. }) => {
                format!(
                    ", {} at {}",
                    quantity::dose(d),
                    quantity::concentration(concentration)
                )
            }
            _ => String::new(),
        };
        return Some(format!(
            "the bolus is {}, less than one pump stroke: the smallest bolus is {}{dose}",
            quantity::volume(volume),
            quantity::volume(least)
        ));
    }
    if duration.0 == 0 {
        return Some("the bolus duration is 0 min: give it over 1 min or more".to_string());
    }
    if duration > MAX_BOLUS_DURATION {
        return Some(format!(
            "the bolus lasts {}, longer than the pump's longest bolus, {}",
            quantity::duration(duration),
            quantity::duration(MAX_BOLUS_DURATION)
        ));
    }
    // As the pump counts it: whole strokes over the duration, in nL/day.
    let whole = u64::from(volume.0 / STROKE_NL) * u64::from(STROKE_NL);
    let flow = whole * MS_PER_DAY / duration.as_ms();
    if flow > u64::from(MAX_BOLUS_FLOW.0) {
        let shortest = (whole * MS_PER_DAY).div_ceil(u64::from(MAX_BOLUS_FLOW.0));
        let minutes = shortest.div_ceil(60_000);
        return Some(format!(
            "{} over {} is faster than the pump's fastest bolus flow, {}: give it over {} \
             or more",
            quantity::volume(volume),
            quantity::duration(duration),
            quantity::flow(MAX_BOLUS_FLOW),
            quantity::duration(Minutes(u16::try_from(minutes).unwrap_or(u16::MAX)))
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_protocol::units::Nanograms;

    const C: NanogramsPerMillilitre = NanogramsPerMillilitre(500_000);

    fn priming(nl: u32, min: u16) -> BolusRequest {
        BolusRequest::Priming {
            volume: Nanolitres(nl),
            duration: Minutes(min),
        }
    }

    #[test]
    fn each_cause_is_named_with_its_limit() {
        let small = bolus_problem(&priming(100, 10), C).unwrap_or_default();
        assert!(small.contains("less than one pump stroke"), "{small}");
        assert!(small.contains("0.00025 mL"), "{small}");
        let zero = bolus_problem(&priming(100_000, 0), C).unwrap_or_default();
        assert!(zero.contains("0 min"), "{zero}");
        let long = bolus_problem(&priming(1_000_000, 25 * 60), C).unwrap_or_default();
        assert!(
            long.contains("longer than the pump's longest bolus"),
            "{long}"
        );
        let fast = bolus_problem(&priming(10_000_000, 1), C).unwrap_or_default();
        assert!(
            fast.contains("faster than the pump's fastest bolus flow"),
            "{fast}"
        );
        assert!(fast.contains("over 4 h"), "{fast}");
        // 10 mL at 60 mL/day takes exactly 4 h: allowed.
        assert_eq!(bolus_problem(&priming(10_000_000, 240), C), None);
        let single = BolusRequest::Single {
            dose: Nanograms(50_000),
            duration: Minutes(30),
        };
        assert_eq!(bolus_problem(&single, C), None);
    }
}
