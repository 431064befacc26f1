//! The web dashboard under `/app`: people sign in with a password and manage their
//! links in the browser. Pages are rendered on the server (maud templates in
//! [`pages`]) and work without script; `app.js` only adds copy buttons.
//!
//! - **Sessions** ([`SignedIn`]): a random 32-byte token in the `hop_session` cookie
//!   (`HttpOnly`, `SameSite=Lax`, `Path=/app`, `Secure` when `base_url` is https);
//!   the store holds its SHA-256, the user, a CSRF token and when it was last used. A
//!   session unused for `session_idle_minutes` is ended. Sessions live in the database,
//!   so every node of a cluster sees them.
//! - **Forms** ([`refused_form`]): every state-changing form carries the session's
//!   CSRF token, and a request whose `Origin` is not this host is refused as well.
//! - **Ownership** is the API's: the signed-in user is a [`Caller`], and links are
//!   listed, created and read through the same functions as `/api/v1/links`.
//! - **Headers**: a strict Content-Security-Policy (`default-src 'self'`, no inline
//!   script or style), `nosniff`, no framing, and `no-store` on every page.

mod pages;

use super::extract::Caller;
use super::links::{create, delete, link_page, owned_link, update};
use super::problem::ApiError;
use super::protected::{MAX_ATTEMPTS, attempt};
use super::{AppState, secure_common};
use crate::domain::link::{Link, LinkRequest, PatchRequest, format_ms, now_ms};
use crate::hosts::Site;
use crate::store::Session;
use axum::Form;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::LazyLock;

/// The session cookie's name.
const COOKIE: &str = "hop_session";
/// A session's last use is written at most this often (a page view is a read).
const TOUCH_EVERY_MS: i64 = 60_000;
/// Sign-in attempts one client address may make per window, whatever the accounts.
const MAX_CLIENT_ATTEMPTS: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/app", get(home))
        .route("/app/", get(home))
        .route("/dashboard", get(home))
        .route("/app/login", get(sign_in_page).post(sign_in))
        .route("/app/setup/{token}", get(setup_page).post(set_password))
        .route("/app/logout", post(sign_out))
        .route("/app/links", get(list_links))
        .route("/app/links/new", get(new_link_page).post(create_link))
        .route("/app/links/{code}", get(link_page_view).post(edit_link))
        .route("/app/links/{code}/disabled", post(set_disabled))
        .route(
            "/app/links/{code}/delete",
            get(delete_confirmation).post(delete_link),
        )
        .route("/app/links/{code}/qr.svg", get(link_qr))
        .route("/app/links/{code}/qr.png", get(link_qr_png))
        .route("/app/keys", get(list_keys).post(create_key))
        .route("/app/keys/{prefix}/revoke", post(revoke_key))
        .route("/app/assets/{name}", get(asset))
}

/// A path of the dashboard, under `base_url`'s path.
fn app_path(state: &AppState, path: &str) -> String {
    format!("{}/app{path}", state.settings.base_path)
}

/// A `303 See Other` to a dashboard path: after a form, the browser asks for the page
/// with a `GET`, so reloading it does not post again.
fn see_other(state: &AppState, path: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(&app_path(state, path)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A rendered page with the dashboard's headers.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'",
        ),
    );
    // Pages show a user's own data: never kept by a shared cache or the back button.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_common(headers);
    // Not `no-referrer`: under it Chromium sends `Origin: null` with the pages' own
    // form posts, which the origin check must refuse. `same-origin` sends nothing to
    // other sites (links to targets also carry `rel="noreferrer"`).
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The signed-in user of a dashboard request. Without a valid session, pages answer
/// with a redirect to the sign-in page.
pub struct SignedIn {
    session: Session,
    token_hash: [u8; 32],
}

impl SignedIn {
    fn caller(&self) -> Caller {
        Caller(self.session.user.clone())
    }
}

/// The token a request's cookie carries, if it looks like one.
fn session_token(headers: &HeaderMap) -> Option<[u8; 32]> {
    let cookies = headers.get_all(header::COOKIE);
    let value = cookies
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))?;
    let bytes = decode_hex(value)?;
    bytes.try_into().ok()
}

