//! The client library against the simulated pump behind a real pty.

mod common;

use std::time::Duration;

use common::{connect, port, sim};
use thecal_host::error::{ReadBack, UncertainCause};
use thecal_host::{schedule, serial, Client, ClientConfig, Error};
use thecal_protocol::message::{AlarmKind, BolusKind, BolusRequest, Refusal, Revision};
use thecal_protocol::prescription::{PrescriptionDraft, TherapyMode};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{
    Minutes, Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres,
};
use thecal_protocol::{Request, Response};
use tokio_serial::SerialStream;

#[tokio::test]
async fn every_read_request_is_answered() {
    let sim = sim();
    let mut c = connect(&sim).await;
    let id = c.identify().await.unwrap();
    assert_eq!(id.protocol, thecal_protocol::PROTOCOL_VERSION);
    let status = c.status().await.unwrap();
    let battery = c.battery().await.unwrap();
    assert!(battery.percent <= 100);
    let reservoir = c.reservoir().await.unwrap();
    assert_eq!(reservoir.volume, status.reservoir);
    let record = c.prescription().await.unwrap();
    assert_eq!(record.revision, status.revision);
    let page = c.log_page(0, 8).await.unwrap();
    assert!(page.next >= page.oldest);
    c.alarms().await.unwrap();
    c.ping().await.unwrap();
    let link = c.link_stats().await.unwrap();
    assert!(link.frames_in >= 9, "{link:?}");
    drop(c);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn every_example_schedule_is_written_and_read_back() {
    // Each example on a fresh pump holding the demo prescription (baclofen 500 µg/mL):
    // the same drug and concentration is a prescription write; another drug or
    // concentration goes with a refill, as the whole prescription for the new solution.
    let (mut written, mut refilled) = (0, 0);
    for file in common::examples() {
        let sim = sim();
        let mut c = connect(&sim).await;
        let p = schedule::load(&file).unwrap();
        let before = c.prescription().await.unwrap();
        let same_solution = p.drug() == before.prescription.drug()
            && p.concentration() == before.prescription.concentration();
        let record = if same_solution {
            written += 1;
            c.write_and_verify(p.draft().clone(), before.revision)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        } else {
            refilled += 1;
            let (record, reservoir) = c
                .refill_and_verify(before.revision, Nanolitres::from_ml(20), p.draft().clone())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(reservoir.volume, Nanolitres::from_ml(20));
            assert_eq!(reservoir.drug, p.drug(), "{}", file.display());
            assert_eq!(reservoir.concentration, p.concentration());
            record
        };
        assert_eq!(record.revision, Revision(before.revision.0 + 1));
        let read = c.prescription().await.unwrap();
        assert_eq!(read.prescription, p, "{}", file.display());
        let status = c.status().await.unwrap();
        assert_eq!(status.revision, record.revision);
        assert_eq!(status.drug, p.drug());
        drop(c);
        sim.shutdown().unwrap();
    }
    assert!(written >= 1 && refilled >= 1, "{written} {refilled}");
}

#[tokio::test]
async fn refill_with_a_new_drug_stores_its_prescription_as_the_next_revision() {
    let sim = sim();
    let mut c = connect(&sim).await;
    let before = c.prescription().await.unwrap();
    let ziconotide = schedule::load(&common::example("weekday-ziconotide.toml")).unwrap();
    // The plain refill API with a prescription: new revision, new drug in the reservoir.
    let (revision, reservoir) = c
        .refill(
            before.revision,
            Nanolitres::from_ml(18),
            Some(ziconotide.draft().clone()),
        )
        .await
        .unwrap();
    assert_eq!(revision, Revision(before.revision.0 + 1));
    assert_eq!(reservoir.volume, Nanolitres::from_ml(18));
    assert_eq!(reservoir.drug, ziconotide.drug());
    assert_eq!(reservoir.concentration, ziconotide.concentration());
    let now = c.prescription().await.unwrap();
    assert_eq!(now.revision, revision);
    assert_eq!(now.prescription, ziconotide);
    // A refill with the revision read before is refused and changes nothing.
    let morphine = schedule::load(&common::example("continuous-morphine.toml")).unwrap();
    let e = c
        .refill(
            before.revision,
            Nanolitres::from_ml(20),
            Some(morphine.draft().clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.refusal(),
        Some(&Refusal::RevisionMismatch {
            expected: before.revision,
            current: revision
        }),
        "{e:?}"
    );
    // An invalid prescription is not sent at all (the pump's frame counter shows it).
    let frames = c.link_stats().await.unwrap().frames_in;
    let mut bad = morphine.draft().clone();
    bad.daily_limit = NanogramsPerDay::from_mg(1); // below the 3 mg/day rate
    let e = c
        .refill(revision, Nanolitres::from_ml(20), Some(bad))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    assert_eq!(c.link_stats().await.unwrap().frames_in, frames + 1);
    assert_eq!(c.prescription().await.unwrap(), now);
    assert_eq!(c.reservoir().await.unwrap().drug, ziconotide.drug());
    drop(c);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn pump_refuses_a_drug_or_concentration_change_by_prescription_write() {
    // Baclofen in force at 500 µg/mL; the same prescription at 1000 µg/mL (valid in
    // itself) must not go in without a refill, whoever sends it.
    let sim = sim();
    let mut c = connect(&sim).await;
    let before = c.prescription().await.unwrap();
    let mut stronger: PrescriptionDraft = before.prescription.draft().clone();
    stronger.concentration = NanogramsPerMillilitre(before.prescription.concentration().0 * 2);
    thecal_protocol::Prescription::new(stronger.clone()).expect("valid on its own");
    // Through the library: the pump's refusal, with its reason.
    let e = c
        .write_prescription(stronger.clone(), before.revision)
        .await
        .unwrap_err();
    assert_eq!(e.refusal(), Some(&Refusal::DrugChangeNeedsRefill), "{e:?}");
    assert!(e.to_string().contains("refill"), "{e}");
    // Sent as it is, without the client's checks: the same refusal, for another drug too.
    let morphine = schedule::load(&common::example("continuous-morphine.toml")).unwrap();
    for draft in [stronger, morphine.draft().clone()] {
        let answer = c
            .send_unchecked(&Request::WritePrescription {
                expected: before.revision,
                prescription: draft,
            })
            .await
            .unwrap();
        assert_eq!(
            answer,
            Response::Refused(Refusal::DrugChangeNeedsRefill),
            "{answer:?}"
        );
    }
    assert_eq!(c.prescription().await.unwrap(), before, "nothing changed");
    let reservoir = c.reservoir().await.unwrap();
    assert_eq!(reservoir.concentration, before.prescription.concentration());
    drop(c);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn pump_refuses_out_of_limit_prescriptions_on_its_own() {
    // The programmer never sends these (the client validates first); the firmware must
    // refuse them anyway, and keep the prescription it has.
    let sim = sim();
    let mut c = connect(&sim).await;
    let before = c.prescription().await.unwrap();
    let good = schedule::load(&common::example("continuous-morphine.toml")).unwrap();
    let mut over_rate: PrescriptionDraft = good.draft().clone();
    over_rate.mode = TherapyMode::Continuous {
        dose: NanogramsPerDay::from_mg(8),
    };
    let mut over_ceiling = good.draft().clone();
    over_ceiling.daily_limit = NanogramsPerDay::from_mg(20);
    over_ceiling.mode = TherapyMode::Continuous {
        dose: NanogramsPerDay::from_mg(18),
    };
    // The client refuses to send them.
    for draft in [&over_rate, &over_ceiling] {
        let e = c
            .write_prescription(draft.clone(), before.revision)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    }
    // Sent as they are, inside the session: the pump refuses them on its own.
    for draft in [over_rate, over_ceiling] {
        let answer = c
            .send_unchecked(&Request::WritePrescription {
                expected: before.revision,
                prescription: draft,
            })
            .await
            .unwrap();
        assert!(
            matches!(answer, Response::Refused(Refusal::InvalidPrescription(_))),
            "{answer:?}"
        );
    }
    let after = c.prescription().await.unwrap();
    assert_eq!(after, before, "a refused write changes nothing");
    drop(c);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn two_programmers_racing_a_write_one_gets_a_revision_refusal() {
    let sim = sim();
    let a_file = schedule::load(&common::example("flexible-baclofen-day.toml")).unwrap();
    let b_file = schedule::load(&common::example("continuous-morphine.toml")).unwrap();
    // Both programmers read the same revision (each opens the port in turn: it is
    // opened exclusively)…
    let mut a = connect(&sim).await;
    let read_a = a.prescription().await.unwrap().revision;
    drop(a);
    let mut b = connect(&sim).await;
    let read_b = b.prescription().await.unwrap().revision;
    drop(b);
    assert_eq!(read_a, read_b);
    // …A writes first, then B writes with the revision it read.
    let mut a = connect(&sim).await;
    let written = a
        .write_and_verify(a_file.draft().clone(), read_a)
        .await
        .unwrap();
    drop(a);
    let mut b = connect(&sim).await;
    let e = b
        .write_prescription(b_file.draft().clone(), read_b)
        .await
        .unwrap_err();
    assert_eq!(
        e.refusal(),
        Some(&Refusal::RevisionMismatch {
            expected: read_b,
            current: written.revision
        }),
        "{e:?}"
    );
    assert!(e.to_string().contains("read it again"), "{e}");
    // A's prescription is the one in force.
    let now = b.prescription().await.unwrap();
    assert_eq!(now.revision, written.revision);
    assert_eq!(now.prescription, a_file);
    drop(b);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn therapy_changes_through_the_client() {
    let sim = sim();
    let mut c = connect(&sim).await;
    let rev = c.prescription().await.unwrap().revision;
    // Refill down to 1 mL: below the 2 mL alarm threshold.
    let (_, reservoir) = c.refill(rev, Nanolitres::from_ml(1), None).await.unwrap();
    assert_eq!(reservoir.volume, Nanolitres::from_ml(1));
    let alarms = c.alarms().await.unwrap();
    assert!(
        alarms.iter().any(|a| a.kind == AlarmKind::LowReservoir),
        "{alarms:?}"
    );
    c.acknowledge(AlarmKind::LowReservoir).await.unwrap();
    assert!(c
        .alarms()
        .await
        .unwrap()
        .iter()
        .any(|a| a.kind == AlarmKind::LowReservoir && a.acknowledged));
    let (_, reservoir) = c.refill(rev, Nanolitres::from_ml(20), None).await.unwrap();
    assert_eq!(reservoir.volume, Nanolitres::from_ml(20));
    // The demo prescription allows patient boluses; a second one at once is refused
    // (lockout or bolus running), with the reason.
    let patient = c.patient_bolus().await.unwrap();
    assert_eq!(patient.kind, BolusKind::Patient);
    let e = c.patient_bolus().await.unwrap_err();
    assert!(e.refusal().is_some(), "{e:?}");
    // Stop cancels the bolus; resume restores the prescription.
    c.stop().await.unwrap();
    let status = c.status().await.unwrap();
    assert_eq!(
        status.therapy,
        thecal_protocol::message::TherapyState::Stopped
    );
    assert_eq!(status.bolus, None);
    c.resume().await.unwrap();
    let status = c.status().await.unwrap();
    assert_eq!(
        status.therapy,
        thecal_protocol::message::TherapyState::Running
    );
    let single = BolusRequest::Single {
        dose: Nanograms::from_ug(10),
        duration: Minutes(30),
    };
    let bolus = c.bolus(single).await.unwrap();
    assert_eq!(bolus.kind, BolusKind::Single);
    assert_eq!(bolus.dose, Nanograms::from_ug(10));
    // A second bolus while one runs is refused, with the reason.
    let e = c.bolus(single).await.unwrap_err();
    assert_eq!(e.refusal(), Some(&Refusal::BolusInProgress), "{e:?}");
    let now = Timestamp(1_800_000_000_000);
    c.set_clock(now, UtcOffset(60)).await.unwrap();
    let status = c.status().await.unwrap();
    assert_eq!(status.offset, UtcOffset(60));
    assert!(
        status.now >= now && status.now.since(now) < 60_000,
        "{status:?}"
    );
    drop(c);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn silent_device_gives_a_clear_error_within_the_timeout() {
    // A pty pair nobody serves: the programmer's requests go nowhere.
    let (ours, _nobody) = SerialStream::pair().unwrap();
    let config = ClientConfig {
        timeout: Duration::from_millis(150),
        retries: 1,
    };
    let mut c = Client::new(ours, config);
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), c.status())
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { attempts: 2, .. }), "{e:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let e = tokio::time::timeout(Duration::from_secs(10), c.stop())
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Uncertain {
                read_back: ReadBack::TherapyState,
                cause: UncertainCause::Unanswered,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("read the status"), "{e}");
}

#[tokio::test]
async fn port_that_does_not_exist_is_a_port_error() {
    let e = serial::open("/dev/thecal-no-such-port", 115_200).unwrap_err();
    assert!(matches!(e, Error::Port { .. }), "{e:?}");
    assert!(e.to_string().contains("/dev/thecal-no-such-port"));
    let _ = port;
}

#[tokio::test]
async fn long_event_log_is_read_page_by_page() {
    let sim = sim();
    let mut c = connect(&sim).await;
    // 80 therapy events, more than three pages: stop, resume, … (repeated refusals
    // would be one aggregated entry).
    for _ in 0..40 {
        c.stop().await.unwrap();
        c.resume().await.unwrap();
    }
    let mut calls = Vec::new();
    let all = thecal_host::eventlog::read_log(&mut c, Default::default(), |done, total| {
        calls.push((done, total))
    })
    .await
    .unwrap();
    let expected = u64::from(all.next - all.oldest);
    assert!(expected > 80, "{expected}");
    assert_eq!(all.entries.len() as u64, expected);
    let indices: Vec<u32> = all.entries.iter().map(|e| e.index).collect();
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");
    // More than one page, progress reported after each, ending at the total.
    assert!(calls.len() >= 4, "{calls:?}");
    assert_eq!(calls.last(), Some(&(expected, expected)));
    let last = thecal_host::eventlog::read_log(
        &mut c,
        thecal_host::eventlog::LogRange {
            from: None,
            last: Some(10),
        },
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(last.entries.len(), 10);
    assert_eq!(last.entries.last().map(|e| e.index), Some(all.next - 1));
    drop(c);
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn pipelined_log_read_returns_exactly_what_stop_and_wait_returns() {
    use thecal_host::eventlog::{read_log, read_log_pipelined, LogRange, WINDOW};
    let sim = sim();
    let mut c = connect(&sim).await;
    // 70 therapy events: stop, resume, …
    for _ in 0..35 {
        c.stop().await.unwrap();
        c.resume().await.unwrap();
    }
    let ranges = [
        LogRange::default(),
        LogRange {
            from: Some(5),
            last: None,
        },
        LogRange {
            from: None,
            last: Some(27),
        },
    ];
    for range in ranges {
        let plain = read_log(&mut c, range, |_, _| {}).await.unwrap();
        let mut calls = Vec::new();
        let piped = read_log_pipelined(&mut c, range, WINDOW, |done, total| {
            calls.push((done, total))
        })
        .await
        .unwrap();
        assert_eq!(piped, plain, "{range:?}");
        let total = piped.entries.len() as u64;
        assert_eq!(calls.last(), Some(&(total, total)), "{range:?}");
    }
    let all = read_log_pipelined(&mut c, LogRange::default(), WINDOW, |_, _| {})
        .await
        .unwrap();
    assert!(all.entries.len() > 70, "{}", all.entries.len());
    assert_eq!(c.counters().retries, 0);
    drop(c);
    sim.shutdown().unwrap();
}
