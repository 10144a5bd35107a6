//! How units reach the slots when the GUI runs the line: a thin [`Fixture`] wrapper that adds
//! the operator's part (manual start, the pause while a board is swapped). The simulator's
//! faults are the station's ([`crate::station::session::FaultInjector`]). The station's steps are untouched: the wrapper only decides
//! *when* the wrapped fixture is asked for its next unit.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::device::{Fixture, Target, TargetError};

/// How often a waiting slot re-checks whether the line was stopped.
const WAIT_POLL: Duration = Duration::from_millis(50);
/// How often a latched slot asks its fixture whether the failed board is still on it.
const PRESENCE_POLL: Duration = Duration::from_millis(500);

/// When a slot takes its next unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// As soon as the fixture presents one; after a unit, wait `unit_change_delay` first (the
    /// time an operator needs to swap boards, so the result stays on screen meanwhile).
    Automatic { unit_change_delay: Duration },
    /// Only after the operator pressed the slot's start button (or Enter in the scanner field).
    Manual,
}

/// A slot's start button and its failure latch, shared by the UI (which presses and
/// acknowledges) and the slot's thread (which waits on them).
///
/// A unit that FAILs latches its slot (the line's event sink latches it on the slot's own
/// thread, before the slot asks for its next unit): the slot takes no new unit, in either
/// start mode, until the operator acknowledges the failure, and a press (a scan, Enter) on a
/// latched slot is ignored, so a failed board is never restarted by accident. A fixture that
/// can tell when its board is taken off ([`Fixture::board_present`]) acknowledges the failure
/// when the failed board is removed ([`GatedFixture`]).
#[derive(Debug, Default)]
pub struct StartGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    presses: u32,
    latched: bool,
    /// The operator took the board off the fixture (the simulator's "Remove board").
    board_removed: bool,
}

