//! The links API: create (`/shorten` and `/links`), read and delete.
//!
//! Create path: validate → allocate a code (or take the alias) → durable insert
//! (group-committed by the store) → warm the redirect cache → 201.

use super::extract::{
    AppJson, Caller, CodePath, Creator, DomainQuery, JsonBody, StrictQuery, parse_json_value,
    query_pairs,
};
use super::problem::ApiError;
use super::{AppState, idempotency};
use crate::cache::CachedLink;
use crate::domain::link::{
    Link, LinkDraft, LinkId, LinkRequest, PatchRequest, UnixMillis, UserId, format_ms, now_ms,
};
use crate::hosts::Site;
use crate::store::{LinkQuery, LinkSort, ListPosition, NewLink, StoreError};
use crate::tier::message::Change;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::openapi::{
    BadRequest, Conflict, Forbidden, IdempotencyKeyReused, NotFound, PayloadTooLarge,
};
use super::problem::Problem;

/// The `{code}` path parameter of the link routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CodeParam {
    /// The link's code.
    #[allow(dead_code)]
    code: String,
}

/// The `domain` query parameter of the routes that address one link.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DomainParam {
    /// The link's domain, when it is not the default (the base URL's host).
    #[param(nullable = false)]
    #[allow(dead_code)]
    domain: Option<String>,
}

/// The `Idempotency-Key` header of the create routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// A unique key per intended create (1 to 255 visible ASCII characters, such as a
    /// UUID): a retry with the same key and body returns the first answer.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

/// The redirect statuses a link can answer with (documentation only: the value is a
/// plain `u16` in the bodies).
pub struct RedirectStatus;

impl utoipa::PartialSchema for RedirectStatus {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .enum_values(Some([301, 302, 307, 308]))
            .description(Some("The redirect status: 301, 302, 307 or 308."))
            .into()
    }
}

impl ToSchema for RedirectStatus {}

/// The orders a listing can take (`-` for descending).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum ListOrder {
    #[schema(rename = "-createdAt")]
    NewestFirst,
    #[schema(rename = "createdAt")]
    OldestFirst,
    #[schema(rename = "-clicks")]
    MostClicked,
    #[schema(rename = "clicks")]
    LeastClicked,
}

pub fn router(state: &AppState) -> Router<AppState> {
    // Every POST that creates honours Idempotency-Key.
    let idempotent = middleware::from_fn_with_state(state.clone(), idempotency::idempotent);
    Router::new()
        .route("/api/v1/shorten", post(shorten).layer(idempotent.clone()))
        .route(
            "/api/v1/links",
            post(create_link).layer(idempotent.clone()).get(list_links),
        )
        .route("/api/v1/tags", get(list_tags))
        .route(
            "/api/v1/links/bulk",
            post(create_links_bulk).layer(idempotent),
        )
        .route(
            "/api/v1/links/{code}",
            get(get_link).patch(update_link).delete(delete_link),
        )
}

/// Body of a create request. Unknown fields are refused so that a typo such as
/// `expires_at` is an error instead of a silently ignored setting. An optional field
/// sent as `null` is the same as leaving it out.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateLinkBody {
    /// The destination: an absolute http(s) URL.
    #[schema(example = "https://example.com/some/long/path")]
    pub url: String,
    /// A custom code instead of a generated one (letters, digits, `-` and `_`; not one
    /// of hop's own paths such as `api` or `docs`).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub alias: Option<String>,
    /// A label for people, up to 512 characters without control characters.
    #[schema(max_length = 512)]
    pub title: Option<String>,
    /// When the link stops redirecting (RFC 3339, in the future).
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// How many redirects the link serves before it stops.
    #[schema(minimum = 1)]
    pub max_clicks: Option<i64>,
    /// The redirect status: 301, 302 (the default), 307 or 308.
    #[schema(value_type = Option<RedirectStatus>)]
    pub redirect_type: Option<u16>,
    /// Up to 20 labels for filtering: 1 to 50 letters, digits, spaces, `-`, `_` or `.`,
    /// stored lower-cased.
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
    /// Protects the link: visitors must enter it before being redirected (4 to 128
    /// characters).
    #[schema(min_length = 4, max_length = 128)]
    pub password: Option<String>,
    /// The domain the link lives in: the default host (the default) or a registered
    /// domain. Codes are unique per domain.
    pub domain: Option<String>,
}

