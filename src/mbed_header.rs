//! mbed-bootloader metadata headers, version 2, as update-client-hub's metadata-header module
//! (`arm_uc_metadata_header_v2.c`) writes and checks them.
//!
//! - The **internal** header (112 bytes) sits in front of the active application; the bootloader
//!   boots only an application whose header's CRC-32 is right and whose SHA-256 matches.
//! - The **external** header (296 bytes) sits in front of a candidate on update storage (a block
//!   device); it is authenticated by an HMAC-SHA256 keyed from the device's root of trust.
//!
//! Layout (all integers big-endian; unnamed bytes zero):
//!
//! ```text
//! internal  0 magic 0x5a51b3d4 | 4 version 2 | 8 firmware version u64 | 16 firmware size u64
//!          24 hash[64] (SHA-256 in the first 32) | 88 campaign[16] | 104 signature size u32
//!         108 CRC-32 (IEEE, reflected) over bytes 0..108
//! external  0 magic | 4 version 2 | 8 firmware version | 16 firmware size | 24 firmware hash[64]
//!          88 payload size u64 | 96 payload hash[64] | 160 campaign[16] | 176 transformation mode u32
//!         180 cipher key[32] | 212 init vector[16] | 228 signature size u32
//!         232 HMAC[64]: HMAC-SHA256(device key, bytes 0..232) in the first 32 (the only part checked)
//! device key = HMAC-SHA256(key = RoT (16 bytes), message = "StorageEnc256HMACSHA256SIGNATURE")
//! ```
//!
//! The hub's parser checks only the CRC (internal) or the HMAC (external); decoding here also
//! insists on the magic and version 2, which the bootloader reads to pick the parser.
//! **Invariant:** pure functions, no I/O; the root of trust is never printed (`Debug` redacts it).

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// `headerMagic` of both v2 headers.
pub const HEADER_MAGIC: u32 = 0x5a51_b3d4;
/// `headerVersion` of both headers.
pub const HEADER_VERSION_V2: u32 = 2;
/// Size of the internal (active application) header.
pub const INTERNAL_HEADER_SIZE_BYTES: usize = 112;
/// Size of the external (update storage) header.
pub const EXTERNAL_HEADER_SIZE_BYTES: usize = 296;
/// The message the device key is derived with (`ARM_UC_DEVICE_HMAC_KEY`).
pub const DEVICE_KEY_DERIVATION_MESSAGE: &[u8] = b"StorageEnc256HMACSHA256SIGNATURE";

const FIRMWARE_VERSION_OFFSET: usize = 8;
const FIRMWARE_SIZE_OFFSET: usize = 16;
const FIRMWARE_HASH_OFFSET: usize = 24;
const INTERNAL_CAMPAIGN_OFFSET: usize = 88;
const INTERNAL_CRC_OFFSET: usize = 108;
const EXTERNAL_PAYLOAD_SIZE_OFFSET: usize = 88;
const EXTERNAL_PAYLOAD_HASH_OFFSET: usize = 96;
const EXTERNAL_CAMPAIGN_OFFSET: usize = 160;
/// Where the external header's HMAC starts; it covers every byte before it.
pub const EXTERNAL_HMAC_OFFSET: usize = 232;
/// How many HMAC bytes the device compares (a SHA-256 in a 64-byte field).
pub const EXTERNAL_HMAC_CHECKED_BYTES: usize = 32;
const SHA256_SIZE_BYTES: usize = 32;
const CAMPAIGN_SIZE_BYTES: usize = 16;

/// IEEE CRC-32 (reflected 0xEDB88320, init and final XOR 0xFFFFFFFF), as `arm_uc_crc32`.
const HEADER_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// What both headers describe: the firmware version, size, SHA-256 and update campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareDetails {
    /// Firmware version (for downloaded firmware the manifest timestamp).
    pub version: u64,
    /// Firmware size in bytes.
    pub size: u64,
    /// SHA-256 of the firmware.
    pub sha256: [u8; SHA256_SIZE_BYTES],
    /// The campaign that installed it (zero when none).
    pub campaign: [u8; CAMPAIGN_SIZE_BYTES],
}

/// A device's 16-byte root of trust. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RootOfTrust([u8; 16]);

