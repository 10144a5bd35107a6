//! How units reach the slots when the GUI runs the line: a thin [`Fixture`] wrapper that adds
//! the operator's part (manual start, the pause while a board is swapped) and the simulator's
//! fault injection from the window. The station's steps are untouched: the wrapper only decides
//! *when* the wrapped fixture is asked for its next unit.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::device::sim::{FaultPlan, FaultSchedule};
use crate::device::{Fixture, Target, TargetError};

/// How often a waiting slot re-checks whether the line was stopped.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// When a slot takes its next unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// As soon as the fixture presents one; after a unit, wait `unit_change_delay` first (the
    /// time an operator needs to swap boards, so the result stays on screen meanwhile).
    Automatic { unit_change_delay: Duration },
    /// Only after the operator pressed the slot's start button (or Enter in the scanner field).
    Manual,
}

/// A slot's start button, shared by the UI (which presses it) and the slot's thread (which
/// waits on it).
#[derive(Debug, Default)]
pub struct StartGate {
    presses: Mutex<u32>,
    pressed: Condvar,
}

impl StartGate {
    /// The operator asked for the next unit.
    pub fn press(&self) {
        *lock(&self.presses) += 1;
        self.pressed.notify_all();
    }

    /// Wakes a waiting slot so it notices a stop request at once.
    pub fn wake(&self) {
        self.pressed.notify_all();
    }

    /// Waits for a press; false when `keep_waiting` said stop first.
    fn wait(&self, keep_waiting: &dyn Fn() -> bool) -> bool {
        let mut presses = lock(&self.presses);
        loop {
            if !keep_waiting() {
                return false;
            }
            if *presses > 0 {
                *presses -= 1;
                return true;
            }
            presses = match self.pressed.wait_timeout(presses, WAIT_POLL) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Wraps a fixture with the operator's start behaviour.
pub struct GatedFixture {
    inner: Box<dyn Fixture>,
    mode: StartMode,
    gate: Arc<StartGate>,
    /// Tells the UI the slot now waits for the operator.
    on_waiting: Box<dyn Fn() + Send>,
    units_presented: u64,
}

impl GatedFixture {
    pub fn new(
        inner: Box<dyn Fixture>,
        mode: StartMode,
        gate: Arc<StartGate>,
        on_waiting: Box<dyn Fn() + Send>,
    ) -> GatedFixture {
        GatedFixture { inner, mode, gate, on_waiting, units_presented: 0 }
    }
}

impl Fixture for GatedFixture {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn next_unit(&mut self, keep_waiting: &dyn Fn() -> bool) -> Result<Option<Box<dyn Target>>, TargetError> {
        match self.mode {
            StartMode::Manual => {
                (self.on_waiting)();
                if !self.gate.wait(keep_waiting) {
                    return Ok(None);
                }
            }
            StartMode::Automatic { unit_change_delay } => {
                if self.units_presented > 0 && !sleep_while(unit_change_delay, keep_waiting) {
                    return Ok(None);
                }
            }
        }
        let unit = self.inner.next_unit(keep_waiting)?;
        if unit.is_some() {
            self.units_presented += 1;
        }
        Ok(unit)
    }
}

/// Sleeps for `duration` in short naps; false when `keep_waiting` said stop.
fn sleep_while(duration: Duration, keep_waiting: &dyn Fn() -> bool) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if !keep_waiting() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(WAIT_POLL));
    }
}

/// Faults for simulated units: armed from the window (one per slot, for the slot's next
/// unit) or scheduled from the command line (for a slot's n-th unit).
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    armed: Arc<Mutex<Vec<Option<FaultPlan>>>>,
    /// (slot, 0-based unit index on the slot, fault).
    scheduled: Arc<Vec<(usize, u64, FaultPlan)>>,
}

impl FaultInjector {
    /// An injector with faults for chosen units: (slot, 0-based unit index, fault).
    pub fn with_schedule(scheduled: Vec<(usize, u64, FaultPlan)>) -> FaultInjector {
        FaultInjector { armed: Arc::default(), scheduled: Arc::new(scheduled) }
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
                .find(|(fault_slot, fault_unit, _)| *fault_slot == slot && *fault_unit == unit_index)
                .map(|(_, _, plan)| plan.clone());
            planned.or_else(|| lock(&armed).get_mut(slot).and_then(Option::take)).unwrap_or_default()
        })
    }
}

