//! Rate limiting at the HTTP edge: the API middleware ([`limit_api`]) and the check
//! the redirect path makes ([`redirect_limit`]), both answering `429` with
//! `Retry-After` and the `RateLimit-*` headers of the IETF draft.
//!
//! In a cluster (the Redis tier available) every bucket is decided in Redis, so a
//! limit holds across the nodes: API requests ask Redis each time ([`decide`]), and
//! redirects spend leases taken from Redis a few requests at a time
//! ([`crate::tier::leases`]), so a cached redirect with a live lease never waits.
//! With Redis unavailable (or not configured) this node's buckets decide.

use super::auth::Lookup;
use super::extract::presented_key;
use super::problem::ApiError;
use super::{AppState, negotiate};
use crate::ratelimit::{BucketKey, Decision, client_ip};
use crate::store::ApiKey;
use crate::tier::Grant;
use crate::tier::leases::Spend;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use std::borrow::Cow;
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
    let forwarded = forwarded_for(headers);
    client_ip(peer, forwarded.as_deref(), &state.settings.trusted_proxies)
}

/// Every `X-Forwarded-For` line of a request as one list, in order. Several lines are
/// one comma-separated list (RFC 9110, section 5.3), and they do occur: haproxy's
/// `option forwardfor` adds a line of its own after any the client sent, so reading
/// the first line alone would believe the client's. A line that is not text becomes
/// an entry that stops the walk in [`client_ip`].
fn forwarded_for(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let mut lines = headers.get_all("x-forwarded-for").iter();
    let first = lines.next()?;
    if lines.next().is_none() {
        return Some(Cow::Borrowed(first.to_str().unwrap_or("?")));
    }
    let all: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|line| line.to_str().unwrap_or("?"))
        .collect();
    Some(Cow::Owned(all.join(",")))
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
    let decision = decide(&state, bucket, per_minute).await;
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

/// One request against `bucket` at `per_minute` (0: unlimited): decided in Redis in
/// a cluster, else (or with Redis unavailable) by this node's buckets.
pub async fn decide(state: &AppState, bucket: BucketKey, per_minute: u32) -> Decision {
    if per_minute > 0
        && let Some(tier) = &state.tier
        && let Some(grant) = tier.take(&bucket, per_minute, 1).await
    {
        return granted(&grant, per_minute);
    }
    state.limiter.check(bucket, per_minute, Instant::now())
}

/// What Redis granted, as the headers report it.
fn granted(grant: &Grant, per_minute: u32) -> Decision {
    let allowed = grant.granted > 0;
    Decision {
        allowed,
        limit: per_minute,
        remaining: grant.remaining,
        reset_s: grant.reset.as_secs_f64().ceil() as u64,
        retry_after_s: if allowed {
            0
        } else {
            grant.wait.as_secs_f64().ceil().max(1.0) as u64
        },
    }
}

/// The anonymous-create check, per client address: the 429 to send, if over.
pub async fn anonymous_create_limited(state: &AppState, client: IpAddr) -> Option<Response<Body>> {
    let per_minute = state.settings.limits.anonymous_create;
    let decision = decide(state, BucketKey::AnonymousCreate(client), per_minute).await;
    if decision.allowed {
        return None;
    }
    // An API route: problem+json whatever `Accept` says.
    let mut response = ApiError::RateLimited(decision.retry_after_s).into_response();
    add_headers(response.headers_mut(), &decision);
    Some(response)
}

/// What the redirect path's check decided without waiting.
pub enum RedirectLimit {
    Allowed,
    /// The 429 to send.
    Refused(Response<Body>),
    /// In a cluster, without a lease to spend: ask Redis ([`redirect_limited_in_cluster`]).
    AskCluster,
}

