//! Firmware updates: the sans-IO A/B update state machine ([`Updater`]).
//!
//! The pump runs from the *active* slot. An update is written to the *update* slot (the
//! DFU partition of `embassy-boot`), verified, and marked; at a moment the pump chooses
//! ([`Updater::wants_restart`]: no bolus running) the platform restarts, and
//! `embassy-boot`'s bootloader swaps the slots page by page, power-fail safe. The new
//! firmware runs on *trial* until it confirms itself ([`Updater::confirm`], after its
//! self-test, within [`CONFIRM_WITHIN_MS`]); a restart before that and the bootloader
//! swaps the old image back.
//!
//! # Slot layout (both slots, [`Geometry`])
//!
//! The active slot is `N` erase pages; the update slot is `N + 1` (the bootloader's
//! swap needs one spare page). An image occupies pages `0 .. N - 1` of a slot (so at most
//! `(N - 1) * page` bytes); its signed header ([`thecal_protocol::update`], 128 bytes)
//! sits at the start of page `N - 1`, the slot's *trailer*. The swap moves the trailer
//! with the image, so the active slot always carries the header of the image in it, and
//! after a swap the previous image's header is at page `N` of the update slot.
//!
//! # Transfer
//!
//! * `begin(header)`: the header is checked at once — signature with the built-in key,
//!   board, security version not below the running image's, length fits — so a bad
//!   image is refused before a byte of it is sent. No flash operation. The same header
//!   again resumes the transfer in progress.
//! * `chunk(offset, bytes)`: chunks arrive in order. A chunk at the expected offset is
//!   written (erasing each page as the transfer reaches it), read back and compared, and
//!   hashed; any other offset writes nothing. Either way the answer is the next offset
//!   the pump expects, so a programmer whose link broke resumes from there. One chunk
//!   costs at most one page erase and [`MAX_CHUNK`] bytes of writes: the pump keeps
//!   dosing between requests.
//! * `finish()`: the whole slot is read back and hashed; it must match both the header's
//!   SHA-256 and the running hash of what was received. Then the header is written to the
//!   trailer and the slot marked for the swap (`embassy-boot`'s state partition).
//!
//! The transfer lives in RAM: a pump restart ends it (the programmer begins again); the
//! active slot and the therapy store are never written by an update.
//!
//! The panic rule holds: no operation panics, whatever is sent.

pub mod gate;
pub mod keys;
#[cfg(test)]
mod tests;

pub use keys::TRUSTED_KEY;

use embassy_boot::{AlignedBuffer, BlockingFirmwareState, FirmwareUpdaterError, State};
use embedded_storage::nor_flash::NorFlash;
use sha2::{Digest, Sha256};
use thecal_protocol::message::{Refusal, Request, Response};
use thecal_protocol::update::{
    self, Acceptance, Board, HeaderBytes, ImageError, ImageHeader, SlotInfo, SlotState,
    UpdateProgress, UpdateRefusal, UpdateReport, HEADER_LEN, MAX_CHUNK,
};

/// The running firmware must confirm itself within this long after a trial boot, ms; the
/// platform's watchdog restarts it otherwise (and the bootloader rolls back).
pub const CONFIRM_WITHIN_MS: u64 = 60_000;

/// Largest write or read size of a slot's flash this module supports, bytes.
const MAX_WORD: usize = 32;

/// The slots' geometry, from the update slot's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Erase page, bytes.
    pub page: u32,
    /// Pages of the active slot (`N`); the update slot has `N + 1`.
    pub active_pages: u32,
}

impl Geometry {
    /// The geometry of an update slot of `capacity` bytes with `page`-byte pages; `None`
    /// if it cannot hold the layout (fewer than 3 pages, or not whole pages).
    pub fn of(capacity: usize, page: usize) -> Option<Geometry> {
        let capacity = u32::try_from(capacity).ok()?;
        let page = u32::try_from(page)
            .ok()
            .filter(|p| *p as usize >= HEADER_LEN)?;
        let pages = capacity.checked_div(page)?;
        (pages >= 3 && capacity.is_multiple_of(page)).then_some(Geometry {
            page,
            active_pages: pages - 1,
        })
    }

