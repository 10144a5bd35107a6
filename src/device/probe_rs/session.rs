//! [`ProbeRsTarget`]: the [`Target`] trait over a probe-rs session — kept thin on purpose.
//!
//! Each call is one job on the slot's [`SessionWorker`] thread (the watchdog that keeps a
//! stuck probe from hanging the line); inside the job a handful of probe-rs calls do the work,
//! and everything that decides something is a tested function elsewhere in this module:
//! [`super::errors`] maps failures, [`super::progress`] turns flash-loader events into byte
//! counts, [`super::lock`] runs and judges lock recipes, [`super::chip`] checks identity and
//! unique IDs.

use std::sync::Arc;
use std::time::Duration;

use probe_rs::architecture::arm::FullyQualifiedApAddress;
use probe_rs::flashing::{DownloadOptions, FlashProgress, ProgressEvent, ProgressOperation};
use probe_rs::probe::DebugProbeSelector;
use probe_rs::probe::list::Lister;
use probe_rs::{MemoryInterface, Permissions, Session};

use super::ProbeRsConfig;
use super::chip::{
    UniqueIdRead, plan_unique_id_read, reported_chip_name, unique_id_bytes_from_words, unique_id_from_bytes,
};
use super::errors::{ProbeFailureKind, classify, map_probe_rs_error};
use super::progress::{FlashEvent, FlashPhase, FlashProgressTally};
use super::worker::{ProgressReporter, SessionWorker};
use crate::chip::lock::{
    LockRecipe, LockStateCheck, RegisterBus, UnlockMethod, judge_lock_proof, run_register_steps,
    steps_time_bound_ms,
};
use crate::device::console::SerialConsole;
use crate::device::{ChipDescription, Target, TargetError};
use crate::identity::ChipUid;

/// What the worker thread needs to (re)attach.
pub(crate) struct AttachPlan {
    /// The one probe this slot owns.
    pub probe_selector: DebugProbeSelector,
    /// The resolved chip description.
    pub target: probe_rs::Target,
    /// The profile-derived settings.
    pub config: Arc<ProbeRsConfig>,
}

/// The session and what is known about the chip's lock, on the worker thread.
pub(crate) struct SessionState {
    plan: Arc<AttachPlan>,
    session: Option<Session>,
    /// The last attach was refused because the chip is locked (e.g. an nRF52 with APPROTECT).
    attach_refused_as_locked: bool,
}

/// The core all MCU work goes through (single-core parts).
const CORE_INDEX: usize = 0;
/// How long a halt may take.
const HALT_TIMEOUT: Duration = Duration::from_millis(500);
/// The nRF52 CTRL-AP and its APPROTECTSTATUS register.
const NORDIC_CTRL_AP_INDEX: u8 = 1;
const NORDIC_APPROTECTSTATUS: u64 = 0x0C;

fn attach(plan: &AttachPlan, permissions: Permissions) -> Result<Session, TargetError> {
    let probe = Lister::new()
        .open(plan.probe_selector.clone())
        .map_err(|error| map_probe_rs_error(&error, "open probe", None))?;
    probe.attach(plan.target.clone(), permissions).map_err(|error| map_probe_rs_error(&error, "attach", None))
}

impl SessionState {
    /// Attaches; a chip that refuses because it is locked still counts as present (the station
    /// decides whether to recover it).
    pub(crate) fn open(plan: Arc<AttachPlan>) -> Result<SessionState, TargetError> {
        match attach(&plan, Permissions::new()) {
            Ok(session) => Ok(SessionState { plan, session: Some(session), attach_refused_as_locked: false }),
            Err(TargetError::Locked) => {
                tracing::info!("the chip refuses debug access: locked");
                Ok(SessionState { plan, session: None, attach_refused_as_locked: true })
            }
            Err(other) => Err(other),
        }
    }

    fn config(&self) -> &ProbeRsConfig {
        &self.plan.config
    }

    /// The session, re-attaching after a recipe dropped the link.
    fn session(&mut self) -> Result<&mut Session, TargetError> {
        if self.session.is_none() {
            match attach(&self.plan, Permissions::new()) {
                Ok(session) => {
                    self.session = Some(session);
                    self.attach_refused_as_locked = false;
                }
                Err(TargetError::Locked) => {
                    self.attach_refused_as_locked = true;
                    return Err(TargetError::Locked);
                }
                Err(other) => return Err(other),
            }
        }
        self.session.as_mut().ok_or_else(|| TargetError::ProbeLost { reason: "no probe session".to_string() })
    }

