//! v1 manifests (the legacy update client) against two outside oracles: manifest-tool 2.6.2
//! `create-v1` (committed fixtures in tests/data/manifest-v1, made by its make-fixtures.sh, and
//! live runs) and the device's own manifest-manager (update-client-hub, built as the `uc-manifest`
//! host oracle, tests/common/uchub.rs).
//!
//! Imprint's verdict equals the device's on every mutation except two, both measured here: bytes
//! after the outer DER structure, and the certificate reference's `uri` (the manifest's last TLV),
//! which the device never reads; Imprint's strict DER refuses both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::uchub;
use imprint::manifest::v1::{
    DeltaFields, DeviceExpectations, ManifestRequestV1, ManifestV1Error, PayloadFormatV1, create_manifest_v1,
    decode_manifest_v1, semantic_version_timestamp, verify_manifest_v1,
};
use imprint::manifest::{ManifestSchema, SemanticVersion, detect_schema};
use imprint::trust::{Certificate, SoftwareSigner};
use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};

const VENDOR_ID: [u8; 16] =
    [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
const CLASS_ID: [u8; 16] =
    [0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10];
const FIXTURES: [&str; 3] = ["raw-v42.manifest", "raw-migrate-1.2.3.manifest", "delta-v7.manifest"];

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifest-v1").join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn certificate(name: &str) -> Certificate {
    Certificate::from_der(&fixture(name)).expect("fixture certificate parses")
}

fn fixture_signer() -> SoftwareSigner {
    let pem = String::from_utf8(fixture("update.key.pem")).expect("PEM is text");
    let secret_key = p256::SecretKey::from_sec1_pem(&pem).expect("update.key.pem parses");
    SoftwareSigner::new(SigningKey::from(&secret_key), "tests/data/manifest-v1/update.key.pem")
}

fn device() -> DeviceExpectations {
    DeviceExpectations {
        vendor_id: Some(uuid::Uuid::from_bytes(VENDOR_ID)),
        class_id: Some(uuid::Uuid::from_bytes(CLASS_ID)),
        installed_timestamp: 0,
    }
}

/// Where the signed `Resource` ends in a v1 manifest: the outer header, then the Resource TLV.
fn resource_range(manifest: &[u8]) -> std::ops::Range<usize> {
    let decoded = decode_manifest_v1(manifest).expect("decodes");
    let start = manifest
        .windows(decoded.signed_bytes.len())
        .position(|window| window == decoded.signed_bytes.as_slice())
        .expect("resource bytes are inside the manifest");
    start..start + decoded.signed_bytes.len()
}

#[test]
fn manifest_tool_fixtures_verify_with_the_fields_manifest_tool_wrote() {
    let update_certificate = certificate("update.cert.der");
    for name in FIXTURES {
        let manifest = fixture(name);
        assert_eq!(detect_schema(&manifest).expect("a manifest"), ManifestSchema::V1, "{name}");
        let decoded = verify_manifest_v1(&manifest, &update_certificate, &device())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(decoded.vendor_id, VENDOR_ID);
        assert_eq!(decoded.class_id, CLASS_ID);
        assert!(decoded.apply_immediately);
        assert_eq!(decoded.signatures.len(), 1);
        assert_eq!(
            decoded.signatures[0].certificates[0].fingerprint,
            update_certificate.fingerprint_sha256()
        );
        let payload = decoded.payload.as_ref().expect("payload");
        assert_eq!(payload.storage_identifier, "default");
        match name {
            "raw-v42.manifest" | "raw-migrate-1.2.3.manifest" => {
                let expected = if name == "raw-v42.manifest" {
                    42
                } else {
                    semantic_version_timestamp(SemanticVersion::new(1, 2, 3))
                };
                assert_eq!(decoded.timestamp, expected, "{name}");
                assert_eq!(decoded.payload_format(), Some(PayloadFormatV1::RawBinary));
                assert_eq!(decoded.priority, None);
                decoded.check_payload(&fixture("payload.bin")).expect("payload matches");
            }
            _ => {
                assert_eq!(decoded.timestamp, 7);
                assert_eq!(decoded.payload_format(), Some(PayloadFormatV1::BsdiffStream));
                assert_eq!(decoded.priority, Some(3));
                assert_eq!(payload.installed_size, Some(4096));
                assert_eq!(
                    payload.installed_digest.as_deref(),
                    Some(Sha256::digest(b"installed image").as_slice())
                );
                assert_eq!(
                    decoded.precursor_digest.as_deref(),
                    Some(Sha256::digest(b"precursor image").as_slice())
                );
                decoded.check_payload(&fixture("delta.bin")).expect("payload matches");
            }
        }
    }
}

