//! The `imprint` binary driven as a user would: the README's run command, the JSON event
//! stream, exit codes, `profile check` on good and broken profiles, and a manifest-dev-tool
//! environment as a profile's trust source.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::run_json_events as run_json;
use common::{
    demo_profile_text, imprint, manifest_tool_bin, repo_root, scanned_serials_profile_text, text,
    write_profile,
};

const ALL_STEPS: [&str; 15] = [
    "connect",
    "identify",
    "check-identity",
    "erase",
    "program-bootloader",
    "program-application",
    "verify-flash",
    "allocate-identity",
    "write-config",
    "verify-config",
    "self-test",
    "negative-self-test",
    "lock",
    "verify-lock",
    "record",
];

#[test]
fn json_stream_has_every_step_of_every_unit() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let profile = repo_root().join("profiles/demo.toml");
    let (code, events) =
        run_json(&["--profile", profile.to_str().unwrap(), "--sim", "3", "--count", "7"], &db);
    assert_eq!(code, 0);
    let mut finished_steps: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut results = BTreeMap::new();
    for event in &events {
        assert_eq!(event["schema"], 2);
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
        // Line-level events carry no unit (schema 2).
        let Some(unit) = event["unit"].as_u64() else { continue };
        match event["event"].as_str().unwrap() {
            "step-finished" | "step-skipped" => {
                finished_steps.entry(unit).or_default().insert(event["step"].as_str().unwrap().to_string());
            }
            "unit-finished" => {
                results.insert(unit, event["result"].as_str().unwrap().to_string());
                assert!(event["record_hash"].as_str().unwrap().len() == 64);
            }
            _ => {}
        }
    }
    assert_eq!(results.len(), 7);
    assert!(results.values().all(|result| result == "pass"));
    let expected: BTreeSet<String> = ALL_STEPS.iter().map(|step| step.to_string()).collect();
    for (unit, steps) in &finished_steps {
        assert_eq!(steps, &expected, "unit {unit}");
    }
    assert_eq!(events.last().unwrap()["event"], "line-finished");
    // Secrets never travel in events.
    let stream = serde_json::to_string(&events).unwrap();
    assert!(!stream.contains("PRIVATE KEY"));
}

