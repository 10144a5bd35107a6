//! The station's event stream: what happens to each unit, step by step.
//!
//! One stream feeds every view: the terminal progress bars and `--json` lines of `imprint run`,
//! the GUI, and (through the job's run record) the ledger. The JSON form is documented in
//! `docs/events.md`; its field names are stable and carry [`EVENT_SCHEMA_VERSION`].
//!
//! What front ends and fixture controllers act on is typed: the step as its [`StepName`]
//! (serialized by name) and, on `step-finished`, the [`StepFacts`] the step learned (chip UID,
//! seen before, serial, device ID). A step's `detail` object is for the record and for people;
//! nothing should have to fish in it by key.
//!
//! Unit events carry the slot and the unit's number on the line; slot events (`slot-error`)
//! carry only the slot; line events (`line-started`, `line-finished`, `line-refused`) carry
//! neither, so no consumer reads a line-level event as "slot 0, unit 0".
//!
//! [`EventQueue`] is the bounded queue between the slots and a front end that writes the events
//! somewhere that can stall (a `--json` reader): unit lifecycle events wait for room (the slots
//! are held back), progress events are dropped when the queue is full and counted, and the count
//! is reported on `line-finished`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use super::failure::FailureCategory;

pub use super::steps::StepName;

/// Version of the JSON event schema; bumped on any incompatible change. Adding fields is not
/// one (the typed step facts on `step-finished` were added within version 1). Version 2 left
/// `slot` and `unit` out of line-level events (version 1 sent `"slot": 0, "unit": 0`) and
/// `unit` out of `slot-error` (docs/events.md lists the changes).
pub const EVENT_SCHEMA_VERSION: u32 = 2;

/// How many events [`EventQueue`] holds before unit lifecycle events wait for room and
/// progress events are dropped: a few units' worth of events (a unit sends about 30 besides its
/// progress), well under a megabyte.
pub const EVENT_QUEUE_CAPACITY: usize = 256;

/// One thing that happened on the line.
#[derive(Debug, Clone, Serialize)]
pub struct StationEvent {
    /// Always [`EVENT_SCHEMA_VERSION`].
    pub schema: u32,
    /// Wall-clock time, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The slot (fixture/probe) index, from 0; `None` (left out of the JSON) for line-level
    /// events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<usize>,
    /// The unit's attempt number on this line, from 1; `None` (left out of the JSON) for slot-
    /// and line-level events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<u64>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of event. Serialized with an `event` tag in kebab-case.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// The line opened: the first event of a run, before any unit (boxed: it is much larger
    /// than the events that follow it).
    LineStarted(Box<LineStart>),
    /// The line was refused at start (bad profile, missing ledger, bad selector...): nothing
    /// was written to a device or the ledger. Sent by `imprint run --json` instead of every
    /// other event; the process exits 2.
    LineRefused {
        /// What was refused, for controllers to branch on (docs/events.md lists the codes).
        error_code: String,
        /// The whole message, as on standard error.
        reason: String,
    },
    /// A unit was detected on the slot and its provisioning began.
    UnitStarted {
        /// The probe or fixture name.
        probe: String,
    },
    /// A step began.
    StepStarted {
        /// The step.
        step: StepName,
    },
    /// Progress within a step.
    StepProgress {
        /// The step.
        step: StepName,
        /// Bytes done so far.
        bytes_done: u64,
        /// Bytes the step will move in all.
        bytes_total: u64,
    },
    /// A step finished successfully.
    StepFinished {
        /// The step.
        step: StepName,
        /// How long it took.
        duration_ms: u64,
        /// Step-specific facts: bytes written, hashes, fingerprints, identifiers.
        detail: serde_json::Value,
        /// What the step learned about the unit that front ends read, typed (fields absent
        /// when the step learned none of them).
        #[serde(flatten)]
        facts: StepFacts,
    },
    /// The profile skips this step.
    StepSkipped {
        /// The step.
        step: StepName,
        /// Why.
        reason: String,
    },
    /// A step failed; the unit fails with it.
    StepFailed {
        /// The step.
        step: StepName,
        /// How long it ran.
        duration_ms: u64,
        /// What went wrong.
        reason: String,
    },
    /// The unit is done. PASS is only sent after the ledger committed the record.
    UnitFinished {
        /// `pass`, `fail` or `aborted`.
        result: UnitResult,
        /// The chip's unique ID (hex), when it was read.
        chip_uid: Option<String>,
        /// The serial number, when one was allocated.
        serial: Option<String>,
        /// The device ID, when one was derived.
        device_id: Option<String>,
        /// The step that failed.
        failing_step: Option<String>,
        /// The failure's category (`contact`, `flash-verify`, `identity`, `config`, `self-test`,
        /// `lock`, `ledger`, `internal`), for fixture controllers to branch on; `None` on a pass.
        error_code: Option<FailureCategory>,
        /// Why it failed.
        reason: Option<String>,
        /// Time from unit start to the end of the record step.
        cycle_time_ms: u64,
        /// The ledger's record hash (hex), when the run was recorded.
        record_hash: Option<String>,
        /// Whether the unit was locked and the lock proven (`lock` and `verify-lock` passed):
        /// `false` on a pass whose profile skips the lock.
        locked: bool,
        /// The steps the profile skipped for this unit, in step order.
        skipped_steps: Vec<StepName>,
    },
    /// The slot could not get a unit (fixture or probe trouble); it will try again.
    SlotError {
        /// What went wrong.
        reason: String,
    },
    /// The line stopped.
    LineFinished {
        /// Units attempted.
        units: u64,
        /// Units that passed.
        passed: u64,
        /// Units that failed.
        failed: u64,
        /// Units ended by an abort while in flight (neither passed nor failed).
        aborted: u64,
        /// Wall time of the whole run.
        elapsed_ms: u64,
        /// `step-progress` events dropped because the reader fell behind (see [`EventQueue`]);
        /// no other kind of event is ever dropped.
        progress_events_dropped: u64,
    },
}

