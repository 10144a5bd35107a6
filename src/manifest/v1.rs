//! Pelion v1 update manifests (the legacy update client, update-client-hub): encode, sign, decode
//! and verify, byte-compatible with Izuma/Pelion `manifest-tool` 2.6.2 `create-v1`.
//!
//! The ASN.1 mirrors `manifesttool/mtool/asn1/v1/manifest_schema_v1.py` field for field:
//!
//! ```text
//! SignedResource ::= SEQUENCE { resource Resource, signature ResourceSignature }
//! Resource ::= SEQUENCE { uri UTF8String OPTIONAL, resourceType ENUMERATED { manifest(0), payload(1) },
//!                         resource CHOICE { manifest Manifest, payload OCTET STRING } }
//! Manifest ::= SEQUENCE {
//!     manifestVersion ENUMERATED { v1(1) }, description UTF8String OPTIONAL, timestamp INTEGER,
//!     vendorId OCTET STRING, classId OCTET STRING, deviceId OCTET STRING, nonce OCTET STRING,
//!     vendorInfo OCTET STRING, precursorDigest OCTET STRING OPTIONAL,
//!     applyPeriod SEQUENCE { validFrom INTEGER, validTo INTEGER } OPTIONAL,
//!     applyImmediately BOOLEAN, priority INTEGER OPTIONAL,
//!     encryptionMode CHOICE { enum ENUMERATED, objectId OBJECT IDENTIFIER },
//!     aliases SEQUENCE OF ResourceAlias, dependencies SEQUENCE OF ResourceReference,
//!     payload PayloadDescription OPTIONAL }
//! PayloadDescription ::= SEQUENCE {
//!     format CHOICE { enum ENUMERATED { raw-binary(1), bsdiff-stream(5), ... }, objectId OID },
//!     encryptionInfo SEQUENCE { ... } OPTIONAL, storageIdentifier UTF8String,
//!     reference ResourceReference, installedSize INTEGER OPTIONAL,
//!     installedDigest OCTET STRING OPTIONAL, version UTF8String OPTIONAL }
//! ResourceReference ::= SEQUENCE { hash OCTET STRING, uri UTF8String OPTIONAL, size INTEGER }
//! ResourceAlias ::= SEQUENCE { hash OCTET STRING, uri UTF8String }
//! ResourceSignature ::= SEQUENCE { hash OCTET STRING, signatures SEQUENCE OF SignatureBlock,
//!                                  macs SEQUENCE OF MacBlock OPTIONAL }
//! SignatureBlock ::= SEQUENCE { signature OCTET STRING,   -- DER ECDSA P-256 over SHA-256(DER(Resource))
//!                               certificates SEQUENCE OF CertificateReference }
//! CertificateReference ::= SEQUENCE { fingerprint OCTET STRING, uri UTF8String }
//! MacBlock ::= SEQUENCE { pskID OCTET STRING, keyTableVersion INTEGER, keyTableIV OCTET STRING OPTIONAL,
//!                         keyTableRef UTF8String OPTIONAL, keyTableIndexSize INTEGER, keyTableRecordSize INTEGER }
//! ```
//!
//! Verification follows the device (update-client-hub's manifest-manager, built as a host oracle in
//! tests/uc-hub-oracle): resource type manifest, version 1, a supported encryption mode, the `hash`
//! recomputed over the `Resource` bytes, every signature block's first certificate reference
//! naming the stored certificate by SHA-256 and its signature verifying, vendor and class when
//! given, a timestamp newer than the installed one, a raw-binary or bsdiff-stream payload (with
//! the delta fields for bsdiff-stream) of non-zero size. Decoding is strict DER: the device
//! ignores bytes after the outer structure, Imprint refuses them.
//!
//! **Invariant:** no I/O here; signing goes through [`Signer`].

use der::asn1::{OctetStringRef, Utf8StringRef};
use der::{Decode, Encode, Tag, Tagged};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};

use super::v3::{EnumeratedNumber, SemanticVersion};
use crate::trust::{Certificate, SignError, Signer};

mod wire;
use wire::{
    CertificateReferenceDer, EnumOrOidDer, ManifestDer, PayloadDescriptionDer, ResourceDer,
    ResourceReferenceDer, ResourceSignatureDer, SignatureBlockDer, SignedResourceDer,
};

