//! The byte formats of `docs/device-contract.md` that are not the store: reason codes
//! (section 3.3), the candidate header (3.1), the boot-state record (4), the mailbox request and
//! report (5) and the console line (5.3). Mirrors the station's `src/contract.rs`.

use core::fmt::Write;

use crate::store::{read_u16, read_u32};
use crate::version::Version;

/// What the update client did with the candidate slot (contract section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum UpdateStatus {
    /// The header is erased: nothing staged.
    NoCandidate = 0x00,
    /// Every check passed; the payload was installed.
    Installed = 0x01,
    /// The magic or header version is wrong.
    CandidateGarbage = 0x10,
    /// M or D runs past the slot, or the manifest is not valid DER v3.
    ManifestMalformed = 0x11,
    /// The config store fails its digest.
    StoreUnprovisioned = 0x12,
    /// No usable ECDSA P-256 certificate through `mbed.UpdateAuthCert`.
    CertificateMissing = 0x13,
    /// The manifest signature does not verify with the trusted key.
    SignatureInvalid = 0x14,
    /// `vendor-id` differs from `mbed.VendorId`.
    VendorIdMismatch = 0x15,
    /// `class-id` differs from `mbed.ClassId`.
    ClassIdMismatch = 0x16,
    /// P differs from `payload-size`, or the payload runs past the slot.
    PayloadSizeMismatch = 0x17,
    /// SHA-256 of the payload differs from `payload-digest`.
    PayloadDigestMismatch = 0x18,
    /// `payload-size` exceeds the application slot.
    PayloadTooLarge = 0x19,
    /// `payload-version` is not newer than the installed version.
    VersionRollback = 0x1A,
    /// `payload-format` is not raw-binary.
    PayloadFormatUnsupported = 0x1B,
    /// `installed-signature` does not verify over the payload digest.
    InstalledSignatureInvalid = 0x1C,
    /// The stored certificate is a CA and the candidate carries no delegated certificate.
    DelegateMissing = 0x1D,
    /// The delegated certificate does not chain to the stored CA.
    DelegateUntrusted = 0x1E,
    /// A v1 signature block names a certificate that is not the stored `mbed.UpdateAuthCert`.
    CertificateUnknown = 0x1F,
    /// A newer v1 timestamp that stands for no `MAJOR.MINOR.PATCH` version.
    TimestampNotSemantic = 0x20,
}

impl UpdateStatus {
    /// The numeric reason code.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// Candidate magic ("IMPC").
pub const CANDIDATE_MAGIC: [u8; 4] = *b"IMPC";
/// Candidate header size.
pub const CANDIDATE_HEADER_SIZE_BYTES: usize = 24;
/// Boot-state magic ("IMPB").
pub const BOOT_STATE_MAGIC: [u8; 4] = *b"IMPB";
/// Boot-state record size as read (the station's constant; the record's fields end at 52).
pub const BOOT_STATE_SIZE_BYTES: usize = 56;
/// Bytes of the record the bootloader programs (magic, version, size, digest); the rest of the
/// sector stays erased, as the station's reference implementation leaves it.
pub const BOOT_STATE_ENCODED_SIZE_BYTES: usize = 52;
/// Request magic ("IMPQ").
pub const REQUEST_MAGIC: [u8; 4] = *b"IMPQ";
/// Report magic ("IMPR").
pub const REPORT_MAGIC: [u8; 4] = *b"IMPR";
/// Offset of the report in the mailbox.
pub const REPORT_OFFSET_BYTES: usize = 32;
/// Size of the report.
pub const REPORT_SIZE_BYTES: usize = 224;
/// The largest serial number a report carries.
pub const REPORT_SERIAL_CAPACITY_BYTES: usize = 64;

/// The candidate header's three lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateHeader {
    /// M: DER manifest length.
    pub manifest_size_bytes: u32,
    /// D: delegated certificate length (0 when none).
    pub delegate_certificate_size_bytes: u32,
    /// P: payload length.
    pub payload_size_bytes: u32,
}

/// The boot-state record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    /// Version of the installed application.
    pub installed_version: Version,
    /// Size of the installed payload.
    pub installed_size_bytes: u32,
    /// SHA-256 of the installed payload.
    pub installed_digest: [u8; 32],
}

impl BootState {
    /// Encodes the record (52 bytes, already a multiple of the write alignment).
    pub fn encode(&self) -> [u8; BOOT_STATE_ENCODED_SIZE_BYTES] {
        let mut bytes = [0u8; BOOT_STATE_ENCODED_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&BOOT_STATE_MAGIC);
        bytes[4..8].copy_from_slice(&self.installed_version.major.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.installed_version.minor.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.installed_version.patch.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.installed_size_bytes.to_le_bytes());
        bytes[20..52].copy_from_slice(&self.installed_digest);
        bytes
    }

