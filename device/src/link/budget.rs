//! The link's energy budget for unauthenticated traffic.
//!
//! Every frame the pump works on and every answer it sends costs battery charge
//! ([`crate::therapy::battery::BatteryConfig::per_frame_nah`]; listening itself is part of the
//! awake drain). Frames of the open session are authenticated: their cost is the
//! session's own. Everything else — garbage, frames that fail their CRC, plain requests
//! and their answers, sealed frames that do not open — is paid from this budget: a token
//! bucket of charge that refills at [`UNAUTH_NAH_PER_HOUR`] of link time up to
//! [`UNAUTH_BURST_NAH`]. When it cannot pay for a frame, the link goes **quiet** and the
//! frame costs nothing: with no session open and no physical presence the receiver stops
//! decoding (bytes are dropped unread), otherwise unauthenticated frames are dropped
//! unanswered after the frame decoder (the session's frames must still be found). A
//! plain request is served only if the budget can pay its answer too, and frames that
//! are no request may not spend the last [`HANDSHAKE_RESERVE_FRAMES`] (a trickle of
//! garbage cannot keep the budget below a handshake). A key holder's handshake whose
//! proof verifies gets back exactly what it paid ([`HANDSHAKE_REFUND_FRAMES`], with the
//! `Identify` before it); its `SessionEstablished` is the session's. A programmer that
//! holds a key therefore never runs the budget down, nor up; only strangers do. (The AEAD check of a sealed frame that does not open is not charged
//! while the link is quiet: the model charges frames the pump acts on.)
//!
//! Sizing: [`UNAUTH_NAH_PER_HOUR`] is 20 000 nAh, 480 000 nAh a day: three quarters of
//! the pump's own daily drain at its lowest (24 h × 25 µAh of electronics = 600 000 nAh
//! before any stroke), so a stranger flooding the link day and night moves the
//! end-of-service date by less than one day per day (docs/SECURITY.md, measured in
//! `device/tests/availability.rs`).
//!
//! The **physical-presence window** (a magnet over the implant) opens a separate pool of
//! [`PRESENCE_BUDGET_NAH`] that is spent first: a programmer at the patient's side can
//! reach a pump that went quiet.

use thecal_protocol::time::Timestamp;

/// Refill of the unauthenticated budget per hour of link time, nAh.
pub const UNAUTH_NAH_PER_HOUR: u64 = 20_000;
/// Largest unauthenticated budget, nAh (40 frames at the default 500 nAh).
pub const UNAUTH_BURST_NAH: u64 = 20_000;
/// Budget opened by each application of the physical-presence signal, nAh.
pub const PRESENCE_BUDGET_NAH: u64 = 100_000;
/// How long a physical-presence signal keeps emergency access open, ms of link time.
pub const PRESENCE_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Frames a key holder's verified handshake is refunded: `SessionHello`, its challenge
/// and `SessionProof` (and 2 more for an `Identify` answered at most
/// [`IDENTIFY_REFUND_MS`] before). An emergency handshake is refunded nothing.
pub const HANDSHAKE_REFUND_FRAMES: u64 = 3;
/// How long before a verified handshake its `Identify` counts as part of it, link ms.
pub const IDENTIFY_REFUND_MS: u64 = 10_000;
/// Frames of the budget that only plain requests may spend: garbage, failed CRCs and
/// sealed frames that do not open are dropped (free) rather than take them. Five frames
/// are a programmer's whole handshake: `Identify` and its answer, `SessionHello` and its
/// challenge, `SessionProof` (whose `SessionEstablished` is not paid from the budget).
pub const HANDSHAKE_RESERVE_FRAMES: u64 = 5;

const MS_PER_HOUR: u64 = 3_600_000;

/// The unauthenticated energy budget and the presence window.
#[derive(Debug, Clone)]
pub struct Budget {
    level: u64,
    /// Link time up to which the refill has been credited.
    credited: Timestamp,
    /// Charge·ms not yet credited (keeps the refill exact across short steps).
    remainder: u64,
    presence_until: Option<Timestamp>,
    presence_level: u64,
}

