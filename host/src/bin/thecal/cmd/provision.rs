//! `thecal provision --key-dir DIR`

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use thecal_host::client::Agreement;
use thecal_host::keys::KeyFile;
use thecal_host::Error;
use thecal_protocol::message::Role;
use thecal_protocol::session::{FIRST_EPOCH, PUBLIC_LEN};

use crate::cmd::UsageError;
use crate::out;
use crate::session::{Access, Global, Session};

/// Provision a fresh pump (factory step).
///
/// Agrees a device secret with the pump's static key (X25519 with a fresh ephemeral key:
/// the secret never crosses the link, an eavesdropper learns nothing), writes the
/// patient, clinician and service key files of epoch 1 derived from it (mode 0600,
/// `SERIAL.ROLE.key`) into DIR, then sends the ephemeral public key; the pump accepts one
/// only while it has no secret, and confirms it derived the same. If the pump refuses,
/// the key files are removed again.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the key files: created (mode 0700) if missing; must not hold any
    /// `.key` file yet.
    #[arg(long, value_name = "DIR")]
    key_dir: PathBuf,
    /// The pump's public key as printed on its label (64 hex digits). Without it, the key
    /// the pump reports is used and printed, to be compared with the label.
    #[arg(long, value_name = "HEX")]
    pump_key: Option<String>,
}

/// The pump's static public key: the one on the label, which must be the one the pump
/// on the link reports, or that one.
pub fn pump_public(
    label: Option<&str>,
    reported: &[u8; PUBLIC_LEN],
) -> anyhow::Result<[u8; PUBLIC_LEN]> {
    if reported == &[0; PUBLIC_LEN] {
        anyhow::bail!("the pump reports no static public key: it cannot be provisioned yet");
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
        return Err(UsageError("--pump-key must be 64 hex digits".into()).into());
    }
    if &key != reported {
        anyhow::bail!(
            "the pump on the link reports public key {}, not the one given with --pump-key: \
             it is not the pump of that label (or the link is not to the pump); nothing was sent",
            hex(reported)
        );
    }
    Ok(key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct ProvisionJson {
    serial: String,
    key_files: BTreeMap<&'static str, String>,
}

pub async fn run(a: Args, g: &Global) -> anyhow::Result<()> {
    // Checked before the port is even opened.
    prepare_dir(&a.key_dir)?;
    let mut s = Session::open(g, Access::Plain).await?;
    let result = provision(&a, &mut s, g).await;
    let closed = s.close().await;
    result.and(closed)
}

/// Refuses a key directory that already holds key files; creates a missing one.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the key directory {}", dir.display()));
    }
    if !dir.is_dir() {
        return Err(UsageError(format!("--key-dir {} is not a directory", dir.display())).into());
    }
    let mut keys: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the key directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort();
    Err(UsageError(format!(
        "{} already holds key files ({}): provisioning writes its key files only into a \
         directory without any, so no key is overwritten or mixed up with another pump's; \
         give another --key-dir",
        dir.display(),
        keys.join(", ")
    ))
    .into())
}

async fn provision(a: &Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let serial = s.identity.serial.to_string();
    let public = pump_public(a.pump_key.as_deref(), &s.identity.public_key)?;
    let agreement = Agreement::new(&serial, &public)?;
    // The key files first: a pump provisioned with a secret nobody kept could never be
    // opened again.
    let mut written: Vec<(Role, PathBuf)> = Vec::new();
    for role in Role::KEYED {
        let path = a.key_dir.join(KeyFile::file_name(&serial, role));
        if let Err(e) = KeyFile::create(&path, &serial, &agreement.role_key(role, FIRST_EPOCH)) {
            remove(&written);
            return Err(e.into());
        }
        written.push((role, path));
    }
    match s.client.provision(&agreement).await {
        Ok(()) => {}
        // Certainly not stored: the files are of no use.
        Err(
            e @ (Error::AlreadyProvisioned | Error::Refused { .. } | Error::ProvisionNotConfirmed),
        ) => {
            remove(&written);
            return Err(anyhow::Error::new(e).context(format!(
                "provisioning pump {serial} failed; no key file was kept"
            )));
        }
        Err(e) => {
            let clinician = written
                .iter()
                .find(|(r, _)| *r == Role::Clinician)
                .map_or(String::new(), |(_, p)| p.display().to_string());
            return Err(anyhow::Error::new(e).context(format!(
                "the pump may or may not hold the new secret: the key files are kept in {}; \
                 check with `thecal --key-file {clinician} status`",
                a.key_dir.display()
            )));
        }
    }
    if g.json {
        return out::json(&ProvisionJson {
            serial,
            key_files: written
                .iter()
                .map(|(r, p)| (r.name(), p.display().to_string()))
                .collect(),
        });
    }
    outln!("Pump {serial} is provisioned (checked with a service-key handshake).")?;
    if a.pump_key.is_none() {
        outln!(
            "Pump public key {} (as the pump reported it: compare with its label).",
            hex(&public)
        )?;
    }
    outln!("Role key files, mode 0600:")?;
    let rows: Vec<(&str, String)> = written
        .iter()
        .map(|(r, p)| (r.name(), p.display().to_string()))
        .collect();
    out::fields(&rows)?;
    outln!(
        "Keep them secret: whoever holds one acts as that role on this pump. The device \
         secret never crossed the link and was kept nowhere but in the pump."
    )?;
    Ok(())
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
        assert_eq!(pump_public(None, &reported).unwrap(), reported);
        assert_eq!(pump_public(Some(&text), &reported).unwrap(), reported);
        let padded = format!(" {} \n", text.to_uppercase());
        assert_eq!(pump_public(Some(&padded), &reported).unwrap(), reported);
        // Another pump's label: refused, naming the key on the link.
        let other = hex(&[0x11; PUBLIC_LEN]);
        let e = pump_public(Some(&other), &reported)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&text) && e.contains("nothing was sent"), "{e}");
        // Not a key at all.
        for bad in [&text[..62], "zz".repeat(32).as_str(), ""] {
            let e = pump_public(Some(bad), &reported).unwrap_err();
            assert!(e.downcast_ref::<UsageError>().is_some(), "{bad}: {e}");
        }
        // A pump without a static key cannot be provisioned.
        let e = pump_public(None, &[0; PUBLIC_LEN]).unwrap_err().to_string();
        assert!(e.contains("no static public key"), "{e}");
    }
}
