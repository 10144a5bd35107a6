//! Pelion v1 manifests (the legacy update client's schema, `manifest-tool create-v1`): strict DER
//! decoding, mirroring the station's `src/manifest/v1.rs` and `src/manifest/v1/wire.rs`
//! (`detect_schema`, `decode_manifest_v1`, `check_basic`, `timestamp_semantic_version`) with the
//! same `der` crate, so that the device and the station's reference implementation decode the
//! same set of manifests. The checks themselves are in `update_client.rs` (contract section 3.5).
//!
//! The ASN.1 (manifest-tool 2.6.2's `manifest_schema_v1.py`):
//! `SignedResource ::= SEQUENCE { resource Resource, signature ResourceSignature }`;
//! `Resource ::= SEQUENCE { uri UTF8String OPTIONAL, resourceType ENUMERATED, manifest Manifest }`;
//! `ResourceSignature ::= SEQUENCE { hash OCTET STRING, signatures SEQUENCE OF SignatureBlock,
//! macs SEQUENCE OF MacBlock OPTIONAL }`; `SignatureBlock ::= SEQUENCE { signature OCTET STRING
//! (DER ECDSA), certificates SEQUENCE OF CertificateReference { fingerprint, uri } }`.

use alloc::vec::Vec;

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef, Utf8StringRef};
use der::{Decode, DecodeValue, Encode, EncodeValue, FixedTag, Header, Length, Reader, SliceReader, Tag, Tagged, Writer};

use crate::manifest::EnumeratedNumber;
use crate::version::Version;

/// `resourceType` manifest(0).
const RESOURCE_TYPE_MANIFEST: u32 = 0;
/// `manifestVersion` v1(1).
const MANIFEST_VERSION_V1: u32 = 1;
/// `encryptionMode` none-ecc-secp256r1-sha256(2), the only one supported.
const ENCRYPTION_MODE_NONE_ECC_SECP256R1_SHA256: u32 = 2;
/// `PayloadDescription.format` raw-binary(1).
const PAYLOAD_FORMAT_RAW_BINARY: u32 = 1;

/// True when the outer `SEQUENCE` starts with a `SEQUENCE` (a v1 `Resource`), as the station's
/// `manifest::detect_schema` decides; anything else goes to the v3 decoder.
pub fn is_v1(der_bytes: &[u8]) -> bool {
    let Ok(mut reader) = SliceReader::new(der_bytes) else { return false };
    let Ok(outer) = Header::decode(&mut reader) else { return false };
    outer.tag() == Tag::Sequence && matches!(Tag::peek(&reader), Ok(Tag::Sequence))
}

/// The fields the update client uses, plus the bytes the signatures cover.
pub struct DecodedManifestV1 {
    /// timestamp.
    pub timestamp: u64,
    /// vendorId (any length; compared with the store's 16 bytes).
    pub vendor_id: Vec<u8>,
    /// classId.
    pub class_id: Vec<u8>,
    /// `Some(reference)` when the payload is described and its format is raw-binary.
    pub raw_binary_reference: Option<PayloadReference>,
    /// ResourceSignature.hash.
    pub hash: Vec<u8>,
    /// Each signature block: the DER signature and the first certificate reference's fingerprint.
    pub signatures: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The DER of `Resource`, as it appears in the input.
    pub signed_bytes: Vec<u8>,
}

/// The payload's `ResourceReference`.
pub struct PayloadReference {
    /// SHA-256 of the payload (any length; compared with the computed 32 bytes).
    pub hash: Vec<u8>,
    /// Size in bytes.
    pub size: u64,
}