/// `profiles/demo-v1.toml`: the self-test stages v1 manifests; the simulated device installs the
/// signed one and refuses each forgery with its own reason code (contract section 3.5).
#[test]
fn a_v1_profile_self_tests_sim_units_with_v1_manifests() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let profile = repo_root().join("profiles/demo-v1.toml");
    let (code, events) =
        run_json(&["--profile", profile.to_str().unwrap(), "--sim", "2", "--count", "3"], &db);
    assert_eq!(code, 0, "{events:?}");
    let finished: Vec<&serde_json::Value> =
        events.iter().filter(|event| event["event"] == "unit-finished").collect();
    assert_eq!(finished.len(), 3);
    for unit in &finished {
        assert_eq!(unit["result"], "pass", "{unit}");
        let step = |name: &str| {
            events
                .iter()
                .find(|event| {
                    event["event"] == "step-finished"
                        && event["step"] == name
                        && event["unit"] == unit["unit"]
                })
                .unwrap_or_else(|| panic!("no {name} for {unit}"))
        };
        assert_eq!(step("self-test")["detail"]["installed_version"], "1.0.1");
        assert_eq!(step("self-test")["detail"]["manifest_schema"], "v1");
        let refusals: Vec<(String, u64)> = step("negative-self-test")["detail"]["refused"]
            .as_array()
            .unwrap()
            .iter()
            .map(|refusal| {
                (refusal["candidate"].as_str().unwrap().to_string(), refusal["reason_code"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(
            refusals,
            [
                ("untrusted-key".to_string(), 0x14),
                ("unknown-certificate".to_string(), 0x1F),
                ("wrong-class-id".to_string(), 0x16)
            ]
        );
    }
}

#[test]
fn a_failed_unit_gives_exit_code_1_and_is_recorded() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let profile = repo_root().join("profiles/demo.toml");
    let arguments = [
        "--profile",
        profile.to_str().unwrap(),
        "--sim",
        "2",
        "--count",
        "4",
        "--sim-fault",
        "1.1:probe-lost=self-test",
    ];
    let (code, events) = run_json(&arguments, &db);
    assert_eq!(code, 1);
    let failed: Vec<_> = events
        .iter()
        .filter(|event| event["event"] == "unit-finished" && event["result"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["slot"], 1);
    assert_eq!(failed[0]["failing_step"], "self-test");
    assert!(failed[0]["reason"].as_str().unwrap().contains("probe lost"));
    let verify = imprint().args(["log", "verify", "--db"]).arg(&db).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("4 runs"));
}

#[test]
fn bad_usage_gives_exit_code_2_and_touches_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let profile = repo_root().join("profiles/demo.toml");
    for arguments in [
        vec!["--profile", "no-such-profile.toml"],
        vec!["--profile", profile.to_str().unwrap(), "--sim", "0"],
        vec!["--profile", profile.to_str().unwrap(), "--sim-fault", "9.1:uid-read-fails"],
        vec!["--profile", profile.to_str().unwrap(), "--probe", "carrier-pigeon"],
        vec!["--profile", profile.to_str().unwrap(), "--count", "0"],
        vec!["--profile", profile.to_str().unwrap(), "--count", "-1"],
        vec!["--profile", profile.to_str().unwrap(), "--sim", "-1"],
    ] {
        let output = imprint()
            .args(["run", "--json", "--sim-timing", "zero", "--db"])
            .arg(&db)
            .args(&arguments)
            .output()
            .expect("run imprint");
        // A refused option is named in the message (not "unexpected argument '-1'").
        if let Some(option) = arguments.iter().find(|argument| ["--count", "--sim"].contains(argument)) {
            let stderr = text(&output.stderr);
            assert!(
                stderr.contains(option) && !stderr.contains("unexpected argument"),
                "{arguments:?}: {stderr}"
            );
        }
        let (code, events) = run_json(&arguments, &db);
        assert_eq!(code, 2, "{arguments:?}");
        // The refusal is the stream's one object (docs/events.md): no unit, no line-started.
        assert_eq!(events.len(), 1, "{arguments:?}: {events:?}");
        assert_eq!(events[0]["event"], "line-refused", "{arguments:?}");
        assert!(!db.exists(), "{arguments:?} created the ledger");
    }
}

#[test]
fn profile_check_prints_a_summary() {
    let output =
        imprint().args(["profile", "check"]).arg(repo_root().join("profiles/demo.toml")).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "regions",
        "bootloader",
        "sha256",
        "vendor id",
        "521c5b61-cf30-59ce-ac1b-82f6a84f1469",
        "fingerprint",
        "valid",
    ] {
        assert!(stdout.contains(expected), "summary lacks {expected}:\n{stdout}");
    }
}

#[derive(serde::Deserialize)]
struct BadProfileCatalogue {
    case: Vec<BadProfileCase>,
}

#[derive(serde::Deserialize)]
struct BadProfileCase {
    name: String,
    replace: Vec<(String, String)>,
    expect: Vec<String>,
}

