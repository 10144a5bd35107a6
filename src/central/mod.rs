//! The central PostgreSQL ledger: one shared record for many stations (docs/central.md).
//!
//! Each station keeps its local SQLite ledger (what lets it work when the network is down);
//! this module connects it to a PostgreSQL database that every station feeds:
//! - **serial blocks** ([`lease`]): stations lease ranges of serial counter values from the
//!   database in a transaction that hands each value to one block only, and issue locally from
//!   their blocks, so serials are unique across the factory and a station keeps provisioning
//!   offline until its blocks run out;
//! - **the outbox** ([`ship`]): every run committed locally is copied to the database, in chain
//!   order, exactly once in effect: the insert is idempotent by (station, sequence) and a
//!   duplicate must carry the same hash, and the local run is marked shipped only after the
//!   central commit;
//! - **the link** ([`link`]): a background thread that does both, with reconnection backoff,
//!   so the line never waits on the network;
//! - **the start-of-line check** ([`preflight`]): a database that will never accept this
//!   station (credentials, TLS, pg_hba, a station name bound to another ledger) stops the line
//!   before a unit is touched; one that is only away lets it start offline;
//! - **reading** ([`read`], [`stats`]): verifying every station's chain in the database with
//!   the same checker as the local ledger, exporting across stations in the local export
//!   formats and certificate bundles, and the statistics of `imprint log stats`.
//!
//! **Invariant:** this is the only module that imports the PostgreSQL client; it reaches the
//! local ledger only through [`crate::ledger::Ledger`]'s API.

mod config;
mod lease;
mod link;
mod preflight;
mod read;
mod schema;
mod ship;
mod stats;

use std::path::PathBuf;

pub use config::{CONNECT_TIMEOUT, CentralConfig, PasswordSource, SslMode};
pub use lease::{SerialCounterSpec, lease_block};
pub use link::{CentralLink, DEFAULT_BATCH_SIZE, DEFAULT_BLOCK_SIZE, LinkSettings, LinkStatus};
pub use preflight::{Preflight, preflight};
pub use read::{export_central, export_device_certificates_central, unit_history_central, verify_central};
pub use schema::{CENTRAL_SCHEMA_VERSION, migrate};
pub use ship::{ShipOutcome, ship_batch};
pub use stats::stats_central;

use crate::ledger::LedgerError;

/// Everything that can go wrong between a station and the central database. Messages name the
/// target as `USER@HOST:PORT/DATABASE`, never the password.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    #[error("invalid central database url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "sslmode {ssl_mode} needs a root certificate to check the server against: add sslrootcert=PATH to the url or set PGSSLROOTCERT"
    )]
    RootCertificateMissing { ssl_mode: &'static str },

    #[error("cannot use the TLS root certificate {path} (sslrootcert): {reason}")]
    RootCertificate { path: PathBuf, reason: String },

    #[error("cannot set up TLS: {source}")]
    Tls { source: rustls::Error },

    #[error("cannot read the password file {path}: {source}")]
    PasswordFileRead { path: PathBuf, source: std::io::Error },

    #[error(
        "refusing the password file {path}: its mode is {mode:03o}, expected no access for group and others (chmod 600 {path})"
    )]
    PasswordFilePermissions { path: PathBuf, mode: u32 },

    #[error("cannot connect to the central database {target} (sslmode {ssl_mode}): {cause}{hint}")]
    Connect { target: String, ssl_mode: &'static str, cause: String, hint: &'static str },

    #[error("central database {target}: {operation} failed: {cause}")]
    Query { target: String, operation: &'static str, cause: String },

    #[error("central database {target} has no imprint schema yet: no station has connected to it")]
    SchemaMissing { target: String },

    #[error(
        "central database {target} has imprint schema version {found}; this imprint knows versions up to {supported} (use a newer imprint)"
    )]
    SchemaTooNew { target: String, found: i32, supported: i32 },

    #[error(
        "station name {station:?} is registered in the central database to ledger {registered_ledger_id}, not to this ledger {ledger_id}; every station needs its own name: start it with --station NEW-NAME (recovery of a renamed or restored ledger: docs/central.md)"
    )]
    StationNameTaken { station: String, registered_ledger_id: String, ledger_id: String },

    #[error(
        "serial prefix {prefix:?} is used up in the central database: the next value {next_value} does not fit in {counter_width} digits"
    )]
    CentralCounterExhausted { prefix: String, counter_width: u32, next_value: u64 },

    #[error("invalid {field}: expected {expected}, found {found}")]
    InvalidSetting { field: &'static str, expected: &'static str, found: String },

    #[error(
        "ALARM {kind}: station {station:?} sequence {station_sequence}: {detail}; shipping of this station stops until an operator resolves it (docs/central.md)"
    )]
    Alarm { kind: &'static str, station: String, station_sequence: u64, detail: String },

    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Maps a client error of `operation` to [`CentralError::Query`].
pub(crate) fn query_failed<'target>(
    target: &'target str,
    operation: &'static str,
) -> impl FnOnce(postgres::Error) -> CentralError + 'target {
    move |error| CentralError::Query { target: target.to_owned(), operation, cause: error_text(&error) }
}

/// The client error with its causes (`db error: ERROR: ...`): the client's own message is
/// only the kind of error, and the server's words are in the cause.
pub(crate) fn error_text(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
