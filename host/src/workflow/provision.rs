//! Provisioning a fresh pump (the factory step): a device secret agreed by key
//! agreement with the pump's static key, and the three role key files of epoch 1
//! derived from it.
//!
//! The key files are written first ([`KeyFile::create`], mode 0600, `SERIAL.ROLE.key`):
//! a pump provisioned with a secret nobody kept could never be opened again. A refusal
//! that certainly stored nothing removes them again; an uncertain outcome keeps them.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

use thecal_protocol::message::{Identity, Role};
use thecal_protocol::session::{FIRST_EPOCH, PUBLIC_LEN};

use crate::client::Agreement;
use crate::keys::{KeyFile, KeyFileError};
use crate::{Client, Error};

/// Why a directory cannot take a pump's key files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDirError {
    /// A missing directory could not be created.
    #[error("cannot create the key directory {}", .dir.display())]
    Create {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a directory.
    #[error("{} is not a directory", .dir.display())]
    NotADirectory {
        /// The path.
        dir: PathBuf,
    },
    /// The directory could not be read.
    #[error("cannot read the key directory {}", .dir.display())]
    Read {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory already holds key files: none is overwritten or mixed up with
    /// another pump's.
    #[error("{} already holds key files ({})", .dir.display(), .files.join(", "))]
    HoldsKeys {
        /// The directory.
        dir: PathBuf,
        /// The names of the `.key` files in it, sorted.
        files: Vec<String>,
    },
}

/// Creates a missing key directory (mode 0700); refuses one that already holds `.key`
/// files.
pub fn prepare_dir(dir: &Path) -> Result<(), KeyDirError> {
    if !dir.exists() {
        return std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| KeyDirError::Create {
                dir: dir.to_path_buf(),
                source,
            });
    }
    if !dir.is_dir() {
        return Err(KeyDirError::NotADirectory {
            dir: dir.to_path_buf(),
        });
    }
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| KeyDirError::Read {
            dir: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    files.sort();
    Err(KeyDirError::HoldsKeys {
        dir: dir.to_path_buf(),
        files,
    })
}

/// Why the pump's static public key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PumpKeyError {
    /// The pump reports no static public key (all zero).
    #[error("the pump reports no static public key: it cannot be provisioned yet")]
    NoStaticKey,
    /// The key from the label is not 64 hex digits.
    #[error("the pump's public key must be 64 hex digits")]
    LabelNotHex,
    /// The pump on the link reports another key than the label's: not that pump, or
    /// the link is not to the pump.
    #[error(
        "the pump on the link reports public key {}, not the one on the label; nothing was sent",
        hex(.reported)
    )]
    LabelMismatch {
        /// The key the pump reports.
        reported: [u8; PUBLIC_LEN],
    },
}

/// The pump's static public key: the one on its `label` (hex), which must be the one
/// the pump on the link `reported`, or without a label that one.
pub fn pump_public(
    label: Option<&str>,
    reported: &[u8; PUBLIC_LEN],
) -> Result<[u8; PUBLIC_LEN], PumpKeyError> {
    if reported == &[0; PUBLIC_LEN] {
        return Err(PumpKeyError::NoStaticKey);
    }
    let Some(label) = label else {
        return Ok(*reported);
    };
    let text = label.trim();
    let mut key = [0u8; PUBLIC_LEN];
    let ok = text.len() == 2 * PUBLIC_LEN
        && key.iter_mut().enumerate().all(|(i, b)| {
            text.get(2 * i..2 * i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .map(|v| *b = v)
                .is_some()
        });
    if !ok {
        return Err(PumpKeyError::LabelNotHex);
    }
    if &key != reported {
        return Err(PumpKeyError::LabelMismatch {
            reported: *reported,
        });
    }
    Ok(key)
}

/// Lower-case hex of `bytes` (a public key as printed on a label).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checked provisioning: which pump, with which static key, files into which
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionPlan {
    /// The pump's serial number.
    pub serial: String,
    /// Its static public key.
    pub public: [u8; PUBLIC_LEN],
    /// Where the key files go (see [`prepare_dir`]).
    pub key_dir: PathBuf,
}

/// Plans the provisioning of the pump that answered `identity` (plain `Identify`),
/// checked against the public key on its `label` if given.
pub fn plan(
    identity: &Identity,
    label: Option<&str>,
    key_dir: &Path,
) -> Result<ProvisionPlan, PumpKeyError> {
    Ok(ProvisionPlan {
        serial: identity.serial.to_string(),
        public: pump_public(label, &identity.public_key)?,
        key_dir: key_dir.to_path_buf(),
    })
}

/// A provisioned pump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// Its serial number.
    pub serial: String,
    /// Its static public key.
    pub public: [u8; PUBLIC_LEN],
    /// The key file of each role (mode 0600).
    pub key_files: Vec<(Role, PathBuf)>,
}

