//! `thecal update` and `thecal info` against the simulated pump over a real pty: an
//! update installed at the pump's moment with therapy kept, refusals in plain words
//! with nothing changed, a transfer resumed after a broken link, and a rollback of an
//! image that does not confirm itself.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{connect, port, s, thecal};
use thecal_device::sim::{SimOptions, Simulator};
use thecal_host::workflow::update::Package;
use thecal_protocol::message::endpoint::{UpdateBegin, UpdateChunk};
use thecal_protocol::message::Version;
use thecal_protocol::update::{self, Board, ImageHeader, KeyKind, DEV_SECRET_KEY};

fn write_package(dir: &Path, name: &str, board: Board, minor: u8, security: u32) -> PathBuf {
    let image: Vec<u8> = (0..40_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let header = ImageHeader {
        key: KeyKind::Development,
        board,
        version: Version {
            major: 1,
            minor,
            patch: 0,
        },
        security,
        length: image.len() as u32,
        sha256: update::sha256(&image),
    };
    let path = dir.join(name);
    let bytes = Package::to_bytes(&update::sign(&header, &DEV_SECRET_KEY), &image);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn on(sim: &Simulator, args: &[&str]) -> common::Run {
    let p = port(sim);
    let mut all = vec!["--port", p.as_str(), "--key-file", s(common::key_file(sim))];
    all.extend_from_slice(args);
    thecal(&all)
}

/// `info --json` until `done` holds (the pump restarts at its own moment).
fn info_until(sim: &Simulator, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = on(sim, &["--json", "info"]);
        if run.code == Some(0) {
            let v = run.json();
            if done(&v) || Instant::now() > deadline {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "no answer: {run:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(state: &Path, self_test_fails: bool) -> Simulator {
    let _guard = common::fork_guard();
    Simulator::start(SimOptions {
        seed: 1,
        state: Some(state.to_path_buf()),
        update_self_test_fails: self_test_fails,
        ..Default::default()
    })
    .expect("simulator starts")
}

#[test]
fn an_update_is_installed_with_therapy_kept_and_info_shows_both_slots() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let pkg = write_package(dir.path(), "fw.thfw", Board::SIM, 3, 1);
    let sim = start(&state, false);
    let before = on(&sim, &["--json", "info"]).json();
    assert_eq!(before["slots"]["active"]["state"], "active, confirmed");
    assert!(before["slots"]["update"].is_null());
    let prescription = on(&sim, &["--json", "prescription"]).json();
    let reservoir = on(&sim, &["--json", "reservoir"]).json();

    let done = on(&sim, &["--json", "update", s(&pkg), "--yes"]).json();
    assert_eq!(done["to"], "1.3.0");
    assert_eq!(done["pending"], true);

    let after = info_until(&sim, |v| v["firmware"] == "1.3.0");
    assert_eq!(after["firmware"], "1.3.0", "{after:#}");
    assert_eq!(after["slots"]["active"]["version"], "1.3.0");
    assert_eq!(after["slots"]["active"]["state"], "active, confirmed");
    assert_eq!(after["slots"]["update"]["state"], "previous image");
    assert_eq!(after["slots"]["update"]["version"], before["firmware"]);
    // The same prescription in force, the reservoir estimate not lost.
    assert_eq!(on(&sim, &["--json", "prescription"]).json(), prescription);
    let now = on(&sim, &["--json", "reservoir"]).json();
    assert_eq!(now["capacity_nl"], reservoir["capacity_nl"]);
    assert!(now["volume_nl"].as_u64() <= reservoir["volume_nl"].as_u64());
    assert!(
        now["volume_nl"].as_u64().unwrap() + 100_000 > reservoir["volume_nl"].as_u64().unwrap()
    );
    sim.shutdown().unwrap();
}

#[test]
fn bad_packages_are_refused_in_plain_words_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let sim = start(&state, false);
    let good = write_package(dir.path(), "good.thfw", Board::SIM, 3, 1);

    let mut forged = std::fs::read(&good).unwrap();
    forged[100] ^= 1; // in the signature
    let forged_path = dir.path().join("forged.thfw");
    std::fs::write(&forged_path, &forged).unwrap();
    let run = on(&sim, &["update", s(&forged_path), "--yes"]);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr.contains("signature not valid for this pump"),
        "{run:#?}"
    );

    let truncated = dir.path().join("short.thfw");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let run = on(&sim, &["update", s(&truncated), "--yes"]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("truncated"), "{run:#?}");

    let other = write_package(dir.path(), "nrf.thfw", Board::NRF52840_DK, 3, 1);
    let run = on(&sim, &["update", s(&other), "--yes"]);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr.contains("image is for board nrf52840-dk"),
        "{run:#?}"
    );

    let old = write_package(dir.path(), "old.thfw", Board::SIM, 9, 0);
    let run = on(&sim, &["update", s(&old), "--yes"]);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr
            .contains("security version 0 is below this pump's minimum 1"),
        "{run:#?}"
    );

    // Not confirmed (stdin is no terminal, no --yes): nothing sent.
    let run = on(&sim, &["update", s(&good)]);
    assert_ne!(run.code, Some(0));

    let info = on(&sim, &["--json", "info"]).json();
    assert!(info["slots"]["update"].is_null(), "{info:#}");
    assert_eq!(info["slots"]["active"]["state"], "active, confirmed");
    sim.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_broken_off_resumes_where_the_pump_stands() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let pkg_path = write_package(dir.path(), "fw.thfw", Board::SIM, 4, 1);
    let package = Package::parse(&std::fs::read(&pkg_path).unwrap()).unwrap();
    let sim = start(&state, false);
    {
        // A first programmer sends 10 chunks, then its link breaks.
        let mut client = connect(&sim).await;
        let header = heapless::Vec::from_slice(&package.header_bytes).unwrap();
        let p = client.call(UpdateBegin { header }).await.unwrap();
        assert_eq!(p.next, 0);
        let mut at = 0usize;
        for _ in 0..10 {
            let data = heapless::Vec::from_slice(&package.image[at..at + 512]).unwrap();
            at = client
                .call(UpdateChunk {
                    offset: at as u32,
                    data,
                })
                .await
                .unwrap()
                .next as usize;
        }
        assert_eq!(at, 5120);
    }
    let info = on(&sim, &["--json", "info"]).json();
    assert_eq!(
        info["slots"]["update"]["state"],
        "receiving, 5120 of 40000 bytes"
    );
    let run = on(&sim, &["update", s(&pkg_path), "--yes"]);
    assert!(
        run.ok()
            .contains("Resumed the transfer at byte 5120 of 40000"),
        "{run:#?}"
    );
    let after = info_until(&sim, |v| v["firmware"] == "1.4.0");
    assert_eq!(after["slots"]["active"]["version"], "1.4.0");
    sim.shutdown().unwrap();
}

#[test]
fn an_image_that_does_not_confirm_itself_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let pkg = write_package(dir.path(), "fw.thfw", Board::SIM, 5, 1);
    let sim = start(&state, true);
    let before = on(&sim, &["--json", "info"]).json();
    on(&sim, &["update", s(&pkg), "--yes"]).ok();
    let after = info_until(&sim, |v| {
        v["slots"]["update"]["state"] == "rolled back (did not confirm itself)"
    });
    assert_eq!(
        after["slots"]["active"]["version"], before["firmware"],
        "{after:#}"
    );
    assert_eq!(after["slots"]["active"]["state"], "active, confirmed");
    assert_eq!(after["slots"]["update"]["version"], "1.5.0");
    assert_eq!(after["firmware"], before["firmware"]);
    sim.shutdown().unwrap();
}
