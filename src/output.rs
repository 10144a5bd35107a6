//! Writing a command's output file (`-o PATH`) safely: one mechanism for every command that
//! writes a file the user names (`imprint log export`, `log certificates`, `log backup`,
//! `manifest create`).
//!
//! It exists because an output path is outside data like any other: it may name one of the
//! command's own inputs (`log export --db l.db -o l.db`, a hard link or symlink to the ledger,
//! the ledger's `-wal`), a character device (`/dev/null`), a FIFO, or a file another program
//! owns. The rules:
//!
//! - An output that is one of the protected inputs — same resolved path, or same file identity
//!   (device and inode) — is refused before anything is opened for writing.
//! - A regular file (new or existing) is written to a temporary file beside it, synced, and
//!   renamed over the target only when everything was written: a failure leaves the previous
//!   content (or no file) and removes only the temporary file this command created.
//! - Anything else that exists (a character device, a FIFO, a socket) is opened for writing
//!   without creating or truncating, streamed to, never synced (a device cannot be) and never
//!   removed.
//!
//! **Invariant:** this module removes only a regular file it created itself in this call.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "refusing to write to {output}: it is {input}, an input of this command (choose another output path)"
    )]
    IsAnInput { output: PathBuf, input: PathBuf },

    #[error("refusing to write to {path}: it is a directory")]
    IsADirectory { path: PathBuf },

    #[error("cannot open {path} for writing: {source}")]
    Open { path: PathBuf, source: std::io::Error },

    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The file identity of an existing path (device, inode), following symlinks.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|metadata| (metadata.dev(), metadata.ino()))
}

/// The path with its directory resolved (symlinks, `..`), whether or not the file exists.
fn resolved_path(path: &Path) -> PathBuf {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return resolved;
    }
    let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(directory), path.file_name()) {
        (Ok(directory), Some(name)) => directory.join(name),
        _ => path.to_owned(),
    }
}

/// Refuses `output` when it is one of `protected_inputs`: the same resolved path, or the same
/// file (device and inode) under another name.
pub fn check_not_an_input(output: &Path, protected_inputs: &[PathBuf]) -> Result<(), OutputError> {
    let output_resolved = resolved_path(output);
    let output_identity = file_identity(output);
    for input in protected_inputs {
        let same_path = resolved_path(input) == output_resolved;
        let same_file = output_identity.is_some() && file_identity(input) == output_identity;
        if same_path || same_file {
            return Err(OutputError::IsAnInput { output: output.to_owned(), input: input.clone() });
        }
    }
    Ok(())
}

/// An output being written; see the module docs for what each kind of target gets.
pub struct OutputFile {
    /// The path the user named.
    path: PathBuf,
    file: File,
    /// For a regular file: the temporary file written now and renamed to `final_path` by
    /// [`OutputFile::commit`]. `None` for a special file, written in place.
    temporary_path: Option<PathBuf>,
    /// Where the temporary file goes: the resolved target (so a symlink's target is replaced,
    /// not the symlink).
    final_path: PathBuf,
}

impl OutputFile {
    /// Opens `path` for writing after checking it is none of `protected_inputs`.
    pub fn open(path: &Path, protected_inputs: &[PathBuf]) -> Result<OutputFile, OutputError> {
        check_not_an_input(path, protected_inputs)?;
        let open_error = |source| OutputError::Open { path: path.to_owned(), source };
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => Err(OutputError::IsADirectory { path: path.to_owned() }),
            Ok(metadata) if !metadata.is_file() => {
                // A device, FIFO or socket: stream into it as it is. Opening a FIFO waits
                // for its reader, as any writer of a FIFO does.
                debug_assert!(
                    metadata.file_type().is_char_device()
                        || metadata.file_type().is_fifo()
                        || metadata.file_type().is_block_device()
                        || metadata.file_type().is_socket()
                );
                let file = OpenOptions::new().write(true).open(path).map_err(open_error)?;
                Ok(OutputFile {
                    path: path.to_owned(),
                    file,
                    temporary_path: None,
                    final_path: path.to_owned(),
                })
            }
            _ => {
                let final_path = resolved_path(path);
                let (temporary_path, file) = create_temporary_beside(&final_path).map_err(open_error)?;
                Ok(OutputFile {
                    path: path.to_owned(),
                    file,
                    temporary_path: Some(temporary_path),
                    final_path,
                })
            }
        }
    }

    /// The stream to write to.
    pub fn writer(&mut self) -> &mut File {
        &mut self.file
    }

    /// Ends a successful write: a regular file is synced and renamed into place (and its
    /// directory synced); a special file is only flushed.
    pub fn commit(mut self) -> Result<(), OutputError> {
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| OutputError::Write { path, source }
        };
        self.file.flush().map_err(write_error(&self.path))?;
        let Some(temporary_path) = self.temporary_path.take() else { return Ok(()) };
        let outcome = (|| {
            self.file.sync_all()?;
            std::fs::rename(&temporary_path, &self.final_path)?;
            if let Some(directory) = self.final_path.parent() {
                File::open(directory)?.sync_all()?;
            }
            Ok(())
        })();
        if outcome.is_err() {
            remove_own_temporary(&temporary_path);
        }
        outcome.map_err(write_error(&self.path))
    }
}

