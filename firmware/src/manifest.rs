//! Pelion v3 manifests: strict DER decoding and ECDSA P-256 verification, mirroring the
//! station's `src/manifest.rs` (`decode_manifest`, `verify_manifest`) with the same `der` and
//! `p256` crates, so that the set of manifests accepted (and the reason for each refusal) is
//! the same on the device as in the station's reference implementation.
//!
//! The ASN.1 (from manifest-tool 2.6.2's `manifest_schema_v3.py`):
//! `SignedResource ::= SEQUENCE { manifest-version ENUMERATED {v3(3)}, manifest Manifest,
//! signature OCTET STRING }`; `Manifest ::= SEQUENCE { vendor-id, class-id, update-priority,
//! component-name, payload-version, payload-digest, payload-size, payload-uri, payload-format,
//! installed-signature, payload-metadata OPTIONAL, vendor-data OPTIONAL }`.

use alloc::vec::Vec;

use der::asn1::{AnyRef, OctetStringRef, Utf8StringRef};
use der::{Decode, DecodeValue, Encode, EncodeValue, FixedTag, Header, Length, Reader, Tag, Writer};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::version::Version;

const MANIFEST_VERSION_V3: u32 = 3;
const RAW_SIGNATURE_SIZE_BYTES: usize = 64;
const SHA256_SIZE_BYTES: usize = 32;

/// `payload-format` raw-binary.
pub const PAYLOAD_FORMAT_RAW_BINARY: u32 = 1;
/// `payload-format` arm-patch-stream (its installed-signature covers the installed digest).
pub const PAYLOAD_FORMAT_ARM_PATCH_STREAM: u32 = 5;
/// The formats the schema knows; any other number is a malformed manifest.
const KNOWN_PAYLOAD_FORMATS: [u32; 5] = [1, 5, 6, 257, 262];

/// The fields the update client uses, plus the signed bytes.
pub struct DecodedManifest {
    /// vendor-id.
    pub vendor_id: [u8; 16],
    /// class-id.
    pub class_id: [u8; 16],
    /// payload-version.
    pub payload_version: Version,
    /// payload-digest.
    pub payload_digest: [u8; 32],
    /// payload-size.
    pub payload_size: u64,
    /// payload-format (one of the schema's values).
    pub payload_format: u32,
    /// installed-signature: empty or 64 bytes.
    pub installed_signature: Vec<u8>,
    /// payload-metadata.installed-digest, when payload-metadata is present.
    pub installed_digest: Option<[u8; 32]>,
    /// The DER of `Manifest` (what `signature` signs).
    pub signed_bytes: Vec<u8>,
    /// The top-level signature, 64 bytes.
    pub signature: Vec<u8>,
}

/// Why verification failed (the decoder's failures are all "malformed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The top-level signature (or the manifest's shape for it) is wrong.
    Signature,
    /// The installed-signature does not verify.
    InstalledSignature,
}

/// An `ENUMERATED` value (shared with the v1 decoder in `manifest_v1.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EnumeratedNumber(pub(crate) u32);

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

#[derive(der::Sequence)]
struct SignedResourceDer<'a> {
    manifest_version: EnumeratedNumber,
    manifest: AnyRef<'a>,
    signature: &'a OctetStringRef,
}

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

#[derive(der::Sequence)]
struct PayloadMetadataDer<'a> {
    installed_size: u64,
    installed_digest: &'a OctetStringRef,
    #[asn1(optional = "true")]
    precursor_digest: Option<&'a OctetStringRef>,
}

/// Decodes a v3 `SignedResource` strictly (DER only, canonical, no trailing bytes, every field
/// in the schema's shape); `None` is "manifest-malformed".
pub fn decode_manifest(der_bytes: &[u8]) -> Option<DecodedManifest> {
    let resource = SignedResourceDer::from_der(der_bytes).ok()?;
    if resource.manifest_version.0 != MANIFEST_VERSION_V3 {
        return None;
    }
    if resource.to_der().ok()? != der_bytes {
        return None;
    }
    let signed_bytes = resource.manifest.to_der().ok()?;
    let manifest = ManifestDer::from_der(&signed_bytes).ok()?;
    if manifest.to_der().ok()? != signed_bytes {
        return None;
    }
    let payload_format = manifest.payload_format.0;
    if !KNOWN_PAYLOAD_FORMATS.contains(&payload_format) {
        return None;
    }
    let payload_version = Version::parse(manifest.payload_version.as_str().as_bytes())?;
    let installed_signature = manifest.installed_signature.as_bytes();
    if !installed_signature.is_empty() && installed_signature.len() != RAW_SIGNATURE_SIZE_BYTES {
        return None;
    }
    let signature = resource.signature.as_bytes();
    if signature.len() != RAW_SIGNATURE_SIZE_BYTES {
        return None;
    }
    let installed_digest = match &manifest.payload_metadata {
        Some(metadata) => {
            if let Some(precursor) = metadata.precursor_digest
                && precursor.as_bytes().len() != SHA256_SIZE_BYTES
            {
                return None;
            }
            Some(metadata.installed_digest.as_bytes().try_into().ok()?)
        }
        None => None,
    };
    Some(DecodedManifest {
        vendor_id: manifest.vendor_id.as_bytes().try_into().ok()?,
        class_id: manifest.class_id.as_bytes().try_into().ok()?,
        payload_version,
        payload_digest: manifest.payload_digest.as_bytes().try_into().ok()?,
        payload_size: manifest.payload_size,
        payload_format,
        installed_signature: installed_signature.to_vec(),
        installed_digest,
        signed_bytes,
        signature: signature.to_vec(),
    })
}

/// Verifies the top-level signature, then (when present) the installed-signature, as the
/// station's `verify_manifest` does.
pub fn verify_manifest(decoded: &DecodedManifest, key: &VerifyingKey) -> Result<(), VerifyError> {
    let signed_digest = Sha256::digest(&decoded.signed_bytes);
    let signature = Signature::from_slice(&decoded.signature).map_err(|_| VerifyError::Signature)?;
    key.verify_prehash(&signed_digest, &signature).map_err(|_| VerifyError::Signature)?;
    if !decoded.installed_signature.is_empty() {
        let installed_digest: &[u8] = if decoded.payload_format == PAYLOAD_FORMAT_ARM_PATCH_STREAM {
            // The station reports a patch stream without payload-metadata as a bad field of the
            // signature check, not of the installed-signature.
            decoded.installed_digest.as_ref().ok_or(VerifyError::Signature)?
        } else {
            &decoded.payload_digest
        };
        let installed_signature = Signature::from_slice(&decoded.installed_signature)
            .map_err(|_| VerifyError::InstalledSignature)?;
        key.verify_prehash(installed_digest, &installed_signature)
            .map_err(|_| VerifyError::InstalledSignature)?;
    }
    Ok(())
}
