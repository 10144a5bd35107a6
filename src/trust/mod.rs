//! Trust material: signing keys, X.509 certificates, developer credentials and chains.
//!
//! Everything that makes a signature goes through [`Signer`], so that a key on disk and a key in
//! an HSM (PKCS#11) are interchangeable. Private keys never leave this module as bytes; what the
//! rest of the station sees is a public key, a certificate and its SHA-256 fingerprint.
//!
//! **Invariant:** no device I/O and no database access here.

mod signer;

pub use signer::{SignError, Signer, SoftwareSigner};
