//! `thecal-sign`: makes a signed firmware package (header + image) for `thecal update`.
//!
//! With `--dev` it signs with the public development key
//! ([`thecal_protocol::update::DEV_SECRET_KEY`], committed on purpose): development
//! builds of the firmware and the simulator accept such packages, a firmware built with
//! `release-keys` refuses them. `--key-file FILE` signs with a release key (a file
//! holding the Ed25519 secret as 64 hex digits; kept on the manufacturer's signing
//! station, never in this repository).
//!
//! `cargo sign-image --dev --board sim --version 1.2.0 --security 1 IMAGE -o IMAGE.thfw`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use thecal_host::workflow::update::Package;
use thecal_protocol::message::Version;
use thecal_protocol::update::{self, Board, ImageHeader, KeyKind, DEV_SECRET_KEY};

/// Sign a firmware image for `thecal update`.
#[derive(Debug, Parser)]
#[command(name = "thecal-sign", disable_version_flag = true)]
struct Args {
    /// The image: the bytes the bootloader copies into the active slot (a raw binary,
    /// e.g. from `cargo objcopy -- -O binary`).
    image: PathBuf,
    /// Where to write the package.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The board the image is for: sim, qemu-mps2, nrf52840-dk.
    #[arg(long)]
    board: String,
    /// The firmware version, MAJOR.MINOR.PATCH (each 0-255).
    #[arg(long, value_name = "X.Y.Z")]
    version: String,
    /// The security version: pumps refuse images below the one they run. Raise it with
    /// every fix that an older image must not be able to undo.
    #[arg(long, value_name = "N")]
    security: u32,
    /// Sign with the public development key.
    #[arg(long, conflicts_with = "key_file")]
    dev: bool,
    /// Sign with the release secret in FILE (64 hex digits).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

fn version(text: &str) -> anyhow::Result<Version> {
    let parts: Vec<&str> = text.trim().split('.').collect();
    let [major, minor, patch] = parts.as_slice() else {
        bail!("version `{text}` is not MAJOR.MINOR.PATCH");
    };
    let n = |s: &str| {
        s.parse::<u8>()
            .with_context(|| format!("version `{text}`: `{s}` is not a number 0-255"))
    };
    Ok(Version {
        major: n(major)?,
        minor: n(minor)?,
        patch: n(patch)?,
    })
}

fn secret(path: &PathBuf) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    let hex = text.trim();
    if hex.len() != 64 {
        bail!("{}: a secret key is 64 hex digits", path.display());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .with_context(|| format!("{}: not hex", path.display()))?;
    }
    Ok(key)
}

fn run(a: Args) -> anyhow::Result<()> {
    let board = Board::from_name(&a.board)
        .with_context(|| format!("unknown board `{}` (sim, qemu-mps2, nrf52840-dk)", a.board))?;
    let (key, kind) = match (&a.key_file, a.dev) {
        (Some(path), _) => (secret(path)?, KeyKind::Release),
        (None, true) => (DEV_SECRET_KEY, KeyKind::Development),
        (None, false) => bail!("choose the key: --dev (development) or --key-file FILE (release)"),
    };
    if kind == KeyKind::Release && key == DEV_SECRET_KEY {
        bail!("the key file holds the development key: use --dev");
    }
    let image =
        std::fs::read(&a.image).with_context(|| format!("cannot read {}", a.image.display()))?;
    let length = u32::try_from(image.len()).context("image larger than 4 GiB")?;
    if length == 0 {
        bail!("{} is empty", a.image.display());
    }
    let header = ImageHeader {
        key: kind,
        board,
        version: version(&a.version)?,
        security: a.security,
        length,
        sha256: update::sha256(&image),
    };
    let signed = update::sign(&header, &key);
    let package = Package::to_bytes(&signed, &image);
    std::fs::write(&a.output, &package)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    eprintln!(
        "{}: firmware {} for {}, security {}, {} bytes, signed with the {} key (public key {})",
        a.output.display(),
        header.version,
        board.name(),
        header.security,
        length,
        if kind == KeyKind::Development {
            "development"
        } else {
            "release"
        },
        update::public_key(&key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
