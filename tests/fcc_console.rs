//! FCC through the console port of a slot that also flashes, against the real device: a
//! simulated chip is flashed through its (simulated) probe, and the unit's FCC bundles go over
//! the slot's console port (`sim,console=PORT`), a pseudo-terminal bridged to the real FCC
//! (factory-configurator-client-example, or Imprint's fcc-serve around the real library for a
//! device that keeps its storage; built by scripts/fcc-device.sh from IMPRINT_FCC_SOURCE). The
//! oracles are the device's own answers and its own verification of what it stored (fcc-verify).

mod common;

use std::path::{Path, PathBuf};

use common::fcc::{FccDevice, bridge_pty_to};
use common::{absolutize_profile_paths, imprint, repo_root, run_json_events, write_profile};
use serde_json::Value;

/// The `[name]` section of `text`, up to the next section.
fn section(text: &str, name: &str) -> String {
    let start = text.find(&format!("\n[{name}]")).unwrap_or_else(|| panic!("no [{name}]")) + 1;
    let end = text[start..].find("\n[").map_or(text.len(), |offset| start + offset);
    text[start..end].to_string()
}

/// profiles/fcc-linux.toml with the demo profile's firmware sections (a unit flashed through
/// its probe) and the lock on, edited, in `directory`.
fn flashing_fcc_profile(directory: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let profiles = repo_root().join("profiles");
    let fcc = absolutize_profile_paths(
        &std::fs::read_to_string(profiles.join("fcc-linux.toml")).expect("read profiles/fcc-linux.toml"),
        &profiles,
    );
    let demo = common::demo_profile_text();
    let mut text = fcc.replace("[lock]\nenabled = false", "[lock]\nenabled = true");
    for name in ["chip", "memory", "images", "self_test", "sim"] {
        text.push('\n');
        text.push_str(&section(&demo, name));
    }
    write_profile(directory, "fcc-flashing.toml", &edit(text))
}

fn events_of<'a>(events: &'a [Value], kind: &str, step: &str) -> Vec<&'a Value> {
    events.iter().filter(|event| event["event"] == kind && event["step"] == step).collect()
}

/// Every run in the ledger, from `imprint log export --format jsonl`.
fn exported_runs(db: &Path, directory: &Path) -> Vec<Value> {
    let export = directory.join("export.jsonl");
    let output = imprint()
        .args(["log", "export", "--format", "jsonl", "--force", "--db"])
        .arg(db)
        .arg("-o")
        .arg(&export)
        .output()
        .expect("run imprint log export");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::read_to_string(&export)
        .expect("read export")
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line"))
        .filter(|record| record.get("result").is_some())
        .collect()
}

/// One unit on `sim,console=PORT` with `--sim-uid-seed` (the same chip every run).
fn run_console_line(profile: &Path, port: &str, db: &Path) -> (i32, Vec<Value>) {
    let selector = format!("sim,console={port}");
    let arguments = [
        "--profile",
        profile.to_str().expect("path"),
        "--probe",
        &selector,
        "--count",
        "1",
        "--sim-uid-seed",
        "7",
    ];
    run_json_events(&arguments, db)
}

/// A flashed unit gets its FCC bundle over the console port, in the same run: the flash steps,
/// the boot, `fcc-inject` (the real FCC answers 0) and the lock are done, the self-test is
/// recorded as skipped with the reason, and the device's own verification passes.
#[test]
fn a_flashed_unit_is_provisioned_through_its_console_port() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let profile = flashing_fcc_profile(directory.path(), |text| text);
    let mut device = FccDevice::start();
    let bridge = bridge_pty_to(&device);
    let (code, events) = run_console_line(&profile, &bridge.port, &db);
    assert_eq!(code, 0, "events: {events:#?}\ndevice output:\n{}", device.log());
    for step in ["connect", "identify", "erase", "program-bootloader", "program-application", "verify-flash"]
        .into_iter()
        .chain(["allocate-identity", "issue-identity", "fcc-inject", "lock", "verify-lock"])
    {
        assert_eq!(events_of(&events, "step-finished", step).len(), 1, "{step} done: {events:#?}");
    }
    let written = &events_of(&events, "step-finished", "program-application")[0]["detail"];
    assert!(written["bytes_written"].as_u64().expect("bytes") > 0, "{written:#}");
    let inject = &events_of(&events, "step-finished", "fcc-inject")[0]["detail"];
    assert_eq!(inject["return_status_name"], "FCC_STATUS_SUCCESS", "{inject:#}");
    assert_eq!(inject["booted_before"], true, "{inject:#}");
    assert_eq!(inject["endpoint"], "sim-0", "{inject:#}");
    for step in ["self-test", "negative-self-test"] {
        let skipped = events_of(&events, "step-skipped", step);
        assert_eq!(skipped.len(), 1, "{step}: {events:#?}");
        assert!(skipped[0]["reason"].as_str().expect("reason").contains("[fcc]"), "{:#}", skipped[0]);
    }
    assert!(events_of(&events, "step-started", "write-config").is_empty());
    let finished: Vec<&Value> = events.iter().filter(|event| event["event"] == "unit-finished").collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["result"], "pass");
    assert_eq!(finished[0]["locked"], true, "{:#}", finished[0]);
    let runs = exported_runs(&db, directory.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["result"], "pass");
    let steps = runs[0]["steps"].as_array().expect("steps");
    let status_of = |name: &str| {
        steps.iter().find(|step| step["name"] == name).map(|step| step["status"].clone()).unwrap_or_default()
    };
    for name in ["erase", "program-application", "verify-flash", "fcc-inject", "lock"] {
        assert_eq!(status_of(name), "passed", "{name}: {steps:#?}");
    }
    assert_eq!(status_of("self-test"), "skipped");
    drop(bridge);
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}

/// A profile with `[fcc]` and firmware on a slot with a debug probe but no console port is
/// refused at start (exit 2), naming the slot and the profile, before any unit is touched.
#[test]
fn a_probe_slot_without_a_console_port_is_refused_at_start() {
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = flashing_fcc_profile(directory.path(), |text| text);
    for selector in ["sim", "probe-rs:1366:1015"] {
        let output = imprint()
            .args(["run", "--count", "1", "--probe", selector, "--db"])
            .arg(directory.path().join("ledger.db"))
            .arg("--profile")
            .arg(&profile)
            .output()
            .expect("run imprint");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{selector}: {stderr}");
        for words in [selector, "fcc-flashing.toml", "console port"] {
            assert!(stderr.contains(words), "{selector}: {words:?} not in: {stderr}");
        }
    }
}
