//! The `thecal` binary against the built-in simulated pump: the refill's field record
//! (`--aspirated`) and the JSON error document of a command line the parser refuses.

mod common;

use common::{s, thecal};

#[test]
fn a_refill_aspirated_far_from_the_expected_volume_is_flagged_and_recorded_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let sim = ["--sim", "--sim-state", s(&state)];
    let run = |args: &[&str]| {
        let mut all = sim.to_vec();
        all.extend_from_slice(args);
        thecal(&all)
    };
    // The simulated pump holds 18 mL: 17.5 mL aspirated is within ±1.8 mL.
    let close = run(&[
        "--json",
        "refill",
        "--volume",
        "20 mL",
        "--aspirated",
        "17.5 mL",
        "--yes",
    ]);
    let v = close.json();
    assert!(!close.stderr.contains("WARNING"), "{close:?}");
    let expected = v["aspiration"]["expected_nl"].as_u64().unwrap();
    assert_eq!(v["aspiration"]["aspirated_nl"], 17_500_000);
    assert_eq!(v["aspiration"]["tolerance_nl"], expected / 10);
    assert!(v["aspiration"]["discrepancy"].is_null(), "{v}");
    // Refilled to 20 mL just now: 12 mL aspirated is 8 mL less.
    let less = run(&[
        "--json",
        "refill",
        "--volume",
        "20 mL",
        "--aspirated",
        "12 mL",
        "--yes",
    ]);
    let v = less.json();
    assert_eq!(v["aspiration"]["discrepancy"], "less", "{v}");
    assert!(
        less.stderr.contains("WARNING") && less.stderr.contains("OVER-infusion"),
        "{less:?}"
    );
    let warnings = v["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("aspirated volume 12 mL")),
        "{v}"
    );
    // Unconfirmed, a discrepancy records nothing (no --yes, stdin closed).
    let before = run(&["--json", "reservoir"]).json();
    let asked = run(&["refill", "--volume", "20 mL", "--aspirated", "30 mL"]);
    assert_eq!(asked.code, Some(7), "{asked:?}");
    assert!(
        asked.stdout.contains("DISCREPANCY") && asked.stderr.contains("UNDER-infusion"),
        "{asked:?}"
    );
    let after = run(&["--json", "reservoir"]).json();
    assert!(before["last_refill"].is_string(), "{before}");
    assert_eq!(before["last_refill"], after["last_refill"]);
}

#[test]
fn a_refused_command_line_is_a_json_error_with_its_reason_and_argument() {
    let out = thecal(&[
        "--json", "--sim", "bolus", "single", "--dose", "50", "--over", "30min",
    ]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
    assert_eq!(v["error"]["exit_code"], 2);
    assert_eq!(v["error"]["reason"], "invalid_value");
    assert_eq!(v["error"]["argument"], "--dose <DOSE>");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing unit"),
        "{v}"
    );
    let unknown = thecal(&["--json", "frobnicate"]);
    let v: serde_json::Value = serde_json::from_str(&unknown.stdout).unwrap();
    assert_eq!(v["error"]["reason"], "unknown_command", "{v}");
    // Without --json: the parser's own message on stderr, nothing on stdout.
    let plain = thecal(&["frobnicate"]);
    assert_eq!(
        (plain.code, plain.stdout.as_str()),
        (Some(2), ""),
        "{plain:?}"
    );
    assert!(
        plain.stderr.contains("unrecognized subcommand"),
        "{plain:?}"
    );
}
