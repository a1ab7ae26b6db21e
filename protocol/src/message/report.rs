//! The data records carried by responses: identity, status, battery, reservoir, alarms,
//! link counters.

use core::fmt;
use heapless::String;
use serde::{Deserialize, Serialize};

use crate::drug::Drug;
use crate::message::{Revision, Role};
use crate::prescription::Prescription;
use crate::time::{Timestamp, UtcOffset};
use crate::units::{
    Nanograms, NanogramsPerDay, NanogramsPerMillilitre, Nanolitres, NanolitresPerDay,
};
pub use crate::version::Version;

/// Most alarms reported at once (there are 10 kinds).
pub const MAX_ALARMS: usize = 10;
/// Longest model name and serial number, bytes of UTF-8.
pub const MAX_ID_LEN: usize = 16;

/// Who the pump is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Model name.
    pub model: String<MAX_ID_LEN>,
    /// Serial number.
    pub serial: String<MAX_ID_LEN>,
    /// Firmware version.
    pub firmware: Version,
    /// Wire protocol version ([`crate::PROTOCOL_VERSION`]).
    pub protocol: u8,
    /// [`crate::SCHEMA_HASH`] of the firmware's message definitions.
    pub schema: u32,
    /// What this pump supports.
    pub capabilities: Capabilities,
    /// Reservoir capacity (20 or 40 mL).
    pub reservoir_capacity: Nanolitres,
    /// The pump's static X25519 public key (on its label): provisioning agrees the device
    /// secret with it.
    pub public_key: [u8; 32],
    /// Epoch of each role key in force (0 while unprovisioned).
    pub key_epochs: KeyEpochs,
}

/// Epoch of each role's key in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct KeyEpochs {
    pub patient: u32,
    pub clinician: u32,
    pub service: u32,
}

impl KeyEpochs {
    /// The epoch of `role` (the emergency key has none: 0).
    pub const fn of(&self, role: Role) -> u32 {
        match role {
            Role::Patient => self.patient,
            Role::Clinician => self.clinician,
            Role::Service => self.service,
            Role::Emergency => 0,
        }
    }
}

/// Capability bits; unknown bits are ignored by older programmers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// Flexible (stepped) daily profiles.
    pub const FLEXIBLE: u32 = 1 << 0;
    /// Profiles that differ by weekday.
    pub const WEEKLY: u32 = 1 << 1;
    /// Patient-activated bolus.
    pub const PATIENT_BOLUS: u32 = 1 << 2;
    /// Persistent event log.
    pub const EVENT_LOG: u32 = 1 << 3;
    /// Authenticated, encrypted sessions.
    pub const SECURE_SESSION: u32 = 1 << 4;
    /// The emergency role under the physical-presence signal (PROTOCOL.md 2.9).
    pub const EMERGENCY_ACCESS: u32 = 1 << 5;
    /// Forward-secret handshakes, role-key rotation and provisioning by key agreement.
    pub const KEY_LIFECYCLE: u32 = 1 << 6;

    /// Whether every bit of `bits` is set.
    pub const fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
}

/// Whether the pump is delivering the prescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TherapyState {
    /// Delivering the prescription.
    Running,
    /// Stopped by a clinician; minimum flow only.
    Stopped,
    /// Delivery halted by a critical alarm.
    Halted(AlarmKind),
}

/// Kinds of bolus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum BolusKind {
    Single,
    Priming,
    Bridge,
    Patient,
}

/// A bolus that is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BolusProgress {
    /// Kind.
    pub kind: BolusKind,
    /// Volume delivered so far.
    pub delivered: Nanolitres,
    /// Total volume.
    pub total: Nanolitres,
    /// Planned end.
    pub ends_at: Timestamp,
}

