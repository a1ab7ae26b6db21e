//! `thecal bolus cancel`, the refill warnings and a halted pump, as the `thecal` binary
//! shows them against the simulated pump behind a real pty (issue 15, items 5 and 6).

mod common;

use std::time::{Duration, Instant};

use common::{port, s, sim, thecal};
use thecal_device::sim::{Fault, SimOptions, Simulator};

fn on(sim: &Simulator, args: &[&str]) -> common::Run {
    let p = port(sim);
    let mut all = vec!["--port", p.as_str(), "--key-file", s(common::key_file(sim))];
    all.extend_from_slice(args);
    thecal(&all)
}

fn reservoir_nl(sim: &Simulator) -> u64 {
    on(sim, &["--json", "status"]).json()["reservoir_nl"]
        .as_u64()
        .unwrap()
}

#[test]
fn bolus_cancel_asks_cancels_and_says_what_was_delivered() {
    let sim = sim();
    // Nothing to cancel: said before anything is sent.
    let none = on(&sim, &["bolus", "cancel", "--yes"]);
    assert_eq!(none.code, Some(2), "{none:?}");
    assert!(none.stderr.contains("no bolus is running"), "{none:?}");

    on(
        &sim,
        &[
            "bolus", "single", "--dose", "50 µg", "--over", "2 h", "--yes",
        ],
    )
    .ok();
    // Not confirmed (stdin is not a terminal): the bolus runs on.
    let unconfirmed = on(&sim, &["bolus", "cancel"]);
    assert_eq!(unconfirmed.code, Some(7), "{unconfirmed:?}");
    assert!(
        unconfirmed
            .stderr
            .contains("Cancel the running single bolus"),
        "{unconfirmed:?}"
    );
    let status = on(&sim, &["--json", "status"]).json();
    assert_eq!(status["bolus"]["kind"], "single", "{status}");
    let text = on(&sim, &["status"]);
    assert!(
        text.ok().contains("single bolus: "),
        "clinical words, not enum names: {text:?}"
    );

    let v = on(&sim, &["--json", "bolus", "cancel", "--yes"]).json();
    assert_eq!(v["kind"], "single", "{v}");
    assert_eq!(v["end"], "cancelled", "{v}");
    assert_eq!(v["planned_nl"], 100_000, "{v}");
    assert!(v["delivered_nl"].as_u64().unwrap() < 100_000, "{v}");
    let status = on(&sim, &["--json", "status"]).json();
    assert!(status["bolus"].is_null(), "{status}");
    let log = on(&sim, &["log"]);
    assert!(
        log.ok().contains("single bolus cancelled by clinician"),
        "{log:?}"
    );
    // Cancelled once: a second cancel has nothing to end.
    let again = on(&sim, &["bolus", "cancel", "--yes"]);
    assert_eq!(again.code, Some(2), "{again:?}");

    // A human answer names what was delivered.
    on(
        &sim,
        &[
            "bolus", "single", "--dose", "25 µg", "--over", "1 h", "--yes",
        ],
    )
    .ok();
    let out = on(&sim, &["bolus", "cancel", "--yes"]);
    let text = out.ok();
    assert!(text.contains("Bolus cancelled: single bolus"), "{text}");
    assert!(text.contains("of 0.05 mL delivered"), "{text}");
    sim.shutdown().unwrap();
}

#[test]
fn refill_refuses_an_empty_volume_and_warns_about_odd_ones() {
    let sim = sim();
    let before = reservoir_nl(&sim);
    // 0 mL: refused before the pump is even asked.
    let empty = on(&sim, &["refill", "--volume", "0 mL", "--yes"]);
    assert_eq!(empty.code, Some(2), "{empty:?}");
    assert!(
        empty.stderr.contains("would leave the reservoir empty"),
        "{empty:?}"
    );
    assert_eq!(reservoir_nl(&sim), before);
    // 1 mL when the pump expects about 18 mL: a warning and a question (not answered).
    let low = on(&sim, &["refill", "--volume", "1 mL"]);
    assert_eq!(low.code, Some(7), "{low:?}");
    assert!(low.stderr.contains("WARNING"), "{low:?}");
    assert!(low.stderr.contains("far below"), "{low:?}");
    assert!(low.stderr.contains("despite the warnings"), "{low:?}");
    assert_eq!(reservoir_nl(&sim), before);
    // 25 mL into a 20 mL reservoir: warned, then refused by the pump.
    let over = on(&sim, &["refill", "--volume", "25 mL", "--yes"]);
    assert!(
        over.stderr.contains("more than the reservoir holds"),
        "{over:?}"
    );
    assert_eq!(over.code, Some(3), "{over:?}");
    // An ordinary refill: no warning.
    let fine = on(&sim, &["refill", "--volume", "20 mL", "--yes"]);
    fine.ok();
    assert!(!fine.stderr.contains("WARNING"), "{fine:?}");
    sim.shutdown().unwrap();
}

