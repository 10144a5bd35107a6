//! Issuing X.509 certificates: self-signed roots and developer certificates, CA-issued update
//! authority certificates.
//!
//! Certificates are built with x509-cert's `CertificateBuilder` and a profile of our own
//! ([`ImprintProfile`]) so that we decide every extension (the stock `cabf` profiles insist on a
//! country attribute and web-PKI extensions the Pelion update client does not want). Signing goes
//! through our [`Signer`] trait, wrapped into the `signature::Signer<DerSignature>` that the
//! builder expects: the TBS bytes are hashed with SHA-256 here and only the digest goes to the
//! key, so an HSM key (PKCS#11 `CKM_ECDSA`) issues certificates exactly like a key in a file.

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use der::asn1::{OctetString, Utf8StringRef};
use der::{Any, Decode, Encode, Tag};
use p256::ecdsa::{DerSignature, VerifyingKey};
use sha2::{Digest, Sha256};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey, SubjectPublicKeyInfoOwned,
    SubjectPublicKeyInfoRef,
};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::certificate::{Certificate, key_matches_certificate};
use super::error::TrustError;
use super::oid::{COMMON_NAME, ECDSA_WITH_SHA256, EKU_CLIENT_AUTH, EKU_CODE_SIGNING};
use super::signer::{SignError, Signer};

const ORGANIZATION: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.10");
const SECONDS_PER_DAY: u64 = 24 * 60 * 60;
/// How far before the moment of issue a new certificate's validity starts.
const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(300);

/// Length of generated serial numbers (RFC 5280 allows up to 20; 16 random bytes are plenty).
const SERIAL_SIZE_BYTES: usize = 16;

/// What a certificate should say. Build one with [`CertificateRequest::update_authority`] or
/// [`CertificateRequest::certificate_authority`] and adjust fields as needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRequest {
    /// The subject's CN.
    pub subject_common_name: String,
    /// The subject's O, if any.
    pub organization: Option<String>,
    /// Validity in days from `not_before`.
    pub validity_days: u32,
    /// basicConstraints CA:TRUE with keyCertSign+cRLSign (otherwise CA:FALSE, digitalSignature).
    pub is_ca: bool,
    /// Adds extendedKeyUsage codeSigning (what update authenticity certificates carry).
    pub code_signing: bool,
    /// Adds extendedKeyUsage clientAuth (what device identity certificates carry: the device
    /// authenticates itself to a cloud service with TLS client authentication).
    pub client_auth: bool,
    /// Serial number as big-endian bytes (a positive integer); random 16 bytes when `None`.
    pub serial: Option<Vec<u8>>,
    /// Start of validity; the current time when `None`.
    pub not_before: Option<SystemTime>,
}

impl CertificateRequest {
    /// An update authenticity certificate: digitalSignature, codeSigning, CA:FALSE.
    pub fn update_authority(subject_common_name: impl Into<String>, validity_days: u32) -> Self {
        Self {
            subject_common_name: subject_common_name.into(),
            organization: None,
            validity_days,
            is_ca: false,
            code_signing: true,
            client_auth: false,
            serial: None,
            not_before: None,
        }
    }

    /// A certificate authority: CA:TRUE, keyCertSign and cRLSign, no extended key usage.
    pub fn certificate_authority(subject_common_name: impl Into<String>, validity_days: u32) -> Self {
        Self {
            subject_common_name: subject_common_name.into(),
            organization: None,
            validity_days,
            is_ca: true,
            code_signing: false,
            client_auth: false,
            serial: None,
            not_before: None,
        }
    }

    /// A device identity certificate: digitalSignature, clientAuth, CA:FALSE.
    pub fn device_identity(subject_common_name: impl Into<String>, validity_days: u32) -> Self {
        Self {
            subject_common_name: subject_common_name.into(),
            organization: None,
            validity_days,
            is_ca: false,
            code_signing: false,
            client_auth: true,
            serial: None,
            not_before: None,
        }
    }

