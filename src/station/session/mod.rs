//! One line session, the same for every front end: a [`LinePlan`] goes in; [`LineSession::open`]
//! loads the profile, resolves the slots with the one slot rule ([`slots`]), prepares the
//! self-test material, opens the ledger and the central link, and opens the fixtures through
//! the backend factory ([`crate::device::factory`]); [`LineSession::run`] runs the line with
//! an event sink and a cancel token and returns one [`LineReport`].
//!
//! `imprint run` keeps its argument parsing, rendering and Ctrl-C; `imprint gui` keeps its
//! settings, its manual-start gate (through [`LineSession::wrap_fixtures`]) and its channel
//! sink. Nothing is written to a device or the ledger until every check of the plan passed.

pub mod central;
pub mod faults;
pub mod serials;
pub mod slots;

use std::path::PathBuf;
use std::sync::Arc;

use crate::central::{CentralLink, LinkStatus};
use crate::device::Fixture;
use crate::device::factory::{FixtureError, FixtureSelector, SimOptions, open_fixtures};
use crate::ledger::{Ledger, LedgerError, OpenMode, check_name_text};
use crate::profile::{Profile, ProfileError, SimTiming};

use super::events::{EventKind, EventSink, LineProfile, LineSlot, LineStart, StationEvent};
use super::job::{CancelToken, StationContext};
use super::labels::UnitLabels;
use super::line::{LineSummary, run_line};
use super::self_test::{SelfTestMaterial, SelfTestMaterialError};

pub use central::{CENTRAL_READY_TIMEOUT, CentralSettings, CentralStart, DEFAULT_DRAIN_TIMEOUT};
pub use faults::{FaultInjector, SimFault, SimFaultError, SimFaultSpec};
pub use serials::{SerialSource, WORK_ORDER_LENGTH_MAX, checked_work_order};
pub use slots::{SLOTS_MAX, SlotChoice, resolve_slots};

/// Why a line could not open. Nothing was written to a device or the ledger.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The plan does not hold together (slots, operator, faults on missing slots).
    #[error("{reason}")]
    Plan { reason: String },
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error(transparent)]
    SimFault(#[from] SimFaultError),
    #[error(transparent)]
    SelfTest(#[from] SelfTestMaterialError),
    #[error("cannot open the ledger {path}: {error}")]
    Ledger { path: PathBuf, error: Box<LedgerError> },
    #[error("central database: {reason}")]
    Central { reason: String },
    /// The scanned serials or the work order.
    #[error("{reason}")]
    Serials { reason: String },
}

impl SessionError {
    /// The refusal's stable code, the `error_code` of a `line-refused` event (docs/events.md):
    /// `profile`, `plan`, `fixture`, `sim-fault`, `self-test`, `ledger`, `central`, `serials`.
    pub fn error_code(&self) -> &'static str {
        match self {
            SessionError::Profile(_) => "profile",
            SessionError::Plan { .. } => "plan",
            SessionError::Fixture(_) => "fixture",
            SessionError::SimFault(_) => "sim-fault",
            SessionError::SelfTest(_) => "self-test",
            SessionError::Ledger { .. } => "ledger",
            SessionError::Central { .. } => "central",
            SessionError::Serials { .. } => "serials",
        }
    }
}

/// Everything a line needs, as a front end chose it.
#[derive(Debug, Clone, Default)]
pub struct LinePlan {
    /// The product profile (TOML).
    pub profile_path: PathBuf,
    /// `--probe` selectors and the slot count (the one slot rule: [`slots`]).
    pub slots: SlotChoice,
    /// This station's name in every record.
    pub station_name: String,
    /// The operator ID in every record (not empty).
    pub operator: String,
    /// The ledger database.
    pub ledger_path: PathBuf,
    /// Create the ledger when it does not exist yet (wired by the ledger's open policy).
    pub create_ledger: bool,
    /// The central PostgreSQL ledger, if the station feeds one.
    pub central: Option<CentralSettings>,
    /// Where scanned serials come from (profiles with `serial.scheme = "scanned"`).
    pub serials: SerialSource,
    /// The work order recorded with each unit (not used with [`SerialSource::Scanner`], whose
    /// labels carry their own).
    pub work_order: Option<String>,
    /// Simulator faults, scheduled and armed.
    pub faults: FaultInjector,
    /// Units to attempt in all; `None` runs until cancelled (or a serials file is used up).
    pub unit_limit: Option<u64>,
    /// Ignore the profile's simulated timing model (as fast as the host allows).
    pub sim_timing_zero: bool,
    /// Repeatable simulated (and QEMU) unique IDs from this seed.
    pub sim_uid_seed: Option<u64>,
}