impl JsonBody for CreateLinkBody {}

impl From<CreateLinkBody> for LinkRequest {
    fn from(body: CreateLinkBody) -> Self {
        Self {
            url: body.url,
            alias: body.alias,
            title: body.title,
            expires_at: body.expires_at,
            max_clicks: body.max_clicks,
            redirect_type: body.redirect_type,
            tags: body.tags,
            password: body.password,
        }
    }
}

/// A link as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkBody {
    pub code: String,
    /// The host the link is served on (the base URL's host for the default domain).
    pub domain: String,
    #[schema(format = "uri")]
    pub short_url: String,
    pub url: String,
    pub title: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    pub max_clicks: Option<u64>,
    #[schema(value_type = RedirectStatus)]
    pub redirect_type: u16,
    /// Redirects served so far (counted within about a second).
    pub clicks: u64,
    pub disabled: bool,
    /// Why an admin disabled the link, shown to its owner and admins (never to
    /// visitors, who get a neutral `410`). Only an admin can enable such a link.
    pub disabled_reason: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub tags: Vec<String>,
    /// Whether visitors must enter a password (the password itself is never shown).
    pub password_protected: bool,
}

impl LinkBody {
    fn new(link: Link, state: &AppState) -> Self {
        Self {
            short_url: state.settings.short_url(&link.domain, &link.code),
            domain: state.hosts.display(&link.domain).to_owned(),
            code: link.code,
            url: link.url,
            title: link.title,
            created_at: format_ms(link.created_at),
            expires_at: link.expires_at.map(format_ms),
            max_clicks: link.max_clicks,
            redirect_type: link.redirect.code(),
            clicks: link.clicks,
            disabled: link.disabled,
            disabled_reason: link.disabled_reason,
            updated_at: format_ms(link.updated_at),
            tags: link.tags,
            password_protected: link.password_hash.is_some(),
        }
    }
}

/// Body of a change request: only the fields present change, `null` clears a field
/// that may be empty (title, expiry, click limit) and is refused for the others.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateLinkBody {
    /// A new destination.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String)]
    pub url: Option<Option<String>>,
    /// A new title; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 512)]
    pub title: Option<Option<String>>,
    /// A new expiry (RFC 3339); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<String>>,
    /// A new click limit; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub max_clicks: Option<Option<i64>>,
    /// 301, 302, 307 or 308.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = RedirectStatus)]
    pub redirect_type: Option<Option<u16>>,
    /// A disabled link answers `410` instead of redirecting. Enabling a link an admin
    /// disabled takes an admin (and clears the reason).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    pub disabled: Option<Option<bool>>,
    /// Admins only: disables the link for this reason (abuse, a complaint). Visitors
    /// get a neutral `410`; the owner sees the reason and cannot enable the link.
    /// `null` clears the reason and leaves the link disabled.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500)]
    pub disabled_reason: Option<Option<String>>,
    /// Replaces the link's tags (`[]` removes them all).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Vec<String>, max_items = 20)]
    pub tags: Option<Option<Vec<String>>>,
    /// A new password; `null` removes the protection.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 4, max_length = 128)]
    pub password: Option<Option<String>>,
}

impl JsonBody for UpdateLinkBody {}

/// A field that was sent, possibly as `null` (absent fields stay `None` by default).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The value of a field that may be left out but not cleared.
fn not_null<T>(value: Option<Option<T>>, field: &str) -> Result<Option<T>, ApiError> {
    match value {
        Some(None) => Err(ApiError::BadJson {
            detail: format!("field `{field}` cannot be null; leave it out to keep it"),
            field: Some(field.to_owned()),
        }),
        other => Ok(other.flatten()),
    }
}

impl UpdateLinkBody {
    fn into_request(self) -> Result<PatchRequest, ApiError> {
        Ok(PatchRequest {
            url: not_null(self.url, "url")?,
            title: self.title,
            expires_at: self.expires_at,
            max_clicks: self.max_clicks,
            redirect_type: not_null(self.redirect_type, "redirectType")?,
            disabled: not_null(self.disabled, "disabled")?,
            disabled_reason: self.disabled_reason,
            tags: not_null(self.tags, "tags")?,
            password: self.password,
        })
    }
}

