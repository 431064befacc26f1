//! Configuration: defaults, then a TOML file (`--config`), then `HOP_*` environment
//! variables, then command-line flags; later sources win.
//!
//! Every source is merged into one TOML table before a single strict deserialisation,
//! so an unknown key is an error that names it wherever it came from. Environment
//! values are text; numeric and boolean settings accept text too, so `HOP_CODE_LENGTH=8`
//! works like `code_length = 8` in the file.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::domain::code::{MAX_GENERATED_LEN, MIN_GENERATED_LEN};

/// Prefix of the environment variables read as configuration.
pub const ENV_PREFIX: &str = "HOP_";

/// The longest `shutdown_drain_ms` accepted. A balancer notices a failing `/readyz`
/// within seconds; a longer value is a mistake that would keep a stopping node
/// running (and an orchestrator would kill it before the end anyway).
const MAX_SHUTDOWN_DRAIN_MS: u64 = 600_000;

/// Every setting. Field names are the keys of the file and, upper-cased with the
/// `HOP_` prefix, of the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port the HTTP server listens on.
    pub listen: String,
    /// Directory of the embedded database.
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://PATH`, or `postgres://USER@HOST:PORT/DATABASE` for a
    /// database many processes share; empty means `sqlite://<data_dir>/hop.db`.
    pub database_url: String,
    /// Longest the integrity check of the embedded database may take at start, in
    /// milliseconds; a check still running then is stopped (logged) and hop starts.
    /// 0 skips it.
    #[serde(deserialize_with = "lenient")]
    pub startup_check_max_ms: u64,
    /// PostgreSQL: most connections each process opens.
    #[serde(deserialize_with = "lenient")]
    pub database_max_connections: usize,
    /// PostgreSQL: hash partitions of the links table, fixed when the schema is
    /// created (later changes do not re-partition an existing database).
    #[serde(deserialize_with = "lenient")]
    pub database_link_partitions: u32,
    /// PostgreSQL: longest a database operation may take before the request gets a
    /// 503, in milliseconds.
    #[serde(deserialize_with = "lenient")]
    pub database_timeout_ms: u64,
    /// PostgreSQL read replicas (URLs) for redirect misses, listings, stats and visits.
    #[serde(deserialize_with = "string_list")]
    pub database_replica_urls: Vec<String>,
    /// A replica further behind the primary than this is skipped, in milliseconds.
    #[serde(deserialize_with = "lenient")]
    pub replica_max_lag_ms: u64,
    /// Redis shared by the nodes of a cluster (`redis://HOST:PORT/DB`): invalidation,
    /// rate limits and the second cache tier; empty: none (every node on its own).
    pub redis_url: String,
    /// Longest a Redis call may take before hop goes on without it and opens the
    /// breaker, in milliseconds.
    #[serde(deserialize_with = "lenient")]
    pub redis_timeout_ms: u64,
    /// Prefix of every Redis key and channel hop uses, so clusters (or tests) can
    /// share one Redis.
    pub redis_prefix: String,
    /// How long a link stays in the shared (Redis) cache, in seconds.
    #[serde(deserialize_with = "lenient")]
    pub redis_cache_ttl_s: u64,
    /// NATS with JetStream that carries a cluster's visits (`nats://HOST:PORT`): nodes
    /// publish what they capture, `hop worker` stores it; empty: each node stores its own.
    pub nats_url: String,
    /// Names hop uses in NATS: the stream `<prefix>-visits` on the subject
    /// `<prefix>.visits`, the workers' consumer `<prefix>-worker`, live feeds on
    /// `<prefix>.live.<link>`. Letters, digits, `-` and `_`.
    pub nats_prefix: String,
    /// Longest a publish may wait for JetStream's acknowledgement before its batch goes
    /// to the spool, in milliseconds.
    #[serde(deserialize_with = "lenient")]
    pub nats_timeout_ms: u64,
    /// Largest size of the file (`<data_dir>/visits.spool`) that keeps batches while
    /// NATS cannot take them, in bytes; past it new batches are dropped and counted
    /// (their clicks still are).
    #[serde(deserialize_with = "lenient")]
    pub spool_max_bytes: u64,
    /// Public URL that short links start with; empty means `http://<listen>`.
    pub base_url: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `hop=debug,info`.
    pub log_level: String,
    /// Characters in a generated code.
    #[serde(deserialize_with = "lenient")]
    pub code_length: u32,
    /// `max-age` of the `Cache-Control` header on redirects, in seconds.
    #[serde(deserialize_with = "lenient")]
    pub redirect_max_age_s: u64,
    /// Longest target URL accepted, in bytes.
    #[serde(deserialize_with = "lenient")]
    pub max_url_length: usize,
    /// URL schemes a link may point to.
    #[serde(deserialize_with = "string_list")]
    pub allowed_schemes: Vec<String>,
    /// Largest request body accepted, in bytes.
    #[serde(deserialize_with = "lenient")]
    pub max_body_bytes: usize,
    /// Largest body of `POST /api/v1/links/bulk`, in bytes.
    #[serde(deserialize_with = "lenient")]
    pub max_bulk_body_bytes: usize,
    /// Memory the redirect cache may use, in bytes (estimated per entry).
    #[serde(deserialize_with = "lenient")]
    pub cache_max_bytes: u64,
    /// How long a link stays cached, in seconds (never past the link's expiry).
    #[serde(deserialize_with = "lenient")]
    pub cache_ttl_s: u64,
    /// How long an unknown code is remembered as unknown, in milliseconds.
    #[serde(deserialize_with = "lenient")]
    pub negative_cache_ttl_ms: u64,
    /// How often counted clicks are written to the database, in milliseconds.
    #[serde(deserialize_with = "lenient")]
    pub click_flush_interval_ms: u64,
    /// How long a dashboard session lasts without being used, in minutes.
    #[serde(deserialize_with = "lenient")]
    pub session_idle_minutes: u64,
    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    #[serde(deserialize_with = "lenient")]
    pub shutdown_timeout_s: u64,
    /// How long a node keeps serving after SIGTERM/SIGINT with `/readyz` failing, so its
    /// load balancer stops sending to it first, in milliseconds (0: shut down at once).
    #[serde(deserialize_with = "lenient")]
    pub shutdown_drain_ms: u64,
    /// How long a request may take from its headers to its last body byte, and to its
    /// answer, in milliseconds (a slow body gets 408).
    #[serde(deserialize_with = "lenient")]
    pub request_timeout_ms: u64,
    /// How long a client may take to send a request's headers, in milliseconds; also
    /// how long an idle keep-alive connection stays open.
    #[serde(deserialize_with = "lenient")]
    pub header_read_timeout_ms: u64,
    /// Largest request line plus headers accepted, in bytes (larger: 431).
    #[serde(deserialize_with = "lenient")]
    pub max_header_bytes: usize,
    /// Open connections in all (0: the open-file limit less a headroom).
    #[serde(deserialize_with = "lenient")]
    pub max_connections: usize,
    /// Open connections per client address (0: no cap; trusted proxies are exempt).
    #[serde(deserialize_with = "lenient")]
    pub max_connections_per_client: usize,
    /// Where `GET /` sends visitors (an http(s) URL); empty: 404.
    pub root_redirect: String,
    /// Where an unknown code or page sends browsers (an http(s) URL); empty: 404.
    pub not_found_redirect: String,
    /// Files of hosts links may not point at (one host a line, or hosts-file lines).
    #[serde(deserialize_with = "string_list")]
    pub blocklist_files: Vec<String>,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed for the client address.
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    /// API requests per minute without a valid key, per client address (0: no limit).
    #[serde(deserialize_with = "lenient")]
    pub rate_limit_anonymous_per_minute: u32,
    /// API requests per minute for a user's key (0: no limit).
    #[serde(deserialize_with = "lenient")]
    pub rate_limit_user_per_minute: u32,
    /// API requests per minute for an admin's key (0: no limit).
    #[serde(deserialize_with = "lenient")]
    pub rate_limit_admin_per_minute: u32,
    /// Redirects per minute per client address (0: no limit).
    #[serde(deserialize_with = "lenient")]
    pub rate_limit_redirect_per_minute: u32,
    /// Per-key limits by visible key prefix, e.g. `{ "hop_AbCd1234" = 20000 }`.
    pub rate_limit_key_overrides: std::collections::HashMap<String, u32>,
    /// Whether `POST /api/v1/shorten` and `POST /api/v1/links` work without an API key.
    #[serde(deserialize_with = "lenient_bool")]
    pub anonymous_create: bool,
    /// Creates per minute without an API key, per client address (0: no limit), on
    /// top of `rate_limit_anonymous_per_minute`.
    #[serde(deserialize_with = "lenient")]
    pub rate_limit_anonymous_create_per_minute: u32,
    /// Whether redirects are recorded for click analytics (visits, rollups, live feed).
    #[serde(deserialize_with = "lenient_bool")]
    pub analytics_enabled: bool,
    /// Whether the whole referrer URL is kept, not only its host.
    #[serde(deserialize_with = "lenient_bool")]
    pub analytics_keep_referrer_url: bool,
    /// What is kept of a visitor's address: `none` or `truncated` (/24, /48).
    pub analytics_ip: String,
    /// Days raw visits are kept (0: rollups only).
    #[serde(deserialize_with = "lenient")]
    pub analytics_raw_retention_days: u32,
    /// Days hourly rollups are kept before they are folded into daily ones.
    #[serde(deserialize_with = "lenient")]
    pub analytics_hourly_retention_days: u32,
    /// Visits that may wait for the pipeline; past it they are dropped and counted.
    #[serde(deserialize_with = "lenient")]
    pub analytics_queue_capacity: usize,
    /// How often the pipeline drains and stores visits, in milliseconds.
    #[serde(deserialize_with = "lenient")]
    pub analytics_flush_interval_ms: u64,
    /// Geolocation (the `[geoip]` section of the file).
    pub geoip: GeoIpConfig,
}

