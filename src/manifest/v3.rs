//! Pelion v3 update manifests: encode, sign, decode and verify, byte-compatible with
//! Izuma/Pelion `manifest-tool` 2.6.2.
//!
//! The self-test step stages a signed update on the device; the device's update client accepts
//! it only if the manifest verifies with the certificate the station injected. Manifests made
//! here must therefore pass `manifest-tool parse -c CERT`, and manifests made by
//! `manifest-tool`/`manifest-dev-tool` must verify here, so the ASN.1 below mirrors
//! `manifesttool/mtool/asn1/v3/manifest_schema_v3.py` field for field:
//!
//! ```text
//! SignedResource ::= SEQUENCE {
//!     manifest-version  ENUMERATED { v3(3) },
//!     manifest          Manifest,
//!     signature         OCTET STRING }     -- raw r||s, ECDSA P-256 over SHA-256(DER(Manifest))
//! Manifest ::= SEQUENCE {
//!     vendor-id OCTET STRING, class-id OCTET STRING, update-priority INTEGER,
//!     component-name UTF8String, payload-version UTF8String ("1.2.3"),
//!     payload-digest OCTET STRING, payload-size INTEGER, payload-uri UTF8String,
//!     payload-format ENUMERATED { raw-binary(1), arm-patch-stream(5), combined(6),
//!                                 encrypted-raw(257), encrypted-combined(262) },
//!     installed-signature OCTET STRING,    -- raw r||s over the installed digest, or empty
//!     payload-metadata PayloadMetadata OPTIONAL,
//!     vendor-data OCTET STRING OPTIONAL }
//! PayloadMetadata ::= SEQUENCE {
//!     installed-size INTEGER, installed-digest OCTET STRING,
//!     precursor-digest OCTET STRING OPTIONAL }
//! ```
//!
//! The types are declared with the `der` derive macros; all TLV work is the `der` crate's.
//! Decoding is strict DER and rejects anything that would not re-encode to the same bytes, so
//! the bytes a signature covers are exactly the bytes that were decoded.
//!
//! **Invariant:** no I/O here (no files, no devices); signing goes through [`Signer`].

use std::fmt;
use std::str::FromStr;

use der::asn1::{AnyRef, OctetStringRef, Utf8StringRef};
use der::{Decode, DecodeValue, Encode, EncodeValue, FixedTag, Header, Length, Reader, Tag, Writer};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::trust::{SignError, Signer};

/// The `manifest-version` value of a v3 `SignedResource`.
pub const MANIFEST_VERSION_V3: u8 = 3;

/// Length of vendor-id and class-id: a UUID in its 16 raw bytes.
const UUID_SIZE_BYTES: usize = 16;
/// Length of a SHA-256 digest (payload-digest, installed-digest, precursor-digest).
const SHA256_SIZE_BYTES: usize = 32;
/// Length of a raw `r || s` ECDSA P-256 signature, as manifest-tool writes it.
const RAW_SIGNATURE_SIZE_BYTES: usize = 64;
/// The largest value of one semantic version component that manifest-tool accepts.
const SEMANTIC_VERSION_COMPONENT_MAX: u32 = 999;

/// Errors from building, decoding or verifying a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a DER `SignedResource` of the v3 schema.
    #[error("manifest is not valid DER ({part}): {detail}")]
    Der {
        /// Which structure was being decoded (`SignedResource`, `Manifest`).
        part: &'static str,
        /// What the DER decoder found (kept in the message, so not also a `source`).
        detail: der::Error,
    },
    /// The DER decodes but is not in canonical form, so a signature would not cover it uniquely.
    #[error("manifest is not canonical DER ({part}): re-encoding gives different bytes")]
    NonCanonical {
        /// Which structure re-encoded differently.
        part: &'static str,
    },
    /// `manifest-version` is not v3.
    #[error("unsupported manifest-version {found}: expected {MANIFEST_VERSION_V3} (v3)")]
    UnsupportedVersion {
        /// The version number found in the manifest.
        found: u32,
    },
    /// The top-level signature does not verify with the given key.
    #[error("manifest signature does not verify with the given public key")]
    BadSignature,
    /// The installed-signature does not verify with the given key.
    #[error("installed-signature does not verify with the given public key over the {digest_field}")]
    BadInstalledSignature {
        /// Which digest the signature was checked against (`payload-digest`,
        /// `payload-metadata.installed-digest`).
        digest_field: &'static str,
    },
    /// A field has a value the v3 schema or manifest-tool does not allow.
    #[error("manifest field {field}: {reason}")]
    BadField {
        /// The schema name of the field (`vendor-id`, `payload-version`, ...).
        field: &'static str,
        /// What was expected and what was found.
        reason: String,
    },
    /// The payload given for checking is not the one the manifest describes.
    #[error("payload does not match the manifest: {reason}")]
    PayloadMismatch {
        /// Which of size or digest differs, with both values.
        reason: String,
    },
    /// The signer refused or failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// Encoding failed (a value too large for DER, which cannot happen for sane inputs).
    #[error("encoding the manifest failed: {0}")]
    Encode(der::Error),
}

