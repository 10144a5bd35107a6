//! Simulator faults: the one grammar both front ends accept (`--sim-fault SLOT.UNIT:KIND[=VALUE]`
//! for `imprint run` and `imprint gui`, and the window's fault picker), and the injector that
//! hands each simulated unit its fault.
//!
//! `UNIT` counts the units of that one slot, from 1: `1.2` is the second unit slot 1 takes,
//! whichever number the line gives it (the `unit` of events counts units across the whole line,
//! in the order slots claim them, which depends on timing). A fixture knows only its own units,
//! so the fault is scheduled per slot; docs/events.md says how to find the unit in the stream
//! (the slot's UNIT-th `unit-started`).
//!
//! Kinds: `power-cut=OPS`, `probe-lost=STEP`, `hang=STEP` (the probe stops answering), `panic=STEP` (the backend panics),
//! `uid-read-fails`, `flip-bit=ADDRESS` (decimal or 0x hex) and `transient=COUNT`.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::device::sim::{FaultPlan, FaultSchedule};
use crate::station::StepName;

/// A simulator fault with its parameter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SimFault {
    /// The probe stops answering when this step begins (it is gone).
    ProbeLostAtStep(String),
    /// The probe hangs when this step begins: every call waits for its timeout.
    HangAtStep(String),
    /// The backend panics when this step begins (a defect in a driver, not in the board).
    PanicAtStep(String),
    /// Power is cut after this many flash operations.
    PowerCutAfterFlashOperations(u64),
    /// Reading the unique ID fails.
    UniqueIdReadFails,
    /// A bit flips at this address after programming (read-back must catch it).
    FlipBitAtAddress(u64),
    /// This many transient probe errors (the station retries them).
    TransientErrors(u32),
}

impl Default for SimFault {
    fn default() -> Self {
        SimFault::ProbeLostAtStep("erase".to_string())
    }
}

/// Why a fault text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulator fault {text:?}: {reason}")]
pub struct SimFaultError {
    /// The text as given.
    pub text: String,
    /// What was expected and what was found.
    pub reason: String,
}

impl SimFault {
    /// Every kind with a default parameter, in the order a picker lists them.
    pub fn kinds() -> [SimFault; 7] {
        [
            SimFault::ProbeLostAtStep("erase".to_string()),
            SimFault::HangAtStep("erase".to_string()),
            SimFault::PanicAtStep("erase".to_string()),
            SimFault::PowerCutAfterFlashOperations(40),
            SimFault::UniqueIdReadFails,
            SimFault::FlipBitAtAddress(0x8000),
            SimFault::TransientErrors(2),
        ]
    }

