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

use sha2::Digest;

use super::canonical::{ISSUE_IDENTITY_STEP, RecordedRun, RecordedStep, format_timestamp};
use super::model::RunResult;
use super::query::for_each_run;
use super::{Ledger, LedgerError, database_error};

/// The `imprint_ledger_export` value of the header this build writes. Version 2 added the
/// derived `device_certificate_fingerprint` and `device_certificate_serial` fields (CSV columns),
/// version 3 the derived `work_order`; version 1 and 2 exports still verify.
pub const EXPORT_FORMAT_VERSION: u32 = 3;
/// The oldest export format version this build reads.
pub const OLDEST_READABLE_EXPORT_FORMAT_VERSION: u32 = 1;

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

    /// Whether `run` is one this filter selects (the same conditions as the export's SQL; times
    /// compare as the stored text, which is one fixed UTC format).
    pub fn matches(&self, run: &RecordedRun) -> bool {
        self.since.as_ref().is_none_or(|since| run.started_at.as_str() >= since.as_str())
            && self.until.as_ref().is_none_or(|until| run.started_at.as_str() < until.as_str())
            && self.profile.as_ref().is_none_or(|profile| run.profile == *profile)
            && self.result.is_none_or(|result| run.result == result.as_str())
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
pub const CSV_COLUMNS: [&str; 25] = [
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
    "device_certificate_fingerprint",
    "device_certificate_serial",
    "work_order",
    "steps",
    "prev_hash",
    "record_hash",
    "shipped_at",
    "export",
];

/// The CSV columns of a version 2 export (without the work order column).
pub const CSV_COLUMNS_V2: [&str; 24] = [
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
    "device_certificate_fingerprint",
    "device_certificate_serial",
    "steps",
    "prev_hash",
    "record_hash",
    "shipped_at",
    "export",
];

/// The CSV columns of a version 1 export (without the device certificate columns).
pub const CSV_COLUMNS_V1: [&str; 22] = [
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
    let result_text = header.filter.result.map(RunResult::as_str);
    let (conditions, parameters) = filter_conditions(&header.filter, &result_text);
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
            write_csv_record(&mut buffered, CSV_COLUMNS.map(|column| column.as_bytes()))
                .map_err(write_error)?;
            let header_json = serde_json::to_string(header).map_err(json_error)?;
            write_csv_record(&mut buffered, meta_row("export", &header_json)).map_err(write_error)?;
            let mut row_buffers = CsvRowBuffers::default();
            for_each_run(&mut |run| {
                write_csv_row(&mut buffered, &mut row_buffers, &run)?;
                record_count += 1;
                Ok(true)
            })?;
            let trailer = ExportTrailer { chain_head: chain_head.clone(), record_count };
            let trailer_json = serde_json::to_string(&trailer).map_err(json_error)?;
            write_csv_record(&mut buffered, meta_row("trailer", &trailer_json)).map_err(write_error)?;
        }
    }
    buffered.flush().map_err(write_error)?;
    Ok(ExportSummary { record_count, chain_heads: chain_head })
}

/// SQL conditions (on `runs r` and `profiles p`) and their parameters for a filter.
pub(super) fn filter_conditions<'a>(
    filter: &'a ExportFilter,
    result_text: &'a Option<&'static str>,
) -> (Vec<String>, Vec<&'a dyn ToSql>) {
    let mut conditions = Vec::new();
    let mut parameters: Vec<&dyn ToSql> = Vec::new();
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
    if let Some(result) = result_text {
        parameters.push(result);
        conditions.push(format!("r.result = ?{}", parameters.len()));
    }
    (conditions, parameters)
}

/// Which identity certificates a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateSelection {
    /// Per unit (chip) whose latest run passed, the certificate that run issued: the one the
    /// device holds, what a cloud service should register. A unit whose latest run failed (a
    /// rework that did not finish) is left out: it is not ready to ship.
    ProvisionedUnits,
    /// Every certificate the factory CA issued, in chain order, passed run or not (an audit of
    /// the CA's issuance).
    EveryIssued,
}

/// What a certificate bundle export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateBundleSummary {
    /// Certificates written.
    pub certificate_count: u64,
}

impl Ledger {
    /// Writes the identity certificates the runs selected by `filter` issued (as recorded in
    /// their hashed `issue-identity` step) to `out` as concatenated PEM "CERTIFICATE" blocks.
    /// Each certificate is checked against the fingerprint its run recorded.
    pub fn export_device_certificates(
        &self,
        selection: CertificateSelection,
        filter: &ExportFilter,
        out: &mut dyn Write,
    ) -> Result<CertificateBundleSummary, LedgerError> {
        self.read(|connection, path| export_device_certificates(connection, path, selection, filter, out))
    }
}

