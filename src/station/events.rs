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

use std::time::SystemTime;

use serde::Serialize;

use super::failure::FailureCategory;

pub use super::steps::StepName;

/// Version of the JSON event schema; bumped on any incompatible change. Adding fields is not
/// one (the typed step facts on `step-finished` were added within version 1).
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// One thing that happened on the line.
#[derive(Debug, Clone, Serialize)]
pub struct StationEvent {
    /// Always [`EVENT_SCHEMA_VERSION`].
    pub schema: u32,
    /// Wall-clock time, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The slot (fixture/probe) index, from 0.
    pub slot: usize,
    /// The unit's attempt number on this line, from 1 (0 for slot- and line-level events).
    pub unit: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of event. Serialized with an `event` tag in kebab-case.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
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
    },
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
    /// An event stamped with the current time.
    pub fn now(slot: usize, unit: u64, kind: EventKind) -> StationEvent {
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
