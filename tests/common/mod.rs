//! Helpers shared by integration tests (each test binary uses some of them).
#![allow(dead_code)]

pub mod fcc;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

pub mod uchub;

/// The manifest-tool version the tests compare against.
pub const MANIFEST_TOOL_VERSION: &str = "2.6.2";

/// Serialises venv creation between threads of one test binary; the file lock below does the same
/// between processes (parallel test binaries sharing a target directory).
static VENV_SETUP: Mutex<()> = Mutex::new(());

/// Path of an executable from Izuma's manifest-tool package (`manifest-tool`,
/// `manifest-dev-tool`, ...).
///
/// Uses the venv named by `IMPRINT_MANIFEST_TOOL_VENV` when set; otherwise creates one under the
/// cargo target directory (`python3 -m venv` + `pip install manifest-tool==2.6.2`) on first use.
/// Panics with the reason when the tool cannot be found or installed: tests never skip.
pub fn manifest_tool_bin(name: &str) -> PathBuf {
    if let Some(venv) = std::env::var_os("IMPRINT_MANIFEST_TOOL_VENV") {
        let executable = Path::new(&venv).join("bin").join(name);
        assert!(
            executable.is_file(),
            "IMPRINT_MANIFEST_TOOL_VENV={} has no bin/{name}",
            Path::new(&venv).display()
        );
        return executable;
    }
    let venv = target_dir().join("manifest-tool-venv");
    let executable = venv.join("bin").join(name);
    let marker = venv.join(format!("imprint-installed-manifest-tool-{MANIFEST_TOOL_VERSION}"));
    let _thread_guard = VENV_SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if marker.is_file() && executable.is_file() {
        return executable;
    }
    std::fs::create_dir_all(&venv).expect("create manifest-tool venv directory");
    let lock_file = std::fs::File::create(venv.with_extension("lock")).expect("create venv lock");
    lock_file.lock().expect("lock manifest-tool venv");
    // Another process may have finished the install while we waited for the lock.
    if !(marker.is_file() && executable.is_file()) {
        run_checked(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run_checked(
            Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("manifest-tool=={MANIFEST_TOOL_VERSION}")),
        );
        std::fs::write(&marker, b"").expect("write venv marker");
    }
    assert!(executable.is_file(), "manifest-tool installed into {} but it has no bin/{name}", venv.display());
    executable
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else the one holding this test executable.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in <target>/<profile>/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Runs `command` and returns its output; panics with both streams when it fails.
pub fn run_checked(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `openssl` (the outside oracle) in `directory`.
pub fn openssl(args: &[&str], directory: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(directory)
        .output()
        .unwrap_or_else(|error| panic!("cannot run openssl ({error}); scripts/test installs it"))
}

/// Runs `openssl` in `directory`, which must succeed; returns its standard output.
pub fn openssl_ok(args: &[&str], directory: &Path) -> String {
    let output = openssl(args, directory);
    assert!(output.status.success(), "openssl {args:?} failed:\n{}", text(&output.stderr));
    text(&output.stdout)
}

/// profiles/demo.toml (paths made absolute) with `serial.scheme = "scanned"`: each unit's serial
/// comes from its label.
pub fn scanned_serials_profile_text() -> String {
    let text = demo_profile_text()
        .replace("scheme = \"counter\"\nprefix = \"DS1-\"\ncounter_width = 6\n", "scheme = \"scanned\"\n");
    assert!(text.contains("scheme = \"scanned\""), "the demo profile's [serial] section changed");
    text
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of the `imprint` binary built for these tests, for a test that must start it through
/// another program (`setsid`, `unshare`); every other test uses [`imprint`].
pub fn imprint_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imprint"))
}

/// The `imprint` binary built for these tests, as a `Command`.
///
/// Tests give each run a fresh ledger in a temp dir, so the command may create it
/// (`IMPRINT_CREATE_LEDGER=1`, as `--create-ledger`); a test of the refusal of a missing ledger
/// removes that variable.
pub fn imprint() -> Command {
    let mut command = Command::new(imprint_binary());
    command
        .env("IMPRINT_CREATE_LEDGER", "1")
        .env_remove("IMPRINT_DB")
        .env_remove("IMPRINT_LEDGER")
        .env_remove("IMPRINT_LOG")
        .env_remove("IMPRINT_OPERATOR")
        .env_remove("IMPRINT_STATION");
    command
}

/// Creates an empty ledger at `path` with `imprint log init --db PATH`: a station never creates
/// its ledger unasked, so a test that runs a line on a new ledger makes it first (or passes
/// `--create-ledger` to `imprint run` / `imprint gui`).
pub fn create_ledger(path: &Path) {
    run_checked(imprint().args(["log", "init", "--db"]).arg(path));
}

/// profiles/demo.toml with its relative paths made absolute, so an edited copy can live in a
/// temporary directory.
pub fn demo_profile_text() -> String {
    let profiles = repo_root().join("profiles");
    let text = std::fs::read_to_string(profiles.join("demo.toml")).expect("read profiles/demo.toml");
    absolutize_profile_paths(&text, &profiles)
}

/// Rewrites `"../` and `"demo-credentials/` path prefixes relative to `profile_directory`.
pub fn absolutize_profile_paths(text: &str, profile_directory: &Path) -> String {
    let parent = profile_directory.parent().expect("profiles has a parent");
    text.replace("\"../", &format!("\"{}/", parent.display()))
        .replace("\"demo-credentials/", &format!("\"{}/demo-credentials/", profile_directory.display()))
}

/// Writes `text` as a profile file in `directory` and returns its path.
pub fn write_profile(directory: &Path, name: &str, text: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, text).expect("write profile");
    path
}

/// Runs `imprint run --json --sim-timing zero --db DB ARGUMENTS...`; returns the exit code and
/// the events.
pub fn run_json_events(arguments: &[&str], db: &Path) -> (i32, Vec<serde_json::Value>) {
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

/// The fixture each slot ran its units on, from `unit-started` events: slot -> fixture name
/// (the probe text up to its first space: `sim-1`, `qemu-0 (qemu pid ...)` -> `qemu-0`).
pub fn slot_fixtures(events: &[serde_json::Value]) -> std::collections::BTreeMap<u64, String> {
    events
        .iter()
        .filter(|event| event["event"] == "unit-started")
        .map(|event| {
            let probe = event["probe"].as_str().expect("unit-started has a probe");
            let name = probe.split(' ').next().unwrap_or(probe).to_string();
            (event["slot"].as_u64().expect("slot"), name)
        })
        .collect()
}

/// `unit-finished` events that failed: (slot, failing step, reason).
pub fn failed_units(events: &[serde_json::Value]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .filter(|event| event["event"] == "unit-finished" && event["result"] == "fail")
        .map(|event| {
            (
                event["slot"].as_u64().expect("slot"),
                event["failing_step"].as_str().unwrap_or_default().to_string(),
                event["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every run in the ledger, from `imprint log export --format jsonl` (into the same file each
/// time: `--force` replaces the last one).
pub fn exported_runs(db: &std::path::Path, directory: &std::path::Path) -> Vec<serde_json::Value> {
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
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
        .filter(|record| record.get("result").is_some())
        .collect()
}
