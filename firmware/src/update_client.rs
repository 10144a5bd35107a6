//! The update client: the checks of contract section 3.3 in the contract's order, mirroring the
//! station's `contract::evaluate_candidate` (and `trust::verify_chain` for trust delegation); for
//! a v1 manifest in the slot, the checks of section 3.5 (`contract::update_v1`).
//!
//! One deliberate difference: the board has no real-time clock, so certificate validity is
//! checked against a fixed time floor ([`TIME_FLOOR_UNIX_SECONDS`], the firmware's release
//! date) instead of "now": a certificate that expired before the floor, or whose validity period
//! is empty, is refused; a certificate whose `notBefore` lies in the future is accepted (the
//! simulated device, which has a clock, refuses it). See firmware/README.md.

use core::ops::Range;

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der::{Decode, Encode, Sequence};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

use crate::contract::{self, BootState, CANDIDATE_HEADER_SIZE_BYTES, UpdateStatus};
use crate::manifest::{self, PAYLOAD_FORMAT_RAW_BINARY, VerifyError};
use crate::manifest_v1;
use crate::store::{ConfigStore, keys};
use crate::version::Version;

/// The largest delegated certificate the bootloader parses. Decoding X.509 expands the DER
/// several times over in memory (every name attribute and extension becomes its own
/// allocation), so an unbounded certificate from the unauthenticated candidate slot could exhaust
/// the heap and hang the boot; a larger one is refused as delegate-untrusted (0x1E) without
/// parsing. Real delegated certificates are under 1 KiB.
pub const DELEGATE_CERTIFICATE_MAX_SIZE_BYTES: u32 = 16 * 1024;

/// The device's notion of the earliest possible "now": 2026-11-01T00:00:00Z.
pub const TIME_FLOOR_UNIX_SECONDS: u64 = 1_793_491_200;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// What the update client decided.
pub enum Verdict {
    /// Nothing staged.
    NoCandidate,
    /// Install this byte range of the candidate slot, then keep this record.
    Install {
        /// The payload's range inside the candidate slot.
        payload_range: Range<usize>,
        /// The boot state to write after installing.
        boot_state: BootState,
    },
    /// Refused with a reason code.
    Refuse(UpdateStatus),
}

/// What the update client looks at.
pub struct Inputs<'a> {
    /// The config store region.
    pub store_region: &'a [u8],
    /// The chip unique ID.
    pub chip_uid: &'a [u8],
    /// The whole candidate slot.
    pub candidate_slot: &'a [u8],
    /// The installed version (boot state, else the store's factory version).
    pub installed_version: Option<Version>,
    /// Size of the application slot.
    pub application_slot_size_bytes: u64,
    /// The candidate slot's erased value.
    pub erased_value: u8,
}

/// Runs the checks.
pub fn evaluate(inputs: &Inputs) -> Verdict {
    match contract::candidate_header(inputs.candidate_slot, inputs.erased_value) {
        Ok(None) => Verdict::NoCandidate,
        Err(status) => Verdict::Refuse(status),
        Ok(Some(header)) => match check_candidate(inputs, &header) {
            Ok(verdict) => verdict,
            Err(status) => Verdict::Refuse(status),
        },
    }
}

