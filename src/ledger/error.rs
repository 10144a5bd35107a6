//! Errors of the ledger: one enum, with the path, serial or chip UID each failure concerns.

use std::path::PathBuf;

/// Everything that can go wrong in the ledger. Messages are lowercase and say what was expected
/// and what was found.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "cannot create directory {path} for the ledger: {source} (choose a writable place with --db PATH or IMPRINT_LEDGER)"
    )]
    CreateDirectory { path: PathBuf, source: std::io::Error },

    #[error(
        "no ledger at {path}; a station only creates a ledger when asked: `imprint log init --db {path}`, or --create-ledger"
    )]
    Missing { path: PathBuf },

    #[error(
        "{path} holds no ledger yet (an empty file or database); a station only creates a ledger when asked: `imprint log init --db {path}`, or --create-ledger"
    )]
    EmptyFile { path: PathBuf },

    #[error("{path} is not an imprint ledger ({found}); refusing to use it (nothing was written to it)")]
    NotALedger { path: PathBuf, found: String },

    #[error(
        "ledger {path} cannot be written: {source} (check the file's and its directory's permissions, the mount, free space)"
    )]
    NotWritable { path: PathBuf, source: rusqlite::Error },

    #[error("cannot write the backup: {message}")]
    BackupTarget { message: String },

    #[error("cannot back up ledger {path} to {destination}: {source}")]
    Backup { path: PathBuf, destination: PathBuf, source: rusqlite::Error },

    #[error("cannot open ledger {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },

    #[error(
        "ledger {path} has schema version {found}; this imprint knows versions up to {supported} (use a newer imprint)"
    )]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },

    #[error(
        "ledger {path} has schema version {found}, expected {expected}; open it read-write once (e.g. from a station) to migrate it"
    )]
    SchemaOutdated { path: PathBuf, found: i64, expected: i64 },

    #[error("migrating ledger {path} to schema version {version} failed: {source}")]
    Migration { path: PathBuf, version: i64, source: rusqlite::Error },

    #[error("ledger {path}: {operation} failed: {source}")]
    Database { path: PathBuf, operation: &'static str, source: rusqlite::Error },

    #[error("ledger {path} was opened read-only; {operation} needs a read-write ledger")]
    ReadOnly { path: PathBuf, operation: &'static str },

    #[error("ledger {path} holds a value it cannot have written: {what}")]
    Corrupt { path: PathBuf, what: String },

    #[error("rework refused by policy: chip {chip_uid} already has serial {serial}")]
    ReworkRefused { chip_uid: String, serial: String },

    #[error(
        "chip {chip_uid} has serial {serial} issued under profile {issued_profile:?}, not {requested_profile:?}; moving a unit to another profile needs rework policy issue-new"
    )]
    ReworkProfileChanged {
        chip_uid: String,
        serial: String,
        issued_profile: String,
        requested_profile: String,
    },

    /// `reason` says which limit: the counter's digits, or the largest value a ledger stores.
    #[error("serial counter {prefix:?} is exhausted: value {value} {reason}")]
    SerialCounterExhausted { prefix: String, counter_width: u32, value: u64, reason: String },

    /// A serial or serial scheme outside what `crate::identity::serial` accepts.
    #[error("serial_scheme.{0}")]
    InvalidSerialScheme(crate::identity::SerialSchemeError),

    #[error("serial {serial} was already issued (to chip {chip_uid}); a serial is never issued twice")]
    SerialAlreadyIssued { serial: String, chip_uid: String },

    #[error(
        "no serial number left for prefix {prefix:?} in the blocks leased from the central database; a new block must be leased first (is the central database reachable?) — a station never issues a serial outside its leased blocks"
    )]
    SerialBlocksExhausted { prefix: String },

    #[error(
        "serial block {central_block_id} for prefix {prefix:?} is already recorded as {recorded_first}..={recorded_last}, not {first_value}..={last_value}"
    )]
    SerialBlockConflict {
        central_block_id: i64,
        prefix: String,
        first_value: u64,
        last_value: u64,
        recorded_first: u64,
        recorded_last: u64,
    },

    #[error("scanned serial {scanned} does not match serial {serial} already issued to chip {chip_uid}")]
    ScannedSerialMismatch { chip_uid: String, serial: String, scanned: String },

    #[error("device id {device_id} already belongs to chip {chip_uid} (serial {serial})")]
    DeviceIdTaken { device_id: uuid::Uuid, chip_uid: String, serial: String },

    #[error("invalid {field}: expected {expected}, found {found:?}")]
    InvalidField { field: String, expected: &'static str, found: String },

    #[error("cannot write the export: {source}")]
    ExportWrite { source: std::io::Error },

    #[error("cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },

    #[error("{path} is not an imprint ledger export: {reason}")]
    NotAnExport { path: PathBuf, reason: String },
}

impl LedgerError {
    /// Shorthand for [`LedgerError::InvalidField`].
    pub(crate) fn invalid(
        field: impl Into<String>,
        expected: &'static str,
        found: impl Into<String>,
    ) -> LedgerError {
        LedgerError::InvalidField { field: field.into(), expected, found: found.into() }
    }
}
