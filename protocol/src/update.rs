//! Signed firmware images: the header a pump checks before it accepts an update.
//!
//! An update package is an [`ImageHeader`] of [`HEADER_LEN`] bytes followed by the
//! image itself (the bytes the bootloader will copy into the active slot). The header
//! names the board the image is built for, its version, its security version, its
//! length and its SHA-256, and carries an Ed25519 signature over all of that. The pump
//! checks the header ([`verify`]) before it accepts a single byte of the image, and the
//! image against the header's hash before it marks the slot for the bootloader.
//!
//! # Header layout (all integers little-endian)
//!
//! | Offset | Size | Field |
//! |-------:|-----:|-------|
//! | 0 | 4 | magic `"THFW"` |
//! | 4 | 1 | header format, [`FORMAT`] (1) |
//! | 5 | 1 | signing key: 0 = development, 1 = release ([`KeyKind`]) — a hint for the error message only; the signature decides |
//! | 6 | 2 | board ([`Board`]) |
//! | 8 | 3 | firmware version: major, minor, patch (one byte each) |
//! | 11 | 5 | reserved, 0 |
//! | 16 | 4 | security version (u32) |
//! | 20 | 4 | image length, bytes (u32, > 0) |
//! | 24 | 32 | SHA-256 of the image |
//! | 56 | 8 | reserved, 0 |
//! | 64 | 64 | Ed25519 signature (RFC 8032, strict verification) of [`SIGNING_CONTEXT`] followed by bytes 0..64 |
//!
//! The domain prefix keeps a firmware signature from ever being valid for anything else
//! the same key might sign.
//!
//! Verification only: the pump holds public keys. [`sign`] exists for host tools (the
//! `thecal-sign` binary) and tests; nothing on the device path calls it, so it is not
//! linked into firmware.
//!
//! The panic rule holds: every function here is total.

use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::version::Version;

/// Bytes of a signed header.
pub const HEADER_LEN: usize = 128;
/// Bytes of the header covered by the signature (everything before it).
pub const SIGNED_LEN: usize = 64;
/// The header's first four bytes.
pub const MAGIC: [u8; 4] = *b"THFW";
/// The header format this crate reads and writes.
pub const FORMAT: u8 = 1;
/// Prefixed to the signed bytes (domain separation).
pub const SIGNING_CONTEXT: &[u8] = b"thecal firmware image v1\0";

/// The development signing key's secret. **Public on purpose**, like the QEMU
/// development device secret: anyone can sign an image a development build accepts.
/// A firmware built with the device crate's `release-keys` feature does not trust the
/// matching public key. (It is SHA-256 of `"thecal development firmware signing key"`,
/// so it can be rederived; a test checks that.)
pub const DEV_SECRET_KEY: [u8; 32] = [
    0x69, 0xf9, 0xcd, 0xbe, 0xa1, 0x74, 0x82, 0xa4, 0x36, 0xc4, 0xf1, 0xba, 0x1f, 0xb5, 0x74, 0x3b,
    0x0f, 0xe0, 0x76, 0x5f, 0x4b, 0x4b, 0xcd, 0x14, 0x99, 0x31, 0x80, 0x2c, 0x95, 0x97, 0xb7, 0x17,
];
/// The development signing key's public half (what development firmware trusts).
pub const DEV_PUBLIC_KEY: [u8; 32] = [
    0x0c, 0xfd, 0xaf, 0x8b, 0xb1, 0xa1, 0xe6, 0xf7, 0xb3, 0x89, 0x34, 0xb7, 0x00, 0x30, 0xf6, 0x45,
    0x65, 0xfc, 0xca, 0x5b, 0x60, 0xa0, 0x55, 0xff, 0xcc, 0x5c, 0x6e, 0x34, 0xa6, 0xa7, 0x8c, 0x8b,
];

/// A signed header as carried on the wire and stored in a slot.
pub type HeaderBytes = [u8; HEADER_LEN];

/// Which board an image runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Board(pub u16);

