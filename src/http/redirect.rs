//! `GET /{code}` and `HEAD /{code}`: the hot path.
//!
//! cache hit → check expiry and click limit → hand the click to the queue → redirect.
//! A miss reads the store once and caches the answer, including "no such code". No
//! step waits on a write. `HEAD` answers exactly like `GET` but is not a click.

use super::problem::ApiError;
use super::{AppState, RequestTimer, negotiate};
use crate::cache::{CachedLink, Entry};
use crate::domain::code::is_code_syntax;
use crate::domain::link::now_ms;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Request, Response, header};
use axum::routing::get;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    // `get` also answers HEAD (without a body).
    Router::new().route("/{code}", get(follow_link))
}

/// The fast path, called for every request before routing: answers `GET`/`HEAD
/// /{code}` when the code is in the cache (as a link or as unknown) and returns
/// `None` for anything else, which then goes through the router.
pub fn answer_cached<B>(state: &AppState, request: &Request<B>) -> Option<Response<Body>> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    // Code syntax excludes `%`, so the raw path needs no percent-decoding here.
    let code = request.uri().path().strip_prefix('/')?;
    if !is_code_syntax(code) {
        return None;
    }
    let entry = state.cache.get(code)?;
    let timer = RequestTimer::start();
    let response = answer(
        state,
        *method == Method::HEAD,
        code,
        entry,
        request.headers(),
    );
    timer.log(method, ROUTE, response.status());
    Some(response)
}

/// The route template, as logged.
const ROUTE: &str = "/{code}";

/// `GET|HEAD /{code}` through the router: reached on cache misses (and for paths that
/// need percent-decoding). Takes the request whole rather than a `HeaderMap`
/// extractor, which would copy every header; headers are only read on errors.
pub async fn follow_link(
    State(state): State<AppState>,
    code: Result<Path<String>, PathRejection>,
    request: Request<Body>,
) -> Response<Body> {
    let headers = request.headers();
    // Not UTF-8 after percent-decoding: cannot be a code.
    let Ok(Path(code)) = code else {
        return negotiate(headers, ApiError::NotFound("no link with this code".into()));
    };
    let entry = match state.cache.get(&code) {
        Some(entry) => entry,
        None if !is_code_syntax(&code) => return negotiate(headers, unknown(&code)),
        None => match load(&state, &code).await {
            Ok(entry) => entry,
            Err(error) => return negotiate(headers, error),
        },
    };
    answer(
        &state,
        request.method() == Method::HEAD,
        &code,
        entry,
        headers,
    )
}

/// The answer for a code once its cache entry is known.
fn answer(
    state: &AppState,
    head: bool,
    code: &str,
    entry: Entry,
    headers: &HeaderMap,
) -> Response<Body> {
    let link = match entry {
        Entry::Link(link) => link,
        Entry::Missing => return negotiate(headers, unknown(code)),
    };
    if link.expires_at.is_some_and(|at| at <= now_ms()) {
        return negotiate(headers, ApiError::Expired(code.to_owned()));
    }
    if head {
        if state.clicks.limit_reached(&link) {
            return negotiate(headers, ApiError::ClickLimit(code.to_owned()));
        }
    } else {
        if !state.clicks.try_take(&link) {
            return negotiate(headers, ApiError::ClickLimit(code.to_owned()));
        }
        state.clicks.record(link.id);
    }
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

fn unknown(code: &str) -> ApiError {
    ApiError::NotFound(format!("no link with code `{code}`"))
}

/// Reads a code from the store and caches what was found, or that nothing was.
async fn load(state: &AppState, code: &str) -> Result<Entry, ApiError> {
    let entry = match state.stores.links.redirect_by_code(code).await? {
        Some(record) => match CachedLink::from_record(&record) {
            Some(cached) => {
                let cached = Arc::new(cached);
                state.cache.insert_link(code, cached.clone());
                Entry::Link(cached)
            }
            None => {
                return Err(ApiError::Internal(format!(
                    "stored URL of link {code} is not a valid header value"
                )));
            }
        },
        None => {
            state.cache.insert_missing(code);
            Entry::Missing
        }
    };
    Ok(entry)
}
