//! The `thecal` binary as a process, against the simulated pump behind a real pty:
//! every command, schedule writes with read-back, every example, bad files, a silent
//! device.

mod common;

use common::{connect, data, example, port, s, sim, thecal};
use thecal_host::schedule;
use thecal_protocol::units::Nanolitres;

/// Runs `thecal --port <sim> --key-file <its clinician key file> args…`.
fn on(sim: &thecal_device::sim::Simulator, args: &[&str]) -> common::Run {
    let p = port(sim);
    let mut all = vec!["--port", p.as_str(), "--key-file", s(common::key_file(sim))];
    all.extend_from_slice(args);
    thecal(&all)
}

#[test]
fn readme_first_command_works_with_the_builtin_simulator() {
    let out = thecal(&["--sim", "status"]);
    let text = out.ok();
    for field in ["Therapy", "Basal now", "Reservoir", "Alarm date", "Battery"] {
        assert!(text.contains(field), "{field} missing:\n{text}");
    }
    assert!(text.contains("running"), "{text}");
}

#[test]
fn builtin_simulator_keeps_its_state_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pump.state");
    let file = example("continuous-morphine.toml");
    let sim_args = ["--sim", "--sim-state", s(&state)];
    // Another drug: the prescription goes in with the refill.
    let mut refill = sim_args.to_vec();
    refill.extend([
        "refill",
        "--volume",
        "20 mL",
        "--schedule",
        s(&file),
        "--no-bridge",
        "--yes",
    ]);
    thecal(&refill).ok();
    let mut read = sim_args.to_vec();
    read.extend(["--json", "prescription"]);
    let v = read_json(&read);
    assert_eq!(v["drug"], "morphine");
    assert_eq!(v["mode"], "continuous");
}

fn read_json(args: &[&str]) -> serde_json::Value {
    thecal(args).json()
}

#[test]
fn info_status_battery_reservoir_as_tables_and_json() {
    let sim = sim();
    let info = on(&sim, &["info"]);
    let text = info.ok();
    assert!(text.contains("matches this programmer"), "{info:?}");
    assert!(
        text.contains("Key epochs") && text.contains("patient 1, clinician 1, service 1"),
        "{text}"
    );
    let v = on(&sim, &["--json", "info"]).json();
    assert_eq!(v["compatible"], true);
    assert_eq!(v["serial"], "SIM000007");
    // The pump's static public key (64 hex digits, as on its label) and its key epochs.
    let public = v["public_key"].as_str().unwrap();
    assert!(
        public.len() == 64 && public.bytes().all(|b| b.is_ascii_hexdigit()),
        "{v}"
    );
    assert!(
        text.contains("Public key") && text.contains(public),
        "{text}"
    );
    for role in ["patient", "clinician", "service"] {
        assert_eq!(v["key_epochs"][role], 1, "{v}");
    }

    let v = on(&sim, &["--json", "status"]).json();
    assert_eq!(v["therapy"], "running");
    assert!(v["reservoir_nl"].as_u64().unwrap() > 0);
    assert!(v["now"].as_str().unwrap().contains('T'));
    assert!(v["low_reservoir_at"].is_string(), "{v}");

    let b = on(&sim, &["battery"]);
    assert!(b.ok().contains("End of service (EOS)"), "{b:?}");
    let v = on(&sim, &["--json", "battery"]).json();
    assert_eq!(v["state"], "ok");
    assert!(v["millivolts"].as_u64().unwrap() > 2000);

    let r = on(&sim, &["reservoir"]);
    let text = r.ok();
    assert!(text.contains("Alarm date"), "{text}");
    // The alarm date is spelled out: weekday, day, month, year, time.
    assert!(
        [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday"
        ]
        .iter()
        .any(|d| text.contains(d)),
        "{text}"
    );
    let v = on(&sim, &["--json", "reservoir"]).json();
    assert_eq!(v["capacity_nl"], 20_000_000);
    assert_eq!(v["low_reached"], false);
    sim.shutdown().unwrap();
}

