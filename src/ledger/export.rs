//! Streaming exports of the ledger (CSV, JSON, JSON lines) that carry the chain head, so an
//! export can be verified on its own (see [`super::verify`]) and checked against a head an
//! auditor noted earlier.
//!
//! Every format holds the same three kinds of record, in this order: one header (format
//! version, export time, filter), the runs (each with every recorded field, its steps and its
//! hashes), one trailer (each station's chain head at export time and the run count). Runs are
//! written as they are read, so memory stays bounded for any ledger size.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use rusqlite::{Connection, ToSql};
use serde::{Deserialize, Serialize};

use super::canonical::{RecordedRun, RecordedStep, canonical_json, format_timestamp};
use super::model::RunResult;
use super::query::for_each_run;
use super::{Ledger, LedgerError, database_error};

/// The `imprint_ledger_export` value of the header this build writes and reads.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

/// The export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One row per record; `images` and `steps` hold canonical JSON; header and trailer are
    /// rows whose `record_type` is `export` and `trailer`, with their JSON in column `export`.
    Csv,
    /// One JSON array: `[header, run, run, ..., trailer]`.
    Json,
    /// One JSON object per line: header line, run lines, trailer line.
    Jsonl,
}

/// Which runs to export. Times are in the stored form (see
/// [`super::canonical::parse_time_bound`]); `since` is inclusive, `until` exclusive, both on
/// `started_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFilter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub profile: Option<String>,
    pub result: Option<RunResult>,
}

impl ExportFilter {
    /// True when some runs may be left out, so gaps in a station's sequence are expected.
    pub fn is_filtered(&self) -> bool {
        *self != ExportFilter::default()
    }
}

/// The first record of every export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT_VERSION`].
    pub imprint_ledger_export: u32,
    pub exported_at: String,
    pub filter: ExportFilter,
}

/// The last link of one station's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    pub station: String,
    pub station_sequence: u64,
    /// Hex; the `record_hash` of the run at `station_sequence`.
    pub record_hash: String,
}

/// The last record of every export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTrailer {
    /// Every station's head in the whole ledger at export time (not just the exported runs).
    pub chain_head: Vec<ChainHead>,
    /// How many runs the export holds.
    pub record_count: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub record_count: u64,
    pub chain_heads: Vec<ChainHead>,
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 22] = [
    "record_type",
    "station",
    "station_sequence",
    "run_id",
    "started_at",
    "finished_at",
    "result",
    "failing_step",
    "reason",
    "operator",
    "probe",
    "profile",
    "profile_sha256",
    "images",
    "chip_uid",
    "serial",
    "device_id",
    "steps",
    "prev_hash",
    "record_hash",
    "shipped_at",
    "export",
];

impl ExportHeader {
    /// The header of an export made now with `filter`.
    pub fn now(filter: &ExportFilter) -> Result<ExportHeader, LedgerError> {
        Ok(ExportHeader {
            imprint_ledger_export: EXPORT_FORMAT_VERSION,
            exported_at: format_timestamp("exported_at", SystemTime::now())?,
            filter: filter.clone(),
        })
    }
}

impl Ledger {
    /// Writes the runs selected by `filter` to `out` in `format`, oldest first per station,
    /// from one consistent snapshot of the ledger.
    pub fn export(
        &self,
        format: ExportFormat,
        filter: &ExportFilter,
        out: &mut dyn Write,
    ) -> Result<ExportSummary, LedgerError> {
        let header = ExportHeader {
            imprint_ledger_export: EXPORT_FORMAT_VERSION,
            exported_at: format_timestamp("exported_at", SystemTime::now())?,
            filter: filter.clone(),
        };
        self.read(|connection, path| export(connection, path, format, &header, out))
    }
}

