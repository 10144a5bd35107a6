//! Checking certificates: one-level chains (update certificate issued by a CA) and the
//! warnings a factory wants before it injects an update certificate into thousands of devices.
//!
//! Only what the device will check is checked here (names, CA flag, ECDSA P-256 with SHA-256,
//! validity); this is not a general path validator.

use std::time::{Duration, SystemTime};

use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode, Sequence};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use sha2::{Digest, Sha256};

use super::certificate::Certificate;
use super::error::TrustError;

/// A certificate cut into its three parts without re-encoding the TBS, because a signature
/// covers the exact bytes that were signed.
/// PKCS#10 requests have the same three-part shape, so CSR checks reuse it.
#[derive(Sequence)]
pub(super) struct SignedParts<'a> {
    pub(super) tbs_certificate: AnyRef<'a>,
    pub(super) signature_algorithm: AnyRef<'a>,
    pub(super) signature: BitStringRef<'a>,
}

/// Checks that `leaf` was issued by `ca` and that both are valid at `at`.
pub fn verify_chain(leaf: &Certificate, ca: &Certificate, at: SystemTime) -> Result<(), TrustError> {
    if leaf.parsed().tbs_certificate().issuer() != ca.parsed().tbs_certificate().subject() {
        return Err(TrustError::IssuerMismatch {
            leaf_subject: leaf.subject(),
            leaf_issuer: leaf.issuer(),
            ca_subject: ca.subject(),
        });
    }
    if !ca.is_ca() {
        return Err(TrustError::NotCa { subject: ca.subject() });
    }
    let ca_key = ca.verifying_key()?;
    verify_signature(leaf, &ca_key, &ca.subject())?;
    check_validity(ca, at)?;
    check_validity(leaf, at)?;
    Ok(())
}

/// Checks that `certificate` is signed with ECDSA P-256 / SHA-256 by `key`; the error names the
/// certificate and, for a bad signature, the key's owner as "the given key".
pub(crate) fn verify_signature_by_key(
    certificate: &Certificate,
    key: &VerifyingKey,
) -> Result<(), TrustError> {
    verify_signature(certificate, key, "the given key")
}

fn verify_signature(
    certificate: &Certificate,
    key: &VerifyingKey,
    key_owner: &str,
) -> Result<(), TrustError> {
    if !certificate.signature_is_ecdsa_sha256() {
        return Err(TrustError::SignatureAlgorithm {
            subject: certificate.subject(),
            found: certificate.signature_algorithm_name(),
        });
    }
    let bad_signature = || TrustError::BadSignature {
        leaf_subject: certificate.subject(),
        ca_subject: key_owner.to_string(),
    };
    let parts = SignedParts::from_der(certificate.der()).map_err(|_| bad_signature())?;
    let tbs_der = parts.tbs_certificate.to_der().map_err(|_| bad_signature())?;
    let signature_bytes = parts.signature.as_bytes().ok_or_else(bad_signature)?;
    let signature = DerSignature::from_bytes(signature_bytes).map_err(|_| bad_signature())?;
    let digest = Sha256::digest(&tbs_der);
    key.verify_prehash(&digest, &signature).map_err(|_| bad_signature())
}

fn check_validity(certificate: &Certificate, at: SystemTime) -> Result<(), TrustError> {
    let validity = certificate.parsed().tbs_certificate().validity();
    if at < certificate.not_before() {
        return Err(TrustError::NotYetValid {
            subject: certificate.subject(),
            not_before: validity.not_before.to_string(),
        });
    }
    if at > certificate.not_after() {
        return Err(TrustError::Expired {
            subject: certificate.subject(),
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

/// How long an update certificate should stay valid: devices in the field cannot accept an
/// update once the certificate that authenticates it has expired.
const RECOMMENDED_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Warnings about a certificate that is about to become every device's update authority.
///
/// Empty when nothing is wrong. The checks follow what Pelion's factory tooling warned about:
/// remaining validity under 10 years and a missing codeSigning extended key usage; plus the
/// things that would make the device reject every update outright.
pub fn check_update_certificate(certificate: &Certificate) -> Vec<String> {
    check_update_certificate_at(certificate, SystemTime::now())
}

/// [`check_update_certificate`] as of a given time (for tests and for planning).
pub fn check_update_certificate_at(certificate: &Certificate, now: SystemTime) -> Vec<String> {
    let subject = certificate.subject();
    let validity = certificate.parsed().tbs_certificate().validity();
    let mut warnings = Vec::new();
    if let Err(error) = certificate.verifying_key() {
        warnings.push(format!("{error}; devices cannot verify updates with it"));
    }
    if !certificate.signature_is_ecdsa_sha256() {
        warnings.push(format!(
            "certificate {subject} is signed with {}, expected ecdsa-with-SHA256",
            certificate.signature_algorithm_name()
        ));
    }
    if now > certificate.not_after() {
        warnings.push(format!("certificate {subject} expired at {}", validity.not_after));
    } else if now + RECOMMENDED_VALIDITY > certificate.not_after() {
        warnings.push(format!(
            "certificate {subject} is valid until {}, less than 10 years from now; \
             devices may outlive their update authority",
            validity.not_after
        ));
    }
    if now < certificate.not_before() {
        warnings.push(format!("certificate {subject} is not valid before {}", validity.not_before));
    }
    if !certificate.has_code_signing_eku() {
        warnings.push(format!(
            "certificate {subject} has no codeSigning extended key usage (expected for update authenticity certificates)"
        ));
    }
    if certificate.is_ca() {
        warnings.push(format!(
            "certificate {subject} is a CA certificate, expected an end-entity update certificate"
        ));
    }
    warnings
}
