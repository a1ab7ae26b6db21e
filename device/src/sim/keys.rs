//! Provisioning the simulated pump and writing its role key files.
//!
//! A fresh simulated pump is provisioned as a factory station would do it: by key
//! agreement with the pump's static key (`thecal_protocol::session::provision`), from an
//! ephemeral key drawn from the operating system's random source. At every start the
//! simulator then writes one key file per role with the key in force (it is the pump, so
//! it knows them, rotated ones included):
//!
//! ```text
//! # thecal role key: keep it secret. Whoever holds it acts as this role on this pump.
//! pump = "SIM000001"
//! role = "clinician"
//! epoch = 1
//! key = "<64 hex digits>"
//! ```
//!
//! The text is the contract's format ([`thecal_protocol::session::keyfile`]), the one
//! the programmer reads. Files are created with mode 0600; the programmer refuses a key file others can read.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thecal_protocol::message::Role;
use thecal_protocol::session::{keyfile, Secret};

/// 32 bytes from the operating system's random source.
pub fn random_secret() -> io::Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    Ok(secret)
}

/// The path of `role`'s key file in `dir` for a pump whose files start with `stem`.
pub fn key_path(dir: &Path, stem: &str, role: Role) -> PathBuf {
    dir.join(format!("{stem}.{}.key", role.name()))
}

/// The text of a key file ([`keyfile::render`]).
pub fn key_file_text(serial: &str, role: Role, epoch: u32, key: &Secret) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = keyfile::render(&mut text, serial, role, epoch, key);
    text
}

/// Writes the key files of every role (`keys`: role, epoch and key in force); returns
/// their paths. A file already there is kept (a programmer may have rotated it since)
/// unless the pump was provisioned `fresh`ly, whose keys are all new.
pub fn write_key_files(
    dir: &Path,
    stem: &str,
    serial: &str,
    keys: &[(Role, u32, Secret)],
    fresh: bool,
) -> io::Result<Vec<(Role, PathBuf)>> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut out = Vec::new();
    for (role, epoch, key) in keys {
        let role = *role;
        let path = key_path(dir, stem, role);
        if !fresh && path.exists() {
            out.push((role, path));
            continue;
        }
        let _ = std::fs::remove_file(&path);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(key_file_text(serial, role, *epoch, key).as_bytes())?;
        out.push((role, path));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_text_is_the_contract_format() {
        let key = Secret::new([7; 32]);
        let text = key_file_text("SIM000001", Role::Patient, 3, &key);
        assert!(text.starts_with(keyfile::HEADER));
        let f = keyfile::parse(&text).unwrap();
        assert_eq!((f.pump, f.role, f.epoch), ("SIM000001", Role::Patient, 3));
        assert!(f.key.ct_eq(&key));
        assert_eq!(
            key_path(Path::new("/k"), "thecal-sim", Role::Service),
            Path::new("/k/thecal-sim.service.key")
        );
    }
}