    fn subject_name(&self) -> Result<Name, TrustError> {
        subject_name(&self.subject_common_name, self.organization.as_deref())
    }

    fn validity(&self) -> Result<Validity, TrustError> {
        let invalid = |reason: String| TrustError::InvalidRequest { reason };
        if self.validity_days == 0 {
            return Err(invalid("validity_days is 0, expected at least 1".to_string()));
        }
        // Backdated a little, as CAs do: a certificate checked right after it was issued, or by a
        // device whose clock runs a few minutes behind, is already valid.
        let start = self.not_before.unwrap_or_else(|| {
            SystemTime::now().checked_sub(NOT_BEFORE_BACKDATE).unwrap_or(SystemTime::UNIX_EPOCH)
        });
        // X.509 times have whole seconds; truncate so the encoding is exact.
        let start_seconds = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| invalid("not_before is before 1970".to_string()))?
            .as_secs();
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(start_seconds);
        let not_after = not_before + Duration::from_secs(u64::from(self.validity_days) * SECONDS_PER_DAY);
        let time = |moment: SystemTime, what: &str| {
            Time::try_from(moment).map_err(|error| invalid(format!("{what} out of range: {error}")))
        };
        Ok(Validity::new(time(not_before, "not_before")?, time(not_after, "not_after")?))
    }

    fn serial_number(&self) -> Result<SerialNumber, TrustError> {
        let invalid = |reason: String| TrustError::InvalidRequest { reason };
        let bytes = match &self.serial {
            Some(bytes) => {
                if bytes.iter().all(|byte| *byte == 0) {
                    return Err(invalid("serial is zero or empty, expected a positive integer".to_string()));
                }
                bytes.clone()
            }
            None => random_serial_bytes()?,
        };
        SerialNumber::new(&bytes).map_err(|error| {
            invalid(format!(
                "serial {} does not fit (at most 20 bytes as a positive integer): {error}",
                hex::encode(&bytes)
            ))
        })
    }
}

/// The name `O=<organization>,CN=<common name>` (UTF8String values), as certificates and
/// certificate requests carry it.
pub(super) fn subject_name(common_name: &str, organization: Option<&str>) -> Result<Name, TrustError> {
    let invalid = |reason: String| TrustError::InvalidRequest { reason };
    if common_name.trim().is_empty() {
        return Err(invalid("the subject common name is empty".to_string()));
    }
    // Most significant attribute first in DER; it displays as "CN=...,O=...".
    let mut attributes = Vec::new();
    if let Some(organization) = organization {
        attributes.push((ORGANIZATION, organization));
    }
    attributes.push((COMMON_NAME, common_name));
    let mut relative_names = Vec::new();
    for (oid, text) in attributes {
        let value = Utf8StringRef::new(text)
            .and_then(|utf8| Any::new(Tag::Utf8String, utf8.as_bytes()))
            .map_err(|error| invalid(format!("name attribute {text:?}: {error}")))?;
        let relative_name = RelativeDistinguishedName::try_from(vec![AttributeTypeAndValue { oid, value }])
            .map_err(|error| invalid(format!("name attribute {text:?}: {error}")))?;
        relative_names.push(relative_name);
    }
    // `Name` has no public constructor outside "hazmat"; its DER is the RDN sequence's.
    let sequence_der = RdnSequence::from(relative_names)
        .to_der()
        .map_err(|error| invalid(format!("subject name does not encode: {error}")))?;
    Name::from_der(&sequence_der).map_err(|error| invalid(format!("subject name does not decode: {error}")))
}

/// 16 random bytes forming a positive integer that needs all 16 bytes (top bits 01).
fn random_serial_bytes() -> Result<Vec<u8>, TrustError> {
    let mut bytes = vec![0_u8; SERIAL_SIZE_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| TrustError::InvalidRequest {
        reason: format!("the operating system gave no randomness for a serial: {error}"),
    })?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(bytes)
}

