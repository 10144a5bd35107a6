//! The GUI's stores: what the window shows, built from the station's event stream and the
//! ledger's answers. Plain data with no UI code (rerun's "stores have no UI code"), so they are
//! tested without a window and the panels only read them.
//!
//! [`LineStore`] folds [`StationEvent`]s into one [`SlotState`] per slot plus the session's
//! [`LineStats`]; [`HistoryStore`] holds the ledger's rows; [`LogStore`] the captured log lines.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::station::{EventKind, FailureCategory, StationEvent, StepName, UnitResult};

mod history;

pub use history::{HistoryRow, HistoryScope, HistoryStore, UnitDetails};

/// What a slot is doing, as the operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotPhase {
    /// Nothing on the fixture (line stopped, or between units).
    Idle,
    /// Manual start, before the slot's first unit: the slot waits for the operator's go.
    /// (After a unit the slot keeps showing its result; see [`SlotState::is_waiting_for_start`].)
    WaitingForStart,
    /// The unit is present and waits for its serial label to be scanned (profiles with
    /// `serial.scheme = "scanned"`).
    WaitingForScan,
    /// A unit is being provisioned; `step` is running.
    Running {
        /// The step's name.
        step: String,
        /// 1-based position of the step in the pipeline.
        step_number: usize,
    },
    /// The last unit passed (its record is committed).
    Passed,
    /// The last unit failed at `step` because of `reason`.
    Failed {
        /// The failing step (empty when the unit failed before a step began).
        step: String,
        /// Why (the engineer's text).
        reason: String,
        /// What kind of failure, which decides the operator's instruction.
        category: FailureCategory,
    },
    /// The last unit was aborted (the line was aborted) before `step`: neither a pass nor a
    /// failure of the board, which must be provisioned again.
    Aborted {
        /// The step it did not start.
        step: String,
    },
}

/// Byte progress within the running step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// When the first progress report of this step arrived (for the transfer rate).
    pub first_report_at: Instant,
    /// Bytes done at the first report.
    pub first_report_bytes: u64,
    /// When the latest report arrived.
    pub latest_report_at: Instant,
}

impl StepProgress {
    /// Fraction done, 0..=1.
    pub fn fraction(&self) -> f32 {
        if self.bytes_total == 0 { 0.0 } else { (self.bytes_done as f64 / self.bytes_total as f64) as f32 }
    }

    /// Time left at the rate seen so far in this step; `None` until two reports came in.
    pub fn time_left(&self) -> Option<Duration> {
        let elapsed = self.latest_report_at.duration_since(self.first_report_at).as_secs_f64();
        let moved = self.bytes_done.saturating_sub(self.first_report_bytes) as f64;
        if elapsed <= 0.0 || moved <= 0.0 {
            return None;
        }
        let remaining = self.bytes_total.saturating_sub(self.bytes_done) as f64;
        Some(Duration::from_secs_f64(remaining * elapsed / moved))
    }
}

/// The most recent finished unit of a slot.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedUnit {
    pub unit: u64,
    pub result: UnitResult,
    pub serial: Option<String>,
    pub chip_uid: Option<String>,
    pub cycle_time_ms: u64,
    /// The unit was locked and the lock proven.
    pub locked: bool,
    /// The steps the profile (or a slot without a debug port) skipped.
    pub skipped_steps: Vec<StepName>,
}

impl FinishedUnit {
    /// What a PASS of this unit did not prove, for the warning on its card: the lock, the
    /// refusal of forged updates.
    pub fn pass_warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if !self.locked {
            warnings.push("NOT LOCKED");
        }
        if self.skipped_steps.contains(&StepName::NegativeSelfTest) {
            warnings.push("forged-update test skipped");
        }
        warnings
    }
}

