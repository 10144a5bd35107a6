//! Shipping the outbox: copying committed local runs to the central database, in chain order.
//!
//! One batch is one central transaction. For each run, in (station, sequence) order:
//! - `INSERT ... ON CONFLICT (station, station_sequence) DO NOTHING` with every field, the
//!   chain link (`prev_hash`, `record_hash`) and the exact canonical text that was hashed;
//! - if the row was already there (a batch committed centrally whose local "shipped" mark was
//!   lost to a crash), it must carry the same `record_hash`: then the duplicate is harmless and
//!   skipped; otherwise it is an alarm (two different records under one sequence);
//! - a new row must link to the central copy of its predecessor (or to the genesis hash), so
//!   the central chain never has holes;
//! - the unit's identity goes to `imprint.units` and `imprint.issued_serials`; a serial already
//!   issued centrally to another chip is an alarm (recorded, and the run still stored);
//! - the station's central head moves forward.
//!
//! After the commit returned, the runs are marked shipped locally. A crash anywhere leaves
//! each run either marked, or unmarked and re-sent next time (and then skipped as a duplicate).

use std::collections::BTreeSet;

use postgres::{Client, Statement, Transaction};

use super::lease::register_station;
use super::{CentralError, query_failed};
use crate::ledger::{GENESIS_HASH, Ledger, RecordedRun, canonical_json, parse_hash_hex};

/// What one [`ship_batch`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShipOutcome {
    /// Runs inserted centrally by this batch.
    pub runs_inserted: usize,
    /// Runs that were already there with the same hash (re-delivery after a crash).
    pub runs_already_present: usize,
    /// Serials found issued centrally to another chip (each raised an alarm row).
    pub duplicate_serial_alarms: usize,
}

impl ShipOutcome {
    /// Runs marked shipped locally by this batch.
    pub fn runs_acknowledged(&self) -> usize {
        self.runs_inserted + self.runs_already_present
    }
}

fn hash_of(run: &RecordedRun, field: &str, text: &str) -> Result<[u8; 32], CentralError> {
    parse_hash_hex(text).ok_or_else(|| CentralError::Alarm {
        kind: "unreadable-local-record",
        station: run.station.clone(),
        station_sequence: run.station_sequence,
        detail: format!("the local {field} {text:?} is not 64 hex digits"),
    })
}

/// Stores an alarm row in its own transaction (the batch that found it was rolled back).
pub(crate) fn raise_alarm(client: &mut Client, target: &str, alarm: &CentralError) {
    if let CentralError::Alarm { kind, station, station_sequence, detail } = alarm {
        let sequence = i64::try_from(*station_sequence).unwrap_or(i64::MAX);
        let stored = client.execute(
            "INSERT INTO imprint.alarms (kind, station, station_sequence, detail) VALUES ($1, $2, $3, $4)",
            &[kind, station, &sequence, detail],
        );
        if let Err(error) = stored {
            tracing::error!(target = %target, %error, "cannot store the alarm in the central database");
        }
    }
}

/// Ships up to `batch_size` runs from the outbox in one central transaction and marks them
/// shipped locally after the commit. Returns what was done (nothing when the outbox is empty).
pub fn ship_batch(
    client: &mut Client,
    target: &str,
    ledger: &Ledger,
    ledger_id: &str,
    batch_size: usize,
) -> Result<ShipOutcome, CentralError> {
    let runs = ledger.unshipped_runs(batch_size)?;
    let mut outcome = ShipOutcome::default();
    if runs.is_empty() {
        return Ok(outcome);
    }
    if let Err(error) = ship_runs(client, target, ledger_id, &runs, &mut outcome) {
        if matches!(error, CentralError::Alarm { .. }) {
            raise_alarm(client, target, &error);
        }
        return Err(error);
    }
    // Only now, with the central commit acknowledged, does the local outbox let go of them.
    let run_ids: Vec<i64> = runs.iter().map(|run| run.run_id).collect();
    ledger.mark_runs_shipped(&run_ids)?;
    Ok(outcome)
}

