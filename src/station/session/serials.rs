//! Where a line's scanned serials and work order come from: a file read and checked at once,
//! standard input read as serials are scanned, or a front end that feeds the labels itself
//! (the window's scanner field).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ledger::SerialScheme;
use crate::profile::Profile;
use crate::station::UnitLabels;

use super::SessionError;

/// The longest work order accepted.
pub const WORK_ORDER_LENGTH_MAX: usize = 128;

/// Where the serials of a profile with `serial.scheme = "scanned"` come from.
#[derive(Debug, Clone, Default)]
pub enum SerialSource {
    /// None given: a "scanned" profile is refused.
    #[default]
    NotGiven,
    /// One serial per line (blank lines and `#` comments skipped), read and checked at open.
    File(PathBuf),
    /// Standard input, read line by line in the background as serials are scanned.
    StandardInput,
    /// The front end pushes serials into these labels as they are scanned (their work order
    /// is the line's); a counter profile ignores them.
    Scanner(Arc<UnitLabels>),
}

/// Checks a work order: printable text, as it goes into every unit's record.
pub fn checked_work_order(work_order: Option<&str>) -> Result<Option<String>, SessionError> {
    let Some(work_order) = work_order.map(str::trim) else {
        return Ok(None);
    };
    if work_order.is_empty()
        || work_order.len() > WORK_ORDER_LENGTH_MAX
        || work_order.chars().any(char::is_control)
    {
        return Err(SessionError::Serials {
            reason: format!(
                "--work-order {work_order:?}: expected 1 to {WORK_ORDER_LENGTH_MAX} printable characters"
            ),
        });
    }
    Ok(Some(work_order.to_string()))
}

/// The labels a line uses, fed from `source`, and the number of serials a file held.
pub(super) fn open_labels(
    source: &SerialSource,
    work_order: Option<&str>,
    profile: &Profile,
) -> Result<(Arc<UnitLabels>, Option<u64>), SessionError> {
    if let SerialSource::Scanner(labels) = source {
        return Ok((labels.clone(), None));
    }
    let labels = Arc::new(UnitLabels::with_work_order(checked_work_order(work_order)?));
    let refuse = |reason: String| SessionError::Serials { reason };
    let is_scanned = matches!(profile.serial_scheme, SerialScheme::Scanned);
    let path = match (source, is_scanned) {
        (SerialSource::NotGiven, false) => return Ok((labels, None)),
        (SerialSource::NotGiven, true) => {
            return Err(refuse(format!(
                "{}: serial.scheme is \"scanned\": give the units' serials with --serials FILE (one per line, - for standard input)",
                profile.path.display()
            )));
        }
        (_, false) => {
            return Err(refuse(format!(
                "--serials: {} allocates serials from a counter (serial.scheme); --serials is for \"scanned\" profiles",
                profile.path.display()
            )));
        }
        (SerialSource::StandardInput, true) => {
            read_standard_input(labels.clone(), profile.scanner.serial.clone())?;
            return Ok((labels, None));
        }
        (SerialSource::File(path), true) => path,
        // Handled first: the front end's own labels.
        (SerialSource::Scanner(_), true) => return Ok((labels, None)),
    };
    let count = read_serials_file(path, &labels, profile)?;
    Ok((labels, Some(count)))
}

/// Reads serials from standard input as they are scanned; a line that is not a serial (or, with
/// a `scanner.serial` pattern, not a serial label) is logged and ignored.
fn read_standard_input(
    labels: Arc<UnitLabels>,
    pattern: Option<crate::profile::ScanPattern>,
) -> Result<(), SessionError> {
    std::thread::Builder::new()
        .name("serials-stdin".to_string())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                match parse_serial_line(&line) {
                    Ok(Some(serial)) if pattern.as_ref().is_some_and(|pattern| !pattern.matches(&serial)) => {
                        tracing::warn!(
                            "--serials -: {serial} does not match the serial labels (scanner.serial {:?}); line ignored",
                            pattern.as_ref().map(|pattern| pattern.as_str()).unwrap_or_default()
                        )
                    }
                    Ok(Some(serial)) => labels.push_serial(None, serial),
                    Ok(None) => {}
                    Err(reason) => tracing::warn!("--serials -: {reason}; line ignored"),
                }
            }
            labels.close_serials();
        })
        .map(|_| ())
        .map_err(|error| SessionError::Serials {
            reason: format!("cannot start the thread reading serials from standard input: {error}"),
        })
}

fn read_serials_file(source: &Path, labels: &UnitLabels, profile: &Profile) -> Result<u64, SessionError> {
    let pattern = profile.scanner.serial.as_ref();
    let refuse = |reason: String| SessionError::Serials { reason };
    let text = std::fs::read_to_string(source)
        .map_err(|error| refuse(format!("--serials {}: cannot read the file: {error}", source.display())))?;
    let mut first_line_of = std::collections::HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let Some(serial) = parse_serial_line(line)
            .map_err(|reason| refuse(format!("{}:{line_number}: {reason}", source.display())))?
        else {
            continue;
        };
        if let Some(pattern) = pattern.filter(|pattern| !pattern.matches(&serial)) {
            return Err(refuse(format!(
                "{}:{line_number}: serial {serial} does not match the serial labels of {} (scanner.serial {:?})",
                source.display(),
                profile.path.display(),
                pattern.as_str()
            )));
        }
        if let Some(first) = first_line_of.insert(serial.clone(), line_number) {
            return Err(refuse(format!(
                "{}:{line_number}: serial {serial} is also on line {first}",
                source.display()
            )));
        }
        labels.push_serial(None, serial);
    }
    labels.close_serials();
    if first_line_of.is_empty() {
        return Err(refuse(format!(
            "--serials {}: expected one serial per line, found none",
            source.display()
        )));
    }
    Ok(first_line_of.len() as u64)
}

/// One line of a serials source: `None` for a blank line or a `#` comment.
fn parse_serial_line(line: &str) -> Result<Option<String>, String> {
    let serial = line.trim();
    if serial.is_empty() || serial.starts_with('#') {
        return Ok(None);
    }
    crate::ledger::check_serial_text("serial", serial).map_err(|error| error.to_string())?;
    Ok(Some(serial.to_string()))
}
