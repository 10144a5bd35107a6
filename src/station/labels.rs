//! What the line is told about its units from outside the device: serial numbers scanned from
//! the units' labels (profiles with `serial.scheme = "scanned"`) and the work order the units
//! belong to.
//!
//! The GUI's scanner field, `imprint run --serials FILE` and `--work-order` feed one
//! [`UnitLabels`] per line; the `allocate-identity` step takes a serial from it and records the
//! work order in its step detail. A scan can be meant for one slot (the GUI routes it to the
//! slot waiting for its start) or for whichever slot asks first.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often a waiting slot re-checks whether the line was stopped.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// Scanned serials waiting for a unit, and the current work order. Shared by the line's slots.
#[derive(Debug, Default)]
pub struct UnitLabels {
    serials: Mutex<SerialQueue>,
    serial_arrived: Condvar,
    work_order: Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct SerialQueue {
    /// In scan order: the serial and the slot it is meant for (`None`: any slot).
    pending: VecDeque<(Option<usize>, String)>,
    /// No more serials will come (the `--serials` file or standard input ended).
    closed: bool,
    /// Slots whose unit is present and waits for its scan ([`UnitLabels::reserve_serial`]).
    slots_waiting: std::collections::BTreeSet<usize>,
}

/// What a slot waiting for a scanned serial got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialWait {
    /// The serial for this slot's unit.
    Serial(String),
    /// The source ended and holds nothing for this slot.
    Exhausted,
    /// The line was stopped while waiting.
    Stopped,
    /// Nothing arrived in time.
    TimedOut,
}

impl UnitLabels {
    /// Labels with the given work order and no serials yet.
    pub fn with_work_order(work_order: Option<String>) -> UnitLabels {
        UnitLabels { work_order: Mutex::new(work_order), ..UnitLabels::default() }
    }

    /// A serial scanned for `slot` (or, with `None`, for whichever slot asks first).
    pub fn push_serial(&self, slot: Option<usize>, serial: String) {
        lock(&self.serials).pending.push_back((slot, serial));
        self.serial_arrived.notify_all();
    }

    /// No more serials will be pushed: slots waiting for one give up at once.
    pub fn close_serials(&self) {
        lock(&self.serials).closed = true;
        self.serial_arrived.notify_all();
    }

    /// Whether `serial` was scanned and waits for a unit (so a second scan of the same label
    /// is refused before two units count on it).
    pub fn holds_serial(&self, serial: &str) -> bool {
        lock(&self.serials).pending.iter().any(|(_, pending)| pending == serial)
    }

    /// The lowest-numbered slot whose unit is present and waits for its serial to be scanned.
    pub fn first_slot_waiting_for_serial(&self) -> Option<usize> {
        lock(&self.serials).slots_waiting.first().copied()
    }

    /// Every slot whose unit is present and waits for its serial to be scanned, in order.
    pub fn slots_waiting_for_serial(&self) -> Vec<usize> {
        lock(&self.serials).slots_waiting.iter().copied().collect()
    }