/// The seed's response shape for `POST /api/v1/shorten`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShortenBody {
    pub short_url: String,
    pub code: String,
    pub url: String,
}

/// Generated codes tried before giving up; a retry happens only when a generated code
/// was already taken by a custom alias, so more than one is already rare.
const MAX_CODE_ATTEMPTS: usize = 16;

/// Refuses a target that the domain rules cannot know about, since it changes at run
/// time: a host on the blocklist, or one of the domains this server redirects for (the
/// link would redirect to itself, or to another short link, in a loop; the base URL's
/// own host is refused by the URL policy already).
fn check_target(state: &AppState, url: &str) -> Result<(), ApiError> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    let Some(host) = parsed.host_str() else {
        return Ok(());
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Some(listed) = state.blocklist.blocked_by(bare) {
        return Err(ApiError::BlockedTarget(listed.to_owned()));
    }
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    match state.hosts.site_for_host(Some(&authority)) {
        Some(crate::hosts::Site::Named(_)) => Err(ApiError::Invalid(
            crate::domain::link::DraftError::Url(crate::domain::url::UrlError::PointsAtHop),
        )),
        _ => Ok(()),
    }
}

/// The record to store for a validated request.
fn new_link(
    draft: &LinkDraft,
    site: &Site,
    (id, code): (LinkId, String),
    owner: Option<UserId>,
    now: UnixMillis,
    password_hash: Option<&String>,
) -> NewLink {
    NewLink {
        id,
        domain: site.as_str().to_owned(),
        code,
        url: draft.url.as_str().to_owned(),
        title: draft.title.clone(),
        created_at: now,
        expires_at: draft.expires_at,
        max_clicks: draft.max_clicks,
        redirect: draft.redirect,
        owner,
        tags: draft.tags.clone(),
        password_hash: password_hash.cloned(),
    }
}

/// The change a new link is to other nodes' caches.
fn new_code(link: &Link) -> Change {
    Change::Link {
        domain: link.domain.clone(),
        code: link.code.clone(),
    }
}

/// Puts a new link in the redirect cache, replacing a negative entry a scan may have
/// left for its code.
fn warm_cache(state: &AppState, link: &Link) {
    match CachedLink::from_link(link) {
        Some(cached) => state
            .cache
            .insert_link(&link.domain, &link.code, Arc::new(cached)),
        None => state.cache.invalidate(&link.domain, &link.code),
    }
}

/// The site a request names with a `domain` field or parameter (none: the default).
pub fn site_of(state: &AppState, domain: Option<&str>) -> Result<Site, ApiError> {
    match domain {
        None => Ok(Site::Default),
        Some(name) => state
            .hosts
            .site_for_name(name)
            .ok_or_else(|| ApiError::UnknownDomain(name.to_owned())),
    }
}

/// The error for a store failure on insert that is not a taken code.
fn insert_failed(state: &AppState, site: &Site, error: StoreError) -> ApiError {
    match error {
        // The domain was removed after it was checked.
        StoreError::UnknownDomain => {
            ApiError::UnknownDomain(state.hosts.display(site.as_str()).to_owned())
        }
        other => other.into(),
    }
}

