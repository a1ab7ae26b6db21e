//! The rolling 24 h delivery window behind the hard daily limit.
//!
//! Delivered volume is counted in 15-minute buckets of *device* time (the monotonic
//! clock), so setting the wall clock cannot move deliveries out of the window. The sum
//! covers the current bucket and the 96 before it: it always looks back at least 24 h
//! and at most 24 h 15 min, so it can only over-count — the limit errs on the safe side.
//!
//! The pump checks the limit before every stroke, so the sum is kept as a running total
//! (constant work per stroke instead of a pass over the ring); the tests check it
//! against the plain sum of the buckets after random operations.

use heapless::Vec;
use thecal_protocol::time::Timestamp;

use crate::store::WINDOW_BUCKETS;

/// Length of one bucket.
pub const BUCKET_MS: u64 = 15 * 60 * 1000;

/// Delivered volume per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bucket index (device time / BUCKET_MS) of the newest bucket.
    newest: u64,
    /// Ring of bucket totals in nL; bucket `i` lives at `i % WINDOW_BUCKETS`.
    buckets: Vec<u32, WINDOW_BUCKETS>,
    /// Sum of `buckets`, nL (kept in step by every method).
    sum: u64,
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
        Self {
            newest: 0,
            buckets,
            sum: 0,
        }
    }

    /// Restores a window from its persisted parts (a wrong length is repaired with zeros
    /// — only reachable from a corrupt store, and zero history is then refilled by
    /// the boot charge in the pump core).
    pub fn restore(newest: u64, mut buckets: Vec<u32, WINDOW_BUCKETS>) -> Self {
        buckets.resize(WINDOW_BUCKETS, 0).ok();
        let sum = Self::sum_of(&buckets);
        Self {
            newest,
            buckets,
            sum,
        }
    }

    fn sum_of(buckets: &[u32]) -> u64 {
        buckets.iter().map(|&b| u64::from(b)).sum()
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
                self.sum = self.sum.saturating_sub(u64::from(*b));
                *b = 0;
            }
        }
        self.newest = current;
    }

    /// Volume delivered in the window ending at `now`, nL.
    pub fn total(&mut self, now: Timestamp) -> u64 {
        self.advance(now);
        self.sum
    }

    /// Rescales every bucket by `num / den`, rounding up (a concentration change of the
    /// same drug: the same mass is a different volume of the new solution; rounding up
    /// keeps the limit on the safe side).
    ///
    /// A bucket that would exceed `u32::MAX` nL saturates there, and a saturated bucket
    /// is never scaled again: it means "more than any limit" (a daily limit is at most
    /// `u32::MAX` nL, see `Pump::limit_nl`), so the pump delivers nothing until it leaves
    /// the window. Scaling it back down after a later change would forget drug that was
    /// delivered (found by the `device_server` fuzz target: a 7 800-fold dilution of the
    /// same drug and back within a day left the window counting 1.207 mL of the 1.263 mL
    /// delivered, and the difference could be given again the same day).
    pub fn rescale(&mut self, num: u32, den: u32) {
        if den == 0 {
            return;
        }
        for b in self.buckets.iter_mut().filter(|b| **b != u32::MAX) {
            let v = (u64::from(*b) * u64::from(num)).div_ceil(u64::from(den));
            *b = u32::try_from(v).unwrap_or(u32::MAX);
        }
        self.sum = Self::sum_of(&self.buckets);
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
        self.sum = Self::sum_of(&self.buckets);
    }

    /// Moves `nl` from the newest bucket to the bucket of `now` (volume recorded earlier
    /// than it may have been delivered: it then leaves the window no earlier than it
    /// should).
    pub fn move_newest(&mut self, now: Timestamp, nl: u32) {
        if let Some(b) = self.buckets.get_mut(Self::slot(self.newest)) {
            let taken = (*b).min(nl);
            *b -= taken;
            self.sum = self.sum.saturating_sub(u64::from(taken));
        }
        self.add(now, nl);
    }

    /// Forgets all history (a different drug: the old one's deliveries do not count
    /// against the new one's limit).
    pub fn clear(&mut self) {
        for b in self.buckets.iter_mut() {
            *b = 0;
        }
        self.sum = 0;
    }

    /// Records `nl` delivered at `now`.
    pub fn add(&mut self, now: Timestamp, nl: u32) {
        self.advance(now);
        if let Some(b) = self.buckets.get_mut(Self::slot(self.newest)) {
            let added = nl.min(u32::MAX - *b);
            *b += added;
            self.sum += u64::from(added);
        }
    }
}

