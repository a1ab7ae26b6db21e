//! `CancelBolus` through the request server: who may make it, and a retried cancel is
//! answered from the reply cache with the same outcome (not `NoBolus`).

mod common;

use common::*;
use thecal_protocol::message::{BolusEnd, BolusRequest, Event, Refusal, Request, Response, Role};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

fn send(server: &mut TestServer, now: Timestamp, bytes: &[u8]) -> Vec<u8> {
    exchange_at(server, now)(bytes)
}

#[test]
fn an_emergency_cancel_happens_once_and_a_retry_gets_the_same_answer() {
    let mut server = server(continuous(100), Nanolitres::from_ml(40));
    let mut c = session(&mut server, Role::Clinician, BOOT);
    let bolus = Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms::from_ug(100),
        duration: Minutes(60),
    });
    let out = send(&mut server, BOOT, &c.frame(1, false, &bolus));
    assert!(matches!(c.answer(&out), Response::BolusStarted(_)));
    let out = send(
        &mut server,
        BOOT,
        &c.frame(2, false, &Request::SessionClose),
    );
    assert_eq!(c.answer(&out), Response::SessionClosed);

    // The patient may not cancel a bolus.
    let mut p = session(&mut server, Role::Patient, BOOT.plus_ms(1_000));
    let out = send(
        &mut server,
        BOOT.plus_ms(1_000),
        &p.frame(3, false, &Request::CancelBolus),
    );
    assert!(matches!(
        p.answer(&out),
        Response::Refused(Refusal::NotPermitted)
    ));

    // Under the magnet, the emergency role may.
    let t = BOOT.plus_ms(10 * 60_000);
    server.apply_presence(t, t);
    let mut e = session(&mut server, Role::Emergency, t);
    let out = send(&mut server, t, &e.frame(4, false, &Request::CancelBolus));
    let answer = e.answer(&out);
    let Response::BolusCancelled(outcome) = answer.clone() else {
        panic!("{answer:?}")
    };
    assert_eq!(
        outcome.end,
        BolusEnd::Cancelled {
            by: Role::Emergency
        }
    );
    // Its answer was "lost": the retry (same id, same key) gets the same outcome.
    let again = send(
        &mut server,
        t.plus_ms(500),
        &e.frame(4, true, &Request::CancelBolus),
    );
    assert_eq!(e.answer(&again), answer);
    let ends = log_events(&mut server)
        .into_iter()
        .filter(|ev| matches!(ev, Event::BolusEnded(_)))
        .count();
    assert_eq!(ends, 1, "cancelled once");
}
