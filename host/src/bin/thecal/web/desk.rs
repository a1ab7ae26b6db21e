//! What the server holds between requests: the session with the pump, the session
//! report, and at most one plan waiting for its confirmation.

use thecal_host::records::Records;
use thecal_host::report::{Change, Interrogation, SessionReport};
use thecal_host::view::PumpTime;
use thecal_host::workflow::refill::RefillPlan;
use thecal_host::workflow::schedule::WritePlan;
use thecal_host::workflow::Current;
use thecal_host::{quantity, report::ChecklistAnswer};
use thecal_protocol::message::{BolusRequest, Role, StatusReport};
use thecal_protocol::time::{Timestamp, UtcOffset};

use super::page::Banner;
use crate::session::{Global, Session};

/// A change planned and shown, not yet confirmed.
#[derive(Debug)]
pub enum Action {
    /// Write a prescription (compare, write, read back).
    Schedule(Box<WritePlan>),
    /// Record a refill, with its checklist.
    Refill(Box<RefillPlan>, Vec<ChecklistAnswer>),
    /// Start a clinician bolus.
    Bolus(BolusRequest),
    /// Cancel the running bolus.
    CancelBolus,
    /// Stop therapy.
    Stop,
    /// Resume therapy.
    Resume,
    /// Set the pump clock.
    Clock {
        /// The new time.
        now: Timestamp,
        /// The patient's UTC offset.
        offset: UtcOffset,
    },
}

struct Pending {
    nonce: String,
    action: Action,
}

/// The session and what belongs to it.
pub struct Desk {
    /// The session with the pump.
    pub session: Session,
    /// The session report for the chart.
    pub report: SessionReport,
    /// The latest status read (for the pump clock and the banner).
    pub status: Option<StatusReport>,
    pending: Option<Pending>,
    /// The session records the report is saved in.
    records: Records,
    /// Why the report could not be saved the last time (shown on every page).
    pub unsaved: Option<String>,
}

/// 32 hex digits from the operating system's random source.
pub fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no random numbers from the operating system: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The programmer's clock, RFC 3339 UTC.
pub fn utc_now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

impl Desk {
    /// A desk for the open `session`.
    pub fn new(session: Session, g: &Global, records: Records) -> anyhow::Result<Desk> {
        let report = SessionReport::new(
            random_hex()?,
            &session.identity,
            Role::from(g.role),
            utc_now(),
        );
        Ok(Desk {
            session,
            report,
            status: None,
            pending: None,
            records,
            unsaved: None,
        })
    }

    /// Reads status, prescription and alarms; notes them in the report.
    pub async fn interrogate(
        &mut self,
    ) -> anyhow::Result<(Current, Vec<thecal_protocol::message::AlarmEntry>)> {
        let current = Current::read(&mut self.session.client).await?;
        let alarms = self.session.client.alarms().await?;
        self.session.last_time = Some(current.time());
        self.status = Some(current.status.clone());
        self.report.interrogated(Interrogation::new(
            &current.status,
            &current.record,
            &alarms,
        ));
        Ok((current, alarms))
    }

    /// The pump clock as last read.
    pub fn time(&self) -> Option<PumpTime> {
        self.session.last_time
    }

    /// The header's words.
    pub fn banner(&self) -> Banner {
        let id = &self.session.identity;
        let drug = self.report.after.as_ref().map_or(String::new(), |i| {
            format!(
                "{} {}",
                i.prescription.drug,
                quantity::concentration(thecal_protocol::units::NanogramsPerMillilitre(
                    i.prescription.concentration_ng_per_ml
                ))
            )
        });
        Banner {
            pump: format!("{} {}", id.model, id.serial),
            drug,
            role: self.report.role.clone(),
            unsaved: self.unsaved.clone(),
        }
    }

    /// Holds `action` for confirmation (replacing any plan not confirmed) and returns
    /// its one-time number.
    pub fn hold(&mut self, action: Action) -> anyhow::Result<String> {
        let nonce = random_hex()?;
        self.pending = Some(Pending {
            nonce: nonce.clone(),
            action,
        });
        Ok(nonce)
    }

    /// The plan held under `nonce`, taken (a second confirmation finds nothing).
    pub fn take(&mut self, nonce: &str) -> Option<Action> {
        match &self.pending {
            Some(p) if p.nonce == nonce => self.pending.take().map(|p| p.action),
            _ => None,
        }
    }

    /// Holds `action` again under its number (a confirmation that lacked something).
    pub fn put_back(&mut self, nonce: String, action: Action) {
        self.pending = Some(Pending { nonce, action });
    }

    /// Notes a change the pump confirmed, at the pump's clock as last read.
    pub fn record(&mut self, change: Change) {
        let at = self.time().map_or_else(utc_now, |t| t.rfc3339(t.now));
        self.report.record(at, change);
    }

    /// Saves the report in the session records (replacing its last save); a failure is
    /// kept in [`Desk::unsaved`] and shown on every page.
    pub async fn save(&mut self) {
        self.unsaved = self
            .records
            .save(&self.report)
            .await
            .err()
            .map(|e| format!("{e} (in {})", self.records.location()));
    }

    /// Ends the session: the report's end time and its last save, the session closed
    /// (a simulator saves its state).
    pub async fn close(mut self) -> anyhow::Result<()> {
        if self.report.ended_utc.is_none() {
            self.report.ended_utc = Some(utc_now());
        }
        self.save().await;
        if let Some(e) = &self.unsaved {
            eprintln!("warning: the session report was not saved: {e}");
        }
        self.records.close().await;
        self.session.close().await
    }
}
