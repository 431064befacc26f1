//! `Idempotency-Key` on the requests that create links: a retry with the same key and
//! the same request gets the first answer again and creates nothing; the same key
//! with a different request is `422`; a key still in flight is `409`. Keys are scoped
//! by the caller's credential and kept for 24 hours; requests without a credential
//! cannot use them.
//!
//! Only successful answers are kept: a request that failed created nothing, so it may
//! be retried with the same key (as with Stripe's API, the usual reference).

use super::AppState;
use super::extract::presented_key;
use super::problem::ApiError;
use crate::domain::key;
use crate::domain::link::now_ms;
use crate::store::IdempotencyState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use sha2::{Digest, Sha256};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a key is remembered.
pub const KEY_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// Middleware for the create routes.
pub async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    let key = match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_KEY_LEN
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            key.to_owned()
        }
        _ => {
            return ApiError::InvalidHeader {
                detail: format!(
                    "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters, such as a UUID"
                ),
                header: "Idempotency-Key",
            }
            .into_response();
        }
    };
    // Without a credential there is nothing to scope by. Anonymous clients cannot be
    // told apart (many share an address behind NAT), so one could replay another's
    // answer: where anonymous creates exist, the key is refused rather than ignored.
    // Otherwise the handler answers 401.
    let scope = match presented_key(request.headers()) {
        Ok(Some(secret)) => key::hash(secret),
        Ok(None) if state.settings.anonymous_create => {
            return ApiError::InvalidHeader {
                detail: "Idempotency-Key is honoured only with an API key; send the request \
                         without it, or with a key"
                    .into(),
                header: "Idempotency-Key",
            }
            .into_response();
        }
        Ok(None) | Err(_) => return next.run(request).await,
    };
    let (parts, body) = request.into_parts();
    let limit = state.settings.max_bulk_body_bytes;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return ApiError::PayloadTooLarge(limit).into_response(),
    };
    let mut fingerprint = Sha256::new();
    fingerprint.update(parts.method.as_str());
    fingerprint.update([0]);
    fingerprint.update(parts.uri.path());
    fingerprint.update([0]);
    fingerprint.update(&bytes);
    let fingerprint: [u8; 32] = fingerprint.finalize().into();

    let store = &state.stores.idempotency;
    match store
        .claim(scope, &key, fingerprint, now_ms() - KEY_LIFETIME_MS)
        .await
    {
        Err(error) => ApiError::from(error).into_response(),
        Ok(IdempotencyState::Mismatch) => ApiError::IdempotencyKeyReused.into_response(),
        Ok(IdempotencyState::InProgress) => {
            let mut response = ApiError::IdempotencyKeyInUse.into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Ok(IdempotencyState::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            response
        }
        Ok(IdempotencyState::Claimed) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            if !response.status().is_success() {
                if let Err(error) = store.release(scope, &key).await {
                    tracing::error!(%error, "releasing an idempotency key failed");
                }
                return response;
            }
            let (parts, body) = response.into_parts();
            // Our own JSON answer, already in memory: collecting it cannot fail.
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if let Err(error) = store
                .complete(scope, &key, parts.status.as_u16(), body.to_vec())
                .await
            {
                // The links exist; a retry will find the key in flight until it expires.
                tracing::error!(%error, "recording an idempotent answer failed");
            }
            Response::from_parts(parts, Body::from(body))
        }
    }
}
