//! Tests of the `trust` module against outside oracles: fixtures made by openssl
//! (tests/data/trust, see its README), `openssl x509`/`openssl verify` on what we generate, gcc
//! on the developer C file, and a real `manifest-dev-tool init` run.

mod common;

use std::path::{Path, PathBuf};

use imprint::trust::{self, Certificate, TrustError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/trust")
        .join(name)
}

/// Loads a key fixture and compares the outcome with what we expect: `Ok(())` means the key must
/// load and match `p256-cert.der`; `Err(fragments)` means loading must fail with a message
/// containing every fragment.
fn check_key(name: &str, expected: Result<(), &[&str]>) {
    let outcome = trust::load_signing_key(&fixture(name));
    match (outcome, expected) {
        (Ok(signer), Ok(())) => {
            let certificate = Certificate::load(&fixture("p256-cert.der")).unwrap();
            assert!(
                trust::key_matches_certificate(&signer, &certificate),
                "{name}: key loaded but does not match p256-cert.der"
            );
            assert!(
                !format!("{signer:?}").contains("BEGIN"),
                "{name}: Debug must not show key material"
            );
        }
        (Err(error), Err(fragments)) => {
            let message = error.to_string();
            for fragment in fragments {
                assert!(
                    message.contains(fragment),
                    "{name}: error {message:?} lacks {fragment:?}"
                );
            }
            assert!(
                message.contains(name),
                "{name}: error {message:?} does not name the file"
            );
        }
        (Ok(_), Err(fragments)) => panic!("{name}: loaded, expected an error with {fragments:?}"),
        (Err(error), Ok(())) => panic!("{name}: expected to load, got {error}"),
    }
}

#[test]
fn keys_load_in_every_openssl_form_and_other_curves_are_refused() {
    check_key("p256-pkcs8.pem", Ok(()));
    check_key("p256-pkcs8.der", Ok(()));
    check_key("p256-sec1.pem", Ok(()));
    check_key("p256-sec1.der", Ok(()));
    check_key("rsa-key.pem", Err(&["expected a P-256", "RSA"]));
    check_key("p384-pkcs8.pem", Err(&["expected a P-256", "secp384r1"]));
    check_key("p384-sec1.pem", Err(&["expected a P-256", "secp384r1"]));
    check_key("garbage.bin", Err(&["expected a P-256 private key"]));
    check_key(
        "p256-cert.pem",
        Err(&["found only PEM blocks", "CERTIFICATE"]),
    );
    check_key("does-not-exist.pem", Err(&["cannot read"]));
}

#[test]
fn a_key_that_belongs_to_another_certificate_does_not_match() {
    let other = trust::load_signing_key(&fixture("other-p256-pkcs8.pem")).unwrap();
    let certificate = Certificate::load(&fixture("p256-cert.der")).unwrap();
    assert!(!trust::key_matches_certificate(&other, &certificate));
    // A certificate whose key is not P-256 matches no signer.
    let rsa_certificate = Certificate::load(&fixture("rsa-cert.der")).unwrap();
    assert!(!trust::key_matches_certificate(&other, &rsa_certificate));
}

/// What one certificate fixture must look like once loaded.
struct ExpectedCertificate<'a> {
    subject_contains: &'a str,
    key: Result<(), &'a str>,
    code_signing: bool,
    ecdsa_sha256: bool,
    is_ca: bool,
}