#[test]
fn each_broken_profile_is_reported_with_file_and_field() {
    let catalogue_path = repo_root().join("tests/data/bad-input/profiles.toml");
    let catalogue: BadProfileCatalogue =
        toml::from_str(&std::fs::read_to_string(&catalogue_path).unwrap()).unwrap();
    assert!(catalogue.case.len() >= 20);
    let directory = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(repo_root().join("profiles/demo.toml")).unwrap();
    for (index, case) in catalogue.case.iter().enumerate() {
        let mut text = original.clone();
        for (from, to) in &case.replace {
            assert!(text.contains(from.as_str()), "case {:?}: {from:?} not in demo.toml", case.name);
            text = text.replacen(from.as_str(), to, 1);
        }
        let text = common::absolutize_profile_paths(&text, &repo_root().join("profiles"));
        let path = write_profile(directory.path(), &format!("case-{index}.toml"), &text);
        let output = imprint().args(["profile", "check"]).arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "case {:?}: {stderr}", case.name);
        // Every problem line is "FILE: field: message" with FILE an existing file or the
        // missing file the profile named.
        let problem_lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("  ")).collect();
        assert!(!problem_lines.is_empty(), "case {:?}: no problem lines: {stderr}", case.name);
        for line in problem_lines {
            let file = line.trim_start().split(": ").next().unwrap();
            assert!(file.starts_with('/'), "case {:?}: problem names no file: {line}", case.name);
        }
        for expected in &case.expect {
            assert!(
                stderr.contains(expected.as_str()),
                "case {:?}: stderr lacks {expected:?}:\n{stderr}",
                case.name
            );
        }
    }
}

#[test]
fn a_manifest_dev_tool_environment_is_a_trust_source() {
    let directory = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(manifest_tool_bin("manifest-dev-tool"))
        .arg("init")
        .current_dir(directory.path())
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let text = demo_profile_text().replace("certificate = ", "# certificate = ").replace(
        "signing_key = ",
        &format!("manifest_dev_tool = \"{}\"\n# signing_key = ", directory.path().display()),
    );
    let profile = write_profile(directory.path(), "from-dev-tool.toml", &text);
    let check = imprint().args(["profile", "check"]).arg(&profile).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let db = directory.path().join("ledger.db");
    let (code, _) = run_json(&["--profile", profile.to_str().unwrap(), "--count", "2"], &db);
    assert_eq!(code, 0);
}

/// The demo profile with `serial.scheme = "scanned"`: serials come from the units' labels.
fn scanned_serials_profile(directory: &std::path::Path) -> std::path::PathBuf {
    write_profile(directory, "labelled.toml", &scanned_serials_profile_text())
}

fn finished_units(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events.iter().filter(|event| event["event"] == "unit-finished").collect()
}

#[test]
fn serials_scanned_from_labels_become_the_units_serials_with_the_work_order_recorded() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let profile = scanned_serials_profile(directory.path());
    let serials = directory.path().join("serials.txt");
    std::fs::write(&serials, "# labels printed for WO-77\nLBL-0001\n\n  LBL-0002  \nLBL-0003\n").unwrap();
    let arguments = [
        "--profile",
        profile.to_str().unwrap(),
        "--sim",
        "2",
        "--serials",
        serials.to_str().unwrap(),
        "--work-order",
        "WO-77",
    ];
    let (code, events) = run_json(&arguments, &db);
    assert_eq!(code, 0, "{events:#?}");
    let units = finished_units(&events);
    let issued: BTreeSet<&str> = units.iter().map(|unit| unit["serial"].as_str().unwrap()).collect();
    assert_eq!(issued, BTreeSet::from(["LBL-0001", "LBL-0002", "LBL-0003"]), "--count defaults to the file");
    assert!(units.iter().all(|unit| unit["result"] == "pass"));
    let allocations: Vec<_> = events
        .iter()
        .filter(|event| event["event"] == "step-finished" && event["step"] == "allocate-identity")
        .collect();
    assert_eq!(allocations.len(), 3);
    assert!(allocations.iter().all(|event| event["detail"]["work_order"] == "WO-77"), "{allocations:#?}");
    let export = directory.path().join("export.jsonl");
    let exported = imprint()
        .args(["log", "export", "--format", "jsonl", "--db"])
        .arg(&db)
        .arg("--output")
        .arg(&export)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    // Each unit's record carries it twice: in its allocate-identity step and as the derived
    // `work_order` field (export format 3).
    let exported_text = std::fs::read_to_string(&export).unwrap();
    assert_eq!(exported_text.matches("\"work_order\":\"WO-77\"").count(), 6, "the work order is exported");
    assert_eq!(exported_text.matches("WO-77").count(), 6, "the work order is exported");
}

