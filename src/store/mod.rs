//! Persistence: one trait per kind of data, one implementation per backend, and
//! [`connect`], which picks the backend from a database URL.
//!
//! Two backends implement every trait: [`sqlite`] (embedded, the default) and
//! [`postgres`] (shared by many processes). The HTTP layer cannot tell them apart:
//! async methods, no SQL or driver types in signatures, conflicts reported as
//! [`StoreError::Conflict`]. The test suite runs against both (`HOP_TEST_DATABASE_URL`).

pub mod postgres;
pub mod sqlite;

use crate::domain::code::CodeBook;
use crate::domain::link::{KeyId, Link, LinkChanges, LinkId, RedirectType, UnixMillis, UserId};
use async_trait::async_trait;
use std::ops::Range;
use std::sync::Arc;

/// The counter that numbers links (see [`crate::codes`]).
pub const LINK_ID_COUNTER: &str = "link_ids";

/// The settings row holding the key of the short-code permutation: stores read it to
/// decode codes into link ids, the allocator to encode them.
pub const CODE_KEY_SETTING: &str = "code_permutation_key";

/// The [`CodeBook`] of a stored permutation key.
pub fn code_book(key: &[u8]) -> Result<CodeBook, StoreError> {
    let key: [u8; 16] = key
        .try_into()
        .map_err(|_| StoreError::Database(format!("setting {CODE_KEY_SETTING} is not 16 bytes")))?;
    Ok(CodeBook::new(key))
}

/// Errors every backend reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (a code in its domain, a key hash) is already taken.
    #[error("already exists")]
    Conflict,
    /// A link was given a domain that is not registered (it may have just been
    /// removed).
    #[error("no such domain")]
    UnknownDomain,
    /// The database failed or could not be reached; the message is for logs only.
    #[error("database error: {0}")]
    Database(String),
    /// The storage under the database failed in a way that retrying will not fix
    /// before an operator acts (a full disk, an I/O error, a damaged file); the detail
    /// is for logs only.
    #[error("{kind}: {detail}")]
    Storage {
        kind: StorageFailure,
        detail: String,
    },
}

/// What kind of storage failure a [`StoreError::Storage`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFailure {
    /// No room to write (the disk, or a size limit of the database).
    DiskFull,
    /// The operating system reported an I/O error.
    Io,
    /// The database file is damaged.
    Corrupt,
}

impl std::fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DiskFull => "disk full",
            Self::Io => "I/O error",
            Self::Corrupt => "database damaged",
        })
    }
}

/// The order of a link listing. Each has a unique key (the sort value, then the id),
/// which is what a cursor records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkSort {
    /// Newest first (the default).
    #[default]
    NewestFirst,
    OldestFirst,
    /// Most clicked first. Clicks change while someone pages, so a link can move
    /// between pages; creation order cannot change.
    MostClicked,
    LeastClicked,
}

impl LinkSort {
    /// The listing's sort key in SQL, which both backends share: the value expression
    /// (over `links` and the `link_clicks c` join), its direction, and whether the next
    /// page lies below the cursor (`true` for descending orders).
    pub fn sql_key(self) -> (&'static str, &'static str, bool) {
        match self {
            Self::NewestFirst => ("links.created_at", "DESC", true),
            Self::OldestFirst => ("links.created_at", "ASC", false),
            Self::MostClicked => ("COALESCE(c.clicks, 0)", "DESC", true),
            Self::LeastClicked => ("COALESCE(c.clicks, 0)", "ASC", false),
        }
    }
}

/// Where the previous page of a listing ended: the last row's sort value and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListPosition {
    pub value: i64,
    pub id: LinkId,
}

/// A link listing request; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct LinkQuery {
    /// Only links of this owner (`None`: everyone's, for admins).
    pub owner: Option<UserId>,
    /// Only links in this domain (`""`: the default domain).
    pub domain: Option<String>,
    /// Case-insensitive substring of the code, URL or title.
    pub text: Option<String>,
    pub created_from: Option<UnixMillis>,
    pub created_before: Option<UnixMillis>,
    /// Only links with this tag.
    pub tag: Option<String>,
    pub sort: LinkSort,
    pub after: Option<ListPosition>,
    pub limit: usize,
}