fn export_device_certificates(
    connection: &Connection,
    path: &Path,
    selection: CertificateSelection,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> Result<CertificateBundleSummary, LedgerError> {
    let result_text = match selection {
        CertificateSelection::ProvisionedUnits => None,
        CertificateSelection::EveryIssued => filter.result.map(RunResult::as_str),
    };
    let (mut conditions, parameters) = filter_conditions(filter, &result_text);
    let order_sql = match selection {
        // Every run of a unit, latest last: only a unit's last run decides.
        CertificateSelection::ProvisionedUnits => {
            conditions.push("r.chip_uid IS NOT NULL".to_owned());
            "r.chip_uid, r.finished_at, r.id, st.ordinal"
        }
        CertificateSelection::EveryIssued => {
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM steps x WHERE x.run_id = r.id AND x.name = '{ISSUE_IDENTITY_STEP}' AND x.status = 'passed')"
            ));
            "r.station_id, r.station_sequence, st.ordinal"
        }
    };
    let where_sql = format!("WHERE {}", conditions.join(" AND "));
    write_certificate_bundle(
        selection,
        path,
        out,
        |visit: &mut dyn FnMut(RecordedRun) -> Result<bool, LedgerError>| {
            for_each_run(connection, path, &where_sql, order_sql, &parameters, visit)
        },
    )
}

/// Writes a certificate bundle from any source of runs, streaming: `for_each_run` hands its
/// visitor the runs in the order `selection` needs — for
/// [`CertificateSelection::ProvisionedUnits`], the runs that name a chip, grouped by chip and
/// latest last; for [`CertificateSelection::EveryIssued`], chain order (runs that issued no
/// certificate are skipped). The local ledger and the central database (`crate::central`) both
/// write bundles through this; `source` names where the runs came from in errors.
pub fn write_certificate_bundle<E: From<LedgerError>>(
    selection: CertificateSelection,
    source: &Path,
    out: &mut dyn Write,
    for_each_run: impl FnOnce(&mut dyn FnMut(RecordedRun) -> Result<bool, LedgerError>) -> Result<(), E>,
) -> Result<CertificateBundleSummary, E> {
    let write_error = |source| LedgerError::ExportWrite { source };
    let mut buffered = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut certificate_count = 0u64;
    let mut write_pem = |pem: &str| -> Result<(), LedgerError> {
        buffered.write_all(pem.as_bytes()).map_err(write_error)?;
        if !pem.ends_with('\n') {
            buffered.write_all(b"\n").map_err(write_error)?;
        }
        certificate_count += 1;
        Ok(())
    };
    // ProvisionedUnits: the latest run seen of the current chip, and its certificate if that
    // run passed and issued one.
    let mut latest: Option<(Option<String>, Option<String>)> = None;
    for_each_run(&mut |run| {
        match selection {
            CertificateSelection::EveryIssued => {
                let issued =
                    run.steps.iter().any(|step| step.name == ISSUE_IDENTITY_STEP && step.status == "passed");
                if issued {
                    write_pem(&checked_certificate_pem(&run, source)?)?;
                }
            }
            CertificateSelection::ProvisionedUnits => {
                // A passed run whose device kept its earlier items keeps the certificate the
                // chip's earlier run installed.
                let mut earlier_of_this_chip = None;
                if let Some((chip, certificate)) = latest.take() {
                    if chip != run.chip_uid {
                        if let Some(pem) = certificate {
                            write_pem(&pem)?;
                        }
                    } else {
                        earlier_of_this_chip = certificate;
                    }
                }
                let is_pass = run.result == RunResult::Pass.as_str();
                let certificate = if is_pass && run.kept_earlier_certificate() {
                    earlier_of_this_chip
                } else if is_pass && run.device_certificate_pem().is_some() {
                    Some(checked_certificate_pem(&run, source)?)
                } else {
                    None
                };
                latest = Some((run.chip_uid.clone(), certificate));
            }
        }
        Ok(true)
    })?;
    if let Some((_, Some(pem))) = latest {
        write_pem(&pem)?;
    }
    buffered.flush().map_err(write_error)?;
    Ok(CertificateBundleSummary { certificate_count })
}

