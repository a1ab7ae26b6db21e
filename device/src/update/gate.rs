//! The bootloader's own check of a pending image: the trusted public key is built into
//! the bootloader too, not only into the application that marked the image.
//!
//! [`check_pending`] runs before `embassy-boot`'s `prepare_boot`. When a swap is marked
//! and has not started (embassy-boot's state partition: the swap magic in word 0, word 1
//! erased — progress valid — and word 2 erased — no page moved yet), it verifies the
//! image in the update slot as the updater did before it marked it: the signed header in
//! the slot's trailer (signature with the built-in key, board, security version not
//! below the running image's, length that fits) and the SHA-256 of the slot read back.
//! If any of that fails it cancels the swap (the state partition marked booted), and the
//! image that runs boots as it is. A swap that has started is never stopped here: the
//! active slot is then half moved, and only finishing (or reverting) it leaves a whole
//! image. A revert (a trial image that did not confirm itself) is the previous image
//! coming back and is not checked either.
//!
//! So an image reaches the active slot only if both the application and the bootloader
//! found it signed by the key they hold, even if the application's check had a flaw or
//! the update slot was changed after it was marked.

use embassy_boot::{AlignedBuffer, BlockingFirmwareState, State};
use embedded_storage::nor_flash::NorFlash;
use thecal_protocol::update::{
    self, Acceptance, Board, HeaderBytes, ImageError, ImageHeader, HEADER_LEN,
};

use super::{hash_prefix, Geometry, MAX_WORD};

/// What [`check_pending`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No swap is marked: boot as usual.
    Idle,
    /// A swap is marked and the image passed: let the bootloader install it.
    Install(ImageHeader),
    /// A swap (or a revert) has started or is due: let the bootloader go on.
    Underway,
    /// A swap was marked for an image that fails the check: cancelled, the running image
    /// boots as it is.
    Refused(ImageError),
    /// The flash could not be read or the cancellation could not be written; the
    /// bootloader goes on as embassy-boot decides.
    Flash,
}

/// Checks a pending image for `board` before the bootloader swaps it in (see the module
/// docs). `min_security` is the security version of the image in the active slot (0 if
/// its header cannot be read), `scratch` a buffer for reading the slot (a multiple of
/// `DFU::READ_SIZE`).
pub fn check_pending<DFU: NorFlash, STATE: NorFlash>(
    dfu: &mut DFU,
    state: &mut STATE,
    trusted: &[u8; 32],
    board: Board,
    min_security: u32,
    scratch: &mut [u8],
) -> Gate {
    let mut aligned = AlignedBuffer([0u8; MAX_WORD]);
    let Some(word) = aligned.0.get_mut(..STATE::WRITE_SIZE) else {
        return Gate::Flash;
    };
    match BlockingFirmwareState::new(&mut *state, &mut *word).get_state() {
        Ok(State::Swap) => {}
        Ok(_) => return Gate::Idle,
        Err(_) => return Gate::Flash,
    }
    let erased = |state: &mut STATE, word: &mut [u8], index: usize| {
        let at = u32::try_from(index * STATE::WRITE_SIZE).ok();
        at.is_some_and(|at| state.read(at, word).is_ok() && word.iter().all(|b| *b == 0xFF))
    };
    if !(erased(state, word, 1) && erased(state, word, 2)) {
        return Gate::Underway;
    }
    let Some(geometry) = Geometry::of(dfu.capacity(), DFU::ERASE_SIZE) else {
        return Gate::Flash;
    };
    let acceptance = Acceptance {
        board,
        min_security,
        capacity: geometry.image_capacity(),
    };
    let verdict = verify_slot(dfu, geometry, trusted, &acceptance, scratch);
    match verdict {
        Ok(header) => Gate::Install(header),
        Err(Some(why)) => match BlockingFirmwareState::new(state, word).mark_booted() {
            Ok(()) => Gate::Refused(why),
            Err(_) => Gate::Flash,
        },
        Err(None) => Gate::Flash,
    }
}

/// The update slot's image checked as the updater checks it; `Err(None)`: unreadable.
fn verify_slot<DFU: NorFlash>(
    dfu: &mut DFU,
    geometry: Geometry,
    trusted: &[u8; 32],
    acceptance: &Acceptance,
    scratch: &mut [u8],
) -> Result<ImageHeader, Option<ImageError>> {
    let mut bytes: HeaderBytes = [0; HEADER_LEN];
    dfu.read(geometry.trailer(), &mut bytes).map_err(|_| None)?;
    let header = update::verify(&bytes, trusted).map_err(Some)?;
    acceptance.check(&header).map_err(Some)?;
    let hash = hash_prefix(dfu, header.length, scratch).map_err(|()| None)?;
    if hash != header.sha256 {
        return Err(Some(ImageError::HashMismatch));
    }
    Ok(header)
}
