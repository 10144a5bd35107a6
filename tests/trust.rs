//! Tests of the `trust` module against outside oracles: fixtures made by openssl
//! (tests/data/trust, see its README), `openssl x509`/`openssl verify` on what we generate, gcc
//! on the developer C file, and a real `manifest-dev-tool init` run.

mod common;

use std::path::{Path, PathBuf};

use imprint::trust::{self, Certificate, Signer, TrustError};

fn fixture(name: &str) -> PathBuf {
    common::repo_root().join("tests/data/trust").join(name)
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
            assert!(!format!("{signer:?}").contains("BEGIN"), "{name}: Debug must not show key material");
        }
        (Err(error), Err(fragments)) => {
            let message = error.to_string();
            for fragment in fragments {
                assert!(message.contains(fragment), "{name}: error {message:?} lacks {fragment:?}");
            }
            assert!(message.contains(name), "{name}: error {message:?} does not name the file");
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
    check_key("p256-cert.pem", Err(&["found only PEM blocks", "CERTIFICATE"]));
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
    let expected_der = if name.ends_with(".pem") { openssl_pem_to_der(&path) } else { bytes };
    assert_eq!(certificate.der(), expected_der, "{name}: DER bytes changed");
    assert_eq!(
        hex::encode(certificate.fingerprint_sha256()),
        openssl_fingerprint(&path, name.ends_with(".pem")),
        "{name}: fingerprint differs from openssl's"
    );
    assert!(certificate.subject().contains(expected.subject_contains), "{name}");
    match (certificate.verifying_key(), expected.key) {
        (Ok(_), Ok(())) => {}
        (Err(error), Err(fragment)) => {
            let message = error.to_string();
            assert!(message.contains("expected an ECDSA P-256"), "{message}");
            assert!(message.contains(fragment), "{name}: {message:?} lacks {fragment:?}");
        }
        (outcome, expected) => panic!("{name}: key {outcome:?}, expected {expected:?}"),
    }
    assert_eq!(certificate.has_code_signing_eku(), expected.code_signing, "{name}");
    assert_eq!(certificate.signature_is_ecdsa_sha256(), expected.ecdsa_sha256, "{name}");
    assert_eq!(certificate.is_ca(), expected.is_ca, "{name}");
    let debug = format!("{certificate:?}");
    assert!(debug.contains(&certificate.fingerprint_hex()), "{debug}");
    // PEM written by us reads back to the same certificate.
    assert_eq!(Certificate::from_pem(&certificate.to_pem()).unwrap(), certificate);
}

fn openssl_pem_to_der(path: &Path) -> Vec<u8> {
    let output = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(path)
        .output()
        .expect("run openssl");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
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
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let value = text.trim().split('=').nth(1).expect("openssl fingerprint line");
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
    let since_epoch =
        |time: std::time::SystemTime| time.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // `date -u -d 2015-01-01 +%s` and `date -u -d 2016-01-01 +%s`.
    assert_eq!(since_epoch(expired.not_before()), 1_420_070_400);
    assert_eq!(since_epoch(expired.not_after()), 1_451_606_400);
}

