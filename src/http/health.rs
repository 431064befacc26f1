//! Health endpoints for load balancers and orchestrators: `/healthz` says the process
//! is alive (it never touches a dependency), `/readyz` says it can serve (the database
//! answers reads and the writer is running).

use super::AppState;
use super::problem::ApiError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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