/// A link to insert; the code is already chosen (generated or alias).
#[derive(Debug, Clone)]
pub struct NewLink {
    /// From [`crate::codes::CodeAllocator`]: for a generated code, the counter value
    /// the code encodes (stores find the link by decoding the code); for an alias, a
    /// value of its own.
    pub id: LinkId,
    /// `""` for the default domain, else a registered domain name.
    pub domain: String,
    pub code: String,
    pub url: String,
    pub title: Option<String>,
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub max_clicks: Option<u64>,
    pub redirect: RedirectType,
    pub owner: Option<UserId>,
    pub tags: Vec<String>,
    pub password_hash: Option<String>,
}

/// What a redirect needs of a link: [`Link`] without the fields only the API shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRecord {
    pub id: LinkId,
    pub url: String,
    pub expires_at: Option<UnixMillis>,
    pub max_clicks: Option<u64>,
    pub redirect: RedirectType,
    pub disabled: bool,
    pub password_hash: Option<String>,
    /// Stored clicks; read only for links with a click limit (0 otherwise), since
    /// nothing else on the redirect path needs them.
    pub limited_clicks: u64,
    /// Disabled by an admin with a reason: visitors get the neutral 410.
    pub admin_disabled: bool,
}

/// Clicks to add to one link's total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickDelta {
    pub link: LinkId,
    pub clicks: u64,
}

/// A user: owns links and API keys; admins see and change every link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub admin: bool,
    pub created_at: UnixMillis,
}

impl User {
    /// `admin` or `user`, as the CLI shows it.
    pub fn role(&self) -> &'static str {
        if self.admin { "admin" } else { "user" }
    }
}

/// A stored API key (never the secret itself), with the user it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: KeyId,
    /// A label to recognise the key by.
    pub name: String,
    /// The first characters of the key, safe to show.
    pub prefix: String,
    pub user: User,
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub revoked: bool,
}

impl ApiKey {
    /// Whether the key may be used at `now`.
    pub fn is_usable(&self, now: UnixMillis) -> bool {
        !self.revoked && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A key to insert.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub user: UserId,
    pub name: String,
    pub prefix: String,
    pub hash: [u8; 32],
    pub expires_at: Option<UnixMillis>,
}

#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Inserts a link durably; [`StoreError::Conflict`] when the code is taken (also
    /// by a deleted link: codes are never reused, so old printed links never change
    /// target) or the id is. A link whose code decodes to its id is stored as a
    /// generated one (found by that integer); any other code also goes into the alias
    /// index.
    async fn insert_link(&self, link: NewLink) -> Result<Link, StoreError>;
    /// Inserts many links in one transaction; each item succeeds or fails on its own
    /// (a taken code fails that item only). The outer error means none was stored.
    async fn insert_links(
        &self,
        links: Vec<NewLink>,
    ) -> Result<Vec<Result<Link, StoreError>>, StoreError>;
    /// The live (not deleted) link with this code in `domain` (`""`: the default).
    async fn link_by_code(&self, domain: &str, code: &str) -> Result<Option<Link>, StoreError>;
    /// A live link by id.
    async fn link_by_id(&self, id: LinkId) -> Result<Option<Link>, StoreError>;
    /// Each tag on `owner`'s live links (everyone's for `None`) with how many links
    /// carry it, most used first.
    async fn tag_counts(&self, owner: Option<UserId>) -> Result<Vec<(String, u64)>, StoreError>;
    /// One page of live links in the query's order, starting after `query.after`.
    async fn list_links(&self, query: LinkQuery) -> Result<Vec<Link>, StoreError>;
    /// The redirect-relevant part of the live link with this code in `domain` (the
    /// redirect-miss path: one index lookup, no click total unless the link has a limit).
    async fn redirect_by_code(
        &self,
        domain: &str,
        code: &str,
    ) -> Result<Option<RedirectRecord>, StoreError>;
    /// Applies `changes` to the live link `id` and returns it as it now is, or `None`
    /// if it is not live.
    async fn update_link(
        &self,
        id: LinkId,
        changes: LinkChanges,
    ) -> Result<Option<Link>, StoreError>;
    /// Marks a link deleted; `false` if it was not live.
    async fn delete_link(&self, id: LinkId) -> Result<bool, StoreError>;
}

/// A registered domain (the default domain comes from `base_url` and is not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Lower-case host, then `:port` if it has one.
    pub name: String,
    pub created_at: UnixMillis,
}

