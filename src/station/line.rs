//! A line: several slots (fixtures/probes) provisioning at once, one worker thread per slot.
//!
//! Slots share nothing but the [`StationContext`] (profile, self-test material, ledger, event
//! sink) and a unit budget; one slot's failure never stops another. The line ends when the
//! budget is used up, or when stopped (each slot finishes its unit in flight and starts no other)
//! or aborted (each slot ends its unit in flight after the current step, recorded ABORTED).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::events::{EventKind, StationEvent, UnitResult};
use super::failure::FailureCategory;
use super::job::{StationContext, UnitOutcome, provision_unit};
use crate::device::Fixture;
use crate::ledger::SerialScheme;

/// How long a slot waits before asking a failing fixture for a unit again.
const FIXTURE_RETRY_DELAY: Duration = Duration::from_millis(500);
/// How long a fixture may keep failing (every attempt an error, no unit) before its slot stops
/// with a fault: long enough for a probe that re-enumerates on USB or a GDB server restarted by
/// hand, short enough that a `--count` run with a dead fixture ends (and fails) instead of
/// waiting forever. The same rule for every backend.
pub const FIXTURE_GIVE_UP_AFTER: Duration = Duration::from_secs(20);

/// What a whole line run did.
#[derive(Debug, Clone, Default)]
pub struct LineSummary {
    /// Every unit's outcome, in completion order.
    pub outcomes: Vec<UnitOutcome>,
    /// Wall time from start to the last slot stopping.
    pub elapsed: Duration,
    /// Units the line was asked for (`None`: until stopped).
    pub units_requested: Option<u64>,
    /// Slots that stopped on a station fault (a panic), each with what it said: a failed run,
    /// whatever the units it finished did.
    pub slot_faults: Vec<String>,
}

impl LineSummary {
    /// Units that passed.
    pub fn passed(&self) -> u64 {
        self.outcomes.iter().filter(|outcome| outcome.result == UnitResult::Pass).count() as u64
    }

    /// Units that failed.
    pub fn failed(&self) -> u64 {
        self.outcomes.iter().filter(|outcome| outcome.result == UnitResult::Fail).count() as u64
    }

    /// Units ended by an abort while in flight.
    pub fn aborted(&self) -> u64 {
        self.outcomes.iter().filter(|outcome| outcome.result == UnitResult::Aborted).count() as u64
    }

    /// Whether the run may report success: every unit it attempted passed, no slot stopped on a
    /// station fault, and as many units as were requested were attempted.
    pub fn all_requested_passed(&self) -> bool {
        let attempted = self.outcomes.len() as u64;
        self.failed() == 0
            && self.aborted() == 0
            && self.slot_faults.is_empty()
            && self.units_requested.is_none_or(|requested| attempted == requested)
    }

    /// Units per hour over the run's wall time.
    pub fn units_per_hour(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 { self.outcomes.len() as f64 * 3600.0 / seconds } else { 0.0 }
    }
}

