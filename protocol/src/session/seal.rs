//! Sealed frames: `counter (low 16 bits, LE) ‖ ChaCha20-Poly1305 ciphertext ‖ tag (16)`,
//! with the nonce `counter (4, LE) ‖ 0 (8)` under one direction's session key and the 5
//! header bytes as associated data.
//!
//! Each direction counts frames in a u32, but only its low 16 bits travel (protocol 4;
//! issue 16 — two bytes fewer per frame). The receiver takes the wire value to mean the
//! smallest counter above the last it accepted with those low bits, and the full counter
//! goes into the nonce. So a replayed or reordered frame is read as a counter it was not
//! sealed under and its tag fails, a reflected frame (other direction, other key) fails
//! the same way, and nothing changes; a frame sealed after 65 536 or more lost frames in
//! a row cannot be placed and fails too, so the session is renewed. A sender stops at
//! counter `u32::MAX`: the session must be renewed.
//!
//! Why ChaCha20-Poly1305: constant-time and fast in software on microcontrollers without
//! AES hardware (the Cortex-M3/M4 targets here), a 16-byte tag, and a well-kept no_std
//! RustCrypto implementation.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

use super::{Secret, COUNTER_LEN, SEAL_OVERHEAD, TAG_LEN};
use crate::frame::HEADER_LEN;

/// Why a sealed body was not accepted, or could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SealError {
    /// Shorter than counter + tag.
    TooShort,
    /// The wire counter places the frame at or beyond `u32::MAX`, which no sender uses:
    /// the receiving direction is used up.
    Replayed {
        /// The low 16 bits carried.
        counter: u16,
        /// Last accepted.
        last: u32,
    },
    /// The tag did not verify under the counter the frame was placed at: tampered,
    /// replayed or reordered (placed at a counter it was not sealed under), wrong key or
    /// wrong direction.
    Forged,
    /// The sending counter is exhausted: renew the session.
    Exhausted,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl core::fmt::Display for SealError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SealError::TooShort => f.write_str("sealed body shorter than counter and tag"),
            SealError::Replayed { counter, last } => write!(
                f,
                "counter ending {counter:#06x} after {last} would pass the last usable counter"
            ),
            SealError::Forged => f.write_str("authentication tag does not verify"),
            SealError::Exhausted => f.write_str("session counter exhausted; renew the session"),
            SealError::BufferTooSmall => f.write_str("buffer too small for the sealed body"),
        }
    }
}

impl core::error::Error for SealError {}

/// The counter a receiver places a frame at: the smallest value above `last` whose low
/// 16 bits are `wire`, or `None` when that would be `u32::MAX` or beyond (never sent).
pub fn place(last: u32, wire: u16) -> Option<u32> {
    let candidate = (last & !0xFFFF) | u32::from(wire);
    let placed = if candidate > last {
        candidate
    } else {
        candidate.checked_add(0x1_0000)?
    };
    (placed != u32::MAX).then_some(placed)
}

fn nonce(counter: u32) -> Nonce {
    let [a, b, c, d] = counter.to_le_bytes();
    Nonce::from([a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0])
}

/// The sending half of a session direction.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    next: u32,
}

impl Sealer {
    /// A sealer whose first counter is 1.
    pub fn new(key: &Secret) -> Self {
        Self::starting_at(key, 1)
    }

    /// A sealer whose next counter is `next` (tests of the counter limit).
    pub fn starting_at(key: &Secret, next: u32) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&Key::from(*key.as_bytes())),
            next,
        }
    }

    /// Whether the counter is used up (the session must be renewed).
    pub fn exhausted(&self) -> bool {
        self.next == u32::MAX
    }

    /// Seals `plaintext` into `out` (`counter ‖ ciphertext ‖ tag`) under `header` (the
    /// five header bytes, `SEALED` flag set); returns the body length.
    pub fn seal(
        &mut self,
        header: &[u8; HEADER_LEN],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        if self.next == u32::MAX {
            return Err(SealError::Exhausted);
        }
        let total = plaintext.len() + SEAL_OVERHEAD;
        let body = out.get_mut(..total).ok_or(SealError::BufferTooSmall)?;
        let (counter, rest) = body.split_at_mut(COUNTER_LEN);
        let (text, tag_out) = rest.split_at_mut(plaintext.len());
        // Only the low 16 bits travel; the nonce takes the whole counter.
        counter.copy_from_slice(&self.next.to_le_bytes()[..COUNTER_LEN]);
        text.copy_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce(self.next), header, text.into())
            .map_err(|_| SealError::BufferTooSmall)?;
        tag_out.copy_from_slice(&tag);
        self.next += 1;
        Ok(total)
    }
}

