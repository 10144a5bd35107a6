//! The line's link to the central PostgreSQL ledger (docs/central.md): the settings both front
//! ends take, and starting the link before the first unit.

use std::time::Duration;

use crate::central::{
    CentralConfig, CentralLink, DEFAULT_BATCH_SIZE, DEFAULT_BLOCK_SIZE, LinkSettings, Preflight,
    SerialCounterSpec, preflight,
};
use crate::ledger::{Ledger, SerialScheme};

use super::SessionError;

/// How long a line start waits for its first serial block from the central database before it
/// goes on with the blocks the ledger already holds.
pub const CENTRAL_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// After the line stops, how long the outbox keeps shipping by default (what is left ships at
/// the next start).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The central database a line feeds, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralSettings {
    /// `postgresql://...` (password from the environment or a password file, never the URL).
    pub url: String,
    /// Serial numbers per leased block.
    pub block_size: u64,
    /// Lease the next block when fewer serials than this remain; `None`: the block size.
    pub lease_ahead: Option<u64>,
    /// Runs per central transaction when shipping the outbox.
    pub batch_size: usize,
    /// After the last unit, how long to keep shipping before the line's report.
    pub drain_timeout: Duration,
}

impl CentralSettings {
    /// The defaults for `url`.
    pub fn new(url: String) -> CentralSettings {
        CentralSettings {
            url,
            block_size: DEFAULT_BLOCK_SIZE,
            lease_ahead: None,
            batch_size: DEFAULT_BATCH_SIZE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }

    /// Checks the settings without connecting (front ends call it while parsing flags).
    pub fn check(&self) -> Result<CentralConfig, SessionError> {
        let refuse = |reason: String| SessionError::Central { reason };
        if self.block_size == 0 {
            return Err(refuse("block size: expected at least 1, found 0".to_string()));
        }
        if self.batch_size == 0 {
            return Err(refuse("batch size: expected at least 1, found 0".to_string()));
        }
        CentralConfig::from_url(&self.url).map_err(|error| refuse(error.to_string()))
    }
}

/// How the link stood when the line started (front ends show it: the CLI on stderr, the window
/// in its log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralStart {
    /// The database, as it may be shown (no password).
    pub target: String,
    /// A serial block arrived within [`CENTRAL_READY_TIMEOUT`].
    pub serials_stocked: bool,
    /// Why not, when not.
    pub last_error: Option<String>,
    /// Something the operator must act on (a record that differs from the central copy).
    pub alarm: Option<String>,
    /// Serials left in the blocks already leased, per counter prefix.
    pub serials_remaining: Vec<(String, u64)>,
}

/// Starts the link: leases the profile's serial blocks and ships the outbox in the background.
pub fn start_central_link(
    settings: &CentralSettings,
    ledger: &Ledger,
    station_name: &str,
    serial_scheme: &SerialScheme,
) -> Result<(CentralLink, CentralStart), SessionError> {
    let config = settings.check()?;
    let target = config.target().to_owned();
    let serial_counters = SerialCounterSpec::for_scheme(serial_scheme);
    let mut link_settings = LinkSettings::new(station_name.to_owned(), serial_counters.clone());
    link_settings.block_size = settings.block_size;
    link_settings.low_water = settings.lease_ahead.unwrap_or(settings.block_size);
    link_settings.batch_size = settings.batch_size;
    // A database that will never accept this station stops the line here, before any unit; one
    // that is only away lets it start offline (the link keeps trying).
    match preflight(ledger, &config, station_name) {
        Ok(Preflight::Accepted) => {}
        Ok(Preflight::Unreachable { cause }) => {
            tracing::warn!(%target, %cause, "central database unreachable at start; starting offline");
        }
        Err(error) => return Err(SessionError::Central { reason: format!("{target}: {error}") }),
    }
    let link = CentralLink::start(ledger.clone(), config, link_settings)
        .map_err(|error| SessionError::Central { reason: format!("{target}: {error}") })?;
    let status = link.wait_until_ready(CENTRAL_READY_TIMEOUT);
    let mut serials_remaining = Vec::new();
    if !status.serials_stocked {
        for spec in &serial_counters {
            let remaining = ledger.leased_serials_remaining(&spec.prefix).map_err(|error| {
                SessionError::Central { reason: format!("{target}: reading the leased blocks: {error}") }
            })?;
            serials_remaining.push((spec.prefix.clone(), remaining));
        }
    }
    let start = CentralStart {
        target,
        serials_stocked: status.serials_stocked,
        last_error: status.last_error.clone(),
        alarm: status.alarm.clone(),
        serials_remaining,
    };
    Ok((link, start))
}
