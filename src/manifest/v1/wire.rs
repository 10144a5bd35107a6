//! The v1 wire structures: the ASN.1 of `manifest_schema_v1.py` as `der` derive types (see the
//! parent module's documentation for the schema). Private to `manifest::v1`.

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef, Utf8StringRef};
use der::{Decode, DecodeValue, Encode, EncodeValue, FixedTag, Header, Length, Reader, Tag, Writer};

use super::EnumOrObjectId;
use crate::manifest::v3::EnumeratedNumber;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum EnumOrOidDer {
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

impl EnumOrOidDer {
    pub(super) fn to_public(&self) -> EnumOrObjectId {
        match self {
            Self::Enumerated(value) => EnumOrObjectId::Enumerated(value.0),
            Self::ObjectId(oid) => EnumOrObjectId::ObjectId(oid.to_string()),
        }
    }
}

/// A `SEQUENCE` kept as its content bytes (encryptionInfo: decoded, re-encoded, not interpreted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OpaqueSequence<'a>(pub(super) &'a [u8]);

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
pub(super) struct SignedResourceDer<'a> {
    pub(super) resource: AnyRef<'a>,
    pub(super) signature: ResourceSignatureDer<'a>,
}

#[derive(der::Sequence)]
pub(super) struct ResourceDer<'a> {
    #[asn1(optional = "true")]
    pub(super) uri: Option<Utf8StringRef<'a>>,
    pub(super) resource_type: EnumeratedNumber,
    pub(super) manifest: ManifestDer<'a>,
}

#[derive(der::Sequence)]
pub(super) struct ApplyPeriodDer {
    pub(super) valid_from: u64,
    pub(super) valid_to: u64,
}

#[derive(der::Sequence)]
pub(super) struct ManifestDer<'a> {
    pub(super) manifest_version: EnumeratedNumber,
    #[asn1(optional = "true")]
    pub(super) description: Option<Utf8StringRef<'a>>,
    pub(super) timestamp: u64,
    pub(super) vendor_id: &'a OctetStringRef,
    pub(super) class_id: &'a OctetStringRef,
    pub(super) device_id: &'a OctetStringRef,
    pub(super) nonce: &'a OctetStringRef,
    pub(super) vendor_info: &'a OctetStringRef,
    #[asn1(optional = "true")]
    pub(super) precursor_digest: Option<&'a OctetStringRef>,
    #[asn1(optional = "true")]
    pub(super) apply_period: Option<ApplyPeriodDer>,
    pub(super) apply_immediately: bool,
    #[asn1(optional = "true")]
    pub(super) priority: Option<u64>,
    pub(super) encryption_mode: EnumOrOidDer,
    pub(super) aliases: Vec<ResourceAliasDer<'a>>,
    pub(super) dependencies: Vec<ResourceReferenceDer<'a>>,
    #[asn1(optional = "true")]
    pub(super) payload: Option<PayloadDescriptionDer<'a>>,
}

#[derive(der::Sequence)]
pub(super) struct ResourceAliasDer<'a> {
    pub(super) hash: &'a OctetStringRef,
    pub(super) uri: Utf8StringRef<'a>,
}

#[derive(der::Sequence)]
pub(super) struct ResourceReferenceDer<'a> {
    pub(super) hash: &'a OctetStringRef,
    #[asn1(optional = "true")]
    pub(super) uri: Option<Utf8StringRef<'a>>,
    pub(super) size: u64,
}

#[derive(der::Sequence)]
pub(super) struct PayloadDescriptionDer<'a> {
    pub(super) format: EnumOrOidDer,
    #[asn1(optional = "true")]
    pub(super) encryption_info: Option<OpaqueSequence<'a>>,
    pub(super) storage_identifier: Utf8StringRef<'a>,
    pub(super) reference: ResourceReferenceDer<'a>,
    #[asn1(optional = "true")]
    pub(super) installed_size: Option<u64>,
    #[asn1(optional = "true")]
    pub(super) installed_digest: Option<&'a OctetStringRef>,
    #[asn1(optional = "true")]
    pub(super) version: Option<Utf8StringRef<'a>>,
}

#[derive(der::Sequence)]
pub(super) struct ResourceSignatureDer<'a> {
    pub(super) hash: &'a OctetStringRef,
    pub(super) signatures: Vec<SignatureBlockDer<'a>>,
    #[asn1(optional = "true")]
    pub(super) macs: Option<Vec<MacBlockDer<'a>>>,
}

#[derive(der::Sequence)]
pub(super) struct SignatureBlockDer<'a> {
    pub(super) signature: &'a OctetStringRef,
    pub(super) certificates: Vec<CertificateReferenceDer<'a>>,
}

#[derive(der::Sequence)]
pub(super) struct CertificateReferenceDer<'a> {
    pub(super) fingerprint: &'a OctetStringRef,
    pub(super) uri: Utf8StringRef<'a>,
}

#[derive(der::Sequence)]
pub(super) struct MacBlockDer<'a> {
    pub(super) psk_id: &'a OctetStringRef,
    pub(super) key_table_version: u64,
    #[asn1(optional = "true")]
    pub(super) key_table_iv: Option<&'a OctetStringRef>,
    #[asn1(optional = "true")]
    pub(super) key_table_ref: Option<Utf8StringRef<'a>>,
    pub(super) key_table_index_size: u64,
    pub(super) key_table_record_size: u64,
}
