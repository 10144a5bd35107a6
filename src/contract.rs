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
//! **Invariant:** pure functions over bytes; no device I/O.

use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::manifest::{self, SemanticVersion};
use crate::store::{ConfigStore, keys};
use crate::trust::Certificate;

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
}

impl UpdateStatus {
    /// Every status, for decoding and documentation.
    pub const ALL: [UpdateStatus; 17] = [
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

/// The update client's checks, in the order the contract lists them.
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

    let vendor_id = store.uuid_bytes(keys::VENDOR_ID).map_err(|_| UpdateStatus::StoreUnprovisioned)?;
    if decoded.vendor_id != vendor_id {
        return Err(UpdateStatus::VendorIdMismatch);
    }
    let class_id = store.uuid_bytes(keys::CLASS_ID).map_err(|_| UpdateStatus::StoreUnprovisioned)?;
    if decoded.class_id != class_id {
        return Err(UpdateStatus::ClassIdMismatch);
    }
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

/// What the station writes into the mailbox before a reset: a nonce the device must echo, so a
/// stale report from an earlier boot is never taken for a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxRequest {
    /// Random per reset.
    pub nonce: u32,
}

impl MailboxRequest {
    /// The mailbox image to write: the request, then a zeroed report area.
    pub fn encode_mailbox(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; MAILBOX_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&REQUEST_MAGIC);
        bytes[4..8].copy_from_slice(&self.nonce.to_le_bytes());
        bytes
    }

    /// Reads the request a device finds in its mailbox at boot.
    pub fn decode(mailbox: &[u8]) -> Option<MailboxRequest> {
        if mailbox.len() < 8 || mailbox[0..4] != REQUEST_MAGIC {
            return None;
        }
        Some(MailboxRequest { nonce: read_u32(mailbox, 4) })
    }
}

/// Whether the application found a valid config store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u32)]
pub enum StoreStatus {
    /// The store decoded and its digest matched this chip.
    Provisioned = 0,
    /// No valid store: the device is unprovisioned.
    Unprovisioned = 1,
}

/// The application's self-test report, in the mailbox and (as text) on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTestReport {
    /// The nonce of the request the device found at boot (0 when there was none).
    pub nonce: u32,
    /// What the update client did at this boot.
    pub update_status: UpdateStatus,
    /// Whether the store was readable.
    pub store_status: StoreStatus,
    /// The version now running (zeros when unknown).
    pub running_version: SemanticVersion,
    /// `mbed.VendorId` as read by the application.
    pub vendor_id: [u8; 16],
    /// `mbed.ClassId` as read by the application.
    pub class_id: [u8; 16],
    /// `imprint.DeviceId` as read by the application.
    pub device_id: [u8; 16],
    /// Fingerprint of the update certificate found through `mbed.UpdateAuthCert`.
    pub certificate_fingerprint: [u8; 32],
    /// `mbed.SerialNumber` as read by the application.
    pub serial_number: String,
}

