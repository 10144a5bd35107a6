//! The station: units through the pipeline, slots side by side, and the events they emit.
//!
//! - [`steps`]: the pipeline's steps as data ([`StepName`]), shared by the job and the events.
//! - [`job`]: one unit through the steps (connect ... record), with retries and verification;
//!   one file per step family under `job/`.
//! - [`line`]: many slots at once, one worker thread each.
//! - [`labels`]: serials scanned from unit labels and the work order, fed to the line.
//! - [`sectors`]: skip-unchanged flashing, decided sector by sector.
//! - [`self_test`]: the signed and forged candidates a line stages.
//! - [`session`]: one line session both front ends drive: plan in, slots by one rule,
//!   fixtures through [`crate::device::factory`], one report out; the simulator-fault grammar.
//! - [`events`]: the event stream every front end and the ledger are fed from.
//! - [`failure`]: what a failure means on the floor: an `error_code` and an operator instruction.
//!
//! **Invariant:** station code drives devices only through [`crate::device::Target`] and never
//! knows which backend it has; it reaches SQLite only through [`crate::ledger`].

pub mod events;
pub mod failure;
pub mod job;
pub mod labels;
pub mod line;
pub mod sectors;
pub mod self_test;
pub mod session;
pub mod steps;

pub use events::{
    DiscardEvents, EVENT_QUEUE_CAPACITY, EVENT_SCHEMA_VERSION, EventKind, EventQueue, EventSink, LineProfile,
    LineSlot, LineStart, StationEvent, StepFacts, UnitResult,
};
pub use failure::{FailureCategory, OperatorAction};
pub use job::{CancelToken, StationContext, UnitOutcome, provision_unit};
pub use labels::{SerialWait, UnitLabels};
pub use line::{LineSummary, run_line};
pub use self_test::SelfTestMaterial;
pub use session::{LinePlan, LineReport, LineSession, SessionError};
pub use steps::StepName;
