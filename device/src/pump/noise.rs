//! Aggregation and rate limit of the event log's repeating entries (refusals, failed
//! handshakes, link abuse: [`Event::is_noise`]).
//!
//! * **Aggregated.** A repeating event is held in RAM; the next one of the same kind
//!   and the same fields (counts aside) only adds to its count. It is written as one
//!   entry when another event is logged, when it has been held for [`HOLD_MS`], or when a
//!   session opens or ends — so a thousand refused patient boluses are one entry with
//!   `count: 1000`, and a flood causes no flash write until it ends. A reset loses the
//!   entry being held (at most one) and the count waiting for the next token.
//! * **Rate-limited.** Writing such an entry takes a token from a bucket of
//!   [`BURST`] that refills one per [`REFILL_MS`] of device time. Without a token the
//!   entry is not written but its count goes into a `Suppressed` total, written (as one
//!   entry) with the next token. An attacker alternating kinds therefore writes at most
//!   24 entries a day after the first [`BURST`]: the ring (at least 544 entries) keeps
//!   weeks of therapy history under a sustained attack.
//! * **Sessions** opened and ended are not merged (each has its number) but have a
//!   bucket of their own, [`SESSION_BURST`] refilling one per [`SESSION_REFILL_MS`]: a
//!   key holder looping handshakes writes at most 144 such entries a day; what is over
//!   goes into the same `Suppressed` total.

use thecal_protocol::message::{Event, LinkAbuse};
use thecal_protocol::time::Timestamp;

/// Longest a repeating entry is held before it is written, device ms.
pub const HOLD_MS: u64 = 60 * 60 * 1000;
/// Repeating entries that may be written in a burst.
pub const BURST: u8 = 8;
/// One more repeating entry may be written per this much device time.
pub const REFILL_MS: u64 = 60 * 60 * 1000;
/// Session entries (opened, ended) that may be written in a burst: a clinic visit's worth
/// of commands, each in its own session.
pub const SESSION_BURST: u8 = 48;
/// One more session entry may be written per this much device time.
pub const SESSION_REFILL_MS: u64 = 10 * 60 * 1000;

/// The entry being aggregated and the rate limit.
#[derive(Debug, Clone)]
pub struct Noise {
    held: Option<(Event, Timestamp)>,
    tokens: Bucket,
    sessions: Bucket,
    suppressed: u32,
}

/// Tokens that refill one per period up to a burst.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u8,
    burst: u8,
    period_ms: u64,
    refilled: Timestamp,
}

impl Bucket {
    const fn new(burst: u8, period_ms: u64, now: Timestamp) -> Self {
        Self {
            tokens: burst,
            burst,
            period_ms,
            refilled: now,
        }
    }