impl RootOfTrust {
    /// Wraps 16 RoT bytes.
    pub fn new(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes, for the one place they go: into the device (a mailbox request, or the
    /// simulated device's own write-once storage). Never log or record them.
    pub fn expose_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The 256-bit device key the headers' HMAC uses: HMAC-SHA256(key = RoT, message =
    /// "StorageEnc256HMACSHA256SIGNATURE") (`ARM_UC_getDeviceKey256Bit`, default build).
    pub fn device_key(&self) -> [u8; 32] {
        let mut mac = hmac_sha256(&self.0);
        mac.update(DEVICE_KEY_DERIVATION_MESSAGE);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for RootOfTrust {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RootOfTrust(<redacted>)")
    }
}

fn hmac_sha256(key: &[u8]) -> hmac::Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Why a header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    #[error("{kind} header is {found} bytes: expected at least {expected}")]
    Short {
        /// `internal` or `external`.
        kind: &'static str,
        /// Bytes given.
        found: usize,
        /// Header size.
        expected: usize,
    },
    /// The CRC-32 at offset 108 does not match bytes 0..108.
    #[error("internal header CRC-32 is {found:#010x}, bytes 0..108 give {computed:#010x}")]
    BadCrc {
        /// The stored CRC.
        found: u32,
        /// The computed CRC.
        computed: u32,
    },
    /// The HMAC at offset 232 does not match (wrong RoT or changed bytes).
    #[error("external header HMAC does not match bytes 0..232 with this device's root of trust")]
    BadHmac,
    /// Magic or version is not the v2 header's.
    #[error(
        "{kind} header has magic {magic:#010x} version {version}: expected {HEADER_MAGIC:#010x} version {HEADER_VERSION_V2}"
    )]
    NotVersion2 {
        /// `internal` or `external`.
        kind: &'static str,
        /// The magic found.
        magic: u32,
        /// The version found.
        version: u32,
    },
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_be_bytes(word)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_be_bytes(word)
}

fn write_common(header: &mut [u8], details: &FirmwareDetails) {
    header[0..4].copy_from_slice(&HEADER_MAGIC.to_be_bytes());
    header[4..8].copy_from_slice(&HEADER_VERSION_V2.to_be_bytes());
    header[FIRMWARE_VERSION_OFFSET..FIRMWARE_VERSION_OFFSET + 8]
        .copy_from_slice(&details.version.to_be_bytes());
    header[FIRMWARE_SIZE_OFFSET..FIRMWARE_SIZE_OFFSET + 8].copy_from_slice(&details.size.to_be_bytes());
    header[FIRMWARE_HASH_OFFSET..FIRMWARE_HASH_OFFSET + SHA256_SIZE_BYTES].copy_from_slice(&details.sha256);
}

fn read_details(header: &[u8], campaign_offset: usize) -> FirmwareDetails {
    let mut sha256 = [0u8; SHA256_SIZE_BYTES];
    sha256.copy_from_slice(&header[FIRMWARE_HASH_OFFSET..FIRMWARE_HASH_OFFSET + SHA256_SIZE_BYTES]);
    let mut campaign = [0u8; CAMPAIGN_SIZE_BYTES];
    campaign.copy_from_slice(&header[campaign_offset..campaign_offset + CAMPAIGN_SIZE_BYTES]);
    FirmwareDetails {
        version: read_u64(header, FIRMWARE_VERSION_OFFSET),
        size: read_u64(header, FIRMWARE_SIZE_OFFSET),
        sha256,
        campaign,
    }
}

fn check_magic(kind: &'static str, header: &[u8]) -> Result<(), HeaderError> {
    let magic = read_u32(header, 0);
    let version = read_u32(header, 4);
    if magic != HEADER_MAGIC || version != HEADER_VERSION_V2 {
        return Err(HeaderError::NotVersion2 { kind, magic, version });
    }
    Ok(())
}

/// The internal header for `details` (`arm_uc_create_internal_header_v2`).
pub fn encode_internal_header(details: &FirmwareDetails) -> [u8; INTERNAL_HEADER_SIZE_BYTES] {
    let mut header = [0u8; INTERNAL_HEADER_SIZE_BYTES];
    write_common(&mut header, details);
    header[INTERNAL_CAMPAIGN_OFFSET..INTERNAL_CAMPAIGN_OFFSET + CAMPAIGN_SIZE_BYTES]
        .copy_from_slice(&details.campaign);
    let crc = HEADER_CRC.checksum(&header[..INTERNAL_CRC_OFFSET]);
    header[INTERNAL_CRC_OFFSET..].copy_from_slice(&crc.to_be_bytes());
    header
}