/// The receiving half of a session direction.
#[derive(Clone)]
pub struct Opener {
    cipher: ChaCha20Poly1305,
    last: u32,
}

impl Opener {
    /// An opener that accepts counters from 1.
    pub fn new(key: &Secret) -> Self {
        Self::after(key, 0)
    }

    /// An opener whose last accepted counter is `last` (tests of the counter limit).
    pub fn after(key: &Secret, last: u32) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&Key::from(*key.as_bytes())),
            last,
        }
    }

    /// The last counter accepted (0 before the first frame).
    pub fn last(&self) -> u32 {
        self.last
    }

    /// Authenticates and decrypts `body` in place; returns the plaintext. Nothing
    /// changes unless it is authentic and fresh.
    pub fn open<'b>(
        &mut self,
        header: &[u8; HEADER_LEN],
        body: &'b mut [u8],
    ) -> Result<&'b [u8], SealError> {
        if body.len() < SEAL_OVERHEAD {
            return Err(SealError::TooShort);
        }
        let (counter, rest) = body.split_at_mut(COUNTER_LEN);
        let wire = match *counter {
            [lo, hi] => u16::from_le_bytes([lo, hi]),
            _ => return Err(SealError::TooShort),
        };
        // u32::MAX is never sent (a sender stops before it).
        let counter = place(self.last, wire).ok_or(SealError::Replayed {
            counter: wire,
            last: self.last,
        })?;
        let split = rest.len() - TAG_LEN;
        let (text, tag) = rest.split_at_mut(split);
        let tag = Tag::try_from(&tag[..]).map_err(|_| SealError::TooShort)?;
        self.cipher
            .decrypt_inout_detached(&nonce(counter), header, (&mut *text).into(), &tag)
            .map_err(|_| SealError::Forged)?;
        self.last = counter;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (Secret, Secret) {
        (Secret::new([3; 32]), Secret::new([4; 32]))
    }

    #[test]
    fn sealed_frames_open_once_in_order_and_only_in_their_direction() {
        let (to_device, to_host) = keys();
        let mut tx = Sealer::new(&to_device);
        let mut rx = Opener::new(&to_device);
        let mut wrong_direction = Opener::new(&to_host);
        let header = [1, 1, 7, 0, 2];
        let mut a = [0u8; 64];
        let n = tx.seal(&header, b"status", &mut a).unwrap();
        assert_eq!(n, 6 + SEAL_OVERHEAD);
        assert_eq!(a[..COUNTER_LEN], [1, 0]);
        let mut b = [0u8; 64];
        let m = tx.seal(&header, b"second", &mut b).unwrap();
        let mut replay = a;
        let mut copy = a;
        assert_eq!(
            wrong_direction.open(&header, &mut copy[..n]),
            Err(SealError::Forged)
        );
        assert_eq!(wrong_direction.last(), 0);
        // b before a: a is then a reordering, placed at counter 65 537 — not what it was
        // sealed under — and refused without moving the receiver.
        assert_eq!(rx.open(&header, &mut b[..m]).unwrap(), b"second");
        assert_eq!(rx.open(&header, &mut a[..n]), Err(SealError::Forged));
        assert_eq!(rx.open(&header, &mut replay[..n]), Err(SealError::Forged));
        assert_eq!(rx.last(), 2);
        let mut c = [0u8; 64];
        let k = tx.seal(&header, b"third", &mut c).unwrap();
        assert_eq!(rx.open(&header, &mut c[..k]).unwrap(), b"third");
        // Any flipped bit, in the header or the body, is refused.
        let mut tx = Sealer::new(&to_device);
        let mut rx = Opener::new(&to_device);
        let mut c = [0u8; 64];
        let n = tx.seal(&header, b"bolus", &mut c).unwrap();
        for bit in 0..(n + HEADER_LEN) * 8 {
            let (mut hh, mut cc) = (header, c);
            if bit < HEADER_LEN * 8 {
                hh[bit / 8] ^= 1 << (bit % 8);
            } else {
                cc[bit / 8 - HEADER_LEN] ^= 1 << (bit % 8);
            }
            assert!(rx.open(&hh, &mut cc[..n]).is_err(), "bit {bit}");
        }
        assert_eq!(rx.open(&header, &mut c[..n]).unwrap(), b"bolus");
    }

    #[test]
    fn a_wire_counter_is_placed_at_the_smallest_counter_above_the_last() {
        assert_eq!(place(0, 1), Some(1));
        assert_eq!(place(1, 3), Some(3));
        assert_eq!(place(5, 5), Some(0x1_0005));
        assert_eq!(place(5, 4), Some(0x1_0004));
        assert_eq!(place(0xFFFF, 0), Some(0x1_0000));
        assert_eq!(place(0x1_0005, 3), Some(0x2_0003));
        assert_eq!(place(0x1_0005, 6), Some(0x1_0006));
        // Never u32::MAX, never past it.
        assert_eq!(place(u32::MAX - 2, 0xFFFE), Some(u32::MAX - 1));
        assert_eq!(place(u32::MAX - 2, 0xFFFF), None);
        assert_eq!(place(u32::MAX - 1, 0), None);
        assert_eq!(place(u32::MAX - 1, 0xFFFF), None);
        // Every wire value lands within 65 536 above the last.
        for last in [0, 1, 0xFFFE, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0xFFFE_0000] {
            for wire in [0u16, 1, 0x7FFF, 0xFFFF] {
                let c = place(last, wire).unwrap();
                assert!(c > last && c - last <= 0x1_0000, "{last:#x} {wire:#x}");
                assert_eq!(c as u16, wire);
            }
        }
    }

    #[test]
    fn frames_open_across_the_16_bit_wrap_and_after_up_to_65_535_lost() {
        let key = Secret::new([7; 32]);
        let header = [4, 2, 1, 0, 2];
        let mut tx = Sealer::starting_at(&key, 0xFFFE);
        let mut rx = Opener::after(&key, 0xFFFD);
        for expected in 0xFFFE..0x1_0003u32 {
            let mut out = [0u8; 32];
            let n = tx.seal(&header, b"x", &mut out).unwrap();
            assert_eq!(rx.open(&header, &mut out[..n]).unwrap(), b"x");
            assert_eq!(rx.last(), expected);
        }
        // 65 535 frames lost in a row: the next one is still placed right.
        let mut tx = Sealer::starting_at(&key, 0x1_0002 + 0xFFFF);
        let mut out = [0u8; 32];
        let n = tx.seal(&header, b"y", &mut out).unwrap();
        assert_eq!(rx.open(&header, &mut out[..n]).unwrap(), b"y");
        // 65 536 lost: placed one cycle short, so it cannot open; the session is renewed.
        let last = rx.last();
        let mut tx = Sealer::starting_at(&key, last + 0x1_0001);
        let n = tx.seal(&header, b"z", &mut out).unwrap();
        assert_eq!(rx.open(&header, &mut out[..n]), Err(SealError::Forged));
        assert_eq!(rx.last(), last);
    }

    #[test]
    fn the_counter_stops_at_its_maximum() {
        let key = Secret::new([5; 32]);
        let mut tx = Sealer::starting_at(&key, u32::MAX - 1);
        let mut out = [0u8; 32];
        assert!(tx.seal(&[0; 5], b"x", &mut out).is_ok());
        assert_eq!(tx.seal(&[0; 5], b"x", &mut out), Err(SealError::Exhausted));
        assert!(tx.exhausted());
    }

    #[test]
    fn a_receiver_drops_counter_u32_max_even_when_authentic() {
        // Only a sender that broke the rule could have made it: PROTOCOL.md 2.9.
        let key = Secret::new([6; 32]);
        let mut out = [0u8; 32];
        let n = Sealer::starting_at(&key, u32::MAX - 1)
            .seal(&[0; 5], b"x", &mut out)
            .unwrap();
        // Re-seal the same plaintext under counter u32::MAX by hand.
        let cipher = ChaCha20Poly1305::new(&Key::from(*key.as_bytes()));
        let mut text = *b"x";
        let tag = cipher
            .encrypt_inout_detached(&nonce(u32::MAX), &[0; 5], (&mut text[..]).into())
            .unwrap();
        let mut body = [0u8; 19];
        body[..2].copy_from_slice(&[0xFF, 0xFF]);
        body[2] = text[0];
        body[3..].copy_from_slice(&tag);
        let mut rx = Opener::after(&key, u32::MAX - 2);
        assert_eq!(
            rx.open(&[0; 5], &mut body),
            Err(SealError::Replayed {
                counter: 0xFFFF,
                last: u32::MAX - 2
            })
        );
        // The last usable counter opens; after it, nothing does.
        assert_eq!(rx.open(&[0; 5], &mut out[..n]).unwrap(), b"x");
        assert_eq!(rx.last(), u32::MAX - 1);
        assert!(matches!(
            rx.open(&[0; 5], &mut body),
            Err(SealError::Replayed { .. })
        ));
    }
}
