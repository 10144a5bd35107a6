//! [`ProbeRsFixture`]: one slot of a line, owning one probe, handing out one target per unit.
//!
//! Opening the fixture resolves the selector to exactly one attached probe (refusing an
//! ambiguous one) and the profile's chip to a probe-rs target description, so that a
//! misconfigured slot fails before any unit is touched. Units then arrive by polling: attach,
//! and if nothing answers (no board on the fixture, or not powered) try again with a growing
//! pause. On a production fixture the next unit is only handed out after the previous one has
//! been taken away ([`UnitArrival::WaitForSwap`]), so a finished board is never provisioned
//! twice by accident.

use std::sync::Arc;
use std::time::{Duration, Instant};

use probe_rs::probe::DebugProbeSelector;

use super::console_port::{choose_console_port, list_serial_ports};
use super::selector::{ProbeListing, ProbeSlotSpec, UnitArrival, choose_probe, describe_listing};
use super::session::{AttachPlan, ProbeRsTarget};
use super::{ProbeRsConfig, ProbeRsError, list_probes};
use crate::device::console::SerialConsole;
use crate::device::{Fixture, Target, TargetError};

/// What to do with the outcome of one attach attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalDecision {
    /// A new unit is here: hand it out.
    HandOut,
    /// The target answering is the unit already provisioned: let go and poll again.
    AwaitRemoval,
    /// Nothing there yet: poll again.
    KeepPolling,
}

/// Tracks unit swaps on one fixture.
#[derive(Debug, Clone)]
pub struct ArrivalTracker {
    arrival: UnitArrival,
    previous_unit_still_present: bool,
}

impl ArrivalTracker {
    /// A fixture that has handed out nothing yet.
    pub fn new(arrival: UnitArrival) -> ArrivalTracker {
        ArrivalTracker { arrival, previous_unit_still_present: false }
    }

    /// Takes one poll's outcome: whether a target answered.
    pub fn observe(&mut self, target_present: bool) -> ArrivalDecision {
        match (self.arrival, target_present) {
            (_, false) => {
                self.previous_unit_still_present = false;
                ArrivalDecision::KeepPolling
            }
            (UnitArrival::SameBoard, true) => ArrivalDecision::HandOut,
            (UnitArrival::WaitForSwap, true) if self.previous_unit_still_present => {
                ArrivalDecision::AwaitRemoval
            }
            (UnitArrival::WaitForSwap, true) => {
                self.previous_unit_still_present = true;
                ArrivalDecision::HandOut
            }
        }
    }
}

/// The pause after the n-th fruitless poll: 100 ms doubling to 1 s.
pub fn poll_backoff(fruitless_polls: u32) -> Duration {
    Duration::from_millis((100u64 << fruitless_polls.min(4)).min(1_000))
}

/// Each slot of a line owns its probe: finds the first slot whose probe an earlier slot already
/// has (`(earlier slot, later slot)`), given each slot's resolved probe.
pub fn find_shared_probe(slots: &[(usize, &ProbeListing)]) -> Option<(usize, usize)> {
    slots.iter().enumerate().find_map(|(index, (slot, probe))| {
        slots[..index]
            .iter()
            .find(|(_, earlier)| {
                earlier.vendor_id == probe.vendor_id
                    && earlier.product_id == probe.product_id
                    && earlier.serial_number == probe.serial_number
                    && earlier.interface == probe.interface
            })
            .map(|(earlier_slot, _)| (*earlier_slot, *slot))
    })
}

/// One slot's probe and the settings to attach with.
pub struct ProbeRsFixture {
    name: String,
    spec: ProbeSlotSpec,
    probe: ProbeListing,
    plan: Arc<AttachPlan>,
    probe_identifier: String,
    /// The console's port name and baud rate, resolved when the fixture opened.
    console_port: Option<(String, u32)>,
    tracker: ArrivalTracker,
}