impl SelfTestReport {
    /// Encodes the report area (224 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; REPORT_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&REPORT_MAGIC);
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.nonce.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.update_status.code().to_le_bytes());
        bytes[16..20].copy_from_slice(&(self.store_status as u32).to_le_bytes());
        bytes[20..24].copy_from_slice(&self.running_version.major.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.running_version.minor.to_le_bytes());
        bytes[28..32].copy_from_slice(&self.running_version.patch.to_le_bytes());
        bytes[32..48].copy_from_slice(&self.vendor_id);
        bytes[48..64].copy_from_slice(&self.class_id);
        bytes[64..80].copy_from_slice(&self.device_id);
        bytes[80..112].copy_from_slice(&self.certificate_fingerprint);
        let serial = self.serial_number.as_bytes();
        let serial_length = serial.len().min(REPORT_SERIAL_CAPACITY_BYTES);
        bytes[112..116].copy_from_slice(&(serial_length as u32).to_le_bytes());
        bytes[116..116 + serial_length].copy_from_slice(&serial[..serial_length]);
        bytes
    }

    /// Decodes the report area of a mailbox read back by the station; `None` when no report has
    /// been written yet (or the bytes are not a report).
    pub fn decode_mailbox(mailbox: &[u8]) -> Option<SelfTestReport> {
        let bytes = mailbox.get(REPORT_OFFSET_BYTES..REPORT_OFFSET_BYTES + REPORT_SIZE_BYTES)?;
        if bytes[0..4] != REPORT_MAGIC || read_u16(bytes, 4) != 1 {
            return None;
        }
        let serial_length = (read_u32(bytes, 112) as usize).min(REPORT_SERIAL_CAPACITY_BYTES);
        Some(SelfTestReport {
            nonce: read_u32(bytes, 8),
            update_status: UpdateStatus::from_code(read_u32(bytes, 12))?,
            store_status: match read_u32(bytes, 16) {
                0 => StoreStatus::Provisioned,
                1 => StoreStatus::Unprovisioned,
                _ => return None,
            },
            running_version: SemanticVersion {
                major: read_u32(bytes, 20),
                minor: read_u32(bytes, 24),
                patch: read_u32(bytes, 28),
            },
            vendor_id: bytes[32..48].try_into().ok()?,
            class_id: bytes[48..64].try_into().ok()?,
            device_id: bytes[64..80].try_into().ok()?,
            certificate_fingerprint: bytes[80..112].try_into().ok()?,
            serial_number: String::from_utf8_lossy(&bytes[116..116 + serial_length]).into_owned(),
        })
    }

    /// Parses the console form written by [`SelfTestReport::console_line`]; `None` for any other
    /// line (the console carries ordinary log output too).
    pub fn parse_console_line(line: &str) -> Option<SelfTestReport> {
        let fields = line.trim().strip_prefix("IMPRINT-REPORT ")?;
        let mut report = SelfTestReport {
            nonce: 0,
            update_status: UpdateStatus::NoCandidate,
            store_status: StoreStatus::Unprovisioned,
            running_version: SemanticVersion { major: 0, minor: 0, patch: 0 },
            vendor_id: [0; 16],
            class_id: [0; 16],
            device_id: [0; 16],
            certificate_fingerprint: [0; 32],
            serial_number: String::new(),
        };
        for field in fields.split(' ') {
            let (key, value) = field.split_once('=')?;
            match key {
                "nonce" => report.nonce = u32::from_str_radix(value, 16).ok()?,
                "update" => {
                    let code = u32::from_str_radix(value.trim_start_matches("0x"), 16).ok()?;
                    report.update_status = UpdateStatus::from_code(code)?;
                }
                "store" => {
                    report.store_status = match value {
                        "0" => StoreStatus::Provisioned,
                        "1" => StoreStatus::Unprovisioned,
                        _ => return None,
                    }
                }
                // 0.0.0 ("unknown") is not a valid manifest version, so it is matched by hand.
                "version" if value == "0.0.0" => {}
                "version" => report.running_version = value.parse().ok()?,
                "vendor" => report.vendor_id = decode_hex_array(value)?,
                "class" => report.class_id = decode_hex_array(value)?,
                "device" => report.device_id = decode_hex_array(value)?,
                "cert" => report.certificate_fingerprint = decode_hex_array(value)?,
                "serial" => report.serial_number = value.to_string(),
                _ => {}
            }
        }
        Some(report)
    }

    /// The one-line console form, `IMPRINT-REPORT key=value ...`, that the firmware prints on
    /// its UART; the station can parse it when the profile reads reports from the console.
    pub fn console_line(&self) -> String {
        format!(
            "IMPRINT-REPORT nonce={:08x} update={:#04x} store={} version={} vendor={} class={} device={} cert={} serial={}",
            self.nonce,
            self.update_status.code(),
            self.store_status as u32,
            self.running_version,
            hex::encode(self.vendor_id),
            hex::encode(self.class_id),
            hex::encode(self.device_id),
            hex::encode(self.certificate_fingerprint),
            self.serial_number
        )
    }
}

/// Size of the mailbox a profile with a device identity needs: the request, the report, the
/// identity parameters and the identity response (section 6 of the contract).
pub const IDENTITY_MAILBOX_SIZE_BYTES: usize = 1024;
/// Offset of the identity parameters the station writes with an identity request.
pub const IDENTITY_PARAMETERS_OFFSET_BYTES: usize = MAILBOX_SIZE_BYTES;
/// Size of the identity parameter area.
pub const IDENTITY_PARAMETERS_SIZE_BYTES: usize = 96;
/// Offset of the device's identity response.
pub const IDENTITY_RESPONSE_OFFSET_BYTES: usize =
    IDENTITY_PARAMETERS_OFFSET_BYTES + IDENTITY_PARAMETERS_SIZE_BYTES;