fn token_hash(token: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let sign_in = || see_other(state, "/login");
        let Some(token) = session_token(&parts.headers) else {
            return Err(sign_in());
        };
        let hash = token_hash(&token);
        let session = match state.stores.sessions.session(&hash).await {
            Ok(Some(session)) => session,
            Ok(None) => return Err(sign_in()),
            Err(error) => return Err(ApiError::from(error).into_response()),
        };
        let now = now_ms();
        let idle_ms = state.settings.session_idle.as_millis() as i64;
        if now - session.last_seen_at > idle_ms {
            // Ending it here is tidying only: an idle session is refused either way.
            let _ = state.stores.sessions.delete_session(&hash).await;
            return Err(sign_in());
        }
        if now - session.last_seen_at > TOUCH_EVERY_MS
            && let Err(error) = state.stores.sessions.touch_session(&hash, now).await
        {
            return Err(ApiError::from(error).into_response());
        }
        Ok(SignedIn {
            session,
            token_hash: hash,
        })
    }
}

/// Whether a form post comes from a page of this host: `Origin`, which browsers send
/// with every cross-origin post and with same-origin ones too, must name the `Host`
/// the request came to. A post without `Origin` is judged by its CSRF token alone.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// Compares two tokens in time that does not depend on where they differ.
fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A refused form post: the page says why, nothing was changed.
fn forbidden(reason: &str) -> Response {
    page(StatusCode::FORBIDDEN, pages::refused(reason))
}

/// Checks a signed-in form post (same origin, the session's CSRF token): the refusal
/// page when it fails.
fn refused_form(signed_in: &SignedIn, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    if !same_origin(headers) {
        return Some(forbidden("This form was sent from another site."));
    }
    if !tokens_match(csrf, &signed_in.session.csrf_token) {
        return Some(forbidden(
            "This form has expired or was not made by hop. Reload the page and send it again.",
        ));
    }
    None
}

/// A form that carries the session's CSRF token.
pub trait CsrfField {
    fn csrf(&self) -> &str;
}

/// A signed-in user's form post that passed the checks of [`refused_form`]. Without a
/// session the answer is the sign-in redirect; a form that cannot be read is a 400
/// page; a failed check is a 403 page. Either way nothing was changed.
pub struct SignedForm<T>(SignedIn, T);

impl<T> axum::extract::FromRequest<AppState> for SignedForm<T>
where
    T: serde::de::DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed_in = SignedIn::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let request = axum::extract::Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(bad_form)?;
        if let Some(refused) = refused_form(&signed_in, &headers, form.csrf()) {
            return Err(refused);
        }
        Ok(Self(signed_in, form))
    }
}

/// A form post from a page of this host ([`same_origin`]) before anyone is signed in:
/// the sign-in and set-password forms.
pub struct OriginForm<T>(T);

impl<T> axum::extract::FromRequest<AppState> for OriginForm<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Response> {
        if !same_origin(request.headers()) {
            return Err(forbidden("This form was sent from another site."));
        }
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(bad_form)?;
        Ok(Self(form))
    }
}

/// The forms' token fields.
macro_rules! csrf_field {
    ($($form:ty),*) => {
        $(impl CsrfField for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}
csrf_field!(CsrfForm, NewLinkForm, EditForm, DisabledForm, NewKeyForm);

/// What a form gives when axum cannot parse it: a bad request page.
fn bad_form(rejection: FormRejection) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        pages::refused(&format!("The form could not be read: {rejection}")),
    )
}

/// Not signed in: the extractor's rejection sends the browser to sign in.
async fn home(State(state): State<AppState>, _: SignedIn) -> Response {
    see_other(&state, "/links")
}

async fn sign_in_page(
    State(state): State<AppState>,
    signed_in: Result<SignedIn, Response>,
) -> Response {
    // Someone already signed in goes on to their links.
    if signed_in.is_ok() {
        return see_other(&state, "/links");
    }
    page(StatusCode::OK, pages::sign_in(&state, "", None))
}

#[derive(Deserialize)]
struct SignInForm {
    name: String,
    password: String,
}

