//! The active alarm list.
//!
//! The pump core re-evaluates every alarm condition after each tick and request and calls
//! [`Alarms::set`] with the result; the list raises and clears entries and reports which
//! changed (for the event log). A critical alarm that was acknowledged re-asserts (is
//! shown unacknowledged again) [`REASSERT_MS`] later while its cause remains; a
//! non-critical one stays acknowledged until it clears.

use heapless::Vec;
use thecal_protocol::message::{AlarmEntry, AlarmKind, MAX_ALARMS};
use thecal_protocol::time::Timestamp;

/// How long an acknowledged critical alarm stays silent.
pub const REASSERT_MS: u64 = 60 * 60 * 1000;

/// What [`Alarms::set`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Newly raised.
    Raised,
    /// Cause gone.
    Cleared,
    /// No change.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Active {
    kind: AlarmKind,
    /// Device time raised.
    raised: Timestamp,
    /// Device time acknowledged.
    acked: Option<Timestamp>,
}

/// Active alarms (at most one per kind).
#[derive(Debug, Clone, Default)]
pub struct Alarms {
    active: Vec<Active, MAX_ALARMS>,
}

impl Alarms {
    /// No alarms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `kind` is active.
    pub fn is_active(&self, kind: AlarmKind) -> bool {
        self.active.iter().any(|a| a.kind == kind)
    }

    /// Number of active alarms.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether none is active.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// The first active alarm that halts delivery.
    pub fn halting(&self) -> Option<AlarmKind> {
        self.active
            .iter()
            .map(|a| a.kind)
            .find(|k| k.halts_delivery())
    }

    /// Whether any active alarm is critical.
    pub fn any_critical(&self) -> bool {
        self.active.iter().any(|a| a.kind.is_critical())
    }

    /// Sets the condition of `kind` at device time `now`.
    pub fn set(&mut self, kind: AlarmKind, condition: bool, now: Timestamp) -> Change {
        let position = self.active.iter().position(|a| a.kind == kind);
        match (condition, position) {
            (true, None) => {
                // Capacity equals the number of kinds, so this cannot fail.
                let pushed = self.active.push(Active {
                    kind,
                    raised: now,
                    acked: None,
                });
                if pushed.is_ok() {
                    Change::Raised
                } else {
                    Change::None
                }
            }
            (false, Some(i)) => {
                self.active.remove(i);
                Change::Cleared
            }
            _ => Change::None,
        }
    }

    /// Acknowledges `kind`; `false` if it is not active.
    pub fn acknowledge(&mut self, kind: AlarmKind, now: Timestamp) -> bool {
        match self.active.iter_mut().find(|a| a.kind == kind) {
            Some(a) => {
                a.acked = Some(now);
                true
            }
            None => false,
        }
    }

    /// Kinds currently acknowledged (for the snapshot).
    pub fn acknowledged(&self) -> impl Iterator<Item = AlarmKind> + '_ {
        self.active
            .iter()
            .filter(|a| a.acked.is_some())
            .map(|a| a.kind)
    }

    /// The report list; `to_wall` maps device time to wall time.
    pub fn entries(
        &self,
        now: Timestamp,
        to_wall: impl Fn(Timestamp) -> Timestamp,
    ) -> Vec<AlarmEntry, MAX_ALARMS> {
        self.active
            .iter()
            .map(|a| AlarmEntry {
                kind: a.kind,
                raised_at: to_wall(a.raised),
                acknowledged: a
                    .acked
                    .is_some_and(|t| !a.kind.is_critical() || now.since(t) < REASSERT_MS),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_alarm_reasserts_after_acknowledge() {
        let mut a = Alarms::new();
        assert_eq!(
            a.set(AlarmKind::EmptyReservoir, true, Timestamp(0)),
            Change::Raised
        );
        assert_eq!(
            a.set(AlarmKind::EmptyReservoir, true, Timestamp(1)),
            Change::None
        );
        assert!(a.acknowledge(AlarmKind::EmptyReservoir, Timestamp(10)));
        let id = |t| t;
        assert!(a.entries(Timestamp(20), id)[0].acknowledged);
        assert!(!a.entries(Timestamp(10 + REASSERT_MS), id)[0].acknowledged);
        assert_eq!(
            a.set(AlarmKind::EmptyReservoir, false, Timestamp(30)),
            Change::Cleared
        );
        assert!(a.is_empty());
    }

    #[test]
    fn non_critical_alarm_stays_acknowledged() {
        let mut a = Alarms::new();
        a.set(AlarmKind::LowReservoir, true, Timestamp(0));
        a.acknowledge(AlarmKind::LowReservoir, Timestamp(0));
        assert!(a.entries(Timestamp(u64::MAX), |t| t)[0].acknowledged);
        assert!(!a.acknowledge(AlarmKind::MotorStall, Timestamp(0)));
    }
}
