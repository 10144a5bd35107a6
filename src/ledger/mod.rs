//! The audit ledger: one SQLite file per station holding every unit's identity and every run,
//! each run linked into a per-station SHA-256 hash chain so that edits, deletions and
//! truncations are evident (docs/ledger.md documents the schema and the hash encoding).
//!
//! It exists so that "this unit passed" is a durable, checkable fact: the station shows PASS
//! only after [`Ledger::record_run`] returned, and an auditor can re-check the chain from an
//! export without Imprint.
//!
//! # Threads and processes
//!
//! [`Ledger`] is `Clone + Send + Sync`; clones share one write connection behind a mutex (SQLite
//! has one writer at a time anyway) and a small pool of read-only connections. The file is in
//! WAL mode, so readers (exports, the GUI, `imprint log ...` in another process) never block
//! the writer and never see a half-written transaction. Write transactions start with
//! `BEGIN IMMEDIATE`, taking the file's write lock up front, so two processes on one file queue
//! (up to [`schema::BUSY_TIMEOUT`]) instead of failing half-way.
//!
//! # Transaction boundaries
//!
//! - [`Ledger::open_with`] (and [`Ledger::open_existing`], [`Ledger::create`]): the file is
//!   inspected read-only first (another application's database, a newer schema: refused
//!   untouched); then each schema migration step is one transaction together with its
//!   `user_version` bump.
//! - [`Ledger::allocate_identity`]: one transaction holding the rework check, the serial counter
//!   increment, the unit row insert or update and the identity-history row. Either all of it is
//!   committed or none: a failed allocation consumes no serial and leaves no unit, and a serial
//!   is never issued twice, even across crashes, because the counter and the unit row commit
//!   together.
//! - [`Ledger::record_run`]: one transaction holding the run row, its steps, the chain link
//!   (`prev_hash`, `record_hash`, next station sequence) and the station's new chain head. It
//!   returns only after the commit is durable (`synchronous = FULL`).
//! - [`Ledger::record_runs`]: the same for many runs in one transaction (bulk import, benchmarks).
//! - [`Ledger::record_serial_block`] (a block leased from the central database) and
//!   [`Ledger::mark_runs_shipped`] (the outbox acknowledgement): one short transaction each;
//!   see `outbox.rs` and docs/central.md.
//! - Readers ([`Ledger::export`], [`Ledger::verify`], [`Ledger::unit_history`], [`Ledger::stats`])
//!   each run in one read transaction: a consistent snapshot while the station keeps writing.
//!
//! **Invariant:** this is the only module that imports `rusqlite`.

mod backup;
mod canonical;
mod error;
mod export;
mod model;
mod outbox;
mod problem_text;
mod query;
mod schema;
mod strict_json;
mod verify;
mod verify_file;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, TransactionBehavior};

use crate::output::ExistingFile;

pub use canonical::{
    ALLOCATE_IDENTITY_STEP, DerivedFieldMismatch, GENESIS_HASH, ISSUE_IDENTITY_STEP, RUN_ENCODING,
    RecordedImage, RecordedRun, RecordedStep, canonical_json, chain_hash, ecmascript_number,
    format_timestamp, parse_hash_hex, parse_time_bound,
};
pub use error::LedgerError;
pub use export::{
    CSV_COLUMNS, CSV_COLUMNS_V1, CSV_COLUMNS_V2, CertificateBundleSummary, CertificateSelection, ChainHead,
    EXPORT_FORMAT_VERSION, ExportFilter, ExportFormat, ExportHeader, ExportSummary, ExportTrailer,
    OLDEST_READABLE_EXPORT_FORMAT_VERSION, write_certificate_bundle, write_export,
};
pub use model::{
    AllocatedIdentity, IdentityRequest, ReworkPolicy, RunReceipt, RunRecord, RunResult, SerialScheme,
    StepRecord, StepStatus, UnitIdentity,
};
pub use outbox::{LeasedSerialBlock, SerialBlock};
pub use query::{FailingStepCount, LedgerStats, RetiredIdentity, StepStats, UnitHistory, UnitRow};
pub use schema::{APPLICATION_ID, BUSY_TIMEOUT, current_version as schema_version};
pub use verify::{ChainProblem, ChainVerifier, HeadMatch, ProblemKind, VerifyOptions, VerifyReport};
pub use verify_file::verify_export_file;
pub use write::{ReworkAction, check_name_text, check_serial_text, decide_rework};

