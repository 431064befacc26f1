//! Assembling and running the server: build the state from the configuration, serve
//! HTTP until a shutdown signal, then stop in order (drain: fail `/readyz` for
//! `shutdown_drain_ms` while still serving; stop accepting, finish in-flight requests,
//! flush counted clicks, close the database).

use crate::analytics::anonymize::IpRetention;
use crate::analytics::enrich::Enricher;
use crate::analytics::geo::GeoIp;
use crate::analytics::pipeline::{Analytics, PipelineConfig, run_pipeline, run_retention};
use crate::blocklist::Blocklist;
use crate::cache::LinkCache;
use crate::clicks::{Clicks, run_click_writer};
use crate::codes::CodeAllocator;
use crate::config::Config;
use crate::domain::key;
use crate::domain::link::{UnixMillis, now_ms};
use crate::domain::url::UrlPolicy;
use crate::hosts::Hosts;
use crate::http::connections::{self, ConnectionGate, ConnectionLimits};
use crate::http::{self, AppState, Limits, Settings, Shared};
use crate::store::{self, ApiKey, IdempotencyStore, NewApiKey, SessionStore, Stores, User};
use crate::stream::publisher::{Publisher, StreamMetrics, run_lag_probe};
use crate::tier::message::Change;
use crate::tier::{self, Event, RedisTier};
use anyhow::Context;
use axum::http::HeaderValue;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Background work that must be stopped in order when the server stops.
pub struct Background {
    stop: watch::Sender<bool>,
    /// Stops the click writer, after the analytics pipeline (which hands it the clicks
    /// of visits it could not store).
    stop_clicks: watch::Sender<bool>,
    click_writer: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    /// Rereads the registered domains (changes made by `hop domains` elsewhere).
    domain_refresh: JoinHandle<()>,
    /// Stores visits; `None` when analytics are off.
    analytics: Option<JoinHandle<()>>,
    /// Applies analytics retention.
    retention: Option<JoinHandle<()>>,
    /// Rereads the blocklist files when they change.
    blocklist_refresh: JoinHandle<()>,
    /// The Redis tier's subscriber and breaker probe, the stream's lag probe; empty
    /// without `redis_url` and `nats_url`.
    tier_tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Writes every counted click, then returns.
    pub async fn stop(self) {
        // Maintenance is idempotent and resumes on the next start.
        self.maintenance.abort();
        self.domain_refresh.abort();
        self.blocklist_refresh.abort();
        for task in &self.tier_tasks {
            task.abort();
        }
        if let Some(retention) = self.retention {
            retention.abort();
        }
        let _ = self.stop.send(true);
        if let Some(analytics) = self.analytics
            && let Err(e) = analytics.await
        {
            tracing::error!(error = %e, "analytics pipeline ended abnormally");
        }
        let _ = self.stop_clicks.send(true);
        if let Err(e) = self.click_writer.await {
            tracing::error!(error = %e, "click writer ended abnormally");
        }
    }
}

/// The visit enricher the configuration asks for; a GeoIP database that cannot be
/// used stops the start with an error naming it.
pub fn enricher(config: &Config) -> anyhow::Result<Enricher> {
    let ip = IpRetention::parse(&config.analytics_ip)
        .map_err(|_| anyhow::anyhow!("analytics_ip `{}` is not valid", config.analytics_ip))?;
    let mut enricher = Enricher::new()
        .with_referrer_url(config.analytics_keep_referrer_url)
        .with_ip_retention(ip);
    if !config.geoip.database.is_empty() {
        let geo = GeoIp::open(&config.geoip.database)
            .with_context(|| format!("[geoip] database {}", config.geoip.database))?;
        tracing::info!(database = %config.geoip.database, kind = geo.database_type(), "geolocation on");
        enricher = enricher.with_geo(geo);
    }
    Ok(enricher)
}

/// Takes the configured database's one-writer lock for `command` (see
/// [`store::lock_for_writing`]); held until the returned value is dropped.
pub fn lock_for_writing(
    config: &Config,
    command: &str,
) -> anyhow::Result<Option<store::sqlite::lock::WriterLock>> {
    Ok(store::lock_for_writing(&config.database_url(), command)?)
}