/// The `[geoip]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoIpConfig {
    /// A MaxMind-format City database (`GeoLite2-City.mmdb`); empty: no geolocation.
    pub database: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./hop-data"),
            database_url: String::new(),
            startup_check_max_ms: 10_000,
            database_max_connections: 16,
            database_link_partitions: 16,
            database_timeout_ms: 5000,
            database_replica_urls: Vec::new(),
            replica_max_lag_ms: 5000,
            redis_url: String::new(),
            redis_timeout_ms: 50,
            redis_prefix: "hop:".into(),
            redis_cache_ttl_s: 60,
            nats_url: String::new(),
            nats_prefix: "hop".into(),
            nats_timeout_ms: 2000,
            spool_max_bytes: 1 << 30,
            base_url: String::new(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            code_length: 7,
            redirect_max_age_s: 90,
            max_url_length: 4096,
            allowed_schemes: vec!["http".into(), "https".into()],
            max_body_bytes: 64 * 1024,
            max_bulk_body_bytes: 8 * 1024 * 1024,
            cache_max_bytes: 64 * 1024 * 1024,
            cache_ttl_s: 300,
            negative_cache_ttl_ms: 2000,
            click_flush_interval_ms: 1000,
            session_idle_minutes: 480,
            shutdown_timeout_s: 30,
            shutdown_drain_ms: 0,
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 16 * 1024,
            max_connections: 0,
            max_connections_per_client: 128,
            blocklist_files: Vec::new(),
            root_redirect: String::new(),
            not_found_redirect: String::new(),
            trusted_proxies: Vec::new(),
            rate_limit_anonymous_per_minute: 60,
            rate_limit_user_per_minute: 1200,
            rate_limit_admin_per_minute: 6000,
            rate_limit_redirect_per_minute: 60000,
            rate_limit_key_overrides: std::collections::HashMap::new(),
            anonymous_create: false,
            rate_limit_anonymous_create_per_minute: 10,
            analytics_enabled: true,
            analytics_keep_referrer_url: false,
            analytics_ip: "none".into(),
            analytics_raw_retention_days: 30,
            analytics_hourly_retention_days: 90,
            analytics_queue_capacity: 1_000_000,
            analytics_flush_interval_ms: 250,
            geoip: GeoIpConfig::default(),
        }
    }
}