    fn read_bytes(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        let session = self.session()?;
        let outcome = session.core(CORE_INDEX).and_then(|mut core| core.read(address, buffer));
        outcome.map_err(|error| self.access_error(&error, "read", address))
    }

    fn read_words(&mut self, address: u64, words: &mut [u32]) -> Result<(), TargetError> {
        let session = self.session()?;
        let outcome = session.core(CORE_INDEX).and_then(|mut core| core.read_32(address, words));
        outcome.map_err(|error| self.access_error(&error, "read", address))
    }

    /// An access fault on a chip whose lock check says locked is the lock, not a bad address.
    fn access_error(
        &mut self,
        error: &(dyn std::error::Error + 'static),
        operation: &'static str,
        address: u64,
    ) -> TargetError {
        let mapped = map_probe_rs_error(error, operation, Some(address));
        if classify(error) == ProbeFailureKind::AccessFault && self.lock_state().unwrap_or(false) {
            return TargetError::Locked;
        }
        mapped
    }

    /// Whether the chip is locked, by the recipe's check; without a recipe, only a refused
    /// attach says so.
    fn lock_state(&mut self) -> Result<bool, TargetError> {
        if self.session.is_none() && self.attach_refused_as_locked {
            return Ok(true);
        }
        let check = self.config().lock_recipe.as_ref().map(|recipe| recipe.lock_state.clone());
        match check {
            None => match self.session() {
                Ok(_) => Ok(false),
                Err(TargetError::Locked) => Ok(true),
                Err(other) => Err(other),
            },
            Some(LockStateCheck::NordicCtrlAp) => {
                let session = match self.session() {
                    Ok(session) => session,
                    Err(TargetError::Locked) => return Ok(true),
                    Err(other) => return Err(other),
                };
                let status = session
                    .get_arm_interface()
                    .and_then(|interface| {
                        interface.read_raw_ap_register(
                            &FullyQualifiedApAddress::v1_with_default_dp(NORDIC_CTRL_AP_INDEX),
                            NORDIC_APPROTECTSTATUS,
                        )
                    })
                    .map_err(|error| map_probe_rs_error(&error, "read lock state", None))?;
                Ok(!LockStateCheck::nordic_status_means_unlocked(status))
            }
            Some(check @ LockStateCheck::Register { address, .. }) => {
                let session = match self.session() {
                    Ok(session) => session,
                    Err(TargetError::Locked) => return Ok(true),
                    Err(other) => return Err(other),
                };
                match session.core(CORE_INDEX).and_then(|mut core| core.read_word_32(address)) {
                    Ok(value) => Ok(!check.register_value_means_unlocked(value).unwrap_or(true)),
                    Err(error) if classify(&error) == ProbeFailureKind::AccessFault => Ok(true),
                    Err(error) => Err(map_probe_rs_error(&error, "read lock state", Some(address))),
                }
            }
        }
    }

    fn recipe(&self) -> Result<LockRecipe, TargetError> {
        self.config().lock_recipe.clone().ok_or_else(|| {
            TargetError::Other(format!(
                "no lock recipe for chip {}: set [lock] recipe or [[lock.writes]] in the profile",
                self.config().chip_name
            ))
        })
    }
}

impl RegisterBus for SessionState {
    fn read_u32(&mut self, address: u64) -> Result<u32, TargetError> {
        let session = self.session()?;
        session
            .core(CORE_INDEX)
            .and_then(|mut core| core.read_word_32(address))
            .map_err(|error| map_probe_rs_error(&error, "read register", Some(address)))
    }

    fn write_u32(&mut self, address: u64, value: u32) -> Result<(), TargetError> {
        let session = self.session()?;
        session
            .core(CORE_INDEX)
            .and_then(|mut core| {
                core.write_word_32(address, value)?;
                core.flush()
            })
            .map_err(|error| map_probe_rs_error(&error, "write register", Some(address)))
    }

    fn system_reset(&mut self) -> Result<(), TargetError> {
        let session = self.session()?;
        session
            .core(CORE_INDEX)
            .and_then(|mut core| core.reset())
            .map_err(|error| map_probe_rs_error(&error, "reset", None))
    }

