//! What a platform with an A/B updater asks of its server at boot and in its serving
//! loop: the self-test of an image on trial, and the moment to restart into a verified
//! one. The same steps on every board (nRF52840, QEMU).

use embedded_storage::nor_flash::NorFlash;
use thecal_protocol::message::AlarmKind;
use thecal_protocol::time::Timestamp;

use super::Server;
use crate::store::Storage;
use crate::therapy::motor::Motor;
use crate::update::{Boot, Updater};

/// The outcome of [`Server::self_test`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// The running image is not on trial: nothing to test.
    NotOnTrial,
    /// The image on trial passed and is confirmed: the bootloader keeps it.
    Confirmed,
    /// The image on trial failed (the pump did not come up from its store): restart
    /// without confirming, and the bootloader swaps the previous image back.
    Failed,
    /// It passed, but the confirmation could not be written: the next restart rolls
    /// back.
    NotConfirmed,
}

impl<S: Storage, M: Motor, DFU: NorFlash, STATE: NorFlash> Server<S, M, Updater<DFU, STATE>> {
    /// The self-test of an image on trial after a swap, at device time `now`: the pump
    /// booted from its store (no storage fault) and ticks. On success the image confirms
    /// itself.
    pub fn self_test(&mut self, now: Timestamp) -> SelfTest {
        if self.firmware.boot() != Boot::Trial {
            return SelfTest::NotOnTrial;
        }
        self.pump.tick(now);
        if self.pump.alarm_active(AlarmKind::StorageFault) {
            return SelfTest::Failed;
        }
        match self.firmware.confirm() {
            Ok(()) => SelfTest::Confirmed,
            Err(_) => SelfTest::NotConfirmed,
        }
    }

    /// Whether the platform should restart now to let the bootloader swap in a verified
    /// image: one is pending and no bolus is running (checked in every turn of the
    /// serving loop: a bolus may end long after the programmer left). When it answers
    /// `true` it has ticked the pump and saved its snapshot at `now`, so the restart
    /// loses no delivery and device time resumes after `now`
    /// ([`crate::store::resume_time`]).
    pub fn restart_due(&mut self, now: Timestamp) -> bool {
        // Pending at all? (Cheap: the serving loop asks in every turn.)
        if !self.firmware.wants_restart(false) {
            return false;
        }
        // A bolus that ended by `now` must not hold the swap back.
        self.pump.tick(now);
        if !self.firmware.wants_restart(self.pump.bolus_running()) {
            return false;
        }
        self.pump.save_snapshot(now);
        true
    }
}