/// Checks and reads an internal header from the start of `bytes` (extra bytes, such as the
/// application after it, are ignored).
pub fn decode_internal_header(bytes: &[u8]) -> Result<FirmwareDetails, HeaderError> {
    let header = bytes.get(..INTERNAL_HEADER_SIZE_BYTES).ok_or(HeaderError::Short {
        kind: "internal",
        found: bytes.len(),
        expected: INTERNAL_HEADER_SIZE_BYTES,
    })?;
    let computed = HEADER_CRC.checksum(&header[..INTERNAL_CRC_OFFSET]);
    let found = read_u32(header, INTERNAL_CRC_OFFSET);
    if computed != found {
        return Err(HeaderError::BadCrc { found, computed });
    }
    check_magic("internal", header)?;
    Ok(read_details(header, INTERNAL_CAMPAIGN_OFFSET))
}

/// The external header for `details` on a device with `root_of_trust`
/// (`arm_uc_create_external_header_v2`: payload size and hash equal the firmware's).
pub fn encode_external_header(
    details: &FirmwareDetails,
    root_of_trust: &RootOfTrust,
) -> [u8; EXTERNAL_HEADER_SIZE_BYTES] {
    let mut header = [0u8; EXTERNAL_HEADER_SIZE_BYTES];
    write_common(&mut header, details);
    header[EXTERNAL_PAYLOAD_SIZE_OFFSET..EXTERNAL_PAYLOAD_SIZE_OFFSET + 8]
        .copy_from_slice(&details.size.to_be_bytes());
    header[EXTERNAL_PAYLOAD_HASH_OFFSET..EXTERNAL_PAYLOAD_HASH_OFFSET + SHA256_SIZE_BYTES]
        .copy_from_slice(&details.sha256);
    header[EXTERNAL_CAMPAIGN_OFFSET..EXTERNAL_CAMPAIGN_OFFSET + CAMPAIGN_SIZE_BYTES]
        .copy_from_slice(&details.campaign);
    let mut mac = hmac_sha256(&root_of_trust.device_key());
    mac.update(&header[..EXTERNAL_HMAC_OFFSET]);
    let tag = mac.finalize().into_bytes();
    header[EXTERNAL_HMAC_OFFSET..EXTERNAL_HMAC_OFFSET + EXTERNAL_HMAC_CHECKED_BYTES].copy_from_slice(&tag);
    header
}

/// Checks (HMAC, in constant time) and reads an external header from the start of `bytes`.
pub fn decode_external_header(
    bytes: &[u8],
    root_of_trust: &RootOfTrust,
) -> Result<FirmwareDetails, HeaderError> {
    let header = bytes.get(..EXTERNAL_HEADER_SIZE_BYTES).ok_or(HeaderError::Short {
        kind: "external",
        found: bytes.len(),
        expected: EXTERNAL_HEADER_SIZE_BYTES,
    })?;
    let mut mac = hmac_sha256(&root_of_trust.device_key());
    mac.update(&header[..EXTERNAL_HMAC_OFFSET]);
    mac.verify_slice(&header[EXTERNAL_HMAC_OFFSET..EXTERNAL_HMAC_OFFSET + EXTERNAL_HMAC_CHECKED_BYTES])
        .map_err(|_| HeaderError::BadHmac)?;
    check_magic("external", header)?;
    Ok(read_details(header, EXTERNAL_CAMPAIGN_OFFSET))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> FirmwareDetails {
        FirmwareDetails { version: 42, size: 1000, sha256: [0xa5; 32], campaign: [0x11; 16] }
    }

    #[test]
    fn internal_header_round_trips_and_every_checked_bit_matters() {
        let header = encode_internal_header(&details());
        assert_eq!(decode_internal_header(&header), Ok(details()));
        for bit in 0..INTERNAL_HEADER_SIZE_BYTES * 8 {
            let mut flipped = header;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_internal_header(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn external_header_needs_the_right_root_of_trust() {
        let rot = RootOfTrust::new([7; 16]);
        let header = encode_external_header(&details(), &rot);
        assert_eq!(decode_external_header(&header, &rot), Ok(details()));
        assert_eq!(decode_external_header(&header, &RootOfTrust::new([8; 16])), Err(HeaderError::BadHmac));
        assert_eq!(format!("{rot:?}"), "RootOfTrust(<redacted>)");
    }
}