impl Drop for OutputFile {
    /// An output dropped without [`OutputFile::commit`] failed: remove the temporary file this
    /// command created (never the target, never a special file).
    fn drop(&mut self) {
        if let Some(temporary_path) = self.temporary_path.take() {
            remove_own_temporary(&temporary_path);
        }
    }
}

fn remove_own_temporary(temporary_path: &Path) {
    let is_regular = std::fs::symlink_metadata(temporary_path).is_ok_and(|metadata| metadata.is_file());
    if is_regular {
        let _ = std::fs::remove_file(temporary_path);
    }
}

/// Creates `.NAME.imprint-PID-N.tmp` beside `final_path` (never an existing file).
fn create_temporary_beside(final_path: &Path) -> std::io::Result<(PathBuf, File)> {
    let directory = final_path.parent().unwrap_or(Path::new("."));
    let name = final_path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let mut attempt = 0u32;
    loop {
        let candidate = directory.join(format!(".{name}.imprint-{}-{attempt}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Ok(file) => return Ok((candidate, file)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(error) => return Err(error),
        }
    }
}

/// Writes with `write` to `path` through an [`OutputFile`] and commits it when `write`
/// succeeded; on failure nothing but this call's own temporary file is removed.
pub fn write_output_file<T, E: From<OutputError>>(
    path: &Path,
    protected_inputs: &[PathBuf],
    write: impl FnOnce(&mut dyn Write) -> Result<T, E>,
) -> Result<T, E> {
    let mut output = OutputFile::open(path, protected_inputs)?;
    let value = write(output.writer())?;
    output.commit()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_inputs_are_refused_by_path_link_and_identity() {
        let directory = tempfile::tempdir().unwrap();
        let ledger = directory.path().join("ledger.db");
        std::fs::write(&ledger, b"ledger bytes").unwrap();
        let hard_link = directory.path().join("hard-link.db");
        std::fs::hard_link(&ledger, &hard_link).unwrap();
        let symlink = directory.path().join("symlink.db");
        std::os::unix::fs::symlink(&ledger, &symlink).unwrap();
        let dotted = directory.path().join("sub/../ledger.db");
        std::fs::create_dir(directory.path().join("sub")).unwrap();
        let protected = vec![ledger.clone(), directory.path().join("ledger.db-wal")];
        for output in [&ledger, &hard_link, &symlink, &dotted, &directory.path().join("ledger.db-wal")] {
            let refused = write_output_file::<(), OutputError>(output, &protected, |out| {
                out.write_all(b"export").map_err(|source| OutputError::Write { path: output.clone(), source })
            });
            assert!(matches!(refused, Err(OutputError::IsAnInput { .. })), "{output:?} was not refused");
        }
        assert_eq!(std::fs::read(&ledger).unwrap(), b"ledger bytes");
    }

    #[test]
    fn check_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary() {
        let directory = tempfile::tempdir().unwrap();
        let output = directory.path().join("export.csv");
        std::fs::write(&output, b"yesterday").unwrap();
        let failed = write_output_file::<(), OutputError>(&output, &[], |out| {
            out.write_all(b"half").unwrap();
            Err(OutputError::Write { path: output.clone(), source: std::io::Error::other("disk full") })
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&output).unwrap(), b"yesterday");
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1, "a temporary file was left");
        write_output_file::<(), OutputError>(&output, &[], |out| {
            out.write_all(b"today").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(&output).unwrap(), b"today");
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1);
    }
}
