//! Fuzz target: the product profile parser and validator (`Profile::from_toml_bytes`), the raw
//! TOML stage (serde into the `raw` structs, unknown fields refused) and every check after it.
//!
//! A profile is validated against a sandbox directory holding copies of the demo profile's
//! files (images, certificate, key) and the probe-rs target descriptions, so mutated profiles
//! that still point at real files reach the image, trust and placement checks. Profiles also
//! name files to read: so that a mutated input cannot make the fuzzer read a device file
//! (`/dev/stdin` blocks, `/dev/zero` never ends), inputs with any string that is absolute or
//! climbs out with `..` are only put through the TOML stage (the same parser, into a generic
//! table), not the file-reading checks. PKCS#11 keys go through every check: loading a profile
//! opens no token and loads no module (the key opens when a line starts), and no backend runs.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use imprint::profile::Profile;
use libfuzzer_sys::fuzz_target;

/// The sandbox's files: (path inside the sandbox, contents). Paths match the seed profiles in
/// fuzz/seeds/profile_parse/, which are the repository's profiles with `../` removed.
const SANDBOX_FILES: &[(&str, &[u8])] = &[
    ("demo-credentials/dev.cert.der", include_bytes!("../../profiles/demo-credentials/dev.cert.der")),
    ("demo-credentials/dev.key.pem", include_bytes!("../../profiles/demo-credentials/dev.key.pem")),
    ("firmware-blobs/demo/bootloader.bin", include_bytes!("../../firmware-blobs/demo/bootloader.bin")),
    ("firmware-blobs/demo/application.hex", include_bytes!("../../firmware-blobs/demo/application.hex")),
    (
        "firmware-blobs/demo/application-1.0.1.bin",
        include_bytes!("../../firmware-blobs/demo/application-1.0.1.bin"),
    ),
    ("image/known_0x08000000.hex", include_bytes!("../../tests/data/image/known_0x08000000.hex")),
    ("image/fw.elf", include_bytes!("../../tests/data/image/fw.elf")),
    ("image/fw_overlap.elf", include_bytes!("../../tests/data/image/fw_overlap.elf")),
    ("trust/rsa-cert.der", include_bytes!("../../tests/data/trust/rsa-cert.der")),
    ("trust/p384-cert.der", include_bytes!("../../tests/data/trust/p384-cert.der")),
    ("trust/expired-cert.der", include_bytes!("../../tests/data/trust/expired-cert.der")),
    ("trust/garbage.bin", include_bytes!("../../tests/data/trust/garbage.bin")),
    ("trust/other-p256-pkcs8.pem", include_bytes!("../../tests/data/trust/other-p256-pkcs8.pem")),
    ("probe_rs/custom-chip.yaml", include_bytes!("../../tests/data/probe_rs/custom-chip.yaml")),
    ("probe_rs/w7500.yaml", include_bytes!("../../tests/data/probe_rs/w7500.yaml")),
];

/// Creates (once per process) the sandbox and returns the path the profile is "read" from.
/// The directory is shared by concurrent fuzzing processes: files are written to a temporary
/// name and renamed, so a reader never sees half a file.
fn profile_path() -> &'static Path {
    static PROFILE_PATH: OnceLock<PathBuf> = OnceLock::new();
    PROFILE_PATH.get_or_init(|| {
        let sandbox = std::env::temp_dir().join("imprint-fuzz-profile-sandbox-v1");
        for (relative, contents) in SANDBOX_FILES {
            let path = sandbox.join(relative);
            if std::fs::read(&path).is_ok_and(|existing| existing == *contents) {
                continue;
            }
            let parent = path.parent().unwrap_or(&sandbox);
            let written = std::fs::create_dir_all(parent).and_then(|()| {
                let staging = parent.join(format!(".staging-{}", std::process::id()));
                std::fs::write(&staging, contents)?;
                std::fs::rename(&staging, &path)
            });
            if let Err(error) = written {
                panic!("fuzz setup: cannot write {}: {error}", path.display());
            }
        }
        sandbox.join("profile.toml")
    })
}

/// Whether every string in the document stays inside the sandbox.
fn stays_in_sandbox(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(text) => {
            !(text.starts_with('/') || text.starts_with('\\') || text.contains(".."))
        }
        toml::Value::Array(values) => values.iter().all(stays_in_sandbox),
        toml::Value::Table(table) => table.values().all(stays_in_sandbox),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // Not UTF-8: refused before any file is touched.
        assert!(Profile::from_toml_bytes(data, profile_path()).is_err());
        return;
    };
    // Same parser as the raw stage; an input that is not TOML is refused by it before any
    // file is touched, so it is safe to validate.
    if let Ok(document) = toml::from_str::<toml::Table>(text)
        && !document.values().all(stays_in_sandbox)
    {
        return;
    }
    match Profile::from_toml_bytes(data, profile_path()) {
        Ok(profile) => {
            // Accepted profiles keep the promises downstream code relies on.
            assert!(!profile.name.is_empty(), "accepted an empty product name");
            // An FCC-only profile has no firmware sections; the others keep their promises.
            if let Some(firmware) = &profile.firmware {
                let memory = &firmware.memory;
                let regions = memory.flash_regions();
                for (index, (name, region)) in regions.iter().enumerate() {
                    assert!(region.size_bytes > 0, "accepted an empty {name} region");
                    for (other_name, other) in &regions[index + 1..] {
                        let disjoint =
                            region.end_address() <= other.address || other.end_address() <= region.address;
                        assert!(disjoint, "accepted overlapping regions {name} and {other_name}");
                    }
                }
                for (name, image, region) in [
                    ("bootloader", &firmware.bootloader_image, memory.bootloader),
                    ("application", &firmware.application_image, memory.application),
                ] {
                    if let Err(error) = image.check_inside(region.address, region.size_bytes) {
                        panic!("accepted a {name} image outside its region: {error}");
                    }
                }
                let _ = memory.store_layout();
                let _ = memory.boot_state_address();
            }
            let _ = profile.file_sha256_hex();
        }
        Err(error) => {
            assert!(!error.problems.is_empty(), "a refused profile names no problem");
            let _ = error.to_string();
        }
    }
});
