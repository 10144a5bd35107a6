//! Signing keys in a PKCS#11 token, against SoftHSM2 (Debian `softhsm2`, installed by
//! `scripts/test`): key generation and its protection attributes, signatures checked with p256
//! and openssl, manifests checked with manifest-tool, a CA in a token checked with
//! `openssl verify`, every token error, and a whole `imprint run` signing through the token.
//!
//! Each test initialises its own token(s) in its own temporary directory with `softhsm2-util`.
//! SoftHSM2 finds its token directory through `SOFTHSM2_CONF`, which is process-wide: tests that
//! drive the `imprint` binary set it per child process; the few that use the library in this
//! process take [`InProcess`], which serialises them and sets it while they run.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, MutexGuard};

use common::{openssl, openssl_ok, text};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::Decode;
use imprint::manifest::{ManifestRequest, SemanticVersion, create_manifest, verify_manifest};
use imprint::trust::{Certificate, PinSource, Pkcs11KeyConfig, Pkcs11Signer, Signer};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use spki::{DecodePublicKey, EncodePublicKey};

/// Not digits alone: the tests check that the PIN appears in no output, and a four-digit PIN
/// turns up by chance in the hex of hashes and in timestamps (it did, once in a few runs).
const USER_PIN: &str = "user-PIN-Q7x";
const SO_PIN: &str = "5678";
/// The environment variable the tests' URIs name as their PIN source.
const PIN_VARIABLE: &str = "IMPRINT_TEST_PKCS11_PIN";

/// The SoftHSM2 module library, wherever this distribution put it.
fn softhsm_module() -> PathBuf {
    let candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib64/pkcs11/libsofthsm2.so",
        "/usr/lib/pkcs11/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ];
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|path| path.is_file()) {
        return found;
    }
    // Ask the package manager where the library package put it.
    let listed = Command::new("dpkg").args(["-L", "libsofthsm2"]).output().ok();
    let from_dpkg = listed.and_then(|output| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| line.ends_with("/libsofthsm2.so"))
            .map(PathBuf::from)
    });
    from_dpkg.filter(|path| path.is_file()).unwrap_or_else(|| {
        panic!("libsofthsm2.so not found (looked in {candidates:?} and `dpkg -L libsofthsm2`); install Debian's softhsm2 (scripts/test does)")
    })
}

/// One SoftHSM2 installation of our own: a config file and a token directory in a temp dir.
struct SoftHsm {
    directory: tempfile::TempDir,
    config_path: PathBuf,
    module: PathBuf,
}

