//! Reading runs back: the streaming run iterator every reader is built on (export, verify,
//! show), the chip lookup, a unit's whole history and the summary statistics.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, ToSql};
use serde::{Deserialize, Serialize};

use super::canonical::{RecordedImage, RecordedRun, RecordedStep};
use super::export::{ExportFilter, filter_conditions};
use super::model::{ReworkPolicy, RunResult, UnitIdentity};
use super::{Ledger, LedgerError, database_error};

const RUN_COLUMNS: &str = "r.id, s.name, r.station_sequence, o.name, r.probe, p.name,
    p.profile_sha256, p.images, r.chip_uid, r.serial, r.device_id, r.started_at, r.finished_at,
    r.result, r.failing_step, r.reason, r.prev_hash, r.record_hash, r.shipped_at,
    st.ordinal, st.name, st.status, st.started_at, st.duration_ms, st.detail";

const RUN_TABLES: &str = "runs r
    JOIN stations s ON s.id = r.station_id
    JOIN operators o ON o.id = r.operator_id
    JOIN profiles p ON p.id = r.profile_id
    LEFT JOIN steps st ON st.run_id = r.id";

/// Streams runs with their steps in `order_sql` order (which must keep a run's step rows
/// together and end with `st.ordinal`), calling `visit` once per run; `visit` returns `false`
/// to stop early. Memory stays at one run whatever the ledger's size.
pub(crate) fn for_each_run(
    connection: &Connection,
    path: &Path,
    where_sql: &str,
    order_sql: &str,
    parameters: &[&dyn ToSql],
    mut visit: impl FnMut(RecordedRun) -> Result<bool, LedgerError>,
) -> Result<(), LedgerError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM {RUN_TABLES} {where_sql} ORDER BY {order_sql}");
    let mut statement = connection.prepare(&sql).map_err(database_error(path, "preparing the run query"))?;
    let mut rows = statement.query(parameters).map_err(database_error(path, "querying runs"))?;
    let mut current: Option<RecordedRun> = None;
    // Many runs share a profile row: parse its images once.
    let mut images_cache: Option<(String, Vec<RecordedImage>)> = None;
    while let Some(row) = rows.next().map_err(database_error(path, "reading runs"))? {
        let read =
            |source| LedgerError::Database { path: path.to_owned(), operation: "reading a run row", source };
        let run_id: i64 = row.get(0).map_err(read)?;
        if current.as_ref().is_some_and(|run| run.run_id != run_id)
            && let Some(mut finished) = current.take()
        {
            finished.fill_derived_fields();
            if !visit(finished)? {
                return Ok(());
            }
        }
        if current.is_none() {
            let station: String = row.get(1).map_err(read)?;
            let station_sequence: i64 = row.get(2).map_err(read)?;
            let corrupt = |what: String| LedgerError::Corrupt {
                path: path.to_owned(),
                what: format!("run {run_id} (station {station:?} sequence {station_sequence}): {what}"),
            };
            let images_text: String = row.get(7).map_err(read)?;
            let images = match &images_cache {
                Some((text, images)) if *text == images_text => images.clone(),
                _ => {
                    let images: Vec<RecordedImage> = serde_json::from_str(&images_text)
                        .map_err(|error| corrupt(format!("profile images are not valid: {error}")))?;
                    images_cache = Some((images_text, images.clone()));
                    images
                }
            };
            let prev_hash: Vec<u8> = row.get(16).map_err(read)?;
            let record_hash: Vec<u8> = row.get(17).map_err(read)?;
            current = Some(RecordedRun {
                station: station.clone(),
                station_sequence: u64::try_from(station_sequence)
                    .map_err(|_| corrupt("negative station_sequence".into()))?,
                run_id,
                operator: row.get(3).map_err(read)?,
                probe: row.get(4).map_err(read)?,
                profile: row.get(5).map_err(read)?,
                profile_sha256: row.get(6).map_err(read)?,
                images,
                chip_uid: row.get(8).map_err(read)?,
                serial: row.get(9).map_err(read)?,
                device_id: row.get(10).map_err(read)?,
                device_certificate_fingerprint: None,
                device_certificate_serial: None,
                work_order: None,
                started_at: row.get(11).map_err(read)?,
                finished_at: row.get(12).map_err(read)?,
                result: row.get(13).map_err(read)?,
                failing_step: row.get(14).map_err(read)?,
                reason: row.get(15).map_err(read)?,
                steps: Vec::new(),
                prev_hash: hex::encode(prev_hash),
                record_hash: hex::encode(record_hash),
                shipped_at: row.get(18).map_err(read)?,
            });
        }
        let ordinal: Option<i64> = row.get(19).map_err(read)?;
        if let (Some(ordinal), Some(run)) = (ordinal, current.as_mut()) {
            let detail_text: String = row.get(24).map_err(read)?;
            let detail = serde_json::from_str(&detail_text).map_err(|error| LedgerError::Corrupt {
                path: path.to_owned(),
                what: format!(
                    "run {run_id} (station {:?} sequence {}) step {ordinal}: detail is not JSON: {error}",
                    run.station, run.station_sequence
                ),
            })?;
            let duration_ms: i64 = row.get(23).map_err(read)?;
            run.steps.push(RecordedStep {
                ordinal: u32::try_from(ordinal).unwrap_or(u32::MAX),
                name: row.get(20).map_err(read)?,
                status: row.get(21).map_err(read)?,
                started_at: row.get(22).map_err(read)?,
                duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                detail,
            });
        }
    }
    if let Some(mut finished) = current {
        finished.fill_derived_fields();
        visit(finished)?;
    }
    Ok(())
}

