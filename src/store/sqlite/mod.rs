//! The embedded backend: one SQLite file in WAL mode.
//!
//! Writes: one writer thread owns the only writing connection. Callers send it jobs
//! over a channel; it takes every job that is waiting (up to [`MAX_BATCH`]), runs them
//! all in one transaction, commits once with a full fsync, and only then answers the
//! callers. That is group commit: under load, hundreds of creates share one fsync,
//! and an answer still means the row is on disk. A job that fails leaves nothing
//! behind and does not disturb the others: a one-statement job is undone by SQLite
//! itself, a longer one runs in its own savepoint ([`in_savepoint`]).
//!
//! Reads: a small pool of read-only connections used directly on the calling task.
//! A point lookup by primary key in a memory-mapped WAL database takes a few
//! microseconds, about what handing it to a blocking thread and back would cost on
//! its own, so the redirect miss path stays on its worker thread.
//!
//! Rejected, measured: keeping each reader's snapshot (read transaction) open across
//! lookups saves the two `fcntl` calls per read and made cold redirects ~15% cheaper,
//! but a reader then always holds a WAL read mark, the WAL can never restart, and it
//! grew to 650 MB in a 30-second run.

mod analytics;
pub mod files;
pub mod lock;
mod sessions;

use super::{
    ApiKey, CODE_KEY_SETTING, ClickDelta, ClickStore, Domain, DomainRemoval, DomainStore,
    IdempotencyState, IdempotencyStore, KeyStore, LinkQuery, LinkStore, MetaStore, NewApiKey,
    NewLink, RedirectRecord, StorageFailure, StoreError, User, code_book,
};
use crate::domain::code::CodeBook;
use crate::domain::link::{
    KeyId, Link, LinkChanges, LinkId, RedirectType, UnixMillis, UserId, now_ms,
};
use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 2048;
/// Jobs waiting for the writer before senders wait their turn.
const QUEUE_DEPTH: usize = 8192;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 16;

/// Schema migrations, applied in order; never edit one that has been released.
/// A database at version N (`PRAGMA user_version`) gets migrations N+1 onwards.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_domains.sql"),
    include_str!("../../../migrations/sqlite/0003_analytics.sql"),
    include_str!("../../../migrations/sqlite/0004_visit_blocks.sql"),
    include_str!("../../../migrations/sqlite/0005_disabled_reason.sql"),
    include_str!("../../../migrations/sqlite/0006_stream_batches.sql"),
    include_str!("../../../migrations/sqlite/0007_links_by_id.sql"),
    include_str!("../../../migrations/sqlite/0008_visit_day_dims.sql"),
    include_str!("../../../migrations/sqlite/0009_drop_link_clicks_hourly.sql"),
    include_str!("../../../migrations/sqlite/0010_sessions.sql"),
];

type MigrationStep = fn(&Connection) -> rusqlite::Result<()>;

/// Data moves that SQL alone cannot do, run in a migration's transaction after its
/// SQL: (migration number, step).
const MIGRATION_STEPS: &[(usize, MigrationStep)] = &[(4, analytics::visits_into_blocks)];

/// Runs inside the shared transaction (`None`: the transaction is already lost, do
/// not run) and returns what to do once the commit succeeded or failed.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;
/// Told whether the transaction committed.
type Completion = Box<dyn FnOnce(Result<(), CommitFailure>) + Send>;

/// Why a group transaction did not commit, told to each of its jobs.
#[derive(Debug, Clone)]
struct CommitFailure {
    /// Set when the storage failed (full, I/O error, damaged).
    kind: Option<StorageFailure>,
    message: String,
}

impl From<rusqlite::Error> for CommitFailure {
    fn from(error: rusqlite::Error) -> Self {
        Self {
            kind: storage_failure(&error),
            message: error.to_string(),
        }
    }
}

impl From<CommitFailure> for StoreError {
    fn from(failure: CommitFailure) -> Self {
        match failure.kind {
            Some(kind) => StoreError::Storage {
                kind,
                detail: failure.message,
            },
            None => StoreError::Database(failure.message),
        }
    }
}

/// How long readiness reports a storage failure before it tries a write to see whether
/// the failure is over: long enough for a load balancer to take the node out, short
/// enough that a node whose disk was cleared comes back by itself (an unready node
/// gets no traffic, so no write of its own would ever clear it).
const FAILURE_HOLD: Duration = Duration::from_secs(10);

/// The last storage failure seen, until a write succeeds after it.
#[derive(Debug, Default)]
struct Health {
    failure: Mutex<Option<(StorageFailure, String, Instant)>>,
}

impl Health {
    fn record(&self, kind: StorageFailure, detail: &str) {
        *self.failure.lock().expect("health poisoned") =
            Some((kind, detail.to_owned(), Instant::now()));
    }

    /// A write committed that began at `since`: failures from before it are over,
    /// except damage, which writes do not repair.
    fn committed(&self, since: Instant) {
        let mut failure = self.failure.lock().expect("health poisoned");
        if failure
            .as_ref()
            .is_some_and(|(kind, _, at)| *kind != StorageFailure::Corrupt && *at < since)
        {
            *failure = None;
        }
    }

    fn current(&self) -> Option<(StorageFailure, String, Instant)> {
        self.failure.lock().expect("health poisoned").clone()
    }

    /// Notes `error` if it is a storage failure, and passes it on.
    fn note(&self, error: StoreError) -> StoreError {
        if let StoreError::Storage { kind, detail } = &error {
            self.record(*kind, detail);
        }
        error
    }
}

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    health: Arc<Health>,
    /// Decodes codes into the ids generated links are stored under.
    codes: Arc<CodeBook>,
}

/// The storage failure an SQLite error reports, if it is one.
fn storage_failure(error: &rusqlite::Error) -> Option<StorageFailure> {
    match error.sqlite_error_code()? {
        ErrorCode::DiskFull => Some(StorageFailure::DiskFull),
        ErrorCode::SystemIoFailure => Some(StorageFailure::Io),
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Some(StorageFailure::Corrupt),
        _ => None,
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(failure, _) = &error
            && failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER
        {
            // The only trigger that aborts is `links_in_registered_domain` (0002).
            return StoreError::UnknownDomain;
        }
        if let Some(kind) = storage_failure(&error) {
            return StoreError::Storage {
                kind,
                detail: error.to_string(),
            };
        }
        match error.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
            _ => StoreError::Database(error.to_string()),
        }
    }
}

fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Reads go through the OS page cache without a copy into SQLite's own cache.
    conn.pragma_update(None, "mmap_size", 1_i64 << 30)?;
    if writer {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: every commit is fsynced, so a 2xx survives a power cut, not only a crash.
        // Group commit is what keeps this affordable.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Room for a whole click batch in memory: below it SQLite spills dirty pages to
        // the WAL mid-transaction. Savepoint journals stay in memory too.
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
    } else {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(())
}

/// Why migrating a SQLite database failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the database's schema is at version {found}, newer than this hop knows ({known})")]
    TooNew { found: u32, known: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.into())
    }
}

