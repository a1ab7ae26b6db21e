//! The telemetry link: the pump behind a byte stream.
//!
//! * [`server`]: bytes in → frames → (sessions) → requests → pump → answers → bytes out,
//!   with the reply cache that makes every therapy change happen once.
//! * [`session`]: the pump's side of secure sessions (handshake, sealing, idle timeout).
//! * [`budget`]: the energy budget unauthenticated traffic is paid from.
//!
//! The link depends on the pump core ([`crate::pump`]); nothing below it depends on the
//! link.

pub mod budget;
pub mod server;
pub mod session;
