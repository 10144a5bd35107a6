//! The database schema, its migrations and the settings every connection gets.
//!
//! The schema version lives in `PRAGMA user_version`; [`MIGRATIONS`] holds one SQL step per
//! version, and each step runs in its own `BEGIN IMMEDIATE` transaction together with the
//! version bump, so a crash mid-migration leaves the previous version intact and two processes
//! opening the same file at once migrate it exactly once.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{LedgerError, database_error};

/// How long a connection waits for another writer (another process on the same file) before
/// giving up with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema steps; `MIGRATIONS[i]` takes the database from version `i` to `i + 1`. Never edit a
/// step once released: add a new one.
pub const MIGRATIONS: &[&str] = &[
    // Version 1: the first schema. Documented column by column in docs/ledger.md.
    r#"
CREATE TABLE stations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    head_sequence INTEGER NOT NULL DEFAULT 0 CHECK (head_sequence >= 0),
    head_hash BLOB NOT NULL DEFAULT (zeroblob(32)) CHECK (length(head_hash) = 32)
) STRICT;

CREATE TABLE operators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE profiles (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    profile_sha256 TEXT NOT NULL CHECK (length(profile_sha256) = 64),
    images TEXT NOT NULL,
    UNIQUE (name, profile_sha256, images)
) STRICT;

CREATE TABLE units (
    id INTEGER PRIMARY KEY,
    chip_uid TEXT NOT NULL UNIQUE,
    serial TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL UNIQUE,
    profile TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE identity_history (
    id INTEGER PRIMARY KEY,
    unit_id INTEGER NOT NULL REFERENCES units(id),
    chip_uid TEXT NOT NULL,
    serial TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT NOT NULL,
    replaced_by_serial TEXT NOT NULL
) STRICT;
CREATE INDEX identity_history_by_chip ON identity_history (chip_uid);

CREATE TABLE serial_counters (
    prefix TEXT PRIMARY KEY,
    next_value INTEGER NOT NULL CHECK (next_value >= 0)
) STRICT;

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    station_id INTEGER NOT NULL REFERENCES stations(id),
    station_sequence INTEGER NOT NULL CHECK (station_sequence >= 1),
    chip_uid TEXT,
    serial TEXT,
    device_id TEXT,
    operator_id INTEGER NOT NULL REFERENCES operators(id),
    probe TEXT NOT NULL,
    profile_id INTEGER NOT NULL REFERENCES profiles(id),
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('pass', 'fail')),
    failing_step TEXT,
    reason TEXT,
    prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
    record_hash BLOB NOT NULL CHECK (length(record_hash) = 32),
    shipped_at TEXT,
    UNIQUE (station_id, station_sequence)
) STRICT;
CREATE INDEX runs_by_chip ON runs (chip_uid);

CREATE TABLE steps (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    ordinal INTEGER NOT NULL CHECK (ordinal >= 0),
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('passed', 'failed', 'skipped')),
    started_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
    detail TEXT NOT NULL,
    PRIMARY KEY (run_id, ordinal)
) STRICT, WITHOUT ROWID;

-- Runs and steps are append-only: only shipped_at may change. This guards against mistakes,
-- not against an attacker (who can drop a trigger); the hash chain is what reveals tampering.
CREATE TRIGGER runs_append_only_update BEFORE UPDATE OF
    station_id, station_sequence, chip_uid, serial, device_id, operator_id, probe, profile_id,
    started_at, finished_at, result, failing_step, reason, prev_hash, record_hash ON runs