fn check_candidate(inputs: &Inputs, header: &contract::CandidateHeader) -> Result<Verdict, UpdateStatus> {
    let slot = inputs.candidate_slot;
    let store =
        ConfigStore::decode(inputs.store_region, inputs.chip_uid).ok_or(UpdateStatus::StoreUnprovisioned)?;
    let manifest_start = CANDIDATE_HEADER_SIZE_BYTES;
    let manifest_end = manifest_start
        .checked_add(header.manifest_size_bytes as usize)
        .filter(|end| *end <= slot.len())
        .ok_or(UpdateStatus::ManifestMalformed)?;
    let delegate_end = manifest_end
        .checked_add(header.delegate_certificate_size_bytes as usize)
        .filter(|end| *end <= slot.len())
        .ok_or(UpdateStatus::ManifestMalformed)?;
    let manifest_der = &slot[manifest_start..manifest_end];
    if manifest_v1::is_v1(manifest_der) {
        return check_candidate_v1(inputs, &store, header, manifest_der, delegate_end);
    }
    let decoded = manifest::decode_manifest(manifest_der).ok_or(UpdateStatus::ManifestMalformed)?;

    let (_, certificate_der) = store.update_certificate().ok_or(UpdateStatus::CertificateMissing)?;
    let stored_certificate =
        Certificate::from_der(certificate_der).map_err(|_| UpdateStatus::CertificateMissing)?;
    let delegate_certificate;
    let signing_certificate = if is_ca(&stored_certificate) {
        if header.delegate_certificate_size_bytes == 0 {
            return Err(UpdateStatus::DelegateMissing);
        }
        if header.delegate_certificate_size_bytes > DELEGATE_CERTIFICATE_MAX_SIZE_BYTES {
            return Err(UpdateStatus::DelegateUntrusted);
        }
        let delegate_der = &slot[manifest_end..delegate_end];
        delegate_certificate =
            Certificate::from_der(delegate_der).map_err(|_| UpdateStatus::DelegateUntrusted)?;
        verify_chain(&delegate_certificate, delegate_der, &stored_certificate)
            .ok_or(UpdateStatus::DelegateUntrusted)?;
        &delegate_certificate
    } else {
        &stored_certificate
    };
    let verifying_key = verifying_key(signing_certificate).ok_or(UpdateStatus::CertificateMissing)?;
    manifest::verify_manifest(&decoded, &verifying_key).map_err(|error| match error {
        VerifyError::InstalledSignature => UpdateStatus::InstalledSignatureInvalid,
        VerifyError::Signature => UpdateStatus::SignatureInvalid,
    })?;

    let vendor_id = store.uuid_bytes(keys::VENDOR_ID).ok_or(UpdateStatus::StoreUnprovisioned)?;
    if decoded.vendor_id != vendor_id {
        return Err(UpdateStatus::VendorIdMismatch);
    }
    let class_id = store.uuid_bytes(keys::CLASS_ID).ok_or(UpdateStatus::StoreUnprovisioned)?;
    if decoded.class_id != class_id {
        return Err(UpdateStatus::ClassIdMismatch);
    }
    if decoded.payload_format != PAYLOAD_FORMAT_RAW_BINARY {
        return Err(UpdateStatus::PayloadFormatUnsupported);
    }
    if decoded.payload_size > inputs.application_slot_size_bytes {
        return Err(UpdateStatus::PayloadTooLarge);
    }
    if u64::from(header.payload_size_bytes) != decoded.payload_size {
        return Err(UpdateStatus::PayloadSizeMismatch);
    }
    let payload_end = delegate_end
        .checked_add(header.payload_size_bytes as usize)
        .filter(|end| *end <= slot.len())
        .ok_or(UpdateStatus::PayloadSizeMismatch)?;
    let payload_digest: [u8; 32] = Sha256::digest(&slot[delegate_end..payload_end]).into();
    if decoded.payload_digest != payload_digest {
        return Err(UpdateStatus::PayloadDigestMismatch);
    }
    if let Some(installed_version) = inputs.installed_version
        && decoded.payload_version <= installed_version
    {
        return Err(UpdateStatus::VersionRollback);
    }
    Ok(Verdict::Install {
        payload_range: delegate_end..payload_end,
        boot_state: BootState {
            installed_version: decoded.payload_version,
            installed_size_bytes: header.payload_size_bytes,
            installed_digest: payload_digest,
        },
    })
}