/// Decodes a v1 `SignedResource` strictly (DER, canonical, no trailing bytes) and makes the
/// station's basic checks (resource type manifest, version 1, encryption mode 2); `None` is
/// "manifest-malformed".
pub fn decode_manifest_v1(der_bytes: &[u8]) -> Option<DecodedManifestV1> {
    let signed_resource = SignedResourceDer::from_der(der_bytes).ok()?;
    if signed_resource.to_der().ok()? != der_bytes || signed_resource.resource.tag() != Tag::Sequence {
        return None;
    }
    let signed_bytes = signed_resource.resource.to_der().ok()?;
    let resource = ResourceDer::from_der(&signed_bytes).ok()?;
    if resource.to_der().ok()? != signed_bytes {
        return None;
    }
    let manifest = &resource.manifest;
    let basic = resource.resource_type.0 == RESOURCE_TYPE_MANIFEST
        && manifest.manifest_version.0 == MANIFEST_VERSION_V1
        && manifest.encryption_mode == EnumOrOidDer::Enumerated(EnumeratedNumber(ENCRYPTION_MODE_NONE_ECC_SECP256R1_SHA256));
    if !basic {
        return None;
    }
    let raw_binary_reference = manifest
        .payload
        .as_ref()
        .filter(|payload| payload.format == EnumOrOidDer::Enumerated(EnumeratedNumber(PAYLOAD_FORMAT_RAW_BINARY)))
        .map(|payload| PayloadReference {
            hash: payload.reference.hash.as_bytes().to_vec(),
            size: payload.reference.size,
        });
    let signature = &signed_resource.signature;
    Some(DecodedManifestV1 {
        timestamp: manifest.timestamp,
        vendor_id: manifest.vendor_id.as_bytes().to_vec(),
        class_id: manifest.class_id.as_bytes().to_vec(),
        raw_binary_reference,
        hash: signature.hash.as_bytes().to_vec(),
        signatures: signature
            .signatures
            .iter()
            .map(|block| {
                let fingerprint = block.certificates.first().map(|reference| reference.fingerprint.as_bytes().to_vec());
                (block.signature.as_bytes().to_vec(), fingerprint)
            })
            .collect(),
        signed_bytes,
    })
}

/// The version a manifest-tool `--fw-migrate-ver` timestamp stands for (bit 55 set, major at
/// bit 40, minor at bit 16, patch at bit 0); `None` for any other timestamp or a version the
/// station's rule refuses (a component over 999, or 0.0.0).
pub fn timestamp_version(timestamp: u64) -> Option<Version> {
    if timestamp >> 55 != 1 {
        return None;
    }
    let version = Version {
        major: ((timestamp >> 40) & 0x7FFF) as u32,
        minor: ((timestamp >> 16) & 0xFF_FFFF) as u32,
        patch: (timestamp & 0xFFFF) as u32,
    };
    let in_range = [version.major, version.minor, version.patch].iter().all(|component| *component <= 999);
    (in_range && version != Version::UNKNOWN).then_some(version)
}

/// The timestamp manifest-tool `--fw-migrate-ver` writes for `version` (the installed version's
/// place in the v1 timestamp order).
pub fn version_timestamp(version: Version) -> u64 {
    (1 << 55) | (u64::from(version.major) << 40) | (u64::from(version.minor) << 16) | u64::from(version.patch)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum EnumOrOidDer {
    Enumerated(EnumeratedNumber),
    ObjectId(ObjectIdentifier),
}

impl<'a> Decode<'a> for EnumOrOidDer {
    type Error = der::Error;

    fn decode<R: Reader<'a>>(reader: &mut R) -> der::Result<Self> {
        if Tag::peek(reader)? == Tag::ObjectIdentifier {
            ObjectIdentifier::decode(reader).map(Self::ObjectId)
        } else {
            EnumeratedNumber::decode(reader).map(Self::Enumerated)
        }
    }
}

impl Encode for EnumOrOidDer {
    fn encoded_len(&self) -> der::Result<Length> {
        match self {
            Self::Enumerated(value) => value.encoded_len(),
            Self::ObjectId(value) => value.encoded_len(),
        }
    }

    fn encode(&self, writer: &mut impl Writer) -> der::Result<()> {
        match self {
            Self::Enumerated(value) => value.encode(writer),
            Self::ObjectId(value) => value.encode(writer),
        }
    }
}

/// A `SEQUENCE` kept as its content bytes (encryptionInfo: decoded, re-encoded, not interpreted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OpaqueSequence<'a>(&'a [u8]);