/// Size of the identity response header; its data follows.
pub const IDENTITY_RESPONSE_HEADER_SIZE_BYTES: usize = 24;
/// The most data an identity response carries (a CSR, a signature).
pub const IDENTITY_RESPONSE_DATA_CAPACITY_BYTES: usize =
    IDENTITY_MAILBOX_SIZE_BYTES - IDENTITY_RESPONSE_OFFSET_BYTES - IDENTITY_RESPONSE_HEADER_SIZE_BYTES;
/// Magic of the device's identity response ("IMPI").
pub const IDENTITY_RESPONSE_MAGIC: [u8; 4] = *b"IMPI";
/// The longest subject common name a make-key request carries (X.520 ub-common-name).
pub const IDENTITY_SUBJECT_CAPACITY_BYTES: usize = 64;
/// Size of the station's challenge.
pub const IDENTITY_CHALLENGE_SIZE_BYTES: usize = 32;
/// Size of a challenge signature: ECDSA P-256 `r || s`.
pub const IDENTITY_SIGNATURE_SIZE_BYTES: usize = 64;
/// What the device signs is `SHA-256(IDENTITY_CHALLENGE_DOMAIN || challenge)`, never the bare
/// challenge: the prefix keeps the mailbox from being an oracle that signs any digest (a TLS
/// handshake hash, say) with the device's identity key.
pub const IDENTITY_CHALLENGE_DOMAIN: &[u8] = b"IMPRINT-IDENTITY-CHALLENGE-V1";

/// Request command code: the self-test report only (the request's zero reserved bytes).
pub const COMMAND_SELF_TEST: u32 = 0;
/// Request command code: make a key pair and answer with a CSR.
pub const COMMAND_MAKE_KEY_AND_CSR: u32 = 1;
/// Request command code: sign the station's challenge with the identity key.
pub const COMMAND_SIGN_CHALLENGE: u32 = 2;

/// What the station asks the device to do with its identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityCommand {
    /// Make a P-256 key pair, keep the private key where the station never writes (section 6.3),
    /// and answer with a PKCS#10 CSR (DER) whose subject is `CN=<subject_common_name>`.
    MakeKeyAndCsr {
        /// The common name the station will put into the certificate.
        subject_common_name: String,
    },
    /// Sign `SHA-256(IDENTITY_CHALLENGE_DOMAIN || challenge)` with the identity key and answer
    /// with the raw `r || s` signature.
    SignChallenge {
        /// Fresh random bytes from the station.
        challenge: [u8; IDENTITY_CHALLENGE_SIZE_BYTES],
    },
}

impl IdentityCommand {
    /// The command code in the request.
    pub fn code(&self) -> u32 {
        match self {
            IdentityCommand::MakeKeyAndCsr { .. } => COMMAND_MAKE_KEY_AND_CSR,
            IdentityCommand::SignChallenge { .. } => COMMAND_SIGN_CHALLENGE,
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            IdentityCommand::MakeKeyAndCsr { .. } => "make-key-and-csr",
            IdentityCommand::SignChallenge { .. } => "sign-challenge",
        }
    }
}

/// An identity request: the mailbox request with a command code, plus its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMailboxRequest {
    /// Random per reset; the response must echo it.
    pub nonce: u32,
    /// What to do.
    pub command: IdentityCommand,
}

