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
    /// Update candidates on an external block device (`[block_device]` + `[update_storage]`)
    /// instead of the internal candidate region.
    pub update_storage: Option<UpdateStorage>,
}

/// The kind of external block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockDeviceKind {
    /// An SD card: blocks are written without an erase first.
    SdCard,
    /// SPI NOR flash: programming only over erased bytes.
    SpiNor,
}

impl BlockDeviceKind {
    /// The name in the profile.
    pub fn name(self) -> &'static str {
        match self {
            BlockDeviceKind::SdCard => "sd-card",
            BlockDeviceKind::SpiNor => "spi-nor",
        }
    }
}

/// An external block device's geometry (`[block_device]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDeviceGeometry {
    /// SD card or SPI NOR.
    pub kind: BlockDeviceKind,
    /// The program (write) unit.
    pub block_size_bytes: u64,
    /// The erase unit (a multiple of the block size).
    pub erase_size_bytes: u64,
    /// The whole device.
    pub size_bytes: u64,
    /// What erased bytes read as.
    pub erased_value: u8,
}

/// Update candidates on the block device (`[update_storage]`), laid out as update-client-hub's
/// block-device PAL lays them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateStorage {
    /// The device.
    pub device: BlockDeviceGeometry,
    /// The configured storage address (`update-client.storage-address`).
    pub address: u64,
    /// The configured storage size (`update-client.storage-size`).
    pub size_bytes: u64,
    /// How many candidate locations (`update-client.storage-locations`).
    pub locations: u64,
}

impl UpdateStorage {
    /// The size of each location: storage size / locations, rounded down to the erase size.
    pub fn location_size_bytes(&self) -> u64 {
        let erase = self.device.erase_size_bytes.max(1);
        (self.size_bytes / self.locations.max(1)) / erase * erase
    }

    /// Where location `index` starts: the storage address rounded up to an erase sector, plus
    /// `index` location sizes.
    pub fn location_address(&self, index: u64) -> u64 {
        self.address.next_multiple_of(self.device.erase_size_bytes.max(1))
            + index * self.location_size_bytes()
    }

    /// The bytes the external header occupies at a location's start: 296 rounded up to the
    /// erase size (the firmware starts after it, on an erase boundary).
    pub fn header_area_bytes(&self) -> u64 {
        (mbed_header::EXTERNAL_HEADER_SIZE_BYTES as u64).next_multiple_of(self.device.erase_size_bytes.max(1))
    }

    /// The largest firmware a location holds.
    pub fn firmware_capacity_bytes(&self) -> u64 {
        self.location_size_bytes().saturating_sub(self.header_area_bytes())
    }
}

/// The application version behind a header firmware version made by [`header_firmware_version`]
/// (`None` for a plain timestamp).
pub fn version_from_header_firmware_version(version: u64) -> Option<SemanticVersion> {
    let zero = SemanticVersion { major: 0, minor: 0, patch: 0 };
    let mark = header_firmware_version(zero);
    if version & mark == 0 {
        return None;
    }
    let plain = version & !mark;
    let candidate = SemanticVersion {
        major: u32::try_from(plain >> 40).ok()?,
        minor: u32::try_from((plain >> 16) & 0xFF_FFFF).ok()?,
        patch: u32::try_from(plain & 0xFFFF).ok()?,
    };
    (header_firmware_version(candidate) == version).then_some(candidate)
}

impl Default for DeviceHardware {
    fn default() -> Self {
        DeviceHardware {
            bootloader: BootloaderKind::Imprint,
            has_hardware_root_of_trust: true,
            has_trng: true,
            update_storage: None,
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