/// The `manifestVersion` of a v1 `Manifest`.
pub const MANIFEST_VERSION_V1: u32 = 1;
/// `resourceType` manifest(0).
const RESOURCE_TYPE_MANIFEST: u32 = 0;
/// `encryptionMode` none-ecc-secp256r1-sha256(2): what manifest-tool writes, the only mode
/// Imprint signs and accepts.
pub const ENCRYPTION_MODE_NONE_ECC_SECP256R1_SHA256: u32 = 2;
/// The `storageIdentifier` manifest-tool writes.
pub const DEFAULT_STORAGE_IDENTIFIER: &str = "default";
/// Bit 55 marks a timestamp made from a semantic version (manifest-tool `--fw-migrate-ver`).
const SEMANTIC_VERSION_TIMESTAMP_MARK: u64 = 1 << 55;
const SHA256_SIZE_BYTES: usize = 32;
const UUID_SIZE_BYTES: usize = 16;

/// Errors from building, decoding or verifying a v1 manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestV1Error {
    /// The bytes are not a DER v1 `SignedResource`.
    #[error("v1 manifest is not valid DER ({part}): {detail}")]
    Der {
        /// Which structure was being decoded.
        part: &'static str,
        /// What the DER decoder found.
        detail: der::Error,
    },
    /// The DER decodes but would re-encode differently.
    #[error("v1 manifest is not canonical DER ({part}): re-encoding gives different bytes")]
    NonCanonical {
        /// Which structure re-encoded differently.
        part: &'static str,
    },
    /// A field has a value the device refuses or Imprint does not support.
    #[error("v1 manifest field {field}: {reason}")]
    BadField {
        /// The schema name of the field.
        field: &'static str,
        /// What was expected and what was found.
        reason: String,
    },
    /// `ResourceSignature.hash` is not the SHA-256 of the `Resource` bytes (device: MFST_ERR_HASH).
    #[error("v1 manifest hash {found} is not the SHA-256 of the resource ({computed})")]
    HashMismatch {
        /// The hash field, hex.
        found: String,
        /// SHA-256 of the resource bytes, hex.
        computed: String,
    },
    /// A signature block names a certificate other than the given one (device: ARM_UC_CM_ERR_NOT_FOUND).
    #[error("signature block {index} names certificate {named}, but the certificate's SHA-256 is {actual}")]
    CertificateNotFound {
        /// Which signature block.
        index: usize,
        /// The fingerprint in the block, hex.
        named: String,
        /// SHA-256 of the given certificate, hex.
        actual: String,
    },
    /// A signature does not verify with the certificate's key (device: MFST_ERR_INVALID_SIGNATURE).
    #[error("signature block {index} does not verify with the certificate's public key")]
    BadSignature {
        /// Which signature block.
        index: usize,
    },
    /// vendorId or classId is not the device's (device: MFST_ERR_GUID_VENDOR / MFST_ERR_GUID_DEVCLASS).
    #[error("v1 manifest {field} is {found}, the device's is {expected}")]
    WrongIdentity {
        /// `vendorId` or `classId`.
        field: &'static str,
        /// The manifest's value, hex.
        found: String,
        /// The expected value, hex.
        expected: String,
    },
    /// The timestamp is not newer than the installed one (device: MFST_ERR_ROLLBACK).
    #[error("v1 manifest timestamp {found} is not newer than the installed {installed}")]
    Rollback {
        /// The manifest's timestamp.
        found: u64,
        /// The installed timestamp.
        installed: u64,
    },
    /// The payload given for checking is not the one the manifest describes.
    #[error("payload does not match the v1 manifest: {reason}")]
    PayloadMismatch {
        /// Which of size or hash differs, with both values.
        reason: String,
    },
    /// The certificate's key could not be used.
    #[error("the verification certificate is unusable: {0}")]
    Certificate(String),
    /// The signer refused or failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// Encoding failed (a value too large for DER).
    #[error("encoding the v1 manifest failed: {0}")]
    Encode(der::Error),
}

/// The v1 timestamp manifest-tool `--fw-migrate-ver X.Y.Z` writes: bit 55 set, major at bit 40,
/// minor at bit 16, patch at bit 0 (`_semver_to_int`, the client's `fota_component_version_semver_to_int`).
pub fn semantic_version_timestamp(version: SemanticVersion) -> u64 {
    SEMANTIC_VERSION_TIMESTAMP_MARK
        | (u64::from(version.major) << 40)
        | (u64::from(version.minor) << 16)
        | u64::from(version.patch)
}

