//! The central database schema (PostgreSQL), in its own schema `imprint`, and its migrations.
//!
//! Stations create and migrate it on connection: each step runs in one transaction with its
//! version row, under an advisory lock, so stations that start together migrate it once.
//! docs/central.md documents every table.

use postgres::Client;

use super::{CentralError, query_failed};

/// The schema version this build writes and reads.
pub const CENTRAL_SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Any fixed number, shared by every station: the advisory lock that serialises migrations.
const MIGRATION_LOCK_KEY: i64 = 0x0069_6d70_7269_6e74;

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`. Never edit a released step.
const MIGRATIONS: &[&str] = &[
    r#"
-- btree_gist lets one exclusion constraint say "no two blocks of a prefix overlap".
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE imprint.stations (
    name text PRIMARY KEY,
    ledger_id text NOT NULL CHECK (ledger_id ~ '^[0-9a-f]{32}$'),
    registered_at timestamptz NOT NULL DEFAULT now(),
    head_sequence bigint NOT NULL DEFAULT 0 CHECK (head_sequence >= 0),
    head_hash bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'
        CHECK (length(head_hash) = 32)
);

CREATE TABLE imprint.serial_counters (
    prefix text PRIMARY KEY,
    next_value bigint NOT NULL CHECK (next_value >= 0)
);

CREATE TABLE imprint.serial_blocks (
    id bigserial PRIMARY KEY,
    prefix text NOT NULL,
    first_value bigint NOT NULL CHECK (first_value >= 0),
    last_value bigint NOT NULL,
    station text NOT NULL REFERENCES imprint.stations (name),
    ledger_id text NOT NULL,
    leased_at timestamptz NOT NULL DEFAULT now(),
    CHECK (last_value >= first_value),
    EXCLUDE USING gist (prefix WITH =, int8range(first_value, last_value, '[]') WITH &&)
);
CREATE INDEX serial_blocks_by_ledger ON imprint.serial_blocks (ledger_id);

CREATE TABLE imprint.runs (
    station text NOT NULL REFERENCES imprint.stations (name),
    station_sequence bigint NOT NULL CHECK (station_sequence >= 1),
    local_run_id bigint NOT NULL,
    operator text NOT NULL,
    probe text NOT NULL,
    profile text NOT NULL,
    profile_sha256 text NOT NULL,
    images text NOT NULL,
    chip_uid text,
    serial text,
    device_id text,
    started_at text NOT NULL,
    finished_at text NOT NULL,
    result text NOT NULL CHECK (result IN ('pass', 'fail')),
    failing_step text,
    reason text,
    steps text NOT NULL,
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    record_hash bytea NOT NULL CHECK (length(record_hash) = 32),
    canonical_record text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (station, station_sequence)
);
CREATE INDEX runs_by_serial ON imprint.runs (serial);
CREATE INDEX runs_by_chip ON imprint.runs (chip_uid);
CREATE INDEX runs_by_started_at ON imprint.runs (started_at);

CREATE TABLE imprint.units (
    chip_uid text PRIMARY KEY,
    serial text NOT NULL,
    device_id text NOT NULL,
    profile text NOT NULL,
    station text NOT NULL,
    station_sequence bigint NOT NULL,
    finished_at text NOT NULL
);

CREATE TABLE imprint.issued_serials (
    serial text PRIMARY KEY,
    chip_uid text NOT NULL,
    device_id text NOT NULL,
    station text NOT NULL,
    station_sequence bigint NOT NULL
);

CREATE TABLE imprint.alarms (
    id bigserial PRIMARY KEY,
    raised_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL,
    station text NOT NULL,
    station_sequence bigint NOT NULL,
    detail text NOT NULL
);
"#,
    // Version 2: a run may end `aborted` (the line was aborted while the unit was in flight).
    r#"
ALTER TABLE imprint.runs DROP CONSTRAINT runs_result_check;
ALTER TABLE imprint.runs ADD CONSTRAINT runs_result_check CHECK (result IN ('pass', 'fail', 'aborted'));
"#,
];

/// Creates or migrates the schema to [`CENTRAL_SCHEMA_VERSION`].
pub fn migrate(client: &mut Client, target: &str) -> Result<(), CentralError> {
    let mut transaction = client.transaction().map_err(query_failed(target, "starting the migration"))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .map_err(query_failed(target, "taking the migration lock"))?;
    transaction
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS imprint;
             CREATE TABLE IF NOT EXISTS imprint.schema_version (version integer NOT NULL);",
        )
        .map_err(query_failed(target, "creating the imprint schema"))?;
    let version: i32 = transaction
        .query_one("SELECT coalesce(max(version), 0) FROM imprint.schema_version", &[])
        .and_then(|row| row.try_get(0))
        .map_err(query_failed(target, "reading the schema version"))?;
    if version > CENTRAL_SCHEMA_VERSION {
        return Err(CentralError::SchemaTooNew {
            target: target.to_owned(),
            found: version,
            supported: CENTRAL_SCHEMA_VERSION,
        });
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.batch_execute(step).map_err(query_failed(target, "migrating the imprint schema"))?;
        transaction
            .execute("INSERT INTO imprint.schema_version (version) VALUES ($1)", &[&(index as i32 + 1)])
            .map_err(query_failed(target, "recording the schema version"))?;
    }
    transaction.commit().map_err(query_failed(target, "committing the migration"))
}

/// Checks that the schema exists at this build's version, without changing anything (the
/// readers: `imprint log verify/export --central`).
pub(crate) fn check_schema(client: &mut Client, target: &str) -> Result<(), CentralError> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('imprint.schema_version')::text", &[])
        .and_then(|row| row.try_get(0))
        .map_err(query_failed(target, "looking for the imprint schema"))?;
    if exists.is_none() {
        return Err(CentralError::SchemaMissing { target: target.to_owned() });
    }
    let version: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM imprint.schema_version", &[])
        .and_then(|row| row.try_get(0))
        .map_err(query_failed(target, "reading the schema version"))?;
    if version > CENTRAL_SCHEMA_VERSION {
        return Err(CentralError::SchemaTooNew {
            target: target.to_owned(),
            found: version,
            supported: CENTRAL_SCHEMA_VERSION,
        });
    }
    if version < CENTRAL_SCHEMA_VERSION {
        return Err(CentralError::SchemaMissing { target: target.to_owned() });
    }
    Ok(())
}
