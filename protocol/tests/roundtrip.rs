//! Round-trip property tests: every message and record, encoded and decoded, comes back
//! equal; through a whole frame for `Request` and `Response`.

mod common;

use common::{annotate, arb, feed_all};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use thecal_protocol::frame::{decode_body, BodyError, FrameDecoder, Header};
use thecal_protocol::message::{PrescriptionRecord, Revision, Standing};
use thecal_protocol::prescription::TherapyMode;
use thecal_protocol::time::Timestamp;
use thecal_protocol::{Prescription, PrescriptionDraft, Request, Response};

/// Encodes `value` in a frame with `header`, decodes the frame and its body.
fn through_a_frame<T>(header: Header, value: &T) -> T
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    let wire = common::encode_frame(header, value);
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let out = feed_all(&mut decoder, &wire);
    let [Ok((h, body))] = &out[..] else {
        panic!("{value:?} decoded as {out:?}")
    };
    assert_eq!(*h, header);
    decode_body(body).unwrap()
}

/// postcard alone, plus the annotator's independent encoding of the same value.
fn plain<T>(value: &T) -> T
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    let bytes = postcard::to_stdvec(value).unwrap();
    assert_eq!(
        annotate::bytes(&annotate::annotate(value)),
        bytes,
        "{value:?}"
    );
    decode_body(&bytes).unwrap()
}

/// The body of `Response::Prescription` carrying `draft`, whether or not it is valid.
fn prescription_body(draft: &PrescriptionDraft) -> Vec<u8> {
    let tag = postcard::to_stdvec(&Response::Prescription(PrescriptionRecord {
        revision: Revision(1),
        written_at: Timestamp(0),
        prescription: common::morphine(),
        standing: Standing::default(),
    }))
    .unwrap()[0];
    let mut body = vec![tag];
    body.extend(
        postcard::to_stdvec(&(Revision(1), Timestamp(0), draft, Standing::default())).unwrap(),
    );
    body
}

/// Valid drafts, valid drafts with one field pushed to an arbitrary value (some still
/// valid, most just over a boundary), and arbitrary drafts.
fn near_valid_draft() -> impl Strategy<Value = PrescriptionDraft> {
    let perturbed = (arb::valid_prescription(), 0..6u8, any::<u32>(), 0..3u32).prop_map(
        |(p, field, value, scale)| {
            let mut d = p.draft().clone();
            // Small values probe the lower boundaries, full-range ones the upper.
            let v = match scale {
                0 => value % 64,
                1 => value % 50_000_000,
                _ => value,
            };
            match field {
                0 => d.concentration.0 = v,
                1 => d.daily_limit.0 = v,
                2 => d.low_reservoir_alarm.0 = v,
                3 => {
                    if let Some(b) = d.patient_bolus.as_mut() {
                        b.dose.0 = v;
                        b.max_per_day = (v % 30) as u8;
                    }
                }
                _ => match &mut d.mode {
                    TherapyMode::Flexible { days } => {
                        let n = days.len();
                        let day = &mut days[v as usize % n];
                        let i = (v as usize / 7) % day.len();
                        if field == 4 {
                            day[i].dose.0 = v;
                        } else {
                            day[i].start.0 = (v % 1_500) as u16;
                        }
                    }
                    TherapyMode::Continuous { dose } => dose.0 = v,
                    TherapyMode::Stopped => d.concentration.0 = v,
                },
            }
            d
        },
    );
    prop_oneof![
        arb::valid_prescription().prop_map(|p| p.draft().clone()),
        perturbed,
        arb::draft(),
    ]
}

/// The valid-prescription strategy reaches every mode and shape, so the properties that
/// use it are not vacuous.
#[test]
fn the_valid_prescription_strategy_covers_every_shape() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb::valid_prescription();
    let (mut stopped, mut continuous, mut daily, mut weekly, mut bolus, mut full_day) =
        (0, 0, 0, 0, 0, 0);
    for _ in 0..300 {
        let p = strategy.new_tree(&mut runner).unwrap().current();
        match &p.draft().mode {
            TherapyMode::Stopped => stopped += 1,
            TherapyMode::Continuous { .. } => continuous += 1,
            TherapyMode::Flexible { days } if days.len() == 1 => daily += 1,
            TherapyMode::Flexible { days } => {
                weekly += 1;
                full_day += usize::from(days.iter().any(|d| d.len() >= 12));
            }
        }
        bolus += usize::from(p.patient_bolus().is_some());
    }
    for (what, n) in [
        ("stopped", stopped),
        ("continuous", continuous),
        ("daily profile", daily),
        ("weekly profile", weekly),
        ("patient bolus", bolus),
        ("a day of 12+ steps", full_day),
    ] {
        assert!(n >= 10, "only {n} of 300 with {what}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip_through_a_frame(header in arb::header(), r in arb::request()) {
        // The tag kept in the event log is the wire tag.
        prop_assert_eq!(postcard::to_stdvec(&r).unwrap()[0], r.tag());
        prop_assert_eq!(through_a_frame(header, &r), r);
    }

    #[test]
    fn responses_round_trip_through_a_frame(header in arb::header(), r in arb::response()) {
        prop_assert_eq!(through_a_frame(header, &r), r);
    }
}

