//! # thecal-link
//!
//! A lossy-link emulator, for tests and for anyone debugging a radio link: it sits
//! between a programmer and a pump and, from a seed, paces the bytes at a baud rate,
//! delays them, drops bytes and whole frames, flips bits at a given bit error rate,
//! duplicates bytes and adds short bursts of noise — and counts (and, with `-v`, logs)
//! everything it did.
//!
//! * [`impair`] — the impairments of one direction, sans-IO:
//!   [`Impairments::apply`](impair::Impairments::apply)`(now, bytes)` returns a schedule
//!   of deliveries; deterministic for a seed, unit-tested without any port.
//! * [`bridge`] — the thin I/O shell: [`Link::spawn`](bridge::Link::spawn) carries bytes
//!   between any two `AsyncRead + AsyncWrite` (pty, serial port, in-memory pipe) on a
//!   tokio runtime; tests use it in-process, [`Link::unplug`](bridge::Link::unplug) pulls
//!   the cable.
//! * [`rng`] — SplitMix64, so a seed means the same thing everywhere.
//!
//! The `thecal-link` binary creates a pty for the programmer side, opens the device side
//! (the simulator's pty or a real port) and prints the programmer-side path on the first
//! line of stdout; see the README section "Debugging a radio link: thecal-link".
#![warn(missing_docs)]

pub mod bridge;
pub mod impair;
pub mod rng;

pub use bridge::{Direction, Link, LinkConfig, LinkStats};
pub use impair::{Impairment, Impairments};
