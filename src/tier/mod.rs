//! The Redis tier of a cluster, on when `redis_url` is set: what makes many `hop serve`
//! nodes on one PostgreSQL database behave as one service.
//!
//! - **Invalidation** ([`RedisTier::announce`], [`run_subscriber`]): a node that
//!   changes a link, a domain or a key deletes the link's shared cache entry and
//!   publishes the change on `<prefix>invalidate` ([`message`]); every other node drops
//!   it from its own cache. A node that (re)subscribes clears its cache, since it may
//!   have missed messages; the cache TTL stays the backstop.
//! - **Shared cache** (L2, [`RedisTier::l2_get`]): redirect records by code, read on a
//!   miss of the node's own cache before the database, written (off the answer's
//!   path) after a database read, for `redis_cache_ttl_s`; a change deletes the entry
//!   before it is announced.
//! - **Rate limits** ([`RedisTier::take`], [`RedisTier::attempt`]): the same buckets
//!   as [`crate::ratelimit`], decided by one Lua script per call (GCRA, so one key
//!   per bucket holding its theoretical arrival time), so a limit holds across nodes.
//!   Redirects spend leases ([`leases`]) so a cached redirect does not wait on Redis.
//! - **Breaker** ([`breaker`]): every call is bounded by `redis_timeout_ms`; failures
//!   open the breaker, and hop goes on without Redis (its own cache and limits, the
//!   database) until [`run_probe`] finds Redis back.
//!
//! Without `redis_url` none of this exists: no connection, no task; the redirect path
//! only finds `AppState::tier` empty.
//!
//! Client: the `redis` crate's `ConnectionManager` (one multiplexed connection that
//! reconnects itself) for commands, and a dedicated connection for the subscription,
//! whose loss this module must see (to clear the cache on reconnect), which the
//! manager's automatic resubscription would hide.

pub mod breaker;
pub mod leases;
pub mod message;

use crate::domain::link::{LinkId, RedirectType};
use crate::ratelimit::BucketKey;
use crate::store::RedirectRecord;
use breaker::Breaker;
use futures_util::StreamExt;
use leases::Leases;
use message::{Change, Message};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often an open breaker is probed, and a lost subscription retried.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a subscribed connection may stay silent to a ping before it is replaced.
/// Well above `redis_timeout_ms`: a resubscription clears the cache, which a merely
/// slow Redis must not cause.
const SUBSCRIPTION_PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Changes kept while Redis cannot be reached, published when it is back; past this
/// many, "everything" is published instead.
const PENDING_MAX: usize = 10_000;

/// GCRA over one key per bucket: the key holds the bucket's theoretical arrival time
/// (TAT, in microseconds of Redis' clock, so the nodes' clocks do not matter). A
/// request is one `interval`; the bucket allows up to `burst` requests at once, as the
/// local token bucket does. Asks for up to `want` requests and grants as many as fit.
/// Returns {granted, remaining, µs until the bucket is full, µs to wait if refused}.
/// The TAT is written with `%.0f`: Redis turns Lua numbers into text with 14
/// significant digits, too few for microseconds since 1970.
const RATE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local available = math.floor((burst * interval - (tat - now)) / interval)
if available < 1 then
  return {0, 0, tat - now, tat - now - (burst - 1) * interval}
end
local granted = math.min(want, available)
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {granted, available - granted, tat - now, 0}
"#;

/// Fixed windows of attempts (password guesses): counts one, and answers the window's
/// milliseconds left when the count is past ARGV[2], else -1.
const ATTEMPT_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
if n > tonumber(ARGV[2]) then return ttl end
return -1
"#;

/// Checks a `redis_url` without connecting: a clear error naming the setting.
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url).map(|_| ()).map_err(|e| {
        format!(
            "redis_url `{}` is not a Redis URL such as redis://127.0.0.1:6379/0: {e}",
            crate::store::redacted(url)
        )
    })
}

/// The tier's settings, from the configuration.
#[derive(Debug, Clone)]
pub struct TierSettings {
    pub url: String,
    pub timeout: Duration,
    pub prefix: String,
    /// How long a record stays in the shared cache.
    pub cache_ttl: Duration,
}

/// What the rate script granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Requests granted (0: refused).
    pub granted: u32,
    /// Requests the bucket still holds.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// When refused: until one request fits.
    pub wait: Duration,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub l1_hits: AtomicU64,
    pub l1_misses: AtomicU64,
    pub l2_hits: AtomicU64,
    pub l2_misses: AtomicU64,
    /// Rate-limit decisions made in Redis, and made by the node because Redis was
    /// not available.
    pub limits_in_redis: AtomicU64,
    pub limits_on_node: AtomicU64,
    pub published: AtomicU64,
    pub received: AtomicU64,
}

