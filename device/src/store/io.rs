//! Flash access for the store: every read, write and erase goes through these, in chunks
//! through a word-aligned stack buffer, with flash errors mapped to
//! [`StoreError::Flash`].

use core::ops::ControlFlow;

use embedded_storage::nor_flash::NorFlash;

use super::layout::STORE_PAGE;
use super::record::{padded, CRC};
use crate::store::StoreError;

/// Bytes moved per flash call when reading or writing through a stack buffer.
const CHUNK: usize = 64;

pub(crate) fn read<F: NorFlash>(
    flash: &mut F,
    addr: u32,
    buf: &mut [u8],
) -> Result<(), StoreError> {
    flash.read(addr, buf).map_err(|_| StoreError::Flash)
}

pub(crate) fn erase<F: NorFlash>(flash: &mut F, addr: u32) -> Result<(), StoreError> {
    let end = addr
        .checked_add(STORE_PAGE as u32)
        .ok_or(StoreError::Flash)?;
    flash.erase(addr, end).map_err(|_| StoreError::Flash)
}

/// A stack buffer aligned for drivers that need word-aligned source buffers.
#[repr(align(4))]
struct Aligned([u8; CHUNK]);

/// Calls `f` for each chunk of `len` bytes (rounded up to whole words) from `addr`, with
/// the flash bytes and the number of them that belong to the `len` bytes.
fn for_chunks<F: NorFlash>(
    flash: &mut F,
    addr: u32,
    len: usize,
    mut f: impl FnMut(&[u8], usize) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let mut buf = Aligned([0; CHUNK]);
    let mut done = 0usize;
    let whole = padded(len);
    while done < whole {
        let n = (whole - done).min(CHUNK);
        let chunk = buf.0.get_mut(..n).ok_or(StoreError::Flash)?;
        read(flash, addr + done as u32, chunk)?;
        let real = len.saturating_sub(done).min(n);
        if f(chunk, real).is_break() {
            break;
        }
        done += n;
    }
    Ok(())
}

pub(crate) fn is_blank<F: NorFlash>(
    flash: &mut F,
    addr: u32,
    len: usize,
) -> Result<bool, StoreError> {
    let mut blank = true;
    for_chunks(flash, addr, len, |chunk, _| {
        blank = chunk.iter().all(|b| *b == 0xFF);
        if blank {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })?;
    Ok(blank)
}

pub(crate) fn payload_crc<F: NorFlash>(
    flash: &mut F,
    addr: u32,
    len: usize,
) -> Result<u32, StoreError> {
    let mut digest = CRC.digest();
    for_chunks(flash, addr, len, |chunk, real| {
        digest.update(chunk.get(..real).unwrap_or_default());
        ControlFlow::Continue(())
    })?;
    Ok(digest.finalize())
}

/// Whether the flash at `addr` holds `data` followed by `0xFF` up to a whole word.
pub(crate) fn equals_padded<F: NorFlash>(
    flash: &mut F,
    addr: u32,
    data: &[u8],
) -> Result<bool, StoreError> {
    let mut rest = data;
    let mut same = true;
    for_chunks(flash, addr, data.len(), |chunk, real| {
        let (want, tail) = rest.split_at(real.min(rest.len()));
        rest = tail;
        let (got, pad) = chunk.split_at(real.min(chunk.len()));
        same = got == want && pad.iter().all(|b| *b == 0xFF);
        if same {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })?;
    Ok(same)
}

/// Writes `data` at `addr` through an aligned buffer, the last word padded with `0xFF`.
pub(crate) fn write_padded<F: NorFlash>(
    flash: &mut F,
    addr: u32,
    data: &[u8],
) -> Result<(), StoreError> {
    let mut buf = Aligned([0xFF; CHUNK]);
    for (i, part) in data.chunks(CHUNK).enumerate() {
        let n = padded(part.len());
        buf.0.fill(0xFF);
        buf.0.iter_mut().zip(part).for_each(|(d, s)| *d = *s);
        let chunk = buf.0.get(..n).ok_or(StoreError::Flash)?;
        let at = addr + (i * CHUNK) as u32;
        flash.write(at, chunk).map_err(|_| StoreError::Flash)?;
    }
    Ok(())
}