/// Validates and stores a new link in `site` owned by `owner` (`None`: an anonymous
/// link only admins see), and warms the redirect cache.
pub async fn create(
    state: &AppState,
    owner: Option<UserId>,
    site: Site,
    request: LinkRequest,
) -> Result<Link, ApiError> {
    let now = now_ms();
    let draft = request.validate(&state.settings.url_policy, now)?;
    check_target(state, draft.url.as_str())?;
    let password_hash = match &draft.password {
        Some(password) => Some(hash_password(password.clone()).await?),
        None => None,
    };
    let password_hash = password_hash.as_ref();
    let link = match &draft.alias {
        Some(alias) => {
            let id = state.codes.next_id().await?;
            let record = new_link(
                &draft,
                &site,
                (id, alias.clone()),
                owner,
                now,
                password_hash,
            );
            match state.stores.links.insert_link(record).await {
                Err(StoreError::Conflict) => return Err(ApiError::AliasTaken(alias.clone())),
                Err(error) => return Err(insert_failed(state, &site, error)),
                Ok(link) => link,
            }
        }
        None => {
            let mut attempts = 0;
            loop {
                let generated = state.codes.next().await?;
                let record = new_link(&draft, &site, generated, owner, now, password_hash);
                match state.stores.links.insert_link(record).await {
                    Err(StoreError::Conflict) if attempts < MAX_CODE_ATTEMPTS => attempts += 1,
                    Err(StoreError::Conflict) => {
                        return Err(ApiError::Internal("generated codes keep colliding".into()));
                    }
                    Err(error) => return Err(insert_failed(state, &site, error)),
                    Ok(link) => break link,
                }
            }
        }
    };
    warm_cache(state, &link);
    // Other nodes may hold a negative entry for the code (an alias asked for before).
    state.announce(vec![new_code(&link)]).await;
    tracing::debug!(link.code = %link.code, link.domain = %link.domain, "link created");
    Ok(link)
}

/// Most links one bulk request may create.
pub const MAX_BULK: usize = 1000;

/// Body of `POST /api/v1/links/bulk`. Items are parsed one by one, so that a bad item
/// fails alone instead of failing the request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// 1 to 1,000 items, each a `CreateLinkBody` (without `password`). Items are
    /// checked one by one: an invalid item gets its own error in the results and does
    /// not fail the request.
    #[schema(value_type = Vec<Value>, min_items = 1, max_items = 1000)]
    pub links: Vec<serde_json::Value>,
}

impl JsonBody for BulkBody {
    const BULK: bool = true;
}

/// One item's outcome, in input order: `201` with the link, or an error status with
/// its problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub link: Option<LinkBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Problem, nullable = false)]
    pub problem: Option<serde_json::Value>,
}

/// The answer to a bulk create.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResponse {
    pub results: Vec<BulkResult>,
}

/// Create up to 1,000 links in one call.
///
/// Valid items are created even when others are not; the answer lists every item's
/// outcome in input order. Honours `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/api/v1/links/bulk",
    tag = "links",
    params(IdempotencyKeyHeader),
    request_body = BulkBody,
    responses(
        (status = 200, description = "Every item's outcome, in input order", body = BulkResponse),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
    )
)]
pub async fn create_links_bulk(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<BulkBody>,
) -> Result<Json<BulkResponse>, ApiError> {
    if body.links.is_empty() || body.links.len() > MAX_BULK {
        return Err(ApiError::BadJson {
            detail: format!(
                "links must hold 1 to {MAX_BULK} items (got {})",
                body.links.len()
            ),
            field: Some("links".into()),
        });
    }
    let now = now_ms();
    let owner = Some(caller.user());
    let mut outcomes: Vec<Option<Result<Link, ApiError>>> = Vec::with_capacity(body.links.len());
    // (index in the input, draft, domain) of every valid item not yet stored.
    let mut pending: Vec<(usize, LinkDraft, Site)> = Vec::new();
    for (index, item) in body.links.into_iter().enumerate() {
        let draft = parse_json_value::<CreateLinkBody>(item).and_then(|body| {
            if body.password.is_some() {
                // Hashing is slow on purpose; a thousand of them would stall the batch.
                return Err(ApiError::BadJson {
                    detail: "password is not accepted in bulk creates; set it with PATCH".into(),
                    field: Some("password".into()),
                });
            }
            let site = site_of(&state, body.domain.as_deref())?;
            let draft = LinkRequest::from(body).validate(&state.settings.url_policy, now)?;
            check_target(&state, draft.url.as_str())?;
            Ok((draft, site))
        });
        match draft {
            Ok((draft, site)) => {
                outcomes.push(None);
                pending.push((index, draft, site));
            }
            Err(error) => outcomes.push(Some(Err(error))),
        }
    }
    let mut changes = Vec::new();
    // Generated codes that collide with an alias are retried with fresh codes.
    for _ in 0..MAX_CODE_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        let mut records = Vec::with_capacity(pending.len());
        for (_, draft, site) in &pending {
            let code = match &draft.alias {
                Some(alias) => (state.codes.next_id().await?, alias.clone()),
                None => state.codes.next().await?,
            };
            records.push(new_link(draft, site, code, owner, now, None));
        }
        let results = state.stores.links.insert_links(records).await?;
        let mut retry = Vec::new();
        for ((index, draft, site), result) in pending.into_iter().zip(results) {
            match result {
                Ok(link) => {
                    warm_cache(&state, &link);
                    changes.push(new_code(&link));
                    outcomes[index] = Some(Ok(link));
                }
                Err(StoreError::Conflict) => match &draft.alias {
                    Some(alias) => outcomes[index] = Some(Err(ApiError::AliasTaken(alias.clone()))),
                    None => retry.push((index, draft, site)),
                },
                Err(error) => outcomes[index] = Some(Err(insert_failed(&state, &site, error))),
            }
        }
        pending = retry;
    }
    state.announce(changes).await;
    for (index, ..) in pending {
        outcomes[index] = Some(Err(ApiError::Internal(
            "generated codes keep colliding".into(),
        )));
    }
    let results: Vec<BulkResult> = outcomes
        .into_iter()
        .map(
            |outcome| match outcome.expect("every item has an outcome") {
                Ok(link) => BulkResult {
                    status: 201,
                    link: Some(LinkBody::new(link, &state)),
                    problem: None,
                },
                Err(error) => BulkResult {
                    status: error.kind().0.as_u16(),
                    link: None,
                    problem: Some(error.problem_json()),
                },
            },
        )
        .collect();
    Ok(Json(BulkResponse { results }))
}