/// The semantic version a `--fw-migrate-ver` timestamp stands for: the inverse of
/// [`semantic_version_timestamp`]. `None` for a plain integer timestamp (bit 55 clear), one with
/// bits above 55 set, or components manifest-tool would not write (over 999, or 0.0.0).
pub fn timestamp_semantic_version(timestamp: u64) -> Option<SemanticVersion> {
    if timestamp >> 55 != 1 {
        return None;
    }
    let version = SemanticVersion::new(
        ((timestamp >> 40) & 0x7FFF) as u32,
        ((timestamp >> 16) & 0xFF_FFFF) as u32,
        (timestamp & 0xFFFF) as u32,
    );
    version.validate().ok().map(|()| version)
}

/// Parses a v1 payload version: a plain non-negative integer (manifest-tool `-v N`) or
/// `MAJOR.MINOR.PATCH` with manifest-tool's SemVer rules, mapped by [`semantic_version_timestamp`].
pub fn parse_payload_timestamp(text: &str) -> Result<u64, ManifestV1Error> {
    if text.contains('.') {
        let version: SemanticVersion = text.parse().map_err(|error: super::ManifestError| {
            ManifestV1Error::BadField { field: "timestamp", reason: error.to_string() }
        })?;
        return Ok(semantic_version_timestamp(version));
    }
    let is_decimal = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let parsed = if is_decimal { text.parse::<u64>().ok() } else { None };
    parsed.ok_or_else(|| ManifestV1Error::BadField {
        field: "timestamp",
        reason: format!("found {text:?}: expected a non-negative integer or MAJOR.MINOR.PATCH"),
    })
}

/// A v1 payload format: the `enum` alternative of `PayloadDescription.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormatV1 {
    /// raw-binary(1): a plain image.
    RawBinary,
    /// bsdiff-stream(5): a delta (manifest-tool's arm-patch-stream).
    BsdiffStream,
}

impl PayloadFormatV1 {
    /// The schema's number.
    pub fn schema_value(self) -> u32 {
        match self {
            PayloadFormatV1::RawBinary => 1,
            PayloadFormatV1::BsdiffStream => 5,
        }
    }

    /// The schema's name.
    pub fn schema_name(self) -> &'static str {
        match self {
            PayloadFormatV1::RawBinary => "raw-binary",
            PayloadFormatV1::BsdiffStream => "bsdiff-stream",
        }
    }
}

/// The name of a v1 `PayloadDescription.format` enum value (for display).
pub fn payload_format_name(value: u32) -> &'static str {
    match value {
        0 => "undefined",
        1 => "raw-binary",
        2 => "cbor",
        3 => "hex-location-length-data",
        4 => "elf",
        5 => "bsdiff-stream",
        _ => "unknown",
    }
}

/// The name of a v1 `encryptionMode` enum value (for display).
pub fn encryption_mode_name(value: u32) -> &'static str {
    match value {
        0 => "invalid",
        1 => "aes-128-ctr-ecc-secp256r1-sha256",
        2 => "none-ecc-secp256r1-sha256",
        3 => "none-none-sha256",
        4 => "none-psk-aes-128-ccm-sha256",
        5 => "aes-128-ccm-psk-sha256",
        _ => "unknown",
    }
}

/// The delta fields of a bsdiff-stream payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaFields {
    /// `PayloadDescription.installedSize`: size of the image after patching.
    pub installed_size: u64,
    /// `PayloadDescription.installedDigest`: SHA-256 of the image after patching.
    pub installed_digest: Vec<u8>,
    /// `Manifest.precursorDigest`: SHA-256 of the image the delta applies to.
    pub precursor_digest: Vec<u8>,
}

/// What to put in a new v1 manifest; [`create_manifest_v1`] computes hash, size and signature.
#[derive(Clone, Debug)]
pub struct ManifestRequestV1<'a> {
    /// vendorId (the device's mbed.VendorId).
    pub vendor_id: uuid::Uuid,
    /// classId (the device's mbed.ClassId).
    pub class_id: uuid::Uuid,
    /// timestamp: the version the device compares against the installed one (must be > 0).
    pub timestamp: u64,
    /// The payload as downloaded (the delta itself for bsdiff-stream).
    pub payload: &'a [u8],
    /// `reference.uri`.
    pub payload_uri: String,
    /// `vendorInfo` (manifest-tool: the `vendor.custom-data-path` file, else empty).
    pub vendor_info: Vec<u8>,
    /// `priority` (manifest-tool writes it only when the config has one).
    pub priority: Option<u64>,
    /// Present for a bsdiff-stream payload, absent for raw-binary.
    pub delta: Option<DeltaFields>,
}

