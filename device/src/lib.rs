//! # thecal-device
//!
//! The pump core: a sans-IO state machine driven by `handle(now, request)` and
//! `tick(now)`, reaching storage and the motor only through traits, so the same code runs
//! in unit tests, the `thecal-sim` simulator, QEMU and the board.
//!
//! ## Layers
//!
//! From the bottom up; each depends only on the ones above it in this list (and on
//! `thecal-protocol`):
//!
//! * [`store`]: what the pump persists and the [`store::Storage`] trait; the power-fail
//!   safe [`store::FlashStore`] over any `embedded-storage` NOR flash, and the flash
//!   devices of tests and the simulator ([`store::flash`]).
//! * [`therapy`]: the therapy and health model — dosing, the rolling 24 h window, the
//!   [`therapy::motor::Motor`] trait, battery, alarms. No storage, no link.
//! * [`pump`]: the [`pump::Pump`] core over a `Storage` and a `Motor`: requests, ticks,
//!   persistence ahead of delivery, keys, the event log and its aggregation.
//! * [`link`]: the pump behind a byte link — frames, secure sessions, the reply cache,
//!   the energy budget ([`link::server::Server`]).
//! * [`update`]: signed A/B firmware updates — the update slot, verification, the
//!   swap decision and the trial boot, over `embassy-boot`'s state partition.
//! * `sim` (feature `sim`, Unix): the simulated pump behind a pseudo-terminal, on a
//!   virtual clock, with file-backed flash.
//!
//! Features: `sim` only; without it the crate is `no_std` and allocation-free.
//!
//! The panic rule: library code has no `unwrap`, `expect`, `panic!` or unchecked
//! indexing (clippy lints below); no input makes the core panic. No `unsafe` code outside
//! the simulator's one `fcntl` call (`deny`, allowed there by name).
#![cfg_attr(not(feature = "sim"), no_std)]
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![allow(clippy::large_enum_variant)]

// The simulator opens a pseudo-terminal and keeps its flash in a file with Unix modes.
#[cfg(all(feature = "sim", not(unix)))]
compile_error!("feature `sim` (the simulator) needs a Unix host; the pump core builds without it");

pub mod link;
pub mod pump;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod therapy;
pub mod update;