pub(crate) fn lookup_chip(
    connection: &Connection,
    path: &Path,
    chip_uid: &str,
) -> Result<Option<UnitIdentity>, LedgerError> {
    let row: Option<(String, String, String)> = connection
        .prepare_cached("SELECT serial, device_id, profile FROM units WHERE chip_uid = ?1")
        .and_then(|mut statement| {
            statement.query_row([chip_uid], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional()
        })
        .map_err(database_error(path, "looking up the chip"))?;
    row.map(|(serial, device_id, profile_name)| {
        let device_id = uuid::Uuid::parse_str(&device_id).map_err(|_| LedgerError::Corrupt {
            path: path.to_owned(),
            what: format!("unit {serial} has device_id {device_id:?}, not a UUID"),
        })?;
        Ok(UnitIdentity { chip_uid_hex: chip_uid.to_owned(), serial, device_id, profile_name })
    })
    .transpose()
}

/// A unit's current identity row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRow {
    pub serial: String,
    pub device_id: String,
    pub profile: String,
    pub created_at: String,
}

/// An identity the unit had before a rework with policy `issue-new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredIdentity {
    pub serial: String,
    pub device_id: String,
    pub profile: String,
    pub created_at: String,
    pub retired_at: String,
    pub replaced_by_serial: String,
}

/// Everything the ledger knows about one chip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitHistory {
    pub chip_uid: String,
    /// `None` when the chip was seen but never got an identity (it failed before inject).
    pub current: Option<UnitRow>,
    /// Oldest first.
    pub retired: Vec<RetiredIdentity>,
    /// Every run of this chip, oldest first, with steps.
    pub runs: Vec<RecordedRun>,
}

/// Summary numbers for `imprint log stats`, over the runs a filter selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerStats {
    /// The runs these numbers cover (the export's filter; times in stored form).
    pub filter: ExportFilter,
    /// Units with an identity (the whole ledger, whatever the filter).
    pub units: u64,
    /// Identities retired by a rework (the whole ledger, whatever the filter).
    pub retired_identities: u64,
    pub runs: u64,
    pub runs_passed: u64,
    pub runs_failed: u64,
    /// Runs ended by an abort while in flight: neither passed nor failed, outside the yield.
    pub runs_aborted: u64,
    /// Runs that failed before the chip was identified (they count in `runs_failed` but belong
    /// to no unit).
    pub runs_without_chip_uid: u64,
    /// Distinct chips with at least one run (with a filter: whose first run is selected).
    pub chips_tested: u64,
    /// Of those, the chips whose first run passed.
    pub chips_passed_first_time: u64,
    /// `chips_passed_first_time / chips_tested` in percent; `None` before the first run.
    pub first_pass_yield_percent: Option<f64>,
    /// Median of `finished_at - started_at` over all runs.
    pub median_run_ms: Option<u64>,
    /// Per step name, in the order steps usually run.
    pub steps: Vec<StepStats>,
    /// Failed runs per failing step, most frequent first (then by name; a failed run that names
    /// no step counts under `None`). Front ends map steps to failure categories.
    pub failures_by_step: Vec<FailingStepCount>,
}

/// How many failed runs failed at one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingStepCount {
    pub failing_step: Option<String>,
    pub runs: u64,
}

/// Per-step numbers; skipped steps count only in `skipped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStats {
    pub name: String,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Median duration over passed and failed executions (the lower middle value).
    pub median_duration_ms: Option<u64>,
}

