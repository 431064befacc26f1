//! The shared backend: PostgreSQL, for many hop processes on one database.
//!
//! Driver: `tokio-postgres` (async, the protocol implementation most Rust PostgreSQL
//! code builds on) with a `deadpool-postgres` pool, whose `prepare_cached` keeps each
//! connection's prepared statements, so a hot statement is parsed and planned once per
//! connection. Every statement is a fixed SQL text with bind parameters; dynamic parts
//! (the listing's filters) are chosen from fixed fragments, never from user text.
//!
//! Writes are plain transactions: PostgreSQL is made for concurrent writers, and
//! `synchronous_commit` is forced on for every connection, so a 2xx means the commit
//! is on the server's disk. Single creates are the exception: many concurrent ones
//! are gathered by [`links::run_inserter`] into one multi-row statement per
//! transaction (group commit, as the SQLite writer does), since one commit per link
//! would cap creates at the server's fsync rate.
//!
//! Conflicts are told by SQLSTATE (23505 unique violation, 23503 from the domain
//! trigger), never by constraint names.
//!
//! Schema and migrations: `migrations/postgres/`, applied by [`migrate`] under an
//! advisory lock. Raw visit blocks are partitioned by month; [`analytics`] creates
//! partitions ahead of time and drops them whole when retention passes them.

mod analytics;
pub mod copy;
mod links;
mod migrate;
mod replicas;
mod sessions;

use super::{
    ApiKey, CODE_KEY_SETTING, ClickDelta, ClickStore, ConnectError, Domain, DomainRemoval,
    DomainStore, IdempotencyState, IdempotencyStore, KeyStore, MetaStore, NewApiKey, ReplicaStatus,
    StoreError, StoreOptions, User, code_book,
};
use crate::domain::code::CodeBook;
use crate::domain::link::{KeyId, LinkId, UnixMillis, UserId, now_ms};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use migrate::MIGRATIONS;

/// Advisory lock keys (one 64-bit number per purpose; "hop" in the high bytes).
const LOCK_MIGRATE: i64 = 0x686f_7000_0001;
const LOCK_PARTITIONS: i64 = 0x686f_7000_0002;
const LOCK_RETENTION: i64 = 0x686f_7000_0003;

pub struct PgStore {
    pool: Pool,
    /// Longest any operation may take (`database_timeout_ms`).
    timeout: Duration,
    /// Single creates, gathered into shared transactions by [`links::run_inserter`].
    inserts: mpsc::Sender<links::InsertJob>,
    /// Read replicas (possibly none), checked by [`replicas::run_monitor`].
    replicas: Arc<replicas::Replicas>,
    /// Open while the primary is silent: see [`Breaker`].
    breaker: Breaker,
    /// Decodes codes into the ids links are stored under.
    codes: Arc<CodeBook>,
}

/// A circuit breaker on the primary's silence. When an operation runs out of time
/// (a frozen server or a black-holed network: connections stay open, nothing
/// answers), every operation would wait the whole timeout again, one after another
/// within a request and all at once across requests. Once one times out, the breaker
/// opens for one timeout: operations fail at once (503 with Retry-After); then one
/// operation is let through as a probe, and the first answer the server gives closes
/// it. A server that refuses connections fails fast by itself and does not open it.
#[derive(Debug, Default)]
struct Breaker {
    /// Unix milliseconds until which operations fail at once; 0 when closed.
    open_until: AtomicI64,
}

impl Breaker {
    /// Whether an operation may run now (the one probe, when the breaker has just
    /// turned half-open).
    fn admit(&self, now: i64, window: i64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        self.open_until
            .compare_exchange(until, now + window, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn answered(&self) {
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Release);
        }
    }

    fn timed_out(&self, now: i64, window: i64) {
        if self.open_until.swap(now + window, Ordering::AcqRel) == 0 {
            tracing::warn!(
                "PostgreSQL did not answer in time; failing fast until it answers a probe"
            );
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.code() {
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreError::Conflict,
            _ => StoreError::Database(describe(&error)),
        }
    }
}

/// One line naming what went wrong: the server's message when it sent one, else
/// the driver's (with its cause, e.g. "connection refused").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let line = cause.to_string();
                if !text.contains(&line) {
                    text.push_str(": ");
                    text.push_str(&line);
                }
                source = cause.source();
            }
            text
        }
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(e) => StoreError::Database(describe(&e)),
        other => StoreError::Database(format!("PostgreSQL connection pool: {other}")),
    }
}

