//! The request server: exactly-once retries, malformed input, link counters — inside a
//! clinician session.

mod common;

use common::client::frames;
use common::*;
use thecal_device::link::server::{Server, CACHE_BODY};
use thecal_protocol::frame::{decode_body, encode_raw, Header};
use thecal_protocol::message::{
    BolusRequest, LinkStats, Refusal, Request, Response, Revision, Role,
};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

type S = Server<Store, thecal_device::therapy::motor::CountingMotor>;

fn send(server: &mut S, now: Timestamp, bytes: &[u8]) -> Vec<u8> {
    exchange_at(server, now)(bytes)
}

fn bolus() -> Request {
    Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms::from_ug(20),
        duration: Minutes(5),
    })
}

#[test]
fn a_retried_bolus_is_delivered_once_and_answered_identically() {
    let mut server = server(continuous(100), Nanolitres::from_ml(40));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let first = send(&mut server, BOOT, &s.frame(7, false, &bolus()));
    let answer = s.answer(&first);
    assert!(matches!(answer, Response::BolusStarted(_)));
    // The reply was "lost": the programmer retries with the same id (sealed again, with
    // the next counter).
    let again = send(&mut server, BOOT.plus_ms(500), &s.frame(7, true, &bolus()));
    assert_eq!(frames(&again)[0].header.id, 7);
    assert_eq!(s.answer(&again), answer, "a retry gets the cached answer");
    assert_eq!(server.stats().replays, 1);
    assert_eq!(bolus_events(&mut server, &mut s, BOOT.plus_ms(600)), 1);
    // 20 µg at 500 µg/mL = 40 µL = 160 strokes, once; plus the basal 0.2 mL/day for
    // 10 minutes (1 389 nL: 5 or 6 strokes). A second bolus would add 160 more.
    let before = server.pump().motor().strokes;
    let end = BOOT.plus_ms(10 * 60_000);
    while server.next_wake() <= end {
        let t = server.next_wake();
        server.tick(t);
    }
    let strokes = server.pump().motor().strokes - before;
    assert!((165..=166).contains(&strokes), "{strokes}");
}

#[test]
fn a_new_request_reusing_an_id_is_executed() {
    let mut server = server(continuous(100), Nanolitres::from_ml(40));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let out = send(&mut server, BOOT, &s.frame(7, false, &bolus()));
    assert!(matches!(s.answer(&out), Response::BolusStarted(_)));
    // Same id, same body, not flagged as a retry: a new request (e.g. a programmer that
    // restarted). It executes — and is refused because a bolus is running.
    let out = send(&mut server, BOOT.plus_ms(1), &s.frame(7, false, &bolus()));
    assert_eq!(s.answer(&out), Response::Refused(Refusal::BolusInProgress));
    // A retry flag with a different body is not a retry of that request either.
    let out = send(
        &mut server,
        BOOT.plus_ms(2),
        &s.frame(7, true, &Request::StopTherapy),
    );
    assert_eq!(s.answer(&out), Response::TherapyStopped);
}

