//! A firmware update: read a signed package, compare its version with the pump's
//! ([`plan`]), let the clinician confirm, send it in chunks and have the pump verify and
//! mark it ([`execute`]).
//!
//! A package (what the `thecal-sign` tool writes) is the signed 128-byte header of
//! [`thecal_protocol::update`] followed by the image. The programmer checks that the
//! image matches the header's length and hash before it sends anything; the pump checks
//! the signature, board and security version at `UpdateBegin`, before any chunk.
//!
//! **Resumable.** The pump keeps a transfer while it runs (not across its own restart):
//! `UpdateBegin` with the same header answers the next offset it expects, and every
//! chunk's answer says it again. So a programmer whose link broke runs the same update
//! again and it continues from the last chunk the pump wrote and read back.
//!
//! The pump installs the image at a moment it chooses (no bolus running): it restarts,
//! its bootloader swaps the slots, the new firmware confirms itself after its self-test
//! or the bootloader returns to the old one. Therapy (prescription, reservoir, 24 h
//! window, log) lives in a separate flash region the update never touches.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::endpoint::{UpdateBegin, UpdateChunk, UpdateFinish, UpdateStatus};
use thecal_protocol::update::{
    self, HeaderBytes, ImageError, ImageHeader, UpdateProgress, UpdateReport, HEADER_LEN, MAX_CHUNK,
};

use crate::{Client, Error};

/// A package read from a file: header and image, consistent with each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The signed header as sent.
    pub header_bytes: HeaderBytes,
    /// Its fields (the signature is the pump's to check).
    pub header: ImageHeader,
    /// The image.
    pub image: Vec<u8>,
}

/// Why a package file is not one this programmer sends (nothing was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Shorter than a header, or the header is not a thecal firmware header.
    #[error("not a thecal firmware package (no valid 128-byte image header at its start)")]
    NotAPackage,
    /// The image after the header is not as long as the header says.
    #[error(
        "the package's image is {found} bytes, its header says {expected}: truncated or padded"
    )]
    Length {
        /// Bytes after the header.
        found: usize,
        /// The header's length.
        expected: u32,
    },
    /// The image does not hash to the header's SHA-256.
    #[error("the package's image does not match its signed SHA-256: corrupted")]
    Hash,
}

impl Package {
    /// Splits and checks `bytes` (a package file's contents).
    pub fn parse(bytes: &[u8]) -> Result<Package, PackageError> {
        let (head, image) = bytes
            .split_at_checked(HEADER_LEN)
            .ok_or(PackageError::NotAPackage)?;
        let header_bytes: HeaderBytes = head.try_into().map_err(|_| PackageError::NotAPackage)?;
        let header = ImageHeader::parse(&header_bytes).map_err(|_| PackageError::NotAPackage)?;
        if image.len() != header.length as usize {
            return Err(PackageError::Length {
                found: image.len(),
                expected: header.length,
            });
        }
        if update::sha256(image) != header.sha256 {
            return Err(PackageError::Hash);
        }
        Ok(Package {
            header_bytes,
            header,
            image: image.to_vec(),
        })
    }

    /// The package file for `header` (signed) and `image`.
    pub fn to_bytes(header: &HeaderBytes, image: &[u8]) -> Vec<u8> {
        let mut out = header.to_vec();
        out.extend_from_slice(image);
        out
    }
}

/// An update to be shown (old and new versions) and confirmed, then [`execute`]d.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePlan {
    /// Both slots as the pump reports them now.
    pub before: UpdateReport,
    /// The package.
    pub package: Package,
}

impl UpdatePlan {
    /// Whether the pump would refuse it for a reason the programmer can see already
    /// (board, security version): the same check the pump makes.
    pub fn check(&self) -> Result<(), ImageError> {
        if self.package.header.board != self.before.board {
            return Err(ImageError::WrongBoard {
                expected: self.before.board,
                found: self.package.header.board,
            });
        }
        if self.package.header.security < self.before.active.security {
            return Err(ImageError::Downgrade {
                minimum: self.before.active.security,
                found: self.package.header.security,
            });
        }
        Ok(())
    }
}