/// What [`DomainStore::remove_domain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainRemoval {
    Removed,
    NotFound,
    /// Refused: this many live links are in the domain.
    InUse(u64),
}

#[async_trait]
pub trait DomainStore: Send + Sync {
    /// Registers a domain; [`StoreError::Conflict`] if it already is.
    async fn insert_domain(&self, name: &str) -> Result<Domain, StoreError>;
    /// Every registered domain, by name.
    async fn list_domains(&self) -> Result<Vec<Domain>, StoreError>;
    /// Live links per domain (`""`: the default), for domains that have any. Reads
    /// every link: for admin listings, not for hot paths.
    async fn link_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Removes a domain unless live links are in it (checked in the same write, so a
    /// link created meanwhile cannot be orphaned).
    async fn remove_domain(&self, name: &str) -> Result<DomainRemoval, StoreError>;
}

#[async_trait]
pub trait ClickStore: Send + Sync {
    /// Adds click counts to the links' totals, all or nothing.
    async fn add_clicks(&self, deltas: Vec<ClickDelta>) -> Result<(), StoreError>;
    /// Counts one click on a link that has a click limit, if the limit allows it.
    /// `true`: the click was within `max_clicks` and is now counted in the link's
    /// total, durably (committed before this returns, so a crash cannot give the click
    /// back). `false`: the limit is used up; nothing changed.
    /// Concurrent reservations on one link never take more than `max_clicks` in all,
    /// whichever process makes them.
    async fn reserve_click(&self, link: LinkId, max_clicks: u64) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Adds a user; [`StoreError::Conflict`] if the name is taken.
    async fn insert_user(&self, name: &str, admin: bool) -> Result<User, StoreError>;
    /// The user (not removed) with this name.
    async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError>;
    /// Every user (not removed) with the number of usable keys they hold, by name.
    async fn list_users(&self) -> Result<Vec<(User, u64)>, StoreError>;
    /// Removes a user and revokes their keys; their links stay (an admin still sees
    /// them). `false` if there was no such user.
    async fn remove_user(&self, name: &str) -> Result<bool, StoreError>;
    async fn insert_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError>;
    /// The key whose SHA-256 is `hash`, revoked or not.
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StoreError>;
    /// Keys, newest first; only `user`'s when given.
    async fn list_keys(&self, user: Option<UserId>) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes the key with this visible prefix; `false` if none is active.
    async fn revoke_key(&self, prefix: &str) -> Result<bool, StoreError>;
    /// Number of keys that are not revoked.
    async fn count_active_keys(&self) -> Result<u64, StoreError>;
}

/// A signed-in dashboard session, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    /// Sent back with every form of the session (the CSRF token).
    pub csrf_token: String,
    pub created_at: UnixMillis,
    pub last_seen_at: UnixMillis,
}

