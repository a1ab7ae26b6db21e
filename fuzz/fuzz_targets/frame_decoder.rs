//! `frame_decoder`: arbitrary bytes, cut into arbitrary chunks, into the streaming decoder.
//!
//! Input: byte 0 is `k`; the next `k % 16` bytes are chunk sizes (used in turn, 0 read as
//! 1); the rest is the stream. Checked:
//!
//! * chunking changes nothing: the chunked decoder yields exactly what one decoder fed
//!   the whole stream at once yields, one outcome per non-empty delimited chunk;
//! * every yielded frame re-encodes to the same wire bytes. This target is meant to be
//!   built **without** `--cfg fuzzing` (`cargo fuzz run --no-cfg-fuzzing frame_decoder`,
//!   as `.ci/run` does), so the CRC check stays in and is fuzzed; in a `cfg(fuzzing)`
//!   build the CRC is not checked and only header and body must survive re-encoding;
//! * a small decoder (`FrameDecoder<32>`) agrees with the full one on every chunk that
//!   fits it and reports `Oversize` for the others; `pending()` never exceeds the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thecal_protocol::frame::{encode_raw, Feed, FrameDecoder, FrameError, Header, MAX_WIRE};

type Outcome = Result<(Header, Vec<u8>), FrameError>;

fn feed<const N: usize>(d: &mut FrameDecoder<N>, mut input: &[u8], out: &mut Vec<Outcome>) {
    loop {
        let outcome = match d.feed(input) {
            Feed::Consumed => break,
            Feed::Frame { frame, remaining } => {
                input = remaining;
                Ok((frame.header, frame.body.to_vec()))
            }
            Feed::Error { error, remaining } => {
                input = remaining;
                Err(error)
            }
        };
        out.push(outcome);
    }
    assert!(d.pending() <= N);
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(usize::from(k % 16).min(rest.len()));

    let mut whole: FrameDecoder = FrameDecoder::new();
    let mut expected = Vec::new();
    feed(&mut whole, stream, &mut expected);

    let mut chunked: FrameDecoder = FrameDecoder::new();
    let mut small: FrameDecoder<32> = FrameDecoder::new();
    let (mut got, mut got_small) = (Vec::new(), Vec::new());
    let mut input = stream;
    let mut i = 0;
    while !input.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(input.len(), |&s| usize::from(s.max(1)));
        let (chunk, tail) = input.split_at(size.min(input.len()));
        feed(&mut chunked, chunk, &mut got);
        feed(&mut small, chunk, &mut got_small);
        input = tail;
        i += 1;
    }
    assert_eq!(got, expected, "chunking changed what the decoder yields");
    assert_eq!(whole.pending(), chunked.pending());

    // One outcome per non-empty chunk between delimiters (the unterminated tail is pending).
    let mut pieces: Vec<&[u8]> = stream.split(|&b| b == 0).collect();
    pieces.pop();
    pieces.retain(|p| !p.is_empty());
    assert_eq!(pieces.len(), expected.len());
    assert_eq!(got_small.len(), expected.len());

    for ((outcome, piece), small) in expected.iter().zip(&pieces).zip(&got_small) {
        if piece.len() > 32 {
            assert_eq!(small, &Err(FrameError::Oversize));
        } else {
            assert_eq!(
                small, outcome,
                "the small decoder disagrees on a chunk that fits"
            );
        }
        if piece.len() > MAX_WIRE {
            assert_eq!(outcome, &Err(FrameError::Oversize));
        }
        let Ok((header, body)) = outcome else {
            continue;
        };
        let mut wire = vec![0u8; MAX_WIRE];
        let n = encode_raw(*header, body, &mut wire).expect("a decoded frame re-encodes");
        let wire = &wire[..n];
        if cfg!(fuzzing) {
            // CRC not checked in this build: header and body must survive.
            let mut d: FrameDecoder = FrameDecoder::new();
            let mut again = Vec::new();
            feed(&mut d, wire, &mut again);
            assert_eq!(again.as_slice(), std::slice::from_ref(outcome));
        } else {
            assert_eq!(&wire[..n - 1], *piece, "a frame re-encodes to other bytes");
        }
    }
});
