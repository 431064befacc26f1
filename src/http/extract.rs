//! Extractors that turn bad input into hop's own problem responses: [`AppJson`] for
//! bodies (naming the offending field) and [`Caller`] for API-key authentication.

use super::AppState;
use super::auth::Lookup;
use super::problem::ApiError;
use crate::domain::link::UserId;
use crate::store::User;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A JSON body, parsed strictly: over the size limit is 413, malformed or mistyped
/// JSON 400 with the path of the offending field.
pub struct AppJson<T>(pub T);

/// A type a request body is parsed into, and which size limit applies to it.
pub trait JsonBody: DeserializeOwned {
    /// Bulk bodies (up to 1,000 links) get `max_bulk_body_bytes` instead of
    /// `max_body_bytes`.
    const BULK: bool = false;
}

impl<T: JsonBody> FromRequest<AppState> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        // The content type is not enforced (`curl -d` sends a form type with JSON in
        // it); it only words the error when the body turns out not to be JSON.
        let declared = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = if T::BULK {
            state.settings.max_bulk_body_bytes
        } else {
            state.settings.max_body_bytes
        };
        let bytes = Limited::new(req.into_body(), limit)
            .collect()
            .await
            .map_err(|error| {
                if error.downcast_ref::<LengthLimitError>().is_some() {
                    ApiError::PayloadTooLarge(limit)
                } else {
                    ApiError::BadJson {
                        detail: format!("could not read request body: {error}"),
                        field: None,
                    }
                }
            })?
            .to_bytes();
        parse_json(&bytes)
            .map(AppJson)
            .map_err(|error| match (error, declared) {
                (ApiError::BadJson { detail, field }, Some(declared))
                    if !declared.contains("json") =>
                {
                    ApiError::BadJson {
                        detail: format!(
                            "{detail} (the request declared Content-Type `{declared}`)"
                        ),
                        field,
                    }
                }
                (error, _) => error,
            })
    }
}

/// Deserialises one already-parsed JSON value as `T`, naming the offending field.
pub fn parse_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = (path != "." && path != "?").then(|| path.clone());
        let inner = plain_words(error.into_inner().to_string());
        let detail = match &field {
            Some(field) => format!("field `{field}`: {inner}"),
            None => format!("item: {inner}"),
        };
        ApiError::BadJson { detail, field }
    })
}

/// A serde message with Rust's type names (`expected u64`) in the words an API user
/// knows (`expected a non-negative integer`).
fn plain_words(message: String) -> String {
    const NAMES: [(&str, &str); 12] = [
        ("u8", "a non-negative integer"),
        ("u16", "a non-negative integer"),
        ("u32", "a non-negative integer"),
        ("u64", "a non-negative integer"),
        ("usize", "a non-negative integer"),
        ("i8", "an integer"),
        ("i16", "an integer"),
        ("i32", "an integer"),
        ("i64", "an integer"),
        ("isize", "an integer"),
        ("f32", "a number"),
        ("f64", "a number"),
    ];
    let Some(at) = message.rfind("expected ") else {
        return message;
    };
    let (head, tail) = message.split_at(at + "expected ".len());
    let name_end = tail
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(tail.len());
    match NAMES.iter().find(|(rust, _)| *rust == &tail[..name_end]) {
        Some((_, words)) => format!("{head}{words}{}", &tail[name_end..]),
        None => message,
    }
}

/// Parses `bytes` as `T`, describing the first problem with its JSON path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadJson {
            detail: "request body is empty; send a JSON object such as {\"url\": \"https://example.com\"}".into(),
            field: None,
        });
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadJson {
            detail: "request body must be a JSON object such as {\"url\": \"https://example.com\"}"
                .into(),
            field: None,
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let syntax = inner.is_syntax() || inner.is_eof();
        let field = (path != "." && path != "?" && !syntax).then(|| path.clone());
        let inner = plain_words(inner.to_string());
        let detail = if syntax {
            format!("request body is not valid JSON: {inner}")
        } else if let Some(field) = &field {
            format!("field `{field}`: {inner}")
        } else {
            format!("request body: {inner}")
        };
        ApiError::BadJson { detail, field }
    })?;
    deserializer.end().map_err(|e| ApiError::BadJson {
        detail: format!("request body has data after the JSON value: {e}"),
        field: None,
    })?;
    Ok(value)
}

/// The API key a request presents (`Authorization: Bearer KEY` or `X-Api-Key: KEY`),
/// not yet checked; `None` when it presents none.
pub fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("Authorization header is not valid text"))?;
        return match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Ok(Some(token.trim()))
            }
            _ => Err(ApiError::Unauthorized(
                "Authorization header must be `Bearer <API key>`",
            )),
        };
    }
    match headers.get("x-api-key") {
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| ApiError::Unauthorized("X-Api-Key header is not valid text")),
        None => Ok(None),
    }
}

/// The user behind a request: the owner of an API key, or of a dashboard session.
pub struct Caller(pub User);

impl Caller {
    /// The user: the owner of what the caller creates.
    pub fn user(&self) -> UserId {
        self.0.id
    }

    /// Whose links a listing shows: the caller's own, or everyone's (`None`) for admins.
    pub fn visible_owner(&self) -> Option<UserId> {
        (!self.0.admin).then_some(self.0.id)
    }

