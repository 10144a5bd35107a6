//! The operator's shift: who is logged in, the failed boards of the shift that the operator
//! works through, and which slots hold a failure until the operator acknowledges it (the
//! latch). Plain data with no UI code, folded from the station's events like the other stores
//! ([`super::store`]), so it is tested without a window.
//!
//! The latch itself is kept twice on purpose: the slot's [`super::fixture::StartGate`] holds
//! the slot's thread (no new unit starts), and this store holds what the window shows (the FAIL
//! card, its flashing frame, the acknowledgement key's order). The app acknowledges both at
//! once.

use crate::station::{EventKind, FailureCategory, StationEvent, UnitResult};

use super::store::{SlotPhase, SlotState};

/// The operator logged in for this shift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The typed or scanned operator ID, recorded with every unit.
    pub id: String,
    /// When the shift began (RFC 3339 UTC, the events' time format).
    pub since: String,
}

/// A board that failed during the shift: the operator sets it aside, and marks it done once
/// it went to rework (or was retried).
#[derive(Debug, Clone, PartialEq)]
pub struct FailedBoard {
    /// Its number in the shift list (1, 2, …), unique within the window's life.
    pub number: u64,
    pub slot: usize,
    /// The line's unit attempt number (the `unit` of events).
    pub unit: u64,
    pub serial: Option<String>,
    pub chip_uid: Option<String>,
    pub category: FailureCategory,
    /// The step it failed at (empty when it failed before a step began).
    pub step: String,
    /// The engineer's full reason.
    pub reason: String,
    /// When it failed (RFC 3339 UTC).
    pub time: String,
    /// The operator marked it done.
    pub done: bool,
}

impl FailedBoard {
    /// What the operator writes on the board and finds it by: its serial, else its chip ID
    /// (a unit that failed before its serial was issued has only that), else the slot and unit.
    pub fn key(&self) -> String {
        match (&self.serial, &self.chip_uid) {
            (Some(serial), _) => serial.clone(),
            (None, Some(chip_uid)) => format!("chip {chip_uid}"),
            (None, None) => format!("slot {} unit {}", self.slot + 1, self.unit),
        }
    }

    /// The time of day of the failure, `HH:MM:SS` (UTC).
    pub fn clock_time(&self) -> &str {
        self.time.get(11..19).unwrap_or(&self.time)
    }
}

/// The shift's store.
#[derive(Debug, Clone, Default)]
pub struct ShiftStore {
    pub operator: Option<Operator>,
    /// Oldest first.
    pub failed_boards: Vec<FailedBoard>,
    /// Latched slots, oldest failure first, each with its failed board's number.
    latched: Vec<(usize, u64)>,
    last_number: u64,
}

impl ShiftStore {
    /// Starts a shift for `id` (trimmed); false when it is empty. The failed boards still open
    /// from the previous shift stay on the list (they are still on the bench); done ones go.
    pub fn log_in(&mut self, id: &str, now: String) -> bool {
        let id = id.trim();
        if id.is_empty() {
            return false;
        }
        self.operator = Some(Operator { id: id.to_string(), since: now });
        self.failed_boards.retain(|board| !board.done);
        true
    }

    /// Ends the shift; returns who was logged in.
    pub fn log_out(&mut self) -> Option<Operator> {
        self.operator.take()
    }

    pub fn operator_id(&self) -> Option<&str> {
        self.operator.as_ref().map(|operator| operator.id.as_str())
    }

    /// Folds one station event; returns the slot when a failure latched it (the attention
    /// signal's cue).
    pub fn apply(&mut self, event: &StationEvent) -> Option<usize> {
        let EventKind::UnitFinished {
            result: UnitResult::Fail,
            chip_uid,
            serial,
            failing_step,
            error_code,
            reason,
            ..
        } = &event.kind
        else {
            return None;
        };
        let slot = event.slot?;
        let step = failing_step.clone().unwrap_or_default();
        self.last_number += 1;
        let number = self.last_number;
        self.failed_boards.push(FailedBoard {
            number,
            slot,
            unit: event.unit.unwrap_or_default(),
            serial: serial.clone(),
            chip_uid: chip_uid.clone(),
            category: category_of(&step, *error_code),
            step,
            reason: reason.clone().unwrap_or_else(|| "no reason given".to_string()),
            time: event.time.clone(),
            done: false,
        });
        self.latched.retain(|(latched_slot, _)| *latched_slot != slot);
        self.latched.push((slot, number));
        Some(slot)
    }

    pub fn is_latched(&self, slot: usize) -> bool {
        self.latched.iter().any(|(latched_slot, _)| *latched_slot == slot)
    }

    /// The latched slots, oldest failure first.
    pub fn latched_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.latched.iter().map(|(slot, _)| *slot)
    }

    /// The slot whose failure has waited longest.
    pub fn oldest_latched(&self) -> Option<usize> {
        self.latched.first().map(|(slot, _)| *slot)
    }

    /// Releases the slot's latch; false when it was not latched.
    pub fn acknowledge(&mut self, slot: usize) -> bool {
        let before = self.latched.len();
        self.latched.retain(|(latched_slot, _)| *latched_slot != slot);
        self.latched.len() != before
    }

    /// Releases the latches of slots the line no longer has (`slot >= slot_count`); returns them.
    pub fn release_slots_from(&mut self, slot_count: usize) -> Vec<usize> {
        let gone: Vec<usize> = self.latched_slots().filter(|slot| *slot >= slot_count).collect();
        self.latched.retain(|(slot, _)| *slot < slot_count);
        gone
    }

    /// Marks a failed board done (or open again).
    pub fn set_done(&mut self, number: u64, done: bool) {
        if let Some(board) = self.failed_boards.iter_mut().find(|board| board.number == number) {
            board.done = done;
        }
    }

    /// Failed boards not yet marked done.
    pub fn open_count(&self) -> usize {
        self.failed_boards.iter().filter(|board| !board.done).count()
    }

    /// The failed board that latched `slot`, if it is latched.
    pub fn latched_board(&self, slot: usize) -> Option<&FailedBoard> {
        let (_, number) = self.latched.iter().find(|(latched_slot, _)| *latched_slot == slot)?;
        self.failed_boards.iter().find(|board| board.number == *number)
    }
}