/// Users' passwords and the dashboard's sessions. A session is known only by the
/// SHA-256 of its cookie's token; a session of a removed user is no session.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Sets (or with `None` removes) a user's password hash and ends every session of
    /// theirs; `false` if there is no such user.
    async fn set_password(&self, name: &str, hash: Option<String>) -> Result<bool, StoreError>;
    /// The user (not removed) with this name and their password hash, if they have one.
    async fn user_for_sign_in(
        &self,
        name: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError>;
    /// Stores a new session, durably.
    async fn insert_session(
        &self,
        token_hash: [u8; 32],
        user: UserId,
        csrf_token: &str,
        now: UnixMillis,
    ) -> Result<(), StoreError>;
    /// The session with this token hash, if its user is not removed.
    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>, StoreError>;
    /// Records that the session was used at `now`.
    async fn touch_session(&self, token_hash: &[u8; 32], now: UnixMillis)
    -> Result<(), StoreError>;
    /// Ends one session; ending one that does not exist is not an error.
    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<(), StoreError>;
    /// Ends the sessions last used before `before` (idle past the limit), and forgets
    /// password links expired by then; returns how many sessions.
    async fn delete_idle_sessions(&self, before: UnixMillis) -> Result<u64, StoreError>;
    /// Stores a one-time password link for `user`, usable until `expires_at`.
    async fn insert_password_link(
        &self,
        token_hash: [u8; 32],
        user: UserId,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError>;
    /// The user a password link (not expired at `now`) is for.
    async fn password_link(
        &self,
        token_hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<User>, StoreError>;
    /// Uses a password link: sets the user's password hash, ends their sessions and
    /// forgets their password links, all at once; `None` (nothing changed) if the link
    /// is unknown or expired at `now`.
    async fn use_password_link(
        &self,
        token_hash: &[u8; 32],
        password_hash: String,
        now: UnixMillis,
    ) -> Result<Option<User>, StoreError>;
}

#[async_trait]
pub trait MetaStore: Send + Sync {
    /// The secret called `name`, created from `fresh` the first time it is asked for.
    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError>;
    /// Leases `size` consecutive values of the counter `name` to the caller; every
    /// lease is disjoint from every other, across processes.
    async fn lease_block(&self, name: &str, size: u64) -> Result<Range<u64>, StoreError>;
    /// Whether the database answers reads and takes writes: an error when reads fail,
    /// or when recent writes failed for lack of room, an I/O error or damage (a
    /// [`StoreError::Storage`] saying which), until a write succeeds again.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The read replicas and how they are doing (none for a backend without them).
    fn replicas(&self) -> Vec<ReplicaStatus> {
        Vec::new()
    }
    /// The primary's connection pool: (connections open, of them idle, most allowed);
    /// `None` for a backend without one.
    fn pool(&self) -> Option<(usize, usize, usize)> {
        None
    }
}

/// One read replica, as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// `host:port/database`, never a password.
    pub name: String,
    /// Whether reads go to it now (up, and behind by no more than the limit).
    pub in_use: bool,
    /// How far its replay is behind, in milliseconds, at the last check.
    pub lag_ms: u64,
    /// Reads it has answered since start.
    pub reads: u64,
}

/// What a stored idempotency key says about a new request that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// First use (or the earlier use expired): the caller now holds the key and must
    /// [`IdempotencyStore::complete`] or [`IdempotencyStore::release`] it.
    Claimed,
    /// The same request was answered before: send this answer again.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used with a different request.
    Mismatch,
    /// A request with this key is still being processed.
    InProgress,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request with fingerprint `request_hash`, unless it was used
    /// after `valid_after`. Keys are scoped by `scope` (the caller's credential).
    async fn claim(
        &self,
        scope: [u8; 32],
        key: &str,
        request_hash: [u8; 32],
        valid_after: UnixMillis,
    ) -> Result<IdempotencyState, StoreError>;
    /// Records the answer to replay for a claimed key.
    async fn complete(
        &self,
        scope: [u8; 32],
        key: &str,
        status: u16,
        body: Vec<u8>,
    ) -> Result<(), StoreError>;
    /// Gives a claimed key up (the request failed and may be retried).
    async fn release(&self, scope: [u8; 32], key: &str) -> Result<(), StoreError>;
    /// Deletes keys last claimed before `before`; returns how many.
    async fn purge(&self, before: UnixMillis) -> Result<u64, StoreError>;
}