/// `nl` of a solution at concentration `from` as the volume of the same mass at
/// concentration `to` (same drug), rounded up: never less drug than was delivered. A
/// volume that does not fit saturates at `u32::MAX` ("more than any limit"), as does
/// any volume for `to == 0`.
pub fn rescaled(nl: u32, from: u32, to: u32) -> u32 {
    if to == 0 {
        return if nl == 0 { 0 } else { u32::MAX };
    }
    let v = (u64::from(nl) * u64::from(from)).div_ceil(u64::from(to));
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescaled_rounds_up_and_saturates() {
        // 250 nL at 500 µg/mL is 125 µg: 5 000 nL at 25 µg/mL.
        assert_eq!(rescaled(250, 500_000, 25_000), 5_000);
        // 250 nL at 1 ng/mL over 3 ng/mL: 83.3 -> 84 nL.
        assert_eq!(rescaled(250, 1, 3), 84);
        assert_eq!(rescaled(u32::MAX, 2, 1), u32::MAX);
        assert_eq!(rescaled(1, 1, 0), u32::MAX);
        assert_eq!(rescaled(0, 1, 0), 0);
    }

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

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Add(u64, u32),
        Total(u64),
        MoveNewest(u64, u32),
        Rescale(u32, u32),
        RescaleKeepLarger(u32, u32),
        Clear,
        Restore,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Time steps from a millisecond to two days; volumes up to the u32 ceiling.
        let dt = prop_oneof![0u64..10, 0u64..BUCKET_MS * 3, 0u64..2 * 86_400_000];
        let nl = prop_oneof![0u32..1_000, any::<u32>()];
        prop_oneof![
            4 => (dt.clone(), nl.clone()).prop_map(|(t, v)| Op::Add(t, v)),
            2 => dt.clone().prop_map(Op::Total),
            1 => (dt, nl).prop_map(|(t, v)| Op::MoveNewest(t, v)),
            1 => (1u32..5_000, 0u32..5_000).prop_map(|(n, d)| Op::Rescale(n, d)),
            1 => (1u32..5_000, 1u32..5_000).prop_map(|(n, d)| Op::RescaleKeepLarger(n, d)),
            1 => Just(Op::Clear),
            1 => Just(Op::Restore),
        ]
    }

    proptest! {
        /// The running total always equals the plain sum of the ring, whatever the order
        /// of operations (time only moves forward, as on the monotonic clock).
        #[test]
        fn running_total_is_the_sum_of_the_buckets(ops in proptest::collection::vec(op(), 1..200)) {
            let mut w = Window::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Add(dt, nl) => { now += dt; w.add(Timestamp(now), nl) }
                    Op::Total(dt) => { now += dt; w.total(Timestamp(now)); }
                    Op::MoveNewest(dt, nl) => { now += dt; w.move_newest(Timestamp(now), nl) }
                    Op::Rescale(n, d) => w.rescale(n, d),
                    Op::RescaleKeepLarger(n, d) => w.rescale_keep_larger(n, d),
                    Op::Clear => w.clear(),
                    Op::Restore => {
                        let (newest, buckets) = w.parts();
                        w = Window::restore(newest, buckets.clone());
                    }
                }
                let plain: u64 = w.buckets.iter().map(|&b| u64::from(b)).sum();
                prop_assert_eq!(w.sum, plain);
                prop_assert_eq!(w.total(Timestamp(now)), w.sum);
            }
        }
    }

    #[test]
    fn a_saturated_bucket_stays_saturated() {
        let mut w = Window::new();
        w.add(Timestamp(0), 1_200_000);
        // 500 µg/mL diluted to 64 ng/mL: 9.4 L of the new solution, more than a u32.
        w.rescale(500_000, 64);
        assert_eq!(w.total(Timestamp(0)), u64::from(u32::MAX));
        // Back to 500 µg/mL: still more than any limit, not 0.55 mL.
        w.rescale(64, 500_000);
        assert_eq!(w.total(Timestamp(0)), u64::from(u32::MAX));
        w.rescale_keep_larger(64, 500_000);
        assert_eq!(w.total(Timestamp(0)), u64::from(u32::MAX));
        // It leaves the window like any other delivery.
        assert_eq!(w.total(Timestamp(86_400_000 + BUCKET_MS)), 0);
    }

    #[test]
    fn time_far_ahead_clears_everything() {
        let mut w = Window::new();
        w.add(Timestamp(5), 7);
        assert_eq!(w.total(Timestamp(u64::MAX)), 0);
    }
}
