//! The HTTP error type: every failure becomes an RFC 9457 `application/problem+json`
//! body with a stable `type` per kind of error and a `detail` a person can act on.
//!
//! 5xx details never reach the client: the response carries a generic text, and the
//! real cause travels in a response extension ([`InternalCause`]) for the request-log
//! middleware to log once.

use crate::codes::AllocError;
use crate::domain::link::DraftError;
use crate::store::{StorageFailure, StoreError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Prefix of every problem `type`.
pub const TYPE_PREFIX: &str = "urn:hop:problem:";

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{detail}")]
    BadJson {
        detail: String,
        field: Option<String>,
    },
    #[error("{detail}")]
    InvalidParameter { detail: String, parameter: String },
    #[error("{detail}")]
    InvalidHeader {
        detail: String,
        header: &'static str,
    },
    #[error(
        "this Idempotency-Key was used with a different request; use a new key for a new request"
    )]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyKeyInUse,
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request did not arrive whole within {0} ms; the connection is closed")]
    RequestTimeout(u64),
    #[error(transparent)]
    Invalid(#[from] DraftError),
    #[error("alias `{0}` is already taken")]
    AliasTaken(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(
        "`{0}` needs an API key; links created without one take only url, title, expiresAt, maxClicks and redirectType"
    )]
    NotForAnonymous(&'static str),
    #[error("`{name}` is not a valid domain name: {reason}")]
    InvalidDomain {
        name: String,
        reason: String,
        field: &'static str,
    },
    #[error("domain `{0}` is not served here; GET /api/v1/domains lists the domains that are")]
    UnknownDomain(String),
    #[error("domain `{0}` is already registered")]
    DomainExists(String),
    #[error("`{0}` is the default domain (the host of base_url); it cannot be added or removed")]
    DefaultDomain(String),
    #[error("domain `{0}` still has {1} link(s); delete them before removing the domain")]
    DomainInUse(String, u64),
    #[error("host `{0}` is not served here")]
    UnknownHost(String),
    #[error("{0}")]
    NotFound(String),
    #[error("link `{0}` has expired")]
    Expired(String),
    #[error("link `{0}` has reached its click limit")]
    ClickLimit(String),
    #[error("link `{0}` has been disabled by its owner")]
    Disabled(String),
    /// Neutral on purpose: the visitor learns nothing about the target or the list.
    #[error("link `{0}` is not available")]
    Blocked(String),
    #[error("links to `{0}` are not allowed on this server")]
    BlockedTarget(String),
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("too many password attempts for this link; retry in {0} seconds")]
    TooManyAttempts(u64),
    #[error("rate limit exceeded; retry in {0} seconds")]
    RateLimited(u64),
    #[error("{0}")]
    CodeSpaceExhausted(String),
    #[error("click analytics are off on this server (analytics_enabled = false)")]
    AnalyticsOff,
    /// A shutdown has begun (`/readyz` only): the node still serves, but its load
    /// balancer should send new requests elsewhere.
    #[error(
        "this node is shutting down: it still serves for a moment, but new requests should go to other nodes"
    )]
    Draining,
    /// A dependency is down; the message is for the log only.
    #[error("{0}")]
    Unavailable(String),
    /// The database's storage failed (full, I/O error, damaged); the message is for the
    /// log only, the kind is told.
    #[error("{1}")]
    Storage(StorageFailure, String),
    /// A bug or unexpected failure; the message is for the log only.
    #[error("{0}")]
    Internal(String),
}

/// The cause of a 5xx, attached to the response for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// An RFC 9457 problem document, as every error response carries it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// `urn:hop:problem:<slug>`: stable per kind of error, for programs to branch on.
    #[serde(rename = "type")]
    #[schema(example = "urn:hop:problem:invalid-url")]
    kind: String,
    /// A short summary of the kind of error.
    title: &'a str,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// What went wrong with this request, and how to fix it.
    detail: String,
    /// The body field (JSON path), query parameter or header at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    field: Option<&'a str>,
}

