//! Shared pieces of the thecal fuzz targets: a byte reader for the hand-parsed input
//! formats, the device harness with its independent dose ledger, the independent
//! prescription-rule checker, and the X25519 keys of small order. See `fuzz/README.md`
//! for the targets and how to run them.

pub mod binding;
#[cfg(feature = "device")]
pub mod device;
pub mod reader;
pub mod schedule;
pub mod x25519;