/// The checks for a v1 manifest (contract section 3.5), mirroring the station's
/// `contract::update_v1::check_candidate_v1` line by line.
fn check_candidate_v1(
    inputs: &Inputs,
    store: &ConfigStore,
    header: &contract::CandidateHeader,
    manifest_der: &[u8],
    payload_start: usize,
) -> Result<Verdict, UpdateStatus> {
    let slot = inputs.candidate_slot;
    let decoded = manifest_v1::decode_manifest_v1(manifest_der).ok_or(UpdateStatus::ManifestMalformed)?;
    if header.delegate_certificate_size_bytes != 0 {
        return Err(UpdateStatus::ManifestMalformed);
    }

    let (stored_fingerprint, certificate_der) =
        store.update_certificate().ok_or(UpdateStatus::CertificateMissing)?;
    let stored_certificate =
        Certificate::from_der(certificate_der).map_err(|_| UpdateStatus::CertificateMissing)?;
    let verifying_key = verifying_key(&stored_certificate).ok_or(UpdateStatus::CertificateMissing)?;
    let resource_hash: [u8; 32] = Sha256::digest(&decoded.signed_bytes).into();
    if decoded.hash != resource_hash || decoded.signatures.is_empty() {
        return Err(UpdateStatus::SignatureInvalid);
    }
    for (signature_der, fingerprint) in &decoded.signatures {
        if fingerprint.as_deref() != Some(stored_fingerprint.as_slice()) {
            return Err(UpdateStatus::CertificateUnknown);
        }
        let signature = Signature::from_der(signature_der).map_err(|_| UpdateStatus::SignatureInvalid)?;
        verifying_key.verify_prehash(&resource_hash, &signature).map_err(|_| UpdateStatus::SignatureInvalid)?;
    }

    let vendor_id = store.uuid_bytes(keys::VENDOR_ID).ok_or(UpdateStatus::StoreUnprovisioned)?;
    if decoded.vendor_id != vendor_id {
        return Err(UpdateStatus::VendorIdMismatch);
    }
    let class_id = store.uuid_bytes(keys::CLASS_ID).ok_or(UpdateStatus::StoreUnprovisioned)?;
    if decoded.class_id != class_id {
        return Err(UpdateStatus::ClassIdMismatch);
    }
    let reference = decoded.raw_binary_reference.as_ref().ok_or(UpdateStatus::PayloadFormatUnsupported)?;
    let installed_timestamp = inputs.installed_version.map(manifest_v1::version_timestamp).unwrap_or(0);
    if decoded.timestamp <= installed_timestamp {
        return Err(UpdateStatus::VersionRollback);
    }
    let payload_version =
        manifest_v1::timestamp_version(decoded.timestamp).ok_or(UpdateStatus::TimestampNotSemantic)?;

    if reference.size > inputs.application_slot_size_bytes {
        return Err(UpdateStatus::PayloadTooLarge);
    }
    if reference.size == 0 || u64::from(header.payload_size_bytes) != reference.size {
        return Err(UpdateStatus::PayloadSizeMismatch);
    }
    let payload_end = payload_start
        .checked_add(header.payload_size_bytes as usize)
        .filter(|end| *end <= slot.len())
        .ok_or(UpdateStatus::PayloadSizeMismatch)?;
    let payload_digest: [u8; 32] = Sha256::digest(&slot[payload_start..payload_end]).into();
    if reference.hash != payload_digest {
        return Err(UpdateStatus::PayloadDigestMismatch);
    }
    Ok(Verdict::Install {
        payload_range: payload_start..payload_end,
        boot_state: BootState {
            installed_version: payload_version,
            installed_size_bytes: header.payload_size_bytes,
            installed_digest: payload_digest,
        },
    })
}

/// basicConstraints CA:TRUE.
fn is_ca(certificate: &Certificate) -> bool {
    matches!(
        certificate.tbs_certificate().get_extension::<BasicConstraints>(),
        Ok(Some((_, constraints))) if constraints.ca
    )
}

/// The subject's ECDSA P-256 key; `None` for any other key type or an invalid point.
fn verifying_key(certificate: &Certificate) -> Option<VerifyingKey> {
    let public_key_info = certificate.tbs_certificate().subject_public_key_info();
    if public_key_info.algorithm.oid != ID_EC_PUBLIC_KEY {
        return None;
    }
    let curve = public_key_info.algorithm.parameters.as_ref()?.decode_as::<ObjectIdentifier>().ok()?;
    if curve != PRIME256V1 {
        return None;
    }
    VerifyingKey::from_sec1_bytes(public_key_info.subject_public_key.raw_bytes()).ok()
}

/// A certificate cut into its three parts, so the signature is checked over the TBS bytes
/// exactly as they were signed.
#[derive(Sequence)]
struct SignedParts<'a> {
    tbs_certificate: AnyRef<'a>,
    signature_algorithm: AnyRef<'a>,
    signature: BitStringRef<'a>,
}

/// The delegated certificate chains to the stored CA: issuer name, CA flag, ECDSA-SHA256
/// signature by the CA's key over the TBS, and validity of both against the time floor.
fn verify_chain(leaf: &Certificate, leaf_der: &[u8], ca: &Certificate) -> Option<()> {
    if leaf.tbs_certificate().issuer() != ca.tbs_certificate().subject() {
        return None;
    }
    if !is_ca(ca) {
        return None;
    }
    let ca_key = verifying_key(ca)?;
    if leaf.signature_algorithm().oid != ECDSA_WITH_SHA256 {
        return None;
    }
    let parts = SignedParts::from_der(leaf_der).ok()?;
    let tbs_der = parts.tbs_certificate.to_der().ok()?;
    let signature = DerSignature::from_bytes(parts.signature.as_bytes()?).ok()?;
    ca_key.verify_prehash(&Sha256::digest(&tbs_der), &signature).ok()?;
    (valid_at_floor(ca) && valid_at_floor(leaf)).then_some(())
}

fn valid_at_floor(certificate: &Certificate) -> bool {
    let validity = certificate.tbs_certificate().validity();
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    not_before <= not_after && not_after >= TIME_FLOOR_UNIX_SECONDS
}