/// The PEM certificate a run's `issue-identity` step recorded, checked against the fingerprint
/// recorded beside it (both are hashed into the chain; a mismatch means the record is corrupt).
fn checked_certificate_pem(run: &RecordedRun, path: &Path) -> Result<String, LedgerError> {
    let corrupt = |what: String| LedgerError::Corrupt {
        path: path.to_owned(),
        what: format!(
            "run {} (station {:?} sequence {}): {what}",
            run.run_id, run.station, run.station_sequence
        ),
    };
    let pem = run
        .device_certificate_pem()
        .ok_or_else(|| corrupt("the issue-identity step records no certificate_pem".to_owned()))?;
    let (label, der_bytes) = der::pem::decode_vec(pem.as_bytes())
        .map_err(|error| corrupt(format!("the recorded certificate is not PEM: {error}")))?;
    if label != "CERTIFICATE" {
        return Err(corrupt(format!("the recorded PEM block is {label:?}, expected \"CERTIFICATE\"")));
    }
    let fingerprint = hex::encode(sha2::Sha256::digest(&der_bytes));
    if run.device_certificate_fingerprint.as_deref() != Some(fingerprint.as_str()) {
        return Err(corrupt(format!(
            "the recorded certificate hashes to {fingerprint}, but the run records fingerprint {}",
            run.device_certificate_fingerprint.as_deref().unwrap_or("none")
        )));
    }
    Ok(pem.to_owned())
}

/// The cells of a header or trailer row: `record_type` and the JSON in the last column.
fn meta_row<'a>(record_type: &'a str, json: &'a str) -> [&'a [u8]; CSV_COLUMNS.len()] {
    let mut row: [&[u8]; CSV_COLUMNS.len()] = [b""; CSV_COLUMNS.len()];
    row[0] = record_type.as_bytes();
    row[CSV_COLUMNS.len() - 1] = json.as_bytes();
    row
}

/// Writes one CSV record the way the `csv` crate's default writer does (RFC 4180, `\n` after
/// each record): a field holding a comma, a quote, CR or LF is quoted with its quotes doubled,
/// any other is written as it is. Written straight into the output buffer, without a general
/// CSV writer's own buffer and state machine in between: this is the export's inner loop
/// (docs/performance.md).
fn write_csv_record<'a>(
    out: &mut impl Write,
    fields: impl IntoIterator<Item = &'a [u8]>,
) -> std::io::Result<()> {
    for (index, field) in fields.into_iter().enumerate() {
        if index > 0 {
            out.write_all(b",")?;
        }
        if !field.iter().any(|byte| matches!(byte, b',' | b'"' | b'\r' | b'\n')) {
            out.write_all(field)?;
            continue;
        }
        out.write_all(b"\"")?;
        let mut rest = field;
        while let Some(at) = rest.iter().position(|byte| *byte == b'"') {
            out.write_all(&rest[..=at])?;
            out.write_all(b"\"")?;
            rest = &rest[at + 1..];
        }
        out.write_all(rest)?;
        out.write_all(b"\"")?;
    }
    out.write_all(b"\n")
}

/// A step with its fields in canonical (sorted) key order, so serializing it straight from the
/// record gives the canonical JSON of the step without building a `Value` and sorting it (the
/// detail's object keys are already sorted: serde_json's map is ordered).
#[derive(Serialize)]
struct SortedStep<'a> {
    detail: &'a serde_json::Value,
    duration_ms: u64,
    name: &'a str,
    ordinal: u32,
    started_at: &'a str,
    status: &'a str,
}

/// The image the same way.
#[derive(Serialize)]
struct SortedImage<'a> {
    name: &'a str,
    sha256: &'a str,
}

/// Reused buffers for [`write_csv_row`]: the JSON cells of one row.
#[derive(Default)]
struct CsvRowBuffers {
    images: Vec<u8>,
    steps: Vec<u8>,
    station_sequence: String,
    run_id: String,
}