/// One slot's panel.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotState {
    /// The fixture's name (the `probe` of records).
    pub fixture_name: String,
    pub phase: SlotPhase,
    /// The unit attempt number on this line (0 before the first).
    pub unit: u64,
    /// Serial of the unit on the fixture (once allocated).
    pub serial: Option<String>,
    /// Chip unique ID (hex) of the unit on the fixture (once read).
    pub chip_uid: Option<String>,
    /// When the current unit started.
    pub unit_started_at: Option<Instant>,
    /// The same as the event stream stamped it (the ledger's time format).
    pub unit_started_time: Option<String>,
    /// Progress of the running step, when it reports bytes.
    pub progress: Option<StepProgress>,
    /// The last unit this slot finished.
    pub last_finished: Option<FinishedUnit>,
    /// The serial label scanned for this slot's unit, shown until the unit finishes (its
    /// issued serial replaces it once `allocate-identity` ran).
    pub scanned_label: Option<String>,
    /// Fixture trouble reported since the last unit started.
    pub slot_error: Option<String>,
    /// Manual start: the slot waits for the operator before taking its next unit.
    pub is_waiting_for_start: bool,
    pub units_passed: u64,
    pub units_failed: u64,
}

impl SlotState {
    fn new(fixture_name: String) -> SlotState {
        SlotState {
            fixture_name,
            phase: SlotPhase::Idle,
            unit: 0,
            serial: None,
            chip_uid: None,
            unit_started_at: None,
            unit_started_time: None,
            progress: None,
            last_finished: None,
            scanned_label: None,
            slot_error: None,
            is_waiting_for_start: false,
            units_passed: 0,
            units_failed: 0,
        }
    }

    /// How long the current unit has been running, or the last unit's cycle time.
    pub fn cycle_time(&self, now: Instant) -> Option<Duration> {
        match (&self.phase, self.unit_started_at) {
            (SlotPhase::Running { .. }, Some(started)) => Some(now.duration_since(started)),
            _ => self.last_finished.as_ref().map(|finished| Duration::from_millis(finished.cycle_time_ms)),
        }
    }
}

/// The session's numbers (since the window opened), from the event stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineStats {
    pub units: u64,
    pub passed: u64,
    pub failed: u64,
    /// Units ended by an abort while in flight (outside the yield).
    pub aborted: u64,
    /// Units whose chip the ledger had not seen before this attempt (or that failed before
    /// the chip was identified): the denominator of first-pass yield.
    pub first_attempts: u64,
    /// First attempts that passed.
    pub first_attempts_passed: u64,
    /// Time the line has been running, summed over starts and stops.
    pub running_time: Duration,
}

impl LineStats {
    /// First-pass yield in percent, `None` before the first unit.
    pub fn first_pass_yield_percent(&self) -> Option<f64> {
        (self.first_attempts > 0)
            .then(|| 100.0 * self.first_attempts_passed as f64 / self.first_attempts as f64)
    }

    /// Units per hour over the running time, `None` before the line ran a second.
    pub fn units_per_hour(&self) -> Option<f64> {
        let seconds = self.running_time.as_secs_f64();
        (seconds >= 1.0).then(|| self.units as f64 * 3600.0 / seconds)
    }
}

/// Whether the line runs.
#[derive(Debug, Clone, PartialEq)]
pub enum LineStatus {
    /// Not running; the message says how the last run ended (or why it could not start).
    Stopped { message: String },
    /// Loading the profile, preparing the self-test material, opening the ledger and fixtures.
    Starting,
    /// Slots are provisioning.
    Running,
    /// Stop requested: each slot finishes its current step.
    Stopping,
}

/// The line: its status, its slots and the session's statistics.
#[derive(Debug, Clone)]
pub struct LineStore {
    pub status: LineStatus,
    pub slots: Vec<SlotState>,
    pub stats: LineStats,
    /// When the current run started (for the running time).
    running_since: Option<Instant>,
    /// Per slot: whether the unit on it was seen before (from the identify step).
    seen_before: Vec<Option<bool>>,
    /// Units finished since the store was made (every run).
    pub units_finished_total: u64,
}

impl Default for LineStore {
    fn default() -> Self {
        LineStore {
            status: LineStatus::Stopped { message: "stopped".to_string() },
            slots: Vec::new(),
            stats: LineStats::default(),
            running_since: None,
            seen_before: Vec::new(),
            units_finished_total: 0,
        }
    }
}

impl LineStore {
    /// Shows `count` idle slots named `sim-0..` before a line runs (a preview of the layout).
    pub fn preview_slots(&mut self, count: usize) {
        self.preview_named_slots((0..count).map(|slot| format!("sim-{slot}")).collect());
    }