/// Argon2id takes tens of milliseconds: off the async workers.
async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || crate::domain::password::hash(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
}

/// A 201 with the link's API URL in `Location`.
fn created<T: Serialize>(domain: &str, code: &str, body: T) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    let location = if domain.is_empty() {
        format!("/api/v1/links/{code}")
    } else {
        format!("/api/v1/links/{code}?domain={domain}")
    };
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The owner of a new link: the key's user, or none for an anonymous create, which
/// may not claim an alias (squatting), set a password, a domain or tags.
fn owner_of(creator: &Creator, body: &CreateLinkBody) -> Result<Option<UserId>, ApiError> {
    match creator {
        Creator::Key(caller) => Ok(Some(caller.user())),
        Creator::Anonymous => {
            for (field, given) in [
                ("alias", body.alias.is_some()),
                ("password", body.password.is_some()),
                ("domain", body.domain.is_some()),
                ("tags", body.tags.is_some()),
            ] {
                if given {
                    return Err(ApiError::NotForAnonymous(field));
                }
            }
            Ok(None)
        }
    }
}

/// The create both `POST /links` and `POST /shorten` make from their body.
async fn create_from_body(
    state: &AppState,
    creator: &Creator,
    body: CreateLinkBody,
) -> Result<Link, ApiError> {
    let owner = owner_of(creator, &body)?;
    let site = site_of(state, body.domain.as_deref())?;
    create(state, owner, site, body.into()).await
}

/// Create a link with every option.
///
/// Without an API key this answers `401`, unless the server allows anonymous creation
/// (`anonymous_create`), which accepts `url`, `title`, `expiresAt`, `maxClicks` and
/// `redirectType` only.
///
/// Honours `Idempotency-Key`: a retry with the same key and body returns the first
/// answer (with `Idempotent-Replayed: true`) and creates nothing.
#[utoipa::path(
    post,
    path = "/api/v1/links",
    tag = "links",
    params(IdempotencyKeyHeader),
    request_body = CreateLinkBody,
    responses(
        (status = 201, description = "Created; `Location` is the link's API URL", body = LinkBody,
            headers(("Location" = String, description = "The link's API URL"))),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
    )
)]
pub async fn create_link(
    State(state): State<AppState>,
    creator: Creator,
    AppJson(body): AppJson<CreateLinkBody>,
) -> Result<Response, ApiError> {
    let link = create_from_body(&state, &creator, body).await?;
    let (domain, code) = (link.domain.clone(), link.code.clone());
    Ok(created(&domain, &code, LinkBody::new(link, &state)))
}