impl IdentityMailboxRequest {
    /// The whole mailbox image to write ([`IDENTITY_MAILBOX_SIZE_BYTES`]): the request with its
    /// command code, a zeroed report area, the parameters, a zeroed response area.
    pub fn encode_mailbox(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; IDENTITY_MAILBOX_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&REQUEST_MAGIC);
        bytes[4..8].copy_from_slice(&self.nonce.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.command.code().to_le_bytes());
        let parameters = &mut bytes[IDENTITY_PARAMETERS_OFFSET_BYTES..IDENTITY_RESPONSE_OFFSET_BYTES];
        match &self.command {
            IdentityCommand::MakeKeyAndCsr { subject_common_name } => {
                // Longer names are cut here and refused by the device as bad parameters; the
                // profile check keeps names within the capacity.
                let name = subject_common_name.as_bytes();
                let length = name.len().min(IDENTITY_PARAMETERS_SIZE_BYTES - 4);
                parameters[0..4].copy_from_slice(&(name.len() as u32).to_le_bytes());
                parameters[4..4 + length].copy_from_slice(&name[..length]);
            }
            IdentityCommand::SignChallenge { challenge } => {
                parameters[..IDENTITY_CHALLENGE_SIZE_BYTES].copy_from_slice(challenge);
            }
        }
        bytes
    }

    /// Reads the identity request a device finds in its mailbox at boot: `None` when there is
    /// none (no request magic, or command 0), `Some(Err(response))` with the refusal to write
    /// back when the command is unknown or its parameters are invalid.
    pub fn decode(mailbox: &[u8]) -> Option<Result<IdentityMailboxRequest, IdentityResponse>> {
        if mailbox.len() < 12 || mailbox[0..4] != REQUEST_MAGIC {
            return None;
        }
        let nonce = read_u32(mailbox, 4);
        let command_code = read_u32(mailbox, 8);
        if command_code == COMMAND_SELF_TEST {
            return None;
        }
        let refuse = |status| Some(Err(IdentityResponse::refusal(nonce, command_code, status)));
        let Some(parameters) = mailbox.get(IDENTITY_PARAMETERS_OFFSET_BYTES..IDENTITY_RESPONSE_OFFSET_BYTES)
        else {
            return refuse(IdentityStatus::BadParameters);
        };
        let command = match command_code {
            COMMAND_MAKE_KEY_AND_CSR => {
                let length = read_u32(parameters, 0) as usize;
                if length == 0 || length > IDENTITY_SUBJECT_CAPACITY_BYTES {
                    return refuse(IdentityStatus::BadParameters);
                }
                match std::str::from_utf8(&parameters[4..4 + length]) {
                    Ok(name) => IdentityCommand::MakeKeyAndCsr { subject_common_name: name.to_string() },
                    Err(_) => return refuse(IdentityStatus::BadParameters),
                }
            }
            COMMAND_SIGN_CHALLENGE => {
                let mut challenge = [0u8; IDENTITY_CHALLENGE_SIZE_BYTES];
                challenge.copy_from_slice(&parameters[..IDENTITY_CHALLENGE_SIZE_BYTES]);
                IdentityCommand::SignChallenge { challenge }
            }
            _ => return refuse(IdentityStatus::UnsupportedCommand),
        };
        Some(Ok(IdentityMailboxRequest { nonce, command }))
    }
}

/// How the device answered an identity request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u32)]
pub enum IdentityStatus {
    /// Done; the data is the CSR or the signature.
    Done = 0,
    /// The firmware does not implement this command.
    UnsupportedCommand = 1,
    /// The parameters are invalid (subject name empty, too long, not UTF-8).
    BadParameters = 2,
    /// The device has no entropy source to make a key with.
    NoEntropy = 3,
    /// The device has no identity key (none in the store, none of its own).
    NoKey = 4,
    /// The device could not store its new private key.
    KeyStorageFailed = 5,
}

impl IdentityStatus {
    /// Every status, for decoding.
    pub const ALL: [IdentityStatus; 6] = [
        Self::Done,
        Self::UnsupportedCommand,
        Self::BadParameters,
        Self::NoEntropy,
        Self::NoKey,
        Self::KeyStorageFailed,
    ];

    /// The numeric code in the response.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Decodes a status code.
    pub fn from_code(code: u32) -> Option<IdentityStatus> {
        Self::ALL.into_iter().find(|status| status.code() == code)
    }

    /// What the status means, for operator messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::UnsupportedCommand => "the firmware does not implement this identity command",
            Self::BadParameters => "the request's parameters are invalid",
            Self::NoEntropy => "the device has no entropy source to make a key with",
            Self::NoKey => "the device has no identity key",
            Self::KeyStorageFailed => "the device could not store its new private key",
        }
    }
}

/// The device's answer to an identity request (mailbox offset
/// [`IDENTITY_RESPONSE_OFFSET_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityResponse {
    /// The request's nonce.
    pub nonce: u32,
    /// The request's command code.
    pub command_code: u32,
    /// The outcome.
    pub status: IdentityStatus,
    /// The CSR (DER) or the `r || s` signature; empty on refusal.
    pub data: Vec<u8>,
}

impl IdentityResponse {
    /// A refusal without data.
    pub fn refusal(nonce: u32, command_code: u32, status: IdentityStatus) -> IdentityResponse {
        IdentityResponse { nonce, command_code, status, data: Vec::new() }
    }

