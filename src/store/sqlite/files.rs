//! The database's files on disk: what must be there before hop opens them, and
//! whether they are whole.
//!
//! Why: SQLite treats a missing or empty file as a new database. After an accident
//! (a restore that copied only `hop.db-wal`, a truncated `hop.db`) hop used to start as
//! a fresh install with a new admin key, and every link answered 404 without a word.
//! And a file with damaged pages opened fine and passed `/readyz`, then failed a
//! quarter of redirects. So before opening, [`inspect`] refuses a data directory that
//! is half there, saying what it found; after opening, [`check_opened`] refuses a
//! schema from a newer hop and runs `PRAGMA quick_check` (every page's structure, not
//! index contents: linear in the file's size, about a second per GB when cached, see
//! docs/ARCHITECTURE.md). `hop check` runs the full `integrity_check` ([`full_check`]).

use super::MIGRATIONS;
use crate::store::{StorageFailure, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

/// The first 16 bytes of every SQLite database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";
/// Problems quoted in a refusal; `hop check` lists them all.
const QUOTED_PROBLEMS: usize = 3;

fn damaged(detail: String) -> StoreError {
    StoreError::Storage {
        kind: StorageFailure::Corrupt,
        detail,
    }
}

/// A file beside the database (`-wal`, `-shm`).
fn sibling(database: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

fn size_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Refuses database files that are half there: a log without its database, an empty
/// or foreign `hop.db`. A missing `hop.db` with nothing beside it is a fresh install.
pub(super) fn inspect(database: &Path) -> Result<(), StoreError> {
    let name = database.display();
    let wal = sibling(database, "-wal");
    let wal_bytes = size_of(&wal).unwrap_or(0);
    let remedy = "restore it (`hop restore FILE` from a backup), or move the data \
                  directory away to start a fresh install";
    match size_of(database) {
        None if wal_bytes > 0 => Err(damaged(format!(
            "found {} ({wal_bytes} bytes of committed writes) but no {name}: the database \
             file is missing; {remedy}",
            wal.display()
        ))),
        None => Ok(()),
        Some(0) if wal_bytes > 0 => Err(damaged(format!(
            "{name} is empty (0 bytes) but {} holds {wal_bytes} bytes: the database file \
             was truncated or replaced; {remedy}",
            wal.display()
        ))),
        Some(0) => Err(damaged(format!(
            "{name} is empty (0 bytes): it was truncated or never written; {remedy}"
        ))),
        Some(_) => {
            let mut start = [0u8; 16];
            let read = std::fs::File::open(database)
                .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut start));
            if read.is_err() || &start != HEADER {
                return Err(damaged(format!(
                    "{name} is not an SQLite database (it does not start with the SQLite \
                     header); {remedy}"
                )));
            }
            Ok(())
        }
    }
}

/// How the start-up check of the pages ended (when it found no damage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    Whole,
    /// Stopped at its time budget; what it read was whole.
    Unfinished,
    /// The budget is 0.
    Skipped,
}

pub(super) struct CheckOutcome {
    pub outcome: Checked,
    pub took: Duration,
}

/// Checks an opened database before migrations: a schema this hop knows, and pages
/// that pass `quick_check` within `budget` (stopped past it, so that a start stays
/// bounded on a big file).
pub(super) fn check_opened(
    conn: &Connection,
    database: &Path,
    budget: Duration,
) -> Result<CheckOutcome, StoreError> {
    let name = database.display();
    let version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "{name} was written by a newer hop (schema version {version}; this one knows \
             up to {}); run that version, or restore a backup made by this one",
            MIGRATIONS.len()
        )));
    }
    if version == 0 {
        let tables: i64 =
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))?;
        if tables > 0 {
            return Err(StoreError::Database(format!(
                "{name} holds {tables} schema objects but no hop schema version: it is not \
                 a hop database"
            )));
        }
    }
    let started = Instant::now();
    if budget.is_zero() {
        return Ok(CheckOutcome {
            outcome: Checked::Skipped,
            took: Duration::ZERO,
        });
    }
    // A watchdog interrupts the check at the budget (no rusqlite feature needed:
    // the interrupt handle is plain).
    let interrupt = conn.get_interrupt_handle();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(budget).is_err() {
            interrupt.interrupt();
        }
    });
    let problems = run_check(conn, "quick_check");
    let _ = done.send(());
    let _ = watchdog.join();
    let took = started.elapsed();
    let problems = match problems {
        Err(StoreError::Database(_)) if took >= budget => {
            return Ok(CheckOutcome {
                outcome: Checked::Unfinished,
                took,
            });
        }
        other => other?,
    };
    if !problems.is_empty() {
        return Err(damaged(format!(
            "{name} failed its integrity check ({}); run `hop check` for the full report, \
             and restore a backup with `hop restore FILE`",
            quote(&problems)
        )));
    }
    Ok(CheckOutcome {
        outcome: Checked::Whole,
        took,
    })
}