/// Runs `fixtures` (one slot each) until `unit_limit` units have been attempted in all (or
/// forever, when `None`, until cancelled).
pub fn run_line(
    context: Arc<StationContext>,
    fixtures: Vec<Box<dyn Fixture>>,
    unit_limit: Option<u64>,
) -> LineSummary {
    let started = Instant::now();
    let units_claimed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = fixtures
        .into_iter()
        .enumerate()
        .map(|(slot, fixture)| {
            let context = context.clone();
            let units_claimed = units_claimed.clone();
            std::thread::Builder::new()
                .name(format!("slot-{slot}"))
                .spawn(move || run_slot(&context, slot, fixture, &units_claimed, unit_limit))
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut slot_faults = Vec::new();
    for worker in workers {
        match worker.map(|handle| handle.join()) {
            Ok(Ok((slot_outcomes, fault))) => {
                outcomes.extend(slot_outcomes);
                slot_faults.extend(fault);
            }
            Ok(Err(payload)) => {
                let fault = format!("a slot worker panicked: {}", panic_text(payload.as_ref()));
                tracing::error!(%fault, "the other slots were not affected");
                slot_faults.push(fault);
            }
            Err(error) => {
                tracing::error!(%error, "could not start a slot worker thread");
                slot_faults.push(format!("could not start a slot worker thread: {error}"));
            }
        }
    }
    let summary =
        LineSummary { outcomes, elapsed: started.elapsed(), units_requested: unit_limit, slot_faults };
    context.events.emit(StationEvent::for_line(EventKind::LineFinished {
        units: summary.outcomes.len() as u64,
        passed: summary.passed(),
        failed: summary.failed(),
        aborted: summary.aborted(),
        elapsed_ms: summary.elapsed.as_millis() as u64,
        progress_events_dropped: context.events.progress_events_dropped(),
    }));
    summary
}

fn run_slot(
    context: &StationContext,
    slot: usize,
    mut fixture: Box<dyn Fixture>,
    units_claimed: &AtomicU64,
    unit_limit: Option<u64>,
) -> (Vec<UnitOutcome>, Option<String>) {
    let _span = tracing::info_span!("slot", slot, fixture = %fixture.name()).entered();
    let mut outcomes = Vec::new();
    loop {
        if context.cancel.is_stopping() {
            break;
        }
        // Claim a unit from the budget before waiting for one, so the line never over-runs.
        let unit = units_claimed.fetch_add(1, Ordering::SeqCst) + 1;
        if unit_limit.is_some_and(|limit| unit > limit) {
            break;
        }
        let keep_waiting = || !context.cancel.is_stopping();
        let mut failing_since: Option<Instant> = None;
        let mut target = loop {
            match fixture.next_unit(&keep_waiting) {
                Ok(Some(target)) => break Some(target),
                Ok(None) => break None,
                Err(error) => {
                    context.events.emit(StationEvent::for_slot(
                        slot,
                        EventKind::SlotError { reason: error.to_string() },
                    ));
                    if context.cancel.is_stopping() {
                        break None;
                    }
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= FIXTURE_GIVE_UP_AFTER {
                        let fault = format!(
                            "slot {slot} stopped: its fixture {} failed for {} s without presenting a unit (last error: {error})",
                            fixture.name(),
                            FIXTURE_GIVE_UP_AFTER.as_secs()
                        );
                        tracing::error!(%fault, "slot stopped");
                        context.events.emit(StationEvent::for_slot(
                            slot,
                            EventKind::SlotError { reason: fault.clone() },
                        ));
                        return (outcomes, Some(fault));
                    }
                    std::thread::sleep(FIXTURE_RETRY_DELAY);
                }
            }
        };
        let Some(target) = target.as_deref_mut() else {
            break;
        };
        // A profile whose serials are scanned from the units' labels: the unit starts once its
        // scan is in (a source that ended ends the slot, the unit untouched).
        if matches!(context.profile.serial_scheme, SerialScheme::Scanned)
            && !context.labels.reserve_serial(slot, &keep_waiting)
        {
            break;
        }
        let _unit_span = tracing::info_span!("unit", unit).entered();
        let started = Instant::now();
        match std::panic::catch_unwind(AssertUnwindSafe(|| provision_unit(context, target, slot, unit))) {
            Ok(outcome) => outcomes.push(outcome),
            Err(payload) => {
                // A defect in the station, not in the board: the unit is a failure (never a
                // silent gap), and the slot stops, since its fixture's state is now unknown.
                let fault = format!("station fault on slot {slot}: {}", panic_text(payload.as_ref()));
                tracing::error!(%fault, "slot stopped");
                let outcome = UnitOutcome {
                    result: UnitResult::Fail,
                    chip_uid: None,
                    serial: None,
                    device_id: None,
                    failing_step: None,
                    reason: Some(fault.clone()),
                    cycle_time: started.elapsed(),
                };
                context.events.emit(StationEvent::now(
                    slot,
                    unit,
                    EventKind::UnitFinished {
                        result: UnitResult::Fail,
                        chip_uid: None,
                        serial: None,
                        device_id: None,
                        failing_step: None,
                        error_code: Some(FailureCategory::Internal),
                        reason: Some(fault.clone()),
                        cycle_time_ms: outcome.cycle_time.as_millis() as u64,
                        record_hash: None,
                        locked: false,
                        skipped_steps: Vec::new(),
                    },
                ));
                outcomes.push(outcome);
                return (outcomes, Some(fault));
            }
        }
    }
    (outcomes, None)
}

/// The message a panic carried (`panic!("...")` gives a `&str` or a `String`).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}
