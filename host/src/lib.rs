//! # thecal-host
//!
//! The clinician programmer's library: a typed async [`Client`] for the pump over any
//! byte link (serial port, pty, in-memory pipe), the serial transport, the schedule-file
//! format, and the views the `thecal` CLI prints (human tables and stable JSON).
//!
//! * [`client`] — requests, timeouts, retries with the same id, stale-answer handling;
//!   secure sessions (handshake, sealed frames, renewal), transparent to every request.
//! * [`keys`] — role keys and key files (0600 only, tied to a role and a pump).
//! * [`error`] — what went wrong, told apart: refused, timed out, outcome uncertain,
//!   unexpected answer, protocol mismatch, I/O.
//! * [`serial`] — open a port raw at 8N1; list USB serial ports.
//! * [`schedule`] — TOML schedule files to validated prescriptions, exactly.
//! * [`quantity`] — exact decimal parsing and display of doses, volumes, durations.
//! * [`clock`] — device timestamps as local time; alarm dates spelled out.
//! * [`view`] — the records the CLI prints: the `--json` format, and the side-by-side
//!   comparison shown before a schedule write.
//! * [`eventlog`] — paging through the event log.
//! * [`plot`] — dose-profile and reservoir-projection charts (SVG, PNG).
//!
//! Nothing here uses floating point for a dose or a volume.
#![warn(missing_docs)]

pub mod client;
pub mod clock;
pub mod error;
pub mod eventlog;
pub mod keys;
pub mod plot;
pub mod quantity;
pub mod schedule;
#[cfg(feature = "serial")]
pub mod serial;
pub mod view;

pub use client::{Client, ClientConfig};
pub use error::Error;
pub use keys::{KeyFile, RoleKey};
