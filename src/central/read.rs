//! Reading the central database back: verifying every station's chain there, exporting runs
//! across all stations in the local export formats, and one unit's history across stations.
//!
//! Both read one consistent snapshot (a read-only `REPEATABLE READ` transaction) and stream
//! the runs, so memory does not grow with the database. Verification rebuilds each run from
//! its columns and feeds it to [`ChainVerifier`], the checker `imprint log verify` uses on a
//! local ledger; it also re-hashes the stored canonical text, so an edit of either the columns
//! or the canonical record is found, and the first bad record is named.

use std::io::Write;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{IsolationLevel, Row, Transaction};

use super::schema::check_schema;
use super::{CentralConfig, CentralError, query_failed};
use crate::ledger::{
    CertificateBundleSummary, CertificateSelection, ChainHead, ChainProblem, ChainVerifier, ExportFilter,
    ExportFormat, ExportHeader, ExportSummary, LedgerError, ProblemKind, RecordedRun, RetiredIdentity,
    RunResult, UnitHistory, UnitRow, VerifyOptions, VerifyReport, chain_hash, write_certificate_bundle,
    write_export,
};

const RUN_SELECT: &str = "SELECT station, station_sequence, local_run_id, operator, probe, profile,
        profile_sha256, images, chip_uid, serial, device_id, started_at, finished_at, result,
        failing_step, reason, steps, prev_hash, record_hash, canonical_record,
        to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
    FROM imprint.runs";

/// A run rebuilt from its central row, with the stored canonical text and raw hashes.
struct CentralRun {
    run: RecordedRun,
    canonical_record: String,
    prev_hash: Vec<u8>,
    record_hash: Vec<u8>,
}

fn run_from_row(row: &Row) -> Result<CentralRun, String> {
    let text = |index: usize| row.try_get::<_, String>(index).map_err(|error| error.to_string());
    let optional = |index: usize| row.try_get::<_, Option<String>>(index).map_err(|error| error.to_string());
    let bytes = |index: usize| row.try_get::<_, Vec<u8>>(index).map_err(|error| error.to_string());
    let sequence: i64 = row.try_get(1).map_err(|error| error.to_string())?;
    let images =
        serde_json::from_str(&text(7)?).map_err(|error| format!("column images is not valid: {error}"))?;
    let steps =
        serde_json::from_str(&text(16)?).map_err(|error| format!("column steps is not valid: {error}"))?;
    let prev_hash = bytes(17)?;
    let record_hash = bytes(18)?;
    let mut run = RecordedRun {
        station: text(0)?,
        station_sequence: u64::try_from(sequence).unwrap_or(0),
        run_id: row.try_get(2).map_err(|error| error.to_string())?,
        operator: text(3)?,
        probe: text(4)?,
        profile: text(5)?,
        profile_sha256: text(6)?,
        images,
        chip_uid: optional(8)?,
        serial: optional(9)?,
        device_id: optional(10)?,
        device_certificate_fingerprint: None,
        device_certificate_serial: None,
        work_order: None,
        started_at: text(11)?,
        finished_at: text(12)?,
        result: text(13)?,
        failing_step: optional(14)?,
        reason: optional(15)?,
        steps,
        prev_hash: hex::encode(&prev_hash),
        record_hash: hex::encode(&record_hash),
        shipped_at: optional(20)?,
    };
    run.fill_derived_fields();
    Ok(CentralRun { run, canonical_record: text(19)?, prev_hash, record_hash })
}

pub(super) fn snapshot<'client>(
    client: &'client mut postgres::Client,
    target: &str,
) -> Result<Transaction<'client>, CentralError> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(query_failed(target, "starting a read snapshot"))
}