impl FixedTag for OpaqueSequence<'_> {
    const TAG: Tag = Tag::Sequence;
}

impl<'a> DecodeValue<'a> for OpaqueSequence<'a> {
    type Error = der::Error;

    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        reader.read_slice(header.length()).map(Self)
    }
}

impl EncodeValue for OpaqueSequence<'_> {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.0.len())
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.0)
    }
}

#[derive(der::Sequence)]
struct SignedResourceDer<'a> {
    resource: AnyRef<'a>,
    signature: ResourceSignatureDer<'a>,
}

#[derive(der::Sequence)]
struct ResourceDer<'a> {
    #[asn1(optional = "true")]
    uri: Option<Utf8StringRef<'a>>,
    resource_type: EnumeratedNumber,
    manifest: ManifestDer<'a>,
}

#[derive(der::Sequence)]
struct ApplyPeriodDer {
    valid_from: u64,
    valid_to: u64,
}

#[derive(der::Sequence)]
struct ManifestDer<'a> {
    manifest_version: EnumeratedNumber,
    #[asn1(optional = "true")]
    description: Option<Utf8StringRef<'a>>,
    timestamp: u64,
    vendor_id: &'a OctetStringRef,
    class_id: &'a OctetStringRef,
    device_id: &'a OctetStringRef,
    nonce: &'a OctetStringRef,
    vendor_info: &'a OctetStringRef,
    #[asn1(optional = "true")]
    precursor_digest: Option<&'a OctetStringRef>,
    #[asn1(optional = "true")]
    apply_period: Option<ApplyPeriodDer>,
    apply_immediately: bool,
    #[asn1(optional = "true")]
    priority: Option<u64>,
    encryption_mode: EnumOrOidDer,
    aliases: Vec<ResourceAliasDer<'a>>,
    dependencies: Vec<ResourceReferenceDer<'a>>,
    #[asn1(optional = "true")]
    payload: Option<PayloadDescriptionDer<'a>>,
}

#[derive(der::Sequence)]
struct ResourceAliasDer<'a> {
    hash: &'a OctetStringRef,
    uri: Utf8StringRef<'a>,
}

#[derive(der::Sequence)]
struct ResourceReferenceDer<'a> {
    hash: &'a OctetStringRef,
    #[asn1(optional = "true")]
    uri: Option<Utf8StringRef<'a>>,
    size: u64,
}

#[derive(der::Sequence)]
struct PayloadDescriptionDer<'a> {
    format: EnumOrOidDer,
    #[asn1(optional = "true")]
    encryption_info: Option<OpaqueSequence<'a>>,
    storage_identifier: Utf8StringRef<'a>,
    reference: ResourceReferenceDer<'a>,
    #[asn1(optional = "true")]
    installed_size: Option<u64>,
    #[asn1(optional = "true")]
    installed_digest: Option<&'a OctetStringRef>,
    #[asn1(optional = "true")]
    version: Option<Utf8StringRef<'a>>,
}

#[derive(der::Sequence)]
struct ResourceSignatureDer<'a> {
    hash: &'a OctetStringRef,
    signatures: Vec<SignatureBlockDer<'a>>,
    #[asn1(optional = "true")]
    macs: Option<Vec<MacBlockDer<'a>>>,
}

#[derive(der::Sequence)]
struct SignatureBlockDer<'a> {
    signature: &'a OctetStringRef,
    certificates: Vec<CertificateReferenceDer<'a>>,
}

#[derive(der::Sequence)]
struct CertificateReferenceDer<'a> {
    fingerprint: &'a OctetStringRef,
    uri: Utf8StringRef<'a>,
}

#[derive(der::Sequence)]
struct MacBlockDer<'a> {
    psk_id: &'a OctetStringRef,
    key_table_version: u64,
    #[asn1(optional = "true")]
    key_table_iv: Option<&'a OctetStringRef>,
    #[asn1(optional = "true")]
    key_table_ref: Option<Utf8StringRef<'a>>,
    key_table_index_size: u64,
    key_table_record_size: u64,
}
