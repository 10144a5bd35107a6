//! The update client's checks for a **v1** manifest (the legacy update client's schema,
//! `manifest-tool create-v1`), in the order of `docs/device-contract.md` section 3.5.
//!
//! A device that implements the contract accepts both schemas in the same candidate slot: the
//! first element inside the manifest's outer `SEQUENCE` tells them apart
//! ([`crate::manifest::detect_schema`]). The v1 checks are update-client-hub's: the signature
//! block names the signing certificate by its SHA-256 fingerprint, which must be the stored
//! `mbed.UpdateAuthCert` (the store keys the certificate by that fingerprint); the
//! `ResourceSignature.hash` is recomputed over the `Resource`; each DER ECDSA signature must
//! verify; vendor and class must be the store's; the timestamp must be newer than the installed
//! version (mapped the way manifest-tool's `--fw-migrate-ver` maps a version); then the payload's
//! size and SHA-256 against the payload reference, which the hub checks after the download.
//!
//! Two rules are the contract's, not the hub's: trailing bytes after the DER are refused
//! (manifest-malformed; the hub ignores them), and the timestamp must stand for a
//! `MAJOR.MINOR.PATCH` version (timestamp-not-semantic), because the boot state records the
//! installed version in that form.
//!
//! **Invariant:** pure, like the rest of `contract`.

use p256::ecdsa::Signature;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};

use super::{BootState, CandidateVerdict, UpdateClientInputs, UpdateStatus};
use crate::manifest::v1::{self, PayloadFormatV1};
use crate::store::ConfigStore;
use crate::trust::Certificate;

/// Where the parts of a candidate lie inside the candidate slot.
pub(super) struct CandidateParts {
    /// The manifest's bytes (M of them).
    pub(super) manifest: std::ops::Range<usize>,
    /// The delegated certificate's length (D); a v1 candidate carries none.
    pub(super) delegate_certificate_size_bytes: u32,
    /// Where the payload starts (after the delegated certificate).
    pub(super) payload_start: usize,
    /// The payload's length (P).
    pub(super) payload_size_bytes: u32,
}

/// The v1 checks, after the candidate header, the store and the part bounds have passed.
pub(super) fn check_candidate_v1(
    inputs: &UpdateClientInputs,
    store: &ConfigStore,
    parts: &CandidateParts,
) -> Result<CandidateVerdict, UpdateStatus> {
    let slot = inputs.candidate_slot;
    let decoded =
        v1::decode_manifest_v1(&slot[parts.manifest.clone()]).map_err(|_| UpdateStatus::ManifestMalformed)?;
    decoded.check_basic().map_err(|_| UpdateStatus::ManifestMalformed)?;
    if parts.delegate_certificate_size_bytes != 0 {
        // The hub's certificate references name the signer directly; there is no delegation.
        return Err(UpdateStatus::ManifestMalformed);
    }

    let (stored_fingerprint, certificate_der) =
        store.update_certificate().map_err(|_| UpdateStatus::CertificateMissing)?;
    let verifying_key = Certificate::from_der(certificate_der)
        .and_then(|certificate| certificate.verifying_key())
        .map_err(|_| UpdateStatus::CertificateMissing)?;
    let resource_hash: [u8; 32] = Sha256::digest(&decoded.signed_bytes).into();
    if decoded.hash != resource_hash || decoded.signatures.is_empty() {
        return Err(UpdateStatus::SignatureInvalid);
    }
    for block in &decoded.signatures {
        let named = block.certificates.first().map(|reference| reference.fingerprint.as_slice());
        if named != Some(stored_fingerprint.as_slice()) {
            return Err(UpdateStatus::CertificateUnknown);
        }
        let signature = Signature::from_der(&block.signature).map_err(|_| UpdateStatus::SignatureInvalid)?;
        verifying_key
            .verify_prehash(&resource_hash, &signature)
            .map_err(|_| UpdateStatus::SignatureInvalid)?;
    }

    super::check_vendor_and_class(store, &decoded.vendor_id, &decoded.class_id)?;
    let reference = match (&decoded.payload, decoded.payload_format()) {
        (Some(payload), Some(PayloadFormatV1::RawBinary)) => &payload.reference,
        _ => return Err(UpdateStatus::PayloadFormatUnsupported),
    };
    let installed_timestamp = inputs.installed_version.map(v1::semantic_version_timestamp).unwrap_or(0);
    if decoded.timestamp <= installed_timestamp {
        return Err(UpdateStatus::VersionRollback);
    }
    let payload_version =
        v1::timestamp_semantic_version(decoded.timestamp).ok_or(UpdateStatus::TimestampNotSemantic)?;

    if reference.size > inputs.application_slot_size_bytes {
        return Err(UpdateStatus::PayloadTooLarge);
    }
    if reference.size == 0 || u64::from(parts.payload_size_bytes) != reference.size {
        return Err(UpdateStatus::PayloadSizeMismatch);
    }
    let payload_end = parts
        .payload_start
        .checked_add(parts.payload_size_bytes as usize)
        .filter(|end| *end <= slot.len())
        .ok_or(UpdateStatus::PayloadSizeMismatch)?;
    let payload_digest: [u8; 32] = Sha256::digest(&slot[parts.payload_start..payload_end]).into();
    if reference.hash != payload_digest {
        return Err(UpdateStatus::PayloadDigestMismatch);
    }
    Ok(CandidateVerdict::Install {
        payload_range: parts.payload_start..payload_end,
        boot_state: BootState {
            installed_version: payload_version,
            installed_size_bytes: parts.payload_size_bytes,
            installed_digest: payload_digest,
        },
    })
}
