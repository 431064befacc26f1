//! `GET /{code}` and `HEAD /{code}`: the hot path.
//!
//! `Host` → domain (in memory; the default host without allocating) → cache hit →
//! check expiry and click limit → hand the click to the queue → redirect.
//! A miss reads the store once and caches the answer, including "no such code". No
//! step waits on a write, except a click on a link with a click limit: that click is
//! reserved in the store (one durable write, shared with every other write waiting
//! for the writer) before the redirect is answered, so a crash cannot give clicks
//! back and a one-time link never works twice. `HEAD` answers exactly like `GET` but
//! is not a click.

use super::problem::ApiError;
use super::protected::{password_form, unavailable};
use super::ratelimit::{
    RedirectLimit, redirect_limit, redirect_limited_in_cluster, request_client,
};
use super::{AppState, RequestTimer, negotiate};
use crate::analytics::enrich::RawProfileRef;
use crate::cache::{CachedLink, Entry};
use crate::domain::code::{is_code_syntax, is_reserved};
use crate::domain::link::{LinkId, now_ms};
use crate::hosts::Site;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, Request, Response, header};
use axum::routing::get;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub fn router() -> Router<AppState> {
    // `get` also answers HEAD (without a body).
    Router::new().route(
        "/{code}",
        get(follow_link).post(super::protected::submit_password),
    )
}

/// What the fast path made of a request.
pub enum FastPath {
    /// Answered from the cache (a link, or a code known not to exist).
    Answered(Response<Body>),
    /// A code that is not cached: answer with [`answer_miss`].
    Miss(Site, String, Visitor),
    /// In a cluster, a client without a redirect lease: the rate limit asks Redis
    /// first, in [`answer_limited`].
    AskCluster(Visitor),
    /// Not `GET`/`HEAD /{code}` with a plain code: the router's job.
    NotMine,
}

/// The fast path, called for every request before routing: `GET`/`HEAD /{code}` is
/// answered here, from the cache or, on a miss, by [`answer_miss`] without going
/// through axum's routing and extractors. Everything else goes to the router.
pub fn fast_path<B>(state: &AppState, request: &Request<B>, peer: IpAddr) -> FastPath {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return FastPath::NotMine;
    }
    // Code syntax excludes `%`, so the raw path needs no percent-decoding here.
    let Some(code) = request.uri().path().strip_prefix('/') else {
        return FastPath::NotMine;
    };
    if !is_code_syntax(code) {
        return FastPath::NotMine;
    }
    let timer = RequestTimer::start();
    let site = request_site(state, request.headers());
    let entry = match &site {
        Ok(site) => state.cache.get(site.as_str(), code),
        Err(_) => None,
    };
    // hop's own paths (`/healthz`, …) are never links, so never cached: only a miss
    // needs the check. They are served whatever the host.
    if entry.is_none() && is_reserved(code) {
        return FastPath::NotMine;
    }
    let visitor = Visitor::of(state, request, peer);
    match redirect_limit(state, visitor.client, request.headers()) {
        RedirectLimit::Allowed => {}
        RedirectLimit::Refused(limited) => {
            timer.log(state, method, ROUTE, limited.status());
            return FastPath::Answered(limited);
        }
        RedirectLimit::AskCluster => return FastPath::AskCluster(visitor),
    }
    respond(state, request, code, site, entry, visitor, timer)
}

/// The fast path once the rate limit let the request through.
fn respond<B>(
    state: &AppState,
    request: &Request<B>,
    code: &str,
    site: Result<Site, ApiError>,
    entry: Option<Entry>,
    visitor: Visitor,
    timer: RequestTimer,
) -> FastPath {
    let method = request.method();
    let site = match site {
        Ok(site) => site,
        Err(unknown_host) => {
            let response = negotiate(request.headers(), unknown_host);
            timer.log(state, method, ROUTE, response.status());
            return FastPath::Answered(response);
        }
    };
    let Some(entry) = entry else {
        return FastPath::Miss(site, code.to_owned(), visitor);
    };
    if let Some(tier) = &state.tier {
        tier.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
    }
    let head = *method == Method::HEAD;
    match answer(state, head, code, entry, request.headers(), visitor) {
        Outcome::Ready(response) => {
            timer.log(state, method, ROUTE, response.status());
            FastPath::Answered(response)
        }
        // The reservation waits on a write: [`answer_miss`] finds the link in the cache
        // again and does it there.
        Outcome::Reserve(..) => FastPath::Miss(site, code.to_owned(), visitor),
    }
}