impl Board {
    /// The `thecal-sim` simulator.
    pub const SIM: Board = Board(1);
    /// The QEMU mps2-an385 firmware.
    pub const QEMU_MPS2: Board = Board(2);
    /// The nRF52840 DK firmware.
    pub const NRF52840_DK: Board = Board(3);

    /// A short name (`"unknown"` for a number this crate does not know).
    pub fn name(self) -> &'static str {
        match self {
            Board::SIM => "sim",
            Board::QEMU_MPS2 => "qemu-mps2",
            Board::NRF52840_DK => "nrf52840-dk",
            _ => "unknown",
        }
    }

    /// The board called `name` (as [`Board::name`] prints it).
    pub fn from_name(name: &str) -> Option<Board> {
        [Board::SIM, Board::QEMU_MPS2, Board::NRF52840_DK]
            .into_iter()
            .find(|b| b.name() == name)
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Which key signed an image (as the header says; the signature decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyKind {
    /// The public development key ([`DEV_PUBLIC_KEY`]).
    Development,
    /// A release key kept by the manufacturer.
    Release,
}

/// A firmware image's header, as signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageHeader {
    /// The key the signer says it used.
    pub key: KeyKind,
    /// The board the image runs on.
    pub board: Board,
    /// The firmware version.
    pub version: Version,
    /// The security version: a pump refuses an image whose security version is below
    /// the one of the image it runs.
    pub security: u32,
    /// Image length, bytes.
    pub length: u32,
    /// SHA-256 of the image.
    pub sha256: [u8; 32],
}

/// Why a header or an image was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ImageError {
    /// Not a thecal firmware header (magic or format), or a reserved field is set.
    NotAnImage,
    /// The signature does not verify with the key the pump trusts.
    BadSignature {
        /// The header says the development key signed it (a release pump refuses those).
        dev_signed: bool,
    },
    /// Built for another board.
    WrongBoard {
        /// This pump's board.
        expected: Board,
        /// The image's.
        found: Board,
    },
    /// Security version below the running image's.
    Downgrade {
        /// The lowest security version this pump accepts.
        minimum: u32,
        /// The image's.
        found: u32,
    },
    /// The image is empty or does not fit the update slot.
    TooLarge {
        /// Largest image the slot holds, bytes.
        capacity: u32,
        /// The image's length.
        length: u32,
    },
    /// The image's bytes do not hash to the header's SHA-256 (truncated, corrupted, or
    /// another image's).
    HashMismatch,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::NotAnImage => f.write_str("not a thecal firmware image"),
            ImageError::BadSignature { dev_signed: true } => {
                f.write_str("signature not valid for this pump (the image is development-signed)")
            }
            ImageError::BadSignature { dev_signed: false } => {
                f.write_str("signature not valid for this pump")
            }
            ImageError::WrongBoard { expected, found } => {
                write!(f, "image is for board {found}, this pump is {expected}")
            }
            ImageError::Downgrade { minimum, found } => write!(
                f,
                "security version {found} is below this pump's minimum {minimum}"
            ),
            ImageError::TooLarge { capacity, length } => write!(
                f,
                "image of {length} bytes does not fit the update slot ({capacity} bytes)"
            ),
            ImageError::HashMismatch => f.write_str("image does not match its signed hash"),
        }
    }
}

impl core::error::Error for ImageError {}

/// Largest chunk of image an `UpdateChunk` request carries, bytes.
pub const MAX_CHUNK: usize = 512;