#[test]
fn a_label_serial_issued_before_fails_that_unit_before_erase() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let profile = scanned_serials_profile(directory.path());
    let first = directory.path().join("first.txt");
    std::fs::write(&first, "LBL-0001\n").unwrap();
    let (code, events) =
        run_json(&["--profile", profile.to_str().unwrap(), "--serials", first.to_str().unwrap()], &db);
    assert_eq!(code, 0);
    let first_chip = finished_units(&events)[0]["chip_uid"].as_str().unwrap().to_string();
    // A label printed twice: a new chip scanned with a serial already issued. The ledger is
    // asked at `check-identity`, before the unit is erased or programmed.
    let second = directory.path().join("second.txt");
    std::fs::write(&second, "LBL-0001\nLBL-0002\n").unwrap();
    let (code, events) =
        run_json(&["--profile", profile.to_str().unwrap(), "--serials", second.to_str().unwrap()], &db);
    assert_eq!(code, 1);
    let units = finished_units(&events);
    assert_eq!(units.len(), 2);
    let failed: Vec<_> = units.iter().filter(|unit| unit["result"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{units:#?}");
    assert_eq!(failed[0]["failing_step"], "check-identity");
    assert_eq!(failed[0]["error_code"], "identity", "a duplicate label is no contact problem");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("LBL-0001") && reason.contains("already issued") && reason.contains(&first_chip),
        "the reason names the serial and the unit it belongs to: {reason}"
    );
    let failed_unit = failed[0]["unit"].as_u64().unwrap();
    let touched: Vec<&str> = events
        .iter()
        .filter(|event| event["event"] == "step-started" && event["unit"].as_u64() == Some(failed_unit))
        .filter_map(|event| event["step"].as_str())
        .collect();
    assert_eq!(
        touched,
        ["connect", "identify", "check-identity"],
        "the refused unit was never erased or programmed"
    );
    assert!(units.iter().any(|unit| unit["result"] == "pass" && unit["serial"] == "LBL-0002"));
}

#[test]
fn serials_read_from_standard_input_as_they_are_scanned() {
    use std::io::Write;
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    // Its `[scanner]` says what a serial label looks like: a stray scan is logged and ignored.
    let profile = write_profile(
        directory.path(),
        "patterned.toml",
        &scanned_serials_profile_text().replace("[trust]", "[scanner]\nserial = \"STDIN-[0-9]\"\n\n[trust]"),
    );
    let mut child = imprint()
        .args(["run", "--json", "--sim-timing", "zero", "--sim", "2", "--serials", "-", "--db"])
        .arg(&db)
        .arg("--profile")
        .arg(&profile)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for serial in ["STDIN-1", "WO-77", "STDIN-2", "STDIN-3"] {
        writeln!(stdin, "{serial}").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The end of input ends the line: the slots waiting for a scan stop, no unit fails.
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let events: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let issued: BTreeSet<&str> =
        finished_units(&events).iter().map(|unit| unit["serial"].as_str().unwrap()).collect();
    assert_eq!(issued, BTreeSet::from(["STDIN-1", "STDIN-2", "STDIN-3"]));
}

#[test]
fn bad_serial_sources_give_exit_code_2_naming_the_file_and_line() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let scanned = scanned_serials_profile(directory.path());
    let scanned = scanned.to_str().unwrap();
    let counter = repo_root().join("profiles/demo.toml");
    let counter = counter.to_str().unwrap();
    let file = |name: &str, text: &str| {
        let path = directory.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let duplicate = file("duplicate.txt", "LBL-1\nLBL-2\nLBL-1\n");
    let spaced = file("spaced.txt", "LBL-1\nLBL 2\n");
    let empty = file("empty.txt", "# nothing printed yet\n");
    let two = file("two.txt", "LBL-1\nLBL-2\n");
    // A profile whose `[scanner]` says what its serial labels look like refuses any other line.
    let patterned = write_profile(
        directory.path(),
        "patterned.toml",
        &scanned_serials_profile_text().replace("[trust]", "[scanner]\nserial = \"LBL-[0-9]\"\n\n[trust]"),
    );
    let patterned = patterned.to_str().unwrap();
    let stray = file("stray.txt", "LBL-1\nWO-77\n");
    for (arguments, expected) in [
        (
            vec!["--profile", patterned, "--serials", &stray],
            "stray.txt:2: serial WO-77 does not match the serial labels of",
        ),
        (vec!["--profile", scanned], "give the units' serials with --serials FILE"),
        (vec!["--profile", counter, "--serials", &two], "--serials is for \"scanned\" profiles"),
        (
            vec!["--profile", scanned, "--serials", &duplicate],
            "duplicate.txt:3: serial LBL-1 is also on line 1",
        ),
        (vec!["--profile", scanned, "--serials", &spaced], "spaced.txt:2"),
        (vec!["--profile", scanned, "--serials", &empty], "found none"),
        (vec!["--profile", scanned, "--serials", &two, "--count", "3"], "holds only 2 serials"),
        (vec!["--profile", scanned, "--serials", &two, "--work-order", " "], "--work-order"),
    ] {
        let output = imprint()
            .args(["run", "--json", "--sim-timing", "zero", "--db"])
            .arg(&db)
            .args(&arguments)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(stderr.contains(expected), "{arguments:?}: expected {expected:?} in {stderr}");
        // With --json the refusal is the stream's one object, and no unit started.
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(stdout.lines().count(), 1, "{arguments:?}: {stdout}");
        assert!(
            stdout.contains("\"event\":\"line-refused\"") && !stdout.contains("unit-started"),
            "{stdout}"
        );
        assert!(!db.exists(), "{arguments:?} created the ledger");
    }
}

/// The JSON stream carries what front ends read as typed fields beside `detail`: `identify`
/// gives the chip UID and whether the ledger knew the chip, `allocate-identity` the serial and
/// device ID; they agree with `unit-finished`, and no other step carries them. A second run on
/// the same chips (same UID seed, same ledger) sees every chip before.
#[test]
fn json_stream_carries_typed_step_facts() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let profile = repo_root().join("profiles/demo.toml");
    let arguments = ["--profile", profile.to_str().unwrap(), "--count", "2", "--sim-uid-seed", "41"];
    for expected_seen_before in [false, true] {
        let (code, events) = run_json(&arguments, &db);
        assert_eq!(code, 0);
        let finished: BTreeMap<u64, &serde_json::Value> = events
            .iter()
            .filter(|event| event["event"] == "unit-finished")
            .map(|event| (event["unit"].as_u64().unwrap(), event))
            .collect();
        assert_eq!(finished.len(), 2);
        let mut typed_steps = 0;
        for event in events.iter().filter(|event| event["event"] == "step-finished") {
            let unit_finished = finished[&event["unit"].as_u64().unwrap()];
            let facts: BTreeSet<&str> = ["chip_uid", "seen_before", "serial", "device_id"]
                .into_iter()
                .filter(|field| event.get(*field).is_some())
                .collect();
            match event["step"].as_str().unwrap() {
                "identify" => {
                    assert_eq!(facts, BTreeSet::from(["chip_uid", "seen_before"]), "{event}");
                    assert_eq!(event["chip_uid"], unit_finished["chip_uid"]);
                    assert_eq!(event["chip_uid"], event["detail"]["chip_uid"]);
                    assert_eq!(event["seen_before"], expected_seen_before, "{event}");
                    typed_steps += 1;
                }
                "allocate-identity" => {
                    assert_eq!(facts, BTreeSet::from(["serial", "device_id"]), "{event}");
                    assert_eq!(event["serial"], unit_finished["serial"]);
                    assert_eq!(event["device_id"], unit_finished["device_id"]);
                    typed_steps += 1;
                }
                _ => assert!(facts.is_empty(), "{event}"),
            }
        }
        assert_eq!(typed_steps, 4);
    }
}

/// A station must know its ledger: `imprint run` refuses a missing ledger (exit 2, naming the
/// path, creating no file or directory) unless told to create it; names with control characters
/// and an empty station name are refused before any unit (issue 19).
#[test]
fn a_missing_ledger_or_a_bad_name_is_refused_before_any_unit() {
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = repo_root().join("profiles/demo.toml");
    let mistyped = directory.path().join("no-such-dir").join("ledgr.db");
    let base = |db: &std::path::Path| {
        let mut command = imprint();
        command.env_remove("IMPRINT_CREATE_LEDGER").args([
            "run",
            "--sim",
            "1",
            "--sim-timing",
            "zero",
            "--json",
        ]);
        command.arg("--profile").arg(&profile).arg("--db").arg(db).args(["--count", "1", "--operator", "op"]);
        command
    };
    let refused = base(&mistyped).output().expect("run");
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("ledgr.db"), "{}", text(&refused.stderr));
    assert!(!text(&refused.stdout).contains("unit-started"), "{}", text(&refused.stdout));
    assert!(!mistyped.parent().expect("parent").exists(), "a directory was created for a missing ledger");

    let db = directory.path().join("ledger.db");
    let created = base(&db).arg("--create-ledger").output().expect("run");
    assert!(created.status.success(), "{}", text(&created.stderr));
    let again = base(&db).output().expect("run");
    assert!(again.status.success(), "an existing ledger needs no flag: {}", text(&again.stderr));

    for (flag, value) in [("--station", ""), ("--station", "line\u{1b}[31m"), ("--operator", "op\u{7}")] {
        let output = base(&db).args([flag, value]).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{flag} {value:?}: {}", text(&output.stderr));
        assert!(!text(&output.stdout).contains("unit-started"), "{flag} {value:?}: a unit was touched");
    }
}