/// The redirect path's check, per client address (already resolved under the
/// trusted-proxy rule), as far as it can go without waiting: this node's bucket, or
/// in a cluster the client's lease.
pub fn redirect_limit(state: &AppState, client: IpAddr, headers: &HeaderMap) -> RedirectLimit {
    let per_minute = state.settings.limits.redirect;
    if per_minute == 0 {
        return RedirectLimit::Allowed;
    }
    let now = Instant::now();
    if let Some(tier) = &state.tier {
        if !tier.available() {
            tier.count_decision(false);
            return local_redirect_limit(state, client, headers, per_minute, now);
        }
        return match tier.leases.spend(client, per_minute, now) {
            Spend::Allowed => RedirectLimit::Allowed,
            Spend::Refused(wait_s) => {
                RedirectLimit::Refused(redirect_refused(headers, &refusal(per_minute, wait_s)))
            }
            Spend::Borrow(_) => RedirectLimit::AskCluster,
        };
    }
    local_redirect_limit(state, client, headers, per_minute, now)
}

/// The redirect check by this node's bucket.
fn local_redirect_limit(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
    per_minute: u32,
    now: Instant,
) -> RedirectLimit {
    let decision = state
        .limiter
        .check(BucketKey::Redirect(client), per_minute, now);
    if decision.allowed {
        RedirectLimit::Allowed
    } else {
        RedirectLimit::Refused(redirect_refused(headers, &decision))
    }
}

/// The redirect check in a cluster when the client has no lease to spend: borrows
/// one from Redis (or, with Redis unavailable, falls back to this node's bucket).
/// The 429 to send, if over.
pub async fn redirect_limited_in_cluster(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    let per_minute = state.settings.limits.redirect;
    if let Some(tier) = &state.tier
        && per_minute > 0
    {
        // Another request may have brought a lease meanwhile.
        let want = match tier.leases.spend(client, per_minute, Instant::now()) {
            Spend::Allowed => return None,
            Spend::Refused(wait_s) => {
                return Some(redirect_refused(headers, &refusal(per_minute, wait_s)));
            }
            Spend::Borrow(want) => want,
        };
        if let Some(grant) = tier
            .take(&BucketKey::Redirect(client), per_minute, want)
            .await
        {
            tier.leases
                .record(client, grant.granted, grant.wait, Instant::now());
            let decision = granted(&grant, per_minute);
            return (!decision.allowed).then(|| redirect_refused(headers, &decision));
        }
    }
    // Redis did not answer: this node's bucket decides.
    let decision = state
        .limiter
        .check(BucketKey::Redirect(client), per_minute, Instant::now());
    (!decision.allowed).then(|| redirect_refused(headers, &decision))
}

/// A refusal remembered from Redis, as the headers report it.
fn refusal(per_minute: u32, wait_s: u64) -> Decision {
    Decision {
        allowed: false,
        limit: per_minute,
        remaining: 0,
        reset_s: wait_s,
        retry_after_s: wait_s,
    }
}

/// A redirect's 429, a page or problem+json as the client asked.
fn redirect_refused(headers: &HeaderMap, decision: &Decision) -> Response<Body> {
    let mut response = negotiate(headers, ApiError::RateLimited(decision.retry_after_s));
    add_headers(response.headers_mut(), decision);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_forwarded_for_line_is_read_in_order() {
        let mut headers = HeaderMap::new();
        assert_eq!(forwarded_for(&headers), None);
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        assert_eq!(forwarded_for(&headers).as_deref(), Some("203.0.113.7"));
        // A client's own line first, then the balancer's (haproxy `option forwardfor`):
        // the balancer's line is the one nearest to hop.
        headers.append("x-forwarded-for", HeaderValue::from_static("198.51.100.2"));
        let joined = forwarded_for(&headers).unwrap();
        assert_eq!(joined, "203.0.113.7,198.51.100.2");
        let trusted = ["127.0.0.1/32".parse().unwrap()];
        let peer = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, Some(&joined), &trusted),
            "198.51.100.2".parse::<IpAddr>().unwrap()
        );
        // A line that is not text ends the walk there, as unparsable text does.
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        headers.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(forwarded_for(&headers).as_deref(), Some("203.0.113.7,?"));
    }
}