    /// Decodes the record; `None` when the magic is absent (erased sector).
    pub fn decode(bytes: &[u8]) -> Option<BootState> {
        if bytes.len() < BOOT_STATE_SIZE_BYTES || bytes[0..4] != BOOT_STATE_MAGIC {
            return None;
        }
        Some(BootState {
            installed_version: Version {
                major: read_u32(bytes, 4),
                minor: read_u32(bytes, 8),
                patch: read_u32(bytes, 12),
            },
            installed_size_bytes: read_u32(bytes, 16),
            installed_digest: bytes[20..52].try_into().ok()?,
        })
    }
}

/// The nonce of the station's request in `mailbox`, 0 when there is none.
pub fn request_nonce(mailbox: &[u8]) -> u32 {
    if mailbox.len() < 8 || mailbox[0..4] != REQUEST_MAGIC {
        return 0;
    }
    read_u32(mailbox, 4)
}

/// The installed version: the boot state's when its magic is present, else the store's
/// `imprint.FactoryAppVersion` (contract section 4); `None` when neither is known.
pub fn installed_version(
    boot_state_bytes: &[u8],
    store: Option<&crate::store::ConfigStore>,
) -> Option<Version> {
    if let Some(boot_state) = BootState::decode(boot_state_bytes) {
        return Some(boot_state.installed_version);
    }
    let text = store?.text(crate::store::keys::FACTORY_APP_VERSION)?;
    Version::parse(text.as_bytes())
}

/// The application's self-test report (contract section 5.2).
#[derive(Debug, Clone, Copy)]
pub struct SelfTestReport<'a> {
    /// Nonce of the request found at boot.
    pub nonce: u32,
    /// The update client's reason code at this boot.
    pub update_status: u32,
    /// 0 provisioned, 1 unprovisioned.
    pub store_status: u32,
    /// The running version (zeros when unknown).
    pub running_version: Version,
    /// `mbed.VendorId`.
    pub vendor_id: [u8; 16],
    /// `mbed.ClassId`.
    pub class_id: [u8; 16],
    /// `imprint.DeviceId`.
    pub device_id: [u8; 16],
    /// Fingerprint found through `mbed.UpdateAuthCert`.
    pub certificate_fingerprint: [u8; 32],
    /// `mbed.SerialNumber` (the report area keeps at most 64 bytes; the console line all).
    pub serial_number: &'a str,
}

impl SelfTestReport<'_> {
    /// Encodes the 224-byte report area.
    pub fn encode(&self) -> [u8; REPORT_SIZE_BYTES] {
        let mut bytes = [0u8; REPORT_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&REPORT_MAGIC);
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.nonce.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.update_status.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.store_status.to_le_bytes());
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

    /// Writes the console form (contract section 5.3), without the line end.
    pub fn write_console_line(&self, out: &mut impl Write) -> core::fmt::Result {
        write!(
            out,
            "IMPRINT-REPORT nonce={:08x} update={:#04x} store={} version={}.{}.{} vendor=",
            self.nonce,
            self.update_status,
            self.store_status,
            self.running_version.major,
            self.running_version.minor,
            self.running_version.patch
        )?;
        crate::console::write_hex(out, &self.vendor_id)?;
        out.write_str(" class=")?;
        crate::console::write_hex(out, &self.class_id)?;
        out.write_str(" device=")?;
        crate::console::write_hex(out, &self.device_id)?;
        out.write_str(" cert=")?;
        crate::console::write_hex(out, &self.certificate_fingerprint)?;
        write!(out, " serial={}", self.serial_number)
    }
}

/// Reads the candidate header; `Err(status)` for a refusal, `Ok(None)` for no candidate.
pub fn candidate_header(slot: &[u8], erased_value: u8) -> Result<Option<CandidateHeader>, UpdateStatus> {
    if slot.len() < CANDIDATE_HEADER_SIZE_BYTES
        || slot[..CANDIDATE_HEADER_SIZE_BYTES].iter().all(|byte| *byte == erased_value)
    {
        return Ok(None);
    }
    if slot[0..4] != CANDIDATE_MAGIC || read_u16(slot, 4) != 1 {
        return Err(UpdateStatus::CandidateGarbage);
    }
    Ok(Some(CandidateHeader {
        manifest_size_bytes: read_u32(slot, 8),
        delegate_certificate_size_bytes: read_u32(slot, 12),
        payload_size_bytes: read_u32(slot, 16),
    }))
}