/// How the payload is packaged; the numbers are the schema's `payload-format` values.
#[derive(der::Enumerated, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PayloadFormat {
    /// A plain firmware image.
    RawBinary = 1,
    /// A delta against the installed image (`payload-metadata` describes the result).
    ArmPatchStream = 5,
    /// A combined package made by manifest-package-tool.
    Combined = 6,
    /// An encrypted plain image.
    EncryptedRaw = 257,
    /// An encrypted combined package.
    EncryptedCombined = 262,
}

impl PayloadFormat {
    /// The schema's name for this format (`raw-binary`, ...), as manifest-tool's config uses it.
    pub fn schema_name(self) -> &'static str {
        match self {
            PayloadFormat::RawBinary => "raw-binary",
            PayloadFormat::ArmPatchStream => "arm-patch-stream",
            PayloadFormat::Combined => "combined",
            PayloadFormat::EncryptedRaw => "encrypted-raw",
            PayloadFormat::EncryptedCombined => "encrypted-combined",
        }
    }

    /// The schema's number for this format.
    pub fn schema_value(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.schema_name())
    }
}

/// A payload version `MAJOR.MINOR.PATCH`, written into the manifest as UTF-8 text.
///
/// manifest-tool 2.6.2 (`semantic_version_arg_factory`) accepts each component in 0..=999 without
/// leading zeros and refuses `0.0.0`; it writes the text unchanged into `payload-version`.
/// Parsing here applies the same rule so that what we write, it would have written too.
/// Ordering compares major, then minor, then patch, as the device's version policy does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SemanticVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

impl SemanticVersion {
    /// A version from its three components (not checked; see [`SemanticVersion::validate`]).
    pub fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Checks the range manifest-tool allows: each component at most 999, and not `0.0.0`.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let components = [self.major, self.minor, self.patch];
        if components.iter().any(|component| *component > SEMANTIC_VERSION_COMPONENT_MAX) {
            return Err(ManifestError::BadField {
                field: "payload-version",
                reason: format!(
                    "found {self}: each component must be at most {SEMANTIC_VERSION_COMPONENT_MAX}"
                ),
            });
        }
        if components == [0, 0, 0] {
            return Err(ManifestError::BadField {
                field: "payload-version",
                reason: "found 0.0.0: the smallest version is 0.0.1".to_string(),
            });
        }
        Ok(())
    }
}

impl FromStr for SemanticVersion {
    type Err = ManifestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ManifestError::BadField {
            field: "payload-version",
            reason: format!(
                "found {text:?}: expected MAJOR.MINOR.PATCH, each 0..=999 without leading zeros \
                 (for example 1.2.3)"
            ),
        };
        let mut components = [0u32; 3];
        let mut parts = text.split('.');
        for component in &mut components {
            let part = parts.next().ok_or_else(bad)?;
            let is_decimal = !part.is_empty()
                && part.len() <= 3
                && part.bytes().all(|byte| byte.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            if !is_decimal {
                return Err(bad());
            }
            *component = part.parse().map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        let version = SemanticVersion::new(components[0], components[1], components[2]);
        version.validate()?;
        Ok(version)
    }
}

impl fmt::Display for SemanticVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What to put in a new manifest; [`create_manifest`] computes digest, size and signatures.
#[derive(Clone, Debug)]
pub struct ManifestRequest<'a> {
    /// The vendor's UUID (checked by the device against its stored `mbed.VendorId`).
    pub vendor_id: uuid::Uuid,
    /// The device class UUID (checked against `mbed.ClassId`).
    pub class_id: uuid::Uuid,
    /// Update priority; manifest-tool's default is 0.
    pub update_priority: u64,
    /// The component to update; manifest-tool's default is `MAIN`.
    pub component_name: String,
    /// The version the payload installs.
    pub payload_version: SemanticVersion,
    /// The firmware image itself.
    pub payload: &'a [u8],
    /// Where the device would download the payload from.
    pub payload_uri: String,
    /// Opaque data passed through to the device.
    pub vendor_data: Option<Vec<u8>>,
}