#[test]
fn garbage_and_missing_files_are_clear_certificate_errors() {
    let error = Certificate::load(&fixture("garbage.bin")).unwrap_err();
    assert!(matches!(error, TrustError::CertificateFormat { .. }), "{error:?}");
    assert!(error.to_string().contains("garbage.bin"), "{error}");
    assert!(error.to_string().contains("expected an X.509 certificate"), "{error}");
    let error = Certificate::load(&fixture("p256-pkcs8.pem")).unwrap_err();
    assert!(error.to_string().contains("no \"CERTIFICATE\""), "{error}");
    let error = Certificate::from_der(b"").unwrap_err();
    assert!(error.to_string().contains("expected an X.509 certificate"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Issuing certificates, checked by openssl.

/// Runs openssl with `args`, returning (success, stdout + stderr).
fn openssl(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("openssl").args(args).output().expect("run openssl");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn year_of(time: std::time::SystemTime) -> i32 {
    time::OffsetDateTime::from(time).year()
}

/// Checks a generated certificate with `openssl x509 -text` and `-checkend`: every fragment must
/// appear in the text, validity must end after `validity_days - 1` and before `validity_days + 1`
/// days from now, and the text must show the not-after year.
fn check_with_openssl(certificate: &Certificate, validity_days: u32, fragments: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let der_path = write_temp(dir.path(), "certificate.der", certificate.der());
    let (success, text) = openssl(&["x509", "-inform", "der", "-in", &der_path, "-noout", "-text"]);
    assert!(success, "openssl rejects the certificate:\n{text}");
    for fragment in fragments {
        assert!(text.contains(fragment), "openssl text lacks {fragment:?}:\n{text}");
    }
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    assert!(text.contains("prime256v1"), "{text}");
    let not_after_line =
        text.lines().find(|line| line.contains("Not After")).expect("openssl prints Not After");
    let expected_year = year_of(certificate.not_after()).to_string();
    assert!(not_after_line.contains(&expected_year), "{not_after_line} vs {expected_year}");
    let seconds = |days: u32| (u64::from(days) * 86_400).to_string();
    let (still_valid, text) = openssl(&[
        "x509",
        "-inform",
        "der",
        "-in",
        &der_path,
        "-noout",
        "-checkend",
        &seconds(validity_days - 1),
    ]);
    assert!(still_valid, "expires before {} days: {text}", validity_days - 1);
    let (still_valid, _) = openssl(&[
        "x509",
        "-inform",
        "der",
        "-in",
        &der_path,
        "-noout",
        "-checkend",
        &seconds(validity_days + 1),
    ]);
    assert!(!still_valid, "still valid after {} days", validity_days + 1);
}

#[test]
fn self_signed_update_and_ca_certificates_pass_openssl() {
    let signer = trust::generate_signing_key();
    let mut request = trust::CertificateRequest::update_authority("Acme update authority", 3650);
    request.organization = Some("Acme, \"Widgets\" + Co".to_string());
    let update = trust::self_signed_certificate(&signer, &request).unwrap();
    check_with_openssl(
        &update,
        3650,
        &[
            "Code Signing",
            "Digital Signature",
            "CA:FALSE",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
            "CN = Acme update authority",
        ],
    );
    assert!(update.has_code_signing_eku() && !update.is_ca() && update.signature_is_ecdsa_sha256());
    assert!(trust::key_matches_certificate(&signer, &update));
    assert_eq!(update.subject(), update.issuer());
    // An awkward organization name survives the round trip through DER.
    let organization = update.parsed().tbs_certificate().subject().organization().unwrap().unwrap();
    assert_eq!(organization.value(), "Acme, \"Widgets\" + Co");
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "update.der", update.der());
    let (_, subject) =
        openssl(&["x509", "-inform", "der", "-in", &path, "-noout", "-subject", "-nameopt", "RFC2253"]);
    assert_eq!(subject.trim(), r#"subject=CN=Acme update authority,O=Acme\, \"Widgets\" \+ Co"#);

    let ca_request = trust::CertificateRequest::certificate_authority("Acme root", 7300);
    let ca = trust::self_signed_certificate(&signer, &ca_request).unwrap();
    check_with_openssl(&ca, 7300, &["CA:TRUE", "Certificate Sign, CRL Sign"]);
    assert!(ca.is_ca() && !ca.has_code_signing_eku());
}

#[test]
fn serial_numbers_are_given_or_random_positive_16_bytes() {
    let signer = trust::generate_signing_key();
    let mut request = trust::CertificateRequest::update_authority("Serial test", 30);
    request.serial = Some(vec![0xff, 0x01]);
    let given = trust::self_signed_certificate(&signer, &request).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "given.der", given.der());
    let (_, text) = openssl(&["x509", "-inform", "der", "-in", &path, "-noout", "-serial"]);
    assert_eq!(text.trim(), "serial=FF01");
    assert_eq!(given.serial_hex(), "ff01");

    request.serial = None;
    let mut serials = std::collections::HashSet::new();
    for index in 0..8 {
        let random = trust::self_signed_certificate(&signer, &request).unwrap();
        let path = write_temp(dir.path(), &format!("random{index}.der"), random.der());
        let (_, text) = openssl(&["x509", "-inform", "der", "-in", &path, "-noout", "-serial"]);
        let serial_hex = text.trim().strip_prefix("serial=").unwrap().to_lowercase();
        assert_eq!(serial_hex, random.serial_hex());
        assert_eq!(serial_hex.len(), 32, "16 bytes: {serial_hex}");
        assert!(serials.insert(serial_hex), "serials repeat");
    }

    for (serial, fragment) in [
        (vec![], "serial is zero or empty"),
        (vec![0, 0], "serial is zero or empty"),
        (vec![1; 21], "does not fit"),
    ] {
        request.serial = Some(serial);
        let error = trust::self_signed_certificate(&signer, &request).unwrap_err();
        assert!(error.to_string().contains(fragment), "{error}");
    }
    request.serial = None;
    request.validity_days = 0;
    let error = trust::self_signed_certificate(&signer, &request).unwrap_err();
    assert!(error.to_string().contains("validity_days is 0"), "{error}");
}

/// Writes a certificate as PEM and runs `openssl verify -CAfile`.
fn openssl_verify(ca: &Certificate, leaf: &Certificate) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write_temp(dir.path(), "ca.pem", ca.to_pem().as_bytes());
    let leaf_path = write_temp(dir.path(), "leaf.pem", leaf.to_pem().as_bytes());
    openssl(&["verify", "-CAfile", &ca_path, &leaf_path])
}

/// What `verify_chain` must say: `Ok` or an error whose message contains the fragment.
fn check_chain(leaf: &Certificate, ca: &Certificate, at: std::time::SystemTime, expected: Result<(), &str>) {
    match (trust::verify_chain(leaf, ca, at), expected) {
        (Ok(()), Ok(())) => {}
        (Err(error), Err(fragment)) => {
            assert!(error.to_string().contains(fragment), "{error} lacks {fragment:?}")
        }
        (outcome, expected) => panic!("verify_chain gave {outcome:?}, expected {expected:?}"),
    }
}

#[test]
fn a_ca_issued_update_certificate_verifies_in_openssl_and_here() {
    let now = std::time::SystemTime::now();
    let ca_signer = trust::generate_signing_key();
    let ca = trust::self_signed_certificate(
        &ca_signer,
        &trust::CertificateRequest::certificate_authority("Acme update CA", 7300),
    )
    .unwrap();
    let device_signer = trust::generate_signing_key();
    let leaf_request = trust::CertificateRequest::update_authority("Acme firmware 2026", 3650);
    let leaf =
        trust::issue_certificate(&ca_signer, &ca, &device_signer.verifying_key(), &leaf_request).unwrap();
    check_with_openssl(
        &leaf,
        3650,
        &["Code Signing", "Digital Signature", "CA:FALSE", "Issuer: CN = Acme update CA"],
    );
    assert!(trust::key_matches_certificate(&device_signer, &leaf));
    let (success, text) = openssl_verify(&ca, &leaf);
    assert!(success, "openssl verify: {text}");
    check_chain(&leaf, &ca, now, Ok(()));

    // A CA with the same name but another key: openssl and we both refuse.
    let impostor_signer = trust::generate_signing_key();
    let impostor_ca = trust::self_signed_certificate(
        &impostor_signer,
        &trust::CertificateRequest::certificate_authority("Acme update CA", 7300),
    )
    .unwrap();
    let (success, text) = openssl_verify(&impostor_ca, &leaf);
    assert!(!success, "openssl accepted a leaf from another CA: {text}");
    check_chain(
        &leaf,
        &impostor_ca,
        now,
        Err("signature does not verify with the key of CA CN=Acme update CA"),
    );

    // A leaf issued by a differently named CA.
    let other_ca = trust::self_signed_certificate(
        &impostor_signer,
        &trust::CertificateRequest::certificate_authority("Other CA", 7300),
    )
    .unwrap();
    let other_leaf =
        trust::issue_certificate(&impostor_signer, &other_ca, &device_signer.verifying_key(), &leaf_request)
            .unwrap();
    let (success, _) = openssl_verify(&ca, &other_leaf);
    assert!(!success, "openssl accepted a leaf from another CA");
    check_chain(&other_leaf, &ca, now, Err("issued by CN=Other CA, expected the CA CN=Acme update CA"));

    // Time: before the leaf starts, after it ends.
    let day = std::time::Duration::from_secs(86_400);
    check_chain(&leaf, &ca, leaf.not_before() - day, Err("is not valid before"));
    check_chain(&leaf, &ca, leaf.not_after() + day, Err("expired at"));
    // A non-CA certificate as the "CA".
    check_chain(&leaf, &leaf, now, Err("issued by CN=Acme update CA"));
    let self_signed_leaf = trust::self_signed_certificate(&device_signer, &leaf_request).unwrap();
    check_chain(&self_signed_leaf, &self_signed_leaf, now, Err("is not a CA"));
}

#[test]
fn issuing_refuses_a_non_ca_issuer_and_a_key_that_is_not_the_issuers() {
    let signer = trust::generate_signing_key();
    let request = trust::CertificateRequest::update_authority("Leaf", 365);
    let not_a_ca = trust::self_signed_certificate(&signer, &request).unwrap();
    let error = trust::issue_certificate(&signer, &not_a_ca, &signer.verifying_key(), &request).unwrap_err();
    assert!(error.to_string().contains("is not a CA"), "{error}");

    let ca =
        trust::self_signed_certificate(&signer, &trust::CertificateRequest::certificate_authority("CA", 365))
            .unwrap();
    let stranger = trust::generate_signing_key();
    let error = trust::issue_certificate(&stranger, &ca, &signer.verifying_key(), &request).unwrap_err();
    assert!(error.to_string().contains("is not the key of issuer certificate CN=CA"), "{error}");
}

#[test]
fn openssl_made_chains_verify_and_imprint_issues_under_an_openssl_ca() {
    let now = std::time::SystemTime::now();
    let openssl_ca = Certificate::load(&fixture("openssl-ca-cert.pem")).unwrap();
    let openssl_leaf = Certificate::load(&fixture("openssl-leaf-cert.der")).unwrap();
    check_chain(&openssl_leaf, &openssl_ca, now, Ok(()));
    let p256_self_signed = Certificate::load(&fixture("p256-cert.der")).unwrap();
    check_chain(&p256_self_signed, &openssl_ca, now, Err("expected the CA"));

    let ca_signer = trust::load_signing_key(&fixture("openssl-ca-key.pem")).unwrap();
    let device_key = trust::load_signing_key(&fixture("other-p256-pkcs8.pem")).unwrap();
    let leaf = trust::issue_certificate(
        &ca_signer,
        &openssl_ca,
        &device_key.verifying_key(),
        &trust::CertificateRequest::update_authority("Issued under the openssl CA", 365),
    )
    .unwrap();
    let (success, text) = openssl_verify(&openssl_ca, &leaf);
    assert!(success, "openssl verify: {text}");
    check_chain(&leaf, &openssl_ca, now, Ok(()));
}

#[test]
fn written_keys_are_private_and_openssl_reads_the_same_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    std::fs::write(&path, "old contents").unwrap();
    let signer = trust::generate_signing_key();
    trust::write_signing_key_pem(&signer, &path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    let (success, public_der) = {
        let output = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        (output.status.success(), output.stdout)
    };
    assert!(success);
    use p256::pkcs8::EncodePublicKey;
    let ours = signer.verifying_key().to_public_key_der().unwrap();
    assert_eq!(ours.as_bytes(), public_der.as_slice());
    let reloaded = trust::load_signing_key(&path).unwrap();
    assert_eq!(reloaded.verifying_key(), signer.verifying_key());
}

/// A signer that fails, and one that signs with a key other than the one it reports.
struct BrokenSigner {
    reported: trust::SoftwareSigner,
    actual: Option<trust::SoftwareSigner>,
}

impl trust::Signer for BrokenSigner {
    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        self.reported.verifying_key()
    }
    fn sign_digest(&self, digest: &[u8; 32]) -> Result<p256::ecdsa::Signature, trust::SignError> {
        match &self.actual {
            Some(actual) => actual.sign_digest(digest),
            None => Err(trust::SignError {
                key: "token slot 3".to_string(),
                reason: "CKR_DEVICE_REMOVED".to_string(),
            }),
        }
    }
    fn describe(&self) -> String {
        "broken test signer".to_string()
    }
}

#[test]
fn signer_failures_surface_as_clear_errors() {
    let request = trust::CertificateRequest::update_authority("Broken", 365);
    let failing = BrokenSigner { reported: trust::generate_signing_key(), actual: None };
    let error = trust::self_signed_certificate(&failing, &request).unwrap_err();
    assert!(matches!(error, TrustError::Sign(_)), "{error:?}");
    assert!(error.to_string().contains("CKR_DEVICE_REMOVED"), "{error}");

    let lying =
        BrokenSigner { reported: trust::generate_signing_key(), actual: Some(trust::generate_signing_key()) };
    let error = trust::self_signed_certificate(&lying, &request).unwrap_err();
    assert!(error.to_string().contains("does not verify with its own public key"), "{error}");
}

/// Checks that the warnings for `name`, as of `days_after_not_before`, contain exactly the
/// given fragments (one per warning, in order).
fn check_warnings(name: &str, days_after_not_before: u64, expected: &[&str]) {
    let certificate = Certificate::load(&fixture(name)).unwrap();
    let at = certificate.not_before() + std::time::Duration::from_secs(days_after_not_before * 86_400);
    let warnings = trust::check_update_certificate_at(&certificate, at);
    assert_eq!(warnings.len(), expected.len(), "{name}: {warnings:#?}");
    for (warning, fragment) in warnings.iter().zip(expected) {
        assert!(warning.contains(fragment), "{name}: {warning:?} lacks {fragment:?}");
    }
}

#[test]
fn update_certificate_warnings_follow_the_factory_tool() {
    check_warnings("p256-cert.der", 1, &[]);
    check_warnings("p256-cert.der", 365 * 11, &["less than 10 years from now"]);
    check_warnings("openssl-leaf-cert.der", 1, &["less than 10 years from now"]);
    check_warnings("expired-cert.der", 400, &["expired at"]);
    check_warnings("openssl-ca-cert.pem", 1, &["no codeSigning", "is a CA certificate"]);
    check_warnings(
        "rsa-cert.der",
        1,
        &[
            "expected an ECDSA P-256",
            "sha256WithRSAEncryption",
            "less than 10 years",
            "no codeSigning",
            "is a CA",
        ],
    );
    // The undated form uses the clock: a fresh 20-year certificate has no warnings.
    let signer = trust::generate_signing_key();
    let fresh = trust::self_signed_certificate(
        &signer,
        &trust::CertificateRequest::update_authority("Fresh", 365 * 20),
    )
    .unwrap();
    assert_eq!(trust::check_update_certificate(&fresh), Vec::<String>::new());
    let short =
        trust::self_signed_certificate(&signer, &trust::CertificateRequest::update_authority("Short", 365))
            .unwrap();
    assert_eq!(trust::check_update_certificate(&short).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Developer credentials: `imprint dev init` through the real binary, and manifest-dev-tool.

fn imprint(args: &[&str]) -> std::process::Output {
    common::imprint().args(args).output().expect("run imprint")
}

/// The bytes of `const uint8_t NAME[] = { 0x.., ... };` in generated C source.
fn c_array(source: &str, name: &str) -> Vec<u8> {
    let start =
        source.find(&format!("const uint8_t {name}[] =")).unwrap_or_else(|| panic!("no array {name}"));
    let open = start + source[start..].find('{').unwrap();
    let close = open + source[open..].find('}').unwrap();
    source[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let digits = item.strip_prefix("0x").unwrap_or_else(|| panic!("{name}: item {item:?}"));
            u8::from_str_radix(digits, 16).unwrap()
        })
        .collect()
}

/// The text of one array definition (from `const uint8_t NAME[]` to `};`), for layout comparison.
fn c_array_text<'a>(source: &'a str, name: &str) -> &'a str {
    let start = source.find(&format!("const uint8_t {name}[] =")).unwrap();
    let end = start + source[start..].find("};").unwrap() + 2;
    &source[start..end]
}