fn chain_heads(transaction: &mut Transaction<'_>, target: &str) -> Result<Vec<ChainHead>, CentralError> {
    let rows = transaction
        .query("SELECT name, head_sequence, head_hash FROM imprint.stations ORDER BY name", &[])
        .map_err(query_failed(target, "reading the stations' chain heads"))?;
    rows.iter()
        .map(|row| {
            let sequence: i64 = row.try_get(1)?;
            let hash: Vec<u8> = row.try_get(2)?;
            Ok(ChainHead {
                station: row.try_get(0)?,
                station_sequence: u64::try_from(sequence).unwrap_or(0),
                record_hash: hex::encode(hash),
            })
        })
        .collect::<Result<Vec<_>, postgres::Error>>()
        .map_err(query_failed(target, "reading the stations' chain heads"))
}

/// Verifies every station's chain in the central database against the heads in
/// `imprint.stations` and `options`. Like [`crate::ledger::Ledger::verify`], tampering is a
/// problem in the report, not an error.
pub fn verify_central(config: &CentralConfig, options: &VerifyOptions) -> Result<VerifyReport, CentralError> {
    let target = config.target();
    let mut client = config.connect()?;
    check_schema(&mut client, target)?;
    let mut transaction = snapshot(&mut client, target)?;
    let heads = chain_heads(&mut transaction, target)?;
    let mut verifier = ChainVerifier::new(options);
    {
        let parameters: [&(dyn ToSql + Sync); 0] = [];
        let mut rows = transaction
            .query_raw(&format!("{RUN_SELECT} ORDER BY station, station_sequence"), parameters)
            .map_err(query_failed(target, "querying runs"))?;
        while let Some(row) = rows.next().map_err(query_failed(target, "reading runs"))? {
            let location = "central table imprint.runs".to_owned();
            let central = match run_from_row(&row) {
                Ok(central) => central,
                Err(reason) => {
                    verifier.report(ChainProblem {
                        location,
                        station: row.try_get(0).ok(),
                        station_sequence: row
                            .try_get::<_, i64>(1)
                            .ok()
                            .and_then(|value| u64::try_from(value).ok()),
                        serial: row.try_get(9).ok().flatten(),
                        kind: ProblemKind::Malformed { reason },
                    });
                    break;
                }
            };
            if !verifier.check(location.clone(), &central.run) {
                break;
            }
            // The columns hash to record_hash (checked above); the stored canonical text must too.
            let from_canonical: Option<[u8; 32]> = <[u8; 32]>::try_from(central.prev_hash.as_slice())
                .ok()
                .map(|prev_hash| chain_hash(&prev_hash, &central.canonical_record));
            if from_canonical.map(|hash| hash.to_vec()) != Some(central.record_hash.clone()) {
                verifier.report(ChainProblem {
                    location: "central table imprint.runs, column canonical_record".to_owned(),
                    station: Some(central.run.station.clone()),
                    station_sequence: Some(central.run.station_sequence),
                    serial: central.run.serial.clone(),
                    kind: ProblemKind::HashMismatch {
                        stored: central.run.record_hash.clone(),
                        recomputed: from_canonical.map(hex::encode).unwrap_or_default(),
                    },
                });
                break;
            }
        }
    }
    let report = verifier.finish(heads);
    transaction.commit().map_err(query_failed(target, "ending the read snapshot"))?;
    Ok(report)
}

