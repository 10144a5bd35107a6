//! The `imprint` binary driven as a user would: the README's run command, the JSON event
//! stream, exit codes, `profile check` on good and broken profiles, and a manifest-dev-tool
//! environment as a profile's trust source.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{demo_profile_text, imprint, manifest_tool_bin, repo_root, write_profile};

const ALL_STEPS: [&str; 14] = [
    "connect",
    "identify",
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

fn run_json(arguments: &[&str], db: &std::path::Path) -> (i32, Vec<serde_json::Value>) {
    let output = imprint()
        .args(["run", "--json", "--sim-timing", "zero", "--db"])
        .arg(db)
        .args(arguments)
        .output()
        .expect("run imprint");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let events = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON: {line}: {error}")))
        .collect();
    (output.status.code().expect("exit code"), events)
}

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
        assert_eq!(event["schema"], 1);
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
        let unit = event["unit"].as_u64().unwrap();
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
    ] {
        let (code, events) = run_json(&arguments, &db);
        assert_eq!(code, 2, "{arguments:?}");
        assert!(events.is_empty(), "{arguments:?}");
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