/// The commented default configuration printed by `hop config default`.
pub const DEFAULT_TOML: &str = r#"# hop configuration. Every key is optional; shown here with its default.
# Environment variables override this file (HOP_LISTEN, HOP_DATA_DIR, ...), and
# command-line flags override both.

# Address and port the HTTP server listens on.
listen = "127.0.0.1:8080"

# Directory of the embedded SQLite database.
data_dir = "./hop-data"

# Database URL. Empty means sqlite://<data_dir>/hop.db. A PostgreSQL URL such as
# "postgres://hop@db.example:5432/hop" puts hop on a database that many hop
# processes can share (a password may be given in the URL; it is never logged).
database_url = ""

# Longest the start-up integrity check of the embedded database (PRAGMA quick_check,
# about 4 ms per MB) may take, in milliseconds; past it the check stops unfinished
# (logged) and hop starts. 0 skips it. `hop check` runs the full check.
startup_check_max_ms = 10000

# PostgreSQL only: most connections each hop process opens.
database_max_connections = 16

# PostgreSQL only: hash partitions of the links table. Takes effect when hop creates
# the schema in an empty database; an existing database keeps its partitions.
database_link_partitions = 16

# PostgreSQL only: longest a database operation (connecting included) may take, in
# milliseconds. Past it, a request answers 503 with Retry-After instead of waiting.
database_timeout_ms = 5000

# PostgreSQL only: streaming replicas of database_url, e.g.
# ["postgres://hop@replica1:5432/hop"] (HOP_DATABASE_REPLICA_URLS: comma-separated).
# Redirect misses, listings, stats and visits read from a healthy one (a redirect a
# replica does not know is asked of the primary before it is a 404); writes and reads
# of what was just written go to the primary.
database_replica_urls = []

# A replica that is down or further behind than this (milliseconds) is skipped until
# it catches up; with no usable replica, reads go to the primary.
replica_max_lag_ms = 5000

# Redis shared by every node of a cluster, e.g. "redis://127.0.0.1:6379/0" (a password
# may be given as redis://:PASSWORD@host; it is never logged). With it, a change on
# one node reaches every node's cache at once (pub/sub), and rate limits (API calls,
# redirects, password attempts) hold across the nodes, and a shared second cache
# tier answers redirect misses before the database. Empty: none, each node on its
# own.
redis_url = ""
# Longest a Redis call may take, in milliseconds. Past it (or with Redis down) hop
# opens a breaker and goes on with its own cache, its own limits and the database,
# checking twice a second whether Redis is back.
redis_timeout_ms = 50
# Prefix of every key and channel hop uses in Redis.
redis_prefix = "hop:"
# How long a link stays in the shared cache, in seconds (a change deletes it at once).
redis_cache_ttl_s = 60