/// One-screen summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Device clock (UTC).
    pub now: Timestamp,
    /// Patient's UTC offset.
    pub offset: UtcOffset,
    /// Running, stopped or halted.
    pub therapy: TherapyState,
    /// Revision of the prescription in force.
    pub revision: Revision,
    /// Drug in the reservoir.
    pub drug: Drug,
    /// Basal dose rate now.
    pub basal_dose: NanogramsPerDay,
    /// Basal flow now.
    pub basal_flow: NanolitresPerDay,
    /// Drug delivered in the last 24 h, boluses included.
    pub delivered_24h: Nanograms,
    /// Hard daily limit.
    pub daily_limit: NanogramsPerDay,
    /// Reservoir volume.
    pub reservoir: Nanolitres,
    /// Battery state.
    pub battery: BatteryState,
    /// Active alarms.
    pub alarms: u8,
    /// Whether one of them is critical.
    pub critical: bool,
    /// The bolus running, if any.
    pub bolus: Option<BolusProgress>,
    /// Since when delivery is halted (`therapy` is `Halted`).
    pub halted_since: Option<Timestamp>,
    /// Basal strokes the hard daily limit is holding back, if it is.
    pub withheld: Option<Withheld>,
    /// Whether the prescription in force is the newest written and stands under this
    /// firmware's rules.
    pub standing: Standing,
    /// The low-reservoir date, from the same instant as `now` (see
    /// [`ReservoirReport::low_at`]).
    pub low_at: Option<Timestamp>,
    /// The empty-reservoir date, from the same instant as `now`.
    pub empty_at: Option<Timestamp>,
}

/// Basal delivery held back by the hard daily limit: the rolling 24 h already holds
/// the limit (boluses, bridge or a schedule near the limit), so strokes that fall due
/// are not delivered until older deliveries leave the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Withheld {
    /// When the first stroke was held back.
    pub since: Timestamp,
    /// Volume held back so far.
    pub volume: Nanolitres,
}

/// How the prescription in force stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Standing {
    /// Revision of the newest prescription written. Greater than the revision in force
    /// when the newest record was found damaged and an older copy is in force (the
    /// `PrescriptionFallback` alarm is raised until a clinician writes a new one).
    pub newest: Revision,
    /// A newer prescription record was found damaged at boot: an older copy is in force.
    pub fallback: bool,
    /// The prescription was written under an older rule set and breaks a rule of this
    /// firmware: it stays in force (a clinician approved it) with the non-critical
    /// `PrescriptionReview` alarm until a clinician writes a new one.
    pub review: bool,
}

/// Battery service state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BatteryState {
    /// Normal service.
    Ok,
    /// Elective replacement indicator: about 90 days of service left.
    ElectiveReplacement,
    /// End of service: replace now.
    EndOfService,
}

/// Battery report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatteryReport {
    /// Terminal voltage.
    pub millivolts: u16,
    /// Remaining capacity, 0..=100.
    pub percent: u8,
    /// Service state.
    pub state: BatteryState,
    /// Estimated days until ERI (0 once reached).
    pub days_to_eri: u16,
    /// Estimated days until EOS (0 once reached).
    pub days_to_eos: u16,
}

/// Reservoir report, with projections under the active schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReservoirReport {
    /// Capacity.
    pub capacity: Nanolitres,
    /// Volume now.
    pub volume: Nanolitres,
    /// Low-reservoir alarm threshold.
    pub low_threshold: Nanolitres,
    /// Drug.
    pub drug: Drug,
    /// Concentration.
    pub concentration: NanogramsPerMillilitre,
    /// When the low threshold is reached on the basal schedule (`now` if already;
    /// `None` if not within the projection horizon, see `projection::HORIZON_DAYS`).
    pub low_at: Option<Timestamp>,
    /// When the reservoir is empty on the basal schedule.
    pub empty_at: Option<Timestamp>,
    /// When the low threshold is reached if the patient takes every allowed bolus.
    pub worst_low_at: Option<Timestamp>,
    /// When the reservoir is empty if the patient takes every allowed bolus.
    pub worst_empty_at: Option<Timestamp>,
    /// Last refill.
    pub last_refill: Option<Timestamp>,
}

/// The prescription in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrescriptionRecord {
    /// Its revision; increases with every accepted write or drug change.
    pub revision: Revision,
    /// When it was stored.
    pub written_at: Timestamp,
    /// The prescription. Decoded with its structure checked (a cycle the pump can
    /// run), not every rule: a prescription under review breaks one (see `standing`).
    #[serde(deserialize_with = "crate::rules::deserialize_admitted")]
    pub prescription: Prescription,
    /// Newest written, fallback and review flags.
    pub standing: Standing,
}

