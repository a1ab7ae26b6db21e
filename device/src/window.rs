//! The rolling 24 h delivery window behind the hard daily limit.
//!
//! Delivered volume is counted in 15-minute buckets of *device* time (the monotonic
//! clock), so setting the wall clock cannot move deliveries out of the window. The sum
//! covers the current bucket and the 96 before it: it always looks back at least 24 h
//! and at most 24 h 15 min, so it can only over-count — the limit errs on the safe side.

use heapless::Vec;
use thecal_protocol::time::Timestamp;

use crate::storage::WINDOW_BUCKETS;

/// Length of one bucket.
pub const BUCKET_MS: u64 = 15 * 60 * 1000;

/// Delivered volume per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bucket index (device time / BUCKET_MS) of the newest bucket.
    newest: u64,
    /// Ring of bucket totals in nL; bucket `i` lives at `i % WINDOW_BUCKETS`.
    buckets: Vec<u32, WINDOW_BUCKETS>,
}

impl Default for Window {
    fn default() -> Self {
        Self::new()
    }
}

impl Window {
    /// An empty window.
    pub fn new() -> Self {
        let mut buckets = Vec::new();
        buckets.resize(WINDOW_BUCKETS, 0).ok();
        Self { newest: 0, buckets }
    }

    /// Restores a window from its persisted parts (a wrong length is repaired with zeros
    /// — only reachable from a corrupt store, and zero history is then refilled by
    /// the boot charge in the pump core).
    pub fn restore(newest: u64, mut buckets: Vec<u32, WINDOW_BUCKETS>) -> Self {
        buckets.resize(WINDOW_BUCKETS, 0).ok();
        Self { newest, buckets }
    }

    /// The persisted parts: newest bucket index and the ring.
    pub fn parts(&self) -> (u64, &Vec<u32, WINDOW_BUCKETS>) {
        (self.newest, &self.buckets)
    }

    fn slot(index: u64) -> usize {
        (index % WINDOW_BUCKETS as u64) as usize
    }

    /// Moves the window to `now`, zeroing buckets that fell out.
    fn advance(&mut self, now: Timestamp) {
        let current = now.0 / BUCKET_MS;
        if current <= self.newest {
            return;
        }
        let stale = (current - self.newest).min(WINDOW_BUCKETS as u64);
        for k in 1..=stale {
            if let Some(b) = self.buckets.get_mut(Self::slot(self.newest + k)) {
                *b = 0;
            }
        }
        self.newest = current;
    }

    /// Volume delivered in the window ending at `now`, nL.
    pub fn total(&mut self, now: Timestamp) -> u64 {
        self.advance(now);
        self.buckets.iter().map(|&b| u64::from(b)).sum()
    }

    /// Rescales every bucket by `num / den`, rounding up (a concentration change of the
    /// same drug: the same mass is a different volume of the new solution; rounding up
    /// keeps the limit on the safe side).
    pub fn rescale(&mut self, num: u32, den: u32) {
        if den == 0 {
            return;
        }
        for b in self.buckets.iter_mut() {
            let v = (u64::from(*b) * u64::from(num)).div_ceil(u64::from(den));
            *b = u32::try_from(v).unwrap_or(u32::MAX);
        }
    }

    /// Like [`Window::rescale`], keeping each bucket's larger value: counts enough drug
    /// whether the old or the new solution is in force (stored ahead of a concentration
    /// change).
    pub fn rescale_keep_larger(&mut self, num: u32, den: u32) {
        let old = self.buckets.clone();
        self.rescale(num, den);
        for (b, o) in self.buckets.iter_mut().zip(old.iter()) {
            *b = (*b).max(*o);
        }
    }

    /// Moves `nl` from the newest bucket to the bucket of `now` (volume recorded earlier
    /// than it may have been delivered: it then leaves the window no earlier than it
    /// should).
    pub fn move_newest(&mut self, now: Timestamp, nl: u32) {
        if let Some(b) = self.buckets.get_mut(Self::slot(self.newest)) {
            *b = b.saturating_sub(nl);
        }
        self.add(now, nl);
    }

    /// Forgets all history (a different drug: the old one's deliveries do not count
    /// against the new one's limit).
    pub fn clear(&mut self) {
        for b in self.buckets.iter_mut() {
            *b = 0;
        }
    }

    /// Records `nl` delivered at `now`.
    pub fn add(&mut self, now: Timestamp, nl: u32) {
        self.advance(now);
        if let Some(b) = self.buckets.get_mut(Self::slot(self.newest)) {
            *b = b.saturating_add(nl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_leave_after_a_day_and_never_early() {
        let mut w = Window::new();
        w.add(Timestamp(0), 100);
        w.add(Timestamp(BUCKET_MS * 10), 50);
        // Still counted 24 h later (conservative: up to one bucket longer).
        assert_eq!(w.total(Timestamp(86_400_000)), 150);
        assert_eq!(w.total(Timestamp(86_400_000 + BUCKET_MS)), 50);
        assert_eq!(w.total(Timestamp(86_400_000 + 11 * BUCKET_MS)), 0);
    }

    #[test]
    fn time_far_ahead_clears_everything() {
        let mut w = Window::new();
        w.add(Timestamp(5), 7);
        assert_eq!(w.total(Timestamp(u64::MAX)), 0);
    }
}