/// What a line runs, the fields of `line-started`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LineStart {
    /// The product profile.
    pub profile: LineProfile,
    /// This station's name, as recorded with every run.
    pub station: String,
    /// The operator ID, as recorded with every run.
    pub operator: String,
    /// The ledger database the runs are recorded in.
    pub ledger: String,
    /// The slots, in slot order.
    pub slots: Vec<LineSlot>,
    /// The version of Imprint running the line.
    pub imprint_version: String,
    /// Units the line will attempt in all; `None` runs until stopped.
    pub unit_limit: Option<u64>,
}

/// The profile a line runs, on `line-started`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LineProfile {
    /// The profile's `name`.
    pub name: String,
    /// The profile file as given.
    pub path: String,
    /// The profile file's SHA-256 (lowercase hex), as recorded with every run.
    pub sha256: String,
}

/// One slot of a line, on `line-started`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LineSlot {
    /// The slot index, as in every unit event's `slot`.
    pub index: usize,
    /// The fixture's name (`sim-0`, `qemu-1`, a probe's selector...).
    pub fixture: String,
}

/// What a step learned about the unit, as typed fields of its `step-finished` event:
/// `identify` sets `chip_uid` and `seen_before`, `allocate-identity` sets `serial` and
/// `device_id`. In JSON they sit beside `detail`, and a field the step did not learn is left
/// out.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StepFacts {
    /// The chip's unique ID (lowercase hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chip_uid: Option<String>,
    /// Whether the ledger knew the chip before this run (a rework).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_before: Option<bool>,
    /// The unit's serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The unit's device ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<uuid::Uuid>,
}

/// A unit's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitResult {
    /// Fully provisioned and recorded.
    Pass,
    /// Not provisioned; see the failing step.
    Fail,
    /// The line was aborted while the unit was in flight: it ended before `failing_step`, left as
    /// the recorded steps say. Neither a pass nor a failure of the board (not counted in yield).
    Aborted,
}

impl StationEvent {
    /// A unit's event, stamped with the current time.
    pub fn now(slot: usize, unit: u64, kind: EventKind) -> StationEvent {
        StationEvent::stamped(Some(slot), Some(unit), kind)
    }

    /// A slot's event that concerns no unit (`slot-error`), stamped with the current time.
    pub fn for_slot(slot: usize, kind: EventKind) -> StationEvent {
        StationEvent::stamped(Some(slot), None, kind)
    }

    /// A line-level event (`line-started`, `line-finished`, `line-refused`), stamped with the
    /// current time.
    pub fn for_line(kind: EventKind) -> StationEvent {
        StationEvent::stamped(None, None, kind)
    }

    fn stamped(slot: Option<usize>, unit: Option<u64>, kind: EventKind) -> StationEvent {
        StationEvent { schema: EVENT_SCHEMA_VERSION, time: format_time(SystemTime::now()), slot, unit, kind }
    }

