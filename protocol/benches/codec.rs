//! Frame codec throughput: encode + decode of a whole frame (header, postcard body, CRC,
//! COBS, then the streaming `FrameDecoder` and `decode_body`), against the baseline of
//! bare postcard + COBS (`postcard::to_slice_cobs` / `postcard::from_bytes_cobs`: no
//! header, no CRC, no streaming decoder) on the same messages.
//!
//! `cargo bench -p thecal-protocol --bench codec` measures; `-- --test` runs each case
//! once as a smoke test (CI). Results and the machine are in docs/BENCHMARKS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{de::DeserializeOwned, Serialize};
use thecal_protocol::frame::{self, decode_body, Feed, FrameDecoder, Header, MAX_WIRE};
use thecal_protocol::message::{PrescriptionRecord, Revision};
use thecal_protocol::{Request, Response};

/// A message of either direction, so both can be benchmarked by one function.
trait Message: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug {}
impl<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug> Message for T {}

/// One frame out and back in through thecal's codec.
fn thecal_round_trip<T: Message>(
    header: Header,
    msg: &T,
    out: &mut [u8],
    decoder: &mut FrameDecoder,
) -> T {
    let n = frame::encode(header, msg, out).expect("encode");
    match decoder.feed(&out[..n]) {
        Feed::Frame { frame, .. } => decode_body(frame.body).expect("decode body"),
        other => panic!("no frame: {other:?}"),
    }
}

/// The same message through bare postcard + COBS.
fn baseline_round_trip<T: Message>(msg: &T, out: &mut [u8]) -> T {
    let n = postcard::to_slice_cobs(msg, out).expect("encode").len();
    postcard::from_bytes_cobs(&mut out[..n]).expect("decode")
}

fn bench_message<T: Message>(c: &mut Criterion, name: &str, header: Header, msg: T) {
    let mut out = [0u8; MAX_WIRE];
    let mut decoder: FrameDecoder = FrameDecoder::new();

    // Sizes on the wire, and a check that both paths really round-trip.
    let thecal_bytes = frame::encode(header, &msg, &mut out).expect("encode");
    let baseline_bytes = postcard::to_slice_cobs(&msg, &mut out)
        .expect("encode")
        .len();
    let body = postcard::to_stdvec(&msg).expect("body").len();
    println!(
        "{name}: body {body} B, thecal frame {thecal_bytes} B, postcard+COBS {baseline_bytes} B, \
         overhead +{} B",
        thecal_bytes - baseline_bytes
    );
    assert_eq!(thecal_round_trip(header, &msg, &mut out, &mut decoder), msg);
    assert_eq!(baseline_round_trip(&msg, &mut out), msg);

    let mut group = c.benchmark_group(format!("frame_codec/{name}"));
    group.throughput(Throughput::Elements(1)); // one frame per iteration
    group.bench_function("thecal", |b| {
        b.iter(|| thecal_round_trip(black_box(header), black_box(&msg), &mut out, &mut decoder))
    });
    group.bench_function("postcard_cobs", |b| {
        b.iter(|| baseline_round_trip(black_box(&msg), &mut out))
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let weekly = common::full_weekly();
    bench_message(
        c,
        "status",
        Header::response(0x0303),
        Response::Status(common::status_report()),
    );
    // Decoding a Prescription validates it again (every rule, every rolling window).
    bench_message(
        c,
        "weekly_prescription",
        Header::response(0x0309),
        Response::Prescription(PrescriptionRecord {
            revision: Revision(4),
            written_at: common::NOW,
            prescription: weekly.clone(),
            standing: thecal_protocol::message::Standing {
                newest: Revision(4),
                fallback: false,
                review: false,
            },
        }),
    );
    // The same 7 × 16 schedule as a draft, which decodes without validation: the codec
    // alone on a large frame.
    bench_message(
        c,
        "weekly_write_request",
        Header::request(0x0309),
        Request::WritePrescription {
            expected: Revision(3),
            prescription: weekly.draft().clone(),
        },
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