/// Alarm kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmKind {
    /// Reservoir at or below the programmed threshold.
    LowReservoir,
    /// Reservoir empty: delivery halted. Critical.
    EmptyReservoir,
    /// Battery at the elective replacement indicator.
    ElectiveReplacement,
    /// Battery low. Critical.
    LowBattery,
    /// Battery at end of service: delivery halted. Critical.
    EndOfService,
    /// The motor did not complete a stroke: delivery halted. Critical.
    MotorStall,
    /// Persistent storage failed to write or verify. Critical.
    StorageFault,
    /// The newest prescription record is damaged: an older one is in force. Critical
    /// (therapy changed without a clinician); cleared by writing a prescription.
    PrescriptionFallback,
    /// The prescription in force was written under an older rule set and breaks one of
    /// this firmware's rules: it stays in force; a clinician should review it. Cleared
    /// by writing a prescription.
    PrescriptionReview,
    /// The hard daily limit is holding back basal strokes: delivery is paused until
    /// older deliveries leave the rolling 24 h. Critical.
    DeliveryWithheld,
}

impl AlarmKind {
    /// All kinds.
    pub const ALL: [AlarmKind; 10] = [
        AlarmKind::LowReservoir,
        AlarmKind::EmptyReservoir,
        AlarmKind::ElectiveReplacement,
        AlarmKind::LowBattery,
        AlarmKind::EndOfService,
        AlarmKind::MotorStall,
        AlarmKind::StorageFault,
        AlarmKind::PrescriptionFallback,
        AlarmKind::PrescriptionReview,
        AlarmKind::DeliveryWithheld,
    ];

    /// Critical alarms need action now; they re-assert after acknowledgement while their
    /// cause remains.
    pub const fn is_critical(self) -> bool {
        !matches!(
            self,
            AlarmKind::LowReservoir
                | AlarmKind::ElectiveReplacement
                | AlarmKind::PrescriptionReview
        )
    }

    /// Whether this alarm halts delivery.
    pub const fn halts_delivery(self) -> bool {
        matches!(
            self,
            AlarmKind::EmptyReservoir | AlarmKind::EndOfService | AlarmKind::MotorStall
        )
    }

    /// Readable name.
    pub const fn name(self) -> &'static str {
        match self {
            AlarmKind::LowReservoir => "low reservoir",
            AlarmKind::EmptyReservoir => "empty reservoir",
            AlarmKind::ElectiveReplacement => "elective replacement indicator",
            AlarmKind::LowBattery => "low battery",
            AlarmKind::EndOfService => "end of service",
            AlarmKind::MotorStall => "motor stall",
            AlarmKind::StorageFault => "storage fault",
            AlarmKind::PrescriptionFallback => "older prescription in force",
            AlarmKind::PrescriptionReview => "prescription needs review",
            AlarmKind::DeliveryWithheld => "delivery withheld by the daily limit",
        }
    }
}

impl fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An active alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlarmEntry {
    /// Kind.
    pub kind: AlarmKind,
    /// When raised.
    pub raised_at: Timestamp,
    /// Whether a programmer acknowledged it.
    pub acknowledged: bool,
}

/// Link counters since the last reset: how a clinic diagnoses a poor radio link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LinkStats {
    /// Valid frames received.
    pub frames_in: u32,
    /// Frames sent.
    pub frames_out: u32,
    /// Frames dropped for a bad CRC.
    pub bad_crc: u32,
    /// Frames dropped for bad COBS, a bad header or a short length.
    pub malformed: u32,
    /// Frames dropped for exceeding the buffer.
    pub oversize: u32,
    /// Times the decoder discarded bytes to resynchronise on a delimiter.
    pub resyncs: u32,
    /// Requests refused.
    pub refusals: u32,
    /// Repeated therapy changes answered from the reply cache.
    pub replays: u32,
    /// Sealed frames that did not open (forged, replayed, reordered, reflected; not
    /// counted in `malformed`).
    pub forged: u32,
    /// Frames not answered, or not even decoded, because the unauthenticated energy
    /// budget was spent (the link was quiet).
    pub quiet: u32,
}