#[test]
fn prescription_reads_and_exports_as_a_schedule_file() {
    let sim = sim();
    let human = on(&sim, &["prescription"]);
    assert!(human.ok().contains("Steps, every day"), "{human:?}");
    let v = on(&sim, &["--json", "prescription"]).json();
    assert_eq!(v["drug"], "baclofen");
    assert_eq!(v["revision"], 1);
    // --toml prints a schedule file that parses back to the prescription in force.
    let toml = on(&sim, &["prescription", "--toml"]);
    let parsed = schedule::parse("exported.toml", toml.ok()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let in_force = rt.block_on(async { connect(&sim).await.prescription().await.unwrap() });
    assert_eq!(parsed, in_force.prescription);
    sim.shutdown().unwrap();
}

#[test]
fn every_example_schedule_is_written_then_read_back() {
    // Each example on a fresh pump holding the demo prescription (baclofen 500 µg/mL):
    // the same drug and concentration goes through `schedule write`, another one
    // through `refill --schedule` (the prescription for the new solution).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut written, mut refilled) = (0, 0);
    for file in common::examples() {
        let sim = sim();
        let expected = schedule::load(&file).unwrap();
        let check = thecal(&["schedule", "check", s(&file)]);
        assert!(check.ok().contains("valid"), "{check:?}");
        let before = rt.block_on(async { connect(&sim).await.prescription().await.unwrap() });
        let same_solution = expected.drug() == before.prescription.drug()
            && expected.concentration() == before.prescription.concentration();
        let out = if same_solution {
            written += 1;
            let out = on(&sim, &["--json", "schedule", "write", s(&file), "--yes"]).json();
            assert_eq!(out["written"], true, "{out}");
            assert_eq!(out["verified"], true);
            assert_eq!(out["needs_refill"], false);
            out
        } else {
            refilled += 1;
            let out = on(
                &sim,
                &[
                    "--json",
                    "refill",
                    "--volume",
                    "20 mL",
                    "--schedule",
                    s(&file),
                    "--no-bridge",
                    "--yes",
                ],
            )
            .json();
            assert_eq!(out["prescription_written"], true, "{out}");
            assert_eq!(out["reservoir"]["volume_nl"], 20_000_000);
            assert_eq!(out["reservoir"]["drug"], expected.drug().name());
            assert_eq!(
                out["reservoir"]["concentration_ng_per_ml"],
                expected.concentration().0
            );
            assert!(out["bridge_bolus"].is_null(), "{out}");
            out
        };
        assert_eq!(out["revision"], before.revision.0 + 1);
        assert!(
            out["comparison"]["new_projection"]["low_at"].is_string(),
            "{out}"
        );
        let after = rt.block_on(async { connect(&sim).await.prescription().await.unwrap() });
        assert_eq!(after.prescription, expected, "{}", file.display());
        assert_eq!(after.revision.0, before.revision.0 + 1);
        sim.shutdown().unwrap();
    }
    assert!(written >= 1 && refilled >= 1, "{written} {refilled}");
}

#[test]
fn schedule_write_shows_old_and_new_side_by_side() {
    let sim = sim();
    let file = example("flexible-baclofen-day.toml");
    let out = on(&sim, &["schedule", "write", s(&file), "--yes"]);
    let text = out.ok();
    for needle in [
        "in force (revision 1)",
        "new",
        "baclofen",
        "Steps (every day)",
        "Daily basal total (every day)",
        "Low-reservoir alarm date",
        "◀ changed",
        "Written and verified: revision 2",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    // Writing the same file again changes nothing.
    let again = on(&sim, &["schedule", "write", s(&file), "--yes"]);
    assert!(
        again.ok().contains("already holds this prescription"),
        "{again:?}"
    );
    sim.shutdown().unwrap();
}

/// `thecal args…` with `COLUMNS` set, stdin closed, stdout a pipe.
fn thecal_columns(columns: &str, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_thecal"));
    cmd.args(args)
        .env("COLUMNS", columns)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = {
        let _guard = common::fork_guard();
        cmd.spawn().unwrap()
    };
    let out = out.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Every dose of a prescription as the review prints it: the step doses, the daily
/// totals, the patient bolus.
fn review_doses(p: &thecal_protocol::Prescription) -> Vec<String> {
    use thecal_host::quantity;
    let v = thecal_host::view::PrescriptionView::new(p);
    let mut doses: Vec<String> = v
        .profiles
        .iter()
        .flat_map(|d| &d.steps)
        .map(|s| quantity::dose_rate(thecal_protocol::units::NanogramsPerDay(s.dose_ng_per_day)))
        .collect();
    doses.extend(
        v.daily_totals_ng
            .iter()
            .map(|n| quantity::dose(thecal_protocol::units::Nanograms(*n))),
    );
    doses.extend(
        v.patient_bolus
            .iter()
            .map(|b| quantity::dose(thecal_protocol::units::Nanograms(b.dose_ng))),
    );
    doses.sort();
    doses.dedup();
    doses
}

#[test]
fn the_review_fits_an_80_column_terminal_and_shows_every_dose() {
    let file = example("weekday-ziconotide.toml");
    let args = ["--sim", "schedule", "write", s(&file), "--dry-run"];
    let in_force = thecal(&["--sim", "prescription", "--toml"])
        .ok()
        .to_string();
    let old = schedule::parse("in-force.toml", &in_force).unwrap();
    let new = schedule::load(&file).unwrap();
    let narrow = thecal_columns("80", &args);
    let wide = thecal_columns("250", &args);
    for (text, columns) in [(&narrow, 80), (&wide, 250)] {
        // The review: from the first blank line to the dry-run line (the lines around it
        // are prose printed by the command, not the table).
        let review: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.is_empty())
            .take_while(|l| !l.starts_with("Dry run"))
            .collect();
        assert!(review.len() > 10, "{text}");
        for line in &review {
            assert!(
                line.chars().count() <= columns,
                "{} columns > {columns}: {line:?}\n{text}",
                line.chars().count()
            );
        }
        let review = review.join("\n");
        for dose in review_doses(&old).iter().chain(&review_doses(&new)) {
            assert!(review.contains(dose.as_str()), "{dose} missing:\n{review}");
        }
        for needle in [
            "baclofen",
            "ziconotide",
            "◀ changed",
            "Low-reservoir alarm date",
        ] {
            assert!(review.contains(needle), "{needle:?} missing:\n{review}");
        }
    }
    // 80 columns: stacked, each row's two values under its label.
    assert!(
        narrow.contains("\n  in force: 00:00  220 µg/day"),
        "{narrow}"
    );
    assert!(
        narrow.contains("\n  new:      00:00  2.4 µg/day"),
        "{narrow}"
    );
    assert!(!narrow.contains(" │ ziconotide"), "{narrow}");
    // Wide enough: two columns.
    assert!(wide.contains("│ ziconotide"), "{wide}");
    assert!(!wide.contains("\n  in force:"), "{wide}");
}

/// The pump's refusal counter: a request refused by the pump raises it.
fn pump_refusals(sim: &thecal_device::sim::Simulator) -> u64 {
    on(sim, &["--json", "link"]).json()["pump"]["refusals"]
        .as_u64()
        .unwrap()
}

#[test]
fn schedule_write_of_another_drug_is_refused_locally_and_changes_nothing() {
    let sim = sim();
    let refusals = pump_refusals(&sim);
    for name in ["continuous-morphine.toml", "weekday-ziconotide.toml"] {
        let file = example(name);
        // Even with --yes: the drug and concentration change only with a refill.
        let refused = on(&sim, &["schedule", "write", s(&file), "--yes"]);
        assert_eq!(refused.code, Some(2), "{refused:?}");
        let expected = format!("thecal refill --volume V --schedule {}", s(&file));
        assert!(refused.stderr.contains(&expected), "{refused:?}");
        assert!(
            refused.stderr.contains("nothing was written"),
            "{refused:?}"
        );
        // The comparison was shown before the refusal.
        assert!(refused.stdout.contains("◀ changed"), "{refused:?}");
        let v = on(&sim, &["--json", "schedule", "write", s(&file), "--yes"]);
        assert_eq!(v.code, Some(2), "{v:?}");
        let v: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "usage");
    }
    // The write was never sent: the pump refused nothing, and holds what it held.
    assert_eq!(pump_refusals(&sim), refusals);
    let v = on(&sim, &["--json", "prescription"]).json();
    assert_eq!(v["revision"], 1);
    assert_eq!(v["drug"], "baclofen");
    assert_eq!(v["concentration_ng_per_ml"], 500_000);
    sim.shutdown().unwrap();
}

#[test]
fn dry_run_and_unconfirmed_writes_change_nothing() {
    let sim = sim();
    // A dry run still shows the comparison for another drug, and says how it goes in.
    let file = example("continuous-morphine.toml");
    let dry = on(&sim, &["schedule", "write", s(&file), "--dry-run"]);
    let text = dry.ok();
    assert!(text.contains("Dry run: nothing was written"), "{dry:?}");
    assert!(text.contains("morphine"), "{dry:?}");
    assert!(
        text.contains("thecal refill --volume V --schedule"),
        "{dry:?}"
    );
    let v = on(
        &sim,
        &["--json", "schedule", "write", s(&file), "--dry-run"],
    )
    .json();
    assert_eq!(v["needs_refill"], true, "{v}");
    assert_eq!(v["written"], false);
    assert!(v["comparison"]["changed"]
        .as_array()
        .unwrap()
        .contains(&"drug".into()));
    // stdin is not a terminal and there is no --yes: refuse at once, never wait.
    let same_drug = example("flexible-baclofen-day.toml");
    let refused = on(&sim, &["schedule", "write", s(&same_drug)]);
    assert_eq!(refused.code, Some(7), "{refused:?}");
    assert!(refused.stderr.contains("pass --yes"), "{refused:?}");
    let v = on(&sim, &["--json", "prescription"]).json();
    assert_eq!(v["revision"], 1);
    assert_eq!(v["drug"], "baclofen");
    sim.shutdown().unwrap();
}

#[test]
fn refill_with_a_schedule_compares_confirms_and_starts_the_bridge_bolus() {
    let sim = sim();
    let file = example("weekday-ziconotide.toml");
    let reservoir_before = on(&sim, &["--json", "reservoir"]).json()["volume_nl"].clone();
    // Without --yes (stdin not a terminal) the comparison is shown and nothing is sent.
    let unconfirmed = on(
        &sim,
        &[
            "refill",
            "--volume",
            "20 mL",
            "--schedule",
            s(&file),
            "--no-bridge",
        ],
    );
    assert_eq!(unconfirmed.code, Some(7), "{unconfirmed:?}");
    assert!(unconfirmed.stderr.contains("pass --yes"), "{unconfirmed:?}");
    for needle in [
        "in force (revision 1)",
        "baclofen",
        "ziconotide",
        "25 µg/mL",
        "Steps (Mon–Fri)",
        "Low-reservoir alarm date",
        "◀ changed",
        "projected from the refilled volume, 20 mL",
        "no bridge bolus",
    ] {
        assert!(
            unconfirmed.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            unconfirmed.stdout
        );
    }
    // A drug change needs a bridge decision; the bridge flags need a schedule.
    let undecided = on(
        &sim,
        &[
            "refill",
            "--volume",
            "20 mL",
            "--schedule",
            s(&file),
            "--yes",
        ],
    );
    assert_eq!(undecided.code, Some(2), "{undecided:?}");
    assert!(
        undecided.stderr.contains("--bridge-volume"),
        "{undecided:?}"
    );
    let no_schedule = on(
        &sim,
        &[
            "refill",
            "--volume",
            "20 mL",
            "--bridge-volume",
            "0.1 mL",
            "--yes",
        ],
    );
    assert_eq!(no_schedule.code, Some(2), "{no_schedule:?}");
    // The same drug and concentration needs no bridge: the flags are refused.
    let same_drug = on(
        &sim,
        &[
            "refill",
            "--volume",
            "20 mL",
            "--schedule",
            s(&example("flexible-baclofen-day.toml")),
            "--no-bridge",
            "--yes",
        ],
    );
    assert_eq!(same_drug.code, Some(2), "{same_drug:?}");
    assert!(
        same_drug.stderr.contains("nothing was sent"),
        "{same_drug:?}"
    );
    let v = on(&sim, &["--json", "reservoir"]).json();
    assert_eq!(v["volume_nl"], reservoir_before, "no refill was recorded");
    assert_eq!(v["drug"], "baclofen");
    assert_eq!(on(&sim, &["--json", "prescription"]).json()["revision"], 1);

    // Confirmed: the refill stores the new prescription, then the bridge bolus starts.
    let out = on(
        &sim,
        &[
            "refill",
            "--volume",
            "20 mL",
            "--schedule",
            s(&file),
            "--bridge-volume",
            "0.1 mL",
            "--yes",
        ],
    );
    let text = out.ok();
    for needle in [
        "then a bridge bolus of 0.1 mL",
        "Refill recorded: 20 mL of ziconotide 25 µg/mL; prescription revision 2.",
        "New prescription written and verified: revision 2",
        "Bridge bolus started: 0.1 mL",
        "New alarm date",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = rt.block_on(async { connect(&sim).await.prescription().await.unwrap() });
    assert_eq!(now.revision.0, 2);
    assert_eq!(now.prescription, schedule::load(&file).unwrap());
    let status = on(&sim, &["--json", "status"]).json();
    assert_eq!(status["bolus"]["kind"], "bridge", "{status}");
    assert_eq!(status["drug"], "ziconotide");
    sim.shutdown().unwrap();
}

#[test]
fn bad_files_are_rejected_before_anything_is_sent() {
    let sim = sim();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let frames_in = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async { connect(&sim).await.link_stats().await.unwrap().frames_in })
    };
    let cases = [
        ("bad-syntax.toml", "bad-syntax.toml:2:", "concentration"),
        ("bad-unit.toml", "bad-unit.toml:8:", "steps[2].dose"),
        (
            "bad-rate-above-limit.toml",
            "bad-rate-above-limit.toml:9:",
            "exceeds the daily limit",
        ),
        (
            "bad-daily-limit-above-ceiling.toml",
            "bad-daily-limit-above-ceiling.toml:4:",
            "firmware ceiling",
        ),
        (
            "bad-bolus-allowance.toml",
            "bad-bolus-allowance.toml:",
            "patient boluses",
        ),
        (
            "bad-flow-below-minimum.toml",
            "bad-flow-below-minimum.toml:7:",
            "below the pump's minimum",
        ),
        ("bad-missing-day.toml", "bad-missing-day.toml:", "Wednesday"),
        ("bad-step-order.toml", "bad-step-order.toml:9:", "steps[3]"),
        (
            "bad-unknown-field.toml",
            "bad-unknown-field.toml:7:",
            "dailylimit",
        ),
    ];
    for (name, location, detail) in cases {
        let file = data(name);
        let before = frames_in(&rt);
        let out = on(&sim, &["schedule", "write", s(&file), "--yes"]);
        assert_eq!(out.code, Some(2), "{name}: {out:?}");
        assert!(out.stderr.contains(location), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(detail), "{name}: {}", out.stderr);
        // Only this check's own frames reached the pump (identify, the two handshake
        // messages, link stats): the bad file's run never opened the port.
        assert_eq!(frames_in(&rt), before + 4, "{name}: bytes were sent");
        // The same for a refill carrying it: not even the refill is recorded.
        let before = frames_in(&rt);
        let out = on(
            &sim,
            &[
                "refill",
                "--volume",
                "20 mL",
                "--schedule",
                s(&file),
                "--no-bridge",
                "--yes",
            ],
        );
        assert_eq!(out.code, Some(2), "{name}: {out:?}");
        assert!(out.stderr.contains(location), "{name}: {}", out.stderr);
        assert_eq!(frames_in(&rt), before + 4, "{name}: bytes were sent");
        let check = thecal(&["--json", "schedule", "check", s(&file)]);
        assert_eq!(check.code, Some(2));
        let v: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "invalid_schedule");
    }
    let v = on(&sim, &["--json", "prescription"]).json();
    assert_eq!(v["revision"], 1, "the prescription is unchanged");
    sim.shutdown().unwrap();
}

