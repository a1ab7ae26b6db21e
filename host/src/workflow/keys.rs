//! Key rotation and re-provisioning, and settling an interrupted one.
//!
//! A new key is always on disk before the pump can hold it: a rotation writes
//! `SERIAL.ROLE.key.next` ([`KeyFile::next_path`]), sends the key inside the sealed
//! session, and promotes the file over the old one once the pump confirms. An outcome
//! that is uncertain keeps both files; the next connection settles which one is in force
//! ([`authenticate_settling`]), once the handshake has proved which key the pump holds.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::{Identity, Role};

use super::provision::{pump_public, PumpKeyError};
use crate::client::Agreement;
use crate::keys::{random_secret, KeyFile, KeyFileError};
use crate::{Client, Error, RoleKey};

/// Why the key file of a role is not found in a directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FindKeyError {
    /// The directory could not be read.
    #[error("cannot read the key directory {}", .dir.display())]
    Read {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No key file of the role for this pump.
    #[error("{} holds no {} key file of pump {serial} ({} expected)",
        .dir.display(), .role.name(), .expected.display())]
    Missing {
        /// The directory.
        dir: PathBuf,
        /// The role.
        role: Role,
        /// The pump.
        serial: String,
        /// The file name expected (`SERIAL.ROLE.key`).
        expected: PathBuf,
    },
    /// Several key files of the role name this pump.
    #[error("{} holds several {} key files of pump {serial}: keep one", .dir.display(), .role.name())]
    Several {
        /// The directory.
        dir: PathBuf,
        /// The role.
        role: Role,
        /// The pump.
        serial: String,
    },
}

/// The key file of `role` for pump `serial` in `dir`: `SERIAL.ROLE.key`, else the one
/// `*.ROLE.key` file that names this pump.
pub fn find_key(dir: &Path, serial: &str, role: Role) -> Result<PathBuf, FindKeyError> {
    let named = dir.join(KeyFile::file_name(serial, role));
    if named.exists() {
        return Ok(named);
    }
    let suffix = format!(".{}.key", role.name());
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| FindKeyError::Read {
            dir: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(&suffix))
        .filter(|p| KeyFile::load(p).is_ok_and(|f| f.pump == serial))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(FindKeyError::Missing {
            dir: dir.to_path_buf(),
            role,
            serial: serial.to_string(),
            expected: named,
        }),
        _ => Err(FindKeyError::Several {
            dir: dir.to_path_buf(),
            role,
            serial: serial.to_string(),
        }),
    }
}

/// Opens the session with the key file at `path`, or with its pending rotation (its
/// `.next` file) when that holds the epoch the pump announces (`epoch`, from a plain
/// `Identify`): a rotation interrupted after the pump took the new key. The files are
/// settled only once the handshake has proved which key the pump holds (the key's epoch
/// is part of the handshake transcript, so a forged `Identify` cannot make a file be
/// promoted or removed): the `.next` file replaces the old one when it opened the
/// session, and is removed when the old one did.
pub async fn authenticate_settling<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    path: &Path,
    serial: &str,
    epoch: u32,
) -> Result<(), Error> {
    if epoch == 0 {
        // No key of any epoch: the pump holds no device secret yet.
        return Err(Error::NotProvisioned);
    }
    let current = KeyFile::load(path)?;
    let next_path = KeyFile::next_path(path);
    let pending = match next_path.exists() {
        true => Some(KeyFile::load(&next_path)?),
        false => None,
    };
    let use_pending = pending.as_ref().is_some_and(|p| p.epoch == epoch);
    let chosen = match (&pending, use_pending) {
        (Some(p), true) => p,
        _ => &current,
    };
    chosen.check_pump(serial)?;
    chosen.check_epoch(epoch)?;
    client.authenticate(chosen.role_key(), serial).await?;
    if use_pending {
        KeyFile::promote(path)?;
    } else if pending.is_some() {
        // The pump holds the old key: the rotation never reached it.
        let _ = std::fs::remove_file(&next_path);
    }
    Ok(())
}

/// Why a session for a key operation could not be opened. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The role's key file is not in the directory (or not once).
    #[error(transparent)]
    KeyDir(FindKeyError),
    /// The key file cannot be used.
    #[error(transparent)]
    KeyFile(KeyFileError),
    /// The pump is not provisioned, refused the key, or did not answer.
    #[error(transparent)]
    Pump(Error),
}