/// The problems `pragma` (`quick_check` or `integrity_check`) reports; empty when
/// the database is whole. A check that cannot even read the file is one problem.
fn run_check(conn: &Connection, pragma: &str) -> Result<Vec<String>, StoreError> {
    let rows: rusqlite::Result<Vec<String>> = conn
        .prepare(&format!("PRAGMA {pragma}"))
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect());
    match rows {
        Ok(rows) if rows == ["ok"] => Ok(Vec::new()),
        Ok(rows) => Ok(rows),
        Err(error) => match StoreError::from(error) {
            StoreError::Storage {
                kind: StorageFailure::Corrupt,
                detail,
            } => Ok(vec![detail]),
            other => Err(other),
        },
    }
}

fn quote(problems: &[String]) -> String {
    let mut text = problems[..problems.len().min(QUOTED_PROBLEMS)].join("; ");
    if problems.len() > QUOTED_PROBLEMS {
        text.push_str(&format!("; and {} more", problems.len() - QUOTED_PROBLEMS));
    }
    text
}

/// What `hop check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// `PRAGMA user_version`.
    pub schema_version: usize,
    /// Live links.
    pub links: u64,
    /// Problems from `integrity_check` and `foreign_key_check`; empty when whole.
    pub problems: Vec<String>,
}

/// The full check of the database at `database` (every page, every index against its
/// table, foreign keys), read-only, so it may run beside a server.
pub fn full_check(database: &Path) -> Result<CheckReport, StoreError> {
    inspect(database)?;
    if size_of(database).is_none() {
        return Err(StoreError::Database(format!(
            "no database at {}",
            database.display()
        )));
    }
    let conn = Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let schema_version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let mut problems = run_check(&conn, "integrity_check")?;
    if problems.is_empty() {
        let orphans: rusqlite::Result<Vec<String>> = conn
            .prepare("PRAGMA foreign_key_check")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| {
                        Ok(format!(
                            "a row of {} (rowid {:?}) refers to a missing row of {}",
                            row.get::<_, String>(0)?,
                            row.get::<_, Option<i64>>(1)?,
                            row.get::<_, String>(2)?
                        ))
                    })?
                    .collect()
            });
        problems.extend(orphans?);
    }
    let links = if problems.is_empty() && schema_version > 0 {
        conn.query_row(
            "SELECT COUNT(*) FROM links WHERE deleted_at IS NULL",
            [],
            |row| row.get::<_, i64>(0),
        )? as u64
    } else {
        0
    };
    Ok(CheckReport {
        schema_version,
        links,
        problems,
    })
}

/// What a backup or a restore copied.
#[derive(Debug)]
pub struct CopyReport {
    pub schema_version: usize,
    /// Live links in the copy.
    pub links: u64,
    pub bytes: u64,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Database(format!("cannot {what} {}: {error}", path.display()))
}

/// Makes the rename of a file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error("sync", dir, e))
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `path` with `suffix` added to its name.
fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    sibling(path, suffix)
}

/// Schema version and live links of an opened copy, after checking it whole with
/// `pragma` and its schema known to this hop.
fn verify_copy(conn: &Connection, what: &Path, pragma: &str) -> Result<(usize, u64), StoreError> {
    let problems = run_check(conn, pragma)?;
    if !problems.is_empty() {
        return Err(damaged(format!(
            "{} is damaged ({})",
            what.display(),
            quote(&problems)
        )));
    }
    let version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == 0 || version > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "{} is not a hop database this version can use (schema version {version}; \
             this hop knows 1 to {})",
            what.display(),
            MIGRATIONS.len()
        )));
    }
    let links: i64 = conn.query_row(
        "SELECT COUNT(*) FROM links WHERE deleted_at IS NULL",
        [],
        |row| row.get(0),
    )?;
    Ok((version, links as u64))
}

