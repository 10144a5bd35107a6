//! FCC slots through the whole pipeline against the real device: `imprint run --profile
//! profiles/fcc-linux.toml --probe fcc:127.0.0.1:PORT` drives the unmodified upstream
//! factory-configurator-client-example (built by scripts/fcc-device.sh from IMPRINT_FCC_SOURCE,
//! one process per slot). The oracles are the device's own answers, its own verification of the
//! stored items (Imprint's fcc-verify tool around `fcc_verify_device_configured_4mbed_cloud`)
//! and `openssl verify` for every issued certificate.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::fcc::{FccDevice, start_fcc_devices};
use common::{
    absolutize_profile_paths, exported_runs, imprint, openssl_ok, repo_root, run_json_events, write_profile,
};
use serde_json::Value;

fn fcc_profile() -> PathBuf {
    repo_root().join("profiles/fcc-linux.toml")
}

/// profiles/fcc-linux.toml, edited, in `directory`.
fn edited_fcc_profile(directory: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let profiles = repo_root().join("profiles");
    let text = std::fs::read_to_string(fcc_profile()).expect("read profiles/fcc-linux.toml");
    let edited = edit(absolutize_profile_paths(&text, &profiles));
    write_profile(directory, "fcc-edited.toml", &edited)
}

/// Runs a line with one `--probe fcc:...` per device and `--count` the number of devices.
fn run_fcc_line(profile: &Path, devices: &[&FccDevice], db: &Path) -> (i32, Vec<Value>) {
    let mut arguments: Vec<String> = vec!["--profile".to_string(), profile.display().to_string()];
    for device in devices {
        arguments.push("--probe".to_string());
        arguments.push(format!("fcc:{}", device.endpoint()));
    }
    arguments.extend(["--count".to_string(), devices.len().to_string()]);
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    run_json_events(&arguments, db)
}

fn units_finished<'a>(events: &'a [Value], result: &str) -> Vec<&'a Value> {
    events.iter().filter(|event| event["event"] == "unit-finished" && event["result"] == result).collect()
}

/// The `step-finished` detail of `step` for `slot`.
fn step_detail<'a>(events: &'a [Value], slot: u64, step: &str) -> &'a Value {
    events
        .iter()
        .find(|event| event["event"] == "step-finished" && event["slot"] == slot && event["step"] == step)
        .map(|event| &event["detail"])
        .unwrap_or_else(|| panic!("no step-finished for {step} on slot {slot}: {events:#?}"))
}

fn assert_verified_by_openssl(certificate_pem: &str, directory: &Path, name: &str) {
    let path = directory.join(format!("{name}.pem"));
    std::fs::write(&path, certificate_pem).expect("write certificate");
    let ca = repo_root().join("profiles/demo-credentials/factory-ca.pem");
    let verdict = openssl_ok(
        &["verify", "-CAfile", ca.to_str().expect("path"), path.to_str().expect("path")],
        directory,
    );
    assert!(verdict.contains(": OK"), "openssl verify: {verdict}");
}

fn assert_nothing_passed(db: &Path, directory: &Path) {
    let runs = exported_runs(db, directory);
    assert!(!runs.is_empty(), "the failed run is recorded");
    for run in runs {
        assert_ne!(run["result"], "pass", "a run was recorded as PASS: {run:#}");
    }
}

