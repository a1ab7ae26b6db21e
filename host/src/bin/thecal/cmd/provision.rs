//! `thecal provision --key-dir DIR`

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use thecal_host::workflow::provision::{
    self, hex, KeyDirError, ProvisionError, Provisioned, PumpKeyError,
};
use thecal_protocol::message::Role;

use crate::out;
use crate::session::{Access, Global, Session};
use crate::usage::UsageError;

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

/// The error of the pump's static key in the words of this command line.
pub fn pump_key_error(e: PumpKeyError) -> anyhow::Error {
    match e {
        PumpKeyError::LabelNotHex => UsageError("--pump-key must be 64 hex digits".into()).into(),
        PumpKeyError::LabelMismatch { reported } => anyhow::anyhow!(
            "the pump on the link reports public key {}, not the one given with --pump-key: \
             it is not the pump of that label (or the link is not to the pump); nothing was sent",
            hex(&reported)
        ),
        other => anyhow::Error::new(other),
    }
}

#[derive(Serialize)]
struct ProvisionJson {
    serial: String,
    key_files: BTreeMap<&'static str, String>,
}

pub async fn run(a: Args, g: &Global) -> anyhow::Result<()> {
    // Checked before the port is even opened.
    provision::prepare_dir(&a.key_dir).map_err(key_dir_error)?;
    let mut s = Session::open(g, Access::Plain).await?;
    let result = provision(&a, &mut s, g).await;
    let closed = s.close().await;
    result.and(closed)
}

/// A key directory that cannot take the key files, in the words of this command line.
fn key_dir_error(e: KeyDirError) -> anyhow::Error {
    match e {
        KeyDirError::NotADirectory { dir } => {
            UsageError(format!("--key-dir {} is not a directory", dir.display())).into()
        }
        KeyDirError::HoldsKeys { dir, files } => UsageError(format!(
            "{} already holds key files ({}): provisioning writes its key files only into a \
             directory without any, so no key is overwritten or mixed up with another pump's; \
             give another --key-dir",
            dir.display(),
            files.join(", ")
        ))
        .into(),
        other => anyhow::Error::new(other),
    }
}

async fn provision(a: &Args, s: &mut Session, g: &Global) -> anyhow::Result<()> {
    let plan =
        provision::plan(&s.identity, a.pump_key.as_deref(), &a.key_dir).map_err(pump_key_error)?;
    let done = provision::execute(&mut s.client, &plan)
        .await
        .map_err(provision_error)?;
    print(&done, a, g)
}

fn provision_error(e: ProvisionError) -> anyhow::Error {
    match e {
        ProvisionError::Agreement(e) => e.into(),
        ProvisionError::KeyFile(e) => e.into(),
        ProvisionError::Uncertain {
            key_dir,
            key_files,
            source,
        } => {
            let clinician = key_files
                .iter()
                .find(|(r, _)| *r == Role::Clinician)
                .map_or(String::new(), |(_, p)| p.display().to_string());
            anyhow::Error::new(source).context(format!(
                "the pump may or may not hold the new secret: the key files are kept in {}; \
                 check with `thecal --key-file {clinician} status`",
                key_dir.display()
            ))
        }
        other => anyhow::Error::new(other),
    }
}

fn print(done: &Provisioned, a: &Args, g: &Global) -> anyhow::Result<()> {
    let serial = &done.serial;
    if g.json {
        return out::json(&ProvisionJson {
            serial: serial.clone(),
            key_files: done
                .key_files
                .iter()
                .map(|(r, p)| (r.name(), p.display().to_string()))
                .collect(),
        });
    }
    outln!("Pump {serial} is provisioned (checked with a service-key handshake).")?;
    if a.pump_key.is_none() {
        outln!(
            "Pump public key {} (as the pump reported it: compare with its label).",
            hex(&done.public)
        )?;
    }
    outln!("Role key files, mode 0600:")?;
    out::key_files(&done.key_files)?;
    outln!(
        "Keep them secret: whoever holds one acts as that role on this pump. The device \
         secret never crossed the link and was kept nowhere but in the pump."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use thecal_host::workflow::provision::pump_public;
    use thecal_protocol::session::PUBLIC_LEN;

    #[test]
    fn the_label_key_must_be_the_key_the_pump_reports() {
        let pump_public = |label: Option<&str>, reported: &[u8; PUBLIC_LEN]| {
            pump_public(label, reported).map_err(pump_key_error)
        };
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