# NATS with JetStream for a cluster's click analytics, e.g. "nats://127.0.0.1:4222".
# With it, nodes publish the visits they capture to a stream and `hop worker` (run
# any number) enriches and stores them; it needs a PostgreSQL database_url. Empty:
# each node stores its own visits.
nats_url = ""
# Names in NATS: stream <prefix>-visits, subject <prefix>.visits, consumer
# <prefix>-worker, live feeds <prefix>.live.<link id>.
nats_prefix = "hop"
# Longest a publish waits for the stream's acknowledgement, in milliseconds; past it
# (or with NATS down) the batch is written to <data_dir>/visits.spool (fsync'd) and
# published again, in order, once NATS is back.
nats_timeout_ms = 2000
# Largest size of that spool, in bytes; when full, new visits are dropped and counted
# (their clicks are still counted).
spool_max_bytes = 1073741824

# Public URL that short links start with, e.g. "https://sho.rt". Empty means
# http://<listen>. Links to this host are refused (they would loop).
base_url = ""

# Log format: "text" or "json". One line per request at info level.
log_format = "text"

# Log filter, e.g. "info", "warn", "hop=debug,info".
log_level = "info"

# Characters in a generated short code (4 to 10). 7 gives 62^7 = 3.5 trillion codes.
code_length = 7

# max-age of the Cache-Control header on redirects, in seconds.
redirect_max_age_s = 90

# Longest target URL accepted, in bytes.
max_url_length = 4096

# URL schemes a link may point to.
allowed_schemes = ["http", "https"]

# Largest request body accepted, in bytes.
max_body_bytes = 65536

# Largest body of a bulk create (up to 1,000 links), in bytes.
max_bulk_body_bytes = 8388608

# Memory the in-process redirect cache may use, in bytes.
cache_max_bytes = 67108864

# How long a link stays cached, in seconds (never past the link's own expiry).
cache_ttl_s = 300

# How long an unknown code is remembered as unknown, in milliseconds.
negative_cache_ttl_ms = 2000

# How often counted clicks are written to the database, in milliseconds.
click_flush_interval_ms = 1000

# How long a dashboard (/app) session lasts without being used, in minutes.
session_idle_minutes = 480

# How long a graceful shutdown waits for in-flight requests, in seconds.
shutdown_timeout_s = 30
# Behind a load balancer: on SIGTERM/SIGINT, first drain for this long (milliseconds):
# /readyz answers 503 (urn:hop:problem:draining) while every other request is served
# as usual, so the balancer's health check takes the node out before it stops
# accepting; then the graceful shutdown above. Set it above the balancer's time to
# notice (haproxy `inter 1s fall 2`: about 2 s, so 3000). 0: no drain, for a single
# node with nothing in front that checks /readyz.
shutdown_drain_ms = 0

# Connections. A request must arrive whole (headers to last body byte) and be
# answered within request_timeout_ms, or it gets 408 and its connection is closed;
# this also bounds how long a stalled upload can hold up a shutdown.
request_timeout_ms = 10000
# Time to send a request's headers; also how long an idle keep-alive connection is
# kept (set a proxy's upstream keep-alive timeout below it).
header_read_timeout_ms = 10000
# Largest request line plus headers, in bytes; larger requests get 431.
max_header_bytes = 16384
# Open connections in all; 0 derives it from the open-file limit (raised to its hard
# maximum at start) less 64 descriptors for the database and logs, at most 16384.
# Near the cap an address that holds 4 connections gets no more, so the last eighth
# stays free for others (health checks, new visitors).
max_connections = 0
# Open connections per client address; 0: no cap. Trusted proxies are exempt.
max_connections_per_client = 128

# Where visitors go instead of a 404: GET / (root_redirect), and an unknown code or
# page (not_found_redirect; browsers only: API clients and requests that ask for
# JSON still get the 404 problem). Absolute http(s) URLs; empty: the 404 page.
root_redirect = ""
not_found_redirect = ""

# Files of hosts that links may not point at (phishing, malware, spam lists): one host
# a line, or hosts-file lines such as "0.0.0.0 bad.example"; a '#' starts a comment. An
# entry blocks the host and every name under it. Creates and changes to such a target
# are refused (400, urn:hop:problem:blocked-target); existing links to one answer 410.
# The files are reread within 5 seconds of a change. Environment: comma-separated.
blocklist_files = []

# Proxies (CIDRs) whose X-Forwarded-For header is believed for the client address,
# e.g. ["127.0.0.1/32", "10.0.0.0/8"]. From anyone else the header is ignored.
trusted_proxies = []