    /// Bytes of the active slot (what the bootloader's ACTIVE partition must be).
    pub fn active_bytes(&self) -> u32 {
        self.active_pages.saturating_mul(self.page)
    }

    /// Largest image, bytes.
    pub fn image_capacity(&self) -> u32 {
        (self.active_pages - 1).saturating_mul(self.page)
    }

    /// Offset of a slot's trailer (the image header).
    pub fn trailer(&self) -> u32 {
        self.image_capacity()
    }

    /// Offset in the update slot of the previous image's trailer after a swap.
    pub fn previous_trailer(&self) -> u32 {
        self.active_bytes()
    }
}

/// Reads the header in a slot's trailer at `offset` (parsed, not verified: for display
/// and for the running image's version); `None` if there is none.
pub fn read_header<F: NorFlash>(flash: &mut F, offset: u32) -> Option<ImageHeader> {
    let mut bytes = [0u8; HEADER_LEN];
    flash.read(offset, &mut bytes).ok()?;
    ImageHeader::parse(&bytes).ok()
}

/// The header a platform assumes for an image in its active slot that has none (flashed
/// by a debug probe during development): `version` at security version 0, so any signed
/// image for `board` may follow it.
pub fn unsigned(board: Board, version: thecal_protocol::message::Version) -> ImageHeader {
    ImageHeader {
        key: update::KeyKind::Development,
        board,
        version,
        security: 0,
        length: 0,
        sha256: [0; 32],
    }
}

#[derive(Clone)]
struct Transfer {
    bytes: HeaderBytes,
    header: ImageHeader,
    next: u32,
    /// Pages below this offset are erased for this transfer.
    erased_to: u32,
    hash: Sha256,
}

#[derive(Clone)]
enum Phase {
    Idle,
    Receiving(Transfer),
    Pending(HeaderBytes, ImageHeader),
}

/// How the running firmware was booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Normally, or confirmed since a swap.
    Confirmed,
    /// Right after a swap, not confirmed yet.
    Trial,
    /// After the bootloader rolled an unconfirmed image back.
    RolledBack,
}

/// The update state machine over the update slot (`DFU`) and `embassy-boot`'s state
/// partition (`STATE`).
pub struct Updater<DFU, STATE> {
    dfu: DFU,
    state: STATE,
    geometry: Geometry,
    trusted: [u8; 32],
    board: Board,
    running: ImageHeader,
    boot: Boot,
    phase: Phase,
    scratch: [u8; MAX_CHUNK + MAX_WORD],
}

impl<DFU: NorFlash, STATE: NorFlash> Updater<DFU, STATE> {
    const WORDS_FIT: () = assert!(
        DFU::WRITE_SIZE <= MAX_WORD
            && DFU::READ_SIZE <= MAX_WORD
            && STATE::WRITE_SIZE <= MAX_WORD
            && MAX_CHUNK.is_multiple_of(DFU::WRITE_SIZE)
            && HEADER_LEN.is_multiple_of(DFU::WRITE_SIZE)
            && HEADER_LEN.is_multiple_of(DFU::READ_SIZE),
        "the updater needs flash words of at most 32 bytes dividing 128"
    );

    /// The updater of a pump running `running` (the header in its active slot's trailer)
    /// on `board`, trusting images signed by `trusted`. Call after the bootloader ran.
    /// `None` if `dfu` cannot hold the slot layout ([`Geometry::of`]) or the state
    /// partition cannot be read.
    pub fn new(
        dfu: DFU,
        mut state: STATE,
        trusted: [u8; 32],
        board: Board,
        running: ImageHeader,
    ) -> Option<Self> {
        let () = Self::WORDS_FIT;
        let geometry = Geometry::of(dfu.capacity(), DFU::ERASE_SIZE)?;
        let boot = match read_state(&mut state).ok()? {
            State::Swap => Boot::Trial,
            State::Revert => Boot::RolledBack,
            State::Boot | State::DfuDetach => Boot::Confirmed,
        };
        Some(Self {
            dfu,
            state,
            geometry,
            trusted,
            board,
            running,
            boot,
            phase: Phase::Idle,
            scratch: [0; MAX_CHUNK + MAX_WORD],
        })
    }