/// Applies the migrations after the database's version; returns (before, after). A
/// database of a newer hop is refused, since this one would misread it.
fn migrate(conn: &mut Connection) -> Result<(u32, u32), MigrateError> {
    let current: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(MigrateError::TooNew {
            found: current as u32,
            known: MIGRATIONS.len() as u32,
        });
    }
    // Foreign keys off while migrating, so that a migration can rebuild a table other
    // tables refer to (SQLite's documented way to change a table); each migration is
    // checked before it commits instead.
    conn.pragma_update(None, "foreign_keys", false)?;
    let migrated = apply_migrations(conn, current, MIGRATIONS.len());
    conn.pragma_update(None, "foreign_keys", true)?;
    migrated?;
    Ok((current as u32, MIGRATIONS.len() as u32))
}

/// Applies the migrations after `current` up to `target`.
fn apply_migrations(
    conn: &mut Connection,
    current: usize,
    target: usize,
) -> Result<(), MigrateError> {
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        for (_, step) in MIGRATION_STEPS.iter().filter(|(n, _)| *n == index + 1) {
            step(&tx)?;
        }
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(StoreError::Database(format!(
                "migration {} left rows in {table} that refer to nothing",
                index + 1
            ))
            .into());
        }
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn open_migrated(path: &Path) -> Result<(Connection, (u32, u32)), MigrateError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Database(format!("cannot create {}: {e}", parent.display()))
        })?;
    }
    let mut conn = Connection::open(path)?;
    configure(&conn, true)?;
    let versions = migrate(&mut conn)?;
    Ok((conn, versions))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    /// Refuses files that are half there or damaged, and a schema from a newer hop
    /// (see [`files`]), before anything is written to them.
    pub fn open(path: &Path) -> Result<Arc<Self>, StoreError> {
        Self::open_with(path, super::ConnectOptions::default())
    }

    /// [`Self::open`] with options (the start-up check's time budget).
    pub fn open_with(path: &Path, options: super::ConnectOptions) -> Result<Arc<Self>, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        files::inspect(path)?;
        let fresh = !path.exists();
        let mut conn = Connection::open(path)?;
        let checked = files::check_opened(&conn, path, options.startup_check_max)?;
        if !fresh {
            let duration_ms = checked.took.as_millis() as u64;
            let database = path.display();
            match checked.outcome {
                files::Checked::Whole => tracing::info!(
                    %database,
                    duration_ms,
                    "database passed its quick integrity check"
                ),
                files::Checked::Unfinished => tracing::warn!(
                    %database,
                    duration_ms,
                    "quick integrity check stopped unfinished (startup_check_max_ms); run `hop check` for a full one"
                ),
                files::Checked::Skipped => {}
            }
        }
        configure(&conn, true)?;
        migrate(&mut conn).map_err(|e| match e {
            MigrateError::Store(e) => e,
            too_new => StoreError::Database(format!("{too_new}; run a newer hop against it")),
        })?;
        let codes = Arc::new(load_code_book(&conn)?);
        let health = Arc::new(Health::default());
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer_health = health.clone();
        std::thread::Builder::new()
            .name("hop-sqlite-writer".into())
            .spawn(move || run_writer(conn, rx, writer_health))
            .map_err(|e| StoreError::Database(format!("cannot start writer thread: {e}")))?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            writer: tx,
            readers: Mutex::new(Vec::new()),
            health,
            codes,
        }))
    }

    /// Applies pending migrations and closes the database; returns the schema version
    /// before and after.
    pub fn migrate_only(path: &Path) -> Result<(u32, u32), MigrateError> {
        open_migrated(path).map(|(_, versions)| versions)
    }

    /// Makes an empty database at schema `version` (at most the newest), as a hop of
    /// that version would have left it: for tests of the migrations after it.
    pub fn create_at_version(path: &Path, version: usize) -> Result<(), StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "foreign_keys", false)?;
        apply_migrations(&mut conn, 0, version.min(MIGRATIONS.len())).map_err(|e| match e {
            MigrateError::Store(e) => e,
            other => StoreError::Database(other.to_string()),
        })
    }

    /// Runs `f` in the writer's next transaction and returns its result once committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let health = self.health.clone();
        let job: Job = Box::new(move |conn| {
            let result = conn.map(|conn| f(conn).map_err(|e| health.note(e)));
            Box::new(move |committed: Result<(), CommitFailure>| {
                let outcome = match (committed, result) {
                    (Ok(()), Some(result)) => result,
                    (Err(failure), _) => Err(failure.into()),
                    (Ok(()), None) => Err(StoreError::Database("write was not run".into())),
                };
                let _ = reply.send(outcome);
            })
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Database("writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Database("writer thread dropped a job".into()))?
    }

    /// Runs `f` on a pooled read connection, on the calling thread (see module docs).
    /// A damaged page found by a read is noted for readiness.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        self.read_unnoted(f).map_err(|e| self.health.note(e))
    }

    fn read_unnoted<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().expect("reader pool poisoned").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open(&self.path)?;
                configure(&conn, false)?;
                conn
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().expect("reader pool poisoned");
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        Ok(result?)
    }
}

fn run_writer(conn: Connection, mut jobs: mpsc::Receiver<Job>, health: Arc<Health>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut completions: Vec<Completion> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let committed = commit_batch(&conn, &mut batch, &mut completions, &health);
        match &committed {
            Ok(()) => health.committed(started),
            Err(failure) => {
                tracing::error!(error = %failure.message, jobs = completions.len(), "sqlite commit failed");
                if let Some(kind) = failure.kind {
                    health.record(kind, &failure.message);
                }
            }
        }
        for completion in completions.drain(..) {
            completion(committed.clone());
        }
    }
}

fn commit_batch(
    conn: &Connection,
    batch: &mut Vec<Job>,
    completions: &mut Vec<Completion>,
    health: &Health,
) -> Result<(), CommitFailure> {
    let mut lost = conn
        .execute_batch("BEGIN IMMEDIATE")
        .err()
        .map(CommitFailure::from);
    for job in batch.drain(..) {
        if lost.is_some() {
            completions.push(job(None));
            continue;
        }
        completions.push(job(Some(conn)));
        // A full disk or an I/O error can make SQLite roll the whole transaction back
        // under a failing statement. The jobs after it would then run outside any
        // transaction, each committing on its own while its caller is told it failed:
        // stop here instead, and fail them all.
        if conn.is_autocommit() {
            let kind = health.current().map(|(kind, _, _)| kind);
            lost = Some(CommitFailure {
                kind,
                message: "a failing statement rolled the transaction back".into(),
            });
        }
    }
    if let Some(failure) = lost {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return Err(failure);
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e.into());
    }
    Ok(())
}

/// Runs a job of several statements in a savepoint: on error none of its writes stay
/// in the shared transaction. A job of one statement needs none (SQLite undoes a
/// failed statement by itself), and savepoints are not free: inside a large
/// transaction each one cost more than the insert it guarded (measured: over half of
/// a bulk create's CPU).
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = f(conn);
    if result.is_err() && conn.is_autocommit() {
        // SQLite rolled the whole transaction back (full disk, I/O error): the savepoint
        // is gone; the statement's own error is the one to report.
        return Ok(result?);
    }
    if result.is_err() {
        conn.execute_batch("ROLLBACK TO job")?;
    }
    conn.execute_batch("RELEASE job")?;
    Ok(result?)
}

/// The id of the link with code `?3` in domain `?2`, given `?1`, the id the code
/// decodes to (NULL if it cannot be a generated code): the generated row with that
/// id if it holds this code, else the alias index's entry. A generated hit reads one
/// integer key; the alias index is read only when that misses.
macro_rules! by_code {
    () => {
        "COALESCE((SELECT id FROM links WHERE id = ?1 AND code = ?3 AND domain = ?2), \
         (SELECT link_id FROM link_aliases WHERE domain = ?2 AND code = ?3))"
    };
}