/// Answers a fast-path request whose rate limit must ask Redis first (a client with
/// no redirect lease on this node), then goes on as the fast path would.
pub async fn answer_limited<B>(
    state: AppState,
    request: Request<B>,
    visitor: Visitor,
) -> Response<Body> {
    let timer = RequestTimer::start();
    if let Some(limited) =
        redirect_limited_in_cluster(&state, visitor.client, request.headers()).await
    {
        timer.log(&state, request.method(), ROUTE, limited.status());
        return limited;
    }
    // The fast path checked the code's syntax; the cache may have changed meanwhile.
    let code = request.uri().path().trim_start_matches('/').to_owned();
    let site = request_site(&state, request.headers());
    let entry = match &site {
        Ok(site) => state.cache.get(site.as_str(), &code),
        Err(_) => None,
    };
    match respond(&state, &request, &code, site, entry, visitor, timer) {
        FastPath::Answered(response) => response,
        FastPath::Miss(site, code, visitor) => {
            answer_miss(state, site, code, request, visitor).await
        }
        // `respond` neither limits nor declines (reserved paths were declined before).
        FastPath::AskCluster(_) | FastPath::NotMine => negotiate(request.headers(), unknown(&code)),
    }
}

/// Who followed a link, for the click's analytics record.
#[derive(Debug, Clone, Copy)]
pub struct Visitor {
    /// The client's address, under the trusted-proxy rule (worked out once per
    /// request: the rate limit and the analytics record both use it).
    pub client: IpAddr,
    /// Whether the request carries the QR marker ([`QR_MARKER`]).
    pub qr: bool,
}

/// The query a QR code's URL ends with, so that scans can be told apart; the redirect
/// ignores it otherwise (it is never passed on to the destination).
pub const QR_MARKER: &str = "qr";

impl Visitor {
    pub fn of<B>(state: &AppState, request: &Request<B>, peer: IpAddr) -> Self {
        Self {
            client: request_client(state, peer, request.headers()),
            qr: request.uri().query() == Some(QR_MARKER),
        }
    }
}

/// Counts a click on a link without a click limit; never waits. With analytics on the
/// queued visit carries the click: the pipeline adds it to the link's total in the
/// transaction that stores the visit, so totals and stats cannot disagree after a
/// crash. The in-memory sums take only clicks that have no visit queued (analytics
/// off, or the queue full).
pub fn record_click(state: &AppState, link: LinkId, headers: &HeaderMap, visitor: Visitor) {
    let now = now_ms();
    if !capture_visit(state, link, now, headers, visitor, false) {
        state.clicks.add(link, 1);
    }
}

/// Takes one click from a limited link's allowance in the store, durably, then hands
/// the visit to the analytics pipeline (the click is already counted: it must not
/// also go into the in-memory sums). A used-up limit is a 410 from then on.
pub async fn reserve_click(
    state: &AppState,
    link: &CachedLink,
    max_clicks: u64,
    code: &str,
    headers: &HeaderMap,
    visitor: Visitor,
) -> Result<(), ApiError> {
    let now = now_ms();
    if state
        .stores
        .clicks
        .reserve_click(link.id, max_clicks)
        .await?
    {
        capture_visit(state, link.id, now, headers, visitor, true);
        Ok(())
    } else {
        state.clicks.mark_used_up(link.id, max_clicks);
        Err(ApiError::ClickLimit(code.to_owned()))
    }
}

/// Hands a visit to the analytics pipeline, if analytics are on; never waits.
/// `counted`: the click is already in the link's total. Returns whether the visit was
/// queued.
fn capture_visit(
    state: &AppState,
    link: LinkId,
    now: i64,
    headers: &HeaderMap,
    visitor: Visitor,
    counted: bool,
) -> bool {
    let Some(analytics) = &state.analytics else {
        return false;
    };
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    analytics.capture(
        now,
        RawProfileRef {
            link_id: link.0,
            user_agent: text(header::USER_AGENT),
            referer: text(header::REFERER),
            accept_language: text(header::ACCEPT_LANGUAGE),
            client: visitor.client,
            qr: visitor.qr,
            counted,
        },
    )
}

