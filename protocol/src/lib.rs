//! # thecal-protocol
//!
//! The contract between an implantable intrathecal drug pump and its programmers: units,
//! messages, prescription rules and the frame codec. The pump firmware and the
//! clinician programmer both compile this crate, so the two sides cannot disagree about
//! a byte. The byte-exact description is `docs/PROTOCOL.md`; its hex vectors are
//! asserted by this crate's tests.
//!
//! * [`units`] — integer fixed-point quantities and their rounding rules.
//! * [`time`] — device clock, UTC offset, weekdays.
//! * [`drug`] — drugs and the firmware's hard ceilings.
//! * [`cycle`] — the basal program (therapy mode, day profiles) and the geometry of the
//!   cycle it repeats: [`cycle::Segment`]s, cycle length, 24 h window doses, the
//!   keep-open dose.
//! * [`prescription`] — the prescription model over a cycle.
//! * [`rules`] — its validation, and the only way to build a [`Prescription`].
//!   Imports run one way: `cycle ← prescription ← rules`.
//! * [`projection`] — low-reservoir and empty dates under a schedule.
//! * [`message`] — `Request` / `Response` and the records they carry.
//! * [`frame`] — COBS + CRC-16 framing and the streaming decoder.
//! * [`session`] — role keys, handshake proofs, session keys and sealed frames.
//! * [`update`] — signed firmware image headers (Ed25519) and what a pump accepts.
//!
//! `no_std`, no `alloc`. The panic rule: library code has no `unwrap`, `expect`,
//! `panic!` or unchecked indexing (enforced by clippy lints below); every parser is a
//! total function returning a typed error. No `unsafe` code either (`forbid`).
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]
// No heap: a message is as large as its largest variant on purpose (nothing to box into).
#![allow(clippy::large_enum_variant)]

pub mod cycle;
pub mod drug;
pub mod frame;
pub mod message;
pub mod prescription;
pub mod projection;
pub mod rules;
pub mod session;
pub mod time;
pub mod units;
pub mod update;
pub mod version;

pub use drug::Drug;
pub use frame::{Frame, FrameDecoder, FrameError, FrameKind, Header};
pub use message::{Request, Response};
pub use prescription::{Prescription, PrescriptionDraft};

/// Wire protocol version carried in every frame header.
pub const PROTOCOL_VERSION: u8 = 5;

/// Identifies this revision of the message definitions: CRC-32 (ISO-HDLC) of
/// [`SCHEMA`]. A programmer compares it with the pump's [`message::Identity::schema`]
/// and refuses to write to a pump whose messages it does not know.
pub const SCHEMA_HASH: u32 =
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(SCHEMA.as_bytes());

/// A canonical listing of every message and its variants in wire order. A test checks it
/// against the code, so any change to the messages changes [`SCHEMA_HASH`].
pub const SCHEMA: &str = include_str!("schema.txt");
