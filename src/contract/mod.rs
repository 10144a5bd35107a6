//! The device contract: what the station and the device firmware agree on, byte by byte.
//!
//! `docs/device-contract.md` is the specification; this module is its reference implementation,
//! shared by the station (which stages candidates and reads reports) and by the simulated
//! device (whose bootloader runs [`evaluate_candidate`]). The reference firmware for QEMU
//! implements the same rules in its own code; the conformance suite checks both agree.
//!
//! Pieces: the candidate-slot header ([`CandidateHeader`]), the boot-state record the bootloader
//! keeps after an install ([`BootState`]), the RAM mailbox (station request + device report,
//! [`MailboxRequest`], [`SelfTestReport`]), the update client's reason codes ([`UpdateStatus`]),
//! and the identity commands a profile with a device identity uses: make a key and a CSR on the
//! device, sign a station challenge ([`IdentityMailboxRequest`], [`IdentityResponse`]).
//!
//! Files: this one (constants, [`UpdateStatus`], the candidate header, the boot state,
//! [`evaluate_candidate`] with the v3 checks), `update_v1.rs` (the checks for a v1 manifest in
//! the same slot, section 3.5), `mailbox.rs` (the self-test request and report), `identity.rs`
//! (the identity commands of section 6).
//!
//! **Invariant:** pure functions over bytes; no device I/O.

mod boot;
mod identity;
mod mailbox;
mod secrets;
mod storage;
mod update_v1;

use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::manifest::{self, SemanticVersion};
use crate::store::{ConfigStore, keys};
use crate::trust::Certificate;

pub use boot::*;
pub use identity::*;
pub use mailbox::*;
pub use secrets::*;
pub use storage::*;

/// Magic of a staged candidate ("IMPC").
pub const CANDIDATE_MAGIC: [u8; 4] = *b"IMPC";
/// Size of the candidate header.
pub const CANDIDATE_HEADER_SIZE_BYTES: usize = 24;
/// Magic of the bootloader's boot-state record ("IMPB").
pub const BOOT_STATE_MAGIC: [u8; 4] = *b"IMPB";
/// Size of the boot-state record.
pub const BOOT_STATE_SIZE_BYTES: usize = 52;
/// Magic of the station's mailbox request ("IMPQ").
pub const REQUEST_MAGIC: [u8; 4] = *b"IMPQ";
/// Magic of the device's self-test report ("IMPR").
pub const REPORT_MAGIC: [u8; 4] = *b"IMPR";
/// Offset of the report inside the mailbox; the request occupies the bytes before it.
pub const REPORT_OFFSET_BYTES: usize = 32;
/// Size of the report.
pub const REPORT_SIZE_BYTES: usize = 224;
/// Size of the whole mailbox (request + report).
pub const MAILBOX_SIZE_BYTES: usize = REPORT_OFFSET_BYTES + REPORT_SIZE_BYTES;
/// The largest serial number a report carries.
pub const REPORT_SERIAL_CAPACITY_BYTES: usize = 64;

