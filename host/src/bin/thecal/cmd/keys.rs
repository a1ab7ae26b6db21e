//! `thecal keys rotate --role R --key-dir DIR`, `thecal keys reprovision --key-dir DIR`

use std::path::{Path, PathBuf};

use serde::Serialize;
use thecal_host::workflow::keys::{self, FindKeyError, OpenError, ReprovisionError, RotateError};
use thecal_protocol::message::Role;

use crate::out;
use crate::session::{Access, Global, Session};
use crate::usage::UsageError;

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
    let result = match &c {
        Command::Rotate(a) => rotate(&a.key_dir, &mut s, g).await,
        Command::Reprovision(a) => reprovision(&a.key_dir, &mut s, g).await,
    };
    let closed = s.close().await;
    result.and(closed)
}

/// A key directory without the key file asked for, in the words of this command line.
fn find_key_error(e: FindKeyError) -> anyhow::Error {
    match e {
        e @ (FindKeyError::Missing { .. } | FindKeyError::Several { .. }) => {
            UsageError(e.to_string()).into()
        }
        other => anyhow::Error::new(other),
    }
}

/// A session for a key operation that could not be opened.
fn open_error(e: OpenError) -> anyhow::Error {
    match e {
        OpenError::KeyDir(e) => find_key_error(e),
        OpenError::KeyFile(e) => e.into(),
        OpenError::Pump(e) => e.into(),
        other => anyhow::Error::new(other),
    }
}

async fn rotate(dir: &Path, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let role = Role::from(g.role);
    let done = keys::rotate(&mut s.client, &s.identity, dir, role)
        .await
        .map_err(|e| match e {
            RotateError::Emergency => UsageError(e.to_string()).into(),
            RotateError::Open(e) => open_error(e),
            RotateError::KeyFile(e) => e.into(),
            RotateError::Random(e) => e.into(),
            RotateError::Uncertain {
                role,
                current,
                next,
                source,
            } => anyhow::Error::new(source).context(format!(
                "the pump may or may not hold the new {} key: both {} and {} are kept, and \
                 the next command settles which one is in force",
                role.name(),
                current.display(),
                next.display()
            )),
            other => anyhow::Error::new(other),
        })?;
    if g.json {
        return out::json(&RotatedJson {
            serial: done.serial,
            role: role.name(),
            epoch: done.epoch,
            key_file: done.key_file.display().to_string(),
        });
    }
    outln!(
        "The {} key of pump {} is rotated to epoch {}: {} (mode 0600). The old key \
         is refused from now on; hand the new file to its holder.",
        role.name(),
        done.serial,
        done.epoch,
        done.key_file.display()
    )?;
    Ok(())
}

async fn reprovision(dir: &Path, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let done = keys::reprovision(&mut s.client, &s.identity, dir)
        .await
        .map_err(|e| match e {
            ReprovisionError::Open(e) => open_error(e),
            ReprovisionError::PumpKey(e) => crate::cmd::provision::pump_key_error(e),
            ReprovisionError::Agreement(e) => e.into(),
            ReprovisionError::KeyFile(e) => e.into(),
            ReprovisionError::NotConfirmed(source) => anyhow::Error::new(source).context(
                "the pump answered the re-provisioning, but not with the secret agreed here: \
                 the new key files were removed; check its key epochs with `thecal info`",
            ),
            ReprovisionError::Uncertain(source) => anyhow::Error::new(source).context(
                "the pump may or may not have been re-provisioned: the new key files are kept \
                 beside the old ones (.key.next), and the next command settles which are in force",
            ),
            other => anyhow::Error::new(other),
        })?;
    let (serial, epoch) = (&done.serial, done.epoch);
    if g.json {
        let rows: Vec<RotatedJson> = done
            .key_files
            .iter()
            .map(|(role, path)| RotatedJson {
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
    out::key_files(&done.key_files)?;
    Ok(())
}
