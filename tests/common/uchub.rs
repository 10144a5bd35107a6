//! The update-client-hub host oracles (tests/uc-hub-oracle, built by scripts/uc-hub-oracle.sh
//! from the directory `IMPRINT_UCHUB_SOURCE` names): the legacy client's own metadata-header and
//! manifest-manager code judging what Imprint writes. Missing setting = failing test, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static ORACLE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The directory holding `uc-header` and `uc-manifest`, built on first use (the script is a no-op
/// when they are up to date; a file lock keeps parallel test binaries from building at once).
pub fn oracle_dir() -> PathBuf {
    ORACLE_DIR
        .get_or_init(|| {
            let source = std::env::var_os("IMPRINT_UCHUB_SOURCE").unwrap_or_else(|| {
                panic!(
                    "IMPRINT_UCHUB_SOURCE is not set: it must name the directory that holds \
                     mbed-cloud-client/update-client-hub, an upstream mbed-cloud-client 4.13.x checkout \
                     (README.md, section Two commands). The v1-manifest and \
                     bootloader-header tests need the device's own code as their judge."
                )
            });
            let build_dir = super::target_dir().join("uc-hub-oracle");
            std::fs::create_dir_all(&build_dir).expect("create the oracle build directory");
            let lock_file =
                std::fs::File::create(build_dir.with_extension("lock")).expect("create oracle lock");
            lock_file.lock().expect("lock the oracle build");
            let output = super::run_checked(
                Command::new(super::repo_root().join("scripts/uc-hub-oracle.sh"))
                    .env("IMPRINT_UCHUB_SOURCE", &source)
                    .env("IMPRINT_UCHUB_BUILD", &build_dir),
            );
            let printed = PathBuf::from(super::text(&output.stdout).trim());
            assert!(printed.join("uc-manifest").is_file(), "no uc-manifest in {}", printed.display());
            printed
        })
        .clone()
}

/// The device's verdict: accepted, and the line the oracle printed (`accepted ...` or
/// `refused NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: bool,
    pub line: String,
}

fn verdict_of(command: &mut Command) -> Verdict {
    let output = command.output().unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    let line = super::text(&output.stdout).trim().to_string();
    match output.status.code() {
        Some(0) if line.starts_with("accepted") => Verdict { accepted: true, line },
        Some(1) if line.starts_with("refused") => Verdict { accepted: false, line },
        _ => panic!(
            "{command:?} gave no verdict ({}):\n{line}\n{}",
            output.status,
            super::text(&output.stderr)
        ),
    }
}

/// `uc-manifest`: the hub's manifest manager with `certificate_der` stored as mbed.UpdateAuthCert
/// and the given vendor/class IDs, judging the manifest file.
pub fn manifest_verdict(
    certificate_der: &Path,
    vendor_id: &[u8; 16],
    class_id: &[u8; 16],
    manifest: &Path,
) -> Verdict {
    verdict_of(
        Command::new(oracle_dir().join("uc-manifest"))
            .arg(certificate_der)
            .arg(hex::encode(vendor_id))
            .arg(hex::encode(class_id))
            .arg(manifest),
    )
}

/// `uc-header parse-internal FILE`.
pub fn parse_internal_header(header: &Path) -> Verdict {
    verdict_of(Command::new(oracle_dir().join("uc-header")).arg("parse-internal").arg(header))
}

/// `uc-header parse-external ROT FILE`.
pub fn parse_external_header(root_of_trust: &[u8; 16], header: &Path) -> Verdict {
    verdict_of(
        Command::new(oracle_dir().join("uc-header"))
            .arg("parse-external")
            .arg(hex::encode(root_of_trust))
            .arg(header),
    )
}

/// `uc-header create-internal|create-external`: the device's own header bytes.
pub fn create_header(
    root_of_trust: Option<&[u8; 16]>,
    version: u64,
    size: u64,
    sha256: &[u8; 32],
    campaign: &[u8; 16],
    output: &Path,
) -> Vec<u8> {
    let mut command = Command::new(oracle_dir().join("uc-header"));
    match root_of_trust {
        Some(rot) => command.arg("create-external").arg(hex::encode(rot)),
        None => command.arg("create-internal"),
    };
    command
        .arg(version.to_string())
        .arg(size.to_string())
        .arg(hex::encode(sha256))
        .arg(hex::encode(campaign))
        .arg(output);
    super::run_checked(&mut command);
    std::fs::read(output).expect("read the oracle's header")
}
