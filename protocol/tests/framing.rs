//! The frame codec: the streaming decoder under every chunking, corruption of every kind,
//! size limits and the overhead budget.

mod common;

use common::{cobs_encode, encode_frame, feed_all, Msg, Outcome};
use proptest::prelude::*;
use thecal_protocol::frame::{
    self, decode_body, encode_raw, BodyError, EncodeError, Feed, Flags, FrameDecoder, FrameError,
    FrameKind, Header, CRC16, MAX_BODY, MAX_WIRE,
};
use thecal_protocol::message::{PrescriptionRecord, Revision};
use thecal_protocol::{Request, Response, PROTOCOL_VERSION};

/// The documented vectors plus the largest valid weekly prescription, as (header, body)
/// and as one wire stream with idle delimiters sprinkled in.
fn sample_stream() -> (Vec<(Header, Vec<u8>)>, Vec<u8>) {
    let mut frames: Vec<(Header, Msg)> = common::vectors()
        .into_iter()
        .map(|v| (v.header, v.msg))
        .collect();
    frames.push((
        Header::response(0x0309),
        Msg::Response(Response::Prescription(PrescriptionRecord {
            revision: Revision(4),
            written_at: common::NOW,
            prescription: common::full_weekly(),
            standing: thecal_protocol::message::Standing::default(),
        })),
    ));
    let mut wire = vec![0x00];
    let mut expected = Vec::new();
    for (i, (header, msg)) in frames.iter().enumerate() {
        wire.extend(msg.encode(*header));
        if i % 3 == 0 {
            wire.push(0x00); // idle fill: must be ignored
        }
        expected.push((*header, msg.body()));
    }
    (expected, wire)
}

const PING: Request = Request::Ping { token: 0x00C0_FFEE };

fn ping_frame(id: u16) -> (Header, Vec<u8>, Vec<u8>) {
    let header = Header::request(id);
    let msg = PING;
    (
        header,
        postcard::to_stdvec(&msg).unwrap(),
        encode_frame(header, &msg),
    )
}

fn oks(outcomes: &[Outcome]) -> Vec<(Header, Vec<u8>)> {
    outcomes.iter().filter_map(|o| o.clone().ok()).collect()
}

fn errors(outcomes: &[Outcome]) -> Vec<FrameError> {
    outcomes.iter().filter_map(|o| o.clone().err()).collect()
}

/// A wire frame built by hand from raw frame bytes, so header fields can be broken while
/// the CRC stays right.
fn wire_from_raw(header: [u8; 5], body: &[u8]) -> Vec<u8> {
    let mut raw = [&header[..], body].concat();
    raw.extend(CRC16.checksum(&raw).to_le_bytes());
    [cobs_encode(&raw), vec![0]].concat()
}

// ---------------------------------------------------------------------------------------
// Chunking

#[test]
fn every_chunk_size_yields_the_same_frames() {
    let (expected, wire) = sample_stream();
    for size in 1..=wire.len() {
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(size) {
            got.extend(feed_all(&mut decoder, chunk));
        }
        let want: Vec<Outcome> = expected.iter().cloned().map(Ok).collect();
        assert_eq!(got, want, "chunk size {size}");
        assert_eq!(decoder.pending(), 0);
    }
}

#[test]
fn a_partial_frame_waits_for_its_delimiter() {
    let (header, body, wire) = ping_frame(1);
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let (head, tail) = wire.split_at(wire.len() - 1);
    assert_eq!(decoder.feed(head), Feed::Consumed);
    assert_eq!(decoder.pending(), head.len());
    assert_eq!(feed_all(&mut decoder, tail), vec![Ok((header, body))]);
}

#[test]
fn reset_drops_a_partial_frame() {
    let (header, body, wire) = ping_frame(1);
    let mut decoder: FrameDecoder = FrameDecoder::new();
    assert_eq!(decoder.feed(&wire[..4]), Feed::Consumed);
    decoder.reset();
    assert_eq!(decoder.pending(), 0);
    assert_eq!(feed_all(&mut decoder, &wire), vec![Ok((header, body))]);
}

#[test]
fn idle_delimiters_are_ignored() {
    let (header, body, wire) = ping_frame(1);
    let stream = [&[0u8, 0, 0][..], &wire, &[0, 0]].concat();
    let mut decoder: FrameDecoder = FrameDecoder::new();
    assert_eq!(feed_all(&mut decoder, &stream), vec![Ok((header, body))]);
}