/// Opens the session of `role` with its key file in `dir` (an interrupted rotation of it
/// is settled: [`authenticate_settling`]), then asks the pump again inside the session:
/// the key epochs and static key of that sealed `Identify` are the pump's own, which
/// `plain` (read before any session) is not (a man in the middle can rewrite it). Every
/// decision about files and keys is made on that answer. A pump without keys (epoch 0)
/// is not provisioned: said so, and no file is touched.
pub async fn open_as<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    plain: &Identity,
    dir: &Path,
    role: Role,
) -> Result<Identity, OpenError> {
    let serial = plain.serial.as_str();
    let epoch = plain.key_epochs.of(role);
    if epoch == 0 {
        return Err(OpenError::Pump(Error::NotProvisioned));
    }
    let path = find_key(dir, serial, role).map_err(OpenError::KeyDir)?;
    KeyFile::load(&path)
        .and_then(|f| f.check_role(role))
        .map_err(OpenError::KeyFile)?;
    authenticate_settling(client, &path, serial, epoch)
        .await
        .map_err(OpenError::Pump)?;
    client.identify().await.map_err(OpenError::Pump)
}

/// The key file of `role` in `dir`, an interrupted rotation of it settled against the
/// role's `epoch` in force (from inside a session: [`open_as`]), checked to be for this
/// pump and that epoch.
fn current_key(dir: &Path, serial: &str, role: Role, epoch: u32) -> Result<KeyFile, OpenError> {
    let path = find_key(dir, serial, role).map_err(OpenError::KeyDir)?;
    let file = KeyFile::settle(&path, epoch).map_err(OpenError::KeyFile)?;
    file.check_role(role)
        .and_then(|()| file.check_pump(serial))
        .and_then(|()| file.check_epoch(epoch))
        .map_err(OpenError::KeyFile)?;
    Ok(file)
}

/// The role whose session may rotate `role`'s key: the clinician for the patient and
/// clinician keys, service for the service key; the emergency key cannot be rotated.
pub fn rotation_opener(role: Role) -> Result<Role, RotateError> {
    match role {
        Role::Patient | Role::Clinician => Ok(Role::Clinician),
        Role::Service => Ok(Role::Service),
        Role::Emergency => Err(RotateError::Emergency),
    }
}

/// A rotated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The pump.
    pub serial: String,
    /// The role.
    pub role: Role,
    /// Its new epoch.
    pub epoch: u32,
    /// The key file, now holding the new key (mode 0600).
    pub key_file: PathBuf,
}

/// Why a key was not rotated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotateError {
    /// The emergency key is public: it cannot be rotated. Nothing was sent.
    #[error("the emergency key is public (derived from the serial): it cannot be rotated")]
    Emergency,
    /// No session, or no usable key file; nothing changed.
    #[error(transparent)]
    Open(OpenError),
    /// A key file could not be written or promoted.
    #[error(transparent)]
    KeyFile(KeyFileError),
    /// No random bytes for the new key; nothing was sent.
    #[error(transparent)]
    Random(Error),
    /// The pump certainly did not take the new key; its file was removed.
    #[error("the key was not rotated")]
    NotRotated(#[source] Error),
    /// The pump may or may not hold the new key: both files are kept, and the next
    /// connection settles which one is in force.
    #[error("the pump may or may not hold the new {} key: both {} and {} are kept",
        .role.name(), .current.display(), .next.display())]
    Uncertain {
        /// The role.
        role: Role,
        /// The key file of the old key.
        current: PathBuf,
        /// The file of the new key.
        next: PathBuf,
        /// Why.
        #[source]
        source: Error,
    },
}

