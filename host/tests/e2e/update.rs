//! The QEMU image updated to a second build over the link, as a clinic would: `thecal
//! update` sends the signed package while the pump doses; the pump verifies it, restarts
//! into it (the bootloader swaps the slots), the new build confirms itself after its
//! self-test, and the same prescription, reservoir, keys and log are in force. Then the
//! shared checks run again against the new firmware. Last, a third build that fails its
//! self-test is installed the same way: the bootloader rolls it back and the second build
//! runs on, its therapy kept.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::checks::{self, Target};
use crate::qemu::Qemu;

/// Longest from the end of the transfer to the new build's confirmation.
const SWAP_LIMIT: Duration = Duration::from_secs(30);

/// Updates the pump behind `t` to `package` (the second build, 0.2.0) and checks that it
/// runs it, confirmed, with its therapy kept.
pub async fn to_second_build(t: &mut Target<'_>, vm: &RefCell<Qemu>, package: &Path) {
    let step = |name: &str| println!("[{}] {name}", t.name);
    step("update to a second build (thecal update), therapy kept");
    let before = t.thecal(&["--json", "info"]).json();
    assert_eq!(before["firmware"], "0.1.0", "{before:#}");
    assert_eq!(before["slots"]["active"]["state"], "active, confirmed");
    let prescription = t.thecal(&["--json", "prescription"]).json();
    let reservoir = t.thecal(&["--json", "reservoir"]).json();
    let log_before = t.thecal(&["--json", "log"]).json();

    let package = package.to_str().expect("utf-8 path");
    let started = Instant::now();
    let done = t.thecal(&["--json", "update", package, "--yes"]).json();
    let sent = started.elapsed();
    assert_eq!(done["from"], "0.1.0", "{done:#}");
    assert_eq!(done["to"], "0.2.0", "{done:#}");
    assert_eq!(done["pending"], true, "{done:#}");

    // The restart, the swap and the new build's self-test, on the debug UART.
    let debug = vm
        .borrow()
        .wait_debug("new firmware confirmed", 1, SWAP_LIMIT);
    assert!(
        debug.contains("restarting into the new firmware"),
        "{debug}"
    );
    // The bootloader checked the marked image with its own key before it swapped.
    assert!(
        debug.contains("thecal-qemu-boot: image 0.2.0 (security 1) verified: installing"),
        "{debug}"
    );
    assert!(debug.contains("thecal-qemu-boot: Swap"), "{debug}");
    assert!(
        debug.contains("thecal-qemu up (build second, firmware 0.2.0, security 1)"),
        "{debug}"
    );
    assert_eq!(
        debug.matches("factory image").count(),
        1,
        "the factory step ran once only:\n{debug}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "e2e: QEMU update of {} B: thecal update {:.1} s (pty, no line-rate pacing), \
         then restart, swap and self-test {:.1} s",
        done["bytes"],
        sent.as_secs_f64(),
        (started.elapsed() - sent).as_secs_f64()
    );

    let after = t.thecal(&["--json", "info"]).json();
    assert_eq!(after["firmware"], "0.2.0", "{after:#}");
    assert_eq!(after["slots"]["active"]["version"], "0.2.0");
    assert_eq!(after["slots"]["active"]["state"], "active, confirmed");
    assert_eq!(after["slots"]["update"]["version"], "0.1.0");
    assert_eq!(after["slots"]["update"]["state"], "previous image");
    // The same prescription; the reservoir estimate only went down, by little.
    assert_eq!(t.thecal(&["--json", "prescription"]).json(), prescription);
    let now = t.thecal(&["--json", "reservoir"]).json();
    assert_eq!(now["capacity_nl"], reservoir["capacity_nl"]);
    let (was, is) = (
        reservoir["volume_nl"].as_u64().expect("volume"),
        now["volume_nl"].as_u64().expect("volume"),
    );
    assert!(is <= was && is + 100_000 > was, "{was} nL -> {is} nL");
    // The log goes on from where it was, and says the pump restarted on its own.
    let log = t.thecal(&["--json", "log"]).json();
    let entries = log["entries"].as_array().expect("entries");
    let first_new = log_before["entries"]
        .as_array()
        .and_then(|e| e.last())
        .and_then(|e| e["index"].as_u64())
        .expect("a log before the update")
        + 1;
    let restart = entries
        .iter()
        .find(|e| e["index"].as_u64() >= Some(first_new) && e["event"] == "reset")
        .unwrap_or_else(|| panic!("no reset logged after the update: {log:#}"));
    assert_eq!(restart["cause"], "software", "{restart:#}");

    step("the shared checks again, on the second build");
    checks::identify(t).await;
    checks::status_battery_reservoir(t).await;
    checks::read_prescription(t).await;
    checks::cli(t).await;
}

/// Installs `package` (a build that fails its self-test, 0.3.0) on the pump behind `t`,
/// which runs the second build: the bootloader rolls it back, the second build runs
/// again, confirmed, with the same prescription, and says so.
pub async fn failing_build_rolled_back(t: &mut Target<'_>, vm: &RefCell<Qemu>, package: &Path) {
    println!(
        "[{}] an update that fails its self-test is rolled back by the bootloader",
        t.name
    );
    let prescription = t.thecal(&["--json", "prescription"]).json();
    let package = package.to_str().expect("utf-8 path");
    let done = t.thecal(&["--json", "update", package, "--yes"]).json();
    assert_eq!(done["to"], "0.3.0", "{done:#}");
    // Up once more as the second build, after the failing one's restart and the revert.
    let debug = vm.borrow().wait_debug(
        "thecal-qemu up (build second, firmware 0.2.0, security 1)",
        2,
        SWAP_LIMIT,
    );
    assert!(
        debug.contains("self-test of build failing failed: back to the previous image"),
        "{debug}"
    );
    // Two swaps for this update: the failing build in, the second build back.
    assert_eq!(
        debug.matches("thecal-qemu-boot: Swap").count(),
        3,
        "{debug}"
    );
    let info = t.thecal(&["--json", "info"]).json();
    assert_eq!(info["firmware"], "0.2.0", "{info:#}");
    assert_eq!(info["slots"]["active"]["state"], "active, confirmed");
    assert_eq!(info["slots"]["update"]["version"], "0.3.0");
    assert_eq!(
        info["slots"]["update"]["state"],
        "rolled back (did not confirm itself)"
    );
    assert_eq!(t.thecal(&["--json", "prescription"]).json(), prescription);
    checks::status_battery_reservoir(t).await;
}