/// Columns read by [`link_from_row`], in its order.
macro_rules! link_columns {
    () => {
        "id, code, url, title, created_at, expires_at, max_clicks, redirect_status, \
         COALESCE((SELECT clicks FROM link_clicks WHERE link_id = links.id), 0), owner_user_id, \
         disabled, updated_at, \
         (SELECT group_concat(tag, char(31)) FROM link_tags WHERE link_id = links.id), \
         password_hash, domain, disabled_reason"
    };
}

/// The secret `name`, stored from `fresh` by the first writer; on the writing
/// connection.
fn stored_secret(conn: &Connection, name: &str, fresh: &[u8]) -> rusqlite::Result<Vec<u8>> {
    conn.prepare_cached(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![name, fresh])?;
    conn.prepare_cached("SELECT value FROM settings WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
}

/// The permutation key (made on first open) as a [`CodeBook`].
fn load_code_book(conn: &Connection) -> Result<CodeBook, StoreError> {
    let fresh: [u8; 16] = rand::random();
    code_book(&stored_secret(conn, CODE_KEY_SETTING, &fresh)?)
}

/// The error a taken code gives, as SQLite would report a unique-key conflict.
fn code_taken() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
        Some("code is taken in its domain".into()),
    )
}

/// Whether `link` is stored as a generated link: its code decodes to its id. Only
/// other links need a second statement (the alias index), and so a savepoint.
fn is_generated(decoded: Option<i64>, link: &NewLink) -> bool {
    decoded == Some(link.id.0)
}

/// The start of an insert of one `links` row, its values bound by [`link_row`].
macro_rules! insert_link_row {
    () => {
        "INSERT INTO links (id, code, url, title, created_at, updated_at, expires_at, \
         max_clicks, redirect_status, owner_user_id, password_hash, domain)"
    };
}

/// The values of [`insert_link_row`], in its order.
macro_rules! link_row_values {
    () => {
        "?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11"
    };
}

/// Inserts one link (and its tags), where its code decodes to if it can.
///
/// - A generated link (its code decodes to its id) is one statement, refused if the id
///   is taken or the alias index holds its code in the domain.
/// - An alias whose code decodes to a value (an alphanumeric code of up to 10
///   characters) takes that value as its id if no row has it: it is then stored and
///   found exactly like a generated link, and the generated code it equals can never
///   be issued (its id is taken).
/// - Any other link keeps the id it came with and gets an entry in the alias index,
///   refused if that entry exists or if the row its code decodes to holds this code.
///
/// So a generated insert never has to look for a concurrent alias of its code: an
/// alias in the index decodes to a taken id. Callers run it in a savepoint unless it
/// is one statement ([`is_generated`] and no tags).
/// `decoded` is what `link`'s code decodes to ([`CodeBook::decode_id`]).
fn insert_one(
    conn: &Connection,
    decoded: Option<i64>,
    mut link: NewLink,
) -> rusqlite::Result<Link> {
    let generated = is_generated(decoded, &link);
    let mut stored = false;
    if let Some(slot) = decoded {
        let sql = if generated {
            concat!(
                insert_link_row!(),
                " SELECT ",
                link_row_values!(),
                " WHERE NOT EXISTS \
                     (SELECT 1 FROM link_aliases WHERE domain = ?11 AND code = ?2)"
            )
        } else {
            concat!(
                insert_link_row!(),
                " SELECT ",
                link_row_values!(),
                " WHERE NOT EXISTS \
                     (SELECT 1 FROM link_aliases WHERE domain = ?11 AND code = ?2) \
                     ON CONFLICT (id) DO NOTHING"
            )
        };
        stored = conn.prepare_cached(sql)?.execute(link_row(&link, slot))? == 1;
        if stored {
            link.id = LinkId(slot);
        } else if generated {
            return Err(code_taken());
        } else {
            let holder: Option<(String, String)> = conn
                .prepare_cached("SELECT domain, code FROM links WHERE id = ?1")?
                .query_row([slot], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            if holder.is_some_and(|(domain, code)| domain == link.domain && code == link.code) {
                return Err(code_taken());
            }
        }
    }
    if !stored {
        conn.prepare_cached(concat!(
            insert_link_row!(),
            " VALUES (",
            link_row_values!(),
            ")"
        ))?
        .execute(link_row(&link, link.id.0))?;
        conn.prepare_cached(
            "INSERT INTO link_aliases (domain, code, link_id) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![link.domain, link.code, link.id.0])?;
    }
    insert_tags(conn, link.id, &link.tags)?;
    Ok(Link {
        id: link.id,
        domain: link.domain,
        code: link.code,
        url: link.url,
        title: link.title,
        created_at: link.created_at,
        expires_at: link.expires_at,
        max_clicks: link.max_clicks,
        redirect: link.redirect,
        clicks: 0,
        owner: link.owner,
        disabled: false,
        disabled_reason: None,
        updated_at: link.created_at,
        tags: link.tags,
        password_hash: link.password_hash,
    })
}

/// The parameters of [`link_row_values`]: `link` under `id`.
#[allow(clippy::type_complexity)]
fn link_row(
    link: &NewLink,
    id: i64,
) -> (
    i64,
    &str,
    &str,
    Option<&str>,
    i64,
    Option<i64>,
    Option<i64>,
    u16,
    Option<i64>,
    Option<&str>,
    &str,
) {
    (
        id,
        &link.code,
        &link.url,
        link.title.as_deref(),
        link.created_at,
        link.expires_at,
        link.max_clicks.map(|n| n as i64),
        link.redirect.code(),
        link.owner.map(|k| k.0),
        link.password_hash.as_deref(),
        &link.domain,
    )
}

/// Tags as read with `group_concat(tag, char(31))`, in order.
fn split_tags(joined: Option<String>) -> Vec<String> {
    let mut tags: Vec<String> = joined
        .map(|text| text.split('\u{1f}').map(str::to_owned).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

fn insert_tags(conn: &Connection, link: LinkId, tags: &[String]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached("INSERT INTO link_tags (link_id, tag) VALUES (?1, ?2)")?;
    for tag in tags {
        insert.execute(params![link.0, tag])?;
    }
    Ok(())
}

fn link_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
    let status: u16 = row.get(7)?;
    Ok(Link {
        id: LinkId(row.get(0)?),
        domain: row.get(14)?,
        code: row.get(1)?,
        url: row.get(2)?,
        title: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        max_clicks: row.get::<_, Option<i64>>(6)?.map(|n| n as u64),
        redirect: RedirectType::from_code(status).unwrap_or_default(),
        clicks: row.get::<_, i64>(8)? as u64,
        owner: row.get::<_, Option<i64>>(9)?.map(UserId),
        disabled: row.get(10)?,
        updated_at: row.get(11)?,
        tags: split_tags(row.get::<_, Option<String>>(12)?),
        password_hash: row.get(13)?,
        disabled_reason: row.get(15)?,
    })
}

/// Columns read by [`key_from_row`]: the key joined with its user as `u`.
const KEY_COLUMNS: &str = "k.id, k.name, k.prefix, k.created_at, k.expires_at, k.revoked_at, \
                           u.id, u.name, u.is_admin, u.created_at";

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: KeyId(row.get(0)?),
        name: row.get(1)?,
        prefix: row.get(2)?,
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
        revoked: row.get::<_, Option<i64>>(5)?.is_some(),
        user: User {
            id: UserId(row.get(6)?),
            name: row.get(7)?,
            admin: row.get(8)?,
            created_at: row.get(9)?,
        },
    })
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId(row.get(0)?),
        name: row.get(1)?,
        admin: row.get(2)?,
        created_at: row.get(3)?,
    })
}