#[test]
fn one_fcc_slot_provisions_a_unit_the_fcc_verifies() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let mut device = FccDevice::start();
    let (code, events) = run_fcc_line(&fcc_profile(), &[&device], &db);
    assert_eq!(code, 0, "events: {events:#?}\ndevice output:\n{}", device.log());
    let passed = units_finished(&events, "pass");
    assert_eq!(passed.len(), 1, "{events:#?}");
    assert!(passed[0]["serial"].as_str().expect("serial").starts_with("FCC-"), "{:#}", passed[0]);

    let inject = step_detail(&events, 0, "fcc-inject");
    assert_eq!(inject["return_status"], 0, "{inject:#}");
    assert_eq!(inject["return_status_name"], "FCC_STATUS_SUCCESS");
    assert_eq!(inject["info_message"], "The Factory process succeeded");
    let device_id = passed[0]["device_id"].as_str().expect("device id");
    assert_eq!(inject["endpoint_name"], device_id, "the endpoint name is the device ID");
    let items = inject["items"].as_array().expect("items");
    let names: Vec<&str> = items.iter().map(|item| item["name"].as_str().expect("name")).collect();
    for expected in [
        "mbed.VendorId",
        "mbed.ClassId",
        "mbed.EndpointName",
        "mbed.SerialNumber",
        "mbed.CurrentTime",
        "mbed.UpdateAuthCert",
        "mbed.BootstrapServerURI",
        "mbed.BootstrapServerCACert",
        "mbed.BootstrapDeviceCert",
        "mbed.BootstrapDevicePrivateKey",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for item in items {
        let keys: Vec<&String> = item.as_object().expect("item").keys().collect();
        assert_eq!(keys, ["group", "name", "sha256"], "an item records its name and digest only");
        assert_eq!(item["sha256"].as_str().expect("sha256").len(), 64);
    }
    for step in ["erase", "program-application", "verify-flash", "self-test", "lock"] {
        let skipped = events
            .iter()
            .find(|event| event["event"] == "step-skipped" && event["step"] == step)
            .unwrap_or_else(|| panic!("{step} is not recorded as skipped"));
        assert!(skipped["reason"].as_str().expect("reason").contains("no debug port"), "{skipped:#}");
    }
    for step in ["write-config", "verify-config", "verify-identity"] {
        assert!(
            !events.iter().any(|event| event["step"] == step),
            "{step} is not part of an [fcc] profile's pipeline"
        );
    }
    let certificate = step_detail(&events, 0, "issue-identity")["certificate_pem"].as_str().expect("pem");
    assert_verified_by_openssl(certificate, directory.path(), "unit");

    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
    let runs = exported_runs(&db, directory.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["result"], "pass");
}