/// A failure's category: the station's `error_code`, else the one its step gives, else an
/// internal fault (a failure with neither).
pub fn category_of(step: &str, error_code: Option<FailureCategory>) -> FailureCategory {
    error_code.or_else(|| FailureCategory::for_step_name(step)).unwrap_or(FailureCategory::Internal)
}

/// A line's slots were made anew (a start, a new slot count): the cards of latched slots keep
/// showing their failure from `previous` until it is acknowledged.
pub fn keep_latched_cards(previous: &[SlotState], slots: &mut [SlotState], shift: &ShiftStore) {
    for slot in shift.latched_slots() {
        if let (Some(old), Some(new)) = (previous.get(slot), slots.get_mut(slot))
            && matches!(old.phase, SlotPhase::Failed { .. })
        {
            new.phase = old.phase.clone();
            new.serial.clone_from(&old.serial);
            new.chip_uid.clone_from(&old.chip_uid);
            new.last_finished.clone_from(&old.last_finished);
        }
    }
}

/// Why START is refused right now, in the operator's words; `None` when the line may start.
/// `profile_check` is the chosen profile's check: `None` while it runs, `Some(Err)` with
/// problems.
pub fn start_blocker(
    profile_chosen: bool,
    profile_check: Option<Result<(), ()>>,
    operator: Option<&str>,
) -> Option<&'static str> {
    if !profile_chosen {
        return Some("choose a profile first");
    }
    match profile_check {
        None => return Some("checking the profile…"),
        Some(Err(())) => return Some("the profile has problems: fix them first"),
        Some(Ok(())) => {}
    }
    if operator.is_none() {
        return Some("log in first: scan your badge or type your operator ID");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::StepName;

    fn failed(slot: usize, unit: u64, serial: Option<&str>, step: &str) -> StationEvent {
        StationEvent::now(
            slot,
            unit,
            EventKind::UnitFinished {
                result: UnitResult::Fail,
                chip_uid: Some("00aa11bb".to_string()),
                serial: serial.map(str::to_string),
                device_id: None,
                failing_step: Some(step.to_string()),
                error_code: StepName::from_name(step).map(FailureCategory::for_step),
                reason: Some("read-back does not match".to_string()),
                cycle_time_ms: 10,
                record_hash: None,
                locked: false,
                skipped_steps: Vec::new(),
            },
        )
    }

    #[test]
    fn failures_latch_in_order_until_acknowledged() {
        let mut shift = ShiftStore::default();
        assert_eq!(shift.apply(&failed(2, 1, Some("DS1-000001"), "verify-flash")), Some(2));
        assert_eq!(shift.apply(&failed(0, 2, None, "connect")), Some(0));
        assert_eq!(shift.latched_slots().collect::<Vec<_>>(), [2, 0]);
        assert_eq!(shift.oldest_latched(), Some(2));
        assert_eq!(shift.latched_board(2).map(FailedBoard::key).as_deref(), Some("DS1-000001"));
        assert_eq!(shift.latched_board(0).map(FailedBoard::key).as_deref(), Some("chip 00aa11bb"));
        assert_eq!(shift.failed_boards[1].category, FailureCategory::Contact);
        assert!(shift.acknowledge(2));
        assert!(!shift.acknowledge(2), "a slot is acknowledged once");
        assert_eq!(shift.oldest_latched(), Some(0));
        assert!(!shift.is_latched(2) && shift.is_latched(0));
        assert_eq!(shift.release_slots_from(0), [0]);
        assert_eq!(shift.open_count(), 2, "acknowledging releases the slot, not the board");
    }

    #[test]
    fn a_new_shift_keeps_only_the_open_boards() {
        let mut shift = ShiftStore::default();
        assert!(!shift.log_in("   ", "t".into()));
        assert!(shift.log_in(" alice ", "t".into()));
        assert_eq!(shift.operator_id(), Some("alice"));
        shift.apply(&failed(0, 1, Some("DS1-000001"), "lock"));
        shift.apply(&failed(1, 2, Some("DS1-000002"), "lock"));
        shift.set_done(1, true);
        assert_eq!(shift.open_count(), 1);
        assert_eq!(shift.log_out().map(|operator| operator.id).as_deref(), Some("alice"));
        assert!(shift.log_in("bob", "t".into()));
        let keys: Vec<String> = shift.failed_boards.iter().map(FailedBoard::key).collect();
        assert_eq!(keys, ["DS1-000002"]);
    }

    #[test]
    fn start_is_refused_with_the_first_reason() {
        assert_eq!(start_blocker(false, None, None), Some("choose a profile first"));
        assert_eq!(start_blocker(true, None, Some("a")), Some("checking the profile…"));
        assert_eq!(
            start_blocker(true, Some(Err(())), Some("a")),
            Some("the profile has problems: fix them first")
        );
        assert!(start_blocker(true, Some(Ok(())), None).is_some_and(|reason| reason.starts_with("log in")));
        assert_eq!(start_blocker(true, Some(Ok(())), Some("a")), None);
    }
}
