//! Fuzz target: the Pelion v3 manifest decoder (`imprint::manifest::decode_manifest`) and the
//! signature check on top of it (`verify_manifest`), on arbitrary bytes.
//!
//! Manifests come from outside (a manifest-tool run, a file an operator hands the station) and
//! the device side of the contract decodes the candidate's manifest with the same code, so a
//! panic here is a crash of both the station and the simulated bootloader. Whatever decodes must
//! also be self-consistent: the signed bytes are inside the input, and checking a payload of the
//! size the manifest names never panics.
#![no_main]

use std::sync::OnceLock;

use imprint::manifest::{decode_manifest, verify_manifest};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::VerifyingKey;

fn verifying_key() -> &'static VerifyingKey {
    static KEY: OnceLock<VerifyingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let der = imprint_fuzz::developer_certificate_der();
        let certificate = match imprint::trust::Certificate::from_der(&der) {
            Ok(certificate) => certificate,
            Err(error) => panic!("fuzz setup: developer certificate: {error}"),
        };
        match certificate.verifying_key() {
            Ok(key) => key,
            Err(error) => panic!("fuzz setup: developer certificate key: {error}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let decoded = decode_manifest(data);
    // Signature verification must agree with decoding: it can only accept what decodes.
    let verified = verify_manifest(data, verifying_key());
    if verified.is_ok() {
        assert!(decoded.is_ok(), "verify_manifest accepted bytes that decode_manifest refuses");
    }
    let Ok(manifest) = decoded else { return };
    assert!(
        data.windows(manifest.signed_bytes.len().max(1)).any(|window| window == manifest.signed_bytes),
        "signed_bytes are not a part of the input"
    );
    assert_eq!(manifest.vendor_uuid().as_bytes(), &manifest.vendor_id);
    assert_eq!(manifest.class_uuid().as_bytes(), &manifest.class_id);
    // A payload of the named size (capped: the size is the attacker's number) must be checked
    // without panicking, and a payload of another size must be refused.
    let size_bytes = usize::try_from(manifest.payload_size).unwrap_or(usize::MAX).min(1 << 16);
    let payload = vec![0u8; size_bytes];
    let checked = manifest.check_payload(&payload);
    if size_bytes as u64 != manifest.payload_size {
        assert!(checked.is_err(), "a payload of the wrong size was accepted");
    }
    let _ = manifest.check_payload(&data[..data.len().min(64)]);
});
