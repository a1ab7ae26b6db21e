//! One end-to-end suite, two targets: the same checks ([`checks::run_all`]) against the
//! simulated pump behind a pty and against the QEMU firmware (`device/firmware/qemu-mps2`
//! on `mps2-an385`, its UART on a pty), through the `thecal_host::Client` over
//! tokio-serial and through the `thecal` binary with `--port`.
//!
//! The QEMU half needs `THECAL_QEMU_IMAGES` (set by `.ci/run`, which builds the images
//! with `.ci/qemu-images`) and `qemu-system-arm`; see [`qemu`] for what happens without
//! them. After the shared checks it updates the QEMU image to a second build over the
//! link and runs checks again on the new firmware ([`update`]).

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod qemu;
mod update;

use std::io::Write;
use std::path::Path;

use checks::Target;
use thecal_host::{serial, Client, KeyFile, RoleKey};
use thecal_protocol::message::Role;
use thecal_protocol::session::{
    role_key, Ephemeral, ProvisionKeys, ProvisionTranscript, Secret, FIRST_EPOCH,
};

/// The factory's ephemeral X25519 secret the QEMU firmware provisions itself with at
/// boot: a copy of `DEVELOPMENT_FACTORY_EPHEMERAL` in
/// `device/firmware/qemu-mps2/src/main.rs` (public, development only; keep the two
/// equal). With the public key the pump reports, it gives the device secret.
const QEMU_DEVELOPMENT_FACTORY_EPHEMERAL: [u8; 32] = *b"thecal DEVELOPMENT factory -QEMU";
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
    let key_dir = common::key_file(&sim)
        .parent()
        .expect("the simulator's key directory")
        .to_path_buf();
    checks::run_all(&mut Target {
        name: "simulator",
        port: &port,
        key: common::key(&sim, Role::Clinician),
        key_dir: &key_dir,
        presence: &mut || sim.apply_presence(),
    })
    .await;
    sim.shutdown().unwrap();
}

/// The device secret of the QEMU firmware on `port`: what its development provisioning
/// agreed with the static key it reports in `Identify`.
async fn qemu_device_secret(port: &str) -> Secret {
    let stream = serial::open(port, serial::DEFAULT_BAUD).expect("the QEMU pty opens");
    let (_, identity) = Client::connect_unauthenticated(stream, checks::CONFIG)
        .await
        .expect("the QEMU firmware identifies itself");
    assert_eq!(identity.serial.as_str(), QEMU_SERIAL);
    let factory = Ephemeral::from_bytes(QEMU_DEVELOPMENT_FACTORY_EPHEMERAL);
    let ephemeral = factory.public();
    let dh = factory
        .agree(&identity.public_key)
        .expect("the firmware's static key is not of low order");
    let keys = ProvisionKeys::derive(
        &dh,
        &ProvisionTranscript {
            serial: QEMU_SERIAL,
            pump_public: &identity.public_key,
            ephemeral: &ephemeral,
        },
    );
    keys.device_secret
}

/// Writes the key file of every role of epoch 1 from `secret` into `dir`, named as
/// `thecal provision` names them; returns the clinician key.
fn write_qemu_key_files(secret: &Secret, dir: &Path) -> RoleKey {
    for role in Role::KEYED {
        let key = RoleKey {
            role,
            epoch: FIRST_EPOCH,
            key: role_key(secret, role, FIRST_EPOCH, QEMU_SERIAL),
        };
        KeyFile::create(
            &dir.join(KeyFile::file_name(QEMU_SERIAL, role)),
            QEMU_SERIAL,
            &key,
        )
        .unwrap();
    }
    RoleKey {
        role: Role::Clinician,
        epoch: FIRST_EPOCH,
        key: role_key(secret, Role::Clinician, FIRST_EPOCH, QEMU_SERIAL),
    }
}

#[tokio::test]
async fn qemu_firmware() {
    let images = match qemu::firmware() {
        qemu::Firmware::Images(images) => images,
        qemu::Firmware::Missing(why) => {
            // In CI the QEMU half must run; locally it may be skipped, loudly.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but the QEMU end-to-end suite cannot run: {why}"
            );
            visible(&format!(
                "e2e: SKIPPED the QEMU firmware half of the suite: {why}. \
                 Run .ci/run, or .ci/qemu-images DIR and set {}=DIR.",
                qemu::IMAGES_VAR
            ));
            return;
        }
    };
    let vm = qemu::Qemu::boot(&images);
    let port = vm.port().to_string();
    println!("QEMU firmware {} on {port}", images.factory.display());
    // The keys of the development provisioning, and their key files for the CLI.
    let secret = qemu_device_secret(&port).await;
    let keys = tempfile::tempdir().unwrap();
    let key = write_qemu_key_files(&secret, keys.path());
    let vm = std::cell::RefCell::new(vm);
    let mut target = Target {
        name: "qemu",
        port: &port,
        key,
        key_dir: keys.path(),
        presence: &mut || vm.borrow_mut().apply_presence(),
    };
    checks::run_all(&mut target).await;
    update::to_second_build(&mut target, &vm, &images.second).await;
    update::failing_build_rolled_back(&mut target, &vm, &images.failing).await;
    drop(target);
    let vm = vm.into_inner();
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