// The station hands clones of one `Ledger` to a worker thread per slot.
const _: () = {
    const fn assert_shareable<T: Clone + Send + Sync>() {}
    assert_shareable::<Ledger>();
};

/// How many idle read-only connections a ledger keeps for reuse.
const IDLE_READERS_MAX: usize = 4;

/// A handle on one ledger file. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// `None` for a ledger opened with [`Ledger::open_read_only`].
    writer: Option<Mutex<Connection>>,
    idle_readers: Mutex<Vec<Connection>>,
    /// Set by [`Ledger::require_leased_serial_blocks`]: counter serials come only from blocks
    /// leased from the central database (see `outbox.rs`).
    leased_blocks_required: AtomicBool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Ledger")
            .field("path", &self.shared.path)
            .field("read_only", &self.shared.writer.is_none())
            .finish()
    }
}

/// How a read-write open treats a missing file (see [`Ledger::open_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The ledger must exist: a missing file is [`LedgerError::Missing`], and nothing (no file,
    /// no directory) is created. What a station does unless told to create its ledger.
    Existing,
    /// Create the ledger (and its directory) when missing; open it when it exists. Idempotent:
    /// `imprint log init` and `--create-ledger`.
    CreateIfMissing,
}

/// The environment variable naming the station's ledger when no `--db` is given.
pub const LEDGER_ENVIRONMENT_VARIABLE: &str = "IMPRINT_LEDGER";

/// The station-wide default ledger, shared by every account of the station.
pub const STATION_DEFAULT_LEDGER: &str = "/var/lib/imprint/ledger.db";

/// The files SQLite keeps for a ledger at `path`: the database and its `-wal`, `-shm` and
/// `-journal` companions. No command may write its output over any of them.
pub fn ledger_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_owned()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

