//! Loading, generating and writing P-256 signing keys held in files.
//!
//! Factories keep keys in whatever form openssl or manifest-tool left them: PKCS#8 ("PRIVATE
//! KEY") or SEC1 ("EC PRIVATE KEY", often after an "EC PARAMETERS" block), PEM or DER. We accept
//! all of them, but only on P-256, because that is the only curve the Pelion update client
//! verifies; anything else gets an error that names what was found.

use std::path::Path;

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der::zeroize::Zeroizing;
use der::{Decode, Sequence};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, PrivateKeyInfoRef};

use super::error::TrustError;
use super::oid::{ID_EC_PUBLIC_KEY, PRIME256V1, describe_oid};
use super::pem::{looks_like_pem, pem_blocks};
use super::signer::SoftwareSigner;

/// The outer fields of a SEC1 `ECPrivateKey`, read only to find its curve before the real
/// decoder runs (so a P-384 key is reported as P-384, not as "malformed").
#[derive(Sequence)]
struct Sec1KeyOutline<'a> {
    version: u8,
    private_key: AnyRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    named_curve: Option<ObjectIdentifier>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    public_key: Option<BitStringRef<'a>>,
}

/// Loads a P-256 private key from a PKCS#8 or SEC1 file, PEM or DER.
///
/// On Unix, warns (through `tracing`) when the file is readable by group or others, because a
/// signing key that anyone on the station can copy is no longer a secret. The one exception is
/// the demo keys shipped in `profiles/demo-credentials/` (git checks them out readable by all):
/// they are public by design, so they get a reminder that they are for development only instead.
pub fn load_signing_key(path: &Path) -> Result<SoftwareSigner, TrustError> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|source| TrustError::Read { path: path.to_path_buf(), source })?,
    );
    let signing_key = decode_signing_key(&bytes, path)?;
    if is_public_demo_key(&signing_key) {
        tracing::info!(path = %path.display(), "the public demo signing key: development only, never for real devices");
    } else {
        warn_if_readable_by_others(path);
    }
    Ok(SoftwareSigner::new(signing_key, path.display().to_string()))
}

/// SHA-256 of the uncompressed SEC1 public keys of the keys published in
/// `profiles/demo-credentials/`: `dev.key.pem` (the demo update signer) and `factory-ca.key.pem`
/// (the demo factory CA for device identities).
const DEMO_PUBLIC_KEYS_SHA256: [&str; 2] = [
    "39e112ed64892fb84d651aae95cd2d0a25e42905c26639517548dab3d5307c3e",
    "238f5c624243096f85e50158322d9808ef2af1d28f2fef1d4dcb918b94d7fa4c",
];

/// True for a demo key whose private half is published with Imprint.
fn is_public_demo_key(signing_key: &SigningKey) -> bool {
    use sha2::Digest;
    let point = signing_key.verifying_key().to_sec1_point(false);
    let fingerprint = hex::encode(sha2::Sha256::digest(point.as_bytes()));
    DEMO_PUBLIC_KEYS_SHA256.contains(&fingerprint.as_str())
}

/// Decodes key bytes already read from `path` (the path is only used in errors).
pub(crate) fn decode_signing_key(bytes: &[u8], path: &Path) -> Result<SigningKey, TrustError> {
    let format_error = |found: String| TrustError::KeyFormat { path: path.to_path_buf(), found };
    if !looks_like_pem(bytes) {
        return decode_signing_key_der(bytes, path);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format_error("found PEM markers in a file that is not text".to_string()))?;
    let blocks = pem_blocks(text).map_err(format_error)?;
    let mut labels_seen = Vec::new();
    for block in &blocks {
        match block.label.as_str() {
            "PRIVATE KEY" => return decode_pkcs8(&block.der, path),
            "EC PRIVATE KEY" => return decode_sec1(&block.der, path),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(format_error(
                    "found an encrypted PKCS#8 key (decrypt it first: openssl pkcs8 -in KEY -out PLAIN)"
                        .to_string(),
                ));
            }
            other => labels_seen.push(format!("\"{other}\"")),
        }
    }
    Err(format_error(if labels_seen.is_empty() {
        "found no PEM block".to_string()
    } else {
        format!("found only PEM blocks {}", labels_seen.join(", "))
    }))
}

fn decode_signing_key_der(der_bytes: &[u8], path: &Path) -> Result<SigningKey, TrustError> {
    if PrivateKeyInfoRef::from_der(der_bytes).is_ok() {
        return decode_pkcs8(der_bytes, path);
    }
    if Sec1KeyOutline::from_der(der_bytes).is_ok() {
        return decode_sec1(der_bytes, path);
    }
    Err(TrustError::KeyFormat {
        path: path.to_path_buf(),
        found: "found neither PEM text nor a PKCS#8 or SEC1 DER structure".to_string(),
    })
}