impl StartGate {
    /// The operator asked for the next unit (ignored while the slot is latched).
    pub fn press(&self) {
        let mut state = lock(&self.state);
        if !state.latched {
            state.presses += 1;
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The slot's unit failed: hold the slot until [`StartGate::acknowledge`].
    pub fn latch(&self) {
        let mut state = lock(&self.state);
        state.latched = true;
        state.presses = 0;
    }

    /// The operator acknowledged the failure: the slot may take its next unit.
    pub fn acknowledge(&self) {
        lock(&self.state).latched = false;
        self.changed.notify_all();
    }

    /// The board was taken off the fixture (`false`) or put back. Taking it off acknowledges a
    /// latched failure (the operator has the failed board in hand); the slot takes no unit
    /// while its board is off.
    pub fn set_board_present(&self, present: bool) {
        let mut state = lock(&self.state);
        state.board_removed = !present;
        if !present {
            state.latched = false;
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Whether the slot is held by an unacknowledged failure.
    pub fn is_latched(&self) -> bool {
        lock(&self.state).latched
    }

    /// Wakes a waiting slot so it notices a stop request at once.
    pub fn wake(&self) {
        self.changed.notify_all();
    }

    /// Waits at most `patience` until the slot is not latched and has its board.
    fn wait_unlatched(&self, keep_waiting: &dyn Fn() -> bool, patience: Duration) -> Waited {
        let ready = |state: &mut GateState| !state.latched && !state.board_removed;
        // A ready slot goes on at once, as if there were no latch (the guard is dropped first).
        if ready(&mut lock(&self.state)) {
            return Waited::Ready;
        }
        self.wait_for(keep_waiting, Some(Instant::now() + patience), ready)
    }

    /// Waits for a press; false when `keep_waiting` said stop first.
    fn wait(&self, keep_waiting: &dyn Fn() -> bool) -> bool {
        let pressed = self.wait_for(keep_waiting, None, |state| {
            let pressed = state.presses > 0 && !state.latched;
            if pressed {
                state.presses -= 1;
            }
            pressed
        });
        pressed == Waited::Ready
    }

    fn wait_for(
        &self,
        keep_waiting: &dyn Fn() -> bool,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut GateState) -> bool,
    ) -> Waited {
        let mut state = lock(&self.state);
        loop {
            if !keep_waiting() {
                return Waited::Stopped;
            }
            if ready(&mut state) {
                return Waited::Ready;
            }
            let nap = match deadline {
                Some(deadline) if Instant::now() >= deadline => return Waited::TimedOut,
                Some(deadline) => deadline.saturating_duration_since(Instant::now()).min(WAIT_POLL),
                None => WAIT_POLL,
            };
            state = match self.changed.wait_timeout(state, nap) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// How a wait on the gate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    Ready,
    /// `keep_waiting` said stop.
    Stopped,
    /// Not ready within the patience given.
    TimedOut,
}

/// Wraps a fixture with the operator's start behaviour.
pub struct GatedFixture {
    inner: Box<dyn Fixture>,
    mode: StartMode,
    gate: Arc<StartGate>,
    /// Tells the UI the slot now waits for the operator.
    on_waiting: Box<dyn Fn() + Send>,
    /// Tells the UI the fixture saw the failed board taken off (the latch is released).
    on_board_removed: Box<dyn Fn() + Send>,
    units_presented: u64,
}

impl GatedFixture {
    pub fn new(
        inner: Box<dyn Fixture>,
        mode: StartMode,
        gate: Arc<StartGate>,
        on_waiting: Box<dyn Fn() + Send>,
    ) -> GatedFixture {
        GatedFixture { inner, mode, gate, on_waiting, on_board_removed: Box::new(|| {}), units_presented: 0 }
    }

    /// Called (on the slot's thread) when the fixture saw the failed board taken off and
    /// released the latch; the UI then takes the failure as acknowledged.
    pub fn with_board_removed_notice(mut self, notice: Box<dyn Fn() + Send>) -> GatedFixture {
        self.on_board_removed = notice;
        self
    }

    /// Waits until the slot is not latched and has its board; false when `keep_waiting` said
    /// stop first. While latched, asks the fixture every [`PRESENCE_POLL`] whether the failed
    /// board is still on it: a board seen there and then gone (nothing answers, or another
    /// board does) was taken off by the operator, which acknowledges the failure. A board never
    /// seen during the latch (a contact failure, say) acknowledges nothing by being absent.
    fn wait_until_unlatched(&mut self, keep_waiting: &dyn Fn() -> bool) -> bool {
        let mut failed_board_seen = false;
        loop {
            match self.gate.wait_unlatched(keep_waiting, PRESENCE_POLL) {
                Waited::Ready => return true,
                Waited::Stopped => return false,
                Waited::TimedOut => {}
            }
            if !self.gate.is_latched() {
                // Held only because the simulator's board is off.
                continue;
            }
            match self.inner.board_present() {
                Some(true) => failed_board_seen = true,
                Some(false) if failed_board_seen => {
                    self.gate.acknowledge();
                    (self.on_board_removed)();
                    failed_board_seen = false;
                }
                Some(false) | None => {}
            }
        }
    }
}

impl Fixture for GatedFixture {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn next_unit(&mut self, keep_waiting: &dyn Fn() -> bool) -> Result<Option<Box<dyn Target>>, TargetError> {
        // A latched slot waits for the operator's acknowledgement first; the pause between
        // units (automatic) or the start press (manual) comes after it.
        if !self.wait_until_unlatched(keep_waiting) {
            return Ok(None);
        }
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
/// counters and flags that stay consistent.
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
    fn a_latched_slot_takes_no_unit_and_no_press_until_acknowledged() {
        let asked = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(StartGate::default());
        let mut fixture = GatedFixture::new(
            Box::new(CountingFixture(asked.clone())),
            StartMode::Automatic { unit_change_delay: Duration::ZERO },
            gate.clone(),
            Box::new(|| {}),
        );
        gate.latch();
        gate.press();
        assert!(gate.is_latched());
        // Stopped while latched: the fixture is never asked.
        let give_up_at = Instant::now() + Duration::from_millis(120);
        let keep_waiting = move || Instant::now() < give_up_at;
        assert!(fixture.next_unit(&keep_waiting).unwrap().is_none());
        assert_eq!(asked.load(Ordering::SeqCst), 0, "a latched slot asked its fixture for a unit");
        // Acknowledged from another thread: the waiting slot goes on.
        let acknowledger_gate = gate.clone();
        let acknowledger = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            acknowledger_gate.acknowledge();
        });
        fixture.next_unit(&|| true).unwrap();
        acknowledger.join().unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // The press made while latched was dropped: manual start still waits.
        let mut manual = GatedFixture::new(
            Box::new(CountingFixture(asked.clone())),
            StartMode::Manual,
            gate.clone(),
            Box::new(|| {}),
        );
        let give_up_at = Instant::now() + Duration::from_millis(120);
        assert!(manual.next_unit(&move || Instant::now() < give_up_at).unwrap().is_none());
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    /// A fixture whose board comes and goes as scripted: each presence question takes the next
    /// answer (the last one repeats).
    struct ScriptedPresence {
        answers: Vec<Option<bool>>,
        asked: Arc<AtomicU32>,
        /// Counts the units asked for.
        units: CountingFixture,
    }

    impl Fixture for ScriptedPresence {
        fn name(&self) -> String {
            "scripted".to_string()
        }

        fn next_unit(
            &mut self,
            keep_waiting: &dyn Fn() -> bool,
        ) -> Result<Option<Box<dyn Target>>, TargetError> {
            self.units.next_unit(keep_waiting)
        }

        fn board_present(&mut self) -> Option<bool> {
            let asked = self.asked.fetch_add(1, Ordering::SeqCst) as usize;
            self.answers[asked.min(self.answers.len() - 1)]
        }
    }

    /// A latched automatic slot on a [`ScriptedPresence`] fixture: the slot, its gate, and the
    /// counts of presence questions and of units asked for.
    fn latched_slot(
        answers: Vec<Option<bool>>,
    ) -> (GatedFixture, Arc<StartGate>, Arc<AtomicU32>, Arc<AtomicU32>) {
        let (asked, units_asked) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let gate = Arc::new(StartGate::default());
        let fixture =
            ScriptedPresence { answers, asked: asked.clone(), units: CountingFixture(units_asked.clone()) };
        let slot = GatedFixture::new(
            Box::new(fixture),
            StartMode::Automatic { unit_change_delay: Duration::ZERO },
            gate.clone(),
            Box::new(|| {}),
        );
        gate.latch();
        (slot, gate, asked, units_asked)
    }

    #[test]
    fn a_fixture_that_sees_the_failed_board_taken_off_releases_the_latch_once() {
        // Absent first (the board not seen yet: a contact failure acknowledges nothing), then
        // there, then gone: taken off.
        let (slot, gate, asked, units_asked) = latched_slot(vec![Some(false), None, Some(true), Some(false)]);
        let notices = Arc::new(AtomicU32::new(0));
        let counted = notices.clone();
        let mut slot = slot.with_board_removed_notice(Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        let give_up_at = Instant::now() + PRESENCE_POLL * 10;
        slot.next_unit(&move || Instant::now() < give_up_at).unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 4, "released at the first absence after the board was seen");
        assert!(!gate.is_latched());
        assert_eq!(notices.load(Ordering::SeqCst), 1);
        assert_eq!(units_asked.load(Ordering::SeqCst), 1, "the slot went on to its next unit");
        // Not latched: the fixture is not asked about its board.
        slot.next_unit(&|| true).unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_board_never_seen_during_the_latch_releases_nothing_by_being_absent() {
        let (mut slot, gate, asked, units_asked) = latched_slot(vec![Some(false)]);
        let give_up_at = Instant::now() + PRESENCE_POLL * 3 + PRESENCE_POLL / 2;
        assert!(slot.next_unit(&move || Instant::now() < give_up_at).unwrap().is_none());
        assert!(asked.load(Ordering::SeqCst) >= 2, "the fixture was asked while latched");
        assert!(gate.is_latched(), "an absent board that was never seen acknowledged the failure");
        assert_eq!(units_asked.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn removing_the_board_acknowledges_the_latch_and_holds_the_slot_until_it_is_back() {
        let asked = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(StartGate::default());
        let mut fixture = GatedFixture::new(
            Box::new(CountingFixture(asked.clone())),
            StartMode::Automatic { unit_change_delay: Duration::ZERO },
            gate.clone(),
            Box::new(|| {}),
        );
        gate.latch();
        gate.set_board_present(false);
        assert!(!gate.is_latched(), "taking the failed board off acknowledges it");
        // No board: the slot takes no unit.
        let give_up_at = Instant::now() + Duration::from_millis(120);
        assert!(fixture.next_unit(&move || Instant::now() < give_up_at).unwrap().is_none());
        assert_eq!(asked.load(Ordering::SeqCst), 0, "a slot without its board asked for a unit");
        // A board put back from another thread: the waiting slot goes on.
        let inserter_gate = gate.clone();
        let inserter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            inserter_gate.set_board_present(true);
        });
        fixture.next_unit(&|| true).unwrap();
        inserter.join().unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }
}