/// A panic in a slot (a defective backend) is a failed unit and a failed run, never a silent gap
/// that exits 0 (issue 19): the unit it hit is reported failed, the other slot goes on, and the
/// exit code is 1.
#[test]
fn a_slot_that_panics_fails_its_unit_and_the_run() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let profile = repo_root().join("profiles/demo.toml");
    let profile = profile.to_str().expect("utf-8 path");
    let (code, events) = run_json(
        &["--profile", profile, "--sim", "2", "--count", "4", "--sim-fault", "0.1:panic=erase"],
        &db,
    );
    assert_eq!(code, 1, "{events:?}");
    let finished = finished_units(&events);
    let passed = finished.iter().filter(|event| event["result"] == "pass").count();
    let failed: Vec<_> = finished.iter().filter(|event| event["result"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{finished:?}");
    assert!(
        failed[0]["reason"].as_str().unwrap_or_default().contains("station fault on slot 0"),
        "{failed:?}"
    );
    // Slot 0 stops after its fault; slot 1 provisions the rest of the budget.
    assert_eq!(passed, 3, "{finished:?}");
}

/// Starts a long `imprint run --json` (realistic timing) on a fresh ledger; returns the child
/// and the ledger path.
fn start_long_json_run(directory: &std::path::Path) -> (std::process::Child, std::path::PathBuf) {
    let db = directory.join("ledger.db");
    let child = imprint()
        .args(["run", "--json", "--sim", "2", "--count", "1000", "--operator", "op", "--profile"])
        .arg(repo_root().join("profiles/demo.toml"))
        .arg("--db")
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start imprint run");
    (child, db)
}

/// Reads JSON events from `reader` until `wanted` units have finished; returns the lines read.
fn read_until_units_finished(reader: &mut impl std::io::BufRead, wanted: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut finished = 0;
    while finished < wanted {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read event") == 0 {
            panic!("the run ended before {wanted} units finished: {lines:?}");
        }
        if line.contains("\"unit-finished\"") {
            finished += 1;
        }
        lines.push(line);
    }
    lines
}