impl Ledger {
    /// Opens the ledger read-write, creating it when missing: the same as
    /// [`Ledger::create`]. A station should choose explicitly with [`Ledger::open_existing`]
    /// or [`Ledger::create`] (a mistyped path must not start a new ledger).
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, OpenMode::CreateIfMissing)
    }

    /// Opens an existing ledger read-write; refuses a missing one without creating anything.
    pub fn open_existing(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, OpenMode::Existing)
    }

    /// Creates the ledger (and its directory) when missing, or opens the existing one.
    pub fn create(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, OpenMode::CreateIfMissing)
    }

    /// Opens the ledger read-write. Before anything is written the file is inspected
    /// read-only: another application's database or a ledger of a newer schema is refused
    /// untouched. Then the schema is migrated and [`Ledger::check_writable`] proves the file
    /// can take a write, so a read-only ledger is found out here, not at the first unit.
    pub fn open_with(path: &Path, mode: OpenMode) -> Result<Ledger, LedgerError> {
        let may_create = mode == OpenMode::CreateIfMissing;
        if !may_create && !path.exists() {
            return Err(LedgerError::Missing { path: path.to_owned() });
        }
        let content = schema::inspect(path)?;
        // A 0-byte file (`touch ledger.db`, a truncated copy) is no ledger yet: made one only
        // when asked, like a missing file.
        if !may_create && matches!(content, schema::FileContent::Empty) {
            return Err(LedgerError::EmptyFile { path: path.to_owned() });
        }
        if may_create && let Some(directory) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(directory)
                .map_err(|source| LedgerError::CreateDirectory { path: directory.to_owned(), source })?;
        }
        let writer = schema::open_writer(path, may_create)?;
        let ledger = Ledger {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                writer: Some(Mutex::new(writer)),
                idle_readers: Mutex::new(Vec::new()),
                leased_blocks_required: AtomicBool::new(false),
            }),
        };
        ledger.check_writable()?;
        Ok(ledger)
    }

    /// Opens an existing ledger for reading only (exports, verification, queries): never
    /// creates, migrates or writes the file. Write methods return [`LedgerError::ReadOnly`].
    pub fn open_read_only(path: &Path) -> Result<Ledger, LedgerError> {
        // Open one reader now so that a missing file or wrong schema is reported here.
        let reader = schema::open_reader(path)?;
        Ok(Ledger {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                writer: None,
                idle_readers: Mutex::new(vec![reader]),
                leased_blocks_required: AtomicBool::new(false),
            }),
        })
    }

    /// `$IMPRINT_LEDGER` when set, else the station-wide [`STATION_DEFAULT_LEDGER`]
    /// (`/var/lib/imprint/ledger.db`): one ledger for every account of the station, so a GUI
    /// run by one account and a script run by another never issue the same serials.
    pub fn default_path() -> Result<PathBuf, LedgerError> {
        match std::env::var_os(LEDGER_ENVIRONMENT_VARIABLE) {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Ok(PathBuf::from(STATION_DEFAULT_LEDGER)),
        }
    }

    /// Proves the ledger can take a write now: `BEGIN IMMEDIATE`, rewrite the schema version
    /// with its own value, roll back. Fails with [`LedgerError::NotWritable`] for a read-only
    /// file, directory or mount, or a ledger opened with [`Ledger::open_read_only`].
    pub fn check_writable(&self) -> Result<(), LedgerError> {
        let path = self.path();
        let writer = self.shared.writer.as_ref().ok_or_else(|| LedgerError::ReadOnly {
            path: path.to_owned(),
            operation: "checking it is writable",
        })?;
        let mut connection = lock(writer);
        let not_writable = |source| LedgerError::NotWritable { path: path.to_owned(), source };
        let transaction =
            connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(not_writable)?;
        transaction.pragma_update(None, "user_version", schema::current_version()).map_err(not_writable)?;
        // Dropping the transaction rolls the rewrite back.
        transaction.rollback().map_err(not_writable)?;
        Ok(())
    }

    /// Copies everything committed in the write-ahead log into the database file and empties
    /// the log (`PRAGMA wal_checkpoint(TRUNCATE)`), so that a copy of the database file alone
    /// is complete. A station calls it when a line ends; dropping the last handle does too.
    /// Returns false when a reader kept the log from being emptied entirely.
    pub fn checkpoint(&self) -> Result<bool, LedgerError> {
        let path = self.path();
        let writer = self
            .shared
            .writer
            .as_ref()
            .ok_or_else(|| LedgerError::ReadOnly { path: path.to_owned(), operation: "checkpointing" })?;
        checkpoint_connection(&lock(writer), path)
    }

    /// Writes a consistent copy of the ledger to `destination` through SQLite's online backup
    /// API, while stations may keep writing: the copy holds every run committed when the copy
    /// finished, as one self-contained file (no `-wal`). An existing `destination` is replaced
    /// only once the copy is complete.
    pub fn backup_to(&self, destination: &Path, existing: ExistingFile) -> Result<(), LedgerError> {
        self.read(|connection, path| backup::copy(connection, path, destination, existing))
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The current identity of a chip, if it has one.
    pub fn lookup_chip(&self, chip_uid_hex: &str) -> Result<Option<UnitIdentity>, LedgerError> {
        let chip_uid = write::normalize_chip_uid("chip_uid_hex", chip_uid_hex)?;
        self.read(|connection, path| query::lookup_chip(connection, path, &chip_uid))
    }

    /// Gives the chip on the fixture its identity, in one transaction (see the module docs):
    /// rework check by policy, next serial from the counter (or the scanned one), unit row,
    /// and for [`ReworkPolicy::IssueNew`] the retired identity in `identity_history`.
    pub fn allocate_identity(&self, request: &IdentityRequest) -> Result<AllocatedIdentity, LedgerError> {
        let leased_blocks_required = self.shared.leased_blocks_required.load(Ordering::SeqCst);
        let allocated = self.write("allocating an identity", |transaction, path| {
            write::allocate_identity(transaction, path, request, leased_blocks_required)
        })?;
        tracing::debug!(
            chip_uid = %allocated.identity.chip_uid_hex,
            serial = %allocated.identity.serial,
            is_rework = allocated.is_rework,
            retired_serial = ?allocated.retired_serial,
            "identity committed"
        );
        Ok(allocated)
    }

    /// From now on (for this handle and its clones), counter serials come only from blocks
    /// leased from the central database ([`Ledger::record_serial_block`]); with none left an
    /// allocation fails with [`LedgerError::SerialBlocksExhausted`] rather than fall back to
    /// the local counter, which could collide with another station's block. A ledger that
    /// ever recorded a block for a prefix keeps to blocks for it even without this call.
    pub fn require_leased_serial_blocks(&self) {
        self.shared.leased_blocks_required.store(true, Ordering::SeqCst);
    }

    /// Commits one run with its steps as the next link of its station's chain; returns after
    /// the commit is on disk.
    pub fn record_run(&self, run: &RunRecord) -> Result<RunReceipt, LedgerError> {
        let receipt =
            self.write("recording a run", |transaction, path| write::record_run(transaction, path, run))?;
        tracing::debug!(
            station = %run.station,
            station_sequence = receipt.station_sequence,
            serial = ?run.serial,
            result = run.result.as_str(),
            record_hash = %hex::encode(receipt.record_hash),
            "run committed"
        );
        Ok(receipt)
    }

    /// Commits many runs in one transaction (all or none), in order.
    pub fn record_runs(&self, runs: &[RunRecord]) -> Result<Vec<RunReceipt>, LedgerError> {
        self.write("recording runs", |transaction, path| {
            runs.iter().map(|run| write::record_run(transaction, path, run)).collect()
        })
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction on the write connection and commits it;
    /// any error rolls everything back.
    fn write<T>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&rusqlite::Transaction<'_>, &Path) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let path = self.path();
        let writer = self
            .shared
            .writer
            .as_ref()
            .ok_or_else(|| LedgerError::ReadOnly { path: path.to_owned(), operation })?;
        let mut connection = lock(writer);
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| LedgerError::Database { path: path.to_owned(), operation, source })?;
        // Dropping the transaction on the error path rolls it back.
        let value = body(&transaction, path)?;
        transaction.commit().map_err(|source| LedgerError::Database {
            path: path.to_owned(),
            operation,
            source,
        })?;
        Ok(value)
    }

    /// Runs `body` in one read transaction on a pooled read-only connection.
    fn read<T>(
        &self,
        body: impl FnOnce(&Connection, &Path) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let path = self.path();
        let pooled = lock(&self.shared.idle_readers).pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => schema::open_reader(path)?,
        };
        let outcome = (|| {
            let transaction = connection.unchecked_transaction().map_err(|source| LedgerError::Database {
                path: path.to_owned(),
                operation: "starting a read transaction",
                source,
            })?;
            let value = body(&transaction, path)?;
            // Ending a read transaction writes nothing; committing just releases the snapshot.
            transaction.commit().map_err(|source| LedgerError::Database {
                path: path.to_owned(),
                operation: "ending a read transaction",
                source,
            })?;
            Ok(value)
        })();
        let mut idle = lock(&self.shared.idle_readers);
        if idle.len() < IDLE_READERS_MAX && connection.is_autocommit() {
            idle.push(connection);
        }
        outcome
    }
}

/// Checkpoints (TRUNCATE) the database behind `connection`; see [`Ledger::checkpoint`].
fn checkpoint_connection(connection: &Connection, path: &Path) -> Result<bool, LedgerError> {
    let busy: i64 = connection
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .map_err(database_error(path, "checkpointing the write-ahead log"))?;
    Ok(busy == 0)
}

impl Drop for Shared {
    /// The last handle on a ledger checkpoints it, so the database file alone is complete
    /// whenever no station has it open (a failure here only leaves the log for the next open).
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            let connection = lock(writer);
            if let Err(error) = checkpoint_connection(&connection, &self.path) {
                tracing::warn!(%error, "checkpoint when closing the ledger failed");
            }
        }
    }
}

/// Locks a mutex even if a thread panicked while holding it: the guarded connection is still
/// consistent, because a panicking writer drops its transaction, which rolls it back.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Maps a rusqlite error to [`LedgerError::Database`] for `operation`.
fn database_error<'path>(
    path: &'path Path,
    operation: &'static str,
) -> impl FnOnce(rusqlite::Error) -> LedgerError + 'path {
    move |source| LedgerError::Database { path: path.to_owned(), operation, source }
}