/// Compiles a C file with gcc and returns its defined symbols (`nm --defined-only`).
fn compile_and_list_symbols(c_path: &Path) -> Vec<String> {
    let object = c_path.with_extension("o");
    let output = std::process::Command::new("gcc")
        .args(["-c", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&object)
        .arg(c_path)
        .output()
        .expect("run gcc");
    assert!(output.status.success(), "gcc: {}", String::from_utf8_lossy(&output.stderr));
    let output = std::process::Command::new("nm")
        .args(["--defined-only", "--format=posix"])
        .arg(&object)
        .output()
        .expect("run nm");
    assert!(output.status.success());
    let mut symbols: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect();
    symbols.sort();
    symbols
}

/// Python's `uuid.uuid5` as the oracle for name-based IDs.
fn python_uuid5(vendor_domain: &str, model_name: &str) -> (String, String) {
    let script = "import sys, uuid\n\
        vendor = uuid.uuid5(uuid.NAMESPACE_DNS, sys.argv[1])\n\
        print(vendor)\n\
        print(uuid.uuid5(vendor, sys.argv[2]))\n";
    let output = std::process::Command::new("python3")
        .args(["-c", script, vendor_domain, model_name])
        .output()
        .expect("run python3");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    (lines.next().unwrap().to_string(), lines.next().unwrap().to_string())
}

#[test]
fn dev_init_through_the_binary_writes_credentials_gcc_and_openssl_accept() {
    let dir = tempfile::tempdir().unwrap();
    let credentials_dir = dir.path().join("credentials");
    let credentials = credentials_dir.to_str().unwrap();
    let output = imprint(&[
        "dev",
        "init",
        credentials,
        "--vendor-domain",
        "example.com",
        "--model-name",
        "thermostat-v2",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let (vendor_id, class_id) = python_uuid5("example.com", "thermostat-v2");
    assert!(stdout.contains("DEVELOPMENT ONLY"), "{stdout}");
    assert!(stdout.contains(&format!("vendor ID: {vendor_id}")), "{stdout}");
    assert!(stdout.contains(&format!("class ID: {class_id}")), "{stdout}");

    let certificate_path = credentials_dir.join(trust::DEV_CERTIFICATE_FILE);
    let certificate = Certificate::load(&certificate_path).unwrap();
    assert_eq!(
        certificate.fingerprint_hex(),
        openssl_fingerprint(&certificate_path, false),
        "fingerprint differs from openssl's"
    );
    assert!(stdout.contains(&format!("certificate SHA-256: {}", certificate.fingerprint_hex())), "{stdout}");
    check_with_openssl(
        &certificate,
        365 * 20,
        &["Code Signing", "Digital Signature", "CA:FALSE", "CN = localhost"],
    );
    assert!(trust::check_update_certificate(&certificate).is_empty());

    // The key is private, PKCS#8, and belongs to the certificate.
    let key_path = credentials_dir.join(trust::DEV_SIGNING_KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let signer = trust::load_signing_key(&key_path).unwrap();
    assert!(trust::key_matches_certificate(&signer, &certificate));

    // The C file compiles, and its arrays hold exactly the IDs, certificate and fingerprint.
    let c_path = credentials_dir.join(trust::DEV_C_SOURCE_FILE);
    let source = std::fs::read_to_string(&c_path).unwrap();
    assert!(source.contains("DEVELOPMENT ONLY"), "{source}");
    let symbols = compile_and_list_symbols(&c_path);
    for symbol in [
        "arm_uc_vendor_id",
        "arm_uc_vendor_id_size",
        "arm_uc_class_id",
        "arm_uc_class_id_size",
        "arm_uc_default_fingerprint",
        "arm_uc_default_fingerprint_size",
        "arm_uc_default_certificate",
        "arm_uc_default_certificate_size",
    ] {
        assert!(symbols.iter().any(|defined| defined == symbol), "{symbol} missing from {symbols:?}");
    }
    let digest_output = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .arg(&certificate_path)
        .output()
        .unwrap();
    assert_eq!(c_array(&source, "arm_uc_default_fingerprint"), digest_output.stdout);
    assert_eq!(c_array(&source, "arm_uc_default_certificate"), std::fs::read(&certificate_path).unwrap());
    let uuid_bytes = |text: &str| uuid::Uuid::parse_str(text).unwrap().as_bytes().to_vec();
    assert_eq!(c_array(&source, "arm_uc_vendor_id"), uuid_bytes(&vendor_id));
    assert_eq!(c_array(&source, "arm_uc_class_id"), uuid_bytes(&class_id));

    // The summary a profile points at.
    let summary = trust::DevSummary::load(&credentials_dir.join(trust::DEV_SUMMARY_FILE)).unwrap();
    assert_eq!(summary.vendor_id.to_string(), vendor_id);
    assert_eq!(summary.class_id.to_string(), class_id);
    assert_eq!(summary.signing_key, Path::new(trust::DEV_SIGNING_KEY_FILE));
    assert_eq!(summary.certificate, Path::new(trust::DEV_CERTIFICATE_FILE));
    assert_eq!(summary.certificate_fingerprint_sha256, certificate.fingerprint_hex());
}

#[test]
fn dev_init_refuses_to_overwrite_without_force_and_rejects_conflicting_ids() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().to_str().unwrap();
    let vendor = "6f0bdfd4-5a7c-4f52-9c1b-8f2d61c3a1e0";
    let class = "0f8c3c53-2d8e-4f0c-b0c6-6a1f0b3a7d21";
    let first = imprint(&["dev", "init", credentials, "--vendor-id", vendor, "--class-id", class]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let key_path = dir.path().join(trust::DEV_SIGNING_KEY_FILE);
    let key_before = std::fs::read(&key_path).unwrap();

    let again = imprint(&["dev", "init", credentials]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("refusing to overwrite") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&key_path).unwrap(), key_before, "key changed without --force");

    let forced = imprint(&["dev", "init", credentials, "--force"]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    assert_ne!(std::fs::read(&key_path).unwrap(), key_before, "--force kept the old key");
    // No IDs given: random v4 IDs, as manifest-dev-tool does.
    let summary = trust::DevSummary::load(&dir.path().join(trust::DEV_SUMMARY_FILE)).unwrap();
    assert_eq!(summary.vendor_id.get_version_num(), 4);
    assert_eq!(summary.class_id.get_version_num(), 4);
    assert_ne!(summary.vendor_id.to_string(), vendor);

    for conflicting in [
        ["--vendor-id", vendor, "--vendor-domain", "example.com"],
        ["--class-id", class, "--model-name", "thermostat"],
    ] {
        let mut args = vec!["dev", "init", credentials, "--force"];
        args.extend(conflicting);
        let output = imprint(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    let bad_uuid = imprint(&["dev", "init", credentials, "--vendor-id", "not-a-uuid"]);
    assert_eq!(bad_uuid.status.code(), Some(2));
}

/// Runs `manifest-dev-tool init` in `dir` with extra arguments.
fn manifest_dev_tool_init(dir: &Path, extra_args: &[&str]) {
    let output = std::process::Command::new(common::manifest_tool_bin("manifest-dev-tool"))
        .arg("init")
        .args(extra_args)
        .current_dir(dir)
        .output()
        .expect("run manifest-dev-tool");
    assert!(
        output.status.success(),
        "manifest-dev-tool init failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn dev_init_output_has_manifest_dev_tool_symbols_and_layout() {
    let vendor = "6f0bdfd4-5a7c-4f52-9c1b-8f2d61c3a1e0";
    let class = "0f8c3c53-2d8e-4f0c-b0c6-6a1f0b3a7d21";
    let theirs_dir = tempfile::tempdir().unwrap();
    let vendor_hex = vendor.replace('-', "");
    let class_hex = class.replace('-', "");
    manifest_dev_tool_init(theirs_dir.path(), &["--vendor-id", &vendor_hex, "--class-id", &class_hex]);
    let ours_dir = tempfile::tempdir().unwrap();
    let options = trust::DevInitOptions {
        vendor_id: Some(vendor.parse().unwrap()),
        class_id: Some(class.parse().unwrap()),
        ..Default::default()
    };
    let credentials = trust::dev_init(ours_dir.path(), &options).unwrap();

    let theirs_c = theirs_dir.path().join("update_default_resources.c");
    let ours_c = credentials.c_source_path.clone();
    assert_eq!(compile_and_list_symbols(&ours_c), compile_and_list_symbols(&theirs_c));
    let theirs = std::fs::read_to_string(&theirs_c).unwrap();
    let ours = std::fs::read_to_string(&ours_c).unwrap();
    // Same IDs give byte-identical arrays (formatting included).
    for name in ["arm_uc_vendor_id", "arm_uc_class_id"] {
        assert_eq!(c_array_text(&ours, name), c_array_text(&theirs, name), "{name}");
    }
    // Size declarations are identical lines.
    for line in theirs.lines().filter(|line| line.contains("_size = sizeof(")) {
        assert!(ours.lines().any(|ours_line| ours_line == line), "missing {line:?}");
    }
    // Their public key array is the uncompressed point of their certificate's key; ours too.
    let their_certificate =
        Certificate::load(&theirs_dir.path().join(".manifest-dev-tool/dev.cert.der")).unwrap();
    assert_eq!(c_array(&theirs, "arm_uc_default_certificate"), their_certificate.der());
    let point = |certificate: &Certificate| {
        certificate.verifying_key().unwrap().to_sec1_point(false).as_bytes().to_vec()
    };
    assert_eq!(c_array(&theirs, "arm_uc_update_public_key"), point(&their_certificate));
    assert_eq!(c_array(&ours, "arm_uc_update_public_key"), point(&credentials.certificate));
}

#[test]
fn a_real_manifest_dev_tool_environment_imports() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = "5355a4a3-4c5a-47a3-a6b8-4e1f0a9c2d11";
    let class = "1234567890123456789012345678901a";
    manifest_dev_tool_init(dir.path(), &["--vendor-id", &vendor.replace('-', ""), "--class-id", class]);
    let environment = trust::import_manifest_dev_tool_env(dir.path()).unwrap();
    assert_eq!(environment.vendor_id.to_string(), vendor);
    assert_eq!(environment.class_id.simple().to_string(), class);
    assert_eq!(
        environment.signing_key_path.canonicalize().unwrap(),
        dir.path().join(".manifest-dev-tool/dev.key.pem").canonicalize().unwrap()
    );
    // Their SEC1 key and DER certificate load and belong together.
    let signer = trust::load_signing_key(&environment.signing_key_path).unwrap();
    let certificate = Certificate::load(&environment.certificate_path).unwrap();
    assert!(trust::key_matches_certificate(&signer, &certificate));
    assert!(certificate.has_code_signing_eku());
    // The cache directory itself works too.
    let from_cache_dir = trust::import_manifest_dev_tool_env(&dir.path().join(".manifest-dev-tool")).unwrap();
    assert_eq!(from_cache_dir.vendor_id, environment.vendor_id);

    // A second environment's certificate next to this key: refused, naming both files.
    let other = tempfile::tempdir().unwrap();
    manifest_dev_tool_init(other.path(), &[]);
    std::fs::copy(
        other.path().join(".manifest-dev-tool/dev.cert.der"),
        dir.path().join(".manifest-dev-tool/dev.cert.der"),
    )
    .unwrap();
    let error = trust::import_manifest_dev_tool_env(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("dev.cfg.yaml") && message.contains("does not belong to certificate"),
        "{message}"
    );
}

/// Writes `yaml` as a dev.cfg.yaml (next to a valid key and certificate) and checks that the
/// import fails with a message containing `fragment`.
fn check_bad_dev_config(yaml: &str, fragment: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join(".manifest-dev-tool");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(fixture("p256-sec1.pem"), cache.join("dev.key.pem")).unwrap();
    std::fs::copy(fixture("p256-cert.der"), cache.join("dev.cert.der")).unwrap();
    std::fs::write(cache.join("dev.cfg.yaml"), yaml).unwrap();
    let error = trust::import_manifest_dev_tool_env(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

#[test]
fn broken_dev_configs_are_clear_errors() {
    let good_ids =
        "class-id: 7c54006b73e548628d7bc3385acb0ff8\nvendor-id: cdb3d10de4144e529cfcbb2e247a42f3\n";
    let good_paths =
        "certificate: .manifest-dev-tool/dev.cert.der\nkey_file: .manifest-dev-tool/dev.key.pem\n";
    // The same layout as a real one imports (control for the cases below).
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join(".manifest-dev-tool");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(fixture("p256-sec1.pem"), cache.join("dev.key.pem")).unwrap();
    std::fs::copy(fixture("p256-cert.der"), cache.join("dev.cert.der")).unwrap();
    std::fs::write(cache.join("dev.cfg.yaml"), format!("{good_ids}{good_paths}")).unwrap();
    trust::import_manifest_dev_tool_env(dir.path()).unwrap();

    check_bad_dev_config(good_paths, "field `vendor-id` is missing");
    check_bad_dev_config(
        &format!("{good_paths}class-id: 7c54\nvendor-id: cdb3d10de4144e529cfcbb2e247a42f3\n"),
        "field `class-id`: expected 32 hex digits",
    );
    check_bad_dev_config(
        &format!("{good_ids}certificate: nowhere.der\nkey_file: .manifest-dev-tool/dev.key.pem\n"),
        "field `certificate`: nowhere.der exists at none of",
    );
    check_bad_dev_config(
        &format!("{good_ids}{good_paths}signing-tool: ./sign.sh\n"),
        "external `signing-tool`",
    );
    check_bad_dev_config(
        "- just\n- a list\n",
        "YAML mapping (key_file, certificate, vendor-id, class-id), found a list",
    );
    check_bad_dev_config("key_file: [unclosed\n", "expected manifest-dev-tool's YAML mapping");
    let error = trust::import_manifest_dev_tool_env(Path::new("/nonexistent/imprint")).unwrap_err();
    assert!(error.to_string().contains("cannot read /nonexistent/imprint/dev.cfg.yaml"), "{error}");
}

/// A signing key file open to others is warned about once per command, in plain text when stderr
/// is not a terminal (issue 19: it was printed twice, with colour codes, into log files).
#[test]
fn an_open_key_file_is_warned_about_once_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    let made = imprint(&["dev", "init", credentials.to_str().unwrap()]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let key_path = credentials.join(trust::DEV_SIGNING_KEY_FILE);
    let certificate_path = credentials.join(trust::DEV_CERTIFICATE_FILE);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = common::demo_profile_text()
        .replace(
            &format!("{}/demo-credentials/dev.cert.der", common::repo_root().join("profiles").display()),
            certificate_path.to_str().unwrap(),
        )
        .replace(
            &format!("{}/demo-credentials/dev.key.pem", common::repo_root().join("profiles").display()),
            key_path.to_str().unwrap(),
        );
    let profile = common::write_profile(dir.path(), "open-key.toml", &text);
    let checked = imprint(&["profile", "check", profile.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(stderr.matches("accessible by group or others").count(), 1, "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in redirected stderr: {stderr:?}");
}

/// `imprint dev init` tells the user exactly what to write in a profile, and what it says works:
/// the printed lines (the same as in `imprint-dev.toml`'s header) replace a profile's
/// `[identity]` and `[trust]` and the profile checks and provisions with those IDs (issue 19:
/// the summary used to point at a file no profile field accepts).
#[test]
fn the_profile_lines_dev_init_prints_make_a_working_profile() {
    let directory = tempfile::tempdir().unwrap();
    let credentials = directory.path().join("my credentials");
    let vendor = "6f0bdfd4-5a7c-4f52-9c1b-8f2d61c3a1e0";
    let class = "0f8c3c53-2d8e-4f0c-b0c6-6a1f0b3a7d21";
    let output =
        imprint(&["dev", "init", credentials.to_str().unwrap(), "--vendor-id", vendor, "--class-id", class]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let snippet = &stdout[stdout.find("\n[identity]\n").expect("the profile lines are printed") + 1..];
    let summary = std::fs::read_to_string(credentials.join(trust::DEV_SUMMARY_FILE)).unwrap();
    for line in snippet.lines().filter(|line| !line.is_empty()) {
        assert!(summary.contains(&format!("#   {line}")), "{line:?} missing from the summary:\n{summary}");
    }

    // The demo profile without its [identity] and [trust] sections, plus the printed lines.
    let mut kept = String::new();
    let mut skipping = false;
    for line in common::demo_profile_text().lines() {
        if line.starts_with('[') {
            skipping = line == "[identity]" || line == "[trust]";
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let profile = common::write_profile(directory.path(), "product.toml", &format!("{kept}\n{snippet}"));
    let checked = common::imprint().args(["profile", "check"]).arg(&profile).output().expect("check");
    let checked_text = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{}{}", checked_text, String::from_utf8_lossy(&checked.stderr));
    assert!(checked_text.contains(vendor) && checked_text.contains(class), "{checked_text}");
    let db = directory.path().join("ledger.db");
    let run = common::imprint()
        .args(["run", "--sim", "1", "--count", "1", "--sim-timing", "zero", "--operator", "op", "--profile"])
        .arg(&profile)
        .arg("--db")
        .arg(&db)
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}
