//! Streaming frame decoder.
//!
//! [`FrameDecoder::feed`] takes whatever bytes the link delivered (one byte or a whole
//! buffer) and stops at the first complete frame or error, handing back the unread rest
//! of the input; the caller loops until the input is used up:
//!
//! ```
//! use thecal_protocol::frame::{FrameDecoder, Feed};
//! let mut decoder: FrameDecoder = FrameDecoder::new();
//! let mut input: &[u8] = &[0x11, 0x22, 0x00]; // garbage, then a delimiter
//! loop {
//!     match decoder.feed(input) {
//!         Feed::Consumed => break,
//!         Feed::Frame { frame, remaining } => { let _ = frame.body; input = remaining; }
//!         Feed::Error { error, remaining } => { let _ = error; input = remaining; }
//!     }
//! }
//! ```
//!
//! Bytes are buffered up to the delimiter (at most `N`); a chunk that overflows the
//! buffer is discarded up to the next delimiter and reported once as
//! [`FrameError::Oversize`]. Empty chunks (two delimiters in a row) are idle fill and
//! are ignored. The decoder never panics and never allocates.

use serde::Deserialize;

use super::crc16;
use super::{BodyError, FrameError, Header, CRC_LEN, HEADER_LEN, MAX_WIRE};

/// A decoded frame, borrowing the decoder's buffer until the next `feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Header.
    pub header: Header,
    /// Body bytes (postcard), CRC already checked.
    pub body: &'a [u8],
}

/// What one call to [`FrameDecoder::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed<'d, 'i> {
    /// All input was buffered; no frame is complete yet.
    Consumed,
    /// A frame is complete; `remaining` is the input after its delimiter.
    Frame {
        /// The frame.
        frame: Frame<'d>,
        /// Unread input.
        remaining: &'i [u8],
    },
    /// A chunk was dropped; `remaining` is the input after its delimiter.
    Error {
        /// Why.
        error: FrameError,
        /// Unread input.
        remaining: &'i [u8],
    },
}

/// A streaming decoder with an `N`-byte buffer for one encoded frame (delimiter not
/// included). The default holds the largest frame of this protocol.
#[derive(Debug, Clone)]
pub struct FrameDecoder<const N: usize = MAX_WIRE> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// Bytes buffered towards the next frame.
    pub const fn pending(&self) -> usize {
        self.len
    }

    /// Drops any partial frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }

    /// Consumes input up to and including the first delimiter that completes a frame or
    /// an error; see the module docs.
    pub fn feed<'d, 'i>(&'d mut self, input: &'i [u8]) -> Feed<'d, 'i> {
        let mut rest = input;
        loop {
            let Some(at) = rest.iter().position(|&b| b == 0) else {
                self.append(rest);
                return Feed::Consumed;
            };
            let (chunk, tail) = rest.split_at_checked(at).unwrap_or((rest, &[]));
            self.append(chunk);
            // Past the delimiter.
            rest = tail.get(1..).unwrap_or_default();
            let (len, overflowed) = (self.len, self.overflowed);
            self.reset();
            if overflowed {
                return Feed::Error {
                    error: FrameError::Oversize,
                    remaining: rest,
                };
            }
            if len == 0 {
                continue;
            }
            return match self.buf.get_mut(..len).map(decode_chunk) {
                Some(Ok(frame)) => Feed::Frame {
                    frame,
                    remaining: rest,
                },
                Some(Err(error)) => Feed::Error {
                    error,
                    remaining: rest,
                },
                None => Feed::Error {
                    error: FrameError::Oversize,
                    remaining: rest,
                },
            };
        }
    }

    /// Buffers delimiter-free bytes; past `N` the chunk is marked overflowed (the buffer
    /// filled to `N`, as if byte by byte) and the rest of it is dropped.
    fn append(&mut self, bytes: &[u8]) {
        if self.overflowed || bytes.is_empty() {
            return;
        }
        let room = N.saturating_sub(self.len);
        let (fits, over) = bytes.split_at_checked(room).unwrap_or((bytes, &[]));
        if let Some(dst) = self.buf.get_mut(self.len..self.len + fits.len()) {
            dst.copy_from_slice(fits);
            self.len += fits.len();
        }
        if !over.is_empty() {
            self.overflowed = true;
        }
    }
}

/// Whether the CRC is checked. Only fuzzing builds (`--cfg fuzzing`, which cargo-fuzz
/// sets) accept any CRC, so that fuzz targets fed raw bytes reach the header and body
/// parsers behind it; the `frame_decoder` target is built without that cfg and keeps the
/// check (see `fuzz/README.md`). Never set in a product build.
const CHECK_CRC: bool = !cfg!(fuzzing);

