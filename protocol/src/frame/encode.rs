//! Frame encoder: header, postcard body and CRC are streamed straight into a COBS
//! encoder over the caller's buffer, so no scratch buffer is needed.

use cobs::CobsEncoder;
use crc::Digest;
use serde::Serialize;

use super::{EncodeError, Header, CRC16, MAX_BODY};

/// A postcard flavor that feeds COBS and the CRC as bytes are produced.
struct FrameSink<'a, 'e> {
    cobs: CobsEncoder<'a>,
    crc: Digest<'static, u16>,
    body_len: usize,
    /// Why the last push failed (postcard's own error type cannot say).
    error: &'e mut Option<EncodeError>,
}

impl FrameSink<'_, '_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.crc.update(bytes);
        self.cobs
            .push(bytes)
            .map_err(|_| EncodeError::BufferTooSmall)
    }

    fn put_body(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.body_len += bytes.len();
        if self.body_len > MAX_BODY {
            return Err(EncodeError::BodyTooLarge);
        }
        self.put(bytes)
    }

    fn finish(self) -> Result<usize, EncodeError> {
        close(self.cobs, self.crc)
    }
}

impl postcard::ser_flavors::Flavor for FrameSink<'_, '_> {
    type Output = usize;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.put_body(data).map_err(|e| {
            *self.error = Some(e);
            postcard::Error::SerializeBufferFull
        })
    }

    fn finalize(self) -> postcard::Result<usize> {
        let FrameSink {
            cobs, crc, error, ..
        } = self;
        close(cobs, crc).map_err(|e| {
            *error = Some(e);
            postcard::Error::SerializeBufferFull
        })
    }
}

/// Appends the CRC and closes the COBS block; returns the encoded length.
fn close(mut cobs: CobsEncoder<'_>, crc: Digest<'static, u16>) -> Result<usize, EncodeError> {
    cobs.push(&crc.finalize().to_le_bytes())
        .map_err(|_| EncodeError::BufferTooSmall)?;
    Ok(cobs.finalize())
}

/// Encodes `message` as a complete wire frame (delimiter included) into `out`; returns
/// the number of bytes written.
pub fn encode<T: Serialize + ?Sized>(
    header: Header,
    message: &T,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let mut error = None;
    let n = {
        let sink = start(header, out, &mut error)?;
        postcard::serialize_with_flavor(message, sink)
    };
    match n {
        Ok(n) => terminate(out, n),
        // No recorded cause: serde itself failed, not the buffer.
        Err(_) => Err(error.unwrap_or(EncodeError::Serialize)),
    }
}

/// Encodes an already-serialised body as a complete wire frame into `out`.
pub fn encode_raw(header: Header, body: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut error = None;
    let n = {
        let mut sink = start(header, out, &mut error)?;
        sink.put_body(body)?;
        sink.finish()?
    };
    terminate(out, n)
}

fn start<'a, 'e>(
    header: Header,
    out: &'a mut [u8],
    error: &'e mut Option<EncodeError>,
) -> Result<FrameSink<'a, 'e>, EncodeError> {
    // Keep the last byte for the delimiter.
    let room = out
        .len()
        .checked_sub(1)
        .ok_or(EncodeError::BufferTooSmall)?;
    let content = out.get_mut(..room).ok_or(EncodeError::BufferTooSmall)?;
    let mut sink = FrameSink {
        cobs: CobsEncoder::new(content),
        crc: CRC16.digest(),
        body_len: 0,
        error,
    };
    sink.put(&header.to_bytes())?;
    Ok(sink)
}

fn terminate(out: &mut [u8], n: usize) -> Result<usize, EncodeError> {
    *out.get_mut(n).ok_or(EncodeError::BufferTooSmall)? = 0;
    Ok(n + 1)
}
