//! One writer per database file: an exclusive lock on `<database>.lock` (`hop.db.lock`
//! in the data directory), held for as long as a process may write.
//!
//! Why: two `hop serve` on one data directory both started, and each trusted its own
//! memory (the link cache, the domains, click sums), so a DELETE on one was ignored by the
//! other for minutes. SQLite's own locking keeps the file consistent but cannot keep
//! two processes' caches so. The lock is `flock(2)` through the standard library
//! (`File::try_lock`): the kernel releases it when the process dies, however it dies,
//! so a `kill -9` never leaves a stale lock behind. The file's text names the holder
//! (pid, command, since when) for the message a refused process prints; the text is
//! informative only, the lock is what counts.

use crate::domain::link::{format_ms, now_ms};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while this process may write to the database; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; `holder` is what it wrote about itself.
    #[error(
        "{database} is in use by {holder}; stop that process first (while a server runs, \
         make changes through its API)"
    )]
    Held { database: String, holder: String },
    #[error("cannot lock {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// The lock file of the database at `database`.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the writer lock of the database at `database` for `command` (e.g.
/// `hop serve`), without waiting.
pub fn take(database: &Path, command: &str) -> Result<WriterLock, LockError> {
    let path = lock_path(database);
    let io = |error| LockError::Io {
        path: path.display().to_string(),
        error,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim() {
                "" => "another process (it has not written its pid yet)".to_owned(),
                known => known.to_owned(),
            };
            return Err(LockError::Held {
                database: database.display().to_string(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(io(error)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(
        file,
        "process {} (`{command}`, since {})",
        std::process::id(),
        format_ms(now_ms())
    )
    .map_err(io)?;
    Ok(WriterLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("hop.db");
        let held = take(&database, "hop serve").unwrap();
        assert_eq!(held.path(), dir.path().join("hop.db.lock"));
        // flock locks belong to the open file: a second open in this process conflicts
        // as another process would.
        let refused = take(&database, "hop keys create").unwrap_err().to_string();
        let pid = std::process::id().to_string();
        assert!(
            refused.contains(&format!("process {pid} (`hop serve`")),
            "{refused}"
        );
        drop(held);
        let again = take(&database, "hop keys create").unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert!(text.contains("`hop keys create`"), "{text}");
    }
}