/// Why provisioning did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// No agreement could be made (no random bytes, or a small-order pump key);
    /// nothing was written or sent.
    #[error(transparent)]
    Agreement(Error),
    /// A key file could not be written; those already written were removed and
    /// nothing was sent.
    #[error(transparent)]
    KeyFile(KeyFileError),
    /// The pump certainly did not store the secret; the key files were removed.
    #[error("provisioning pump {serial} failed; no key file was kept")]
    Failed {
        /// The pump.
        serial: String,
        /// Why.
        #[source]
        source: Error,
    },
    /// The pump may or may not hold the new secret: the key files are kept.
    #[error("the pump may or may not hold the new secret: the key files are kept in {}",
        .key_dir.display())]
    Uncertain {
        /// Where the key files are.
        key_dir: PathBuf,
        /// The key file of each role.
        key_files: Vec<(Role, PathBuf)>,
        /// Why.
        #[source]
        source: Error,
    },
}

/// Writes the key files of `plan`, then provisions the pump by key agreement (the pump
/// confirms with a service-key handshake).
pub async fn execute<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<T>,
    plan: &ProvisionPlan,
) -> Result<Provisioned, ProvisionError> {
    let serial = plan.serial.as_str();
    let agreement = Agreement::new(serial, &plan.public).map_err(ProvisionError::Agreement)?;
    let mut key_files: Vec<(Role, PathBuf)> = Vec::new();
    for role in Role::KEYED {
        let path = plan.key_dir.join(KeyFile::file_name(serial, role));
        if let Err(e) = KeyFile::create(&path, serial, &agreement.role_key(role, FIRST_EPOCH)) {
            remove(&key_files);
            return Err(ProvisionError::KeyFile(e));
        }
        key_files.push((role, path));
    }
    match client.provision(&agreement).await {
        Ok(()) => Ok(Provisioned {
            serial: plan.serial.clone(),
            public: plan.public,
            key_files,
        }),
        // Certainly not stored: the files are of no use.
        Err(
            source @ (Error::AlreadyProvisioned
            | Error::Refused { .. }
            | Error::ProvisionNotConfirmed),
        ) => {
            remove(&key_files);
            Err(ProvisionError::Failed {
                serial: plan.serial.clone(),
                source,
            })
        }
        Err(source) => Err(ProvisionError::Uncertain {
            key_dir: plan.key_dir.clone(),
            key_files,
            source,
        }),
    }
}

fn remove(files: &[(Role, PathBuf)]) {
    for (_, path) in files {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_key_must_be_the_key_the_pump_reports() {
        let reported: [u8; PUBLIC_LEN] = core::array::from_fn(|i| i as u8 + 0xa0);
        let text = hex(&reported);
        assert_eq!(pump_public(None, &reported), Ok(reported));
        assert_eq!(pump_public(Some(&text), &reported), Ok(reported));
        let padded = format!(" {} \n", text.to_uppercase());
        assert_eq!(pump_public(Some(&padded), &reported), Ok(reported));
        let other = hex(&[0x11; PUBLIC_LEN]);
        assert_eq!(
            pump_public(Some(&other), &reported),
            Err(PumpKeyError::LabelMismatch { reported })
        );
        for bad in [&text[..62], "zz".repeat(32).as_str(), ""] {
            assert_eq!(
                pump_public(Some(bad), &reported),
                Err(PumpKeyError::LabelNotHex)
            );
        }
        assert_eq!(
            pump_public(None, &[0; PUBLIC_LEN]),
            Err(PumpKeyError::NoStaticKey)
        );
    }

    #[test]
    fn a_key_directory_is_created_or_must_hold_no_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new");
        prepare_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
        prepare_dir(&fresh).unwrap();
        std::fs::write(fresh.join("b.key"), "").unwrap();
        std::fs::write(fresh.join("a.key"), "").unwrap();
        let e = prepare_dir(&fresh).unwrap_err();
        assert!(matches!(&e, KeyDirError::HoldsKeys { files, .. } if files == &["a.key", "b.key"]));
        let file = fresh.join("a.key");
        assert!(matches!(
            prepare_dir(&file),
            Err(KeyDirError::NotADirectory { .. })
        ));
    }
}