/// Why the pump refused an update request. Nothing changed on the pump, except where a
/// variant says the transfer was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum UpdateRefusal {
    /// 0: the header or the image is not acceptable ([`ImageError`]). A bad hash at
    /// `UpdateFinish` drops the transfer (begin again).
    Image(ImageError),
    /// 1: no transfer is in progress (`UpdateBegin` first; a pump reset ends a transfer).
    NotStarted,
    /// 2: `UpdateFinish` before the whole image arrived.
    Incomplete {
        /// The next offset the pump expects.
        next: u32,
        /// The image length.
        length: u32,
    },
    /// 3: a chunk that is empty, longer than [`MAX_CHUNK`], past the image's end, or
    /// whose length is not a multiple of the flash word without ending the image.
    BadChunk,
    /// 4: the running firmware is on trial after an update and has not confirmed
    /// itself yet; no new update until it has.
    AwaitingConfirmation,
    /// 5: another verified image waits to be swapped in at the pump's next restart.
    SwapPending,
    /// 6: the update slot's flash failed (write or read-back); the transfer was dropped.
    Flash,
    /// 7: this pump has no update slot.
    NoUpdateSlot,
}

impl fmt::Display for UpdateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateRefusal::Image(e) => e.fmt(f),
            UpdateRefusal::NotStarted => f.write_str("no update transfer in progress"),
            UpdateRefusal::Incomplete { next, length } => {
                write!(f, "image incomplete: {next} of {length} bytes received")
            }
            UpdateRefusal::BadChunk => f.write_str("malformed image chunk"),
            UpdateRefusal::AwaitingConfirmation => f.write_str(
                "the running firmware is on trial after an update and has not confirmed itself yet",
            ),
            UpdateRefusal::SwapPending => {
                f.write_str("another verified image is waiting to be installed")
            }
            UpdateRefusal::Flash => f.write_str("the update slot's flash failed"),
            UpdateRefusal::NoUpdateSlot => f.write_str("this pump has no firmware update slot"),
        }
    }
}

impl core::error::Error for UpdateRefusal {}

/// How far a transfer is: the answer to `UpdateBegin`, `UpdateChunk` and
/// `UpdateFinish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpdateProgress {
    /// The next offset the pump expects (`length` when the whole image is in).
    pub next: u32,
    /// The image length.
    pub length: u32,
    /// Whether the image is verified and marked for the swap at the pump's next
    /// restart (after `UpdateFinish`).
    pub pending: bool,
}

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SlotState {
    /// Active, confirmed: the bootloader keeps booting it.
    Confirmed,
    /// Active, on trial: swapped in at the last restart, not yet confirmed; the next
    /// restart returns to the previous image unless it confirms itself first.
    Trial,
    /// Update slot: an image arriving.
    Receiving {
        /// Next offset expected.
        next: u32,
        /// Image length.
        length: u32,
    },
    /// Update slot: verified and marked; swapped in at the pump's next restart.
    Pending,
    /// Update slot: the image that was active before the last swap (the rollback
    /// target while the active one is on trial).
    Previous,
    /// Update slot: an image that was swapped in, not confirmed, and rolled back.
    RolledBack,
}

/// One slot's image and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlotInfo {
    /// Firmware version.
    pub version: Version,
    /// Security version.
    pub security: u32,
    /// State.
    pub state: SlotState,
}

/// The answer to `UpdateStatus`: both slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpdateReport {
    /// The pump's board.
    pub board: Board,
    /// The active slot (the running firmware).
    pub active: SlotInfo,
    /// The update slot, if it holds anything recognisable.
    pub update: Option<SlotInfo>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut w = [0; 4];
    w.copy_from_slice(s);
    Some(u32::from_le_bytes(w))
}