async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    OriginForm(form): OriginForm<SignInForm>,
) -> Response {
    // Guesses are limited per account (spread over many addresses) and per address
    // (one client trying many accounts; higher, since an office shares an address).
    let client = super::ratelimit::request_client(&state, peer.ip(), &headers);
    for (subject, max) in [
        (format!("sign-in:user:{}", form.name), MAX_ATTEMPTS),
        (format!("sign-in:client:{client}"), MAX_CLIENT_ATTEMPTS),
    ] {
        if let Err(wait) = attempt(&state, &subject, max).await {
            let message = format!("Too many attempts. Try again in {wait} seconds.");
            let mut response = page(
                StatusCode::TOO_MANY_REQUESTS,
                pages::sign_in(&state, &form.name, Some(&message)),
            );
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    }
    let found = match state.stores.sessions.user_for_sign_in(&form.name).await {
        Ok(found) => found,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let user = match found {
        Some((user, Some(phc))) => {
            let password = form.password.clone();
            let verified = tokio::task::spawn_blocking(move || {
                crate::domain::password::verify(&password, &phc)
            })
            .await
            .unwrap_or(false);
            verified.then_some(user)
        }
        // No such user, or one without a password: the same answer, after the same
        // kind of wait, so that names cannot be told apart.
        _ => {
            let password = form.password.clone();
            let _ = tokio::task::spawn_blocking(move || {
                crate::domain::password::verify(&password, &DUMMY_PHC)
            })
            .await;
            None
        }
    };
    let Some(user) = user else {
        return page(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(&state, &form.name, Some("Wrong name or password.")),
        );
    };
    start_session(&state, &user).await
}

/// How long a password link may be used.
const PASSWORD_LINK_LIFETIME_MS: i64 = 24 * 3_600_000;

/// Makes a one-time link (valid 24 hours) where `user` sets their password; returns
/// its URL under `base_url`.
pub async fn new_password_link(
    stores: &crate::store::Stores,
    base_url: &str,
    user: crate::domain::link::UserId,
) -> Result<String, crate::store::StoreError> {
    let token: [u8; 32] = rand::random();
    stores
        .sessions
        .insert_password_link(
            token_hash(&token),
            user,
            now_ms() + PASSWORD_LINK_LIFETIME_MS,
        )
        .await?;
    Ok(format!("{base_url}/app/setup/{}", encode_hex(&token)))
}

/// Signs `user` in: a new session, and the answer that sets its cookie and goes on to
/// the links.
async fn start_session(state: &AppState, user: &crate::store::User) -> Response {
    let token: [u8; 32] = rand::random();
    let csrf = encode_hex(&rand::random::<[u8; 16]>());
    if let Err(error) = state
        .stores
        .sessions
        .insert_session(token_hash(&token), user.id, &csrf, now_ms())
        .await
    {
        return ApiError::from(error).into_response();
    }
    tracing::info!(user.name = %user.name, "signed in to the dashboard");
    let mut response = see_other(state, "/links");
    let secure = if state.settings.base_scheme == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path={}; HttpOnly; SameSite=Lax{secure}",
        encode_hex(&token),
        app_path(state, "")
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The page for a password link that cannot be used.
fn link_gone() -> Response {
    page(
        StatusCode::NOT_FOUND,
        pages::refused(
            "This link is not valid: it was used already, it expired (links last 24 hours), \
             or it was mistyped. Ask an admin for a new one (hop users passwd NAME --link).",
        ),
    )
}

/// The hash of a password link's token, if the text can be one.
fn link_token_hash(token: &str) -> Option<[u8; 32]> {
    let token: [u8; 32] = decode_hex(token)?.try_into().ok()?;
    Some(token_hash(&token))
}

/// The user a password link is for, or the page that says it cannot be used.
async fn password_link_user(state: &AppState, token: &str) -> Result<crate::store::User, Response> {
    let Some(hash) = link_token_hash(token) else {
        return Err(link_gone());
    };
    match state.stores.sessions.password_link(&hash, now_ms()).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(link_gone()),
        Err(error) => Err(ApiError::from(error).into_response()),
    }
}

async fn setup_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match password_link_user(&state, &token).await {
        Ok(user) => page(
            StatusCode::OK,
            pages::set_password(&state, &user, &token, None),
        ),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct SetPasswordForm {
    password: String,
    again: String,
}

async fn set_password(
    State(state): State<AppState>,
    Path(token): Path<String>,
    // The token in the address is the secret; the origin check keeps another site's
    // page from posting a password of its choosing with a link it learnt.
    OriginForm(form): OriginForm<SetPasswordForm>,
) -> Response {
    let user = match password_link_user(&state, &token).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let problem = if form.password != form.again {
        Some("The two passwords differ.".to_owned())
    } else if !crate::domain::password::is_valid_for_account(&form.password) {
        Some(format!(
            "A password must be {} to {} characters, without control characters.",
            crate::domain::password::MIN_ACCOUNT_CHARS,
            crate::domain::password::MAX_CHARS
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        return page(
            StatusCode::BAD_REQUEST,
            pages::set_password(&state, &user, &token, Some(&problem)),
        );
    }
    let password = form.password;
    let Ok(hash) =
        tokio::task::spawn_blocking(move || crate::domain::password::hash(&password)).await
    else {
        return ApiError::Internal("password hashing failed".into()).into_response();
    };
    let Some(token_hash) = link_token_hash(&token) else {
        return link_gone();
    };
    match state
        .stores
        .sessions
        .use_password_link(&token_hash, hash, now_ms())
        .await
    {
        Ok(Some(user)) => start_session(&state, &user).await,
        // Used up by a request that came in between.
        Ok(None) => link_gone(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// A hash of a random password, verified against when there is no user to check, so
/// that a wrong name costs what a wrong password does.
static DUMMY_PHC: LazyLock<String> =
    LazyLock::new(|| crate::domain::password::hash(&encode_hex(&rand::random::<[u8; 16]>())));

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// Not signed in (any more): the rejection sends the browser to sign in, as after.
async fn sign_out(
    State(state): State<AppState>,
    SignedForm(signed_in, _): SignedForm<CsrfForm>,
) -> Response {
    if let Err(error) = state
        .stores
        .sessions
        .delete_session(&signed_in.token_hash)
        .await
    {
        return ApiError::from(error).into_response();
    }
    let mut response = see_other(&state, "/login");
    let cookie = format!(
        "{COOKIE}=; Path={}; HttpOnly; SameSite=Lax; Max-Age=0",
        app_path(&state, "")
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The links page's query: the API's listing parameters that the page offers.
#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    cursor: String,
}

async fn list_links(
    State(state): State<AppState>,
    signed_in: SignedIn,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return see_other(&state, "/links");
    };
    // Empty fields of the search form mean "not set".
    let pairs: Vec<(String, String)> = [
        ("q", &query.q),
        ("tag", &query.tag),
        ("sort", &query.sort),
        ("cursor", &query.cursor),
    ]
    .into_iter()
    .filter(|(_, value)| !value.trim().is_empty())
    .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
    .collect();
    let caller = signed_in.caller();
    let (listing, error) = match link_page(&state, &caller, pairs).await {
        Ok(listing) => (Some(listing), None),
        Err(ApiError::InvalidParameter { detail, .. }) => (None, Some(detail)),
        Err(error) => return error.into_response(),
    };
    let view = pages::LinksView {
        q: &query.q,
        tag: &query.tag,
        sort: &query.sort,
        listing: listing.as_ref(),
        error: error.as_deref(),
    };
    page(
        StatusCode::OK,
        pages::links(&state, &signed_in.session, &view),
    )
}

async fn new_link_page(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    page(
        StatusCode::OK,
        pages::new_link(&state, &signed_in.session, &NewLinkForm::default(), None),
    )
}

/// The create form, as typed. Empty optional fields mean "not set".
#[derive(Deserialize, Default)]
pub struct NewLinkForm {
    csrf: String,
    pub url: String,
    #[serde(default)]
    pub alias: String,
    #[serde(default)]
    pub title: String,
    /// Comma-separated.
    #[serde(default)]
    pub tags: String,
}

impl NewLinkForm {
    fn request(&self) -> LinkRequest {
        let optional = |text: &str| {
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        };
        let tags = split_tags(&self.tags);
        LinkRequest {
            url: self.url.trim().to_owned(),
            alias: optional(&self.alias),
            title: optional(&self.title),
            expires_at: None,
            max_clicks: None,
            redirect_type: None,
            tags: (!tags.is_empty()).then_some(tags),
            password: None,
        }
    }
}

async fn create_link(
    State(state): State<AppState>,
    SignedForm(signed_in, form): SignedForm<NewLinkForm>,
) -> Response {
    let owner = Some(signed_in.caller().user());
    match create(&state, owner, Site::Default, form.request()).await {
        Ok(link) => {
            tracing::debug!(link.code = %link.code, "link created in the dashboard");
            page(
                StatusCode::CREATED,
                pages::created(&state, &signed_in.session, &link),
            )
        }
        // What the person typed is wrong: the form again, filled in, with the reason.
        Err(error) if error.kind().0.is_client_error() => page(
            error.kind().0,
            pages::new_link(
                &state,
                &signed_in.session,
                &form,
                Some(&error.public_detail()),
            ),
        ),
        Err(error) => error.into_response(),
    }
}

/// The signed-in user's link `code` (default domain), or the answer to give instead:
/// the sign-in redirect, or a 404 page for a code that is not theirs.
async fn own_link(state: &AppState, signed_in: &SignedIn, code: &str) -> Result<Link, Response> {
    owned_link(state, &signed_in.caller(), &Site::Default, code)
        .await
        .map_err(|error| link_error(code, error))
}

/// A failed link lookup or change as a page: a code that is not the user's (or no
/// code at all) is a 404 page; anything else is the error's own answer.
fn link_error(code: &str, error: ApiError) -> Response {
    match error {
        ApiError::NotFound(_) => page(
            StatusCode::NOT_FOUND,
            pages::refused(&format!("You have no link with the code {code}.")),
        ),
        error => error.into_response(),
    }
}

/// `?download`: the QR code as an attachment instead of shown in the page.
#[derive(Deserialize)]
struct QrQuery {
    download: Option<String>,
    size: Option<u32>,
}

async fn link_qr(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
    query: Result<Query<QrQuery>, QueryRejection>,
) -> Response {
    qr_answer(&state, &signed_in, &code, query, super::qr::Format::Svg).await
}

async fn link_qr_png(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
    query: Result<Query<QrQuery>, QueryRejection>,
) -> Response {
    qr_answer(&state, &signed_in, &code, query, super::qr::Format::Png).await
}

async fn qr_answer(
    state: &AppState,
    signed_in: &SignedIn,
    code: &str,
    query: Result<Query<QrQuery>, QueryRejection>,
    format: super::qr::Format,
) -> Response {
    let link = match own_link(state, signed_in, code).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let Ok(Query(query)) = query else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let size = query.size.unwrap_or(256);
    if !(super::qr::MIN_SIZE..=super::qr::MAX_SIZE).contains(&size) {
        return page(
            StatusCode::BAD_REQUEST,
            pages::refused(&format!(
                "A QR code is {} to {} pixels on a side.",
                super::qr::MIN_SIZE,
                super::qr::MAX_SIZE
            )),
        );
    }
    let extension = match format {
        super::qr::Format::Svg => "svg",
        super::qr::Format::Png => "png",
    };
    match super::qr::image(state, &link, format, size) {
        Ok(mut response) => {
            if query.download.is_some()
                && let Ok(value) = HeaderValue::from_str(&format!(
                    "attachment; filename=\"{}-qr.{extension}\"",
                    link.code
                ))
            {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => error.into_response(),
    }
}

/// `?saved`: the page after a change says so.
#[derive(Deserialize)]
struct DetailQuery {
    saved: Option<String>,
}

async fn link_page_view(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
    query: Result<Query<DetailQuery>, QueryRejection>,
) -> Response {
    let link = match own_link(&state, &signed_in, &code).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let saved = query.is_ok_and(|Query(q)| q.saved.is_some());
    let form = EditForm::of(&link);
    let notice = saved.then_some("Saved.");
    page(
        StatusCode::OK,
        pages::detail(&state, &signed_in.session, &link, &form, notice, None),
    )
}

/// The edit form, as typed. Only the fields that differ from the link are sent as
/// a change, so an unchanged past expiry or a limit already reached can stay.
#[derive(Deserialize, Default)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    pub url: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub tags: String,
    /// RFC 3339, empty for none.
    #[serde(default)]
    pub expires_at: String,
    #[serde(default)]
    pub max_clicks: String,
    #[serde(default)]
    pub redirect_type: String,
}

impl EditForm {
    /// The form filled in with the link as it is.
    fn of(link: &Link) -> Self {
        Self {
            csrf: String::new(),
            url: link.url.clone(),
            title: link.title.clone().unwrap_or_default(),
            tags: link.tags.join(", "),
            expires_at: link.expires_at.map(format_ms).unwrap_or_default(),
            max_clicks: link.max_clicks.map(|n| n.to_string()).unwrap_or_default(),
            redirect_type: link.redirect.code().to_string(),
        }
    }

    /// The change this form asks for, against the link as it is now.
    fn request(&self, link: &Link) -> Result<PatchRequest, String> {
        let now = Self::of(link);
        let text = |typed: &str| {
            let typed = typed.trim();
            (!typed.is_empty()).then(|| typed.to_owned())
        };
        let changed = |typed: &str, current: &str| typed.trim() != current;
        let max_clicks = match self.max_clicks.trim() {
            "" => None,
            typed => Some(
                typed
                    .parse::<i64>()
                    .map_err(|_| format!("Max clicks must be a whole number (got {typed})."))?,
            ),
        };
        let redirect_type = self
            .redirect_type
            .trim()
            .parse::<u16>()
            .map_err(|_| "Choose a redirect type.".to_owned())?;
        let tags = split_tags(&self.tags);
        Ok(PatchRequest {
            url: changed(&self.url, &now.url).then(|| self.url.trim().to_owned()),
            title: changed(&self.title, &now.title).then(|| text(&self.title)),
            expires_at: changed(&self.expires_at, &now.expires_at).then(|| text(&self.expires_at)),
            max_clicks: changed(&self.max_clicks, &now.max_clicks).then_some(max_clicks),
            redirect_type: (redirect_type != link.redirect.code()).then_some(redirect_type),
            disabled: None,
            disabled_reason: None,
            tags: (split_tags(&now.tags) != tags).then_some(tags),
            password: None,
        })
    }
}

/// Tags as typed: separated by commas, blanks dropped.
fn split_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The answer to a failed change: the detail page with the form as typed and why,
/// for what the person typed wrong; the error itself for anything else.
fn change_refused(
    state: &AppState,
    signed_in: &SignedIn,
    link: &Link,
    form: &EditForm,
    error: ApiError,
) -> Response {
    let status = error.kind().0;
    if !status.is_client_error() {
        return error.into_response();
    }
    page(
        status,
        pages::detail(
            state,
            &signed_in.session,
            link,
            form,
            None,
            Some(&error.public_detail()),
        ),
    )
}

async fn edit_link(
    State(state): State<AppState>,
    Path(code): Path<String>,
    SignedForm(signed_in, form): SignedForm<EditForm>,
) -> Response {
    let link = match own_link(&state, &signed_in, &code).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let request = match form.request(&link) {
        Ok(request) => request,
        Err(problem) => {
            return page(
                StatusCode::BAD_REQUEST,
                pages::detail(
                    &state,
                    &signed_in.session,
                    &link,
                    &form,
                    None,
                    Some(&problem),
                ),
            );
        }
    };
    let caller = signed_in.caller();
    match update(&state, &caller, &Site::Default, &code, request).await {
        Ok(link) => see_other(&state, &format!("/links/{}?saved", link.code)),
        Err(error) => change_refused(&state, &signed_in, &link, &form, error),
    }
}

#[derive(Deserialize)]
struct DisabledForm {
    csrf: String,
    disabled: bool,
}

async fn set_disabled(
    State(state): State<AppState>,
    Path(code): Path<String>,
    SignedForm(signed_in, form): SignedForm<DisabledForm>,
) -> Response {
    let link = match own_link(&state, &signed_in, &code).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let request = PatchRequest {
        disabled: Some(form.disabled),
        ..PatchRequest::default()
    };
    match update(&state, &signed_in.caller(), &Site::Default, &code, request).await {
        Ok(link) => see_other(&state, &format!("/links/{}?saved", link.code)),
        Err(error) => {
            let form = EditForm::of(&link);
            change_refused(&state, &signed_in, &link, &form, error)
        }
    }
}

async fn delete_confirmation(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
) -> Response {
    match own_link(&state, &signed_in, &code).await {
        Ok(link) => page(
            StatusCode::OK,
            pages::confirm_delete(&state, &signed_in.session, &link),
        ),
        Err(response) => response,
    }
}

async fn delete_link(
    State(state): State<AppState>,
    Path(code): Path<String>,
    SignedForm(signed_in, _): SignedForm<CsrfForm>,
) -> Response {
    // `delete` looks the link up with the user's ownership rules itself.
    match delete(&state, &signed_in.caller(), &Site::Default, &code).await {
        Ok(()) => see_other(&state, "/links"),
        Err(error) => link_error(&code, error),
    }
}

async fn list_keys(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    keys_page(&state, &signed_in, StatusCode::OK, None).await
}

/// The keys page: the user's own keys (an admin's too: other users' keys are theirs
/// to manage), with `error` above the form.
async fn keys_page(
    state: &AppState,
    signed_in: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    match state
        .stores
        .keys
        .list_keys(Some(signed_in.session.user.id))
        .await
    {
        Ok(keys) => page(
            status,
            pages::keys(state, &signed_in.session, &keys, now_ms(), error),
        ),
        Err(error) => ApiError::from(error).into_response(),
    }
}

#[derive(Deserialize)]
struct NewKeyForm {
    csrf: String,
    name: String,
}

async fn create_key(
    State(state): State<AppState>,
    SignedForm(signed_in, form): SignedForm<NewKeyForm>,
) -> Response {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return keys_page(
            &state,
            &signed_in,
            StatusCode::BAD_REQUEST,
            Some("A key's name is 1 to 64 characters, without control characters."),
        )
        .await;
    }
    match crate::app::issue_key(&state.stores, &signed_in.session.user, name, None).await {
        Ok((key, secret)) => {
            tracing::info!(key.prefix = %key.prefix, "API key created in the dashboard");
            page(
                StatusCode::CREATED,
                pages::key_created(&state, &signed_in.session, &key, &secret),
            )
        }
        Err(error) => ApiError::Internal(format!("{error:#}")).into_response(),
    }
}

async fn revoke_key(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(prefix): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return bad_form(rejection),
    };
    if let Some(refused) = refused_form(&signed_in, &headers, &form.csrf) {
        return refused;
    }
    // Only a key of the user's own: another's prefix is as unknown as a made-up one.
    let owned = match state
        .stores
        .keys
        .list_keys(Some(signed_in.session.user.id))
        .await
    {
        Ok(keys) => keys.iter().any(|key| key.prefix == prefix && !key.revoked),
        Err(error) => return ApiError::from(error).into_response(),
    };
    if !owned {
        return page(
            StatusCode::NOT_FOUND,
            pages::refused(&format!("You have no usable key {prefix}.")),
        );
    }
    if let Err(error) = state.stores.keys.revoke_key(&prefix).await {
        return ApiError::from(error).into_response();
    }
    // This node stops trusting it at once, the others when told (or within a second).
    state.keys.clear();
    state
        .announce(vec![crate::tier::message::Change::Keys])
        .await;
    tracing::info!(key.prefix = %prefix, "API key revoked in the dashboard");
    see_other(&state, "/keys")
}

/// The dashboard's stylesheet and script, compiled into the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
];

async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Pages name assets with the binary's version (`?v=`): a new hop, a new URL.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    secure_common(headers);
    response
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let token = [7u8; 32];
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {COOKIE}={}; b=2", encode_hex(&token))).unwrap(),
        );
        assert_eq!(session_token(&headers), Some(token));
        headers.insert(header::COOKIE, HeaderValue::from_static("hop_session=zz"));
        assert_eq!(session_token(&headers), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("hop_session=0a0b"));
        assert_eq!(session_token(&headers), None, "too short");
    }

    #[test]
    fn origins_must_name_the_host() {
        let headers = |origin: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("hop.example:8080"));
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            }
            headers
        };
        assert!(same_origin(&headers(None)));
        assert!(same_origin(&headers(Some("http://hop.example:8080"))));
        assert!(same_origin(&headers(Some("https://HOP.example:8080"))));
        assert!(!same_origin(&headers(Some("https://evil.example"))));
        assert!(!same_origin(&headers(Some("null"))));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_match("abcd", "abcd"));
        assert!(!tokens_match("abcd", "abce"));
        assert!(!tokens_match("abcd", "abc"));
        assert!(!tokens_match("", "a"));
    }
}