/// The batch's central transaction: every run inserted (or recognised as already there),
/// linked, its unit recorded, the station's head moved; committed only when all of it worked.
fn ship_runs(
    client: &mut Client,
    target: &str,
    ledger_id: &str,
    runs: &[RecordedRun],
    outcome: &mut ShipOutcome,
) -> Result<(), CentralError> {
    let mut transaction = client.transaction().map_err(query_failed(target, "starting a batch"))?;
    let stations: BTreeSet<&str> = runs.iter().map(|run| run.station.as_str()).collect();
    for station in stations {
        register_station(&mut transaction, target, station, ledger_id)?;
    }
    let insert_statement = transaction
        .prepare(
            "INSERT INTO imprint.runs (station, station_sequence, local_run_id, operator, probe,
                 profile, profile_sha256, images, chip_uid, serial, device_id, started_at,
                 finished_at, result, failing_step, reason, steps, prev_hash, record_hash,
                 canonical_record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $19, $20)
             ON CONFLICT (station, station_sequence) DO NOTHING",
        )
        .map_err(query_failed(target, "preparing the run insert"))?;
    for run in runs {
        let link = RunLink::of(run)?;
        if !insert_run(&mut transaction, &insert_statement, target, run, &link)? {
            outcome.runs_already_present += 1;
            continue;
        }
        check_predecessor(&mut transaction, target, run, &link)?;
        if record_unit(&mut transaction, target, run, link.sequence)? {
            outcome.duplicate_serial_alarms += 1;
        }
        transaction
            .execute(
                "UPDATE imprint.stations SET head_sequence = $2, head_hash = $3
                 WHERE name = $1 AND head_sequence < $2",
                &[&run.station, &link.sequence, &link.record_hash.as_slice()],
            )
            .map_err(query_failed(target, "advancing the station's central head"))?;
        outcome.runs_inserted += 1;
    }
    transaction.commit().map_err(query_failed(target, "committing the batch"))
}

/// A run's place in its station's chain, decoded from the local record.
struct RunLink {
    sequence: i64,
    prev_hash: [u8; 32],
    record_hash: [u8; 32],
}

impl RunLink {
    fn of(run: &RecordedRun) -> Result<RunLink, CentralError> {
        Ok(RunLink {
            sequence: i64::try_from(run.station_sequence).unwrap_or(i64::MAX),
            prev_hash: hash_of(run, "prev_hash", &run.prev_hash)?,
            record_hash: hash_of(run, "record_hash", &run.record_hash)?,
        })
    }
}

fn alarm(run: &RecordedRun, kind: &'static str, detail: String) -> CentralError {
    CentralError::Alarm { kind, station: run.station.clone(), station_sequence: run.station_sequence, detail }
}

/// Inserts the run; returns false when the database already held it with the same hash (a
/// re-delivery), and raises `duplicate-mismatch` when it held a different record there.
fn insert_run(
    transaction: &mut Transaction<'_>,
    insert_statement: &Statement,
    target: &str,
    run: &RecordedRun,
    link: &RunLink,
) -> Result<bool, CentralError> {
    let images = canonical_json(&serde_json::to_value(&run.images).unwrap_or_default());
    let steps = canonical_json(&serde_json::to_value(&run.steps).unwrap_or_default());
    let canonical_record = run.canonical_json();
    let inserted = transaction
        .execute(
            insert_statement,
            &[
                &run.station,
                &link.sequence,
                &run.run_id,
                &run.operator,
                &run.probe,
                &run.profile,
                &run.profile_sha256,
                &images,
                &run.chip_uid,
                &run.serial,
                &run.device_id,
                &run.started_at,
                &run.finished_at,
                &run.result,
                &run.failing_step,
                &run.reason,
                &steps,
                &link.prev_hash.as_slice(),
                &link.record_hash.as_slice(),
                &canonical_record,
            ],
        )
        .map_err(query_failed(target, "inserting a run"))?;
    if inserted > 0 {
        return Ok(true);
    }
    let stored: Vec<u8> = transaction
        .query_one(
            "SELECT record_hash FROM imprint.runs WHERE station = $1 AND station_sequence = $2",
            &[&run.station, &link.sequence],
        )
        .and_then(|row| row.try_get(0))
        .map_err(query_failed(target, "reading the stored run"))?;
    if stored != link.record_hash {
        return Err(alarm(
            run,
            "duplicate-mismatch",
            format!(
                "the central database already holds this sequence with record_hash {}, the local record has {}",
                hex::encode(&stored),
                run.record_hash
            ),
        ));
    }
    Ok(false)
}