    /// Encodes the response area; `None` when the data exceeds
    /// [`IDENTITY_RESPONSE_DATA_CAPACITY_BYTES`].
    pub fn encode(&self) -> Option<Vec<u8>> {
        if self.data.len() > IDENTITY_RESPONSE_DATA_CAPACITY_BYTES {
            return None;
        }
        let mut bytes = vec![0u8; IDENTITY_RESPONSE_HEADER_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&IDENTITY_RESPONSE_MAGIC);
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.nonce.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.command_code.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.status.code().to_le_bytes());
        bytes[20..24].copy_from_slice(&(self.data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&self.data);
        Some(bytes)
    }

    /// Decodes the response area of a mailbox read back by the station; `None` when no response
    /// has been written (or the bytes are not one: wrong magic or version, unknown status, a
    /// data length past the mailbox).
    pub fn decode_mailbox(mailbox: &[u8]) -> Option<IdentityResponse> {
        let bytes = mailbox.get(IDENTITY_RESPONSE_OFFSET_BYTES..)?;
        if bytes.len() < IDENTITY_RESPONSE_HEADER_SIZE_BYTES
            || bytes[0..4] != IDENTITY_RESPONSE_MAGIC
            || read_u16(bytes, 4) != 1
        {
            return None;
        }
        let data_length = read_u32(bytes, 20) as usize;
        if data_length > IDENTITY_RESPONSE_DATA_CAPACITY_BYTES {
            return None;
        }
        let data = bytes
            .get(IDENTITY_RESPONSE_HEADER_SIZE_BYTES..IDENTITY_RESPONSE_HEADER_SIZE_BYTES + data_length)?;
        Some(IdentityResponse {
            nonce: read_u32(bytes, 8),
            command_code: read_u32(bytes, 12),
            status: IdentityStatus::from_code(read_u32(bytes, 16))?,
            data: data.to_vec(),
        })
    }
}

/// The digest the device signs for a challenge: `SHA-256(IDENTITY_CHALLENGE_DOMAIN || challenge)`.
pub fn identity_challenge_digest(challenge: &[u8; IDENTITY_CHALLENGE_SIZE_BYTES]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(IDENTITY_CHALLENGE_DOMAIN);
    hasher.update(challenge);
    hasher.finalize().into()
}

/// Pads `data` with `fill` up to a multiple of `alignment` (flash writes are whole units of the
/// write alignment; padding uses the erased value so it programs nothing).
pub fn pad_to_alignment(data: &[u8], alignment: usize, fill: u8) -> Vec<u8> {
    let mut padded = data.to_vec();
    padded.resize(data.len().next_multiple_of(alignment.max(1)), fill);
    padded
}