    /// The kind's name for people.
    pub fn kind_label(&self) -> &'static str {
        match self {
            SimFault::ProbeLostAtStep(_) => "probe lost at step",
            SimFault::HangAtStep(_) => "probe hangs at step",
            SimFault::PanicAtStep(_) => "backend panics at step",
            SimFault::PowerCutAfterFlashOperations(_) => "power cut after flash operations",
            SimFault::UniqueIdReadFails => "unique ID read fails",
            SimFault::FlipBitAtAddress(_) => "bit flip at address",
            SimFault::TransientErrors(_) => "transient probe errors",
        }
    }

    /// A short description with the parameter.
    pub fn describe(&self) -> String {
        match self {
            SimFault::ProbeLostAtStep(step) => format!("probe lost at {step}"),
            SimFault::HangAtStep(step) => format!("probe hangs at {step}"),
            SimFault::PanicAtStep(step) => format!("backend panics at {step}"),
            SimFault::PowerCutAfterFlashOperations(count) => format!("power cut after {count} flash ops"),
            SimFault::UniqueIdReadFails => "unique ID read fails".to_string(),
            SimFault::FlipBitAtAddress(address) => format!("bit flip at {address:#x}"),
            SimFault::TransientErrors(count) => format!("{count} transient errors"),
        }
    }

    /// Parses `KIND[=VALUE]` (the part of a `--sim-fault` after the colon).
    pub fn parse(text: &str) -> Result<SimFault, SimFaultError> {
        let refuse = |reason: String| SimFaultError { text: text.to_string(), reason };
        let (kind, value) = match text.split_once('=') {
            Some((kind, value)) => (kind, Some(value)),
            None => (text, None),
        };
        let number = |value: Option<&str>| -> Result<u64, SimFaultError> {
            let value = value.ok_or_else(|| refuse(format!("{kind} needs =VALUE")))?;
            let parsed = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse(),
            };
            parsed.map_err(|_| refuse(format!("expected a number, found {value}")))
        };
        let step = |value: Option<&str>| -> Result<String, SimFaultError> {
            let step = value.ok_or_else(|| refuse(format!("{kind} needs =STEP")))?;
            if !StepName::ALL.iter().any(|name| name.as_str() == step) {
                return Err(refuse(format!("unknown step {step}")));
            }
            Ok(step.to_string())
        };
        match kind {
            "power-cut" => Ok(SimFault::PowerCutAfterFlashOperations(number(value)?)),
            "probe-lost" => Ok(SimFault::ProbeLostAtStep(step(value)?)),
            "hang" => Ok(SimFault::HangAtStep(step(value)?)),
            "panic" => Ok(SimFault::PanicAtStep(step(value)?)),
            "uid-read-fails" => Ok(SimFault::UniqueIdReadFails),
            "flip-bit" => Ok(SimFault::FlipBitAtAddress(number(value)?)),
            "transient" => {
                let count = number(value)?;
                u32::try_from(count)
                    .map(SimFault::TransientErrors)
                    .map_err(|_| refuse(format!("count {count} is too large")))
            }
            other => Err(refuse(format!(
                "unknown fault {other}; expected power-cut, probe-lost, hang, panic, uid-read-fails, flip-bit or transient"
            ))),
        }
    }

    /// The simulator's fault plan.
    pub fn plan(&self) -> FaultPlan {
        let mut plan = FaultPlan::default();
        match self {
            SimFault::ProbeLostAtStep(step) => plan.probe_lost_at_step = Some(step.clone()),
            SimFault::HangAtStep(step) => plan.hang_at_step = Some(step.clone()),
            SimFault::PanicAtStep(step) => plan.panic_at_step = Some(step.clone()),
            SimFault::PowerCutAfterFlashOperations(count) => {
                plan.power_cut_after_flash_operations = Some(*count)
            }
            SimFault::UniqueIdReadFails => plan.unique_id_read_fails = true,
            SimFault::FlipBitAtAddress(address) => plan.flip_bit_at_address = Some(*address),
            SimFault::TransientErrors(count) => plan.transient_errors = *count,
        }
        plan
    }
}

/// A fault for one unit of one slot: `SLOT.UNIT:KIND[=VALUE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFaultSpec {
    /// The slot, from 0.
    pub slot: usize,
    /// The unit on that slot, from 0: the slot's own count, not the line-wide `unit` number of
    /// events (the text counts from 1).
    pub unit_index: u64,
    pub fault: SimFault,
}

impl SimFaultSpec {
    /// Parses `SLOT.UNIT:KIND[=VALUE]`, where UNIT counts that slot's own units from 1.
    pub fn parse(spec: &str) -> Result<SimFaultSpec, SimFaultError> {
        let refuse = |reason: &str| SimFaultError { text: spec.to_string(), reason: reason.to_string() };
        let expected = "expected SLOT.UNIT:KIND[=VALUE], e.g. 0.2:probe-lost=erase";
        let (position, fault) = spec.split_once(':').ok_or_else(|| refuse(expected))?;
        let (slot, unit) = position.split_once('.').ok_or_else(|| refuse(expected))?;
        let slot: usize = slot.parse().map_err(|_| refuse("slot must be a number"))?;
        let unit: u64 = unit.parse().map_err(|_| refuse("unit must be a number from 1"))?;
        if unit == 0 {
            return Err(refuse("units count from 1"));
        }
        let fault = SimFault::parse(fault)
            .map_err(|error| SimFaultError { text: spec.to_string(), reason: error.reason })?;
        Ok(SimFaultSpec { slot, unit_index: unit - 1, fault })
    }
}

/// Faults for simulated units: scheduled for a slot's n-th unit (`--sim-fault`), or armed at
/// run time by a front end (the window's fault picker) for a slot's next unit.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    armed: Arc<Mutex<Vec<Option<FaultPlan>>>>,
    scheduled: Arc<Vec<SimFaultSpec>>,
}