fn decode_pkcs8(der_bytes: &[u8], path: &Path) -> Result<SigningKey, TrustError> {
    let private_key_info = PrivateKeyInfoRef::from_der(der_bytes).map_err(|error| TrustError::KeyFormat {
        path: path.to_path_buf(),
        found: format!("found a malformed PKCS#8 structure ({error})"),
    })?;
    let algorithm = &private_key_info.algorithm;
    if algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(TrustError::KeyAlgorithm {
            path: path.to_path_buf(),
            found: format!("a {} key", describe_oid(&algorithm.oid)),
        });
    }
    let curve = algorithm.parameters.and_then(|parameters| parameters.decode_as::<ObjectIdentifier>().ok());
    check_curve(curve, path)?;
    SigningKey::try_from(private_key_info).map_err(|error| TrustError::KeyFormat {
        path: path.to_path_buf(),
        found: format!("found a P-256 PKCS#8 key that does not decode ({error})"),
    })
}

fn decode_sec1(der_bytes: &[u8], path: &Path) -> Result<SigningKey, TrustError> {
    let outline = Sec1KeyOutline::from_der(der_bytes).map_err(|error| TrustError::KeyFormat {
        path: path.to_path_buf(),
        found: format!(
            "found a malformed SEC1 structure or explicit curve parameters ({error}); \
             expected a named curve"
        ),
    })?;
    check_curve(outline.named_curve, path)?;
    let secret_key = p256::SecretKey::from_sec1_der(der_bytes).map_err(|error| TrustError::KeyFormat {
        path: path.to_path_buf(),
        found: format!("found a P-256 SEC1 key that does not decode ({error})"),
    })?;
    Ok(SigningKey::from(secret_key))
}

fn check_curve(curve: Option<ObjectIdentifier>, path: &Path) -> Result<(), TrustError> {
    match curve {
        Some(curve) if curve == PRIME256V1 => Ok(()),
        Some(curve) => Err(TrustError::KeyAlgorithm {
            path: path.to_path_buf(),
            found: format!("an EC key on {}", describe_oid(&curve)),
        }),
        None => Err(TrustError::KeyAlgorithm {
            path: path.to_path_buf(),
            found: "an EC key without a named curve".to_string(),
        }),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode();
        // A key is loaded more than once per command (profile check, then the line); say it once.
        static WARNED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
        let first_time = {
            let mut warned = WARNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let is_new = !warned.iter().any(|seen| seen == path);
            if is_new {
                warned.push(path.to_path_buf());
            }
            is_new
        };
        if mode & 0o077 != 0 && first_time {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "signing key file {} is accessible by group or others; restrict it with chmod 600",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Generates a fresh P-256 key from the operating system's random number generator.
///
/// # Panics
/// Panics if the operating system cannot provide randomness, a condition no caller can recover
/// from and in which no key should be made.
pub fn generate_signing_key() -> SoftwareSigner {
    use p256::elliptic_curve::Generate;
    SoftwareSigner::new(SigningKey::generate(), "generated P-256 key")
}

/// Writes the key as PKCS#8 PEM, readable only by its owner on Unix (mode 0600).
///
/// The file is created with its final mode, so the key is never readable by others, not even for
/// a moment; an existing file is replaced.
pub fn write_signing_key_pem(signer: &SoftwareSigner, path: &Path) -> Result<(), TrustError> {
    let write_error = |source: std::io::Error| TrustError::Write { path: path.to_path_buf(), source };
    let pem = signer
        .signing_key()
        .to_pkcs8_pem(der::pem::LineEnding::LF)
        .map_err(|error| write_error(std::io::Error::other(error.to_string())))?;
    write_private_file(path, pem.as_bytes()).map_err(write_error)
}

/// Writes `contents` to `path` with mode 0600 on Unix, replacing any existing file.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // An existing file keeps its old mode through `open`; tighten it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects everything the subscriber writes.
    #[derive(Clone, Default)]
    struct CapturedLog(Arc<Mutex<Vec<u8>>>);

    impl Write for CapturedLog {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Loads a freshly written key file with `mode` and returns what was logged.
    fn log_of_loading_with_mode(mode: u32) -> (String, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("station-key.pem");
        write_signing_key_pem(&generate_signing_key(), &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let captured = CapturedLog::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, || load_signing_key(&path).unwrap());
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (text, path)
    }

    #[test]
    fn key_files_open_to_others_are_warned_about() {
        let check = |mode: u32, expect_warning: bool| {
            let (log, path) = log_of_loading_with_mode(mode);
            assert_eq!(
                log.contains("WARN") && log.contains(&path.display().to_string()),
                expect_warning,
                "mode {mode:o}: {log:?}"
            );
            assert!(!log.contains("PRIVATE KEY"), "key material in the log: {log}");
        };
        check(0o600, false);
        check(0o400, false);
        check(0o640, true);
        check(0o604, true);
        check(0o644, true);
    }

    #[test]
    fn the_published_demo_key_is_recognised_and_no_other() {
        for name in ["dev.key.pem", "factory-ca.key.pem"] {
            let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/demo-credentials").join(name);
            let demo_key = decode_signing_key(&std::fs::read(&demo).unwrap(), &demo).unwrap();
            assert!(is_public_demo_key(&demo_key), "{name}");
        }
        assert!(!is_public_demo_key(generate_signing_key().signing_key()));
    }
}