/// Every chip that received an identity has a run record: no unit abandoned in flight.
fn assert_no_unit_abandoned(db: &std::path::Path) {
    let query = |sql: &str| {
        let output = common::run_checked(std::process::Command::new("sqlite3").arg(db).arg(sql));
        text(&output.stdout).trim().to_owned()
    };
    assert_eq!(
        query(
            "SELECT count(*) FROM units u WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.chip_uid = u.chip_uid)"
        ),
        "0",
        "a unit got an identity and no run record"
    );
    assert_eq!(query("PRAGMA integrity_check"), "ok");
}

/// SIGTERM (what systemd sends) stops the line like Ctrl-C: no new unit starts, the units in
/// flight finish (they pass: a stop is not a failure), `line-finished` is sent, and the exit code
/// is 3, "stopped early", neither success nor "a unit failed" (issues 18 and 19).
#[test]
fn sigterm_records_the_units_in_flight_and_ends_the_stream() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (mut child, db) = start_long_json_run(directory.path());
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = read_until_units_finished(&mut reader, 2);
    common::run_checked(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("read the rest");
    lines.extend(rest.lines().map(str::to_owned));
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(3), "SIGTERM must read as \"stopped early\": {status:?}");
    let events: Vec<serde_json::Value> =
        lines.iter().map(|line| serde_json::from_str(line).expect("JSON event")).collect();
    assert!(events.iter().any(|event| event["event"] == "line-finished"), "no line-finished after SIGTERM");
    let started = events.iter().filter(|event| event["event"] == "unit-started").count();
    let finished = finished_units(&events);
    assert_eq!(started, finished.len(), "every unit started before SIGTERM must finish and be reported");
    assert!(finished.len() < 1000, "the line did not stop");
    assert!(finished.iter().all(|event| event["result"] == "pass"), "a stop failed a unit: {finished:?}");
    assert_no_unit_abandoned(&db);
}

