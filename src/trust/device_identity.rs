//! Per-device identity: the key pair and certificate each unit leaves the factory with, so it
//! can prove who it is to a cloud service (TLS client authentication).
//!
//! Two ways to make the key, as Pelion's factory tool offered: the station makes it
//! ([`generate_device_key`], then [`device_key_pkcs8_der`] for the config store), or the device
//! makes it and hands the station a PKCS#10 request, whose signature the station checks
//! ([`verify_certificate_request`]) before it issues the certificate. Either way the factory CA
//! issues the certificate through a [`Signer`] (a key file or a PKCS#11 token), and after
//! injection the station checks what Pelion's device-side verification checks
//! ([`check_device_certificate`]: chain, validity, subject name) plus that the device holds the
//! key: it signs a fresh challenge that verifies with the certificate
//! ([`verify_challenge_signature`]).
//!
//! The device side (CSR building, signing) lives here too, for the simulated device and for
//! tests: [`build_certificate_request`].
//!
//! **Invariant:** private key bytes leave this module only as the PKCS#8 DER that goes into the
//! device's protected store, or the raw scalar the simulated device keeps in its own key sector,
//! both wrapped in `Zeroizing`; nothing here logs or formats them.

use std::path::Path;
use std::time::SystemTime;

use der::asn1::{BitString, ObjectIdentifier};
use der::zeroize::Zeroizing;
use der::{Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::EncodePrivateKey;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::request::{CertReq, CertReqInfo, Version};

use super::certificate::{Certificate, common_name};
use super::chain::{SignedParts, verify_chain};
use super::error::TrustError;
use super::issue::subject_name;
use super::key::decode_signing_key;
use super::oid::{ECDSA_WITH_SHA256, ID_EC_PUBLIC_KEY, PRIME256V1, describe_oid};
use super::signer::{Signer, SoftwareSigner};

/// Size of a P-256 private scalar.
pub const DEVICE_KEY_SCALAR_SIZE_BYTES: usize = 32;

/// What a device's certificate signing request proved: the public key it carries (the request
/// is signed with its private half) and the subject it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificateRequest {
    /// The device's public key.
    pub public_key: VerifyingKey,
    /// The requested subject in RFC 4514 form.
    pub subject: String,
    /// The requested subject's common name, when it has one.
    pub subject_common_name: Option<String>,
    /// SHA-256 of the request's DER, for the record.
    pub request_sha256: [u8; 32],
}

/// Checks a PKCS#10 request (DER): strict DER without trailing bytes, an ECDSA P-256 public
/// key, signed with ecdsa-with-SHA256 over the exact `CertificationRequestInfo` bytes by that
/// key (proof that whoever sent it holds the private key).
pub fn verify_certificate_request(request_der: &[u8]) -> Result<VerifiedCertificateRequest, TrustError> {
    let malformed = |found: String| TrustError::SigningRequest { found };
    let request = CertReq::from_der(request_der)
        .map_err(|error| malformed(format!("found bytes that do not decode ({error})")))?;
    if request.algorithm.oid != ECDSA_WITH_SHA256 {
        return Err(malformed(format!("found one signed with {}", describe_oid(&request.algorithm.oid))));
    }
    let public_key = p256_public_key(&request.info.public_key).map_err(malformed)?;
    // Verify over the bytes as sent: a re-encoding could differ from what the device signed.
    let parts = SignedParts::from_der(request_der)
        .map_err(|error| malformed(format!("found bytes that do not split into three parts ({error})")))?;
    let info_der = parts
        .tbs_certificate
        .to_der()
        .map_err(|error| malformed(format!("found request info that does not encode ({error})")))?;
    let signature_bytes = parts
        .signature
        .as_bytes()
        .ok_or_else(|| malformed("found a signature BIT STRING with unused bits".to_string()))?;
    let signature = DerSignature::from_bytes(signature_bytes)
        .map_err(|_| malformed("found a signature that is not a DER ECDSA signature".to_string()))?;
    public_key.verify_prehash(&Sha256::digest(&info_der), &signature).map_err(|_| {
        malformed("found a signature that does not verify with the request's public key".to_string())
    })?;
    let subject = request.info.subject;
    let subject_common_name = common_name(&subject);
    Ok(VerifiedCertificateRequest {
        public_key,
        subject: subject.to_string(),
        subject_common_name,
        request_sha256: Sha256::digest(request_der).into(),
    })
}