fn decode_hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex::decode(text).ok()?.try_into().ok()
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `command`, decodes it as the device would, and answers it; the station must read
    /// back exactly the answer.
    fn check(command: IdentityCommand, answer_status: IdentityStatus, answer_data: &[u8]) {
        let request = IdentityMailboxRequest { nonce: 0x1234_5679, command };
        let mut mailbox = request.encode_mailbox();
        assert_eq!(mailbox.len(), IDENTITY_MAILBOX_SIZE_BYTES);
        // The self-test request decoder still sees the nonce; the identity decoder the command.
        assert_eq!(MailboxRequest::decode(&mailbox), Some(MailboxRequest { nonce: request.nonce }));
        let decoded = IdentityMailboxRequest::decode(&mailbox).expect("an identity request").expect("valid");
        assert_eq!(decoded, request);
        assert_eq!(IdentityResponse::decode_mailbox(&mailbox), None, "no response before the device answers");
        let response = IdentityResponse {
            nonce: decoded.nonce,
            command_code: decoded.command.code(),
            status: answer_status,
            data: answer_data.to_vec(),
        };
        let encoded = response.encode().expect("fits");
        mailbox[IDENTITY_RESPONSE_OFFSET_BYTES..IDENTITY_RESPONSE_OFFSET_BYTES + encoded.len()]
            .copy_from_slice(&encoded);
        assert_eq!(IdentityResponse::decode_mailbox(&mailbox), Some(response));
    }

    #[test]
    fn identity_requests_and_responses_round_trip() {
        check(
            IdentityCommand::MakeKeyAndCsr { subject_common_name: "DS1-000001".to_string() },
            IdentityStatus::Done,
            &[0x30; 300],
        );
        check(IdentityCommand::SignChallenge { challenge: [7; 32] }, IdentityStatus::Done, &[1; 64]);
        check(IdentityCommand::SignChallenge { challenge: [0; 32] }, IdentityStatus::NoKey, &[]);
        check(
            IdentityCommand::MakeKeyAndCsr { subject_common_name: "x".repeat(64) },
            IdentityStatus::Done,
            &vec![0xAB; IDENTITY_RESPONSE_DATA_CAPACITY_BYTES],
        );
        let too_much = IdentityResponse {
            nonce: 1,
            command_code: COMMAND_SIGN_CHALLENGE,
            status: IdentityStatus::Done,
            data: vec![0; IDENTITY_RESPONSE_DATA_CAPACITY_BYTES + 1],
        };
        assert_eq!(too_much.encode(), None);
    }

    #[test]
    fn bad_identity_requests_are_refused_with_a_status() {
        let refusal = |mailbox: &[u8]| match IdentityMailboxRequest::decode(mailbox) {
            Some(Err(response)) => Some(response.status),
            _ => None,
        };
        let mut unknown = MailboxRequest { nonce: 5 }.encode_mailbox();
        unknown.resize(IDENTITY_MAILBOX_SIZE_BYTES, 0);
        assert_eq!(IdentityMailboxRequest::decode(&unknown), None, "command 0 is the self-test");
        unknown[8] = 9;
        assert_eq!(refusal(&unknown), Some(IdentityStatus::UnsupportedCommand));
        let long_name = IdentityMailboxRequest {
            nonce: 5,
            command: IdentityCommand::MakeKeyAndCsr { subject_common_name: "y".repeat(65) },
        };
        assert_eq!(refusal(&long_name.encode_mailbox()), Some(IdentityStatus::BadParameters));
        let mut empty_name = long_name.encode_mailbox();
        empty_name[IDENTITY_PARAMETERS_OFFSET_BYTES..IDENTITY_PARAMETERS_OFFSET_BYTES + 4].fill(0);
        assert_eq!(refusal(&empty_name), Some(IdentityStatus::BadParameters));
        // A mailbox too small for the parameters: the device answers as best it can.
        let short = &long_name.encode_mailbox()[..MAILBOX_SIZE_BYTES];
        assert_eq!(refusal(short), Some(IdentityStatus::BadParameters));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// The device decodes whatever RAM holds, and the station whatever the device wrote:
        /// neither decoder may panic or read past the mailbox.
        #[test]
        fn identity_decoders_never_panic(
            mailbox in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1100),
            command in 0u32..4,
            name_length in 0u32..200,
        ) {
            let _ = IdentityMailboxRequest::decode(&mailbox);
            let _ = IdentityResponse::decode_mailbox(&mailbox);
            // The same bytes with a request header and a plausible command and name length.
            let mut shaped = mailbox.clone();
            shaped.resize(shaped.len().max(IDENTITY_RESPONSE_OFFSET_BYTES + 24), 0);
            shaped[0..4].copy_from_slice(&REQUEST_MAGIC);
            shaped[8..12].copy_from_slice(&command.to_le_bytes());
            shaped[IDENTITY_PARAMETERS_OFFSET_BYTES..IDENTITY_PARAMETERS_OFFSET_BYTES + 4]
                .copy_from_slice(&name_length.to_le_bytes());
            shaped[IDENTITY_RESPONSE_OFFSET_BYTES..IDENTITY_RESPONSE_OFFSET_BYTES + 4]
                .copy_from_slice(&IDENTITY_RESPONSE_MAGIC);
            shaped[IDENTITY_RESPONSE_OFFSET_BYTES + 4] = 1;
            shaped[IDENTITY_RESPONSE_OFFSET_BYTES + 5] = 0;
            let _ = IdentityMailboxRequest::decode(&shaped);
            let _ = IdentityResponse::decode_mailbox(&shaped);
            let _ = crate::trust::verify_certificate_request(&mailbox);
        }
    }

    #[test]
    fn the_challenge_digest_is_domain_separated() {
        let challenge = [0x5A; 32];
        let mut message = IDENTITY_CHALLENGE_DOMAIN.to_vec();
        message.extend_from_slice(&challenge);
        let expected: [u8; 32] = Sha256::digest(&message).into();
        assert_eq!(identity_challenge_digest(&challenge), expected);
        assert_ne!(identity_challenge_digest(&challenge), <[u8; 32]>::from(Sha256::digest(challenge)));
    }
}
