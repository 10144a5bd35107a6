//! One unit through the steps: connect, identify, flash, inject, self-test, lock, record.
//! Profiles with a `[device_identity]` add the identity steps: the device's key and CSR
//! (device-made keys), the certificate from the factory CA, and after injection the check that
//! the device holds the key its certificate names (docs/device-identity.md).
//!
//! Steps are data ([`StepName`]); the profile decides which ones run, and the run record says
//! which were skipped. Every step emits started / progress / finished-or-failed events; every
//! byte written is verified by an independent read-back; a unit is PASS only after the ledger
//! committed its record. Transient probe errors get a bounded retry; any other failure ends the
//! unit as FAIL with the step and the reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::events::{EventKind, EventSink, StationEvent, UnitResult};
use super::labels::{SerialWait, UnitLabels};
use super::sectors::{self, SectorAction, SectorPlan};
use super::self_test::{SelfTestMaterial, StagedCandidate};
use der::zeroize::Zeroizing;
use p256::ecdsa::VerifyingKey;

use crate::contract::{
    self, IdentityCommand, IdentityMailboxRequest, IdentityResponse, IdentityStatus, MailboxRequest,
    SelfTestReport, StoreStatus,
};
use crate::device::{Target, TargetError};
use crate::identity::{self, ChipUid};
use crate::image::FirmwareImage;
use crate::ledger::{
    AllocatedIdentity, IdentityRequest, Ledger, ReworkPolicy, RunRecord, RunResult, SerialScheme, StepRecord,
    StepStatus,
};
use crate::profile::{DeviceIdentitySettings, FlashRegion, KeyOrigin, Profile, ReportChannel, SkippableStep};
use crate::store::{ConfigStore, StoreItem, keys};
use crate::trust::{self, Certificate, CertificateRequest, Signer};

/// How many times a step's device operation is tried when the probe reports a transient error.
pub const TRANSIENT_RETRY_ATTEMPTS: u32 = 3;
/// Read-back and transfer chunk size.
const TRANSFER_CHUNK_BYTES: usize = 16 * 1024;
/// How often the mailbox is polled while waiting for a report.
const REPORT_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// The pipeline's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepName {
    /// Attach to the chip (and unlock a locked one by mass erase, when the profile allows).
    Connect,
    /// Read the unique ID; look the chip up in the ledger.
    Identify,
    /// Erase the sectors the images go to.
    Erase,
    /// Program the bootloader image.
    ProgramBootloader,
    /// Program the application image.
    ProgramApplication,
    /// Read back every programmed range and compare hashes.
    VerifyFlash,
    /// Allocate (or reuse) the serial number and device ID in the ledger.
    AllocateIdentity,
    /// Device-made identity keys only: the device makes its key pair and hands over a CSR,
    /// whose signature is checked.
    DeviceKey,
    /// Issue the unit's identity certificate from the factory CA (for a key the station makes
    /// now, or the device's key from its CSR).
    IssueIdentity,
    /// Build the config store and write it to the config region.
    WriteConfig,
    /// Read the config store back and decode it.
    VerifyConfig,
    /// Check the identity as the device-side verification does (chain, validity, subject) and
    /// that the device holds the key: it signs a fresh challenge that verifies with the
    /// certificate.
    VerifyIdentity,
    /// Stage a signed update, reset, and check the device's report.
    SelfTest,
    /// Stage forged updates and check that each is refused.
    NegativeSelfTest,
    /// Enable readout/debug protection.
    Lock,
    /// Prove that a debug read now fails.
    VerifyLock,
    /// Commit the run to the ledger.
    Record,
}

impl StepName {
    /// Every step in pipeline order. The identity steps run only for profiles with a
    /// `[device_identity]` (and `device-key` only for device-made keys); for other profiles
    /// they are not part of the pipeline at all (not recorded as skipped).
    pub const ALL: [StepName; 17] = [
        StepName::Connect,
        StepName::Identify,
        StepName::Erase,
        StepName::ProgramBootloader,
        StepName::ProgramApplication,
        StepName::VerifyFlash,
        StepName::AllocateIdentity,
        StepName::DeviceKey,
        StepName::IssueIdentity,
        StepName::WriteConfig,
        StepName::VerifyConfig,
        StepName::VerifyIdentity,
        StepName::SelfTest,
        StepName::NegativeSelfTest,
        StepName::Lock,
        StepName::VerifyLock,
        StepName::Record,
    ];

    /// The step's name in events, records and profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Connect => "connect",
            StepName::Identify => "identify",
            StepName::Erase => "erase",
            StepName::ProgramBootloader => "program-bootloader",
            StepName::ProgramApplication => "program-application",
            StepName::VerifyFlash => "verify-flash",
            StepName::AllocateIdentity => "allocate-identity",
            StepName::DeviceKey => "device-key",
            StepName::IssueIdentity => "issue-identity",
            StepName::WriteConfig => "write-config",
            StepName::VerifyConfig => "verify-config",
            StepName::VerifyIdentity => "verify-identity",
            StepName::SelfTest => "self-test",
            StepName::NegativeSelfTest => "negative-self-test",
            StepName::Lock => "lock",
            StepName::VerifyLock => "verify-lock",
            StepName::Record => "record",
        }
    }

    /// Whether the step is part of this profile's pipeline at all.
    pub fn applies_to(self, profile: &Profile) -> bool {
        match self {
            StepName::DeviceKey => profile
                .device_identity
                .as_ref()
                .is_some_and(|identity| identity.key_origin == KeyOrigin::Device),
            StepName::IssueIdentity | StepName::VerifyIdentity => profile.device_identity.is_some(),
            _ => true,
        }
    }

    /// The profile setting that skips this step, if any.
    fn skipped_by(self) -> Option<SkippableStep> {
        match self {
            StepName::SelfTest => Some(SkippableStep::SelfTest),
            StepName::NegativeSelfTest => Some(SkippableStep::NegativeSelfTest),
            StepName::Lock | StepName::VerifyLock => Some(SkippableStep::Lock),
            _ => None,
        }
    }
}

/// A shared flag that asks every slot to stop after its current step.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Asks for a stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What every unit of a line shares.
pub struct StationContext {
    /// The product.
    pub profile: Arc<Profile>,
    /// Signed and forged candidates, prepared once.
    pub self_test: Arc<SelfTestMaterial>,
    /// The audit ledger.
    pub ledger: Ledger,
    /// This station's name.
    pub station_name: String,
    /// Who runs the line.
    pub operator: String,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
    /// Stop request.
    pub cancel: CancelToken,
    /// Serials scanned from the units' labels and the work order (see [`UnitLabels`]).
    pub labels: Arc<UnitLabels>,
}

/// How one unit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitOutcome {
    /// PASS only when the ledger committed the record.
    pub result: UnitResult,
    /// The chip's unique ID, if it was read.
    pub chip_uid: Option<String>,
    /// The serial number, if allocated.
    pub serial: Option<String>,
    /// The device ID, if derived.
    pub device_id: Option<uuid::Uuid>,
    /// The failing step.
    pub failing_step: Option<&'static str>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Time from start to end.
    pub cycle_time: Duration,
}