/// Device-made keys: `device-key` asks the device's FCC for a CSR in the first message of a
/// keep-alive session, the factory CA issues the certificate for the device's key, and
/// `fcc-inject` sends it (and no key) in the last message; the device's verification passes.
#[test]
fn a_device_made_key_goes_through_the_csr_flow() {
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = edited_fcc_profile(directory.path(), |text| {
        text.replace("key_origin = \"station\"", "key_origin = \"device\"")
    });
    let db = directory.path().join("ledger.db");
    let mut device = FccDevice::start();
    let (code, events) = run_fcc_line(&profile, &[&device], &db);
    assert_eq!(code, 0, "events: {events:#?}\ndevice output:\n{}", device.log());
    let device_key = step_detail(&events, 0, "device-key");
    assert_eq!(device_key["key_origin"], "device", "{device_key:#}");
    assert_eq!(device_key["return_status_name"], "FCC_STATUS_SUCCESS");
    let issued = step_detail(&events, 0, "issue-identity");
    assert_eq!(issued["public_key_sha256"], device_key["public_key_sha256"], "issued for the device's key");
    assert_verified_by_openssl(
        issued["certificate_pem"].as_str().expect("pem"),
        directory.path(),
        "csr-unit",
    );
    let inject = step_detail(&events, 0, "fcc-inject");
    assert_eq!(inject["return_status_name"], "FCC_STATUS_SUCCESS", "{inject:#}");
    let groups: Vec<&str> = inject["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["group"].as_str().expect("group"))
        .collect();
    assert!(!groups.contains(&"Keys"), "a device-made key never leaves the device: {groups:?}");
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}

/// Eight devices on eight slots at once (the machine has two cores; each device is a small
/// process that sleeps on its socket).
#[test]
fn eight_fcc_slots_pass_with_distinct_identities() {
    const SLOTS: usize = 8;
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let mut devices = start_fcc_devices(SLOTS);
    let (code, events) = run_fcc_line(&fcc_profile(), &devices.iter().collect::<Vec<_>>(), &db);
    assert_eq!(code, 0, "events: {events:#?}");
    let passed = units_finished(&events, "pass");
    assert_eq!(passed.len(), SLOTS, "{events:#?}");
    let mut serials = std::collections::BTreeSet::new();
    let mut endpoint_names = std::collections::BTreeSet::new();
    let mut certificates = std::collections::BTreeSet::new();
    for slot in 0..SLOTS as u64 {
        let unit = passed.iter().find(|event| event["slot"] == slot).expect("a unit per slot");
        serials.insert(unit["serial"].as_str().expect("serial").to_string());
        let inject = step_detail(&events, slot, "fcc-inject");
        assert_eq!(inject["return_status_name"], "FCC_STATUS_SUCCESS", "{inject:#}");
        endpoint_names.insert(inject["endpoint_name"].as_str().expect("endpoint name").to_string());
        let certificate = step_detail(&events, slot, "issue-identity")["certificate_pem"]
            .as_str()
            .expect("pem")
            .to_string();
        assert_verified_by_openssl(&certificate, directory.path(), &format!("unit-{slot}"));
        certificates.insert(certificate);
    }
    assert_eq!(serials.len(), SLOTS, "{serials:?}");
    assert_eq!(endpoint_names.len(), SLOTS, "{endpoint_names:?}");
    assert_eq!(certificates.len(), SLOTS);
    for device in &mut devices {
        let report = device.verify_stored();
        assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
    }
}

/// A device that already holds the items (provisioned before, storage kept) answers 17 and the
/// unit fails at fcc-inject with the device's words and what the profile's rework policy makes
/// of it (each of the three); nothing is recorded as PASS.
#[test]
fn a_provisioned_device_fails_at_fcc_inject_with_17_and_the_rework_policy() {
    let directory = tempfile::tempdir().expect("temp dir");
    for (policy, words) in [
        ("reuse-identity", "the device keeps the identity it holds (serial.rework = \"reuse-identity\")"),
        ("refuse", "rework refused (serial.rework = \"refuse\")"),
        (
            "issue-new",
            "a new identity needs the device's FCC storage erased first (serial.rework = \"issue-new\")",
        ),
    ] {
        let profile = edited_fcc_profile(directory.path(), |text| {
            text.replace("rework = \"reuse-identity\"", &format!("rework = \"{policy}\""))
        });
        let first_db = directory.path().join(format!("first-{policy}.db"));
        let mut device = FccDevice::start();
        let (code, events) = run_fcc_line(&profile, &[&device], &first_db);
        assert_eq!(code, 0, "events: {events:#?}");
        assert!(device.wait_for_exit(Duration::from_secs(10)).is_some(), "{}", device.log());
        let device = device.resume_without_wipe();
        let db = directory.path().join(format!("again-{policy}.db"));
        let (code, events) = run_fcc_line(&profile, &[&device], &db);
        assert_eq!(code, 1, "events: {events:#?}");
        let failed = common::failed_units(&events);
        assert_eq!(failed.len(), 1, "{events:#?}");
        let (_, step, reason) = &failed[0];
        assert_eq!(step, "fcc-inject");
        assert!(reason.contains("17 FCC_STATUS_KCM_FILE_EXIST_ERROR"), "{reason}");
        assert!(reason.contains("Data already exists:mbed."), "the device's words name the item: {reason}");
        assert!(reason.contains(words), "{policy}: {reason}");
        assert!(recorded_failure(&db, directory.path(), "fcc-inject").contains(words), "{policy}");
        assert!(units_finished(&events, "pass").is_empty());
        assert_nothing_passed(&db, directory.path());
    }
}

/// `disable = true`: the first run passes and ends the device's factory flow; the device then
/// refuses every bundle with communication status 9.
#[test]
fn a_disabled_device_fails_at_fcc_inject_with_9() {
    let directory = tempfile::tempdir().expect("temp dir");
    let profile =
        edited_fcc_profile(directory.path(), |text| text.replace("disable = false", "disable = true"));
    let first_db = directory.path().join("first.db");
    let mut device = FccDevice::start();
    let (code, events) = run_fcc_line(&profile, &[&device], &first_db);
    assert_eq!(code, 0, "events: {events:#?}");
    assert_eq!(step_detail(&events, 0, "fcc-inject")["disable"], true);
    let report = device.verify_stored();
    assert!(report.output.contains("factory-disabled yes"), "{report:?}");
    let device = device.resume_without_wipe();
    let db = directory.path().join("ledger.db");
    let (code, events) = run_fcc_line(&profile, &[&device], &db);
    assert_eq!(code, 1, "events: {events:#?}");
    let failed = common::failed_units(&events);
    assert_eq!(failed.len(), 1, "{events:#?}");
    let (_, step, reason) = &failed[0];
    assert_eq!(step, "fcc-inject");
    assert!(reason.contains("9 FTCD_COMM_FAILED_TO_PROCESS_DATA"), "{reason}");
    assert!(reason.contains("disabled"), "{reason}");
    assert_nothing_passed(&db, directory.path());
}

/// Waits until a TCP connection to `port` on loopback is established (read from
/// /proc/net/tcp: the device's accepted socket), i.e. the station holds its session.
fn wait_for_established_connection(port: u16) {
    let local_port = format!(":{port:04X} ");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
        let established = table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && format!("{} ", fields[1]).ends_with(&local_port) && fields[3] == "01"
        });
        if established {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the station never connected to port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The device process dies while the station holds its session (the line opened its
/// connection and waits for the unit's scanned serial; the test kills the device, then scans):
/// a FAIL at fcc-inject naming the endpoint, nothing recorded as PASS.
#[test]
fn a_device_killed_mid_session_fails_at_fcc_inject() {
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = edited_fcc_profile(directory.path(), |text| {
        text.replace("scheme = \"counter\"\nprefix = \"FCC-\"\ncounter_width = 6\n", "scheme = \"scanned\"\n")
    });
    let db = directory.path().join("ledger.db");
    let mut device = FccDevice::start();
    let mut child = imprint()
        .args(["run", "--json", "--serials", "-", "--count", "1", "--db"])
        .arg(&db)
        .arg("--profile")
        .arg(&profile)
        .arg("--probe")
        .arg(format!("fcc:{}", device.endpoint()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start imprint run");
    let mut stdin = child.stdin.take().expect("stdin");
    wait_for_established_connection(device.port);
    device.kill();
    writeln!(stdin, "KILLED-0001").expect("scan a serial");
    drop(stdin);
    let events: Vec<Value> = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map(|line| serde_json::from_str(&line.expect("line")).expect("JSON event"))
        .collect();
    let status = child.wait().expect("imprint exits");
    assert_eq!(status.code(), Some(1), "events: {events:#?}");
    let failed = common::failed_units(&events);
    assert_eq!(failed.len(), 1, "{events:#?}");
    let (_, step, reason) = &failed[0];
    assert_eq!(step, "fcc-inject");
    assert!(reason.contains(&device.endpoint()), "the reason names the device: {reason}");
    assert_nothing_passed(&db, directory.path());
}

#[test]
fn an_unreachable_fcc_endpoint_refuses_the_start() {
    let directory = tempfile::tempdir().expect("temp dir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let selector = format!("fcc:127.0.0.1:{port}");
    let output = imprint()
        .args(["run", "--json", "--count", "1", "--db"])
        .arg(directory.path().join("ledger.db"))
        .arg("--profile")
        .arg(fcc_profile())
        .args(["--probe", &selector])
        .output()
        .expect("run imprint");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&selector) && stderr.contains("not reachable"), "{stderr}");
    // The stream says the line was refused, and nothing else: no unit started.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let events: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).expect("JSON event")).collect();
    assert_eq!(events.len(), 1, "units started: {stdout}");
    assert_eq!(events[0]["event"], "line-refused", "{stdout}");
    assert_eq!(events[0]["error_code"], "fixture", "{stdout}");
}

#[test]
fn fcc_profiles_and_slots_must_agree() {
    let directory = tempfile::tempdir().expect("temp dir");
    let output = imprint()
        .args(["run", "--json", "--count", "1", "--sim", "1", "--db"])
        .arg(directory.path().join("ledger.db"))
        .arg("--profile")
        .arg(fcc_profile())
        .output()
        .expect("run imprint");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // profiles/fcc-linux.toml is FCC-only: the refusal names the profile and what a sim slot
    // would need.
    for words in ["fcc-linux.toml", "FCC-only", "[chip], [memory], [images] or [self_test]", "fcc:HOST:PORT"]
    {
        assert!(stderr.contains(words), "{words:?} not in: {stderr}");
    }
}

/// `[chip]`, `[memory]`, `[images]` and `[self_test]` may be left out together, only with
/// `[fcc]`: a profile that has some of them, or none without `[fcc]`, is refused naming each
/// missing section.
#[test]
fn only_fcc_profiles_may_leave_out_the_firmware_sections() {
    let directory = tempfile::tempdir().expect("temp dir");
    let demo = common::demo_profile_text();
    let chip_section = {
        let start = demo.find("[chip]").expect("[chip] in the demo profile");
        let end = start + demo[start..].find("\n\n").expect("end of [chip]");
        demo[start..end].to_string()
    };
    // With [fcc] and only [chip]: the three others are named.
    let fcc_text = std::fs::read_to_string(edited_fcc_profile(directory.path(), |text| text)).expect("read");
    let partial = write_profile(directory.path(), "partial.toml", &format!("{fcc_text}\n{chip_section}\n"));
    // Without [fcc] and without the four sections.
    let no_fcc =
        write_profile(directory.path(), "no-fcc.toml", &fcc_text[..fcc_text.find("[fcc]").expect("[fcc]")]);
    let cases: [(&Path, &[&str], &str); 2] = [
        (
            &partial,
            &["memory", "images", "self_test"],
            "give all of [chip], [memory], [images] and [self_test]",
        ),
        (&no_fcc, &["chip", "memory", "images", "self_test"], "only an FCC-only profile, with [fcc]"),
    ];
    for (profile, missing, words) in cases {
        let output = imprint().args(["profile", "check"]).arg(profile).output().expect("run imprint");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        let file_name = profile.file_name().expect("file name").to_str().expect("UTF-8");
        assert!(stderr.contains(file_name) && stderr.contains(words), "{stderr}");
        for section in missing {
            assert!(
                stderr.contains(&format!("expected [{section}]"))
                    || stderr.contains(&format!("expected a [{section}] section")),
                "{section}: {stderr}"
            );
        }
    }
}

/// What `imprint profile check` refuses in `[fcc]`, each naming the file and the field.
#[test]
fn bad_fcc_sections_are_refused_naming_the_field() {
    let directory = tempfile::tempdir().expect("temp dir");
    // (text, replacement, the field named, the file named: the profile, or the file it names)
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "coaps://bootstrap.imprint.example:5684?aid=",
            "https://bootstrap.example?aid=1",
            "fcc.bootstrap_server_uri",
            "fcc-edited.toml",
        ),
        ("memory_total_kb = 524288", "memory_total_kb = 0", "fcc.memory_total_kb", "fcc-edited.toml"),
        (
            "bootstrap-server-ca.pem\"",
            "no-such-ca.pem\"",
            "fcc.bootstrap_server_ca_certificate",
            "no-such-ca.pem",
        ),
        ("device_type = \"linux-gateway\"\n", "", "product.device_type", "fcc-edited.toml"),
    ];
    for (from, to, field, file) in cases {
        let profile = edited_fcc_profile(directory.path(), |text| {
            assert!(text.contains(from), "{from:?} not in the profile");
            text.replacen(from, to, 1)
        });
        let output = imprint().args(["profile", "check"]).arg(&profile).output().expect("run imprint");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{field}: {stderr}");
        assert!(stderr.contains(field) && stderr.contains(file), "{field}: {stderr}");
    }
    let output = imprint().args(["profile", "check"]).arg(fcc_profile()).output().expect("run imprint");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The one run in the ledger failed at `step`; returns the recorded reason of that step.
fn recorded_failure(db: &Path, directory: &Path, step: &str) -> String {
    let runs = exported_runs(db, directory);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["result"], "fail", "{:#}", runs[0]);
    let steps = runs[0]["steps"].as_array().unwrap_or_else(|| panic!("no steps: {:#}", runs[0]));
    let failed: Vec<&Value> = steps.iter().filter(|recorded| recorded["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{steps:#?}");
    assert_eq!(failed[0]["name"], step, "{:#}", failed[0]);
    assert!(
        steps.iter().all(|recorded| recorded["name"] != "record" || recorded["status"] != "passed"),
        "{steps:#?}"
    );
    failed[0]["detail"]["reason"].as_str().expect("the failure's reason is recorded").to_string()
}

/// Runs one `fcc:` slot on `endpoint` with `profile`; the unit must FAIL at fcc-inject with a
/// reason containing every one of `expected`, in the event stream and in the ledger, and
/// nothing is recorded PASS.
fn check_fcc_inject_failure(profile: &Path, endpoint: &str, expected: &[&str]) {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let selector = format!("fcc:{endpoint}");
    let arguments = ["--profile", profile.to_str().expect("path"), "--probe", &selector, "--count", "1"];
    let (code, events) = run_json_events(&arguments, &db);
    assert_eq!(code, 1, "events: {events:#?}");
    let failed = common::failed_units(&events);
    assert_eq!(failed.len(), 1, "{events:#?}");
    let (_, step, reason) = &failed[0];
    assert_eq!(step, "fcc-inject", "{reason}");
    let recorded = recorded_failure(&db, directory.path(), "fcc-inject");
    for text in expected {
        assert!(reason.contains(text), "{text:?} not in the event's reason: {reason}");
        assert!(recorded.contains(text), "{text:?} not in the recorded reason: {recorded}");
    }
    assert!(units_finished(&events, "pass").is_empty());
    assert_nothing_passed(&db, directory.path());
}

/// A link that corrupts one byte of the station's request (the last byte of its SHA-256) on its
/// way to the real device: the device's framing check refuses the frame and closes the
/// connection (the FCC sends no error frame). Stands for line noise between station and device.
fn corrupting_link_to(device_endpoint: String) -> (String, std::thread::JoinHandle<()>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let endpoint = listener.local_addr().expect("address").to_string();
    let link = std::thread::spawn(move || {
        let (mut station, _) = listener.accept().expect("the station connects");
        let mut device = std::net::TcpStream::connect(&device_endpoint).expect("connect to the device");
        let mut device_to_station = device.try_clone().expect("clone");
        let mut station_to_device = station.try_clone().expect("clone");
        let answers = std::thread::spawn(move || {
            let _ = std::io::copy(&mut device_to_station, &mut station_to_device);
            let _ = station_to_device.shutdown(std::net::Shutdown::Both);
        });
        let mut header = [0u8; 12];
        if station.read_exact(&mut header).is_ok() {
            let length = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
            let mut rest = vec![0u8; length + 32];
            if station.read_exact(&mut rest).is_ok() {
                let last = rest.len() - 1;
                rest[last] ^= 0xff;
                let _ = device.write_all(&header).and_then(|()| device.write_all(&rest));
                let _ = std::io::copy(&mut station, &mut device);
            }
        }
        let _ = answers.join();
    });
    (endpoint, link)
}

/// A framing error against the real device, through the whole pipeline: the unit FAILs at
/// fcc-inject naming the endpoint and the closed connection.
#[test]
fn a_framing_error_fails_the_unit_at_fcc_inject() {
    let device = FccDevice::start();
    let (endpoint, link) = corrupting_link_to(device.endpoint());
    check_fcc_inject_failure(&fcc_profile(), &endpoint, &[&endpoint, "closed the connection"]);
    link.join().expect("the link thread");
}

/// A device that accepts the connection and never answers (a hung device: a listener that
/// accepts and stays silent): the unit FAILs at fcc-inject after `fcc.response_timeout_ms`.
#[test]
fn a_device_that_never_answers_fails_at_fcc_inject_with_a_timeout() {
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = edited_fcc_profile(directory.path(), |text| {
        text.replace("disable = false\n", "disable = false\nresponse_timeout_ms = 1500\n")
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let endpoint = listener.local_addr().expect("address").to_string();
    let silent = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the station connects");
        // Hold the connection until the station gives up and closes it.
        let mut buffer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &stream, &mut buffer);
    });
    check_fcc_inject_failure(&profile, &endpoint, &[&endpoint, "did not answer within 1500 ms"]);
    silent.join().expect("the silent device thread");
}

/// A change to a profile's text.
type ProfileEdit<'a> = Box<dyn Fn(String) -> String + 'a>;

/// `text` with its first line that starts with `prefix` replaced by `line`.
fn replace_line(text: &str, prefix: &str, line: &str) -> String {
    let mut replaced = false;
    let lines: Vec<&str> = text
        .lines()
        .map(|original| {
            if !replaced && original.starts_with(prefix) {
                replaced = true;
                line
            } else {
                original
            }
        })
        .collect();
    assert!(replaced, "no line starts with {prefix:?}");
    lines.join("\n") + "\n"
}

/// Things the device would refuse (tests/fcc.rs shows its answers) that are knowable from the
/// profile are refused at start (exit 2, naming the field and the file), before any unit: a
/// 15-byte vendor ID, an update certificate that is not P-256 (the device would even store
/// it), an expired update certificate, a factory CA that is not P-256. The real device
/// listening on the slot is never contacted: it still provisions a unit afterwards.
#[test]
fn what_the_device_would_refuse_is_refused_at_start() {
    let directory = tempfile::tempdir().expect("temp dir");
    let credentials = directory.path();
    common::fcc::openssl_p384_certificate(
        credentials,
        "/CN=P-384 authority",
        &["-addext", "basicConstraints=critical,CA:TRUE"],
    );
    let expired_key = imprint::trust::generate_signing_key();
    let mut request = imprint::trust::CertificateRequest::update_authority("Expired update authority", 30);
    request.not_before = Some(std::time::SystemTime::now() - Duration::from_secs(400 * 24 * 3600));
    let expired = imprint::trust::self_signed_certificate(&expired_key, &request).expect("certificate");
    std::fs::write(credentials.join("expired.der"), expired.der()).expect("write certificate");
    imprint::trust::write_signing_key_pem(&expired_key, &credentials.join("expired.key.pem")).expect("key");
    let path = |name: &str| credentials.join(name).display().to_string();
    let update_certificate = |certificate: String, key: String| {
        move |text: String| {
            let text = replace_line(&text, "certificate = ", &format!("certificate = \"{certificate}\""));
            replace_line(&text, "signing_key = ", &format!("signing_key = \"{key}\""))
        }
    };
    // (edit, the field named, what the message says)
    let cases: Vec<(ProfileEdit<'_>, &str, &str)> = vec![
        (
            Box::new(|text: String| {
                text.replace(
                    "vendor_domain = \"fcc.imprint.example\"",
                    "vendor_id = \"000102030405060708090a0b0c0d0e\"",
                )
            }),
            "identity.vendor_id",
            "000102030405060708090a0b0c0d0e",
        ),
        (
            Box::new(update_certificate(path("p384.pem"), path("p384.key.pem"))),
            "trust.certificate",
            "p384.pem",
        ),
        (
            Box::new(update_certificate(path("expired.der"), path("expired.key.pem"))),
            "trust.certificate",
            "expected a certificate valid now",
        ),
        (
            Box::new(move |text: String| {
                let text = replace_line(
                    &text,
                    "ca_certificate = ",
                    &format!("ca_certificate = \"{}\"", path("p384.pem")),
                );
                replace_line(&text, "ca_key = ", &format!("ca_key = \"{}\"", path("p384.key.pem")))
            }),
            "device_identity.ca_certificate",
            "p384.pem",
        ),
    ];
    let mut device = FccDevice::start();
    let selector = format!("fcc:{}", device.endpoint());
    for (edit, field, words) in cases {
        let profile = edited_fcc_profile(directory.path(), |text| {
            let edited = edit(text.clone());
            assert_ne!(edited, text, "{field}: the edit changed nothing");
            edited
        });
        let db = directory.path().join("refused.db");
        let output = imprint()
            .args(["run", "--json", "--count", "1", "--db"])
            .arg(&db)
            .arg("--profile")
            .arg(&profile)
            .args(["--probe", &selector])
            .output()
            .expect("run imprint");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{field}: {stderr}");
        assert!(stderr.contains(field) && stderr.contains(words), "{field}: {stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.lines().all(|line| line.contains("line-refused")),
            "{field}: nothing but the refusal: {stdout}"
        );
        let check = imprint().args(["profile", "check"]).arg(&profile).output().expect("run imprint");
        assert_eq!(check.status.code(), Some(2), "{field}: {}", String::from_utf8_lossy(&check.stderr));
    }
    // The device was never contacted: it provisions a unit now.
    let db = directory.path().join("ledger.db");
    let (code, events) = run_fcc_line(&fcc_profile(), &[&device], &db);
    assert_eq!(code, 0, "events: {events:#?}\ndevice output:\n{}", device.log());
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}

/// `imprint probes --probe fcc:...` lists FCC endpoints, reachable or not, without disturbing a
/// device (its check opens a connection and closes it unused); a profile's `[fixture] default`
/// list of `fcc:` selectors then runs one slot per device, as the same `--probe`s would.
#[test]
fn imprint_probes_lists_fcc_endpoints_and_a_default_fixture_list_runs_them() {
    let directory = tempfile::tempdir().expect("temp dir");
    let mut devices = start_fcc_devices(2);
    let closed = {
        let spare = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        spare.local_addr().expect("address").to_string()
    };
    let reachable = format!("fcc:{}", devices[0].endpoint());
    let output = imprint()
        .args(["probes", "--json", "--probe", &reachable, "--fcc", &closed])
        .env_remove("IMPRINT_FCC_ENDPOINTS")
        .env_remove("IMPRINT_GDB_ENDPOINTS")
        .output()
        .expect("run imprint probes");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let endpoints = report["fcc_endpoints"].as_array().expect("fcc_endpoints");
    assert_eq!(endpoints.len(), 2, "{report:#}");
    // --fcc endpoints first, then --probe selectors.
    assert_eq!(endpoints[0]["selector"], format!("fcc:{closed}"));
    assert_eq!(endpoints[0]["reachable"], false, "{report:#}");
    assert!(endpoints[0]["status"].as_str().expect("status").starts_with("unreachable"), "{report:#}");
    assert_eq!(endpoints[1]["selector"], reachable);
    assert_eq!(endpoints[1]["reachable"], true, "{report:#}");
    let table = imprint()
        .args(["probes", "--probe", &reachable])
        .env_remove("IMPRINT_FCC_ENDPOINTS")
        .env_remove("IMPRINT_GDB_ENDPOINTS")
        .output()
        .expect("run imprint probes");
    let table = String::from_utf8_lossy(&table.stdout);
    let row = table.lines().find(|line| line.starts_with("fcc ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(&reachable) && row.ends_with("reachable"), "{table}");
    let refused = imprint().args(["probes", "--probe", "sim"]).output().expect("run imprint probes");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("fcc:HOST:PORT"));

    let selectors: Vec<String> =
        devices.iter().map(|device| format!("\"fcc:{}\"", device.endpoint())).collect();
    let profile = edited_fcc_profile(directory.path(), |text| {
        format!("{text}\n[fixture]\ndefault = [{}]\n", selectors.join(", "))
    });
    let db = directory.path().join("ledger.db");
    let (code, events) =
        run_json_events(&["--profile", profile.to_str().expect("path"), "--count", "2"], &db);
    assert_eq!(code, 0, "events: {events:#?}");
    assert_eq!(units_finished(&events, "pass").len(), 2, "{events:#?}");
    let fixtures = common::slot_fixtures(&events);
    let expected: std::collections::BTreeMap<u64, String> = devices
        .iter()
        .enumerate()
        .map(|(slot, device)| (slot as u64, format!("fcc:{}", device.endpoint())))
        .collect();
    assert_eq!(fixtures, expected);
    for device in &mut devices {
        let report = device.verify_stored();
        assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
    }
    let bad = edited_fcc_profile(directory.path(), |text| {
        format!("{text}\n[fixture]\ndefault = [\"fcc:nowhere\"]\n")
    });
    let check = imprint().args(["profile", "check"]).arg(&bad).output().expect("run imprint");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fixture.default") && stderr.contains("fcc:nowhere"), "{stderr}");
}

/// FCC over a serial port (`--probe fcc:/dev/...`, as an Mbed OS device's UART on a USB-UART):
/// the station opens one end of a pty pair; the other end is bridged to the real device's
/// socket, with console text ahead of the device's answer (as a UART console prints around its
/// frames). The unit passes and the device's own verification of what it stored passes.
#[test]
fn a_device_on_a_serial_port_is_provisioned_through_its_fcc() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let mut device = FccDevice::start();
    let bridge = common::fcc::bridge_pty_to(&device);
    let port = &bridge.port;
    let selector = format!("fcc:{port},baud=115200");
    let profile = fcc_profile();
    let arguments = ["--profile", profile.to_str().expect("path"), "--probe", &selector, "--count", "1"];
    let (code, events) = run_json_events(&arguments, &db);
    assert_eq!(code, 0, "events: {events:#?}\ndevice output:\n{}", device.log());
    assert_eq!(units_finished(&events, "pass").len(), 1, "{events:#?}");
    assert_eq!(common::slot_fixtures(&events).get(&0), Some(&selector));
    let inject = step_detail(&events, 0, "fcc-inject");
    assert_eq!(inject["return_status_name"], "FCC_STATUS_SUCCESS", "{inject:#}");
    assert_eq!(inject["endpoint"], selector);
    drop(bridge);
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}

/// A delegated update authority (`trust.delegate_certificate`): `mbed.UpdateAuthCert` goes in
/// as a `CertificateChains` entry from the delegate to the CA; the real device stores it and
/// its own verification passes.
#[test]
fn a_delegated_update_authority_goes_in_as_a_certificate_chain() {
    use imprint::trust::{self, CertificateRequest, Signer};
    let directory = tempfile::tempdir().expect("temp dir");
    let ca_key = trust::generate_signing_key();
    let ca = trust::self_signed_certificate(
        &ca_key,
        &CertificateRequest::certificate_authority("Update CA", 7300),
    )
    .expect("CA");
    let delegate_key = trust::generate_signing_key();
    let delegate = trust::issue_certificate(
        &ca_key,
        &ca,
        &delegate_key.verifying_key(),
        &CertificateRequest::update_authority("Release signer", 3650),
    )
    .expect("delegate");
    std::fs::write(directory.path().join("ca.der"), ca.der()).expect("write");
    std::fs::write(directory.path().join("delegate.der"), delegate.der()).expect("write");
    trust::write_signing_key_pem(&delegate_key, &directory.path().join("delegate.pem")).expect("key");
    let path = |name: &str| directory.path().join(name).display().to_string();
    let profile = edited_fcc_profile(directory.path(), |text| {
        let text = replace_line(
            &text,
            "certificate = ",
            &format!(
                "certificate = \"{}\"\ndelegate_certificate = \"{}\"",
                path("ca.der"),
                path("delegate.der")
            ),
        );
        replace_line(&text, "signing_key = ", &format!("signing_key = \"{}\"", path("delegate.pem")))
    });
    let db = directory.path().join("ledger.db");
    let mut device = FccDevice::start();
    let (code, events) = run_fcc_line(&profile, &[&device], &db);
    assert_eq!(code, 0, "events: {events:#?}\ndevice output:\n{}", device.log());
    let inject = step_detail(&events, 0, "fcc-inject");
    let chain = inject["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["name"] == "mbed.UpdateAuthCert")
        .unwrap_or_else(|| panic!("no mbed.UpdateAuthCert: {inject:#}"));
    assert_eq!(chain["group"], "CertificateChains", "{chain:#}");
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}