/// Shorten a URL (the short answer form).
///
/// Takes the same body as `POST /api/v1/links` and answers only the short URL, code
/// and destination. Honours `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/api/v1/shorten",
    tag = "links",
    params(IdempotencyKeyHeader),
    request_body = CreateLinkBody,
    responses(
        (status = 201, description = "Created; `Location` is the link's API URL", body = ShortenBody,
            headers(("Location" = String, description = "The link's API URL"))),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
    )
)]
pub async fn shorten(
    State(state): State<AppState>,
    creator: Creator,
    AppJson(body): AppJson<CreateLinkBody>,
) -> Result<Response, ApiError> {
    let link = create_from_body(&state, &creator, body).await?;
    let body = ShortenBody {
        short_url: state.settings.short_url(&link.domain, &link.code),
        code: link.code.clone(),
        url: link.url,
    };
    Ok(created(&link.domain, &link.code, body))
}

/// The caller's live link with this code; someone else's answers 404 as if it did not
/// exist, so codes owned by others cannot be probed.
pub async fn owned_link(
    state: &AppState,
    caller: &Caller,
    site: &Site,
    code: &str,
) -> Result<Link, ApiError> {
    let not_found = || ApiError::NotFound(format!("no link with code `{code}`"));
    if !crate::domain::code::is_code_syntax(code) {
        return Err(not_found());
    }
    match state.stores.links.link_by_code(site.as_str(), code).await? {
        Some(link) if caller.can_access(link.owner) => Ok(link),
        _ => Err(not_found()),
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkPage {
    pub items: Vec<LinkBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Most links one page may hold.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

fn sort_name(sort: LinkSort) -> &'static str {
    match sort {
        LinkSort::NewestFirst => "-createdAt",
        LinkSort::OldestFirst => "createdAt",
        LinkSort::MostClicked => "-clicks",
        LinkSort::LeastClicked => "clicks",
    }
}

/// A cursor is `<sort>~<value>~<id>`: readable, but only meaningful to hop.
fn encode_cursor(sort: LinkSort, position: ListPosition) -> String {
    format!("{}~{}~{}", sort_name(sort), position.value, position.id.0)
}

fn decode_cursor(text: &str, sort: LinkSort) -> Result<ListPosition, ApiError> {
    let bad = || {
        ApiError::invalid_parameter(
            "cursor",
            format!("cursor `{text}` is not one this server gave out"),
        )
    };
    let mut parts = text.split('~');
    let (Some(cursor_sort), Some(value), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if cursor_sort != sort_name(sort) {
        return Err(ApiError::invalid_parameter(
            "cursor",
            format!(
                "cursor belongs to a listing sorted by `{cursor_sort}`, not `{}`; keep the same sort while paging",
                sort_name(sort)
            ),
        ));
    }
    Ok(ListPosition {
        value: value.parse().map_err(|_| bad())?,
        id: LinkId(id.parse().map_err(|_| bad())?),
    })
}

/// An RFC 3339 query parameter, in Unix milliseconds.
pub(super) fn parse_time(parameter: &str, text: &str) -> Result<i64, ApiError> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::invalid_parameter(
                parameter,
                format!(
                    "{parameter} `{text}` is not an RFC 3339 time such as 2030-01-31T12:00:00Z"
                ),
            )
        })?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Parses the listing parameters strictly: unknown or repeated ones are errors, so a
/// typo never silently returns an unfiltered listing.
fn parse_list_params(
    pairs: Vec<(String, String)>,
    owner: Option<UserId>,
) -> Result<LinkQuery, ApiError> {
    let mut query = LinkQuery {
        owner,
        limit: DEFAULT_PAGE,
        ..LinkQuery::default()
    };
    let mut cursor = None;
    let mut names = StrictQuery::new(&[
        "limit",
        "cursor",
        "q",
        "tag",
        "domain",
        "createdFrom",
        "createdBefore",
        "sort",
    ]);
    for (name, value) in pairs {
        names.check(&name)?;
        match name.as_str() {
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(
                            "limit",
                            format!("limit must be 1 to {MAX_PAGE} (got `{value}`)"),
                        )
                    })?;
            }
            "cursor" => cursor = Some(value),
            // Resolved against the served domains by the caller.
            "domain" => query.domain = Some(value),
            "q" => {
                if value.is_empty() || value.chars().count() > 200 {
                    return Err(ApiError::invalid_parameter(
                        "q",
                        "q must be 1 to 200 characters".into(),
                    ));
                }
                query.text = Some(value);
            }
            "tag" => {
                let tag = crate::domain::link::valid_tags(vec![value.clone()]).map_err(|_| {
                    ApiError::invalid_parameter("tag", format!("`{value}` is not a valid tag"))
                })?;
                query.tag = tag.into_iter().next();
            }
            "createdFrom" => query.created_from = Some(parse_time("createdFrom", &value)?),
            "createdBefore" => query.created_before = Some(parse_time("createdBefore", &value)?),
            "sort" => {
                query.sort = match value.as_str() {
                    "-createdAt" => LinkSort::NewestFirst,
                    "createdAt" => LinkSort::OldestFirst,
                    "-clicks" => LinkSort::MostClicked,
                    "clicks" => LinkSort::LeastClicked,
                    _ => {
                        return Err(ApiError::invalid_parameter(
                            "sort",
                            format!(
                                "sort must be one of -createdAt, createdAt, -clicks, clicks (got `{value}`)"
                            ),
                        ));
                    }
                }
            }
            _ => unreachable!("StrictQuery admits only the names above"),
        }
    }
    if let Some(cursor) = cursor {
        query.after = Some(decode_cursor(&cursor, query.sort)?);
    }
    Ok(query)
}