impl ApiError {
    /// Status, stable slug for the `type`, and short title.
    pub fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Unauthorized(_) => (
                S::UNAUTHORIZED,
                "unauthorized",
                "Missing or invalid API key",
            ),
            Self::BadJson { .. } => (S::BAD_REQUEST, "invalid-body", "Request body is not valid"),
            Self::InvalidParameter { .. } => (
                S::BAD_REQUEST,
                "invalid-parameter",
                "Query parameter is not valid",
            ),
            Self::InvalidHeader { .. } => (
                S::BAD_REQUEST,
                "invalid-header",
                "Request header is not valid",
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            ),
            Self::IdempotencyKeyInUse => (
                S::CONFLICT,
                "idempotency-key-in-use",
                "Idempotency key in use",
            ),
            Self::PayloadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body is too large",
            ),
            Self::RequestTimeout(_) => (
                S::REQUEST_TIMEOUT,
                "request-timeout",
                "Request took too long to arrive",
            ),
            Self::Invalid(e) => match e {
                DraftError::Url(_) => (S::BAD_REQUEST, "invalid-url", "URL is not allowed"),
                DraftError::Alias(_) => (S::BAD_REQUEST, "invalid-alias", "Alias is not allowed"),
                DraftError::Title => (S::BAD_REQUEST, "invalid-title", "Title is not allowed"),
                DraftError::ExpiryFormat(_) | DraftError::ExpiryPast(_) => {
                    (S::BAD_REQUEST, "invalid-expiry", "Expiry is not valid")
                }
                DraftError::MaxClicks(_) => (
                    S::BAD_REQUEST,
                    "invalid-max-clicks",
                    "Click limit is not valid",
                ),
                DraftError::Tags(_) => (S::BAD_REQUEST, "invalid-tags", "Tags are not valid"),
                DraftError::Password => (
                    S::BAD_REQUEST,
                    "invalid-password",
                    "Password is not allowed",
                ),
                DraftError::RedirectType(_) => (
                    S::BAD_REQUEST,
                    "invalid-redirect-type",
                    "Redirect type is not supported",
                ),
                DraftError::Reason | DraftError::ReasonWhileEnabling => (
                    S::BAD_REQUEST,
                    "invalid-disabled-reason",
                    "Reason for disabling is not valid",
                ),
            },
            Self::AliasTaken(_) => (S::CONFLICT, "alias-taken", "Alias is already taken"),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Not allowed for this key"),
            Self::NotForAnonymous(_) => (
                S::FORBIDDEN,
                "anonymous-not-allowed",
                "Not allowed without an API key",
            ),
            Self::InvalidDomain { .. } => {
                (S::BAD_REQUEST, "invalid-domain", "Domain name is not valid")
            }
            Self::UnknownDomain(_) => (
                S::BAD_REQUEST,
                "unknown-domain",
                "Domain is not served here",
            ),
            Self::DomainExists(_) => (S::CONFLICT, "domain-exists", "Domain is already registered"),
            Self::DefaultDomain(_) => (S::CONFLICT, "default-domain", "Domain is the default"),
            Self::DomainInUse(..) => (S::CONFLICT, "domain-in-use", "Domain still has links"),
            Self::UnknownHost(_) => (S::NOT_FOUND, "unknown-host", "Host is not served here"),
            Self::NotFound(_) => (S::NOT_FOUND, "not-found", "Not found"),
            Self::Expired(_) => (S::GONE, "link-expired", "Link has expired"),
            Self::Disabled(_) => (S::GONE, "link-disabled", "Link is disabled"),
            Self::Blocked(_) => (S::GONE, "link-unavailable", "Link is unavailable"),
            Self::BlockedTarget(_) => (S::BAD_REQUEST, "blocked-target", "Target is blocked"),
            Self::ClickLimit(_) => (
                S::GONE,
                "click-limit-reached",
                "Link has reached its click limit",
            ),
            Self::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Self::TooManyAttempts(_) => (
                S::TOO_MANY_REQUESTS,
                "too-many-attempts",
                "Too many password attempts",
            ),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::AnalyticsOff => (S::SERVICE_UNAVAILABLE, "analytics-off", "Analytics are off"),
            Self::CodeSpaceExhausted(_) => (
                S::SERVICE_UNAVAILABLE,
                "code-space-exhausted",
                "No short codes left",
            ),
            Self::Draining => (S::SERVICE_UNAVAILABLE, "draining", "Node is draining"),
            Self::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::Storage(StorageFailure::DiskFull, _) => {
                (S::SERVICE_UNAVAILABLE, "disk-full", "Disk full")
            }
            Self::Storage(StorageFailure::Io, _) => {
                (S::SERVICE_UNAVAILABLE, "storage-failed", "Storage failed")
            }
            Self::Storage(StorageFailure::Corrupt, _) => (
                S::SERVICE_UNAVAILABLE,
                "database-damaged",
                "Database damaged",
            ),
            Self::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    /// The detail shown to the client (generic for failures that are hop's own).
    pub fn public_detail(&self) -> String {
        match self {
            Self::Unavailable(_) => "the database is not reachable right now; retry shortly".into(),
            Self::Storage(StorageFailure::DiskFull, _) => {
                "disk full: the server cannot store anything until room is made; links \
                 already stored still redirect"
                    .into()
            }
            Self::Storage(StorageFailure::Io, _) => {
                "the server's storage reported an I/O error; retry later".into()
            }
            Self::Storage(StorageFailure::Corrupt, _) => {
                "the server's database is damaged; its operator must check it (hop check)".into()
            }
            Self::Internal(_) => "an unexpected error occurred; it has been logged".into(),
            other => other.to_string(),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::BadJson { field, .. } => field.as_deref(),
            Self::InvalidParameter { parameter, .. } => Some(parameter),
            Self::InvalidHeader { header, .. } => Some(header),
            Self::Invalid(e) => Some(e.field()),
            Self::AliasTaken(_) => Some("alias"),
            Self::BlockedTarget(_) => Some("url"),
            Self::InvalidDomain { field, .. } => Some(field),
            Self::UnknownDomain(_) => Some("domain"),
            Self::NotForAnonymous(field) => Some(field),
            Self::DomainExists(_) | Self::DefaultDomain(_) => Some("name"),
            _ => None,
        }
    }
}

