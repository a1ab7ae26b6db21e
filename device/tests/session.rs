//! Secure sessions, attacked: replay, reordering, bit flips, reflection, wrong keys, wrong
//! roles, no session, brute force, counter limit, expiry and reset. Each checks that
//! therapy state is unchanged where it must be.

mod common;

use common::client::{self, frames, plain_answer, plain_frame, Hello, Provisioner, RoleKey};
use common::*;
use thecal_device::link::server::Server;
use thecal_device::link::session::{IDLE_TIMEOUT_MS, MIN_PENDING_MS};
use thecal_protocol::message::{BolusRequest, Event, Refusal, Request, Response, Revision, Role};
use thecal_protocol::session::Sealer;
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

type S = TestServer;

fn send(server: &mut S, now: Timestamp, bytes: &[u8]) -> Vec<u8> {
    exchange_at(server, now)(bytes)
}

/// What must not change when an attack fails.
#[derive(Debug, PartialEq)]
struct Therapy {
    revision: Revision,
    reservoir: Nanolitres,
    stopped: bool,
    bolus_running: bool,
    clock: Timestamp,
}

fn therapy(server: &S, now: Timestamp) -> Therapy {
    let p = server.pump();
    Therapy {
        revision: p.record().revision,
        reservoir: p.reservoir(),
        stopped: matches!(
            p.therapy_state(),
            thecal_protocol::message::TherapyState::Stopped
        ),
        bolus_running: false,
        clock: p.wall(now),
    }
}

fn mutating() -> Vec<Request> {
    vec![
        Request::WritePrescription {
            expected: Revision(1),
            prescription: flexible().into(),
        },
        Request::Refill {
            expected: Revision(1),
            volume: Nanolitres::from_ml(20),
            prescription: None,
        },
        Request::ClinicianBolus(BolusRequest::Single {
            dose: Nanograms::from_ug(50),
            duration: Minutes(10),
        }),
        Request::StopTherapy,
        Request::ResumeTherapy,
        Request::SetClock {
            now: Timestamp(1_800_000_000_000),
            offset: UtcOffset(60),
        },
        Request::AcknowledgeAlarm {
            alarm: thecal_protocol::message::AlarmKind::LowReservoir,
        },
    ]
}

fn bolus() -> Request {
    Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms::from_ug(20),
        duration: Minutes(5),
    })
}

fn bolus_events_in(server: &mut S) -> usize {
    let mut s = session(server, Role::Clinician, BOOT.plus_ms(1));
    bolus_events(server, &mut s, BOOT.plus_ms(1))
}

#[test]
fn without_a_session_only_identify_is_served() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let before = therapy(&server, BOOT);
    for (i, r) in mutating()
        .iter()
        .chain([Request::Status, Request::ReadPrescription].iter())
        .enumerate()
    {
        let out = send(&mut server, BOOT, &plain_frame(i as u16, r));
        assert_eq!(
            plain_answer(&out),
            Response::Refused(Refusal::SessionRequired),
            "{r:?}"
        );
    }
    assert!(matches!(
        plain_answer(&send(
            &mut server,
            BOOT,
            &plain_frame(99, &Request::Identify)
        )),
        Response::Identity(_)
    ));
    assert_eq!(therapy(&server, BOOT), before);
}

#[test]
fn patient_and_service_roles_cannot_change_therapy() {
    for role in [Role::Patient, Role::Service] {
        let mut server = server(continuous(100), Nanolitres::from_ml(18));
        let before = therapy(&server, BOOT);
        let mut s = session(&mut server, role, BOOT);
        for (i, r) in mutating().iter().enumerate() {
            let answer = s.request(&mut exchange_at(&mut server, BOOT), i as u16, r);
            assert_eq!(
                answer,
                Response::Refused(Refusal::NotPermitted),
                "{role:?} {r:?}"
            );
        }
        assert_eq!(therapy(&server, BOOT), before);
        // Reads are allowed.
        assert!(matches!(
            s.request(&mut exchange_at(&mut server, BOOT), 50, &Request::Status),
            Response::Status(_)
        ));
    }
    // The patient may take a patient bolus within the clinician's rules.
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let mut s = session(&mut server, Role::Patient, BOOT);
    assert!(matches!(
        s.request(
            &mut exchange_at(&mut server, BOOT),
            1,
            &Request::PatientBolus
        ),
        Response::PatientBolusStarted(_)
    ));
}