impl ImageHeader {
    /// The signed part of the header (bytes 0..64).
    pub fn to_signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0; SIGNED_LEN];
        let fields: [(usize, &[u8]); 8] = [
            (0, &MAGIC),
            (4, &[FORMAT]),
            (5, &[self.key_code()]),
            (6, &self.board.0.to_le_bytes()),
            (
                8,
                &[self.version.major, self.version.minor, self.version.patch],
            ),
            (16, &self.security.to_le_bytes()),
            (20, &self.length.to_le_bytes()),
            (24, &self.sha256),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        b
    }

    fn key_code(&self) -> u8 {
        match self.key {
            KeyKind::Development => 0,
            KeyKind::Release => 1,
        }
    }

    /// Reads the fields of a header without checking its signature (for display, and
    /// the first step of [`verify`]).
    pub fn parse(bytes: &HeaderBytes) -> Result<ImageHeader, ImageError> {
        let b = bytes.as_slice();
        let reserved_zero = b.get(11..16).is_some_and(|r| r.iter().all(|x| *x == 0))
            && b.get(56..64).is_some_and(|r| r.iter().all(|x| *x == 0));
        if b.get(..4) != Some(MAGIC.as_slice()) || b.get(4) != Some(&FORMAT) || !reserved_zero {
            return Err(ImageError::NotAnImage);
        }
        let key = match b.get(5) {
            Some(0) => KeyKind::Development,
            Some(1) => KeyKind::Release,
            _ => return Err(ImageError::NotAnImage),
        };
        let mut sha256 = [0; 32];
        sha256.copy_from_slice(b.get(24..56).ok_or(ImageError::NotAnImage)?);
        let field = |v: Option<u16>| v.ok_or(ImageError::NotAnImage);
        Ok(ImageHeader {
            key,
            board: Board(field(le16(b, 6))?),
            version: Version {
                major: *b.get(8).ok_or(ImageError::NotAnImage)?,
                minor: *b.get(9).ok_or(ImageError::NotAnImage)?,
                patch: *b.get(10).ok_or(ImageError::NotAnImage)?,
            },
            security: le32(b, 16).ok_or(ImageError::NotAnImage)?,
            length: le32(b, 20).ok_or(ImageError::NotAnImage)?,
            sha256,
        })
    }
}

fn message(signed: &[u8; SIGNED_LEN]) -> [u8; SIGNING_CONTEXT.len() + SIGNED_LEN] {
    let mut m = [0; SIGNING_CONTEXT.len() + SIGNED_LEN];
    let (ctx, rest) = m.split_at_mut(SIGNING_CONTEXT.len());
    ctx.copy_from_slice(SIGNING_CONTEXT);
    rest.copy_from_slice(signed);
    m
}

/// Signs `header` with the Ed25519 secret key `secret` (host tools and tests).
pub fn sign(header: &ImageHeader, secret: &[u8; 32]) -> HeaderBytes {
    let signed = header.to_signed_bytes();
    let signature = SigningKey::from_bytes(secret).sign(&message(&signed));
    let mut out = [0; HEADER_LEN];
    let (head, tail) = out.split_at_mut(SIGNED_LEN);
    head.copy_from_slice(&signed);
    tail.copy_from_slice(&signature.to_bytes());
    out
}

/// The Ed25519 public key of `secret`.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(secret).verifying_key().to_bytes()
}

/// Parses `bytes` and checks its signature against `trusted` (the public key built into
/// the firmware). Strict verification: no malleable or small-order signatures.
pub fn verify(bytes: &HeaderBytes, trusted: &[u8; 32]) -> Result<ImageHeader, ImageError> {
    let header = ImageHeader::parse(bytes)?;
    let bad = ImageError::BadSignature {
        dev_signed: header.key == KeyKind::Development,
    };
    let key = VerifyingKey::from_bytes(trusted).map_err(|_| bad)?;
    let (signed, sig) = bytes.split_at(SIGNED_LEN);
    let mut signed_arr = [0; SIGNED_LEN];
    signed_arr.copy_from_slice(signed);
    let signature = Signature::from_slice(sig).map_err(|_| bad)?;
    key.verify_strict(&message(&signed_arr), &signature)
        .map_err(|_| bad)?;
    Ok(header)
}

/// What a pump requires of an image besides a valid signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acceptance {
    /// The pump's board.
    pub board: Board,
    /// The lowest security version accepted (the running image's).
    pub min_security: u32,
    /// The largest image the update slot holds, bytes.
    pub capacity: u32,
}