impl ProbeRsFixture {
    /// Resolves the slot's probe (exactly one must match) and the chip; refuses a lock-enabled
    /// profile without a lock recipe for the chip.
    pub fn open(
        name: &str,
        spec: ProbeSlotSpec,
        config: ProbeRsConfig,
    ) -> Result<ProbeRsFixture, ProbeRsError> {
        // The chip is checked first: a profile whose chip probe-rs cannot resolve is refused
        // whether or not a probe is attached.
        let target = resolve_configured_target(&config)?;
        if config.lock_enabled && config.lock_recipe.is_none() {
            return Err(ProbeRsError::NoLockRecipe { chip_name: config.chip_name.clone() });
        }
        let listing = list_probes();
        let probe = choose_probe(&spec.probe, &listing.probes)
            .map_err(|error| ProbeRsError::Selector { error, notes: listing.notes.clone() })?
            .clone();
        let probe_selector = DebugProbeSelector {
            vendor_id: probe.vendor_id,
            product_id: probe.product_id,
            interface: probe.interface,
            serial_number: Some(probe.serial_number.clone().unwrap_or_default()),
        };
        let console_port = match &spec.console {
            Some(selector) => {
                let port_name = choose_console_port(selector, &probe, &list_serial_ports())?;
                Some((port_name, spec.console_baud_rate))
            }
            None => None,
        };
        let probe_identifier = describe_listing(&probe);
        tracing::info!(slot = name, probe = %probe_identifier, chip = %target.name, "probe-rs fixture opened");
        Ok(ProbeRsFixture {
            name: name.to_string(),
            probe,
            tracker: ArrivalTracker::new(spec.unit_arrival),
            spec,
            plan: Arc::new(AttachPlan { probe_selector, target, config: Arc::new(config) }),
            probe_identifier,
            console_port,
        })
    }

    /// The probe this slot owns.
    pub fn probe(&self) -> &ProbeListing {
        &self.probe
    }

    /// The slot specification this fixture was opened with.
    pub fn spec(&self) -> &ProbeSlotSpec {
        &self.spec
    }
}

/// Sleeps `duration`, waking early when `keep_waiting` turns false.
fn pause(duration: Duration, keep_waiting: &dyn Fn() -> bool) {
    let until = Instant::now() + duration;
    while Instant::now() < until && keep_waiting() {
        std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
    }
}

impl Fixture for ProbeRsFixture {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn next_unit(&mut self, keep_waiting: &dyn Fn() -> bool) -> Result<Option<Box<dyn Target>>, TargetError> {
        let mut fruitless_polls = 0u32;
        loop {
            if !keep_waiting() {
                return Ok(None);
            }
            let attempt = ProbeRsTarget::attach(self.plan.clone(), &self.probe_identifier);
            let Some(present) = board_presence(&attempt) else {
                // The probe itself is gone or broken (`attempt` is its error): the line reports
                // it and asks again.
                return attempt.map(|_| None);
            };
            match (self.tracker.observe(present), attempt) {
                (ArrivalDecision::HandOut, Ok(target)) => {
                    let target = match &self.console_port {
                        Some((port_name, baud_rate)) => target.with_console(
                            SerialConsole::open(port_name, *baud_rate)
                                .map_err(|error| TargetError::Other(format!("device console: {error}")))?
                                .with_fcc_timeouts(self.plan.config.fcc_timeouts),
                        ),
                        None => target,
                    };
                    return Ok(Some(Box::new(target)));
                }
                (ArrivalDecision::AwaitRemoval, _) => {
                    tracing::debug!(slot = %self.name, "waiting for the provisioned unit to be removed");
                }
                _ => {}
            }
            pause(poll_backoff(fruitless_polls), keep_waiting);
            fruitless_polls = fruitless_polls.saturating_add(1);
        }
    }

    /// One attach attempt (released at once). A board that stopped answering also counts as
    /// taken away for the swap rule: the next board to answer is a new unit.
    fn board_present(&mut self) -> Option<bool> {
        let present = match ProbeRsTarget::attach(self.plan.clone(), &self.probe_identifier) {
            // A chip that refuses debug access is a board on the fixture (one the lock step
            // left locked, say).
            Err(TargetError::Locked) => true,
            attempt => board_presence(&attempt)?,
        };
        if !present {
            self.tracker.observe(false);
        }
        Some(present)
    }
}

/// Whether a board answers the probe, from one attach attempt: it does (`Some(true)`), nothing
/// answers on the debug port (`Some(false)`: no board, or not powered), or the probe itself
/// failed and the board cannot be told about (`None`).
pub fn board_presence<T>(attempt: &Result<T, TargetError>) -> Option<bool> {
    match attempt {
        Ok(_) => Some(true),
        Err(TargetError::PowerLost) => Some(false),
        Err(_) => None,
    }
}

/// The probe-rs target for a slot's profile: the profile's own target description (which must
/// parse and define the chip) or probe-rs's built-in one. Errors name the profile file and field.
pub fn resolve_configured_target(config: &ProbeRsConfig) -> Result<probe_rs::Target, ProbeRsError> {
    let chip_error = |error| ProbeRsError::Chip {
        profile_path: config.profile_path.clone(),
        description_path: config.target_description_path.clone(),
        error: Box::new(error),
    };
    if let Some(yaml) = &config.target_description_yaml {
        super::registry::check_target_description(yaml, &config.chip_name).map_err(chip_error)?;
    }
    super::registry::resolve_target(&config.chip_name, config.target_description_yaml.as_deref())
        .map_err(chip_error)
}