BEGIN SELECT RAISE(ABORT, 'runs are append-only'); END;
CREATE TRIGGER runs_append_only_delete BEFORE DELETE ON runs
BEGIN SELECT RAISE(ABORT, 'runs are append-only'); END;
CREATE TRIGGER steps_append_only_update BEFORE UPDATE ON steps
BEGIN SELECT RAISE(ABORT, 'steps are append-only'); END;
CREATE TRIGGER steps_append_only_delete BEFORE DELETE ON steps
BEGIN SELECT RAISE(ABORT, 'steps are append-only'); END;
"#,
    // Version 2: what a station needs to feed a central PostgreSQL ledger (docs/central.md).
    // `ledger_instance` names this file, so the central database can tell two ledgers that
    // claim the same station name apart; `serial_blocks` holds the serial ranges leased from
    // the central database, with the next value to issue from each; `runs_unshipped` keeps the
    // outbox query (runs whose `shipped_at` is NULL) cheap however long the ledger grows.
    r#"
CREATE TABLE ledger_instance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ledger_id TEXT NOT NULL CHECK (length(ledger_id) = 32)
) STRICT;
INSERT INTO ledger_instance (id, ledger_id) VALUES (1, lower(hex(randomblob(16))));

CREATE TABLE serial_blocks (
    id INTEGER PRIMARY KEY,
    central_block_id INTEGER NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    first_value INTEGER NOT NULL CHECK (first_value >= 0),
    last_value INTEGER NOT NULL CHECK (last_value >= first_value),
    next_value INTEGER NOT NULL,
    leased_at TEXT NOT NULL,
    CHECK (next_value >= first_value AND next_value <= last_value + 1)
) STRICT;
CREATE INDEX serial_blocks_by_prefix ON serial_blocks (prefix, first_value);

-- A block's range never changes and it is never removed: only next_value moves, forward.
CREATE TRIGGER serial_blocks_fixed_range BEFORE UPDATE OF central_block_id, prefix, first_value, last_value
    ON serial_blocks
BEGIN SELECT RAISE(ABORT, 'serial block ranges are fixed'); END;
CREATE TRIGGER serial_blocks_forward_only BEFORE UPDATE OF next_value ON serial_blocks
    WHEN NEW.next_value < OLD.next_value
BEGIN SELECT RAISE(ABORT, 'a serial block never goes back'); END;
CREATE TRIGGER serial_blocks_kept BEFORE DELETE ON serial_blocks
BEGIN SELECT RAISE(ABORT, 'serial blocks are kept'); END;

CREATE INDEX runs_unshipped ON runs (station_id, station_sequence) WHERE shipped_at IS NULL;
"#,
    // Version 3: `PRAGMA application_id` marks the file as an Imprint ledger (set by the
    // migration loop with every step); serial lookups ignore case (`imprint log show sn000123`).
    r#"
CREATE INDEX units_by_serial_nocase ON units (serial COLLATE NOCASE);
CREATE INDEX identity_history_by_serial_nocase ON identity_history (serial COLLATE NOCASE);
CREATE INDEX runs_by_serial_nocase ON runs (serial COLLATE NOCASE);
CREATE INDEX runs_by_serial ON runs (serial);
"#,
    // Version 4: a run may end `aborted` (the line was aborted while the unit was in flight).
    // SQLite cannot alter a CHECK constraint; widening one changes no stored byte, so the table's
    // text is edited in place, SQLite's documented procedure for such changes (the migration loop
    // bumps the schema cookie after every step, so every connection reloads the schema).
    r#"
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (result IN (''pass'', ''fail''))',
                          'CHECK (result IN (''pass'', ''fail'', ''aborted''))')
 WHERE type = 'table' AND name = 'runs';
PRAGMA writable_schema = OFF;
"#,
];

/// `PRAGMA application_id` of an Imprint ledger: "IMPR" in ASCII. It marks the file as a
/// ledger in the SQLite header, where `file(1)` and other tools can see it; ledgers made before
/// schema version 3 get it from migration 3.
pub const APPLICATION_ID: i32 = 0x494D_5052;

/// The tables every Imprint ledger has had since schema version 1: how a ledger made before the
/// application id was set is told apart from another application's database.
const LEDGER_TABLES: [&str; 4] = ["stations", "runs", "steps", "units"];

/// The schema version this build writes and reads.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// What a file holds, found out read-only before anything is written to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileContent {
    /// No file, or an empty database (no tables, no version, no application id): a new ledger
    /// may be made here.
    Empty,
    /// An Imprint ledger of this schema version (or older: it will be migrated).
    Ledger { version: i64 },
}

