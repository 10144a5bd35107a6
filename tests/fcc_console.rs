//! FCC through the console port of a slot that also flashes, against the real device: a
//! simulated chip is flashed through its (simulated) probe, and the unit's FCC bundles go over
//! the slot's console port (`sim,console=PORT`), a pseudo-terminal bridged to the real FCC
//! (factory-configurator-client-example, or Imprint's fcc-serve around the real library for a
//! device that keeps its storage; built by scripts/fcc-device.sh from IMPRINT_FCC_SOURCE). The
//! oracles are the device's own answers and its own verification of what it stored (fcc-verify).

mod common;

use std::path::{Path, PathBuf};

use common::fcc::{FccDevice, bridge_pty_to};
use common::{absolutize_profile_paths, exported_runs, imprint, repo_root, run_json_events, write_profile};
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
    for step in [
        "connect",
        "identify",
        "check-identity",
        "erase",
        "program-bootloader",
        "program-application",
        "verify-flash",
    ]
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

/// The `step-finished` detail of `step` (one unit).
fn detail<'a>(events: &'a [Value], step: &str) -> &'a Value {
    let finished = events_of(events, "step-finished", step);
    assert_eq!(finished.len(), 1, "{step}: {events:#?}");
    &finished[0]["detail"]
}

/// `rework = "..."` in the profile, and `[fcc] storage` when given.
fn rework_profile(directory: &Path, policy: &str, storage: Option<&str>) -> PathBuf {
    let policy = policy.to_string();
    let storage = storage.map(str::to_string);
    let name = format!("{policy}-{}.toml", storage.is_some());
    let path = flashing_fcc_profile(directory, move |text| {
        let text = text.replace("rework = \"reuse-identity\"", &format!("rework = \"{policy}\""));
        match &storage {
            Some(span) => text.replace("disable = false", &format!("disable = false\nstorage = {span}")),
            None => text,
        }
    });
    let renamed = directory.join(name);
    std::fs::rename(&path, &renamed).expect("rename profile");
    renamed
}

/// The demo memory map's config region: with `[fcc]` the station writes no config store there.
const STORAGE_SPAN: &str = "{ address = 0x000F_8000, size = 0x0_8000 }";

/// `reuse-identity`: the chip comes back (same unique ID), the ledger gives it the identity it
/// had, the bundle carrying that identity gets 17 from a device that keeps its storage, and the
/// station checks what the device holds with a `Verify`-only message: the unit passes with its
/// reused serial and endpoint name, and the device's own verification passes.
#[test]
fn reuse_identity_verifies_what_a_returning_device_holds() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let profile = rework_profile(directory.path(), "reuse-identity", None);
    let mut device = FccDevice::start_keeping_storage();
    let bridge = bridge_pty_to(&device);
    let (code, first) = run_console_line(&profile, &bridge.port, &db);
    assert_eq!(code, 0, "events: {first:#?}\ndevice output:\n{}", device.log());
    let serial = detail(&first, "allocate-identity")["serial"].clone();
    let endpoint_name = detail(&first, "fcc-inject")["endpoint_name"].clone();
    let (code, again) = run_console_line(&profile, &bridge.port, &db);
    assert_eq!(code, 0, "events: {again:#?}\ndevice output:\n{}", device.log());
    let allocated = detail(&again, "allocate-identity");
    assert_eq!(allocated["is_rework"], true, "{allocated:#}");
    assert_eq!(allocated["serial"], serial, "{allocated:#}");
    let inject = detail(&again, "fcc-inject");
    assert_eq!(inject["endpoint_name"], endpoint_name, "{inject:#}");
    let rework = &inject["rework"];
    assert_eq!(rework["policy"], "reuse-identity", "{inject:#}");
    assert_eq!(rework["first_answer"]["return_status"], 17, "{inject:#}");
    assert!(
        rework["first_answer"]["info_message"].as_str().expect("info").contains("already exists"),
        "{inject:#}"
    );
    assert_eq!(rework["verify_answer"]["return_status_name"], "FCC_STATUS_SUCCESS", "{inject:#}");
    assert_eq!(inject["return_status_name"], "FCC_STATUS_SUCCESS", "{inject:#}");
    let runs = exported_runs(&db, directory.path());
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|run| run["result"] == "pass" && run["serial"] == serial), "{runs:#?}");
    // The certificate the device holds is the first run's: `imprint log certificates` lists it
    // for this unit, not the one the second run issued and could not install.
    assert_eq!(inject["rework"]["certificate_installed"], false, "{inject:#}");
    let bundle_path = directory.path().join("devices.pem");
    let output = imprint()
        .args(["log", "certificates", "--db"])
        .arg(&db)
        .arg("-o")
        .arg(&bundle_path)
        .output()
        .expect("run imprint log certificates");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let bundle = std::fs::read_to_string(&bundle_path).expect("read the certificate bundle");
    let first_certificate =
        detail(&first, "issue-identity")["certificate_pem"].as_str().expect("pem").to_string();
    let second_certificate =
        detail(&again, "issue-identity")["certificate_pem"].as_str().expect("pem").to_string();
    assert_ne!(first_certificate, second_certificate);
    assert_eq!(bundle.trim(), first_certificate.trim(), "the bundle lists the installed certificate");
    let report = device.verify_stored_now();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
    drop(bridge);
}