// ---------------------------------------------------------------------------------------
// Garbage and corruption

#[test]
fn garbage_before_a_delimiter_costs_nothing_after_it() {
    let (expected, wire) = sample_stream();
    let garbage = [0x11, 0x22, 0xFF, 0x05, 0x01, 0x80];
    let stream = [&garbage[..], &[0x00], &wire].concat();
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let out = feed_all(&mut decoder, &stream);
    assert!(out[0].is_err(), "{:?}", out[0]);
    assert_eq!(oks(&out), expected);
}

#[test]
fn garbage_glued_to_a_frame_loses_only_that_frame() {
    // No delimiter between the noise and the first frame: the receiver cannot tell where
    // the frame starts, so the first frame is lost; it resynchronises at its delimiter.
    let (expected, wire) = sample_stream();
    let stream = [&[0x42, 0x17, 0x99][..], &wire[1..]].concat(); // wire[0] is idle fill
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let out = feed_all(&mut decoder, &stream);
    assert!(out[0].is_err(), "{:?}", out[0]);
    assert_eq!(oks(&out), expected[1..]);
}

#[test]
fn garbage_between_frames_is_dropped() {
    let (h1, b1, w1) = ping_frame(1);
    let (h2, b2, w2) = ping_frame(2);
    for garbage in [
        &[0x01][..],
        &[0x02, 0xAA],
        &[0xFF; 300],
        &[0x05, 0x01, 0x01, 0x01, 0x01],
    ] {
        let stream = [&w1[..], garbage, &[0x00], &w2].concat();
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let out = feed_all(&mut decoder, &stream);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0], Ok((h1, b1.clone())));
        assert!(out[1].is_err(), "{:?}", out[1]);
        assert_eq!(out[2], Ok((h2, b2.clone())));
    }
}

#[test]
fn garbage_inside_a_frame_drops_that_frame_only() {
    let (_, _, w1) = ping_frame(1);
    let (h2, b2, w2) = ping_frame(2);
    for at in 0..w1.len() - 1 {
        for junk in [0x01, 0x37, 0xFF] {
            let mut bad = w1.clone();
            bad.insert(at, junk);
            let stream = [&bad[..], &w2].concat();
            let mut decoder: FrameDecoder = FrameDecoder::new();
            let out = feed_all(&mut decoder, &stream);
            assert_eq!(out.len(), 2, "insert {junk:#04x} at {at}: {out:?}");
            assert!(out[0].is_err(), "insert {junk:#04x} at {at}: {:?}", out[0]);
            assert_eq!(out[1], Ok((h2, b2.clone())));
        }
    }
}

/// Flips every bit of every sample frame, one at a time, and follows the damaged frame
/// with a good one. The damaged frame must never come out as a frame different from the
/// original; every flip must be noticed; the good frame after it must survive unless the
/// flip hit the delimiter between them (then both are lost, never mis-decoded).
#[test]
fn every_single_bit_flip_is_detected() {
    let (expected, _) = sample_stream();
    let (good_h, good_b, good_w) = ping_frame(0xBEEF);
    let mut flips = 0;
    for (header, body) in &expected {
        let wire = [cobs_encode(&raw_of(*header, body)), vec![0]].concat();
        for bit in 0..wire.len() * 8 {
            let mut bad = wire.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let stream = [&bad[..], &good_w].concat();
            let mut decoder: FrameDecoder = FrameDecoder::new();
            let out = feed_all(&mut decoder, &stream);
            let frames = oks(&out);
            let original = (*header, body.clone());
            for f in &frames {
                assert!(
                    *f == original || *f == (good_h, good_b.clone()),
                    "bit {bit} of {header:?}: decoded a different frame {f:?}"
                );
            }
            assert!(
                !frames.contains(&original),
                "bit {bit} of {header:?}: flip went unnoticed"
            );
            assert!(
                !errors(&out).is_empty(),
                "bit {bit} of {header:?}: no error reported"
            );
            let hit_delimiter = bit / 8 == wire.len() - 1;
            assert_eq!(
                frames.contains(&(good_h, good_b.clone())),
                !hit_delimiter,
                "bit {bit} of {header:?}: the next frame"
            );
            flips += 1;
        }
    }
    assert!(flips > 5_000, "only {flips} flips tried");
}

fn raw_of(header: Header, body: &[u8]) -> Vec<u8> {
    let mut raw = [&header.to_bytes()[..], body].concat();
    raw.extend(CRC16.checksum(&raw).to_le_bytes());
    raw
}

