//! The station: units through the pipeline, slots side by side, and the events they emit.
//!
//! - [`steps`]: the pipeline's steps as data ([`StepName`]), shared by the job and the events.
//! - [`job`]: one unit through the steps (connect ... record), with retries and verification;
//!   one file per step family under `job/`.
//! - [`line`]: many slots at once, one worker thread each.
//! - [`labels`]: serials scanned from unit labels and the work order, fed to the line.
//! - [`sectors`]: skip-unchanged flashing, decided sector by sector.
//! - [`self_test`]: the signed and forged candidates a line stages.
//! - [`fixtures`]: which backends the slots use (`--probe`, `--sim`), opened in one place.
//! - [`events`]: the event stream every front end and the ledger are fed from.
//! - [`failure`]: what a failure means on the floor: an `error_code` and an operator instruction.
//!
//! **Invariant:** station code drives devices only through [`crate::device::Target`] and never
//! knows which backend it has; it reaches SQLite only through [`crate::ledger`].

pub mod events;
pub mod failure;
pub mod fixtures;
pub mod job;
pub mod labels;
pub mod line;
pub mod sectors;
pub mod self_test;
pub mod steps;

pub use events::{DiscardEvents, EventKind, EventSink, StationEvent, StepFacts, UnitResult};
pub use failure::{FailureCategory, OperatorAction};
pub use job::{CancelToken, StationContext, UnitOutcome, provision_unit};
pub use labels::{SerialWait, UnitLabels};
pub use line::{LineSummary, run_line};
pub use self_test::SelfTestMaterial;
pub use steps::StepName;
