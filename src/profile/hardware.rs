//! What the profile says about the device's hardware beyond its memory map: which bootloader it
//! runs (the contract's own, or mbed-bootloader with its metadata headers) and whether the chip
//! has its own root of trust and random number generator (when not, the station injects them).
//! Plain, validated data (`[bootloader]`, `chip.hardware_root_of_trust`, `chip.trng`;
//! docs/profiles.md); the station and the simulated device read it.

use crate::image::FirmwareImage;
use crate::manifest::SemanticVersion;
use crate::mbed_header::{self, FirmwareDetails};

use super::FlashRegion;

/// The bootloader the device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootloaderKind {
    /// The device contract's bootloader: boots whatever the application slot holds.
    #[default]
    Imprint,
    /// mbed-bootloader: boots the application only when the 112-byte active header at
    /// `application_header_address` describes it (CRC-32, size, SHA-256).
    MbedBootloader {
        /// Where the header goes (`mbed-bootloader.application-header-address`).
        application_header_address: u64,
    },
}

impl BootloaderKind {
    /// The name in the profile.
    pub fn name(self) -> &'static str {
        match self {
            BootloaderKind::Imprint => "imprint",
            BootloaderKind::MbedBootloader { .. } => "mbed-bootloader",
        }
    }

    /// The active header's address, for mbed-bootloader.
    pub fn application_header_address(self) -> Option<u64> {
        match self {
            BootloaderKind::Imprint => None,
            BootloaderKind::MbedBootloader { application_header_address } => Some(application_header_address),
        }
    }
}

/// The device's hardware as far as provisioning cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceHardware {
    /// The bootloader and what it checks.
    pub bootloader: BootloaderKind,
    /// The chip has a hardware root of trust (`chip.hardware_root_of_trust`, default true).
    pub has_hardware_root_of_trust: bool,
    /// The chip has a true random number generator (`chip.trng`, default true).
    pub has_trng: bool,
}

impl Default for DeviceHardware {
    fn default() -> Self {
        DeviceHardware {
            bootloader: BootloaderKind::Imprint,
            has_hardware_root_of_trust: true,
            has_trng: true,
        }
    }
}

impl DeviceHardware {
    /// Whether the station injects anything into the device's write-once storage.
    pub fn needs_injection(&self) -> bool {
        !self.has_hardware_root_of_trust || !self.has_trng
    }
}

/// The firmware version an mbed-bootloader header carries for an application version: the v1
/// manifest timestamp manifest-tool's `--fw-migrate-ver` gives the same version, so the update
/// client's rollback check compares like with like.
pub fn header_firmware_version(version: SemanticVersion) -> u64 {
    crate::manifest::v1::semantic_version_timestamp(version)
}

/// The application as mbed-bootloader sees it: the bytes of the application slot from its start
/// to the image's end (gaps filled with the erased value), and the active header describing them.
pub fn application_header(
    image: &FirmwareImage,
    region: &FlashRegion,
    version: SemanticVersion,
) -> [u8; mbed_header::INTERNAL_HEADER_SIZE_BYTES] {
    let firmware = application_firmware_bytes(image, region);
    mbed_header::encode_internal_header(&firmware_details(&firmware, header_firmware_version(version)))
}

/// The details a header gives for `firmware` at `version`.
pub fn firmware_details(firmware: &[u8], version: u64) -> FirmwareDetails {
    use sha2::Digest;
    FirmwareDetails {
        version,
        size: firmware.len() as u64,
        sha256: sha2::Sha256::digest(firmware).into(),
        campaign: [0; 16],
    }
}

/// The application slot's bytes from its start to the end of `image`, as flash will hold them.
pub fn application_firmware_bytes(image: &FirmwareImage, region: &FlashRegion) -> Vec<u8> {
    let end = image.end_address().max(region.address);
    let mut bytes = vec![region.erased_value; (end - region.address) as usize];
    for segment in &image.segments {
        let offset = (segment.address - region.address) as usize;
        bytes[offset..offset + segment.data.len()].copy_from_slice(&segment.data);
    }
    bytes
}