/// A visit as stored and listed: enriched, anonymised (the address, if kept, is
/// truncated). Also what the live feed sends, without an `id`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredVisit {
    /// Position in the listing (newest first); absent in the live feed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<i64>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub at: String,
    pub bot: bool,
    /// Reached by scanning the link's QR code.
    pub qr: bool,
    pub browser: String,
    pub os: String,
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`.
    pub device: String,
    /// Primary language subtag from `Accept-Language` (`en`, `fr`, …).
    pub language: Option<String>,
    pub referrer_host: Option<String>,
    /// The whole referrer, only when the server keeps it (`analytics_keep_referrer_url`).
    pub referrer_url: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    /// The client address truncated to /24 (IPv4) or /48 (IPv6), when the server keeps it.
    pub ip: Option<String>,
}

/// Whose visits a stats query counts.
#[derive(Debug, Clone, Copy)]
pub enum StatsScope {
    /// One link.
    Link(LinkId),
    /// Every link of this owner, or of everyone (`None`).
    Owner(Option<UserId>),
}

/// Visits in one period (an hour or a day), humans and bots apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodCounts {
    /// Unix seconds at the start of the UTC hour or day.
    pub start: i64,
    pub humans: u64,
    pub bots: u64,
}

/// What a stats query reads; the HTTP layer buckets and ranks it.
#[derive(Debug, Clone, Default)]
pub struct StatsRows {
    /// Hours in range that still have hourly rows.
    pub hourly: Vec<PeriodCounts>,
    /// Days in range whose hours have been folded into daily rows.
    pub daily: Vec<PeriodCounts>,
    /// (dimension, value, human visits) over the days in range.
    pub dims: Vec<(String, String, u64)>,
    /// The most visited links in scope: (link, visits), most first.
    pub top_links: Vec<(LinkId, u64)>,
}

/// How long the ids of stored stream batches are kept (pruned with the analytics
/// retention): a batch redelivered later than this would count twice. Far beyond the
/// stream's own deduplication window and any expected NATS outage.
pub const STREAM_BATCH_DAYS: i64 = 7;

/// Click analytics: enriched visits, their rollups, and retention.
#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    /// Stores a batch of visits in one transaction: the raw visits (when `keep_raw`) and
    /// every rollup, so that counts are exact whatever happens around it.
    async fn record_visits(
        &self,
        groups: Arc<Vec<crate::analytics::enrich::VisitGroup>>,
        keep_raw: bool,
    ) -> Result<(), StoreError>;
    /// Stores visits that came off the click stream as [`Self::record_visits`] does,
    /// and records `batch_ids` (the stream's message ids) in the same transaction. If
    /// any of them is recorded already (a batch delivered again), nothing is written
    /// and the answer is `false`. Ids are forgotten after [`STREAM_BATCH_DAYS`].
    async fn record_stream_visits(
        &self,
        groups: Arc<Vec<crate::analytics::enrich::VisitGroup>>,
        keep_raw: bool,
        batch_ids: Vec<String>,
    ) -> Result<bool, StoreError>;
    /// Rollups for `scope` over `[from, to)` (Unix seconds), and the `top` links.
    async fn stats(
        &self,
        scope: StatsScope,
        from: i64,
        to: i64,
        top: usize,
    ) -> Result<StatsRows, StoreError>;
    /// A link's raw visits, newest first, before the visit `before` (an id).
    async fn visits(
        &self,
        link: LinkId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredVisit>, StoreError>;
    /// Deletes raw visits from before `raw_before` (Unix ms), folds hourly rows from
    /// before `hourly_before` (Unix s, a UTC midnight) into daily ones, and the daily
    /// breakdowns of those days into monthly ones. Returns (raw visits deleted, hourly
    /// rows folded).
    async fn prune(&self, raw_before: i64, hourly_before: i64) -> Result<(u64, u64), StoreError>;
}

/// The handles to every kind of data, all backed by the same database.
#[derive(Clone)]
pub struct Stores {
    pub links: Arc<dyn LinkStore>,
    pub domains: Arc<dyn DomainStore>,
    pub clicks: Arc<dyn ClickStore>,
    pub keys: Arc<dyn KeyStore>,
    pub meta: Arc<dyn MetaStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub sessions: Arc<dyn SessionStore>,
}

/// Backend settings from the configuration that are not part of the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections a PostgreSQL pool opens (`database_max_connections`).
    pub max_connections: usize,
    /// Hash partitions of a new PostgreSQL `links` table (`database_link_partitions`).
    pub link_partitions: u32,
    /// SQLite: how to open the file.
    pub sqlite: ConnectOptions,
    /// Longest a PostgreSQL operation may take, connecting included
    /// (`database_timeout_ms`): past it the operation fails instead of hanging.
    pub timeout: std::time::Duration,
    /// PostgreSQL streaming replicas for reads that may lag (`database_replica_urls`).
    pub replica_urls: Vec<String>,
    /// A replica further behind than this is skipped (`replica_max_lag_ms`).
    pub replica_max_lag: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            link_partitions: 16,
            sqlite: ConnectOptions::default(),
            timeout: std::time::Duration::from_millis(5000),
            replica_urls: Vec::new(),
            replica_max_lag: std::time::Duration::from_millis(5000),
        }
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "unsupported database URL scheme `{0}`; expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
    )]
    Scheme(String),
    #[error(
        "database URL `{0}` has no scheme; expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
    )]
    NoScheme(String),
    #[error("cannot open database: {0}")]
    Open(String),
    #[error(
        "the database's schema is at version {found}, newer than this hop knows ({known}); \
         run a newer hop against it"
    )]
    TooNew { found: u32, known: u32 },
    #[error("applying database migrations: {0}")]
    Migrate(String),
}

/// The file of a `sqlite://PATH` URL (`None` for another backend).
pub fn sqlite_path(url: &str) -> Option<&std::path::Path> {
    url.strip_prefix("sqlite://").map(std::path::Path::new)
}