impl<'a> ManifestRequest<'a> {
    /// A request with manifest-tool's defaults: priority 0, component `MAIN`, no vendor data.
    pub fn new(
        vendor_id: uuid::Uuid,
        class_id: uuid::Uuid,
        payload_version: SemanticVersion,
        payload: &'a [u8],
        payload_uri: impl Into<String>,
    ) -> Self {
        Self {
            vendor_id,
            class_id,
            update_priority: 0,
            component_name: DEFAULT_COMPONENT_NAME.to_string(),
            payload_version,
            payload,
            payload_uri: payload_uri.into(),
            vendor_data: None,
        }
    }
}

/// The component name manifest-tool uses when none is given.
pub const DEFAULT_COMPONENT_NAME: &str = "MAIN";

/// What the payload installs to, for formats other than raw-binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadMetadata {
    /// Size of the installed image.
    pub installed_size: u64,
    /// SHA-256 of the installed image.
    pub installed_digest: Vec<u8>,
    /// SHA-256 of the image a delta applies to (arm-patch-stream only).
    pub precursor_digest: Option<Vec<u8>>,
}

/// Every field of a decoded v3 manifest, plus the exact bytes its signature covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedManifest {
    /// vendor-id, 16 raw UUID bytes.
    pub vendor_id: [u8; 16],
    /// class-id, 16 raw UUID bytes.
    pub class_id: [u8; 16],
    /// update-priority.
    pub update_priority: u64,
    /// component-name.
    pub component_name: String,
    /// payload-version, parsed.
    pub payload_version: SemanticVersion,
    /// payload-digest: SHA-256 of the payload as downloaded (32 bytes).
    pub payload_digest: Vec<u8>,
    /// payload-size in bytes.
    pub payload_size: u64,
    /// payload-uri.
    pub payload_uri: String,
    /// payload-format.
    pub payload_format: PayloadFormat,
    /// installed-signature: raw `r || s` (64 bytes), or empty when the image is not signed.
    pub installed_signature: Vec<u8>,
    /// payload-metadata, present for every format except raw-binary when made by manifest-tool.
    pub payload_metadata: Option<PayloadMetadata>,
    /// vendor-data.
    pub vendor_data: Option<Vec<u8>>,
    /// The DER of `Manifest` exactly as it appears in the input: what `signature` signs.
    pub signed_bytes: Vec<u8>,
    /// The top-level signature: raw `r || s` (64 bytes).
    pub signature: Vec<u8>,
}

impl DecodedManifest {
    /// vendor-id as a UUID.
    pub fn vendor_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.vendor_id)
    }

    /// class-id as a UUID.
    pub fn class_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.class_id)
    }

    /// Checks that `payload` has the size and SHA-256 digest the manifest names.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), ManifestError> {
        let payload_size_bytes = payload.len() as u64;
        if payload_size_bytes != self.payload_size {
            return Err(ManifestError::PayloadMismatch {
                reason: format!(
                    "payload-size is {} bytes but the payload has {payload_size_bytes} bytes",
                    self.payload_size
                ),
            });
        }
        let payload_digest = Sha256::digest(payload);
        if payload_digest.as_slice() != self.payload_digest.as_slice() {
            return Err(ManifestError::PayloadMismatch {
                reason: format!(
                    "payload-digest is {} but the payload's SHA-256 is {}",
                    hex::encode(&self.payload_digest),
                    hex::encode(payload_digest)
                ),
            });
        }
        Ok(())
    }
}