    fn link_dropped(&mut self) {
        // Close the session now; the next access re-attaches (or learns that the chip is locked).
        self.session = None;
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

fn flash_event(event: ProgressEvent) -> Option<FlashEvent> {
    let phase = |operation: ProgressOperation| match operation {
        ProgressOperation::Fill => FlashPhase::Fill,
        ProgressOperation::Erase => FlashPhase::Erase,
        ProgressOperation::Program => FlashPhase::Program,
        ProgressOperation::Verify => FlashPhase::Verify,
    };
    Some(match event {
        ProgressEvent::Started(operation) => FlashEvent::Started(phase(operation)),
        ProgressEvent::Progress { operation, size, .. } => {
            FlashEvent::Progress { phase: phase(operation), size_bytes: size }
        }
        ProgressEvent::Finished(operation) => FlashEvent::Finished(phase(operation)),
        ProgressEvent::Failed(operation) => FlashEvent::Failed(phase(operation)),
        ProgressEvent::DiagnosticMessage { message } => FlashEvent::Message(message),
        _ => return None,
    })
}

/// Runs a flash-loader operation with a [`FlashProgress`] built here, on the worker thread
/// (it is not `Send`), feeding `tally` and the caller's progress.
fn with_flash_progress<T>(
    tally: &mut FlashProgressTally,
    reporter: &ProgressReporter<'_>,
    operation: impl FnOnce(FlashProgress<'_>) -> T,
) -> T {
    let progress = FlashProgress::new(|event| {
        if let Some(event) = flash_event(event)
            && let Some(bytes) = tally.observe(event)
        {
            reporter.report(bytes);
        }
    });
    operation(progress)
}

fn flash_error(
    error: &(dyn std::error::Error + 'static),
    operation: &'static str,
    address: u64,
    tally: &FlashProgressTally,
) -> TargetError {
    let mapped = map_probe_rs_error(error, operation, Some(address));
    let context = tally.failure_context();
    if context.is_empty() {
        return mapped;
    }
    match mapped {
        TargetError::Refused { operation, address, reason } => {
            TargetError::Refused { operation, address, reason: format!("{reason} ({context})") }
        }
        TargetError::Other(reason) => TargetError::Other(format!("{reason} ({context})")),
        TargetError::ProbeLost { reason } => {
            TargetError::ProbeLost { reason: format!("{reason} ({context})") }
        }
        other => other,
    }
}

/// One unit on a probe-rs fixture.
pub struct ProbeRsTarget {
    worker: SessionWorker<SessionState>,
    config: Arc<ProbeRsConfig>,
    probe_identifier: String,
    console: Option<SerialConsole>,
}

impl ProbeRsTarget {
    /// Opens the probe and attaches (on a new worker thread), bounded by the attach timeout.
    pub(crate) fn attach(
        plan: Arc<AttachPlan>,
        probe_identifier: &str,
    ) -> Result<ProbeRsTarget, TargetError> {
        let config = plan.config.clone();
        let timeout = Duration::from_millis(config.timeouts.attach_ms);
        let worker = SessionWorker::start(probe_identifier, timeout, move || SessionState::open(plan))?;
        Ok(ProbeRsTarget { worker, config, probe_identifier: probe_identifier.to_string(), console: None })
    }

    /// Gives the target the device's console (the station reads self-test reports from it when
    /// the profile says `report = "console"`).
    pub fn with_console(mut self, console: SerialConsole) -> ProbeRsTarget {
        self.console = Some(console);
        self
    }

    fn memory_timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeouts.memory_ms)
    }

    fn run<T: Send + 'static>(
        &mut self,
        operation: &'static str,
        timeout: Duration,
        job: impl FnOnce(&mut SessionState) -> Result<T, TargetError> + Send + 'static,
    ) -> Result<T, TargetError> {
        self.worker.call(operation, timeout, &mut |_| {}, move |state, _| job(state))
    }
}

impl Target for ProbeRsTarget {
    fn backend_name(&self) -> &'static str {
        "probe-rs"
    }

    fn probe_identifier(&self) -> String {
        self.probe_identifier.clone()
    }