# Rate limits in requests per minute (token buckets: a client may burst up to a
# minute's allowance). 0 turns a limit off. Over a limit: 429 with Retry-After.
# API calls without a valid key, per client address:
rate_limit_anonymous_per_minute = 60
# API calls per key, by the key's role:
rate_limit_user_per_minute = 1200
rate_limit_admin_per_minute = 6000
# Redirects per client address, counted apart from API calls:
rate_limit_redirect_per_minute = 60000
# Anonymous link creation: POST /api/v1/shorten and /api/v1/links without an API
# key. The links have no owner (only admins see them); alias, password, domain and
# tags are refused, and Idempotency-Key needs a key. Off by default.
anonymous_create = false
# Anonymous creates per client address per minute, on top of the anonymous limit:
rate_limit_anonymous_create_per_minute = 10
# Per-key limits by the key's visible prefix (as `hop keys list` shows it).
rate_limit_key_overrides = {}
# Click analytics: every redirect (not HEAD) is recorded off the redirect's path,
# enriched (browser, OS, device, bot, language, referrer host, location) and rolled
# up per hour and per day. Off: only click counts are kept.
analytics_enabled = true
# Keep the whole referrer URL (without credentials or fragment), not only its host:
analytics_keep_referrer_url = false
# What is kept of a visitor's address: "none" or "truncated" (/24 IPv4, /48 IPv6).
analytics_ip = "none"
# Days raw visits are listed (then deleted; 0: keep rollups only), and days hourly
# rollups are kept before being folded into daily ones:
analytics_raw_retention_days = 30
analytics_hourly_retention_days = 90
# Visits that may wait for the pipeline (past it they are dropped and counted), and
# how often the pipeline stores them (live feeds lag by at most this):
analytics_queue_capacity = 1000000
analytics_flush_interval_ms = 250

[geoip]
# A MaxMind-format City database such as GeoLite2-City.mmdb; empty: no locations.
# Environment: HOP_GEOIP_DATABASE.
database = ""
"#;

