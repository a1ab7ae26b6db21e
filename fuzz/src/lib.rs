//! Shared pieces of the thecal fuzz targets: a byte reader for the hand-parsed input
//! formats, the device harness with its independent dose ledger, and the independent
//! prescription-rule checker. See `fuzz/README.md` for the targets and how to run them.

#[cfg(feature = "device")]
pub mod device;
pub mod reader;
pub mod schedule;