/// The chip a serial was issued to (as its current serial or a retired one), if any.
fn serial_owner(connection: &Connection, path: &Path, serial: &str) -> Result<Option<String>, LedgerError> {
    connection
        .prepare_cached(
            "SELECT chip_uid FROM units WHERE serial = ?1
             UNION ALL SELECT chip_uid FROM identity_history WHERE serial = ?1 LIMIT 1",
        )
        .and_then(|mut statement| statement.query_row([serial], |row| row.get(0)).optional())
        .map_err(database_error(path, "looking up the serial's unit"))
}

impl Ledger {
    /// Whether a scanned label may become the serial of the unit with chip `chip_uid_hex`
    /// (`None`: the chip is not known yet), read-only and before anything is written to the
    /// unit: the answer `allocate-identity` will give. The chip's own serial coming back is a
    /// rework under [`ReworkPolicy::ReuseIdentity`] (any other label is then
    /// [`LedgerError::ScannedSerialMismatch`]); otherwise a serial ever issued, to any chip, is
    /// [`LedgerError::SerialAlreadyIssued`] naming the chip it belongs to. With no chip given,
    /// a label issued before is refused only when the policy could never accept it (not
    /// `reuse-identity`), since it may be that chip's own label coming back.
    pub fn check_scanned_serial(
        &self,
        chip_uid_hex: Option<&str>,
        scanned: &str,
        policy: ReworkPolicy,
    ) -> Result<(), LedgerError> {
        super::write::check_serial_text("scanned_serial", scanned)?;
        let chip_uid =
            chip_uid_hex.map(|chip| super::write::normalize_chip_uid("chip_uid_hex", chip)).transpose()?;
        self.read(|connection, path| {
            let known = match &chip_uid {
                Some(chip_uid) => lookup_chip(connection, path, chip_uid)?,
                None => None,
            };
            if let Some(known) = known.filter(|_| policy == ReworkPolicy::ReuseIdentity) {
                return if known.serial == scanned {
                    Ok(())
                } else {
                    Err(LedgerError::ScannedSerialMismatch {
                        chip_uid: known.chip_uid_hex,
                        serial: known.serial,
                        scanned: scanned.to_string(),
                    })
                };
            }
            match serial_owner(connection, path, scanned)? {
                Some(owner) if chip_uid.is_some() || policy != ReworkPolicy::ReuseIdentity => {
                    Err(LedgerError::SerialAlreadyIssued { serial: scanned.to_string(), chip_uid: owner })
                }
                _ => Ok(()),
            }
        })
    }

    /// The chip a serial was issued to, current or retired (`None`: never issued).
    pub fn serial_owner(&self, serial: &str) -> Result<Option<String>, LedgerError> {
        self.read(|connection, path| serial_owner(connection, path, serial))
    }

    /// Everything about the unit known by `serial_or_chip_uid`: a current or retired serial,
    /// or a chip UID (hex). `None` when the ledger has never seen it.
    pub fn unit_history(&self, serial_or_chip_uid: &str) -> Result<Option<UnitHistory>, LedgerError> {
        self.read(|connection, path| unit_history(connection, path, serial_or_chip_uid))
    }

    /// Units, runs, yields and median times over the whole ledger.
    pub fn stats(&self) -> Result<LedgerStats, LedgerError> {
        self.stats_filtered(&ExportFilter::default())
    }

    /// The same numbers over the runs `filter` selects (the export's filter: `since`/`until`
    /// on `started_at`, profile, result), from one snapshot.
    pub fn stats_filtered(&self, filter: &ExportFilter) -> Result<LedgerStats, LedgerError> {
        self.read(|connection, path| stats(connection, path, filter))
    }
}