/// Why a step failed: a sentence for the operator and the record.
#[derive(Debug, Clone)]
struct StepFailure(String);

impl From<TargetError> for StepFailure {
    fn from(error: TargetError) -> Self {
        StepFailure(error.to_string())
    }
}

impl From<crate::ledger::LedgerError> for StepFailure {
    fn from(error: crate::ledger::LedgerError) -> Self {
        StepFailure(format!("ledger: {error}"))
    }
}

type StepResult = Result<serde_json::Value, StepFailure>;

/// Provisions the unit behind `target`. Never panics on device or ledger trouble: every failure
/// becomes a FAIL outcome with the step and the reason (and is recorded when the ledger allows).
pub fn provision_unit(
    context: &StationContext,
    target: &mut dyn Target,
    slot: usize,
    unit: u64,
) -> UnitOutcome {
    let mut job = UnitJob {
        context,
        target,
        slot,
        unit,
        started: Instant::now(),
        started_at: SystemTime::now(),
        steps: Vec::new(),
        chip_uid: None,
        identity: None,
        identity_common_name: None,
        device_public_key: None,
        issued_identity: None,
        is_writing_secret: false,
        written_ranges: Vec::new(),
        planned_images: Vec::new(),
        last_progress_emit: Arc::new(Mutex::new(None)),
        probe: String::new(),
    };
    job.probe = job.target.probe_identifier();
    job.emit(EventKind::UnitStarted { probe: job.probe.clone() });
    let failure = job.run_steps().err();
    job.finish(failure)
}

struct UnitJob<'a> {
    context: &'a StationContext,
    target: &'a mut dyn Target,
    slot: usize,
    unit: u64,
    started: Instant,
    started_at: SystemTime,
    steps: Vec<StepRecord>,
    chip_uid: Option<ChipUid>,
    identity: Option<AllocatedIdentity>,
    /// The identity certificate's subject CN (device ID or endpoint name), once made.
    identity_common_name: Option<String>,
    /// The device's public key from its verified CSR (device-made keys).
    device_public_key: Option<VerifyingKey>,
    /// The identity certificate issued for this unit (and the station-made key).
    issued_identity: Option<IssuedIdentity>,
    /// Set while writing a config store that holds a private key: a read-back mismatch then
    /// names the address but never the bytes.
    is_writing_secret: bool,
    /// Every flash range this job programmed and has not verified yet, with its bytes.
    written_ranges: Vec<WrittenRange>,
    /// The image writes the erase step planned, for the program steps.
    planned_images: Vec<PlannedWrite>,
    /// When the running step last sent a progress event (shared with progress callbacks).
    last_progress_emit: Arc<Mutex<Option<Instant>>>,
    probe: String,
}

/// How long `allocate-identity` waits for the operator to scan a unit's serial label.
const SCANNED_SERIAL_WAIT: Duration = Duration::from_secs(600);

/// The shortest time between two progress events of one step: a steady trickle for the GUI and
/// JSON consumers rather than one event per flash page.
const PROGRESS_EVENT_INTERVAL: Duration = Duration::from_millis(100);

/// Sends a step's progress events, at most one per [`PROGRESS_EVENT_INTERVAL`] (the first and
/// the completing one always go out).
struct ProgressReporter {
    events: Arc<dyn EventSink>,
    slot: usize,
    unit: u64,
    step: StepName,
    last_emit: Arc<Mutex<Option<Instant>>>,
}

impl ProgressReporter {
    fn report(&self, bytes_done: u64, bytes_total: u64) {
        let mut last_emit = self.last_emit.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let is_due = last_emit.is_none_or(|last| now.duration_since(last) >= PROGRESS_EVENT_INTERVAL);
        if is_due || bytes_done >= bytes_total {
            *last_emit = Some(now);
            self.events.emit(StationEvent::now(
                self.slot,
                self.unit,
                EventKind::StepProgress { step: self.step.as_str().to_string(), bytes_done, bytes_total },
            ));
        }
    }
}

/// A write the station planned sector by sector.
#[derive(Clone)]
struct PlannedWrite {
    /// The step that programs it.
    step: StepName,
    region: FlashRegion,
    address: u64,
    data: Vec<u8>,
    plans: Vec<SectorPlan>,
}

/// A range programmed and not yet verified.
struct WrittenRange {
    address: u64,
    data: Vec<u8>,
    /// The bytes include a private key: mismatch reports must not quote them.
    holds_secret: bool,
}

/// The identity certificate issued for a unit.
#[derive(Clone)]
struct IssuedIdentity {
    certificate: Certificate,
    /// Station-made keys only: the PKCS#8 DER for `mbed.BootstrapDevicePrivateKey`. It goes into
    /// the config store and nowhere else (never into details, events, errors or the ledger).
    private_key_pkcs8: Option<Zeroizing<Vec<u8>>>,
}

/// A failed step: which one, and why.
struct JobFailure {
    step: StepName,
    reason: String,
}

