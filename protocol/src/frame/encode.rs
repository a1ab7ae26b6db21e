//! Frame encoder. The raw frame (header, postcard body, CRC) is laid out in the caller's
//! buffer one byte from its start, the CRC is computed over header and body in one pass,
//! then COBS encodes the raw frame forward in place: no scratch buffer, no allocation.
//!
//! In place works because COBS output never overtakes its input by more than the code
//! bytes it adds: with the raw frame one byte ahead, each zero is replaced by the code of
//! the block it ends and nothing moves. Only a run of 254 non-zero bytes adds a code byte
//! that replaces no zero; the rest of the raw frame is then shifted one byte to make room
//! (at most four times in a frame of [`MAX_BODY`]). The buffer needed is exactly the
//! encoded length plus the delimiter, as with a streaming encoder.

use serde::Serialize;

use super::{crc16, EncodeError, Header, CRC_LEN, HEADER_LEN, MAX_BODY};

/// Encodes `message` as a complete wire frame (delimiter included) into `out`; returns
/// the number of bytes written.
pub fn encode<T: Serialize + ?Sized>(
    header: Header,
    message: &T,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let body_len = {
        let room = body_room(header, out)?;
        // One byte over the limit is enough to tell a body too large from a full buffer.
        let limited = room.len() > MAX_BODY;
        let take = room.len().min(MAX_BODY + 1);
        let area = room.get_mut(..take).ok_or(EncodeError::BufferTooSmall)?;
        match postcard::to_slice(message, area) {
            Ok(body) => body.len(),
            Err(postcard::Error::SerializeBufferFull) if limited => {
                return Err(EncodeError::BodyTooLarge)
            }
            Err(postcard::Error::SerializeBufferFull) => return Err(EncodeError::BufferTooSmall),
            // serde itself failed, not the buffer.
            Err(_) => return Err(EncodeError::Serialize),
        }
    };
    if body_len > MAX_BODY {
        return Err(EncodeError::BodyTooLarge);
    }
    finish(out, body_len)
}

/// Encodes an already-serialised body as a complete wire frame into `out`.
pub fn encode_raw(header: Header, body: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    let room = body_room(header, out)?;
    if body.len() > MAX_BODY {
        return Err(EncodeError::BodyTooLarge);
    }
    room.get_mut(..body.len())
        .ok_or(EncodeError::BufferTooSmall)?
        .copy_from_slice(body);
    finish(out, body.len())
}

/// Writes the header at `out[1..]` and returns the room for the body: up to the CRC
/// before the byte kept for the delimiter.
fn body_room(header: Header, out: &mut [u8]) -> Result<&mut [u8], EncodeError> {
    let limit = out.len().saturating_sub(1);
    let raw = out.get_mut(1..limit).ok_or(EncodeError::BufferTooSmall)?;
    raw.get_mut(..HEADER_LEN)
        .ok_or(EncodeError::BufferTooSmall)?
        .copy_from_slice(&header.to_bytes());
    let room = raw.len().saturating_sub(HEADER_LEN + CRC_LEN);
    raw.get_mut(HEADER_LEN..HEADER_LEN + room)
        .ok_or(EncodeError::BufferTooSmall)
}

/// Appends the CRC to header and body (at `out[1..]`), COBS-encodes the raw frame to the
/// start of `out` and appends the delimiter; returns the wire length.
fn finish(out: &mut [u8], body_len: usize) -> Result<usize, EncodeError> {
    let content_len = HEADER_LEN + body_len;
    let limit = out.len().saturating_sub(1);
    let buf = out.get_mut(..limit).ok_or(EncodeError::BufferTooSmall)?;
    let content = buf
        .get(1..1 + content_len)
        .ok_or(EncodeError::BufferTooSmall)?;
    let crc = crc16::checksum(content).to_le_bytes();
    buf.get_mut(1 + content_len..1 + content_len + CRC_LEN)
        .ok_or(EncodeError::BufferTooSmall)?
        .copy_from_slice(&crc);
    let n = cobs_in_place(buf, content_len + CRC_LEN)?;
    *out.get_mut(n).ok_or(EncodeError::BufferTooSmall)? = 0;
    Ok(n + 1)
}

