//! The published contract: `GET /openapi.json` (OpenAPI 3.1, generated from the
//! handlers' own annotations) and `GET /docs` (Swagger UI, whose assets are compiled
//! into the binary; nothing is fetched at build or run time).
//!
//! Each handler documents its own success and specific error responses with
//! `#[utoipa::path]`; the responses every API operation shares (401, 429, 500, 503)
//! are added here by [`SharedResponses`], so they cannot be forgotten on a new route.

use super::problem::Problem;
use super::{AppState, domains, health, links, protected, qr, redirect, stats};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::OnceLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse};
use utoipa_swagger_ui::SwaggerUi;

/// The request is not valid (a malformed body, parameter or header); `field` names
/// the part at fault.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadRequest(#[allow(dead_code)] Problem<'static>);

/// The key may not do this (an admin's task), or an anonymous request set a field
/// only keys may set.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Forbidden(#[allow(dead_code)] Problem<'static>);

/// No such link (or one owned by someone else, which is indistinguishable).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotFound(#[allow(dead_code)] Problem<'static>);

/// The alias is already taken, or a request with this `Idempotency-Key` is still
/// being processed.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Conflict(#[allow(dead_code)] Problem<'static>);

/// The body is larger than the configured limit.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct PayloadTooLarge(#[allow(dead_code)] Problem<'static>);

/// This `Idempotency-Key` was already used with a different request.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct IdempotencyKeyReused(#[allow(dead_code)] Problem<'static>);

/// The document, built once.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hop",
        description = "A self-hosted URL shortener. Every error is an RFC 9457 \
            `application/problem+json` document whose `type` is `urn:hop:problem:<slug>`. \
            API requests authenticate with `Authorization: Bearer KEY` or `X-Api-Key: KEY` \
            (keys come from `hop keys create`). API responses carry `RateLimit-Limit`, \
            `RateLimit-Remaining` and `RateLimit-Reset`; a `429` adds `Retry-After`."
    ),
    paths(
        links::shorten,
        links::create_link,
        links::list_links,
        links::create_links_bulk,
        links::get_link,
        links::update_link,
        links::delete_link,
        links::list_tags,
        domains::list_domains,
        domains::add_domain,
        domains::remove_domain,
        stats::link_stats,
        stats::all_stats,
        stats::link_visits,
        stats::link_live,
        qr::link_qr,
        redirect::follow_link,
        protected::submit_password,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    components(
        schemas(links::ListOrder, qr::QrFormat),
        responses(
            BadRequest,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            IdempotencyKeyReused
        )
    ),
    modifiers(&SharedResponses),
    tags(
        (name = "links", description = "Create, list, change and delete short links"),
        (name = "domains", description = "The hosts links can live under (admins manage them)"),
        (name = "analytics", description = "Visit stats, raw visits and live visits"),
        (name = "redirect", description = "Following short links"),
        (name = "health", description = "Liveness and readiness for load balancers"),
    )
)]
struct ApiDoc;

/// Adds the security schemes, and to every authenticated operation the responses all
/// of them share; to every operation the 5xx responses.
struct SharedResponses;

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::Integer)
                .minimum(Some(0)),
        ))
        .description(Some(description))
        .build()
}

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
        let mut too_many = problem_response(
            "Over a rate limit: retry after `Retry-After` seconds. For redirects the limit is per \
             client address; for the API per key (or per address without one).",
        );
        for (name, description) in [
            ("Retry-After", "Seconds to wait before retrying."),
            ("RateLimit-Limit", "Requests allowed per minute."),
            (
                "RateLimit-Remaining",
                "Requests left in the current window.",
            ),
            ("RateLimit-Reset", "Seconds until the bucket is full again."),
        ] {
            too_many
                .headers
                .insert(name.to_owned(), RefOr::T(integer_header(description)));
        }
        let shared = [
            (
                "Unauthorized",
                problem_response("No API key, or a key that is unknown, expired or revoked."),
            ),
            ("TooManyRequests", too_many),
            (
                "InternalError",
                problem_response(
                    "An unexpected failure; the detail is generic and the cause is logged.",
                ),
            ),
            (
                "Unavailable",
                problem_response("The database is not reachable right now; retry shortly."),
            ),
        ];
        for (name, response) in shared {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(response));
        }
        link_created_links(openapi);
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/api/");
            for operation in operations(item) {
                let mut add = |status: &str, name: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                };
                if api {
                    add("401", "Unauthorized");
                    add("429", "TooManyRequests");
                }
                add("500", "InternalError");
                add("503", "Unavailable");
                if api {
                    operation.security = Some(vec![
                        utoipa::openapi::security::SecurityRequirement::new(
                            "bearer",
                            Vec::<String>::new(),
                        ),
                        utoipa::openapi::security::SecurityRequirement::new(
                            "apiKey",
                            Vec::<String>::new(),
                        ),
                    ]);
                }
            }
        }
    }
}

/// Links from each create's `201` to the operations on the new link, so clients (and
/// stateful API testers) know how the code flows from one call to the next.
fn link_created_links(openapi: &mut utoipa::openapi::OpenApi) {
    let follow_ups = [
        ("GetLink", "get_link"),
        ("UpdateLink", "update_link"),
        ("DeleteLink", "delete_link"),
        ("LinkQr", "link_qr"),
    ];
    for path in ["/api/v1/links", "/api/v1/shorten"] {
        let Some(created) = openapi
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut())
            .and_then(|post| post.responses.responses.get_mut("201"))
        else {
            continue;
        };
        if let RefOr::T(created) = created {
            for (name, operation) in follow_ups {
                let link = utoipa::openapi::link::LinkBuilder::new()
                    .operation_id(operation)
                    .parameter("code", "$response.body#/code")
                    .build();
                created.links.insert(name.to_owned(), RefOr::T(link));
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// `GET /openapi.json` and `GET /docs`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .merge(
            Router::<AppState>::from(
                SwaggerUi::new("/docs").config(
                    utoipa_swagger_ui::Config::from("/openapi.json").try_it_out_enabled(true),
                ),
            )
            .layer(axum::middleware::map_response(secure_docs)),
        )
}

/// Swagger UI's pages load only its own scripts and styles (compiled into the binary)
/// and talk only to this server; it is never framed.
async fn secure_docs(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    super::secure_common(headers);
    response
}

/// The document, serialised once.
async fn openapi_json() -> Response {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    let body = JSON.get_or_init(|| {
        document()
            .to_json()
            .expect("the OpenAPI document serialises")
            .into_bytes()
    });
    let mut response = body.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