#[test]
fn refill_bolus_stop_resume_alarms() {
    let sim = sim();
    // Refill to 1 mL: below the 2 mL threshold, so the low-reservoir alarm is raised.
    let v = on(&sim, &["--json", "refill", "--volume", "1 mL", "--yes"]).json();
    assert_eq!(v["reservoir"]["volume_nl"], 1_000_000);
    assert_eq!(v["reservoir"]["low_reached"], true);
    let alarms = on(&sim, &["--json", "alarms"]).json();
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "low_reservoir"),
        "{alarms}"
    );
    let table = on(&sim, &["alarms"]);
    assert!(table.ok().contains("low-reservoir"), "{table:?}");
    let ack = on(&sim, &["alarms", "ack", "low-reservoir"]);
    assert!(ack.ok().contains("Acknowledged"), "{ack:?}");
    let not_active = on(&sim, &["alarms", "ack", "motor-stall"]);
    assert_eq!(not_active.code, Some(3), "{not_active:?}");
    assert!(not_active.stderr.contains("not active"), "{not_active:?}");

    // Refill to 20 mL and print the new alarm date.
    let out = on(&sim, &["refill", "--volume", "20 mL", "--yes"]);
    let text = out.ok();
    assert!(text.contains("Refill recorded: 20 mL"), "{text}");
    assert!(text.contains("New alarm date"), "{text}");
    // A concentration change: the prescription in force, at twice the concentration
    // (the same doses are then half the flow), goes in with the refill…
    let dir = tempfile::tempdir().unwrap();
    let stronger = dir.path().join("baclofen-1000.toml");
    let exported = on(&sim, &["prescription", "--toml"]);
    let text = exported.ok();
    assert!(text.contains("concentration = \"500 µg/mL\""), "{text}");
    std::fs::write(
        &stronger,
        text.replace(
            "concentration = \"500 µg/mL\"",
            "concentration = \"1000 µg/mL\"",
        ),
    )
    .unwrap();
    // …it needs a bridge decision…
    let out = on(
        &sim,
        &[
            "refill",
            "--volume",
            "20 mL",
            "--schedule",
            s(&stronger),
            "--yes",
        ],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--bridge-volume"), "{out:?}");
    // …and with one, the refill records the change and starts the bridge bolus.
    let v = on(
        &sim,
        &[
            "--json",
            "refill",
            "--volume",
            "20 mL",
            "--schedule",
            s(&stronger),
            "--bridge-volume",
            "0.1 mL",
            "--yes",
        ],
    )
    .json();
    assert_eq!(v["reservoir"]["concentration_ng_per_ml"], 1_000_000);
    assert_eq!(v["bridge_bolus"]["kind"], "bridge");
    assert_eq!(v["bridge_bolus"]["volume_nl"], 100_000);
    assert_eq!(v["revision"], 2);
    assert_eq!(v["prescription_written"], true);
    assert_eq!(
        v["comparison"]["changed"],
        serde_json::json!(["concentration"])
    );
    assert_eq!(v["file"], s(&stronger));

    // Stop cancels the bridge bolus; then a clinician bolus and a patient bolus.
    let stop = on(&sim, &["stop", "--yes"]);
    assert!(stop.ok().contains("STOPPED"), "{stop:?}");
    assert_eq!(on(&sim, &["--json", "status"]).json()["therapy"], "stopped");
    let unconfirmed = on(&sim, &["stop"]);
    assert_eq!(unconfirmed.code, Some(7));
    let resume = on(&sim, &["resume", "--yes"]);
    assert!(resume.ok().contains("Therapy resumed"), "{resume:?}");
    let v = on(
        &sim,
        &[
            "--json", "bolus", "single", "--dose", "20 µg", "--over", "30 min", "--yes",
        ],
    )
    .json();
    assert_eq!(v["kind"], "single");
    assert_eq!(v["dose_ng"], 20_000);
    let busy = on(
        &sim,
        &[
            "bolus", "single", "--dose", "20 µg", "--over", "30 min", "--yes",
        ],
    );
    assert_eq!(busy.code, Some(3), "{busy:?}");
    assert!(busy.stderr.contains("already running"), "{busy:?}");
    on(&sim, &["stop", "--yes"]).ok();
    on(&sim, &["resume", "--yes"]).ok();
    let v = on(&sim, &["--json", "bolus", "patient", "--yes"]).json();
    assert_eq!(v["kind"], "patient");
    let status = on(&sim, &["status"]);
    assert!(status.ok().contains("Bolus running"), "{status:?}");
    on(&sim, &["stop", "--yes"]).ok();
    on(&sim, &["resume", "--yes"]).ok();
    let priming = on(
        &sim,
        &[
            "--json", "bolus", "priming", "--volume", "0.1 mL", "--over", "10 min", "--yes",
        ],
    );
    assert_eq!(priming.json()["kind"], "priming");
    on(&sim, &["stop", "--yes"]).ok();
    on(&sim, &["resume", "--yes"]).ok();
    let bridge = on(
        &sim,
        &[
            "--json", "bolus", "bridge", "--volume", "0.05 mL", "--over", "1 h", "--yes",
        ],
    );
    assert_eq!(bridge.json()["kind"], "bridge");
    sim.shutdown().unwrap();
}