    /// Takes a token at `now`, if there is one.
    fn take(&mut self, now: Timestamp) -> bool {
        let periods = now.since(self.refilled) / self.period_ms.max(1);
        if periods > 0 {
            let added = u8::try_from(periods).unwrap_or(u8::MAX);
            self.tokens = self.tokens.saturating_add(added).min(self.burst);
            self.refilled = self
                .refilled
                .plus_ms(periods.saturating_mul(self.period_ms));
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Adds `new` to `held` if they are the same kind with the same fields.
fn merge(held: &mut Event, new: &Event) -> bool {
    match (held, new) {
        (
            Event::Refused {
                by,
                request,
                reason,
                count,
            },
            Event::Refused {
                by: b2,
                request: r2,
                reason: c2,
                count: n,
            },
        ) if by == b2 && request == r2 && reason == c2 => {
            *count = count.saturating_add(*n);
            true
        }
        (Event::HandshakeFailed { role, count }, Event::HandshakeFailed { role: r2, count: n })
            if role == r2 =>
        {
            *count = count.saturating_add(*n);
            true
        }
        (Event::LinkAbuse(a), Event::LinkAbuse(b)) => {
            *a = LinkAbuse {
                unanswered: a.unanswered.saturating_add(b.unanswered),
                forged: a.forged.saturating_add(b.forged),
            };
            true
        }
        _ => false,
    }
}

/// Events an entry stands for.
fn weight(event: &Event) -> u32 {
    match event {
        Event::Refused { count, .. } | Event::HandshakeFailed { count, .. } => u32::from(*count),
        Event::LinkAbuse(a) => a.unanswered.saturating_add(a.forged),
        Event::Suppressed { count } => *count,
        _ => 1,
    }
}

impl Noise {
    /// Nothing held; a full bucket at device time `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            held: None,
            tokens: Bucket::new(BURST, REFILL_MS, now),
            sessions: Bucket::new(SESSION_BURST, SESSION_REFILL_MS, now),
            suppressed: 0,
        }
    }

    /// Takes `event` in at `now`; returns a different held entry that must be written
    /// first (see [`Noise::release`]), or `None` if `event` was merged or is now held.
    pub fn add(&mut self, event: Event, now: Timestamp) -> Option<Event> {
        if let Some((held, _)) = self.held.as_mut() {
            if merge(held, &event) {
                return None;
            }
        }
        let previous = self.held.replace((event, now)).map(|(e, _)| e);
        previous.and_then(|e| self.admit(e, now))
    }

    /// The held entry, if any (or if only `stale`, one held for [`HOLD_MS`]), as the
    /// entry to write now, subject to the rate limit.
    pub fn release(&mut self, now: Timestamp, stale_only: bool) -> Option<Event> {
        let due = self
            .held
            .as_ref()
            .is_some_and(|(_, at)| !stale_only || now.since(*at) >= HOLD_MS);
        if !due {
            return None;
        }
        let (event, _) = self.held.take()?;
        self.admit(event, now)
    }

    /// What to write for `event` under the rate limit: the event itself, a `Suppressed`
    /// total that includes it, or nothing (counted for later).
    fn admit(&mut self, event: Event, now: Timestamp) -> Option<Event> {
        if !self.tokens.take(now) {
            self.suppressed = self.suppressed.saturating_add(weight(&event));
            return None;
        }
        if self.suppressed > 0 {
            let count = self.suppressed.saturating_add(weight(&event));
            self.suppressed = 0;
            return Some(Event::Suppressed { count });
        }
        Some(event)
    }

    /// What to write for a session entry under its own rate limit: the entry, or
    /// nothing (counted in the `Suppressed` total).
    pub fn admit_session(&mut self, event: Event, now: Timestamp) -> Option<Event> {
        if self.sessions.take(now) {
            return Some(event);
        }
        self.suppressed = self.suppressed.saturating_add(1);
        None
    }

    /// The entry held, if any.
    pub fn held(&self) -> Option<&Event> {
        self.held.as_ref().map(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_protocol::message::Role;

    fn refused(request: u8) -> Event {
        Event::Refused {
            by: Role::Patient,
            request,
            reason: 8,
            count: 1,
        }
    }

    #[test]
    fn repeats_become_one_entry_with_a_count() {
        let mut n = Noise::new(Timestamp(0));
        for i in 0..1000 {
            assert_eq!(n.add(refused(9), Timestamp(i)), None);
        }
        assert_eq!(
            n.release(Timestamp(1000), false),
            Some(Event::Refused {
                by: Role::Patient,
                request: 9,
                reason: 8,
                count: 1000
            })
        );
        assert_eq!(n.release(Timestamp(1000), false), None);
    }

    #[test]
    fn a_held_entry_is_written_after_an_hour_at_the_latest() {
        let mut n = Noise::new(Timestamp(0));
        assert_eq!(n.add(refused(9), Timestamp(0)), None);
        assert_eq!(n.release(Timestamp(HOLD_MS - 1), true), None);
        assert!(n.release(Timestamp(HOLD_MS), true).is_some());
    }

    #[test]
    fn alternating_kinds_are_rate_limited_and_counted() {
        let mut n = Noise::new(Timestamp(0));
        let mut written = 0u32;
        let mut represented = 0u32;
        let day = 24 * REFILL_MS;
        let steps = 10_000u64;
        for i in 0..steps {
            let at = Timestamp(i * day / steps);
            if let Some(e) = n.add(refused((i % 2) as u8), at) {
                written += 1;
                represented += weight(&e);
            }
        }
        // BURST at first, then one an hour.
        assert!(written <= u32::from(BURST) + 24, "{written}");
        assert!(written >= 24, "{written}");
        // Nothing is lost but the held one and what waits for the next token.
        assert_eq!(represented + n.suppressed + 1, steps as u32);
    }

    #[test]
    fn session_entries_have_their_own_limit() {
        let mut n = Noise::new(Timestamp(0));
        let opened = Event::SessionOpened {
            role: Role::Patient,
            session: 1,
        };
        let day = 24 * 60 * 60 * 1000;
        let written = (0..100_000u64)
            .filter(|i| {
                n.admit_session(opened, Timestamp(i * day / 100_000))
                    .is_some()
            })
            .count() as u64;
        assert!(written <= u64::from(SESSION_BURST) + day / SESSION_REFILL_MS);
        assert!(written >= day / SESSION_REFILL_MS);
        // Repeating entries keep their own tokens.
        assert!(n.add(refused(9), Timestamp(day)).is_none());
        assert!(n.release(Timestamp(day), false).is_some());
    }
}