/// Decodes one chunk (the bytes between two delimiters) in place.
fn decode_chunk(chunk: &mut [u8]) -> Result<Frame<'_>, FrameError> {
    let raw = unstuff(chunk)?;
    if raw.len() < HEADER_LEN + CRC_LEN {
        return Err(FrameError::TooShort(raw.len()));
    }
    let (content, crc) = raw.split_at(raw.len() - CRC_LEN);
    let received = match crc {
        [lo, hi] => u16::from_le_bytes([*lo, *hi]),
        _ => return Err(FrameError::TooShort(raw.len())),
    };
    let computed = crc16::checksum(content);
    if CHECK_CRC && received != computed {
        return Err(FrameError::Crc { received, computed });
    }
    let (head, body) = content.split_at(HEADER_LEN);
    let head: [u8; HEADER_LEN] = head
        .try_into()
        .map_err(|_| FrameError::TooShort(raw.len()))?;
    Ok(Frame {
        header: Header::from_bytes(head)?,
        body,
    })
}

/// COBS-decodes a chunk in place; returns the raw frame. For a chunk without zero bytes
/// (every chunk `feed` cuts at delimiters), the same result and errors as
/// `cobs::decode_in_place_report`, which decodes the chunks that need bytes moved.
///
/// Unless a block of 254 data bytes is followed by another (code 0xFF: no zero follows),
/// nothing needs to move: the raw frame is the chunk after its first code byte, with each
/// later code byte replaced by the zero it stands for. Such chunks (every chunk of a frame
/// under 254 bytes) are decoded by walking the chain of codes, one step per block.
fn unstuff(chunk: &mut [u8]) -> Result<&[u8], FrameError> {
    let n = chunk.len();
    // Check the chain: every block ends within the chunk.
    let mut at = 0;
    let mut moves = false;
    while let Some(&code) = chunk.get(at) {
        let next = at + usize::from(code);
        // A zero byte (never in a chunk from `feed`) ends the input for the crate.
        if code == 0 || (code == 0xFF && next < n) {
            moves = true;
            break;
        }
        if next > n {
            return Err(FrameError::Cobs);
        }
        at = next;
    }
    if moves || n == 0 {
        let report = cobs::decode_in_place_report(chunk).map_err(|_| FrameError::Cobs)?;
        return chunk.get(..report.frame_size()).ok_or(FrameError::Cobs);
    }
    // Each code after the first stands for a zero.
    let mut at = chunk.first().map_or(n, |&code| usize::from(code));
    while let Some(slot) = chunk.get_mut(at) {
        at += usize::from(*slot);
        *slot = 0;
    }
    chunk.get(1..).ok_or(FrameError::Cobs)
}

