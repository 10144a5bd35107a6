//! The simulated device's external block device (an SD card or SPI NOR flash, `[block_device]`)
//! and the legacy update client's use of it (docs/device-contract.md, section 9).
//!
//! The debug probe cannot reach the block device: only the device's own code writes it. The
//! application's update client stores a candidate the station hands it (mailbox command 4)
//! after the checks of section 3.3: it erases every location's header area (discarding what
//! they held) and the range the firmware needs in location 0, writes the firmware
//! after location 0's header area, then the external header (HMAC keyed from the device's root of
//! trust) last, so a power cut leaves no header over half-written firmware. At every reset the
//! bootloader looks at each location: an erased header is no candidate; a header that does not
//! authenticate, or firmware that does not match it, is refused with its reason and discarded;
//! a good one is installed (firmware into the application slot, the internal header, the
//! boot-state record) and then discarded. Block-device erases and writes count towards the
//! power-cut fault like flash operations.

use sha2::{Digest, Sha256};

use crate::contract::{self, BootState, CandidateVerdict, IdentityStatus, UpdateClientInputs, UpdateStatus};
use crate::device::TargetError;
use crate::mbed_header;
use crate::profile::{self, BlockDeviceKind, UpdateStorage};

use super::device::SimDevice;

/// The block device's bytes.
#[derive(Clone)]
pub(super) struct BlockDevice {
    storage: UpdateStorage,
    bytes: Vec<u8>,
}

impl BlockDevice {
    /// An erased device for `storage`.
    pub(super) fn erased(storage: UpdateStorage) -> BlockDevice {
        BlockDevice { storage, bytes: vec![storage.device.erased_value; storage.device.size_bytes as usize] }
    }

    fn slice(&self, address: u64, length: u64) -> &[u8] {
        &self.bytes[address as usize..(address + length) as usize]
    }
}

impl SimDevice {
    /// A view of the block device's bytes (tests and campaigns; the probe has none).
    pub fn block_device_bytes(&self, address: u64, length: usize) -> Option<&[u8]> {
        let device = self.block_device.as_ref()?;
        device.bytes.get(address as usize..address as usize + length)
    }

    /// Flips one bit on the block device (a tamperer with the card in a reader).
    pub fn flip_block_device_bit(&mut self, address: u64, bit: u8) {
        if let Some(device) = self.block_device.as_mut() {
            device.bytes[address as usize] ^= 1 << (bit % 8);
        }
    }

    /// Erases `[address, address + length)` of the block device, one operation per erase unit.
    fn block_erase(&mut self, address: u64, length: u64) -> Result<(), TargetError> {
        let Some(device) = self.block_device.as_ref() else { return Ok(()) };
        let erase_size = device.storage.device.erase_size_bytes;
        let block_size = device.storage.device.block_size_bytes.max(1);
        let kind = device.storage.device.kind;
        let erased_value = device.storage.device.erased_value;
        let mut unit = address;
        while unit < address + length {
            let torn = self.begin_flash_operation()?;
            let span = if torn { erase_size / 2 } else { erase_size };
            if let Some(device) = self.block_device.as_mut() {
                device.bytes[unit as usize..(unit + span) as usize].fill(erased_value);
            }
            if torn {
                return Err(TargetError::PowerLost);
            }
            // SPI NOR erases a sector in the flash's sector-erase time; an SD card has no erase
            // cycle of its own: it writes the erased value, block by block.
            let erase_ms = match kind {
                BlockDeviceKind::SpiNor => self.timing.sector_erase_ms,
                BlockDeviceKind::SdCard => self.timing.page_program_ms * (erase_size / block_size) as f64,
            };
            self.spend(erase_ms);
            unit += erase_size;
        }
        Ok(())
    }

    /// Writes `data` (padded to whole blocks) at `address`, one operation per block. SPI NOR
    /// only clears bits (the caller erased first); an SD card overwrites.
    fn block_write(&mut self, address: u64, data: &[u8]) -> Result<(), TargetError> {
        let Some(device) = self.block_device.as_ref() else { return Ok(()) };
        let geometry = device.storage.device;
        let padded =
            contract::pad_to_alignment(data, geometry.block_size_bytes as usize, geometry.erased_value);
        for (index, block) in padded.chunks(geometry.block_size_bytes as usize).enumerate() {
            let torn = self.begin_flash_operation()?;
            let block_address = address as usize + index * block.len();
            let written = if torn { &block[..block.len() / 2] } else { block };
            if let Some(device) = self.block_device.as_mut() {
                let cells = &mut device.bytes[block_address..block_address + written.len()];
                for (cell, value) in cells.iter_mut().zip(written) {
                    *cell = match geometry.kind {
                        BlockDeviceKind::SdCard => *value,
                        BlockDeviceKind::SpiNor if geometry.erased_value == 0xFF => *cell & value,
                        BlockDeviceKind::SpiNor => *cell | value,
                    };
                }
            }
            if torn {
                return Err(TargetError::PowerLost);
            }
            self.spend(self.timing.page_program_ms);
        }
        Ok(())
    }