/// An ENUMERATED value kept as its number.
///
/// The wire structs hold the number rather than a derived enum so that an unknown
/// `manifest-version` or `payload-format` can be reported with the value found; the encoding
/// itself is `der`'s INTEGER value codec under the ENUMERATED tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EnumeratedNumber(pub(super) u32);

impl FixedTag for EnumeratedNumber {
    const TAG: Tag = Tag::Enumerated;
}

impl<'a> DecodeValue<'a> for EnumeratedNumber {
    type Error = der::Error;

    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        u32::decode_value(reader, header).map(Self)
    }
}

impl EncodeValue for EnumeratedNumber {
    fn value_len(&self) -> der::Result<Length> {
        self.0.value_len()
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.0.encode_value(writer)
    }
}

/// `SignedResource`; `manifest` stays raw so the signature is checked over the input bytes.
#[derive(der::Sequence)]
struct SignedResourceDer<'a> {
    manifest_version: EnumeratedNumber,
    manifest: AnyRef<'a>,
    signature: &'a OctetStringRef,
}

/// `Manifest`.
#[derive(der::Sequence)]
struct ManifestDer<'a> {
    vendor_id: &'a OctetStringRef,
    class_id: &'a OctetStringRef,
    update_priority: u64,
    component_name: Utf8StringRef<'a>,
    payload_version: Utf8StringRef<'a>,
    payload_digest: &'a OctetStringRef,
    payload_size: u64,
    payload_uri: Utf8StringRef<'a>,
    payload_format: EnumeratedNumber,
    installed_signature: &'a OctetStringRef,
    #[asn1(optional = "true")]
    payload_metadata: Option<PayloadMetadataDer<'a>>,
    #[asn1(optional = "true")]
    vendor_data: Option<&'a OctetStringRef>,
}

/// `PayloadMetadata`.
#[derive(der::Sequence)]
struct PayloadMetadataDer<'a> {
    installed_size: u64,
    installed_digest: &'a OctetStringRef,
    #[asn1(optional = "true")]
    precursor_digest: Option<&'a OctetStringRef>,
}

/// Builds and signs a raw-binary v3 manifest for `request.payload`.
///
/// Like `manifest-tool create` with `sign-image: true`: `installed-signature` signs the payload's
/// SHA-256, and `signature` signs the SHA-256 of the DER of `Manifest`; both are raw `r || s`.
pub fn create_manifest(request: &ManifestRequest, signer: &dyn Signer) -> Result<Vec<u8>, ManifestError> {
    request.payload_version.validate()?;
    if request.component_name.is_empty() {
        return Err(ManifestError::BadField {
            field: "component-name",
            reason: "found an empty name: expected at least one character (default MAIN)".to_string(),
        });
    }
    if request.payload_uri.is_empty() {
        return Err(ManifestError::BadField {
            field: "payload-uri",
            reason: "found an empty URI: manifest-tool requires one".to_string(),
        });
    }

    let payload_digest: [u8; SHA256_SIZE_BYTES] = Sha256::digest(request.payload).into();
    let installed_signature = signer.sign_digest(&payload_digest)?.to_bytes();
    let payload_version_text = request.payload_version.to_string();

    let vendor_id_bytes = request.vendor_id.as_bytes();
    let class_id_bytes = request.class_id.as_bytes();
    let manifest = ManifestDer {
        vendor_id: octet_string(vendor_id_bytes)?,
        class_id: octet_string(class_id_bytes)?,
        update_priority: request.update_priority,
        component_name: utf8_string(&request.component_name)?,
        payload_version: utf8_string(&payload_version_text)?,
        payload_digest: octet_string(&payload_digest)?,
        payload_size: request.payload.len() as u64,
        payload_uri: utf8_string(&request.payload_uri)?,
        payload_format: EnumeratedNumber(PayloadFormat::RawBinary.schema_value()),
        installed_signature: octet_string(&installed_signature)?,
        payload_metadata: None,
        vendor_data: request.vendor_data.as_deref().map(octet_string).transpose()?,
    };
    let signed_bytes = manifest.to_der().map_err(ManifestError::Encode)?;
    let signed_digest: [u8; SHA256_SIZE_BYTES] = Sha256::digest(&signed_bytes).into();
    let signature = signer.sign_digest(&signed_digest)?.to_bytes();

    let resource = SignedResourceDer {
        manifest_version: EnumeratedNumber(u32::from(MANIFEST_VERSION_V3)),
        manifest: AnyRef::from_der(&signed_bytes).map_err(ManifestError::Encode)?,
        signature: octet_string(&signature)?,
    };
    resource.to_der().map_err(ManifestError::Encode)
}

