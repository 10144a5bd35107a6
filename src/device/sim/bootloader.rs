//! The simulated device's mbed-bootloader behaviour (docs/device-contract.md, section 7): with a
//! profile whose bootloader is mbed-bootloader, the device boots the application only when the
//! 112-byte active header at the profile's address is a valid v2 internal header (CRC-32, magic,
//! version) and describes the application slot (size within the slot, SHA-256 of that many
//! bytes). Otherwise it boots nothing and leaves a boot refusal (mailbox report area and console)
//! naming the reason. After installing an update the bootloader writes the new application's
//! header itself, before the boot-state record, so a power cut never leaves a new application
//! behind an old header that the update client would no longer replace.

use sha2::{Digest, Sha256};

use crate::contract::{self, BootRefusal, BootRefusalReason, BootState};
use crate::device::TargetError;
use crate::mbed_header;
use crate::profile::{self, DeviceHardware};

use super::device::SimDevice;

impl SimDevice {
    /// Gives the unit the profile's hardware (its bootloader kind, root of trust, TRNG).
    pub fn with_hardware(mut self, hardware: DeviceHardware) -> SimDevice {
        self.hardware = hardware;
        self.block_device = hardware.update_storage.map(super::block_device::BlockDevice::erased);
        self
    }

    /// Flips one bit of flash, as a weak cell or a tamperer would (for tests and campaigns).
    pub fn flip_flash_bit(&mut self, address: u64, bit: u8) {
        self.flash.flip_bit(address, bit);
    }

    /// mbed-bootloader's check of the active application: `Err` with the reason to refuse.
    /// Always `Ok` for the contract's own bootloader.
    pub(super) fn check_active_application(&self) -> Result<(), BootRefusalReason> {
        let Some(header_address) = self.hardware.bootloader.application_header_address() else {
            return Ok(());
        };
        let header = self.flash.slice(header_address, mbed_header::INTERNAL_HEADER_SIZE_BYTES);
        let details = mbed_header::decode_internal_header(header)
            .map_err(|_| BootRefusalReason::ApplicationHeaderInvalid)?;
        let application = self.memory.application;
        if details.size == 0 || details.size > application.size_bytes {
            return Err(BootRefusalReason::ApplicationHeaderMismatch);
        }
        let firmware = self.flash.slice(application.address, details.size as usize);
        if <[u8; 32]>::from(Sha256::digest(firmware)) != details.sha256 {
            return Err(BootRefusalReason::ApplicationHeaderMismatch);
        }
        Ok(())
    }

    /// Boots nothing: leaves the refusal where the report would be, and on the console.
    pub(super) fn refuse_boot(&mut self, mailbox_offset: usize, nonce: u32, reason: BootRefusalReason) {
        let refusal = BootRefusal { nonce, reason };
        let start = mailbox_offset + contract::REPORT_OFFSET_BYTES;
        if let Some(area) = self.ram.get_mut(start..start + contract::BOOT_REFUSAL_SIZE_BYTES) {
            area.copy_from_slice(&refusal.encode());
        }
        self.console_lines.push(refusal.console_line());
    }

    /// After an install with mbed-bootloader: the new application's active header (firmware =
    /// the installed payload, version = the v1 timestamp of its version). Left alone when the
    /// header sector already holds exactly it (a repeated install after a power cut).
    pub(super) fn write_application_header(&mut self, boot_state: &BootState) -> Result<(), TargetError> {
        let Some(header_address) = self.hardware.bootloader.application_header_address() else {
            return Ok(());
        };
        let details = mbed_header::FirmwareDetails {
            version: profile::header_firmware_version(boot_state.installed_version),
            size: u64::from(boot_state.installed_size_bytes),
            sha256: boot_state.installed_digest,
            campaign: [0; 16],
        };
        let region = self.memory.bootloader;
        let header = contract::pad_to_alignment(
            &mbed_header::encode_internal_header(&details),
            region.write_alignment_bytes as usize,
            region.erased_value,
        );
        if self.flash.slice(header_address, header.len()) == header.as_slice() {
            return Ok(());
        }
        let sector_size = region.sector_size_bytes;
        let sector_address = header_address - (header_address - region.address) % sector_size;
        // The header's sector holds nothing else (the profile check keeps the bootloader image
        // out of it), so erasing it loses nothing.
        self.erase(sector_address, sector_size, &mut |_| {})?;
        self.program(header_address, &header, &mut |_| {})
    }
}