#[test]
fn every_single_byte_mutation_of_manifest_tool_manifests_is_refused() {
    let update_certificate = certificate("update.cert.der");
    for name in FIXTURES {
        let manifest = fixture(name);
        let signed = resource_range(&manifest);
        let decoded = decode_manifest_v1(&manifest).expect("decodes");
        let signature = &decoded.signatures[0].signature;
        let signature_start = manifest
            .windows(signature.len())
            .rposition(|window| window == signature.as_slice())
            .expect("signature bytes are inside the manifest");
        let signature_bytes = signature_start..signature_start + signature.len();
        let mut tried = 0usize;
        for index in 0..manifest.len() {
            // Every value everywhere, except inside the ECDSA signature bytes, where each mutation
            // costs a full verification: three values per byte there.
            let values: Vec<u8> = if signature_bytes.contains(&index) {
                [0x01u8, 0x80, 0xff].iter().map(|flip| manifest[index] ^ flip).collect()
            } else {
                (0..=255u8).filter(|value| *value != manifest[index]).collect()
            };
            for value in values {
                let mut mutated = manifest.clone();
                mutated[index] = value;
                if let Ok(decoded) = verify_manifest_v1(&mutated, &update_certificate, &device()) {
                    panic!("{name}: byte {index} set to {value:#04x} still verifies: {decoded:?}");
                }
                tried += 1;
            }
        }
        assert!(tried > signed.len() * 255, "{name}: {tried} mutations");
    }
}

#[test]
fn wrong_certificate_vendor_class_and_rollback_are_refused_as_the_device_refuses_them() {
    let manifest = fixture("raw-v42.manifest");
    let update_certificate = certificate("update.cert.der");
    match verify_manifest_v1(&manifest, &certificate("other.cert.der"), &device()) {
        Err(ManifestV1Error::CertificateNotFound { .. }) => {}
        other => panic!("expected CertificateNotFound, got {other:?}"),
    }
    let mut wrong_vendor = device();
    wrong_vendor.vendor_id = Some(uuid::Uuid::from_bytes([9; 16]));
    assert!(matches!(
        verify_manifest_v1(&manifest, &update_certificate, &wrong_vendor),
        Err(ManifestV1Error::WrongIdentity { field: "vendorId", .. })
    ));
    let mut wrong_class = device();
    wrong_class.class_id = Some(uuid::Uuid::from_bytes([9; 16]));
    assert!(matches!(
        verify_manifest_v1(&manifest, &update_certificate, &wrong_class),
        Err(ManifestV1Error::WrongIdentity { field: "classId", .. })
    ));
    let mut installed_newer = device();
    installed_newer.installed_timestamp = 42;
    assert!(matches!(
        verify_manifest_v1(&manifest, &update_certificate, &installed_newer),
        Err(ManifestV1Error::Rollback { found: 42, installed: 42 })
    ));
    let mut trailing = manifest.clone();
    trailing.push(0);
    assert!(verify_manifest_v1(&trailing, &update_certificate, &device()).is_err());
}

/// Imprint's verdict and the device's on the same bytes (accepted or not).
fn compare_with_device(
    manifest: &[u8],
    path: &Path,
    certificate_path: &Path,
    certificate: &Certificate,
) -> (bool, uchub::Verdict) {
    std::fs::write(path, manifest).expect("write manifest");
    let imprint = verify_manifest_v1(manifest, certificate, &device()).is_ok();
    let device_verdict = uchub::manifest_verdict(certificate_path, &VENDOR_ID, &CLASS_ID, path);
    (imprint, device_verdict)
}