/// Why configuration could not be loaded; each message names the file, variable or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "unknown setting(s) {}; `hop config default` lists every setting",
        names.join(", ")
    )]
    Unknown { names: Vec<String> },
    #[error("{source_name}: {message}")]
    Value {
        source_name: String,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Settings given as command-line flags (each overrides file and environment).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub nats_url: Option<String>,
    pub base_url: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

impl Config {
    /// Loads configuration from `file` (if any), the given environment, and `flags`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        let source = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                table = text
                    .parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.to_string().trim_end().to_owned(),
                    })?;
                let unknown = unknown_file_keys(&table, &text);
                if !unknown.is_empty() {
                    return Err(ConfigError::Parse {
                        path: path.to_owned(),
                        message: ConfigError::Unknown { names: unknown }.to_string(),
                    });
                }
                // Check the file alone first, from its text, so that an error names
                // the line and the key.
                check_file(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?;
                Some(path)
            }
            None => None,
        };
        let known = Self::keys();
        // Which source set each key last, so an error can name it.
        let mut sources: Vec<(String, String)> = Vec::new();
        let mut unknown_vars = Vec::new();
        for (var, value) in env {
            let Some(key) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // A key of a section is named `<section>_<key>` in the environment.
            let found = known.iter().find(|(section, name)| match section {
                None => *name == key,
                Some(section) => {
                    key.strip_prefix(section)
                        .and_then(|rest| rest.strip_prefix('_'))
                        == Some(name)
                }
            });
            match found {
                Some((None, _)) => {
                    sources.push((key.clone(), format!("environment variable {var}")));
                    table.insert(key, toml::Value::String(value));
                }
                Some((Some(section), name)) => {
                    sources.push((
                        format!("{section}.{name}"),
                        format!("environment variable {var}"),
                    ));
                    let entry = table
                        .entry(section.to_string())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if let toml::Value::Table(inner) = entry {
                        inner.insert(name.to_string(), toml::Value::String(value));
                    }
                }
                None => unknown_vars.push(var),
            }
        }
        if !unknown_vars.is_empty() {
            unknown_vars.sort();
            return Err(ConfigError::Unknown {
                names: unknown_vars
                    .into_iter()
                    .map(|var| format!("environment variable {var}"))
                    .collect(),
            });
        }
        let flag_values = [
            ("listen", flags.listen.clone()),
            (
                "data_dir",
                flags.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            ("database_url", flags.database_url.clone()),
            ("redis_url", flags.redis_url.clone()),
            ("nats_url", flags.nats_url.clone()),
            ("base_url", flags.base_url.clone()),
            ("log_format", flags.log_format.clone()),
            ("log_level", flags.log_level.clone()),
        ];
        for (key, value) in flag_values {
            if let Some(value) = value {
                sources.push((key.to_owned(), format!("flag --{}", key.replace('_', "-"))));
                table.insert(key.into(), toml::Value::String(value));
            }
        }
        let config = serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(table))
            .map_err(|error| {
                let key = error.path().to_string();
                let source_name = sources
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == key)
                    .map(|(_, source)| source.clone())
                    .or_else(|| source.map(|path| format!("config file {}", path.display())))
                    .unwrap_or_else(|| "configuration".to_owned());
                ConfigError::Value {
                    source_name,
                    message: format!("`{key}`: {}", error.inner().message()),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    #[cfg(test)]
    fn from_table(table: toml::Table) -> Result<Self, String> {
        Config::deserialize(toml::Value::Table(table)).map_err(|e| e.message().to_owned())
    }

    /// Every configuration key, taken from the default file so the two cannot drift:
    /// (section, key), the section `None` for top-level keys.
    fn keys() -> Vec<(Option<&'static str>, &'static str)> {
        let mut section = None;
        let mut keys = Vec::new();
        for line in DEFAULT_TOML.lines().filter(|line| !line.starts_with('#')) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name);
            } else if let Some((key, _)) = line.split_once(" = ") {
                keys.push((section, key));
            }
        }
        keys
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.listen_port().is_none() {
            return invalid(format!(
                "listen `{}` is not an address:port or host:port such as 127.0.0.1:8080 or localhost:8080",
                self.listen
            ));
        }
        if !(MIN_GENERATED_LEN..=MAX_GENERATED_LEN).contains(&self.code_length) {
            return invalid(format!(
                "code_length {} is outside {MIN_GENERATED_LEN}..={MAX_GENERATED_LEN}",
                self.code_length
            ));
        }
        if let Err(e) = self.public_base() {
            return invalid(e);
        }
        if self.allowed_schemes.is_empty() {
            return invalid("allowed_schemes must name at least one scheme".into());
        }
        if let Some(bad) = self.allowed_schemes.iter().find(|s| {
            s.is_empty()
                || !s.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b == b'+'
                        || b == b'-'
                        || b == b'.'
                        || b.is_ascii_digit()
                })
        }) {
            return invalid(format!(
                "allowed_schemes entry `{bad}` is not a lower-case URL scheme"
            ));
        }
        for (name, value) in [
            ("max_url_length", self.max_url_length as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_bulk_body_bytes", self.max_bulk_body_bytes as u64),
            ("click_flush_interval_ms", self.click_flush_interval_ms),
            ("session_idle_minutes", self.session_idle_minutes),
            ("request_timeout_ms", self.request_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("cache_max_bytes", self.cache_max_bytes),
            (
                "database_max_connections",
                self.database_max_connections as u64,
            ),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be greater than 0"));
            }
        }
        if self.shutdown_drain_ms > MAX_SHUTDOWN_DRAIN_MS {
            return invalid(format!(
                "shutdown_drain_ms {} is above {MAX_SHUTDOWN_DRAIN_MS} (10 minutes); a \
                 balancer notices a failing /readyz within seconds",
                self.shutdown_drain_ms
            ));
        }
        if !(1024..=1024 * 1024).contains(&self.max_header_bytes) {
            return invalid(format!(
                "max_header_bytes {} is outside 1024..=1048576",
                self.max_header_bytes
            ));
        }
        if self.max_connections != 0 && self.max_connections < 16 {
            return invalid(format!(
                "max_connections {} is below 16 (0 derives it from the open-file limit)",
                self.max_connections
            ));
        }
        for (name, value) in [
            ("root_redirect", &self.root_redirect),
            ("not_found_redirect", &self.not_found_redirect),
        ] {
            if !value.is_empty() {
                let ok = url::Url::parse(value).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                }) && http::HeaderValue::from_str(value).is_ok();
                if !ok {
                    return invalid(format!(
                        "{name} `{value}` must be an absolute http:// or https:// URL"
                    ));
                }
            }
        }
        let postgres =
            |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
        if let Some(bad) = self.database_replica_urls.iter().find(|url| !postgres(url)) {
            return invalid(format!(
                "database_replica_urls entry `{}` is not a postgres:// URL",
                crate::store::redacted(bad)
            ));
        }
        if !self.database_replica_urls.is_empty() && !postgres(&self.database_url) {
            return invalid(
                "database_replica_urls needs a PostgreSQL database_url (postgres://…)".into(),
            );
        }
        if !self.redis_url.is_empty() {
            crate::tier::check_url(&self.redis_url).map_err(ConfigError::Invalid)?;
            if self.redis_timeout_ms == 0 || self.redis_cache_ttl_s == 0 {
                return invalid(
                    "redis_timeout_ms and redis_cache_ttl_s must be greater than 0".into(),
                );
            }
        }
        if !self.nats_url.is_empty() {
            crate::stream::check_url(&self.nats_url).map_err(ConfigError::Invalid)?;
            if !postgres(&self.database_url) {
                return invalid(
                    "nats_url needs a PostgreSQL database_url (postgres://…): the nodes and \
                     hop worker share the database"
                        .into(),
                );
            }
            crate::stream::check_prefix(&self.nats_prefix).map_err(ConfigError::Invalid)?;
            if self.nats_timeout_ms == 0 || self.spool_max_bytes < 1 << 20 {
                return invalid(
                    "nats_timeout_ms must be greater than 0 and spool_max_bytes at least 1048576"
                        .into(),
                );
            }
        }
        if !(1..=1024).contains(&self.database_link_partitions) {
            return invalid(format!(
                "database_link_partitions {} is outside 1..=1024",
                self.database_link_partitions
            ));
        }
        self.trusted_proxy_nets().map_err(ConfigError::Invalid)?;
        crate::analytics::anonymize::IpRetention::parse(&self.analytics_ip).map_err(|_| {
            ConfigError::Invalid(format!(
                "analytics_ip `{}` must be \"none\" or \"truncated\"",
                self.analytics_ip
            ))
        })?;
        if self.analytics_flush_interval_ms == 0 || self.analytics_queue_capacity == 0 {
            return invalid(
                "analytics_flush_interval_ms and analytics_queue_capacity must be above 0".into(),
            );
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| ConfigError::Invalid(format!("log_level `{}`: {e}", self.log_level)))?;
        Ok(())
    }

    /// The public base URL without a trailing slash, checked to be absolute http(s).
    pub fn public_base(&self) -> Result<url::Url, String> {
        let text = if self.base_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.base_url.trim_end_matches('/').to_owned()
        };
        let parsed = url::Url::parse(&text)
            .map_err(|e| format!("base_url `{text}` is not an absolute URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "base_url `{text}` must be an http:// or https:// URL with a host"
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!(
                "base_url `{text}` must not have a query or fragment"
            ));
        }
        Ok(parsed)
    }

    /// The host of the public base URL, lower-case, with `:port` only when the URL
    /// names a port other than its scheme's default: the default domain's name.
    pub fn default_host(&self) -> Result<String, String> {
        let base = self.public_base()?;
        let host = base.host_str().unwrap_or_default().to_ascii_lowercase();
        Ok(match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
    }

    /// The port of `listen` (an `address:port` or a `host:port` such as `localhost:8080`,
    /// resolved when the socket is bound); `None` if `listen` is neither.
    pub fn listen_port(&self) -> Option<u16> {
        if let Ok(address) = self.listen.parse::<SocketAddr>() {
            return Some(address.port());
        }
        let (host, port) = self.listen.rsplit_once(':')?;
        let name_like = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        name_like.then(|| port.parse().ok()).flatten()
    }

    /// `trusted_proxies` parsed; a bare address counts as a single-address network.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("trusted_proxies entry `{text}` is not a CIDR such as 10.0.0.0/8")
                    })
            })
            .collect()
    }

    /// The backend settings that are not part of the URL.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            max_connections: self.database_max_connections,
            link_partitions: self.database_link_partitions,
            sqlite: crate::store::ConnectOptions {
                startup_check_max: std::time::Duration::from_millis(self.startup_check_max_ms),
            },
            timeout: std::time::Duration::from_millis(self.database_timeout_ms),
            replica_urls: self.database_replica_urls.clone(),
            replica_max_lag: std::time::Duration::from_millis(self.replica_max_lag_ms),
        }
    }

    /// The Redis tier's settings; `None` without `redis_url`.
    pub fn tier_settings(&self) -> Option<crate::tier::TierSettings> {
        (!self.redis_url.is_empty()).then(|| crate::tier::TierSettings {
            url: self.redis_url.clone(),
            timeout: std::time::Duration::from_millis(self.redis_timeout_ms),
            prefix: self.redis_prefix.clone(),
            cache_ttl: std::time::Duration::from_secs(self.redis_cache_ttl_s),
        })
    }

    /// The click stream's settings; `None` without `nats_url`.
    pub fn stream_settings(&self) -> Option<crate::stream::StreamSettings> {
        (!self.nats_url.is_empty()).then(|| crate::stream::StreamSettings {
            url: self.nats_url.clone(),
            prefix: self.nats_prefix.clone(),
            timeout: std::time::Duration::from_millis(self.nats_timeout_ms),
            spool_path: self.data_dir.join("visits.spool"),
            spool_max_bytes: self.spool_max_bytes,
        })
    }

    /// The database URL, defaulting to the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("hop.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