/// Rotates `role`'s key on the pump that answered `plain`, with the key files in `dir`:
/// a session of [`rotation_opener`]'s role, a fresh random key of the next epoch
/// written to the `.next` file, sent, and promoted once the pump confirms.
pub async fn rotate<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    plain: &Identity,
    dir: &Path,
    role: Role,
) -> Result<Rotated, RotateError> {
    let opener = rotation_opener(role)?;
    // The session first: a rotation that cannot open one leaves nothing behind.
    let inside = open_as(client, plain, dir, opener)
        .await
        .map_err(RotateError::Open)?;
    let serial = inside.serial.to_string();
    let target =
        current_key(dir, &serial, role, inside.key_epochs.of(role)).map_err(RotateError::Open)?;
    let new = RoleKey {
        role,
        epoch: target.epoch + 1,
        key: random_secret().map_err(|e| RotateError::Random(Error::Random(e)))?,
    };
    let next = KeyFile::next_path(&target.path);
    // The new key is on disk before the pump can hold it.
    KeyFile::create(&next, &serial, &new).map_err(RotateError::KeyFile)?;
    match client.rotate_key(&new).await {
        Ok(()) => KeyFile::promote(&target.path).map_err(RotateError::KeyFile)?,
        // `StaleKey` naming the new epoch as current: this very rotation may have been
        // stored by an earlier attempt whose reply-cache entry is gone. Uncertain.
        Err(source @ Error::StaleKey { current, .. }) if current == new.epoch => {
            return Err(RotateError::Uncertain {
                role,
                current: target.path.clone(),
                next,
                source,
            })
        }
        // Certainly not taken: the new file is of no use.
        Err(e @ (Error::StaleKey { .. } | Error::Refused { .. })) => {
            let _ = std::fs::remove_file(&next);
            return Err(RotateError::NotRotated(e));
        }
        Err(source) => {
            return Err(RotateError::Uncertain {
                role,
                current: target.path.clone(),
                next,
                source,
            })
        }
    }
    Ok(Rotated {
        serial,
        role,
        epoch: new.epoch,
        key_file: target.path.clone(),
    })
}

/// A re-provisioned pump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reprovisioned {
    /// The pump.
    pub serial: String,
    /// The one epoch every role key is at now.
    pub epoch: u32,
    /// The key file of each role, now holding its new key (mode 0600).
    pub key_files: Vec<(Role, PathBuf)>,
}

/// Why a pump was not re-provisioned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReprovisionError {
    /// No service session, or no usable key file; nothing changed.
    #[error(transparent)]
    Open(OpenError),
    /// The pump's own static key cannot be used; nothing was sent.
    #[error(transparent)]
    PumpKey(PumpKeyError),
    /// No agreement could be made; nothing was sent.
    #[error(transparent)]
    Agreement(Error),
    /// A key file could not be written or promoted.
    #[error(transparent)]
    KeyFile(KeyFileError),
    /// The pump moved the keys to another epoch than the new files hold; nothing was
    /// replaced.
    #[error(
        "the pump moved the keys to epoch {taken}, not {epoch}: the new key files \
             ({serial}.*.key.next) do not match; nothing was replaced"
    )]
    EpochMismatch {
        /// The pump.
        serial: String,
        /// The epoch of the new files.
        epoch: u32,
        /// The epoch the pump took.
        taken: u32,
    },
    /// The pump refused: not re-provisioned; the new files were removed.
    #[error("the pump was not re-provisioned")]
    Refused(#[source] Error),
    /// The pump answered, inside the session, but did not take the secret agreed here;
    /// the new files were removed.
    #[error(
        "the pump answered the re-provisioning, but not with the secret agreed here: \
             the new key files were removed"
    )]
    NotConfirmed(#[source] Error),
    /// The pump may or may not have been re-provisioned: the new files are kept beside
    /// the old ones (`.key.next`), and the next connection settles which are in force.
    #[error(
        "the pump may or may not have been re-provisioned: the new key files are kept \
             beside the old ones (.key.next)"
    )]
    Uncertain(#[source] Error),
}

