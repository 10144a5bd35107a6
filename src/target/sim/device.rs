//! The simulated device itself: flash, RAM, unique ID, debug lock, power, and the device-side
//! firmware behaviour (bootloader with the update client, then the application's self-test
//! report), following `docs/device-contract.md` through [`crate::contract`].
//!
//! Flash operations the device performs on its own (installing an update) count towards the
//! power-cut fault exactly like the station's, so a cut can land in the middle of an install.

use std::time::{Duration, SystemTime};

use crate::contract::{
    self, BootState, CandidateVerdict, MailboxRequest, SelfTestReport, StoreStatus, UpdateClientInputs,
    UpdateStatus,
};
use crate::manifest::SemanticVersion;
use crate::profile::{FlashRegion, MemoryMap, SimTiming};
use crate::store::{ConfigStore, keys};
use crate::target::TargetError;

use super::flash::NorFlash;

/// One virtual unit: everything that survives a power cycle (flash, unique ID, lock state)
/// plus RAM and the power/fault bookkeeping.
#[derive(Clone)]
pub struct SimDevice {
    pub(super) memory: MemoryMap,
    pub(super) flash: NorFlash,
    pub(super) ram: Vec<u8>,
    pub(super) unique_id: Vec<u8>,
    pub(super) is_locked: bool,
    pub(super) is_powered: bool,
    /// Flash operations (sector erases and page programs) done since the device was made.
    pub(super) flash_operation_count: u64,
    /// Cut power once this many flash operations have completed.
    pub(super) power_cut_after_operations: Option<u64>,
    pub(super) console_lines: Vec<String>,
    /// How long flash operations take (zero by default).
    pub(super) timing: SimTiming,
    /// The time the modelled hardware has spent busy (flash operations, transfers, boots):
    /// the physical minimum the station's wall time is compared with.
    pub(super) modeled_busy: Duration,
}

/// The page size used to count program operations (each page is one flash operation).
pub(super) const PROGRAM_PAGE_SIZE_BYTES: usize = 256;

impl SimDevice {
    /// A blank unit with an erased flash and the given unique ID.
    pub fn new(memory: &MemoryMap, unique_id: Vec<u8>) -> SimDevice {
        SimDevice {
            memory: memory.clone(),
            flash: NorFlash::erased(memory),
            ram: vec![0; memory.chip_ram.size_bytes as usize],
            unique_id,
            is_locked: false,
            is_powered: true,
            flash_operation_count: 0,
            power_cut_after_operations: None,
            console_lines: Vec::new(),
            timing: SimTiming::default(),
            modeled_busy: Duration::ZERO,
        }
    }

    /// Spends modelled hardware time: sleeps for it and accounts it.
    pub(super) fn spend(&mut self, milliseconds: f64) {
        if milliseconds > 0.0 {
            let duration = Duration::from_secs_f64(milliseconds / 1000.0);
            self.modeled_busy += duration;
            std::thread::sleep(duration);
        }
    }

    /// The time the modelled hardware has been busy since the device was made.
    pub fn modeled_busy(&self) -> Duration {
        self.modeled_busy
    }

    /// The unit's unique ID.
    pub fn unique_id(&self) -> &[u8] {
        &self.unique_id
    }

    /// How many flash operations the unit has seen.
    pub fn flash_operation_count(&self) -> u64 {
        self.flash_operation_count
    }

    /// Arms a power cut after `operations` more flash operations (counted from now).
    pub fn cut_power_after(&mut self, operations: u64) {
        self.power_cut_after_operations = Some(self.flash_operation_count + operations);
    }

    /// Whether debug access is locked (readout protection set).
    pub fn is_locked(&self) -> bool {
        self.is_locked
    }

    /// Whether the unit has power.
    pub fn is_powered(&self) -> bool {
        self.is_powered
    }

    /// Restores power (RAM is lost, flash and lock survive); the device then boots.
    pub fn power_on(&mut self) {
        self.is_powered = true;
        self.power_cut_after_operations = None;
        self.ram.fill(0);
        self.boot();
    }

    /// A read-only view of flash, for tests and campaigns (not a debug read: works when locked).
    pub fn flash_bytes(&self, address: u64, length: usize) -> &[u8] {
        self.flash.slice(address, length)
    }

