//! The check a station makes of its central database before it touches a unit.
//!
//! A central database that is down, or a network that is out, must not stop a line: the station
//! keeps provisioning from its local ledger and leased serial blocks, and ships later. A database
//! that will **never** accept this station is different: a wrong password, a `pg_hba.conf` rule
//! that refuses it, a TLS mode the server does not speak, a certificate whose name or issuer does
//! not match, a database that does not exist, or a station name already bound to another ledger
//! (a cloned station image keeps the host name). Such a station would flash every unit and FAIL it
//! at allocate-identity, or PASS units whose records never ship again. [`preflight`] tells the two
//! apart once, at start: permanent refusals are errors (the front ends exit 2 before any unit is
//! touched), passing outages are [`Preflight::Unreachable`] (the line starts offline).

use postgres::error::SqlState;

use super::lease::register_station;
use super::{CentralConfig, CentralError, migrate};
use crate::ledger::Ledger;

/// What the start-of-line check found, when it found nothing that stops the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// Connected, the schema is current and the station name is bound to this ledger.
    Accepted,
    /// The database cannot be reached now (refused, timed out, unreachable, starting up): the
    /// line works from the local ledger and the link keeps trying.
    Unreachable { cause: String },
}

/// Connects once, migrates the schema and binds `station` to this ledger (or checks that it is
/// bound to it). Errors are the refusals that no retry can cure.
pub fn preflight(ledger: &Ledger, config: &CentralConfig, station: &str) -> Result<Preflight, CentralError> {
    let target = config.target().to_owned();
    let mut client = match config.connect_classified() {
        Ok(client) => client,
        Err(ConnectFailure::Passing(error)) => {
            return Ok(Preflight::Unreachable { cause: error.to_string() });
        }
        Err(ConnectFailure::Permanent(error)) => return Err(error),
    };
    migrate(&mut client, &target)?;
    let ledger_id = ledger.ledger_id()?;
    register_station(&mut client, &target, station, &ledger_id)?;
    Ok(Preflight::Accepted)
}

/// A failed connection attempt, sorted by whether waiting can cure it.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The network or the server is away for now.
    Passing(CentralError),
    /// The server answered and will keep answering no (credentials, TLS, pg_hba, database name).
    Permanent(CentralError),
}

/// Whether a client error means "not now" (true) rather than "never" (false).
///
/// The server's own refusals carry an SQLSTATE: every one is permanent except a server that is
/// starting up, shutting down or full. Without an SQLSTATE, an I/O error is passing unless it
/// carries a TLS certificate or protocol error (rustls wraps those in `io::Error`); a client
/// that cannot even form the request (a password the server wants and the station lacks, a TLS
/// mode the server lacks) is permanent; a timeout is passing.
pub(crate) fn is_passing(error: &postgres::Error) -> bool {
    if let Some(database_error) = error.as_db_error() {
        let code = database_error.code();
        return [
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
        ]
        .contains(code);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(inner) = source {
        if inner.downcast_ref::<rustls::Error>().is_some() {
            return false;
        }
        if let Some(io_error) = inner.downcast_ref::<std::io::Error>() {
            let wraps_tls =
                io_error.get_ref().is_some_and(|wrapped| wrapped.downcast_ref::<rustls::Error>().is_some());
            return !wraps_tls;
        }
        source = inner.source();
    }
    let text = super::error_text(error);
    !(text.contains("password missing")
        || text.contains("server does not support TLS")
        || text.contains("invalid configuration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_tcp_connection_is_passing() {
        // Nothing listens on port 1 of the loopback address: the kernel refuses at once.
        let config = CentralConfig::from_url("postgresql://imprint@127.0.0.1:1/factory?sslmode=disable")
            .expect("url parses");
        match config.connect_classified() {
            Err(ConnectFailure::Passing(error)) => {
                assert!(error.to_string().contains("127.0.0.1:1"), "{error}")
            }
            Err(ConnectFailure::Permanent(error)) => {
                panic!("expected a passing failure, got a permanent one: {error}")
            }
            Ok(_) => panic!("expected no server on 127.0.0.1:1"),
        }
    }
}
