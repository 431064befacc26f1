//! What authentication and rate limiting add to an API request, measured in-process
//! (no sockets, so the comparison is not drowned in network noise), on
//! `GET /api/v1/links/{code}` with a user's key:
//!
//! - `request`: the whole request through the router, rate limits on;
//! - `auth`: what the API middleware does to authenticate it (read the header, hash the
//!   key, look it up in the key cache);
//! - `limit`: what it does to rate-limit it (the token bucket, the `RateLimit-*`
//!   headers);
//! - `handler`: `get_link` called directly with an already-authenticated caller, no
//!   routing: what is left of a request without any of the framework around it.
//!
//! The overhead reported is (auth + limit) / (request − auth − limit).
//!
//! Run: `cargo bench --bench auth_overhead` (see docs/benchmarks.md).

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::Request;
use axum::response::IntoResponse;
use hop::config::{Config, Overrides};
use hop::http::extract::{Caller, CodePath};
use hop::http::{AppState, links};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::time::Instant;
use tower::ServiceExt;

const LINKS: usize = 1_000;
const ROUNDS: usize = 7;
const PER_ROUND: usize = 20_000;

struct Setup {
    state: AppState,
    _background: hop::app::Background,
    _dir: tempfile::TempDir,
    secret: String,
    codes: Vec<String>,
}

async fn setup(limit_per_minute: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("HOP_LOG_LEVEL".to_owned(), "warn".to_owned()),
        (
            "HOP_RATE_LIMIT_USER_PER_MINUTE".to_owned(),
            limit_per_minute.to_owned(),
        ),
    ];
    let overrides = Overrides {
        data_dir: Some(dir.path().to_owned()),
        ..Overrides::default()
    };
    let config = Config::load(None, env, &overrides).unwrap();
    let (state, background) = hop::app::build(&config).await.unwrap();
    let user = state.stores.keys.insert_user("bench", false).await.unwrap();
    let (_, secret) = hop::app::issue_key(&state.stores, &user, "bench", None)
        .await
        .unwrap();
    let mut codes = Vec::with_capacity(LINKS);
    for i in 0..LINKS {
        let request = hop::domain::link::LinkRequest {
            url: format!("https://example.com/bench/{i}"),
            ..Default::default()
        };
        let site = hop::hosts::Site::Default;
        let link = links::create(&state, Some(user.id), site, request)
            .await
            .unwrap();
        codes.push(link.code);
    }
    Setup {
        state,
        _background: background,
        _dir: dir,
        secret,
        codes,
    }
}

/// Nanoseconds per call of `get_link` with the caller already known.
async fn handler(setup: &Setup, n: usize) -> f64 {
    let key = setup
        .state
        .stores
        .keys
        .key_by_hash(&hop::domain::key::hash(&setup.secret))
        .await
        .unwrap()
        .unwrap();
    let start = Instant::now();
    for i in 0..n {
        let code = setup.codes[i % LINKS].clone();
        let response = links::get_link(
            State(setup.state.clone()),
            Caller(key.user.clone()),
            CodePath(code),
            hop::http::extract::DomainQuery(None),
        )
        .await
        .into_response();
        let body = response.into_body().collect().await.unwrap();
        std::hint::black_box(body);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per authentication of a request's key, as the API middleware does it.
async fn auth(setup: &Setup, n: usize) -> f64 {
    let mut headers = axum::http::HeaderMap::new();
    let value = format!("Bearer {}", setup.secret);
    headers.insert("authorization", value.parse().unwrap());
    let start = Instant::now();
    for _ in 0..n {
        let secret = hop::http::extract::presented_key(&headers)
            .unwrap()
            .unwrap();
        let found = setup.state.keys.lookup(&setup.state.stores, secret).await;
        assert!(matches!(found, Ok(hop::http::auth::Lookup::Usable(_))));
        std::hint::black_box(found.ok());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per rate-limit check of a user's key, headers included.
fn limit(setup: &Setup, n: usize) -> f64 {
    let key = hop::ratelimit::BucketKey::Key(hop::domain::link::KeyId(1));
    // A response's header map already exists (with its content type) when the
    // middleware adds to it; the same map is reused so its allocation is not counted.
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let start = Instant::now();
    for _ in 0..n {
        let decision = setup
            .state
            .limiter
            .check(key, 1_000_000_000, Instant::now());
        hop::http::ratelimit::add_headers(&mut headers, &decision);
        std::hint::black_box(&headers);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per `GET /api/v1/links/{code}` through the router.
async fn routed(setup: &Setup, n: usize) -> f64 {
    let router = hop::http::router(setup.state.clone());
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let auth = format!("Bearer {}", setup.secret);
    let start = Instant::now();
    for i in 0..n {
        let mut request = Request::get(format!("/api/v1/links/{}", setup.codes[i % LINKS]))
            .header("authorization", &auth)
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap();
        std::hint::black_box(body);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // High enough never to refuse, so every request pays for the bucket check.
        let setup = setup("1000000000").await;
        handler(&setup, PER_ROUND).await;
        routed(&setup, PER_ROUND).await;
        let mut rounds = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        // Interleaved rounds, so drift on a shared machine hits every variant alike.
        for _ in 0..ROUNDS {
            rounds[0].push(routed(&setup, PER_ROUND).await);
            rounds[1].push(auth(&setup, PER_ROUND).await);
            rounds[2].push(limit(&setup, PER_ROUND));
            rounds[3].push(handler(&setup, PER_ROUND).await);
        }
        let [request, auth, limit, handler] = rounds.map(median);
        let rest = request - auth - limit;
        println!(
            "GET /api/v1/links/{{code}}, {ROUNDS} rounds of {PER_ROUND}, medians per request:"
        );
        println!("  whole request through the router:   {request:>7.0} ns");
        println!("  authentication (cached key):        {auth:>7.0} ns");
        println!("  rate limiting (bucket + headers):   {limit:>7.0} ns");
        println!("  handler alone (no router):          {handler:>7.0} ns");
        println!(
            "  auth + rate limiting add {:.1}% to the rest of the request ({rest:.0} ns)",
            (auth + limit) / rest * 100.0
        );
    });
}