/// A self-signed certificate for the signer's own key (a root CA or a developer certificate).
pub fn self_signed_certificate(
    signer: &dyn Signer,
    request: &CertificateRequest,
) -> Result<Certificate, TrustError> {
    let subject = request.subject_name()?;
    let verifying_key = signer.verifying_key();
    let subject_key_identifier = key_identifier_for(&verifying_key, &request.subject_common_name)?;
    let profile = ImprintProfile {
        issuer: subject.clone(),
        subject,
        is_ca: request.is_ca,
        code_signing: request.code_signing,
        client_auth: request.client_auth,
        authority_key_identifier: subject_key_identifier,
    };
    build(signer, profile, &verifying_key, request)
}

/// A certificate for `subject_public_key`, signed by the CA whose key and certificate are given.
pub fn issue_certificate(
    issuer_signer: &dyn Signer,
    issuer_certificate: &Certificate,
    subject_public_key: &VerifyingKey,
    request: &CertificateRequest,
) -> Result<Certificate, TrustError> {
    if !issuer_certificate.is_ca() {
        return Err(TrustError::NotCa { subject: issuer_certificate.subject() });
    }
    if !key_matches_certificate(issuer_signer, issuer_certificate) {
        return Err(TrustError::Issue {
            subject: request.subject_common_name.clone(),
            reason: format!(
                "the issuer key {} is not the key of issuer certificate {}",
                issuer_signer.describe(),
                issuer_certificate.subject()
            ),
        });
    }
    // Point at the issuer's own subjectKeyIdentifier when it has one, so that path builders
    // (openssl among them) link the two certificates.
    let authority_key_identifier =
        match issuer_certificate.parsed().tbs_certificate().get_extension::<SubjectKeyIdentifier>() {
            Ok(Some((_, identifier))) => identifier.0.as_bytes().to_vec(),
            _ => key_identifier_for(&issuer_signer.verifying_key(), &request.subject_common_name)?,
        };
    let profile = ImprintProfile {
        issuer: issuer_certificate.parsed().tbs_certificate().subject().clone(),
        subject: request.subject_name()?,
        is_ca: request.is_ca,
        code_signing: request.code_signing,
        client_auth: request.client_auth,
        authority_key_identifier,
    };
    build(issuer_signer, profile, subject_public_key, request)
}

fn build(
    signer: &dyn Signer,
    profile: ImprintProfile,
    subject_public_key: &VerifyingKey,
    request: &CertificateRequest,
) -> Result<Certificate, TrustError> {
    let issue_error =
        |reason: String| TrustError::Issue { subject: request.subject_common_name.clone(), reason };
    let subject_public_key_info = SubjectPublicKeyInfoOwned::from_key(subject_public_key)
        .map_err(|error| issue_error(format!("public key does not encode: {error}")))?;
    let builder = CertificateBuilder::new(
        profile,
        request.serial_number()?,
        request.validity()?,
        subject_public_key_info,
    )
    .map_err(|error| issue_error(error.to_string()))?;
    let adapter = DigestSignerAdapter::new(signer);
    let built = builder.build::<_, DerSignature>(&adapter);
    if let Some(sign_error) = adapter.failure.borrow_mut().take() {
        return Err(TrustError::Sign(sign_error));
    }
    let certificate = built.map_err(|error| issue_error(error.to_string()))?;
    let der_bytes =
        certificate.to_der().map_err(|error| issue_error(format!("certificate does not encode: {error}")))?;
    let certificate = Certificate::from_der(&der_bytes)?;
    // A key that signs wrongly (a misconfigured HSM, a wrong slot) must not produce a
    // certificate that only fails later on a device.
    super::chain::verify_signature_by_key(&certificate, &signer.verifying_key()).map_err(|_| {
        issue_error(format!(
            "the signature made by {} does not verify with its own public key",
            signer.describe()
        ))
    })?;
    Ok(certificate)
}

/// RFC 7093 method 1: the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits.
fn key_identifier(subject_public_key_info: SubjectPublicKeyInfoRef<'_>) -> Vec<u8> {
    let digest = Sha256::digest(subject_public_key_info.subject_public_key.raw_bytes());
    digest[..20].to_vec()
}