#[test]
fn log_clock_link_ping_ports() {
    let sim = sim();
    on(
        &sim,
        &[
            "schedule",
            "write",
            s(&example("flexible-baclofen-day.toml")),
            "--yes",
        ],
    )
    .ok();
    let v = on(
        &sim,
        &["--json", "clock", "sync", "--offset", "+01:00", "--yes"],
    )
    .json();
    assert_eq!(v["utc_offset"], "+01:00");
    let status = on(&sim, &["--json", "status"]).json();
    assert_eq!(status["utc_offset"], "+01:00");
    assert!(
        status["now"].as_str().unwrap().ends_with("+01:00"),
        "{status}"
    );
    let bad = on(&sim, &["clock", "sync", "--offset", "+15:00", "--yes"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");

    let log = on(&sim, &["--json", "log"]).json();
    let entries = log["entries"].as_array().unwrap();
    let events: Vec<&str> = entries
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"prescription_changed"), "{events:?}");
    assert!(events.contains(&"clock_changed"), "{events:?}");
    let indices: Vec<u64> = entries
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");
    let last = on(&sim, &["--json", "log", "--last", "2"]).json();
    assert_eq!(last["entries"].as_array().unwrap().len(), 2);
    let table = on(&sim, &["log"]);
    assert!(
        table.ok().contains("prescription revision 2 replaced 1"),
        "{table:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("log.csv");
    on(&sim, &["log", "--format", "csv", "--out", s(&csv)]).ok();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("index,at,event,description\n"), "{text}");
    assert!(text.contains(",prescription_changed,"), "{text}");

    let link = on(&sim, &["--json", "link"]).json();
    assert!(link["pump"]["frames_in"].as_u64().unwrap() > 0, "{link}");
    let ping = on(&sim, &["--json", "ping", "--count", "2"]).json();
    assert_eq!(ping["round_trips_us"].as_array().unwrap().len(), 2);

    let ports = thecal(&["--json", "ports"]).json();
    assert!(ports.is_array());
    sim.shutdown().unwrap();
}

