//! Health endpoints for load balancers and orchestrators: `/healthz` says the process
//! is alive (it never touches a dependency), `/readyz` says it can serve (not draining
//! for a shutdown, the database answers reads, the writer is running, and recent writes
//! did not fail for a full disk, an I/O error or damage: the 503 names which),
//! `/metrics` gives counters in the Prometheus text format.

use super::AppState;
use super::problem::ApiError;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Liveness: the process answers.
#[derive(Serialize, ToSchema)]
pub struct Alive {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Readiness: the database answers.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    status: &'static str,
    checks: ReadyChecks,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyChecks {
    #[schema(example = "ok")]
    database: &'static str,
    /// In a cluster (`redis_url` set): `ok`, or `unavailable` while the node goes on
    /// without Redis (its breaker open). The node stays ready either way: it serves
    /// every request without Redis. Absent without `redis_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ok")]
    redis: Option<&'static str>,
    /// With a click stream (`nats_url` set): `ok`, or `spooling` while NATS cannot take
    /// visits and they wait in the node's spool. Still ready: nothing is lost.
    /// Absent without `nats_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ok")]
    nats: Option<&'static str>,
}

/// Liveness: answers while the process runs; touches no dependency.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process is alive", body = Alive))
)]
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// Readiness: answers `200` when the database answers reads and takes writes; `503`
/// otherwise, with a problem whose `type` and `detail` say why (`draining` once a
/// shutdown signal came, for `shutdown_drain_ms`, while every other route still
/// serves; `disk-full`, `storage-failed`, `database-damaged`, or `unavailable`). In a
/// cluster, `checks.redis` says whether Redis is in use (`unavailable`: the node goes on
/// without it, still ready).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses((status = 200, description = "Ready to serve", body = Ready))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    // First: a draining node must fail at once, whatever its database says.
    if state.is_draining() {
        return Err(ApiError::Draining);
    }
    state.stores.meta.ping().await?;
    let redis = state.tier.as_ref().map(|tier| {
        if tier.available() {
            "ok"
        } else {
            "unavailable"
        }
    });
    let nats = state.stream.as_ref().map(|stream| {
        let up = stream.client.connection_state() == async_nats::connection::State::Connected;
        if up && stream.metrics.spool_bytes.load(Ordering::Relaxed) == 0 {
            "ok"
        } else {
            "spooling"
        }
    });
    Ok(Json(Ready {
        status: "ready",
        checks: ReadyChecks {
            database: "ok",
            redis,
            nats,
        },
    }))
}

