//! Sealed frames: `counter (u32 LE) ‖ ChaCha20-Poly1305 ciphertext ‖ tag (16)`, with the
//! nonce `counter (4, LE) ‖ 0 (8)` under one direction's session key and the 5 header
//! bytes as associated data. A receiver accepts only counters above the last it
//! accepted, so a replayed, reordered or reflected frame (other direction, other key) is
//! rejected. A sender stops at counter `u32::MAX`: the session must be renewed.
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
    /// The counter is not above the last one accepted: a replay or a reordering.
    Replayed {
        /// Counter carried.
        counter: u32,
        /// Last accepted.
        last: u32,
    },
    /// The tag did not verify: tampered, wrong key or wrong direction.
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
                "counter {counter} is not above the last accepted ({last}): replayed or reordered"
            ),
            SealError::Forged => f.write_str("authentication tag does not verify"),
            SealError::Exhausted => f.write_str("session counter exhausted; renew the session"),
            SealError::BufferTooSmall => f.write_str("buffer too small for the sealed body"),
        }
    }
}

impl core::error::Error for SealError {}

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
        counter.copy_from_slice(&self.next.to_le_bytes());
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
        Self {
            cipher: ChaCha20Poly1305::new(&Key::from(*key.as_bytes())),
            last: 0,
        }
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
        let counter = match *counter {
            [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
            _ => return Err(SealError::TooShort),
        };
        // u32::MAX is never sent (a sender stops before it): dropped like a replay.
        if counter <= self.last || counter == u32::MAX {
            return Err(SealError::Replayed {
                counter,
                last: self.last,
            });
        }
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
        let mut b = [0u8; 64];
        let m = tx.seal(&header, b"second", &mut b).unwrap();
        let mut replay = a;
        let mut copy = a;
        assert_eq!(
            wrong_direction.open(&header, &mut copy[..n]),
            Err(SealError::Forged)
        );
        // b before a: a is then a reordering.
        assert_eq!(rx.open(&header, &mut b[..m]).unwrap(), b"second");
        assert!(matches!(
            rx.open(&header, &mut a[..n]),
            Err(SealError::Replayed { .. })
        ));
        assert!(matches!(
            rx.open(&header, &mut replay[..n]),
            Err(SealError::Replayed { .. })
        ));
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
        let mut body = [0u8; 21];
        body[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        body[4] = text[0];
        body[5..].copy_from_slice(&tag);
        let mut rx = Opener::new(&key);
        assert!(matches!(
            rx.open(&[0; 5], &mut body),
            Err(SealError::Replayed { .. })
        ));
        // The last usable counter opens.
        assert_eq!(rx.open(&[0; 5], &mut out[..n]).unwrap(), b"x");
    }
}