#[test]
fn a_replayed_or_reordered_sealed_frame_is_dropped() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let captured = s.frame(10, false, &bolus());
    assert!(matches!(
        s.answer(&send(&mut server, BOOT, &captured)),
        Response::BolusStarted(_)
    ));
    // Replay (even flagged as a retry by an attacker who cannot re-seal it).
    assert!(
        send(&mut server, BOOT.plus_ms(1_000), &captured).is_empty(),
        "no answer to a replay"
    );
    // Replayed after the session ended: refused in the clear, not executed.
    let late = BOOT.plus_ms(IDLE_TIMEOUT_MS + 1);
    assert_eq!(
        plain_answer(&send(&mut server, late, &captured)),
        Response::Refused(Refusal::SessionRequired)
    );
    assert_eq!(bolus_events_in(&mut server), 1);
    // Reordered pair: the later frame goes first; the earlier one is then stale.
    let mut server = common::server(continuous(100), Nanolitres::from_ml(18));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let first = s.frame(20, false, &Request::StopTherapy);
    let second = s.frame(21, false, &Request::Status);
    assert!(matches!(
        s.answer(&send(&mut server, BOOT, &second)),
        Response::Status(_)
    ));
    assert!(send(&mut server, BOOT, &first).is_empty());
    assert!(!matches!(
        server.pump().therapy_state(),
        thecal_protocol::message::TherapyState::Stopped
    ));
}

#[test]
fn a_flipped_bit_anywhere_is_dropped() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let before = therapy(&server, BOOT);
    let frame = s.frame(30, false, &Request::StopTherapy);
    let raw = thecal_protocol::frame::encode_raw; // re-frame after flipping inside the raw frame
    let answers = frames(&frame);
    let (header, body) = (answers[0].header.to_bytes(), answers[0].body.clone());
    for bit in 0..(header.len() + body.len()) * 8 {
        let (mut h, mut b) = (header, body.clone());
        if bit < 40 {
            h[bit / 8] ^= 1 << (bit % 8);
        } else {
            b[bit / 8 - 5] ^= 1 << (bit % 8);
        }
        // Re-compute the CRC so the frame reaches the session layer.
        let Ok(hh) = thecal_protocol::frame::Header::from_bytes(h) else {
            continue;
        };
        let mut wire = [0u8; 256];
        let n = raw(hh, &b, &mut wire).unwrap();
        let out = send(&mut server, BOOT, &wire[..n]);
        for a in frames(&out) {
            // Only a clear "no session" for a header that lost the SEALED flag; never a
            // sealed answer.
            assert!(
                !a.header.flags.has(thecal_protocol::frame::Flags::SEALED),
                "bit {bit}"
            );
        }
    }
    assert_eq!(therapy(&server, BOOT), before);
    // The untouched frame still works.
    assert_eq!(
        s.answer(&send(&mut server, BOOT, &frame)),
        Response::TherapyStopped
    );
}

#[test]
fn an_answer_reflected_back_to_the_pump_is_dropped() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let out = send(&mut server, BOOT, &s.frame(40, false, &Request::Status));
    // Re-label the pump's sealed answer as a request (kind byte) and send it back.
    let a = &frames(&out)[0];
    let mut h = a.header;
    h.kind = thecal_protocol::frame::FrameKind::Request;
    let mut wire = [0u8; 512];
    let n = thecal_protocol::frame::encode_raw(h, &a.body, &mut wire).unwrap();
    assert!(send(&mut server, BOOT, &wire[..n]).is_empty());
}

