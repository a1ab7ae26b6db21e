//! Units: how they print (programmers show these strings to clinicians) and the rounding
//! rules of docs/PROTOCOL.md section 4, checked as properties.

use proptest::prelude::*;
use thecal_protocol::frame::{EncodeError, FrameError};
use thecal_protocol::message::{AlarmKind, Refusal, Revision, Version};
use thecal_protocol::rules::{self, ScheduleError};
use thecal_protocol::time::{MinuteOfDay, Weekday};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
};

#[test]
fn volumes_print_in_millilitres() {
    assert_eq!(Nanolitres(0).to_string(), "0 mL");
    assert_eq!(Nanolitres(1).to_string(), "0.000001 mL");
    assert_eq!(Nanolitres(20_000).to_string(), "0.02 mL");
    assert_eq!(Nanolitres::from_ml(40).to_string(), "40 mL");
    assert_eq!(Nanolitres(31_250_000).to_string(), "31.25 mL");
    assert_eq!(Nanolitres(u32::MAX).to_string(), "4294.967295 mL");
}

#[test]
fn doses_print_in_micrograms() {
    assert_eq!(Nanograms(0).to_string(), "0 µg");
    assert_eq!(Nanograms(1).to_string(), "0.001 µg");
    assert_eq!(Nanograms(500).to_string(), "0.5 µg");
    assert_eq!(Nanograms::from_mg(15).to_string(), "15000 µg");
    assert_eq!(Nanograms(u32::MAX).to_string(), "4294967.295 µg");
}

#[test]
fn rates_and_concentrations_print_per_day_and_per_millilitre() {
    assert_eq!(NanogramsPerDay(19_200).to_string(), "19.2 µg/day");
    assert_eq!(NanogramsPerDay::from_ug(450).to_string(), "450 µg/day");
    assert_eq!(rules::MIN_FLOW.to_string(), "0.048 mL/day");
    assert_eq!(rules::MAX_FLOW.to_string(), "24 mL/day");
    assert_eq!(NanolitresPerDay(1).to_string(), "0.000001 mL/day");
    assert_eq!(
        NanogramsPerMillilitre::from_mg_per_ml(10).to_string(),
        "10000 µg/mL"
    );
    assert_eq!(NanogramsPerMillilitre(25_500).to_string(), "25.5 µg/mL");
    assert_eq!(Minutes(90).to_string(), "90 min");
}

#[test]
fn times_and_names_print_as_clinicians_read_them() {
    assert_eq!(MinuteOfDay::hm(7, 5).to_string(), "07:05");
    assert_eq!(MinuteOfDay(1_439).to_string(), "23:59");
    assert_eq!(MinuteOfDay::MIDNIGHT.to_string(), "00:00");
    assert_eq!(Weekday::from_index(8).to_string(), "Tuesday");
    assert_eq!(
        Version {
            major: 1,
            minor: 12,
            patch: 3
        }
        .to_string(),
        "1.12.3"
    );
    assert_eq!(
        AlarmKind::ElectiveReplacement.to_string(),
        "elective replacement indicator"
    );
}

#[test]
fn errors_explain_themselves() {
    let e = ScheduleError::ProfileDays { days: 3 };
    assert_eq!(
        Refusal::InvalidPrescription(e).to_string(),
        "prescription refused: a flexible schedule has 1 or 7 day profiles, not 3"
    );
    assert_eq!(
        Refusal::RevisionMismatch {
            expected: Revision(2),
            current: Revision(3)
        }
        .to_string(),
        "the prescription changed since it was read (read revision 2, now 3); read it again"
    );
    assert_eq!(
        Refusal::DailyLimit {
            delivered: Nanograms(5_900_000),
            requested: Nanograms(200_000),
            limit: NanogramsPerDay(6_000_000),
        }
        .to_string(),
        "200 µg would exceed the daily limit 6000 µg/day (5900 µg delivered in the last 24 h)"
    );
    assert_eq!(
        FrameError::Crc {
            received: 0x1234,
            computed: 0xABCD
        }
        .to_string(),
        "CRC mismatch: frame carries 0x1234, computed 0xabcd"
    );
    assert_eq!(FrameError::Kind(7).to_string(), "unknown frame kind 0x07");
    assert_eq!(
        EncodeError::BodyTooLarge.to_string(),
        "body exceeds 1024 bytes"
    );
}

const E6: u64 = 1_000_000;

proptest! {
    /// dose → volume is floor(ng × 10⁶ / c): never more volume than the exact value, and
    /// less than 1 nL short.
    #[test]
    fn dose_to_volume_rounds_down(ng in any::<u32>(), c in 1..=u32::MAX) {
        let exact_num = u64::from(ng) * E6; // exact volume × c
        match Nanograms(ng).to_volume(NanogramsPerMillilitre(c)) {
            Some(v) => {
                let v = u64::from(v.0);
                prop_assert!(v * u64::from(c) <= exact_num);
                prop_assert!((v + 1) * u64::from(c) > exact_num);
            }
            None => prop_assert!(exact_num / u64::from(c) > u64::from(u32::MAX)),
        }
    }

    /// volume → dose is floor(nL × c / 10⁶).
    #[test]
    fn volume_to_dose_rounds_down(nl in any::<u32>(), c in any::<u32>()) {
        let exact_num = u64::from(nl) * u64::from(c); // exact dose × 10⁶
        match Nanolitres(nl).to_dose(NanogramsPerMillilitre(c)) {
            Some(d) => {
                let d = u64::from(d.0);
                prop_assert!(d * E6 <= exact_num && (d + 1) * E6 > exact_num);
            }
            None => prop_assert!(exact_num / E6 > u64::from(u32::MAX)),
        }
    }

    /// A round trip through a volume never yields more drug than went in.
    #[test]
    fn converting_never_adds_drug(ng in any::<u32>(), c in 1..=u32::MAX) {
        let c = NanogramsPerMillilitre(c);
        if let Some(v) = Nanograms(ng).to_volume(c) {
            prop_assert!(v.to_dose(c).unwrap() <= Nanograms(ng));
        }
    }

    /// The rate conversion is the dose conversion per day.
    #[test]
    fn rate_to_flow_matches_dose_to_volume(ng in any::<u32>(), c in any::<u32>()) {
        let c = NanogramsPerMillilitre(c);
        prop_assert_eq!(
            NanogramsPerDay(ng).to_flow(c).map(|f| f.0),
            Nanograms(ng).to_volume(c).map(|v| v.0)
        );
    }

    /// Dose over an interval is floor(rate × minutes / 1440), saturating, never more.
    #[test]
    fn dose_over_minutes_rounds_down(rate in any::<u32>(), minutes in 0u32..=20_160) {
        let exact_num = u64::from(rate) * u64::from(minutes);
        let got = u64::from(NanogramsPerDay(rate).over_minutes(minutes).0);
        prop_assert!(got * 1_440 <= exact_num);
        if exact_num / 1_440 <= u64::from(u32::MAX) {
            prop_assert!((got + 1) * 1_440 > exact_num);
        }
    }

    /// The minimum-flow dose is rounded up, since it is compared against limits.
    #[test]
    fn minimum_flow_dose_rounds_up(c in any::<u32>()) {
        let exact_num = u64::from(rules::MIN_FLOW.0) * u64::from(c);
        let d = u64::from(rules::min_flow_dose(NanogramsPerMillilitre(c)).0);
        prop_assert!(d * E6 >= exact_num && (d == 0 || (d - 1) * E6 < exact_num));
    }
}