fn check_certificate(name: &str, expected: ExpectedCertificate<'_>) {
    let path = fixture(name);
    let certificate = Certificate::load(&path).unwrap_or_else(|error| panic!("{name}: {error}"));
    let bytes = std::fs::read(&path).unwrap();
    // The DER is kept byte for byte; for PEM, compare against openssl's own DER conversion.
    let expected_der = if name.ends_with(".pem") {
        openssl_pem_to_der(&path)
    } else {
        bytes
    };
    assert_eq!(certificate.der(), expected_der, "{name}: DER bytes changed");
    assert_eq!(
        hex::encode(certificate.fingerprint_sha256()),
        openssl_fingerprint(&path, name.ends_with(".pem")),
        "{name}: fingerprint differs from openssl's"
    );
    assert!(
        certificate.subject().contains(expected.subject_contains),
        "{name}"
    );
    match (certificate.verifying_key(), expected.key) {
        (Ok(_), Ok(())) => {}
        (Err(error), Err(fragment)) => {
            let message = error.to_string();
            assert!(message.contains("expected an ECDSA P-256"), "{message}");
            assert!(
                message.contains(fragment),
                "{name}: {message:?} lacks {fragment:?}"
            );
        }
        (outcome, expected) => panic!("{name}: key {outcome:?}, expected {expected:?}"),
    }
    assert_eq!(
        certificate.has_code_signing_eku(),
        expected.code_signing,
        "{name}"
    );
    assert_eq!(
        certificate.signature_is_ecdsa_sha256(),
        expected.ecdsa_sha256,
        "{name}"
    );
    assert_eq!(certificate.is_ca(), expected.is_ca, "{name}");
    let debug = format!("{certificate:?}");
    assert!(debug.contains(&certificate.fingerprint_hex()), "{debug}");
    // PEM written by us reads back to the same certificate.
    assert_eq!(
        Certificate::from_pem(&certificate.to_pem()).unwrap(),
        certificate
    );
}

fn openssl_pem_to_der(path: &Path) -> Vec<u8> {
    let output = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(path)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn openssl_fingerprint(path: &Path, is_pem: bool) -> String {
    let output = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-inform"])
        .arg(if is_pem { "PEM" } else { "DER" })
        .arg("-in")
        .arg(path)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let value = text
        .trim()
        .split('=')
        .nth(1)
        .expect("openssl fingerprint line");
    value.replace(':', "").to_lowercase()
}

#[test]
fn certificates_made_by_openssl_load_with_the_same_bytes_and_fingerprint() {
    let p256 = ExpectedCertificate {
        subject_contains: "CN=Imprint test update authority",
        key: Ok(()),
        code_signing: true,
        ecdsa_sha256: true,
        is_ca: false,
    };
    check_certificate("p256-cert.der", p256);
    let p256_pem = ExpectedCertificate {
        subject_contains: "O=Imprint tests",
        key: Ok(()),
        code_signing: true,
        ecdsa_sha256: true,
        is_ca: false,
    };
    check_certificate("p256-cert.pem", p256_pem);
    let rsa = ExpectedCertificate {
        subject_contains: "CN=Imprint test RSA",
        key: Err("RSA"),
        code_signing: false,
        ecdsa_sha256: false,
        is_ca: true,
    };
    check_certificate("rsa-cert.der", rsa);
    let p384 = ExpectedCertificate {
        subject_contains: "CN=Imprint test P-384",
        key: Err("secp384r1"),
        code_signing: false,
        ecdsa_sha256: false,
        is_ca: true,
    };
    check_certificate("p384-cert.der", p384);
    let expired = ExpectedCertificate {
        subject_contains: "CN=Imprint test expired",
        key: Ok(()),
        code_signing: true,
        ecdsa_sha256: true,
        is_ca: false,
    };
    check_certificate("expired-cert.der", expired);
}

#[test]
fn certificate_fields_agree_with_openssl() {
    let certificate = Certificate::load(&fixture("p256-cert.der")).unwrap();
    assert_eq!(certificate.serial_hex(), "1234abcd");
    assert_eq!(certificate.issuer(), certificate.subject());
    let expired = Certificate::load(&fixture("expired-cert.der")).unwrap();
    let since_epoch = |time: std::time::SystemTime| {
        time.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // `date -u -d 2015-01-01 +%s` and `date -u -d 2016-01-01 +%s`.
    assert_eq!(since_epoch(expired.not_before()), 1_420_070_400);
    assert_eq!(since_epoch(expired.not_after()), 1_451_606_400);
}

#[test]
fn garbage_and_missing_files_are_clear_certificate_errors() {
    let error = Certificate::load(&fixture("garbage.bin")).unwrap_err();
    assert!(
        matches!(error, TrustError::CertificateFormat { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("garbage.bin"), "{error}");
    assert!(
        error.to_string().contains("expected an X.509 certificate"),
        "{error}"
    );
    let error = Certificate::load(&fixture("p256-pkcs8.pem")).unwrap_err();
    assert!(error.to_string().contains("no \"CERTIFICATE\""), "{error}");
    let error = Certificate::from_der(b"").unwrap_err();
    assert!(
        error.to_string().contains("expected an X.509 certificate"),
        "{error}"
    );
}