impl<'a> ManifestRequestV1<'a> {
    /// A raw-binary request with manifest-tool's defaults (no priority, empty vendorInfo).
    pub fn new(
        vendor_id: uuid::Uuid,
        class_id: uuid::Uuid,
        timestamp: u64,
        payload: &'a [u8],
        payload_uri: impl Into<String>,
    ) -> Self {
        Self {
            vendor_id,
            class_id,
            timestamp,
            payload,
            payload_uri: payload_uri.into(),
            vendor_info: Vec::new(),
            priority: None,
            delta: None,
        }
    }
}

/// A `CHOICE { enum ENUMERATED, objectId OBJECT IDENTIFIER }` (format, encryptionMode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnumOrObjectId {
    /// The `enum` alternative.
    Enumerated(u32),
    /// The `objectId` alternative, dotted.
    ObjectId(String),
}

/// `ResourceReference`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceReferenceV1 {
    /// hash.
    pub hash: Vec<u8>,
    /// uri.
    pub uri: Option<String>,
    /// size.
    pub size: u64,
}

/// `ResourceAlias`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceAliasV1 {
    /// hash.
    pub hash: Vec<u8>,
    /// uri.
    pub uri: String,
}

/// `PayloadDescription`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadDescriptionV1 {
    /// format.
    pub format: EnumOrObjectId,
    /// encryptionInfo, kept as its DER (Imprint supports unencrypted payloads only).
    pub encryption_info_der: Option<Vec<u8>>,
    /// storageIdentifier.
    pub storage_identifier: String,
    /// reference.
    pub reference: ResourceReferenceV1,
    /// installedSize.
    pub installed_size: Option<u64>,
    /// installedDigest.
    pub installed_digest: Option<Vec<u8>>,
    /// version.
    pub version: Option<String>,
}

/// `CertificateReference`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateReferenceV1 {
    /// SHA-256 of the certificate's DER.
    pub fingerprint: Vec<u8>,
    /// uri (manifest-tool writes an empty one).
    pub uri: String,
}

/// `SignatureBlock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureBlockV1 {
    /// The DER ECDSA signature.
    pub signature: Vec<u8>,
    /// certificates.
    pub certificates: Vec<CertificateReferenceV1>,
}

/// `MacBlock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacBlockV1 {
    /// pskID.
    pub psk_id: Vec<u8>,
    /// keyTableVersion.
    pub key_table_version: u64,
    /// keyTableIV.
    pub key_table_iv: Option<Vec<u8>>,
    /// keyTableRef.
    pub key_table_ref: Option<String>,
    /// keyTableIndexSize.
    pub key_table_index_size: u64,
    /// keyTableRecordSize.
    pub key_table_record_size: u64,
}

/// Every field of a decoded v1 manifest, plus the exact bytes its signatures cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedManifestV1 {
    /// Resource.uri.
    pub resource_uri: Option<String>,
    /// Resource.resourceType (0 = manifest).
    pub resource_type: u32,
    /// manifestVersion.
    pub manifest_version: u32,
    /// description.
    pub description: Option<String>,
    /// timestamp.
    pub timestamp: u64,
    /// vendorId.
    pub vendor_id: Vec<u8>,
    /// classId.
    pub class_id: Vec<u8>,
    /// deviceId.
    pub device_id: Vec<u8>,
    /// nonce.
    pub nonce: Vec<u8>,
    /// vendorInfo.
    pub vendor_info: Vec<u8>,
    /// precursorDigest.
    pub precursor_digest: Option<Vec<u8>>,
    /// applyPeriod (validFrom, validTo).
    pub apply_period: Option<(u64, u64)>,
    /// applyImmediately.
    pub apply_immediately: bool,
    /// priority.
    pub priority: Option<u64>,
    /// encryptionMode.
    pub encryption_mode: EnumOrObjectId,
    /// aliases.
    pub aliases: Vec<ResourceAliasV1>,
    /// dependencies.
    pub dependencies: Vec<ResourceReferenceV1>,
    /// payload.
    pub payload: Option<PayloadDescriptionV1>,
    /// ResourceSignature.hash.
    pub hash: Vec<u8>,
    /// ResourceSignature.signatures.
    pub signatures: Vec<SignatureBlockV1>,
    /// ResourceSignature.macs.
    pub macs: Option<Vec<MacBlockV1>>,
    /// The DER of `Resource` exactly as it appears in the input: what the signatures sign.
    pub signed_bytes: Vec<u8>,
}

/// What the device holds when it judges a manifest (all optional: unset = not checked).
#[derive(Clone, Debug, Default)]
pub struct DeviceExpectations {
    /// The device's mbed.VendorId.
    pub vendor_id: Option<uuid::Uuid>,
    /// The device's mbed.ClassId.
    pub class_id: Option<uuid::Uuid>,
    /// The installed firmware's timestamp (the device refuses a manifest not newer; 0 = none).
    pub installed_timestamp: u64,
}