/// Every station's chain head as the `stations` table records it.
pub(crate) fn chain_heads(connection: &Connection, path: &Path) -> Result<Vec<ChainHead>, LedgerError> {
    let mut statement = connection
        .prepare("SELECT name, head_sequence, head_hash FROM stations ORDER BY id")
        .map_err(database_error(path, "reading chain heads"))?;
    let heads = statement
        .query_map([], |row| {
            let sequence: i64 = row.get(1)?;
            let hash: Vec<u8> = row.get(2)?;
            Ok(ChainHead {
                station: row.get(0)?,
                station_sequence: u64::try_from(sequence).unwrap_or(0),
                record_hash: hex::encode(hash),
            })
        })
        .map_err(database_error(path, "reading chain heads"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(database_error(path, "reading chain heads"))?;
    Ok(heads)
}

fn export(
    connection: &Connection,
    path: &Path,
    format: ExportFormat,
    header: &ExportHeader,
    out: &mut dyn Write,
) -> Result<ExportSummary, LedgerError> {
    let mut conditions = Vec::new();
    let mut parameters: Vec<&dyn ToSql> = Vec::new();
    let filter = &header.filter;
    let result_text = filter.result.map(RunResult::as_str);
    if let Some(since) = &filter.since {
        parameters.push(since);
        conditions.push(format!("r.started_at >= ?{}", parameters.len()));
    }
    if let Some(until) = &filter.until {
        parameters.push(until);
        conditions.push(format!("r.started_at < ?{}", parameters.len()));
    }
    if let Some(profile) = &filter.profile {
        parameters.push(profile);
        conditions.push(format!("p.name = ?{}", parameters.len()));
    }
    if let Some(result) = &result_text {
        parameters.push(result);
        conditions.push(format!("r.result = ?{}", parameters.len()));
    }
    let where_sql =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let chain_head = chain_heads(connection, path)?;
    write_export(
        format,
        header,
        chain_head,
        out,
        |visit: &mut dyn FnMut(RecordedRun) -> Result<bool, LedgerError>| {
            for_each_run(
                connection,
                path,
                &where_sql,
                "r.station_id, r.station_sequence, st.ordinal",
                &parameters,
                visit,
            )
        },
    )
}

/// Writes an export in `format` from any source of runs, streaming: the header, every run
/// `for_each_run` hands to its visitor (in chain order: per station, by sequence), then the
/// trailer with `chain_heads` and the count. The local ledger and the central database
/// (`crate::central`) both export through this, so their files are the same format.
pub fn write_export<E: From<LedgerError>>(
    format: ExportFormat,
    header: &ExportHeader,
    chain_heads: Vec<ChainHead>,
    out: &mut dyn Write,
    for_each_run: impl FnOnce(&mut dyn FnMut(RecordedRun) -> Result<bool, LedgerError>) -> Result<(), E>,
) -> Result<ExportSummary, E> {
    let chain_head = chain_heads;
    let write_error = |source| LedgerError::ExportWrite { source };
    let json_error =
        |error: serde_json::Error| LedgerError::ExportWrite { source: std::io::Error::other(error) };
    let mut buffered = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut record_count = 0u64;
    match format {
        ExportFormat::Jsonl | ExportFormat::Json => {
            let separator: &[u8] = if format == ExportFormat::Json { b",\n" } else { b"\n" };
            if format == ExportFormat::Json {
                buffered.write_all(b"[\n").map_err(write_error)?;
            }
            serde_json::to_writer(&mut buffered, header).map_err(json_error)?;
            for_each_run(&mut |run| {
                buffered.write_all(separator).map_err(write_error)?;
                serde_json::to_writer(&mut buffered, &run).map_err(json_error)?;
                record_count += 1;
                Ok(true)
            })?;
            buffered.write_all(separator).map_err(write_error)?;
            let trailer = ExportTrailer { chain_head: chain_head.clone(), record_count };
            serde_json::to_writer(&mut buffered, &trailer).map_err(json_error)?;
            let end: &[u8] = if format == ExportFormat::Json { b"\n]\n" } else { b"\n" };
            buffered.write_all(end).map_err(write_error)?;
        }
        ExportFormat::Csv => {
            let csv_error =
                |error: csv::Error| LedgerError::ExportWrite { source: std::io::Error::other(error) };
            let mut writer = csv::Writer::from_writer(&mut buffered);
            writer.write_record(CSV_COLUMNS).map_err(csv_error)?;
            let header_json = serde_json::to_string(header).map_err(json_error)?;
            writer.write_record(meta_row("export", &header_json)).map_err(csv_error)?;
            for_each_run(&mut |run| {
                writer.write_record(csv_row(&run)).map_err(csv_error)?;
                record_count += 1;
                Ok(true)
            })?;
            let trailer = ExportTrailer { chain_head: chain_head.clone(), record_count };
            let trailer_json = serde_json::to_string(&trailer).map_err(json_error)?;
            writer.write_record(meta_row("trailer", &trailer_json)).map_err(csv_error)?;
            writer.flush().map_err(write_error)?;
        }
    }
    buffered.flush().map_err(write_error)?;
    Ok(ExportSummary { record_count, chain_heads: chain_head })
}

fn meta_row(record_type: &str, json: &str) -> Vec<String> {
    let mut row = vec![String::new(); CSV_COLUMNS.len()];
    row[0] = record_type.to_owned();
    row[CSV_COLUMNS.len() - 1] = json.to_owned();
    row
}

fn csv_row(run: &RecordedRun) -> Vec<String> {
    let optional = |value: &Option<String>| value.clone().unwrap_or_default();
    let images = canonical_json(&serde_json::to_value(&run.images).unwrap_or_default());
    let steps = canonical_json(&serde_json::to_value(&run.steps).unwrap_or_default());
    vec![
        "run".to_owned(),
        run.station.clone(),
        run.station_sequence.to_string(),
        run.run_id.to_string(),
        run.started_at.clone(),
        run.finished_at.clone(),
        run.result.clone(),
        optional(&run.failing_step),
        optional(&run.reason),
        run.operator.clone(),
        run.probe.clone(),
        run.profile.clone(),
        run.profile_sha256.clone(),
        images,
        optional(&run.chip_uid),
        optional(&run.serial),
        optional(&run.device_id),
        steps,
        run.prev_hash.clone(),
        run.record_hash.clone(),
        optional(&run.shipped_at),
        String::new(),
    ]
}

/// Rebuilds a run from a CSV row written by [`csv_row`]; `Err` says which column is unreadable.
pub(crate) fn run_from_csv_row(row: &csv::StringRecord) -> Result<RecordedRun, String> {
    let column = |index: usize| row.get(index).unwrap_or_default().to_owned();
    let optional = |index: usize| Some(column(index)).filter(|text| !text.is_empty());
    let number = |index: usize| {
        column(index)
            .parse::<u64>()
            .map_err(|_| format!("column {} is not a number: {:?}", CSV_COLUMNS[index], column(index)))
    };
    if row.len() != CSV_COLUMNS.len() {
        return Err(format!("expected {} columns, found {}", CSV_COLUMNS.len(), row.len()));
    }
    let images =
        serde_json::from_str(&column(13)).map_err(|error| format!("column images is not valid: {error}"))?;
    let steps: Vec<RecordedStep> =
        serde_json::from_str(&column(17)).map_err(|error| format!("column steps is not valid: {error}"))?;
    Ok(RecordedRun {
        station: column(1),
        station_sequence: number(2)?,
        run_id: column(3).parse().map_err(|_| format!("column run_id is not a number: {:?}", column(3)))?,
        started_at: column(4),
        finished_at: column(5),
        result: column(6),
        failing_step: optional(7),
        reason: optional(8),
        operator: column(9),
        probe: column(10),
        profile: column(11),
        profile_sha256: column(12),
        images,
        chip_uid: optional(14),
        serial: optional(15),
        device_id: optional(16),
        steps,
        prev_hash: column(18),
        record_hash: column(19),
        shipped_at: optional(20),
    })
}