    /// The slots' geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// How the running firmware was booted ([`Boot::Trial`] until [`Updater::confirm`]).
    pub fn boot(&self) -> Boot {
        self.boot
    }

    /// The running image's header.
    pub fn running(&self) -> &ImageHeader {
        &self.running
    }

    /// The flash of the update slot and the state partition (tests, the simulator).
    pub fn into_parts(self) -> (DFU, STATE) {
        (self.dfu, self.state)
    }

    fn acceptance(&self) -> Acceptance {
        Acceptance {
            board: self.board,
            min_security: self.running.security,
            capacity: self.geometry.image_capacity(),
        }
    }

    /// Starts (or, with the same header, resumes) a transfer.
    pub fn begin(&mut self, bytes: &HeaderBytes) -> Result<UpdateProgress, UpdateRefusal> {
        if self.boot == Boot::Trial {
            return Err(UpdateRefusal::AwaitingConfirmation);
        }
        match &self.phase {
            Phase::Pending(pending, header) if pending == bytes => {
                return Ok(progress(header.length, header.length, true));
            }
            Phase::Pending(..) => return Err(UpdateRefusal::SwapPending),
            Phase::Receiving(t) if &t.bytes == bytes => {
                return Ok(progress(t.next, t.header.length, false));
            }
            _ => {}
        }
        let header = update::verify(bytes, &self.trusted).map_err(UpdateRefusal::Image)?;
        self.acceptance()
            .check(&header)
            .map_err(UpdateRefusal::Image)?;
        self.phase = Phase::Receiving(Transfer {
            bytes: *bytes,
            header,
            next: 0,
            erased_to: 0,
            hash: Sha256::new(),
        });
        Ok(progress(0, header.length, false))
    }

    /// Writes the chunk at `offset` if it is the one expected; answers the next offset
    /// expected either way.
    pub fn chunk(&mut self, offset: u32, data: &[u8]) -> Result<UpdateProgress, UpdateRefusal> {
        let page = self.geometry.page;
        let Phase::Receiving(t) = &mut self.phase else {
            return match &self.phase {
                Phase::Pending(_, h) => Ok(progress(h.length, h.length, true)),
                _ => Err(UpdateRefusal::NotStarted),
            };
        };
        let length = t.header.length;
        if offset != t.next {
            return Ok(progress(t.next, length, false));
        }
        let len = u32::try_from(data.len()).map_err(|_| UpdateRefusal::BadChunk)?;
        let end = offset.checked_add(len).filter(|e| *e <= length);
        let word = DFU::WRITE_SIZE;
        let Some(end) = end else {
            return Err(UpdateRefusal::BadChunk);
        };
        if data.is_empty()
            || data.len() > MAX_CHUNK
            || (!data.len().is_multiple_of(word) && end != length)
        {
            return Err(UpdateRefusal::BadChunk);
        }
        let written = write_chunk(&mut self.dfu, t, page, offset, data, &mut self.scratch);
        if written.is_err() {
            self.phase = Phase::Idle;
            return Err(UpdateRefusal::Flash);
        }
        t.hash.update(data);
        t.next = end;
        Ok(progress(end, length, false))
    }

    /// Verifies the received image and marks it for the swap.
    pub fn finish(&mut self) -> Result<UpdateProgress, UpdateRefusal> {
        let t = match &self.phase {
            Phase::Pending(_, h) => return Ok(progress(h.length, h.length, true)),
            Phase::Idle => return Err(UpdateRefusal::NotStarted),
            Phase::Receiving(t) => t.clone(),
        };
        let length = t.header.length;
        if t.next != length {
            return Err(UpdateRefusal::Incomplete {
                next: t.next,
                length,
            });
        }
        let received: [u8; 32] = t.hash.finalize().into();
        let stored = self.hash_slot(length);
        match stored {
            Err(()) => {
                self.phase = Phase::Idle;
                return Err(UpdateRefusal::Flash);
            }
            Ok(h) if h != t.header.sha256 || received != t.header.sha256 => {
                self.phase = Phase::Idle;
                return Err(UpdateRefusal::Image(ImageError::HashMismatch));
            }
            Ok(_) => {}
        }
        if self.write_trailer(&t.bytes).is_err() || self.mark_updated().is_err() {
            self.phase = Phase::Idle;
            return Err(UpdateRefusal::Flash);
        }
        self.phase = Phase::Pending(t.bytes, t.header);
        Ok(progress(length, length, true))
    }

