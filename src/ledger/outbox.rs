//! The station's side of the central PostgreSQL ledger (docs/central.md): the outbox of runs
//! not yet shipped, and the serial blocks leased from the central database.
//!
//! The outbox is the `runs` table itself: a run whose `shipped_at` is NULL has not been
//! acknowledged by the central database. Because a run is committed locally before anything
//! is sent, and marked shipped only after the central commit, a crash or a network loss at any
//! point leaves every run either shipped and marked, or still in the outbox (possibly already
//! stored centrally, which the shipper's idempotent insert makes harmless).
//!
//! Serial blocks are ranges of counter values the central database handed to this ledger; the
//! station issues from them locally (in the identity allocation transaction, see `write.rs`),
//! so it keeps working offline until they run out and never reissues a value after a crash:
//! the block's `next_value` commits together with the unit row. This module knows nothing of
//! PostgreSQL: `crate::central` talks to the server and calls in here.

use std::path::Path;
use std::time::SystemTime;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::canonical::{RecordedRun, format_timestamp};
use super::query::for_each_run;
use super::{Ledger, LedgerError, database_error};

/// A block of serial counter values leased from the central database, as the leaser hands it
/// to [`Ledger::record_serial_block`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedSerialBlock {
    /// The block's id in the central database (unique there, so recording is idempotent).
    pub central_block_id: i64,
    /// The serial prefix (the counter scheme's key).
    pub prefix: String,
    /// First counter value of the block.
    pub first_value: u64,
    /// Last counter value of the block (inclusive).
    pub last_value: u64,
}

/// A leased block as the local ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialBlock {
    pub central_block_id: i64,
    pub prefix: String,
    pub first_value: u64,
    pub last_value: u64,
    /// The next value this station will issue from the block (`last_value + 1`: used up).
    pub next_value: u64,
    pub leased_at: String,
}

impl SerialBlock {
    /// Values not issued yet.
    pub fn remaining(&self) -> u64 {
        (self.last_value + 1).saturating_sub(self.next_value)
    }
}

fn to_stored(field: &str, value: u64) -> Result<i64, LedgerError> {
    i64::try_from(value).map_err(|_| LedgerError::invalid(field, "a value below 2^63", value.to_string()))
}

/// True when a block was ever recorded for `prefix`.
pub(crate) fn has_serial_blocks(
    transaction: &Transaction<'_>,
    path: &Path,
    prefix: &str,
) -> Result<bool, LedgerError> {
    transaction
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM serial_blocks WHERE prefix = ?1)")
        .and_then(|mut statement| statement.query_row([prefix], |row| row.get(0)))
        .map_err(database_error(path, "looking for leased serial blocks"))
}

/// Takes the next value from the oldest block of `prefix` that has one left, inside the
/// caller's allocation transaction (so the value and the unit row commit together).
pub(crate) fn take_leased_serial(
    transaction: &Transaction<'_>,
    path: &Path,
    prefix: &str,
) -> Result<u64, LedgerError> {
    let block: Option<(i64, i64)> = transaction
        .prepare_cached(
            "SELECT id, next_value FROM serial_blocks
             WHERE prefix = ?1 AND next_value <= last_value
             ORDER BY first_value LIMIT 1",
        )
        .and_then(|mut statement| {
            statement.query_row([prefix], |row| Ok((row.get(0)?, row.get(1)?))).optional()
        })
        .map_err(database_error(path, "choosing a leased serial block"))?;
    let Some((block_id, value)) = block else {
        return Err(LedgerError::SerialBlocksExhausted { prefix: prefix.to_owned() });
    };
    transaction
        .prepare_cached("UPDATE serial_blocks SET next_value = next_value + 1 WHERE id = ?1")
        .and_then(|mut statement| statement.execute([block_id]))
        .map_err(database_error(path, "advancing the leased serial block"))?;
    u64::try_from(value).map_err(|_| LedgerError::Corrupt {
        path: path.to_owned(),
        what: format!("serial block {block_id} has a negative next_value {value}"),
    })
}