/// An opened line, ready to run.
pub struct LineSession {
    profile: Arc<Profile>,
    self_test: Option<Arc<SelfTestMaterial>>,
    ledger: Ledger,
    ledger_path: PathBuf,
    labels: Arc<UnitLabels>,
    selectors: Vec<FixtureSelector>,
    fixtures: Vec<Box<dyn Fixture>>,
    central: Option<(CentralLink, CentralStart)>,
    central_drain_timeout: std::time::Duration,
    unit_limit: Option<u64>,
    station_name: String,
    operator: String,
}

/// What a whole line run did.
#[derive(Debug, Clone)]
pub struct LineReport {
    /// Every unit's outcome and the wall time.
    pub summary: LineSummary,
    /// The central link after its drain, when the line fed one.
    pub central: Option<LinkStatus>,
    /// The ledger the runs were recorded in.
    pub ledger_path: PathBuf,
}

/// Prepares what the self-test step stages: the one place a line signs (the signer opens here).
/// An FCC-only profile has no self-test: its keys are opened, nothing is signed.
fn prepare_self_test(profile: &Profile) -> Result<Option<SelfTestMaterial>, SessionError> {
    if profile.firmware.is_none() {
        profile.open_signers().map_err(SelfTestMaterialError::from)?;
        return Ok(None);
    }
    Ok(Some(SelfTestMaterial::prepare(profile)?))
}

impl LineSession {
    /// Opens the line: every check first (profile, slots, faults, serials, operator), then the
    /// self-test material, the ledger, the central link and the fixtures.
    pub fn open(plan: LinePlan) -> Result<LineSession, SessionError> {
        let operator = plan.operator.trim().to_string();
        if operator.is_empty() {
            return Err(SessionError::Plan {
                reason: "operator ID: expected an ID (type or scan it), found nothing".to_string(),
            });
        }
        // Names go into every record: refuse what the ledger would refuse after flashing.
        for (field, value) in [("operator", operator.as_str()), ("station", plan.station_name.as_str())] {
            check_name_text(field, value)
                .map_err(|error| SessionError::Plan { reason: error.to_string() })?;
        }
        let profile = Profile::load(&plan.profile_path)?;
        let selectors = resolve_slots(&plan.slots, &profile)?;
        if let Some(spec) = plan.faults.scheduled().iter().find(|spec| spec.slot >= selectors.len()) {
            return Err(SessionError::Plan {
                reason: format!(
                    "--sim-fault: slot {} does not exist (slots are 0..{})",
                    spec.slot,
                    selectors.len() - 1
                ),
            });
        }
        if let Some(central) = &plan.central {
            central.check()?;
        }
        let (labels, serials_given) =
            serials::open_labels(&plan.serials, plan.work_order.as_deref(), &profile)?;
        let unit_limit = match (plan.unit_limit, serials_given) {
            (Some(count), Some(given)) if count > given => {
                return Err(SessionError::Serials {
                    reason: format!("--count {count}: the serials file holds only {given} serials"),
                });
            }
            (Some(count), _) => Some(count),
            (None, given) => given,
        };
        let self_test = prepare_self_test(&profile)?;
        let open_mode = if plan.create_ledger { OpenMode::CreateIfMissing } else { OpenMode::Existing };
        let ledger = Ledger::open_with(&plan.ledger_path, open_mode).map_err(|source| {
            SessionError::Ledger { path: plan.ledger_path.clone(), error: Box::new(source) }
        })?;
        let central = match &plan.central {
            Some(settings) => Some(central::start_central_link(
                settings,
                &ledger,
                &plan.station_name,
                &profile.serial_scheme,
            )?),
            None => None,
        };
        let timing = if plan.sim_timing_zero { SimTiming::default() } else { profile.sim_timing };
        let fault_schedules = (0..selectors.len()).map(|slot| (slot, plan.faults.schedule(slot))).collect();
        let sim_options = SimOptions { timing, uid_seed: plan.sim_uid_seed, fault_schedules };
        let fixtures = open_fixtures(&selectors, &profile, sim_options)?;
        Ok(LineSession {
            profile: Arc::new(profile),
            self_test: self_test.map(Arc::new),
            ledger,
            ledger_path: plan.ledger_path,
            labels,
            selectors,
            fixtures,
            central_drain_timeout: plan.central.as_ref().map_or(DEFAULT_DRAIN_TIMEOUT, |c| c.drain_timeout),
            central,
            unit_limit,
            station_name: plan.station_name,
            operator,
        })
    }