/// `where` (host:port/database) for messages: never the password.
fn target(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{database}")
}

/// A pool on `url` (no connection is opened yet) and the `host:port/database` it
/// reaches, for messages.
fn pool_for(url: &str, options: &StoreOptions) -> Result<(Pool, String), ConnectError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
        ConnectError::Open(format!(
            "invalid PostgreSQL URL {}: {e}",
            super::redacted(url)
        ))
    })?;
    // A server that is down, or up but silent, costs a request at most the timeout:
    // connecting, waiting for a pooled connection and unacknowledged sends all stop
    // there (and every operation is bounded by it, see `PgStore::timed`).
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.timeout);
    }
    config.tcp_user_timeout(options.timeout);
    // A 2xx must mean committed to disk, whatever the server's default says.
    let mut session = config.get_options().unwrap_or("").to_owned();
    session.push_str(" -c synchronous_commit=on");
    // Every statement is prepared once per connection and has a fixed OLTP shape. With
    // the default plan cache mode PostgreSQL kept re-planning the redirect lookup on
    // every execution (a custom plan, pruned to one hash partition, looks cheaper than
    // the generic one), and planning was most of its cost: forcing the generic plan,
    // which prunes partitions at run time, served 40 % more cold redirects
    // (docs/benchmarks.md). A plan_cache_mode in database_url's options still wins.
    if !session.contains("plan_cache_mode") {
        session.push_str(" -c plan_cache_mode=force_generic_plan");
    }
    config.options(session.trim_start());
    let place = target(&config);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(options.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.timeout))
        .create_timeout(Some(options.timeout))
        .recycle_timeout(Some(options.timeout))
        .build()
        .map_err(|e| ConnectError::Open(format!("PostgreSQL pool: {e}")))?;
    Ok((pool, place))
}

/// Opens a pool on `url`, checks that the database answers, migrates it and makes
/// sure this month's visit partitions exist.
async fn open(url: &str, options: &StoreOptions) -> Result<(Pool, (u32, u32)), ConnectError> {
    let (pool, place) = pool_for(url, options)?;
    let mut client = pool.get().await.map_err(|e| {
        let cause = match pool_error(e) {
            StoreError::Database(text) => text,
            other => other.to_string(),
        };
        ConnectError::Open(format!("cannot connect to PostgreSQL at {place}: {cause}"))
    })?;
    let versions = migrate::migrate(&mut client, options.link_partitions).await?;
    analytics::ensure_partitions(&mut client, now_ms())
        .await
        .map_err(|e| ConnectError::Open(format!("creating visit partitions: {}", describe(&e))))?;
    drop(client);
    Ok((pool, versions))
}

