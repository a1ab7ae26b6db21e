//! One end-to-end suite, two targets: the same checks ([`checks::run_all`]) against the
//! simulated pump behind a pty and against the QEMU firmware (`device/firmware/qemu-mps2`
//! on `mps2-an385`, its UART on a pty), through the `thecal_host::Client` over
//! tokio-serial and through the `thecal` binary with `--port`.
//!
//! The QEMU half needs `THECAL_QEMU_ELF` (set by `.ci/run`, which builds the firmware)
//! and `qemu-system-arm`; see [`qemu`] for what happens without them.

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod qemu;

use std::io::Write;

use checks::Target;
use thecal_host::{KeyFile, RoleKey};
use thecal_protocol::message::Role;
use thecal_protocol::session::{role_key, Secret};

/// The QEMU firmware's fixed development device secret: a copy of
/// `DEVELOPMENT_DEVICE_SECRET` in `device/firmware/qemu-mps2/src/main.rs` (public,
/// development only; keep the two equal).
const QEMU_DEVELOPMENT_SECRET: [u8; 32] = *b"thecal DEVELOPMENT secret - QEMU";
/// The QEMU firmware's serial number.
const QEMU_SERIAL: &str = "QEMU0001";

/// Writes to the real stderr, past the test harness's output capture, so CI logs show
/// it even when the test passes.
fn visible(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[tokio::test]
async fn simulator() {
    let sim = common::sim();
    let port = common::port(&sim);
    checks::run_all(&mut Target {
        name: "simulator",
        port: &port,
        key: common::key(&sim, Role::Clinician),
        key_file: common::key_file(&sim),
        presence: &mut || sim.apply_presence(),
    })
    .await;
    sim.shutdown().unwrap();
}

#[tokio::test]
async fn qemu_firmware() {
    let elf = match qemu::firmware() {
        qemu::Firmware::Elf(elf) => elf,
        qemu::Firmware::Missing(why) => {
            // In CI the QEMU half must run; locally it may be skipped, loudly.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but the QEMU end-to-end suite cannot run: {why}"
            );
            visible(&format!(
                "e2e: SKIPPED the QEMU firmware half of the suite: {why}. \
                 Run .ci/run, or build device/firmware/qemu-mps2 and set {}.",
                qemu::ELF_VAR
            ));
            return;
        }
    };
    let mut vm = qemu::Qemu::boot(&elf);
    let port = vm.port().to_string();
    println!("QEMU firmware {} on {port}", elf.display());
    // The clinician key of the development secret, and its key file for the CLI.
    let key = RoleKey {
        role: Role::Clinician,
        key: role_key(
            &Secret(QEMU_DEVELOPMENT_SECRET),
            Role::Clinician,
            QEMU_SERIAL,
        ),
    };
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("qemu.clinician.key");
    KeyFile::create(&key_file, QEMU_SERIAL, key.role, &key.key).unwrap();
    checks::run_all(&mut Target {
        name: "qemu",
        port: &port,
        key,
        key_file: &key_file,
        presence: &mut || vm.apply_presence(),
    })
    .await;
    let output = vm.output();
    let debug = vm.stop();
    let (boot, serving) = qemu::stack_marks(&debug);
    let serving = serving.unwrap_or_else(|| {
        panic!("no stack high-water mark on the debug UART:\n{debug}\nQEMU output:\n{output}")
    });
    visible(&format!(
        "e2e: QEMU firmware stack high-water: {serving} B while serving the suite \
         (boot: {} B)",
        boot.map_or("?".to_string(), |b| b.to_string())
    ));
    assert!(
        serving < qemu::STACK_MEASURED,
        "the painted region overflowed"
    );
}