impl<'a> UnitJob<'a> {
    fn profile(&self) -> &'a Profile {
        &self.context.profile
    }

    fn emit(&self, kind: EventKind) {
        self.context.events.emit(StationEvent::now(self.slot, self.unit, kind));
    }

    fn progress(&self, step: StepName, bytes_done: u64, bytes_total: u64) {
        self.reporter(step).report(bytes_done, bytes_total);
    }

    fn reporter(&self, step: StepName) -> ProgressReporter {
        ProgressReporter {
            events: self.context.events.clone(),
            slot: self.slot,
            unit: self.unit,
            step,
            last_emit: self.last_progress_emit.clone(),
        }
    }

    fn run_steps(&mut self) -> Result<(), JobFailure> {
        for step in StepName::ALL {
            if step == StepName::Record {
                break;
            }
            if !step.applies_to(self.profile()) {
                continue;
            }
            if let Some(skippable) = step.skipped_by()
                && (self.profile().skips(skippable)
                    || (skippable == SkippableStep::NegativeSelfTest
                        && self.profile().skips(SkippableStep::SelfTest))
                    || (skippable == SkippableStep::Lock && !self.profile().lock.enabled))
            {
                self.skip(step, format!("profile skips {}", skippable.name()));
                continue;
            }
            if self.context.cancel.is_cancelled() {
                return Err(JobFailure { step, reason: "cancelled by the operator".to_string() });
            }
            self.run_step(step)?;
        }
        Ok(())
    }

    fn skip(&mut self, step: StepName, reason: String) {
        self.emit(EventKind::StepSkipped { step: step.as_str().to_string(), reason: reason.clone() });
        self.steps.push(StepRecord {
            name: step.as_str().to_string(),
            status: StepStatus::Skipped,
            started_at: SystemTime::now(),
            duration_ms: 0,
            detail: json!({ "reason": reason }),
        });
    }

    fn run_step(&mut self, step: StepName) -> Result<(), JobFailure> {
        self.target.note_step(step.as_str());
        *self.last_progress_emit.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.emit(EventKind::StepStarted { step: step.as_str().to_string() });
        let started_at = SystemTime::now();
        let started = Instant::now();
        let result = match step {
            StepName::Connect => self.connect(),
            StepName::Identify => self.identify(),
            StepName::Erase => self.erase(),
            StepName::ProgramBootloader => self.program_image(step, self.profile().bootloader_image.clone()),
            StepName::ProgramApplication => {
                self.program_image(step, self.profile().application_image.clone())
            }
            StepName::VerifyFlash => self.verify_written(step),
            StepName::AllocateIdentity => self.allocate_identity(),
            StepName::DeviceKey => self.device_key(),
            StepName::IssueIdentity => self.issue_identity(),
            StepName::WriteConfig => self.write_config(),
            StepName::VerifyConfig => self.verify_config(),
            StepName::VerifyIdentity => self.verify_identity(),
            StepName::SelfTest => self.self_test(),
            StepName::NegativeSelfTest => self.negative_self_test(),
            StepName::Lock => self.lock(),
            StepName::VerifyLock => self.verify_lock(),
            StepName::Record => Ok(json!({})),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(detail) => {
                self.emit(EventKind::StepFinished {
                    step: step.as_str().to_string(),
                    duration_ms,
                    detail: detail.clone(),
                });
                self.steps.push(StepRecord {
                    name: step.as_str().to_string(),
                    status: StepStatus::Passed,
                    started_at,
                    duration_ms,
                    detail,
                });
                Ok(())
            }
            Err(StepFailure(reason)) => {
                self.emit(EventKind::StepFailed {
                    step: step.as_str().to_string(),
                    duration_ms,
                    reason: reason.clone(),
                });
                self.steps.push(StepRecord {
                    name: step.as_str().to_string(),
                    status: StepStatus::Failed,
                    started_at,
                    duration_ms,
                    detail: json!({ "reason": reason }),
                });
                Err(JobFailure { step, reason })
            }
        }
    }

    /// Runs a device operation, retrying transient probe errors a bounded number of times.
    fn retry<T>(
        &mut self,
        mut operation: impl FnMut(&mut dyn Target) -> Result<T, TargetError>,
    ) -> Result<T, TargetError> {
        let mut attempt = 1;
        loop {
            match operation(&mut *self.target) {
                Err(error) if error.is_transient() && attempt < TRANSIENT_RETRY_ATTEMPTS => {
                    tracing::debug!(attempt, %error, "retrying after a transient probe error");
                    std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn connect(&mut self) -> StepResult {
        let chip = self.retry(|target| target.connect())?;
        if chip.chip_name != self.profile().chip_name {
            return Err(TargetError::WrongChip {
                expected: self.profile().chip_name.clone(),
                found: chip.chip_name,
            }
            .into());
        }
        let mut detail =
            json!({ "chip": chip.chip_name, "backend": self.target.backend_name(), "probe": self.probe });
        if self.retry(|target| target.is_locked())? {
            if !self.profile().lock.allow_unlock_by_mass_erase {
                return Err(StepFailure(
                    "the chip is locked and the profile does not allow unlock by mass erase (lock.allow_unlock_by_mass_erase)".to_string(),
                ));
            }
            tracing::warn!(probe = %self.probe, "unlocking a locked chip by mass erase");
            self.retry(|target| target.unlock_by_mass_erase())?;
            detail["unlocked_by_mass_erase"] = json!(true);
        }
        Ok(detail)
    }

    fn identify(&mut self) -> StepResult {
        let chip_uid = self.retry(|target| target.read_unique_id())?;
        let chip_uid_hex = chip_uid.to_hex();
        let known = self.context.ledger.lookup_chip(&chip_uid_hex)?;
        if let Some(known) = &known
            && self.profile().rework_policy == ReworkPolicy::Refuse
        {
            return Err(StepFailure(format!(
                "chip {chip_uid_hex} was provisioned before as {} and the profile refuses rework",
                known.serial
            )));
        }
        self.chip_uid = Some(chip_uid);
        Ok(json!({
            "chip_uid": chip_uid_hex,
            "seen_before": known.is_some(),
            "previous_serial": known.map(|identity| identity.serial),
        }))
    }

    /// Plans both images (reading back every sector they touch) and erases the sectors that
    /// hold other data; the program steps then write only what differs (skip-unchanged).
    fn erase(&mut self) -> StepResult {
        let profile = self.profile();
        let mut planned_images = Vec::new();
        for (step, image, region) in [
            (StepName::ProgramBootloader, &profile.bootloader_image, profile.memory.bootloader),
            (StepName::ProgramApplication, &profile.application_image, profile.memory.application),
        ] {
            for (address, data) in sector_chunks(image, &region) {
                let plans = self.plan_write(StepName::Erase, region, address, &data)?;
                planned_images.push(PlannedWrite { step, region, address, data, plans });
            }
        }
        let plans: Vec<&SectorPlan> = planned_images.iter().flat_map(|write| write.plans.iter()).collect();
        let unchanged = plans.iter().filter(|plan| plan.action == SectorAction::Unchanged).count();
        let erased_bytes =
            self.erase_planned(StepName::Erase, planned_images.iter().flat_map(|write| write.plans.iter()))?;
        let detail = json!({
            "sectors_compared": plans.len(),
            "sectors_unchanged": unchanged,
            "erased_bytes": erased_bytes,
        });
        self.planned_images = planned_images;
        Ok(detail)
    }

    /// Programs the sectors of an image that the erase step found different.
    fn program_image(&mut self, step: StepName, image: FirmwareImage) -> StepResult {
        let writes: Vec<PlannedWrite> =
            self.planned_images.iter().filter(|write| write.step == step).cloned().collect();
        let mut programmed_bytes = 0;
        let mut skipped_sectors = 0;
        for write in &writes {
            programmed_bytes += self.program_planned(step, write)?;
            skipped_sectors +=
                write.plans.iter().filter(|plan| plan.action == SectorAction::Unchanged).count();
        }
        Ok(json!({
            "image": image.path.display().to_string(),
            "image_sha256": hex::encode(image.file_sha256),
            "bytes_written": programmed_bytes,
            "sectors_unchanged": skipped_sectors,
        }))
    }

    /// Reads back every sector a write of `data` at `address` touches and decides what each needs.
    fn plan_write(
        &mut self,
        step: StepName,
        region: FlashRegion,
        address: u64,
        data: &[u8],
    ) -> Result<Vec<SectorPlan>, StepFailure> {
        let touched = sectors::sectors_touched(&region, address, data.len());
        let sector_size = region.sector_size_bytes;
        let total = touched.len() as u64 * sector_size;
        let mut plans = Vec::with_capacity(touched.len());
        let erased_sector = vec![region.erased_value; sector_size as usize];
        let erased_crc = crate::device::crc32_of(&erased_sector);
        for (index, (sector_address, data_range)) in touched.into_iter().enumerate() {
            let expected = sectors::expected_sector(&region, sector_address, address, data);
            // Compare on the target when it can (no transfer), else read the sector back.
            let action = match self.retry(|target| target.checksum_crc32(sector_address, sector_size))? {
                Some(crc) if crc == crate::device::crc32_of(&expected) => SectorAction::Unchanged,
                Some(crc) if crc == erased_crc => SectorAction::Program,
                Some(_) => SectorAction::EraseAndProgram,
                None => {
                    let actual = self.read_back(
                        step,
                        sector_address,
                        sector_size as usize,
                        index as u64 * sector_size,
                        total,
                    )?;
                    sectors::decide(&actual, &expected, region.erased_value)
                }
            };
            self.progress(step, (index as u64 + 1) * sector_size, total);
            plans.push(SectorPlan { sector_address, sector_size_bytes: sector_size, data_range, action });
        }
        Ok(plans)
    }

    /// Erases the planned sectors that hold other data; returns the bytes erased.
    fn erase_planned<'p>(
        &mut self,
        step: StepName,
        plans: impl Iterator<Item = &'p SectorPlan>,
    ) -> Result<u64, StepFailure> {
        let plans: Vec<SectorPlan> = plans.cloned().collect();
        let spans = sectors::erase_spans(&plans);
        let total: u64 = spans.iter().map(|(_, size)| size).sum();
        let mut done_before = 0;
        for (address, size) in spans {
            let reporter = self.reporter(step);
            self.retry(|target| {
                target.erase_flash(address, size, &mut |bytes| reporter.report(done_before + bytes, total))
            })?;
            done_before += size;
        }
        Ok(total)
    }

    /// Programs what a planned write needs; returns the bytes programmed.
    fn program_planned(&mut self, step: StepName, write: &PlannedWrite) -> Result<u64, StepFailure> {
        let ranges = sectors::program_ranges(&write.plans, &write.data, &write.region);
        let total: u64 = ranges.iter().map(|range| range.len() as u64).sum();
        let mut done_before = 0;
        for range in ranges {
            let address = write.address + range.start as u64;
            self.program_verified_later(step, address, &write.data[range.clone()], done_before, total)?;
            done_before += range.len() as u64;
        }
        Ok(total)
    }

    /// Writes `data` at `address` skipping unchanged sectors: plan, erase, program. The
    /// programmed ranges are verified by the caller's next `verify_written`.
    fn write_skipping_unchanged(
        &mut self,
        step: StepName,
        region: FlashRegion,
        address: u64,
        data: Vec<u8>,
    ) -> Result<serde_json::Value, StepFailure> {
        let plans = self.plan_write(step, region, address, &data)?;
        let erased_bytes = self.erase_planned(step, plans.iter())?;
        let write = PlannedWrite { step, region, address, data, plans };
        let programmed_bytes = self.program_planned(step, &write)?;
        Ok(json!({
            "sectors_compared": write.plans.len(),
            "sectors_unchanged": write.plans.iter().filter(|plan| plan.action == SectorAction::Unchanged).count(),
            "erased_bytes": erased_bytes,
            "bytes_written": programmed_bytes,
        }))
    }

    fn program_verified_later(
        &mut self,
        step: StepName,
        address: u64,
        data: &[u8],
        done_before: u64,
        total: u64,
    ) -> Result<(), StepFailure> {
        let reporter = self.reporter(step);
        self.retry(|target| {
            target.program_flash(address, data, &mut |bytes| reporter.report(done_before + bytes, total))
        })?;
        self.written_ranges.push(WrittenRange {
            address,
            data: data.to_vec(),
            holds_secret: self.is_writing_secret,
        });
        Ok(())
    }

    /// Reads `length` bytes back in chunks, reporting progress.
    fn read_back(
        &mut self,
        step: StepName,
        address: u64,
        length: usize,
        done_before: u64,
        total: u64,
    ) -> Result<Vec<u8>, StepFailure> {
        let mut bytes = vec![0u8; length];
        let mut offset = 0;
        while offset < length {
            let chunk_length = TRANSFER_CHUNK_BYTES.min(length - offset);
            let chunk_address = address + offset as u64;
            let chunk = &mut bytes[offset..offset + chunk_length];
            self.retry(|target| target.read_memory(chunk_address, chunk))?;
            offset += chunk_length;
            self.progress(step, done_before + offset as u64, total);
        }
        Ok(bytes)
    }

    /// Verifies every range programmed so far (and not yet verified) by an independent read-back.
    fn verify_written(&mut self, step: StepName) -> StepResult {
        let ranges = std::mem::take(&mut self.written_ranges);
        let total: u64 = ranges.iter().map(|range| range.data.len() as u64).sum();
        let mut done = 0;
        let mut verified = Vec::new();
        for WrittenRange { address, data: written, holds_secret } in &ranges {
            let read = self.read_back(step, *address, written.len(), done, total)?;
            let expected: [u8; 32] = Sha256::digest(written).into();
            let actual: [u8; 32] = Sha256::digest(&read).into();
            if actual != expected {
                return Err(StepFailure(format!(
                    "read-back of {} bytes at {address:#010x} does not match what was written (sha256 {} expected {}){}",
                    written.len(),
                    hex::encode(actual),
                    hex::encode(expected),
                    first_difference(&read, *address, written, *holds_secret)
                )));
            }
            done += written.len() as u64;
            verified
                .push(json!({ "address": address, "size": written.len(), "sha256": hex::encode(actual) }));
        }
        Ok(json!({ "verified_bytes": total, "ranges": verified }))
    }

    fn allocate_identity(&mut self) -> StepResult {
        let Some(chip_uid) = self.chip_uid.clone() else {
            return Err(StepFailure("no unique ID was read".to_string()));
        };
        let profile = self.profile();
        let device_id = identity::device_id_from_chip_uid(profile.class_id, &chip_uid);
        let scanned_serial = match profile.serial_scheme {
            SerialScheme::Scanned => Some(self.wait_for_scanned_serial()?),
            SerialScheme::Counter { .. } => None,
        };
        let allocated = self.context.ledger.allocate_identity(&IdentityRequest {
            chip_uid_hex: chip_uid.to_hex(),
            profile_name: profile.name.clone(),
            device_id,
            serial_scheme: profile.serial_scheme.clone(),
            scanned_serial,
            rework_policy: profile.rework_policy,
        })?;
        let mut detail = json!({
            "serial": allocated.identity.serial,
            "device_id": allocated.identity.device_id.to_string(),
            "is_rework": allocated.is_rework,
            "retired_serial": allocated.retired_serial,
        });
        if let Some(work_order) = self.context.labels.work_order() {
            detail["work_order"] = json!(work_order);
        }
        self.identity = Some(allocated);
        Ok(detail)
    }

    /// The serial scanned from this unit's label (profiles with `serial.scheme = "scanned"`):
    /// waits for the scan, up to [`SCANNED_SERIAL_WAIT`].
    fn wait_for_scanned_serial(&self) -> Result<String, StepFailure> {
        let cancel = &self.context.cancel;
        match self.context.labels.take_serial(self.slot, &|| !cancel.is_cancelled(), SCANNED_SERIAL_WAIT) {
            SerialWait::Serial(serial) => Ok(serial),
            SerialWait::Exhausted => Err(StepFailure(
                "no scanned serial left for this unit (the profile's serial scheme is \"scanned\"; \
                 every serial given was used)"
                    .to_string(),
            )),
            SerialWait::Stopped => {
                Err(StepFailure("the line was stopped while waiting for a serial scan".to_string()))
            }
            SerialWait::TimedOut => Err(StepFailure(format!(
                "no serial was scanned within {} s (the profile's serial scheme is \"scanned\")",
                SCANNED_SERIAL_WAIT.as_secs()
            ))),
        }
    }

    /// The identity certificate's subject CN for this unit (device ID or endpoint name).
    fn identity_common_name(&mut self) -> Result<String, StepFailure> {
        if let Some(common_name) = &self.identity_common_name {
            return Ok(common_name.clone());
        }
        let settings = self.identity_settings()?;
        let identity =
            self.identity.as_ref().ok_or_else(|| StepFailure("no identity was allocated".to_string()))?;
        let chip_uid_hex = self.chip_uid.as_ref().map(ChipUid::to_hex).unwrap_or_default();
        let common_name =
            settings.common_name_for(&identity.identity.serial, identity.identity.device_id, &chip_uid_hex);
        if common_name.is_empty() || common_name.len() > contract::IDENTITY_SUBJECT_CAPACITY_BYTES {
            return Err(StepFailure(format!(
                "the identity certificate's subject name {common_name:?} has {} characters, expected 1 to {} (device_identity.endpoint_name)",
                common_name.len(),
                contract::IDENTITY_SUBJECT_CAPACITY_BYTES
            )));
        }
        self.identity_common_name = Some(common_name.clone());
        Ok(common_name)
    }

    fn identity_settings(&self) -> Result<&'a DeviceIdentitySettings, StepFailure> {
        self.profile()
            .device_identity
            .as_ref()
            .ok_or_else(|| StepFailure("the profile has no [device_identity]".to_string()))
    }

    /// Writes an identity request into the mailbox, resets, and waits for the device's answer
    /// (echoing the nonce and command); a refusal is a failure naming the device's reason.
    fn identity_exchange(&mut self, command: IdentityCommand) -> Result<Vec<u8>, StepFailure> {
        let mut nonce_bytes = [0u8; 4];
        getrandom::fill(&mut nonce_bytes)
            .map_err(|error| StepFailure(format!("no randomness for the mailbox nonce: {error}")))?;
        let request = IdentityMailboxRequest { nonce: u32::from_le_bytes(nonce_bytes) | 1, command };
        let mailbox = self.profile().memory.mailbox;
        let mailbox_image = request.encode_mailbox();
        self.retry(|target| target.write_ram(mailbox.address, &mailbox_image))?;
        self.retry(|target| target.reset_and_run())?;
        let timeout_ms = self.profile().self_test.report_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let command_name = request.command.name();
        loop {
            let mut bytes = vec![0u8; contract::IDENTITY_MAILBOX_SIZE_BYTES];
            self.retry(|target| target.read_memory(mailbox.address, &mut bytes))?;
            if let Some(response) = IdentityResponse::decode_mailbox(&bytes)
                && response.nonce == request.nonce
                && response.command_code == request.command.code()
            {
                if response.status != IdentityStatus::Done {
                    return Err(StepFailure(format!(
                        "the device refused {command_name}: {} (identity status {})",
                        response.status.describe(),
                        response.status.code()
                    )));
                }
                return Ok(response.data);
            }
            if Instant::now() >= deadline {
                return Err(StepFailure(format!(
                    "no answer to the identity request {command_name} within {timeout_ms} ms (self_test.report_timeout_ms); does the firmware implement the identity commands of the device contract, section 6?"
                )));
            }
            std::thread::sleep(REPORT_POLL_INTERVAL);
        }
    }

    /// Device-made keys: the device makes its key pair and answers with a CSR; the CSR must be
    /// signed by the key it carries and ask for this unit's subject name.
    fn device_key(&mut self) -> StepResult {
        let common_name = self.identity_common_name()?;
        let request_der = self
            .identity_exchange(IdentityCommand::MakeKeyAndCsr { subject_common_name: common_name.clone() })?;
        let verified = trust::verify_certificate_request(&request_der)
            .map_err(|error| StepFailure(format!("the device's CSR is refused: {error}")))?;
        if verified.subject_common_name.as_deref() != Some(common_name.as_str()) {
            return Err(StepFailure(format!(
                "the device's CSR asks for subject {:?}, expected CN={common_name}",
                verified.subject
            )));
        }
        let public_key_sha256 =
            trust::public_key_sha256(&verified.public_key).map_err(|error| StepFailure(error.to_string()))?;
        self.device_public_key = Some(verified.public_key);
        Ok(json!({
            "key_origin": KeyOrigin::Device.name(),
            "csr_sha256": hex::encode(verified.request_sha256),
            "csr_bytes": request_der.len(),
            "subject": verified.subject,
            "public_key_sha256": hex::encode(public_key_sha256),
        }))
    }

    /// Issues the unit's identity certificate from the factory CA, for a key the station makes
    /// now or for the device's key from its CSR.
    fn issue_identity(&mut self) -> StepResult {
        let settings = self.identity_settings()?;
        let common_name = self.identity_common_name()?;
        let (public_key, private_key_pkcs8) = match settings.key_origin {
            KeyOrigin::Station => {
                let key = trust::generate_device_key().map_err(|error| StepFailure(error.to_string()))?;
                let pkcs8 =
                    trust::device_key_pkcs8_der(&key).map_err(|error| StepFailure(error.to_string()))?;
                (key.verifying_key(), Some(pkcs8))
            }
            KeyOrigin::Device => {
                let public_key = self
                    .device_public_key
                    .ok_or_else(|| StepFailure("the device gave no public key (device-key)".to_string()))?;
                (public_key, None)
            }
        };
        let mut request = CertificateRequest::device_identity(common_name.clone(), settings.validity_days);
        request.organization = settings.organization.clone();
        let certificate = trust::issue_certificate(
            settings.ca_signer.as_ref(),
            &settings.ca_certificate,
            &public_key,
            &request,
        )
        .map_err(|error| StepFailure(format!("the factory CA did not issue the certificate: {error}")))?;
        let public_key_sha256 =
            trust::public_key_sha256(&public_key).map_err(|error| StepFailure(error.to_string()))?;
        let validity = certificate.parsed().tbs_certificate().validity();
        let detail = json!({
            "key_origin": settings.key_origin.name(),
            "subject": certificate.subject(),
            "issuer": certificate.issuer(),
            "certificate_fingerprint": certificate.fingerprint_hex(),
            "certificate_serial": certificate.serial_hex(),
            "not_before": validity.not_before.to_string(),
            "not_after": validity.not_after.to_string(),
            "public_key_sha256": hex::encode(public_key_sha256),
            "ca_fingerprint": settings.ca_certificate.fingerprint_hex(),
            "certificate_pem": certificate.to_pem(),
        });
        self.issued_identity = Some(IssuedIdentity { certificate, private_key_pkcs8 });
        Ok(detail)
    }

    /// After injection: the checks of the device-side verification (chain to the CA, validity,
    /// subject name) and proof that the device holds the certificate's key.
    fn verify_identity(&mut self) -> StepResult {
        let settings = self.identity_settings()?;
        let common_name = self.identity_common_name()?;
        let issued = self
            .issued_identity
            .clone()
            .ok_or_else(|| StepFailure("no identity certificate was issued".to_string()))?;
        let certificate = &issued.certificate;
        trust::check_device_certificate(
            certificate,
            &settings.ca_certificate,
            &common_name,
            SystemTime::now(),
        )
        .map_err(|error| {
            StepFailure(format!("the identity certificate fails the device-side checks: {error}"))
        })?;
        let mut challenge = [0u8; contract::IDENTITY_CHALLENGE_SIZE_BYTES];
        getrandom::fill(&mut challenge)
            .map_err(|error| StepFailure(format!("no randomness for the identity challenge: {error}")))?;
        let signature = self.identity_exchange(IdentityCommand::SignChallenge { challenge })?;
        let digest = contract::identity_challenge_digest(&challenge);
        trust::verify_challenge_signature(certificate, &digest, &signature).map_err(|error| {
            StepFailure(format!("the device does not prove it holds the certificate's key: {error}"))
        })?;
        Ok(json!({
            "key_origin": settings.key_origin.name(),
            "common_name": common_name,
            "certificate_fingerprint": certificate.fingerprint_hex(),
            "certificate_serial": certificate.serial_hex(),
            "chains_to": settings.ca_certificate.subject(),
            "not_after": certificate.parsed().tbs_certificate().validity().not_after.to_string(),
            "challenge": hex::encode(challenge),
            "challenge_signature_verified": true,
        }))
    }

    fn config_store(&self) -> Result<ConfigStore, StepFailure> {
        let profile = self.profile();
        let identity =
            self.identity.as_ref().ok_or_else(|| StepFailure("no identity was allocated".to_string()))?;
        let mut store = ConfigStore::default();
        store.set(StoreItem::binary(keys::VENDOR_ID, profile.vendor_id.as_bytes()));
        store.set(StoreItem::binary(keys::CLASS_ID, profile.class_id.as_bytes()));
        store.set(StoreItem::binary(keys::DEVICE_ID, identity.identity.device_id.as_bytes()));
        store.set(StoreItem::text(keys::SERIAL_NUMBER, &identity.identity.serial));
        store.set(StoreItem::text(keys::MANUFACTURER_NAME, &profile.manufacturer));
        store.set(StoreItem::text(keys::MODEL_NUMBER, &profile.model_name));
        if let Some(device_type) = &profile.device_type {
            store.set(StoreItem::text(keys::DEVICE_TYPE, device_type));
        }
        if let Some(hardware_version) = &profile.hardware_version {
            store.set(StoreItem::text(keys::HARDWARE_VERSION, hardware_version));
        }
        store.set(StoreItem::text(keys::FACTORY_APP_VERSION, &profile.application_version.to_string()));
        store.set_update_certificate(profile.update_certificate.der());
        if let Some(settings) = &profile.device_identity {
            let issued = self
                .issued_identity
                .as_ref()
                .ok_or_else(|| StepFailure("no identity certificate was issued".to_string()))?;
            let common_name = self.identity_common_name.as_deref().unwrap_or_default();
            store.set(StoreItem::text(keys::ENDPOINT_NAME, common_name));
            store.set(StoreItem::binary(keys::BOOTSTRAP_DEVICE_CERT, issued.certificate.der()));
            if let Some(private_key) = &issued.private_key_pkcs8 {
                store.set(StoreItem::binary(keys::BOOTSTRAP_DEVICE_PRIVATE_KEY, private_key));
            }
            store.set(StoreItem::binary(&settings.ca_certificate_item, settings.ca_certificate.der()));
        }
        Ok(store)
    }

    fn write_config(&mut self) -> StepResult {
        let store = self.config_store()?;
        let chip_uid =
            self.chip_uid.clone().ok_or_else(|| StepFailure("no unique ID was read".to_string()))?;
        let profile = self.profile();
        let layout = profile.store_layout();
        let encoded = Zeroizing::new(
            store
                .encode(chip_uid.as_bytes(), &layout)
                .map_err(|error| StepFailure(format!("cannot build the config store: {error}")))?,
        );
        let config = profile.memory.config;
        self.is_writing_secret = store.items.iter().any(StoreItem::is_secret);
        let written = if profile.reserves_device_key_sector() {
            // The device keeps its own key in the device-key sector: write the store area and
            // erase the boot-state sector, but never touch the sector in between.
            let mut store_area = encoded.to_vec();
            store_area.resize(layout.capacity_bytes, config.erased_value);
            self.write_skipping_unchanged(StepName::WriteConfig, config, config.address, store_area).and_then(
                |store_detail| {
                    let boot_state = vec![config.erased_value; config.sector_size_bytes as usize];
                    let boot_state_address = profile.memory.boot_state_address();
                    self.write_skipping_unchanged(StepName::WriteConfig, config, boot_state_address, boot_state)
                        .map(|boot_state_detail| json!({ "store_area": store_detail, "boot_state": boot_state_detail }))
                },
            )
        } else {
            // The whole config region is written: the store, then erased bytes up to the end, so
            // the boot-state sector is erased too and a fresh store starts from the factory version.
            let mut region_image = encoded.to_vec();
            region_image.resize(config.size_bytes as usize, config.erased_value);
            self.write_skipping_unchanged(StepName::WriteConfig, config, config.address, region_image)
        };
        self.is_writing_secret = false;
        let write_detail = written?;
        let mut detail = json!({
            "store_bytes": encoded.len(),
            "flash": write_detail,
            "store_sha256": hex::encode(Sha256::digest(&encoded[..])),
            "certificate_fingerprint": hex::encode(profile.update_certificate.fingerprint_sha256()),
            "items": store.items.len(),
        });
        if let Some(issued) = &self.issued_identity {
            detail["device_certificate_fingerprint"] = json!(issued.certificate.fingerprint_hex());
            detail["device_private_key_in_store"] = json!(issued.private_key_pkcs8.is_some());
        }
        Ok(detail)
    }

    fn verify_config(&mut self) -> StepResult {
        let mut detail = self.verify_written(StepName::VerifyConfig)?;
        let chip_uid =
            self.chip_uid.clone().ok_or_else(|| StepFailure("no unique ID was read".to_string()))?;
        let layout = self.profile().store_layout();
        let address = self.profile().memory.config.address;
        let read = self.read_back(
            StepName::VerifyConfig,
            address,
            layout.capacity_bytes,
            0,
            layout.capacity_bytes as u64,
        )?;
        let decoded = ConfigStore::decode(&read, chip_uid.as_bytes())
            .map_err(|error| StepFailure(format!("the config store read back does not decode: {error}")))?;
        let expected = self.config_store()?;
        if decoded != expected {
            return Err(StepFailure("the config store read back decodes to different items".to_string()));
        }
        detail["decoded_items"] = json!(decoded.items.len());
        Ok(detail)
    }

    /// Stages a candidate, resets, and returns the device's report.
    fn stage_and_boot(
        &mut self,
        step: StepName,
        candidate: &StagedCandidate,
    ) -> Result<SelfTestReport, StepFailure> {
        let candidate_region = self.profile().memory.candidate;
        let padded = contract::pad_to_alignment(
            &candidate.candidate_bytes,
            candidate_region.write_alignment_bytes as usize,
            candidate_region.erased_value,
        );
        self.write_skipping_unchanged(step, candidate_region, candidate_region.address, padded)?;
        self.verify_written(step)?;
        let mut nonce_bytes = [0u8; 4];
        getrandom::fill(&mut nonce_bytes)
            .map_err(|error| StepFailure(format!("no randomness for the mailbox nonce: {error}")))?;
        let request = MailboxRequest { nonce: u32::from_le_bytes(nonce_bytes) | 1 };
        let mailbox = self.profile().memory.mailbox;
        let _ = self.target.take_console_lines();
        let mailbox_image = request.encode_mailbox();
        self.retry(|target| target.write_ram(mailbox.address, &mailbox_image))?;
        self.retry(|target| target.reset_and_run())?;
        self.wait_for_report(request.nonce)
    }

    fn wait_for_report(&mut self, nonce: u32) -> Result<SelfTestReport, StepFailure> {
        let timeout_ms = self.profile().self_test.report_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mailbox = self.profile().memory.mailbox;
        let channel = self.profile().self_test.report_channel;
        loop {
            let report = match channel {
                ReportChannel::Mailbox => {
                    let mut bytes = vec![0u8; contract::MAILBOX_SIZE_BYTES];
                    self.retry(|target| target.read_memory(mailbox.address, &mut bytes))?;
                    SelfTestReport::decode_mailbox(&bytes)
                }
                ReportChannel::Console => {
                    let lines = self.target.take_console_lines().ok_or_else(|| {
                        StepFailure(
                            "the profile reads reports from the console, but this target has none"
                                .to_string(),
                        )
                    })?;
                    lines.iter().rev().find_map(|line| SelfTestReport::parse_console_line(line))
                }
            };
            if let Some(report) = report
                && report.nonce == nonce
            {
                return Ok(report);
            }
            if Instant::now() >= deadline {
                return Err(StepFailure(format!(
                    "no self-test report within {timeout_ms} ms (self_test.report_timeout_ms)"
                )));
            }
            std::thread::sleep(REPORT_POLL_INTERVAL);
        }
    }

    fn application_slot_sha256(&mut self, step: StepName, length: usize) -> Result<[u8; 32], StepFailure> {
        let address = self.profile().memory.application.address;
        let bytes = self.read_back(step, address, length, 0, length as u64)?;
        Ok(Sha256::digest(&bytes).into())
    }

    fn self_test(&mut self) -> StepResult {
        let material = self.context.self_test.clone();
        let report = self.stage_and_boot(StepName::SelfTest, &material.signed)?;
        let identity =
            self.identity.clone().ok_or_else(|| StepFailure("no identity was allocated".to_string()))?;
        let profile = self.profile();
        let mut mismatches = Vec::new();
        if report.update_status != material.signed.expected_status {
            mismatches.push(format!(
                "update client reported {:?} ({:#04x}), expected Installed",
                report.update_status,
                report.update_status.code()
            ));
        }
        if report.store_status != StoreStatus::Provisioned {
            mismatches.push("device reports its config store unreadable (unprovisioned)".to_string());
        }
        let expectations: [(&str, String, String); 6] = [
            ("vendor ID", hex::encode(report.vendor_id), hex::encode(profile.vendor_id.as_bytes())),
            ("class ID", hex::encode(report.class_id), hex::encode(profile.class_id.as_bytes())),
            ("device ID", hex::encode(report.device_id), hex::encode(identity.identity.device_id.as_bytes())),
            (
                "certificate fingerprint",
                hex::encode(report.certificate_fingerprint),
                hex::encode(profile.update_certificate.fingerprint_sha256()),
            ),
            ("serial number", report.serial_number.clone(), identity.identity.serial.clone()),
            ("running version", report.running_version.to_string(), material.payload_version.to_string()),
        ];
        for (what, reported, expected) in &expectations {
            if reported != expected {
                mismatches.push(format!("device reports {what} {reported}, expected {expected}"));
            }
        }
        if !mismatches.is_empty() {
            return Err(StepFailure(mismatches.join("; ")));
        }
        let installed = self.application_slot_sha256(StepName::SelfTest, material.payload.len())?;
        if installed != material.payload_sha256 {
            return Err(StepFailure(
                "the device reports the update installed, but the application slot does not hold the payload"
                    .to_string(),
            ));
        }
        Ok(json!({
            "manifest_sha256": hex::encode(material.signed.manifest_sha256),
            "payload_sha256": hex::encode(material.payload_sha256),
            "installed_version": report.running_version.to_string(),
            "reported_serial": report.serial_number,
            "reported_device_id": uuid::Uuid::from_bytes(report.device_id).to_string(),
            "certificate_fingerprint": hex::encode(report.certificate_fingerprint),
        }))
    }

    fn negative_self_test(&mut self) -> StepResult {
        let material = self.context.self_test.clone();
        let running_before =
            if self.profile().skips(SkippableStep::SelfTest) { None } else { Some(material.payload_version) };
        // After a passed self-test the slot holds the payload (its hash was just read back);
        // otherwise read what is there now.
        let application_before = match running_before {
            Some(_) => material.payload_sha256,
            None => self.application_slot_sha256(StepName::NegativeSelfTest, material.payload.len())?,
        };
        let mut refusals = Vec::new();
        for forged in &material.forged {
            let report = self.stage_and_boot(StepName::NegativeSelfTest, forged)?;
            if report.update_status != forged.expected_status {
                return Err(StepFailure(format!(
                    "forged update '{}' was answered {:?} ({:#04x}), expected refusal {:?} ({:#04x})",
                    forged.name,
                    report.update_status,
                    report.update_status.code(),
                    forged.expected_status,
                    forged.expected_status.code()
                )));
            }
            if let Some(running_before) = running_before
                && report.running_version != running_before
            {
                return Err(StepFailure(format!(
                    "after refusing '{}' the device runs version {}, expected {running_before}",
                    forged.name, report.running_version
                )));
            }
            let application_after =
                self.application_slot_sha256(StepName::NegativeSelfTest, material.payload.len())?;
            if application_after != application_before {
                return Err(StepFailure(format!(
                    "forged update '{}' was refused but the application slot changed",
                    forged.name
                )));
            }
            refusals.push(json!({
                "candidate": forged.name,
                "manifest_sha256": hex::encode(forged.manifest_sha256),
                "reason_code": report.update_status.code(),
            }));
        }
        Ok(json!({ "refused": refusals }))
    }

    fn lock(&mut self) -> StepResult {
        self.retry(|target| target.lock())?;
        Ok(json!({ "locked": true }))
    }

    fn verify_lock(&mut self) -> StepResult {
        if !self.retry(|target| target.is_locked())? {
            return Err(StepFailure("the chip does not report itself locked".to_string()));
        }
        let address = self.profile().memory.config.address;
        let mut probe_bytes = [0u8; 16];
        match self.target.read_memory(address, &mut probe_bytes) {
            Ok(()) => {
                Err(StepFailure(format!("a debug read at {address:#010x} still succeeds after locking")))
            }
            Err(TargetError::Locked) => Ok(json!({ "debug_read_refused_at": address })),
            Err(other) => {
                Err(StepFailure(format!("expected the debug read to be refused as locked, got: {other}")))
            }
        }
    }

    /// Records the run, then reports the outcome (PASS only after the commit).
    fn finish(mut self, failure: Option<JobFailure>) -> UnitOutcome {
        let record_started = Instant::now();
        if failure.is_none() {
            self.target.note_step(StepName::Record.as_str());
            self.emit(EventKind::StepStarted { step: StepName::Record.as_str().to_string() });
        }
        let (failing_step, reason) = match &failure {
            Some(failure) => (Some(failure.step.as_str()), Some(failure.reason.clone())),
            None => (None, None),
        };
        let identity = self.identity.as_ref().map(|allocated| allocated.identity.clone());
        let profile = self.profile();
        let record = RunRecord {
            station: self.context.station_name.clone(),
            operator: self.context.operator.clone(),
            probe: self.probe.clone(),
            profile_name: profile.name.clone(),
            profile_sha256: profile.file_sha256_hex(),
            image_sha256s: vec![
                ("bootloader".to_string(), hex::encode(profile.bootloader_image.file_sha256)),
                ("application".to_string(), hex::encode(profile.application_image.file_sha256)),
                ("self-test-payload".to_string(), hex::encode(profile.self_test.payload.file_sha256)),
            ],
            chip_uid_hex: self.chip_uid.as_ref().map(ChipUid::to_hex),
            serial: identity.as_ref().map(|identity| identity.serial.clone()),
            device_id: identity.as_ref().map(|identity| identity.device_id),
            started_at: self.started_at,
            finished_at: SystemTime::now(),
            result: if failure.is_none() { RunResult::Pass } else { RunResult::Fail },
            failing_step: failing_step.map(str::to_string),
            reason: reason.clone(),
            steps: std::mem::take(&mut self.steps),
        };
        let receipt = self.context.ledger.record_run(&record);
        let (result, failing_step, reason, record_hash) = match (receipt, failure) {
            (Ok(receipt), None) => {
                self.emit(EventKind::StepFinished {
                    step: StepName::Record.as_str().to_string(),
                    duration_ms: record_started.elapsed().as_millis() as u64,
                    detail: json!({ "run_id": receipt.run_id, "station_sequence": receipt.station_sequence, "record_hash": hex::encode(receipt.record_hash) }),
                });
                (UnitResult::Pass, None, None, Some(hex::encode(receipt.record_hash)))
            }
            (Ok(receipt), Some(_)) => {
                (UnitResult::Fail, failing_step, reason, Some(hex::encode(receipt.record_hash)))
            }
            (Err(error), failure) => {
                let record_reason = format!("the ledger did not commit the run: {error}");
                if failure.is_none() {
                    self.emit(EventKind::StepFailed {
                        step: StepName::Record.as_str().to_string(),
                        duration_ms: record_started.elapsed().as_millis() as u64,
                        reason: record_reason.clone(),
                    });
                }
                let reason = match reason {
                    Some(reason) => format!("{reason} (and {record_reason})"),
                    None => record_reason,
                };
                (UnitResult::Fail, failing_step.or(Some(StepName::Record.as_str())), Some(reason), None)
            }
        };
        let cycle_time = self.started.elapsed();
        self.emit(EventKind::UnitFinished {
            result,
            chip_uid: record.chip_uid_hex.clone(),
            serial: record.serial.clone(),
            device_id: record.device_id.map(|id| id.to_string()),
            failing_step: failing_step.map(str::to_string),
            reason: reason.clone(),
            cycle_time_ms: cycle_time.as_millis() as u64,
            record_hash,
        });
        UnitOutcome {
            result,
            chip_uid: record.chip_uid_hex,
            serial: record.serial,
            device_id: record.device_id,
            failing_step,
            reason,
            cycle_time,
        }
    }
}

/// The image's segments as writes aligned to the region's write alignment, merged so that no
/// two writes touch the same sector (a gap inside a sector is filled with the erased value).
fn sector_chunks(image: &FirmwareImage, region: &FlashRegion) -> Vec<(u64, Vec<u8>)> {
    let alignment = region.write_alignment_bytes.max(1);
    // One past the end of the sector holding the byte before `chunk_end`.
    let sector_end = |chunk_end: u64| {
        let offset = chunk_end - 1 - region.address;
        region.address + (offset / region.sector_size_bytes + 1) * region.sector_size_bytes
    };
    let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
    for segment in &image.segments {
        let start = segment.address - segment.address % alignment;
        let end = (segment.address + segment.data.len() as u64).next_multiple_of(alignment);
        match chunks.last_mut() {
            Some((chunk_start, chunk_data)) if sector_end(*chunk_start + chunk_data.len() as u64) > start => {
                chunk_data.resize((end - *chunk_start) as usize, region.erased_value);
                let offset = (segment.address - *chunk_start) as usize;
                chunk_data[offset..offset + segment.data.len()].copy_from_slice(&segment.data);
            }
            _ => {
                let mut data = vec![region.erased_value; (end - start) as usize];
                let offset = (segment.address - start) as usize;
                data[offset..offset + segment.data.len()].copy_from_slice(&segment.data);
                chunks.push((start, data));
            }
        }
    }
    chunks
}

fn first_difference(read: &[u8], address: u64, expected: &[u8], holds_secret: bool) -> String {
    read.iter()
        .zip(expected)
        .position(|(actual, wanted)| actual != wanted)
        .map(|offset| {
            if holds_secret {
                // The range holds a private key: name the place, never the bytes.
                return format!("; first difference at {:#010x}", address + offset as u64);
            }
            format!(
                "; first difference at {:#010x}: read {:#04x}, wrote {:#04x}",
                address + offset as u64,
                read[offset],
                expected[offset]
            )
        })
        .unwrap_or_default()
}