fn octet_string(bytes: &[u8]) -> Result<&OctetStringRef, ManifestV1Error> {
    OctetStringRef::new(bytes).map_err(ManifestV1Error::Encode)
}

fn utf8_string(text: &str) -> Result<Utf8StringRef<'_>, ManifestV1Error> {
    Utf8StringRef::new(text).map_err(ManifestV1Error::Encode)
}

fn check_sha256_field(field: &'static str, bytes: &[u8]) -> Result<(), ManifestV1Error> {
    if bytes.len() != SHA256_SIZE_BYTES {
        return Err(ManifestV1Error::BadField {
            field,
            reason: format!("found {} bytes: expected {SHA256_SIZE_BYTES} (a SHA-256 digest)", bytes.len()),
        });
    }
    Ok(())
}

/// Builds and signs a v1 manifest as `manifest-tool create-v1` does for the same inputs: the
/// `Resource` DER is byte-identical to manifest-tool's; the signature block holds a DER ECDSA
/// signature over SHA-256 of that DER and names `certificate_der` by its SHA-256.
pub fn create_manifest_v1(
    request: &ManifestRequestV1,
    signer: &dyn Signer,
    certificate_der: &[u8],
) -> Result<Vec<u8>, ManifestV1Error> {
    if request.timestamp == 0 {
        return Err(ManifestV1Error::BadField {
            field: "timestamp",
            reason: "found 0: the device accepts only a timestamp newer than the installed one (at least 1)"
                .to_string(),
        });
    }
    if request.payload.is_empty() {
        return Err(ManifestV1Error::BadField {
            field: "payload.reference.size",
            reason: "found an empty payload: the device refuses size 0".to_string(),
        });
    }
    if request.payload_uri.is_empty() {
        return Err(ManifestV1Error::BadField {
            field: "payload.reference.uri",
            reason: "found an empty URI: manifest-tool requires one".to_string(),
        });
    }
    if let Some(delta) = &request.delta {
        check_sha256_field("payload.installedDigest", &delta.installed_digest)?;
        check_sha256_field("precursorDigest", &delta.precursor_digest)?;
    }

    let payload_hash: [u8; SHA256_SIZE_BYTES] = Sha256::digest(request.payload).into();
    let format =
        if request.delta.is_some() { PayloadFormatV1::BsdiffStream } else { PayloadFormatV1::RawBinary };
    let resource = ResourceDer {
        uri: None,
        resource_type: EnumeratedNumber(RESOURCE_TYPE_MANIFEST),
        manifest: ManifestDer {
            manifest_version: EnumeratedNumber(MANIFEST_VERSION_V1),
            description: None,
            timestamp: request.timestamp,
            vendor_id: octet_string(request.vendor_id.as_bytes())?,
            class_id: octet_string(request.class_id.as_bytes())?,
            device_id: octet_string(&[])?,
            nonce: octet_string(&[])?,
            vendor_info: octet_string(&request.vendor_info)?,
            precursor_digest: request
                .delta
                .as_ref()
                .map(|delta| octet_string(&delta.precursor_digest))
                .transpose()?,
            apply_period: None,
            apply_immediately: true,
            priority: request.priority,
            encryption_mode: EnumOrOidDer::Enumerated(EnumeratedNumber(
                ENCRYPTION_MODE_NONE_ECC_SECP256R1_SHA256,
            )),
            aliases: Vec::new(),
            dependencies: Vec::new(),
            payload: Some(PayloadDescriptionDer {
                format: EnumOrOidDer::Enumerated(EnumeratedNumber(format.schema_value())),
                encryption_info: None,
                storage_identifier: utf8_string(DEFAULT_STORAGE_IDENTIFIER)?,
                reference: ResourceReferenceDer {
                    hash: octet_string(&payload_hash)?,
                    uri: Some(utf8_string(&request.payload_uri)?),
                    size: request.payload.len() as u64,
                },
                installed_size: request.delta.as_ref().map(|delta| delta.installed_size),
                installed_digest: request
                    .delta
                    .as_ref()
                    .map(|delta| octet_string(&delta.installed_digest))
                    .transpose()?,
                version: None,
            }),
        },
    };
    let signed_bytes = resource.to_der().map_err(ManifestV1Error::Encode)?;
    let resource_hash: [u8; SHA256_SIZE_BYTES] = Sha256::digest(&signed_bytes).into();
    let signature_der = signer.sign_digest(&resource_hash)?.to_der();
    let fingerprint: [u8; SHA256_SIZE_BYTES] = Sha256::digest(certificate_der).into();

    let signed_resource = SignedResourceDer {
        resource: der::asn1::AnyRef::from_der(&signed_bytes).map_err(ManifestV1Error::Encode)?,
        signature: ResourceSignatureDer {
            hash: octet_string(&resource_hash)?,
            signatures: vec![SignatureBlockDer {
                signature: octet_string(signature_der.as_bytes())?,
                certificates: vec![CertificateReferenceDer {
                    fingerprint: octet_string(&fingerprint)?,
                    uri: utf8_string("")?,
                }],
            }],
            macs: None,
        },
    };
    signed_resource.to_der().map_err(ManifestV1Error::Encode)
}

