//! The therapy and health model: what the pump delivers and how it judges itself,
//! each part a small state machine with no storage, no link and no clock of its own.
//!
//! * [`dosing`]: integrates the basal flow and a running bolus into motor strokes.
//! * [`window`]: the rolling 24 h delivery window the hard daily limit is checked against.
//! * [`motor`]: the [`motor::Motor`] trait (one stroke of [`motor::STROKE_NL`]).
//! * [`battery`]: charge used, service states and the report.
//! * [`alarms`]: the active alarms, their acknowledgement and what changed.

pub mod alarms;
pub mod battery;
pub mod dosing;
pub mod motor;
pub mod window;