/// Re-provisions the pump that answered `plain` from a service session opened with the
/// service key in `dir`: a new device secret agreed with the pump's static key as it
/// states it inside the session, every role key moved to one new epoch, the new files
/// written as `.next` files first and promoted once the pump confirms.
pub async fn reprovision<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    plain: &Identity,
    dir: &Path,
) -> Result<Reprovisioned, ReprovisionError> {
    // The session first: a re-provisioning that cannot open one leaves nothing behind.
    // The epochs and, above all, the static key the new secret is agreed with are the
    // pump's own answer inside it: a secret agreed with a key a man in the middle showed
    // would leave the pump with a secret nobody holds, and every key refused.
    let inside = open_as(client, plain, dir, Role::Service)
        .await
        .map_err(ReprovisionError::Open)?;
    let serial = inside.serial.to_string();
    let epochs = inside.key_epochs;
    let epoch = Role::KEYED
        .iter()
        .map(|r| epochs.of(*r))
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let public = pump_public(None, &inside.public_key).map_err(ReprovisionError::PumpKey)?;
    let agreement = Agreement::new(&serial, &public).map_err(ReprovisionError::Agreement)?;
    let mut files = Vec::new();
    for role in Role::KEYED {
        let path = find_key(dir, &serial, role)
            .unwrap_or_else(|_| dir.join(KeyFile::file_name(&serial, role)));
        let next = KeyFile::next_path(&path);
        if next.exists() {
            // An interrupted rotation of this role: its `.next` file may be the key in
            // force (the epoch inside the session says), and must outlive a refused
            // re-provisioning. Settled first; what is left is no key in force.
            KeyFile::settle(&path, epochs.of(role)).map_err(ReprovisionError::KeyFile)?;
        }
        let _ = std::fs::remove_file(&next);
        KeyFile::create(&next, &serial, &agreement.role_key(role, epoch))
            .map_err(ReprovisionError::KeyFile)?;
        files.push((role, path, next));
    }
    let remove_new = |files: &[(Role, PathBuf, PathBuf)]| {
        for (_, _, next) in files {
            let _ = std::fs::remove_file(next);
        }
    };
    match client.reprovision(&agreement).await {
        Ok(taken) if taken == epoch => {}
        Ok(taken) => {
            return Err(ReprovisionError::EpochMismatch {
                serial,
                epoch,
                taken,
            })
        }
        Err(e @ Error::Refused { .. }) => {
            remove_new(&files);
            return Err(ReprovisionError::Refused(e));
        }
        // Inside the session the answer is the pump's own: it took a new secret, but not
        // the one agreed here. The new files do not hold it.
        Err(e @ Error::ProvisionNotConfirmed) => {
            remove_new(&files);
            return Err(ReprovisionError::NotConfirmed(e));
        }
        Err(e) => return Err(ReprovisionError::Uncertain(e)),
    }
    for (_, path, _) in &files {
        KeyFile::promote(path).map_err(ReprovisionError::KeyFile)?;
    }
    Ok(Reprovisioned {
        serial,
        epoch,
        key_files: files
            .into_iter()
            .map(|(role, path, _)| (role, path))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_protocol::session::Secret;

    fn write(dir: &Path, name: &str, pump: &str, role: Role) -> PathBuf {
        let path = dir.join(name);
        let key = RoleKey {
            role,
            epoch: 1,
            key: Secret::new([1; 32]),
        };
        KeyFile::create(&path, pump, &key).unwrap();
        path
    }

    #[test]
    fn the_key_file_of_a_role_is_found_by_its_name_or_as_the_one_of_this_pump() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // None: the message names the file expected.
        let e = find_key(d, "P1", Role::Patient).unwrap_err().to_string();
        assert!(
            e.contains("no patient key file of pump P1") && e.contains("P1.patient.key"),
            "{e}"
        );
        // Another pump's file, and a pending rotation, are not it.
        write(d, "other.patient.key", "P2", Role::Patient);
        write(d, "sim.patient.key.next", "P1", Role::Patient);
        assert!(find_key(d, "P1", Role::Patient).is_err());
        // The one `*.patient.key` of this pump.
        let sim = write(d, "sim.patient.key", "P1", Role::Patient);
        assert_eq!(find_key(d, "P1", Role::Patient).unwrap(), sim);
        // Two of them: ambiguous.
        write(d, "copy.patient.key", "P1", Role::Patient);
        let e = find_key(d, "P1", Role::Patient).unwrap_err().to_string();
        assert!(e.contains("several patient key files"), "{e}");
        // `SERIAL.ROLE.key` wins whatever else is there.
        let named = write(d, "P1.patient.key", "P1", Role::Patient);
        assert_eq!(find_key(d, "P1", Role::Patient).unwrap(), named);
        // Other roles are other files.
        assert!(find_key(d, "P1", Role::Clinician).is_err());
    }

    #[test]
    fn the_emergency_key_is_not_rotated() {
        assert_eq!(rotation_opener(Role::Patient).ok(), Some(Role::Clinician));
        assert_eq!(rotation_opener(Role::Clinician).ok(), Some(Role::Clinician));
        assert_eq!(rotation_opener(Role::Service).ok(), Some(Role::Service));
        assert!(matches!(
            rotation_opener(Role::Emergency),
            Err(RotateError::Emergency)
        ));
    }
}