#[test]
fn a_truncated_frame_is_dropped_and_the_next_survives() {
    let (_, _, w1) = ping_frame(1);
    let (h2, b2, w2) = ping_frame(2);
    let body_end = w1.len() - 1; // w1 without its delimiter
    for cut in 1..body_end {
        let stream = [&w1[..cut], &[0x00], &w2].concat();
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let out = feed_all(&mut decoder, &stream);
        assert_eq!(out.len(), 2, "cut at {cut}: {out:?}");
        assert!(out[0].is_err(), "cut at {cut}: {:?}", out[0]);
        assert_eq!(out[1], Ok((h2, b2.clone())));
    }
}

#[test]
fn short_frames_are_reported_as_too_short() {
    for len in 0..7 {
        let raw = vec![0x01; len];
        let wire = [cobs_encode(&raw), vec![0]].concat();
        let mut decoder: FrameDecoder = FrameDecoder::new();
        assert_eq!(
            feed_all(&mut decoder, &wire),
            vec![Err(FrameError::TooShort(len))]
        );
    }
}

#[test]
fn header_fields_are_checked_after_the_crc() {
    let body = postcard::to_stdvec(&Request::Status).unwrap();
    let cases = [
        // Versions 1 to 4 (the previous protocols) and 6 are refused like any other.
        ([0x01, 0x01, 0x01, 0x00, 0x00], FrameError::Version(1)),
        ([0x02, 0x01, 0x01, 0x00, 0x00], FrameError::Version(2)),
        ([0x03, 0x01, 0x01, 0x00, 0x00], FrameError::Version(3)),
        ([0x04, 0x01, 0x01, 0x00, 0x00], FrameError::Version(4)),
        ([0x06, 0x01, 0x01, 0x00, 0x00], FrameError::Version(6)),
        ([0x00, 0x01, 0x01, 0x00, 0x00], FrameError::Version(0)),
        ([0x05, 0x00, 0x01, 0x00, 0x00], FrameError::Kind(0)),
        ([0x05, 0x04, 0x01, 0x00, 0x00], FrameError::Kind(4)),
        ([0x05, 0x01, 0x01, 0x00, 0x04], FrameError::Flags(0x04)),
        ([0x05, 0x01, 0x01, 0x00, 0x81], FrameError::Flags(0x81)),
    ];
    for (header, error) in cases {
        let mut decoder: FrameDecoder = FrameDecoder::new();
        assert_eq!(
            feed_all(&mut decoder, &wire_from_raw(header, &body)),
            vec![Err(error)]
        );
    }
    // And the valid ones.
    for (kind, code) in [
        (FrameKind::Request, 1),
        (FrameKind::Response, 2),
        (FrameKind::Event, 3),
    ] {
        for flags in [0x00, 0x01] {
            let mut decoder: FrameDecoder = FrameDecoder::new();
            let out = feed_all(
                &mut decoder,
                &wire_from_raw([PROTOCOL_VERSION, code, 0x34, 0x12, flags], &body),
            );
            let want = Header {
                kind,
                id: 0x1234,
                flags: Flags(flags),
            };
            assert_eq!(out, vec![Ok((want, body.clone()))]);
        }
    }
}

#[test]
fn a_wrong_crc_is_reported_with_both_values() {
    let (header, body, _) = ping_frame(9);
    let mut raw = raw_of(header, &body);
    let n = raw.len();
    raw[n - 1] ^= 0x40;
    let wire = [cobs_encode(&raw), vec![0]].concat();
    let mut decoder: FrameDecoder = FrameDecoder::new();
    let out = feed_all(&mut decoder, &wire);
    let computed = CRC16.checksum(&raw[..n - 2]);
    let received = u16::from_le_bytes([raw[n - 2], raw[n - 1]]);
    assert_eq!(out, vec![Err(FrameError::Crc { received, computed })]);
}

proptest! {
    /// Arbitrary noise, then a delimiter, then valid frames: the frames all come through
    /// and nothing else is decoded as a frame.
    #[test]
    fn noise_never_becomes_a_frame(noise in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (expected, wire) = sample_stream();
        let stream = [&noise[..], &[0x00], &wire].concat();
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let out = feed_all(&mut decoder, &stream);
        prop_assert_eq!(oks(&out), expected);
    }

    /// Whatever the bytes, feeding them never panics and the decoder stays bounded.
    #[test]
    fn any_input_is_handled(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let mut decoder: FrameDecoder<64> = FrameDecoder::new();
        let _ = feed_all(&mut decoder, &input);
        prop_assert!(decoder.pending() <= 64);
    }
}