/// COBS-encodes the `len` (≥ 1) raw bytes at `buf[1..=len]` into the start of `buf`;
/// returns the encoded length. The bytes are those of `cobs::encode`: a block of 254
/// non-zero bytes gets code 0xFF and no implied zero, and a frame that ends with such a
/// block gets no trailing code. `buf` past the raw bytes is room for the code bytes such
/// blocks add; `BufferTooSmall` if the encoding does not fit in `buf`.
fn cobs_in_place(buf: &mut [u8], len: usize) -> Result<usize, EncodeError> {
    const FULL: usize = 0xFE;
    // Where the current block's code goes, the first unread raw byte, the end of the raw
    // bytes. Invariant: `code < read` at each block start, so a block's data (moved to
    // just after its code) never lands on unread bytes.
    let (mut code, mut read, mut end) = (0, 1, 1 + len);
    loop {
        if read == code {
            // A full block consumed the gap: shift the unread bytes to open one.
            let tail = buf.get_mut(read..=end).ok_or(EncodeError::BufferTooSmall)?;
            let unread = tail.len() - 1;
            tail.copy_within(..unread, 1);
            read += 1;
            end += 1;
        }
        let unread = buf.get(read..end).ok_or(EncodeError::BufferTooSmall)?;
        let max = unread.len().min(FULL);
        let run = unread.iter().take(max).position(|&b| b == 0).unwrap_or(max);
        if code + 1 < read {
            // The block's data moves down to follow its code.
            let (head, tail) = buf
                .split_at_mut_checked(read)
                .ok_or(EncodeError::BufferTooSmall)?;
            let dst = head
                .get_mut(code + 1..code + 1 + run)
                .ok_or(EncodeError::BufferTooSmall)?;
            dst.copy_from_slice(tail.get(..run).ok_or(EncodeError::BufferTooSmall)?);
        }
        // `run` ≤ 254, so the code fits a byte.
        *buf.get_mut(code).ok_or(EncodeError::BufferTooSmall)? = (run + 1) as u8;
        let next = code + 1 + run;
        if run == FULL {
            // No implied zero: the next block starts right after this one.
            read += run;
            if read == end {
                return Ok(next);
            }
        } else if read + run == end {
            return Ok(next);
        } else {
            // Skip the zero this block ends with.
            read += run + 1;
        }
        code = next;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::frame::{Flags, FrameKind, CRC16, MAX_WIRE};

    /// The reference: the crate's streaming COBS encoder over a separate buffer.
    fn reference(raw: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; cobs::max_encoding_length(raw.len())];
        let n = cobs::encode(raw, &mut out);
        out.truncate(n);
        out
    }

    fn in_place(raw: &[u8], room: usize) -> Result<Vec<u8>, EncodeError> {
        let mut buf = vec![0xAA; room];
        buf.get_mut(1..=raw.len())
            .ok_or(EncodeError::BufferTooSmall)?
            .copy_from_slice(raw);
        let n = cobs_in_place(&mut buf, raw.len())?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Raw frames with runs of non-zero bytes around every block-size boundary, zeros at
    /// the start, the end and in a row.
    fn samples() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for run in [0, 1, 2, 253, 254, 255, 507, 508, 509, 762, 1016, 1030] {
            let ones: Vec<u8> = (0..run).map(|i| (i % 255 + 1) as u8).collect();
            out.push(ones.clone());
            out.push([&ones[..], &[0]].concat());
            out.push([&[0], &ones[..]].concat());
            out.push([&ones[..], &[0, 0], &ones[..]].concat());
            out.push([&[7, 0][..], &ones[..], &[0, 9]].concat());
        }
        out.retain(|raw| !raw.is_empty());
        out
    }

    #[test]
    fn in_place_cobs_matches_the_crate_and_needs_exactly_its_length() {
        for raw in samples() {
            let expected = reference(&raw);
            assert_eq!(
                in_place(&raw, expected.len()),
                Ok(expected.clone()),
                "{raw:?}"
            );
            assert_eq!(in_place(&raw, expected.len() + 9), Ok(expected.clone()));
            assert_eq!(
                in_place(&raw, expected.len() - 1),
                Err(EncodeError::BufferTooSmall),
                "{} raw bytes",
                raw.len()
            );
        }
    }

    fn header() -> Header {
        Header {
            kind: FrameKind::Event,
            id: 0x0100,
            flags: Flags(0),
        }
    }

    /// The wire frame built the obvious way, with the crates' own CRC and COBS.
    fn expected_wire(body: &[u8]) -> Vec<u8> {
        let mut raw = [&header().to_bytes()[..], body].concat();
        raw.extend(CRC16.checksum(&raw).to_le_bytes());
        let mut wire = reference(&raw);
        wire.push(0);
        wire
    }

    /// `encode` writes `wire` into a buffer of exactly its length, and refuses one a byte
    /// shorter.
    fn fits_exactly(wire: &[u8], encode: impl Fn(&mut [u8]) -> Result<usize, EncodeError>) {
        let mut out = vec![0x55; wire.len()];
        assert_eq!(encode(&mut out), Ok(wire.len()));
        assert_eq!(out, wire);
        let mut out = vec![0x55; wire.len() - 1];
        assert_eq!(encode(&mut out), Err(EncodeError::BufferTooSmall));
    }

    #[test]
    fn a_buffer_exactly_big_enough_fits_and_one_byte_less_does_not() {
        for raw in samples() {
            let body = raw.get(..raw.len().min(MAX_BODY)).unwrap_or(&[]);
            fits_exactly(&expected_wire(body), |out| encode_raw(header(), body, out));
            // Through postcard: a byte string is its length varint, then the bytes.
            let wire = expected_wire(&postcard::to_stdvec(body).unwrap_or_default());
            if wire.len() <= MAX_WIRE {
                fits_exactly(&wire, |out| encode(header(), body, out));
            }
        }
    }

    #[test]
    fn tiny_buffers_are_too_small_and_a_long_body_too_large() {
        for room in 0..9 {
            let mut out = vec![0u8; room];
            assert_eq!(
                encode_raw(header(), &[], &mut out),
                Err(EncodeError::BufferTooSmall)
            );
            assert_eq!(
                encode(header(), &(), &mut out),
                Err(EncodeError::BufferTooSmall)
            );
        }
        let mut out = vec![0u8; 9];
        assert_eq!(encode(header(), &(), &mut out), Ok(9));
        let mut out = vec![0u8; 2 * MAX_WIRE];
        let long = vec![1u8; MAX_BODY]; // a length varint and 1024 bytes: one too many
        assert_eq!(
            encode(header(), &long[..], &mut out),
            Err(EncodeError::BodyTooLarge)
        );
        let long = vec![1u8; 4 * MAX_BODY];
        assert_eq!(
            encode(header(), &long[..], &mut out),
            Err(EncodeError::BodyTooLarge)
        );
        assert_eq!(
            encode_raw(header(), &long, &mut out),
            Err(EncodeError::BodyTooLarge)
        );
        let fits = vec![1u8; MAX_BODY - 2];
        let wire = expected_wire(&postcard::to_stdvec(&fits[..]).unwrap_or_default());
        assert_eq!(encode(header(), &fits[..], &mut out), Ok(wire.len()));
        assert_eq!(out.get(..wire.len()), Some(&wire[..]));
    }
}