fn resource_reference(reference: &ResourceReferenceDer) -> ResourceReferenceV1 {
    ResourceReferenceV1 {
        hash: reference.hash.as_bytes().to_vec(),
        uri: reference.uri.map(|uri| uri.as_str().to_string()),
        size: reference.size,
    }
}

/// Decodes a v1 `SignedResource` without checking hash or signatures.
///
/// Strict: DER only, canonical, no trailing bytes (the device ignores trailing bytes). Never
/// panics on any input.
pub fn decode_manifest_v1(der_bytes: &[u8]) -> Result<DecodedManifestV1, ManifestV1Error> {
    let signed_resource = SignedResourceDer::from_der(der_bytes)
        .map_err(|detail| ManifestV1Error::Der { part: "SignedResource", detail })?;
    if signed_resource.to_der().map_err(ManifestV1Error::Encode)? != der_bytes {
        return Err(ManifestV1Error::NonCanonical { part: "SignedResource" });
    }
    if signed_resource.resource.tag() != Tag::Sequence {
        return Err(ManifestV1Error::BadField {
            field: "resource",
            reason: format!("found tag {}: expected a SEQUENCE (Resource)", signed_resource.resource.tag()),
        });
    }
    let signed_bytes = signed_resource.resource.to_der().map_err(ManifestV1Error::Encode)?;
    let resource = ResourceDer::from_der(&signed_bytes)
        .map_err(|detail| ManifestV1Error::Der { part: "Resource", detail })?;
    if resource.to_der().map_err(ManifestV1Error::Encode)? != signed_bytes {
        return Err(ManifestV1Error::NonCanonical { part: "Resource" });
    }
    let manifest = &resource.manifest;
    let payload = manifest.payload.as_ref().map(|payload| PayloadDescriptionV1 {
        format: payload.format.to_public(),
        encryption_info_der: payload.encryption_info.map(|info| info.0.to_vec()),
        storage_identifier: payload.storage_identifier.as_str().to_string(),
        reference: resource_reference(&payload.reference),
        installed_size: payload.installed_size,
        installed_digest: payload.installed_digest.map(|digest| digest.as_bytes().to_vec()),
        version: payload.version.map(|version| version.as_str().to_string()),
    });
    let signature = &signed_resource.signature;
    Ok(DecodedManifestV1 {
        resource_uri: resource.uri.map(|uri| uri.as_str().to_string()),
        resource_type: resource.resource_type.0,
        manifest_version: manifest.manifest_version.0,
        description: manifest.description.map(|text| text.as_str().to_string()),
        timestamp: manifest.timestamp,
        vendor_id: manifest.vendor_id.as_bytes().to_vec(),
        class_id: manifest.class_id.as_bytes().to_vec(),
        device_id: manifest.device_id.as_bytes().to_vec(),
        nonce: manifest.nonce.as_bytes().to_vec(),
        vendor_info: manifest.vendor_info.as_bytes().to_vec(),
        precursor_digest: manifest.precursor_digest.map(|digest| digest.as_bytes().to_vec()),
        apply_period: manifest.apply_period.as_ref().map(|period| (period.valid_from, period.valid_to)),
        apply_immediately: manifest.apply_immediately,
        priority: manifest.priority,
        encryption_mode: manifest.encryption_mode.to_public(),
        aliases: manifest
            .aliases
            .iter()
            .map(|alias| ResourceAliasV1 {
                hash: alias.hash.as_bytes().to_vec(),
                uri: alias.uri.as_str().to_string(),
            })
            .collect(),
        dependencies: manifest.dependencies.iter().map(resource_reference).collect(),
        payload,
        hash: signature.hash.as_bytes().to_vec(),
        signatures: signature
            .signatures
            .iter()
            .map(|block| SignatureBlockV1 {
                signature: block.signature.as_bytes().to_vec(),
                certificates: block
                    .certificates
                    .iter()
                    .map(|reference| CertificateReferenceV1 {
                        fingerprint: reference.fingerprint.as_bytes().to_vec(),
                        uri: reference.uri.as_str().to_string(),
                    })
                    .collect(),
            })
            .collect(),
        macs: signature.macs.as_ref().map(|macs| {
            macs.iter()
                .map(|mac| MacBlockV1 {
                    psk_id: mac.psk_id.as_bytes().to_vec(),
                    key_table_version: mac.key_table_version,
                    key_table_iv: mac.key_table_iv.map(|iv| iv.as_bytes().to_vec()),
                    key_table_ref: mac.key_table_ref.map(|text| text.as_str().to_string()),
                    key_table_index_size: mac.key_table_index_size,
                    key_table_record_size: mac.key_table_record_size,
                })
                .collect()
        }),
        signed_bytes,
    })
}