/// Reads the header and table list of `path` through a read-only connection (which never
/// writes, not even a journal-mode switch) and says whether it is an Imprint ledger; another
/// application's database and a ledger of a future schema are refused here.
pub fn inspect(path: &Path) -> Result<FileContent, LedgerError> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(FileContent::Empty),
        Ok(metadata) if metadata.len() == 0 => return Ok(FileContent::Empty),
        Ok(metadata) if !metadata.is_file() => {
            return Err(LedgerError::NotALedger {
                path: path.to_owned(),
                found: "not a regular file".to_owned(),
            });
        }
        _ => {}
    }
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|source| LedgerError::Open { path: path.to_owned(), source })?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(database_error(path, "setting busy_timeout"))?;
    let application_id: i32 = connection
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(|source| LedgerError::Open { path: path.to_owned(), source })?;
    let version = user_version(&connection, path)?;
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .map_err(database_error(path, "listing the tables"))?;
    classify(path, application_id, version, &tables)
}

fn classify(
    path: &Path,
    application_id: i32,
    version: i64,
    tables: &[String],
) -> Result<FileContent, LedgerError> {
    let supported = current_version();
    let has_ledger_tables = LEDGER_TABLES.iter().all(|table| tables.iter().any(|name| name == table));
    let is_ledger =
        application_id == APPLICATION_ID || (application_id == 0 && version >= 1 && has_ledger_tables);
    if is_ledger {
        if version > supported {
            return Err(LedgerError::SchemaTooNew { path: path.to_owned(), found: version, supported });
        }
        return Ok(FileContent::Ledger { version });
    }
    if application_id == 0 && version == 0 && tables.is_empty() {
        return Ok(FileContent::Empty);
    }
    let mut found = format!("application_id {application_id:#010x}, user_version {version}");
    if tables.is_empty() {
        found.push_str(", no tables");
    } else {
        found.push_str(&format!(", tables {}", tables.join(", ")));
    }
    Err(LedgerError::NotALedger { path: path.to_owned(), found })
}

/// Opens the read-write connection to a file [`inspect`] accepted: switches it to WAL and
/// migrates it. `may_create` lets SQLite create a missing file.
pub fn open_writer(path: &Path, may_create: bool) -> Result<Connection, LedgerError> {
    inspect(path)?;
    let open_error = |source| LedgerError::Open { path: path.to_owned(), source };
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if may_create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    } else if !path.exists() {
        return Err(LedgerError::Missing { path: path.to_owned() });
    }
    let mut connection = Connection::open_with_flags(path, flags).map_err(open_error)?;
    configure(&connection, path)?;
    // WAL lets readers (exports, the GUI) run while the station commits; the mode is stored
    // in the file, so setting it once per open is enough and idempotent.
    let journal_mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(database_error(path, "switching to WAL"))?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::Corrupt {
            path: path.to_owned(),
            what: format!("journal mode is {journal_mode:?} after asking for WAL"),
        });
    }
    migrate(&mut connection, path)?;
    Ok(connection)
}

/// Opens a read-only connection to an existing ledger of the current schema version.
pub fn open_reader(path: &Path) -> Result<Connection, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::Missing { path: path.to_owned() });
    }
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|source| LedgerError::Open { path: path.to_owned(), source })?;
    configure(&connection, path)?;
    let application_id: i32 = connection
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(database_error(path, "reading application_id"))?;
    let version = user_version(&connection, path)?;
    let expected = current_version();
    if application_id != APPLICATION_ID {
        // A ledger from before application ids (version 1 or 2), an empty file or a foreign one.
        let tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .map_err(database_error(path, "listing the tables"))?;
        classify(path, application_id, version, &tables)?;
    }
    if version > expected {
        return Err(LedgerError::SchemaTooNew { path: path.to_owned(), found: version, supported: expected });
    }
    if version < expected {
        return Err(LedgerError::SchemaOutdated { path: path.to_owned(), found: version, expected });
    }
    Ok(connection)
}

