//! Health endpoints for load balancers and orchestrators: `/healthz` says the process
//! is alive (it never touches a dependency), `/readyz` says it can serve (the database
//! answers reads and the writer is running), `/metrics` gives counters in the
//! Prometheus text format.

use super::AppState;
use super::problem::ApiError;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
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

/// Readiness: answers `200` when the database answers reads, `503` otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses((status = 200, description = "Ready to serve", body = Ready))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state.stores.meta.ping().await?;
    Ok(Json(Ready {
        status: "ready",
        checks: ReadyChecks { database: "ok" },
    }))
}

/// Counters for monitoring, in the Prometheus text format.
///
/// The analytics pipeline (visits waiting, stored, dropped because the queue was full
/// or the database kept failing) and the redirect cache (bytes and entries). Counts
/// only: no link, key or visitor appears here.
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
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
