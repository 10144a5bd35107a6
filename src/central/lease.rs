//! Leasing blocks of serial counter values from the central database.
//!
//! One transaction per lease: the prefix's counter row is locked (`SELECT ... FOR UPDATE`),
//! the block is cut from it, the counter moves past the block, and the block row is inserted
//! under an exclusion constraint that refuses any overlap with another block of the prefix.
//! Two stations leasing at once queue on the row lock; a lease that fails for any reason
//! commits nothing. A lease committed centrally but not recorded locally (the station crashed
//! in between) is found again by the ledger id and adopted on the next connection
//! ([`adopt_blocks`]), so it is neither lost nor handed to anyone else.

use postgres::GenericClient;

use super::{CentralError, query_failed};
use crate::ledger::LeasedSerialBlock;

/// A counter serial scheme the station needs values for (from the profile's `[serial]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialCounterSpec {
    pub prefix: String,
    /// Digits of the counter: values above `10^width - 1` are never leased.
    pub counter_width: u32,
    /// The profile's first value: the central counter starts there (or later, never earlier).
    pub first_value: u64,
}

impl SerialCounterSpec {
    /// The counters a profile's serial scheme needs leased: its counter, or none for serials
    /// scanned from labels.
    pub fn for_scheme(scheme: &crate::identity::SerialScheme) -> Vec<SerialCounterSpec> {
        match scheme {
            crate::identity::SerialScheme::Counter { prefix, counter_width, first_value } => {
                vec![SerialCounterSpec {
                    prefix: prefix.clone(),
                    counter_width: *counter_width,
                    first_value: *first_value,
                }]
            }
            crate::identity::SerialScheme::Scanned => Vec::new(),
        }
    }

    /// The largest value that fits in the counter width and that a ledger stores (PostgreSQL's
    /// bigint and SQLite's integer, with the value after it): the one rule of
    /// [`crate::identity::serial::counter_value_max`].
    fn max_value(&self) -> u64 {
        crate::identity::serial::counter_value_max(self.counter_width)
    }
}

/// Binds `station` to `ledger_id` on first use and refuses a name already bound to another
/// ledger (two stations configured with one name would interleave their chains).
pub(crate) fn register_station(
    client: &mut impl GenericClient,
    target: &str,
    station: &str,
    ledger_id: &str,
) -> Result<(), CentralError> {
    client
        .execute(
            "INSERT INTO imprint.stations (name, ledger_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&station, &ledger_id],
        )
        .map_err(query_failed(target, "registering the station"))?;
    let registered: String = client
        .query_one("SELECT ledger_id FROM imprint.stations WHERE name = $1", &[&station])
        .and_then(|row| row.try_get(0))
        .map_err(query_failed(target, "reading the station's ledger id"))?;
    if registered != ledger_id {
        return Err(CentralError::StationNameTaken {
            station: station.to_owned(),
            registered_ledger_id: registered,
            ledger_id: ledger_id.to_owned(),
        });
    }
    Ok(())
}