/// The secret `name`, stored from `fresh` by the first writer: everyone, including
/// it, reads the stored value.
async fn stored_secret(
    client: &deadpool_postgres::Client,
    name: &str,
    fresh: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let insert = client
        .prepare_cached(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .await?;
    client.execute(&insert, &[&name, &fresh]).await?;
    let select = client
        .prepare_cached("SELECT value FROM settings WHERE name = $1")
        .await?;
    let row = client
        .query_opt(&select, &[&name])
        .await?
        .ok_or_else(|| StoreError::Database(format!("setting {name} vanished")))?;
    Ok(row.try_get(0)?)
}

/// The permutation key (made by the first node that needs it) as a [`CodeBook`].
async fn load_code_book(pool: &Pool) -> Result<CodeBook, ConnectError> {
    let failed = |e: StoreError| ConnectError::Open(format!("reading the short-code key: {e}"));
    let client = pool.get().await.map_err(|e| failed(pool_error(e)))?;
    let fresh: [u8; 16] = rand::random();
    let key = stored_secret(&client, CODE_KEY_SETTING, &fresh)
        .await
        .map_err(failed)?;
    code_book(&key).map_err(failed)
}

impl PgStore {
    /// Connects to the database at `url`, applies pending migrations (under an
    /// advisory lock, so nodes starting together migrate once) and starts the insert
    /// batcher. Each failure is one line that names the problem.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<Self>, ConnectError> {
        let (pool, _) = open(url, options).await?;
        let mut list = Vec::new();
        for replica_url in &options.replica_urls {
            let (replica_pool, name) = pool_for(replica_url, options)?;
            list.push(replicas::Replica::new(name, replica_pool));
        }
        let replicas = Arc::new(replicas::Replicas::new(list, pool.clone()));
        if !replicas.list.is_empty() {
            // A replica that is down does not stop the start: it is skipped until it
            // answers.
            replicas
                .check_all(options.replica_max_lag, options.timeout)
                .await;
            tokio::spawn(replicas::run_monitor(
                Arc::downgrade(&replicas),
                options.replica_max_lag,
                options.timeout,
            ));
        }
        let codes = Arc::new(load_code_book(&pool).await?);
        let (inserts, jobs) = mpsc::channel(links::QUEUE_DEPTH);
        tokio::spawn(links::run_inserter(
            pool.clone(),
            codes.clone(),
            jobs,
            options.timeout,
        ));
        Ok(Arc::new(Self {
            pool,
            timeout: options.timeout,
            inserts,
            replicas,
            breaker: Breaker::default(),
            codes,
        }))
    }

    /// Applies pending migrations to the database at `url` and returns the schema
    /// version before and after.
    pub async fn migrate_only(
        url: &str,
        options: &StoreOptions,
    ) -> Result<(u32, u32), ConnectError> {
        let (_, versions) = open(url, options).await?;
        Ok(versions)
    }

    /// Makes the database at `url` (empty) into schema `version`, as a hop of that
    /// version would have left it: for tests of the migrations after it.
    pub async fn create_at_version(
        url: &str,
        options: &StoreOptions,
        version: usize,
    ) -> Result<(), ConnectError> {
        let (pool, _) = pool_for(url, options)?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| ConnectError::Open(pool_error(e).to_string()))?;
        migrate::migrate_to(&mut client, options.link_partitions, version).await?;
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs `work`, failing with a clear error if it takes longer than the timeout,
    /// or at once while the [`Breaker`] is open.
    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let window = self.timeout.as_millis() as i64;
        if !self.breaker.admit(now_ms(), window) {
            return Err(StoreError::Database(format!(
                "PostgreSQL has not answered within {window} ms; waiting for it to answer again"
            )));
        }
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => {
                self.breaker.answered();
                result
            }
            Err(_) => {
                self.breaker.timed_out(now_ms(), window);
                Err(timed_out(self.timeout))
            }
        }
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query(&statement, params).await?)
        })
        .await
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query_opt(&statement, params).await?)
        })
        .await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.execute(&statement, params).await?)
        })
        .await
    }
}

impl PgStore {
    /// Runs a read that may lag on a replica in use: `None` if there is none, or if
    /// it failed (it is then out of use, and the caller asks the primary).
    async fn replica_rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Option<Vec<Row>> {
        let replica = self.replicas.pick()?;
        let rows = within(self.timeout, async {
            let client = replica.pool.get().await.map_err(pool_error)?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query(&statement, params).await?)
        })
        .await;
        match rows {
            Ok(rows) => {
                replica.answered();
                Some(rows)
            }
            Err(error) => {
                replica.failed(&error);
                None
            }
        }
    }

    /// A read that may lag (listings, stats, visits): a replica's answer, else the
    /// primary's.
    async fn read_rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        match self.replica_rows(sql, params).await {
            Some(rows) => Ok(rows),
            None => self.query(sql, params).await,
        }
    }
}

/// `work`, or a database error once `limit` has passed. Dropping an unfinished
/// transaction rolls it back, so nothing is half-written.
async fn within<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(timed_out(limit)))
}

fn timed_out(limit: Duration) -> StoreError {
    StoreError::Database(format!(
        "PostgreSQL did not answer within {} ms",
        limit.as_millis()
    ))
}

/// Columns read by [`key_from_row`]: the key joined with its user as `u`.
const KEY_COLUMNS: &str = "k.id, k.name, k.prefix, k.created_at, k.expires_at, k.revoked_at, \
                           u.id, u.name, u.is_admin, u.created_at";

