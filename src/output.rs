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
//! - An existing regular file is not the command's to replace: it is refused
//!   ([`ExistingFile::Refuse`]) unless the user said so (`--force`, [`ExistingFile::Replace`]).
//! - A regular file is written to a temporary file beside the target, synced, and moved into
//!   place only when everything was written (without `--force` by a link that fails if the name
//!   was taken meanwhile): a failure leaves the previous content (or no file) and removes only
//!   the temporary file this command created.
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

    #[error("refusing to overwrite {path}: the file exists (pass --force to replace it)")]
    Exists { path: PathBuf },

    #[error("cannot open {path} for writing: {source}")]
    Open { path: PathBuf, source: std::io::Error },

    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What an output does to a regular file already at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingFile {
    /// Refuse (the default: a command never overwrites a file it did not create).
    Refuse,
    /// Replace it once the new content is complete (`--force`).
    Replace,
}

impl ExistingFile {
    /// `--force` given or not.
    pub fn from_force(force: bool) -> ExistingFile {
        if force { ExistingFile::Replace } else { ExistingFile::Refuse }
    }
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

/// Everything that can be known about `output` before writing: it is none of
/// `protected_inputs`, not a directory, and not an existing regular file unless `existing` says
/// to replace it. Commands call it at start, before any other work (a key generated, a ledger
/// read), and [`OutputFile::open`] calls it again.
pub fn check_output(
    output: &Path,
    protected_inputs: &[PathBuf],
    existing: ExistingFile,
) -> Result<(), OutputError> {
    check_not_an_input(output, protected_inputs)?;
    match std::fs::metadata(output) {
        Ok(metadata) if metadata.is_dir() => Err(OutputError::IsADirectory { path: output.to_owned() }),
        Ok(metadata) if metadata.is_file() && existing == ExistingFile::Refuse => {
            Err(OutputError::Exists { path: output.to_owned() })
        }
        _ => Ok(()),
    }
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
    existing: ExistingFile,
}

impl OutputFile {
    /// Opens `path` for writing after [`check_output`].
    pub fn open(
        path: &Path,
        protected_inputs: &[PathBuf],
        existing: ExistingFile,
    ) -> Result<OutputFile, OutputError> {
        check_output(path, protected_inputs, existing)?;
        let open_error = |source| OutputError::Open { path: path.to_owned(), source };
        match std::fs::metadata(path) {
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
                    existing,
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
                    existing,
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
            move_into_place(&temporary_path, &self.final_path, self.existing)?;
            if let Some(directory) = self.final_path.parent() {
                File::open(directory)?.sync_all()?;
            }
            Ok(())
        })();
        if outcome.is_err() {
            remove_own_temporary(&temporary_path);
        }
        outcome.map_err(|source: std::io::Error| match source.kind() {
            std::io::ErrorKind::AlreadyExists => OutputError::Exists { path: self.path.clone() },
            _ => OutputError::Write { path: self.path.clone(), source },
        })
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

/// Moves the finished temporary file to `final_path`. Without leave to replace, a hard link
/// claims the name (it fails if another program created the file since the check) and the
/// temporary name is then removed; a file system without hard links falls back to a rename.
pub fn move_into_place(
    temporary_path: &Path,
    final_path: &Path,
    existing: ExistingFile,
) -> std::io::Result<()> {
    if existing == ExistingFile::Replace {
        return std::fs::rename(temporary_path, final_path);
    }
    match std::fs::hard_link(temporary_path, final_path) {
        Ok(()) => std::fs::remove_file(temporary_path),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Err(error),
        Err(_) if std::fs::symlink_metadata(final_path).is_err() => {
            std::fs::rename(temporary_path, final_path)
        }
        Err(error) => Err(error),
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
    existing: ExistingFile,
    write: impl FnOnce(&mut dyn Write) -> Result<T, E>,
) -> Result<T, E> {
    let mut output = OutputFile::open(path, protected_inputs, existing)?;
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
            let refused =
                write_output_file::<(), OutputError>(output, &protected, ExistingFile::Replace, |out| {
                    out.write_all(b"export")
                        .map_err(|source| OutputError::Write { path: output.clone(), source })
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
        let failed = write_output_file::<(), OutputError>(&output, &[], ExistingFile::Replace, |out| {
            out.write_all(b"half").unwrap();
            Err(OutputError::Write { path: output.clone(), source: std::io::Error::other("disk full") })
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&output).unwrap(), b"yesterday");
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1, "a temporary file was left");
        write_output_file::<(), OutputError>(&output, &[], ExistingFile::Replace, |out| {
            out.write_all(b"today").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(&output).unwrap(), b"today");
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1);
    }

    #[test]
    fn check_an_existing_file_is_kept_unless_replacing_was_asked_for() {
        let directory = tempfile::tempdir().unwrap();
        let output = directory.path().join("export.csv");
        std::fs::write(&output, b"someone else's").unwrap();
        let refused = write_output_file::<(), OutputError>(&output, &[], ExistingFile::Refuse, |out| {
            out.write_all(b"mine").unwrap();
            Ok(())
        });
        assert!(matches!(refused, Err(OutputError::Exists { .. })), "{refused:?}");
        assert_eq!(std::fs::read(&output).unwrap(), b"someone else's");
        // A file that appears while the output is written is not replaced either.
        let late = directory.path().join("late.csv");
        let raced = write_output_file::<(), OutputError>(&late, &[], ExistingFile::Refuse, |out| {
            std::fs::write(&late, b"arrived meanwhile").unwrap();
            out.write_all(b"mine").unwrap();
            Ok(())
        });
        assert!(matches!(raced, Err(OutputError::Exists { .. })), "{raced:?}");
        assert_eq!(std::fs::read(&late).unwrap(), b"arrived meanwhile");
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 2, "a temporary file was left");
        let fresh = directory.path().join("fresh.csv");
        write_output_file::<(), OutputError>(&fresh, &[], ExistingFile::Refuse, |out| {
            out.write_all(b"new").map_err(|source| OutputError::Write { path: fresh.clone(), source })
        })
        .unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), b"new");
    }
}