fn octet_string(bytes: &[u8]) -> Result<&OctetStringRef, ManifestError> {
    OctetStringRef::new(bytes).map_err(ManifestError::Encode)
}

fn utf8_string(text: &str) -> Result<Utf8StringRef<'_>, ManifestError> {
    Utf8StringRef::new(text).map_err(ManifestError::Encode)
}

/// Decodes a v3 `SignedResource` without checking signatures.
///
/// Strict: DER only, no trailing bytes, every field in the schema's shape (16-byte ids, a 32-byte
/// payload-digest, a semantic payload-version, 64-byte signatures). Never panics on any input.
pub fn decode_manifest(der: &[u8]) -> Result<DecodedManifest, ManifestError> {
    let resource = SignedResourceDer::from_der(der)
        .map_err(|detail| ManifestError::Der { part: "SignedResource", detail })?;
    let found_version = resource.manifest_version.0;
    if found_version != u32::from(MANIFEST_VERSION_V3) {
        return Err(ManifestError::UnsupportedVersion { found: found_version });
    }
    let resource_der = resource.to_der().map_err(ManifestError::Encode)?;
    if resource_der != der {
        return Err(ManifestError::NonCanonical { part: "SignedResource" });
    }

    let signed_bytes = resource.manifest.to_der().map_err(ManifestError::Encode)?;
    let manifest = ManifestDer::from_der(&signed_bytes)
        .map_err(|detail| ManifestError::Der { part: "Manifest", detail })?;
    if manifest.to_der().map_err(ManifestError::Encode)? != signed_bytes {
        return Err(ManifestError::NonCanonical { part: "Manifest" });
    }

    let payload_format_number = manifest.payload_format.0;
    let payload_format =
        PayloadFormat::try_from(payload_format_number).map_err(|_| ManifestError::BadField {
            field: "payload-format",
            reason: format!(
                "found {payload_format_number}: expected raw-binary(1), arm-patch-stream(5), \
                 combined(6), encrypted-raw(257) or encrypted-combined(262)"
            ),
        })?;
    let payload_version_text = manifest.payload_version.as_str();
    let payload_version: SemanticVersion = payload_version_text.parse()?;

    let installed_signature = manifest.installed_signature.as_bytes();
    if !installed_signature.is_empty() && installed_signature.len() != RAW_SIGNATURE_SIZE_BYTES {
        return Err(ManifestError::BadField {
            field: "installed-signature",
            reason: format!(
                "found {} bytes: expected none or {RAW_SIGNATURE_SIZE_BYTES} (raw r||s)",
                installed_signature.len()
            ),
        });
    }
    let signature = resource.signature.as_bytes();
    if signature.len() != RAW_SIGNATURE_SIZE_BYTES {
        return Err(ManifestError::BadField {
            field: "signature",
            reason: format!(
                "found {} bytes: expected {RAW_SIGNATURE_SIZE_BYTES} (raw r||s)",
                signature.len()
            ),
        });
    }

    let payload_metadata = manifest
        .payload_metadata
        .map(|metadata| -> Result<PayloadMetadata, ManifestError> {
            Ok(PayloadMetadata {
                installed_size: metadata.installed_size,
                installed_digest: sha256_field(
                    "payload-metadata.installed-digest",
                    metadata.installed_digest,
                )?
                .to_vec(),
                precursor_digest: metadata
                    .precursor_digest
                    .map(|digest| sha256_field("payload-metadata.precursor-digest", digest))
                    .transpose()?
                    .map(<[u8]>::to_vec),
            })
        })
        .transpose()?;

    Ok(DecodedManifest {
        vendor_id: uuid_field("vendor-id", manifest.vendor_id)?,
        class_id: uuid_field("class-id", manifest.class_id)?,
        update_priority: manifest.update_priority,
        component_name: manifest.component_name.as_str().to_string(),
        payload_version,
        payload_digest: sha256_field("payload-digest", manifest.payload_digest)?.to_vec(),
        payload_size: manifest.payload_size,
        payload_uri: manifest.payload_uri.as_str().to_string(),
        payload_format,
        installed_signature: installed_signature.to_vec(),
        payload_metadata,
        vendor_data: manifest.vendor_data.map(|vendor_data| vendor_data.as_bytes().to_vec()),
        signed_bytes,
        signature: signature.to_vec(),
    })
}

