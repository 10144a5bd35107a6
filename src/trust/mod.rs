//! Trust material: signing keys, X.509 certificates, developer credentials and chains.
//!
//! Everything that makes a signature goes through [`Signer`], so that a key on disk and a key in
//! an HSM (PKCS#11) are interchangeable. Private keys never leave this module as bytes; what the
//! rest of the station sees is a public key, a certificate and its SHA-256 fingerprint.
//!
//! Map: `key` (load, generate, write P-256 keys), `certificate` (parsed certificate with exact
//! DER and fingerprint), `issue` (self-signed and CA-issued certificates through any [`Signer`]),
//! `chain` (one-level chain checks, update-certificate warnings), `dev` (developer credentials
//! compatible with `manifest-dev-tool init`), `device_identity` (per-device keys, CSRs, device
//! certificate checks), `pkcs11` (keys in hardware tokens, [`Pkcs11Signer`]),
//! `error` ([`TrustError`]).
//!
//! **Invariant:** no device I/O and no database access here, except that [`Pkcs11Signer`] talks to
//! a token when (and only when) it is opened or signs.

mod certificate;
mod chain;
mod dev;
mod device_identity;
mod error;
mod issue;
mod key;
mod key_source;
mod oid;
mod pem;
mod pkcs11;
mod signer;

pub use certificate::{Certificate, key_matches_certificate};
pub use chain::{check_update_certificate, check_update_certificate_at, verify_chain};
pub use dev::{
    DEV_C_SOURCE_FILE, DEV_CERTIFICATE_FILE, DEV_SIGNING_KEY_FILE, DEV_SUMMARY_FILE, DevCredentials,
    DevEnvironment, DevInitOptions, DevSummary, dev_init, import_manifest_dev_tool_env, profile_snippet,
};
pub use device_identity::{
    DEVICE_KEY_SCALAR_SIZE_BYTES, VerifiedCertificateRequest, build_certificate_request,
    check_device_certificate, device_key_from_pkcs8_der, device_key_from_scalar, device_key_pkcs8_der,
    device_key_scalar, generate_device_key, public_key_sha256, verify_certificate_request,
    verify_challenge_signature,
};
pub use error::TrustError;
pub use issue::{CertificateRequest, issue_certificate, self_signed_certificate};
pub use key::{generate_signing_key, load_signing_key, write_signing_key_pem};
pub use key_source::{KeyLocation, KeySource, KeySourceError};
pub use pkcs11::{
    PKCS11_URI_SCHEME, PinSource, Pkcs11Error, Pkcs11KeyConfig, Pkcs11KeyProtection, Pkcs11Signer,
    is_pkcs11_uri,
};
pub use signer::{SignError, Signer, SoftwareSigner};