/// What the update client did with the candidate slot at the last boot. Codes at 0x10 and up
/// are refusals; the previous application keeps running after each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u32)]
pub enum UpdateStatus {
    /// The candidate slot held no staged update (erased).
    NoCandidate = 0x00,
    /// The update verified and was installed.
    Installed = 0x01,
    /// The candidate slot holds bytes that are not a candidate header.
    CandidateGarbage = 0x10,
    /// The manifest is not valid DER, is truncated, or does not fit the candidate.
    ManifestMalformed = 0x11,
    /// The config store failed its integrity digest: the device is unprovisioned.
    StoreUnprovisioned = 0x12,
    /// The store has no usable update-authenticity certificate.
    CertificateMissing = 0x13,
    /// The manifest signature does not verify with the trusted key.
    SignatureInvalid = 0x14,
    /// The manifest's vendor ID is not this device's.
    VendorIdMismatch = 0x15,
    /// The manifest's class ID is not this device's.
    ClassIdMismatch = 0x16,
    /// The staged payload's length differs from the manifest's payload-size.
    PayloadSizeMismatch = 0x17,
    /// The staged payload's SHA-256 differs from the manifest's payload-digest.
    PayloadDigestMismatch = 0x18,
    /// The payload is larger than the application slot.
    PayloadTooLarge = 0x19,
    /// The payload version is not newer than the installed one.
    VersionRollback = 0x1A,
    /// The manifest's payload format is not raw-binary.
    PayloadFormatUnsupported = 0x1B,
    /// The installed-signature over the payload digest does not verify.
    InstalledSignatureInvalid = 0x1C,
    /// The store holds a CA and the candidate carries no delegated certificate.
    DelegateMissing = 0x1D,
    /// The delegated certificate was not issued by the stored CA (or is not valid).
    DelegateUntrusted = 0x1E,
    /// A candidate on the block device has an external header that does not authenticate with
    /// this device's root of trust (HMAC, magic or version).
    StorageHeaderInvalid = 0x30,
    /// A candidate on the block device whose firmware does not match its external header (size
    /// past the location or the application slot, or SHA-256).
    StorageFirmwareMismatch = 0x31,
    /// A v1 manifest's signature block names a certificate (by SHA-256 fingerprint) that is
    /// not the stored `mbed.UpdateAuthCert`.
    CertificateUnknown = 0x1F,
    /// A v1 manifest's timestamp is newer but stands for no `MAJOR.MINOR.PATCH` version
    /// (not made by `--fw-migrate-ver`), which the boot state could not record.
    TimestampNotSemantic = 0x20,
}

impl UpdateStatus {
    /// Every status, for decoding and documentation.
    pub const ALL: [UpdateStatus; 21] = [
        Self::NoCandidate,
        Self::Installed,
        Self::CandidateGarbage,
        Self::ManifestMalformed,
        Self::StoreUnprovisioned,
        Self::CertificateMissing,
        Self::SignatureInvalid,
        Self::VendorIdMismatch,
        Self::ClassIdMismatch,
        Self::PayloadSizeMismatch,
        Self::PayloadDigestMismatch,
        Self::PayloadTooLarge,
        Self::VersionRollback,
        Self::PayloadFormatUnsupported,
        Self::InstalledSignatureInvalid,
        Self::DelegateMissing,
        Self::DelegateUntrusted,
        Self::StorageHeaderInvalid,
        Self::StorageFirmwareMismatch,
        Self::CertificateUnknown,
        Self::TimestampNotSemantic,
    ];

    /// The numeric reason code written to the mailbox.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Decodes a reason code.
    pub fn from_code(code: u32) -> Option<UpdateStatus> {
        Self::ALL.into_iter().find(|status| status.code() == code)
    }

    /// True for the codes that mean "refused".
    pub fn is_refusal(self) -> bool {
        self.code() >= 0x10
    }
}

/// The header at the start of the candidate slot; the manifest, the optional delegated
/// certificate and the payload follow it, in that order, without gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateHeader {
    /// Length of the DER manifest.
    pub manifest_size_bytes: u32,
    /// Length of the DER delegated certificate (0 when the store's certificate signs directly).
    pub delegate_certificate_size_bytes: u32,
    /// Length of the payload.
    pub payload_size_bytes: u32,
}

/// Lays out a candidate: header, manifest, delegated certificate, payload.
pub fn encode_candidate(
    manifest_der: &[u8],
    delegate_certificate_der: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let delegate = delegate_certificate_der.unwrap_or(&[]);
    let mut bytes =
        Vec::with_capacity(CANDIDATE_HEADER_SIZE_BYTES + manifest_der.len() + delegate.len() + payload.len());
    bytes.extend_from_slice(&CANDIDATE_MAGIC);
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    for length in [manifest_der.len(), delegate.len(), payload.len()] {
        bytes.extend_from_slice(&(length as u32).to_le_bytes());
    }
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(manifest_der);
    bytes.extend_from_slice(delegate);
    bytes.extend_from_slice(payload);
    bytes
}