#[test]
fn imprint_gives_the_devices_verdict_on_manifest_tool_manifests_and_their_mutations() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("mutated.manifest");
    let update_certificate_path = fixture_path("update.cert.der");
    let update_certificate = certificate("update.cert.der");
    let mut compared = 0;
    for name in FIXTURES {
        let manifest = fixture(name);
        let (imprint, device_verdict) =
            compare_with_device(&manifest, &path, &update_certificate_path, &update_certificate);
        assert!(
            imprint && device_verdict.accepted,
            "{name}: Imprint {imprint}, device {}",
            device_verdict.line
        );
        // manifest-tool writes an empty certificate uri last: UTF8String tag 0x0c, length 0.
        assert_eq!(
            &manifest[manifest.len() - 2..],
            &[0x0c, 0x00],
            "{name} ends with the empty certificate uri"
        );
        let unread_uri_start = manifest.len() - 2;
        for index in 0..manifest.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut mutated = manifest.clone();
                mutated[index] ^= flip;
                let (imprint, device_verdict) =
                    compare_with_device(&mutated, &path, &update_certificate_path, &update_certificate);
                if index >= unread_uri_start {
                    // Measured: the device never reads the certificate reference's uri, the
                    // manifest's last TLV (tag and length included); Imprint's strict DER refuses.
                    assert!(
                        device_verdict.accepted && !imprint,
                        "{name}: byte {index} ^ {flip:#04x} (certificate uri): Imprint accepted={imprint}, device {}",
                        device_verdict.line
                    );
                } else {
                    assert_eq!(
                        imprint, device_verdict.accepted,
                        "{name}: byte {index} ^ {flip:#04x}: Imprint accepted={imprint}, device {}",
                        device_verdict.line
                    );
                }
                compared += 1;
            }
        }
        // Truncations: both refuse.
        for length in [0, 1, manifest.len() / 2, manifest.len() - 1] {
            let (imprint, device_verdict) = compare_with_device(
                &manifest[..length],
                &path,
                &update_certificate_path,
                &update_certificate,
            );
            assert!(
                !imprint && !device_verdict.accepted,
                "{name} truncated to {length}: {}",
                device_verdict.line
            );
        }
        // The one documented difference: bytes after the DER structure. The device ignores them,
        // Imprint refuses them (strict DER).
        let mut trailing = manifest.clone();
        trailing.extend_from_slice(b"\x00trailing");
        let (imprint, device_verdict) =
            compare_with_device(&trailing, &path, &update_certificate_path, &update_certificate);
        assert!(device_verdict.accepted && !imprint, "{name} + trailing bytes: {}", device_verdict.line);
        // A certificate the manifest does not name: both refuse.
        let other = fixture_path("other.cert.der");
        std::fs::write(&path, &manifest).expect("write manifest");
        assert!(!uchub::manifest_verdict(&other, &VENDOR_ID, &CLASS_ID, &path).accepted);
        assert!(verify_manifest_v1(&manifest, &certificate("other.cert.der"), &device()).is_err());
    }
    assert_eq!(compared, FIXTURES.iter().map(|name| fixture(name).len() * 3).sum::<usize>());
}

