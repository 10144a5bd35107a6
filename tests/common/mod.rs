//! Helpers shared by integration tests.
//!
//! Outside tools are found or installed here rather than skipped: a test that needs
//! Izuma/Pelion manifest-tool gets the real program or fails loudly saying why.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The manifest-tool release every interop test runs against.
pub const MANIFEST_TOOL_REQUIREMENT: &str = "manifest-tool==2.6.2";

/// Path of a program from the manifest-tool package (`manifest-tool`, `manifest-dev-tool`, ...).
///
/// Uses the virtual environment named by `IMPRINT_MANIFEST_TOOL_VENV` if set; otherwise creates
/// `${CARGO_TARGET_DIR:-target}/manifest-tool-venv` once (under a file lock, since test binaries
/// run concurrently) with `python3 -m venv` and `pip install manifest-tool==2.6.2`.
pub fn manifest_tool_bin(program: &str) -> PathBuf {
    let venv = manifest_tool_venv();
    let path = venv.join("bin").join(program);
    assert!(
        path.is_file(),
        "{} does not exist: the manifest-tool venv at {} has no {program}",
        path.display(),
        venv.display()
    );
    path
}

fn manifest_tool_venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        if let Some(venv) = std::env::var_os("IMPRINT_MANIFEST_TOOL_VENV") {
            let venv = PathBuf::from(venv);
            assert!(
                venv.join("bin/manifest-tool").is_file(),
                "IMPRINT_MANIFEST_TOOL_VENV={} has no bin/manifest-tool; install it with \
                 `python3 -m venv DIR && DIR/bin/pip install {MANIFEST_TOOL_REQUIREMENT}`",
                venv.display()
            );
            return venv;
        }
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let venv = target_dir.join("manifest-tool-venv");
        install_manifest_tool(&target_dir, &venv);
        venv
    })
}

fn install_manifest_tool(target_dir: &Path, venv: &Path) {
    std::fs::create_dir_all(target_dir)
        .unwrap_or_else(|error| panic!("creating {}: {error}", target_dir.display()));
    let lock_path = target_dir.join("manifest-tool-venv.lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|error| panic!("creating {}: {error}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|error| panic!("locking {}: {error}", lock_path.display()));
    // The marker is written only after pip succeeded, so a half-made venv is rebuilt.
    let marker = venv.join("imprint-installed.txt");
    let installed = std::fs::read_to_string(&marker).unwrap_or_default();
    if installed.trim() != MANIFEST_TOOL_REQUIREMENT {
        if venv.exists() {
            std::fs::remove_dir_all(venv)
                .unwrap_or_else(|error| panic!("removing {}: {error}", venv.display()));
        }
        run_or_panic(Command::new("python3").arg("-m").arg("venv").arg(venv));
        run_or_panic(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(MANIFEST_TOOL_REQUIREMENT),
        );
        std::fs::write(&marker, MANIFEST_TOOL_REQUIREMENT)
            .unwrap_or_else(|error| panic!("writing {}: {error}", marker.display()));
    }
    // Dropping the file releases the lock.
    drop(lock);
}

fn run_or_panic(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