/// Opens the database named by the configuration (its password never in a message).
pub async fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    let url = config.database_url();
    store::connect(&url, &config.store_options())
        .await
        .with_context(|| format!("opening database {}", store::redacted(&url)))
}

/// Builds the application state and starts its background tasks.
pub async fn build(config: &Config) -> anyhow::Result<(AppState, Background)> {
    let stores = open_stores(config).await?;
    let base = config.public_base().map_err(anyhow::Error::msg)?;
    let listen_port = config
        .listen_port()
        .with_context(|| format!("listen `{}` has no port", config.listen))?;
    let default_host = config.default_host().map_err(anyhow::Error::msg)?;
    let settings = Settings {
        base_url: base.as_str().trim_end_matches('/').to_owned(),
        base_scheme: base.scheme().to_owned(),
        base_path: base.path().trim_end_matches('/').to_owned(),
        url_policy: UrlPolicy {
            allowed_schemes: config.allowed_schemes.clone(),
            max_len: config.max_url_length,
            own_origins: own_origins(&base),
            own_local_ports: vec![listen_port],
        },
        redirect_cache_control: HeaderValue::from_str(&format!(
            "private, max-age={}",
            config.redirect_max_age_s
        ))?,
        max_body_bytes: config.max_body_bytes,
        max_bulk_body_bytes: config.max_bulk_body_bytes,
        cache_ttl_s: config.cache_ttl_s,
        trusted_proxies: config.trusted_proxy_nets().map_err(anyhow::Error::msg)?,
        limits: Limits {
            anonymous: config.rate_limit_anonymous_per_minute,
            user: config.rate_limit_user_per_minute,
            admin: config.rate_limit_admin_per_minute,
            redirect: config.rate_limit_redirect_per_minute,
            anonymous_create: config.rate_limit_anonymous_create_per_minute,
            key_overrides: config.rate_limit_key_overrides.clone(),
        },
        anonymous_create: config.anonymous_create,
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
        max_header_bytes: config.max_header_bytes,
        root_redirect: optional_header(&config.root_redirect)?,
        not_found_redirect: optional_header(&config.not_found_redirect)?,
        session_idle: Duration::from_secs(config.session_idle_minutes * 60),
    };
    let connections = Arc::new(ConnectionGate::new(connection_limits(config)?));
    let blocklist = Arc::new(Blocklist::load(
        config.blocklist_files.iter().map(Into::into).collect(),
    )?);
    let codes = CodeAllocator::new(stores.meta.clone(), config.code_length)
        .await
        .context("loading the short-code key")?;
    let hosts = Arc::new(Hosts::new(default_host));
    hosts
        .reload(stores.domains.as_ref())
        .await
        .context("loading the domains")?;
    let domain_refresh = tokio::spawn(crate::hosts::run_refresh(
        hosts.clone(),
        stores.domains.clone(),
    ));
    let clicks = Clicks::new();
    let (stop, _) = watch::channel(false);
    let (stop_clicks, clicks_stopped) = watch::channel(false);
    let click_writer = tokio::spawn(run_click_writer(
        clicks.clone(),
        stores.clicks.clone(),
        Duration::from_millis(config.click_flush_interval_ms),
        clicks_stopped,
    ));
    let maintenance = tokio::spawn(run_maintenance(
        stores.idempotency.clone(),
        stores.sessions.clone(),
        Duration::from_secs(config.session_idle_minutes * 60),
    ));
    let mut stream_tasks = Vec::new();
    let (publisher, stream) = match config.stream_settings() {
        Some(settings) if config.analytics_enabled => {
            let metrics = Arc::new(StreamMetrics::default());
            let publisher = Publisher::new(&settings, clicks.clone(), metrics.clone())
                .await
                .context("starting the click stream")?;
            let client = publisher.client().clone();
            stream_tasks.push(tokio::spawn(run_lag_probe(
                client.clone(),
                settings.clone(),
                metrics.clone(),
            )));
            tracing::info!(nats = %store::redacted(&settings.url), stream = %settings.stream_name(), "visits go to the click stream");
            (
                Some(publisher),
                Some(http::StreamHandle {
                    client,
                    settings,
                    metrics,
                }),
            )
        }
        _ => (None, None),
    };
    let (analytics, pipeline, retention) = if config.analytics_enabled {
        // With a stream, workers enrich: the node needs no GeoIP database.
        let enricher = if publisher.is_some() {
            Enricher::new()
        } else {
            enricher(config)?
        };
        let analytics = Analytics::new(config.analytics_queue_capacity);
        let pipeline = tokio::spawn(run_pipeline(
            analytics.clone(),
            Arc::new(enricher),
            stores.analytics.clone(),
            clicks.clone(),
            PipelineConfig {
                interval: Duration::from_millis(config.analytics_flush_interval_ms),
                keep_raw: config.analytics_raw_retention_days > 0,
                publisher,
            },
            stop.subscribe(),
        ));
        let retention = tokio::spawn(run_retention(
            stores.analytics.clone(),
            config.analytics_raw_retention_days,
            config.analytics_hourly_retention_days,
        ));
        (Some(analytics), Some(pipeline), Some(retention))
    } else {
        (None, None, None)
    };
    let tier = match config.tier_settings() {
        None => None,
        Some(settings) => {
            let tier = RedisTier::new(&settings)?;
            tracing::info!(redis = %store::redacted(&settings.url), "cluster tier on Redis");
            Some(tier)
        }
    };
    let cache = LinkCache::new(
        config.cache_max_bytes,
        Duration::from_secs(config.cache_ttl_s),
        Duration::from_millis(config.negative_cache_ttl_ms),
    );
    let state = AppState::new(Shared {
        stores,
        cache,
        clicks,
        codes: Arc::new(codes),
        settings,
        attempts: Default::default(),
        limiter: Default::default(),
        keys: Default::default(),
        hosts,
        analytics,
        connections,
        blocklist,
        metrics: Default::default(),
        started_at: std::time::SystemTime::now(),
        tier: tier.clone(),
        stream,
        draining: Default::default(),
    });
    let blocklist_refresh = tokio::spawn(run_blocklist_refresh(state.clone()));
    let mut tier_tasks = match tier {
        Some(tier) => {
            let subscriber_state = state.clone();
            vec![
                tokio::spawn(tier::run_subscriber(tier.clone(), move |event| {
                    apply_cluster_event(&subscriber_state, event)
                })),
                tokio::spawn(tier::run_probe(tier)),
            ]
        }
        None => Vec::new(),
    };
    tier_tasks.extend(stream_tasks);
    Ok((
        state,
        Background {
            stop,
            stop_clicks,
            click_writer,
            maintenance,
            domain_refresh,
            analytics: pipeline,
            retention,
            blocklist_refresh,
            tier_tasks,
        },
    ))
}