#[async_trait]
impl LinkStore for SqliteStore {
    async fn insert_link(&self, link: NewLink) -> Result<Link, StoreError> {
        // One statement where possible: a conflict undoes itself and nothing else.
        let decoded = self.codes.decode_id(&link.code);
        self.write(move |conn| {
            if link.tags.is_empty() && is_generated(decoded, &link) {
                Ok(insert_one(conn, decoded, link)?)
            } else {
                in_savepoint(conn, |conn| insert_one(conn, decoded, link))
            }
        })
        .await
    }

    async fn insert_links(
        &self,
        links: Vec<NewLink>,
    ) -> Result<Vec<Result<Link, StoreError>>, StoreError> {
        // One statement per item where possible: a taken code undoes that item only.
        let links: Vec<(Option<i64>, NewLink)> = links
            .into_iter()
            .map(|link| (self.codes.decode_id(&link.code), link))
            .collect();
        self.write(move |conn| {
            Ok(links
                .into_iter()
                .map(|(decoded, link)| {
                    if link.tags.is_empty() && is_generated(decoded, &link) {
                        insert_one(conn, decoded, link).map_err(StoreError::from)
                    } else {
                        in_savepoint(conn, |conn| insert_one(conn, decoded, link))
                    }
                })
                .collect())
        })
        .await
    }

    async fn link_by_code(&self, domain: &str, code: &str) -> Result<Option<Link>, StoreError> {
        let id = self.codes.decode_id(code);
        self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                link_columns!(),
                " FROM links WHERE id = ",
                by_code!(),
                " AND deleted_at IS NULL"
            ))?
            .query_row(params![id, domain, code], link_from_row)
            .optional()
        })
    }

    async fn link_by_id(&self, id: LinkId) -> Result<Option<Link>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                link_columns!(),
                " FROM links WHERE id = ?1 AND deleted_at IS NULL"
            ))?
            .query_row([id.0], link_from_row)
            .optional()
        })
    }

    async fn redirect_by_code(
        &self,
        domain: &str,
        code: &str,
    ) -> Result<Option<RedirectRecord>, StoreError> {
        let id = self.codes.decode_id(code);
        self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT id, url, expires_at, max_clicks, redirect_status, disabled, password_hash, \
                 CASE WHEN max_clicks IS NULL THEN 0 ELSE \
                 COALESCE((SELECT clicks FROM link_clicks WHERE link_id = links.id), 0) END, \
                 disabled_reason IS NOT NULL \
                 FROM links WHERE id = ",
                by_code!(),
                " AND deleted_at IS NULL"
            ))?
            .query_row(params![id, domain, code], |row| {
                Ok(RedirectRecord {
                    id: LinkId(row.get(0)?),
                    url: row.get(1)?,
                    expires_at: row.get(2)?,
                    max_clicks: row.get::<_, Option<i64>>(3)?.map(|n| n as u64),
                    redirect: RedirectType::from_code(row.get(4)?).unwrap_or_default(),
                    disabled: row.get(5)?,
                    password_hash: row.get(6)?,
                    limited_clicks: row.get::<_, i64>(7)? as u64,
                    admin_disabled: row.get(8)?,
                })
            })
            .optional()
        })
    }

    async fn tag_counts(&self, owner: Option<UserId>) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT t.tag, COUNT(*) FROM link_tags t JOIN links l ON l.id = t.link_id \
                 WHERE l.deleted_at IS NULL AND (?1 IS NULL OR l.owner_user_id = ?1) \
                 GROUP BY t.tag ORDER BY COUNT(*) DESC, t.tag",
            )?
            .query_map([owner.map(|k| k.0)], |row| {
                Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))
            })?
            .collect()
        })
    }

    async fn list_links(&self, query: LinkQuery) -> Result<Vec<Link>, StoreError> {
        // The sort key: a value and the id as tie-breaker, compared as a row value so
        // that a page starts exactly after the previous one, whatever was inserted
        // meanwhile (keyset pagination: no OFFSET, no duplicates, no gaps).
        let (value, order, before) = query.sort.sql_key();
        let mut sql = format!(
            "SELECT {} FROM links LEFT JOIN link_clicks c ON c.link_id = links.id \
             WHERE links.deleted_at IS NULL",
            link_columns!()
        );
        let mut binds: Vec<rusqlite::types::Value> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, value: rusqlite::types::Value| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("?{}", binds.len())));
        };
        if let Some(owner) = query.owner {
            bind(&mut sql, " AND links.owner_user_id = ?", owner.0.into());
        }
        if let Some(domain) = &query.domain {
            bind(&mut sql, " AND links.domain = ?", domain.clone().into());
        }
        if let Some(from) = query.created_from {
            bind(&mut sql, " AND links.created_at >= ?", from.into());
        }
        if let Some(before) = query.created_before {
            bind(&mut sql, " AND links.created_at < ?", before.into());
        }
        if let Some(tag) = &query.tag {
            bind(
                &mut sql,
                // Driven from the tag's index: a rare tag must not scan every link.
                " AND links.id IN (SELECT link_id FROM link_tags WHERE tag = ?)",
                tag.clone().into(),
            );
        }
        if let Some(text) = &query.text {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = format!("%{escaped}%");
            bind(
                &mut sql,
                // Every `?` of a clause becomes the same numbered parameter.
                " AND (links.code LIKE ? ESCAPE '\\' OR links.url LIKE ? ESCAPE '\\' \
                 OR links.title LIKE ? ESCAPE '\\')",
                pattern.into(),
            );
        }
        if let Some(after) = query.after {
            let comparison = if before { "<" } else { ">" };
            bind(
                &mut sql,
                &format!(" AND ({value}, links.id) {comparison} (?, "),
                after.value.into(),
            );
            bind(&mut sql, "?)", after.id.0.into());
        }
        sql.push_str(&format!(" ORDER BY {value} {order}, links.id {order}"));
        bind(&mut sql, " LIMIT ?", (query.limit as i64).into());
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(binds.iter()), link_from_row)?
                .collect()
        })
    }

    async fn update_link(
        &self,
        id: LinkId,
        changes: LinkChanges,
    ) -> Result<Option<Link>, StoreError> {
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                // One statement for any combination of fields: each field comes with a
                // flag saying whether to set it, so NULL can mean "clear".
                let changed = conn
                    .prepare_cached(
                        "UPDATE links SET \
                         url = CASE WHEN ?2 THEN ?3 ELSE url END, \
                         title = CASE WHEN ?4 THEN ?5 ELSE title END, \
                         expires_at = CASE WHEN ?6 THEN ?7 ELSE expires_at END, \
                         max_clicks = CASE WHEN ?8 THEN ?9 ELSE max_clicks END, \
                         redirect_status = COALESCE(?10, redirect_status), \
                         disabled = COALESCE(?11, disabled), \
                         updated_at = ?12, \
                         password_hash = CASE WHEN ?13 THEN ?14 ELSE password_hash END, \
                         disabled_reason = CASE WHEN ?15 THEN ?16 ELSE disabled_reason END \
                         WHERE id = ?1 AND deleted_at IS NULL",
                    )?
                    .execute(params![
                        id.0,
                        changes.url.is_some(),
                        changes.url.as_ref().map(|u| u.as_str()),
                        changes.title.is_some(),
                        changes.title.clone().flatten(),
                        changes.expires_at.is_some(),
                        changes.expires_at.flatten(),
                        changes.max_clicks.is_some(),
                        changes.max_clicks.flatten().map(|n| n as i64),
                        changes.redirect.map(|r| r.code()),
                        changes.disabled,
                        now_ms(),
                        changes.password_hash.is_some(),
                        changes.password_hash.clone().flatten(),
                        changes.disabled_reason.is_some(),
                        changes.disabled_reason.clone().flatten(),
                    ])?;
                if changed == 0 {
                    return Ok(None);
                }
                if let Some(tags) = &changes.tags {
                    conn.prepare_cached("DELETE FROM link_tags WHERE link_id = ?1")?
                        .execute([id.0])?;
                    insert_tags(conn, id, tags)?;
                }
                conn.prepare_cached(concat!(
                    "SELECT ",
                    link_columns!(),
                    " FROM links WHERE id = ?1"
                ))?
                .query_row([id.0], link_from_row)
                .optional()
            })
        })
        .await
    }

    async fn delete_link(&self, id: LinkId) -> Result<bool, StoreError> {
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                conn.prepare_cached(
                    "UPDATE links SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
                )?
                .execute(params![id.0, now_ms()])
                .map(|changed| changed == 1)
            })
        })
        .await
    }
}