// ---------------------------------------------------------------------------------------
// Buffer sizes

#[test]
fn an_oversize_chunk_is_reported_once_and_the_next_frame_survives() {
    let (h, b, w) = ping_frame(3);
    let flood = vec![0x5A; MAX_WIRE * 2 + 17];
    let stream = [&flood[..], &[0x00], &w].concat();
    // Whole, and in small pieces: the report is the same.
    for size in [stream.len(), 1, 7, 256] {
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(size) {
            out.extend(feed_all(&mut decoder, chunk));
        }
        assert_eq!(
            out,
            vec![Err(FrameError::Oversize), Ok((h, b.clone()))],
            "pieces of {size}"
        );
    }
}

#[test]
fn a_small_decoder_takes_frames_up_to_its_size() {
    let (h, b, w) = ping_frame(4);
    let encoded = w.len() - 1; // the buffer holds the frame without its delimiter
    assert_eq!(encoded, 13);

    let mut exact: FrameDecoder<13> = FrameDecoder::new();
    assert_eq!(feed_all(&mut exact, &w), vec![Ok((h, b.clone()))]);

    let mut short: FrameDecoder<12> = FrameDecoder::new();
    let stream = [&w[..], &[0x02, 0x01, 0x00], &w].concat();
    let out = feed_all(&mut short, &stream);
    assert_eq!(out[0], Err(FrameError::Oversize));
    assert_eq!(out[1], Err(FrameError::TooShort(1)));
    assert_eq!(out[2], Err(FrameError::Oversize));

    // A small decoder drops a big frame and still takes the small one after it.
    let big = encode_frame(
        Header::response(5),
        &Response::Status(common::status_report()),
    );
    let mut small: FrameDecoder<32> = FrameDecoder::new();
    let out = feed_all(&mut small, &[&big[..], &w].concat());
    assert_eq!(out, vec![Err(FrameError::Oversize), Ok((h, b))]);

    let mut tiny: FrameDecoder<0> = FrameDecoder::new();
    assert_eq!(feed_all(&mut tiny, &w), vec![Err(FrameError::Oversize)]);
}

#[test]
fn both_cobs_forms_of_a_final_254_byte_run_decode() {
    // Header 01 01 ff ff 01 has no zero; pick a non-zero body whose CRC has no zero byte,
    // so the whole 254-byte raw frame is one COBS run.
    let header = Header {
        kind: FrameKind::Request,
        id: 0xFFFF,
        flags: Flags(Flags::RETRY),
    };
    let body = (0u8..=255)
        .map(|fill| vec![0x80 | fill; 254 - 7])
        .find(|b| {
            let crc = CRC16.checksum(&[&header.to_bytes()[..], b].concat());
            crc.to_le_bytes().iter().all(|&x| x != 0)
        })
        .unwrap();
    let mut out = [0u8; MAX_WIRE];
    let n = encode_raw(header, &body, &mut out).unwrap();
    let ours = &out[..n];
    assert_eq!(ours.len(), 1 + 254 + 1, "FF + 254 bytes + delimiter");
    assert_eq!(ours[0], 0xFF);
    let with_01 = [&ours[..n - 1], &[0x01, 0x00]].concat();
    for wire in [ours, &with_01[..]] {
        let mut decoder: FrameDecoder = FrameDecoder::new();
        assert_eq!(
            feed_all(&mut decoder, wire),
            vec![Ok((header, body.clone()))]
        );
    }
}

// ---------------------------------------------------------------------------------------
// Limits and overhead

