//! Fuzz target: the v1 manifest decoder (`imprint::manifest::v1::decode_manifest_v1`) and the
//! device-order verification on top of it (`verify_manifest_v1`), on arbitrary bytes.
//!
//! v1 manifests come from outside (manifest-tool `create-v1`, a file an operator hands the
//! station); a panic here crashes `imprint manifest inspect|verify` and any self-test that stages
//! one. Whatever verifies must also decode, and the signed bytes must be a part of the input.
#![no_main]

use std::sync::OnceLock;

use imprint::manifest::v1::{DeviceExpectations, decode_manifest_v1, verify_manifest_v1};
use imprint::trust::Certificate;
use libfuzzer_sys::fuzz_target;

fn certificate() -> &'static Certificate {
    static CERTIFICATE: OnceLock<Certificate> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        let der = imprint_fuzz::developer_certificate_der();
        match Certificate::from_der(&der) {
            Ok(certificate) => certificate,
            Err(error) => panic!("fuzz setup: developer certificate: {error}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let decoded = decode_manifest_v1(data);
    let verified = verify_manifest_v1(data, certificate(), &DeviceExpectations::default());
    if verified.is_ok() {
        assert!(decoded.is_ok(), "verify_manifest_v1 accepted bytes that decode_manifest_v1 refuses");
    }
    let Ok(manifest) = decoded else { return };
    if !manifest.signed_bytes.is_empty() {
        assert!(
            data.windows(manifest.signed_bytes.len()).any(|window| window == manifest.signed_bytes),
            "signed_bytes are not a part of the input"
        );
    }
});
