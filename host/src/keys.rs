//! Role keys and key files.
//!
//! A programmer acts as one role (patient, clinician, service) on one pump, and proves it
//! with that role's key of the epoch in force (epoch 1 derives from the device secret
//! agreed at provisioning, [`thecal_protocol::session::role_key`]; each rotation moves the
//! role to the next epoch with a fresh random key). The key lives in a key file:
//!
//! ```text
//! # thecal role key: keep it secret. Whoever holds it acts as this role on this pump.
//! pump = "SIM000001"
//! role = "clinician"
//! epoch = 1
//! key = "<64 hex digits>"
//! ```
//!
//! The text format is the contract's ([`thecal_protocol::session::keyfile`]), the one the
//! simulator writes too; this module does the file handling around it.
//!
//! A rotation (`thecal keys rotate`) writes the new key beside the old one first, as
//! `SERIAL.ROLE.key.next` ([`KeyFile::next_path`]), and replaces the old file with it
//! only once the pump has confirmed; a rotation interrupted after the pump stored the
//! new key is completed at the next connection ([`KeyFile::settle`]).
//!
//! [`KeyFile::load`] refuses a file that group or others may access (any of the mode bits
//! `0o077`), checks its format without ever echoing the key, and [`KeyFile::check_role`]
//! and [`KeyFile::check_pump`] tie it to the role asked for and the pump on the line.
//! [`KeyFile::create`] writes one with mode 0600 (`thecal provision`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thecal_protocol::message::Role;
use thecal_protocol::session::{keyfile, Secret, KEY_LEN};
use zeroize::Zeroize;

/// The key of one role on one pump: what the handshake proves.
#[derive(Debug)]
pub struct RoleKey {
    /// The role.
    pub role: Role,
    /// The key's epoch.
    pub epoch: u32,
    /// Its key (`Debug` never shows it; wiped on drop).
    pub key: Secret,
}

impl RoleKey {
    /// A second copy (explicit: keys are not copied by accident).
    pub fn duplicate(&self) -> RoleKey {
        RoleKey {
            role: self.role,
            epoch: self.epoch,
            key: self.key.duplicate(),
        }
    }
}

impl RoleKey {
    /// The emergency role's key on the pump with `serial`: public, derived from the
    /// serial alone ([`thecal_protocol::session::emergency_key`]). The pump accepts it
    /// only while its physical-presence signal (the magnet) is active, and then only for
    /// `Identify`, `Status`, `ReadAlarms` and `StopTherapy`.
    pub fn emergency(serial: &str) -> RoleKey {
        RoleKey {
            role: Role::Emergency,
            epoch: 0,
            key: thecal_protocol::session::emergency_key(serial),
        }
    }
}

/// 32 bytes from the operating system's random source (a new key, an X25519 secret).
pub fn random_secret() -> Result<Secret, getrandom::Error> {
    let mut secret = [0u8; KEY_LEN];
    getrandom::fill(&mut secret)?;
    let out = Secret::new(secret);
    secret.zeroize();
    Ok(out)
}

/// Why a key file cannot be used. No variant ever carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The pump's serial number (as it reported it) cannot name a key file: empty, or
    /// with a path separator, a quote, a leading dot or a control character. Nothing
    /// was written.
    #[error(
        "the pump reports the serial number {serial:?}, which cannot name a key file \
         (empty, a path separator, a quote, a leading dot or a control character); \
         nothing was written"
    )]
    Serial {
        /// The serial number as reported.
        serial: String,
    },
    /// The file could not be opened, read or written.
    #[error("key file {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may access the file: whoever can read it can act as its role.
    #[error(
        "key file {} is readable by others (mode {mode:04o}); chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    ReadableByOthers {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a key file, or a damaged one.
    #[error("key file {}: {reason}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key itself).
        reason: String,
    },
    /// The file holds another role's key.
    #[error(
        "key file {} holds the {} key, but the {} role was asked for (--role {}): \
         give the {} key file, or --role {}",
        .path.display(),
        .found.name(),
        .wanted.name(),
        .wanted.name(),
        .wanted.name(),
        .found.name()
    )]
    WrongRole {
        /// The file.
        path: PathBuf,
        /// Role in the file.
        found: Role,
        /// Role asked for.
        wanted: Role,
    },
    /// The file holds a key of another epoch than the one in force on the pump: the key
    /// was rotated (or the pump re-provisioned) since the file was written.
    #[error(
        "key file {} holds the key of epoch {epoch}, but the pump's key is at epoch {current}: \
         it was rotated or revoked; use the current key file",
        .path.display()
    )]
    StaleEpoch {
        /// The file.
        path: PathBuf,
        /// Epoch in the file.
        epoch: u32,
        /// Epoch in force on the pump.
        current: u32,
    },
    /// The file is for another pump.
    #[error(
        "key file {} is for pump {file_pump}, but the pump on this link is {serial}: \
         use the key file of pump {serial}",
        .path.display()
    )]
    WrongPump {
        /// The file.
        path: PathBuf,
        /// Pump named in the file.
        file_pump: String,
        /// Serial number the pump reported.
        serial: String,
    },
}