impl DecodedManifestV1 {
    /// The payload's format as one of the two the device installs, if it is one.
    pub fn payload_format(&self) -> Option<PayloadFormatV1> {
        match self.payload.as_ref().map(|payload| &payload.format) {
            Some(EnumOrObjectId::Enumerated(1)) => Some(PayloadFormatV1::RawBinary),
            Some(EnumOrObjectId::Enumerated(5)) => Some(PayloadFormatV1::BsdiffStream),
            _ => None,
        }
    }

    /// Checks that `payload` has the size and SHA-256 the manifest's payload reference names.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), ManifestV1Error> {
        let reference = &self
            .payload
            .as_ref()
            .ok_or_else(|| ManifestV1Error::PayloadMismatch {
                reason: "the manifest describes no payload".to_string(),
            })?
            .reference;
        if payload.len() as u64 != reference.size {
            return Err(ManifestV1Error::PayloadMismatch {
                reason: format!(
                    "reference.size is {} bytes but the payload has {} bytes",
                    reference.size,
                    payload.len()
                ),
            });
        }
        let digest = Sha256::digest(payload);
        if digest.as_slice() != reference.hash.as_slice() {
            return Err(ManifestV1Error::PayloadMismatch {
                reason: format!(
                    "reference.hash is {} but the payload's SHA-256 is {}",
                    hex::encode(&reference.hash),
                    hex::encode(digest)
                ),
            });
        }
        Ok(())
    }

    /// The basic checks the device makes before any cryptography (resource type, version,
    /// encryption mode).
    pub fn check_basic(&self) -> Result<(), ManifestV1Error> {
        if self.resource_type != RESOURCE_TYPE_MANIFEST {
            return Err(ManifestV1Error::BadField {
                field: "resourceType",
                reason: format!("found {}: expected manifest(0)", self.resource_type),
            });
        }
        if self.manifest_version != MANIFEST_VERSION_V1 {
            return Err(ManifestV1Error::BadField {
                field: "manifestVersion",
                reason: format!("found {}: expected v1(1)", self.manifest_version),
            });
        }
        if self.encryption_mode != EnumOrObjectId::Enumerated(ENCRYPTION_MODE_NONE_ECC_SECP256R1_SHA256) {
            return Err(ManifestV1Error::BadField {
                field: "encryptionMode",
                reason: format!(
                    "found {:?}: Imprint supports none-ecc-secp256r1-sha256({ENCRYPTION_MODE_NONE_ECC_SECP256R1_SHA256}) only",
                    self.encryption_mode
                ),
            });
        }
        Ok(())
    }

    /// The checks after the signatures: identity, timestamp, payload description.
    fn check_applicability(&self, expectations: &DeviceExpectations) -> Result<(), ManifestV1Error> {
        for (field, found, expected) in [
            ("vendorId", &self.vendor_id, expectations.vendor_id),
            ("classId", &self.class_id, expectations.class_id),
        ] {
            if let Some(expected) = expected
                && found.as_slice() != expected.as_bytes()
            {
                return Err(ManifestV1Error::WrongIdentity {
                    field,
                    found: hex::encode(found),
                    expected: hex::encode(expected.as_bytes()),
                });
            }
            if found.len() != UUID_SIZE_BYTES {
                return Err(ManifestV1Error::BadField {
                    field,
                    reason: format!("found {} bytes: expected {UUID_SIZE_BYTES} (a UUID)", found.len()),
                });
            }
        }
        let payload = self.payload.as_ref().ok_or_else(|| ManifestV1Error::BadField {
            field: "payload",
            reason: "absent: the device needs a payload description".to_string(),
        })?;
        match self.payload_format() {
            Some(PayloadFormatV1::RawBinary) => {}
            Some(PayloadFormatV1::BsdiffStream) => {
                if self.precursor_digest.is_none()
                    || payload.installed_size.is_none()
                    || payload.installed_digest.is_none()
                {
                    return Err(ManifestV1Error::BadField {
                        field: "payload",
                        reason: "bsdiff-stream without precursorDigest, installedSize and installedDigest"
                            .to_string(),
                    });
                }
            }
            None => {
                return Err(ManifestV1Error::BadField {
                    field: "payload.format",
                    reason: format!("found {:?}: expected raw-binary(1) or bsdiff-stream(5)", payload.format),
                });
            }
        }
        if self.timestamp <= expectations.installed_timestamp {
            return Err(ManifestV1Error::Rollback {
                found: self.timestamp,
                installed: expectations.installed_timestamp,
            });
        }
        if payload.reference.size == 0 {
            return Err(ManifestV1Error::BadField {
                field: "payload.reference.size",
                reason: "found 0: the device refuses an empty firmware".to_string(),
            });
        }
        Ok(())
    }
}

