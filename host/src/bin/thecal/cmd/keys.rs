//! `thecal keys rotate --role R --key-dir DIR`, `thecal keys reprovision --key-dir DIR`

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use thecal_host::client::Agreement;
use thecal_host::keys::{random_secret, KeyFile};
use thecal_host::{Error, RoleKey};
use thecal_protocol::message::{Identity, Role};

use crate::cmd::UsageError;
use crate::out;
use crate::session::{Access, Global, Session};

/// Key lifecycle: rotation (a lost programmer's key revoked) and re-provisioning.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Replace the key of `--role`: the patient and clinician keys from a clinician session,
    /// the service key from a service session (the key of that role in DIR opens it).
    /// The new key is written first (`SERIAL.ROLE.key.next`, mode 0600), sent inside the
    /// sealed session, and replaces the old file once the pump confirms; the old key is
    /// refused from then on. An interrupted rotation never leaves DIR without the key in
    /// force: the next command settles it.
    Rotate(RotateArgs),
    /// Service: agree a new device secret with the pump (key agreement, nothing secret
    /// on the wire) and move every role key to one new epoch; every older key, of every
    /// role, is refused from then on. Writes the three new key files into DIR.
    Reprovision(ReprovisionArgs),
}

/// `keys rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// Directory holding this pump's key files (as `thecal provision` wrote them).
    #[arg(long, value_name = "DIR")]
    key_dir: PathBuf,
}

/// `keys reprovision`.
#[derive(Debug, clap::Args)]
pub struct ReprovisionArgs {
    /// Directory holding this pump's key files; the service key opens the session.
    #[arg(long, value_name = "DIR")]
    key_dir: PathBuf,
}

#[derive(Serialize)]
struct RotatedJson {
    serial: String,
    role: &'static str,
    epoch: u32,
    key_file: String,
}

pub async fn run(c: Command, g: &Global) -> anyhow::Result<()> {
    let dir = match &c {
        Command::Rotate(a) => &a.key_dir,
        Command::Reprovision(a) => &a.key_dir,
    };
    if !dir.is_dir() {
        return Err(UsageError(format!("--key-dir {} is not a directory", dir.display())).into());
    }
    let mut s = Session::open(g, Access::Plain).await?;
    let result = match c {
        Command::Rotate(a) => rotate(&a, &mut s, g).await,
        Command::Reprovision(a) => reprovision(&a, &mut s, g).await,
    };
    let closed = s.close().await;
    result.and(closed)
}

/// The key file of `role` for pump `serial` in `dir`: `SERIAL.ROLE.key`, else the one
/// `*.ROLE.key` file that names this pump.
fn find_key(dir: &Path, serial: &str, role: Role) -> anyhow::Result<PathBuf> {
    let named = dir.join(KeyFile::file_name(serial, role));
    if named.exists() {
        return Ok(named);
    }
    let suffix = format!(".{}.key", role.name());
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the key directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(&suffix))
        .filter(|p| KeyFile::load(p).is_ok_and(|f| f.pump == serial))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(UsageError(format!(
            "{} holds no {} key file of pump {serial} ({} expected)",
            dir.display(),
            role.name(),
            named.display()
        ))
        .into()),
        _ => Err(UsageError(format!(
            "{} holds several {} key files of pump {serial}: keep one",
            dir.display(),
            role.name()
        ))
        .into()),
    }
}

/// Opens the session of `role` with its key file in `dir` (a rotation of that file that
/// was interrupted is settled only once the handshake has proved which key the pump
/// holds: [`crate::session::authenticate_settling`]), then asks the pump again inside the
/// session: the key epochs and static key of that sealed `Identify` are the pump's own,
/// which the plain one, read before any session, is not (a man in the middle can rewrite
/// it). Every decision about files and keys below is made on that answer. A pump without
/// keys (epoch 0) is not provisioned: said so, and no file is touched.
async fn open_as(s: &mut Session, dir: &Path, role: Role) -> anyhow::Result<Identity> {
    let serial = s.identity.serial.to_string();
    let epoch = s.identity.key_epochs.of(role);
    if epoch == 0 {
        return Err(Error::NotProvisioned.into());
    }
    let path = find_key(dir, &serial, role)?;
    KeyFile::load(&path)?.check_role(role)?;
    crate::session::authenticate_settling(&mut s.client, &path, &serial, epoch).await?;
    Ok(s.client.identify().await?)
}

/// The key file of `role` in `dir`, an interrupted rotation of it settled against the
/// role's `epoch` in force (from inside a session: [`open_as`]), checked to be for this
/// pump and that epoch.
fn current_key(dir: &Path, serial: &str, role: Role, epoch: u32) -> anyhow::Result<KeyFile> {
    let path = find_key(dir, serial, role)?;
    let file = KeyFile::settle(&path, epoch)?;
    file.check_role(role)?;
    file.check_pump(serial)?;
    file.check_epoch(epoch)?;
    Ok(file)
}