/// A loaded key file.
#[derive(Debug)]
pub struct KeyFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Serial number of the pump it is for.
    pub pump: String,
    /// The role.
    pub role: Role,
    /// The key's epoch.
    pub epoch: u32,
    key: Secret,
}

const FORMAT: &str = "expected the lines pump = \"SERIAL\", role = \"patient|clinician|service\", \
                      epoch = N and key = \"<64 hex digits>\"";

impl KeyFile {
    /// Reads and checks the key file at `path`: refused if group or others may access it
    /// (mode `& 0o077 != 0`) or if it is not a valid key file.
    pub fn load(path: &Path) -> Result<KeyFile, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        // The mode of the file actually opened (no window for a swap after the check).
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(invalid(path, "not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::ReadableByOthers {
                path: path.to_path_buf(),
                mode,
            });
        }
        // A key file is a few lines; anything much larger is not one.
        let mut text = String::new();
        Read::by_ref(&mut file)
            .take(4096)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => invalid(path, "not UTF-8 text"),
                _ => io(e),
            })?;
        let parsed = Self::parse(path, &text);
        text.zeroize();
        parsed
    }

    /// Parses the text of a key file (`path` is for messages only): the format of
    /// [`thecal_protocol::session::keyfile`].
    pub fn parse(path: &Path, text: &str) -> Result<KeyFile, KeyFileError> {
        let fields = keyfile::parse(text).map_err(|e| match e.reason.is_layout() {
            true => invalid(path, &format!("not a thecal key file ({e}): {FORMAT}")),
            false => invalid(path, &e.reason.to_string()),
        })?;
        Ok(KeyFile {
            path: path.to_path_buf(),
            pump: fields.pump.to_string(),
            role: fields.role,
            epoch: fields.epoch,
            key: fields.key,
        })
    }

    /// Checks that the file holds the key of `role`.
    pub fn check_role(&self, role: Role) -> Result<(), KeyFileError> {
        if self.role == role {
            Ok(())
        } else {
            Err(KeyFileError::WrongRole {
                path: self.path.clone(),
                found: self.role,
                wanted: role,
            })
        }
    }

    /// Checks that the file is for the pump with `serial` (from `Identify`).
    pub fn check_pump(&self, serial: &str) -> Result<(), KeyFileError> {
        if self.pump == serial {
            Ok(())
        } else {
            Err(KeyFileError::WrongPump {
                path: self.path.clone(),
                file_pump: self.pump.clone(),
                serial: serial.to_string(),
            })
        }
    }

    /// The role, epoch and key it holds.
    pub fn role_key(&self) -> RoleKey {
        RoleKey {
            role: self.role,
            epoch: self.epoch,
            key: self.key.duplicate(),
        }
    }

    /// The text of a key file ([`keyfile::render`]).
    pub fn text(pump: &str, key: &RoleKey) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = keyfile::render(&mut text, pump, key.role, key.epoch, &key.key);
        text
    }

    /// Writes a new key file at `path` with mode 0600 and syncs it; never replaces an
    /// existing file.
    pub fn create(path: &Path, pump: &str, key: &RoleKey) -> Result<(), KeyFileError> {
        // The serial comes from the pump's plain `Identify`, and it names the file: a
        // hostile one must not place a key file outside the key directory.
        if !keyfile::names_a_file(pump) {
            return Err(KeyFileError::Serial {
                serial: pump.to_string(),
            });
        }
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let mut text = Self::text(pump, key);
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io);
        text.zeroize();
        written
    }

    /// Where a rotation keeps the new key of the file at `path` until the pump confirms
    /// it: `path` with `.next` appended.
    pub fn next_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".next");
        PathBuf::from(name)
    }

    /// Makes the pending rotation of `path` (its [`KeyFile::next_path`] file) the key
    /// file: an atomic rename over the old one, then a sync of the directory.
    pub fn promote(path: &Path) -> Result<(), KeyFileError> {
        let next = Self::next_path(path);
        let io = |source| KeyFileError::Io {
            path: next.clone(),
            source,
        };
        std::fs::rename(&next, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// Settles a rotation that was interrupted, given the role's epoch in force on the
    /// pump (from `Identify`): a `.next` file of that epoch is the key in force, and
    /// replaces the file at `path`; a `.next` file of another epoch was never taken by the
    /// pump, and is removed. Returns the key file to use.
    pub fn settle(path: &Path, pump_epoch: u32) -> Result<KeyFile, KeyFileError> {
        let next = Self::next_path(path);
        if next.exists() {
            let pending = Self::load(&next)?;
            if pending.epoch == pump_epoch {
                Self::promote(path)?;
                return Self::load(path);
            }
            let current = Self::load(path)?;
            if current.epoch == pump_epoch {
                let _ = std::fs::remove_file(&next);
            }
            return Ok(current);
        }
        Self::load(path)
    }

    /// Checks that the file holds the key of the epoch in force on the pump.
    pub fn check_epoch(&self, pump_epoch: u32) -> Result<(), KeyFileError> {
        if self.epoch == pump_epoch {
            Ok(())
        } else {
            Err(KeyFileError::StaleEpoch {
                path: self.path.clone(),
                epoch: self.epoch,
                current: pump_epoch,
            })
        }
    }

    /// The file name `thecal provision` gives the key of `role` for pump `serial`:
    /// `SERIAL.ROLE.key`.
    pub fn file_name(serial: &str, role: Role) -> String {
        format!("{serial}.{}.key", role.name())
    }
}

fn invalid(path: &Path, reason: &str) -> KeyFileError {
    KeyFileError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn text(pump: &str, role: &str, key: &str) -> String {
        format!("# comment\npump = \"{pump}\"\nrole = \"{role}\"\nepoch = 2\nkey = \"{key}\"\n")
    }

    fn key(role: Role, epoch: u32, byte: u8) -> RoleKey {
        RoleKey {
            role,
            epoch,
            key: Secret::new([byte; 32]),
        }
    }

    #[test]
    fn a_key_file_parses_and_round_trips() {
        let p = Path::new("k.key");
        let f = KeyFile::parse(p, &text("SIM000001", "clinician", KEY)).unwrap();
        assert_eq!(f.pump, "SIM000001");
        assert_eq!(f.role, Role::Clinician);
        assert_eq!(f.epoch, 2);
        let expected: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(f.role_key().key.as_bytes(), &expected);
        let again = KeyFile::parse(p, &KeyFile::text("SIM000001", &f.role_key())).unwrap();
        assert!(again.role_key().key.ct_eq(&f.role_key().key));
        assert_eq!((again.role, again.epoch), (f.role, f.epoch));
        assert_eq!(
            KeyFile::parse(p, &text("S", "patient", &KEY.to_uppercase()))
                .unwrap()
                .role_key()
                .key
                .as_bytes(),
            &expected
        );
        assert!(f.check_epoch(2).is_ok());
        let e = f.check_epoch(3).unwrap_err().to_string();
        assert!(
            e.contains("epoch 2") && e.contains("epoch 3") && e.contains("rotated"),
            "{e}"
        );
        assert!(f.check_role(Role::Clinician).is_ok());
        assert!(f.check_pump("SIM000001").is_ok());
        let e = f.check_role(Role::Patient).unwrap_err().to_string();
        assert!(
            e.contains("holds the clinician key") && e.contains("--role patient"),
            "{e}"
        );
        let e = f.check_pump("SIM000002").unwrap_err().to_string();
        assert!(
            e.contains("for pump SIM000001") && e.contains("SIM000002"),
            "{e}"
        );
    }

    #[test]
    fn bad_key_files_are_refused_without_echoing_the_key() {
        let p = Path::new("k.key");
        let secretish = "ab".repeat(31);
        for bad in [
            text("S", "doctor", KEY),
            text("S", "clinician", &secretish),
            text("S", "clinician", &format!("{}zz", &KEY[..62])),
            text("", "clinician", KEY),
            format!("pump = \"S\"\nrole = \"clinician\"\nepoch = 1\nkey = {secretish}\n"),
            format!("pump = \"S\"\nrole = \"clinician\"\nkey = \"{KEY}\"\n"),
            text("S", "clinician", KEY).replace("epoch = 2", "epoch = 0"),
            format!("{}extra = 1\n", text("S", "clinician", KEY)),
            "pump = \"S\"\n".to_string(),
        ] {
            let e = KeyFile::parse(p, &bad).unwrap_err();
            assert!(matches!(e, KeyFileError::Invalid { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(!msg.contains(&secretish[..16]), "{msg}");
            assert!(!msg.contains(&KEY[..16]), "{msg}");
        }
    }

    #[test]
    fn a_serial_that_would_leave_the_key_directory_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for serial in [
            "../../tmp/x",
            "a/b",
            "",
            ".hidden",
            "S\"1",
            "S'1",
            "S\n1",
            "a\\b",
        ] {
            let path = dir.path().join(KeyFile::file_name(serial, Role::Clinician));
            let e = KeyFile::create(&path, serial, &key(Role::Clinician, 1, 9)).unwrap_err();
            assert!(
                matches!(e, KeyFileError::Serial { .. }),
                "{serial:?}: {e:?}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(!std::path::Path::new("/tmp/x.clinician.key").exists());
        let path = dir
            .path()
            .join(KeyFile::file_name("SIM-0001_A", Role::Clinician));
        KeyFile::create(&path, "SIM-0001_A", &key(Role::Clinician, 1, 9)).unwrap();
    }

    #[test]
    fn files_others_can_read_are_refused_and_created_ones_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SIM1.clinician.key");
        KeyFile::create(&path, "SIM1", &key(Role::Clinician, 1, 9)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            KeyFile::load(&path).unwrap().role_key().key.as_bytes(),
            &[9; 32]
        );
        // Never replaced.
        assert!(KeyFile::create(&path, "SIM1", &key(Role::Clinician, 1, 1)).is_err());
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = KeyFile::load(&path).unwrap_err();
            assert!(
                matches!(e, KeyFileError::ReadableByOthers { mode: m, .. } if m == mode),
                "{e:?}"
            );
            let shown = format!("{mode:04o}");
            let msg = e.to_string();
            assert!(
                msg.contains("readable by others") && msg.contains(&shown),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
        }
        let e = KeyFile::load(&dir.path().join("missing.key")).unwrap_err();
        assert!(matches!(e, KeyFileError::Io { .. }), "{e:?}");
    }

    #[test]
    fn an_interrupted_rotation_settles_on_the_epoch_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SIM1.patient.key");
        let next = KeyFile::next_path(&path);
        assert!(next.to_string_lossy().ends_with("SIM1.patient.key.next"));
        KeyFile::create(&path, "SIM1", &key(Role::Patient, 1, 1)).unwrap();
        // No rotation pending: the file itself.
        assert_eq!(KeyFile::settle(&path, 1).unwrap().epoch, 1);
        // The pump never took the new key (still at 1): the pending file goes.
        KeyFile::create(&next, "SIM1", &key(Role::Patient, 2, 2)).unwrap();
        let f = KeyFile::settle(&path, 1).unwrap();
        assert_eq!((f.epoch, f.role_key().key.as_bytes()[0]), (1, 1));
        assert!(!next.exists());
        // The pump took it (at 2) but its answer was lost: the new key replaces the old.
        KeyFile::create(&next, "SIM1", &key(Role::Patient, 2, 2)).unwrap();
        let f = KeyFile::settle(&path, 2).unwrap();
        assert_eq!((f.epoch, f.role_key().key.as_bytes()[0]), (2, 2));
        assert!(!next.exists());
        assert_eq!(KeyFile::load(&path).unwrap().epoch, 2);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Neither is in force: both kept, the caller reports the stale key.
        KeyFile::create(&next, "SIM1", &key(Role::Patient, 3, 3)).unwrap();
        assert_eq!(KeyFile::settle(&path, 5).unwrap().epoch, 2);
        assert!(next.exists());
    }

    #[test]
    fn role_names() {
        for role in Role::KEYED {
            assert_eq!(Role::from_name(role.name()), Some(role));
            assert_eq!(
                role.name().as_bytes(),
                thecal_protocol::session::role_label(role)
            );
        }
        assert_eq!(Role::from_name("admin"), None);
    }
}