#[async_trait]
impl DomainStore for SqliteStore {
    async fn insert_domain(&self, name: &str) -> Result<Domain, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            let created_at = now_ms();
            conn.prepare_cached("INSERT INTO domains (name, created_at) VALUES (?1, ?2)")?
                .execute(params![name, created_at])?;
            Ok(Domain { name, created_at })
        })
        .await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT name, created_at FROM domains ORDER BY name")?
                .query_map([], |row| {
                    Ok(Domain {
                        name: row.get(0)?,
                        created_at: row.get(1)?,
                    })
                })?
                .collect()
        })
    }

    async fn link_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT domain, COUNT(*) FROM links WHERE deleted_at IS NULL GROUP BY domain",
            )?
            .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?
            .collect()
        })
    }

    async fn remove_domain(&self, name: &str) -> Result<DomainRemoval, StoreError> {
        let name = name.to_owned();
        // On the writer thread, so no link can be inserted between the count and the
        // delete; the primary key (domain, code) makes the count a range scan.
        self.write(move |conn| {
            let links: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM links WHERE domain = ?1 AND deleted_at IS NULL",
                )?
                .query_row([&name], |row| row.get(0))?;
            if links > 0 {
                return Ok(DomainRemoval::InUse(links as u64));
            }
            let removed = conn
                .prepare_cached("DELETE FROM domains WHERE name = ?1")?
                .execute([&name])?;
            Ok(if removed == 1 {
                DomainRemoval::Removed
            } else {
                DomainRemoval::NotFound
            })
        })
        .await
    }
}