/// A fault the window offers, with its parameter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FaultChoice {
    /// The probe stops answering when this step begins.
    ProbeLostAtStep(String),
    /// Power is cut after this many flash operations.
    PowerCutAfterFlashOperations(u64),
    /// Reading the unique ID fails.
    UniqueIdReadFails,
    /// A bit flips at this address after programming (read-back must catch it).
    FlipBitAtAddress(u64),
    /// This many transient probe errors (the station retries them).
    TransientErrors(u32),
}

impl Default for FaultChoice {
    fn default() -> Self {
        FaultChoice::ProbeLostAtStep("erase".to_string())
    }
}

impl FaultChoice {
    /// The kinds in the order the window lists them, with default parameters.
    pub fn kinds() -> [FaultChoice; 5] {
        [
            FaultChoice::ProbeLostAtStep("erase".to_string()),
            FaultChoice::PowerCutAfterFlashOperations(40),
            FaultChoice::UniqueIdReadFails,
            FaultChoice::FlipBitAtAddress(0x8000),
            FaultChoice::TransientErrors(2),
        ]
    }

    /// The kind's name in the window.
    pub fn kind_label(&self) -> &'static str {
        match self {
            FaultChoice::ProbeLostAtStep(_) => "probe lost at step",
            FaultChoice::PowerCutAfterFlashOperations(_) => "power cut after flash operations",
            FaultChoice::UniqueIdReadFails => "unique ID read fails",
            FaultChoice::FlipBitAtAddress(_) => "bit flip at address",
            FaultChoice::TransientErrors(_) => "transient probe errors",
        }
    }

    /// A short description with the parameter.
    pub fn describe(&self) -> String {
        match self {
            FaultChoice::ProbeLostAtStep(step) => format!("probe lost at {step}"),
            FaultChoice::PowerCutAfterFlashOperations(count) => format!("power cut after {count} flash ops"),
            FaultChoice::UniqueIdReadFails => "unique ID read fails".to_string(),
            FaultChoice::FlipBitAtAddress(address) => format!("bit flip at {address:#x}"),
            FaultChoice::TransientErrors(count) => format!("{count} transient errors"),
        }
    }

    /// Parses `KIND[=VALUE]` as `imprint run --sim-fault` spells it: `power-cut=OPS`,
    /// `probe-lost=STEP`, `uid-read-fails`, `flip-bit=ADDRESS` (decimal or 0x hex) or
    /// `transient=COUNT`.
    pub fn parse(text: &str) -> Result<FaultChoice, String> {
        let (kind, value) = match text.split_once('=') {
            Some((kind, value)) => (kind, Some(value)),
            None => (text, None),
        };
        let number = |value: Option<&str>| -> Result<u64, String> {
            let value = value.ok_or_else(|| format!("fault {text}: {kind} needs =VALUE"))?;
            let parsed = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse(),
            };
            parsed.map_err(|_| format!("fault {text}: expected a number, found {value}"))
        };
        match kind {
            "power-cut" => Ok(FaultChoice::PowerCutAfterFlashOperations(number(value)?)),
            "probe-lost" => {
                let step = value.ok_or_else(|| format!("fault {text}: probe-lost needs =STEP"))?;
                if !crate::station::StepName::ALL.iter().any(|name| name.as_str() == step) {
                    return Err(format!("fault {text}: unknown step {step}"));
                }
                Ok(FaultChoice::ProbeLostAtStep(step.to_string()))
            }
            "uid-read-fails" => Ok(FaultChoice::UniqueIdReadFails),
            "flip-bit" => Ok(FaultChoice::FlipBitAtAddress(number(value)?)),
            "transient" => {
                let count = number(value)?;
                u32::try_from(count)
                    .map(FaultChoice::TransientErrors)
                    .map_err(|_| format!("fault {text}: count {count} is too large"))
            }
            other => Err(format!(
                "fault {text}: unknown kind {other}; expected power-cut, probe-lost, uid-read-fails, flip-bit or transient"
            )),
        }
    }

    /// The simulator's fault plan.
    pub fn plan(&self) -> FaultPlan {
        let mut plan = FaultPlan::default();
        match self {
            FaultChoice::ProbeLostAtStep(step) => plan.probe_lost_at_step = Some(step.clone()),
            FaultChoice::PowerCutAfterFlashOperations(count) => {
                plan.power_cut_after_flash_operations = Some(*count)
            }
            FaultChoice::UniqueIdReadFails => plan.unique_id_read_fails = true,
            FaultChoice::FlipBitAtAddress(address) => plan.flip_bit_at_address = Some(*address),
            FaultChoice::TransientErrors(count) => plan.transient_errors = *count,
        }
        plan
    }
}