#[test]
fn plain_frame_overhead_is_at_most_10_bytes_up_to_254_byte_bodies() {
    let headers = [
        Header::request(0),
        Header {
            kind: FrameKind::Request,
            id: 0xFFFF,
            flags: Flags(Flags::RETRY),
        },
        Header::response(0x0101),
    ];
    let mut worst = 0;
    for len in 0..=254usize {
        for fill in [0x00u8, 0x01, 0xFF] {
            let body: Vec<u8> = (0..len)
                .map(|i| {
                    if fill == 0x01 {
                        (i % 255 + 1) as u8
                    } else {
                        fill
                    }
                })
                .collect();
            for header in headers {
                let mut out = [0u8; MAX_WIRE];
                let n = encode_raw(header, &body, &mut out).unwrap();
                let overhead = n - len;
                assert!(
                    overhead <= 10,
                    "body {len} × {fill:#04x}: overhead {overhead}"
                );
                if len <= 247 {
                    assert!(
                        overhead <= 9,
                        "body {len} × {fill:#04x}: overhead {overhead}"
                    );
                }
                worst = worst.max(overhead);
                let mut decoder: FrameDecoder = FrameDecoder::new();
                assert_eq!(
                    feed_all(&mut decoder, &out[..n]),
                    vec![Ok((header, body.clone()))]
                );
            }
        }
    }
    assert_eq!(worst, 10, "the bound is reached, so the test measures it");
}

#[test]
fn the_largest_messages_fit_in_max_body() {
    let mut largest_request = 0;
    for r in common::largest_requests() {
        let n = postcard::to_stdvec(&r).unwrap().len();
        assert!(n <= MAX_BODY, "{} body is {n} bytes", r.name());
        largest_request = largest_request.max(n);
    }
    let mut largest_response = 0;
    for r in common::largest_responses() {
        let n = postcard::to_stdvec(&r).unwrap().len();
        assert!(n <= MAX_BODY, "{} body is {n} bytes", r.name());
        largest_response = largest_response.max(n);
    }
    // The worst cases really are at their longest: the write carries 7 × 16 steps at
    // 3 + 5 bytes each, the prescription 7 × 16 steps at 2 + 4.
    assert!(largest_request >= 7 * 16 * 8, "{largest_request}");
    assert!(largest_response >= 7 * 16 * 6, "{largest_response}");
}

#[test]
fn max_wire_holds_the_largest_frame() {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for r in common::largest_requests() {
        frames.push(encode_frame(Header::request(0xFFFF), &r));
    }
    for r in common::largest_responses() {
        frames.push(encode_frame(Header::response(0xFFFF), &r));
    }
    // The largest body there can be, with the worst COBS expansion (no zero at all).
    let header = Header {
        kind: FrameKind::Request,
        id: 0xFFFF,
        flags: Flags(Flags::RETRY),
    };
    let mut out = vec![0u8; MAX_WIRE];
    let n = encode_raw(header, &[0xFF; MAX_BODY], &mut out).unwrap();
    assert_eq!(
        n, MAX_WIRE,
        "a full body of non-zero bytes fills MAX_WIRE exactly"
    );
    frames.push(out[..n].to_vec());
    for wire in &frames {
        assert!(wire.len() <= MAX_WIRE);
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let out = feed_all(&mut decoder, wire);
        assert!(matches!(out[..], [Ok(_)]), "{out:?}");
    }
}

#[test]
fn the_encoder_refuses_what_does_not_fit() {
    let mut out = vec![0u8; MAX_WIRE + 16];
    assert_eq!(
        encode_raw(Header::request(1), &[0x11; MAX_BODY + 1], &mut out),
        Err(EncodeError::BodyTooLarge)
    );
    let (_, _, w) = ping_frame(1);
    for room in 0..w.len() {
        let mut small = vec![0u8; room];
        assert_eq!(
            frame::encode(Header::request(1), &PING, &mut small),
            Err(EncodeError::BufferTooSmall),
            "room {room}"
        );
    }
    let mut exact = vec![0u8; w.len()];
    assert_eq!(
        frame::encode(Header::request(1), &PING, &mut exact),
        Ok(w.len())
    );
    assert_eq!(exact, w);
}

#[test]
fn a_body_must_be_used_exactly() {
    let mut body = postcard::to_stdvec(&Request::Ping { token: 300 }).unwrap();
    assert_eq!(
        decode_body::<Request>(&body),
        Ok(Request::Ping { token: 300 })
    );
    assert_eq!(
        decode_body::<Request>(&body[..body.len() - 1]),
        Err(BodyError::Decode)
    );
    body.extend([0xAA, 0xBB]);
    assert_eq!(
        decode_body::<Request>(&body),
        Err(BodyError::TrailingBytes(2))
    );
    assert_eq!(
        decode_body::<Request>(&[21]),
        Err(BodyError::Decode),
        "no Request tag 21"
    );
    assert_eq!(
        decode_body::<Response>(&[22]),
        Err(BodyError::Decode),
        "no Response tag 22"
    );
    assert_eq!(decode_body::<Request>(&[]), Err(BodyError::Decode));
}
