//! Verifying an export file (CSV, JSON or JSON lines) as a stream: reading its header, judging
//! its format version from its content (never letting the document choose a weaker check),
//! and feeding its runs to the chain checker of [`super::verify`].

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use super::LedgerError;
use super::canonical::RecordedRun;
use super::export::{
    CSV_COLUMNS, CSV_COLUMNS_V1, CSV_COLUMNS_V2, EXPORT_FORMAT_VERSION, ExportHeader, ExportTrailer,
    OLDEST_READABLE_EXPORT_FORMAT_VERSION, run_from_csv_row,
};
use super::strict_json::{StrictValue, parse_strict};
use super::verify::{ChainChecker, ChainProblem, ProblemKind, VerifyOptions, VerifyReport};

/// Verifies an export file (CSV, JSON or JSON lines, told apart by their first byte) against
/// its own trailer and `options`, reading it as a stream.
pub fn verify_export_file(path: &Path, options: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    let read_error = |source| LedgerError::ReadFile { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let first_byte =
        reader.fill_buf().map_err(read_error)?.iter().copied().find(|byte| !byte.is_ascii_whitespace());
    match first_byte {
        Some(b'[') => verify_json(path, reader, options),
        Some(b'{') => verify_jsonl(path, reader, options),
        Some(_) => verify_csv(path, reader, options),
        None => {
            Err(LedgerError::NotAnExport { path: path.to_owned(), reason: "the file is empty".to_owned() })
        }
    }
}

fn check_header(path: &Path, header: Result<ExportHeader, String>) -> Result<ExportHeader, LedgerError> {
    let header = header.map_err(|reason| LedgerError::NotAnExport {
        path: path.to_owned(),
        reason: format!("the first record is not an export header: {reason}"),
    })?;
    if !(OLDEST_READABLE_EXPORT_FORMAT_VERSION..=EXPORT_FORMAT_VERSION)
        .contains(&header.imprint_ledger_export)
    {
        return Err(LedgerError::NotAnExport {
            path: path.to_owned(),
            reason: format!(
                "export format version {} (this imprint reads versions {OLDEST_READABLE_EXPORT_FORMAT_VERSION} to {EXPORT_FORMAT_VERSION})",
                header.imprint_ledger_export
            ),
        });
    }
    Ok(header)
}

/// A problem for a record that did not parse, naming what can still be read from it.
fn malformed(location: String, partial: Option<&Value>, reason: String) -> ChainProblem {
    let field = |name: &str| partial.and_then(|value| value.get(name));
    ChainProblem {
        location,
        station: field("station").and_then(Value::as_str).map(str::to_owned),
        station_sequence: field("station_sequence").and_then(Value::as_u64),
        serial: field("serial").and_then(Value::as_str).map(str::to_owned),
        kind: ProblemKind::Malformed { reason },
    }
}

/// What one export element turned out to be.
enum Element {
    Run(Box<RecordedRun>),
    Trailer(ExportTrailer),
}

fn classify(value: Value) -> Result<Element, (Value, String)> {
    if value.get("chain_head").is_some() {
        return serde_json::from_value::<ExportTrailer>(value.clone())
            .map(Element::Trailer)
            .map_err(|error| (value, format!("trailer: {error}")));
    }
    serde_json::from_value::<RecordedRun>(value.clone())
        .map(|run| Element::Run(Box::new(run)))
        .map_err(|error| (value, error.to_string()))
}

/// Shared state of a file verification: the checker plus the trailer once seen.
struct ExportCheck {
    checker: ChainChecker,
    trailer: Option<ExportTrailer>,
    /// The format version the header declares.
    declared_version: u32,
}

impl ExportCheck {
    /// The check of an export with `header` whose records carry the derived fields of
    /// `derived_fields_version`; the header's filter is bound to every record.
    fn new(header: &ExportHeader, derived_fields_version: u32, options: &VerifyOptions) -> ExportCheck {
        let mut checker = ChainChecker::new(header.filter.is_filtered(), derived_fields_version, options);
        checker.filter = Some(header.filter.clone());
        ExportCheck { checker, trailer: None, declared_version: header.imprint_ledger_export }
    }
}

/// The fields later versions added to every run, with the version that added them: present in
/// a record, they make it a record of that version whatever the header says.
const VERSIONED_RUN_FIELDS: [(&str, u32); 3] =
    [("device_certificate_fingerprint", 2), ("device_certificate_serial", 2), ("work_order", 3)];

impl ExportCheck {
    /// Feeds one element; returns false when verification can stop.
    fn element(&mut self, location: String, element: Result<Value, String>) -> bool {
        if self.checker.problem.is_some() {
            return false;
        }
        if self.trailer.is_some() {
            self.checker.fail(malformed(
                location,
                element.as_ref().ok(),
                "a record after the trailer".to_owned(),
            ));
            return false;
        }
        if let Ok(value) = &element
            && let Some((field, version)) = VERSIONED_RUN_FIELDS
                .iter()
                .find(|(field, version)| self.declared_version < *version && value.get(*field).is_some())
        {
            self.checker.fail(ChainProblem {
                location,
                station: value.get("station").and_then(Value::as_str).map(str::to_owned),
                station_sequence: value.get("station_sequence").and_then(Value::as_u64),
                serial: value.get("serial").and_then(Value::as_str).map(str::to_owned),
                kind: ProblemKind::Downgraded {
                    declared_version: self.declared_version,
                    reason: format!("its records carry {field}, a field of version {version}"),
                },
            });
            return false;
        }
        match element.map_err(|reason| (Value::Null, reason)).and_then(classify) {
            Ok(Element::Run(run)) => self.checker.check(location, &run),
            Ok(Element::Trailer(trailer)) => {
                self.trailer = Some(trailer);
                true
            }
            Err((value, reason)) => {
                self.checker.fail(malformed(location, Some(&value), reason));
                false
            }
        }
    }

    fn finish(self) -> VerifyReport {
        let ExportCheck { mut checker, trailer, .. } = self;
        match trailer {
            Some(trailer) => checker.finish(trailer.chain_head, Some(trailer.record_count)),
            None => {
                checker.fail(ChainProblem {
                    location: "end of file".to_owned(),
                    station: None,
                    station_sequence: None,
                    serial: None,
                    kind: ProblemKind::MissingTrailer,
                });
                checker.finish(Vec::new(), None)
            }
        }
    }
}

fn verify_jsonl(
    path: &Path,
    reader: impl BufRead,
    options: &VerifyOptions,
) -> Result<VerifyReport, LedgerError> {
    let mut lines = reader.lines();
    let read_error = |source| LedgerError::ReadFile { path: path.to_owned(), source };
    let first_line = lines.next().transpose().map_err(read_error)?.unwrap_or_default();
    let header = check_header(
        path,
        parse_strict(&first_line)
            .and_then(serde_json::from_value::<ExportHeader>)
            .map_err(|error| error.to_string()),
    )?;
    let mut check = ExportCheck::new(&header, header.imprint_ledger_export, options);
    for (index, line) in lines.enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let element = parse_strict(&line).map_err(|error| error.to_string());
        if !check.element(format!("line {}", index + 2), element) {
            break;
        }
    }
    Ok(check.finish())
}