    /// Shows one idle slot per name (the `--probe` selectors) before a line runs.
    pub fn preview_named_slots(&mut self, names: Vec<String>) {
        if self.is_active() {
            return;
        }
        self.seen_before = vec![None; names.len()];
        self.slots = names.into_iter().map(SlotState::new).collect();
    }

    /// True while starting, running or stopping.
    pub fn is_active(&self) -> bool {
        !matches!(self.status, LineStatus::Stopped { .. })
    }

    /// A start was requested.
    pub fn starting(&mut self) {
        self.status = LineStatus::Starting;
    }

    /// The line's fixtures are open and the slots run.
    pub fn started(&mut self, fixture_names: Vec<String>, now: Instant) {
        self.seen_before = vec![None; fixture_names.len()];
        self.slots = fixture_names.into_iter().map(SlotState::new).collect();
        self.status = LineStatus::Running;
        self.running_since = Some(now);
    }

    /// The line could not start.
    pub fn start_failed(&mut self, message: String) {
        self.status = LineStatus::Stopped { message };
    }

    /// A stop was requested.
    pub fn stopping(&mut self) {
        if self.is_active() {
            self.status = LineStatus::Stopping;
        }
    }

    /// A new shift: the figures and the slots' tallies start from zero (the running time too,
    /// from now if the line runs).
    pub fn reset_shift_counters(&mut self, now: Instant) {
        self.stats = LineStats::default();
        if self.running_since.is_some() {
            self.running_since = Some(now);
        }
        for slot in &mut self.slots {
            slot.units_passed = 0;
            slot.units_failed = 0;
        }
    }

    /// The running time including the current run.
    pub fn running_time(&self, now: Instant) -> Duration {
        self.stats.running_time
            + self.running_since.map(|since| now.duration_since(since)).unwrap_or_default()
    }

    /// Manual start: the slot waits for the operator. A slot that has a result keeps showing
    /// it until the next unit starts.
    pub fn slot_waiting(&mut self, slot: usize) {
        if let Some(state) = self.slots.get_mut(slot) {
            state.is_waiting_for_start = true;
            if state.phase == SlotPhase::Idle {
                state.phase = SlotPhase::WaitingForStart;
            }
        }
    }

    /// Shows `slots` as waiting for their unit's serial scan (their start was given).
    pub fn slots_waiting_for_scan(&mut self, slots: &[usize]) {
        for &slot in slots {
            if let Some(state) = self.slots.get_mut(slot) {
                state.phase = SlotPhase::WaitingForScan;
                state.is_waiting_for_start = false;
            }
        }
    }

    /// The first slot waiting for the operator's start.
    pub fn first_slot_waiting(&self) -> Option<usize> {
        self.slots.iter().position(|slot| slot.is_waiting_for_start)
    }

    /// The line ended: waiting and running slots go idle, the status says what the line did.
    fn line_finished(&mut self, counts: [u64; 4], elapsed_ms: u64, now: Instant) {
        let [units, passed, failed, aborted] = counts;
        if let Some(since) = self.running_since.take() {
            self.stats.running_time += now.duration_since(since);
        }
        for slot in &mut self.slots {
            if matches!(
                slot.phase,
                SlotPhase::WaitingForStart | SlotPhase::WaitingForScan | SlotPhase::Running { .. }
            ) {
                slot.phase = SlotPhase::Idle;
            }
            slot.progress = None;
            slot.is_waiting_for_start = false;
        }
        self.status = LineStatus::Stopped {
            message: format!(
                "line finished: {units} units, {passed} pass, {failed} fail{} in {:.1} s",
                if aborted > 0 { format!(", {aborted} aborted") } else { String::new() },
                elapsed_ms as f64 / 1000.0
            ),
        };
    }