/// Locks a mutex even if a thread panicked while holding it: the guarded values are plain
/// counters and options that stay consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// A fixture that counts how often it was asked.
    struct CountingFixture(Arc<AtomicU32>);

    impl Fixture for CountingFixture {
        fn name(&self) -> String {
            "counting".to_string()
        }

        fn next_unit(&mut self, _: &dyn Fn() -> bool) -> Result<Option<Box<dyn Target>>, TargetError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
    }

    #[test]
    fn manual_start_waits_for_a_press_and_gives_up_on_stop() {
        let asked = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(StartGate::default());
        let waiting_notices = Arc::new(AtomicU32::new(0));
        let notices = waiting_notices.clone();
        let mut fixture = GatedFixture::new(
            Box::new(CountingFixture(asked.clone())),
            StartMode::Manual,
            gate.clone(),
            Box::new(move || {
                notices.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let presser_gate = gate.clone();
        let presser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            presser_gate.press();
        });
        let keep_waiting = || !stop.load(Ordering::SeqCst);
        fixture.next_unit(&keep_waiting).unwrap();
        presser.join().unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1, "the press let one unit through");
        stop.store(true, Ordering::SeqCst);
        gate.wake();
        assert!(fixture.next_unit(&keep_waiting).unwrap().is_none());
        assert_eq!(asked.load(Ordering::SeqCst), 1, "a stop while waiting asks the fixture for nothing");
        assert_eq!(waiting_notices.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn armed_faults_go_to_the_next_unit_only() {
        let injector = FaultInjector::default();
        let schedule = injector.schedule(1);
        assert_eq!(schedule(0), FaultPlan::default());
        injector.arm(1, FaultChoice::UniqueIdReadFails.plan());
        assert!(injector.armed(1).is_some());
        assert!(injector.armed(0).is_none());
        assert!(schedule(1).unique_id_read_fails);
        assert_eq!(schedule(2), FaultPlan::default());
        let scheduled = FaultInjector::with_schedule(vec![(0, 1, FaultChoice::TransientErrors(2).plan())]);
        let slot_zero = scheduled.schedule(0);
        assert_eq!(slot_zero(0), FaultPlan::default());
        assert_eq!(slot_zero(1).transient_errors, 2);
        assert_eq!(scheduled.schedule(1)(1), FaultPlan::default());
        for choice in FaultChoice::kinds() {
            assert_ne!(choice.plan(), FaultPlan::default(), "{}", choice.describe());
        }
    }

    fn check_parse(text: &str, expected: Option<FaultChoice>) {
        assert_eq!(FaultChoice::parse(text).ok(), expected, "{text}");
    }

    #[test]
    fn fault_specs_parse_like_imprint_run() {
        check_parse("probe-lost=erase", Some(FaultChoice::ProbeLostAtStep("erase".into())));
        check_parse("power-cut=40", Some(FaultChoice::PowerCutAfterFlashOperations(40)));
        check_parse("flip-bit=0x8000", Some(FaultChoice::FlipBitAtAddress(0x8000)));
        check_parse("uid-read-fails", Some(FaultChoice::UniqueIdReadFails));
        check_parse("transient=3", Some(FaultChoice::TransientErrors(3)));
        check_parse("probe-lost=nowhere", None);
        check_parse("power-cut", None);
        check_parse("transient=99999999999", None);
        check_parse("melt", None);
    }
}