/// List links, a page at a time.
///
/// The caller's links (every link for admins). Paging with `cursor` stays exact while
/// links are created concurrently. Unknown or repeated parameters are errors.
#[utoipa::path(
    get,
    path = "/api/v1/links",
    tag = "links",
    params(
        ("limit" = Option<u32>, Query, description = "Links per page (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
        ("q" = Option<String>, Query, description = "Text contained in the code, URL or title", min_length = 1, max_length = 200),
        ("tag" = Option<String>, Query, description = "Only links with this tag"),
        ("domain" = Option<String>, Query, description = "Only links in this domain"),
        ("createdFrom" = Option<String>, Query, description = "Created at or after (RFC 3339)", format = DateTime),
        ("createdBefore" = Option<String>, Query, description = "Created before (RFC 3339)", format = DateTime),
        ("sort" = Option<ListOrder>, Query, description = "Order (default `-createdAt`)"),
    ),
    responses(
        (status = 200, description = "One page of links", body = LinkPage),
        (status = 400, response = BadRequest),
    )
)]
pub async fn list_links(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<LinkPage>, ApiError> {
    let pairs = query_pairs(params)?;
    link_page(&state, &caller, pairs).await.map(Json)
}

/// One page of the links `caller` may see, for the listing parameters in `pairs` (the
/// API's and the dashboard's links page).
pub async fn link_page(
    state: &AppState,
    caller: &Caller,
    pairs: Vec<(String, String)>,
) -> Result<LinkPage, ApiError> {
    let owner = caller.visible_owner();
    let mut query = parse_list_params(pairs, owner)?;
    if let Some(name) = query.domain.take() {
        query.domain = Some(site_of(state, Some(&name))?.as_str().to_owned());
    }
    let (limit, sort) = (query.limit, query.sort);
    // One more than asked for says whether another page exists.
    query.limit += 1;
    let mut links = state.stores.links.list_links(query).await?;
    let next_cursor = if links.len() > limit {
        links.truncate(limit);
        links.last().map(|last| {
            let value = match sort {
                LinkSort::NewestFirst | LinkSort::OldestFirst => last.created_at,
                LinkSort::MostClicked | LinkSort::LeastClicked => last.clicks as i64,
            };
            encode_cursor(sort, ListPosition { value, id: last.id })
        })
    } else {
        None
    };
    Ok(LinkPage {
        items: links
            .into_iter()
            .map(|link| LinkBody::new(link, state))
            .collect(),
        next_cursor,
    })
}

/// A tag and how many links carry it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagCount {
    pub tag: String,
    pub links: u64,
}

/// Every tag in use, most used first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagList {
    pub items: Vec<TagCount>,
}