#[test]
fn plots_are_written() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("day.svg");
    let png = dir.path().join("reservoir.png");
    let week = dir.path().join("week.png");
    on(&sim, &["plot", "schedule", "--out", s(&svg)]).ok();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    on(&sim, &["plot", "reservoir", "--out", s(&png)]).ok();
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    // Offline, from a file: no pump needed.
    thecal(&[
        "plot",
        "schedule",
        "--week",
        "--file",
        s(&example("weekday-ziconotide.toml")),
        "--out",
        s(&week),
    ])
    .ok();
    assert!(std::fs::read(&week).unwrap().starts_with(b"\x89PNG"));
    let wrong = thecal(&[
        "plot",
        "schedule",
        "--file",
        s(&example("weekday-ziconotide.toml")),
        "--out",
        s(&dir.path().join("x.gif")),
    ]);
    assert_ne!(wrong.code, Some(0));
    sim.shutdown().unwrap();
}

#[test]
fn plots_name_the_drug_mark_now_and_the_worst_case_inside_the_picture() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let reservoir = dir.path().join("reservoir.svg");
    let schedule = dir.path().join("schedule.svg");
    on(&sim, &["plot", "reservoir", "--out", s(&reservoir)]).ok();
    on(&sim, &["plot", "schedule", "--out", s(&schedule)]).ok();
    let reservoir = std::fs::read_to_string(&reservoir).unwrap();
    let schedule = std::fs::read_to_string(&schedule).unwrap();
    // The demo prescription: baclofen 500 µg/mL, patient boluses allowed.
    for needle in [
        "prescription revision 1 — baclofen 500 µg/mL: projected reservoir volume",
        "now: ",
        "low-reservoir alarm:",
        "empty:",
        "low, every bolus taken:",
        "empty, every bolus taken:",
        "every allowed patient bolus taken",
        "ticks at midnight",
    ] {
        assert!(
            reservoir.contains(needle),
            "{needle:?} missing:\n{reservoir}"
        );
    }
    assert!(
        schedule.contains("prescription revision 1 — baclofen 500 µg/mL: basal dose profile"),
        "{schedule}"
    );
    // Every text's anchor is inside the 1000×500 picture.
    for svg in [&reservoir, &schedule] {
        assert!(svg.starts_with(r#"<svg width="1000" height="500" viewBox="0 0 1000 500""#));
        for tag in svg.split("<text ").skip(1) {
            let num = |name: &str| -> f64 {
                let at = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let rest = &tag[at..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            };
            let (x, y) = (num("x"), num("y"));
            assert!(
                (0.0..=1000.0).contains(&x) && (0.0..=500.0).contains(&y),
                "{tag}"
            );
        }
    }
    sim.shutdown().unwrap();
}

#[test]
fn device_that_stops_answering_gives_a_clear_error() {
    // A pty pair nobody serves.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = rt.enter();
    let (_ours, path) = {
        let _guard = common::fork_guard();
        let (ours, theirs) = tokio_serial::SerialStream::pair().unwrap_or_else(|e| panic!("{e}"));
        (ours, tokio_serial::SerialPort::name(&theirs).unwrap())
    };
    // A key file in order: the request that goes unanswered is the identification.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    let role_key = thecal_host::RoleKey {
        role: thecal_protocol::message::Role::Clinician,
        epoch: 1,
        key: thecal_protocol::session::Secret::new([7; 32]),
    };
    thecal_host::KeyFile::create(&key, "SIM000001", &role_key).unwrap();
    let out = thecal(&[
        "--key-file",
        s(&key),
        "--port",
        &path,
        "--timeout",
        "200ms",
        "--retries",
        "1",
        "status",
    ]);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(out.stderr.contains("no answer from the pump"), "{out:?}");
    assert!(out.stderr.contains("2 attempts"), "{out:?}");
    let out = thecal(&[
        "--port",
        &path,
        "--key-file",
        s(&key),
        "--timeout",
        "200ms",
        "--json",
        "status",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "timeout");
    // No port at all, or both --port and --sim: usage errors.
    assert_eq!(thecal(&["status"]).code, Some(2));
    assert_eq!(thecal(&["--sim", "--port", &path, "status"]).code, Some(2));
    let missing = thecal(&[
        "--port",
        "/dev/thecal-none",
        "--key-file",
        s(&key),
        "status",
    ]);
    assert_eq!(missing.code, Some(4), "{missing:?}");
    assert!(missing.stderr.contains("/dev/thecal-none"));
    let _ = Nanolitres::ZERO;
}

/// No request or enum name, and no Rust syntax, in what a clinician reads.
fn assert_clinical(text: &str) {
    for word in [
        "PatientBolus",
        "ClinicianBolus",
        "BolusInProgress",
        "BolusInvalid",
        "ReadPrescription",
        "ResumeTherapy",
        "SetClock",
        "..=",
        "expected i64",
        "t=",
    ] {
        assert!(!text.contains(word), "`{word}` in:\n{text}");
    }
}

#[test]
fn bolus_refusals_name_the_cause_and_its_limit_in_clinical_words() {
    let sim = sim();
    let cases: [(&[&str], &str); 4] = [
        (
            &["bolus", "priming", "--volume", "0.1 µL", "--over", "10 min"],
            "less than one pump stroke: the smallest bolus is 0.00025 mL",
        ),
        (
            &["bolus", "priming", "--volume", "10 mL", "--over", "1 min"],
            "faster than the pump's fastest bolus flow, 60 mL/day: give it over 4 h or more",
        ),
        (
            &["bolus", "single", "--dose", "50 µg", "--over", "25 h"],
            "longer than the pump's longest bolus, 24 h",
        ),
        (
            &["bolus", "single", "--dose", "50 µg", "--over", "0 min"],
            "the bolus duration is 0 min",
        ),
    ];
    for (args, expected) in cases {
        let mut all = args.to_vec();
        all.push("--yes");
        let out = on(&sim, &all);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("bolus not given: "), "{out:?}");
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
        assert_clinical(&out.stderr);
    }
    // Nothing was sent: no bolus runs.
    assert!(on(&sim, &["--json", "status"]).json()["bolus"].is_null());

    // The pump's own refusals, in clinical words: a running bolus, the lockout in the
    // patient's local time.
    on(
        &sim,
        &["--json", "clock", "sync", "--offset", "+01:00", "--yes"],
    )
    .ok();
    on(&sim, &["bolus", "patient", "--yes"]).ok();
    on(&sim, &["bolus", "cancel", "--yes"]).ok();
    let again = on(&sim, &["bolus", "patient", "--yes"]);
    assert_eq!(again.code, Some(3), "{again:?}");
    assert!(
        again
            .stderr
            .contains("the pump refused the patient bolus: ")
            && again.stderr.contains("the next patient bolus is allowed "),
        "{again:?}"
    );
    let status = on(&sim, &["--json", "status"]).json();
    let now = status["now"].as_str().unwrap();
    // The pump clock's local date (`2026-12-03T…+01:00`), spelled: `3 December 2026 at`.
    let day: u32 = now[8..10].parse().unwrap();
    assert!(again.stderr.contains(&format!(" {day} ")), "{again:?}");
    assert!(
        again.stderr.contains(" at ") && again.stderr.contains("(in "),
        "{again:?}"
    );
    assert_clinical(&again.stderr);
    on(
        &sim,
        &[
            "bolus", "single", "--dose", "20 µg", "--over", "30 min", "--yes",
        ],
    )
    .ok();
    let busy = on(
        &sim,
        &[
            "bolus", "single", "--dose", "20 µg", "--over", "30 min", "--yes",
        ],
    );
    assert_eq!(busy.code, Some(3), "{busy:?}");
    assert!(
        busy.stderr
            .contains("the pump refused the bolus: a bolus is already running"),
        "{busy:?}"
    );
    assert_clinical(&busy.stderr);
    sim.shutdown().unwrap();
}

#[test]
fn the_bolus_confirmation_shows_drug_dose_rate_and_the_24_h_total() {
    let sim = sim();
    let out = on(
        &sim,
        &["bolus", "single", "--dose", "50 µg", "--over", "30 min"],
    );
    assert_eq!(out.code, Some(7), "{out:?}");
    for part in [
        "Drug       baclofen 500 µg/mL",
        "Dose       50 µg = 0.1 mL over 30 min (4.8 mL/day)",
        "Last 24 h  0 µg delivered; 50 µg with this bolus, daily limit 600 µg/day",
        "Give a single bolus of 50 µg over 30 min on pump",
    ] {
        assert!(out.stderr.contains(part), "{part}: {out:?}");
    }
    let patient = on(&sim, &["bolus", "patient"]);
    assert_eq!(patient.code, Some(7), "{patient:?}");
    assert!(
        patient
            .stderr
            .contains("Dose       25 µg = 0.05 mL, as fast as the pump allows"),
        "{patient:?}"
    );
    sim.shutdown().unwrap();
}

#[test]
fn resume_and_clock_sync_ask_first() {
    let sim = sim();
    on(&sim, &["stop", "--yes"]).ok();
    let resume = on(&sim, &["resume"]);
    assert_eq!(resume.code, Some(7), "{resume:?}");
    assert!(
        resume.stderr.contains("Resume therapy on pump SIM000007?")
            && resume.stderr.contains("pass --yes"),
        "{resume:?}"
    );
    // Not resumed.
    assert_eq!(on(&sim, &["--json", "status"]).json()["therapy"], "stopped");
    on(&sim, &["resume", "--yes"]).ok();
    assert_eq!(on(&sim, &["--json", "status"]).json()["therapy"], "running");

    let sync = on(&sim, &["clock", "sync", "--offset", "+02:00"]);
    assert_eq!(sync.code, Some(7), "{sync:?}");
    assert!(
        sync.stderr
            .contains("Set the clock of pump SIM000007 from ")
            && sync.stderr.contains("(UTC+02:00)?"),
        "{sync:?}"
    );
    // Not set.
    assert_ne!(
        on(&sim, &["--json", "status"]).json()["utc_offset"],
        "+02:00"
    );
    sim.shutdown().unwrap();
}

#[test]
fn port_errors_say_what_is_wrong_once() {
    let missing = thecal(&["--port", "/nonexistent/ttyACM9", "info"]);
    assert_eq!(missing.code, Some(4), "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("serial port /nonexistent/ttyACM9 does not exist"),
        "{missing:?}"
    );
    assert_eq!(
        missing.stderr.matches("No such file").count(),
        0,
        "{missing:?}"
    );
    let null = thecal(&["--port", "/dev/null", "info"]);
    assert_eq!(null.code, Some(4), "{null:?}");
    assert!(
        null.stderr.contains("/dev/null is not a serial port"),
        "{null:?}"
    );
    assert!(!null.stderr.contains("typewriter"), "{null:?}");
    let schedule = thecal(&["schedule", "check", "/nonexistent/x.toml"]);
    assert_eq!(schedule.code, Some(2), "{schedule:?}");
    assert_eq!(
        schedule.stderr,
        "error: /nonexistent/x.toml: cannot read the schedule: No such file or directory\n"
    );
}

#[test]
fn a_large_dose_change_is_warned_about_before_the_write() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let stopped = dir.path().join("stopped.toml");
    std::fs::write(
        &stopped,
        "drug = \"baclofen\"\nconcentration = \"500 µg/mL\"\ndaily_limit = \"600 µg/day\"\n\
         low_reservoir_alarm = \"2 mL\"\nmode = \"stopped\"\n",
    )
    .unwrap();
    let cut = on(&sim, &["schedule", "write", s(&stopped)]);
    assert_eq!(cut.code, Some(7), "{cut:?}");
    assert!(
        cut.stderr.contains("WARNING: the daily dose falls by 8")
            && cut.stderr.contains("withdrawal")
            && cut.stderr.contains("with this large dose change?"),
        "{cut:?}"
    );
    let up = dir.path().join("up.toml");
    std::fs::write(
        &up,
        "drug = \"baclofen\"\nconcentration = \"500 µg/mL\"\ndaily_limit = \"600 µg/day\"\n\
         low_reservoir_alarm = \"2 mL\"\nmode = \"continuous\"\ndose = \"400 µg/day\"\n",
    )
    .unwrap();
    let rise = on(&sim, &["schedule", "write", s(&up)]);
    assert_eq!(rise.code, Some(7), "{rise:?}");
    assert!(
        rise.stderr.contains("WARNING: the daily dose rises by "),
        "{rise:?}"
    );
    // A small change: no warning.
    let small = on(
        &sim,
        &[
            "schedule",
            "write",
            s(&example("flexible-baclofen-day.toml")),
        ],
    );
    assert_eq!(small.code, Some(7), "{small:?}");
    assert!(!small.stderr.contains("WARNING"), "{small:?}");
    sim.shutdown().unwrap();
}