fn uuid_field(field: &'static str, value: &OctetStringRef) -> Result<[u8; UUID_SIZE_BYTES], ManifestError> {
    value.as_bytes().try_into().map_err(|_| ManifestError::BadField {
        field,
        reason: format!("found {} bytes: expected {UUID_SIZE_BYTES} (a UUID)", value.as_bytes().len()),
    })
}

fn sha256_field<'a>(field: &'static str, value: &'a OctetStringRef) -> Result<&'a [u8], ManifestError> {
    let bytes = value.as_bytes();
    if bytes.len() != SHA256_SIZE_BYTES {
        return Err(ManifestError::BadField {
            field,
            reason: format!("found {} bytes: expected {SHA256_SIZE_BYTES} (a SHA-256 digest)", bytes.len()),
        });
    }
    Ok(bytes)
}

/// Decodes and verifies a manifest with `key`, as `manifest-tool parse -c CERT` does.
///
/// First the top-level signature over SHA-256 of `signed_bytes`; then, when
/// `installed-signature` is not empty, that signature over the payload-digest (for
/// arm-patch-stream: over `payload-metadata.installed-digest`). Payload contents are not checked
/// here: see [`DecodedManifest::check_payload`].
pub fn verify_manifest(der: &[u8], key: &VerifyingKey) -> Result<DecodedManifest, ManifestError> {
    let decoded = decode_manifest(der)?;

    let signed_digest = Sha256::digest(&decoded.signed_bytes);
    let signature = Signature::from_slice(&decoded.signature).map_err(|_| ManifestError::BadSignature)?;
    key.verify_prehash(&signed_digest, &signature).map_err(|_| ManifestError::BadSignature)?;

    if !decoded.installed_signature.is_empty() {
        let (digest_field, installed_digest) = if decoded.payload_format == PayloadFormat::ArmPatchStream {
            let metadata = decoded.payload_metadata.as_ref().ok_or_else(|| ManifestError::BadField {
                field: "payload-metadata",
                reason: "found none: arm-patch-stream needs it for the installed digest".to_string(),
            })?;
            ("payload-metadata.installed-digest", metadata.installed_digest.as_slice())
        } else {
            ("payload-digest", decoded.payload_digest.as_slice())
        };
        let bad_installed = || ManifestError::BadInstalledSignature { digest_field };
        let installed_signature =
            Signature::from_slice(&decoded.installed_signature).map_err(|_| bad_installed())?;
        key.verify_prehash(installed_digest, &installed_signature).map_err(|_| bad_installed())?;
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::SoftwareSigner;
    use p256::ecdsa::SigningKey;

    fn test_signer() -> SoftwareSigner {
        let secret = [7u8; 32];
        let signing_key = SigningKey::from_slice(&secret).expect("a valid scalar");
        SoftwareSigner::new(signing_key, "unit-test key")
    }

    fn check_version(text: &str, expected: Option<(u32, u32, u32)>) {
        let parsed = text.parse::<SemanticVersion>();
        match expected {
            Some((major, minor, patch)) => {
                let version = parsed.unwrap_or_else(|error| panic!("{text:?}: {error}"));
                assert_eq!(version, SemanticVersion::new(major, minor, patch), "{text:?}");
                assert_eq!(version.to_string(), text);
            }
            None => assert!(parsed.is_err(), "{text:?} should be refused"),
        }
    }

    #[test]
    fn semantic_version_follows_manifest_tool_rules() {
        // The accepted set is manifest-tool's regex `([0-9]|[1-9][0-9]{0,2})` x3, minus 0.0.0.
        check_version("1.2.3", Some((1, 2, 3)));
        check_version("0.0.1", Some((0, 0, 1)));
        check_version("999.999.999", Some((999, 999, 999)));
        check_version("10.0.7", Some((10, 0, 7)));
        check_version("0.0.0", None);
        check_version("1000.0.0", None);
        check_version("01.2.3", None);
        check_version("1.2", None);
        check_version("1.2.3.4", None);
        check_version("1.2.", None);
        check_version("+1.2.3", None);
        check_version("1.2.3-rc1", None);
        check_version(" 1.2.3", None);
        check_version("", None);
    }

    #[test]
    fn semantic_version_orders_by_major_minor_patch() {
        let ordered = ["0.0.1", "0.0.9", "0.1.0", "0.10.0", "1.0.0", "1.2.3", "2.0.0"];
        for pair in ordered.windows(2) {
            let lower: SemanticVersion = pair[0].parse().expect("valid");
            let higher: SemanticVersion = pair[1].parse().expect("valid");
            assert!(lower < higher, "{lower} < {higher}");
        }
    }

    #[test]
    fn payload_format_numbers_match_the_schema() {
        for (format, number, name) in [
            (PayloadFormat::RawBinary, 1, "raw-binary"),
            (PayloadFormat::ArmPatchStream, 5, "arm-patch-stream"),
            (PayloadFormat::Combined, 6, "combined"),
            (PayloadFormat::EncryptedRaw, 257, "encrypted-raw"),
            (PayloadFormat::EncryptedCombined, 262, "encrypted-combined"),
        ] {
            assert_eq!(format.schema_value(), number);
            assert_eq!(format.schema_name(), name);
            assert_eq!(PayloadFormat::try_from(number).expect("known"), format);
        }
    }

    #[test]
    fn created_manifest_decodes_and_verifies() {
        let signer = test_signer();
        let payload = b"firmware image bytes";
        let mut request = ManifestRequest::new(
            uuid::Uuid::from_bytes([1; 16]),
            uuid::Uuid::from_bytes([2; 16]),
            SemanticVersion::new(1, 2, 3),
            payload,
            "https://example.com/fw.bin",
        );
        request.vendor_data = Some(b"hello".to_vec());
        let der = create_manifest(&request, &signer).expect("created");
        let decoded = verify_manifest(&der, &signer.verifying_key()).expect("verifies");
        assert_eq!(decoded.vendor_id, [1; 16]);
        assert_eq!(decoded.class_id, [2; 16]);
        assert_eq!(decoded.component_name, "MAIN");
        assert_eq!(decoded.payload_version.to_string(), "1.2.3");
        assert_eq!(decoded.payload_size, payload.len() as u64);
        assert_eq!(decoded.payload_format, PayloadFormat::RawBinary);
        assert_eq!(decoded.vendor_data.as_deref(), Some(&b"hello"[..]));
        assert_eq!(decoded.installed_signature.len(), 64);
        decoded.check_payload(payload).expect("payload matches");
        assert!(decoded.check_payload(b"other").is_err());
    }

    #[test]
    fn create_refuses_fields_manifest_tool_refuses() {
        let signer = test_signer();
        let good = ManifestRequest::new(
            uuid::Uuid::nil(),
            uuid::Uuid::nil(),
            SemanticVersion::new(0, 0, 1),
            b"x",
            "u",
        );
        type Mutation = fn(&mut ManifestRequest);
        let cases: [(&str, Mutation); 3] = [
            ("payload-version", |request| request.payload_version = SemanticVersion::new(0, 0, 0)),
            ("component-name", |request| request.component_name.clear()),
            ("payload-uri", |request| request.payload_uri.clear()),
        ];
        for (expected_field, mutate) in cases {
            let mut request = good.clone();
            mutate(&mut request);
            match create_manifest(&request, &signer) {
                Err(ManifestError::BadField { field, .. }) => assert_eq!(field, expected_field),
                other => panic!("{expected_field}: expected BadField, got {other:?}"),
            }
        }
    }
}