#[async_trait]
impl ClickStore for SqliteStore {
    async fn add_clicks(&self, mut deltas: Vec<ClickDelta>) -> Result<(), StoreError> {
        // In key order, consecutive updates land on the same B-tree pages: measured
        // about a third cheaper than hash-map order when clicks spread over many links.
        deltas.sort_unstable_by_key(|d| d.link);
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                let mut total = conn.prepare_cached(
                    "INSERT INTO link_clicks (link_id, clicks) VALUES (?1, ?2) \
                     ON CONFLICT (link_id) DO UPDATE SET clicks = clicks + ?2",
                )?;
                for delta in &deltas {
                    // A link may have been deleted since the click; its row still exists
                    // (deletes are soft), so counts stay consistent for analytics.
                    total.execute(params![delta.link.0, delta.clicks as i64])?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn reserve_click(&self, link: LinkId, max_clicks: u64) -> Result<bool, StoreError> {
        let max = i64::try_from(max_clicks).unwrap_or(i64::MAX);
        // A writer job like a create: concurrent reservations share one commit, and
        // the writer thread runs them one after another, so the comparison with the
        // limit and the increment cannot interleave.
        self.write(move |conn| {
            let counted = conn
                .prepare_cached(
                    "INSERT INTO link_clicks (link_id, clicks) SELECT ?1, 1 WHERE ?2 >= 1 \
                     ON CONFLICT (link_id) DO UPDATE SET clicks = clicks + 1 \
                     WHERE clicks < ?2",
                )?
                .execute(params![link.0, max])?;
            Ok(counted == 1)
        })
        .await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_user(&self, name: &str, admin: bool) -> Result<User, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            let created_at = now_ms();
            conn.prepare_cached(
                "INSERT INTO users (name, is_admin, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![name, admin, created_at])?;
            Ok(User {
                id: UserId(conn.last_insert_rowid()),
                name,
                admin,
                created_at,
            })
        })
        .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, name, is_admin, created_at FROM users \
                 WHERE name = ?1 AND removed_at IS NULL",
            )?
            .query_row([name], user_from_row)
            .optional()
        })
    }

    async fn list_users(&self) -> Result<Vec<(User, u64)>, StoreError> {
        let now = now_ms();
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT u.id, u.name, u.is_admin, u.created_at, \
                 (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.id \
                  AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?1)) \
                 FROM users u WHERE u.removed_at IS NULL ORDER BY u.name",
            )?
            .query_map([now], |row| {
                Ok((user_from_row(row)?, row.get::<_, i64>(4)? as u64))
            })?
            .collect()
        })
    }

    async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                let now = now_ms();
                let removed = conn.execute(
                    "UPDATE users SET removed_at = ?2 WHERE name = ?1 AND removed_at IS NULL",
                    params![name, now],
                )?;
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE revoked_at IS NULL AND user_id IN \
                     (SELECT id FROM users WHERE name = ?2 AND removed_at = ?1)",
                    params![now, name],
                )?;
                Ok(removed > 0)
            })
        })
        .await
    }

    async fn insert_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                conn.execute(
                    "INSERT INTO api_keys (user_id, name, prefix, hash, created_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        key.user.0,
                        key.name,
                        key.prefix,
                        key.hash,
                        now_ms(),
                        key.expires_at
                    ],
                )?;
                conn.query_row(
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                         WHERE k.id = ?1"
                    ),
                    [conn.last_insert_rowid()],
                    key_from_row,
                )
            })
        })
        .await
    }

    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                 WHERE k.hash = ?1"
            ))?
            .query_row([&hash[..]], key_from_row)
            .optional()
        })
    }

    async fn list_keys(&self, user: Option<UserId>) -> Result<Vec<ApiKey>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                 WHERE ?1 IS NULL OR k.user_id = ?1 ORDER BY k.id DESC"
            ))?
            .query_map([user.map(|u| u.0)], key_from_row)?
            .collect()
        })
    }

    async fn revoke_key(&self, prefix: &str) -> Result<bool, StoreError> {
        let prefix = prefix.to_owned();
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE prefix = ?1 AND revoked_at IS NULL",
                params![prefix, now_ms()],
            )? > 0)
        })
        .await
    }

    async fn count_active_keys(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL",
                [],
                |row| row.get::<_, i64>(0),
            )
        })
        .map(|n| n as u64)
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(
        &self,
        scope: [u8; 32],
        key: &str,
        request_hash: [u8; 32],
        valid_after: UnixMillis,
    ) -> Result<IdempotencyState, StoreError> {
        let key = key.to_owned();
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                let existing: Option<(Vec<u8>, Option<u16>, Option<Vec<u8>>, i64)> = conn
                    .prepare_cached(
                        "SELECT request_hash, status, body, created_at FROM idempotency_keys \
                         WHERE scope = ?1 AND key = ?2",
                    )?
                    .query_row(params![&scope[..], key], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .optional()?;
                if let Some((hash, status, body, created_at)) = existing
                    && created_at > valid_after
                {
                    return Ok(if hash != request_hash {
                        IdempotencyState::Mismatch
                    } else if let Some(status) = status {
                        IdempotencyState::Replay {
                            status,
                            body: body.unwrap_or_default(),
                        }
                    } else {
                        IdempotencyState::InProgress
                    });
                }
                conn.prepare_cached(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (scope, key) DO UPDATE SET \
                     request_hash = ?3, status = NULL, body = NULL, created_at = ?4",
                )?
                .execute(params![&scope[..], key, &request_hash[..], now_ms()])?;
                Ok(IdempotencyState::Claimed)
            })
        })
        .await
    }

    async fn complete(
        &self,
        scope: [u8; 32],
        key: &str,
        status: u16,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE idempotency_keys SET status = ?3, body = ?4 WHERE scope = ?1 AND key = ?2",
            )?
            .execute(params![&scope[..], key, status, body])?;
            Ok(())
        })
        .await
    }

    async fn release(&self, scope: [u8; 32], key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND status IS NULL",
            )?
            .execute(params![&scope[..], key])?;
            Ok(())
        })
        .await
    }

    async fn purge(&self, before: UnixMillis) -> Result<u64, StoreError> {
        self.write(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                .execute([before])? as u64)
        })
        .await
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| in_savepoint(conn, |conn| stored_secret(conn, &name, &fresh)))
            .await
    }

    async fn lease_block(&self, name: &str, size: u64) -> Result<Range<u64>, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                conn.execute(
                    "INSERT INTO counters (name, next) VALUES (?1, 0) \
                     ON CONFLICT (name) DO NOTHING",
                    [&name],
                )?;
                let end: i64 = conn.query_row(
                    "UPDATE counters SET next = next + ?2 WHERE name = ?1 RETURNING next",
                    params![name, size as i64],
                    |row| row.get(0),
                )?;
                let end = end as u64;
                Ok(end - size..end)
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))?;
        // A read alone would not notice a dead writer thread.
        if self.writer.is_closed() {
            return Err(StoreError::Database("writer thread has stopped".into()));
        }
        let Some((kind, detail, at)) = self.health.current() else {
            return Ok(());
        };
        if kind == StorageFailure::Corrupt || at.elapsed() < FAILURE_HOLD {
            return Err(StoreError::Storage { kind, detail });
        }
        // Held long enough: a small real write tells whether writes work again (its
        // commit clears the failure).
        self.write(|conn| {
            conn.prepare_cached(
                "INSERT INTO settings (name, value) VALUES ('readiness_probe', ?1) \
                 ON CONFLICT (name) DO UPDATE SET value = ?1",
            )?
            .execute([now_ms().to_be_bytes().to_vec()])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link with a custom code (an alias) and an id of its own.
    fn new_link(code: &str) -> NewLink {
        static NEXT_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
        NewLink {
            id: LinkId(NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
            domain: String::new(),
            code: code.into(),
            url: "https://example.com".into(),
            title: None,
            created_at: 1,
            expires_at: None,
            max_clicks: None,
            redirect: RedirectType::Found,
            owner: None,
            tags: Vec::new(),
            password_hash: None,
        }
    }

    #[tokio::test]
    async fn conflicting_insert_does_not_disturb_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
        store.insert_link(new_link("taken")).await.unwrap();
        // Many concurrent inserts land in shared transactions; the duplicate fails alone.
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = store.clone();
            let code = if i == 25 {
                "taken".to_owned()
            } else {
                format!("c{i}")
            };
            tasks.push(tokio::spawn(async move {
                store.insert_link(new_link(&code)).await
            }));
        }
        let mut conflicts = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(link) => assert_eq!(link.code, format!("c{i}")),
                Err(StoreError::Conflict) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(conflicts, 1);
        for i in (0..50).filter(|i| *i != 25) {
            assert!(
                store
                    .link_by_code("", &format!("c{i}"))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }

    #[tokio::test]
    async fn domains_migrate_onto_a_released_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.db");
        {
            // A database as version 1 left it, with a link in it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO links (id, code, url, created_at, updated_at, redirect_status) \
                 VALUES (1, 'old', 'https://example.com', 0, 0, 302)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.link_by_code("", "old").await.unwrap().is_some());
        let mut in_go = new_link("old");
        in_go.domain = "go.example.com".into();
        // Links stay out of unregistered domains.
        assert!(matches!(
            store.insert_link(in_go.clone()).await,
            Err(StoreError::UnknownDomain)
        ));
        store.insert_domain("go.example.com").await.unwrap();
        assert!(matches!(
            store.insert_domain("go.example.com").await,
            Err(StoreError::Conflict)
        ));
        // The same code in another domain is another link.
        let link = store.insert_link(in_go).await.unwrap();
        assert_eq!(link.domain, "go.example.com");
        assert_eq!(
            store
                .redirect_by_code("go.example.com", "old")
                .await
                .unwrap()
                .unwrap()
                .id,
            link.id
        );
        assert_eq!(
            store.remove_domain("go.example.com").await.unwrap(),
            DomainRemoval::InUse(1)
        );
        assert!(store.delete_link(link.id).await.unwrap());
        assert_eq!(
            store.remove_domain("go.example.com").await.unwrap(),
            DomainRemoval::Removed
        );
        assert_eq!(
            store.remove_domain("go.example.com").await.unwrap(),
            DomainRemoval::NotFound
        );
        assert!(store.list_domains().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_database_fails_writes_as_disk_full_and_readiness_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
        store.insert_link(new_link("kept")).await.unwrap();
        assert!(store.ping().await.is_ok());
        // No room beyond the pages there are: what a full disk looks like to SQLite.
        store
            .write(|conn| {
                let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
                conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
                Ok(())
            })
            .await
            .unwrap();
        let mut full = None;
        for i in 0..10_000 {
            let mut link = new_link(&format!("c{i}"));
            link.url = format!("https://example.com/{}", "x".repeat(1000));
            link.tags = vec!["a".into(), "b".into()];
            match store.insert_link(link).await {
                Ok(_) => {}
                Err(error) => {
                    full = Some(error);
                    break;
                }
            }
        }
        match full {
            Some(StoreError::Storage {
                kind: StorageFailure::DiskFull,
                ..
            }) => {}
            other => panic!("expected disk full, got {other:?}"),
        }
        match store.ping().await {
            Err(StoreError::Storage {
                kind: StorageFailure::DiskFull,
                detail,
            }) => assert!(detail.contains("full"), "{detail}"),
            other => panic!("expected disk full, got {other:?}"),
        }
        // Reads still work, and the failed write left nothing behind.
        assert!(store.link_by_code("", "kept").await.unwrap().is_some());
        let links: i64 = store
            .read(|conn| conn.query_row("SELECT COUNT(*) FROM links", [], |r| r.get(0)))
            .unwrap();
        let tags: i64 = store
            .read(|conn| conn.query_row("SELECT COUNT(*) FROM link_tags", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(tags, 2 * (links - 1));
    }

    #[test]
    fn storage_failures_last_until_a_later_write_commits_but_damage_stays() {
        let health = Health::default();
        let before = Instant::now();
        health.record(StorageFailure::DiskFull, "full");
        health.committed(before);
        assert!(
            health.current().is_some(),
            "a write begun before the failure"
        );
        health.committed(Instant::now());
        assert!(health.current().is_none());
        health.record(StorageFailure::Corrupt, "damaged");
        health.committed(Instant::now());
        assert_eq!(health.current().unwrap().0, StorageFailure::Corrupt);
    }

    #[tokio::test]
    async fn leases_are_disjoint_and_secrets_stable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
        assert_eq!(store.lease_block("codes", 10).await.unwrap(), 0..10);
        assert_eq!(store.lease_block("codes", 5).await.unwrap(), 10..15);
        let first = store.secret("k", vec![1, 2]).await.unwrap();
        let second = store.secret("k", vec![3, 4]).await.unwrap();
        assert_eq!(first, vec![1, 2]);
        assert_eq!(second, first);
    }

    #[tokio::test]
    async fn clicks_add_to_totals() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
        let link = store.insert_link(new_link("abc")).await.unwrap();
        let other = store.insert_link(new_link("abd")).await.unwrap();
        let delta = |link: &Link, clicks| ClickDelta {
            link: link.id,
            clicks,
        };
        store
            .add_clicks(vec![delta(&other, 4), delta(&link, 2), delta(&link, 3)])
            .await
            .unwrap();
        store.add_clicks(vec![delta(&link, 1)]).await.unwrap();
        for (code, clicks) in [("abc", 6), ("abd", 4)] {
            let stored = store.link_by_code("", code).await.unwrap().unwrap();
            assert_eq!(stored.clicks, clicks, "{code}");
        }
    }

    /// A link with the allocator's next generated code.
    async fn generated(codes: &crate::codes::CodeAllocator) -> NewLink {
        let (id, code) = codes.next().await.unwrap();
        NewLink {
            id,
            ..new_link(&code)
        }
    }

    async fn found(store: &SqliteStore, domain: &str, code: &str) -> Option<LinkId> {
        let by_redirect = store.redirect_by_code(domain, code).await.unwrap();
        let by_api = store.link_by_code(domain, code).await.unwrap();
        assert_eq!(
            by_redirect.as_ref().map(|r| r.id),
            by_api.as_ref().map(|l| l.id)
        );
        by_api.map(|link| link.id)
    }

    #[tokio::test]
    async fn every_kind_of_code_is_found_or_missed_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
        let codes = crate::codes::CodeAllocator::new(store.clone(), 7)
            .await
            .unwrap();
        store.insert_domain("go.example.com").await.unwrap();
        let generated_link = store.insert_link(generated(&codes).await).await.unwrap();
        let book = store.codes.clone();
        assert_eq!(
            book.decode(&generated_link.code),
            Some(generated_link.id.0 as u64),
            "a generated link is keyed by the value its code encodes"
        );
        let alias = NewLink {
            id: codes.next_id().await.unwrap(),
            ..new_link("my-alias")
        };
        let alias_link = store.insert_link(alias).await.unwrap();

        // Generated and alias codes are found, by the redirect and by the API.
        assert_eq!(
            found(&store, "", &generated_link.code).await,
            Some(generated_link.id)
        );
        assert_eq!(found(&store, "", "my-alias").await, Some(alias_link.id));
        // A well-formed code whose value was never leased, and one of another length.
        let unleased = book.space(7).encode(3_000_000_000_000);
        assert_eq!(found(&store, "", &unleased).await, None);
        assert_eq!(found(&store, "", "Zz9").await, None);
        // A code that decodes to an existing row holding another code (an 8-character
        // code of the generated link's id).
        let other_length = book.space(8).encode(generated_link.id.0 as u64);
        assert_eq!(book.decode(&other_length), Some(generated_link.id.0 as u64));
        assert_eq!(found(&store, "", &other_length).await, None);
        assert!(
            alias_link.id.0 >= crate::codes::ALIAS_IDS,
            "{:?}",
            alias_link.id
        );
        // Codes of another domain.
        assert_eq!(
            found(&store, "go.example.com", &generated_link.code).await,
            None
        );
        assert_eq!(found(&store, "go.example.com", "my-alias").await, None);

        // The same code in another domain is another link, in both directions.
        let mut elsewhere = NewLink {
            id: codes.next_id().await.unwrap(),
            ..new_link(&generated_link.code)
        };
        elsewhere.domain = "go.example.com".into();
        let elsewhere = store.insert_link(elsewhere).await.unwrap();
        assert_eq!(
            found(&store, "go.example.com", &generated_link.code).await,
            Some(elsewhere.id)
        );
        assert_eq!(
            found(&store, "", &generated_link.code).await,
            Some(generated_link.id)
        );

        // A code is taken whichever way it was made, in its domain.
        let same_alias = NewLink {
            id: codes.next_id().await.unwrap(),
            ..new_link(&generated_link.code)
        };
        assert!(matches!(
            store.insert_link(same_alias).await,
            Err(StoreError::Conflict)
        ));
        let next = generated(&codes).await;
        let squatted = NewLink {
            id: codes.next_id().await.unwrap(),
            ..new_link(&next.code)
        };
        // An alias equal to a generated code not yet issued takes that code's id, so
        // the generated link cannot be stored (its creator moves on to the next code).
        let squatter = store.insert_link(squatted.clone()).await.unwrap();
        assert_eq!(squatter.id, next.id);
        let refused = store.insert_link(next.clone()).await;
        assert!(matches!(refused, Err(StoreError::Conflict)), "{refused:?}");
        assert_eq!(found(&store, "", &next.code).await, Some(squatter.id));
        // An alphanumeric alias is stored under the id its code decodes to (found by
        // one integer key), unless a row has that id: then it goes to the alias index.
        let shaped = NewLink {
            id: codes.next_id().await.unwrap(),
            ..new_link("Summer7")
        };
        let shaped = store.insert_link(shaped).await.unwrap();
        assert_eq!(Some(shaped.id.0 as u64), book.decode("Summer7"));
        assert_eq!(found(&store, "", "Summer7").await, Some(shaped.id));
        let mut beside = NewLink {
            id: codes.next_id().await.unwrap(),
            ..new_link("Summer7")
        };
        beside.domain = "go.example.com".into();
        let beside_id = beside.id;
        let beside = store.insert_link(beside).await.unwrap();
        assert_eq!(beside.id, beside_id, "the decoded id is taken: its own id");
        assert_eq!(
            found(&store, "go.example.com", "Summer7").await,
            Some(beside.id)
        );
        assert_eq!(found(&store, "", "Summer7").await, Some(shaped.id));
        // A generated link with tags goes through a savepoint and is found the same.
        let mut tagged = generated(&codes).await;
        tagged.tags = vec!["t".into()];
        let tagged = store.insert_link(tagged).await.unwrap();
        assert_eq!(found(&store, "", &tagged.code).await, Some(tagged.id));

        // Deleted codes are misses, and stay taken.
        assert!(store.delete_link(generated_link.id).await.unwrap());
        assert!(store.delete_link(alias_link.id).await.unwrap());
        assert_eq!(found(&store, "", &generated_link.code).await, None);
        assert_eq!(found(&store, "", "my-alias").await, None);
        for code in [generated_link.code.clone(), "my-alias".to_owned()] {
            let again = NewLink {
                id: codes.next_id().await.unwrap(),
                ..new_link(&code)
            };
            assert!(matches!(
                store.insert_link(again).await,
                Err(StoreError::Conflict)
            ));
        }
        // A bulk insert sorts each item out alone, the same way.
        let fresh = generated(&codes).await;
        let results = store
            .insert_links(vec![
                fresh.clone(),
                NewLink {
                    id: codes.next_id().await.unwrap(),
                    ..new_link(&next.code)
                },
                NewLink {
                    id: codes.next_id().await.unwrap(),
                    ..new_link("bulk-alias")
                },
            ])
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(StoreError::Conflict)));
        assert!(results[2].is_ok());
        assert_eq!(found(&store, "", &fresh.code).await, Some(fresh.id));
        assert!(found(&store, "", "bulk-alias").await.is_some());
    }

    #[tokio::test]
    async fn a_version_6_store_moves_to_id_order_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.db");
        // A store as version 6 left it: ids in creation order, codes from the
        // per-length counters, a tag, clicks, a deleted link and another domain.
        let key = [9u8; 16];
        let old_space = crate::domain::code::CodeSpace::new(7, key);
        let old_codes: Vec<String> = (0..5).map(|n| old_space.encode(n)).collect();
        {
            SqliteStore::create_at_version(&path, 6).unwrap();
            let conn = Connection::open(&path).unwrap();
            conn.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2)",
                params![CODE_KEY_SETTING, key.to_vec()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO counters (name, next) VALUES ('codes_len7', 4096)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO domains (name, created_at) VALUES ('go.example.com', 0)",
                [],
            )
            .unwrap();
            let insert = "INSERT INTO links (id, domain, code, url, created_at, updated_at,                           redirect_status, deleted_at) VALUES (?1, ?2, ?3, ?4, 0, 0, 302, ?5)";
            for (i, code) in old_codes.iter().enumerate() {
                let deleted = (i == 3).then_some(5_i64);
                conn.execute(
                    insert,
                    params![
                        i as i64 + 1,
                        "",
                        code,
                        format!("https://example.com/{i}"),
                        deleted
                    ],
                )
                .unwrap();
            }
            conn.execute(
                insert,
                params![6, "", "custom", "https://example.com/c", None::<i64>],
            )
            .unwrap();
            conn.execute(
                insert,
                params![
                    7,
                    "go.example.com",
                    &old_codes[0],
                    "https://go.example.com/",
                    None::<i64>
                ],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO link_tags (link_id, tag) VALUES (6, 'kept')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO link_clicks (link_id, clicks) VALUES (2, 41)",
                [],
            )
            .unwrap();
        }

        let store = SqliteStore::open(&path).unwrap();
        for (i, code) in old_codes.iter().enumerate() {
            let expected = (i != 3).then_some(LinkId(i as i64 + 1));
            assert_eq!(found(&store, "", code).await, expected, "{code}");
        }
        assert_eq!(found(&store, "", "custom").await, Some(LinkId(6)));
        assert_eq!(
            found(&store, "go.example.com", &old_codes[0]).await,
            Some(LinkId(7))
        );
        let custom = store.link_by_id(LinkId(6)).await.unwrap().unwrap();
        assert_eq!(
            (custom.url.as_str(), custom.tags.clone()),
            ("https://example.com/c", vec!["kept".to_owned()])
        );
        assert_eq!(
            store.link_by_id(LinkId(2)).await.unwrap().unwrap().clicks,
            41
        );

        // New ids and codes start past every old one; the old codes stay taken.
        let codes = crate::codes::CodeAllocator::new(store.clone(), 7)
            .await
            .unwrap();
        let link = store.insert_link(generated(&codes).await).await.unwrap();
        assert!(link.id.0 >= 4096, "{:?}", link.id);
        assert!(!old_codes.contains(&link.code));
        assert_eq!(found(&store, "", &link.code).await, Some(link.id));
        for code in &old_codes {
            let again = NewLink {
                id: codes.next_id().await.unwrap(),
                ..new_link(code)
            };
            assert!(matches!(
                store.insert_link(again).await,
                Err(StoreError::Conflict)
            ));
        }
        // Rows referring to links still refer to them.
        let dangling: Option<String> = store
            .read(|conn| {
                conn.query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
                    .optional()
            })
            .unwrap();
        assert_eq!(dangling, None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

        /// Any mix of generated links, aliases (some shaped like generated codes),
        /// domains and deletes: every lookup answers what a plain map would.
        #[test]
        fn lookups_answer_like_a_map(
            steps in proptest::collection::vec(
                (0u8..4, 0u8..2, "[0-9A-Za-z]{7}|[a-z-]{1,9}|[0-9A-Za-z]{1,2}"),
                1..40,
            ),
            probes in proptest::collection::vec("[0-9A-Za-z]{7}", 0..20),
        ) {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
                let codes = crate::codes::CodeAllocator::new(store.clone(), 7).await.unwrap();
                store.insert_domain("b.example").await.unwrap();
                let mut model: std::collections::HashMap<(String, String), (LinkId, bool)> =
                    Default::default();
                let mut made = Vec::new();
                for (kind, domain, alias) in steps {
                    let domain = if domain == 0 { "" } else { "b.example" };
                    let mut link = match kind {
                        0 | 1 => generated(&codes).await,
                        2 => NewLink { id: codes.next_id().await.unwrap(), ..new_link(&alias) },
                        _ => {
                            if let Some((domain, code)) = made.pop() {
                                let entry: &mut (LinkId, bool) = model.get_mut(&(domain, code)).unwrap();
                                assert!(store.delete_link(entry.0).await.unwrap());
                                entry.1 = false;
                            }
                            continue;
                        }
                    };
                    link.domain = domain.to_owned();
                    let key = (link.domain.clone(), link.code.clone());
                    let outcome = store.insert_link(link.clone()).await;
                    let squatted = model.values().any(|(id, _)| *id == link.id);
                    if model.contains_key(&key) {
                        assert!(matches!(outcome, Err(StoreError::Conflict)), "{outcome:?}");
                    } else if kind < 2 && squatted {
                        // An alias took this generated code's id (its code decodes to
                        // it): the creator moves on to the next code.
                        assert!(matches!(outcome, Err(StoreError::Conflict)), "{outcome:?}");
                    } else {
                        let stored = outcome.unwrap();
                        assert!(model.values().all(|(id, _)| *id != stored.id), "an id twice");
                        model.insert(key.clone(), (stored.id, true));
                        made.push(key);
                    }
                }
                for ((domain, code), (id, live)) in &model {
                    assert_eq!(found(&store, domain, code).await, live.then_some(*id));
                }
                for code in probes {
                    for domain in ["", "b.example"] {
                        let expected = model
                            .get(&(domain.to_owned(), code.clone()))
                            .and_then(|(id, live)| live.then_some(*id));
                        assert_eq!(found(&store, domain, &code).await, expected);
                    }
                }
            });
        }
    }
}
