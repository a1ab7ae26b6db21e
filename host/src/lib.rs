//! # thecal-host
//!
//! The clinician programmer's library: a typed async [`Client`] for the pump over any
//! byte link (serial port, pty, in-memory pipe), the clinical workflows on top of it,
//! the serial transport, the schedule-file format, and the views a programmer shows
//! (human tables and stable JSON). It stands on the contract crate (`thecal-protocol`)
//! alone: the pump crate, the CLI parser and the port library are features of the
//! `thecal` binary (`cli`, `serial`, `sim`), never needed by the library.
//!
//! ## Layers, bottom up
//!
//! Each layer uses only the ones below it.
//!
//! 1. **Link** — [`serial`] (feature `serial`): open a port raw at 8N1, list USB serial
//!    ports. Any `AsyncRead + AsyncWrite` link works as well.
//! 2. **Client** — [`client`]: one retry/renew engine (timeouts, retries with the same
//!    id, stale answers, pipelining), secure sessions (handshake, sealed frames,
//!    renewal) transparent to every request, and the typed API over the contract's
//!    endpoints (`client.call(ReadPrescription)` returns a prescription record).
//!    [`error`] tells what went wrong apart (refused, timed out, outcome uncertain with
//!    what to read back, protocol mismatch, I/O); [`keys`] holds role keys and key files
//!    (0600 only, tied to a role and a pump).
//! 3. **Workflows** — multi-request procedures with typed plans and results, planned,
//!    confirmed by the programmer's user, then carried out: [`workflow`] (refill with
//!    its bridge bolus, schedule write with compare → confirm → write → verify,
//!    provisioning, key rotation) and [`eventlog`] (paging through the event log). The
//!    CLI and any other programmer (the web one) call the same functions.
//! 4. **Formats and views** — [`schedule`] (TOML schedule files to validated
//!    prescriptions, exactly), [`quantity`] (exact decimal doses, volumes, durations),
//!    [`clock`] (device timestamps as local time, alarm dates spelled out), [`view`]
//!    (the records a programmer prints: the `--json` format, the side-by-side comparison
//!    before a schedule write), [`plot`] (dose-profile and reservoir charts, SVG, PNG),
//!    [`report`] (the session report for the chart: before, every change, after).
//! 5. **Records** — `records` (feature `records`): every session's report kept in a local
//!    SQLite file or a clinic's PostgreSQL server, read back, listed, and exported as an
//!    HL7 FHIR R4 bundle.
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
#[cfg(feature = "records")]
pub mod records;
pub mod report;
pub mod schedule;
#[cfg(feature = "serial")]
pub mod serial;
pub mod view;
pub mod workflow;

pub use client::{Client, ClientConfig};
pub use error::Error;
pub use keys::{KeyFile, RoleKey};