fn key_from_row(row: &Row) -> Result<ApiKey, tokio_postgres::Error> {
    Ok(ApiKey {
        id: KeyId(row.try_get(0)?),
        name: row.try_get(1)?,
        prefix: row.try_get(2)?,
        created_at: row.try_get(3)?,
        expires_at: row.try_get(4)?,
        revoked: row.try_get::<_, Option<i64>>(5)?.is_some(),
        user: User {
            id: UserId(row.try_get(6)?),
            name: row.try_get(7)?,
            admin: row.try_get(8)?,
            created_at: row.try_get(9)?,
        },
    })
}

fn user_from_row(row: &Row) -> Result<User, tokio_postgres::Error> {
    Ok(User {
        id: UserId(row.try_get(0)?),
        name: row.try_get(1)?,
        admin: row.try_get(2)?,
        created_at: row.try_get(3)?,
    })
}

#[async_trait]
impl DomainStore for PgStore {
    async fn insert_domain(&self, name: &str) -> Result<Domain, StoreError> {
        let created_at = now_ms();
        self.execute(
            "INSERT INTO domains (name, created_at) VALUES ($1, $2)",
            &[&name, &created_at],
        )
        .await?;
        Ok(Domain {
            name: name.to_owned(),
            created_at,
        })
    }

    async fn list_domains(&self) -> Result<Vec<Domain>, StoreError> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        let rows = self
            .query(
                "SELECT name, created_at FROM domains ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Domain {
                    name: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                })
            })
            .collect()
    }

    async fn link_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .query(
                "SELECT domain, COUNT(*) FROM links WHERE deleted_at IS NULL GROUP BY domain",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)))
            .collect()
    }

    async fn remove_domain(&self, name: &str) -> Result<DomainRemoval, StoreError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // The row lock first: inserts into the domain hold it FOR KEY SHARE until
            // they commit (the links trigger), so once we have it every committed link is
            // counted below and no new one can start until we are done.
            let locked = tx
                .query_opt("SELECT 1 FROM domains WHERE name = $1 FOR UPDATE", &[&name])
                .await?;
            if locked.is_none() {
                return Ok(DomainRemoval::NotFound);
            }
            let links: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM links WHERE domain = $1 AND deleted_at IS NULL",
                    &[&name],
                )
                .await?
                .try_get(0)?;
            if links > 0 {
                return Ok(DomainRemoval::InUse(links as u64));
            }
            tx.execute("DELETE FROM domains WHERE name = $1", &[&name])
                .await?;
            tx.commit().await?;
            Ok(DomainRemoval::Removed)
        })
        .await
    }
}

#[async_trait]
impl ClickStore for PgStore {
    async fn add_clicks(&self, deltas: Vec<ClickDelta>) -> Result<(), StoreError> {
        // One row per key (an upsert may not touch a row twice in one statement), in
        // key order, so that concurrent flushes from several processes lock rows in
        // the same order and cannot deadlock.
        let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
        for delta in &deltas {
            *totals.entry(delta.link.0).or_default() += delta.clicks as i64;
        }
        let (links, clicks): (Vec<i64>, Vec<i64>) = totals.into_iter().unzip();
        // One statement: atomic on its own.
        self.execute(
            "INSERT INTO link_clicks AS c (link_id, clicks) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[]) \
             ON CONFLICT (link_id) DO UPDATE SET clicks = c.clicks + excluded.clicks",
            &[&links, &clicks],
        )
        .await?;
        Ok(())
    }