impl Budget {
    /// A full budget at link time `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            level: UNAUTH_BURST_NAH,
            credited: now,
            remainder: 0,
            presence_until: None,
            presence_level: 0,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        if now <= self.credited {
            return;
        }
        let ms = now.since(self.credited);
        self.credited = now;
        let total = self
            .remainder
            .saturating_add(ms.saturating_mul(UNAUTH_NAH_PER_HOUR));
        self.level = self
            .level
            .saturating_add(total / MS_PER_HOUR)
            .min(UNAUTH_BURST_NAH);
        self.remainder = if self.level == UNAUTH_BURST_NAH {
            0
        } else {
            total % MS_PER_HOUR
        };
    }

    /// Whether the physical-presence window is open at `now`.
    pub fn presence(&self, now: Timestamp) -> bool {
        self.presence_until.is_some_and(|until| now < until)
    }

    /// Opens the presence window at `now` (a new pool, a new window).
    pub fn apply_presence(&mut self, now: Timestamp) {
        self.presence_until = Some(now.plus_ms(PRESENCE_WINDOW_MS));
        self.presence_level = PRESENCE_BUDGET_NAH;
    }

    /// Closes a presence window that has run out; `true` once, when it does.
    pub fn presence_ended(&mut self, now: Timestamp) -> bool {
        match self.presence_until {
            Some(until) if now >= until => {
                self.presence_until = None;
                self.presence_level = 0;
                true
            }
            _ => false,
        }
    }

    /// Whether `nah` could be paid at `now`.
    pub fn can_pay(&mut self, now: Timestamp, nah: u64) -> bool {
        self.refill(now);
        let presence = if self.presence(now) {
            self.presence_level
        } else {
            0
        };
        self.level.saturating_add(presence) >= nah
    }

    /// Pays `nah` at `now` (the presence pool first); `false`, and nothing paid, if the
    /// budget cannot.
    pub fn spend(&mut self, now: Timestamp, nah: u64) -> bool {
        if !self.can_pay(now, nah) {
            return false;
        }
        let from_presence = if self.presence(now) {
            nah.min(self.presence_level)
        } else {
            0
        };
        self.presence_level -= from_presence;
        self.level = self.level.saturating_sub(nah - from_presence);
        true
    }

    /// Gives back `nah` (a verified handshake), up to the burst size.
    pub fn refund(&mut self, nah: u64) {
        self.level = self.level.saturating_add(nah).min(UNAUTH_BURST_NAH);
    }

    /// The unauthenticated budget left, nAh (presence pool excluded).
    pub fn level(&self) -> u64 {
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_exactly_and_caps() {
        let mut b = Budget::new(Timestamp(0));
        assert!(b.spend(Timestamp(0), UNAUTH_BURST_NAH));
        assert!(!b.spend(Timestamp(0), 1));
        // 20 000 nAh per hour: 500 nAh every 90 s, credited exactly over small steps.
        for t in 1..=90 {
            assert_eq!(b.can_pay(Timestamp(t * 1000), 500), t == 90, "{t}");
        }
        assert!(b.spend(Timestamp(90_000), 500));
        b.refill(Timestamp(100 * MS_PER_HOUR));
        assert_eq!(b.level(), UNAUTH_BURST_NAH);
        b.refund(1_000_000);
        assert_eq!(b.level(), UNAUTH_BURST_NAH);
    }

    #[test]
    fn presence_opens_its_own_pool_for_a_bounded_time() {
        let mut b = Budget::new(Timestamp(0));
        assert!(b.spend(Timestamp(0), UNAUTH_BURST_NAH));
        b.apply_presence(Timestamp(10));
        assert!(b.presence(Timestamp(10)));
        assert!(b.spend(Timestamp(10), PRESENCE_BUDGET_NAH));
        assert!(!b.spend(Timestamp(10), 1));
        assert!(!b.presence_ended(Timestamp(10 + PRESENCE_WINDOW_MS - 1)));
        assert!(b.presence_ended(Timestamp(10 + PRESENCE_WINDOW_MS)));
        assert!(!b.presence(Timestamp(10 + PRESENCE_WINDOW_MS)));
        assert!(!b.presence_ended(Timestamp(10 + PRESENCE_WINDOW_MS)));
    }
}