/// The domain a redirect request is for, from its `Host` header: an unknown host is
/// a 404 saying so.
pub fn request_site(state: &AppState, headers: &HeaderMap) -> Result<Site, ApiError> {
    let host = match headers.get(header::HOST) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::UnknownHost("(not readable text)".into()))?,
        ),
    };
    state
        .hosts
        .site_for_host(host)
        .ok_or_else(|| ApiError::UnknownHost(host.unwrap_or_default().to_owned()))
}

/// Answers a fast-path miss: one store read, cached whatever it finds.
pub async fn answer_miss<B>(
    state: AppState,
    site: Site,
    code: String,
    request: Request<B>,
    visitor: Visitor,
) -> Response<Body> {
    let timer = RequestTimer::start();
    let head = request.method() == Method::HEAD;
    // The cache first: a limited link that was found there comes back to reserve.
    let response = match load_entry(&state, &site, &code).await {
        Ok(entry) => answer_reserving(&state, head, &code, entry, request.headers(), visitor).await,
        Err(error) => negotiate(request.headers(), error),
    };
    log_failure(&response, request.method());
    timer.log(&state, request.method(), ROUTE, response.status());
    response
}

/// Logs the cause of a 5xx the way the router's middleware does for other routes.
fn log_failure(response: &Response<Body>, method: &Method) {
    if let Some(super::problem::InternalCause(cause)) = response.extensions().get() {
        tracing::error!(http.method = %method, http.route = ROUTE, error = %cause, "request failed");
    }
}

/// The route template, as logged.
const ROUTE: &str = super::metrics::REDIRECT_ROUTE;

/// Follow a short link.
///
/// Redirects with the link's status (302 unless the link says 301, 307 or 308). A
/// password-protected link answers `200` with a form that posts to the same URL. `HEAD`
/// answers the same without counting a click. Errors are HTML pages for browsers and
/// problem documents when `Accept` names JSON.
#[utoipa::path(
    get,
    path = "/{code}",
    tag = "redirect",
    params(("code" = String, Path, description = "The short code")),
    responses(
        (status = 301, description = "Moved permanently (the link's redirect type)",
            headers(("Location" = String, description = "The destination"))),
        (status = 302, description = "Found: the default redirect",
            headers(("Location" = String, description = "The destination"))),
        (status = 307, description = "Temporary redirect (the link's redirect type)",
            headers(("Location" = String, description = "The destination"))),
        (status = 308, description = "Permanent redirect (the link's redirect type)",
            headers(("Location" = String, description = "The destination"))),
        (status = 200, description = "The password form of a protected link",
            content_type = "text/html", body = String),
        (status = 404, description = "No link with this code", content(
            (super::problem::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 410, description = "The link is disabled, expired, out of clicks or its target is blocked", content(
            (super::problem::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 429, description = "Over the redirect rate limit for this client", content(
            (super::problem::Problem = "application/problem+json"), (String = "text/html"))),
    )
)]
/// (Through the router: reached on cache misses and for paths that need
/// percent-decoding.) Takes the request whole rather than a `HeaderMap`
/// extractor, which would copy every header; headers are only read on errors.
pub async fn follow_link(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    code: Result<Path<String>, PathRejection>,
    request: Request<Body>,
) -> Response<Body> {
    let headers = request.headers();
    let visitor = Visitor::of(&state, &request, peer.ip());
    match redirect_limit(&state, visitor.client, headers) {
        RedirectLimit::Allowed => {}
        RedirectLimit::Refused(limited) => return limited,
        RedirectLimit::AskCluster => {
            if let Some(limited) =
                redirect_limited_in_cluster(&state, visitor.client, headers).await
            {
                return limited;
            }
        }
    }
    // Not UTF-8 after percent-decoding: cannot be a code.
    let Ok(Path(code)) = code else {
        return negotiate(headers, ApiError::NotFound("no link with this code".into()));
    };
    let site = match request_site(&state, headers) {
        Ok(site) => site,
        Err(unknown_host) => return negotiate(headers, unknown_host),
    };
    let entry = match state.cache.get(site.as_str(), &code) {
        Some(entry) => entry,
        None if !is_code_syntax(&code) => return negotiate(headers, unknown(&code)),
        None => match load(&state, &site, &code).await {
            Ok(entry) => entry,
            Err(error) => return negotiate(headers, error),
        },
    };
    answer_reserving(
        &state,
        request.method() == Method::HEAD,
        &code,
        entry,
        headers,
        visitor,
    )
    .await
}

/// What [`answer`] decided.
enum Outcome {
    Ready(Response<Body>),
    /// A click on a link with a limit: reserve it (a write), then redirect.
    Reserve(Arc<CachedLink>, u64),
}

/// The answer for a code once its cache entry is known, reserving the click of a
/// limited link first.
async fn answer_reserving(
    state: &AppState,
    head: bool,
    code: &str,
    entry: Entry,
    headers: &HeaderMap,
    visitor: Visitor,
) -> Response<Body> {
    match answer(state, head, code, entry, headers, visitor) {
        Outcome::Ready(response) => response,
        Outcome::Reserve(link, max_clicks) => {
            match reserve_click(state, &link, max_clicks, code, headers, visitor).await {
                Ok(()) => redirect_to(state, &link),
                Err(error) => negotiate(headers, error),
            }
        }
    }
}

/// The answer for a code once its cache entry is known, when it needs no write.
fn answer(
    state: &AppState,
    head: bool,
    code: &str,
    entry: Entry,
    headers: &HeaderMap,
    visitor: Visitor,
) -> Outcome {
    let link = match entry {
        Entry::Link(link) => link,
        Entry::Missing => {
            return Outcome::Ready(super::not_found_answer(state, headers, unknown(code)));
        }
    };
    if let Some(gone) = unavailable(state, &link, code) {
        return Outcome::Ready(negotiate(headers, gone));
    }
    if link.password_hash.is_some() {
        // The click is counted when the right password is posted.
        return Outcome::Ready(password_form(code, None));
    }
    if !head {
        if let Some(max_clicks) = link.max_clicks {
            return Outcome::Reserve(link, max_clicks);
        }
        record_click(state, link.id, headers, visitor);
    }
    Outcome::Ready(redirect_to(state, &link))
}

/// The redirect itself: the link's status, `Location` and `Cache-Control`.
fn redirect_to(state: &AppState, link: &CachedLink) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = link.status;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, link.location.clone());
    headers.insert(
        header::CACHE_CONTROL,
        state.settings.redirect_cache_control.clone(),
    );
    response
}