    pub(super) fn require_power(&self) -> Result<(), TargetError> {
        if self.is_powered { Ok(()) } else { Err(TargetError::PowerLost) }
    }

    /// Counts one flash operation; returns `true` when this operation is the one the power
    /// cut interrupts (it is then applied torn, and the device is off afterwards).
    fn begin_flash_operation(&mut self) -> Result<bool, TargetError> {
        self.require_power()?;
        if let Some(limit) = self.power_cut_after_operations
            && self.flash_operation_count >= limit
        {
            self.is_powered = false;
            return Ok(true);
        }
        self.flash_operation_count += 1;
        Ok(false)
    }

    /// Erases sectors, one flash operation each.
    pub(super) fn erase(
        &mut self,
        address: u64,
        size_bytes: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let sectors = self.flash.sectors_to_erase(address, size_bytes)?;
        let mut erased_bytes = 0;
        for (sector_address, region) in sectors {
            if self.begin_flash_operation()? {
                self.flash.erase_sector(sector_address, &region, true);
                return Err(TargetError::PowerLost);
            }
            self.flash.erase_sector(sector_address, &region, false);
            self.spend(self.timing.sector_erase_ms);
            erased_bytes += region.sector_size_bytes;
            progress(erased_bytes);
        }
        Ok(())
    }

    /// Programs bytes, one flash operation per 256-byte page.
    pub(super) fn program(
        &mut self,
        address: u64,
        data: &[u8],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let region = self.flash.check_program(address, data)?;
        let mut programmed_bytes = 0usize;
        for page in data.chunks(PROGRAM_PAGE_SIZE_BYTES) {
            let page_address = address + programmed_bytes as u64;
            if self.begin_flash_operation()? {
                let torn_length =
                    (page.len() / 2).next_multiple_of(region.write_alignment_bytes as usize).min(page.len());
                self.flash.program(page_address, &page[..torn_length], &region);
                return Err(TargetError::PowerLost);
            }
            self.flash.program(page_address, page, &region);
            let timing_pages = page.len().div_ceil(self.timing.page_size_bytes.max(1) as usize);
            self.spend(self.timing.page_program_ms * timing_pages as f64);
            programmed_bytes += page.len();
            progress(programmed_bytes as u64);
        }
        Ok(())
    }

    /// Erases everything and clears the lock (a mass erase through the debug port).
    pub(super) fn mass_erase(&mut self) -> Result<(), TargetError> {
        self.require_power()?;
        self.flash.erase_all();
        self.is_locked = false;
        Ok(())
    }

    /// What happens at reset: the bootloader (with the update client), then the application.
    /// A device whose bootloader or application slot is erased hangs and reports nothing.
    pub(super) fn boot(&mut self) {
        if !self.is_powered || self.region_is_blank(&self.memory.bootloader) {
            return;
        }
        self.spend(self.timing.boot_ms);
        let mailbox_offset = (self.memory.mailbox.address - self.memory.chip_ram.address) as usize;
        let nonce =
            MailboxRequest::decode(&self.ram[mailbox_offset..]).map(|request| request.nonce).unwrap_or(0);
        let update_status = match self.run_update_client() {
            Ok(status) => status,
            // Power failed during the install: nothing more happens until power returns.
            Err(_) => return,
        };
        if self.region_is_blank(&self.memory.application) {
            return;
        }
        let report = self.application_report(nonce, update_status);
        let encoded = report.encode();
        let report_start = mailbox_offset + contract::REPORT_OFFSET_BYTES;
        self.ram[report_start..report_start + encoded.len()].copy_from_slice(&encoded);
        self.console_lines.push(report.console_line());
    }

    fn region_is_blank(&self, region: &FlashRegion) -> bool {
        let length = (region.write_alignment_bytes as usize).max(4);
        self.flash.slice(region.address, length).iter().all(|byte| *byte == region.erased_value)
    }

    fn store_region(&self) -> &[u8] {
        let layout = self.memory.store_layout();
        self.flash.slice(self.memory.config.address, layout.capacity_bytes)
    }

