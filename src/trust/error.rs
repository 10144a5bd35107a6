//! The one error type of the `trust` module.
//!
//! Every variant that involves a file carries its path, and every message says what was expected
//! and what was found, so an operator can fix a profile without reading code. No variant ever
//! carries key material.

use std::path::PathBuf;

use super::signer::SignError;

/// Errors from loading, issuing and checking keys and certificates.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists and the caller did not ask to overwrite it.
    #[error("refusing to overwrite {path}: expected no file there, found one")]
    AlreadyExists { path: PathBuf },
    /// A private key file is not a PKCS#8 or SEC1 key in PEM or DER.
    #[error("{path}: expected a P-256 private key (PKCS#8 or SEC1 \"EC PRIVATE KEY\", PEM or DER), {found}")]
    KeyFormat { path: PathBuf, found: String },
    /// A private key file holds a key of another algorithm or curve.
    #[error("{path}: expected a P-256 (prime256v1) private key, found {found}")]
    KeyAlgorithm { path: PathBuf, found: String },
    /// Bytes that should be a certificate are not one.
    #[error("{origin}: expected an X.509 certificate (DER or PEM \"CERTIFICATE\"), {found}")]
    CertificateFormat { origin: String, found: String },
    /// A certificate's public key is not ECDSA P-256.
    #[error(
        "certificate {subject}: expected an ECDSA P-256 public key (id-ecPublicKey on prime256v1), found {found}"
    )]
    CertificateKeyAlgorithm { subject: String, found: String },
    /// A certificate could not be built or encoded.
    #[error("cannot issue certificate for {subject}: {reason}")]
    Issue { subject: String, reason: String },
    /// The key refused to sign.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The leaf's issuer name is not the CA's subject name.
    #[error("certificate {leaf_subject} was issued by {leaf_issuer}, expected the CA {ca_subject}")]
    IssuerMismatch { leaf_subject: String, leaf_issuer: String, ca_subject: String },
    /// The would-be CA certificate lacks basicConstraints CA:TRUE.
    #[error("certificate {subject} is not a CA (expected basicConstraints CA:TRUE)")]
    NotCa { subject: String },
    /// The leaf is signed with an algorithm other than ECDSA with SHA-256.
    #[error("certificate {subject}: expected an ecdsa-with-SHA256 signature, found {found}")]
    SignatureAlgorithm { subject: String, found: String },
    /// The leaf's signature does not verify with the CA's key.
    #[error("certificate {leaf_subject}: signature does not verify with the key of CA {ca_subject}")]
    BadSignature { leaf_subject: String, ca_subject: String },
    /// A certificate is not valid yet at the time asked about.
    #[error("certificate {subject} is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    /// A certificate has expired at the time asked about.
    #[error("certificate {subject} expired at {not_after}")]
    Expired { subject: String, not_after: String },
    /// A developer-environment file (dev.cfg.yaml) is missing a field or has a bad value.
    #[error("{path}: {reason}")]
    DevEnvironment { path: PathBuf, reason: String },
    /// A request (subject, validity, serial) is invalid.
    #[error("invalid certificate request: {reason}")]
    InvalidRequest { reason: String },
    /// A PKCS#10 certificate signing request (from a device) is malformed or its signature does
    /// not verify with the public key it carries.
    #[error(
        "certificate signing request: expected a PKCS#10 request signed with ECDSA P-256 / SHA-256 by the key it carries, {found}"
    )]
    SigningRequest { found: String },
    /// A certificate's subject CN is not the name the unit must carry.
    #[error("certificate {subject}: expected subject common name {expected:?}, found {found}")]
    CommonNameMismatch { subject: String, expected: String, found: String },
    /// A device's challenge signature does not verify with its certificate's public key.
    #[error("certificate {subject}: the device's challenge signature {reason}")]
    ChallengeSignature { subject: String, reason: String },
    /// The operating system gave no randomness.
    #[error("no randomness for {purpose}: {reason}")]
    Randomness { purpose: &'static str, reason: String },
}