/// The device side: a PKCS#10 request (DER) for the signer's key with subject
/// `CN=<subject_common_name>`, no attributes, signed with ecdsa-with-SHA256.
pub fn build_certificate_request(
    signer: &dyn Signer,
    subject_common_name: &str,
) -> Result<Vec<u8>, TrustError> {
    let build_error = |reason: String| TrustError::Issue {
        subject: subject_common_name.to_string(),
        reason: format!("certificate signing request: {reason}"),
    };
    let info = CertReqInfo {
        version: Version::V1,
        subject: subject_name(subject_common_name, None)?,
        public_key: SubjectPublicKeyInfoOwned::from_key(&signer.verifying_key())
            .map_err(|error| build_error(format!("public key does not encode: {error}")))?,
        attributes: Default::default(),
    };
    let info_der =
        info.to_der().map_err(|error| build_error(format!("request info does not encode: {error}")))?;
    let digest: [u8; 32] = Sha256::digest(&info_der).into();
    let signature = signer.sign_digest(&digest)?.to_der();
    let request = CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA256, parameters: None },
        signature: BitString::from_bytes(signature.as_bytes())
            .map_err(|error| build_error(format!("signature does not encode: {error}")))?,
    };
    request.to_der().map_err(|error| build_error(format!("request does not encode: {error}")))
}

/// A fresh P-256 key for one device, from the operating system's random number generator.
pub fn generate_device_key() -> Result<SoftwareSigner, TrustError> {
    let signing_key = SigningKey::try_generate()
        .map_err(|error| TrustError::Randomness { purpose: "a device key", reason: error.to_string() })?;
    Ok(SoftwareSigner::new(signing_key, "device identity key"))
}

/// The key as PKCS#8 DER: the form `mbed.BootstrapDevicePrivateKey` holds in the config store.
pub fn device_key_pkcs8_der(key: &SoftwareSigner) -> Result<Zeroizing<Vec<u8>>, TrustError> {
    let document = key.signing_key().to_pkcs8_der().map_err(|error| TrustError::Issue {
        subject: key.describe(),
        reason: format!("the private key does not encode as PKCS#8: {error}"),
    })?;
    Ok(Zeroizing::new(document.as_bytes().to_vec()))
}

/// Reads a PKCS#8 (or SEC1) DER key, e.g. the config store's `mbed.BootstrapDevicePrivateKey`;
/// `origin` names where it came from in errors.
pub fn device_key_from_pkcs8_der(key_der: &[u8], origin: &str) -> Result<SoftwareSigner, TrustError> {
    let signing_key = decode_signing_key(key_der, Path::new(origin))?;
    Ok(SoftwareSigner::new(signing_key, origin))
}

/// The raw private scalar (big-endian), for a device that keeps its key in its own storage.
pub fn device_key_scalar(key: &SoftwareSigner) -> Zeroizing<[u8; DEVICE_KEY_SCALAR_SIZE_BYTES]> {
    let mut scalar = Zeroizing::new([0u8; DEVICE_KEY_SCALAR_SIZE_BYTES]);
    scalar.copy_from_slice(&key.signing_key().to_bytes());
    scalar
}

/// A key from its raw private scalar; `None` when the bytes are not a valid P-256 scalar.
pub fn device_key_from_scalar(scalar: &[u8], origin: &str) -> Option<SoftwareSigner> {
    SigningKey::from_slice(scalar).ok().map(|signing_key| SoftwareSigner::new(signing_key, origin))
}

/// Checks a device certificate the way the device-side verification does: issued by `ca` with
/// a valid signature, both valid at `at`, an ECDSA P-256 key, and the subject CN the unit must
/// carry.
pub fn check_device_certificate(
    certificate: &Certificate,
    ca: &Certificate,
    expected_common_name: &str,
    at: SystemTime,
) -> Result<(), TrustError> {
    verify_chain(certificate, ca, at)?;
    certificate.verifying_key()?;
    match certificate.subject_common_name() {
        Some(found) if found == expected_common_name => Ok(()),
        found => Err(TrustError::CommonNameMismatch {
            subject: certificate.subject(),
            expected: expected_common_name.to_string(),
            found: found.map_or_else(|| "none".to_string(), |name| format!("{name:?}")),
        }),
    }
}

/// Checks a challenge signature (raw `r || s`, 64 bytes) over `digest` with the certificate's
/// public key: proof that the device holds the private key that matches the certificate.
pub fn verify_challenge_signature(
    certificate: &Certificate,
    digest: &[u8; 32],
    signature: &[u8],
) -> Result<(), TrustError> {
    let failure = |reason: String| TrustError::ChallengeSignature { subject: certificate.subject(), reason };
    let public_key = certificate.verifying_key()?;
    let signature = Signature::from_slice(signature).map_err(|_| {
        failure(format!(
            "is {} bytes that are not an ECDSA P-256 r || s signature (expected 64)",
            signature.len()
        ))
    })?;
    public_key
        .verify_prehash(digest, &signature)
        .map_err(|_| failure("does not verify with the certificate's public key".to_string()))
}

/// SHA-256 of a public key's SubjectPublicKeyInfo DER: names a key in records without the key.
pub fn public_key_sha256(public_key: &VerifyingKey) -> Result<[u8; 32], TrustError> {
    let info = SubjectPublicKeyInfoOwned::from_key(public_key).map_err(|error| TrustError::Issue {
        subject: "device key".to_string(),
        reason: format!("public key does not encode: {error}"),
    })?;
    let der = info.to_der().map_err(|error| TrustError::Issue {
        subject: "device key".to_string(),
        reason: format!("public key does not encode: {error}"),
    })?;
    Ok(Sha256::digest(der).into())
}