    /// Whether the platform should restart now to let the bootloader swap in a verified
    /// image: one is pending and no bolus is running (`bolus_running`, from the pump).
    pub fn wants_restart(&self, bolus_running: bool) -> bool {
        matches!(self.phase, Phase::Pending(..)) && !bolus_running
    }

    /// Confirms the running firmware after its self-test: the bootloader keeps it. A
    /// no-op unless on trial.
    pub fn confirm(&mut self) -> Result<(), UpdateRefusal> {
        if self.boot != Boot::Trial {
            return Ok(());
        }
        let mut aligned = AlignedBuffer([0u8; MAX_WORD]);
        let buf = aligned
            .0
            .get_mut(..STATE::WRITE_SIZE)
            .ok_or(UpdateRefusal::Flash)?;
        BlockingFirmwareState::new(&mut self.state, buf)
            .mark_booted()
            .map_err(|_| UpdateRefusal::Flash)?;
        self.boot = Boot::Confirmed;
        Ok(())
    }

    /// Both slots.
    pub fn report(&mut self) -> UpdateReport {
        let active = SlotInfo {
            version: self.running.version,
            security: self.running.security,
            state: match self.boot {
                Boot::Trial => SlotState::Trial,
                _ => SlotState::Confirmed,
            },
        };
        let info = |h: &ImageHeader, state| SlotInfo {
            version: h.version,
            security: h.security,
            state,
        };
        let update = match &self.phase {
            Phase::Receiving(t) => Some(info(
                &t.header,
                SlotState::Receiving {
                    next: t.next,
                    length: t.header.length,
                },
            )),
            Phase::Pending(_, h) => Some(info(h, SlotState::Pending)),
            Phase::Idle if self.boot == Boot::RolledBack => {
                read_header(&mut self.dfu, self.geometry.trailer())
                    .map(|h| info(&h, SlotState::RolledBack))
            }
            Phase::Idle => read_header(&mut self.dfu, self.geometry.previous_trailer())
                .map(|h| info(&h, SlotState::Previous)),
        };
        UpdateReport {
            board: self.board,
            active,
            update,
        }
    }

    fn hash_slot(&mut self, length: u32) -> Result<[u8; 32], ()> {
        hash_prefix(&mut self.dfu, length, &mut self.scratch)
    }

    fn write_trailer(&mut self, bytes: &HeaderBytes) -> Result<(), ()> {
        let at = self.geometry.trailer();
        self.dfu
            .erase(at, at.saturating_add(self.geometry.page))
            .map_err(|_| ())?;
        self.dfu.write(at, bytes).map_err(|_| ())?;
        let back = self.scratch.get_mut(..HEADER_LEN).ok_or(())?;
        self.dfu.read(at, back).map_err(|_| ())?;
        if back != bytes.as_slice() {
            return Err(());
        }
        Ok(())
    }

    fn mark_updated(&mut self) -> Result<(), FirmwareUpdaterError> {
        let mut aligned = AlignedBuffer([0u8; MAX_WORD]);
        let buf = aligned
            .0
            .get_mut(..STATE::WRITE_SIZE)
            .ok_or(FirmwareUpdaterError::BadState)?;
        BlockingFirmwareState::new(&mut self.state, buf).mark_updated()
    }
}

/// SHA-256 of the first `length` bytes of `flash`, read through `scratch` (its length a
/// multiple of `F::READ_SIZE`; a last partial read padded).
pub(crate) fn hash_prefix<F: NorFlash>(
    flash: &mut F,
    length: u32,
    scratch: &mut [u8],
) -> Result<[u8; 32], ()> {
    let step = scratch.len() - scratch.len() % F::READ_SIZE.max(1);
    if step == 0 {
        return Err(());
    }
    let mut hash = Sha256::new();
    let mut at = 0u32;
    while at < length {
        let n = ((length - at) as usize).min(step);
        let padded = n.next_multiple_of(F::READ_SIZE);
        let buf = scratch.get_mut(..padded).ok_or(())?;
        flash.read(at, buf).map_err(|_| ())?;
        hash.update(buf.get(..n).ok_or(())?);
        at = at.saturating_add(n as u32);
    }
    Ok(hash.finalize().into())
}

