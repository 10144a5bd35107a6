//! The values the station hands to the ledger and gets back: identity requests, run records,
//! receipts. Plain data with no database types, so station code never sees SQLite.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What the station asks for when it needs an identity for the chip on the fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRequest {
    /// The chip's unique ID as hex (any case; stored lowercase).
    pub chip_uid_hex: String,
    /// The product profile the unit is provisioned with.
    pub profile_name: String,
    /// The device ID to issue for a new identity (often derived from the chip UID, UUIDv5).
    pub device_id: uuid::Uuid,
    /// How the serial number is made.
    pub serial_scheme: SerialScheme,
    /// The serial read from a label, required by [`SerialScheme::Scanned`] and refused otherwise.
    pub scanned_serial: Option<String>,
    /// What to do when the chip already has an identity.
    pub rework_policy: ReworkPolicy,
}

pub use crate::identity::serial::{ReworkPolicy, SerialScheme};

/// A unit's current identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitIdentity {
    /// Lowercase hex.
    pub chip_uid_hex: String,
    pub serial: String,
    pub device_id: uuid::Uuid,
    pub profile_name: String,
}

/// The outcome of [`crate::ledger::Ledger::allocate_identity`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedIdentity {
    pub identity: UnitIdentity,
    /// The chip had an identity before this allocation (whatever the policy did with it).
    pub is_rework: bool,
    /// The serial that was retired into the history (policy `issue-new` only).
    pub retired_serial: Option<String>,
}

/// Everything the station knows about one unit's pass through the steps.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub station: String,
    pub operator: String,
    /// The probe or backend that drove the unit (e.g. `sim:3`, a probe serial number).
    pub probe: String,
    pub profile_name: String,
    /// SHA-256 of the profile, 64 hex digits.
    pub profile_sha256: String,
    /// `(image name, SHA-256 hex)` of every image flashed, in profile order.
    pub image_sha256s: Vec<(String, String)>,
    /// `None` when the run failed before the chip was identified.
    pub chip_uid_hex: Option<String>,
    /// `None` when the run failed before an identity was allocated.
    pub serial: Option<String>,
    pub device_id: Option<uuid::Uuid>,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
    pub result: RunResult,
    /// An empty string is recorded as `None` (the CSV export could not tell them apart).
    pub failing_step: Option<String>,
    /// An empty string is recorded as `None`.
    pub reason: Option<String>,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Pass,
    Fail,
    /// The line was aborted while the unit was in flight (schema version 4).
    Aborted,
}

impl RunResult {
    /// The text stored in the ledger and its exports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Pass => "pass",
            RunResult::Fail => "fail",
            RunResult::Aborted => "aborted",
        }
    }
}

/// One step of a run, as the station saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub started_at: SystemTime,
    pub duration_ms: u64,
    /// Free-form step detail (byte counts, addresses, reason codes). Recorded in canonical form:
    /// see docs/ledger.md. Integers are kept exactly; fractions as the shortest decimal.
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Passed,
    Failed,
    Skipped,
}

impl StepStatus {
    /// The text stored in the ledger and its exports.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Passed => "passed",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// Proof that a run was committed: returned only after the transaction is durable on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReceipt {
    /// Row id in this database (local; not part of the hash).
    pub run_id: i64,
    /// Position in this station's chain, starting at 1, gap-free.
    pub station_sequence: u64,
    /// The run's link in the hash chain (see docs/ledger.md).
    pub record_hash: [u8; 32],
}
