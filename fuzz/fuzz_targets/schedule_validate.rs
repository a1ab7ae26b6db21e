//! `schedule_validate`: prescription drafts through `Prescription::new`.
//!
//! Input: byte 0 even → the rest is a postcard-encoded `PrescriptionDraft` (seeds come
//! from the PROTOCOL.md vectors); odd → the rest drives a structure-aware draft
//! (`thecal_fuzz::schedule::draft`). Anything accepted meets every hard limit, checked
//! independently (`check_accepted`), round-trips through postcard both as a prescription
//! and as a draft, fits a `WritePrescription` frame, and projects without panicking;
//! anything refused has a message and does not decode as a `Prescription` either.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use thecal_fuzz::schedule::{check_accepted, draft};
use thecal_protocol::frame::{encode, Header, MAX_WIRE};
use thecal_protocol::message::{AlarmKind, Revision, TherapyState};
use thecal_protocol::prescription::{Prescription, PrescriptionDraft};
use thecal_protocol::projection::{project, ReservoirState, STROKE_UNITS};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::Nanolitres;
use thecal_protocol::Request;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let candidate = if mode & 1 == 0 {
        postcard::from_bytes::<PrescriptionDraft>(rest).ok()
    } else {
        draft(&mut Unstructured::new(rest)).ok()
    };
    let Some(candidate) = candidate else {
        return;
    };
    let bytes = postcard::to_stdvec(&candidate).unwrap();
    match Prescription::new(candidate.clone()) {
        Err(e) => {
            let _ = e.to_string();
            assert!(postcard::from_bytes::<Prescription>(&bytes).is_err());
        }
        Ok(p) => {
            if let Err(why) = check_accepted(&p) {
                panic!("accepted a prescription that breaks a hard limit: {why}\n{candidate:#?}");
            }
            assert_eq!(postcard::to_stdvec(&p).unwrap(), bytes);
            assert_eq!(postcard::from_bytes::<Prescription>(&bytes).unwrap(), p);
            assert_eq!(
                postcard::from_bytes::<PrescriptionDraft>(&bytes).unwrap(),
                candidate
            );
            let write = Request::WritePrescription {
                expected: Revision(u32::from(mode)),
                prescription: candidate,
            };
            let mut wire = vec![0u8; MAX_WIRE];
            encode(Header::request(1), &write, &mut wire).expect("fits a frame");
            let volume = Nanolitres(u32::from_le_bytes([mode, mode, 0, 0]) * 611);
            let state = ReservoirState {
                volume,
                now: Timestamp(1_795_392_000_000 + u64::from(mode) * 3_600_000),
                offset: UtcOffset(i16::from(mode as i8) * 5),
                therapy: match mode & 6 {
                    2 => TherapyState::Stopped,
                    4 => TherapyState::Halted(AlarmKind::MotorStall),
                    _ => TherapyState::Running,
                },
                carry: u64::from(mode).wrapping_mul(0x9E37_79B9) % STROKE_UNITS,
                bolus: None,
            };
            let j = project(&p, state);
            for (low, empty) in [(j.low_at, j.empty_at), (j.worst_low_at, j.worst_empty_at)] {
                if let (Some(low), Some(empty)) = (low, empty) {
                    assert!(low <= empty, "low after empty: {j:?}");
                }
                assert!(low.is_some() || empty.is_none(), "empty without low: {j:?}");
            }
        }
    }
});