#[test]
fn a_retried_prescription_write_is_stored_once() {
    let mut server = server(continuous(100), Nanolitres::from_ml(40));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let write = Request::WritePrescription {
        expected: Revision(1),
        prescription: flexible().into(),
    };
    let a = send(&mut server, BOOT, &s.frame(1, false, &write));
    let b = send(&mut server, BOOT, &s.frame(1, true, &write));
    assert_eq!(
        s.answer(&a),
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    assert_eq!(
        s.answer(&b),
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    assert_eq!(server.pump().record().revision, Revision(2));
}

#[test]
fn garbage_is_counted_and_a_good_request_still_answered() {
    let mut server = server(continuous(100), Nanolitres::from_ml(40));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let mut bytes = vec![0x11, 0x22, 0x33, 0x00]; // garbage chunk
    let mut bad_crc = s.frame(3, false, &Request::Status);
    bad_crc[2] ^= 0x40;
    bytes.extend_from_slice(&bad_crc);
    bytes.extend(std::iter::repeat_n(0x55, 3000)); // oversize
    bytes.push(0);
    bytes.extend_from_slice(&s.frame(4, false, &Request::Ping { token: 9 }));
    // An authentic frame whose plaintext is not a request.
    let header = Header {
        kind: thecal_protocol::frame::FrameKind::Request,
        id: 5,
        flags: thecal_protocol::frame::Flags(thecal_protocol::frame::Flags::SEALED),
    };
    let mut sealed = [0u8; 64];
    let n = s
        .sealer
        .seal(&header.to_bytes(), &[0xEE, 0xFF], &mut sealed)
        .unwrap();
    let mut raw = [0u8; 128];
    let w = encode_raw(header, &sealed[..n], &mut raw).unwrap();
    bytes.extend_from_slice(&raw[..w]);
    let out = send(&mut server, BOOT, &bytes);
    let answers = frames(&out);
    assert_eq!(answers.len(), 2);
    let mut responses = Vec::new();
    for a in answers {
        let mut body = a.body.clone();
        let plain = s.opener.open(&a.header.to_bytes(), &mut body).unwrap();
        responses.push((a.header.id, decode_body::<Response>(plain).unwrap()));
    }
    assert_eq!(responses[0], (4, Response::Pong { token: 9 }));
    assert_eq!(responses[1], (5, Response::Refused(Refusal::Malformed)));
    let out = send(&mut server, BOOT, &s.frame(6, false, &Request::LinkStats));
    let LinkStats {
        bad_crc,
        malformed,
        oversize,
        resyncs,
        refusals,
        ..
    } = match s.answer(&out) {
        Response::LinkStats(st) => st,
        other => panic!("{other:?}"),
    };
    assert!(bad_crc + malformed >= 2, "{bad_crc} {malformed}");
    assert_eq!(oversize, 1);
    assert_eq!(resyncs, bad_crc + malformed + oversize);
    assert_eq!(refusals, 1);
}

#[test]
fn every_therapy_changing_answer_fits_the_reply_cache() {
    // The largest: Refilled (revision + full reservoir report with every date set).
    use thecal_protocol::drug::Drug;
    use thecal_protocol::message::ReservoirReport;
    use thecal_protocol::units::NanogramsPerMillilitre;
    let big = Timestamp(u64::MAX);
    let reservoir = ReservoirReport {
        capacity: Nanolitres(u32::MAX),
        volume: Nanolitres(u32::MAX),
        low_threshold: Nanolitres(u32::MAX),
        drug: Drug::Clonidine,
        concentration: NanogramsPerMillilitre(u32::MAX),
        low_at: Some(big),
        empty_at: Some(big),
        worst_low_at: Some(big),
        worst_empty_at: Some(big),
        last_refill: Some(big),
    };
    let r = Response::Refilled {
        revision: Revision(u32::MAX),
        reservoir,
    };
    let mut buf = [0u8; 1024];
    assert!(postcard::to_slice(&r, &mut buf).unwrap().len() <= CACHE_BODY);
}

/// A raw frame of `kind`/`flags` around `body` (any length the encoder takes).
fn raw_frame(flags: u8, body: &[u8]) -> Vec<u8> {
    // Header, body and CRC, COBS-encoded by the protocol's own encoder where it can;
    // bodies over MAX_BODY are built by hand (the encoder refuses them).
    let header = [
        thecal_protocol::PROTOCOL_VERSION,
        1, // Request
        0x34,
        0x12,
        flags,
    ];
    let mut raw = header.to_vec();
    raw.extend_from_slice(body);
    let crc = thecal_protocol::frame::CRC16.checksum(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    let mut wire = cobs_encode(&raw);
    wire.push(0);
    wire
}

/// COBS (the wire's byte stuffing), written out for frames the encoder will not make.
fn cobs_encode(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    let mut code_at = 0;
    let mut code = 1u8;
    for &b in raw {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out
}

#[test]
fn a_body_over_max_body_is_dropped_unanswered_and_counted_as_oversize() {
    // PROTOCOL.md 2.4: whatever fits the receive buffer (bodies up to 1 029 bytes) but is
    // over MAX_BODY is dropped, plain or sealed, without an answer.
    let mut server = server(continuous(100), Nanolitres::from_ml(40));
    let mut s = session(&mut server, Role::Clinician, BOOT);
    let max = thecal_protocol::frame::MAX_BODY;
    let mut dropped = 0;
    for len in max + 1..=max + 5 {
        for flags in [0x00, thecal_protocol::frame::Flags::SEALED] {
            let out = send(&mut server, BOOT, &raw_frame(flags, &vec![0x41; len]));
            assert!(out.is_empty(), "{len} bytes, flags {flags}: answered");
            dropped += 1;
            assert_eq!(
                server.stats().oversize,
                dropped,
                "{len} bytes, flags {flags}"
            );
        }
    }
    // The session is untouched.
    assert!(matches!(
        s.request(&mut exchange_at(&mut server, BOOT), 2, &Request::Status),
        Response::Status(_)
    ));
    // And at MAX_BODY a plain body that is no request is answered Malformed.
    let out = send(&mut server, BOOT, &raw_frame(0x00, &vec![0x41; max]));
    assert_eq!(
        decode_body::<Response>(&frames(&out)[0].body).unwrap(),
        Response::Refused(Refusal::Malformed)
    );
}

#[test]
fn the_pump_states_the_capabilities_it_has() {
    use thecal_protocol::message::Capabilities as C;
    let server = server(continuous(100), Nanolitres::from_ml(40));
    let caps = server.pump().identity().capabilities;
    for bit in [
        C::FLEXIBLE,
        C::WEEKLY,
        C::PATIENT_BOLUS,
        C::EVENT_LOG,
        C::SECURE_SESSION,
        C::EMERGENCY_ACCESS,
        C::KEY_LIFECYCLE,
    ] {
        assert!(caps.has(bit), "bit {bit:#x} missing from {caps:?}");
    }
}