/// Deserialises a config file's text alone: an error names the line and the key.
fn check_file(text: &str) -> Result<(), String> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize::<_, Config>(deserializer)
        .map(drop)
        .map_err(|error| {
            let line = error
                .inner()
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|n| format!("line {n}, ")).unwrap_or_default();
            format!("{at}`{}`: {}", error.path(), error.inner().message())
        })
}

/// The keys of a config file that are not settings, each with its line, all at once.
fn unknown_file_keys(table: &toml::Table, text: &str) -> Vec<String> {
    let known = Config::keys();
    let line_of = |key: &str| {
        text.lines()
            .position(|line| {
                let line = line.trim_start();
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|n| format!(" (line {})", n + 1))
            .unwrap_or_default()
    };
    let mut unknown = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) if known.iter().any(|(s, _)| *s == Some(key.as_str())) => {
                for name in inner.keys() {
                    if !known.contains(&(Some(key.as_str()), name.as_str())) {
                        unknown.push(format!("`{key}.{name}`{}", line_of(name)));
                    }
                }
            }
            _ if known.contains(&(None, key.as_str())) => {}
            _ => unknown.push(format!("`{key}`{}", line_of(key))),
        }
    }
    unknown
}

/// Deserialises a number or boolean from its native TOML form or from text.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<i64> + TryFrom<u64>,
    <T as FromStr>::Err: fmt::Display,
{
    struct Lenient<T>(PhantomData<T>);
    impl<T> de::Visitor<'_> for Lenient<T>
    where
        T: FromStr + TryFrom<i64> + TryFrom<u64>,
        <T as FromStr>::Err: fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.trim()
                .parse()
                .map_err(|e| E::custom(format!("`{v}` is not a valid number: {e}")))
        }
    }
    deserializer.deserialize_any(Lenient(PhantomData))
}

/// Deserialises a boolean from its native TOML form or from text (`true`, `false`).
fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct Lenient;
    impl de::Visitor<'_> for Lenient {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(E::custom(format!("`{v}` is not true or false"))),
            }
        }
    }
    deserializer.deserialize_any(Lenient)
}