/// Takes the one-writer lock of the database named by `url` for `command`, for
/// backends that need one: an embedded SQLite file must have one writing process (its
/// caches and click sums are that process's), so a second is refused with the
/// holder's pid. `None` for a backend that serves many processes.
pub fn lock_for_writing(
    url: &str,
    command: &str,
) -> Result<Option<sqlite::lock::WriterLock>, sqlite::lock::LockError> {
    sqlite_path(url)
        .map(|path| sqlite::lock::take(path, command))
        .transpose()
}

/// How to open a database, beyond its URL.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Longest a start-up integrity check may run (SQLite); `ZERO` skips it.
    pub startup_check_max: std::time::Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            startup_check_max: std::time::Duration::from_secs(10),
        }
    }
}

/// The backend a URL names.
enum Backend<'a> {
    Sqlite(&'a str),
    Postgres,
}

fn backend(url: &str) -> Result<Backend<'_>, ConnectError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ConnectError::NoScheme(redacted(url)))?;
    match scheme {
        "sqlite" => Ok(Backend::Sqlite(rest)),
        "postgres" | "postgresql" => Ok(Backend::Postgres),
        other => Err(ConnectError::Scheme(other.to_owned())),
    }
}

/// Opens the database named by `url` (`sqlite://PATH` or `postgres://…`) and
/// applies pending migrations.
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Stores, ConnectError> {
    match backend(url)? {
        Backend::Sqlite(path) => {
            let store = sqlite::SqliteStore::open_with(std::path::Path::new(path), options.sqlite)
                .map_err(sqlite_open_error)?;
            Ok(Stores {
                links: store.clone(),
                domains: store.clone(),
                clicks: store.clone(),
                keys: store.clone(),
                meta: store.clone(),
                idempotency: store.clone(),
                analytics: store.clone(),
                sessions: store,
            })
        }
        Backend::Postgres => {
            let store = postgres::PgStore::connect(url, options).await?;
            Ok(Stores {
                links: store.clone(),
                domains: store.clone(),
                clicks: store.clone(),
                keys: store.clone(),
                meta: store.clone(),
                idempotency: store.clone(),
                analytics: store.clone(),
                sessions: store,
            })
        }
    }
}

fn sqlite_open_error(error: StoreError) -> ConnectError {
    match error {
        StoreError::Database(text) => ConnectError::Open(text),
        other => ConnectError::Open(other.to_string()),
    }
}

/// Applies pending migrations to the database at `url` without starting anything
/// else; returns the schema version before and after.
pub async fn migrate(url: &str, options: &StoreOptions) -> Result<(u32, u32), ConnectError> {
    match backend(url)? {
        Backend::Sqlite(path) => sqlite::SqliteStore::migrate_only(std::path::Path::new(path))
            .map_err(|e| match e {
                sqlite::MigrateError::TooNew { found, known } => {
                    ConnectError::TooNew { found, known }
                }
                sqlite::MigrateError::Store(e) => sqlite_open_error(e),
            }),
        Backend::Postgres => postgres::PgStore::migrate_only(url, options).await,
    }
}

/// `url` with its password (if any) replaced by `***`, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_leave_in_messages() {
        assert_eq!(
            redacted("postgres://hop:s3cret@db.example:5432/hop"),
            "postgres://hop:***@db.example:5432/hop"
        );
        assert_eq!(
            redacted("postgres://hop@db.example/hop"),
            "postgres://hop@db.example/hop"
        );
        assert_eq!(redacted("sqlite:///data/hop.db"), "sqlite:///data/hop.db");
    }

    #[tokio::test]
    async fn unknown_schemes_are_named() {
        let options = StoreOptions::default();
        let error = connect("mysql://db/hop", &options).await.err().unwrap();
        assert!(error.to_string().contains("`mysql`"), "{error}");
        let error = connect("hop.db", &options).await.err().unwrap();
        assert!(error.to_string().contains("no scheme"), "{error}");
    }
}