/// A second SIGTERM (or Ctrl-C) while the line stops aborts the units in flight after their
/// current step: each is reported and recorded ABORTED (not FAIL) with the steps it did, kept out
/// of the first-pass yield, and the exit code is 3 (issue 18).
#[test]
fn a_second_signal_aborts_the_units_in_flight_and_records_them_aborted() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (mut child, db) = start_long_json_run(directory.path());
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = read_until_units_finished(&mut reader, 2);
    // Into the next units' flashing (a unit takes about 3 s at the demo's timing).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id().to_string();
    common::run_checked(std::process::Command::new("kill").args(["-TERM", &pid]));
    std::thread::sleep(std::time::Duration::from_millis(200));
    common::run_checked(std::process::Command::new("kill").args(["-TERM", &pid]));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("read the rest");
    lines.extend(rest.lines().map(str::to_owned));
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert_eq!(status.code(), Some(3), "{status:?}: {stderr}");
    assert!(stderr.contains("aborting"), "{stderr}");
    let events: Vec<serde_json::Value> =
        lines.iter().map(|line| serde_json::from_str(line).expect("JSON event")).collect();
    let finished = finished_units(&events);
    let aborted: Vec<_> = finished.iter().filter(|event| event["result"] == "aborted").collect();
    assert!(!aborted.is_empty(), "no unit was aborted: {finished:?}");
    assert!(finished.iter().all(|event| event["result"] != "fail"), "an abort failed a unit: {finished:?}");
    for event in &aborted {
        assert_eq!(event["error_code"], "aborted", "{event}");
        assert!(event["record_hash"].is_string(), "an aborted unit must be recorded: {event}");
    }
    let line_finished = events.iter().find(|event| event["event"] == "line-finished").expect("line-finished");
    assert_eq!(line_finished["aborted"], aborted.len(), "{line_finished}");
    assert_no_unit_abandoned(&db);
    let stats = common::run_checked(imprint().args(["log", "stats", "--json", "--db"]).arg(&db));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    assert_eq!(stats["runs_aborted"], aborted.len(), "{stats}");
    assert_eq!(stats["runs_failed"], 0, "{stats}");
    let passed = finished.len() - aborted.len();
    assert_eq!(stats["chips_tested"], passed, "aborted units count in the yield: {stats}");
    assert_eq!(stats["first_pass_yield_percent"], 100.0, "{stats}");
}

