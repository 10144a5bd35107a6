//! Where a profile's signing key lives, and the one moment it is opened.
//!
//! Loading a profile names its keys without touching a device: a key file is read and matched
//! to its certificate then (a file is the profile's own I/O, like its images), but a PKCS#11
//! key is only parsed and checked as configuration. Opening a token logs in, which spends a PIN
//! attempt and may ask on the terminal (`pin-source=prompt`), so it happens in
//! [`KeySource::open_signer`] when a line starts (or a command that signs needs the key), once
//! per loaded profile; the token key's match to its certificate is checked at that moment.
//!
//! A [`KeySource`] is itself a [`Signer`]: its public key is the certificate's (which the key
//! is proven to match when it opens), and its first signature opens it if nothing did before.
//! Code that wants a refusal before any unit is touched calls `open_signer` first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use p256::ecdsa::{Signature, VerifyingKey};

use super::pkcs11::{PinSource, Pkcs11KeyConfig, Pkcs11Signer};
use super::signer::{SignError, Signer, SoftwareSigner};

/// Where a key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// A PEM/DER key file (already loaded and matched when the profile loaded).
    File { path: PathBuf },
    /// A key in a PKCS#11 token (opened by [`KeySource::open_signer`]).
    Pkcs11(Pkcs11KeyConfig),
}

/// Why a key could not be opened: names the profile file and the field that named the key.
/// Never carries a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}: {reason}", profile_path.display())]
pub struct KeySourceError {
    /// The profile that named the key.
    pub profile_path: PathBuf,
    /// The field (`trust.signing_key`, `device_identity.ca_key`).
    pub field: String,
    /// What went wrong (a token error, or a key that does not match its certificate).
    pub reason: String,
}

/// A key a profile names, with the certificate it must match; opened at most once.
pub struct KeySource {
    location: KeyLocation,
    profile_path: PathBuf,
    field: String,
    certificate_key: VerifyingKey,
    certificate_path: PathBuf,
    opened: OnceLock<Result<Arc<dyn Signer>, KeySourceError>>,
}

impl KeySource {
    /// A key file already loaded (and matched to its certificate) by the profile loader.
    pub fn from_loaded_file(
        path: &Path,
        signer: SoftwareSigner,
        profile_path: &Path,
        field: &str,
        certificate_path: &Path,
    ) -> KeySource {
        let certificate_key = signer.verifying_key();
        let opened = OnceLock::new();
        let _ = opened.set(Ok(Arc::new(signer) as Arc<dyn Signer>));
        KeySource {
            location: KeyLocation::File { path: path.to_path_buf() },
            profile_path: profile_path.to_path_buf(),
            field: field.to_string(),
            certificate_key,
            certificate_path: certificate_path.to_path_buf(),
            opened,
        }
    }

    /// A key in a token, not opened: `certificate_key` is the public key of the certificate
    /// (read from `certificate_path`) the token's key must match.
    pub fn pkcs11(
        config: Pkcs11KeyConfig,
        profile_path: &Path,
        field: &str,
        certificate_key: VerifyingKey,
        certificate_path: &Path,
    ) -> KeySource {
        KeySource {
            location: KeyLocation::Pkcs11(config),
            profile_path: profile_path.to_path_buf(),
            field: field.to_string(),
            certificate_key,
            certificate_path: certificate_path.to_path_buf(),
            opened: OnceLock::new(),
        }
    }

    /// Where the key is.
    pub fn location(&self) -> &KeyLocation {
        &self.location
    }

    /// The profile field that named the key.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Whether opening would ask on the terminal for a PIN (`pin-source=prompt`).
    pub fn asks_for_pin(&self) -> bool {
        matches!(&self.location, KeyLocation::Pkcs11(config) if config.pin_source == PinSource::Prompt)
    }

    /// Whether the key has been opened (file keys always are).
    pub fn is_open(&self) -> bool {
        matches!(self.opened.get(), Some(Ok(_)))
    }

    /// Opens the key once: a token is opened and logged into (one PIN attempt), its key found
    /// and matched to the certificate. Later calls return the same signer, or the same error
    /// (a failed login is never retried behind the operator's back).
    pub fn open_signer(&self) -> Result<Arc<dyn Signer>, KeySourceError> {
        self.opened.get_or_init(|| self.open_now()).clone()
    }

    fn open_now(&self) -> Result<Arc<dyn Signer>, KeySourceError> {
        let error = |reason: String| KeySourceError {
            profile_path: self.profile_path.clone(),
            field: self.field.clone(),
            reason,
        };
        let KeyLocation::Pkcs11(config) = &self.location else {
            // File keys are loaded when the profile loads; nothing else reaches here.
            return Err(error("the key file was not loaded with the profile".to_string()));
        };
        tracing::info!(key = %config.path_uri(), field = %self.field, "opening the PKCS#11 key");
        let signer = Pkcs11Signer::open(config).map_err(|open_error| error(open_error.to_string()))?;
        if signer.verifying_key() != self.certificate_key {
            return Err(error(format!(
                "the key {} does not match the certificate {}",
                signer.describe(),
                self.certificate_path.display()
            )));
        }
        Ok(Arc::new(signer))
    }
}

impl Signer for KeySource {
    /// The certificate's public key: the key is proven to match it when it opens.
    fn verifying_key(&self) -> VerifyingKey {
        self.certificate_key
    }

    fn sign_digest(&self, sha256_digest: &[u8; 32]) -> Result<Signature, SignError> {
        let signer = self
            .open_signer()
            .map_err(|error| SignError { key: self.describe(), reason: error.to_string() })?;
        signer.sign_digest(sha256_digest)
    }

    /// The opened key's own description (a token fills in the key's label and id), else where
    /// the profile says the key is.
    fn describe(&self) -> String {
        if let Some(Ok(signer)) = self.opened.get() {
            return signer.describe();
        }
        match &self.location {
            KeyLocation::File { path } => path.display().to_string(),
            KeyLocation::Pkcs11(config) => config.path_uri(),
        }
    }
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeySource")
            .field("location", &self.describe())
            .field("field", &self.field)
            .field("is_open", &self.is_open())
            .finish_non_exhaustive()
    }
}