fn key_identifier_for(key: &VerifyingKey, subject: &str) -> Result<Vec<u8>, TrustError> {
    let document = key.to_public_key_der().map_err(|error| TrustError::Issue {
        subject: subject.to_string(),
        reason: format!("public key does not encode: {error}"),
    })?;
    let info = SubjectPublicKeyInfoRef::from_der(document.as_bytes()).map_err(|error| TrustError::Issue {
        subject: subject.to_string(),
        reason: format!("public key does not decode: {error}"),
    })?;
    Ok(key_identifier(info))
}

/// The extensions of every certificate Imprint issues, decided here rather than by a stock
/// profile.
struct ImprintProfile {
    subject: Name,
    issuer: Name,
    is_ca: bool,
    code_signing: bool,
    client_auth: bool,
    authority_key_identifier: Vec<u8>,
}

impl BuilderProfile for ImprintProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        subject_public_key_info: SubjectPublicKeyInfoRef<'_>,
        _issuer_public_key_info: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let key_usage = if self.is_ca {
            KeyUsages::KeyCertSign | KeyUsages::CRLSign
        } else {
            KeyUsages::DigitalSignature.into()
        };
        let mut extensions = vec![
            extension(BasicConstraints { ca: self.is_ca, path_len_constraint: None }, true)?,
            extension(KeyUsage(key_usage), true)?,
        ];
        let mut extended_key_usages = Vec::new();
        if self.code_signing {
            extended_key_usages.push(EKU_CODE_SIGNING);
        }
        if self.client_auth {
            extended_key_usages.push(EKU_CLIENT_AUTH);
        }
        if !extended_key_usages.is_empty() {
            extensions.push(extension(ExtendedKeyUsage(extended_key_usages), false)?);
        }
        extensions.push(extension(
            SubjectKeyIdentifier(OctetString::new(key_identifier(subject_public_key_info))?),
            false,
        )?);
        extensions.push(extension(
            AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(self.authority_key_identifier.clone())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?);
        Ok(extensions)
    }
}

fn extension<T: Encode + der::oid::AssociatedOid>(value: T, critical: bool) -> der::Result<Extension> {
    Ok(Extension { extn_id: T::OID, critical, extn_value: OctetString::new(value.to_der()?)? })
}

/// Presents a `&dyn Signer` as the `signature::Signer<DerSignature>` + `Keypair` that
/// x509-cert's builder wants: hash on the host, sign the digest, encode as DER.
struct DigestSignerAdapter<'a> {
    signer: &'a dyn Signer,
    verifying_key: VerifyingKey,
    /// The builder reduces errors to an opaque `signature::Error`; keep ours to report it.
    failure: RefCell<Option<SignError>>,
}

impl<'a> DigestSignerAdapter<'a> {
    fn new(signer: &'a dyn Signer) -> Self {
        Self { signer, verifying_key: signer.verifying_key(), failure: RefCell::new(None) }
    }
}

impl AsRef<VerifyingKey> for DigestSignerAdapter<'_> {
    fn as_ref(&self) -> &VerifyingKey {
        &self.verifying_key
    }
}

impl signature::KeypairRef for DigestSignerAdapter<'_> {
    type VerifyingKey = VerifyingKey;
}

impl DynSignatureAlgorithmIdentifier for DigestSignerAdapter<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA256, parameters: None })
    }
}

impl signature::Signer<DerSignature> for DigestSignerAdapter<'_> {
    fn try_sign(&self, message: &[u8]) -> Result<DerSignature, signature::Error> {
        let digest: [u8; 32] = Sha256::digest(message).into();
        match self.signer.sign_digest(&digest) {
            Ok(signature) => Ok(signature.to_der()),
            Err(error) => {
                *self.failure.borrow_mut() = Some(error);
                Err(signature::Error::new())
            }
        }
    }
}
