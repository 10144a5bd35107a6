//! `imprint log backup`: a consistent copy of a live ledger through SQLite's online backup API
//! (the field's convention for copying a database that is being written: a plain `cp` of the
//! database file can miss what is still in the write-ahead log, or copy a page mid-write).
//!
//! The copy is written to a temporary file beside the destination, switched to a rollback
//! journal (so it is one self-contained file), synced, and renamed over the destination only
//! when complete; the destination may not be one of the ledger's own files.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use super::{LedgerError, ledger_files};
use crate::output::{ExistingFile, OutputError, check_output};

/// Copy every page in one step: the source is read inside one read transaction (a WAL snapshot)
/// that never blocks a station writing, and one step cannot be restarted by its writes.
const COPY_ALL_PAGES: std::os::raw::c_int = -1;
/// Pause before retrying a step that found the database busy.
const PAUSE_BETWEEN_STEPS: Duration = Duration::from_millis(5);

/// Copies the database behind `source` (a read connection of the ledger at `path`) to
/// `destination`.
pub(crate) fn copy(
    source: &Connection,
    path: &Path,
    destination: &Path,
    existing: ExistingFile,
) -> Result<(), LedgerError> {
    let output_error = |error: OutputError| LedgerError::BackupTarget { message: error.to_string() };
    check_output(destination, &ledger_files(path), existing).map_err(output_error)?;
    if let Ok(metadata) = std::fs::metadata(destination)
        && !metadata.is_file()
    {
        return Err(LedgerError::BackupTarget {
            message: format!("{} is not a regular file; a backup is a database file", destination.display()),
        });
    }
    let backup_error =
        |source| LedgerError::Backup { path: path.to_owned(), destination: destination.to_owned(), source };
    let io_error = |source: std::io::Error| LedgerError::BackupTarget {
        message: format!("writing {}: {source}", destination.display()),
    };
    let directory =
        destination.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = destination.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = directory.join(format!(".{name}.imprint-backup-{}.tmp", std::process::id()));
    let remove_temporary = || {
        for file in ledger_files(&temporary) {
            if std::fs::symlink_metadata(&file).is_ok_and(|metadata| metadata.is_file()) {
                let _ = std::fs::remove_file(file);
            }
        }
    };
    if std::fs::symlink_metadata(&temporary).is_ok() {
        return Err(LedgerError::BackupTarget {
            message: format!("{} exists (another backup running?)", temporary.display()),
        });
    }
    let outcome = (|| {
        let mut copy = Connection::open(&temporary).map_err(backup_error)?;
        {
            let backup = Backup::new(source, &mut copy).map_err(backup_error)?;
            let started = std::time::Instant::now();
            loop {
                match backup.step(COPY_ALL_PAGES).map_err(backup_error)? {
                    StepResult::Done => break,
                    // Busy or locked by a writer of the destination (nobody else should have
                    // it) or the source's checkpoint: wait, within the busy timeout.
                    _ if started.elapsed() < super::BUSY_TIMEOUT => std::thread::sleep(PAUSE_BETWEEN_STEPS),
                    other => {
                        return Err(LedgerError::BackupTarget {
                            message: format!(
                                "the copy did not finish within {:?} ({other:?})",
                                super::BUSY_TIMEOUT
                            ),
                        });
                    }
                }
            }
        }
        // One self-contained file: a station opening the copy switches it back to WAL.
        let _: String =
            copy.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0)).map_err(backup_error)?;
        copy.close().map_err(|(_, source)| backup_error(source))?;
        std::fs::File::open(&temporary).and_then(|file| file.sync_all()).map_err(io_error)?;
        crate::output::move_into_place(&temporary, destination, existing).map_err(|error| {
            match error.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    output_error(OutputError::Exists { path: destination.to_owned() })
                }
                _ => io_error(error),
            }
        })?;
        std::fs::File::open(directory).and_then(|file| file.sync_all()).map_err(io_error)?;
        Ok(())
    })();
    if outcome.is_err() {
        remove_temporary();
    }
    outcome
}