/// What another node's change (or a new subscription) means for this node's caches.
fn apply_cluster_event(state: &AppState, event: Event) {
    let changes = match event {
        // Messages may have been missed while unsubscribed: trust nothing cached.
        Event::Subscribed => vec![Change::Everything],
        Event::Changes(changes) => changes,
    };
    for change in changes {
        match change {
            Change::Link { domain, code } => state.cache.invalidate(&domain, &code),
            Change::Keys => state.keys.clear(),
            Change::Domains => reload_hosts(state),
            Change::Everything => {
                state.cache.clear();
                state.keys.clear();
                reload_hosts(state);
            }
        }
    }
}

/// Rereads the registered domains off the subscriber's task.
fn reload_hosts(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = state.hosts.reload(state.stores.domains.as_ref()).await {
            tracing::warn!(%error, "rereading domains after a change elsewhere failed");
        }
    });
}

/// A configured URL as a `Location` value; `None` when empty.
fn optional_header(url: &str) -> anyhow::Result<Option<HeaderValue>> {
    if url.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        HeaderValue::from_str(url).with_context(|| format!("`{url}`"))?,
    ))
}

/// The base URL's host and port, which links must not point at (a loop): on both 80
/// and 443 when the base uses a default port, since a proxy in front usually answers
/// both. Any local address on the port hop listens on is hop too (`own_local_ports`:
/// a visitor on this machine would loop; for everyone else such a link is broken).
fn own_origins(base: &url::Url) -> Vec<(String, u16)> {
    let (Some(host), Some(port)) = (base.host_str(), base.port_or_known_default()) else {
        return Vec::new();
    };
    let ports: &[u16] = if base.port().is_none() {
        &[80, 443]
    } else {
        &[port]
    };
    ports
        .iter()
        .map(|&port| (host.to_ascii_lowercase(), port))
        .collect()
}