fn configure(connection: &Connection, path: &Path) -> Result<(), LedgerError> {
    connection.busy_timeout(BUSY_TIMEOUT).map_err(database_error(path, "setting busy_timeout"))?;
    // FULL: a commit is on disk (WAL fsynced) before the call that made it returns; this is
    // what lets the station show PASS only after the record is acknowledged.
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(database_error(path, "setting synchronous = FULL"))?;
    connection
        .pragma_update(None, "foreign_keys", "ON")
        .map_err(database_error(path, "setting foreign_keys = ON"))?;
    Ok(())
}

fn user_version(connection: &Connection, path: &Path) -> Result<i64, LedgerError> {
    connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(database_error(path, "reading user_version"))
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let supported = current_version();
    loop {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(database_error(path, "starting the migration transaction"))?;
        // Read the version inside the write lock: another process may have migrated meanwhile.
        let version = user_version(&transaction, path)?;
        if version > supported {
            return Err(LedgerError::SchemaTooNew { path: path.to_owned(), found: version, supported });
        }
        if version == supported {
            return Ok(());
        }
        if version < 0 {
            return Err(LedgerError::Corrupt {
                path: path.to_owned(),
                what: format!("schema version (user_version) is negative: {version}"),
            });
        }
        let next_version = version + 1;
        let migration_error =
            |source| LedgerError::Migration { path: path.to_owned(), version: next_version, source };
        transaction.execute_batch(MIGRATIONS[version as usize]).map_err(migration_error)?;
        // A step that edits sqlite_schema's text (version 4) is seen by every connection, this one
        // included, only once the schema cookie changes; for other steps the bump is harmless.
        let cookie: i64 =
            transaction.query_row("PRAGMA schema_version", [], |row| row.get(0)).map_err(migration_error)?;
        transaction.pragma_update(None, "schema_version", cookie + 1).map_err(migration_error)?;
        transaction.pragma_update(None, "application_id", APPLICATION_ID).map_err(migration_error)?;
        transaction.pragma_update(None, "user_version", next_version).map_err(migration_error)?;
        transaction.commit().map_err(migration_error)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_writer_settings() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.db");
        let connection = open_writer(&path, true).unwrap();
        let pragma = |name: &str| -> String {
            connection
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, rusqlite::types::Value>(0))
                .map(|value| format!("{value:?}"))
                .unwrap()
        };
        // synchronous FULL is 2; busy_timeout is reported in milliseconds.
        for (name, expected) in [
            ("journal_mode", "Text(\"wal\")"),
            ("synchronous", "Integer(2)"),
            ("foreign_keys", "Integer(1)"),
            ("busy_timeout", "Integer(10000)"),
            ("user_version", "Integer(4)"),
            ("application_id", "Integer(1229803602)"),
        ] {
            assert_eq!(pragma(name), expected, "PRAGMA {name}");
        }
    }

    #[test]
    fn check_schema_versions() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.db");
        // An empty file has version 0: a reader refuses it, a writer migrates it.
        drop(Connection::open(&path).unwrap());
        assert!(matches!(open_reader(&path), Err(LedgerError::SchemaOutdated { found: 0, .. })));
        drop(open_writer(&path, true).unwrap());
        // Migrating twice is a no-op.
        drop(open_writer(&path, true).unwrap());
        assert!(open_reader(&path).is_ok());
        // A file from a newer imprint is refused by both.
        Connection::open(&path).unwrap().pragma_update(None, "user_version", current_version() + 1).unwrap();
        assert!(matches!(open_writer(&path, true), Err(LedgerError::SchemaTooNew { .. })));
        assert!(matches!(open_reader(&path), Err(LedgerError::SchemaTooNew { .. })));
        assert!(matches!(
            open_reader(&directory.path().join("missing.db")),
            Err(LedgerError::Missing { .. })
        ));
    }
}
