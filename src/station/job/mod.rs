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
//!
//! This file is the runner and the record: [`provision_unit`] walks the steps, emits their
//! events, retries transient errors and commits the run. The steps live by family:
//! [`connect`] (attach, unique ID), [`flash`] (erase, program, verify by read-back),
//! [`identity`] (serial and device ID, the device's key and certificate), [`fcc`] (the bundle
//! for a device's Factory Configurator Client), [`config`] (the config store), [`self_test`]
//! (signed and forged updates), [`lock`]. What earlier steps learned is one
//! [`facts::UnitFacts`] value, which says in one place when a step ran out of order.

mod config;
mod connect;
mod facts;
mod fcc;
mod flash;
mod identity;
mod lock;
mod rot;
mod self_test;
mod update_storage;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use super::events::{EventKind, EventSink, StationEvent, StepFacts, UnitResult};
use super::failure::FailureCategory;
use super::labels::UnitLabels;
use super::self_test::SelfTestMaterial;
pub use super::steps::StepName;
use facts::UnitFacts;
use flash::WrittenRange;

use crate::device::{Target, TargetError};
use crate::identity::ChipUid;
use crate::ledger::{Ledger, RunRecord, RunResult, StepRecord, StepStatus};
use crate::profile::{FirmwareSettings, Profile, SkippableStep};

/// How many times a step's device operation is tried when the probe reports a transient error.
pub const TRANSIENT_RETRY_ATTEMPTS: u32 = 3;
/// How often the mailbox is polled while waiting for a report.
const REPORT_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// How a line is asked to end, shared by every slot. Two levels, each one way:
/// - [`CancelToken::stop`]: start no new unit; every unit in flight finishes (PASS or FAIL, as it
///   would have) and is recorded. The operator's Stop, the first Ctrl-C or SIGTERM, a reader of
///   the event stream that went away.
/// - [`CancelToken::abort`]: also end the units in flight after their current step; each is
///   recorded ABORTED with the steps it did (a second Ctrl-C, the window's confirmed Abort).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicU8>);

// The token's levels; a new token is running (0).
const LINE_STOPPING: u8 = 1;
const LINE_ABORTING: u8 = 2;

impl CancelToken {
    /// Asks the line to finish its units in flight and start no new one.
    pub fn stop(&self) {
        self.0.fetch_max(LINE_STOPPING, Ordering::SeqCst);
    }

    /// Asks the line to end its units in flight after their current step (recorded ABORTED).
    pub fn abort(&self) {
        self.0.store(LINE_ABORTING, Ordering::SeqCst);
    }

    /// Whether a stop (or an abort) was asked for: no new unit may start.
    pub fn is_stopping(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= LINE_STOPPING
    }

    /// Whether an abort was asked for: units in flight end after their current step.
    pub fn is_aborting(&self) -> bool {
        self.0.load(Ordering::SeqCst) == LINE_ABORTING
    }
}

/// What every unit of a line shares.
pub struct StationContext {
    /// The product.
    pub profile: Arc<Profile>,
    /// Signed and forged candidates, prepared once; `None` for an FCC-only profile (no
    /// self-test).
    pub self_test: Option<Arc<SelfTestMaterial>>,
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
    let probe = target.probe_identifier();
    let mut job = UnitJob {
        context,
        target,
        slot,
        unit,
        started: Instant::now(),
        started_at: SystemTime::now(),
        steps: Vec::new(),
        facts: UnitFacts::default(),
        is_writing_secret: false,
        written_ranges: Vec::new(),
        last_progress_emit: Arc::new(Mutex::new(None)),
        probe,
    };
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
    /// What the steps so far learned about the unit (chip UID, identity, certificate, plans).
    facts: UnitFacts,
    /// Set while writing a config store that holds a private key: a read-back mismatch then
    /// names the address but never the bytes.
    is_writing_secret: bool,
    /// Every flash range this job programmed and has not verified yet, with its bytes.
    written_ranges: Vec<WrittenRange>,
    /// When the running step last sent a progress event (shared with progress callbacks).
    last_progress_emit: Arc<Mutex<Option<Instant>>>,
    probe: String,
}

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
                EventKind::StepProgress { step: self.step, bytes_done, bytes_total },
            ));
        }
    }
}