proptest! {
    #[test]
    fn drafts_round_trip(d in arb::draft()) {
        prop_assert_eq!(plain(&d), d);
    }

    #[test]
    fn valid_prescriptions_round_trip(p in arb::valid_prescription()) {
        prop_assert_eq!(plain(&p), p.clone());
        prop_assert_eq!(plain(p.draft()), p.draft().clone());
    }

    #[test]
    fn prescription_records_round_trip(r in arb::prescription_record()) {
        prop_assert_eq!(plain(&r), r);
    }

    #[test]
    fn schedule_errors_and_refusals_round_trip(e in arb::schedule_error(), r in arb::refusal()) {
        prop_assert_eq!(plain(&e), e);
        prop_assert_eq!(plain(&r), r);
        // The code kept in the event log is the wire tag.
        prop_assert_eq!(postcard::to_stdvec(&r).unwrap()[0], r.code());
    }

    #[test]
    fn log_records_round_trip(e in arb::event(), page in arb::log_page()) {
        prop_assert_eq!(plain(&e), e);
        prop_assert_eq!(plain(&page), page);
    }

    #[test]
    fn reports_round_trip(
        id in arb::identity(),
        status in arb::status_report(),
        battery in arb::battery_report(),
        reservoir in arb::reservoir_report(),
        bolus in arb::bolus_report(),
        alarm in arb::alarm_entry(),
        stats in arb::link_stats(),
    ) {
        prop_assert_eq!(plain(&id), id);
        prop_assert_eq!(plain(&status), status);
        prop_assert_eq!(plain(&battery), battery);
        prop_assert_eq!(plain(&reservoir), reservoir);
        prop_assert_eq!(plain(&bolus), bolus);
        prop_assert_eq!(plain(&alarm), alarm);
        prop_assert_eq!(plain(&stats), stats);
    }

    #[test]
    fn schedule_parts_round_trip(mode in arb::therapy_mode(), b in arb::bolus_request(), at in arb::at()) {
        prop_assert_eq!(plain(&mode), mode);
        prop_assert_eq!(plain(&b), b);
        prop_assert_eq!(plain(&at), at);
    }

    /// Any draft either is admitted — and then travels in a record — or is refused,
    /// and then a Prescription body carrying it does not decode: an unsound prescription
    /// cannot be smuggled in through the wire.
    #[test]
    fn only_admissible_drafts_decode_in_a_prescription_record(d in near_valid_draft()) {
        // A record read back from a pump is admitted (structure checked; a prescription
        // under review breaks a rule and still decodes); anything else is refused.
        let body = prescription_body(&d);
        match Prescription::admit(d.clone()) {
            Ok((p, _)) => {
                let decoded: Response = decode_body(&body).unwrap();
                let Response::Prescription(record) = decoded else { panic!("{decoded:?}") };
                prop_assert_eq!(record.prescription, p);
            }
            Err(_) => prop_assert_eq!(decode_body::<Response>(&body), Err(BodyError::Decode)),
        }
    }

    /// Whatever the bytes, decoding never panics; whatever decodes re-encodes to a value
    /// that decodes the same.
    #[test]
    fn arbitrary_bodies_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(r) = decode_body::<Request>(&bytes) {
            prop_assert_eq!(plain(&r), r);
        }
        if let Ok(r) = decode_body::<Response>(&bytes) {
            prop_assert_eq!(plain(&r), r);
        }
    }
}

#[test]
fn a_body_from_an_invalid_draft_is_rejected() {
    // The same bytes as a valid prescription, but with the concentration at 0.
    let valid = common::morphine_draft();
    assert!(decode_body::<Response>(&prescription_body(&valid)).is_ok());
    let invalid = PrescriptionDraft {
        concentration: thecal_protocol::units::NanogramsPerMillilitre(0),
        ..valid
    };
    assert_eq!(
        decode_body::<Response>(&prescription_body(&invalid)),
        Err(BodyError::Decode)
    );
}