impl Ledger {
    /// This ledger file's random identity (32 hex digits), made when the file was created or
    /// migrated. The central database binds a station name to the ledger that first shipped
    /// it, and leases blocks to a ledger rather than to a name.
    pub fn ledger_id(&self) -> Result<String, LedgerError> {
        self.read(|connection, path| {
            connection
                .query_row("SELECT ledger_id FROM ledger_instance WHERE id = 1", [], |row| row.get(0))
                .map_err(database_error(path, "reading the ledger id"))
        })
    }

    /// Up to `limit` runs not yet shipped to the central database, in chain order (station,
    /// then sequence), each with every recorded field and its hashes.
    pub fn unshipped_runs(&self, limit: usize) -> Result<Vec<RecordedRun>, LedgerError> {
        self.read(|connection, path| {
            let mut runs = Vec::new();
            if limit == 0 {
                return Ok(runs);
            }
            // The outbox rows are found through the partial index; the join for the run's
            // fields is then by primary key.
            for_each_run(
                connection,
                path,
                "WHERE r.id IN (SELECT id FROM runs WHERE shipped_at IS NULL
                     ORDER BY station_id, station_sequence LIMIT ?1)",
                "r.station_id, r.station_sequence, st.ordinal",
                &[&(limit as i64)],
                |run| {
                    runs.push(run);
                    Ok(true)
                },
            )?;
            Ok(runs)
        })
    }

    /// How many runs are waiting in the outbox.
    pub fn unshipped_count(&self) -> Result<u64, LedgerError> {
        self.read(|connection, path| {
            let count: i64 = connection
                .query_row("SELECT count(*) FROM runs WHERE shipped_at IS NULL", [], |row| row.get(0))
                .map_err(database_error(path, "counting unshipped runs"))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    /// Marks runs (by local run id) as acknowledged by the central database, now; runs already
    /// marked keep their first time. Call only after the central commit returned. Returns how
    /// many runs were newly marked.
    pub fn mark_runs_shipped(&self, run_ids: &[i64]) -> Result<usize, LedgerError> {
        let shipped_at = format_timestamp("shipped_at", SystemTime::now())?;
        self.write("marking runs shipped", |transaction, path| {
            let mut statement = transaction
                .prepare_cached("UPDATE runs SET shipped_at = ?2 WHERE id = ?1 AND shipped_at IS NULL")
                .map_err(database_error(path, "preparing the shipped mark"))?;
            let mut marked = 0;
            for run_id in run_ids {
                marked += statement
                    .execute(params![run_id, shipped_at])
                    .map_err(database_error(path, "marking a run shipped"))?;
            }
            Ok(marked)
        })
    }

    /// Records a block leased from the central database, so allocations can issue from it.
    /// Idempotent by the central block id: recording the same block again changes nothing and
    /// returns false; a different range under a known id is an error.
    pub fn record_serial_block(&self, block: &LeasedSerialBlock) -> Result<bool, LedgerError> {
        let leased_at = format_timestamp("leased_at", SystemTime::now())?;
        let first_value = to_stored("first_value", block.first_value)?;
        let last_value = to_stored("last_value", block.last_value)?;
        if block.last_value < block.first_value {
            return Err(LedgerError::invalid(
                "serial block",
                "first_value <= last_value",
                format!("{}..={}", block.first_value, block.last_value),
            ));
        }
        self.write("recording a leased serial block", |transaction, path| {
            let known: Option<(String, i64, i64)> = transaction
                .prepare_cached(
                    "SELECT prefix, first_value, last_value FROM serial_blocks WHERE central_block_id = ?1",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row([block.central_block_id], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()
                })
                .map_err(database_error(path, "looking up the serial block"))?;
            if let Some((prefix, recorded_first, recorded_last)) = known {
                if prefix == block.prefix && recorded_first == first_value && recorded_last == last_value {
                    return Ok(false);
                }
                return Err(LedgerError::SerialBlockConflict {
                    central_block_id: block.central_block_id,
                    prefix: block.prefix.clone(),
                    first_value: block.first_value,
                    last_value: block.last_value,
                    recorded_first: u64::try_from(recorded_first).unwrap_or(0),
                    recorded_last: u64::try_from(recorded_last).unwrap_or(0),
                });
            }
            transaction
                .prepare_cached(
                    "INSERT INTO serial_blocks (central_block_id, prefix, first_value, last_value,
                         next_value, leased_at)
                     VALUES (?1, ?2, ?3, ?4, ?3, ?5)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        block.central_block_id,
                        block.prefix,
                        first_value,
                        last_value,
                        leased_at
                    ])
                })
                .map_err(database_error(path, "inserting the serial block"))?;
            Ok(true)
        })
    }

    /// Every block leased for `prefix` (all prefixes when `None`), oldest first.
    pub fn serial_blocks(&self, prefix: Option<&str>) -> Result<Vec<SerialBlock>, LedgerError> {
        self.read(|connection, path| {
            let mut statement = connection
                .prepare(
                    "SELECT central_block_id, prefix, first_value, last_value, next_value, leased_at
                     FROM serial_blocks WHERE ?1 IS NULL OR prefix = ?1 ORDER BY prefix, first_value",
                )
                .map_err(database_error(path, "reading serial blocks"))?;
            let blocks = statement
                .query_map([prefix], |row| {
                    let value = |index: usize| row.get::<_, i64>(index).map(|value| value.max(0) as u64);
                    Ok(SerialBlock {
                        central_block_id: row.get(0)?,
                        prefix: row.get(1)?,
                        first_value: value(2)?,
                        last_value: value(3)?,
                        next_value: value(4)?,
                        leased_at: row.get(5)?,
                    })
                })
                .map_err(database_error(path, "reading serial blocks"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(database_error(path, "reading serial blocks"))?;
            Ok(blocks)
        })
    }

    /// Serial values left to issue for `prefix` across its leased blocks.
    pub fn leased_serials_remaining(&self, prefix: &str) -> Result<u64, LedgerError> {
        Ok(self.serial_blocks(Some(prefix))?.iter().map(SerialBlock::remaining).sum())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::ledger::{IdentityRequest, ReworkPolicy, RunRecord, RunResult, SerialScheme};

    fn open() -> (tempfile::TempDir, Ledger) {
        let directory = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&directory.path().join("ledger.db")).unwrap();
        (directory, ledger)
    }

    fn block(central_block_id: i64, first_value: u64, last_value: u64) -> LeasedSerialBlock {
        LeasedSerialBlock { central_block_id, prefix: "SN".into(), first_value, last_value }
    }

    /// What one step of a scenario does, and what it must give.
    enum Step {
        /// Record a leased block; expect "newly recorded" or an error message fragment.
        Lease(LeasedSerialBlock, Result<bool, &'static str>),
        /// Allocate an identity for a new chip; expect the serial or an error message fragment.
        Allocate(Result<&'static str, &'static str>),
        /// From now on serials must come from leased blocks.
        RequireBlocks,
    }

    fn check(steps: &[Step]) {
        let (_directory, ledger) = open();
        for (index, step) in steps.iter().enumerate() {
            match step {
                Step::Lease(leased, expected) => {
                    let outcome = ledger.record_serial_block(leased).map_err(|error| error.to_string());
                    match (outcome, expected) {
                        (Ok(recorded), Ok(wanted)) => assert_eq!(recorded, *wanted, "step {index}"),
                        (Err(message), Err(fragment)) => {
                            assert!(
                                message.contains(fragment),
                                "step {index}: {message:?} lacks {fragment:?}"
                            )
                        }
                        (outcome, expected) => panic!("step {index}: {outcome:?}, expected {expected:?}"),
                    }
                }
                Step::Allocate(expected) => {
                    let request = IdentityRequest {
                        chip_uid_hex: format!("{:024x}", index + 1),
                        profile_name: "demo".into(),
                        device_id: uuid::Uuid::new_v4(),
                        serial_scheme: SerialScheme::Counter {
                            prefix: "SN".into(),
                            counter_width: 6,
                            first_value: 1,
                        },
                        scanned_serial: None,
                        rework_policy: ReworkPolicy::ReuseIdentity,
                    };
                    let outcome = ledger
                        .allocate_identity(&request)
                        .map(|allocated| allocated.identity.serial)
                        .map_err(|error| error.to_string());
                    match (outcome, expected) {
                        (Ok(serial), Ok(wanted)) => assert_eq!(serial, *wanted, "step {index}"),
                        (Err(message), Err(fragment)) => {
                            assert!(
                                message.contains(fragment),
                                "step {index}: {message:?} lacks {fragment:?}"
                            )
                        }
                        (outcome, expected) => panic!("step {index}: {outcome:?}, expected {expected:?}"),
                    }
                }
                Step::RequireBlocks => ledger.require_leased_serial_blocks(),
            }
        }
    }

    #[test]
    fn check_serial_blocks() {
        use Step::*;
        // Without blocks and without the central rule, the local counter serves.
        check(&[Allocate(Ok("SN000001")), Allocate(Ok("SN000002"))]);
        // With the central rule and no block: a clear failure, never the local counter.
        check(&[RequireBlocks, Allocate(Err("no serial number left for prefix \"SN\""))]);
        // Blocks are used oldest value first, then the station runs dry; a later block refills.
        check(&[
            Lease(block(7, 20, 21), Ok(true)),
            Lease(block(3, 5, 5), Ok(true)),
            Allocate(Ok("SN000005")),
            Allocate(Ok("SN000020")),
            Allocate(Ok("SN000021")),
            Allocate(Err("no serial number left")),
            Lease(block(9, 40, 40), Ok(true)),
            Allocate(Ok("SN000040")),
        ]);
        // Recording is idempotent by central id; a different range under a known id is refused.
        check(&[
            Lease(block(1, 1, 3), Ok(true)),
            Lease(block(1, 1, 3), Ok(false)),
            Lease(block(1, 1, 4), Err("already recorded as 1..=3")),
            Lease(block(2, 9, 8), Err("first_value <= last_value")),
        ]);
        // A value that outgrows the counter width is refused, not widened.
        check(&[
            RequireBlocks,
            Lease(block(4, 999_999, 1_000_000), Ok(true)),
            Allocate(Ok("SN999999")),
            Allocate(Err("exhausted")),
        ]);
    }

    #[test]
    fn check_block_rows_only_move_forward() {
        let (directory, ledger) = open();
        ledger.record_serial_block(&block(1, 1, 10)).unwrap();
        let connection = rusqlite::Connection::open(directory.path().join("ledger.db")).unwrap();
        for sql in [
            "UPDATE serial_blocks SET next_value = 0",
            "UPDATE serial_blocks SET last_value = 11",
            "DELETE FROM serial_blocks",
        ] {
            assert!(connection.execute(sql, []).is_err(), "{sql} was allowed");
        }
        assert!(connection.execute("UPDATE serial_blocks SET next_value = 4", []).is_ok());
        assert_eq!(ledger.leased_serials_remaining("SN").unwrap(), 7);
    }

    #[test]
    fn check_outbox() {
        let (_directory, ledger) = open();
        let run = |seconds: u64| RunRecord {
            station: "line-1".into(),
            operator: "tester".into(),
            probe: "sim:0".into(),
            profile_name: "demo".into(),
            profile_sha256: "ab".repeat(32),
            image_sha256s: vec![("bootloader".into(), "cd".repeat(32))],
            chip_uid_hex: None,
            serial: None,
            device_id: None,
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds + 1),
            result: RunResult::Fail,
            failing_step: Some("connect".into()),
            reason: Some("no probe".into()),
            steps: Vec::new(),
        };
        let receipts =
            ledger.record_runs(&[run(1_800_000_000), run(1_800_000_060), run(1_800_000_120)]).unwrap();
        assert_eq!(ledger.unshipped_count().unwrap(), 3);
        let first_two = ledger.unshipped_runs(2).unwrap();
        assert_eq!(first_two.iter().map(|run| run.station_sequence).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(first_two[1].record_hash, hex::encode(receipts[1].record_hash));
        assert_eq!(ledger.mark_runs_shipped(&[receipts[0].run_id, receipts[1].run_id]).unwrap(), 2);
        assert_eq!(ledger.mark_runs_shipped(&[receipts[0].run_id]).unwrap(), 0, "marked twice");
        let rest = ledger.unshipped_runs(10).unwrap();
        assert_eq!(rest.iter().map(|run| run.station_sequence).collect::<Vec<_>>(), [3]);
        assert_eq!(ledger.unshipped_count().unwrap(), 1);
        // Marking shipped leaves the chain intact (shipped_at is not hashed).
        assert!(ledger.verify(&crate::ledger::VerifyOptions::default()).unwrap().is_intact());
        assert_eq!(ledger.ledger_id().unwrap().len(), 32);
    }
}