/// Counters for monitoring, in the Prometheus text format.
///
/// The analytics pipeline (visits waiting, stored, dropped because the queue was full
/// or the database kept failing), the redirect cache (bytes and entries) and, on
/// PostgreSQL with replicas, each replica's use, lag and reads. Counts only: no link,
/// key or visitor appears here.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text exposition format",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    use std::fmt::Write;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    let (bytes, entries) = state.cache.usage();
    metric(
        "hop_cache_bytes",
        "gauge",
        "Estimated bytes held by the redirect cache.",
        bytes,
    );
    metric(
        "hop_cache_entries",
        "gauge",
        "Entries in the redirect cache.",
        entries,
    );
    metric(
        "hop_draining",
        "gauge",
        "1 once a shutdown signal came (/readyz fails, requests are still served), else 0.",
        u64::from(state.is_draining()),
    );
    metric(
        "hop_connections_open",
        "gauge",
        "HTTP connections open now.",
        state.connections.open() as u64,
    );
    metric(
        "hop_connections_max",
        "gauge",
        "The cap on open HTTP connections (max_connections).",
        state.connections.limits().max_connections as u64,
    );
    if let Some(analytics) = &state.analytics {
        let stats = analytics.stats();
        metric(
            "hop_analytics_queued",
            "gauge",
            "Visits waiting for the analytics pipeline.",
            stats.queued as u64,
        );
        metric(
            "hop_analytics_stored_total",
            "counter",
            "Visits stored by the analytics pipeline since start.",
            stats.stored,
        );
        metric(
            "hop_analytics_dropped_total",
            "counter",
            "Visits dropped since start (queue full, or the database failing for long).",
            stats.dropped,
        );
    }
    if let Some(stream) = &state.stream {
        let m = &stream.metrics;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        metric(
            "hop_stream_connected",
            "gauge",
            "1 while this node is connected to NATS.",
            u64::from(stream.client.connection_state() == async_nats::connection::State::Connected),
        );
        metric(
            "hop_stream_published_total",
            "counter",
            "Visit batches the stream acknowledged (first publishes and spool replays).",
            load(&m.published),
        );
        metric(
            "hop_stream_published_visits_total",
            "counter",
            "Visits in the batches the stream acknowledged.",
            load(&m.published_visits),
        );
        metric(
            "hop_stream_publish_failures_total",
            "counter",
            "Publishes that failed or timed out (their batch went to the spool).",
            load(&m.publish_failures),
        );
        metric(
            "hop_stream_spooled_total",
            "counter",
            "Visit batches written to the spool while NATS could not take them.",
            load(&m.spooled),
        );
        metric(
            "hop_stream_spool_bytes",
            "gauge",
            "Bytes in the spool now.",
            load(&m.spool_bytes),
        );
        metric(
            "hop_stream_dropped_visits_total",
            "counter",
            "Visits dropped because the spool was full (their clicks still count).",
            load(&m.dropped_visits),
        );
        let pending = m.pending.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP hop_stream_worker_pending Messages waiting for hop worker (pending and unacknowledged); -1 when unknown.
             # TYPE hop_stream_worker_pending gauge
hop_stream_worker_pending {pending}
"
        );
    }
    out.push_str(
        "# HELP hop_connections_refused_total Connections closed on accept since start, by the cap that refused them.\n\
         # TYPE hop_connections_refused_total counter\n",
    );
    for (refusal, count) in state.connections.refused() {
        let _ = writeln!(
            out,
            "hop_connections_refused_total{{limit=\"{}\"}} {count}",
            refusal.as_str()
        );
    }
    state.metrics.render(&mut out);
    if let Some(tier) = &state.tier {
        tier.render_metrics(&mut out);
    }
    process_metrics(&mut out, &state);
    if let Some((open, idle, max)) = state.stores.meta.pool() {
        let _ = write!(
            out,
            "# HELP hop_database_pool_connections Connections of this node's PostgreSQL pool, by state.\n\
             # TYPE hop_database_pool_connections gauge\n\
             hop_database_pool_connections{{state=\"in_use\"}} {}\n\
             hop_database_pool_connections{{state=\"idle\"}} {idle}\n\
             # HELP hop_database_pool_max The most connections the pool opens (database_max_connections).\n\
             # TYPE hop_database_pool_max gauge\nhop_database_pool_max {max}\n",
            open.saturating_sub(idle)
        );
    }
    let replicas = state.stores.meta.replicas();
    if !replicas.is_empty() {
        let label = |name: &str| name.replace('\\', "\\\\").replace('"', "\\\"");
        let families: [(&str, &str, &str); 3] = [
            (
                "hop_database_replica_in_use",
                "gauge",
                "Whether reads go to this replica (0: down, or behind by more than replica_max_lag_ms).",
            ),
            (
                "hop_database_replica_lag_ms",
                "gauge",
                "How far the replica's replay was behind at the last check, in milliseconds.",
            ),
            (
                "hop_database_replica_reads_total",
                "counter",
                "Reads the replica answered since start.",
            ),
        ];
        for (i, (name, kind, help)) in families.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for replica in &replicas {
                let value = match i {
                    0 => u64::from(replica.in_use),
                    1 => replica.lag_ms,
                    _ => replica.reads,
                };
                let _ = writeln!(
                    out,
                    "{name}{{replica=\"{}\"}} {value}",
                    label(&replica.name)
                );
            }
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// The process and runtime basics, under the names Prometheus' client libraries use
/// (`process_*`), so stock dashboards and alerts work: CPU, memory, descriptors, start
/// time; and the tokio runtime's workers, tasks and queue.
fn process_metrics(out: &mut String, state: &AppState) {
    use std::fmt::Write;
    let mut gauge = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    if let Ok(start) = state.started_at.duration_since(std::time::UNIX_EPOCH) {
        gauge(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            start.as_secs_f64().floor(),
        );
    }
    #[cfg(target_os = "linux")]
    {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        // Fields 14 and 15 of /proc/self/stat (after the parenthesised name): user and
        // system time in clock ticks.
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(rest) = stat.rsplit_once(") ").map(|(_, rest)| rest)
        {
            let fields: Vec<&str> = rest.split(' ').collect();
            let cpu: f64 = [11, 12]
                .iter()
                .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
                .sum();
            gauge(
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, in seconds.",
                cpu / ticks,
            );
        }
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(pages) = statm.split(' ').nth(1).and_then(|p| p.parse::<f64>().ok())
        {
            gauge(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size, in bytes.",
                pages * rustix::param::page_size() as f64,
            );
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                "process_open_fds",
                "gauge",
                "Open file descriptors.",
                entries.count() as f64,
            );
        }
        if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            gauge(
                "process_max_fds",
                "gauge",
                "The limit on open file descriptors.",
                max as f64,
            );
        }
    }
    let runtime = tokio::runtime::Handle::current().metrics();
    gauge(
        "hop_runtime_workers",
        "gauge",
        "Worker threads of the async runtime.",
        runtime.num_workers() as f64,
    );
    gauge(
        "hop_runtime_alive_tasks",
        "gauge",
        "Tasks alive in the async runtime (about one per open connection, plus hop's own).",
        runtime.num_alive_tasks() as f64,
    );
    gauge(
        "hop_runtime_global_queue_depth",
        "gauge",
        "Tasks waiting in the runtime's global queue (a lasting backlog means hop is CPU-bound).",
        runtime.global_queue_depth() as f64,
    );
}