    /// The event as one line of JSON.
    pub fn to_json_line(&self) -> String {
        // Serializing these plain structs cannot fail; fall back to an error object regardless.
        serde_json::to_string(self)
            .unwrap_or_else(|error| format!("{{\"schema\":{EVENT_SCHEMA_VERSION},\"error\":\"{error}\"}}"))
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub fn format_time(time: SystemTime) -> String {
    let date_time = time::OffsetDateTime::from(time);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    date_time.format(&format).unwrap_or_default()
}

/// Where events go. Implementations must not block for long: they are called from the
/// workers that drive probes.
pub trait EventSink: Send + Sync {
    /// Delivers one event.
    fn emit(&self, event: StationEvent);

    /// How many `step-progress` events this sink dropped so far (a bounded sink whose reader
    /// fell behind); reported on `line-finished`.
    fn progress_events_dropped(&self) -> u64 {
        0
    }
}

/// A bounded queue of events to one reader, with the station's policy for a reader that stalls:
/// unit lifecycle events (and every other kind but progress) are never dropped, so a slot waits
/// for room before it goes on (backpressure: the line slows to the reader's pace); `step-progress`
/// events are dropped when the queue is full, and counted. Memory stays bounded whatever the
/// reader does. A reader that is gone (the receiver dropped) loses the events, and the station
/// carries on.
pub struct EventQueue {
    sender: crossbeam_channel::Sender<StationEvent>,
    progress_events_dropped: AtomicU64,
}

impl EventQueue {
    /// A queue holding at most `capacity` events, and its receiving end.
    pub fn bounded(capacity: usize) -> (EventQueue, crossbeam_channel::Receiver<StationEvent>) {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        (EventQueue { sender, progress_events_dropped: AtomicU64::new(0) }, receiver)
    }
}

impl EventSink for EventQueue {
    fn emit(&self, event: StationEvent) {
        if matches!(event.kind, EventKind::StepProgress { .. }) {
            if let Err(crossbeam_channel::TrySendError::Full(_)) = self.sender.try_send(event) {
                self.progress_events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            // Waits for room; an error only means the reader is gone.
            let _ = self.sender.send(event);
        }
    }

    fn progress_events_dropped(&self) -> u64 {
        self.progress_events_dropped.load(Ordering::Relaxed)
    }
}

impl EventSink for crossbeam_channel::Sender<StationEvent> {
    fn emit(&self, event: StationEvent) {
        // A closed receiver means nobody is watching any more; the station carries on.
        let _ = self.send(event);
    }
}

/// Discards events (for benchmarks and tests that only look at outcomes).
pub struct DiscardEvents;

impl EventSink for DiscardEvents {
    fn emit(&self, _event: StationEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> StationEvent {
        StationEvent::now(
            0,
            1,
            EventKind::StepProgress { step: StepName::Erase, bytes_done: 1, bytes_total: 2 },
        )
    }

    #[test]
    fn a_full_queue_drops_progress_only_and_counts_it() {
        let (queue, receiver) = EventQueue::bounded(2);
        queue.emit(progress());
        queue.emit(StationEvent::now(0, 1, EventKind::StepStarted { step: StepName::Erase }));
        queue.emit(progress());
        queue.emit(progress());
        assert_eq!(queue.progress_events_dropped(), 2);
        // A lifecycle event waits for room: it arrives once the reader takes one.
        let queue = std::sync::Arc::new(queue);
        let sender = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                queue.emit(StationEvent::for_line(EventKind::SlotError { reason: "x".into() }))
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!sender.is_finished(), "a lifecycle event must wait for room, not be dropped");
        assert!(matches!(receiver.recv().map(|event| event.kind), Ok(EventKind::StepProgress { .. })));
        sender.join().expect("sender");
        let kinds: Vec<EventKind> = receiver.try_iter().map(|event| event.kind).collect();
        assert!(
            matches!(kinds.as_slice(), [EventKind::StepStarted { .. }, EventKind::SlotError { .. }]),
            "{kinds:?}"
        );
    }

    #[test]
    fn line_events_carry_no_slot_or_unit() {
        let line = StationEvent::for_line(EventKind::LineRefused {
            error_code: "ledger".into(),
            reason: "r".into(),
        });
        let json: serde_json::Value = serde_json::from_str(&line.to_json_line()).expect("json");
        assert!(json.get("slot").is_none() && json.get("unit").is_none(), "{json}");
        assert_eq!(json["schema"], EVENT_SCHEMA_VERSION);
        let slot = StationEvent::for_slot(3, EventKind::SlotError { reason: "r".into() });
        let json: serde_json::Value = serde_json::from_str(&slot.to_json_line()).expect("json");
        assert_eq!(json["slot"], 3);
        assert!(json.get("unit").is_none(), "{json}");
    }
}