impl FaultInjector {
    /// An injector with faults for chosen units.
    pub fn with_schedule(scheduled: Vec<SimFaultSpec>) -> FaultInjector {
        FaultInjector { armed: Arc::default(), scheduled: Arc::new(scheduled) }
    }

    /// The scheduled faults.
    pub fn scheduled(&self) -> &[SimFaultSpec] {
        &self.scheduled
    }

    /// Arms `plan` for the next unit `slot` takes (replacing a fault armed before).
    pub fn arm(&self, slot: usize, plan: FaultPlan) {
        let mut armed = lock(&self.armed);
        if armed.len() <= slot {
            armed.resize(slot + 1, None);
        }
        armed[slot] = Some(plan);
    }

    /// The fault armed for `slot`, if any.
    pub fn armed(&self, slot: usize) -> Option<FaultPlan> {
        lock(&self.armed).get(slot).cloned().flatten()
    }

    /// A simulated fixture's schedule: a unit gets its scheduled fault, else it takes (and
    /// disarms) the slot's armed one.
    pub fn schedule(&self, slot: usize) -> FaultSchedule {
        let armed = self.armed.clone();
        let scheduled = self.scheduled.clone();
        Box::new(move |unit_index| {
            let planned = scheduled
                .iter()
                .find(|spec| spec.slot == slot && spec.unit_index == unit_index)
                .map(|spec| spec.fault.plan());
            planned.or_else(|| lock(&armed).get_mut(slot).and_then(Option::take)).unwrap_or_default()
        })
    }
}

/// Locks a mutex even if a thread panicked while holding it: the guarded values are plain
/// options that stay consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &str, expected: Option<(usize, u64, FaultPlan)>) {
        let parsed =
            SimFaultSpec::parse(spec).ok().map(|spec| (spec.slot, spec.unit_index, spec.fault.plan()));
        assert_eq!(parsed, expected, "{spec}");
    }

    #[test]
    fn sim_fault_specs() {
        check(
            "0.2:probe-lost=erase",
            Some((0, 1, FaultPlan { probe_lost_at_step: Some("erase".into()), ..Default::default() })),
        );
        check(
            "1.3:hang=lock",
            Some((1, 2, FaultPlan { hang_at_step: Some("lock".into()), ..Default::default() })),
        );
        check(
            "1.1:power-cut=40",
            Some((1, 0, FaultPlan { power_cut_after_flash_operations: Some(40), ..Default::default() })),
        );
        check(
            "0.1:flip-bit=0x8000",
            Some((0, 0, FaultPlan { flip_bit_at_address: Some(0x8000), ..Default::default() })),
        );
        check(
            "0.1:uid-read-fails",
            Some((0, 0, FaultPlan { unique_id_read_fails: true, ..Default::default() })),
        );
        check("0.1:transient=3", Some((0, 0, FaultPlan { transient_errors: 3, ..Default::default() })));
        check("0.0:uid-read-fails", None);
        check("0:uid-read-fails", None);
        check("0.1:probe-lost=nowhere", None);
        check("0.1:hang", None);
        check("0.1:power-cut", None);
        check("0.1:transient=99999999999", None);
        check("x.1:transient=2", None);
        check("0.1:melt", None);
    }

    #[test]
    fn armed_faults_go_to_the_next_unit_only() {
        let injector = FaultInjector::default();
        let schedule = injector.schedule(1);
        assert_eq!(schedule(0), FaultPlan::default());
        injector.arm(1, SimFault::UniqueIdReadFails.plan());
        assert!(injector.armed(1).is_some());
        assert!(injector.armed(0).is_none());
        assert!(schedule(1).unique_id_read_fails);
        assert_eq!(schedule(2), FaultPlan::default());
        let scheduled = FaultInjector::with_schedule(vec![SimFaultSpec {
            slot: 0,
            unit_index: 1,
            fault: SimFault::TransientErrors(2),
        }]);
        let slot_zero = scheduled.schedule(0);
        assert_eq!(slot_zero(0), FaultPlan::default());
        assert_eq!(slot_zero(1).transient_errors, 2);
        assert_eq!(scheduled.schedule(1)(1), FaultPlan::default());
        for fault in SimFault::kinds() {
            assert_ne!(fault.plan(), FaultPlan::default(), "{}", fault.describe());
        }
    }
}
