//! The simulated device itself: flash, RAM, unique ID, debug lock, power, and the device-side
//! firmware behaviour (bootloader with the update client, then the application's self-test
//! report), following `docs/device-contract.md` through [`crate::contract`].
//!
//! Flash operations the device performs on its own (installing an update, storing a key it
//! made) count towards the power-cut fault exactly like the station's, so a cut can land in the
//! middle of an install.
//!
//! Identity commands (contract section 6): asked to make a key, the device draws it from the
//! host's random number generator (its "entropy source"), keeps the private scalar in its
//! device-key sector (the config region's second-to-last sector, which the station leaves alone
//! when the profile uses device-made keys) and answers with a CSR; asked to sign a challenge, it
//! uses `mbed.BootstrapDevicePrivateKey` from its store when the station put one there, else
//! the key it made itself.

use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::contract::{
    self, BootState, CandidateVerdict, IdentityCommand, IdentityMailboxRequest, IdentityResponse,
    IdentityStatus, MailboxRequest, SelfTestReport, StoreStatus, UpdateClientInputs, UpdateStatus,
};
use crate::device::TargetError;
use crate::manifest::SemanticVersion;
use crate::profile::{DeviceHardware, FlashRegion, MemoryMap, SimTiming};
use crate::store::{ConfigStore, keys};
use crate::trust::{self, Signer, SoftwareSigner};

use super::block_device::BlockDevice;
use super::flash::NorFlash;
use super::sotp::SotpArea;

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
    /// The device call in progress: when its first modelled delay began, and the modelled time
    /// spent in it so far (see [`SimDevice::spend`]).
    pub(super) call_clock: Option<(Instant, Duration)>,
    /// Identity misbehaviour injected by a fault plan.
    pub(super) identity_faults: IdentityFaults,
    /// The profile's bootloader kind, root of trust and TRNG (`bootloader.rs`).
    pub(super) hardware: DeviceHardware,
    /// The write-once area: injected root of trust and entropy (`sotp.rs`).
    pub(super) sotp: SotpArea,
    /// The external block device holding update candidates, if the profile has one.
    pub(super) block_device: Option<BlockDevice>,
}

/// How the device's identity commands misbehave (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct IdentityFaults {
    pub(super) bad_csr_signature: bool,
    pub(super) bad_challenge_signature: bool,
    pub(super) no_entropy_source: bool,
}

/// Magic of the simulated device's key record in its device-key sector ("IMPK").
pub(super) const DEVICE_KEY_RECORD_MAGIC: [u8; 4] = *b"IMPK";
/// Size of the key record: magic, version, reserved, the 32-byte scalar, a SHA-256 over the rest.
const DEVICE_KEY_RECORD_SIZE_BYTES: usize = 8 + trust::DEVICE_KEY_SCALAR_SIZE_BYTES + 32;