/// Writes the runs of every station selected by `filter` to `out` in `format`, from one
/// snapshot of the central database: the same records, fields and trailer as a local export
/// (`shipped_at` is when the central database received the run; `run_id` is the station's
/// local id), so `imprint log verify FILE` checks it.
pub fn export_central(
    config: &CentralConfig,
    format: ExportFormat,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> Result<ExportSummary, CentralError> {
    let target = config.target();
    let header = ExportHeader::now(filter)?;
    let mut client = config.connect()?;
    check_schema(&mut client, target)?;
    let mut transaction = snapshot(&mut client, target)?;
    let heads = chain_heads(&mut transaction, target)?;

    let result_text = filter.result.map(RunResult::as_str);
    let (conditions, parameters) = filter_conditions(filter, &result_text);
    let sql = format!("{RUN_SELECT} WHERE {} ORDER BY station, station_sequence", conditions.join(" AND "));
    let summary = write_export(
        format,
        &header,
        heads,
        out,
        |visit: &mut dyn FnMut(RecordedRun) -> Result<bool, LedgerError>| {
            stream_runs(&mut transaction, target, &sql, &parameters, visit)
        },
    )?;
    transaction.commit().map_err(query_failed(target, "ending the read snapshot"))?;
    Ok(summary)
}

/// The conditions on `imprint.runs` columns that select what `filter` selects (the same as a
/// local export's; never empty, so they can be joined with `AND` after `WHERE`), numbered from
/// `$1`, and their parameters. `result_text` is the filter's result as text, if it applies.
pub(super) fn filter_conditions<'a>(
    filter: &'a ExportFilter,
    result_text: &'a Option<&'static str>,
) -> (Vec<String>, Vec<&'a (dyn ToSql + Sync)>) {
    let mut conditions = vec!["true".to_owned()];
    let mut parameters: Vec<&(dyn ToSql + Sync)> = Vec::new();
    // Text comparison of started_at must be byte order, as in SQLite, whatever the collation.
    if let Some(since) = &filter.since {
        parameters.push(since);
        conditions.push(format!("started_at COLLATE \"C\" >= ${}", parameters.len()));
    }
    if let Some(until) = &filter.until {
        parameters.push(until);
        conditions.push(format!("started_at COLLATE \"C\" < ${}", parameters.len()));
    }
    if let Some(profile) = &filter.profile {
        parameters.push(profile);
        conditions.push(format!("profile = ${}", parameters.len()));
    }
    if let Some(result) = result_text {
        parameters.push(result);
        conditions.push(format!("result = ${}", parameters.len()));
    }
    (conditions, parameters)
}

/// Runs `sql` (a [`RUN_SELECT`] query) in `transaction` and hands each run to `visit`, streaming,
/// until it returns false.
fn stream_runs(
    transaction: &mut Transaction<'_>,
    target: &str,
    sql: &str,
    parameters: &[&(dyn ToSql + Sync)],
    visit: &mut dyn FnMut(RecordedRun) -> Result<bool, LedgerError>,
) -> Result<(), CentralError> {
    let mut rows = transaction
        .query_raw(sql, parameters.iter().copied())
        .map_err(query_failed(target, "querying runs"))?;
    while let Some(row) = rows.next().map_err(query_failed(target, "reading runs"))? {
        let central = run_from_row(&row)
            .map_err(|reason| LedgerError::invalid("central run row", "a run imprint stored", reason))?;
        if !visit(central.run)? {
            break;
        }
    }
    Ok(())
}