/// The boot-state record the bootloader writes in the last sector of the config region after
/// an install: the rollback reference for the next update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    /// Version of the installed application.
    pub installed_version: SemanticVersion,
    /// Size of the installed payload.
    pub installed_size_bytes: u32,
    /// SHA-256 of the installed payload.
    pub installed_digest: [u8; 32],
}

impl BootState {
    /// Encodes the record (52 bytes; callers pad to the write alignment).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(BOOT_STATE_SIZE_BYTES);
        bytes.extend_from_slice(&BOOT_STATE_MAGIC);
        for part in [self.installed_version.major, self.installed_version.minor, self.installed_version.patch]
        {
            bytes.extend_from_slice(&part.to_le_bytes());
        }
        bytes.extend_from_slice(&self.installed_size_bytes.to_le_bytes());
        bytes.extend_from_slice(&self.installed_digest);
        bytes
    }

    /// Decodes the record; `None` for an erased or corrupt sector.
    pub fn decode(bytes: &[u8]) -> Option<BootState> {
        if bytes.len() < BOOT_STATE_SIZE_BYTES || bytes[0..4] != BOOT_STATE_MAGIC {
            return None;
        }
        Some(BootState {
            installed_version: SemanticVersion {
                major: read_u32(bytes, 4),
                minor: read_u32(bytes, 8),
                patch: read_u32(bytes, 12),
            },
            installed_size_bytes: read_u32(bytes, 16),
            installed_digest: bytes[20..52].try_into().ok()?,
        })
    }
}

/// What the update client decided about a staged candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateVerdict {
    /// Nothing staged.
    NoCandidate,
    /// Install `payload_range` of the candidate into the application slot.
    Install {
        /// Byte range of the payload inside the candidate slot.
        payload_range: std::ops::Range<usize>,
        /// The record to keep after installing.
        boot_state: BootState,
    },
    /// Refused, with the reason; the application slot must not be touched.
    Refuse(UpdateStatus),
}

/// What the update client knows when it looks at the candidate slot.
pub struct UpdateClientInputs<'a> {
    /// The config store region as read from flash.
    pub store_region: &'a [u8],
    /// The chip's unique ID (the store digest is bound to it).
    pub chip_uid: &'a [u8],
    /// The candidate slot as read from flash.
    pub candidate_slot: &'a [u8],
    /// The version running now (boot state, else the store's factory version).
    pub installed_version: Option<SemanticVersion>,
    /// Size of the application slot.
    pub application_slot_size_bytes: u64,
    /// The erased value of the candidate slot's flash.
    pub erased_value: u8,
    /// The device's notion of "now", for certificate validity.
    pub now: SystemTime,
}

/// The manifest's vendor and class IDs against the stored `mbed.VendorId` / `mbed.ClassId`
/// (the same check for v1 and v3 manifests).
fn check_vendor_and_class(
    store: &ConfigStore,
    vendor_id: &[u8],
    class_id: &[u8],
) -> Result<(), UpdateStatus> {
    let stored_vendor_id = store.uuid_bytes(keys::VENDOR_ID).map_err(|_| UpdateStatus::StoreUnprovisioned)?;
    if vendor_id != stored_vendor_id {
        return Err(UpdateStatus::VendorIdMismatch);
    }
    let stored_class_id = store.uuid_bytes(keys::CLASS_ID).map_err(|_| UpdateStatus::StoreUnprovisioned)?;
    if class_id != stored_class_id {
        return Err(UpdateStatus::ClassIdMismatch);
    }
    Ok(())
}