#[test]
fn wrong_proofs_are_refused_and_logged_but_lock_nobody_out() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let t = BOOT;
    // An attacker without the key: hello, then guessed proofs.
    for attempt in 1..=4u8 {
        let hello = Hello::new(Role::Clinician, 1, [attempt; 16]).frame(1);
        assert!(matches!(
            plain_answer(&send(&mut server, t, &hello)),
            Response::SessionChallenge { .. }
        ));
        let proof = plain_frame(
            2,
            &Request::SessionProof {
                nonce: [attempt; 16],
                proof: [attempt; 32],
            },
        );
        assert_eq!(
            plain_answer(&send(&mut server, t, &proof)),
            Response::Refused(Refusal::AuthenticationFailed)
        );
    }
    // Their challenges hold every slot for 2 s ("busy", nothing more) …
    let hello = Hello::new(Role::Clinician, 1, [9; 16]).frame(4);
    assert_eq!(
        plain_answer(&send(&mut server, t, &hello)),
        Response::Refused(Refusal::Busy)
    );
    // … and then the clinician is not locked out.
    let t = t.plus_ms(MIN_PENDING_MS);
    let mut s = session(&mut server, Role::Clinician, t);
    match s.request(
        &mut exchange_at(&mut server, t),
        3,
        &Request::ReadLog { first: 0, max: 8 },
    ) {
        // The four failures are one aggregated entry.
        Response::LogPage(p) => assert!(
            p.entries.iter().any(|e| e.event
                == Event::HandshakeFailed {
                    role: Role::Clinician,
                    count: 4
                }),
            "{:?}",
            p.entries
        ),
        other => panic!("{other:?}"),
    }
    // Therapy runs on regardless: an hour at 0.2 mL/day is 8 333 nL, 33 strokes.
    server.tick(BOOT.plus_ms(HOUR));
    assert!(
        server.pump().motor().strokes >= 33,
        "{}",
        server.pump().motor().strokes
    );
}

#[test]
fn a_counter_may_skip_up_to_65_535_values_and_no_more() {
    use thecal_protocol::frame::{encode_raw, Flags, FrameKind, Header};
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    // A sealed frame under `counter` whose plaintext is a `StopTherapy` without a key (it
    // would be answered `Malformed` if it opened).
    let sealed_at = |key: &thecal_protocol::session::Secret, counter: u32, id: u16| {
        let header = Header {
            kind: FrameKind::Request,
            id,
            flags: Flags(Flags::SEALED),
        };
        let mut body = [0u8; 64];
        let n = Sealer::starting_at(key, counter)
            .seal(&header.to_bytes(), &[0, 10], &mut body)
            .unwrap();
        let mut wire = [0u8; 128];
        let w = encode_raw(header, &body[..n], &mut wire).unwrap();
        wire[..w].to_vec()
    };
    // 65 535 frames lost in a row (counters 1 to 65 535): the next, 65 536, travels as
    // 0x0000 and is still placed right.
    s.sealer = Sealer::starting_at(&s.to_device, 0x1_0000);
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, BOOT), 1, &Request::Status),
        Response::Status(_)
    ));
    // 65 536 lost after it: the wire's 16 bits place the frame one cycle short, its tag
    // fails there, and it is dropped unanswered.
    let far = sealed_at(&s.to_device, 0x1_0000 + 0x1_0001, 2);
    assert!(send(&mut server, BOOT, &far).is_empty());
    // A lower counter (what a replay carries) is placed above the last and fails too.
    let low = sealed_at(&s.to_device, 5, 3);
    assert!(send(&mut server, BOOT, &low).is_empty());
    // Neither moved the pump's counter: the next frame in order opens, and is answered.
    let next = sealed_at(&s.to_device, 0x1_0001, 4);
    let answer = send(&mut server, BOOT, &next);
    assert_eq!(frames(&answer).len(), 1);
    assert_eq!(server.stats().forged, 2);
    // The programmer's own counter stops at its last usable value.
    s.sealer = Sealer::starting_at(&s.to_device, u32::MAX - 1);
    let mut out = [0u8; 64];
    assert!(s.sealer.seal(&[0; 5], b"x", &mut out).is_ok());
    assert_eq!(
        s.sealer.seal(&[0; 5], b"x", &mut out),
        Err(thecal_protocol::session::SealError::Exhausted)
    );
}

