//! The station: units through the pipeline, slots side by side, and the events they emit.
//!
//! - [`job`]: one unit through the steps (connect ... record), with retries and verification.
//! - [`line`]: many slots at once, one worker thread each.
//! - [`labels`]: serials scanned from unit labels and the work order, fed to the line.
//! - [`sectors`]: skip-unchanged flashing, decided sector by sector.
//! - [`self_test`]: the signed and forged candidates a line stages.
//! - [`session`]: one line session both front ends drive: plan in, slots by one rule,
//!   fixtures through [`crate::device::factory`], one report out; the simulator-fault grammar.
//! - [`events`]: the event stream every front end and the ledger are fed from.
//!
//! **Invariant:** station code drives devices only through [`crate::device::Target`] and never
//! knows which backend it has; it reaches SQLite only through [`crate::ledger`].

pub mod events;
pub mod job;
pub mod labels;
pub mod line;
pub mod sectors;
pub mod self_test;
pub mod session;

pub use events::{DiscardEvents, EventKind, EventSink, StationEvent, UnitResult};
pub use job::{CancelToken, StationContext, StepName, UnitOutcome, provision_unit};
pub use labels::{SerialWait, UnitLabels};
pub use line::{LineSummary, run_line};
pub use self_test::SelfTestMaterial;
pub use session::{LinePlan, LineReport, LineSession, SessionError};