#[test]
fn help_shows_global_options_apart_with_examples_and_exit_codes() {
    let top = thecal(&["--help"]);
    let text = top.ok();
    for part in [
        "Global options:",
        "Examples:",
        "thecal --sim status",
        "Exit codes:",
        "5  OUTCOME UNCERTAIN",
        "7  not confirmed",
    ] {
        assert!(text.contains(part), "{part}:\n{text}");
    }
    let bolus = thecal(&["bolus", "single", "--help"]);
    let text = bolus.ok();
    let (own, global) = text
        .split_once("Global options:")
        .unwrap_or_else(|| panic!("no Global options section:\n{text}"));
    assert!(own.contains("--dose") && own.contains("--over"), "{text}");
    assert!(
        !own.contains("--port") && !own.contains("--key-file"),
        "{text}"
    );
    assert!(
        global.contains("--port") && global.contains("--key-file"),
        "{text}"
    );
    assert!(!global.contains("--dose"), "{text}");
    for (command, example) in [
        (
            "bolus",
            "thecal --sim bolus single --dose \"50 µg\" --over 30min",
        ),
        ("schedule", "thecal --sim schedule write FILE --dry-run"),
    ] {
        let help = thecal(&[command, "--help"]);
        let text = help.ok();
        assert!(
            text.contains("Examples:") && text.contains(example),
            "{command}:\n{text}"
        );
    }
}
