//! The port vanishes in the middle of a command (a USB telemetry head unplugged): the host
//! reports it within its timeout and never hangs; the pump keeps dosing.

#[macro_use]
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{call_bound, clinician, through_link};
use thecal_host::{Client, ClientConfig, Error};
use thecal_link::impair::Impairment;
use thecal_protocol::message::BolusRequest;
use thecal_protocol::units::{Minutes, Nanograms};
use tokio::io::AsyncBufReadExt;

/// One test at a time: the second spawns a process, which must not inherit the ptys the
/// first one is opening.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CONFIG: ClientConfig = ClientConfig {
    timeout: Duration::from_millis(500),
    retries: 2,
};

/// A slow link: a request is still on its way when the cable is pulled.
const SLOW: Impairment = Impairment {
    baud: Some(9_600),
    latency: 150_000_000,
    ..Impairment::CLEAN
};

fn bolus() -> BolusRequest {
    BolusRequest::Single {
        dose: Nanograms::from_ug(5),
        duration: Minutes(10),
    }
}

/// The reservoir volume (nL), read over a fresh, direct connection.
async fn reservoir(sim: &thecal_device::sim::Simulator) -> u32 {
    let port = thecal_host::serial::open(&sim.path().display().to_string(), 115_200).unwrap();
    let (mut client, _) = Client::connect(port, CONFIG, clinician(sim)).await.unwrap();
    let v = read!(client, reservoir()).volume.0;
    let _ = client.close().await;
    v
}

/// The pump keeps delivering: its reservoir keeps falling after the unplug.
async fn still_dosing(sim: &thecal_device::sim::Simulator) {
    let before = reservoir(sim).await;
    // At 3 600× a real second is an hour of basal (about 16 µL of the demo schedule).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = reservoir(sim).await;
    assert!(
        after < before,
        "the pump stopped dosing: {before} -> {after} nL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplugging_the_link_mid_command_is_reported_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let sim = common::sim(3_600, 11);
    for request in 0..3 {
        let (mut client, link) = through_link(&sim, SLOW, 11, CONFIG).await;
        let p = read!(client, prescription());
        let call = async {
            match request {
                0 => client.bolus(bolus()).await.map(drop),
                1 => client.status().await.map(drop),
                _ => client
                    .write_prescription(p.prescription.draft().clone(), p.revision)
                    .await
                    .map(drop),
            }
        };
        let unplug = async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            link.unplug().await
        };
        let (result, _) =
            tokio::time::timeout(call_bound(CONFIG), async { tokio::join!(call, unplug) })
                .await
                .expect("the host hung after the unplug");
        match result {
            // A therapy change in flight: the pump may or may not have it.
            Err(Error::Uncertain { .. }) if request != 1 => {}
            // A read: the link error itself.
            Err(Error::Io(_)) if request == 1 => {}
            other => panic!("request {request}: {other:?}"),
        }
        // The next command on the dead link fails at once too.
        let again = tokio::time::timeout(call_bound(CONFIG), client.status())
            .await
            .expect("the host hung on a dead link");
        assert!(again.is_err());
    }
    still_dosing(&sim).await;
    sim.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_thecal_link_mid_command_is_reported_within_the_timeout() {
    let _one = ONE_AT_A_TIME.lock().await;
    let sim = common::sim(3_600, 12);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_thecal-link"))
        .args(["--device", &sim.path().display().to_string()])
        .args(["--baud", "9600", "--latency-ms", "150", "--seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("thecal-link starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let path = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("thecal-link prints its pty")
        .unwrap()
        .expect("a first line");
    let port = thecal_host::serial::open(&path, 9_600).unwrap();
    let (mut client, _) = Client::connect(port, CONFIG, clinician(&sim))
        .await
        .expect("a session through thecal-link");
    read!(client, status());
    let call = client.bolus(bolus());
    let kill = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let pid = child.id().unwrap();
        // SIGKILL: no chance to say goodbye, like a pulled cable.
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    };
    let (result, ()) = tokio::time::timeout(call_bound(CONFIG), async { tokio::join!(call, kill) })
        .await
        .expect("the host hung after thecal-link died");
    assert!(matches!(result, Err(Error::Uncertain { .. })), "{result:?}");
    let _ = child.wait().await;
    still_dosing(&sim).await;
    sim.shutdown().unwrap();
}
