//! The HTTP interface: shared state, the one router that lists every route, and the
//! request-log middleware.
//!
//! Routes (each module has its own `router()`):
//! - `POST /api/v1/shorten`, `POST /api/v1/links`, `GET|DELETE /api/v1/links/{code}`: [`links`]
//! - `GET|POST /api/v1/domains`, `DELETE /api/v1/domains/{name}`: [`domains`]
//! - `GET|HEAD /{code}`: [`redirect`], the hot path
//! - `GET /healthz`, `GET /readyz`: [`health`]
//! - `GET /api/v1/stats`, `GET /api/v1/links/{code}/stats|visits|live`: [`stats`]
//! - `GET /openapi.json`, `GET /docs`: [`openapi`], the published contract

pub mod auth;
pub mod connections;
pub mod dashboard;
pub mod domains;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod links;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod protected;
pub mod qr;
pub mod ratelimit;
pub mod redirect;
pub mod server;
pub mod stats;

use crate::cache::LinkCache;
use crate::clicks::Clicks;
use crate::codes::CodeAllocator;
use crate::domain::url::UrlPolicy;
use crate::store::Stores;
use crate::tier::message::Change;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use problem::{ApiError, InternalCause};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Settings the handlers need, derived once from the configuration.
#[derive(Debug)]
pub struct Settings {
    /// Base of every short URL in the default domain, without a trailing slash.
    pub base_url: String,
    /// `base_url`'s scheme and path (no trailing slash): short URLs in other domains
    /// are `{scheme}://{domain}{path}/{code}`.
    pub base_scheme: String,
    pub base_path: String,
    pub url_policy: UrlPolicy,
    /// The `Cache-Control` value sent with every redirect.
    pub redirect_cache_control: HeaderValue,
    pub max_body_bytes: usize,
    pub max_bulk_body_bytes: usize,
    /// How long a link may stay cached (what a change from another process waits for).
    pub cache_ttl_s: u64,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub limits: Limits,
    /// Whether links may be created without an API key.
    pub anonymous_create: bool,
    /// Headers to last body byte and answer (`request_timeout_ms`).
    pub request_timeout: std::time::Duration,
    /// Headers, and an idle keep-alive connection (`header_read_timeout_ms`).
    pub header_read_timeout: std::time::Duration,
    pub max_header_bytes: usize,
    /// Where `GET /` redirects (`root_redirect`), if set.
    pub root_redirect: Option<HeaderValue>,
    /// Where unknown codes and pages redirect browsers (`not_found_redirect`), if set.
    pub not_found_redirect: Option<HeaderValue>,
    /// How long a dashboard session lasts unused (`session_idle_minutes`).
    pub session_idle: std::time::Duration,
}

impl Settings {
    /// The short URL of `code` in `domain` (`""`: the default domain).
    pub fn short_url(&self, domain: &str, code: &str) -> String {
        if domain.is_empty() {
            format!("{}/{code}", self.base_url)
        } else {
            format!("{}://{domain}{}/{code}", self.base_scheme, self.base_path)
        }
    }
}

/// Requests per minute for each kind of bucket (0: unlimited).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub anonymous: u32,
    pub user: u32,
    pub admin: u32,
    pub redirect: u32,
    /// Creates without a key, per client address (on top of `anonymous`).
    pub anonymous_create: u32,
    /// By visible key prefix.
    pub key_overrides: std::collections::HashMap<String, u32>,
}

/// Everything a handler can reach, cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub stores: Stores,
    pub cache: LinkCache,
    pub clicks: Arc<Clicks>,
    pub codes: Arc<CodeAllocator>,
    pub settings: Settings,
    /// Password attempts per link and client.
    pub attempts: protected::AttemptLimiter,
    /// API and redirect rate limits.
    pub limiter: crate::ratelimit::RateLimiter,
    /// Recently used API keys.
    pub keys: auth::KeyCache,
    /// The click-analytics queue; `None` when analytics are off.
    pub analytics: Option<Arc<crate::analytics::pipeline::Analytics>>,
    /// The default host and the registered domains, for `Host` → domain.
    pub hosts: Arc<crate::hosts::Hosts>,
    /// Open connections and their caps.
    pub connections: Arc<connections::ConnectionGate>,
    /// Hosts links may not point at.
    pub blocklist: Arc<crate::blocklist::Blocklist>,
    /// Requests by route and status, and their latency.
    pub metrics: metrics::HttpMetrics,
    /// When the process started serving (`process_start_time_seconds`).
    pub started_at: std::time::SystemTime,
    /// The Redis tier shared with the other nodes; `None` without `redis_url`.
    pub tier: Option<Arc<crate::tier::RedisTier>>,
    /// The click stream (NATS) this node publishes to; `None` without `nats_url`.
    pub stream: Option<StreamHandle>,
    /// Set once a shutdown signal came: `/readyz` fails so that the load balancer
    /// stops sending here, while every other request is still served.
    pub draining: AtomicBool,
}

/// What the HTTP side needs of the click stream: live feeds and metrics.
#[derive(Clone)]
pub struct StreamHandle {
    pub client: async_nats::Client,
    pub settings: crate::stream::StreamSettings,
    pub metrics: Arc<crate::stream::publisher::StreamMetrics>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// A link changed or went away: this node's cache forgets it now and, in a
    /// cluster, every other node's and the shared cache (waiting at most
    /// `redis_timeout_ms` for Redis).
    pub async fn link_changed(&self, domain: &str, code: &str) {
        self.cache.invalidate(domain, code);
        self.announce(vec![Change::Link {
            domain: domain.to_owned(),
            code: code.to_owned(),
        }])
        .await;
    }