    /// Folds one station event into the slots and statistics.
    pub fn apply(&mut self, event: &StationEvent, now: Instant) {
        if let EventKind::LineFinished { units, passed, failed, aborted, elapsed_ms, .. } = &event.kind {
            self.line_finished([*units, *passed, *failed, *aborted], *elapsed_ms, now);
            return;
        }
        // Line-level events (line-started) carry no slot: the window shows its slots already.
        let Some(slot_index) = event.slot else {
            return;
        };
        let unit = event.unit.unwrap_or_default();
        let Some(slot) = self.slots.get_mut(slot_index) else {
            return;
        };
        match &event.kind {
            EventKind::UnitStarted { probe } => {
                slot.fixture_name.clone_from(probe);
                slot.unit = unit;
                slot.serial = None;
                slot.chip_uid = None;
                slot.slot_error = None;
                slot.progress = None;
                slot.is_waiting_for_start = false;
                slot.unit_started_at = Some(now);
                slot.unit_started_time = Some(event.time.clone());
                slot.phase = SlotPhase::Running { step: "connect".to_string(), step_number: 1 };
                if let Some(seen) = self.seen_before.get_mut(slot_index) {
                    *seen = None;
                }
            }
            EventKind::StepStarted { step } => {
                slot.progress = None;
                slot.phase =
                    SlotPhase::Running { step: step.to_string(), step_number: step_number(step.as_str()) };
            }
            EventKind::StepProgress { bytes_done, bytes_total, .. } => {
                slot.progress = Some(match slot.progress {
                    Some(progress) => StepProgress {
                        bytes_done: *bytes_done,
                        bytes_total: *bytes_total,
                        latest_report_at: now,
                        ..progress
                    },
                    None => StepProgress {
                        bytes_done: *bytes_done,
                        bytes_total: *bytes_total,
                        first_report_at: now,
                        first_report_bytes: *bytes_done,
                        latest_report_at: now,
                    },
                });
            }
            EventKind::StepFinished { facts, .. } => {
                slot.progress = None;
                if let Some(chip_uid) = &facts.chip_uid {
                    slot.chip_uid = Some(chip_uid.clone());
                }
                if let (Some(seen), Some(seen_before)) =
                    (facts.seen_before, self.seen_before.get_mut(slot_index))
                {
                    *seen_before = Some(seen);
                }
                if let Some(serial) = &facts.serial {
                    slot.serial = Some(serial.clone());
                }
            }
            EventKind::StepSkipped { .. } | EventKind::StepFailed { .. } => {
                slot.progress = None;
            }
            EventKind::UnitFinished {
                result,
                chip_uid,
                serial,
                failing_step,
                error_code,
                reason,
                cycle_time_ms,
                locked,
                skipped_steps,
                ..
            } => {
                slot.progress = None;
                slot.scanned_label = None;
                slot.unit_started_at = None;
                slot.unit_started_time = None;
                slot.serial = serial.clone().or(slot.serial.take());
                slot.chip_uid = chip_uid.clone().or(slot.chip_uid.take());
                slot.last_finished = Some(FinishedUnit {
                    unit,
                    result: *result,
                    serial: slot.serial.clone(),
                    chip_uid: slot.chip_uid.clone(),
                    cycle_time_ms: *cycle_time_ms,
                    locked: *locked,
                    skipped_steps: skipped_steps.clone(),
                });
                let is_first_attempt = self.seen_before.get(slot_index).copied().flatten() != Some(true);
                self.stats.units += 1;
                self.units_finished_total += 1;
                let failure = (failing_step.as_deref(), *error_code, reason.as_deref());
                fold_result(&mut self.stats, slot, is_first_attempt, *result, failure);
            }
            EventKind::SlotError { reason } => {
                slot.slot_error = Some(reason.clone());
            }
            EventKind::LineStarted(_) | EventKind::LineRefused { .. } | EventKind::LineFinished { .. } => {}
        }
    }
}

/// A finished unit's result into the figures and its slot's phase and tallies; `failure` is
/// the failing step, category and reason.
fn fold_result(
    stats: &mut LineStats,
    slot: &mut SlotState,
    is_first_attempt: bool,
    result: UnitResult,
    (failing_step, error_code, reason): (Option<&str>, Option<FailureCategory>, Option<&str>),
) {
    // An aborted unit says nothing of the board: it stays out of the yield.
    if is_first_attempt && result != UnitResult::Aborted {
        stats.first_attempts += 1;
    }
    let step = failing_step.unwrap_or_default().to_string();
    match result {
        UnitResult::Pass => {
            slot.units_passed += 1;
            stats.passed += 1;
            if is_first_attempt {
                stats.first_attempts_passed += 1;
            }
            slot.phase = SlotPhase::Passed;
        }
        UnitResult::Fail => {
            slot.units_failed += 1;
            stats.failed += 1;
            slot.phase = SlotPhase::Failed {
                category: super::shift::category_of(&step, error_code),
                step,
                reason: reason.unwrap_or("no reason given").to_string(),
            };
        }
        UnitResult::Aborted => {
            stats.aborted += 1;
            slot.phase = SlotPhase::Aborted { step };
        }
    }
}