/// `refuse`: the returning chip is refused at `identify`, before anything is written to it or
/// sent to its FCC (the device sees no message and still holds its items).
#[test]
fn refuse_stops_a_returning_device_before_it_is_touched() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let profile = rework_profile(directory.path(), "refuse", None);
    let mut device = FccDevice::start_keeping_storage();
    let bridge = bridge_pty_to(&device);
    let (code, first) = run_console_line(&profile, &bridge.port, &db);
    assert_eq!(code, 0, "events: {first:#?}\ndevice output:\n{}", device.log());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log_before = device.log();
    let (code, again) = run_console_line(&profile, &bridge.port, &db);
    assert_eq!(code, 1, "events: {again:#?}");
    let failed = common::failed_units(&again);
    assert_eq!(failed.len(), 1, "{again:#?}");
    assert_eq!(failed[0].1, "check-identity", "{failed:?}");
    assert!(failed[0].2.contains("refuse"), "{failed:?}");
    for step in ["erase", "fcc-inject"] {
        assert!(events_of(&again, "step-started", step).is_empty(), "{step} ran: {again:#?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(device.log(), log_before, "the device received a message");
    let report = device.verify_stored_now();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
    drop(bridge);
}

/// `issue-new`: a returning chip gets a new serial. Without `[fcc] storage` its device still
/// holds the old items and answers 17: the unit fails saying how to name the storage. With it,
/// the station erases that range through the probe before flashing (read back blank), which on
/// the device wipes its FCC items (the harness stands for that with a device whose storage is
/// blank), and the device takes the new identity: PASS, and its own verification passes.
#[test]
fn issue_new_erases_the_storage_through_the_probe_and_issues_a_new_identity() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let with_storage = rework_profile(directory.path(), "issue-new", Some(STORAGE_SPAN));
    let without_storage = rework_profile(directory.path(), "issue-new", None);
    let device = FccDevice::start_keeping_storage();
    let bridge = bridge_pty_to(&device);
    let (code, first) = run_console_line(&with_storage, &bridge.port, &db);
    assert_eq!(code, 0, "events: {first:#?}\ndevice output:\n{}", device.log());
    let storage = &detail(&first, "erase")["fcc_storage"];
    assert_eq!(storage["erased"], true, "{storage:#}");
    assert_eq!(storage["read_back_blank"], true, "{storage:#}");
    let first_serial = detail(&first, "allocate-identity")["serial"].clone();

    let (code, again) = run_console_line(&without_storage, &bridge.port, &db);
    assert_eq!(code, 1, "events: {again:#?}");
    let failed = common::failed_units(&again);
    assert_eq!(failed.len(), 1, "{again:#?}");
    assert_eq!(failed[0].1, "fcc-inject", "{failed:?}");
    for words in ["17 FCC_STATUS_KCM_FILE_EXIST_ERROR", "serial.rework = \"issue-new\"", "[fcc] storage"] {
        assert!(failed[0].2.contains(words), "{words:?} not in {failed:?}");
    }
    drop(bridge);
    drop(device);

    let mut wiped = FccDevice::start_keeping_storage();
    let bridge = bridge_pty_to(&wiped);
    let (code, third) = run_console_line(&with_storage, &bridge.port, &db);
    assert_eq!(code, 0, "events: {third:#?}\ndevice output:\n{}", wiped.log());
    let storage = &detail(&third, "erase")["fcc_storage"];
    assert_eq!(storage["erased"], true, "{storage:#}");
    assert!(storage["reason"].as_str().expect("reason").contains("issue-new"), "{storage:#}");
    let allocated = detail(&third, "allocate-identity");
    assert_eq!(allocated["is_rework"], true, "{allocated:#}");
    assert_ne!(allocated["serial"], first_serial, "{allocated:#}");
    assert!(allocated["retired_serial"].is_string(), "{allocated:#}");
    assert_eq!(detail(&third, "fcc-inject")["return_status_name"], "FCC_STATUS_SUCCESS");
    let report = wiped.verify_stored_now();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
    drop(bridge);
}

/// `[fcc] storage` is checked with the profile: inside the candidate or config region, whole
/// sectors, and only with `[memory]` (an FCC-only profile has no probe to erase it with).
#[test]
fn a_bad_fcc_storage_is_refused_naming_the_field() {
    let directory = tempfile::tempdir().expect("temp dir");
    for (span, words) in [
        ("{ address = 0x0000_8000, size = 0x1000 }", "candidate"),
        ("{ address = 0x000F_8100, size = 0x1000 }", "whole sectors"),
        ("{ address = 0x000F_8000, size = 0 }", "whole sectors"),
    ] {
        let profile = rework_profile(directory.path(), "issue-new", Some(span));
        let output = imprint().args(["profile", "check"]).arg(&profile).output().expect("run imprint");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{span}: {stderr}");
        assert!(stderr.contains("fcc.storage") && stderr.contains(words), "{span}: {stderr}");
    }
    let profiles = repo_root().join("profiles");
    let fcc_only = absolutize_profile_paths(
        &std::fs::read_to_string(profiles.join("fcc-linux.toml")).expect("read"),
        &profiles,
    )
    .replace("disable = false", &format!("disable = false\nstorage = {STORAGE_SPAN}"));
    let profile = write_profile(directory.path(), "fcc-only-storage.toml", &fcc_only);
    let output = imprint().args(["profile", "check"]).arg(&profile).output().expect("run imprint");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fcc.storage") && stderr.contains("[memory]"), "{stderr}");
}