/// Reads both slots and pairs them with `package`.
pub async fn plan<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    package: Package,
) -> Result<UpdatePlan, Error> {
    let before = client.call(UpdateStatus).await?;
    Ok(UpdatePlan { before, package })
}

/// Chunks in flight at once (pipelined: the line stays busy; chunks past a lost one
/// are not written and are sent again from the offset the pump names).
pub const WINDOW: usize = 4;
/// Chunks per pipelined batch (between checks of where the pump stands).
const BATCH: usize = 32;

/// Why [`execute`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// A request failed or was refused (the pump's refusal says why; a transfer already
    /// started stays where it is, and running the update again resumes it).
    #[error(transparent)]
    Client(#[from] Error),
    /// The pump accepted no chunk of a whole batch, twice: nothing more is sent.
    #[error(
        "the pump takes no more of this image (it expects offset {next}); run the update again"
    )]
    Stalled {
        /// The offset the pump last named.
        next: u32,
    },
}

/// What [`execute`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Where the transfer started (0, or the offset a previous attempt reached).
    pub resumed_at: u32,
    /// The pump's answer to `UpdateFinish`: verified and pending the swap.
    pub finished: UpdateProgress,
}

/// Sends the plan's package (resuming a transfer the pump holds) and has the pump
/// verify and mark it; `progress(next, length)` after every chunk answered.
pub async fn execute<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    plan: &UpdatePlan,
    mut progress: impl FnMut(u32, u32),
) -> Result<UpdateOutcome, UpdateError> {
    let p = &plan.package;
    let header = heapless::Vec::from_slice(&p.header_bytes).unwrap_or_default();
    let started = client.call(UpdateBegin { header }).await?;
    let length = started.length;
    let mut next = started.next;
    progress(next, length);
    while next < length {
        let before = next;
        let mut queue = VecDeque::new();
        let mut at = next as usize;
        while at < p.image.len() && queue.len() < BATCH {
            let end = (at + MAX_CHUNK).min(p.image.len());
            let data =
                heapless::Vec::from_slice(p.image.get(at..end).unwrap_or(&[])).unwrap_or_default();
            queue.push_back((
                at,
                UpdateChunk {
                    offset: at as u32,
                    data,
                },
            ));
            at = end;
        }
        client
            .pipelined(WINDOW, queue, |_, answer, _| {
                next = answer.next;
                progress(answer.next, length);
                Ok(())
            })
            .await?;
        if next <= before {
            // Not one chunk of the batch was taken: ask where the pump stands (it may
            // have restarted and lost the transfer) and continue from there once.
            let header = heapless::Vec::from_slice(&p.header_bytes).unwrap_or_default();
            let again = client.call(UpdateBegin { header }).await?;
            if again.next <= before {
                return Err(UpdateError::Stalled { next: again.next });
            }
            next = again.next;
        }
    }
    let finished = client.call(UpdateFinish).await?;
    Ok(UpdateOutcome {
        resumed_at: started.next,
        finished,
    })
}

/// Both slots.
pub async fn slots<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
) -> Result<UpdateReport, Error> {
    client.call(UpdateStatus).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_protocol::message::Version;
    use thecal_protocol::update::{Board, KeyKind, DEV_SECRET_KEY};

    fn package(image: &[u8]) -> Vec<u8> {
        let h = ImageHeader {
            key: KeyKind::Development,
            board: Board::SIM,
            version: Version {
                major: 1,
                minor: 2,
                patch: 3,
            },
            security: 1,
            length: image.len() as u32,
            sha256: update::sha256(image),
        };
        Package::to_bytes(&update::sign(&h, &DEV_SECRET_KEY), image)
    }

    #[test]
    fn packages_are_checked_before_anything_is_sent() {
        let good = package(b"firmware");
        let p = Package::parse(&good).unwrap();
        assert_eq!(p.image, b"firmware");
        assert_eq!(p.header.version.minor, 2);
        assert_eq!(
            Package::parse(&good[..good.len() - 1]),
            Err(PackageError::Length {
                found: 7,
                expected: 8
            })
        );
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(Package::parse(&bad), Err(PackageError::Hash));
        assert_eq!(Package::parse(&good[..100]), Err(PackageError::NotAPackage));
        assert_eq!(Package::parse(b"hello"), Err(PackageError::NotAPackage));
    }
}