impl SoftHsm {
    fn new() -> SoftHsm {
        let directory = tempfile::tempdir().expect("temp dir");
        let tokens = directory.path().join("tokens");
        std::fs::create_dir(&tokens).expect("token dir");
        let config_path = directory.path().join("softhsm2.conf");
        std::fs::write(
            &config_path,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        SoftHsm { directory, config_path, module: softhsm_module() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn softhsm2_util(&self, args: &[&str]) -> Output {
        let output = Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", &self.config_path)
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run softhsm2-util ({error}); install Debian's softhsm2 (scripts/test does)")
            });
        assert!(output.status.success(), "softhsm2-util {args:?} failed:\n{}", text(&output.stderr));
        output
    }

    fn init_token(&self, label: &str) {
        self.softhsm2_util(&[
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ]);
    }

    /// Imports a PKCS#8 key file made by openssl into the token.
    fn import_key(&self, token: &str, key_file: &Path, label: &str, id_hex: &str) {
        let key_file = key_file.to_str().expect("UTF-8 path");
        self.softhsm2_util(&[
            "--import", key_file, "--token", token, "--label", label, "--id", id_hex, "--pin", USER_PIN,
        ]);
    }

    /// `pkcs11:token=TOKEN;KEY?module-path=...&pin-source=env:...`.
    fn uri(&self, token: &str, key_attributes: &str) -> String {
        let separator = if key_attributes.is_empty() { "" } else { ";" };
        format!(
            "pkcs11:token={token}{separator}{key_attributes}?module-path={}&pin-source=env:{PIN_VARIABLE}",
            self.module.display()
        )
    }

    /// Runs `imprint` in the temp dir with this SoftHSM2 and the right PIN.
    fn imprint(&self, args: &[&str]) -> Output {
        self.imprint_with_pin(args, Some(USER_PIN))
    }

    /// Runs `imprint` with `pin` in the PIN variable (unset when `None`).
    fn imprint_with_pin(&self, args: &[&str], pin: Option<&str>) -> Output {
        let mut command = common::imprint();
        command.args(args).current_dir(self.directory.path()).env("SOFTHSM2_CONF", &self.config_path);
        match pin {
            Some(pin) => command.env(PIN_VARIABLE, pin),
            None => command.env_remove(PIN_VARIABLE),
        };
        command.output().expect("run imprint")
    }

    /// Runs `imprint` and insists it succeeded.
    fn imprint_ok(&self, args: &[&str]) -> String {
        let output = self.imprint(args);
        assert!(
            output.status.success(),
            "imprint {args:?} failed ({}):\n{}\n{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Generates a key in `token` through the CLI; returns the key's URI as printed.
    fn generate_key(&self, token: &str, label: &str, extra_args: &[&str]) -> String {
        let token_uri = self.uri(token, "");
        let mut args = vec!["keys", "generate", "--pkcs11", token_uri.as_str(), "--label", label];
        args.extend_from_slice(extra_args);
        let printed = self.imprint_ok(&args);
        printed
            .lines()
            .find_map(|line| line.strip_prefix("key URI"))
            .map(|uri| uri.trim().to_string())
            .unwrap_or_else(|| panic!("no key URI printed:\n{printed}"))
    }

    /// Takes the in-process lock and points SoftHSM2 in this process at this installation.
    fn in_process(&self) -> InProcess {
        let guard = IN_PROCESS_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: only tests holding IN_PROCESS_LOCK change the environment, and child processes
        // spawned meanwhile by other tests go through std, which synchronises with set_var.
        unsafe {
            std::env::set_var("SOFTHSM2_CONF", &self.config_path);
            std::env::set_var(PIN_VARIABLE, USER_PIN);
        }
        InProcess { _guard: guard }
    }
}

static IN_PROCESS_LOCK: Mutex<()> = Mutex::new(());

/// Held while a test uses PKCS#11 inside the test process.
struct InProcess {
    _guard: MutexGuard<'static, ()>,
}

/// A direct cryptoki session on a token, independent of Imprint's code: the oracle for what the
/// token holds. Finalises the module when dropped, so the next test starts clean.
struct RawToken {
    session: Option<Session>,
    context: Option<Pkcs11>,
    slot: Slot,
}

impl RawToken {
    /// Initialises the module in this process and finds the token; no session yet.
    fn initialise(hsm: &SoftHsm, _in_process: &InProcess, token: &str) -> RawToken {
        let context = Pkcs11::new(&hsm.module).expect("load softhsm");
        context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).expect("C_Initialize");
        let slot = context
            .get_slots_with_token()
            .expect("slots")
            .into_iter()
            .find(|slot| context.get_token_info(*slot).is_ok_and(|info| info.label().trim_end() == token))
            .unwrap_or_else(|| panic!("token {token} not found"));
        RawToken { session: None, context: Some(context), slot }
    }

    /// Initialises and logs a session in.
    fn open(hsm: &SoftHsm, in_process: &InProcess, token: &str) -> RawToken {
        let mut raw = RawToken::initialise(hsm, in_process, token);
        let session = raw.context().open_ro_session(raw.slot).expect("session");
        session.login(UserType::User, Some(&AuthPin::from(USER_PIN.to_string()))).expect("login");
        raw.session = Some(session);
        raw
    }

    fn context(&self) -> &Pkcs11 {
        self.context.as_ref().expect("initialised")
    }

    /// Whether a session opened now starts logged in: it does exactly while some other session
    /// of this process on the token is still open and logged in (PKCS#11 login is per token and
    /// application, and ends when its last session closes).
    fn new_session_is_logged_in(&self) -> bool {
        let session = self.context().open_ro_session(self.slot).expect("session");
        let state = session.get_session_info().expect("session info").session_state();
        matches!(state, SessionState::RoUser | SessionState::RwUser)
    }

    fn session(&self) -> &Session {
        self.session.as_ref().expect("open")
    }

    fn find_one(&self, class: ObjectClass, label: &str) -> ObjectHandle {
        find_one(self.session(), class, label)
    }

    /// The public key of the key pair labelled `label`, from its CKA_EC_POINT (a public object:
    /// readable without logging in).
    fn public_key(&self, label: &str) -> VerifyingKey {
        let session = self.context().open_ro_session(self.slot).expect("session");
        let public_key = find_one(&session, ObjectClass::PUBLIC_KEY, label);
        let attributes = session.get_attributes(public_key, &[AttributeType::EcPoint]).expect("EC point");
        let Some(Attribute::EcPoint(wrapped)) = attributes.into_iter().next() else {
            panic!("no CKA_EC_POINT")
        };
        let point = <&der::asn1::OctetStringRef>::from_der(&wrapped).expect("EC point is a DER OCTET STRING");
        VerifyingKey::from_sec1_bytes(point.as_bytes()).expect("P-256 point")
    }
}

fn find_one(session: &Session, class: ObjectClass, label: &str) -> ObjectHandle {
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())])
        .expect("find objects");
    assert_eq!(found.len(), 1, "expected one {class} labelled {label}");
    found[0]
}