    async fn reserve_click(&self, link: LinkId, max_clicks: u64) -> Result<bool, StoreError> {
        if max_clicks == 0 {
            return Ok(false);
        }
        let max = i64::try_from(max_clicks).unwrap_or(i64::MAX);
        // One statement, so one atomic step on the server whichever process sends it:
        // the total goes up only while it is under the limit (the row lock makes
        // concurrent reservations of the same link wait for each other and re-check).
        let counted = self
            .query_opt(
                "INSERT INTO link_clicks AS c (link_id, clicks) VALUES ($1, 1) \
                 ON CONFLICT (link_id) DO UPDATE SET clicks = c.clicks + 1 \
                 WHERE c.clicks < $2 \
                 RETURNING 1",
                &[&link.0, &max],
            )
            .await?;
        Ok(counted.is_some())
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_user(&self, name: &str, admin: bool) -> Result<User, StoreError> {
        let created_at = now_ms();
        let row = self
            .query_opt(
                "INSERT INTO users (name, is_admin, created_at) VALUES ($1, $2, $3) RETURNING id",
                &[&name, &admin, &created_at],
            )
            .await?
            .ok_or_else(|| StoreError::Database("insert returned no row".into()))?;
        Ok(User {
            id: UserId(row.try_get(0)?),
            name: name.to_owned(),
            admin,
            created_at,
        })
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.query_opt(
            "SELECT id, name, is_admin, created_at FROM users \
             WHERE name = $1 AND removed_at IS NULL",
            &[&name],
        )
        .await?
        .map(|row| user_from_row(&row))
        .transpose()
        .map_err(StoreError::from)
    }

    async fn list_users(&self) -> Result<Vec<(User, u64)>, StoreError> {
        let rows = self
            .query(
                "SELECT u.id, u.name, u.is_admin, u.created_at, \
                 (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.id \
                  AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $1)) \
                 FROM users u WHERE u.removed_at IS NULL ORDER BY u.name COLLATE \"C\"",
                &[&now_ms()],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((user_from_row(row)?, row.try_get::<_, i64>(4)? as u64)))
            .collect()
    }

    async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let now = now_ms();
            let removed = tx
                .query_opt(
                    "UPDATE users SET removed_at = $2 WHERE name = $1 AND removed_at IS NULL \
                 RETURNING id",
                    &[&name, &now],
                )
                .await?;
            let Some(row) = removed else {
                return Ok(false);
            };
            let user: i64 = row.try_get(0)?;
            tx.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE revoked_at IS NULL AND user_id = $2",
                &[&now, &user],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn insert_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        let row = self
            .query_opt(
                &format!(
                    "WITH k AS ( \
                       INSERT INTO api_keys (user_id, name, prefix, hash, created_at, expires_at) \
                       VALUES ($1, $2, $3, $4, $5, $6) RETURNING *) \
                     SELECT {KEY_COLUMNS} FROM k JOIN users u ON u.id = k.user_id"
                ),
                &[
                    &key.user.0,
                    &key.name,
                    &key.prefix,
                    &&key.hash[..],
                    &now_ms(),
                    &key.expires_at,
                ],
            )
            .await?
            .ok_or_else(|| StoreError::Database("key's user does not exist".into()))?;
        Ok(key_from_row(&row)?)
    }

    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StoreError> {
        self.query_opt(
            &format!(
                "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                 WHERE k.hash = $1"
            ),
            &[&&hash[..]],
        )
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
        .map_err(StoreError::from)
    }

