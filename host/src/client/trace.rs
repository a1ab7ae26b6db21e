//! What the client did on the link: trace events (for `-v` output and tests) and the
//! counters it keeps.

use std::time::Duration;

use thecal_protocol::frame::FrameError;
use thecal_protocol::message::Role;

/// What the client did on the link, for `-v` output and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trace {
    /// A request frame was written.
    Sent {
        /// Request id.
        id: u16,
        /// Request name.
        request: &'static str,
        /// Whether it carried the retry flag.
        retry: bool,
        /// Wire bytes, delimiters included.
        bytes: usize,
    },
    /// The answer arrived.
    Answered {
        /// Request id.
        id: u16,
        /// Answer name.
        response: &'static str,
        /// Time since the first attempt was sent.
        elapsed: Duration,
    },
    /// An attempt timed out.
    TimedOut {
        /// Request id.
        id: u16,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// An answer to another request id was discarded.
    Stale {
        /// Its id.
        id: u16,
    },
    /// A frame that is not an answer (a pump event) was skipped.
    NotAnAnswer {
        /// Its id.
        id: u16,
    },
    /// A corrupt chunk was dropped.
    BadFrame(FrameError),
    /// A session was opened.
    SessionOpened {
        /// Its role.
        role: Role,
    },
    /// The pump answered a sealed request with a plain `SessionRequired`:
    /// it no longer holds the session.
    SessionLost {
        /// Request id.
        id: u16,
    },
    /// An answer with the awaited id was dropped: not sealed, or it did not open under
    /// the session key (forged, replayed, another session's).
    Unauthentic {
        /// Its id.
        id: u16,
    },
}

/// Link counters kept by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCounters {
    /// Requests made (not counting retries).
    pub requests: u32,
    /// Retries sent.
    pub retries: u32,
    /// Stale answers discarded.
    pub stale: u32,
    /// Corrupt chunks dropped.
    pub bad_frames: u32,
    /// Sessions opened (the first one and every renewal).
    pub sessions: u32,
    /// Answers dropped because they were not authentic inside a session.
    pub unauthentic: u32,
}

/// Receives every [`Trace`] event.
pub(super) type Tracer = Box<dyn FnMut(&Trace) + Send>;