/// A failed step: which one, and why; `aborted` when the line was aborted before it.
struct JobFailure {
    step: StepName,
    reason: String,
    aborted: bool,
}

/// Why a profile with `[fcc]` records no self-test on a slot with a debug port.
pub const FCC_SELF_TEST_SKIP_REASON: &str = "the profile's identity goes in through the device's FCC ([fcc]): the self-test checks Imprint's config store, which such a device does not hold";

/// The reason recorded for a unit the line was aborted under.
pub const ABORTED_REASON: &str =
    "aborted by the operator before this step (the unit was left as the recorded steps say)";

impl<'a> UnitJob<'a> {
    fn profile(&self) -> &'a Profile {
        &self.context.profile
    }

    /// The profile's firmware settings, for the steps that flash, write the config store or
    /// self-test; an FCC-only profile has none (those steps never run on its slots).
    fn firmware(&self) -> Result<&'a FirmwareSettings, StepFailure> {
        self.profile().require_firmware("this step").map_err(|error| StepFailure(error.to_string()))
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
            if step.needs_debug_port(self.profile()) && !self.target.has_debug_port() {
                self.skip(step, "the slot has no debug port (an FCC-only device)".to_string());
                continue;
            }
            if self.profile().fcc.is_some() && matches!(step, StepName::SelfTest | StepName::NegativeSelfTest)
            {
                self.skip(step, FCC_SELF_TEST_SKIP_REASON.to_string());
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
            if self.context.cancel.is_aborting() {
                // The step never started: nothing of it is recorded but the abort itself.
                return Err(JobFailure { step, reason: ABORTED_REASON.to_string(), aborted: true });
            }
            self.run_step(step)?;
        }
        Ok(())
    }

    fn skip(&mut self, step: StepName, reason: String) {
        self.emit(EventKind::StepSkipped { step, reason: reason.clone() });
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
        self.emit(EventKind::StepStarted { step });
        let started_at = SystemTime::now();
        let started = Instant::now();
        let result = match step {
            StepName::Connect if !self.target.has_debug_port() => self.connect_without_debug_port(),
            StepName::Connect => self.connect(),
            StepName::Identify => self.identify(),
            StepName::CheckIdentity => self.check_identity(),
            StepName::Erase => self.erase(),
            StepName::ProgramBootloader => self
                .firmware()
                .and_then(|firmware| self.program_image(step, firmware.bootloader_image.clone())),
            StepName::ProgramApplication => self
                .firmware()
                .and_then(|firmware| self.program_image(step, firmware.application_image.clone())),
            StepName::VerifyFlash => self.verify_written(step),
            StepName::InjectRootOfTrust => self.inject_root_of_trust(),
            StepName::AllocateIdentity => self.allocate_identity(),
            StepName::DeviceKey if self.profile().fcc.is_some() => self.fcc_device_key(),
            StepName::DeviceKey => self.device_key(),
            StepName::IssueIdentity => self.issue_identity(),
            StepName::FccInject => self.fcc_inject(),
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
                    step,
                    duration_ms,
                    detail: detail.clone(),
                    facts: self.facts.announced_by(step),
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
                self.emit(EventKind::StepFailed { step, duration_ms, reason: reason.clone() });
                self.steps.push(StepRecord {
                    name: step.as_str().to_string(),
                    status: StepStatus::Failed,
                    started_at,
                    duration_ms,
                    detail: json!({ "reason": reason }),
                });
                Err(JobFailure { step, reason, aborted: false })
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

    /// Records the run, then reports the outcome (PASS only after the commit).
    fn finish(mut self, failure: Option<JobFailure>) -> UnitOutcome {
        let record_started = Instant::now();
        if failure.is_none() {
            self.target.note_step(StepName::Record.as_str());
            self.emit(EventKind::StepStarted { step: StepName::Record });
        }
        let (failing_step, reason) = match &failure {
            Some(failure) => (Some(failure.step.as_str()), Some(failure.reason.clone())),
            None => (None, None),
        };
        let identity = self.facts.identity.as_ref().map(|allocated| allocated.identity.clone());
        let (locked, skipped_steps) = lock_and_skips(&self.steps);
        let profile = self.profile();
        let record = RunRecord {
            station: self.context.station_name.clone(),
            operator: self.context.operator.clone(),
            probe: self.probe.clone(),
            profile_name: profile.name.clone(),
            profile_sha256: profile.file_sha256_hex(),
            // An FCC-only profile flashes nothing: no images to record.
            image_sha256s: profile.firmware.as_ref().map_or_else(Vec::new, |firmware| {
                vec![
                    ("bootloader".to_string(), hex::encode(firmware.bootloader_image.file_sha256)),
                    ("application".to_string(), hex::encode(firmware.application_image.file_sha256)),
                    ("self-test-payload".to_string(), hex::encode(firmware.self_test.payload.file_sha256)),
                ]
            }),
            chip_uid_hex: self.facts.chip_uid.as_ref().map(ChipUid::to_hex),
            serial: identity.as_ref().map(|identity| identity.serial.clone()),
            device_id: identity.as_ref().map(|identity| identity.device_id),
            started_at: self.started_at,
            finished_at: SystemTime::now(),
            result: match &failure {
                None => RunResult::Pass,
                Some(failure) if failure.aborted => RunResult::Aborted,
                Some(_) => RunResult::Fail,
            },
            failing_step: failing_step.map(str::to_string),
            reason: reason.clone(),
            steps: std::mem::take(&mut self.steps),
        };
        let receipt = self.context.ledger.record_run(&record);
        let (result, failing_step, reason, record_hash) = match (receipt, failure) {
            (Ok(receipt), None) => {
                self.emit(EventKind::StepFinished {
                    step: StepName::Record,
                    facts: StepFacts::default(),
                    duration_ms: record_started.elapsed().as_millis() as u64,
                    detail: json!({ "run_id": receipt.run_id, "station_sequence": receipt.station_sequence, "record_hash": hex::encode(receipt.record_hash) }),
                });
                (UnitResult::Pass, None, None, Some(hex::encode(receipt.record_hash)))
            }
            (Ok(receipt), Some(failure)) => {
                let result = if failure.aborted { UnitResult::Aborted } else { UnitResult::Fail };
                (result, failing_step, reason, Some(hex::encode(receipt.record_hash)))
            }
            (Err(error), failure) => {
                let record_reason = format!("the ledger did not commit the run: {error}");
                if failure.is_none() {
                    self.emit(EventKind::StepFailed {
                        step: StepName::Record,
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
            error_code: match result {
                UnitResult::Pass => None,
                UnitResult::Aborted => Some(FailureCategory::Aborted),
                UnitResult::Fail => Some(
                    failing_step
                        .and_then(FailureCategory::for_step_name)
                        .unwrap_or(FailureCategory::Internal),
                ),
            },
            reason: reason.clone(),
            cycle_time_ms: cycle_time.as_millis() as u64,
            record_hash,
            locked,
            skipped_steps,
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

/// From a unit's step records: whether the unit was locked with the lock proven (`verify-lock`
/// passed, which it only does after `lock`), and the steps the profile skipped.
fn lock_and_skips(steps: &[StepRecord]) -> (bool, Vec<StepName>) {
    let locked = steps
        .iter()
        .any(|step| step.name == StepName::VerifyLock.as_str() && step.status == StepStatus::Passed);
    let skipped = steps
        .iter()
        .filter(|step| step.status == StepStatus::Skipped)
        .filter_map(|step| StepName::from_name(&step.name))
        .collect();
    (locked, skipped)
}
