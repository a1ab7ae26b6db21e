//! The request server: exactly-once retries, malformed input, link counters.

mod common;

use common::*;
use thecal_device::server::{Server, CACHE_BODY};
use thecal_protocol::frame::{decode_body, encode, Feed, Flags, FrameDecoder, Header};
use thecal_protocol::message::{
    BolusRequest, Event, LinkStats, Refusal, Request, Response, Revision,
};
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Minutes, Nanograms, Nanolitres};

fn frame(id: u16, retry: bool, request: &Request) -> Vec<u8> {
    let mut header = Header::request(id);
    if retry {
        header.flags = Flags(Flags::RETRY);
    }
    let mut buf = [0u8; 2048];
    let n = encode(header, request, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn exchange(
    server: &mut Server<Store, thecal_device::motor::CountingMotor>,
    now: Timestamp,
    bytes: &[u8],
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    server.receive(now, bytes, &mut |b| out.push(b.to_vec()));
    out
}

fn decode(bytes: &[u8]) -> (Header, Response) {
    let mut d: FrameDecoder = FrameDecoder::new();
    match d.feed(bytes) {
        Feed::Frame { frame, .. } => (frame.header, decode_body(frame.body).unwrap()),
        other => panic!("{other:?}"),
    }
}

fn bolus() -> Request {
    Request::ClinicianBolus(BolusRequest::Single {
        dose: Nanograms::from_ug(20),
        duration: Minutes(5),
    })
}

fn bolus_events(
    server: &mut Server<Store, thecal_device::motor::CountingMotor>,
    now: Timestamp,
) -> usize {
    let out = exchange(
        server,
        now,
        &frame(900, false, &Request::ReadLog { first: 0, max: 8 }),
    );
    match decode(&out[0]).1 {
        Response::LogPage(p) => p
            .entries
            .iter()
            .filter(|e| matches!(e.event, Event::Bolus { .. }))
            .count(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_retried_bolus_is_delivered_once_and_answered_identically() {
    let mut server = Server::new(boot(continuous(100), Nanolitres::from_ml(40)));
    let first = exchange(&mut server, BOOT, &frame(7, false, &bolus()));
    assert_eq!(first.len(), 1);
    let (header, response) = decode(&first[0]);
    assert_eq!(header.id, 7);
    assert!(matches!(response, Response::BolusStarted(_)));
    // The reply was "lost": the programmer retries with the same id.
    let again = exchange(&mut server, BOOT.plus_ms(500), &frame(7, true, &bolus()));
    assert_eq!(again, first, "a retry gets the cached reply, byte for byte");
    assert_eq!(server.stats().replays, 1);
    assert_eq!(bolus_events(&mut server, BOOT.plus_ms(600)), 1);
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
    let mut server = Server::new(boot(continuous(100), Nanolitres::from_ml(40)));
    exchange(&mut server, BOOT, &frame(7, false, &bolus()));
    // Same id, same body, but not flagged as a retry: a new request (e.g. a programmer
    // that restarted). It executes — and is refused because a bolus is running.
    let out = exchange(&mut server, BOOT.plus_ms(1), &frame(7, false, &bolus()));
    assert_eq!(
        decode(&out[0]).1,
        Response::Refused(Refusal::BolusInProgress)
    );
    // A retry flag with a different body is not a retry of that request either.
    let other = Request::StopTherapy;
    let out = exchange(&mut server, BOOT.plus_ms(2), &frame(7, true, &other));
    assert_eq!(decode(&out[0]).1, Response::TherapyStopped);
}

#[test]
fn a_retried_prescription_write_is_stored_once() {
    let mut server = Server::new(boot(continuous(100), Nanolitres::from_ml(40)));
    let write = Request::WritePrescription {
        expected: Revision(1),
        prescription: flexible().into(),
    };
    let a = exchange(&mut server, BOOT, &frame(1, false, &write));
    let b = exchange(&mut server, BOOT, &frame(1, true, &write));
    assert_eq!(a, b);
    assert_eq!(
        decode(&a[0]).1,
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    assert_eq!(server.pump().record().revision, Revision(2));
}

#[test]
fn garbage_is_counted_and_a_good_request_still_answered() {
    let mut server = Server::new(boot(continuous(100), Nanolitres::from_ml(40)));
    let mut bytes = vec![0x11, 0x22, 0x33, 0x00]; // garbage chunk
    let mut bad_crc = frame(3, false, &Request::Status);
    bad_crc[2] ^= 0x40;
    bytes.extend_from_slice(&bad_crc);
    bytes.extend(std::iter::repeat_n(0x55, 3000)); // oversize
    bytes.push(0);
    bytes.extend_from_slice(&frame(4, false, &Request::Ping { token: 9 }));
    // A valid frame whose body is not a request.
    let mut raw = [0u8; 64];
    let n =
        thecal_protocol::frame::encode_raw(Header::request(5), &[0xEE, 0xFF], &mut raw).unwrap();
    bytes.extend_from_slice(&raw[..n]);
    let out = exchange(&mut server, BOOT, &bytes);
    assert_eq!(out.len(), 2);
    assert_eq!(
        decode(&out[0]),
        (Header::response(4), Response::Pong { token: 9 })
    );
    assert_eq!(
        decode(&out[1]),
        (Header::response(5), Response::Refused(Refusal::Malformed))
    );
    let out = exchange(&mut server, BOOT, &frame(6, false, &Request::LinkStats));
    let LinkStats {
        frames_in,
        frames_out,
        bad_crc,
        malformed,
        oversize,
        resyncs,
        refusals,
        ..
    } = match decode(&out[0]).1 {
        Response::LinkStats(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!((frames_in, frames_out), (3, 2));
    assert!(bad_crc + malformed >= 2, "{bad_crc} {malformed}");
    assert_eq!(oversize, 1);
    assert_eq!(resyncs, bad_crc + malformed + oversize);
    assert_eq!(refusals, 1);
}

#[test]
fn every_therapy_changing_answer_fits_the_reply_cache() {
    // The largest: Refilled (revision + full reservoir report with every date set) and a
    // refusal carrying a schedule error.
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