/// Leases the next block of up to `block_size` values of `spec.prefix` to this ledger, in one
/// transaction. The caller records it with [`crate::ledger::Ledger::record_serial_block`].
pub fn lease_block(
    client: &mut postgres::Client,
    target: &str,
    station: &str,
    ledger_id: &str,
    spec: &SerialCounterSpec,
    block_size: u64,
) -> Result<LeasedSerialBlock, CentralError> {
    if block_size == 0 {
        return Err(CentralError::InvalidSetting {
            field: "block size",
            expected: "at least 1",
            found: "0".to_owned(),
        });
    }
    let first_value_wanted = i64::try_from(spec.first_value).map_err(|_| CentralError::InvalidSetting {
        field: "serial first_value",
        expected: "a value below 2^63",
        found: spec.first_value.to_string(),
    })?;
    let mut transaction = client.transaction().map_err(query_failed(target, "starting a lease"))?;
    register_station(&mut transaction, target, station, ledger_id)?;
    transaction
        .execute(
            "INSERT INTO imprint.serial_counters (prefix, next_value) VALUES ($1, $2)
             ON CONFLICT (prefix) DO NOTHING",
            &[&spec.prefix, &first_value_wanted],
        )
        .map_err(query_failed(target, "creating the serial counter"))?;
    // The row lock makes concurrent leases of a prefix take turns.
    let next_value: i64 = transaction
        .query_one(
            "SELECT next_value FROM imprint.serial_counters WHERE prefix = $1 FOR UPDATE",
            &[&spec.prefix],
        )
        .and_then(|row| row.try_get(0))
        .map_err(query_failed(target, "locking the serial counter"))?;
    let first_value = next_value.max(first_value_wanted).max(0) as u64;
    let max_value = spec.max_value();
    if first_value > max_value {
        return Err(CentralError::CentralCounterExhausted {
            prefix: spec.prefix.clone(),
            counter_width: spec.counter_width,
            next_value: first_value,
        });
    }
    let last_value = first_value.saturating_add(block_size - 1).min(max_value);
    // `last_value` is at most i64::MAX (max_value), so these conversions hold.
    let (first_stored, last_stored) = (first_value as i64, last_value as i64);
    let next_stored = last_stored.saturating_add(1);
    transaction
        .execute(
            "UPDATE imprint.serial_counters SET next_value = $2 WHERE prefix = $1",
            &[&spec.prefix, &next_stored],
        )
        .map_err(query_failed(target, "advancing the serial counter"))?;
    let central_block_id: i64 = transaction
        .query_one(
            "INSERT INTO imprint.serial_blocks (prefix, first_value, last_value, station, ledger_id)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&spec.prefix, &first_stored, &last_stored, &station, &ledger_id],
        )
        .and_then(|row| row.try_get(0))
        .map_err(query_failed(target, "inserting the serial block"))?;
    transaction.commit().map_err(query_failed(target, "committing the lease"))?;
    Ok(LeasedSerialBlock { central_block_id, prefix: spec.prefix.clone(), first_value, last_value })
}

/// Every block the central database leased to this ledger, so that one committed centrally
/// but lost locally (a crash between the two commits) is recorded after all.
pub(crate) fn blocks_of_ledger(
    client: &mut postgres::Client,
    target: &str,
    ledger_id: &str,
) -> Result<Vec<LeasedSerialBlock>, CentralError> {
    let rows = client
        .query(
            "SELECT id, prefix, first_value, last_value FROM imprint.serial_blocks
             WHERE ledger_id = $1 ORDER BY id",
            &[&ledger_id],
        )
        .map_err(query_failed(target, "reading this ledger's serial blocks"))?;
    rows.iter()
        .map(|row| {
            let value = |index: usize| row.try_get::<_, i64>(index).map(|value| value.max(0) as u64);
            Ok(LeasedSerialBlock {
                central_block_id: row.try_get(0)?,
                prefix: row.try_get(1)?,
                first_value: value(2)?,
                last_value: value(3)?,
            })
        })
        .collect::<Result<Vec<_>, postgres::Error>>()
        .map_err(query_failed(target, "reading this ledger's serial blocks"))
}

/// Records locally every block leased to this ledger that the ledger does not know yet;
/// returns how many were adopted.
pub(crate) fn adopt_blocks(
    client: &mut postgres::Client,
    target: &str,
    ledger: &crate::ledger::Ledger,
    ledger_id: &str,
) -> Result<usize, CentralError> {
    let mut adopted = 0;
    for block in blocks_of_ledger(client, target, ledger_id)? {
        if ledger.record_serial_block(&block)? {
            tracing::warn!(
                central_block_id = block.central_block_id,
                prefix = %block.prefix,
                first_value = block.first_value,
                last_value = block.last_value,
                "adopted a serial block leased before a crash"
            );
            adopted += 1;
        }
    }
    Ok(adopted)
}
