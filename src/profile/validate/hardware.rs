//! `[bootloader]` and the chip's `hardware_root_of_trust` / `trng` into [`DeviceHardware`]: which
//! bootloader the device runs (for mbed-bootloader, where its application header goes, proven
//! to fit beside the bootloader image) and what the station must inject.

use super::super::MemoryMap;
use super::super::hardware::{
    BlockDeviceGeometry, BlockDeviceKind, BootloaderKind, DeviceHardware, UpdateStorage,
};
use super::super::raw::RawProfile;
use super::Checker;
use crate::contract::{self, IDENTITY_MAILBOX_SIZE_BYTES};
use crate::image::FirmwareImage;
use crate::mbed_header::INTERNAL_HEADER_SIZE_BYTES;

pub(super) fn check_device_hardware(
    raw: &RawProfile,
    checker: &mut Checker,
    memory: Option<&MemoryMap>,
    bootloader_image: Option<&FirmwareImage>,
) -> DeviceHardware {
    let mut hardware = DeviceHardware {
        has_hardware_root_of_trust: raw
            .chip
            .as_ref()
            .and_then(|chip| chip.hardware_root_of_trust)
            .unwrap_or(true),
        has_trng: raw.chip.as_ref().and_then(|chip| chip.trng).unwrap_or(true),
        ..DeviceHardware::default()
    };
    if hardware.needs_injection()
        && raw.fcc.is_none()
        && let Some(memory) = memory
        && memory.mailbox.size_bytes < IDENTITY_MAILBOX_SIZE_BYTES as u64
    {
        checker.problem(
            "memory.mailbox.size",
            format!(
                "expected at least {IDENTITY_MAILBOX_SIZE_BYTES} bytes: the station injects the root of trust and entropy through the mailbox (chip.hardware_root_of_trust or chip.trng is false), found {}",
                memory.mailbox.size_bytes
            ),
        );
    }
    let Some(raw_bootloader) = &raw.bootloader else { return hardware };
    match (raw_bootloader.kind.as_str(), raw_bootloader.application_header_address) {
        ("imprint", None) => {}
        ("imprint", Some(_)) => checker.problem(
            "bootloader.application_header_address",
            "expected no header address with kind = \"imprint\" (only mbed-bootloader reads one)",
        ),
        ("mbed-bootloader", None) => checker.problem(
            "bootloader.application_header_address",
            "expected the address of the application's active header (mbed-bootloader's application-header-address)",
        ),
        ("mbed-bootloader", Some(address)) => {
            if let Some(memory) = memory {
                check_header_place(checker, memory, bootloader_image, address);
            }
            hardware.bootloader = BootloaderKind::MbedBootloader { application_header_address: address };
        }
        (other, _) => checker.problem(
            "bootloader.kind",
            format!("expected \"imprint\" or \"mbed-bootloader\", found \"{other}\""),
        ),
    }
    hardware
}

/// The header goes into the bootloader region (mbed-bootloader keeps it between itself and the
/// application), write-aligned, in sectors the bootloader image does not touch: the station
/// erases and programs it on its own, and the device's bootloader rewrites it after an update.
fn check_header_place(
    checker: &mut Checker,
    memory: &MemoryMap,
    bootloader_image: Option<&FirmwareImage>,
    address: u64,
) {
    const FIELD: &str = "bootloader.application_header_address";
    let region = memory.bootloader;
    let end = address.saturating_add(INTERNAL_HEADER_SIZE_BYTES as u64);
    if address < region.address || end > region.end_address() {
        checker.problem(
            FIELD,
            format!(
                "expected the {INTERNAL_HEADER_SIZE_BYTES}-byte header inside memory.bootloader ({:#x}..{:#x}), found {address:#x}..{end:#x}",
                region.address,
                region.end_address()
            ),
        );
        return;
    }
    if !address.is_multiple_of(region.write_alignment_bytes) {
        checker.problem(
            FIELD,
            format!("expected an address aligned to the bootloader region's write alignment of {} bytes, found {address:#x}", region.write_alignment_bytes),
        );
    }
    let sector_size = region.sector_size_bytes.max(1);
    let first_sector = address - (address - region.address) % sector_size;
    let last_sector_end = (end - region.address).next_multiple_of(sector_size) + region.address;
    if last_sector_end - first_sector > sector_size {
        checker.problem(
            FIELD,
            format!("expected the header inside one {sector_size}-byte sector, found {address:#x}..{end:#x} across a sector boundary"),
        );
    }
    if let Some(image) = bootloader_image
        && let Some(segment) = image
            .segments
            .iter()
            .find(|segment| segment.address < last_sector_end && segment.end_address() > first_sector)
    {
        checker.problem(
            FIELD,
            format!(
                "expected the header in sectors the bootloader image leaves free: its sectors {first_sector:#x}..{last_sector_end:#x} hold image bytes at {:#x}",
                segment.address.max(first_sector)
            ),
        );
    }
}