    async fn list_keys(&self, user: Option<UserId>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                     WHERE $1::bigint IS NULL OR k.user_id = $1 ORDER BY k.id DESC"
                ),
                &[&user.map(|u| u.0)],
            )
            .await?;
        rows.iter()
            .map(|row| key_from_row(row).map_err(StoreError::from))
            .collect()
    }

    async fn revoke_key(&self, prefix: &str) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE prefix = $1 AND revoked_at IS NULL",
                &[&prefix, &now_ms()],
            )
            .await?
            > 0)
    }

    async fn count_active_keys(&self) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL",
                &[],
            )
            .await?
            .ok_or_else(|| StoreError::Database("count returned no row".into()))?;
        Ok(row.try_get::<_, i64>(0)? as u64)
    }
}

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn claim(
        &self,
        scope: [u8; 32],
        key: &str,
        request_hash: [u8; 32],
        valid_after: UnixMillis,
    ) -> Result<IdempotencyState, StoreError> {
        // The claim is one upsert: a new key is inserted, an expired one taken over,
        // and a live one left alone (no row returned). Concurrent claims of the same
        // key queue on its row, so exactly one of them gets `Claimed`.
        for _ in 0..3 {
            let claimed = self
                .query_opt(
                    "INSERT INTO idempotency_keys AS i (scope, key, request_hash, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO UPDATE SET \
                     request_hash = excluded.request_hash, status = NULL, body = NULL, \
                     created_at = excluded.created_at \
                     WHERE i.created_at <= $5 \
                     RETURNING 1",
                    &[
                        &&scope[..],
                        &key,
                        &&request_hash[..],
                        &now_ms(),
                        &valid_after,
                    ],
                )
                .await?;
            if claimed.is_some() {
                return Ok(IdempotencyState::Claimed);
            }
            let existing = self
                .query_opt(
                    "SELECT request_hash, status, body FROM idempotency_keys \
                     WHERE scope = $1 AND key = $2",
                    &[&&scope[..], &key],
                )
                .await?;
            // Gone between the two statements (released): claim it again.
            let Some(row) = existing else { continue };
            let hash: Vec<u8> = row.try_get(0)?;
            let status: Option<i32> = row.try_get(1)?;
            return Ok(if hash != request_hash {
                IdempotencyState::Mismatch
            } else if let Some(status) = status {
                IdempotencyState::Replay {
                    status: status as u16,
                    body: row.try_get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default(),
                }
            } else {
                IdempotencyState::InProgress
            });
        }
        // Claimed and released by others three times in a row: report it as busy,
        // which tells the client to retry.
        Ok(IdempotencyState::InProgress)
    }

    async fn complete(
        &self,
        scope: [u8; 32],
        key: &str,
        status: u16,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE idempotency_keys SET status = $3, body = $4 WHERE scope = $1 AND key = $2",
            &[&&scope[..], &key, &i32::from(status), &body],
        )
        .await?;
        Ok(())
    }

    async fn release(&self, scope: [u8; 32], key: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL",
            &[&&scope[..], &key],
        )
        .await?;
        Ok(())
    }

    async fn purge(&self, before: UnixMillis) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            &[&before],
        )
        .await
    }
}

#[async_trait]
impl MetaStore for PgStore {
    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.timed(async { stored_secret(&self.client().await?, name, &fresh).await })
            .await
    }

    async fn lease_block(&self, name: &str, size: u64) -> Result<Range<u64>, StoreError> {
        let size_i = i64::try_from(size)
            .map_err(|_| StoreError::Database(format!("lease of {size} is too large")))?;
        // One statement: the row lock serialises leases from every process.
        let row = self
            .query_opt(
                "INSERT INTO counters AS c (name, next) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET next = c.next + excluded.next \
                 RETURNING next",
                &[&name, &size_i],
            )
            .await?
            .ok_or_else(|| StoreError::Database("lease returned no row".into()))?;
        let end = row.try_get::<_, i64>(0)? as u64;
        Ok(end - size..end)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query_opt("SELECT 1", &[]).await?;
        if self.inserts.is_closed() {
            return Err(StoreError::Database("link inserter has stopped".into()));
        }
        Ok(())
    }

    fn replicas(&self) -> Vec<ReplicaStatus> {
        self.replicas.list.iter().map(|r| r.status()).collect()
    }

    fn pool(&self) -> Option<(usize, usize, usize)> {
        let status = self.pool.status();
        Some((status.size, status.available, status.max_size))
    }
}

#[cfg(test)]
mod breaker_tests {
    use super::Breaker;

    #[test]
    fn opens_on_a_timeout_lets_one_probe_through_and_closes_on_an_answer() {
        let breaker = Breaker::default();
        assert!(breaker.admit(1_000, 500));
        breaker.timed_out(1_000, 500);
        // Open: everything fails at once for one window.
        assert!(!breaker.admit(1_001, 500));
        assert!(!breaker.admit(1_499, 500));
        // Half-open: one probe, the others still fail fast.
        assert!(breaker.admit(1_500, 500));
        assert!(!breaker.admit(1_501, 500));
        // The probe timed out too: open again from then.
        breaker.timed_out(2_000, 500);
        assert!(!breaker.admit(2_499, 500));
        assert!(breaker.admit(2_500, 500));
        // The probe got an answer: closed.
        breaker.answered();
        assert!(breaker.admit(2_501, 500));
        assert!(breaker.admit(2_502, 500));
    }
}