fn find_chip(connection: &Connection, path: &Path, key: &str) -> Result<Option<String>, LedgerError> {
    let lowercase = key.to_ascii_lowercase();
    // Exact matches first; then serials ignoring case (serials are ASCII; `sn000123` finds
    // `SN000123`), through the NOCASE indexes of schema version 3.
    let candidates: [(&str, &str); 9] = [
        ("SELECT chip_uid FROM units WHERE serial = ?1", key),
        ("SELECT chip_uid FROM identity_history WHERE serial = ?1", key),
        ("SELECT chip_uid FROM units WHERE chip_uid = ?1", &lowercase),
        ("SELECT chip_uid FROM identity_history WHERE chip_uid = ?1", &lowercase),
        ("SELECT chip_uid FROM runs WHERE chip_uid = ?1", &lowercase),
        ("SELECT chip_uid FROM runs WHERE serial = ?1 AND chip_uid IS NOT NULL", key),
        ("SELECT chip_uid FROM units WHERE serial = ?1 COLLATE NOCASE", key),
        ("SELECT chip_uid FROM identity_history WHERE serial = ?1 COLLATE NOCASE", key),
        ("SELECT chip_uid FROM runs WHERE serial = ?1 COLLATE NOCASE AND chip_uid IS NOT NULL", key),
    ];
    for (sql, parameter) in candidates {
        let found: Option<String> = connection
            .prepare_cached(&format!("{sql} LIMIT 1"))
            .and_then(|mut statement| statement.query_row([parameter], |row| row.get(0)).optional())
            .map_err(database_error(path, "looking up a serial or chip uid"))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn unit_history(connection: &Connection, path: &Path, key: &str) -> Result<Option<UnitHistory>, LedgerError> {
    let Some(chip_uid) = find_chip(connection, path, key)? else {
        return Ok(None);
    };
    let current = connection
        .prepare_cached("SELECT serial, device_id, profile, created_at FROM units WHERE chip_uid = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([&chip_uid], |row| {
                    Ok(UnitRow {
                        serial: row.get(0)?,
                        device_id: row.get(1)?,
                        profile: row.get(2)?,
                        created_at: row.get(3)?,
                    })
                })
                .optional()
        })
        .map_err(database_error(path, "reading the unit"))?;
    let retired = connection
        .prepare_cached(
            "SELECT serial, device_id, profile, created_at, retired_at, replaced_by_serial
             FROM identity_history WHERE chip_uid = ?1 ORDER BY id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([&chip_uid], |row| {
                    Ok(RetiredIdentity {
                        serial: row.get(0)?,
                        device_id: row.get(1)?,
                        profile: row.get(2)?,
                        created_at: row.get(3)?,
                        retired_at: row.get(4)?,
                        replaced_by_serial: row.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(database_error(path, "reading retired identities"))?;
    let mut runs = Vec::new();
    for_each_run(connection, path, "WHERE r.chip_uid = ?1", "r.id, st.ordinal", &[&chip_uid], |run| {
        runs.push(run);
        Ok(true)
    })?;
    Ok(Some(UnitHistory { chip_uid, current, retired, runs }))
}

fn count(
    connection: &Connection,
    path: &Path,
    sql: &str,
    parameters: &[&dyn ToSql],
) -> Result<u64, LedgerError> {
    let value: i64 =
        connection.query_row(sql, parameters, |row| row.get(0)).map_err(database_error(path, "counting"))?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// The selected runs: `FROM {SELECTED_RUNS} WHERE {conditions}` (the export's filter conditions
/// are on `runs r` and `profiles p`).
const SELECTED_RUNS: &str = "runs r JOIN profiles p ON p.id = r.profile_id";

fn stats(connection: &Connection, path: &Path, filter: &ExportFilter) -> Result<LedgerStats, LedgerError> {
    let result_text = filter.result.map(RunResult::as_str);
    let (mut conditions, parameters) = filter_conditions(filter, &result_text);
    conditions.insert(0, "1".to_owned());
    let selected = conditions.join(" AND ");
    let parameters = parameters.as_slice();
    let count_runs = |condition: &str| {
        count(
            connection,
            path,
            &format!("SELECT count(*) FROM {SELECTED_RUNS} WHERE {selected} AND {condition}"),
            parameters,
        )
    };
    let units = count(connection, path, "SELECT count(*) FROM units", &[])?;
    let retired_identities = count(connection, path, "SELECT count(*) FROM identity_history", &[])?;
    let runs = count_runs("1")?;
    let runs_passed = count_runs("r.result = 'pass'")?;
    let runs_aborted = count_runs("r.result = 'aborted'")?;
    let runs_without_chip_uid = count_runs("r.chip_uid IS NULL")?;
    // A chip's first run is its lowest run id (runs are inserted in the order they finish);
    // with a filter, the chips whose first run is selected. Aborted runs say nothing of the
    // board: they count in neither side of the yield.
    let first_runs = "r.id IN (SELECT min(id) FROM runs
                               WHERE chip_uid IS NOT NULL AND result != 'aborted' GROUP BY chip_uid)";
    let chips_tested = count_runs(first_runs)?;
    let chips_passed_first_time = count_runs(&format!("{first_runs} AND r.result = 'pass'"))?;
    let first_pass_yield_percent =
        (chips_tested > 0).then(|| 100.0 * chips_passed_first_time as f64 / chips_tested as f64);
    // Medians by sorted offset: SQLite's sorter spills to disk, so memory stays bounded.
    let median_run_ms: Option<f64> = if runs == 0 {
        None
    } else {
        let offset = ((runs - 1) / 2) as i64;
        let mut median_parameters = parameters.to_vec();
        median_parameters.push(&offset);
        connection
            .query_row(
                &format!(
                    "SELECT (julianday(r.finished_at) - julianday(r.started_at)) * 86400000.0 AS ms
                     FROM {SELECTED_RUNS} WHERE {selected} ORDER BY ms LIMIT 1 OFFSET ?{}",
                    median_parameters.len()
                ),
                median_parameters.as_slice(),
                |row| row.get(0),
            )
            .optional()
            .map_err(database_error(path, "computing the median run time"))?
    };
    let steps = step_stats(connection, path, &selected, parameters)?;
    let failures_by_step = failures_by_step(connection, path, &selected, parameters)?;
    Ok(LedgerStats {
        filter: filter.clone(),
        units,
        retired_identities,
        runs,
        runs_passed,
        runs_failed: runs - runs_passed - runs_aborted,
        runs_aborted,
        runs_without_chip_uid,
        chips_tested,
        chips_passed_first_time,
        first_pass_yield_percent,
        median_run_ms: median_run_ms.map(|ms| ms.round().max(0.0) as u64),
        steps,
        failures_by_step,
    })
}

/// Failed runs counted by failing step, most frequent first.
fn failures_by_step(
    connection: &Connection,
    path: &Path,
    selected: &str,
    parameters: &[&dyn ToSql],
) -> Result<Vec<FailingStepCount>, LedgerError> {
    let mut statement = connection
        .prepare(&format!(
            "SELECT r.failing_step, count(*) AS failed FROM {SELECTED_RUNS}
             WHERE {selected} AND r.result = 'fail'
             GROUP BY r.failing_step ORDER BY failed DESC, r.failing_step"
        ))
        .map_err(database_error(path, "counting failures by step"))?;
    statement
        .query_map(parameters, |row| {
            Ok(FailingStepCount {
                failing_step: row.get(0)?,
                runs: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(database_error(path, "counting failures by step"))
}

/// Per step name of the selected runs: passed, failed, skipped, and the median duration of
/// the executions that were not skipped.
fn step_stats(
    connection: &Connection,
    path: &Path,
    selected: &str,
    parameters: &[&dyn ToSql],
) -> Result<Vec<StepStats>, LedgerError> {
    let selected_steps = format!(
        "steps st JOIN runs r ON r.id = st.run_id JOIN profiles p ON p.id = r.profile_id WHERE {selected}"
    );
    let mut steps = Vec::new();
    let mut index_by_name = HashMap::new();
    {
        let mut statement = connection
            .prepare(&format!(
                "SELECT st.name, sum(st.status = 'passed'), sum(st.status = 'failed'),
                        sum(st.status = 'skipped')
                 FROM {selected_steps} GROUP BY st.name ORDER BY min(st.ordinal), st.name"
            ))
            .map_err(database_error(path, "counting steps"))?;
        let rows = statement
            .query_map(parameters, |row| {
                Ok(StepStats {
                    name: row.get(0)?,
                    passed: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    failed: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                    skipped: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    median_duration_ms: None,
                })
            })
            .map_err(database_error(path, "counting steps"))?;
        for step in rows {
            let step = step.map_err(database_error(path, "counting steps"))?;
            index_by_name.insert(step.name.clone(), steps.len());
            steps.push(step);
        }
    }
    let sorting =
        |source| LedgerError::Database { path: path.to_owned(), operation: "sorting step durations", source };
    let mut statement = connection
        .prepare(&format!(
            "SELECT st.name, st.duration_ms FROM {selected_steps} AND st.status != 'skipped'
             ORDER BY st.name, st.duration_ms"
        ))
        .map_err(&sorting)?;
    let mut rows = statement.query(parameters).map_err(&sorting)?;
    let mut current_name = String::new();
    let mut position_in_name = 0u64;
    while let Some(row) = rows.next().map_err(&sorting)? {
        let name: String = row.get(0).map_err(&sorting)?;
        if name != current_name {
            current_name = name;
            position_in_name = 0;
        }
        if let Some(&index) = index_by_name.get(&current_name) {
            let step = &mut steps[index];
            let executed = step.passed + step.failed;
            if executed > 0 && position_in_name == (executed - 1) / 2 {
                let duration_ms: i64 = row.get(1).map_err(&sorting)?;
                step.median_duration_ms = Some(u64::try_from(duration_ms).unwrap_or(0));
            }
        }
        position_in_name += 1;
    }
    Ok(steps)
}