/// Decodes a frame body as `T`, requiring every byte to be used.
pub fn decode_body<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, BodyError> {
    let (value, rest) = postcard::take_from_bytes(body).map_err(|_| BodyError::Decode)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(BodyError::TrailingBytes(rest.len()))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::frame::encode_raw;

    /// What a decoder reports for `input` fed in `pieces`, as (header id, body) or error.
    fn outcomes<const N: usize>(
        decoder: &mut FrameDecoder<N>,
        pieces: &[&[u8]],
    ) -> Vec<Result<(u16, Vec<u8>), FrameError>> {
        let mut out = Vec::new();
        for piece in pieces {
            let mut input = *piece;
            loop {
                match decoder.feed(input) {
                    Feed::Consumed => break,
                    Feed::Frame { frame, remaining } => {
                        out.push(Ok((frame.header.id, frame.body.to_vec())));
                        input = remaining;
                    }
                    Feed::Error { error, remaining } => {
                        out.push(Err(error));
                        input = remaining;
                    }
                }
            }
        }
        out
    }

    fn wire(id: u16, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; MAX_WIRE];
        let n = encode_raw(Header::request(id), body, &mut out).unwrap_or(0);
        out.truncate(n);
        out
    }

    /// The reference: the crate's in-place decoder.
    fn reference(chunk: &[u8]) -> Option<Vec<u8>> {
        let mut buf = chunk.to_vec();
        let report = cobs::decode_in_place_report(&mut buf).ok()?;
        buf.truncate(report.frame_size());
        Some(buf)
    }

    fn ours(chunk: &[u8]) -> Option<Vec<u8>> {
        let mut buf = chunk.to_vec();
        unstuff(&mut buf).ok().map(<[u8]>::to_vec)
    }

    #[test]
    fn unstuffing_matches_the_cobs_crate_on_valid_and_invalid_chunks() {
        // Valid: encodings of runs around every block size, zeros first, last, doubled.
        for run in [0, 1, 2, 253, 254, 255, 508, 509, 1030] {
            let ones: Vec<u8> = (0..run).map(|i| (i % 255 + 1) as u8).collect();
            for raw in [
                ones.clone(),
                [&ones[..], &[0]].concat(),
                [&[0], &ones[..]].concat(),
                [&ones[..], &[0, 0], &ones[..]].concat(),
            ] {
                let mut chunk = vec![0u8; cobs::max_encoding_length(raw.len())];
                let len = cobs::encode(&raw, &mut chunk);
                chunk.truncate(len);
                assert_eq!(ours(&chunk), Some(raw.clone()), "{} raw bytes", raw.len());
            }
        }
        // Any chunk `feed` can cut: random non-zero bytes, small ones often (short blocks,
        // long chains), codes 0xFF in the middle and at the end, chains that overrun.
        let mut state = 0x9E37_79B9u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for len in 0..700 {
            for round in 0..4 {
                let chunk: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = next();
                        match (round, r % 16) {
                            (0, _) => ((r >> 8) % 255 + 1) as u8,
                            (_, 0) => 0xFF,
                            (1, _) => ((r >> 8) % 8 + 1) as u8,
                            _ => ((r >> 8) % 64 + 1) as u8,
                        }
                    })
                    .collect();
                assert_eq!(ours(&chunk), reference(&chunk), "{chunk:?}");
            }
        }
        for chunk in [&[][..], &[1], &[2], &[0xFF], &[3, 1], &[1, 1, 1]] {
            assert_eq!(ours(chunk), reference(chunk), "{chunk:?}");
        }
        // A zero where a code should be is left to the crate (and cannot loop).
        assert_eq!(ours(&[2, 1, 0, 1]), reference(&[2, 1, 0, 1]));
    }

    #[test]
    fn a_frame_split_at_every_position_decodes_the_same() {
        let body: Vec<u8> = (0..300u16).map(|i| (i % 7) as u8).collect();
        let frame = wire(7, &body);
        let stream = [&[0u8, 0][..], &frame, &[0], &frame].concat();
        let whole = outcomes(&mut FrameDecoder::<MAX_WIRE>::new(), &[&stream]);
        assert_eq!(whole, vec![Ok((7, body.clone())), Ok((7, body.clone()))]);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            let mut decoder: FrameDecoder = FrameDecoder::new();
            assert_eq!(outcomes(&mut decoder, &[a, b]), whole, "split at {at}");
            assert_eq!(decoder.pending(), 0);
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            outcomes(&mut FrameDecoder::<MAX_WIRE>::new(), &bytes),
            whole
        );
    }

    #[test]
    fn an_oversize_chunk_is_reported_once_then_the_next_frame_decodes() {
        let frame = wire(3, &[1, 2, 3]);
        let n = frame.len() - 1; // the chunk without its delimiter
                                 // Exactly N bytes fit.
        let mut decoder = FrameDecoder::<16>::new();
        assert!(n <= 16);
        assert_eq!(
            outcomes(&mut decoder, &[&frame]),
            vec![Ok((3, vec![1, 2, 3]))]
        );
        // One byte too many, in one feed or spread over several, then a valid frame.
        let too_long = vec![0x42u8; 17];
        let stream = [&too_long[..], &[0], &frame].concat();
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            let mut decoder = FrameDecoder::<16>::new();
            assert_eq!(
                outcomes(&mut decoder, &[a, b]),
                vec![Err(FrameError::Oversize), Ok((3, vec![1, 2, 3]))],
                "split at {at}"
            );
        }
        // While overflowed, the decoder holds a full buffer and drops the rest.
        let mut decoder = FrameDecoder::<16>::new();
        assert_eq!(decoder.feed(&too_long), Feed::Consumed);
        assert_eq!(decoder.pending(), 16);
        assert_eq!(decoder.feed(&[0x42; 40]), Feed::Consumed);
        assert_eq!(
            decoder.feed(&[0x42, 0, 0x99]),
            Feed::Error {
                error: FrameError::Oversize,
                remaining: &[0x99],
            }
        );
        assert_eq!(decoder.pending(), 0);
        assert_eq!(decoder.feed(&[0x99]), Feed::Consumed);
        assert_eq!(decoder.pending(), 1);
    }

    #[test]
    fn empty_chunks_are_ignored_and_the_rest_is_handed_back() {
        let frame = wire(9, &[]);
        let stream = [&[0u8, 0, 0][..], &frame, &[0, 0xAB]].concat();
        let mut decoder: FrameDecoder = FrameDecoder::new();
        match decoder.feed(&stream) {
            Feed::Frame { frame, remaining } => {
                assert_eq!((frame.header.id, frame.body), (9, &[][..]));
                assert_eq!(remaining, &[0, 0xAB]);
            }
            other => panic!("expected a frame, got {other:?}"),
        }
        assert_eq!(decoder.feed(&[0, 0xAB]), Feed::Consumed);
        assert_eq!(decoder.pending(), 1);
        assert_eq!(decoder.feed(&[]), Feed::Consumed);
        assert_eq!(decoder.pending(), 1);
    }
}