/// The update client's checks, in the order the contract lists them: v3 (section 3.3) or, when
/// the staged manifest is a v1 one, v1 (section 3.5).
pub fn evaluate_candidate(inputs: &UpdateClientInputs) -> CandidateVerdict {
    let slot = inputs.candidate_slot;
    if slot.len() < CANDIDATE_HEADER_SIZE_BYTES
        || slot[..CANDIDATE_HEADER_SIZE_BYTES].iter().all(|byte| *byte == inputs.erased_value)
    {
        return CandidateVerdict::NoCandidate;
    }
    if slot[0..4] != CANDIDATE_MAGIC || read_u16(slot, 4) != 1 {
        return CandidateVerdict::Refuse(UpdateStatus::CandidateGarbage);
    }
    let header = CandidateHeader {
        manifest_size_bytes: read_u32(slot, 8),
        delegate_certificate_size_bytes: read_u32(slot, 12),
        payload_size_bytes: read_u32(slot, 16),
    };
    match check_candidate(inputs, &header) {
        Ok(verdict) => verdict,
        Err(status) => CandidateVerdict::Refuse(status),
    }
}

fn check_candidate(
    inputs: &UpdateClientInputs,
    header: &CandidateHeader,
) -> Result<CandidateVerdict, UpdateStatus> {
    let slot = inputs.candidate_slot;
    let store = ConfigStore::decode(inputs.store_region, inputs.chip_uid)
        .map_err(|_| UpdateStatus::StoreUnprovisioned)?;
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
    if matches!(manifest::detect_schema(manifest_der), Ok(manifest::ManifestSchema::V1)) {
        let parts = update_v1::CandidateParts {
            manifest: manifest_start..manifest_end,
            delegate_certificate_size_bytes: header.delegate_certificate_size_bytes,
            payload_start: delegate_end,
            payload_size_bytes: header.payload_size_bytes,
        };
        return update_v1::check_candidate_v1(inputs, &store, &parts);
    }
    let decoded = manifest::decode_manifest(manifest_der).map_err(|_| UpdateStatus::ManifestMalformed)?;

    let (_, certificate_der) = store.update_certificate().map_err(|_| UpdateStatus::CertificateMissing)?;
    let stored_certificate =
        Certificate::from_der(certificate_der).map_err(|_| UpdateStatus::CertificateMissing)?;
    let signing_certificate = if stored_certificate.is_ca() {
        if header.delegate_certificate_size_bytes == 0 {
            return Err(UpdateStatus::DelegateMissing);
        }
        let delegate = Certificate::from_der(&slot[manifest_end..delegate_end])
            .map_err(|_| UpdateStatus::DelegateUntrusted)?;
        crate::trust::verify_chain(&delegate, &stored_certificate, inputs.now)
            .map_err(|_| UpdateStatus::DelegateUntrusted)?;
        delegate
    } else {
        stored_certificate
    };
    let verifying_key = signing_certificate.verifying_key().map_err(|_| UpdateStatus::CertificateMissing)?;
    manifest::verify_manifest(manifest_der, &verifying_key).map_err(|error| match error {
        manifest::ManifestError::BadInstalledSignature { .. } => UpdateStatus::InstalledSignatureInvalid,
        _ => UpdateStatus::SignatureInvalid,
    })?;

    check_vendor_and_class(&store, &decoded.vendor_id, &decoded.class_id)?;
    if decoded.payload_format != manifest::PayloadFormat::RawBinary {
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
    Ok(CandidateVerdict::Install {
        payload_range: delegate_end..payload_end,
        boot_state: BootState {
            installed_version: decoded.payload_version,
            installed_size_bytes: header.payload_size_bytes,
            installed_digest: payload_digest,
        },
    })
}

/// Pads `data` with `fill` up to a multiple of `alignment` (flash writes are whole units of the
/// write alignment; padding uses the erased value so it programs nothing).
pub fn pad_to_alignment(data: &[u8], alignment: usize, fill: u8) -> Vec<u8> {
    let mut padded = data.to_vec();
    padded.resize(data.len().next_multiple_of(alignment.max(1)), fill);
    padded
}

pub(crate) fn decode_hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex::decode(text).ok()?.try_into().ok()
}

pub(crate) fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
}