/// Changes that could not be published (Redis unreachable), to publish once it is back.
#[derive(Debug, Default)]
struct Pending {
    changes: Vec<Change>,
    overflowed: bool,
}

/// The connection to Redis and everything that goes through it.
pub struct RedisTier {
    client: redis::Client,
    manager: ConnectionManager,
    breaker: Breaker,
    /// This process's name on the channel, to skip its own messages.
    node: String,
    prefix: String,
    channel: String,
    timeout: Duration,
    cache_ttl_ms: u64,
    rate: Script,
    attempts: Script,
    /// Redirect allowances borrowed from Redis.
    pub leases: Leases,
    /// For `/metrics`.
    pub counters: Counters,
    /// Whether the invalidation subscription is up.
    subscribed: AtomicBool,
    pending: Mutex<Pending>,
}

/// What the subscriber tells the node.
#[derive(Debug)]
pub enum Event {
    /// Another node changed these.
    Changes(Vec<Change>),
    /// The subscription is (again) up: messages may have been missed before it.
    Subscribed,
}

impl RedisTier {
    /// Prepares the tier; connects lazily, so a Redis that is down at start only
    /// means a node that starts without it (the subscriber's first attempt opens the
    /// breaker, and the probe closes it once Redis answers).
    pub fn new(settings: &TierSettings) -> anyhow::Result<Arc<Self>> {
        check_url(&settings.url).map_err(anyhow::Error::msg)?;
        let client = redis::Client::open(settings.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(500))))
            .set_max_delay(PROBE_INTERVAL);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let node = format!("{:016x}", rand::random::<u64>());
        Ok(Arc::new(Self {
            client,
            manager,
            breaker: Breaker::default(),
            node,
            prefix: settings.prefix.clone(),
            channel: format!("{}invalidate", settings.prefix),
            timeout: settings.timeout,
            cache_ttl_ms: settings.cache_ttl.as_millis() as u64,
            rate: Script::new(RATE_SCRIPT),
            attempts: Script::new(ATTEMPT_SCRIPT),
            leases: Leases::default(),
            counters: Counters::default(),
            subscribed: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
        }))
    }

    /// Whether calls go to Redis now (the breaker is closed).
    pub fn available(&self) -> bool {
        self.breaker.is_closed()
    }

    /// Runs one call under the timeout and the breaker: `None` when the breaker is
    /// open, or the call failed or took too long (which counts towards opening it).
    async fn call<T>(&self, work: impl Future<Output = RedisResult<T>>) -> Option<T> {
        if !self.breaker.is_closed() {
            return None;
        }
        let failure = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => {
                self.breaker.succeeded();
                return Some(value);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        if self.breaker.failed() {
            tracing::warn!(error = %failure, "Redis is failing: breaker open, going on without it");
            self.leases.clear();
        }
        None
    }

    /// The connection to Redis is gone: open the breaker without waiting for calls to
    /// fail.
    fn lost(&self) {
        if self.breaker.trip() {
            tracing::warn!("Redis connection lost: breaker open, going on without it");
            self.leases.clear();
        }
    }

    fn l2_key(&self, domain: &str, code: &str) -> String {
        l2_key(&self.prefix, domain, code)
    }

    /// Tells every node that these changed (and deletes changed links from the shared
    /// cache first, so a node that drops its copy cannot reload the old one from
    /// there). Waits at most `redis_timeout_ms`; what cannot be sent now is sent when
    /// Redis is back.
    pub async fn announce(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if !self.breaker.is_closed() || !self.send(&changes).await {
            self.keep(changes);
        }
    }

    async fn send(&self, changes: &[Change]) -> bool {
        let pipe = invalidation(&self.prefix, &self.node, changes);
        let mut connection = self.manager.clone();
        let sent = self
            .call(pipe.query_async::<()>(&mut connection))
            .await
            .is_some();
        if sent {
            self.counters.published.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    fn keep(&self, changes: Vec<Change>) {
        let mut pending = self.pending.lock().expect("pending changes poisoned");
        if pending.changes.len() + changes.len() > PENDING_MAX {
            pending.changes.clear();
            pending.overflowed = true;
        } else if !pending.overflowed {
            pending.changes.extend(changes);
        }
    }

    /// Publishes what could not be sent while Redis was away.
    async fn flush_pending(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending changes poisoned"));
        let changes = if pending.overflowed {
            vec![Change::Everything]
        } else {
            pending.changes
        };
        if !changes.is_empty() {
            tracing::info!(
                changes = changes.len(),
                "publishing the changes made while Redis was away"
            );
            self.announce(changes).await;
        }
    }

    /// The shared cache's record of a code, if it has one (and Redis answers in time).
    pub async fn l2_get(&self, domain: &str, code: &str) -> Option<RedirectRecord> {
        if !self.breaker.is_closed() {
            // Not a lookup: the counters say how well L2 serves while it is there.
            return None;
        }
        let mut connection = self.manager.clone();
        let key = self.l2_key(domain, code);
        let found: Option<Vec<u8>> = self
            .call(
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<Vec<u8>>>(&mut connection),
            )
            .await
            .flatten();
        let record = found.as_deref().and_then(decode_record);
        let counter = if record.is_some() {
            &self.counters.l2_hits
        } else {
            &self.counters.l2_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        record
    }

    /// Puts a record read from the database in the shared cache.
    pub async fn l2_put(&self, domain: &str, code: &str, record: &RedirectRecord) {
        let mut connection = self.manager.clone();
        let key = self.l2_key(domain, code);
        let value = encode_record(record);
        self.call(
            redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("PX")
                .arg(self.cache_ttl_ms)
                .query_async::<()>(&mut connection),
        )
        .await;
    }

    /// The Redis key of a rate-limit bucket.
    fn bucket(&self, key: &BucketKey) -> String {
        match key {
            BucketKey::Key(id) => format!("{}rate:key:{}", self.prefix, id.0),
            BucketKey::Anonymous(ip) => format!("{}rate:anonymous:{ip}", self.prefix),
            BucketKey::Redirect(ip) => format!("{}rate:redirect:{ip}", self.prefix),
            BucketKey::AnonymousCreate(ip) => format!("{}rate:create:{ip}", self.prefix),
        }
    }

    /// Counts a rate-limit decision made in Redis (`true`) or by the node.
    pub fn count_decision(&self, in_redis: bool) {
        let counter = if in_redis {
            &self.counters.limits_in_redis
        } else {
            &self.counters.limits_on_node
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes up to `want` requests from `key`'s cluster-wide bucket of `per_minute`
    /// (above 0). `None`: Redis is not available, decide locally.
    pub async fn take(&self, key: &BucketKey, per_minute: u32, want: u32) -> Option<Grant> {
        let interval_us = 60_000_000 / u64::from(per_minute.max(1));
        let mut connection = self.manager.clone();
        let bucket = self.bucket(key);
        let mut invocation = self.rate.key(&bucket);
        invocation.arg(interval_us).arg(per_minute).arg(want.max(1));
        let answer = self.call(invocation.invoke_async(&mut connection)).await;
        self.count_decision(answer.is_some());
        let (granted, remaining, reset_us, wait_us): (i64, i64, i64, i64) = answer?;
        let micros = |us: i64| Duration::from_micros(us.max(0) as u64);
        Some(Grant {
            granted: granted.max(0) as u32,
            remaining: remaining.max(0) as u32,
            reset: micros(reset_us),
            wait: micros(wait_us),
        })
    }

    /// Counts one attempt at `subject` in fixed windows of `window` allowing `max`:
    /// `Ok` if allowed, `Err(seconds to wait)` if not, `None` if Redis is not available.
    pub async fn attempt(
        &self,
        subject: &str,
        max: u32,
        window: Duration,
    ) -> Option<Result<(), u64>> {
        let mut connection = self.manager.clone();
        let key = format!("{}attempts:{subject}", self.prefix);
        let mut invocation = self.attempts.key(&key);
        invocation.arg(window.as_millis() as u64).arg(max);
        let answer = self.call(invocation.invoke_async(&mut connection)).await;
        self.count_decision(answer.is_some());
        let left_ms: i64 = answer?;
        Some(if left_ms < 0 {
            Ok(())
        } else {
            Err((left_ms as u64).div_ceil(1000).max(1))
        })
    }

    /// The tier's metrics in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let counters = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP hop_redis_breaker_open Whether the Redis breaker is open (1: hop goes on without Redis).\n\
             # TYPE hop_redis_breaker_open gauge\n\
             hop_redis_breaker_open {}\n\
             # HELP hop_redis_breaker_opened_total Times the Redis breaker opened since start.\n\
             # TYPE hop_redis_breaker_opened_total counter\n\
             hop_redis_breaker_opened_total {}\n\
             # HELP hop_redis_subscribed Whether the invalidation channel is subscribed.\n\
             # TYPE hop_redis_subscribed gauge\n\
             hop_redis_subscribed {}\n\
             # HELP hop_redis_invalidations_published_total Invalidation messages this node published.\n\
             # TYPE hop_redis_invalidations_published_total counter\n\
             hop_redis_invalidations_published_total {}\n\
             # HELP hop_redis_invalidations_received_total Invalidation messages from other nodes.\n\
             # TYPE hop_redis_invalidations_received_total counter\n\
             hop_redis_invalidations_received_total {}\n\
             # HELP hop_cache_lookups_total Redirect cache lookups by tier (l1: this node, l2: Redis) and result.\n\
             # TYPE hop_cache_lookups_total counter\n\
             hop_cache_lookups_total{{tier=\"l1\",result=\"hit\"}} {}\n\
             hop_cache_lookups_total{{tier=\"l1\",result=\"miss\"}} {}\n\
             hop_cache_lookups_total{{tier=\"l2\",result=\"hit\"}} {}\n\
             hop_cache_lookups_total{{tier=\"l2\",result=\"miss\"}} {}\n\
             # HELP hop_redis_rate_limit_decisions_total Rate-limit decisions by where they were made (redis; node: Redis unavailable). Redirects spending a lease are not decisions.\n\
             # TYPE hop_redis_rate_limit_decisions_total counter\n\
             hop_redis_rate_limit_decisions_total{{by=\"redis\"}} {}\n\
             hop_redis_rate_limit_decisions_total{{by=\"node\"}} {}\n",
            u8::from(!self.breaker.is_closed()),
            self.breaker.opened_total(),
            u8::from(self.subscribed.load(Ordering::Relaxed)),
            load(&counters.published),
            load(&counters.received),
            load(&counters.l1_hits),
            load(&counters.l1_misses),
            load(&counters.l2_hits),
            load(&counters.l2_misses),
            load(&counters.limits_in_redis),
            load(&counters.limits_on_node),
        );
    }
}

/// The shared cache's key of a code: the L1 key (`code`, or `code@domain`) under the
/// prefix.
fn l2_key(prefix: &str, domain: &str, code: &str) -> String {
    if domain.is_empty() {
        format!("{prefix}link:{code}")
    } else {
        format!("{prefix}link:{code}@{domain}")
    }
}

/// The commands that announce `changes`: delete changed links from the shared cache,
/// then publish the message.
fn invalidation(prefix: &str, node: &str, changes: &[Change]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let stale: Vec<String> = changes
        .iter()
        .filter_map(|change| match change {
            Change::Link { domain, code } => Some(l2_key(prefix, domain, code)),
            _ => None,
        })
        .collect();
    if !stale.is_empty() {
        pipe.cmd("DEL").arg(&stale).ignore();
    }
    let message = Message {
        node: node.to_owned(),
        changes: changes.to_vec(),
    };
    pipe.cmd("PUBLISH")
        .arg(format!("{prefix}invalidate"))
        .arg(message.encode())
        .ignore();
    pipe
}

/// How long a command-line change waits for Redis to take its announcement.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// Announces changes made outside a server (`hop keys revoke`, `hop domains add`…)
/// to the cluster's nodes, on a connection of its own.
pub async fn notify(settings: &TierSettings, changes: &[Change]) -> anyhow::Result<()> {
    let client = redis::Client::open(settings.url.as_str())?;
    let node = format!("cli-{:016x}", rand::random::<u64>());
    let pipe = invalidation(&settings.prefix, &node, changes);
    let work = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        pipe.query_async::<()>(&mut connection).await
    };
    match tokio::time::timeout(NOTIFY_TIMEOUT, work).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("Redis gave no answer within {} s", NOTIFY_TIMEOUT.as_secs()),
    }
}

/// Pings Redis while the breaker is open and closes it when Redis answers; then
/// publishes what was kept back meanwhile.
pub async fn run_probe(tier: Arc<RedisTier>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tier.breaker.is_closed() {
            continue;
        }
        let mut connection = tier.manager.clone();
        let ping = redis::cmd("PING");
        let ping = ping.query_async::<String>(&mut connection);
        if let Ok(Ok(_)) = tokio::time::timeout(tier.timeout, ping).await
            && tier.breaker.close()
        {
            tracing::info!("Redis answers again: breaker closed");
            tier.flush_pending().await;
        }
    }
}

/// Keeps the invalidation channel subscribed, on a connection of its own, and hands
/// every other node's message to `apply`; on every (re)subscription `apply` gets
/// [`Event::Subscribed`].
pub async fn run_subscriber(tier: Arc<RedisTier>, apply: impl Fn(Event) + Send + Sync + 'static) {
    let mut lost_logged = false;
    loop {
        let connect = tokio::time::timeout(SUBSCRIPTION_PING_TIMEOUT, async {
            let mut pubsub = tier.client.get_async_pubsub().await?;
            pubsub.subscribe(&tier.channel).await?;
            RedisResult::Ok(pubsub)
        });
        let pubsub = match connect.await {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                tier.lost();
                if !lost_logged {
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::warn!(%error, "cannot subscribe to the invalidation channel; retrying");
                    lost_logged = true;
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
                continue;
            }
        };
        tier.subscribed.store(true, Ordering::Relaxed);
        apply(Event::Subscribed);
        tracing::info!(channel = %tier.channel, "subscribed to the invalidation channel");
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(PROBE_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let Some(message) = std::str::from_utf8(message.get_payload_bytes())
                        .ok()
                        .and_then(Message::decode)
                    else {
                        continue;
                    };
                    if message.node != tier.node {
                        tier.counters.received.fetch_add(1, Ordering::Relaxed);
                        apply(Event::Changes(message.changes));
                    }
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(SUBSCRIPTION_PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tier.subscribed.store(false, Ordering::Relaxed);
        tracing::warn!("invalidation channel lost; resubscribing");
        lost_logged = true;
        tier.lost();
    }
}

/// A redirect record as the shared cache holds it: postcard, behind a version byte so
/// that a future layout is a miss for an older node rather than garbage.
#[derive(Serialize, Deserialize)]
struct StoredRecord<'a> {
    id: i64,
    url: std::borrow::Cow<'a, str>,
    expires_at: Option<i64>,
    max_clicks: Option<u64>,
    status: u16,
    disabled: bool,
    password_hash: Option<std::borrow::Cow<'a, str>>,
    limited_clicks: u64,
    admin_disabled: bool,
}

/// 2: `admin_disabled` (a link an admin took down answers the neutral 410).
const RECORD_VERSION: u8 = 2;

fn encode_record(record: &RedirectRecord) -> Vec<u8> {
    let stored = StoredRecord {
        id: record.id.0,
        url: record.url.as_str().into(),
        expires_at: record.expires_at,
        max_clicks: record.max_clicks,
        status: record.redirect.code(),
        disabled: record.disabled,
        password_hash: record.password_hash.as_deref().map(Into::into),
        limited_clicks: record.limited_clicks,
        admin_disabled: record.admin_disabled,
    };
    let mut bytes = vec![RECORD_VERSION];
    bytes.extend(postcard::to_allocvec(&stored).expect("a record always serialises"));
    bytes
}

fn decode_record(bytes: &[u8]) -> Option<RedirectRecord> {
    let (&version, rest) = bytes.split_first()?;
    if version != RECORD_VERSION {
        return None;
    }
    let stored: StoredRecord = postcard::from_bytes(rest).ok()?;
    Some(RedirectRecord {
        id: LinkId(stored.id),
        url: stored.url.into_owned(),
        expires_at: stored.expires_at,
        max_clicks: stored.max_clicks,
        redirect: RedirectType::from_code(stored.status)?,
        disabled: stored.disabled,
        password_hash: stored.password_hash.map(|hash| hash.into_owned()),
        limited_clicks: stored.limited_clicks,
        admin_disabled: stored.admin_disabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_compactly() {
        let record = RedirectRecord {
            id: LinkId(42),
            url: "https://example.com/a".into(),
            expires_at: Some(1_900_000_000_000),
            max_clicks: Some(5),
            redirect: RedirectType::Temporary,
            disabled: false,
            password_hash: Some("$argon2id$v=19$x".into()),
            limited_clicks: 3,
            admin_disabled: true,
        };
        let bytes = encode_record(&record);
        assert!(bytes.len() < 60, "{} bytes", bytes.len());
        let back = decode_record(&bytes).unwrap();
        assert_eq!(back, record);
        assert!(decode_record(&[RECORD_VERSION + 1, 0]).is_none());
        assert!(decode_record(&[]).is_none());
    }

    #[test]
    fn bad_urls_name_the_setting_and_hide_the_password() {
        let error = check_url("http://:secret@example.com").unwrap_err();
        assert!(error.starts_with("redis_url `"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
    }
}
