//! The domains API: which hosts links can live under besides the default one.
//!
//! `GET /api/v1/domains` lists them for any caller (the default domain first, so a
//! client knows what to put in a link's `domain`); adding and removing is for admins.
//! A change takes effect for redirects at once: the in-memory set
//! ([`crate::hosts::Hosts`]) is reloaded after it is written.

use super::AppState;
use super::extract::{AppJson, Caller, JsonBody};
use super::problem::ApiError;
use crate::domain::host::DomainName;
use crate::domain::link::format_ms;
use crate::store::{DomainRemoval, StoreError};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

use super::openapi::{BadRequest, Forbidden, PayloadTooLarge};
use super::problem::Problem;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/domains", get(list_domains).post(add_domain))
        .route("/api/v1/domains/{name}", delete(remove_domain))
}

/// Body of `POST /api/v1/domains`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomainBody {
    /// A bare host name, optionally with `:port` (then only that port is served).
    #[schema(example = "go.example.com")]
    pub name: String,
}

impl JsonBody for AddDomainBody {}

/// A domain as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainBody {
    pub name: String,
    /// When it was registered; `null` for the default domain, which comes from
    /// `base_url`.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Whether this is the default domain (links without a `domain`).
    pub default: bool,
    /// Live links in the domain; shown to admins only, since it counts everyone's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub links: Option<u64>,
}

/// Every domain, the default first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainList {
    pub items: Vec<DomainBody>,
}

/// List domains.
///
/// The default domain (the base URL's host), then the registered ones by name. Link
/// counts are shown to admins only.
#[utoipa::path(
    get,
    path = "/api/v1/domains",
    tag = "domains",
    responses((status = 200, description = "Every domain, the default first", body = DomainList))
)]
pub async fn list_domains(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<DomainList>, ApiError> {
    let counts: Option<HashMap<String, u64>> = if caller.is_admin() {
        Some(
            state
                .stores
                .domains
                .link_counts()
                .await?
                .into_iter()
                .collect(),
        )
    } else {
        None
    };
    let count = |domain: &str| {
        counts
            .as_ref()
            .map(|counts| counts.get(domain).copied().unwrap_or(0))
    };
    let mut items = vec![DomainBody {
        name: state.hosts.default_host().to_owned(),
        created_at: None,
        default: true,
        links: count(""),
    }];
    for domain in state.stores.domains.list_domains().await? {
        items.push(DomainBody {
            links: count(&domain.name),
            name: domain.name,
            created_at: Some(format_ms(domain.created_at)),
            default: false,
        });
    }
    Ok(Json(DomainList { items }))
}

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only admins may add or remove domains"))
    }
}

/// A name as given, checked and normalised; the default host is refused.
fn registrable(state: &AppState, name: &str, field: &'static str) -> Result<DomainName, ApiError> {
    let default_host = state.hosts.default_host();
    if name.eq_ignore_ascii_case(default_host) {
        return Err(ApiError::DefaultDomain(default_host.to_owned()));
    }
    let parsed = DomainName::parse(name).map_err(|error| ApiError::InvalidDomain {
        name: name.to_owned(),
        reason: error.to_string(),
        field,
    })?;
    if parsed.as_str() == default_host {
        return Err(ApiError::DefaultDomain(default_host.to_owned()));
    }
    Ok(parsed)
}

/// Rereads the domain set after a change, and tells the other nodes of a cluster to.
/// The change is stored whatever happens here; a failed read is retried by the
/// periodic refresh.
async fn reload(state: &AppState) {
    if let Err(error) = state.hosts.reload(state.stores.domains.as_ref()).await {
        tracing::warn!(%error, "rereading domains after a change failed");
    }
    state
        .announce(vec![crate::tier::message::Change::Domains])
        .await;
}

/// Register a domain (admins).
///
/// Links can then be created in it, and redirects for its `Host` are served at once.
#[utoipa::path(
    post,
    path = "/api/v1/domains",
    tag = "domains",
    request_body = AddDomainBody,
    responses(
        (status = 201, description = "Registered", body = DomainBody,
            headers(("Location" = String, description = "The domain's API URL"))),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, description = "Already registered, or the default domain",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
    )
)]
pub async fn add_domain(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<AppJson<AddDomainBody>, ApiError>,
) -> Result<Response, ApiError> {
    // Before the body, so that a non-admin learns nothing from validation errors.
    require_admin(&caller)?;
    let AppJson(body) = body?;
    let name = registrable(&state, &body.name, "name")?;
    let domain = match state.stores.domains.insert_domain(name.as_str()).await {
        Err(StoreError::Conflict) => return Err(ApiError::DomainExists(name.into_string())),
        other => other?,
    };
    reload(&state).await;
    tracing::info!(domain.name = %domain.name, "domain added");
    let location = format!("/api/v1/domains/{}", domain.name);
    let body = DomainBody {
        name: domain.name,
        created_at: Some(format_ms(domain.created_at)),
        default: false,
        links: Some(0),
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Remove a domain (admins); refused while links live in it.
#[utoipa::path(
    delete,
    path = "/api/v1/domains/{name}",
    tag = "domains",
    params(("name" = String, Path, description = "The domain's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, response = Forbidden),
        (status = 404, description = "No such domain is registered",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Links still live in the domain, or it is the default",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove_domain(
    State(state): State<AppState>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    let not_found = |name: &str| ApiError::NotFound(format!("no domain `{name}` is registered"));
    let Ok(Path(name)) = name else {
        return Err(not_found("?"));
    };
    let parsed = match registrable(&state, &name, "name") {
        Ok(parsed) => parsed,
        Err(ApiError::InvalidDomain { .. }) => return Err(not_found(&name)),
        Err(other) => return Err(other),
    };
    match state.stores.domains.remove_domain(parsed.as_str()).await? {
        DomainRemoval::Removed => {
            reload(&state).await;
            tracing::info!(domain.name = %parsed.as_str(), "domain removed");
            Ok(StatusCode::NO_CONTENT)
        }
        DomainRemoval::NotFound => Err(not_found(parsed.as_str())),
        DomainRemoval::InUse(links) => Err(ApiError::DomainInUse(parsed.into_string(), links)),
    }
}