/// The ECDSA P-256 key of a SubjectPublicKeyInfo, or what was found instead.
fn p256_public_key(info: &SubjectPublicKeyInfoOwned) -> Result<VerifyingKey, String> {
    let algorithm = &info.algorithm;
    if algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(format!("found a {} public key", describe_oid(&algorithm.oid)));
    }
    let curve =
        algorithm.parameters.as_ref().and_then(|parameters| parameters.decode_as::<ObjectIdentifier>().ok());
    match curve {
        Some(curve) if curve == PRIME256V1 => {}
        Some(curve) => return Err(format!("found an EC public key on {}", describe_oid(&curve))),
        None => return Err("found an EC public key without a named curve".to_string()),
    }
    VerifyingKey::from_sec1_bytes(info.subject_public_key.raw_bytes())
        .map_err(|_| "found a P-256 public key that is not a valid curve point".to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::trust::{CertificateRequest, issue_certificate, self_signed_certificate};

    fn factory_ca() -> (SoftwareSigner, Certificate) {
        let key = generate_device_key().unwrap();
        let certificate =
            self_signed_certificate(&key, &CertificateRequest::certificate_authority("Factory CA", 3650))
                .unwrap();
        (key, certificate)
    }

    /// Builds a request for a fresh key, optionally damages it, and compares the verdict.
    fn check_request(damage: impl Fn(&mut Vec<u8>), expected: Result<&str, &str>) {
        let key = generate_device_key().unwrap();
        let mut request = build_certificate_request(&key, "DS1-000042").unwrap();
        damage(&mut request);
        match (verify_certificate_request(&request), expected) {
            (Ok(verified), Ok(common_name)) => {
                assert_eq!(verified.public_key, key.verifying_key());
                assert_eq!(verified.subject_common_name.as_deref(), Some(common_name));
                assert_eq!(verified.subject, format!("CN={common_name}"));
            }
            (Err(error), Err(fragment)) => assert!(error.to_string().contains(fragment), "{error}"),
            (outcome, expected) => panic!("got {outcome:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn certificate_requests_verify_only_when_signed_by_their_key() {
        check_request(|_| {}, Ok("DS1-000042"));
        // The last byte is inside the signature's s: still DER, no longer a valid signature.
        check_request(|request| *request.last_mut().unwrap() ^= 0x01, Err("does not verify"));
        // A byte of the common name: the signed info changed.
        check_request(
            |request| {
                let position = request.windows(3).position(|window| window == b"DS1").unwrap();
                request[position] = b'X';
            },
            Err("does not verify"),
        );
        check_request(|request| request.push(0), Err("do not decode"));
        check_request(|request| request.truncate(request.len() - 1), Err("do not decode"));
    }

    #[test]
    fn device_certificates_are_checked_like_the_device_checks_them() {
        let (ca_key, ca) = factory_ca();
        let device_key = generate_device_key().unwrap();
        let request = CertificateRequest::device_identity("device-1", 30);
        let certificate = issue_certificate(&ca_key, &ca, &device_key.verifying_key(), &request).unwrap();
        assert!(
            certificate.has_client_auth_eku() && !certificate.has_code_signing_eku() && !certificate.is_ca()
        );
        let now = SystemTime::now();
        assert!(check_device_certificate(&certificate, &ca, "device-1", now).is_ok());
        let error = check_device_certificate(&certificate, &ca, "device-2", now).unwrap_err();
        assert!(error.to_string().contains("expected subject common name \"device-2\""), "{error}");
        let later = now + Duration::from_secs(31 * 24 * 3600);
        assert!(matches!(
            check_device_certificate(&certificate, &ca, "device-1", later),
            Err(TrustError::Expired { .. })
        ));
        let (_, other_ca) = factory_ca();
        assert!(check_device_certificate(&certificate, &other_ca, "device-1", now).is_err());

        let digest = [9u8; 32];
        let signature = device_key.sign_digest(&digest).unwrap().to_bytes();
        assert!(verify_challenge_signature(&certificate, &digest, &signature).is_ok());
        let wrong_key = generate_device_key().unwrap().sign_digest(&digest).unwrap().to_bytes();
        assert!(verify_challenge_signature(&certificate, &digest, &wrong_key).is_err());
        assert!(verify_challenge_signature(&certificate, &digest, &signature[..63]).is_err());
    }

    #[test]
    fn device_keys_round_trip_through_pkcs8_and_scalar() {
        let key = generate_device_key().unwrap();
        let pkcs8 = device_key_pkcs8_der(&key).unwrap();
        assert_eq!(device_key_from_pkcs8_der(&pkcs8, "store").unwrap().verifying_key(), key.verifying_key());
        let scalar = device_key_scalar(&key);
        assert_eq!(
            device_key_from_scalar(&scalar[..], "sector").unwrap().verifying_key(),
            key.verifying_key()
        );
        assert!(device_key_from_scalar(&[0u8; 32], "sector").is_none());
        assert!(!format!("{key:?}").contains(&hex::encode(&scalar[..])));
    }
}