/// `[block_device]` + `[update_storage]` into [`UpdateStorage`]: the geometry's rules, the storage
/// inside the device, every location large enough for the self-test payload behind its external
/// header, mbed-bootloader (whose external headers authenticate the candidates), and a mailbox
/// that holds a staged candidate (the device's update client receives it there).
pub(super) fn check_update_storage(
    raw: &RawProfile,
    checker: &mut Checker,
    hardware: &DeviceHardware,
    memory: Option<&MemoryMap>,
    payload: Option<&FirmwareImage>,
) -> Option<UpdateStorage> {
    let (raw_device, raw_storage) = match (&raw.block_device, &raw.update_storage) {
        (None, None) => return None,
        (Some(device), Some(storage)) => (device, storage),
        (Some(_), None) => {
            checker.problem(
                "update_storage",
                "expected [update_storage] with [block_device]: where the candidates go",
            );
            return None;
        }
        (None, Some(_)) => {
            checker.problem(
                "block_device",
                "expected [block_device] with [update_storage]: the device it is on",
            );
            return None;
        }
    };
    let problems_before = checker.problems.len();
    let kind = match raw_device.kind.as_str() {
        "sd-card" => BlockDeviceKind::SdCard,
        "spi-nor" => BlockDeviceKind::SpiNor,
        other => {
            checker.problem(
                "block_device.kind",
                format!("expected \"sd-card\" or \"spi-nor\", found \"{other}\""),
            );
            BlockDeviceKind::SdCard
        }
    };
    for (field, value) in [
        ("block_device.block_size", raw_device.block_size),
        ("block_device.erase_size", raw_device.erase_size),
    ] {
        if !value.is_power_of_two() {
            checker.problem(field, format!("expected a power of two, found {value}"));
        }
    }
    if raw_device.block_size.is_power_of_two() && !raw_device.erase_size.is_multiple_of(raw_device.block_size)
    {
        checker.problem("block_device.erase_size", "expected a multiple of block_device.block_size");
    }
    if raw_device.size == 0
        || raw_device.size > BLOCK_DEVICE_SIZE_MAX_BYTES
        || (raw_device.erase_size.is_power_of_two() && !raw_device.size.is_multiple_of(raw_device.erase_size))
    {
        checker.problem("block_device.size", format!("expected a multiple of the erase size, at most {BLOCK_DEVICE_SIZE_MAX_BYTES} bytes, found {}", raw_device.size));
    }
    if raw_device.erased_value != 0xFF && raw_device.erased_value != 0x00 {
        checker.problem("block_device.erased_value", "expected 0xFF or 0x00");
    }
    if !(1..=STORAGE_LOCATIONS_MAX).contains(&raw_storage.locations) {
        checker.problem(
            "update_storage.locations",
            format!("expected 1 to {STORAGE_LOCATIONS_MAX}, found {}", raw_storage.locations),
        );
    }
    if checker.problems.len() != problems_before {
        return None;
    }
    let storage = UpdateStorage {
        device: BlockDeviceGeometry {
            kind,
            block_size_bytes: raw_device.block_size,
            erase_size_bytes: raw_device.erase_size,
            size_bytes: raw_device.size,
            erased_value: raw_device.erased_value,
        },
        address: raw_storage.address,
        size_bytes: raw_storage.size,
        locations: raw_storage.locations,
    };
    let storage_end =
        storage.location_address(storage.locations - 1).saturating_add(storage.location_size_bytes());
    if storage.location_size_bytes() == 0
        || storage_end > storage.device.size_bytes
        || raw_storage.address.saturating_add(raw_storage.size) > storage.device.size_bytes
    {
        checker.problem(
            "update_storage",
            format!(
                "expected the storage ({:#x}, {:#x} bytes, {} locations) inside the {:#x}-byte block device",
                raw_storage.address, raw_storage.size, raw_storage.locations, storage.device.size_bytes
            ),
        );
    }
    if let Some(payload) = payload {
        let payload_bytes = payload.end_address().saturating_sub(payload.start_address());
        if payload_bytes > storage.firmware_capacity_bytes() {
            checker.problem(
                "update_storage.size",
                format!("expected each location to hold the self-test payload ({payload_bytes} bytes) after its external header: a location holds {} bytes", storage.firmware_capacity_bytes()),
            );
        }
        if let Some(memory) = memory {
            let needed = contract::STORE_CANDIDATE_TRANSFER_OFFSET_BYTES as u64
                + contract::CANDIDATE_HEADER_SIZE_BYTES as u64
                + payload_bytes
                + CANDIDATE_MANIFEST_ALLOWANCE_BYTES;
            if memory.mailbox.size_bytes < needed {
                checker.problem(
                    "memory.mailbox.size",
                    format!("expected at least {needed} bytes: the device's update client receives the staged candidate in the mailbox (its request, the self-test payload and {CANDIDATE_MANIFEST_ALLOWANCE_BYTES} bytes for the manifest), found {}", memory.mailbox.size_bytes),
                );
            }
        }
    }
    if hardware.bootloader.application_header_address().is_none() {
        checker.problem("bootloader.kind", "expected \"mbed-bootloader\" with [update_storage]: its bootloader authenticates the candidates' external headers");
    }
    Some(storage)
}

/// The largest block device a profile may declare (the simulator holds it in memory).
const BLOCK_DEVICE_SIZE_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The most candidate locations a profile may declare.
const STORAGE_LOCATIONS_MAX: u64 = 8;
/// Room the mailbox leaves for a candidate's manifest and delegate certificate.
const CANDIDATE_MANIFEST_ALLOWANCE_BYTES: u64 = 4096;