    fn installed_version(&self) -> Option<SemanticVersion> {
        let boot_state_bytes =
            self.flash.slice(self.memory.boot_state_address(), contract::BOOT_STATE_SIZE_BYTES);
        if let Some(boot_state) = BootState::decode(boot_state_bytes) {
            return Some(boot_state.installed_version);
        }
        let store = ConfigStore::decode(self.store_region(), &self.unique_id).ok()?;
        store.text(keys::FACTORY_APP_VERSION).ok()?.parse().ok()
    }

    fn run_update_client(&mut self) -> Result<UpdateStatus, TargetError> {
        let candidate = self.memory.candidate;
        let verdict = contract::evaluate_candidate(&UpdateClientInputs {
            store_region: self.store_region(),
            chip_uid: &self.unique_id,
            candidate_slot: self.flash.slice(candidate.address, candidate.size_bytes as usize),
            installed_version: self.installed_version(),
            application_slot_size_bytes: self.memory.application.size_bytes,
            erased_value: candidate.erased_value,
            now: SystemTime::now(),
        });
        let status = match verdict {
            CandidateVerdict::NoCandidate => return Ok(UpdateStatus::NoCandidate),
            CandidateVerdict::Refuse(status) => status,
            CandidateVerdict::Install { payload_range, boot_state } => {
                self.install(payload_range, &boot_state)?;
                UpdateStatus::Installed
            }
        };
        // Mark the candidate processed by erasing its header sector, last: a power cut before
        // this point makes the next boot look at the same candidate again.
        self.erase(candidate.address, candidate.sector_size_bytes, &mut |_| {})?;
        Ok(status)
    }

    fn install(
        &mut self,
        payload_range: std::ops::Range<usize>,
        boot_state: &BootState,
    ) -> Result<(), TargetError> {
        let application = self.memory.application;
        let candidate_address = self.memory.candidate.address;
        let payload =
            self.flash.slice(candidate_address + payload_range.start as u64, payload_range.len()).to_vec();
        let padded = contract::pad_to_alignment(
            &payload,
            application.write_alignment_bytes as usize,
            application.erased_value,
        );
        // Sector by sector; a sector that already holds its payload bytes is left alone (the
        // contract allows it: it saves flash wear and time, and the result is the same).
        let sector_size = application.sector_size_bytes as usize;
        for (index, sector_payload) in padded.chunks(sector_size).enumerate() {
            let sector_address = application.address + (index * sector_size) as u64;
            if self.flash.slice(sector_address, sector_payload.len()) == sector_payload {
                continue;
            }
            self.erase(sector_address, application.sector_size_bytes, &mut |_| {})?;
            self.program(sector_address, sector_payload, &mut |_| {})?;
        }
        let config = self.memory.config;
        self.erase(self.memory.boot_state_address(), config.sector_size_bytes, &mut |_| {})?;
        let record = contract::pad_to_alignment(
            &boot_state.encode(),
            config.write_alignment_bytes as usize,
            config.erased_value,
        );
        self.program(self.memory.boot_state_address(), &record, &mut |_| {})
    }

    fn application_report(&self, nonce: u32, update_status: UpdateStatus) -> SelfTestReport {
        let running_version =
            self.installed_version().unwrap_or(SemanticVersion { major: 0, minor: 0, patch: 0 });
        let mut report = SelfTestReport {
            nonce,
            update_status,
            store_status: StoreStatus::Unprovisioned,
            running_version,
            vendor_id: [0; 16],
            class_id: [0; 16],
            device_id: [0; 16],
            certificate_fingerprint: [0; 32],
            serial_number: String::new(),
        };
        let Ok(store) = ConfigStore::decode(self.store_region(), &self.unique_id) else {
            return report;
        };
        report.store_status = StoreStatus::Provisioned;
        report.vendor_id = store.uuid_bytes(keys::VENDOR_ID).unwrap_or_default();
        report.class_id = store.uuid_bytes(keys::CLASS_ID).unwrap_or_default();
        report.device_id = store.uuid_bytes(keys::DEVICE_ID).unwrap_or_default();
        report.certificate_fingerprint =
            store.update_certificate().map(|(fingerprint, _)| fingerprint).unwrap_or_default();
        report.serial_number = store.text(keys::SERIAL_NUMBER).unwrap_or_default().to_string();
        report
    }
}