/// A new run must link to the central copy of its predecessor (or to the genesis hash).
fn check_predecessor(
    transaction: &mut Transaction<'_>,
    target: &str,
    run: &RecordedRun,
    link: &RunLink,
) -> Result<(), CentralError> {
    if run.station_sequence == 1 {
        if link.prev_hash != GENESIS_HASH {
            return Err(alarm(
                run,
                "broken-link",
                format!("the first run's prev_hash is {}, expected 64 zeros", run.prev_hash),
            ));
        }
        return Ok(());
    }
    let predecessor: Option<Vec<u8>> = transaction
        .query_opt(
            "SELECT record_hash FROM imprint.runs WHERE station = $1 AND station_sequence = $2",
            &[&run.station, &(link.sequence - 1)],
        )
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .map_err(query_failed(target, "reading the predecessor run"))?;
    match predecessor {
        None => Err(alarm(
            run,
            "missing-predecessor",
            format!(
                "the central database lacks sequence {} although the local ledger marked it shipped (was the central database restored from an older backup?)",
                run.station_sequence - 1
            ),
        )),
        Some(predecessor) if predecessor != link.prev_hash => Err(alarm(
            run,
            "broken-link",
            format!(
                "prev_hash {} does not match the central record_hash {} of sequence {}",
                run.prev_hash,
                hex::encode(&predecessor),
                run.station_sequence - 1
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Records the run's unit and its issued serial; returns true when the serial was already
/// issued centrally to another chip (a `duplicate-serial` alarm row is stored, shipping goes on).
fn record_unit(
    transaction: &mut Transaction<'_>,
    target: &str,
    run: &RecordedRun,
    sequence: i64,
) -> Result<bool, CentralError> {
    let (Some(chip_uid), Some(serial), Some(device_id)) = (&run.chip_uid, &run.serial, &run.device_id) else {
        return Ok(false);
    };
    transaction
        .execute(
            "INSERT INTO imprint.units (chip_uid, serial, device_id, profile, station,
                 station_sequence, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (chip_uid) DO UPDATE SET serial = EXCLUDED.serial,
                 device_id = EXCLUDED.device_id, profile = EXCLUDED.profile,
                 station = EXCLUDED.station, station_sequence = EXCLUDED.station_sequence,
                 finished_at = EXCLUDED.finished_at
             WHERE imprint.units.finished_at <= EXCLUDED.finished_at",
            &[chip_uid, serial, device_id, &run.profile, &run.station, &sequence, &run.finished_at],
        )
        .map_err(query_failed(target, "recording the unit"))?;
    let issued = transaction
        .execute(
            "INSERT INTO imprint.issued_serials (serial, chip_uid, device_id, station, station_sequence)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (serial) DO NOTHING",
            &[serial, chip_uid, device_id, &run.station, &sequence],
        )
        .map_err(query_failed(target, "recording the issued serial"))?;
    if issued > 0 {
        return Ok(false);
    }
    let row = transaction
        .query_one(
            "SELECT chip_uid, station, station_sequence FROM imprint.issued_serials WHERE serial = $1",
            &[serial],
        )
        .map_err(query_failed(target, "reading the issued serial"))?;
    let owner_chip: String = row.try_get(0).map_err(query_failed(target, "reading the issued serial"))?;
    if owner_chip == *chip_uid {
        return Ok(false);
    }
    let owner_station: String = row.try_get(1).map_err(query_failed(target, "reading the issued serial"))?;
    let owner_sequence: i64 = row.try_get(2).map_err(query_failed(target, "reading the issued serial"))?;
    let detail = format!(
        "serial {serial} of chip {chip_uid} was already issued to chip {owner_chip} (station {owner_station:?} sequence {owner_sequence})"
    );
    tracing::error!(station = %run.station, station_sequence = run.station_sequence, "ALARM duplicate-serial: {detail}");
    transaction
        .execute(
            "INSERT INTO imprint.alarms (kind, station, station_sequence, detail)
             VALUES ('duplicate-serial', $1, $2, $3)",
            &[&run.station, &sequence, &detail],
        )
        .map_err(query_failed(target, "recording an alarm"))?;
    Ok(true)
}