/// List tags with counts.
///
/// Every tag on the caller's links (everyone's for admins), with how many links
/// carry it, most used first.
#[utoipa::path(
    get,
    path = "/api/v1/tags",
    tag = "links",
    responses((status = 200, description = "Tags with link counts", body = TagList))
)]
pub async fn list_tags(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TagList>, ApiError> {
    let owner = caller.visible_owner();
    let counts = state.stores.links.tag_counts(owner).await?;
    let items = counts
        .into_iter()
        .map(|(tag, links)| TagCount { tag, links })
        .collect();
    Ok(Json(TagList { items }))
}

/// Get one link.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}",
    tag = "links",
    params(CodeParam, DomainParam),
    responses(
        (status = 200, description = "The link", body = LinkBody),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_link(
    State(state): State<AppState>,
    caller: Caller,
    CodePath(code): CodePath,
    DomainQuery(domain): DomainQuery,
) -> Result<Json<LinkBody>, ApiError> {
    let site = site_of(&state, domain.as_deref())?;
    let link = owned_link(&state, &caller, &site, &code).await?;
    Ok(Json(LinkBody::new(link, &state)))
}

/// Change a link.
///
/// Only the fields present change; `null` clears a field that may be empty. The
/// change applies to redirects at once.
#[utoipa::path(
    patch,
    path = "/api/v1/links/{code}",
    tag = "links",
    params(CodeParam, DomainParam),
    request_body = UpdateLinkBody,
    responses(
        (status = 200, description = "The changed link", body = LinkBody),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
    )
)]
pub async fn update_link(
    State(state): State<AppState>,
    caller: Caller,
    CodePath(code): CodePath,
    DomainQuery(domain): DomainQuery,
    AppJson(body): AppJson<UpdateLinkBody>,
) -> Result<Json<LinkBody>, ApiError> {
    let site = site_of(&state, domain.as_deref())?;
    let request = body.into_request()?;
    let link = update(&state, &caller, &site, &code, request).await?;
    Ok(Json(LinkBody::new(link, &state)))
}

/// Validates and applies a change to `caller`'s link `code` in `site` (the API's
/// PATCH and the dashboard's edit forms); returns the link as it now is.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    site: &Site,
    code: &str,
    request: PatchRequest,
) -> Result<Link, ApiError> {
    if request.disabled_reason.is_some() && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "only an admin can set or clear `disabledReason`",
        ));
    }
    let mut changes = request.validate(&state.settings.url_policy, now_ms())?;
    if let Some(url) = &changes.url {
        check_target(state, url.as_str())?;
    }
    if let Some(password) = changes.password.take() {
        changes.password_hash = Some(match password {
            Some(password) => Some(hash_password(password).await?),
            None => None,
        });
    }
    let link = owned_link(state, caller, site, code).await?;
    if link.disabled_reason.is_some() && changes.disabled == Some(false) && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "an admin disabled this link (see `disabledReason`); only an admin can enable it",
        ));
    }
    if changes.is_empty() {
        // Nothing to change: nothing is written, and updatedAt stays.
        return Ok(link);
    }
    let updated = state
        .stores
        .links
        .update_link(link.id, changes)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no link with code `{code}`")))?;
    // The next redirect reloads the link; clicks already taken (stored) still count
    // against a new limit.
    state.link_changed(&updated.domain, &updated.code).await;
    tracing::debug!(link.code = %updated.code, "link updated");
    Ok(updated)
}

/// Delete a link; its code stops redirecting at once.
#[utoipa::path(
    delete,
    path = "/api/v1/links/{code}",
    tag = "links",
    params(CodeParam, DomainParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn delete_link(
    State(state): State<AppState>,
    caller: Caller,
    CodePath(code): CodePath,
    DomainQuery(domain): DomainQuery,
) -> Result<StatusCode, ApiError> {
    let site = site_of(&state, domain.as_deref())?;
    delete(&state, &caller, &site, &code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes `caller`'s link `code` in `site`; its code stops redirecting at once.
pub async fn delete(
    state: &AppState,
    caller: &Caller,
    site: &Site,
    code: &str,
) -> Result<(), ApiError> {
    let link = owned_link(state, caller, site, code).await?;
    if !state.stores.links.delete_link(link.id).await? {
        return Err(ApiError::NotFound(format!("no link with code `{code}`")));
    }
    state.link_changed(&link.domain, &link.code).await;
    state.clicks.forget(link.id);
    tracing::debug!(link.code = %link.code, "link deleted");
    Ok(())
}
