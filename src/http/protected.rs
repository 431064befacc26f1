//! Password-protected links: `GET /{code}` shows a small form instead of redirecting,
//! the form posts `password` to the same URL, and the right password redirects (a
//! click is counted then). Attempts are limited per link and client address, so a
//! password cannot be guessed by brute force.

use super::problem::ApiError;
use super::redirect::{Visitor, load_entry, request_site, unknown};
use super::{AppState, escape_html, negotiate};
use crate::cache::{CachedLink, Entry};
use crate::domain::link::now_ms;
use axum::Form;
use axum::body::Body;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::response::{Html, IntoResponse};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts one client may make on one link per window.
pub const MAX_ATTEMPTS: u32 = 10;
/// The window attempts are counted in.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(300);
/// Entries kept before expired ones are swept (bounds the map under a scan).
const SWEEP_ABOVE: usize = 10_000;

/// Counts password attempts per subject in fixed windows: a link and a client address
/// for link passwords (`"{link id}:{address}"`), an account or an address for the
/// dashboard's sign-in (`"sign-in:…"`).
#[derive(Default)]
pub struct AttemptLimiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl AttemptLimiter {
    /// Counts an attempt, of at most `max` per window; `Err(seconds)` when the client
    /// must wait that long.
    pub fn attempt(&self, subject: &str, max: u32) -> Result<(), u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("attempt limiter poisoned");
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (start, _)| now.duration_since(*start) < ATTEMPT_WINDOW);
        }
        if !windows.contains_key(subject) {
            windows.insert(subject.to_owned(), (now, 0));
        }
        let (start, count) = windows.get_mut(subject).expect("inserted above");
        if now.duration_since(*start) >= ATTEMPT_WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= max {
            let left = ATTEMPT_WINDOW.saturating_sub(now.duration_since(*start));
            return Err(left.as_secs().max(1));
        }
        *count += 1;
        Ok(())
    }
}

/// Counts a password attempt on `subject`, of at most `max` per [`ATTEMPT_WINDOW`];
/// `Err(seconds)` when it must wait that long. In a cluster the attempts are counted in
/// Redis, so that spreading guesses over the nodes gains nothing; without Redis (or
/// with it unavailable), in this process.
pub async fn attempt(state: &AppState, subject: &str, max: u32) -> Result<(), u64> {
    let in_cluster = match &state.tier {
        Some(tier) => tier.attempt(subject, max, ATTEMPT_WINDOW).await,
        None => None,
    };
    in_cluster.unwrap_or_else(|| state.attempts.attempt(subject, max))
}

/// The form a protected link shows (status 200), or shows again after a wrong
/// password (status 401, with the error).
pub fn password_form(code: &str, error: Option<&str>) -> Response<Body> {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let error = error
        .map(|e| {
            format!(
                "<p role=\"alert\" style=\"color:#b00\">{}</p>",
                escape_html(e)
            )
        })
        .unwrap_or_default();
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>Protected link</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;\
         padding:0 1rem;color:#222}}input,button{{font:inherit;padding:.4rem;margin:.3rem 0}}\
         </style></head><body><h1>This link is protected</h1>\
         <p>Enter the password for <code>/{}</code> to continue.</p>{error}\
         <form method=\"post\"><label>Password<br><input type=\"password\" name=\"password\" \
         autocomplete=\"current-password\" required autofocus></label><br>\
         <button type=\"submit\">Continue</button></form></body></html>",
        escape_html(code)
    );
    let mut response = (status, Html(page)).into_response();
    super::secure_page(response.headers_mut());
    // A form with an error must not be cached, nor a form that leads to a redirect.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordForm {
    password: String,
}

/// Unlock a password-protected link.
///
/// The form `GET /{code}` shows posts here. The right password redirects (`303`, and
/// the click counts); a wrong one shows the form again with an error (`401`).
/// Attempts are limited per link and client.
#[utoipa::path(
    post,
    path = "/{code}",
    tag = "redirect",
    params(("code" = String, Path, description = "The short code")),
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "The right password: go to the destination",
            headers(("Location" = String, description = "The destination"))),
        (status = 401, description = "A wrong or missing password: the form again, with an error",
            content_type = "text/html", body = String),
        (status = 404, description = "No link with this code", content(
            (super::problem::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 405, description = "The link is not password-protected", content(
            (super::problem::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 410, description = "The link is disabled, expired, out of clicks or its target is blocked", content(
            (super::problem::Problem = "application/problem+json"), (String = "text/html"))),
        (status = 429, description = "Too many attempts on this link from this client", content(
            (super::problem::Problem = "application/problem+json"), (String = "text/html"))),
    )
)]
pub async fn submit_password(
    State(state): State<AppState>,
    code: Result<Path<String>, PathRejection>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response<Body> {
    let Ok(Path(code)) = code else {
        return negotiate(
            &headers,
            ApiError::NotFound("no link with this code".into()),
        );
    };
    let site = match request_site(&state, &headers) {
        Ok(site) => site,
        Err(unknown_host) => return negotiate(&headers, unknown_host),
    };
    let link = match load_entry(&state, &site, &code).await {
        Ok(Entry::Link(link)) => link,
        Ok(Entry::Missing) => return negotiate(&headers, unknown(&code)),
        Err(error) => return negotiate(&headers, error),
    };
    let Some(phc) = link.password_hash.clone() else {
        return negotiate(&headers, ApiError::MethodNotAllowed);
    };
    if let Some(gone) = unavailable(&state, &link, &code) {
        return negotiate(&headers, gone);
    }
    // The same client address as every other limit: behind a trusted proxy the peer is
    // the proxy, and limiting it would let one guesser lock everyone out of the link.
    let client = super::ratelimit::request_client(&state, peer.ip(), &headers);
    if let Err(wait) = attempt(&state, &format!("{}:{client}", link.id.0), MAX_ATTEMPTS).await {
        let mut response = negotiate(&headers, ApiError::TooManyAttempts(wait));
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let Ok(Form(form)) = form else {
        return password_form(&code, Some("Enter the password."));
    };
    let matches =
        tokio::task::spawn_blocking(move || crate::domain::password::verify(&form.password, &phc))
            .await
            .unwrap_or(false);
    if !matches {
        return password_form(&code, Some("That password is not right."));
    }
    let visitor = Visitor {
        client,
        qr: uri.query() == Some(super::redirect::QR_MARKER),
    };
    match link.max_clicks {
        Some(max_clicks) => {
            if let Err(error) =
                super::redirect::reserve_click(&state, &link, max_clicks, &code, &headers, visitor)
                    .await
            {
                return negotiate(&headers, error);
            }
        }
        None => super::redirect::record_click(&state, link.id, &headers, visitor),
    }
    // 303: the browser follows with a GET whatever the link's own redirect type.
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(header::LOCATION, link.location.clone());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why a link cannot be followed now (disabled, expired, out of clicks), if so.
pub fn unavailable(state: &AppState, link: &CachedLink, code: &str) -> Option<ApiError> {
    if link.blocked {
        Some(ApiError::Blocked(code.to_owned()))
    } else if link.disabled {
        Some(ApiError::Disabled(code.to_owned()))
    } else if link.expires_at.is_some_and(|at| at <= now_ms()) {
        Some(ApiError::Expired(code.to_owned()))
    } else if state.clicks.limit_reached(link) {
        Some(ApiError::ClickLimit(code.to_owned()))
    } else {
        None
    }
}