/// Decodes and verifies a v1 manifest as the device does (see the module documentation), with
/// `certificate` as the stored mbed.UpdateAuthCert.
pub fn verify_manifest_v1(
    der_bytes: &[u8],
    certificate: &Certificate,
    expectations: &DeviceExpectations,
) -> Result<DecodedManifestV1, ManifestV1Error> {
    let decoded = decode_manifest_v1(der_bytes)?;
    decoded.check_basic()?;

    let computed: [u8; SHA256_SIZE_BYTES] = Sha256::digest(&decoded.signed_bytes).into();
    if decoded.hash.as_slice() != computed.as_slice() {
        return Err(ManifestV1Error::HashMismatch {
            found: hex::encode(&decoded.hash),
            computed: hex::encode(computed),
        });
    }
    if decoded.signatures.is_empty() {
        return Err(ManifestV1Error::BadField {
            field: "signatures",
            reason: "found none: the device needs at least one signature block".to_string(),
        });
    }
    let certificate_fingerprint = certificate.fingerprint_sha256();
    let verifying_key =
        certificate.verifying_key().map_err(|error| ManifestV1Error::Certificate(error.to_string()))?;
    for (index, block) in decoded.signatures.iter().enumerate() {
        let named =
            block.certificates.first().map(|reference| reference.fingerprint.as_slice()).unwrap_or(&[]);
        if named != certificate_fingerprint.as_slice() {
            return Err(ManifestV1Error::CertificateNotFound {
                index,
                named: hex::encode(named),
                actual: hex::encode(certificate_fingerprint),
            });
        }
        let signature =
            Signature::from_der(&block.signature).map_err(|_| ManifestV1Error::BadSignature { index })?;
        verifying_key
            .verify_prehash(&computed, &signature)
            .map_err(|_| ManifestV1Error::BadSignature { index })?;
    }
    decoded.check_applicability(expectations)?;
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_version_timestamps_match_manifest_tool() {
        // manifest-tool 2.6.2 `_semver_to_int`: 'x.y.z' -> 0x008xxx000yyy0zzz.
        assert_eq!(semantic_version_timestamp(SemanticVersion::new(1, 2, 3)), 0x0080_0100_0002_0003);
        assert_eq!(semantic_version_timestamp(SemanticVersion::new(0, 0, 1)), (1 << 55) | 1);
        assert_eq!(
            semantic_version_timestamp(SemanticVersion::new(999, 999, 999)),
            (1 << 55) | (999 << 40) | (999 << 16) | 999
        );
        assert_eq!(parse_payload_timestamp("1.2.3").expect("semver"), 0x0080_0100_0002_0003);
        assert_eq!(parse_payload_timestamp("42").expect("integer"), 42);
        for version in [SemanticVersion::new(1, 2, 3), SemanticVersion::new(999, 999, 999)] {
            assert_eq!(timestamp_semantic_version(semantic_version_timestamp(version)), Some(version));
        }
        for not_semantic in [42, 1 << 55, (1 << 56) | (1 << 55) | 1, (1 << 55) | 1000] {
            assert_eq!(timestamp_semantic_version(not_semantic), None, "{not_semantic:#x}");
        }
        for bad in ["", "-1", "1.2", "0.0.0", "01.2.3", "4x", "+5", " 5"] {
            assert!(parse_payload_timestamp(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