    /// Command 4, the application's update client: checks the candidate as a download and, when
    /// it passes, stores it in location 0 (every location erased first). `Err` carries the
    /// answer: update-refused with the status, or nothing when power failed.
    pub(super) fn store_candidate(
        &mut self,
        candidate: &[u8],
    ) -> Result<Vec<u8>, Option<(IdentityStatus, Vec<u8>)>> {
        let Some(storage) = self.hardware.update_storage else {
            return Err(Some((IdentityStatus::UnsupportedCommand, Vec::new())));
        };
        let refuse = |status: UpdateStatus| {
            Err(Some((IdentityStatus::UpdateRefused, contract::update_refusal_data(status))))
        };
        let verdict = contract::evaluate_candidate(&UpdateClientInputs {
            store_region: self.store_region(),
            chip_uid: &self.unique_id,
            candidate_slot: candidate,
            installed_version: self.installed_version(),
            application_slot_size_bytes: self
                .memory
                .application
                .size_bytes
                .min(storage.firmware_capacity_bytes()),
            erased_value: self.memory.candidate.erased_value,
            now: std::time::SystemTime::now(),
        });
        let (payload_range, boot_state) = match verdict {
            CandidateVerdict::Install { payload_range, boot_state } => (payload_range, boot_state),
            CandidateVerdict::Refuse(status) => return refuse(status),
            CandidateVerdict::NoCandidate => return refuse(UpdateStatus::CandidateGarbage),
        };
        let Some(root_of_trust) = self.root_of_trust() else {
            return Err(Some((IdentityStatus::NoKey, Vec::new())));
        };
        let details = mbed_header::FirmwareDetails {
            version: profile::header_firmware_version(boot_state.installed_version),
            size: u64::from(boot_state.installed_size_bytes),
            sha256: boot_state.installed_digest,
            campaign: [0; 16],
        };
        let header = mbed_header::encode_external_header(&details, &root_of_trust);
        let payload = candidate[payload_range].to_vec();
        let lost = |_| None;
        // Every location's header area goes first (whatever candidate it held is discarded: a
        // rework starts from clean storage), then the range the new firmware needs.
        for index in 0..storage.locations {
            self.block_erase(storage.location_address(index), storage.header_area_bytes()).map_err(lost)?;
        }
        let location = storage.location_address(0);
        let firmware_span = (payload.len() as u64).next_multiple_of(storage.device.erase_size_bytes);
        self.block_erase(location + storage.header_area_bytes(), firmware_span).map_err(lost)?;
        self.block_write(location + storage.header_area_bytes(), &payload).map_err(lost)?;
        self.block_write(location, &header).map_err(lost)?;
        Ok(Vec::new())
    }

    /// The bootloader's look at the update storage: the first location holding a header
    /// decides (installed, or refused and discarded); no header anywhere is no candidate.
    pub(super) fn run_storage_update_client(
        &mut self,
        storage: UpdateStorage,
    ) -> Result<UpdateStatus, TargetError> {
        for index in 0..storage.locations {
            let location = storage.location_address(index);
            let Some(device) = self.block_device.as_ref() else { return Ok(UpdateStatus::NoCandidate) };
            let header = device.slice(location, mbed_header::EXTERNAL_HEADER_SIZE_BYTES as u64).to_vec();
            if header.iter().all(|byte| *byte == storage.device.erased_value) {
                continue;
            }
            let status = match self.check_stored_candidate(&storage, location, &header) {
                Ok((payload, boot_state)) => {
                    self.install_payload(&payload, &boot_state)?;
                    UpdateStatus::Installed
                }
                Err(status) => status,
            };
            // Discard the candidate (its header's erase unit), last: a power cut before this
            // point makes the next boot look at it again.
            self.block_erase(location, storage.header_area_bytes())?;
            return Ok(status);
        }
        Ok(UpdateStatus::NoCandidate)
    }

    fn check_stored_candidate(
        &self,
        storage: &UpdateStorage,
        location: u64,
        header: &[u8],
    ) -> Result<(Vec<u8>, BootState), UpdateStatus> {
        let root_of_trust = self.root_of_trust().ok_or(UpdateStatus::StorageHeaderInvalid)?;
        let details = mbed_header::decode_external_header(header, &root_of_trust)
            .map_err(|_| UpdateStatus::StorageHeaderInvalid)?;
        if details.size == 0
            || details.size > storage.firmware_capacity_bytes()
            || details.size > self.memory.application.size_bytes
        {
            return Err(UpdateStatus::StorageFirmwareMismatch);
        }
        let device = self.block_device.as_ref().ok_or(UpdateStatus::StorageHeaderInvalid)?;
        let payload = device.slice(location + storage.header_area_bytes(), details.size).to_vec();
        if <[u8; 32]>::from(Sha256::digest(&payload)) != details.sha256 {
            return Err(UpdateStatus::StorageFirmwareMismatch);
        }
        let installed_version = profile::version_from_header_firmware_version(details.version)
            .ok_or(UpdateStatus::StorageFirmwareMismatch)?;
        let boot_state = BootState {
            installed_version,
            installed_size_bytes: details.size as u32,
            installed_digest: details.sha256,
        };
        Ok((payload, boot_state))
    }
}
