//! Pelion update manifests of both schemas Imprint speaks, and which one a file holds.
//!
//! - [`v3`] (re-exported here, the default): the manifests of Device Management Client 4.8 and
//!   later, `manifest-tool create`, raw `r || s` signatures checked with the update certificate's key.
//! - [`v1`]: the manifests of the legacy update client (update-client-hub, Device Management
//!   Client 4.7 and older), `manifest-tool create-v1`, DER signatures whose signature block names
//!   the certificate by its SHA-256 fingerprint.
//!
//! [`detect_schema`] tells them apart from the first element inside the outer `SEQUENCE`: a v3
//! `SignedResource` starts with its `manifest-version ENUMERATED`, a v1 one with the `Resource`
//! `SEQUENCE`. **Invariant:** no I/O here (no files, no devices); signing goes through
//! [`crate::trust::Signer`].

pub mod v1;
pub mod v3;

pub use v3::*;

use der::{Decode, Header, SliceReader, Tag};

/// Which manifest schema a DER file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestSchema {
    /// `manifest-tool create-v1`, the legacy update client's format.
    V1,
    /// `manifest-tool create`, the current format.
    V3,
}

impl ManifestSchema {
    /// `v1` or `v3`, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            ManifestSchema::V1 => "v1",
            ManifestSchema::V3 => "v3",
        }
    }
}

impl std::fmt::Display for ManifestSchema {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// The bytes are neither schema's `SignedResource`.
#[derive(Debug, thiserror::Error)]
#[error("unknown manifest schema: {reason}")]
pub struct UnknownSchemaError {
    /// What was found where a manifest starts.
    pub reason: String,
}

/// Tells v1 from v3 by the tag of the first element inside the outer `SEQUENCE`; the full
/// decoders ([`v1::decode_manifest_v1`], [`v3::decode_manifest`]) still check everything else.
pub fn detect_schema(der_bytes: &[u8]) -> Result<ManifestSchema, UnknownSchemaError> {
    let mut reader =
        SliceReader::new(der_bytes).map_err(|error| UnknownSchemaError { reason: error.to_string() })?;
    let outer = Header::decode(&mut reader)
        .map_err(|error| UnknownSchemaError { reason: format!("no DER header at byte 0 ({error})") })?;
    if outer.tag() != Tag::Sequence {
        return Err(UnknownSchemaError {
            reason: format!("expected a SEQUENCE at byte 0, found tag {}", outer.tag()),
        });
    }
    let first = Tag::peek(&reader).map_err(|error| UnknownSchemaError {
        reason: format!("the outer SEQUENCE is empty or truncated ({error})"),
    })?;
    match first {
        Tag::Enumerated => Ok(ManifestSchema::V3),
        Tag::Sequence => Ok(ManifestSchema::V1),
        other => Err(UnknownSchemaError {
            reason: format!(
                "the outer SEQUENCE starts with tag {other}: expected ENUMERATED (v3) or SEQUENCE (v1)"
            ),
        }),
    }
}
