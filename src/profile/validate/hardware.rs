//! `[bootloader]` and the chip's `hardware_root_of_trust` / `trng` into [`DeviceHardware`]: which
//! bootloader the device runs (for mbed-bootloader, where its application header goes, proven
//! to fit beside the bootloader image) and what the station must inject.

use super::super::MemoryMap;
use super::super::hardware::{BootloaderKind, DeviceHardware};
use super::super::raw::RawProfile;
use super::Checker;
use crate::contract::IDENTITY_MAILBOX_SIZE_BYTES;
use crate::image::FirmwareImage;
use crate::mbed_header::INTERNAL_HEADER_SIZE_BYTES;

pub(super) fn check_device_hardware(
    raw: &RawProfile,
    checker: &mut Checker,
    memory: Option<&MemoryMap>,
    bootloader_image: Option<&FirmwareImage>,
) -> DeviceHardware {
    let mut hardware = DeviceHardware {
        has_hardware_root_of_trust: raw.chip.hardware_root_of_trust.unwrap_or(true),
        has_trng: raw.chip.trng.unwrap_or(true),
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
