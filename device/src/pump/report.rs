//! Read-only answers: identity, status, battery, reservoir, alarms.

use thecal_protocol::message::{
    BolusProgress, Capabilities, Identity, ReservoirReport, StatusReport, TherapyState,
};
use thecal_protocol::projection::{project, Projection, ReservoirState};
use thecal_protocol::session::Binding;
use thecal_protocol::time::Timestamp;
use thecal_protocol::units::{Nanograms, Nanolitres};
use thecal_protocol::{PROTOCOL_VERSION, SCHEMA_HASH};

use super::Pump;
use crate::store::Storage;
use crate::therapy::motor::{Motor, STROKE_NL};

/// The capability bits of this firmware.
pub const CAPABILITIES: u32 = Capabilities::FLEXIBLE
    | Capabilities::WEEKLY
    | Capabilities::PATIENT_BOLUS
    | Capabilities::EVENT_LOG
    | Capabilities::SECURE_SESSION
    | Capabilities::EMERGENCY_ACCESS
    | Capabilities::KEY_LIFECYCLE;

impl<S: Storage, M: Motor> Pump<S, M> {
    /// Who this pump is.
    pub fn identity(&self) -> Identity {
        Identity {
            model: self.info.model.clone(),
            serial: self.info.serial.clone(),
            firmware: self.info.firmware,
            protocol: PROTOCOL_VERSION,
            schema: SCHEMA_HASH,
            capabilities: Capabilities(CAPABILITIES),
            reservoir_capacity: self.info.capacity,
            public_key: self.public_key().unwrap_or_default(),
            key_epochs: self.key_epochs(),
        }
    }

    /// What `Identify` announces and every handshake transcript binds.
    pub fn binding(&self) -> Binding {
        Binding {
            version: PROTOCOL_VERSION,
            schema: SCHEMA_HASH,
            capabilities: CAPABILITIES,
        }
    }

    /// Running, stopped or halted.
    pub fn therapy_state(&self) -> TherapyState {
        match self.halted() {
            Some(kind) => TherapyState::Halted(kind),
            None if self.therapy.stopped => TherapyState::Stopped,
            None => TherapyState::Running,
        }
    }

    /// One-screen summary at device time `now`.
    pub fn status(&mut self, now: Timestamp) -> StatusReport {
        let p = &self.therapy.record.prescription;
        let (minute, _) =
            thecal_protocol::time::local_week_position(self.wall(now), self.clock.utc_offset);
        let (basal_flow, _) = self.flow_at(now);
        let basal_dose = if self.therapy.stopped {
            thecal_protocol::rules::min_flow_dose(p.concentration())
        } else {
            p.segment_at(minute).dose
        };
        let concentration = p.concentration();
        let daily_limit = p.daily_limit();
        let drug = p.drug();
        let window = u32::try_from(self.ledger.window.total(now)).unwrap_or(u32::MAX);
        let delivered_24h = Nanolitres(window)
            .to_dose(concentration)
            .unwrap_or(Nanograms(u32::MAX));
        let bolus = self.dosing.bolus().map(|b| BolusProgress {
            kind: b.kind,
            delivered: Nanolitres(b.delivered.saturating_mul(STROKE_NL)),
            total: Nanolitres(b.strokes.saturating_mul(STROKE_NL)),
            ends_at: self.wall(b.end()),
        });
        let projection = self.projection(now);
        StatusReport {
            now: self.wall(now),
            offset: self.clock.utc_offset,
            therapy: self.therapy_state(),
            revision: self.therapy.record.revision,
            drug,
            basal_dose,
            basal_flow,
            delivered_24h,
            daily_limit,
            reservoir: self.ledger.reservoir,
            battery: self.health.battery.state(self.strokes_per_day()),
            alarms: self.health.alarms.len() as u8,
            critical: self.health.alarms.any_critical(),
            bolus,
            halted_since: None,
            withheld: None,
            standing: self.therapy.record.standing,
            low_at: projection.low_at,
            empty_at: projection.empty_at,
        }
    }

    /// The reservoir's low and empty dates from device time `now`, from the dosing
    /// engine's real state (its carried part-stroke and the running bolus), so a date is
    /// never later than the alarm it predicts (see [`thecal_protocol::projection`]).
    fn projection(&self, now: Timestamp) -> Projection {
        let (therapy, clock) = (&self.therapy, &self.clock);
        let (carry, bolus) = self.dosing.outlook(now, &|t| therapy.flow_at(clock, t));
        project(
            &self.therapy.record.prescription,
            ReservoirState {
                volume: self.ledger.reservoir,
                now: self.wall(now),
                offset: self.clock.utc_offset,
                therapy: self.therapy_state(),
                carry,
                bolus,
            },
        )
    }

    /// Battery report.
    pub fn battery_report(&self) -> thecal_protocol::message::BatteryReport {
        self.health.battery.report(self.strokes_per_day())
    }

    /// Reservoir report with projections from device time `now`.
    pub fn reservoir_report(&self, now: Timestamp) -> ReservoirReport {
        let p = &self.therapy.record.prescription;
        let projection = self.projection(now);
        ReservoirReport {
            capacity: self.info.capacity,
            volume: self.ledger.reservoir,
            low_threshold: p.low_reservoir_alarm(),
            drug: p.drug(),
            concentration: p.concentration(),
            low_at: projection.low_at,
            empty_at: projection.empty_at,
            worst_low_at: projection.worst_low_at,
            worst_empty_at: projection.worst_empty_at,
            last_refill: self.ledger.last_refill.map(|t| self.wall(t)),
        }
    }
}