#[test]
fn a_session_expires_when_idle_and_nothing_is_executed() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let late = BOOT.plus_ms(IDLE_TIMEOUT_MS + 1);
    let out = send(&mut server, late, &s.frame(1, false, &Request::StopTherapy));
    assert_eq!(
        plain_answer(&out),
        Response::Refused(Refusal::SessionRequired)
    );
    assert!(!matches!(
        server.pump().therapy_state(),
        thecal_protocol::message::TherapyState::Stopped
    ));
    // A new session works.
    let mut s = session(&mut server, Role::Clinician, late);
    assert_eq!(
        s.request(
            &mut exchange_at(&mut server, late),
            2,
            &Request::StopTherapy
        ),
        Response::TherapyStopped
    );
}

#[test]
fn after_a_reset_the_programmer_must_handshake_again() {
    let mut server = server(continuous(100), Nanolitres::from_ml(18));
    let nonce_before = {
        let out = send(
            &mut server,
            BOOT,
            &Hello::new(Role::Patient, 1, [1; 16]).frame(5),
        );
        match plain_answer(&out) {
            Response::SessionChallenge { nonce, .. } => nonce,
            other => panic!("{other:?}"),
        }
    };
    // A clinician session, then a reset of the pump.
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let flash = server.into_pump().into_storage().into_inner();
    let store = thecal_device::store::FlashStore::new(flash).unwrap();
    let pump = boot_with(
        continuous(100),
        Nanolitres::from_ml(18),
        thecal_device::therapy::battery::BatteryConfig::default(),
        store,
    );
    let mut server = Server::new(pump);
    server.stir(&ENTROPY);
    let out = send(&mut server, BOOT, &s.frame(6, false, &Request::StopTherapy));
    assert_eq!(
        plain_answer(&out),
        Response::Refused(Refusal::SessionRequired)
    );
    assert!(!matches!(
        server.pump().therapy_state(),
        thecal_protocol::message::TherapyState::Stopped
    ));
    // The device secret survived; nonces never repeat across the reset.
    let out = send(
        &mut server,
        BOOT,
        &Hello::new(Role::Patient, 1, [1; 16]).frame(7),
    );
    match plain_answer(&out) {
        Response::SessionChallenge { nonce, .. } => assert_ne!(nonce, nonce_before),
        other => panic!("{other:?}"),
    }
    let mut s = session(&mut server, Role::Clinician, BOOT);
    assert_eq!(
        s.request(
            &mut exchange_at(&mut server, BOOT),
            8,
            &Request::StopTherapy
        ),
        Response::TherapyStopped
    );
}

#[test]
fn provisioning_happens_once() {
    let mut server = Server::new(boot(continuous(100), Nanolitres::from_ml(18)));
    server.stir(&ENTROPY);
    let public = server
        .pump()
        .public_key()
        .expect("the first stir made the key pair");
    let hello = Hello::new(Role::Clinician, 1, [1; 16]).frame(1);
    assert_eq!(
        plain_answer(&send(&mut server, BOOT, &hello)),
        Response::Refused(Refusal::NotProvisioned)
    );
    let factory = Provisioner::new(FACTORY);
    let answer = plain_answer(&send(
        &mut server,
        BOOT,
        &plain_frame(2, &factory.request()),
    ));
    let (secret, epoch) = factory
        .finish(SERIAL, &public, &answer)
        .unwrap_or_else(|| panic!("{answer:?}"));
    assert_eq!(epoch, 1);
    let again = Provisioner::new([0x0B; 32]);
    assert_eq!(
        plain_answer(&send(&mut server, BOOT, &plain_frame(3, &again.request()))),
        Response::Refused(Refusal::NotPermitted)
    );
    // The first secret is the one in force.
    let key = RoleKey::derived(&secret, Role::Clinician, epoch, SERIAL);
    let peer = peer(&server);
    let mut s = client::handshake(&mut exchange_at(&mut server, BOOT), &key, &peer, [4; 16])
        .expect("the factory's key opens a session");
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, BOOT), 4, &Request::Status),
        Response::Status(_)
    ));
}
