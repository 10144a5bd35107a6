//! A parsed X.509 certificate together with its exact DER bytes and SHA-256 fingerprint.
//!
//! The DER bytes are kept as they were read (never re-encoded), because the fingerprint that
//! devices use as the certificate's key in the config store is the SHA-256 of exactly those
//! bytes, and a re-encoding that differs by one byte would orphan every device in the field.

use std::path::Path;
use std::time::SystemTime;

use der::Decode;
use der::asn1::ObjectIdentifier;
use p256::ecdsa::VerifyingKey;
use sha2::{Digest, Sha256};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage};

use super::error::TrustError;
use super::oid::{
    COMMON_NAME, ECDSA_WITH_SHA256, EKU_CLIENT_AUTH, EKU_CODE_SIGNING, ID_EC_PUBLIC_KEY, PRIME256V1,
    describe_oid,
};
use super::pem::{encode_pem, looks_like_pem, pem_blocks};
use super::signer::Signer;

/// An X.509 certificate: exact DER, its parsed form, and the SHA-256 of the DER.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    parsed: x509_cert::Certificate,
    fingerprint_sha256: [u8; 32],
}

impl Certificate {
    /// Reads a certificate file in DER or PEM form.
    pub fn load(path: &Path) -> Result<Certificate, TrustError> {
        let bytes =
            std::fs::read(path).map_err(|source| TrustError::Read { path: path.to_path_buf(), source })?;
        let origin = path.display().to_string();
        if looks_like_pem(&bytes) {
            let text = std::str::from_utf8(&bytes).map_err(|_| TrustError::CertificateFormat {
                origin: origin.clone(),
                found: "found PEM markers in a file that is not text".to_string(),
            })?;
            Self::parse_pem(text, &origin)
        } else {
            Self::parse_der(&bytes, &origin)
        }
    }

    /// Parses a DER-encoded certificate.
    pub fn from_der(der_bytes: &[u8]) -> Result<Certificate, TrustError> {
        Self::parse_der(der_bytes, "DER certificate")
    }

    /// Parses the first "CERTIFICATE" block of PEM text.
    pub fn from_pem(pem: &str) -> Result<Certificate, TrustError> {
        Self::parse_pem(pem, "PEM certificate")
    }