    fn connect(&mut self) -> Result<ChipDescription, TargetError> {
        let timeout = Duration::from_millis(self.config.timeouts.attach_ms);
        self.run("connect", timeout, |state| {
            let profile_chip_name = state.config().chip_name.clone();
            if state.session.is_none() && state.attach_refused_as_locked {
                // Locked: the chip cannot be identified until it is recovered; the station asks
                // is_locked next and decides.
                return Ok(ChipDescription { chip_name: profile_chip_name });
            }
            let check = state.config().chip_id_check;
            let session = state.session()?;
            let chip_name = reported_chip_name(&profile_chip_name, &session.target().name);
            if let Some(check) = check {
                let value = session
                    .core(CORE_INDEX)
                    .and_then(|mut core| core.read_word_32(check.address))
                    .map_err(|error| map_probe_rs_error(&error, "read chip id", Some(check.address)))?;
                check.check(&chip_name, value)?;
            }
            Ok(ChipDescription { chip_name })
        })
    }

    fn read_unique_id(&mut self) -> Result<ChipUid, TargetError> {
        let location = self.config.unique_id_location.ok_or_else(|| {
            TargetError::Other(
                "the profile has no chip.unique_id: a probe-rs fixture reads the unique ID where it says"
                    .to_string(),
            )
        })?;
        self.run("read unique id", self.memory_timeout(), move |state| {
            let bytes = match plan_unique_id_read(&location) {
                UniqueIdRead::Words { address, count } => {
                    let mut words = vec![0u32; count];
                    state.read_words(address, &mut words)?;
                    unique_id_bytes_from_words(&words)
                }
                UniqueIdRead::Bytes { address, count } => {
                    let mut bytes = vec![0u8; count];
                    state.read_bytes(address, &mut bytes)?;
                    bytes
                }
            };
            unique_id_from_bytes(bytes, &location)
        })
    }

    fn read_memory(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        let length = buffer.len();
        let bytes = self.run("read", self.memory_timeout(), move |state| {
            let mut bytes = vec![0u8; length];
            state.read_bytes(address, &mut bytes)?;
            Ok(bytes)
        })?;
        buffer.copy_from_slice(&bytes);
        Ok(())
    }

    fn write_ram(&mut self, address: u64, data: &[u8]) -> Result<(), TargetError> {
        let data = data.to_vec();
        self.run("write ram", self.memory_timeout(), move |state| {
            let session = state.session()?;
            session
                .core(CORE_INDEX)
                .and_then(|mut core| {
                    core.write(address, &data)?;
                    core.flush()
                })
                .map_err(|error| state.access_error(&error, "write ram", address))
        })
    }

    fn erase_flash(
        &mut self,
        address: u64,
        size_bytes: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let timeout = Duration::from_millis(self.config.timeouts.flash_inactivity_ms);
        self.worker.call("erase", timeout, progress, move |state, reporter| {
            let session = state.session()?;
            let mut tally = FlashProgressTally::new(FlashPhase::Erase, size_bytes);
            let outcome = with_flash_progress(&mut tally, reporter, |mut flash_progress| {
                probe_rs::flashing::erase(session, &mut flash_progress, address, address + size_bytes, false)
            });
            outcome.map_err(|error| flash_error(&error, "erase", address, &tally))?;
            tally.check_erase_covered(address)
        })
    }

    fn program_flash(
        &mut self,
        address: u64,
        data: &[u8],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let timeout = Duration::from_millis(self.config.timeouts.flash_inactivity_ms);
        let data = data.to_vec();
        self.worker.call("program", timeout, progress, move |state, reporter| {
            let session = state.session()?;
            let mut loader = session.target().flash_loader();
            loader
                .add_data(address, &data)
                .map_err(|error| map_probe_rs_error(&error, "program", Some(address)))?;
            let mut tally = FlashProgressTally::new(FlashPhase::Program, data.len() as u64);
            let loader_verifies = true;
            let outcome = with_flash_progress(&mut tally, reporter, |flash_progress| {
                let mut options = DownloadOptions::new();
                options.progress = flash_progress;
                // The station erased the sectors already (its own erase step, with progress).
                options.skip_erase = true;
                options.keep_unwritten_bytes = false;
                options.verify = loader_verifies;
                loader.commit(session, options)
            });
            outcome.map_err(|error| flash_error(&error, "program", address, &tally))?;
            for message in tally.messages() {
                tracing::debug!(message, "flash algorithm");
            }
            tally.check_program_covered(address, loader_verifies)
        })
    }

    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        self.run("reset", self.memory_timeout(), |state| {
            let session = state.session()?;
            session
                .core(CORE_INDEX)
                .and_then(|mut core| core.reset())
                .map_err(|error| map_probe_rs_error(&error, "reset", None))
        })
    }