/// Why an identity command produced no data.
enum IdentityFailure {
    /// Refused, with the status to report.
    Status(IdentityStatus),
    /// Refused, with the status and data to report.
    Answer(IdentityStatus, Vec<u8>),
    /// Power failed during a flash operation: no response.
    PowerLost,
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
            call_clock: None,
            identity_faults: IdentityFaults::default(),
            hardware: DeviceHardware::default(),
            sotp: SotpArea::default(),
            block_device: None,
        }
    }

    /// Spends modelled hardware time: accounts it, and sleeps until the call's modelled time
    /// has passed since its first delay began.
    ///
    /// The delays of one device call run back to back, as the hardware's do: each sleep ends at
    /// an absolute deadline (the call's first delay's start plus every delay modelled in the call
    /// so far), so the operating system waking a thread late on one sleep does not add up over
    /// the hundreds of page programs of one call. A call is never shorter than its modelled
    /// time; time between calls (the station's own work) is never absorbed: every call starts
    /// a fresh clock ([`SimDevice::begin_call`]).
    pub(super) fn spend(&mut self, milliseconds: f64) {
        if milliseconds > 0.0 {
            let duration = Duration::from_secs_f64(milliseconds / 1000.0);
            self.modeled_busy += duration;
            let (call_started, spent) =
                self.call_clock.get_or_insert_with(|| (Instant::now(), Duration::ZERO));
            *spent += duration;
            let deadline = *call_started + *spent;
            let now = Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
            }
        }
    }

    /// Starts a device call: the modelled delays that follow are timed from the first of them.
    pub(super) fn begin_call(&mut self) {
        self.call_clock = None;
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
        self.begin_call();
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
    pub(super) fn begin_flash_operation(&mut self) -> Result<bool, TargetError> {
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
        self.wipe_sotp();
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
        if let Err(reason) = self.check_active_application() {
            self.refuse_boot(mailbox_offset, nonce, reason);
            return;
        }
        let report = self.application_report(nonce, update_status);
        let encoded = report.encode();
        let report_start = mailbox_offset + contract::REPORT_OFFSET_BYTES;
        self.ram[report_start..report_start + encoded.len()].copy_from_slice(&encoded);
        self.console_lines.push(report.console_line());
        self.answer_identity_request(mailbox_offset);
    }

    /// The application's identity commands: answers a request found in the mailbox, if any.
    fn answer_identity_request(&mut self, mailbox_offset: usize) {
        let mailbox_end = (mailbox_offset + self.memory.mailbox.size_bytes as usize).min(self.ram.len());
        let Some(request) = IdentityMailboxRequest::decode(&self.ram[mailbox_offset..mailbox_end]) else {
            return;
        };
        let response = match request {
            Err(refusal) => refusal,
            Ok(request) => {
                let (status, data) = match self.identity_command(&request.command) {
                    Ok(data) => (IdentityStatus::Done, data),
                    Err(IdentityFailure::Status(status)) => (status, Vec::new()),
                    Err(IdentityFailure::Answer(status, data)) => (status, data),
                    // Power failed while storing the key: nothing more happens.
                    Err(IdentityFailure::PowerLost) => return,
                };
                IdentityResponse { nonce: request.nonce, command_code: request.command.code(), status, data }
            }
        };
        let Some(encoded) = response.encode() else { return };
        let start = mailbox_offset + contract::IDENTITY_RESPONSE_OFFSET_BYTES;
        if start + encoded.len() <= mailbox_end {
            self.ram[start..start + encoded.len()].copy_from_slice(&encoded);
        }
    }

    fn identity_command(&mut self, command: &IdentityCommand) -> Result<Vec<u8>, IdentityFailure> {
        match command {
            IdentityCommand::MakeKeyAndCsr { subject_common_name } => {
                if self.identity_faults.no_entropy_source || !self.has_entropy() {
                    return Err(IdentityFailure::Status(IdentityStatus::NoEntropy));
                }
                let key = trust::generate_device_key()
                    .map_err(|_| IdentityFailure::Status(IdentityStatus::NoEntropy))?;
                self.store_device_key(&key)?;
                let mut request = trust::build_certificate_request(&key, subject_common_name)
                    .map_err(|_| IdentityFailure::Status(IdentityStatus::KeyStorageFailed))?;
                if self.identity_faults.bad_csr_signature
                    && let Some(last) = request.last_mut()
                {
                    // The last byte lies inside the signature's s: the DER stays valid.
                    *last ^= 0x01;
                }
                Ok(request)
            }
            IdentityCommand::SignChallenge { challenge } => {
                let key = self.identity_key().ok_or(IdentityFailure::Status(IdentityStatus::NoKey))?;
                let mut digest = contract::identity_challenge_digest(challenge);
                if self.identity_faults.bad_challenge_signature {
                    digest[0] ^= 0x01;
                }
                let signature =
                    key.sign_digest(&digest).map_err(|_| IdentityFailure::Status(IdentityStatus::NoKey))?;
                Ok(signature.to_bytes().to_vec())
            }
            IdentityCommand::StoreCandidate { candidate } => {
                self.store_candidate(candidate).map_err(|answer| match answer {
                    Some((status, data)) => IdentityFailure::Answer(status, data),
                    None => IdentityFailure::PowerLost,
                })
            }
            IdentityCommand::InjectRootOfTrust { root_of_trust, entropy } => {
                self.inject_secrets(root_of_trust, entropy).map_err(IdentityFailure::Status)
            }
        }
    }

    /// The identity key: the station's (in the store) when there is one, else the device's own.
    fn identity_key(&self) -> Option<SoftwareSigner> {
        if let Ok(store) = ConfigStore::decode(self.store_region(), &self.unique_id)
            && let Some(item) = store.get(keys::BOOTSTRAP_DEVICE_PRIVATE_KEY.as_bytes())
        {
            return trust::device_key_from_pkcs8_der(&item.value, keys::BOOTSTRAP_DEVICE_PRIVATE_KEY).ok();
        }
        self.own_device_key()
    }

    /// The key this device made, from its device-key sector (checked by its digest).
    fn own_device_key(&self) -> Option<SoftwareSigner> {
        let record = self.flash.slice(self.memory.device_key_sector_address(), DEVICE_KEY_RECORD_SIZE_BYTES);
        if record[0..4] != DEVICE_KEY_RECORD_MAGIC || record[4..6] != 1u16.to_le_bytes() {
            return None;
        }
        let digest_offset = DEVICE_KEY_RECORD_SIZE_BYTES - 32;
        if Sha256::digest(&record[..digest_offset]).as_slice() != &record[digest_offset..] {
            return None;
        }
        trust::device_key_from_scalar(&record[8..digest_offset], "device-key sector")
    }

    /// Keeps a new key in the device-key sector: erase, then program the record.
    fn store_device_key(&mut self, key: &SoftwareSigner) -> Result<(), IdentityFailure> {
        let config = self.memory.config;
        let address = self.memory.device_key_sector_address();
        let mut record = der::zeroize::Zeroizing::new(Vec::with_capacity(DEVICE_KEY_RECORD_SIZE_BYTES));
        record.extend_from_slice(&DEVICE_KEY_RECORD_MAGIC);
        record.extend_from_slice(&1u16.to_le_bytes());
        record.extend_from_slice(&[0, 0]);
        record.extend_from_slice(&trust::device_key_scalar(key)[..]);
        let digest = Sha256::digest(&record[..]);
        record.extend_from_slice(&digest);
        let padded = der::zeroize::Zeroizing::new(contract::pad_to_alignment(
            &record,
            config.write_alignment_bytes as usize,
            config.erased_value,
        ));
        let lost = |error: TargetError| match error {
            TargetError::PowerLost => IdentityFailure::PowerLost,
            _ => IdentityFailure::Status(IdentityStatus::KeyStorageFailed),
        };
        self.erase(address, config.sector_size_bytes, &mut |_| {}).map_err(lost)?;
        self.program(address, &padded, &mut |_| {}).map_err(lost)
    }

    fn region_is_blank(&self, region: &FlashRegion) -> bool {
        let length = (region.write_alignment_bytes as usize).max(4);
        self.flash.slice(region.address, length).iter().all(|byte| *byte == region.erased_value)
    }

    pub(super) fn store_region(&self) -> &[u8] {
        let layout = self.memory.store_layout();
        self.flash.slice(self.memory.config.address, layout.capacity_bytes)
    }

    pub(super) fn installed_version(&self) -> Option<SemanticVersion> {
        let boot_state_bytes =
            self.flash.slice(self.memory.boot_state_address(), contract::BOOT_STATE_SIZE_BYTES);
        if let Some(boot_state) = BootState::decode(boot_state_bytes) {
            return Some(boot_state.installed_version);
        }
        let store = ConfigStore::decode(self.store_region(), &self.unique_id).ok()?;
        store.text(keys::FACTORY_APP_VERSION).ok()?.parse().ok()
    }

    fn run_update_client(&mut self) -> Result<UpdateStatus, TargetError> {
        if let Some(storage) = self.hardware.update_storage {
            return self.run_storage_update_client(storage);
        }
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
        let candidate_address = self.memory.candidate.address;
        let payload =
            self.flash.slice(candidate_address + payload_range.start as u64, payload_range.len()).to_vec();
        self.install_payload(&payload, boot_state)
    }

    /// Installs `payload` (section 3.4): the application sectors, the mbed-bootloader header
    /// when there is one, the boot-state record.
    pub(super) fn install_payload(
        &mut self,
        payload: &[u8],
        boot_state: &BootState,
    ) -> Result<(), TargetError> {
        let application = self.memory.application;
        let padded = contract::pad_to_alignment(
            payload,
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
        self.write_application_header(boot_state)?;
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