/// Writes the identity certificates of every station's runs selected by `filter` as a PEM
/// bundle, from one snapshot of the central database, as [`crate::ledger::Ledger::export_device_certificates`]
/// does for a local ledger: per chip whose latest run (by finish time, across stations)
/// passed, the certificate that run issued; or every certificate issued, in chain order.
pub fn export_device_certificates_central(
    config: &CentralConfig,
    selection: CertificateSelection,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> Result<CertificateBundleSummary, CentralError> {
    let target = config.target();
    let mut client = config.connect()?;
    check_schema(&mut client, target)?;
    let mut transaction = snapshot(&mut client, target)?;
    let result_text = match selection {
        CertificateSelection::ProvisionedUnits => None,
        CertificateSelection::EveryIssued => filter.result.map(RunResult::as_str),
    };
    let (mut conditions, parameters) = filter_conditions(filter, &result_text);
    let order_sql = match selection {
        // Every run of a unit, latest last: only a unit's last run decides.
        CertificateSelection::ProvisionedUnits => {
            conditions.push("chip_uid IS NOT NULL".to_owned());
            "chip_uid COLLATE \"C\", finished_at COLLATE \"C\", station COLLATE \"C\", station_sequence"
        }
        CertificateSelection::EveryIssued => "station, station_sequence",
    };
    let sql = format!("{RUN_SELECT} WHERE {} ORDER BY {order_sql}", conditions.join(" AND "));
    let source = std::path::PathBuf::from(format!("central {target}"));
    let summary = write_certificate_bundle(
        selection,
        &source,
        out,
        |visit: &mut dyn FnMut(RecordedRun) -> Result<bool, LedgerError>| {
            stream_runs(&mut transaction, target, &sql, &parameters, visit)
        },
    )?;
    transaction.commit().map_err(query_failed(target, "ending the read snapshot"))?;
    Ok(summary)
}

/// A unit's history across all stations, found by serial (current or earlier) or chip UID:
/// its latest identity (`imprint.units`), earlier serials of the chip, and every run of the
/// chip from every station, oldest first. The central database knows identities only through
/// runs, so an identity's `created_at` is the start of the first run that carried it, and an
/// earlier serial's `retired_at` is the end of the last run that carried it.
pub fn unit_history_central(config: &CentralConfig, key: &str) -> Result<Option<UnitHistory>, CentralError> {
    let target = config.target();
    let mut client = config.connect()?;
    check_schema(&mut client, target)?;
    let mut transaction = snapshot(&mut client, target)?;
    let lowercase_key = key.to_ascii_lowercase();
    let chip_uid: Option<String> = transaction
        .query_opt(
            "SELECT chip_uid FROM imprint.issued_serials WHERE serial = $1
             UNION ALL SELECT chip_uid FROM imprint.runs WHERE chip_uid = $2
             LIMIT 1",
            &[&key, &lowercase_key],
        )
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .map_err(query_failed(target, "finding the unit"))?;
    let Some(chip_uid) = chip_uid else {
        transaction.commit().map_err(query_failed(target, "ending the read snapshot"))?;
        return Ok(None);
    };
    let mut runs = Vec::new();
    let rows = transaction
        .query(
            &format!("{RUN_SELECT} WHERE chip_uid = $1 ORDER BY started_at, station, station_sequence"),
            &[&chip_uid],
        )
        .map_err(query_failed(target, "reading the unit's runs"))?;
    for row in &rows {
        let central = run_from_row(row)
            .map_err(|reason| LedgerError::invalid("central run row", "a run imprint stored", reason))?;
        runs.push(central.run);
    }
    let current = transaction
        .query_opt("SELECT serial, device_id, profile FROM imprint.units WHERE chip_uid = $1", &[&chip_uid])
        .map_err(query_failed(target, "reading the unit"))?
        .map(|row| -> Result<UnitRow, postgres::Error> {
            let serial: String = row.try_get(0)?;
            let created_at = runs
                .iter()
                .find(|run| run.serial.as_deref() == Some(serial.as_str()))
                .map(|run| run.started_at.clone())
                .unwrap_or_default();
            Ok(UnitRow { serial, device_id: row.try_get(1)?, profile: row.try_get(2)?, created_at })
        })
        .transpose()
        .map_err(query_failed(target, "reading the unit"))?;
    let mut retired = Vec::new();
    if let Some(current) = &current {
        let mut seen = Vec::new();
        for run in &runs {
            let (Some(serial), Some(device_id)) = (&run.serial, &run.device_id) else { continue };
            if *serial == current.serial || seen.contains(serial) {
                continue;
            }
            seen.push(serial.clone());
            let last_finished = runs
                .iter()
                .filter(|other| other.serial.as_ref() == Some(serial))
                .map(|other| other.finished_at.clone())
                .max()
                .unwrap_or_default();
            retired.push(RetiredIdentity {
                serial: serial.clone(),
                device_id: device_id.clone(),
                profile: run.profile.clone(),
                created_at: run.started_at.clone(),
                retired_at: last_finished,
                replaced_by_serial: current.serial.clone(),
            });
        }
    }
    transaction.commit().map_err(query_failed(target, "ending the read snapshot"))?;
    Ok(Some(UnitHistory { chip_uid, current, retired, runs }))
}