/// A closed standard output (the fixture controller went away) stops the line with its units in
/// flight recorded and exits 141, never a panic (issue 19).
#[test]
fn a_closed_stdout_stops_the_line_and_records_the_units_in_flight() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (mut child, db) = start_long_json_run(directory.path());
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    read_until_units_finished(&mut reader, 2);
    drop(reader);
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert_eq!(status.code(), Some(141), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_no_unit_abandoned(&db);
}

/// Commands that print to a closed pipe end quietly with 141 instead of a panic (exit 101) or
/// "bad input" (exit 2).
#[test]
fn a_closed_pipe_ends_a_printing_command_with_141() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let (code, _) = run_json(
        &[
            "--profile",
            repo_root().join("profiles/demo.toml").to_str().expect("utf-8"),
            "--sim",
            "2",
            "--count",
            "40",
        ],
        &db,
    );
    assert_eq!(code, 0);
    for arguments in [vec!["log", "export", "--format", "jsonl"], vec!["log", "verify"], vec!["log", "stats"]]
    {
        let mut child = imprint()
            .args(&arguments)
            .arg("--db")
            .arg(&db)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start");
        // Close the read end at once, as `| head -c0` would.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("wait");
        assert_eq!(output.status.code(), Some(141), "{arguments:?}: {}", text(&output.stderr));
        assert!(!text(&output.stderr).contains("panicked"), "{arguments:?}: {}", text(&output.stderr));
    }
}

/// One rule for every backend's fixture (issue 19): a `gdb:` endpoint that does not answer is
/// refused at start (exit 2, no unit), as a missing probe-rs probe is; one that answers at start
/// and then keeps failing stops its slot after a bounded time, so a `--count` run ends, and
/// fails, instead of retrying forever.
#[test]
fn a_gdb_fixture_that_does_not_answer_is_refused_at_start_and_one_that_keeps_failing_ends_the_run() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let profile = repo_root().join("profiles/demo.toml");
    let profile = profile.to_str().expect("utf-8 path");

    // Nothing listens on a port just released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let selector = format!("gdb:{closed}");
    let (code, events) = run_json(&["--profile", profile, "--probe", &selector, "--count", "1"], &db);
    assert_eq!(code, 2, "{events:?}");
    assert!(events.iter().all(|event| event["event"] != "unit-started"), "{events:?}");
    let refused = imprint()
        .args(["run", "--profile", profile, "--probe", &selector, "--count", "1", "--operator", "op", "--db"])
        .arg(&db)
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains(&selector) && stderr.contains("does not answer"), "{stderr}");

    // A server that accepts and hangs up at once: reachable at start, no unit ever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            drop(connection);
        }
    });
    let started = std::time::Instant::now();
    let output = imprint()
        .args(["run", "--profile", profile, "--count", "2", "--operator", "op", "--db"])
        .arg(&db)
        .arg("--probe")
        .arg(format!("gdb:{address}"))
        .output()
        .expect("run");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed for 20 s without presenting a unit"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
}

/// Help examples are printed as written, never wrapped at the terminal's width: a wrapped example
/// is a command that breaks when copied (issue 19).
#[test]
fn help_examples_are_not_wrapped_on_a_narrow_terminal() {
    for (arguments, example) in [
        (
            &["log", "export", "--help"][..],
            "  imprint log export --central 'postgresql://imprint@db.example/factory' --format jsonl -o all-stations.jsonl",
        ),
        (
            &["run", "--help"][..],
            "  imprint run --profile PRODUCT.toml --probe gdb:127.0.0.1:3333 --count 1   (OpenOCD, pyOCD, J-Link)",
        ),
        (&["--help"][..], "  imprint manifest verify update.manifest --cert update.der"),
    ] {
        let output = imprint().args(arguments).env("COLUMNS", "50").output().expect("help");
        assert!(output.status.success(), "{arguments:?}: {}", text(&output.stderr));
        let help = text(&output.stdout);
        assert!(
            help.lines().any(|line| line == example),
            "{arguments:?}: example wrapped or missing:\n{help}"
        );
    }
}