impl Acceptance {
    /// Whether `header` (already verified) may be installed.
    pub fn check(&self, header: &ImageHeader) -> Result<(), ImageError> {
        if header.board != self.board {
            return Err(ImageError::WrongBoard {
                expected: self.board,
                found: header.board,
            });
        }
        if header.security < self.min_security {
            return Err(ImageError::Downgrade {
                minimum: self.min_security,
                found: header.security,
            });
        }
        if header.length == 0 || header.length > self.capacity {
            return Err(ImageError::TooLarge {
                capacity: self.capacity,
                length: header.length,
            });
        }
        Ok(())
    }
}

/// SHA-256 of `image` in one call (host tools, tests).
pub fn sha256(image: &[u8]) -> [u8; 32] {
    Sha256::digest(image).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(length: u32) -> ImageHeader {
        ImageHeader {
            key: KeyKind::Development,
            board: Board::SIM,
            version: Version {
                major: 1,
                minor: 2,
                patch: 3,
            },
            security: 2,
            length,
            sha256: sha256(b"image"),
        }
    }

    #[test]
    fn dev_key_is_derived_and_matches() {
        let derived: [u8; 32] = Sha256::digest(b"thecal development firmware signing key").into();
        assert_eq!(derived, DEV_SECRET_KEY);
        assert_eq!(public_key(&DEV_SECRET_KEY), DEV_PUBLIC_KEY);
    }

    #[test]
    fn signed_header_verifies_and_round_trips() {
        let h = header(5);
        let bytes = sign(&h, &DEV_SECRET_KEY);
        assert_eq!(&bytes[..4], b"THFW");
        assert_eq!(bytes[4], 1);
        assert_eq!(&bytes[6..8], &[1, 0]);
        assert_eq!(&bytes[20..24], &[5, 0, 0, 0]);
        assert_eq!(verify(&bytes, &DEV_PUBLIC_KEY), Ok(h));
    }

    #[test]
    fn any_flipped_bit_fails() {
        let bytes = sign(&header(5), &DEV_SECRET_KEY);
        for i in 0..HEADER_LEN * 8 {
            let mut b = bytes;
            b[i / 8] ^= 1 << (i % 8);
            assert!(verify(&b, &DEV_PUBLIC_KEY).is_err(), "bit {i}");
        }
    }

    #[test]
    fn another_key_is_refused_naming_the_dev_key() {
        let other = [7u8; 32];
        let bytes = sign(&header(5), &DEV_SECRET_KEY);
        assert_eq!(
            verify(&bytes, &public_key(&other)),
            Err(ImageError::BadSignature { dev_signed: true })
        );
        let mut h = header(5);
        h.key = KeyKind::Release;
        let bytes = sign(&h, &other);
        assert_eq!(
            verify(&bytes, &DEV_PUBLIC_KEY),
            Err(ImageError::BadSignature { dev_signed: false })
        );
        assert!(verify(&bytes, &public_key(&other)).is_ok());
    }

    #[test]
    fn garbage_is_not_an_image() {
        assert_eq!(
            verify(&[0; HEADER_LEN], &DEV_PUBLIC_KEY),
            Err(ImageError::NotAnImage)
        );
        let mut b = sign(&header(5), &DEV_SECRET_KEY);
        b[60] = 1;
        assert_eq!(ImageHeader::parse(&b), Err(ImageError::NotAnImage));
    }

    #[test]
    fn acceptance_checks_board_security_and_size() {
        let a = Acceptance {
            board: Board::SIM,
            min_security: 2,
            capacity: 100,
        };
        assert_eq!(a.check(&header(100)), Ok(()));
        let mut h = header(100);
        h.board = Board::NRF52840_DK;
        assert_eq!(
            a.check(&h),
            Err(ImageError::WrongBoard {
                expected: Board::SIM,
                found: Board::NRF52840_DK
            })
        );
        let mut h = header(100);
        h.security = 1;
        assert_eq!(
            a.check(&h),
            Err(ImageError::Downgrade {
                minimum: 2,
                found: 1
            })
        );
        assert!(matches!(
            a.check(&header(101)),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            a.check(&header(0)),
            Err(ImageError::TooLarge { .. })
        ));
    }
}