/// Copies the database at `database` to the new file `target` with SQLite's online
/// backup API: one step over a read snapshot, so the copy is consistent (every commit
/// before the snapshot, none after) while a server goes on writing (WAL readers do not
/// block writers). The copy is a single self-contained file (rollback journal, no
/// WAL), checked, fsynced, and only then given its name.
pub fn backup(database: &Path, target: &Path) -> Result<CopyReport, StoreError> {
    if target.exists() {
        return Err(StoreError::Database(format!(
            "{} already exists; backups never overwrite a file, so name a new one",
            target.display()
        )));
    }
    inspect(database)?;
    if !database.exists() {
        return Err(StoreError::Database(format!(
            "no database at {}",
            database.display()
        )));
    }
    let partial = with_suffix(target, ".partial");
    let result = copy_online(database, &partial);
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, target).map_err(|e| io_error("rename", &partial, e))?;
    sync_dir(parent_of(target))?;
    Ok(report)
}

fn copy_online(database: &Path, partial: &Path) -> Result<CopyReport, StoreError> {
    let source = Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(10))?;
    let mut copy = Connection::open(partial)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // -1: every page in one step, under one read snapshot.
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => break,
                _ if Instant::now() > deadline => {
                    return Err(StoreError::Database(
                        "the database stayed locked for a minute; backup abandoned".into(),
                    ));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // The copy came with the source's WAL flag: make it one file of its own.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    let (schema_version, links) = verify_copy(&copy, partial, "quick_check")?;
    drop(copy);
    let file = std::fs::File::open(partial).map_err(|e| io_error("open", partial, e))?;
    file.sync_all().map_err(|e| io_error("sync", partial, e))?;
    let bytes = file
        .metadata()
        .map_err(|e| io_error("read", partial, e))?
        .len();
    Ok(CopyReport {
        schema_version,
        links,
        bytes,
    })
}

/// What [`restore`] did besides copying.
#[derive(Debug)]
pub struct Restored {
    pub report: CopyReport,
    /// Where the database that was replaced went (with its `-wal`), if there was one.
    pub previous: Option<std::path::PathBuf>,
}

/// Puts the backup `source` in place as the database at `database`. The caller holds
/// the writer lock (no server runs). The backup is copied beside the database first and
/// the copy fully checked (`integrity_check`, a schema this hop knows), so neither a
/// damaged backup nor a failed copy touches the current database; that one is then
/// moved aside, not deleted, and the copy renamed into place.
pub fn restore(database: &Path, source: &Path) -> Result<Restored, StoreError> {
    let mut start = [0u8; 16];
    std::fs::File::open(source)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut start))
        .map_err(|e| io_error("read", source, e))?;
    if &start != HEADER {
        return Err(damaged(format!(
            "{} is not an SQLite database (not a hop backup)",
            source.display()
        )));
    }
    let staged = with_suffix(database, ".restoring");
    let _ = std::fs::remove_file(&staged);
    let checked = stage(source, &staged);
    let report = match checked {
        Ok(report) => report,
        Err(error) => {
            let _ = std::fs::remove_file(&staged);
            let _ = std::fs::remove_file(with_suffix(&staged, "-journal"));
            return Err(error);
        }
    };
    let previous = if database.exists() {
        let aside = with_suffix(
            database,
            &format!(".before-restore-{}", crate::domain::link::now_ms()),
        );
        std::fs::rename(database, &aside).map_err(|e| io_error("move aside", database, e))?;
        for suffix in ["-wal", "-shm"] {
            let file = with_suffix(database, suffix);
            if file.exists() {
                // The log belongs to the database moved aside: it goes with it.
                std::fs::rename(&file, with_suffix(&aside, suffix))
                    .map_err(|e| io_error("move aside", &file, e))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staged, database).map_err(|e| io_error("rename", &staged, e))?;
    sync_dir(parent_of(database))?;
    Ok(Restored { report, previous })
}

fn stage(source: &Path, staged: &Path) -> Result<CopyReport, StoreError> {
    let bytes = std::fs::copy(source, staged).map_err(|e| io_error("copy", source, e))?;
    let conn = Connection::open(staged)?;
    let (schema_version, links) = verify_copy(&conn, source, "integrity_check")?;
    drop(conn);
    std::fs::File::open(staged)
        .and_then(|file| file.sync_all())
        .map_err(|e| io_error("sync", staged, e))?;
    Ok(CopyReport {
        schema_version,
        links,
        bytes,
    })
}
