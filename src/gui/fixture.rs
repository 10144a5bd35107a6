//! How units reach the slots when the GUI runs the line: a thin [`Fixture`] wrapper that adds
//! the operator's part (manual start, the pause while a board is swapped). The simulator's
//! faults are the station's ([`crate::station::session::FaultInjector`]). The station's steps are untouched: the wrapper only decides
//! *when* the wrapped fixture is asked for its next unit.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// Locks a mutex even if a thread panicked while holding it: the guarded values are plain
/// counters that stay consistent.
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
}