impl ApiError {
    /// A query parameter that is not valid, with what to send instead.
    pub fn invalid_parameter(parameter: &str, detail: String) -> Self {
        Self::InvalidParameter {
            detail,
            parameter: parameter.to_owned(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => Self::Internal("unexpected conflict".into()),
            StoreError::UnknownDomain => Self::Internal("unexpected unknown domain".into()),
            StoreError::Database(message) => Self::Unavailable(message),
            StoreError::Storage { kind, detail } => Self::Storage(kind, detail),
        }
    }
}

impl From<AllocError> for ApiError {
    fn from(error: AllocError) -> Self {
        match error {
            AllocError::Exhausted(_) => Self::CodeSpaceExhausted(error.to_string()),
            AllocError::Store(e) => e.into(),
        }
    }
}

impl ApiError {
    fn problem(&self) -> Problem<'_> {
        let (status, slug, title) = self.kind();
        Problem {
            kind: format!("{TYPE_PREFIX}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.public_detail(),
            field: self.field(),
        }
    }

    /// The problem document as a JSON value (for answers that embed problems, such
    /// as bulk results). The cause of a 5xx is logged here, since no response
    /// carries it to the middleware.
    pub fn problem_json(&self) -> serde_json::Value {
        if let Self::Unavailable(cause) | Self::Internal(cause) | Self::Storage(_, cause) = self {
            tracing::error!(error = %cause, "bulk item failed");
        }
        serde_json::to_value(self.problem()).unwrap_or_default()
    }
}

/// `Retry-After` of a 503: the database is usually back (or a connection to it
/// replaced) within about a second.
pub const RETRY_UNAVAILABLE_S: HeaderValue = HeaderValue::from_static("1");

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.kind().0;
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, RETRY_UNAVAILABLE_S);
        }
        if let Self::Unavailable(cause) | Self::Internal(cause) | Self::Storage(_, cause) = self {
            response.extensions_mut().insert(InternalCause(cause));
        }
        response
    }
}