/// 1-based position of a step in the pipeline (0 when unknown).
fn step_number(step: &str) -> usize {
    crate::station::StepName::ALL.iter().position(|name| name.as_str() == step).map_or(0, |index| index + 1)
}

/// The profile picker's data.
#[derive(Debug, Clone)]
pub struct ProfilesStore {
    /// The folder the list came from.
    pub directory: std::path::PathBuf,
    /// The `*.toml` files found there, or why the folder could not be read.
    pub listed: Result<Vec<std::path::PathBuf>, String>,
    /// The chosen profile checked: its summary, or its problems.
    pub checked: Option<(std::path::PathBuf, Result<ProfileSummary, String>)>,
}

impl Default for ProfilesStore {
    fn default() -> Self {
        ProfilesStore { directory: std::path::PathBuf::new(), listed: Ok(Vec::new()), checked: None }
    }
}

/// One captured log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Wall-clock time, RFC 3339 UTC with milliseconds.
    pub time: String,
    pub level: tracing::Level,
    /// The event's target (usually its module path).
    pub target: String,
    /// Span context, message and fields, e.g. `slot{slot=0}: retrying attempt=1`.
    pub text: String,
}

/// What a checked profile looks like in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSummary {
    pub name: String,
    pub model_name: String,
    pub chip_name: String,
    pub warnings: Vec<String>,
    /// Units of this profile pass without being locked.
    pub skips_lock: bool,
    /// Units of this profile pass without proving that forged updates are refused.
    pub skips_negative_self_test: bool,
    /// What a scan is (`[scanner]`, or the defaults for the serial scheme).
    pub scanner: crate::profile::ScannerSettings,
    /// The units' serials are scanned from their labels (`serial.scheme = "scanned"`).
    pub serials_are_scanned: bool,
    /// What the ledger does with a chip seen before (`serial.rework`).
    pub rework_policy: crate::ledger::ReworkPolicy,
}

impl ProfileSummary {
    /// What a PASS of this profile does not prove, for the warning at line start.
    pub fn pass_warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if self.skips_lock {
            warnings.push("units are NOT LOCKED");
        }
        if self.skips_negative_self_test {
            warnings.push("the forged-update test is skipped");
        }
        warnings
    }
}

/// The captured log lines, newest last, at most [`LogStore::CAPACITY`].
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    pub lines: VecDeque<LogLine>,
    /// Lines dropped because the capture channel was full.
    pub dropped: u64,
}

impl LogStore {
    pub const CAPACITY: usize = 5_000;

