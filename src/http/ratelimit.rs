//! Rate limiting at the HTTP edge: the API middleware ([`limit_api`]) and the check
//! the redirect path makes ([`redirect_limited`]), both answering `429` with
//! `Retry-After` and the `RateLimit-*` headers of the IETF draft.

use super::auth::Lookup;
use super::extract::presented_key;
use super::problem::ApiError;
use super::{AppState, negotiate};
use crate::ratelimit::{BucketKey, Decision, client_ip};
use crate::store::ApiKey;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// A key the middleware already authenticated, for [`super::extract::Caller`] to
/// reuse instead of reading it again.
#[derive(Clone)]
pub struct AuthenticatedKey(pub Arc<ApiKey>);

/// The client address of a request under the trusted-proxy rule.
pub fn request_client(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if state.settings.trusted_proxies.is_empty() {
        return peer;
    }
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    client_ip(peer, forwarded, &state.settings.trusted_proxies)
}

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

pub fn add_headers(headers: &mut HeaderMap, decision: &Decision) {
    if decision.limit == 0 {
        return;
    }
    for (name, value) in [
        (LIMIT, u64::from(decision.limit)),
        (REMAINING, u64::from(decision.remaining)),
        (RESET, decision.reset_s),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(decision.retry_after_s),
        );
    }
}

/// Middleware on every API route: draws on the key's bucket (its role's limit, or its
/// override) or, without a valid key, on the client address's anonymous bucket.
pub async fn limit_api(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response<Body> {
    let limits = &state.settings.limits;
    let mut bucket = None;
    if let Ok(Some(secret)) = presented_key(request.headers())
        && let Ok(Lookup::Usable(found)) = state.keys.lookup(&state.stores, secret).await
    {
        let per_minute =
            limits
                .key_overrides
                .get(&found.prefix)
                .copied()
                .unwrap_or(if found.user.admin {
                    limits.admin
                } else {
                    limits.user
                });
        bucket = Some((BucketKey::Key(found.id), per_minute));
        request.extensions_mut().insert(AuthenticatedKey(found));
    }
    let (bucket, per_minute) = bucket.unwrap_or_else(|| {
        let client = request_client(&state, peer.ip(), request.headers());
        (BucketKey::Anonymous(client), limits.anonymous)
    });
    let decision = state.limiter.check(bucket, per_minute, Instant::now());
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        ApiError::RateLimited(decision.retry_after_s).into_response()
    };
    // A refusal from a narrower bucket inside (anonymous creates) describes that bucket.
    if !response.headers().contains_key(LIMIT) {
        add_headers(response.headers_mut(), &decision);
    }
    response
}

/// The anonymous-create check, per client address: the 429 to send, if over.
pub fn anonymous_create_limited(state: &AppState, client: IpAddr) -> Option<Response<Body>> {
    let per_minute = state.settings.limits.anonymous_create;
    let decision = state.limiter.check(
        BucketKey::AnonymousCreate(client),
        per_minute,
        Instant::now(),
    );
    if decision.allowed {
        return None;
    }
    // An API route: problem+json whatever `Accept` says.
    let mut response = ApiError::RateLimited(decision.retry_after_s).into_response();
    add_headers(response.headers_mut(), &decision);
    Some(response)
}

/// The redirect path's check, per client address (already resolved under the
/// trusted-proxy rule): the 429 to send, if over.
pub fn redirect_limited(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    let per_minute = state.settings.limits.redirect;
    if per_minute == 0 {
        return None;
    }
    let decision = state
        .limiter
        .check(BucketKey::Redirect(client), per_minute, Instant::now());
    if decision.allowed {
        return None;
    }
    let mut response = negotiate(headers, ApiError::RateLimited(decision.retry_after_s));
    add_headers(response.headers_mut(), &decision);
    Some(response)
}