    /// From now on `/readyz` answers 503 (draining) and responses close their
    /// connections; nothing else changes. Never undone: the process is stopping.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether a shutdown has begun (see [`Self::start_draining`]).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Tells the other nodes of a cluster what changed (nothing without Redis).
    pub async fn announce(&self, changes: Vec<Change>) {
        if let Some(tier) = &self.tier {
            tier.announce(changes).await;
        }
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(
            links::router(&state)
                .merge(qr::router())
                .merge(domains::router())
                .merge(stats::router())
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    ratelimit::limit_api,
                )),
        )
        .merge(health::router())
        .merge(dashboard::router())
        .merge(openapi::router())
        .merge(redirect::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// An unknown path: a page for browsers (or `root_redirect` for `/`, and
/// `not_found_redirect` for anything else), except under `/api/`, where every answer
/// is problem+json whatever `Accept` says (programs often send `*/*`).
async fn not_found(
    axum::extract::State(state): axum::extract::State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path() == "/"
        && let Some(target) = &state.settings.root_redirect
    {
        return redirect_elsewhere(target);
    }
    if uri.path().starts_with("/api/") {
        return ApiError::NotFound(format!(
            "no API endpoint at {}; GET /openapi.json lists them",
            uri.path()
        ))
        .into_response();
    }
    not_found_answer(&state, &headers, ApiError::NotFound("no such page".into()))
}

/// A 404 for a visitor: `not_found_redirect` when it is set and the client wants a
/// page, else the error page or problem.
pub fn not_found_answer(state: &AppState, headers: &HeaderMap, error: ApiError) -> Response {
    match &state.settings.not_found_redirect {
        Some(target) if !wants_json(headers) => redirect_elsewhere(target),
        _ => negotiate(headers, error),
    }
}

/// A temporary redirect to a configured page, not to be cached (the code or page that
/// was missing may exist soon).
fn redirect_elsewhere(target: &HeaderValue) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, target.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// One log line per request (method, route template, status, duration), the cause of
/// any 5xx, and the request's metrics. Never the query string, headers or client
/// address: those can carry API keys and visitors' personal data.
async fn log_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let timer = RequestTimer::start();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(
            http.method = %method,
            http.route = route,
            http.status = response.status().as_u16(),
            error = %cause,
            "request failed"
        );
    }
    timer.log(&state, &method, route, response.status());
    response
}

/// Times a request for its metrics and log line.
pub struct RequestTimer(Instant);

impl RequestTimer {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Records the request's metrics and writes its log line (at info level).
    pub fn log(self, state: &AppState, method: &Method, route: &str, status: StatusCode) {
        let elapsed = self.0.elapsed();
        state.metrics.record(route, status.as_u16(), elapsed);
        if tracing::enabled!(tracing::Level::INFO) {
            // Microsecond resolution, as a number so log pipelines can aggregate it.
            let duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
            tracing::info!(
                http.method = %method,
                http.route = route,
                http.status = status.as_u16(),
                duration_ms,
                "request"
            );
        }
    }
}

/// Whether the client asked for JSON rather than a page (an `Accept` naming JSON).
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("json"))
}

/// An error as problem+json for programs, or as a small HTML page for browsers.
pub fn negotiate(headers: &HeaderMap, error: ApiError) -> Response {
    if wants_json(headers) {
        return error.into_response();
    }
    let (status, _, title) = error.kind();
    let detail = error.public_detail();
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;\
         margin:4rem auto;padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}</style></head>\
         <body><h1>{title}</h1><p>{}</p></body></html>",
        detail_html(&detail)
    );
    let mut response = (status, Html(page)).into_response();
    secure_page(response.headers_mut());
    if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            problem::RETRY_UNAVAILABLE_S,
        );
    }
    if let ApiError::Unavailable(cause) | ApiError::Internal(cause) | ApiError::Storage(_, cause) =
        error
    {
        response.extensions_mut().insert(InternalCause(cause));
    }
    response
}

/// The headers every HTML page of hop's own carries (error pages, the password form):
/// no script, no outside resource, inline styles only, never framed (the password form
/// must not be clickjacked), never sniffed as another type, no referrer sent on.
pub fn secure_page(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    secure_common(headers);
}

/// What every HTML answer carries whatever its policy: `nosniff`, no framing (for
/// browsers older than `frame-ancestors`), no referrer.
pub fn secure_common(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// A problem's detail as HTML: escaped, with the `quoted` parts (codes, names, values,
/// which the JSON form quotes in backticks) set as code rather than shown with their
/// backticks.
fn detail_html(detail: &str) -> String {
    let escaped = escape_html(detail);
    if !escaped.matches('`').count().is_multiple_of(2) {
        return escaped;
    }
    let mut out = String::with_capacity(escaped.len() + 16);
    for (index, part) in escaped.split('`').enumerate() {
        if index % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn quoted_parts_of_a_detail_become_code() {
        assert_eq!(
            detail_html("no link with code `a<b`"),
            "no link with code <code>a&lt;b</code>"
        );
        // An odd backtick is text, not the start of code that never ends.
        assert_eq!(detail_html("it`s"), "it`s");
    }
}