    /// Whether the user is an admin (manages domains, sees every link).
    pub fn is_admin(&self) -> bool {
        self.0.admin
    }

    /// Whether this caller may see and change `owner`'s links.
    pub fn can_access(&self, owner: Option<UserId>) -> bool {
        self.0.admin || owner == Some(self.0.id)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Already read and checked by the rate-limit middleware.
        if let Some(super::ratelimit::AuthenticatedKey(key)) = parts.extensions.remove() {
            return Ok(Caller(key.user.clone()));
        }
        let secret = presented_key(&parts.headers)?.ok_or(ApiError::Unauthorized(
            "an API key is required: send `Authorization: Bearer <API key>`",
        ))?;
        match state.keys.lookup(&state.stores, secret).await? {
            Lookup::Usable(key) => Ok(Caller(key.user.clone())),
            Lookup::Revoked => Err(ApiError::Unauthorized("API key has been revoked")),
            Lookup::Expired => Err(ApiError::Unauthorized("API key has expired")),
            Lookup::Unknown => Err(ApiError::Unauthorized("API key is not valid")),
        }
    }
}

/// The `{code}` segment of an API path. A segment that is not valid UTF-8 after
/// percent-decoding cannot name a link, so it is a 404 like any unknown code rather
/// than axum's plain-text 400.
pub struct CodePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CodePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(code)) => Ok(Self(code)),
            Err(_) => Err(ApiError::NotFound("no link with this code".into())),
        }
    }
}

/// The `domain` query parameter of the link routes (`?domain=go.example.com`), which
/// addresses a link outside the default domain. Other parameters are left alone, as
/// these routes ignored query strings before domains existed.
pub struct DomainQuery(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for DomainQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(query) = parts.uri.query() else {
            return Ok(Self(None));
        };
        let mut domain = None;
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if name == "domain" {
                if domain.is_some() {
                    return Err(ApiError::InvalidParameter {
                        detail: "parameter `domain` is given more than once".into(),
                        parameter: "domain".into(),
                    });
                }
                domain = Some(value.into_owned());
            }
        }
        Ok(Self(domain))
    }
}

/// Who creates a link: an authenticated key, or nobody where `anonymous_create` is on.
/// A request that presents a key is always authenticated with it: a bad, revoked or
/// expired key is 401, never a silent anonymous create.
pub enum Creator {
    Key(Caller),
    /// No key; the client passed the anonymous-create limit for its address.
    Anonymous,
}

impl FromRequestParts<AppState> for Creator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let presented = presented_key(&parts.headers).map_err(IntoResponse::into_response)?;
        let authenticated = parts
            .extensions
            .get::<super::ratelimit::AuthenticatedKey>()
            .is_some();
        if presented.is_some() || authenticated {
            return Caller::from_request_parts(parts, state)
                .await
                .map(Creator::Key)
                .map_err(IntoResponse::into_response);
        }
        if !state.settings.anonymous_create {
            return Err(ApiError::Unauthorized(
                "an API key is required: send `Authorization: Bearer <API key>` \
                 (anonymous creation is disabled on this server)",
            )
            .into_response());
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        let client = super::ratelimit::request_client(state, peer, &parts.headers);
        if let Some(limited) = super::ratelimit::anonymous_create_limited(state, client).await {
            return Err(limited);
        }
        Ok(Creator::Anonymous)
    }
}

/// The pairs of a query string; one that cannot be read is a 400 naming `query`.
pub fn query_pairs(
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    params.map(|Query(pairs)| pairs).map_err(|e| {
        ApiError::invalid_parameter("query", format!("query string is not valid: {e}"))
    })
}

/// Query parameters taken strictly: each name known and given once, so that a typo
/// never silently means "no filter". Call [`StrictQuery::check`] on every name before
/// reading its value.
pub struct StrictQuery {
    known: &'static [&'static str],
    seen: HashSet<String>,
}

impl StrictQuery {
    pub fn new(known: &'static [&'static str]) -> Self {
        Self {
            known,
            seen: HashSet::new(),
        }
    }

    pub fn check(&mut self, name: &str) -> Result<(), ApiError> {
        if !self.seen.insert(name.to_owned()) {
            return Err(ApiError::invalid_parameter(
                name,
                format!("parameter `{name}` is given more than once"),
            ));
        }
        if !self.known.contains(&name) {
            return Err(ApiError::invalid_parameter(
                name,
                format!(
                    "unknown parameter `{name}`; known: {}",
                    self.known.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    #[test]
    fn rust_type_names_become_json_words() {
        assert_eq!(
            plain_words("invalid value: integer `-1`, expected u64".into()),
            "invalid value: integer `-1`, expected a non-negative integer"
        );
        assert_eq!(
            plain_words("invalid type: string \"x\", expected i64 at line 1 column 9".into()),
            "invalid type: string \"x\", expected an integer at line 1 column 9"
        );
        let unchanged = "invalid type: integer `5`, expected a string";
        assert_eq!(plain_words(unchanged.into()), unchanged);
        assert_eq!(plain_words("expected u640".into()), "expected u640");
    }
}