/// The connection caps: `max_connections` as configured, or derived from the open-file
/// limit (raised to its hard maximum first).
fn connection_limits(config: &Config) -> anyhow::Result<ConnectionLimits> {
    let file_limit = connections::raise_file_limit();
    let max_connections = match config.max_connections {
        0 => connections::derived_max_connections(file_limit),
        configured => {
            if let Some(limit) = file_limit
                && configured as u64 + connections::FILE_HEADROOM > limit
            {
                tracing::warn!(
                    max_connections = configured,
                    file_limit = limit,
                    "max_connections leaves fewer than 64 file descriptors for the database; \
                     raise the open-file limit (ulimit -n) or lower max_connections"
                );
            }
            configured
        }
    };
    tracing::debug!(max_connections, file_limit, "connection caps");
    Ok(ConnectionLimits {
        max_connections,
        max_connections_per_client: config.max_connections_per_client,
        trusted_proxies: config.trusted_proxy_nets().map_err(anyhow::Error::msg)?,
    })
}

/// Rereads the blocklist files every 5 seconds if they changed; a new list empties the
/// redirect cache, whose entries carry the old list's verdict.
async fn run_blocklist_refresh(state: AppState) {
    if state.blocklist.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let blocklist = state.blocklist.clone();
        match tokio::task::spawn_blocking(move || blocklist.reload_if_changed()).await {
            Ok(Ok(true)) => state.cache.clear(),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "blocklist not reloaded; the old one stays"),
            Err(error) => tracing::error!(%error, "blocklist reload failed"),
        }
    }
}

/// Periodic housekeeping: forgets idempotency keys older than their 24 hours, and
/// dashboard sessions idle past `session_idle` (those are refused when used anyway;
/// this keeps the table from growing with every sign-in never signed out).
async fn run_maintenance(
    idempotency: Arc<dyn IdempotencyStore>,
    sessions: Arc<dyn SessionStore>,
    session_idle: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        let before = now_ms() - crate::http::idempotency::KEY_LIFETIME_MS;
        match idempotency.purge(before).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys removed"),
            Err(error) => tracing::warn!(%error, "purging idempotency keys failed"),
        }
        let idle_since = now_ms() - session_idle.as_millis() as i64;
        match sessions.delete_idle_sessions(idle_since).await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "idle dashboard sessions ended"),
            Err(error) => tracing::warn!(%error, "ending idle sessions failed"),
        }
    }
}

/// Tells a cluster's servers about a change made from the command line, if the
/// configuration names a Redis; when it cannot be reached, says how long the servers
/// may take to see the change without it.
pub async fn notify_cluster(config: &Config, changes: &[Change]) {
    let Some(settings) = config.tier_settings() else {
        return;
    };
    if let Err(error) = tier::notify(&settings, changes).await {
        eprintln!(
            "hop: warning: running servers were not told through Redis ({error}); \
             they see the change within cache_ttl_s ({} s)",
            config.cache_ttl_s
        );
    }
}

/// Issues a new API key for `user`; returns the stored key and the secret, which
/// exists nowhere else and must be shown once.
pub async fn issue_key(
    stores: &Stores,
    user: &User,
    label: &str,
    expires_at: Option<UnixMillis>,
) -> anyhow::Result<(ApiKey, String)> {
    let generated = key::generate();
    let stored = stores
        .keys
        .insert_key(NewApiKey {
            user: user.id,
            name: label.to_owned(),
            prefix: generated.prefix,
            hash: generated.hash,
            expires_at,
        })
        .await
        .context("storing the key")?;
    Ok((stored, generated.secret))
}

