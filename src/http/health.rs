//! Health endpoints for load balancers and orchestrators: `/healthz` says the process
//! is alive (it never touches a dependency), `/readyz` says it can serve (the database
//! answers reads and the writer is running).

use super::AppState;
use super::problem::ApiError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.stores.meta.ping().await?;
    Ok(Json(
        json!({ "status": "ready", "checks": { "database": "ok" } }),
    ))
}