async fn rotate(a: &RotateArgs, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let role = Role::from(g.role);
    let opener = match role {
        Role::Patient | Role::Clinician => Role::Clinician,
        Role::Service => Role::Service,
        Role::Emergency => {
            return Err(UsageError(
                "the emergency key is public (derived from the serial): it cannot be rotated"
                    .into(),
            )
            .into())
        }
    };
    // The session first: a rotation that cannot open one leaves nothing behind.
    let inside = open_as(s, &a.key_dir, opener).await?;
    let serial = inside.serial.to_string();
    let target = current_key(&a.key_dir, &serial, role, inside.key_epochs.of(role))?;
    let new = RoleKey {
        role,
        epoch: target.epoch + 1,
        key: random_secret().map_err(Error::Random)?,
    };
    let next = KeyFile::next_path(&target.path);
    // The new key is on disk before the pump can hold it.
    KeyFile::create(&next, &serial, &new)?;
    match s.client.rotate_key(&new).await {
        Ok(()) => KeyFile::promote(&target.path)?,
        // Certainly not taken: the new file is of no use.
        Err(e @ (Error::StaleKey { .. } | Error::Refused { .. })) => {
            let _ = std::fs::remove_file(&next);
            return Err(anyhow::Error::new(e).context("the key was not rotated"));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "the pump may or may not hold the new {} key: both {} and {} are kept, and \
                 the next command settles which one is in force",
                role.name(),
                target.path.display(),
                next.display()
            )))
        }
    }
    if g.json {
        return out::json(&RotatedJson {
            serial,
            role: role.name(),
            epoch: new.epoch,
            key_file: target.path.display().to_string(),
        });
    }
    outln!(
        "The {} key of pump {serial} is rotated to epoch {}: {} (mode 0600). The old key \
         is refused from now on; hand the new file to its holder.",
        role.name(),
        new.epoch,
        target.path.display()
    )?;
    Ok(())
}

async fn reprovision(a: &ReprovisionArgs, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    // The session first: a re-provisioning that cannot open one leaves nothing behind.
    // The epochs and, above all, the static key the new secret is agreed with are the
    // pump's own answer inside it: a secret agreed with a key a man in the middle showed
    // would leave the pump with a secret nobody holds, and every key refused.
    let inside = open_as(s, &a.key_dir, Role::Service).await?;
    let serial = inside.serial.to_string();
    let epochs = inside.key_epochs;
    let epoch = Role::KEYED
        .iter()
        .map(|r| epochs.of(*r))
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let public = crate::cmd::provision::pump_public(None, &inside.public_key)?;
    let agreement = Agreement::new(&serial, &public)?;
    let mut files = Vec::new();
    for role in Role::KEYED {
        let path = match find_key(&a.key_dir, &serial, role) {
            Ok(p) => p,
            Err(_) => a.key_dir.join(KeyFile::file_name(&serial, role)),
        };
        let next = KeyFile::next_path(&path);
        let _ = std::fs::remove_file(&next);
        KeyFile::create(&next, &serial, &agreement.role_key(role, epoch))?;
        files.push((role, path, next));
    }
    match s.client.reprovision(&agreement).await {
        Ok(taken) if taken == epoch => {}
        Ok(taken) => {
            anyhow::bail!(
                "the pump moved the keys to epoch {taken}, not {epoch}: the new key files \
                 ({}.*.key.next) do not match; nothing was replaced",
                serial
            )
        }
        Err(e @ Error::Refused { .. }) => {
            for (_, _, next) in &files {
                let _ = std::fs::remove_file(next);
            }
            return Err(anyhow::Error::new(e).context("the pump was not re-provisioned"));
        }
        // Inside the session the answer is the pump's own: it took a new secret, but not
        // the one agreed here. The new files do not hold it.
        Err(e @ Error::ProvisionNotConfirmed) => {
            for (_, _, next) in &files {
                let _ = std::fs::remove_file(next);
            }
            return Err(anyhow::Error::new(e).context(
                "the pump answered the re-provisioning, but not with the secret agreed here: \
                 the new key files were removed; check its key epochs with `thecal info`",
            ));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(
                "the pump may or may not have been re-provisioned: the new key files are kept \
                 beside the old ones (.key.next), and the next command settles which are in force",
            ))
        }
    }
    for (_, path, _) in &files {
        KeyFile::promote(path)?;
    }
    if g.json {
        let rows: Vec<RotatedJson> = files
            .iter()
            .map(|(role, path, _)| RotatedJson {
                serial: serial.clone(),
                role: role.name(),
                epoch,
                key_file: path.display().to_string(),
            })
            .collect();
        return out::json(&rows);
    }
    outln!(
        "Pump {serial} is re-provisioned: a new device secret, every role key at epoch \
         {epoch}. Every older key is refused from now on. New key files (mode 0600):"
    )?;
    let rows: Vec<(&str, String)> = files
        .iter()
        .map(|(r, p, _)| (r.name(), p.display().to_string()))
        .collect();
    out::fields(&rows)?;
    Ok(())
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
}
