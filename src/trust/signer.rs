//! The one signing abstraction used wherever the station makes a signature.

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

/// Error from a signing operation (an HSM that refuses, a key that cannot sign).
#[derive(Debug, thiserror::Error)]
#[error("signing with {key} failed: {reason}")]
pub struct SignError {
    /// Which key was asked to sign (a path or a PKCS#11 label, never key material).
    pub key: String,
    /// What went wrong.
    pub reason: String,
}

/// An ECDSA P-256 key that can sign a SHA-256 digest computed by the caller.
///
/// Hashing happens on the host and the key signs the 32-byte digest ("prehash"), because that is
/// what every backend can do: SoftHSM2 offers `CKM_ECDSA` but not `CKM_ECDSA_SHA256`, and the
/// Pelion manifest's `installed-signature` is itself a signature over a digest.
pub trait Signer: Send + Sync {
    /// The public half of the key.
    fn verifying_key(&self) -> VerifyingKey;
    /// Signs a SHA-256 digest; the signature is normalised to low-S.
    fn sign_digest(&self, sha256_digest: &[u8; 32]) -> Result<Signature, SignError>;
    /// A human-readable name for logs and errors (a file path or token label; never secret).
    fn describe(&self) -> String;
}

/// A P-256 key held in process memory (loaded from a PEM file, or generated).
pub struct SoftwareSigner {
    signing_key: SigningKey,
    description: String,
}

impl SoftwareSigner {
    /// Wraps a key; `description` names where it came from (for example its file path).
    pub fn new(signing_key: SigningKey, description: impl Into<String>) -> Self {
        Self { signing_key, description: description.into() }
    }

    /// The wrapped key, for code in `trust` that must serialise it (developer credentials).
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }
}

impl Signer for SoftwareSigner {
    fn verifying_key(&self) -> VerifyingKey {
        *self.signing_key.verifying_key()
    }

    fn sign_digest(&self, sha256_digest: &[u8; 32]) -> Result<Signature, SignError> {
        let signature: Signature = self
            .signing_key
            .sign_prehash(sha256_digest)
            .map_err(|error| SignError { key: self.description.clone(), reason: error.to_string() })?;
        Ok(signature.normalize_s())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        formatter.debug_struct("SoftwareSigner").field("description", &self.description).finish()
    }
}