#[test]
fn every_imprint_v1_manifest_is_accepted_by_the_device() {
    let directory = tempfile::tempdir().expect("temp dir");
    let signer = fixture_signer();
    let update_certificate = certificate("update.cert.der");
    let certificate_path = fixture_path("update.cert.der");
    let vendor = uuid::Uuid::from_bytes(VENDOR_ID);
    let class = uuid::Uuid::from_bytes(CLASS_ID);
    let payloads: Vec<Vec<u8>> =
        vec![vec![0x5a], b"firmware".to_vec(), (0..=255u8).cycle().take(70_000).collect()];
    let timestamps = [
        1,
        42,
        1_700_000_000,
        semantic_version_timestamp(SemanticVersion::new(999, 999, 999)),
        u64::MAX >> 1,
    ];
    let mut index = 0;
    for payload in &payloads {
        for timestamp in timestamps {
            let mut request =
                ManifestRequestV1::new(vendor, class, timestamp, payload, "https://example.com/app.bin");
            if index % 2 == 1 {
                request.priority = Some(index as u64);
                request.vendor_info = b"vendor info".to_vec();
            }
            if index % 3 == 2 {
                request.delta = Some(DeltaFields {
                    installed_size: 4096,
                    installed_digest: Sha256::digest(b"new").to_vec(),
                    precursor_digest: Sha256::digest(b"old").to_vec(),
                });
            }
            let manifest = create_manifest_v1(&request, &signer, update_certificate.der()).expect("created");
            let path = directory.path().join(format!("imprint-{index}.manifest"));
            std::fs::write(&path, &manifest).expect("write manifest");
            let device_verdict = uchub::manifest_verdict(&certificate_path, &VENDOR_ID, &CLASS_ID, &path);
            assert!(device_verdict.accepted, "manifest {index}: {}", device_verdict.line);
            let expected_line = format!(
                "accepted timestamp={timestamp} size={} hash={} uri=https://example.com/app.bin",
                payload.len(),
                hex::encode(Sha256::digest(payload))
            );
            assert_eq!(device_verdict.line, expected_line);
            verify_manifest_v1(&manifest, &update_certificate, &device()).expect("Imprint verifies its own");
            index += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Live manifest-tool runs

fn run_manifest_tool(directory: &Path, args: &[&str]) {
    common::run_checked(
        Command::new(common::manifest_tool_bin("manifest-tool")).current_dir(directory).args(args),
    );
}

/// manifest-tool's own decoding of a v1 manifest (its pyasn1 codec, `native_encoder`), as JSON
/// with bytes in hex: the tree `manifest-tool parse` prints.
fn manifest_tool_tree(manifest: &Path) -> serde_json::Value {
    let python = common::manifest_tool_bin("python3");
    let script = r#"
import sys, json
from manifesttool.mtool.asn1.v1.manifest_encoder_v1 import ManifestAsnCodecV1
def plain(value):
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, bytes):
        return value.hex()
    return value
tree = ManifestAsnCodecV1.decode(open(sys.argv[1], 'rb').read(), None)
print(json.dumps(plain(tree), sort_keys=True))
"#;
    let output = common::run_checked(Command::new(python).arg("-c").arg(script).arg(manifest));
    serde_json::from_slice(&output.stdout).expect("manifest-tool tree is JSON")
}

fn live_setup(directory: &Path) -> (SoftwareSigner, Certificate) {
    for name in ["update.key.pem", "update.cert.der", "payload.bin"] {
        std::fs::copy(fixture_path(name), directory.join(name)).expect("copy fixture");
    }
    std::fs::write(
        directory.join("config.yaml"),
        "vendor:\n  vendor-id: 0123456789abcdef0123456789abcdef\ndevice:\n  class-id: fedcba9876543210fedcba9876543210\n\
         payload:\n  url: https://updates.example.com/payload.bin\n  format: raw-binary\n  file-path: payload.bin\n",
    )
    .expect("write config");
    (fixture_signer(), certificate("update.cert.der"))
}

#[test]
fn live_manifest_tool_create_v1_manifests_verify_and_imprints_carry_the_same_decoded_fields() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (signer, update_certificate) = live_setup(directory.path());
    let payload = fixture("payload.bin");
    for (version_args, timestamp) in [
        (vec!["-v", "1700000000"], 1_700_000_000u64),
        (vec!["--fw-migrate-ver", "10.20.30"], semantic_version_timestamp(SemanticVersion::new(10, 20, 30))),
    ] {
        let theirs = directory.path().join("theirs.manifest");
        let mut args = vec![
            "create-v1",
            "-c",
            "config.yaml",
            "-k",
            "update.key.pem",
            "--update-certificate",
            "update.cert.der",
            "-o",
            "theirs.manifest",
        ];
        args.extend(version_args.iter().copied());
        run_manifest_tool(directory.path(), &args);
        let theirs_bytes = std::fs::read(&theirs).expect("manifest-tool wrote a manifest");
        let decoded =
            verify_manifest_v1(&theirs_bytes, &update_certificate, &device()).expect("theirs verifies");
        assert_eq!(decoded.timestamp, timestamp);

        let request = ManifestRequestV1::new(
            uuid::Uuid::from_bytes(VENDOR_ID),
            uuid::Uuid::from_bytes(CLASS_ID),
            timestamp,
            &payload,
            "https://updates.example.com/payload.bin",
        );
        let ours_bytes = create_manifest_v1(&request, &signer, update_certificate.der()).expect("created");
        let ours = directory.path().join("ours.manifest");
        std::fs::write(&ours, &ours_bytes).expect("write ours");
        run_manifest_tool(directory.path(), &["parse", "-c", "update.cert.der", "ours.manifest"]);

        let mut their_tree = manifest_tool_tree(&theirs);
        let mut our_tree = manifest_tool_tree(&ours);
        // The ECDSA signatures differ (random nonces); everything else must be the same.
        for tree in [&mut their_tree, &mut our_tree] {
            tree["signature"]["signatures"][0]["signature"] = serde_json::Value::Null;
        }
        assert_eq!(our_tree, their_tree, "decoded trees for {version_args:?}");
        assert_eq!(our_tree["resource"]["resource"]["manifest"]["timestamp"], serde_json::json!(timestamp));
        assert_eq!(decode_manifest_v1(&ours_bytes).expect("decodes").signed_bytes, decoded.signed_bytes);
    }
}

#[test]
fn the_issues_command_line_makes_a_v1_manifest_that_manifest_tool_and_the_device_accept() {
    let directory = tempfile::tempdir().expect("temp dir");
    let _ = live_setup(directory.path());
    let output = directory.path().join("cli.manifest");
    for (version, timestamp) in
        [("77", 77u64), ("1.2.3", semantic_version_timestamp(SemanticVersion::new(1, 2, 3)))]
    {
        common::run_checked(
            common::imprint()
                .current_dir(directory.path())
                .args([
                    "manifest",
                    "create",
                    "--schema",
                    "v1",
                    "--payload",
                    "payload.bin",
                    "--payload-version",
                    version,
                ])
                .args([
                    "--vendor-id",
                    "0123456789abcdef0123456789abcdef",
                    "--class-id",
                    "fedcba98-7654-3210-fedc-ba9876543210",
                ])
                .args(["--key", "update.key.pem", "--cert", "update.cert.der"])
                // Each version replaces the last one's manifest.
                .args(["--payload-uri", "https://updates.example.com/payload.bin", "--force", "-o"])
                .arg(&output),
        );
        run_manifest_tool(directory.path(), &["parse", "-c", "update.cert.der", "cli.manifest"]);
        let device_verdict =
            uchub::manifest_verdict(&fixture_path("update.cert.der"), &VENDOR_ID, &CLASS_ID, &output);
        assert!(device_verdict.accepted, "{}", device_verdict.line);
        assert!(
            device_verdict.line.starts_with(&format!("accepted timestamp={timestamp} ")),
            "{}",
            device_verdict.line
        );

        let inspected =
            common::run_checked(common::imprint().args(["manifest", "inspect", "--json"]).arg(&output));
        let tree: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("inspect --json");
        assert_eq!(tree["schema"], "v1");
        assert_eq!(tree["resource"]["manifest"]["timestamp"], serde_json::json!(timestamp));
        let verified = common::run_checked(
            common::imprint()
                .args(["manifest", "verify"])
                .arg(&output)
                .args(["--cert", "update.cert.der", "--vendor-id", "0123456789abcdef0123456789abcdef"])
                .args(["--class-id", "fedcba9876543210fedcba9876543210", "--payload", "payload.bin"])
                .current_dir(directory.path()),
        );
        assert!(common::text(&verified.stdout).contains("verdict: accepted"));
    }
    // The device's verdict through the CLI: a wrong class is refused with the reason.
    let refused = common::imprint()
        .args(["manifest", "verify"])
        .arg(&output)
        .args(["--cert", "update.cert.der", "--class-id", "00000000000000000000000000000001"])
        .current_dir(directory.path())
        .output()
        .expect("run imprint");
    assert!(!refused.status.success());
    assert!(common::text(&refused.stderr).contains("classId"), "{}", common::text(&refused.stderr));
    // v3 stays the default and does not take --cert.
    let v3_with_cert = common::imprint()
        .current_dir(directory.path())
        .args(["manifest", "create", "--payload", "payload.bin", "--payload-version", "1.0.0"])
        .args([
            "--vendor-id",
            "0123456789abcdef0123456789abcdef",
            "--class-id",
            "fedcba9876543210fedcba9876543210",
        ])
        .args(["--key", "update.key.pem", "--cert", "update.cert.der", "-o", "v3.manifest"])
        .output()
        .expect("run imprint");
    assert!(!v3_with_cert.status.success());
}

#[test]
fn dev_init_schema_v1_writes_update_resources_with_the_real_fingerprint_that_compile() {
    let directory = tempfile::tempdir().expect("temp dir");
    common::run_checked(
        common::imprint()
            .args(["dev", "init"])
            .arg(directory.path())
            .args(["--schema", "v1", "--vendor-id", "0123456789abcdef0123456789abcdef"])
            .args(["--class-id", "fedcba9876543210fedcba9876543210"]),
    );
    let c_path = directory.path().join("update_default_resources.c");
    let c_text = std::fs::read_to_string(&c_path).expect("C source written");
    let certificate = Certificate::load(&directory.path().join("dev.cert.der")).expect("certificate written");
    let c_rows = |bytes: &[u8]| {
        bytes
            .chunks(8)
            .map(|row| row.iter().map(|byte| format!("0x{byte:02X}")).collect::<Vec<_>>().join(", "))
            .collect::<Vec<_>>()
            .join(",\n    ")
    };
    let fingerprint = certificate.fingerprint_sha256();
    assert_ne!(fingerprint, [0u8; 32]);
    assert!(
        c_text.contains(&format!("arm_uc_default_fingerprint[32] = {{\n    {}\n}};", c_rows(&fingerprint))),
        "{c_text}"
    );
    assert!(c_text.contains(&format!("arm_uc_vendor_id[16] = {{\n    {}\n}};", c_rows(&VENDOR_ID))));
    assert!(c_text.contains(&format!("arm_uc_class_id[16] = {{\n    {}\n}};", c_rows(&CLASS_ID))));
    assert!(
        c_text
            .contains(&format!("arm_uc_default_certificate[] = {{\n    {}\n}};", c_rows(certificate.der())))
    );
    // The subject key identifier is the certificate's own extension (openssl prints it).
    let printed = common::openssl_ok(
        &["x509", "-inform", "DER", "-in", "dev.cert.der", "-noout", "-ext", "subjectKeyIdentifier"],
        directory.path(),
    );
    let identifier_hex: String =
        printed.lines().nth(1).expect("openssl prints the identifier").trim().replace(':', "");
    let identifier = hex::decode(identifier_hex).expect("hex identifier");
    assert!(c_text.contains(&format!(
        "arm_uc_default_subject_key_identifier[] = {{\n    {}\n}};",
        c_rows(&identifier)
    )));
    let object = directory.path().join("update_default_resources.o");
    common::run_checked(
        Command::new("gcc").args(["-c", "-Wall", "-Wextra", "-Werror", "-o"]).arg(&object).arg(&c_path),
    );
    let symbols = common::text(
        &common::run_checked(Command::new("nm").args(["--defined-only", "--format=posix"]).arg(&object))
            .stdout,
    );
    for symbol in [
        "arm_uc_vendor_id",
        "arm_uc_class_id",
        "arm_uc_default_fingerprint",
        "arm_uc_default_subject_key_identifier",
        "arm_uc_default_certificate",
        "arm_uc_default_certificate_size",
    ] {
        assert!(
            symbols.lines().any(|line| line.split_whitespace().next() == Some(symbol)),
            "{symbol} in {symbols}"
        );
    }
}