fn verify_json(path: &Path, reader: impl Read, options: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    /// Walks the top-level array one element at a time (never the whole file in memory).
    struct ArrayWalk<'a> {
        path: &'a Path,
        options: &'a VerifyOptions,
        check: &'a mut Option<ExportCheck>,
        header_error: &'a mut Option<LedgerError>,
        elements_seen: &'a mut usize,
    }
    impl<'de> Visitor<'de> for ArrayWalk<'_> {
        type Value = ();
        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a JSON array of export records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<(), A::Error> {
            let header: Option<Value> =
                sequence.next_element::<StrictValue>()?.map(|StrictValue(value)| value);
            *self.elements_seen = 1;
            let header = header.ok_or_else(|| "the array is empty".to_owned()).and_then(|value| {
                serde_json::from_value::<ExportHeader>(value).map_err(|error| error.to_string())
            });
            let header = match check_header(self.path, header) {
                Ok(header) => header,
                Err(error) => {
                    *self.header_error = Some(error);
                    while sequence.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(());
                }
            };
            let check =
                self.check.insert(ExportCheck::new(&header, header.imprint_ledger_export, self.options));
            loop {
                let element: Option<Value> =
                    sequence.next_element::<StrictValue>()?.map(|StrictValue(value)| value);
                let Some(element) = element else { break };
                *self.elements_seen += 1;
                if !check.element(format!("element {}", *self.elements_seen), Ok(element)) {
                    // Consume the rest without keeping it, so the parser ends cleanly.
                    while sequence.next_element::<IgnoredAny>()?.is_some() {}
                    break;
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for ArrayWalk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_seq(self)
        }
    }

    let mut check = None;
    let mut header_error = None;
    let mut elements_seen = 0usize;
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let walked = ArrayWalk {
        path,
        options,
        check: &mut check,
        header_error: &mut header_error,
        elements_seen: &mut elements_seen,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    if let Some(error) = header_error {
        return Err(error);
    }
    let Some(mut check) = check else {
        let reason = walked.err().map_or_else(|| "no header".to_owned(), |error| error.to_string());
        return Err(LedgerError::NotAnExport { path: path.to_owned(), reason });
    };
    if let Err(error) = walked {
        // A syntax error or early end inside the array: the file was cut or edited.
        let kind = if error.is_eof() {
            ProblemKind::MissingTrailer
        } else {
            ProblemKind::Malformed { reason: error.to_string() }
        };
        check.checker.fail(ChainProblem {
            location: format!("element {}", elements_seen + 1),
            station: None,
            station_sequence: None,
            serial: None,
            kind,
        });
    }
    Ok(check.finish())
}

fn verify_csv(path: &Path, reader: impl Read, options: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    let mut csv_reader = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let not_an_export = |reason: String| LedgerError::NotAnExport { path: path.to_owned(), reason };
    let columns =
        csv_reader.headers().map_err(|error| not_an_export(format!("no CSV header row: {error}")))?.clone();
    let (column_names, column_version): (&[&str], u32) = if columns.iter().eq(CSV_COLUMNS) {
        (&CSV_COLUMNS, EXPORT_FORMAT_VERSION)
    } else if columns.iter().eq(CSV_COLUMNS_V2) {
        (&CSV_COLUMNS_V2, 2)
    } else if columns.iter().eq(CSV_COLUMNS_V1) {
        (&CSV_COLUMNS_V1, 1)
    } else {
        return Err(not_an_export(format!(
            "the CSV columns are {:?}, expected {CSV_COLUMNS:?} (or those of version 2, {CSV_COLUMNS_V2:?}, or version 1, {CSV_COLUMNS_V1:?})",
            columns.iter().collect::<Vec<_>>()
        )));
    };
    let mut records = csv_reader.records();
    let export_column = column_names.len() - 1;
    let first = records.next().transpose().map_err(|error| not_an_export(error.to_string()))?;
    let header = first
        .filter(|row| row.get(0) == Some("export"))
        .ok_or_else(|| "the first row is not record_type export".to_owned())
        .and_then(|row| {
            parse_strict(row.get(export_column).unwrap_or_default())
                .and_then(serde_json::from_value::<ExportHeader>)
                .map_err(|error| error.to_string())
        });
    let header = check_header(path, header)?;
    if header.imprint_ledger_export != column_version {
        return Err(not_an_export(format!(
            "the header says export format version {} but the CSV has the columns of version {column_version}",
            header.imprint_ledger_export
        )));
    }
    let mut check = ExportCheck::new(&header, column_version, options);
    for (index, row) in records.enumerate() {
        // Row 1 is the column names, row 2 the export header.
        let location = format!("row {}", index + 3);
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                check.checker.fail(malformed(location, None, error.to_string()));
                break;
            }
        };
        let keep_going = match row.get(0) {
            Some("run") => match run_from_csv_row(&row, column_names) {
                Ok(run) => {
                    if check.trailer.is_some() {
                        check.element(location, Err("a run after the trailer".to_owned()))
                    } else {
                        check.checker.check(location, &run)
                    }
                }
                Err(reason) => {
                    let partial = serde_json::json!({
                        "station": row.get(1),
                        "station_sequence": row.get(2).and_then(|text| text.parse::<u64>().ok()),
                        "serial": row.get(15),
                    });
                    check.checker.fail(malformed(location, Some(&partial), reason));
                    false
                }
            },
            Some("trailer") => {
                let trailer = parse_strict(row.get(export_column).unwrap_or_default())
                    .map_err(|error| error.to_string());
                check.element(location, trailer)
            }
            other => {
                check.checker.fail(malformed(
                    location,
                    None,
                    format!("record_type {other:?}, expected run or trailer"),
                ));
                false
            }
        };
        if !keep_going {
            break;
        }
    }
    Ok(check.finish())
}