/// Deserialises a list of strings from a TOML array or comma-separated text.
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(
        match ListOrText::deserialize(deserializer).map_err(|_| {
            de::Error::custom("expected a list of strings such as [\"http\", \"https\"]")
        })? {
            ListOrText::List(items) => items,
            ListOrText::Text(text) => text
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_file_is_the_defaults() {
        let from_file = Config::from_table(DEFAULT_TOML.parse().unwrap()).unwrap();
        let defaults = Config::default();
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
        assert_eq!(Config::keys().len(), 57);
    }

    #[test]
    fn section_keys_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.toml");
        std::fs::write(&path, "[geoip]\ndatabase = \"/from/file.mmdb\"\n").unwrap();
        let config = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.geoip.database, "/from/file.mmdb");
        let config = Config::load(
            Some(&path),
            env(&[
                ("HOP_GEOIP_DATABASE", "/from/env.mmdb"),
                ("HOP_ANALYTICS_IP", "truncated"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.geoip.database, "/from/env.mmdb");
        assert_eq!(config.analytics_ip, "truncated");
        let error = Config::load(
            None,
            env(&[("HOP_GEOIP_DATABAS", "x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("HOP_GEOIP_DATABAS"), "{error}");
        let error = Config::load(
            None,
            env(&[("HOP_ANALYTICS_IP", "full")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("analytics_ip"), "{error}");
    }

    #[test]
    fn later_sources_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\ncode_length = 8\nbase_url = \"https://a.example\"\n",
        )
        .unwrap();
        let flags = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        let config = Config::load(
            Some(&path),
            env(&[
                ("HOP_LISTEN", "127.0.0.1:2"),
                ("HOP_CODE_LENGTH", "9"),
                ("PATH", "/bin"),
            ]),
            &flags,
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:3");
        assert_eq!(config.code_length, 9);
        assert_eq!(config.base_url, "https://a.example");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\ncache_size = 5\n").unwrap();
        let err = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("cache_size"), "{err}");
        let err =
            Config::load(None, env(&[("HOP_LISTNE", "x")]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("HOP_LISTNE"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        for (pairs, needle) in [
            (vec![("HOP_CODE_LENGTH", "seven")], "seven"),
            (vec![("HOP_CODE_LENGTH", "12")], "code_length"),
            (vec![("HOP_LISTEN", "nowhere")], "listen"),
            (vec![("HOP_BASE_URL", "ftp://x")], "base_url"),
            (vec![("HOP_LOG_FORMAT", "xml")], "xml"),
            (
                vec![("HOP_SHUTDOWN_DRAIN_MS", "3 s")],
                "`shutdown_drain_ms`: `3 s` is not a valid number",
            ),
            (
                vec![("HOP_SHUTDOWN_DRAIN_MS", "600001")],
                "shutdown_drain_ms 600001 is above 600000",
            ),
            (
                vec![("HOP_REDIS_URL", "127.0.0.1:6379")],
                "redis_url `127.0.0.1:6379`",
            ),
            (vec![("HOP_REDIS_URL", "redis://:pw@[x")], "redis_url"),
            (
                vec![
                    ("HOP_REDIS_URL", "redis://127.0.0.1"),
                    ("HOP_REDIS_TIMEOUT_MS", "0"),
                ],
                "redis_timeout_ms",
            ),
        ] {
            let err = Config::load(None, env(&pairs), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn proxies_and_key_overrides_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.toml");
        std::fs::write(
            &path,
            "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n\
             [rate_limit_key_overrides]\nhop_AbCd1234 = 50000\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.trusted_proxy_nets().unwrap().len(), 2);
        assert_eq!(config.rate_limit_key_overrides["hop_AbCd1234"], 50000);
        let err = Config::load(
            None,
            env(&[("HOP_TRUSTED_PROXIES", "10.0.0.0/33")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
    }

    #[test]
    fn anonymous_create_from_env_text() {
        let config = Config::load(
            None,
            env(&[
                ("HOP_ANONYMOUS_CREATE", "true"),
                ("HOP_RATE_LIMIT_ANONYMOUS_CREATE_PER_MINUTE", "3"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(config.anonymous_create);
        assert_eq!(config.rate_limit_anonymous_create_per_minute, 3);
        let err = Config::load(
            None,
            env(&[("HOP_ANONYMOUS_CREATE", "yes")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("yes"), "{err}");
    }

    #[test]
    fn shutdown_drain_from_file_and_environment() {
        assert_eq!(Config::default().shutdown_drain_ms, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.toml");
        std::fs::write(&path, "shutdown_drain_ms = 3000\n").unwrap();
        let config = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.shutdown_drain_ms, 3000);
        let config = Config::load(
            Some(&path),
            env(&[("HOP_SHUTDOWN_DRAIN_MS", "500")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.shutdown_drain_ms, 500);
    }

    #[test]
    fn schemes_from_env_text() {
        let config = Config::load(
            None,
            env(&[("HOP_ALLOWED_SCHEMES", "https, ftp")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.allowed_schemes, vec!["https", "ftp"]);
    }
}
