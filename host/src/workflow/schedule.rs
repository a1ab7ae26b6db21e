//! A prescription write: compare the new prescription with the one in force ([`plan`]:
//! the side-by-side [`Comparison`] with projected alarm dates), let the clinician
//! confirm, then write it with the revision read and read it back ([`execute`]).
//!
//! A prescription with another drug or concentration cannot be written: the pump
//! derives every flow from the concentration, so it changes only with a refill
//! ([`super::refill`]), when the reservoir holds the new solution.

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::{PrescriptionRecord, ReservoirReport, Revision};
use thecal_protocol::Prescription;

use super::Current;
use crate::view::Comparison;
use crate::{Client, Error};

/// A proposed write, to be shown (its comparison) and confirmed, then [`execute`]d.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    /// The revision in force (the write is made only if it still is).
    pub expected: Revision,
    /// The prescription in force.
    pub old: Prescription,
    /// The prescription to write.
    pub new: Prescription,
    /// In force vs new, projected from the reservoir now.
    pub comparison: Comparison,
}

impl WritePlan {
    /// Whether it can be written: [`WritePlanError`] if the pump already holds it or it
    /// needs a refill.
    pub fn check(&self) -> Result<(), WritePlanError> {
        if self.comparison.is_unchanged() {
            Err(WritePlanError::Unchanged)
        } else if self.comparison.changes_drug() {
            Err(WritePlanError::NeedsRefill)
        } else {
            Ok(())
        }
    }
}

/// Why a plan is not to be written (nothing was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WritePlanError {
    /// The pump already holds this prescription.
    #[error("the pump already holds this prescription")]
    Unchanged,
    /// The new prescription has another drug or concentration: it goes in with a refill.
    #[error("the prescription changes the drug or concentration, which only a refill can do")]
    NeedsRefill,
}

/// Compares `new` with the prescription in force on the pump as `current` shows it.
pub fn plan(current: &Current, new: Prescription) -> WritePlan {
    let comparison = Comparison::new(&current.record, &new, Some(current.reservoir_state()));
    WritePlan {
        expected: current.record.revision,
        old: current.record.prescription.clone(),
        new,
        comparison,
    }
}

/// A written and verified prescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The prescription now in force (read back identical to the plan's).
    pub record: PrescriptionRecord,
    /// The reservoir under it (the new alarm dates).
    pub reservoir: ReservoirReport,
}

/// Why a write did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The plan is not to be written (nothing was sent).
    #[error(transparent)]
    Plan(WritePlanError),
    /// The new prescription was not confirmed in force (refused, uncertain, or the
    /// read-back differs).
    #[error("the new prescription was not confirmed in force")]
    NotConfirmed(#[source] Error),
    /// Written and verified, but the reservoir report after it could not be read.
    #[error(transparent)]
    Reservoir(Error),
}

/// Writes the prescription of `plan` if the revision it was made against is still in
/// force, reads it back and compares, then reads the reservoir under it.
pub async fn execute<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    plan: &WritePlan,
) -> Result<WriteOutcome, WriteError> {
    plan.check().map_err(WriteError::Plan)?;
    let record = client
        .write_and_verify(plan.new.draft().clone(), plan.expected)
        .await
        .map_err(WriteError::NotConfirmed)?;
    let reservoir = client.reservoir().await.map_err(WriteError::Reservoir)?;
    Ok(WriteOutcome { record, reservoir })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::refill::tests::{current, prescription, BACLOFEN, MORPHINE};

    #[test]
    fn a_write_is_checked_against_the_prescription_in_force() {
        let c = current(300_000);
        let same = plan(&c, prescription(BACLOFEN));
        assert_eq!(same.expected, Revision(4));
        assert_eq!(same.check(), Err(WritePlanError::Unchanged));
        let morphine = plan(&c, prescription(MORPHINE));
        assert_eq!(morphine.check(), Err(WritePlanError::NeedsRefill));
        assert!(morphine.comparison.changes_drug());
        let other = plan(
            &c,
            prescription(&BACLOFEN.replace("300 µg/day", "350 µg/day")),
        );
        assert_eq!(other.check(), Ok(()));
        assert_eq!(other.comparison.changed, ["daily_limit"]);
    }
}