impl Drop for RawToken {
    fn drop(&mut self) {
        drop(self.session.take());
        if let Some(context) = self.context.take() {
            let _ = context.finalize();
        }
    }
}

/// The certificate's SHA-256 fingerprint as openssl computes it, lowercase hex without colons.
fn openssl_fingerprint(certificate: &Path) -> String {
    let printed = openssl_ok(
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            certificate.to_str().expect("path"),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        Path::new("."),
    );
    let (_, colon_hex) = printed.trim().split_once('=').expect("fingerprint line");
    colon_hex.replace(':', "").to_lowercase()
}

#[test]
fn generated_keys_are_sensitive_never_extractable_and_match_their_certificate() {
    let hsm = SoftHsm::new();
    hsm.init_token("line");
    let key_uri = hsm.generate_key("line", "update-signing", &["--id", "0a1b"]);
    assert!(key_uri.contains("object=update-signing;id=%0A%1B;type=private"), "{key_uri}");

    // openssl reads the certificate's public key, which must be the exported public key.
    let from_certificate = openssl_ok(
        &["x509", "-inform", "DER", "-in", "update-signing.cert.der", "-noout", "-pubkey"],
        hsm.directory.path(),
    );
    let exported = std::fs::read_to_string(hsm.path("update-signing.pub.pem")).expect("public key written");
    assert_eq!(from_certificate.trim(), exported.trim());
    let certificate_text = openssl_ok(
        &["x509", "-inform", "DER", "-in", "update-signing.cert.der", "-noout", "-text"],
        hsm.directory.path(),
    );
    assert!(certificate_text.contains("prime256v1"), "{certificate_text}");
    assert!(certificate_text.contains("Code Signing"), "{certificate_text}");

    let in_process = hsm.in_process();
    let token = RawToken::open(&hsm, &in_process, "line");
    let private_key = token.find_one(ObjectClass::PRIVATE_KEY, "update-signing");
    let attributes = token
        .session()
        .get_attributes(
            private_key,
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Sign,
                AttributeType::SignRecover,
                AttributeType::Decrypt,
                AttributeType::Unwrap,
                AttributeType::Derive,
                AttributeType::KeyType,
                AttributeType::Id,
            ],
        )
        .expect("attributes");
    for expected in [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::AlwaysSensitive(true),
        Attribute::NeverExtractable(true),
        Attribute::Sign(true),
        // Sign-only (SoftHSM2's defaults would allow decrypt and unwrap).
        Attribute::SignRecover(false),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::KeyType(KeyType::EC),
        Attribute::Id(vec![0x0a, 0x1b]),
    ] {
        assert!(attributes.contains(&expected), "expected {expected:?} among {attributes:?}");
    }
    // The token refuses to reveal the private value.
    let value = token.session().get_attributes(private_key, &[AttributeType::Value]).unwrap_or_default();
    assert!(
        !value.iter().any(|attribute| matches!(attribute, Attribute::Value(_))),
        "private value readable"
    );
    assert_eq!(
        token.public_key("update-signing"),
        VerifyingKey::from_public_key_pem(&exported).expect("PEM")
    );
    drop(token);
    drop(in_process);

    // A second key with the same label is refused, and nothing is overwritten.
    let token_uri = hsm.uri("line", "");
    let output =
        hsm.imprint(&["keys", "generate", "--pkcs11", &token_uri, "--label", "update-signing", "--force"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("an object with label \"update-signing\" already exists"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn token_signatures_verify_with_p256_and_openssl_from_several_threads() {
    const THREADS: usize = 4;
    const SIGNATURES_PER_THREAD: usize = 16;
    let hsm = SoftHsm::new();
    hsm.init_token("line");
    let in_process = hsm.in_process();
    // The module initialised by this test, without a session of its own, so that whether the
    // signers' sessions are still open can be seen after they are dropped.
    let token = RawToken::initialise(&hsm, &in_process, "line");
    let config = Pkcs11KeyConfig {
        module_path: hsm.module.clone(),
        token_label: "line".to_string(),
        token_serial: None,
        key_label: Some("signer".to_string()),
        key_id: Some(vec![0x42]),
        pin_source: PinSource::Environment { variable: PIN_VARIABLE.to_string() },
    };
    let generated = Arc::new(Pkcs11Signer::generate(&config).expect("generate in token"));
    let opened = Arc::new(Pkcs11Signer::open_uri(&hsm.uri("line", "object=signer")).expect("open by URI"));
    let token_public_key = token.public_key("signer");
    assert_eq!(generated.verifying_key(), token_public_key);
    assert_eq!(opened.verifying_key(), token_public_key);
    assert!(opened.describe().starts_with("pkcs11:token=line;object=signer;id=%42"), "{}", opened.describe());
    assert!(token.new_session_is_logged_in(), "the signers' logged-in sessions are open");

    let workers: Vec<_> = (0..THREADS)
        .map(|thread_index| {
            let signer: Arc<dyn Signer> =
                if thread_index % 2 == 0 { generated.clone() } else { opened.clone() };
            std::thread::spawn(move || {
                (0..SIGNATURES_PER_THREAD)
                    .map(|index| {
                        let message = format!("thread {thread_index} message {index}").into_bytes();
                        let digest: [u8; 32] = Sha256::digest(&message).into();
                        (message, signer.sign_digest(&digest).expect("token signs"))
                    })
                    .collect::<Vec<(Vec<u8>, Signature)>>()
            })
        })
        .collect();
    let signatures: Vec<(Vec<u8>, Signature)> =
        workers.into_iter().flat_map(|worker| worker.join().expect("signing thread")).collect();
    assert_eq!(signatures.len(), THREADS * SIGNATURES_PER_THREAD);
    for (message, signature) in &signatures {
        let digest = Sha256::digest(message);
        token_public_key.verify_prehash(&digest, signature).expect("signature verifies with the token's key");
        assert_eq!(signature.normalize_s(), *signature, "signature is low-S");
        let mut tampered = digest;
        tampered[0] ^= 1;
        assert!(token_public_key.verify_prehash(&tampered, signature).is_err());
    }

    // openssl checks one signature with the public key the token holds.
    let (message, signature) = &signatures[0];
    std::fs::write(hsm.path("message.bin"), message).expect("write message");
    std::fs::write(hsm.path("signature.der"), signature.to_der().as_bytes()).expect("write signature");
    std::fs::write(hsm.path("tampered.bin"), b"not the message").expect("write message");
    let public_pem = token_public_key.to_public_key_pem(der::pem::LineEnding::LF).expect("PEM");
    std::fs::write(hsm.path("signer.pub.pem"), public_pem).expect("write key");
    let verify = |file: &str| {
        openssl(
            &["dgst", "-sha256", "-verify", "signer.pub.pem", "-signature", "signature.der", file],
            hsm.directory.path(),
        )
    };
    let verified = verify("message.bin");
    assert!(
        verified.status.success() && text(&verified.stdout).contains("Verified OK"),
        "{}",
        text(&verified.stderr)
    );
    assert!(!verify("tampered.bin").status.success(), "openssl accepted a signature over another message");

    // Dropping the signers closes their sessions, which ends the login.
    drop(signatures);
    drop(generated);
    drop(opened);
    assert!(!token.new_session_is_logged_in(), "a signer's session outlived the signer");
}

#[test]
fn manifests_signed_in_the_token_verify_with_its_certificate_and_manifest_tool() {
    let hsm = SoftHsm::new();
    hsm.init_token("line");
    let key_uri = hsm.generate_key("line", "update-signing", &["--common-name", "Token Update Authority"]);
    let certificate_path = hsm.path("update-signing.cert.der");
    let certificate = Certificate::load(&certificate_path).expect("certificate written");
    let payload: Vec<u8> = (0..40_000_u32).map(|index| (index * 7 % 251) as u8).collect();
    let manifest_path = hsm.path("update.manifest");
    {
        let _in_process = hsm.in_process();
        let signer = Pkcs11Signer::open_uri(&key_uri).expect("open the printed URI");
        let request = ManifestRequest::new(
            uuid::Uuid::parse_str("3e6e5c2a-9c8b-4f0f-a1d2-b3c4d5e6f708").expect("uuid"),
            uuid::Uuid::parse_str("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").expect("uuid"),
            SemanticVersion::new(2, 0, 1),
            &payload,
            "https://example.com/fw/payload.bin",
        );
        let manifest = create_manifest(&request, &signer).expect("manifest signed in the token");
        let decoded = verify_manifest(&manifest, &certificate.verifying_key().expect("P-256"))
            .expect("manifest verifies with the token key's certificate");
        assert_eq!(decoded.payload_version, SemanticVersion::new(2, 0, 1));
        std::fs::write(&manifest_path, &manifest).expect("write manifest");
    }
    let manifest_tool = common::manifest_tool_bin("manifest-tool");
    let parse = |certificate: &Path| {
        let output = Command::new(&manifest_tool)
            .arg("parse")
            .arg("-c")
            .arg(certificate)
            .arg(&manifest_path)
            .output()
            .expect("run manifest-tool");
        (output.status.success(), format!("{}{}", text(&output.stdout), text(&output.stderr)))
    };
    let (accepted, printed) = parse(&certificate_path);
    assert!(accepted, "manifest-tool refused the token-signed manifest:\n{printed}");
    assert!(printed.contains("Manifest Signature verified!"), "{printed}");
    let other_certificate =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/demo-credentials/dev.cert.der");
    let (accepted_by_other, printed) = parse(&other_certificate);
    assert!(!accepted_by_other, "manifest-tool accepted another certificate:\n{printed}");
}

#[test]
fn a_ca_key_in_one_token_issues_certificates_that_openssl_verifies() {
    let hsm = SoftHsm::new();
    hsm.init_token("ca");
    hsm.init_token("line");
    let ca_uri =
        hsm.generate_key("ca", "update-ca", &["--ca", "--common-name", "Line Update CA", "--id", "01"]);
    hsm.generate_key(
        "line",
        "update-signing",
        &["--issuer-key", &ca_uri, "--issuer-cert", "update-ca.cert.der", "--certificate-out", "leaf.pem"],
    );
    let directory = hsm.directory.path();
    openssl_ok(&["x509", "-inform", "DER", "-in", "update-ca.cert.der", "-out", "ca.pem"], directory);
    let verified = openssl_ok(&["verify", "-CAfile", "ca.pem", "leaf.pem"], directory);
    assert_eq!(verified.trim(), "leaf.pem: OK");
    let leaf_text = openssl_ok(&["x509", "-in", "leaf.pem", "-noout", "-issuer", "-subject"], directory);
    assert!(leaf_text.contains("issuer=CN = Line Update CA"), "{leaf_text}");
    // The self-signed leaf of another test is not trusted by this CA.
    let self_signed = hsm.generate_key("line", "stray", &["--certificate-out", "stray.pem"]);
    assert!(self_signed.contains("object=stray"));
    assert!(!openssl(&["verify", "-CAfile", "ca.pem", "stray.pem"], directory).status.success());

    // A bad issuer is refused before any key is made.
    let line_uri = hsm.uri("line", "");
    let check_refused = |issuer_key: &str, issuer_certificate: &str, expected: &str| {
        let output = hsm.imprint(&[
            "keys",
            "generate",
            "--pkcs11",
            &line_uri,
            "--label",
            "orphan",
            "--issuer-key",
            issuer_key,
            "--issuer-cert",
            issuer_certificate,
        ]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
        assert!(text(&output.stderr).contains(expected), "expected {expected:?} in {}", text(&output.stderr));
        let show = hsm.imprint(&["keys", "show", &hsm.uri("line", "object=orphan")]);
        assert!(
            text(&show.stderr).contains("no private key with label \"orphan\""),
            "{}",
            text(&show.stderr)
        );
    };
    check_refused(&ca_uri, "leaf.pem", "expected a CA certificate");
    check_refused(&hsm.uri("line", "object=stray"), "update-ca.cert.der", "is not the key of --issuer-cert");
}

#[test]
fn token_errors_name_what_was_looked_for_and_exit_2() {
    let hsm = SoftHsm::new();
    hsm.init_token("line");
    hsm.generate_key("line", "signer", &["--id", "01"]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/trust");
    hsm.import_key("line", &fixtures.join("rsa-key.pem"), "rsa-key", "02");
    hsm.import_key("line", &fixtures.join("p384-pkcs8.pem"), "p384-key", "03");

    let check = |uri: &str, pin: Option<&str>, expected: &[&str]| {
        let output = hsm.imprint_with_pin(&["keys", "show", uri], pin);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{uri}: {stderr}");
        for fragment in expected {
            assert!(stderr.contains(fragment), "{uri}: expected {fragment:?} in {stderr}");
        }
        for secret in [USER_PIN, "4321"] {
            assert!(!stderr.contains(secret), "{uri}: a PIN in the error: {stderr}");
        }
    };
    check(
        &format!(
            "pkcs11:token=line;object=signer?module-path=/nonexistent/libnothing.so&pin-source=env:{PIN_VARIABLE}"
        ),
        Some(USER_PIN),
        &["PKCS#11 module /nonexistent/libnothing.so not found"],
    );
    check(
        &hsm.uri("assembly", "object=signer"),
        Some(USER_PIN),
        &["no token labelled \"assembly\"", "found tokens \"line\""],
    );
    check(
        &hsm.uri("line", "object=signer"),
        Some("4321"),
        &["token \"line\": wrong PIN (CKR_PIN_INCORRECT)", "not retried"],
    );
    check(
        &hsm.uri("line", "object=signr"),
        Some(USER_PIN),
        &["no private key with label \"signr\"", "\"signer\" (id 01)"],
    );
    check(&hsm.uri("line", "id=%7f"), Some(USER_PIN), &["no private key with id 7f"]);
    check(
        &hsm.uri("line", "object=rsa-key"),
        Some(USER_PIN),
        &["expected an EC P-256 key", "found a CKK_RSA key"],
    );
    check(&hsm.uri("line", "object=p384-key"), Some(USER_PIN), &["found an EC key on P-384 (secp384r1)"]);
    check(
        &hsm.uri("line", "object=signer"),
        None,
        &[&format!("the PIN environment variable {PIN_VARIABLE} is not set")],
    );
    check(
        &format!("pkcs11:token=line;object=signer?module-path={}&pin-value=4321", hsm.module.display()),
        Some(USER_PIN),
        &["pin-value is refused", "pin-value=(redacted)"],
    );

    // One wrong PIN was tried once and did not lock the token: the right PIN still works.
    let shown = hsm.imprint_ok(&["keys", "show", &hsm.uri("line", "object=signer")]);
    assert!(shown.contains("sensitive, not extractable"), "{shown}");
    // A PIN file works too (here relative to the working directory).
    std::fs::write(hsm.path("pin.txt"), format!("{USER_PIN}\n")).expect("write PIN file");
    let from_file =
        format!("pkcs11:token=line;id=%01?module-path={}&pin-source=file:pin.txt", hsm.module.display());
    let shown = text(&hsm.imprint_with_pin(&["keys", "show", &from_file], None).stdout);
    assert!(shown.contains("object=signer;id=%01"), "{shown}");

    // The same errors stop a profile before it reaches a line.
    let profile = write_token_profile(&hsm, &format!("signing_key = {:?}", hsm.uri("line", "object=signer")));
    let output = hsm.imprint_with_pin(&["profile", "check", profile.to_str().expect("path")], Some("4321"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("trust.signing_key") && stderr.contains("wrong PIN"), "{stderr}");
    // A typo in the table form is named, not swallowed.
    let typo = format!(
        "[trust.signing_key]\nmodul_path = \"{}\"\ntoken = \"line\"\nobject = \"signer\"",
        hsm.module.display()
    );
    let profile = write_token_profile(&hsm, &typo);
    let output = hsm.imprint(&["profile", "check", profile.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("unknown field `modul_path`"), "{}", text(&output.stderr));
}

/// A copy of profiles/demo.toml in the SoftHSM temp dir whose trust section uses
/// `signer.cert.der` and the given `signing_key = ...` line (or table).
fn write_token_profile(hsm: &SoftHsm, signing_key: &str) -> PathBuf {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = std::fs::read_to_string(repository.join("profiles/demo.toml")).expect("demo profile");
    let blobs = repository.join("firmware-blobs");
    let profile = demo
        .replace("\"../firmware-blobs/", &format!("\"{}/", blobs.display()))
        .replace("certificate = \"demo-credentials/dev.cert.der\"", "certificate = \"signer.cert.der\"")
        .replace("signing_key = \"demo-credentials/dev.key.pem\"\n", "");
    assert!(!profile.contains("demo-credentials/dev."), "demo.toml changed shape; update this test");
    // A `[trust.signing_key]` table must come after the `[trust]` keys: put it at the end.
    let profile = if signing_key.starts_with('[') {
        format!("{profile}\n{signing_key}\n")
    } else {
        profile.replace(
            "certificate = \"signer.cert.der\"",
            &format!("certificate = \"signer.cert.der\"\n{signing_key}"),
        )
    };
    let path = hsm.path("token-profile.toml");
    let mut file = std::fs::File::create(&path).expect("write profile");
    file.write_all(profile.as_bytes()).expect("write profile");
    path
}

#[test]
fn a_whole_run_signs_its_self_test_manifests_through_the_token() {
    let hsm = SoftHsm::new();
    hsm.init_token("line");
    let key_uri = hsm.generate_key("line", "signer", &["--common-name", "Line Update Signer"]);
    let token_fingerprint = openssl_fingerprint(&hsm.path("signer.cert.der"));

    // The table form names the same key.
    let table = format!(
        "[trust.signing_key]\nmodule_path = {:?}\ntoken = \"line\"\nobject = \"signer\"\npin_source = \"env:{PIN_VARIABLE}\"",
        hsm.module.display().to_string()
    );
    let table_profile = write_token_profile(&hsm, &table);
    let summary = hsm.imprint_ok(&["profile", "check", table_profile.to_str().expect("path")]);
    assert!(summary.contains("pkcs11:token=line;object=signer;id="), "{summary}");

    let profile = write_token_profile(&hsm, &format!("signing_key = {key_uri:?}"));
    let profile_arg = profile.to_str().expect("path");
    let summary = hsm.imprint_ok(&["profile", "check", profile_arg]);
    let signer_line = summary.lines().find(|line| line.starts_with("signing key")).expect("signing key line");
    assert!(signer_line.contains("pkcs11:token=line;object=signer;id="), "{summary}");
    assert!(summary.contains(&token_fingerprint), "the profile's certificate is the token key's:\n{summary}");
    assert!(!summary.contains("warning:"), "keys generate's certificate draws a warning:\n{summary}");

    let database = hsm.path("ledger.db");
    let database_arg = database.to_str().expect("path");
    let run_args = [
        "run",
        "--profile",
        profile_arg,
        "--sim",
        "2",
        "--count",
        "4",
        "--sim-timing",
        "zero",
        "--db",
        database_arg,
        "--json",
    ];
    let events_text = hsm.imprint_ok(&run_args);
    let events: Vec<serde_json::Value> =
        events_text.lines().map(|line| serde_json::from_str(line).expect("JSON event")).collect();
    let passed =
        events.iter().filter(|event| event["event"] == "unit-finished" && event["result"] == "pass").count();
    assert_eq!(passed, 4, "{events_text}");
    // Each unit's device verified the staged manifest with the injected certificate — the token
    // key's, whose private half never left the token — and reported that certificate back.
    let self_tests: Vec<&serde_json::Value> = events
        .iter()
        .filter(|event| event["event"] == "step-finished" && event["step"] == "self-test")
        .collect();
    assert_eq!(self_tests.len(), 4, "{events_text}");
    for self_test in &self_tests {
        assert_eq!(self_test["detail"]["certificate_fingerprint"], token_fingerprint.as_str(), "{self_test}");
        assert_eq!(self_test["detail"]["manifest_sha256"], self_tests[0]["detail"]["manifest_sha256"]);
    }
    assert!(!events_text.contains(USER_PIN), "the PIN appears in the event stream");

    // Without the token's PIN the line does not start: exit 2, no unit touched.
    let output = hsm.imprint_with_pin(&run_args, Some("4321"));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("wrong PIN"), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).contains("unit-started"), "{}", text(&output.stdout));
}

/// Serves `pin` through the FIFO at `path` to every reader that opens it, counting the reads,
/// until `stop` is set: how many times a process asked its PIN source for the PIN.
fn serve_pin_through_fifo(
    path: PathBuf,
    pin: &'static str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::Ordering;
    /// Linux's O_NONBLOCK: opening a FIFO for writing then fails unless a reader has it open.
    const O_NONBLOCK: i32 = 0o4000;
    std::thread::spawn(move || {
        let mut reads = 0;
        while !stop.load(Ordering::SeqCst) {
            match std::fs::OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(&path) {
                Ok(mut writer) => {
                    writer.write_all(format!("{pin}\n").as_bytes()).expect("write the PIN");
                    drop(writer);
                    reads += 1;
                    // Let the reader see the end of the file and close it before looking again.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        reads
    })
}

/// Runs `imprint` in a new session: no controlling terminal, stdin closed. A PIN prompt then
/// fails at once instead of waiting for someone to type.
fn imprint_without_terminal(hsm: &SoftHsm, args: &[&str]) -> Output {
    let mut command = Command::new("setsid");
    command
        .arg(common::imprint_binary())
        .args(args)
        .current_dir(hsm.directory.path())
        .env("IMPRINT_CREATE_LEDGER", "1")
        .env("SOFTHSM2_CONF", &hsm.config_path)
        .env_remove(PIN_VARIABLE)
        .stdin(std::process::Stdio::null());
    command.output().expect("run imprint through setsid")
}

#[test]
fn loading_a_profile_opens_no_token_and_a_run_opens_it_once() {
    let hsm = SoftHsm::new();
    hsm.init_token("line");
    hsm.generate_key("line", "signer", &["--common-name", "Line Update Signer"]);
    let module = hsm.module.display().to_string();

    // pin-source=prompt, no terminal: `profile check` succeeds, so it neither asked for the PIN
    // (the prompt would fail without a terminal) nor logged in (there was no PIN to log in with).
    let prompt_profile = write_token_profile(
        &hsm,
        &format!(
            "[trust.signing_key]\nmodule_path = {module:?}\ntoken = \"line\"\nobject = \"signer\"\npin_source = \"prompt\""
        ),
    );
    let prompt_arg = prompt_profile.to_str().expect("path");
    let output = imprint_without_terminal(&hsm, &["profile", "check", prompt_arg]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("not opened: pin-source=prompt"), "{stdout}");
    assert!(!stderr.contains("PIN"), "{stderr}");

    // `run` on it opens the token when the line starts: exactly one prompt, which fails without
    // a terminal, so the line stops with exit 2 naming the profile and field, no unit touched.
    let database = hsm.path("prompt-ledger.db");
    let run_args = |profile: &'static str, database: &'static str| {
        vec![
            "run",
            "--profile",
            profile,
            "--sim",
            "2",
            "--count",
            "4",
            "--sim-timing",
            "zero",
            "--db",
            database,
            "--json",
        ]
    };
    let leak = |text: &str| -> &'static str { Box::leak(text.to_string().into_boxed_str()) };
    let output =
        imprint_without_terminal(&hsm, &run_args(leak(prompt_arg), leak(database.to_str().expect("path"))));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(stderr.matches("cannot prompt for the PIN").count(), 1, "{stderr}");
    assert!(stderr.contains(prompt_arg) && stderr.contains("trust.signing_key"), "{stderr}");
    assert!(!stdout.contains("unit-started"), "{stdout}");

    // With the PIN served through a FIFO, the reads are counted: none while checking with
    // --skip-keys, exactly one for a whole run of four units on two slots.
    let fifo = hsm.path("pin.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success());
    let fifo_profile = write_token_profile(
        &hsm,
        &format!(
            "[trust.signing_key]\nmodule_path = {module:?}\ntoken = \"line\"\nobject = \"signer\"\npin_source = \"file:pin.fifo\""
        ),
    );
    let fifo_arg = leak(fifo_profile.to_str().expect("path"));
    let count_pin_reads = |args: &[&str]| -> (Output, usize) {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = serve_pin_through_fifo(fifo.clone(), USER_PIN, stop.clone());
        let output = imprint_without_terminal(&hsm, args);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (output, server.join().expect("PIN server"))
    };
    let (output, reads) = count_pin_reads(&["profile", "check", "--skip-keys", fifo_arg]);
    assert_eq!((output.status.code(), reads), (Some(0), 0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("not opened: --skip-keys"), "{}", text(&output.stdout));
    let database = leak(hsm.path("fifo-ledger.db").to_str().expect("path"));
    let (output, reads) = count_pin_reads(&run_args(fifo_arg, database));
    let events = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{events}\n{}", text(&output.stderr));
    assert_eq!(events.matches("\"result\":\"pass\"").count(), 4, "{events}");
    assert_eq!(reads, 1, "the token was logged into {reads} times for one line");
}