fn progress(next: u32, length: u32, pending: bool) -> UpdateProgress {
    UpdateProgress {
        next,
        length,
        pending,
    }
}

fn read_state<S: NorFlash>(state: &mut S) -> Result<State, FirmwareUpdaterError> {
    let mut aligned = AlignedBuffer([0u8; MAX_WORD]);
    let buf = aligned
        .0
        .get_mut(..S::WRITE_SIZE)
        .ok_or(FirmwareUpdaterError::BadState)?;
    BlockingFirmwareState::new(state, buf).get_state()
}

/// Erases the pages the chunk reaches first, writes it (a last partial word padded with
/// `0xFF`), reads it back and compares.
fn write_chunk<F: NorFlash>(
    dfu: &mut F,
    t: &mut Transfer,
    page: u32,
    offset: u32,
    data: &[u8],
    scratch: &mut [u8],
) -> Result<(), ()> {
    let len = data.len();
    let padded = len.next_multiple_of(F::WRITE_SIZE.max(F::READ_SIZE));
    let end = offset.saturating_add(padded as u32);
    while t.erased_to < end {
        let to = t.erased_to.saturating_add(page);
        dfu.erase(t.erased_to, to).map_err(|_| ())?;
        t.erased_to = to;
    }
    let buf = scratch.get_mut(..padded).ok_or(())?;
    buf.fill(0xFF);
    buf.get_mut(..len).ok_or(())?.copy_from_slice(data);
    dfu.write(offset, buf).map_err(|_| ())?;
    buf.fill(0);
    dfu.read(offset, buf).map_err(|_| ())?;
    if buf.get(..len) != Some(data) {
        return Err(());
    }
    Ok(())
}

/// What the request server asks of the platform's firmware updater: the answer to an
/// update request (`UpdateBegin`, `UpdateChunk`, `UpdateFinish`, `UpdateStatus`, after
/// the server's role check). Implemented by [`Updater`] and by [`NoUpdates`] (a pump
/// without an update slot).
pub trait Firmware {
    /// Serves one update request; any other request is `Refused(Unsupported)`.
    fn serve(&mut self, request: &Request) -> Response;
}

/// A pump without an update slot: every update request is refused
/// [`UpdateRefusal::NoUpdateSlot`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpdates;

impl Firmware for NoUpdates {
    fn serve(&mut self, request: &Request) -> Response {
        match request {
            Request::UpdateBegin { .. }
            | Request::UpdateChunk { .. }
            | Request::UpdateFinish
            | Request::UpdateStatus => {
                Response::Refused(Refusal::Update(UpdateRefusal::NoUpdateSlot))
            }
            _ => Response::Refused(Refusal::Unsupported),
        }
    }
}

impl<DFU: NorFlash, STATE: NorFlash> Firmware for Updater<DFU, STATE> {
    fn serve(&mut self, request: &Request) -> Response {
        let answer = match request {
            Request::UpdateBegin { header } => {
                let Ok(bytes) = <&HeaderBytes>::try_from(header.as_slice()) else {
                    return Response::Refused(Refusal::Update(UpdateRefusal::Image(
                        ImageError::NotAnImage,
                    )));
                };
                self.begin(bytes).map(Response::UpdateStarted)
            }
            Request::UpdateChunk { offset, data } => {
                self.chunk(*offset, data).map(Response::ChunkWritten)
            }
            Request::UpdateFinish => self.finish().map(Response::UpdateVerified),
            Request::UpdateStatus => Ok(Response::UpdateStatus(self.report())),
            _ => return Response::Refused(Refusal::Unsupported),
        };
        answer.unwrap_or_else(|why| Response::Refused(Refusal::Update(why)))
    }
}