#[test]
fn refill_warns_when_a_bridge_reaches_the_new_daily_limit_in_the_first_day() {
    let sim = sim();
    // The prescription in force at twice the concentration with a 400 µg/day limit:
    // basal (about 198 µg a day) and every allowed bolus (100 µg) fit; a bridge of
    // 0.25 mL of the old solution (125 µg) does not.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baclofen-1000.toml");
    let text = on(&sim, &["prescription", "--toml"]).ok().to_string();
    assert!(text.contains("concentration = \"500 µg/mL\""), "{text}");
    assert!(text.contains("daily_limit = \"600 µg/day\""), "{text}");
    let stronger = text
        .replace(
            "concentration = \"500 µg/mL\"",
            "concentration = \"1000 µg/mL\"",
        )
        .replace(
            "daily_limit = \"600 µg/day\"",
            "daily_limit = \"400 µg/day\"",
        );
    std::fs::write(&file, stronger).unwrap();
    let refill = |bridge: &str| {
        on(
            &sim,
            &[
                "refill",
                "--volume",
                "18 mL",
                "--schedule",
                s(&file),
                "--bridge-volume",
                bridge,
            ],
        )
    };
    let warned = refill("0.25 mL");
    assert_eq!(warned.code, Some(7), "{warned:?}");
    assert!(warned.stderr.contains("WARNING"), "{warned:?}");
    assert!(warned.stderr.contains("WITHHOLD"), "{warned:?}");
    assert!(warned.stderr.contains("125 µg"), "{warned:?}");
    // A bridge that fits: no warning (still asked, as every refill is).
    let fits = refill("0.1 mL");
    assert_eq!(fits.code, Some(7), "{fits:?}");
    assert!(!fits.stderr.contains("WARNING"), "{fits:?}");
    sim.shutdown().unwrap();
}

#[test]
fn a_halted_pump_says_since_when_basal_is_not_delivered() {
    let sim = {
        let _guard = common::fork_guard();
        Simulator::start(SimOptions {
            seed: 7,
            speed: 3_000,
            fault: Some(Fault::MotorStall),
            ..Default::default()
        })
        .expect("simulator starts")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = on(&sim, &["--json", "status"]).json();
        if status["therapy"] == "halted" {
            break status;
        }
        assert!(Instant::now() < deadline, "never halted: {status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["halted_by"], "motor_stall", "{status}");
    let since = status["halted_since"].as_str().expect("halted_since");
    let text = on(&sim, &["status"]);
    let text = text.ok();
    assert!(
        text.contains("HALTED by the motor stall alarm since"),
        "{text}"
    );
    assert!(text.contains("programmed, NOT delivered since"), "{text}");
    assert!(text.contains("none while delivery is halted"), "{text}");
    // The reservoir plot draws it halted: flat, labelled, no low or empty date.
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("reservoir.svg");
    on(&sim, &["plot", "reservoir", "--out", s(&svg)]).ok();
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.contains("DELIVERY HALTED by the motor stall alarm since"),
        "{drawn}"
    );
    assert!(
        !drawn.contains("empty: "),
        "no empty date for a halted pump"
    );
    // The instant does not move with the question.
    std::thread::sleep(Duration::from_millis(300));
    let again = on(&sim, &["--json", "status"]).json();
    assert_eq!(again["halted_since"].as_str(), Some(since), "{again}");
    sim.shutdown().unwrap();
}

#[test]
fn basal_withheld_by_the_daily_limit_is_shown_while_therapy_runs() {
    // A fast clock: 500 µg of the 600 µg/day limit as a bolus, then about 200 µg/day of
    // basal fills the limit within the day.
    let sim = {
        let _guard = common::fork_guard();
        Simulator::start(SimOptions {
            seed: 7,
            speed: 20_000,
            ..Default::default()
        })
        .expect("simulator starts")
    };
    on(
        &sim,
        &[
            "bolus", "single", "--dose", "500 µg", "--over", "1 h", "--yes",
        ],
    )
    .ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = on(&sim, &["--json", "status"]).json();
        if !status["withheld"].is_null() {
            break status;
        }
        assert!(Instant::now() < deadline, "never withheld: {status}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["therapy"], "running", "{status}");
    assert!(status["critical_alarm"].as_bool().unwrap(), "{status}");
    assert!(status["withheld"]["since"].is_string(), "{status}");
    let text = on(&sim, &["status"]);
    let text = text.ok();
    assert!(
        text.contains("running, but BASAL WITHHELD by the daily limit since"),
        "{text}"
    );
    let alarms = on(&sim, &["--json", "alarms"]).json();
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "delivery_withheld" && a["critical"] == true),
        "{alarms}"
    );
    let log = on(&sim, &["--json", "log"]).json();
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "basal_withheld"),
        "{log}"
    );
    on(&sim, &["alarms", "ack", "delivery-withheld"]).ok();
    sim.shutdown().unwrap();
}