    fn parse_pem(text: &str, origin: &str) -> Result<Certificate, TrustError> {
        let format_error =
            |found: String| TrustError::CertificateFormat { origin: origin.to_string(), found };
        let blocks = pem_blocks(text).map_err(format_error)?;
        match blocks.iter().find(|block| block.label == "CERTIFICATE") {
            Some(block) => Self::parse_der(&block.der, origin),
            None => Err(format_error(format!(
                "found PEM blocks [{}] but no \"CERTIFICATE\"",
                blocks.iter().map(|block| block.label.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn parse_der(der_bytes: &[u8], origin: &str) -> Result<Certificate, TrustError> {
        let parsed =
            x509_cert::Certificate::from_der(der_bytes).map_err(|error| TrustError::CertificateFormat {
                origin: origin.to_string(),
                found: format!("found bytes that do not decode ({error})"),
            })?;
        Ok(Certificate {
            der: der_bytes.to_vec(),
            parsed,
            fingerprint_sha256: Sha256::digest(der_bytes).into(),
        })
    }

    /// The exact DER bytes the certificate was read from or built as.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The parsed structure, for callers that need a field this type does not expose.
    pub fn parsed(&self) -> &x509_cert::Certificate {
        &self.parsed
    }

    /// The certificate as one PEM "CERTIFICATE" block with LF line endings.
    pub fn to_pem(&self) -> String {
        encode_pem("CERTIFICATE", &self.der)
    }

    /// SHA-256 of the DER bytes: the certificate's identity in the device's config store.
    pub fn fingerprint_sha256(&self) -> [u8; 32] {
        self.fingerprint_sha256
    }

    /// The fingerprint as lowercase hex, for logs, the ledger and the CLI.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint_sha256)
    }

    /// The subject's ECDSA P-256 public key; any other key type is an error naming what it is.
    pub fn verifying_key(&self) -> Result<VerifyingKey, TrustError> {
        let public_key_info = self.parsed.tbs_certificate().subject_public_key_info();
        let key_error =
            |found: String| TrustError::CertificateKeyAlgorithm { subject: self.subject(), found };
        let algorithm = &public_key_info.algorithm;
        if algorithm.oid != ID_EC_PUBLIC_KEY {
            return Err(key_error(format!("a {} key", describe_oid(&algorithm.oid))));
        }
        let curve = algorithm
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.decode_as::<ObjectIdentifier>().ok());
        match curve {
            Some(curve) if curve == PRIME256V1 => {}
            Some(curve) => return Err(key_error(format!("an EC key on {}", describe_oid(&curve)))),
            None => return Err(key_error("an EC key without a named curve".to_string())),
        }
        let point = public_key_info.subject_public_key.raw_bytes();
        VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| key_error("a P-256 public key that is not a valid curve point".to_string()))
    }

    /// The subject name in RFC 4514 form (for example `CN=Update authority,O=Acme`).
    pub fn subject(&self) -> String {
        self.parsed.tbs_certificate().subject().to_string()
    }

    /// The issuer name in RFC 4514 form.
    pub fn issuer(&self) -> String {
        self.parsed.tbs_certificate().issuer().to_string()
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> SystemTime {
        self.parsed.tbs_certificate().validity().not_before.to_system_time()
    }

    /// End of the validity period.
    pub fn not_after(&self) -> SystemTime {
        self.parsed.tbs_certificate().validity().not_after.to_system_time()
    }

    /// The serial number as lowercase hex (big-endian, without the DER sign byte).
    pub fn serial_hex(&self) -> String {
        let bytes = self.parsed.tbs_certificate().serial_number().as_bytes();
        // DER adds a 0x00 in front of a high first byte to keep the integer positive.
        let first_significant =
            bytes.iter().position(|byte| *byte != 0).unwrap_or(bytes.len().saturating_sub(1));
        hex::encode(&bytes[first_significant..])
    }

    /// True when an extendedKeyUsage extension lists id-kp-codeSigning.
    pub fn has_code_signing_eku(&self) -> bool {
        matches!(
            self.parsed.tbs_certificate().get_extension::<ExtendedKeyUsage>(),
            Ok(Some((_, usages))) if usages.0.contains(&EKU_CODE_SIGNING)
        )
    }

    /// True when an extendedKeyUsage extension lists id-kp-clientAuth.
    pub fn has_client_auth_eku(&self) -> bool {
        matches!(
            self.parsed.tbs_certificate().get_extension::<ExtendedKeyUsage>(),
            Ok(Some((_, usages))) if usages.0.contains(&EKU_CLIENT_AUTH)
        )
    }

    /// The subject's common name (the most specific, i.e. last, CN attribute), when the subject
    /// has one whose value is a text string.
    pub fn subject_common_name(&self) -> Option<String> {
        common_name(self.parsed.tbs_certificate().subject())
    }

    /// True when basicConstraints says CA:TRUE.
    pub fn is_ca(&self) -> bool {
        matches!(
            self.parsed.tbs_certificate().get_extension::<BasicConstraints>(),
            Ok(Some((_, constraints))) if constraints.ca
        )
    }

    /// True when the certificate is signed with ecdsa-with-SHA256.
    pub fn signature_is_ecdsa_sha256(&self) -> bool {
        self.parsed.signature_algorithm().oid == ECDSA_WITH_SHA256
    }

    /// A readable name for the signature algorithm (used in errors).
    pub(crate) fn signature_algorithm_name(&self) -> String {
        describe_oid(&self.parsed.signature_algorithm().oid)
    }
}

/// The most specific (last) common name of a name, when its value is a text string.
pub(crate) fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    name.iter()
        .filter(|attribute| attribute.oid == COMMON_NAME)
        .filter_map(|attribute| attribute_text(&attribute.value))
        .last()
}

/// The text of a directory string attribute value (UTF8String, PrintableString, IA5String).
pub(crate) fn attribute_text(value: &der::Any) -> Option<String> {
    use der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    if let Ok(text) = value.decode_as::<Utf8StringRef<'_>>() {
        return Some(text.as_str().to_string());
    }
    if let Ok(text) = value.decode_as::<PrintableStringRef<'_>>() {
        return Some(text.as_str().to_string());
    }
    value.decode_as::<Ia5StringRef<'_>>().ok().map(|text| text.as_str().to_string())
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Certificate")
            .field("subject", &self.subject())
            .field("fingerprint_sha256", &self.fingerprint_hex())
            .finish()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

/// True when the signer's public key is the certificate's subject public key.
pub fn key_matches_certificate(signer: &dyn Signer, certificate: &Certificate) -> bool {
    match certificate.verifying_key() {
        Ok(certificate_key) => certificate_key == signer.verifying_key(),
        Err(_) => false,
    }
}
