//! docs/PROTOCOL.md against the code: the worked examples (`<!-- vector: NAME -->`, see
//! `common/doc.rs`), each documented once, byte for byte and text for text what the code
//! encodes and renders, and the encoding rules the document states are postcard's.

mod common;

use std::collections::BTreeMap;

use common::annotate::{self, hex, render, render_line};
use common::doc::{fences, parse_hex, parse_raw, sections};
use common::{feed_all, Msg, Vector};
use serde::Serialize;
use thecal_protocol::frame::{self, FrameDecoder, Header, CRC16};
use thecal_protocol::message::{Request, Response};

// ---- rendering (what the document should say)

fn header_comment(h: &Header) -> String {
    let flags = if h.flags.has(frame::Flags::RETRY) {
        format!("{:#04x} RETRY", h.flags.0)
    } else {
        format!("{:#04x}", h.flags.0)
    };
    format!(
        "header: version {}, kind {:#04x} {:?}, id {:#06x}, flags {flags}",
        thecal_protocol::PROTOCOL_VERSION,
        h.kind.code(),
        h.kind,
        h.id
    )
}

fn render_raw(v: &Vector) -> String {
    let lines = match &v.msg {
        Msg::Request(r) => annotate::annotate(r),
        Msg::Response(r) => annotate::annotate(r),
    };
    let body = annotate::bytes(&lines);
    let head = v.header.to_bytes();
    let crc = CRC16.checksum(&[&head[..], &body].concat());
    let kind = match v.msg {
        Msg::Request(_) => "Request",
        Msg::Response(_) => "Response",
    };
    let mut s = String::new();
    s += &render_line(&head, 0, &header_comment(&v.header));
    s += "\n";
    let n = body.len();
    let unit = if n == 1 { "byte" } else { "bytes" };
    s += &render_line(&[], 0, &format!("body: {kind}, {n} {unit}"));
    s += "\n";
    s += &render(&lines, 1);
    s += &render_line(
        &crc.to_le_bytes(),
        0,
        &format!("crc: {crc:#06x}, little-endian"),
    );
    s += "\n";
    s
}

fn render_wire(wire: &[u8]) -> String {
    wire.chunks(16).map(|c| hex(c) + "\n").collect()
}

fn render_notation(v: &Vector) -> String {
    format!("// {:?}\n{}\n", v.header, v.msg.notation())
}

fn render_vector(v: &Vector) -> String {
    format!(
        "<!-- vector: {} -->\n```rust\n{}```\n\n```hex\n{}```\n\n```hex\n{}```\n",
        v.name,
        render_notation(v),
        render_raw(v),
        render_wire(&v.msg.encode(v.header))
    )
}

// ---- vectors

#[test]
fn every_vector_is_documented_once() {
    let documented: Vec<String> = sections("vector").into_iter().map(|(n, _)| n).collect();
    let known: Vec<&str> = common::vectors().iter().map(|v| v.name).collect();
    for v in common::vectors() {
        let count = documented.iter().filter(|d| *d == v.name).count();
        assert_eq!(
            count,
            1,
            "vector {} documented {count} times; add:\n\n{}",
            v.name,
            render_vector(&v)
        );
    }
    for d in &documented {
        assert!(
            known.contains(&d.as_str()),
            "PROTOCOL.md has vector {d:?} that no test knows"
        );
    }
    assert!(known.len() >= 8);
}

#[test]
fn documented_vectors_match_the_code() {
    let docs: BTreeMap<String, &str> = sections("vector").into_iter().collect();
    for v in common::vectors() {
        let Some(text) = docs.get(v.name) else {
            continue;
        };
        let blocks = fences(text);
        let want = render_vector(&v);
        let [(i0, rust), (i1, raw), (i2, wire)] = &blocks[..] else {
            panic!(
                "vector {}: expected rust, hex, hex blocks; should be:\n\n{want}",
                v.name
            )
        };
        assert_eq!(
            (i0.as_str(), i1.as_str(), i2.as_str()),
            ("rust", "hex", "hex"),
            "vector {}",
            v.name
        );

        // The bytes, checked against the code independently of the rendering.
        let parsed = parse_raw(raw);
        assert_eq!(
            parsed.header,
            v.header.to_bytes(),
            "vector {}: header",
            v.name
        );
        assert_eq!(
            parsed.body,
            v.msg.body(),
            "vector {}: body is not postcard's",
            v.name
        );
        let content = [&parsed.header[..], &parsed.body].concat();
        assert_eq!(
            parsed.crc,
            CRC16.checksum(&content).to_le_bytes(),
            "vector {}: crc",
            v.name
        );
        let wire = parse_hex(wire);
        assert_eq!(
            wire,
            v.msg.encode(v.header),
            "vector {}: wire bytes",
            v.name
        );
        let raw_frame = [&content[..], &parsed.crc].concat();
        assert_eq!(
            wire,
            [common::cobs_encode(&raw_frame), vec![0]].concat(),
            "vector {}: COBS",
            v.name
        );

        // Decoding the documented wire bytes gives the message back.
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let out = feed_all(&mut decoder, &wire);
        let [Ok((header, body))] = &out[..] else {
            panic!("vector {}: decoded {out:?}", v.name)
        };
        assert_eq!(*header, v.header, "vector {}", v.name);
        assert_eq!(v.msg.decode_like(body), v.msg, "vector {}", v.name);

        // And the text (notation and annotations) is exactly what the code renders.
        assert_eq!(
            *rust,
            render_notation(&v),
            "vector {}: notation; should be:\n\n{want}",
            v.name
        );
        assert_eq!(
            *raw,
            render_raw(&v),
            "vector {}: annotations; should be:\n\n{want}",
            v.name
        );
    }
}

/// The annotator (from which the documented bytes are rendered) agrees with postcard on
/// every sample, so the encoding rules the document states are postcard's.
#[test]
fn documented_encoding_rules_are_postcards() {
    fn check<T: Serialize + std::fmt::Debug>(samples: &[T]) {
        for s in samples {
            let ours = annotate::bytes(&annotate::annotate(s));
            assert_eq!(ours, postcard::to_stdvec(s).unwrap(), "{s:?}");
        }
    }
    check(&common::request_samples());
    check(&common::response_samples());
    check(&common::largest_requests());
    check(&common::largest_responses());
    check(&common::event_samples());
    assert_eq!(annotate::varint(0), [0x00]);
    assert_eq!(annotate::varint(127), [0x7F]);
    assert_eq!(annotate::varint(128), [0x80, 0x01]);
    assert_eq!(
        annotate::varint(u32::MAX.into()),
        [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]
    );
    assert_eq!(annotate::zigzag(-1), 1);
    assert_eq!(annotate::zigzag(60), 120);
    assert_eq!(postcard::to_stdvec(&-60i16).unwrap(), [119]);
}

/// The samples the tables are built from cover the vectors' message types too.
#[test]
fn vectors_cover_both_directions_and_the_retry_flag() {
    let vs = common::vectors();
    assert!(
        vs.iter()
            .filter(|v| matches!(v.msg, Msg::Request(_)))
            .count()
            >= 4
    );
    assert!(
        vs.iter()
            .filter(|v| matches!(v.msg, Msg::Response(_)))
            .count()
            >= 4
    );
    assert!(vs.iter().any(|v| v.header.flags.has(frame::Flags::RETRY)));
    assert!(vs
        .iter()
        .any(|v| matches!(v.msg, Msg::Response(Response::Refused(_)))));
    assert!(vs
        .iter()
        .any(|v| matches!(v.msg, Msg::Request(Request::WritePrescription { .. }))));
}