    /// Reserves a serial for `slot`'s next unit, waiting for a scan while `keep_waiting` says
    /// so: true when one is reserved (one already meant for the slot, else the oldest meant for
    /// any slot); false when the source ended with nothing left for the slot, or on a stop.
    /// A line calls it once the unit is present, so a slot never starts a unit it has no
    /// serial for and two slots never count on the same scan.
    pub fn reserve_serial(&self, slot: usize, keep_waiting: &dyn Fn() -> bool) -> bool {
        let mut queue = lock(&self.serials);
        loop {
            let is_reserved = if queue.pending.iter().any(|(meant_for, _)| *meant_for == Some(slot)) {
                Some(true)
            } else if let Some(entry) = queue.pending.iter_mut().find(|(meant_for, _)| meant_for.is_none()) {
                entry.0 = Some(slot);
                Some(true)
            } else if queue.closed || !keep_waiting() {
                Some(false)
            } else {
                None
            };
            if let Some(is_reserved) = is_reserved {
                queue.slots_waiting.remove(&slot);
                return is_reserved;
            }
            queue.slots_waiting.insert(slot);
            queue = match self.serial_arrived.wait_timeout(queue, WAIT_POLL) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Takes the oldest serial meant for `slot` (else the oldest meant for any slot), waiting up
    /// to `timeout` for one while `keep_waiting` says so.
    pub fn take_serial(&self, slot: usize, keep_waiting: &dyn Fn() -> bool, timeout: Duration) -> SerialWait {
        let deadline = Instant::now() + timeout;
        let mut queue = lock(&self.serials);
        loop {
            let position = queue
                .pending
                .iter()
                .position(|(meant_for, _)| *meant_for == Some(slot))
                .or_else(|| queue.pending.iter().position(|(meant_for, _)| meant_for.is_none()));
            if let Some((_, serial)) = position.and_then(|index| queue.pending.remove(index)) {
                return SerialWait::Serial(serial);
            }
            if queue.closed {
                return SerialWait::Exhausted;
            }
            if !keep_waiting() {
                return SerialWait::Stopped;
            }
            let now = Instant::now();
            if now >= deadline {
                return SerialWait::TimedOut;
            }
            queue = match self.serial_arrived.wait_timeout(queue, WAIT_POLL.min(deadline - now)) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// The work order units are provisioned for now.
    pub fn work_order(&self) -> Option<String> {
        lock(&self.work_order).clone()
    }

    /// Sets (or, with `None`, clears) the work order for the units started from now on.
    pub fn set_work_order(&self, work_order: Option<String>) {
        *lock(&self.work_order) = work_order;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_serial_meant_for_a_slot_is_only_taken_by_that_slot() {
        let labels = UnitLabels::default();
        labels.push_serial(Some(1), "SN-B".to_string());
        labels.push_serial(None, "SN-ANY".to_string());
        let always = || true;
        assert_eq!(labels.take_serial(0, &always, Duration::ZERO), SerialWait::Serial("SN-ANY".to_string()));
        assert_eq!(labels.take_serial(0, &always, Duration::ZERO), SerialWait::TimedOut);
        assert_eq!(labels.take_serial(1, &always, Duration::ZERO), SerialWait::Serial("SN-B".to_string()));
    }

    #[test]
    fn a_reserved_serial_goes_to_the_slot_that_reserved_it() {
        let labels = UnitLabels::default();
        labels.push_serial(None, "SN-1".to_string());
        labels.push_serial(None, "SN-2".to_string());
        labels.close_serials();
        let always = || true;
        assert!(labels.reserve_serial(1, &always));
        assert!(labels.reserve_serial(0, &always));
        assert!(!labels.reserve_serial(2, &always), "both serials are reserved: slot 2 has none");
        assert_eq!(labels.take_serial(0, &always, Duration::ZERO), SerialWait::Serial("SN-2".to_string()));
        assert_eq!(labels.take_serial(1, &always, Duration::ZERO), SerialWait::Serial("SN-1".to_string()));
    }

    #[test]
    fn a_closed_source_ends_the_wait_and_a_stop_request_too() {
        let labels = UnitLabels::default();
        assert_eq!(labels.take_serial(0, &|| false, Duration::from_secs(60)), SerialWait::Stopped);
        labels.push_serial(None, "SN-1".to_string());
        labels.close_serials();
        let always = || true;
        assert_eq!(
            labels.take_serial(0, &always, Duration::from_secs(60)),
            SerialWait::Serial("SN-1".to_string())
        );
        assert_eq!(labels.take_serial(0, &always, Duration::from_secs(60)), SerialWait::Exhausted);
    }

    #[test]
    fn a_slot_waiting_to_reserve_a_serial_is_known_until_it_has_one() {
        let labels = Arc::new(UnitLabels::default());
        let waiting = {
            let labels = labels.clone();
            std::thread::spawn(move || labels.reserve_serial(2, &|| true))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while labels.first_slot_waiting_for_serial().is_none() {
            assert!(Instant::now() < deadline, "the slot never showed up as waiting");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(labels.first_slot_waiting_for_serial(), Some(2));
        labels.push_serial(Some(2), "SN-2".to_string());
        assert!(waiting.join().unwrap());
        assert_eq!(labels.first_slot_waiting_for_serial(), None);
    }

    #[test]
    fn a_waiting_slot_wakes_when_a_serial_is_scanned() {
        let labels = Arc::new(UnitLabels::default());
        let waiting = {
            let labels = labels.clone();
            std::thread::spawn(move || labels.take_serial(3, &|| true, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(100));
        let scanned_at = Instant::now();
        labels.push_serial(Some(3), "SN-3".to_string());
        assert_eq!(waiting.join().unwrap(), SerialWait::Serial("SN-3".to_string()));
        assert!(scanned_at.elapsed() < Duration::from_secs(5));
    }
}