pub fn unknown(code: &str) -> ApiError {
    ApiError::NotFound(format!("no link with code `{code}`"))
}

/// The cache entry for a code in `site`, read from the store on a miss.
pub async fn load_entry(state: &AppState, site: &Site, code: &str) -> Result<Entry, ApiError> {
    match state.cache.get(site.as_str(), code) {
        Some(entry) => Ok(entry),
        None if !is_code_syntax(code) => Ok(Entry::Missing),
        None => load(state, site, code).await,
    }
}

/// Reads a code from the store (in a cluster, from the shared cache first, and a
/// record read from the store goes there) and caches what was found, or that nothing
/// was. Codes that do not exist are not kept in the shared cache: each node's own
/// negative entries absorb scans, and a shared one would have to be deleted by every
/// create.
async fn load(state: &AppState, site: &Site, code: &str) -> Result<Entry, ApiError> {
    let domain = site.as_str();
    let record = match &state.tier {
        None => state.stores.links.redirect_by_code(domain, code).await?,
        Some(tier) => {
            tier.counters.l1_misses.fetch_add(1, Ordering::Relaxed);
            match tier.l2_get(domain, code).await {
                Some(record) => Some(record),
                None => {
                    let record = state.stores.links.redirect_by_code(domain, code).await?;
                    if let Some(record) = &record {
                        // Off the answer's path: awaited, the put made a miss of both
                        // tiers cost 1.57 × the database read alone, not 1.26 ×
                        // (bench/cluster_cold.py).
                        let (tier, record) = (tier.clone(), record.clone());
                        let (domain, code) = (domain.to_owned(), code.to_owned());
                        tokio::spawn(async move { tier.l2_put(&domain, &code, &record).await });
                    }
                    record
                }
            }
        }
    };
    let entry = match record {
        Some(record) => match CachedLink::from_record(&record) {
            Some(mut cached) => {
                cached.blocked |= state.blocklist.blocks_url(&record.url);
                let cached = Arc::new(cached);
                state.cache.insert_link(domain, code, cached.clone());
                Entry::Link(cached)
            }
            None => {
                return Err(ApiError::Internal(format!(
                    "stored URL of link {code} is not a valid header value"
                )));
            }
        },
        None => {
            state.cache.insert_missing(domain, code);
            Entry::Missing
        }
    };
    Ok(entry)
}