/// Writes one run as a CSV row, borrowing every cell from the run (no per-cell allocation:
/// this is the export's inner loop).
fn write_csv_row(
    out: &mut impl Write,
    buffers: &mut CsvRowBuffers,
    run: &RecordedRun,
) -> Result<(), LedgerError> {
    use std::fmt::Write as _;
    let json_error =
        |error: serde_json::Error| LedgerError::ExportWrite { source: std::io::Error::other(error) };
    buffers.images.clear();
    let images = run.images.iter().map(|image| SortedImage { name: &image.name, sha256: &image.sha256 });
    serde_json::to_writer(&mut buffers.images, &images.collect::<Vec<_>>()).map_err(json_error)?;
    buffers.steps.clear();
    buffers.steps.push(b'[');
    for (index, step) in run.steps.iter().enumerate() {
        if index > 0 {
            buffers.steps.push(b',');
        }
        let sorted = SortedStep {
            detail: &step.detail,
            duration_ms: step.duration_ms,
            name: &step.name,
            ordinal: step.ordinal,
            started_at: &step.started_at,
            status: &step.status,
        };
        serde_json::to_writer(&mut buffers.steps, &sorted).map_err(json_error)?;
    }
    buffers.steps.push(b']');
    buffers.station_sequence.clear();
    let _ = write!(buffers.station_sequence, "{}", run.station_sequence);
    buffers.run_id.clear();
    let _ = write!(buffers.run_id, "{}", run.run_id);
    fn optional(value: &Option<String>) -> &[u8] {
        value.as_deref().unwrap_or_default().as_bytes()
    }
    let cells: [&[u8]; CSV_COLUMNS.len()] = [
        b"run",
        run.station.as_bytes(),
        buffers.station_sequence.as_bytes(),
        buffers.run_id.as_bytes(),
        run.started_at.as_bytes(),
        run.finished_at.as_bytes(),
        run.result.as_bytes(),
        optional(&run.failing_step),
        optional(&run.reason),
        run.operator.as_bytes(),
        run.probe.as_bytes(),
        run.profile.as_bytes(),
        run.profile_sha256.as_bytes(),
        &buffers.images,
        optional(&run.chip_uid),
        optional(&run.serial),
        optional(&run.device_id),
        optional(&run.device_certificate_fingerprint),
        optional(&run.device_certificate_serial),
        optional(&run.work_order),
        &buffers.steps,
        run.prev_hash.as_bytes(),
        run.record_hash.as_bytes(),
        optional(&run.shipped_at),
        b"",
    ];
    write_csv_record(out, cells).map_err(|source| LedgerError::ExportWrite { source })
}

/// Rebuilds a run from a CSV row written by [`write_csv_row`] (or by a version 1 or 2 export,
/// whose `columns` lack the certificate or work order columns); `Err` says which column is
/// unreadable.
pub(crate) fn run_from_csv_row(row: &csv::StringRecord, columns: &[&str]) -> Result<RecordedRun, String> {
    if row.len() != columns.len() {
        return Err(format!("expected {} columns, found {}", columns.len(), row.len()));
    }
    let column = |name: &str| {
        columns.iter().position(|column| *column == name).and_then(|index| row.get(index)).unwrap_or_default()
    };
    let optional = |name: &str| Some(column(name).to_owned()).filter(|text| !text.is_empty());
    let number = |name: &str| {
        column(name).parse::<u64>().map_err(|_| format!("column {name} is not a number: {:?}", column(name)))
    };
    let images = super::strict_json::parse_strict(column("images"))
        .and_then(serde_json::from_value)
        .map_err(|error| format!("column images is not valid: {error}"))?;
    let steps: Vec<RecordedStep> = super::strict_json::parse_strict(column("steps"))
        .and_then(serde_json::from_value)
        .map_err(|error| format!("column steps is not valid: {error}"))?;
    Ok(RecordedRun {
        station: column("station").to_owned(),
        station_sequence: number("station_sequence")?,
        run_id: column("run_id")
            .parse()
            .map_err(|_| format!("column run_id is not a number: {:?}", column("run_id")))?,
        started_at: column("started_at").to_owned(),
        finished_at: column("finished_at").to_owned(),
        result: column("result").to_owned(),
        failing_step: optional("failing_step"),
        reason: optional("reason"),
        operator: column("operator").to_owned(),
        probe: column("probe").to_owned(),
        profile: column("profile").to_owned(),
        profile_sha256: column("profile_sha256").to_owned(),
        images,
        chip_uid: optional("chip_uid"),
        serial: optional("serial"),
        device_id: optional("device_id"),
        device_certificate_fingerprint: optional("device_certificate_fingerprint"),
        device_certificate_serial: optional("device_certificate_serial"),
        work_order: optional("work_order"),
        steps,
        prev_hash: column("prev_hash").to_owned(),
        record_hash: column("record_hash").to_owned(),
        shipped_at: optional("shipped_at"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written CSV records are byte for byte what the `csv` crate writes (which the
    /// verifier and every CSV reader read back).
    #[test]
    fn csv_records_match_the_csv_crate() {
        let records: [&[&str]; 5] = [
            &["run", "plain", "", "with,comma", "with \"quotes\""],
            &["line\nbreak", "carriage\rreturn", "ünïcode «text»", "{\"a\":[1,2]}", ""],
            &["\"", "\"\"", ",", "\r\n", "trailing space "],
            &["#comment", "'single'", "tab\there", "semi;colon", "back\\slash"],
            &["", "", "", "", ""],
        ];
        for record in records {
            let mut ours = Vec::new();
            write_csv_record(&mut ours, record.iter().map(|field| field.as_bytes())).unwrap();
            let mut theirs = csv::Writer::from_writer(Vec::new());
            theirs.write_record(record).unwrap();
            let theirs = theirs.into_inner().unwrap();
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{record:?}");
        }
    }
}