    /// The loaded profile (its warnings are the front end's to show).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The labels the slots take scanned serials and the work order from.
    pub fn labels(&self) -> Arc<UnitLabels> {
        self.labels.clone()
    }

    /// The slots' fixtures as the slot rule chose them.
    pub fn selectors(&self) -> &[FixtureSelector] {
        &self.selectors
    }

    /// The slots' fixture names, in slot order.
    pub fn fixture_names(&self) -> Vec<String> {
        self.fixtures.iter().map(|fixture| fixture.name()).collect()
    }

    /// Units to attempt in all (`None`: until cancelled).
    pub fn unit_limit(&self) -> Option<u64> {
        self.unit_limit
    }

    /// How the central link stood at open, when the line feeds one.
    pub fn central_start(&self) -> Option<&CentralStart> {
        self.central.as_ref().map(|(_, start)| start)
    }

    /// Wraps each slot's fixture (the window's manual-start gate): `wrap(slot, fixture)`.
    pub fn wrap_fixtures(&mut self, mut wrap: impl FnMut(usize, Box<dyn Fixture>) -> Box<dyn Fixture>) {
        let fixtures = std::mem::take(&mut self.fixtures);
        self.fixtures = fixtures.into_iter().enumerate().map(|(slot, fixture)| wrap(slot, fixture)).collect();
    }

    /// The `line-started` event: what this line is about to run, for the stream's first line.
    fn line_started(&self) -> StationEvent {
        let profile = &self.profile;
        StationEvent::for_line(EventKind::LineStarted(Box::new(LineStart {
            profile: LineProfile {
                name: profile.name.clone(),
                path: profile.path.display().to_string(),
                sha256: profile.file_sha256_hex(),
            },
            station: self.station_name.clone(),
            operator: self.operator.clone(),
            ledger: self.ledger_path.display().to_string(),
            slots: self
                .fixture_names()
                .into_iter()
                .enumerate()
                .map(|(index, fixture)| LineSlot { index, fixture })
                .collect(),
            imprint_version: env!("CARGO_PKG_VERSION").to_string(),
            unit_limit: self.unit_limit,
        })))
    }

    /// Runs the line until its unit limit or `cancel`, then drains the central link. The first
    /// event is `line-started`, the last `line-finished`.
    pub fn run(self, events: Arc<dyn EventSink>, cancel: CancelToken) -> LineReport {
        events.emit(self.line_started());
        let ledger = self.ledger.clone();
        let context = Arc::new(StationContext {
            profile: self.profile,
            self_test: self.self_test,
            ledger: self.ledger,
            station_name: self.station_name,
            operator: self.operator,
            events,
            cancel,
            labels: self.labels,
        });
        let summary = run_line(context, self.fixtures, self.unit_limit);
        // Everything recent is in the WAL until a checkpoint: fold it into the database file so a
        // copy of ledger.db alone (what a backup job takes) holds the whole line.
        if let Err(error) = ledger.checkpoint() {
            tracing::warn!(%error, "could not checkpoint the ledger at the end of the line");
        }
        let central = self.central.map(|(link, _)| link.finish(self.central_drain_timeout));
        LineReport { summary, central, ledger_path: self.ledger_path }
    }
}
