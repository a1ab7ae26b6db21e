//! The frame codec: what goes on the wire around a message body.
//!
//! ```text
//! raw frame   = header (5) | body (0..=MAX_BODY) | crc16 (2, little-endian)
//! wire frame  = COBS(raw frame) | 0x00
//! header      = version (1) | kind (1) | request id (2, little-endian) | flags (1)
//! ```
//!
//! The CRC is CRC-16 with polynomial 0x1021, init 0xFFFF, no reflection, no final XOR
//! (CRC-16/IBM-3740, check value 0x29B1), computed over header and body. Why this one:
//! its generator has Hamming distance 4 for data words up to 32 751 bits (Koopman's
//! tables), far beyond the largest raw frame (8 248 bits), so every 1-, 2- and 3-bit
//! error and every burst up to 16 bits is detected in every frame this protocol can
//! carry; the (x+1) factor also catches every odd number of flipped bits; the non-zero
//! init catches lost or added leading zero bytes. A CRC-32 would cost two more bytes per
//! frame and break the 10-byte overhead budget, for a distance the radio's bit error
//! rate does not need; sealed frames add an AEAD tag on top.
//!
//! A frame is delimited by 0x00; COBS guarantees no 0x00 inside. A receiver that starts
//! mid-stream or meets garbage drops bytes up to the next 0x00 and carries on (see
//! [`decode::FrameDecoder`]). A sender may send a lone 0x00 at any time to flush a
//! receiver's partial frame.
//!
//! The panic rule: nothing in this module panics, allocates or indexes unchecked, for any
//! input.

use core::fmt;

use crc::{Crc, CRC_16_IBM_3740};

mod crc16;
pub mod decode;
pub mod encode;

pub use decode::{decode_body, Feed, Frame, FrameDecoder};
pub use encode::{encode, encode_raw};

/// The CRC used by every frame.
pub static CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// Header bytes.
pub const HEADER_LEN: usize = 5;
/// CRC bytes.
pub const CRC_LEN: usize = 2;
/// Largest body (postcard-encoded message) a frame may carry.
pub const MAX_BODY: usize = 1024;
/// Largest raw frame (before COBS).
pub const MAX_RAW: usize = HEADER_LEN + MAX_BODY + CRC_LEN;
/// Largest wire frame, COBS overhead and delimiter included.
pub const MAX_WIRE: usize = cobs::max_encoding_length(MAX_RAW) + 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Programmer → pump request (id chosen by the programmer).
    Request,
    /// Pump → programmer answer (id of the request it answers).
    Response,
    /// Pump-originated event (id from the pump's own event counter; never a reply).
    Event,
}

impl FrameKind {
    /// Wire code.
    pub const fn code(self) -> u8 {
        match self {
            FrameKind::Request => 0x01,
            FrameKind::Response => 0x02,
            FrameKind::Event => 0x03,
        }
    }

    /// From a wire code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(FrameKind::Request),
            0x02 => Some(FrameKind::Response),
            0x03 => Some(FrameKind::Event),
            _ => None,
        }
    }
}

/// Header flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// The programmer is sending this request again (same id) after a timeout.
    pub const RETRY: u8 = 0x01;
    /// The body is sealed (`counter ‖ ciphertext ‖ tag`, see [`crate::session`]).
    pub const SEALED: u8 = 0x02;
    /// Every bit this version defines; a frame with any other bit set is rejected.
    pub const KNOWN: u8 = Self::RETRY | Self::SEALED;

    /// Whether `bit` is set.
    pub const fn has(self, bit: u8) -> bool {
        self.0 & bit == bit
    }
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Kind.
    pub kind: FrameKind,
    /// Request id: chosen by the programmer, echoed by the pump.
    pub id: u16,
    /// Flags.
    pub flags: Flags,
}

impl Header {
    /// A request header.
    pub const fn request(id: u16) -> Self {
        Self {
            kind: FrameKind::Request,
            id,
            flags: Flags(0),
        }
    }

    /// A response header answering `id`.
    pub const fn response(id: u16) -> Self {
        Self {
            kind: FrameKind::Response,
            id,
            flags: Flags(0),
        }
    }

    /// The five header bytes.
    pub const fn to_bytes(self) -> [u8; HEADER_LEN] {
        let id = self.id.to_le_bytes();
        [
            crate::PROTOCOL_VERSION,
            self.kind.code(),
            id[0],
            id[1],
            self.flags.0,
        ]
    }

    /// Parses header bytes.
    pub fn from_bytes(b: [u8; HEADER_LEN]) -> Result<Self, FrameError> {
        let [version, kind, id0, id1, flags] = b;
        if version != crate::PROTOCOL_VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = FrameKind::from_code(kind).ok_or(FrameError::Kind(kind))?;
        if flags & !Flags::KNOWN != 0 {
            return Err(FrameError::Flags(flags));
        }
        Ok(Self {
            kind,
            id: u16::from_le_bytes([id0, id1]),
            flags: Flags(flags),
        })
    }
}

/// Why a received frame was dropped. The decoder has already skipped to the next
/// delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameError {
    /// More bytes arrived before a delimiter than the decoder buffer holds.
    Oversize,
    /// The bytes between two delimiters are not valid COBS.
    Cobs,
    /// Shorter than header + CRC.
    TooShort(usize),
    /// CRC mismatch.
    Crc {
        /// CRC carried in the frame.
        received: u16,
        /// CRC computed over header and body.
        computed: u16,
    },
    /// Unsupported protocol version.
    Version(u8),
    /// Unknown frame kind.
    Kind(u8),
    /// Flag bits this version does not define.
    Flags(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversize => write!(f, "frame exceeds the receive buffer"),
            FrameError::Cobs => write!(f, "invalid COBS encoding"),
            FrameError::TooShort(n) => write!(f, "frame of {n} bytes is shorter than header + CRC"),
            FrameError::Crc { received, computed } => write!(
                f,
                "CRC mismatch: frame carries {received:#06x}, computed {computed:#06x}"
            ),
            FrameError::Version(v) => write!(f, "unsupported protocol version {v}"),
            FrameError::Kind(k) => write!(f, "unknown frame kind {k:#04x}"),
            FrameError::Flags(x) => write!(f, "undefined flag bits {x:#04x}"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// The body exceeds [`MAX_BODY`].
    BodyTooLarge,
    /// The message could not be serialised.
    Serialize,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall => f.write_str("output buffer too small for the frame"),
            EncodeError::BodyTooLarge => write!(f, "body exceeds {MAX_BODY} bytes"),
            EncodeError::Serialize => f.write_str("message could not be serialised"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why a frame body is not the expected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyError {
    /// postcard could not decode it (unknown tag, bad varint, truncated, invalid value).
    Decode,
    /// It decoded, but bytes were left over.
    TrailingBytes(usize),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Decode => f.write_str("body does not decode as the expected message"),
            BodyError::TrailingBytes(n) => write!(f, "{n} bytes left over after the message"),
        }
    }
}

impl core::error::Error for BodyError {}