    fn halt(&mut self) -> Result<(), TargetError> {
        self.run("halt", self.memory_timeout(), |state| {
            let session = state.session()?;
            session
                .core(CORE_INDEX)
                .and_then(|mut core| core.halt(HALT_TIMEOUT))
                .map(|_| ())
                .map_err(|error| map_probe_rs_error(&error, "halt", None))
        })
    }

    fn take_console_lines(&mut self) -> Option<Vec<String>> {
        let console = self.console.as_ref()?;
        if let Some(reason) = console.stopped_because() {
            tracing::warn!(port = console.port_name(), %reason, "the console stopped reading");
        }
        Some(console.take_lines())
    }

    fn fcc_exchange(
        &mut self,
        bundle: &crate::fcc::FccBundle,
    ) -> Option<Result<crate::fcc::FccResponse, crate::fcc::FccError>> {
        // A device that runs the Izuma client takes FCC bundles on its console UART.
        Some(self.console.as_mut()?.fcc_exchange(bundle))
    }

    fn lock(&mut self) -> Result<(), TargetError> {
        let recipe = self.config.lock_recipe.clone();
        let bound = recipe.as_ref().map(|recipe| steps_time_bound_ms(&recipe.lock_steps)).unwrap_or(0);
        let timeout = Duration::from_millis(self.config.timeouts.attach_ms + bound);
        let proof_address = self.config.lock_proof_address;
        let proof = self.run("lock", timeout, move |state| {
            let recipe = state.recipe()?;
            tracing::info!(recipe = %recipe.name, "locking the chip");
            run_register_steps(state, "lock", &recipe.lock_steps)?;
            let reports_locked = state.lock_state()?;
            let mut probe_bytes = [0u8; 16];
            let read_outcome = state.read_bytes(proof_address, &mut probe_bytes);
            judge_lock_proof(&recipe.name, reports_locked, proof_address, read_outcome)
        })?;
        tracing::info!(address = proof.refused_read_address, refusal = %proof.refusal, "lock proven: debug read refused");
        Ok(())
    }

    fn is_locked(&mut self) -> Result<bool, TargetError> {
        self.run("read lock state", self.memory_timeout(), |state| state.lock_state())
    }

    fn unlock_by_mass_erase(&mut self) -> Result<(), TargetError> {
        if !self.config.allow_unlock_by_mass_erase {
            return Err(TargetError::Other(
                "refusing to mass-erase: the profile does not allow it (lock.allow_unlock_by_mass_erase)"
                    .to_string(),
            ));
        }
        let unlock = self.config.lock_recipe.as_ref().map(|recipe| recipe.unlock.clone());
        let bound = match &unlock {
            Some(UnlockMethod::Steps(steps)) => steps_time_bound_ms(steps),
            _ => crate::chip::lock::PROBE_RS_ERASE_ALL_BOUND_MS,
        };
        let timeout = Duration::from_millis(self.config.timeouts.attach_ms * 2 + bound);
        let probe = self.probe_identifier.clone();
        self.run("unlock", timeout, move |state| {
            tracing::warn!(%probe, "mass-erasing a locked chip to recover it (allowed by the profile); all flash contents are destroyed");
            match unlock.unwrap_or(UnlockMethod::ProbeRsEraseAll) {
                UnlockMethod::ProbeRsEraseAll => {
                    state.session = None;
                    let session = attach(&state.plan, Permissions::new().allow_erase_all())?;
                    state.session = Some(session);
                    state.attach_refused_as_locked = false;
                    if !state.lock_state()? {
                        return Ok(());
                    }
                    // Attached, yet still locked: the chip's sequence does not unlock on attach;
                    // erase through probe-rs's chip-specific erase-all sequence.
                    let session = state.session()?;
                    if !session.has_sequence_erase_all() {
                        return Err(TargetError::Other(
                            "the chip stays locked and probe-rs has no erase-all sequence for it; declare [[lock.unlock_writes]] in the profile".to_string(),
                        ));
                    }
                    session.sequence_erase_all().map_err(|error| map_probe_rs_error(&error, "unlock", None))?;
                    state.session = None;
                }
                UnlockMethod::Steps(steps) => run_register_steps(state, "unlock", &steps)?,
            }
            if state.lock_state()? {
                return Err(TargetError::Other("the mass erase ran but the chip still reports itself locked".to_string()));
            }
            Ok(())
        })
    }
}
