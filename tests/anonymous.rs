//! Anonymous creation: off by default; when on, creates without a key make links
//! with no owner, under their own per-address limit.

mod common;

use common::{TestServer, create_key};
use serde_json::{Value, json};

async fn post_anonymous(server: &TestServer, path: &str, body: Value) -> reqwest::Response {
    server
        .client
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn off_by_default_with_a_clear_401() {
    let server = TestServer::start().await;
    let response = post_anonymous(
        &server,
        "/api/v1/shorten",
        json!({"url": "https://example.com/a"}),
    )
    .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("anonymous creation is disabled"),
        "{body}"
    );
    assert_eq!(server.link_rows(), 0);
}

#[tokio::test]
async fn anonymous_links_belong_to_nobody_and_are_limited() {
    let server = TestServer::start_with(&[
        ("HOP_ANONYMOUS_CREATE", "true"),
        ("HOP_RATE_LIMIT_ANONYMOUS_CREATE_PER_MINUTE", "4"),
    ])
    .await;
    let user = create_key(&server.state, "user", false).await;

    // 1: the short form.
    let shortened = post_anonymous(
        &server,
        "/api/v1/shorten",
        json!({"url": "https://example.com/anon"}),
    )
    .await;
    assert_eq!(shortened.status(), 201);
    let shortened: Value = shortened.json().await.unwrap();
    let code = shortened["code"].as_str().unwrap().to_owned();
    let redirect = server.get(&format!("/{code}")).await;
    assert_eq!(redirect.headers()["location"], "https://example.com/anon");

    // 2: the full form, with the fields allowed.
    let created = post_anonymous(
        &server,
        "/api/v1/links",
        json!({"url": "https://example.com/anon2", "title": "t", "maxClicks": 5}),
    )
    .await;
    assert_eq!(created.status(), 201);

    // 3: an alias is refused, naming the field.
    let refused = post_anonymous(
        &server,
        "/api/v1/links",
        json!({"url": "https://example.com/x", "alias": "mine"}),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "urn:hop:problem:anonymous-not-allowed");
    assert_eq!(body["field"], "alias");

    // A bad or revoked key is never downgraded to anonymous; nor are these counted.
    let bad = server
        .client
        .post(server.url("/api/v1/shorten"))
        .bearer_auth("hop_notarealkey")
        .json(&json!({"url": "https://example.com/x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let revoked = create_key(&server.state, "gone", false).await;
    server
        .state
        .stores
        .keys
        .revoke_key(&revoked[..hop::domain::key::VISIBLE_PREFIX_LEN])
        .await
        .unwrap();
    let response = server
        .create_as(&revoked, json!({"url": "https://example.com/x"}))
        .await;
    assert_eq!(response.status(), 401);

    // Bulk still needs a key; Idempotency-Key needs one too.
    let bulk = post_anonymous(
        &server,
        "/api/v1/links/bulk",
        json!({"links": [{"url": "https://example.com/b"}]}),
    )
    .await;
    assert_eq!(bulk.status(), 401);
    let idempotent = server
        .client
        .post(server.url("/api/v1/shorten"))
        .header("idempotency-key", "same-for-everyone")
        .json(&json!({"url": "https://example.com/i"}))
        .send()
        .await
        .unwrap();
    assert_eq!(idempotent.status(), 400);

    // 4 allowed, then 429 with Retry-After.
    let fourth = post_anonymous(
        &server,
        "/api/v1/shorten",
        json!({"url": "https://example.com/4"}),
    )
    .await;
    assert_eq!(fourth.status(), 201);
    let over = post_anonymous(
        &server,
        "/api/v1/shorten",
        json!({"url": "https://example.com/5"}),
    )
    .await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    // The headers describe the bucket that refused: 4 creates a minute, none left.
    assert_eq!(over.headers()["ratelimit-limit"], "4");
    assert_eq!(over.headers()["ratelimit-remaining"], "0");
    // An API answer, so problem+json even for a client that accepts anything.
    assert_eq!(
        over.headers()["content-type"],
        "application/problem+json",
        "{:?}",
        over.headers()
    );
    // Keys have their own allowance.
    let with_key = server
        .create_as(&user, json!({"url": "https://example.com/k"}))
        .await;
    assert_eq!(with_key.status(), 201);

    // Admins see and manage anonymous links; users do not.
    assert_eq!(server.get_link(&code).await.status(), 200);
    let as_user = server
        .client
        .get(server.url(&format!("/api/v1/links/{code}")))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(as_user.status(), 404);
    let page: Value = server
        .client
        .get(server.url("/api/v1/links"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["code"] != code.as_str())
    );
    let page: Value = server
        .client
        .get(server.url("/api/v1/links"))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["code"] == code.as_str())
    );
}