/// Creates an admin key (for the user `admin`, created if needed) if no active key
/// exists, so a fresh install is usable. Returns the user and the secret to show once.
pub async fn bootstrap_admin_key(stores: &Stores) -> anyhow::Result<Option<(User, String)>> {
    if stores.keys.count_active_keys().await? > 0 {
        return Ok(None);
    }
    let user = match stores.keys.user_by_name("admin").await? {
        Some(user) if user.admin => user,
        Some(_) => stores.keys.insert_user("hop-admin", true).await?,
        None => stores.keys.insert_user("admin", true).await?,
    };
    let (_, secret) = issue_key(stores, &user, "bootstrap", None).await?;
    Ok(Some((user, secret)))
}

/// Builds hop from `config` and serves it on `listener` until `shutdown` completes
/// (see [`run_server`]). On a database with no API key, creates an admin key and
/// prints it once to stderr.
pub async fn serve(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Port 0 asks the system for a free port; the default base URL and the loop check
    // must name the port actually taken.
    if config.listen_port() == Some(0) {
        config.listen = listener.local_addr()?.to_string();
    }
    let (state, background) = build(&config).await?;
    // `app` became a reserved path with the dashboard; a link made before keeps its
    // row, but /app is the dashboard's now.
    if let Ok(Some(_)) = state.stores.links.link_by_code("", "app").await {
        tracing::warn!(
            link.code = "app",
            "a link with the code `app` exists, made before /app became the dashboard: \
             its short URL now opens the dashboard; give its target a new alias"
        );
    }
    if let Some((user, secret)) = bootstrap_admin_key(&state.stores).await? {
        eprintln!(
            "hop: no API key existed, so an admin key was created. Store it now: it will not be shown again.\n{secret}"
        );
        // And the dashboard's way in, for an admin without a password.
        if let Some((_, None)) = state.stores.sessions.user_for_sign_in(&user.name).await? {
            let link = crate::http::dashboard::new_password_link(
                &state.stores,
                &state.settings.base_url,
                user.id,
            )
            .await?;
            eprintln!(
                "hop: to sign in to the dashboard as `{}`, set a password within 24 hours at\n{link}",
                user.name
            );
        }
    }
    let timeout = Duration::from_secs(config.shutdown_timeout_s);
    let drain = Duration::from_millis(config.shutdown_drain_ms);
    let shutdown = drain_after(state.clone(), shutdown, drain);
    run_server(state, background, listener, shutdown, timeout).await
}

/// Completes `drain` after `signal` does. From the signal on, `state` is draining:
/// `/readyz` answers 503 (`draining`) while every other request is served as before,
/// so a load balancer that checks `/readyz` takes the node out while it still
/// accepts; only then does the graceful shutdown stop accepting. Without a drain
/// (`shutdown_drain_ms = 0`, a single node) the shutdown starts at once, as it did
/// before drains existed.
///
/// (Rejected: refusing new connections during the drain. The balancer has not yet
/// noticed, so it would keep sending to a node that refuses: errors, or retries at
/// best, which is what the drain exists to avoid.)
pub async fn drain_after(state: AppState, signal: impl Future<Output = ()>, drain: Duration) {
    signal.await;
    state.start_draining();
    if !drain.is_zero() {
        tracing::info!(
            drain_ms = drain.as_millis() as u64,
            "draining: /readyz answers 503 while requests are still served"
        );
        tokio::time::sleep(drain).await;
    }
}

/// Serves `state` on `listener` until `shutdown` completes (after the drain, when
/// [`drain_after`] wraps it), then stops gracefully: no new connections, in-flight
/// requests finish (for up to `timeout`), counted clicks are flushed.
pub async fn run_server(
    state: AppState,
    background: Background,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    timeout: Duration,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(listen = %address, base_url = %state.settings.base_url, "hop is serving");
    let finished = http::server::serve(listener, state, shutdown, timeout).await;
    if !finished {
        tracing::warn!(
            timeout_s = timeout.as_secs(),
            "in-flight requests did not finish in time"
        );
    }
    background.stop().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed by this call,
/// not when the future is first polled: the server only polls it once it serves, and
/// a SIGTERM sent as soon as "hop is serving" was logged would otherwise still find
/// the default action, and kill the process instead of draining it.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        let mut terminate =
            signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