    pub fn push(&mut self, line: LogLine) {
        if self.lines.len() == LogStore::CAPACITY {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::StepFacts;
    use serde_json::json;

    fn event(slot: usize, unit: u64, kind: EventKind) -> StationEvent {
        StationEvent::now(slot, unit, kind)
    }

    fn finished(result: UnitResult, failing_step: Option<&str>, reason: Option<&str>) -> EventKind {
        EventKind::UnitFinished {
            result,
            chip_uid: Some("0a0b".to_string()),
            serial: Some("DS1-000001".to_string()),
            device_id: None,
            failing_step: failing_step.map(str::to_string),
            error_code: None,
            reason: reason.map(str::to_string),
            cycle_time_ms: 1234,
            record_hash: None,
            locked: result == UnitResult::Pass,
            skipped_steps: Vec::new(),
        }
    }

    /// Runs `events` through a two-slot store and compares slot 0's phase and the stats.
    fn check(
        events: Vec<StationEvent>,
        expected_phase: SlotPhase,
        expected_stats: (u64, u64, u64, Option<f64>),
    ) {
        let mut store = LineStore::default();
        let now = Instant::now();
        store.started(vec!["sim-0".into(), "sim-1".into()], now);
        for event in &events {
            store.apply(event, now);
        }
        assert_eq!(store.slots[0].phase, expected_phase);
        let stats = &store.stats;
        assert_eq!(
            (stats.units, stats.passed, stats.failed, stats.first_pass_yield_percent()),
            expected_stats
        );
    }

    #[test]
    fn events_drive_slot_phases_and_stats() {
        check(vec![], SlotPhase::Idle, (0, 0, 0, None));
        check(
            vec![
                event(0, 1, EventKind::UnitStarted { probe: "sim-0".into() }),
                event(0, 1, EventKind::StepStarted { step: StepName::Erase }),
            ],
            SlotPhase::Running { step: "erase".into(), step_number: 4 },
            (0, 0, 0, None),
        );
        check(
            vec![
                event(0, 1, EventKind::UnitStarted { probe: "sim-0".into() }),
                event(0, 1, finished(UnitResult::Pass, None, None)),
            ],
            SlotPhase::Passed,
            (1, 1, 0, Some(100.0)),
        );
        check(
            vec![
                event(0, 1, EventKind::UnitStarted { probe: "sim-0".into() }),
                event(0, 1, finished(UnitResult::Fail, Some("erase"), Some("probe lost: gone"))),
            ],
            SlotPhase::Failed {
                step: "erase".into(),
                reason: "probe lost: gone".into(),
                category: FailureCategory::FlashVerify,
            },
            (1, 0, 1, Some(0.0)),
        );
        // A rework (chip seen before) that passes counts as a unit but not as a first attempt.
        check(
            vec![
                event(1, 1, EventKind::UnitStarted { probe: "sim-1".into() }),
                event(1, 1, finished(UnitResult::Fail, Some("erase"), Some("x"))),
                event(0, 2, EventKind::UnitStarted { probe: "sim-0".into() }),
                event(
                    0,
                    2,
                    EventKind::StepFinished {
                        step: StepName::Identify,
                        duration_ms: 1,
                        detail: json!({"chip_uid": "0a0b", "seen_before": true}),
                        facts: StepFacts {
                            chip_uid: Some("0a0b".to_string()),
                            seen_before: Some(true),
                            ..StepFacts::default()
                        },
                    },
                ),
                event(0, 2, finished(UnitResult::Pass, None, None)),
            ],
            SlotPhase::Passed,
            (2, 1, 1, Some(0.0)),
        );
    }

    #[test]
    fn a_slot_waiting_for_the_operator_keeps_showing_its_result() {
        let mut store = LineStore::default();
        let now = Instant::now();
        store.started(vec!["sim-0".into(), "sim-1".into()], now);
        store.slot_waiting(1);
        assert_eq!(store.slots[1].phase, SlotPhase::WaitingForStart);
        assert_eq!(store.first_slot_waiting(), Some(1));
        store.apply(&event(0, 1, EventKind::UnitStarted { probe: "sim-0".into() }), now);
        store.apply(&event(0, 1, finished(UnitResult::Pass, None, None)), now);
        store.slot_waiting(0);
        assert_eq!(store.slots[0].phase, SlotPhase::Passed);
        assert_eq!(store.first_slot_waiting(), Some(0));
        store.apply(&event(0, 2, EventKind::UnitStarted { probe: "sim-0".into() }), now);
        assert_eq!(store.first_slot_waiting(), Some(1));
    }

    #[test]
    fn progress_estimates_time_left_from_the_rate_seen() {
        let start = Instant::now();
        let progress = StepProgress {
            bytes_done: 300,
            bytes_total: 1000,
            first_report_at: start,
            first_report_bytes: 100,
            latest_report_at: start + Duration::from_secs(2),
        };
        // 200 bytes in 2 s; 700 left -> 7 s.
        assert_eq!(progress.time_left(), Some(Duration::from_secs(7)));
        assert!((progress.fraction() - 0.3).abs() < 1e-6);
        let first = StepProgress { latest_report_at: start, ..progress };
        assert_eq!(first.time_left(), None);
    }
}
