//! The HTTP API and redirects, driven over real HTTP against a server on a loopback port.

mod common;

use common::{TestServer, create_key, eventually};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn shorten_answers_the_seed_shape_and_redirects() {
    let server = TestServer::start().await;
    let response = server
        .client
        .post(server.url("/api/v1/shorten"))
        .bearer_auth(&server.admin_key)
        .json(&json!({"url": "https://example.com/very/long/url?x=1&y=%20#frag"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let code = body["code"].as_str().unwrap();
    assert_eq!(code.len(), 7);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(body["shortUrl"], format!("{}/{code}", server.base));
    assert_eq!(
        body["url"],
        "https://example.com/very/long/url?x=1&y=%20#frag"
    );
    assert_eq!(body.as_object().unwrap().len(), 3);

    let redirect = server.get(&format!("/{code}")).await;
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        redirect.headers()["location"],
        "https://example.com/very/long/url?x=1&y=%20#frag"
    );
    assert_eq!(redirect.headers()["cache-control"], "private, max-age=90");
}

#[tokio::test]
async fn full_create_get_and_delete() {
    let server = TestServer::start().await;
    let created = server
        .create_ok(json!({
            "url": "https://example.com/launch",
            "alias": "Launch-2030",
            "title": "Launch",
            "expiresAt": "2099-01-01T00:00:00Z",
            "maxClicks": 10,
            "redirectType": 308
        }))
        .await;
    assert_eq!(created["code"], "Launch-2030");
    assert_eq!(created["shortUrl"], format!("{}/Launch-2030", server.base));
    assert_eq!(created["title"], "Launch");
    assert_eq!(created["expiresAt"], "2099-01-01T00:00:00.000Z");
    assert_eq!(created["maxClicks"], 10);
    assert_eq!(created["redirectType"], 308);
    assert_eq!(created["clicks"], 0);
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));

    let fetched: Value = server.get_link("Launch-2030").await.json().await.unwrap();
    assert_eq!(fetched, created);
    // Aliases are case-sensitive.
    assert_eq!(server.get("/launch-2030").await.status(), 404);
    assert_eq!(server.get("/Launch-2030").await.status(), 308);

    let deleted = server
        .client
        .delete(server.url("/api/v1/links/Launch-2030"))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(server.get("/Launch-2030").await.status(), 404);
    assert_eq!(server.get_link("Launch-2030").await.status(), 404);
    // A deleted code is never handed to a new target.
    let again = server
        .create(json!({"url": "https://example.com/other", "alias": "Launch-2030"}))
        .await;
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn every_redirect_type() {
    let server = TestServer::start().await;
    for status in [301u16, 302, 307, 308] {
        let link = server
            .create_ok(
                json!({"url": format!("https://example.com/{status}"), "redirectType": status}),
            )
            .await;
        let response = server
            .get(&format!("/{}", link["code"].as_str().unwrap()))
            .await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["location"],
            format!("https://example.com/{status}")
        );
    }
}

#[tokio::test]
async fn head_answers_like_get_without_counting() {
    let server = TestServer::start().await;
    let link = server
        .create_ok(json!({"url": "https://example.com/h", "alias": "headed", "maxClicks": 1}))
        .await;
    for _ in 0..3 {
        let head = server
            .client
            .head(server.url("/headed"))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 302);
        assert_eq!(head.headers()["location"], "https://example.com/h");
    }
    // The single allowed click is still there after three HEADs.
    assert_eq!(server.get("/headed").await.status(), 302);
    assert_eq!(server.get("/headed").await.status(), 410);
    let head = server
        .client
        .head(server.url("/headed"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 410);
    assert!(
        eventually(Duration::from_secs(2), || async {
            let body: Value = server.get_link("headed").await.json().await.unwrap();
            body["clicks"] == 1
        })
        .await
    );
    assert_eq!(link["maxClicks"], 1);
}

#[tokio::test]
async fn clicks_are_counted_within_two_seconds_and_kept_per_hour() {
    // Per hour in the stats: `visit_hourly` holds every stored visit by the hour.
    let server = TestServer::start().await;
    let link = server
        .create_ok(json!({"url": "https://example.com/c"}))
        .await;
    let code = link["code"].as_str().unwrap().to_owned();
    for _ in 0..25 {
        assert_eq!(server.get(&format!("/{code}")).await.status(), 302);
    }
    let counted = eventually(Duration::from_secs(2), || async {
        let body: Value = server.get_link(&code).await.json().await.unwrap();
        body["clicks"] == 25
    })
    .await;
    assert!(counted, "clicks not reflected within 2 s");
    let hourly = eventually(Duration::from_secs(2), || async {
        common::count_rows(
            server.dir.path(),
            "SELECT CAST(COALESCE(SUM(humans + bots), 0) AS BIGINT) FROM visit_hourly",
        ) == 25
    })
    .await;
    assert!(hourly, "visits not in the hourly stats within 2 s");
}

#[tokio::test]
async fn unknown_expired_and_exhausted_links() {
    let server = TestServer::start().await;
    // Unknown: a page for browsers, problem+json for programs.
    let page = server.get("/nope123").await;
    assert_eq!(page.status(), 404);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let problem = server
        .client
        .get(server.url("/nope123"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(problem.status(), 404);
    assert_eq!(
        problem.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = problem.json().await.unwrap();
    assert_eq!(body["type"], "urn:hop:problem:not-found");

    // Expired: stored directly with a past expiry (the API refuses to create one).
    server
        .state
        .stores
        .links
        .insert_link(hop::store::NewLink {
            id: server.state.codes.next_id().await.unwrap(),
            domain: String::new(),
            code: "old".into(),
            url: "https://example.com/old".into(),
            title: None,
            created_at: 0,
            expires_at: Some(hop::domain::link::now_ms() - 1000),
            max_clicks: None,
            redirect: hop::domain::link::RedirectType::Found,
            owner: None,
            tags: Vec::new(),
            password_hash: None,
        })
        .await
        .unwrap();
    for _ in 0..2 {
        // The second answer comes from the cache and must still be 410.
        let gone = server
            .client
            .get(server.url("/old"))
            .header("accept", "application/problem+json")
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 410);
        let body: Value = gone.json().await.unwrap();
        assert_eq!(body["type"], "urn:hop:problem:link-expired");
    }
    let gone_page = server.get("/old").await;
    assert_eq!(gone_page.status(), 410);
    assert!(
        gone_page
            .text()
            .await
            .unwrap()
            .contains("<h1>Link has expired</h1>")
    );

    // Click limit.
    server
        .create_ok(json!({"url": "https://example.com/twice", "alias": "twice", "maxClicks": 2}))
        .await;
    let statuses: Vec<u16> = futures_statuses(&server, "/twice", 5).await;
    assert_eq!(statuses.iter().filter(|s| **s == 302).count(), 2);
    assert_eq!(statuses.iter().filter(|s| **s == 410).count(), 3);
}

async fn futures_statuses(server: &TestServer, path: &str, n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let request = server.client.get(server.url(path));
        tasks.push(tokio::spawn(async move {
            request.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn an_expiry_is_checked_on_cached_links() {
    let server = TestServer::start().await;
    let soon = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(800);
    let expires_at = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    server
        .create_ok(
            json!({"url": "https://example.com/soon", "alias": "soon", "expiresAt": expires_at}),
        )
        .await;
    assert_eq!(server.get("/soon").await.status(), 302);
    assert!(
        eventually(Duration::from_secs(3), || async {
            server.get("/soon").await.status() == 410
        })
        .await
    );
}

#[tokio::test]
async fn unknown_codes_are_cached_briefly_and_creation_replaces_the_miss() {
    let server = TestServer::start().await;
    assert_eq!(server.get("/fresh").await.status(), 404);
    assert_eq!(server.get("/fresh").await.status(), 404);
    server
        .create_ok(json!({"url": "https://example.com/fresh", "alias": "fresh"}))
        .await;
    // No waiting for the negative entry to expire.
    assert_eq!(server.get("/fresh").await.status(), 302);
}

/// One bad request: the body, the expected status, problem type and field.
struct Bad {
    body: &'static str,
    status: u16,
    kind: &'static str,
    field: Option<&'static str>,
}

#[tokio::test]
async fn bad_input_gets_a_precise_problem_and_changes_nothing() {
    let server = TestServer::start().await;
    server
        .create_ok(json!({"url": "https://example.com/x", "alias": "taken"}))
        .await;
    let before = server.link_rows();
    let own = format!(r#"{{"url": "{}/abc"}}"#, server.base);
    let own: &'static str = Box::leak(own.into_boxed_str());
    let long = format!(r#"{{"url": "https://example.com/{}"}}"#, "a".repeat(5000));
    let long: &'static str = Box::leak(long.into_boxed_str());
    let cases = [
        Bad {
            body: "",
            status: 400,
            kind: "invalid-body",
            field: None,
        },
        Bad {
            body: "not json",
            status: 400,
            kind: "invalid-body",
            field: None,
        },
        Bad {
            body: "[1,2]",
            status: 400,
            kind: "invalid-body",
            field: None,
        },
        Bad {
            body: r#"{"url": 5}"#,
            status: 400,
            kind: "invalid-body",
            field: Some("url"),
        },
        Bad {
            body: r#"{"title": "x"}"#,
            status: 400,
            kind: "invalid-body",
            field: None,
        },
        Bad {
            body: r#"{"url": "https://a.example", "maxClicks": "3"}"#,
            status: 400,
            kind: "invalid-body",
            field: Some("maxClicks"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "expires_at": "x"}"#,
            status: 400,
            kind: "invalid-body",
            field: Some("expires_at"),
        },
        Bad {
            body: r#"{"url": "https://a.example"} trailing"#,
            status: 400,
            kind: "invalid-body",
            field: None,
        },
        Bad {
            body: r#"{"url": "javascript:alert(1)"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "data:text/html,<b>x</b>"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "file:///etc/passwd"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "example.com"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "https://"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "https://exa mple.com"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "https://example.com/\u0000"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "https://example.com/\t"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "https://u:p@example.com"}"#,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: own,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: long,
            status: 400,
            kind: "invalid-url",
            field: Some("url"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "alias": "a/b"}"#,
            status: 400,
            kind: "invalid-alias",
            field: Some("alias"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "alias": ""}"#,
            status: 400,
            kind: "invalid-alias",
            field: Some("alias"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "alias": "healthz"}"#,
            status: 400,
            kind: "invalid-alias",
            field: Some("alias"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "alias": "API"}"#,
            status: 400,
            kind: "invalid-alias",
            field: Some("alias"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "alias": "taken"}"#,
            status: 409,
            kind: "alias-taken",
            field: Some("alias"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "expiresAt": "2001-01-01T00:00:00Z"}"#,
            status: 400,
            kind: "invalid-expiry",
            field: Some("expiresAt"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "expiresAt": "next week"}"#,
            status: 400,
            kind: "invalid-expiry",
            field: Some("expiresAt"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "maxClicks": 0}"#,
            status: 400,
            kind: "invalid-max-clicks",
            field: Some("maxClicks"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "maxClicks": -1}"#,
            status: 400,
            kind: "invalid-max-clicks",
            field: Some("maxClicks"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "redirectType": 303}"#,
            status: 400,
            kind: "invalid-redirect-type",
            field: Some("redirectType"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "redirectType": 70000}"#,
            status: 400,
            kind: "invalid-body",
            field: Some("redirectType"),
        },
        Bad {
            body: r#"{"url": "https://a.example", "title": "a\u0007b"}"#,
            status: 400,
            kind: "invalid-title",
            field: Some("title"),
        },
    ];
    for case in &cases {
        for path in ["/api/v1/links", "/api/v1/shorten"] {
            let response = server
                .client
                .post(server.url(path))
                .bearer_auth(&server.admin_key)
                .header("content-type", "application/json")
                .body(case.body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{}",
                case.body
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(status, case.status, "{} → {problem}", case.body);
            assert_eq!(problem["status"], case.status);
            assert_eq!(
                problem["type"],
                format!("urn:hop:problem:{}", case.kind),
                "{} → {problem}",
                case.body
            );
            assert_eq!(
                problem["field"].as_str(),
                case.field,
                "{} → {problem}",
                case.body
            );
            assert!(!problem["detail"].as_str().unwrap().is_empty());
        }
    }
    assert_eq!(server.link_rows(), before, "a bad request stored something");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = TestServer::start_with(&[("HOP_MAX_BODY_BYTES", "1024")]).await;
    let body = json!({"url": "https://example.com", "title": "x".repeat(2000)});
    let response = server.create(body).await;
    assert_eq!(response.status(), 413);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:hop:problem:body-too-large");
    assert!(problem["detail"].as_str().unwrap().contains("1024"));
    assert_eq!(server.link_rows(), 0);
}

#[tokio::test]
async fn authentication_and_ownership() {
    let server = TestServer::start().await;
    let alice = create_key(&server.state, "alice", false).await;
    let bob = create_key(&server.state, "bob", false).await;
    let body = json!({"url": "https://example.com/a"});
    let post = |key: Option<&str>, header: &'static str| {
        let mut request = server.client.post(server.url("/api/v1/links")).json(&body);
        if let Some(key) = key {
            request = match header {
                "bearer" => request.bearer_auth(key),
                "x-api-key" => request.header("x-api-key", key),
                _ => request.header("authorization", key.to_owned()),
            };
        }
        request.send()
    };
    for (key, header) in [
        (None, "bearer"),
        (
            Some("hop_wrongwrongwrongwrongwrongwrongwrongwrong"),
            "bearer",
        ),
        (Some("short"), "bearer"),
        (Some(alice.as_str()), "raw"),
    ] {
        let response = post(key, header).await.unwrap();
        assert_eq!(response.status(), 401, "{key:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:hop:problem:unauthorized");
        assert!(!problem["detail"].to_string().contains("hop_wrong"));
    }
    let alice_link: Value = post(Some(&alice), "x-api-key")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = alice_link["code"].as_str().unwrap();
    let get_as = |key: &str| {
        server
            .client
            .get(server.url(&format!("/api/v1/links/{code}")))
            .bearer_auth(key.to_owned())
            .send()
    };
    assert_eq!(get_as(&alice).await.unwrap().status(), 200);
    assert_eq!(get_as(&server.admin_key).await.unwrap().status(), 200);
    // Someone else's link does not exist for bob, for reading or deleting.
    assert_eq!(get_as(&bob).await.unwrap().status(), 404);
    let delete = server
        .client
        .delete(server.url(&format!("/api/v1/links/{code}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    assert_eq!(server.get(&format!("/{code}")).await.status(), 302);
    assert_eq!(server.get("/api/v1/links/x").await.status(), 401);
}

#[tokio::test]
async fn concurrent_creates_get_distinct_codes_that_all_resolve() {
    let server = TestServer::start().await;
    let clients = 64;
    let per_client = 40;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = server.client.clone();
        let url = server.url("/api/v1/links");
        let key = server.admin_key.clone();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..per_client {
                let target = format!("https://example.com/{c}/{i}");
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"url": target}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                let body: Value = response.json().await.unwrap();
                made.push((body["code"].as_str().unwrap().to_owned(), target));
            }
            made
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let codes: HashSet<&str> = all.iter().map(|(code, _)| code.as_str()).collect();
    assert_eq!(codes.len(), clients * per_client);
    for (code, target) in &all {
        let response = server.get(&format!("/{code}")).await;
        assert_eq!(response.status(), 302);
        assert_eq!(response.headers()["location"], target.as_str());
    }
    assert_eq!(server.link_rows(), (clients * per_client) as i64);
}

#[tokio::test]
async fn non_ascii_urls_are_stored_in_header_safe_form() {
    let server = TestServer::start().await;
    let link = server
        .create_ok(json!({"url": "https://bücher.example/straße?q=ü"}))
        .await;
    assert_eq!(
        link["url"],
        "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"
    );
    let response = server
        .get(&format!("/{}", link["code"].as_str().unwrap()))
        .await;
    assert_eq!(
        response.headers()["location"],
        "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"
    );
}

#[tokio::test]
async fn health_and_routing_errors() {
    let server = TestServer::start().await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    let ready: Value = server.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    // Without redis_url there is no Redis to report.
    assert!(ready["checks"].get("redis").is_none(), "{ready}");
    let missing = server
        .client
        .get(server.url("/api/v1/nothing"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let wrong_method = server
        .client
        .put(server.url("/api/v1/links"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );
    // Markup in a path is escaped on the HTML error page.
    let page = server.get("/a%3Cscript%3Ex").await.text().await.unwrap();
    assert!(!page.contains("<script>"));
}

#[tokio::test]
async fn no_input_produces_a_server_error() {
    use rand::{Rng, SeedableRng};
    let server = TestServer::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e300),
        json!(18446744073709551616u128 as f64),
        json!(""),
        json!("ä\u{0}\u{202e}"),
        json!("https://example.com/ok"),
        json!("http://[::1]:99999/"),
        json!("https://example.com/%zz"),
        json!([]),
        json!({}),
        json!("2030-02-30T00:00:00Z"),
        json!(9007199254740993i64),
    ];
    let fields = [
        "url",
        "alias",
        "title",
        "expiresAt",
        "maxClicks",
        "redirectType",
        "extra",
    ];
    for _ in 0..400 {
        let mut body = serde_json::Map::new();
        for field in fields {
            if rng.random_bool(0.5) {
                body.insert(
                    field.into(),
                    values[rng.random_range(0..values.len())].clone(),
                );
            }
        }
        let response = server.create(Value::Object(body.clone())).await;
        assert!(
            response.status().as_u16() < 500,
            "{body:?} → {}",
            response.status()
        );
        assert!(
            response.status() == 201
                || response.headers()["content-type"] == "application/problem+json"
        );
    }
    for _ in 0..200 {
        let length = rng.random_range(0..80);
        let bytes: Vec<u8> = (0..length).map(|_| rng.random()).collect();
        let response = server
            .client
            .post(server.url("/api/v1/shorten"))
            .bearer_auth(&server.admin_key)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        let path: String = (0..rng.random_range(1..20))
            .map(|_| {
                let c = rng.random_range(0x21u8..0x7f);
                if c == b'#' || c == b'?' {
                    'x'
                } else {
                    char::from(c)
                }
            })
            .collect();
        for prefix in ["/", "/api/v1/links/"] {
            let url = format!("{}{prefix}{}", server.base, path.trim_start_matches('/'));
            let Ok(response) = server
                .client
                .get(&url)
                .bearer_auth(&server.admin_key)
                .send()
                .await
            else {
                continue; // not a URL reqwest will send
            };
            assert!(
                response.status().as_u16() < 500,
                "{url} → {}",
                response.status()
            );
        }
    }
    for path in ["/%FF", "/api/v1/links/%FF", "/%00"] {
        let response = server
            .client
            .get(server.url(path))
            .bearer_auth(&server.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn patch_changes_what_it_names_and_applies_at_once() {
    let server = TestServer::start().await;
    let created = server
        .create_ok(json!({
            "url": "https://example.com/old",
            "alias": "patchy",
            "title": "Old",
            "expiresAt": "2099-01-01T00:00:00Z",
            "maxClicks": 50
        }))
        .await;
    // Cached by the create and by a redirect.
    assert_eq!(
        server.get("/patchy").await.headers()["location"],
        "https://example.com/old"
    );
    let patch = |body: Value, key: String| {
        server
            .client
            .patch(server.url("/api/v1/links/patchy"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let admin = server.admin_key.clone();

    let response = patch(
        json!({"url": "https://example.com/new", "title": null, "redirectType": 307}),
        admin.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["url"], "https://example.com/new");
    assert_eq!(updated["title"], Value::Null);
    assert_eq!(updated["redirectType"], 307);
    // Untouched fields stay.
    assert_eq!(updated["expiresAt"], created["expiresAt"]);
    assert_eq!(updated["maxClicks"], 50);
    assert_eq!(updated["createdAt"], created["createdAt"]);
    let redirect = server.get("/patchy").await;
    assert_eq!(redirect.status(), 307);
    assert_eq!(redirect.headers()["location"], "https://example.com/new");

    let cleared: Value = patch(json!({"expiresAt": null, "maxClicks": null}), admin.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["expiresAt"], Value::Null);
    assert_eq!(cleared["maxClicks"], Value::Null);

    let disabled: Value = patch(json!({"disabled": true}), admin.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disabled["disabled"], true);
    let gone = server
        .client
        .get(server.url("/patchy"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    let problem: Value = gone.json().await.unwrap();
    assert_eq!(problem["type"], "urn:hop:problem:link-disabled");
    patch(json!({"disabled": false}), admin.clone())
        .await
        .unwrap();
    assert_eq!(server.get("/patchy").await.status(), 307);

    // Bad changes are refused whole.
    for (body, field) in [
        (json!({"url": "javascript:alert(1)"}), "url"),
        (
            json!({"url": "https://example.com/ok", "maxClicks": 0}),
            "maxClicks",
        ),
        (json!({"expiresAt": "2001-01-01T00:00:00Z"}), "expiresAt"),
        (json!({"redirectType": 303}), "redirectType"),
        (json!({"alias": "renamed"}), "alias"),
        (json!({"disabled": "yes"}), "disabled"),
        (json!({"url": null}), "url"),
    ] {
        let response = patch(body.clone(), admin.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }
    let after: Value = server.get_link("patchy").await.json().await.unwrap();
    assert_eq!(after["url"], "https://example.com/new");
    assert_eq!(after["disabled"], false);

    // Someone else's link does not exist for them.
    let other = create_key(&server.state, "other", false).await;
    assert_eq!(
        patch(json!({"title": "mine"}), other)
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        server
            .client
            .patch(server.url("/api/v1/links/nothere"))
            .bearer_auth(&admin)
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

async fn list(server: &TestServer, key: &str, query: &str) -> reqwest::Response {
    server
        .client
        .get(server.url(&format!("/api/v1/links{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

fn codes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn listing_pages_without_duplicates_or_gaps_during_creates() {
    let server = TestServer::start().await;
    let mut existing = HashSet::new();
    for i in 0..45 {
        let link = server
            .create_ok(json!({"url": format!("https://example.com/list/{i}")}))
            .await;
        existing.insert(link["code"].as_str().unwrap().to_owned());
    }
    // Creates keep arriving while the listing is paged through.
    let writer = {
        let (client, url, key) = (
            server.client.clone(),
            server.url("/api/v1/links"),
            server.admin_key.clone(),
        );
        tokio::spawn(async move {
            for i in 0..40 {
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"url": format!("https://example.com/late/{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };
    for sort in ["", "&sort=createdAt"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let query = match &cursor {
                Some(c) => format!("?limit=7{sort}&cursor={c}"),
                None => format!("?limit=7{sort}"),
            };
            let page: Value = list(&server, &server.admin_key, &query)
                .await
                .json()
                .await
                .unwrap();
            assert!(page["items"].as_array().unwrap().len() <= 7);
            seen.extend(codes(&page));
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a link appeared twice ({sort})");
        for code in &existing {
            assert!(
                unique.contains(code),
                "{code} missing from the listing ({sort})"
            );
        }
    }
    writer.await.unwrap();
    // Newest first by default.
    let page: Value = list(&server, &server.admin_key, "?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let first = &page["items"][0];
    let second = &page["items"][1];
    assert!(first["createdAt"].as_str() >= second["createdAt"].as_str());
}

#[tokio::test]
async fn listing_filters_sorts_and_respects_ownership() {
    let server = TestServer::start().await;
    let alice = create_key(&server.state, "alice", false).await;
    let bob = create_key(&server.state, "bob", false).await;
    for (key, alias, url, title) in [
        (&alice, "a-docs", "https://example.com/docs", "Team Docs"),
        (
            &alice,
            "a-blog",
            "https://blog.example.org/100%-done",
            "Blog",
        ),
        (&bob, "b-docs", "https://example.net/DOCS", "Bob's"),
    ] {
        let response = server
            .create_as(key, json!({"url": url, "alias": alias, "title": title}))
            .await;
        assert_eq!(response.status(), 201);
    }
    let page = |key: String, query: &'static str| {
        let server = &server;
        async move {
            let response = list(server, &key, query).await;
            assert_eq!(response.status(), 200, "{query}");
            let mut found = codes(&response.json::<Value>().await.unwrap());
            found.sort();
            found
        }
    };
    assert_eq!(page(alice.clone(), "").await, ["a-blog", "a-docs"]);
    assert_eq!(page(bob.clone(), "").await, ["b-docs"]);
    assert_eq!(
        page(server.admin_key.clone(), "").await,
        ["a-blog", "a-docs", "b-docs"]
    );
    // Text search: code, URL or title, case-insensitive; `%` is a literal.
    assert_eq!(
        page(server.admin_key.clone(), "?q=docs").await,
        ["a-docs", "b-docs"]
    );
    assert_eq!(page(server.admin_key.clone(), "?q=TEAM").await, ["a-docs"]);
    assert_eq!(
        page(server.admin_key.clone(), "?q=100%25").await,
        ["a-blog"]
    );
    assert_eq!(page(server.admin_key.clone(), "?q=%25").await, ["a-blog"]);
    assert_eq!(page(alice.clone(), "?q=bob").await, Vec::<String>::new());
    // Time range.
    assert_eq!(
        page(
            server.admin_key.clone(),
            "?createdBefore=2000-01-01T00:00:00Z"
        )
        .await
        .len(),
        0
    );
    assert_eq!(
        page(
            server.admin_key.clone(),
            "?createdFrom=2000-01-01T00:00:00Z"
        )
        .await
        .len(),
        3
    );

    // Sort by clicks.
    for _ in 0..3 {
        server.get("/b-docs").await;
    }
    server.get("/a-blog").await;
    assert!(
        eventually(Duration::from_secs(3), || async {
            let response = list(&server, &server.admin_key, "?sort=-clicks").await;
            codes(&response.json::<Value>().await.unwrap()) == ["b-docs", "a-blog", "a-docs"]
        })
        .await
    );
    let by_clicks: Value = list(&server, &server.admin_key, "?sort=-clicks&limit=1")
        .await
        .json()
        .await
        .unwrap();
    let cursor = by_clicks["nextCursor"].as_str().unwrap().to_owned();
    let next: Value = list(
        &server,
        &server.admin_key,
        &format!("?sort=-clicks&limit=1&cursor={cursor}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(codes(&next), ["a-blog"]);

    // Bad parameters name themselves.
    for (query, parameter) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?sort=popularity", "sort"),
        ("?cursor=garbage", "cursor"),
        (&*format!("?cursor={cursor}"), "cursor"),
        ("?createdFrom=yesterday", "createdFrom"),
        ("?q=", "q"),
        ("?tagz=x", "tagz"),
        ("?limit=5&limit=6", "limit"),
    ] {
        let response = list(&server, &server.admin_key, query).await;
        assert_eq!(response.status(), 400, "{query}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["type"], "urn:hop:problem:invalid-parameter",
            "{query}"
        );
        assert_eq!(problem["field"], parameter, "{query}");
    }
    assert_eq!(list(&server, "hop_nope", "").await.status(), 401);
}

#[tokio::test]
async fn bulk_creates_valid_items_and_reports_each_in_order() {
    let server = TestServer::start().await;
    server
        .create_ok(json!({"url": "https://example.com/taken", "alias": "taken"}))
        .await;
    let bulk = |body: Value| {
        server
            .client
            .post(server.url("/api/v1/links/bulk"))
            .bearer_auth(&server.admin_key)
            .json(&body)
            .send()
    };
    let response = bulk(json!({"links": [
        {"url": "https://example.com/one"},
        {"url": "javascript:alert(1)"},
        {"url": "https://example.com/two", "alias": "taken"},
        {"url": "https://example.com/three", "alias": "fresh"},
        {"url": "https://example.com/four", "alias": "fresh"},
        42,
        {"url": "https://example.com/five", "colour": "red"},
        {"url": "https://example.com/six", "maxClicks": 2, "redirectType": 301}
    ]}))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 400, 409, 201, 409, 400, 400, 201]);
    assert_eq!(results[1]["problem"]["type"], "urn:hop:problem:invalid-url");
    assert_eq!(results[2]["problem"]["field"], "alias");
    assert_eq!(results[6]["problem"]["field"], "colour");
    assert_eq!(results[3]["link"]["code"], "fresh");
    for index in [0, 3, 7] {
        let link = &results[index]["link"];
        let response = server
            .get(&format!("/{}", link["code"].as_str().unwrap()))
            .await;
        assert_eq!(
            response.headers()["location"],
            link["url"].as_str().unwrap()
        );
    }
    assert_eq!(results[7]["link"]["redirectType"], 301);
    assert_eq!(server.link_rows(), 4);

    // A full batch is larger than the ordinary body limit and still accepted.
    let many: Vec<Value> = (0..1000)
        .map(|i| json!({"url": format!("https://example.com/bulk/{i}/{}", "x".repeat(60)), "title": "bulk"}))
        .collect();
    let response = bulk(json!({ "links": many })).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let codes: HashSet<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], 201);
            r["link"]["code"].as_str().unwrap()
        })
        .collect();
    assert_eq!(codes.len(), 1000);
    assert_eq!(server.link_rows(), 1004);

    for (body, field) in [
        (json!({"links": []}), Some("links")),
        (
            json!({"links": vec![json!({"url": "https://example.com"}); 1001]}),
            Some("links"),
        ),
        (json!({"items": []}), Some("items")),
        (json!([]), None),
    ] {
        let response = bulk(body).await.unwrap();
        assert_eq!(response.status(), 400);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["field"].as_str(), field);
    }
    assert_eq!(server.link_rows(), 1004);
    let anonymous = server
        .client
        .post(server.url("/api/v1/links/bulk"))
        .json(&json!({"links": [{"url": "https://example.com"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_and_expire() {
    let server = TestServer::start().await;
    let post = |path: &'static str, key: &str, idempotency: &str, body: Value| {
        server
            .client
            .post(server.url(path))
            .bearer_auth(key.to_owned())
            .header("idempotency-key", idempotency.to_owned())
            .json(&body)
            .send()
    };
    let admin = server.admin_key.clone();
    let body = json!({"url": "https://example.com/once"});
    let first = post("/api/v1/links", &admin, "order-1", body.clone())
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post("/api/v1/links", &admin, "order-1", body.clone())
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(server.link_rows(), 1);

    // Same key, other request: refused, nothing created.
    for (path, other) in [
        ("/api/v1/links", json!({"url": "https://example.com/twice"})),
        ("/api/v1/shorten", body.clone()),
    ] {
        let response = post(path, &admin, "order-1", other).await.unwrap();
        assert_eq!(response.status(), 422);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:hop:problem:idempotency-key-reused");
    }
    assert_eq!(server.link_rows(), 1);

    // Keys belong to a caller: another caller's same key is a new request.
    let other = create_key(&server.state, "other", false).await;
    assert_eq!(
        post("/api/v1/links", &other, "order-1", body.clone())
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(server.link_rows(), 2);

    // A failed request keeps nothing: the corrected retry with the same key works.
    let bad = post(
        "/api/v1/links",
        &admin,
        "order-2",
        json!({"url": "ftp://x"}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let fixed = post(
        "/api/v1/links",
        &admin,
        "order-2",
        json!({"url": "https://example.com/fixed"}),
    )
    .await
    .unwrap();
    assert_eq!(fixed.status(), 201);

    // Bulk replays too.
    let bulk =
        json!({"links": [{"url": "https://example.com/b1"}, {"url": "https://example.com/b2"}]});
    let first_bulk: Value = post("/api/v1/links/bulk", &admin, "bulk-1", bulk.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let replayed_bulk: Value = post("/api/v1/links/bulk", &admin, "bulk-1", bulk)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first_bulk, replayed_bulk);
    assert_eq!(server.link_rows(), 5);

    // Malformed keys are refused before anything happens.
    for key in ["", &"k".repeat(256), "with space"] {
        let response = post("/api/v1/links", &admin, key, body.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{key:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:hop:problem:invalid-header");
        assert_eq!(problem["field"], "Idempotency-Key");
    }
    assert_eq!(server.link_rows(), 5);

    // After 24 hours a key is forgotten (purged) and creates again.
    let purged = server
        .state
        .stores
        .idempotency
        .purge(hop::domain::link::now_ms() + 1)
        .await
        .unwrap();
    assert!(purged >= 4);
    let after = post("/api/v1/links", &admin, "order-1", body)
        .await
        .unwrap();
    assert_eq!(after.status(), 201);
    assert!(after.headers().get("idempotent-replayed").is_none());
    assert_eq!(server.link_rows(), 6);
}

#[tokio::test]
async fn concurrent_retries_with_one_idempotency_key_create_once() {
    let server = TestServer::start().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let request = server
            .client
            .post(server.url("/api/v1/links"))
            .bearer_auth(&server.admin_key)
            .header("idempotency-key", "same")
            .json(&json!({"url": "https://example.com/race"}));
        tasks.push(tokio::spawn(async move { request.send().await.unwrap() }));
    }
    let mut codes = HashSet::new();
    for task in tasks {
        let response = task.await.unwrap();
        match response.status().as_u16() {
            201 => {
                let body: Value = response.json().await.unwrap();
                codes.insert(body["code"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(response.headers()["retry-after"], "1"),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(codes.len(), 1);
    assert_eq!(server.link_rows(), 1);
}

#[tokio::test]
async fn tags_on_create_patch_filter_and_counts() {
    let server = TestServer::start().await;
    let alice = create_key(&server.state, "alice", false).await;
    let created = server
        .create_as(&alice, json!({"url": "https://example.com/t1", "alias": "t1", "tags": ["Launch", " q3 ", "launch"]}))
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["tags"], json!(["launch", "q3"]));
    server
        .create_as(
            &alice,
            json!({"url": "https://example.com/t2", "alias": "t2", "tags": ["launch"]}),
        )
        .await;
    server
        .create(json!({"url": "https://example.com/t3", "alias": "t3", "tags": ["admin-only"]}))
        .await;
    let bulk: Value = server
        .client
        .post(server.url("/api/v1/links/bulk"))
        .bearer_auth(&alice)
        .json(&json!({"links": [{"url": "https://example.com/t4", "alias": "t4", "tags": ["q3"]}, {"url": "https://example.com/t5", "tags": ["bad/tag"]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["results"][0]["link"]["tags"], json!(["q3"]));
    assert_eq!(
        bulk["results"][1]["problem"]["type"],
        "urn:hop:problem:invalid-tags"
    );

    let tagged = |key: String, query: &'static str| {
        let server = &server;
        async move {
            let mut found = codes(
                &list(server, &key, query)
                    .await
                    .json::<Value>()
                    .await
                    .unwrap(),
            );
            found.sort();
            found
        }
    };
    assert_eq!(tagged(alice.clone(), "?tag=launch").await, ["t1", "t2"]);
    assert_eq!(tagged(alice.clone(), "?tag=Q3").await, ["t1", "t4"]);
    assert_eq!(
        tagged(alice.clone(), "?tag=admin-only").await,
        Vec::<String>::new()
    );
    assert_eq!(
        tagged(server.admin_key.clone(), "?tag=admin-only").await,
        ["t3"]
    );

    let counts: Value = server
        .client
        .get(server.url("/api/v1/tags"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counts,
        json!({"items": [{"tag": "launch", "links": 2}, {"tag": "q3", "links": 2}]})
    );

    // PATCH replaces the set; [] clears it; null is refused.
    let patch = |body: Value| {
        server
            .client
            .patch(server.url("/api/v1/links/t1"))
            .bearer_auth(&alice)
            .json(&body)
            .send()
    };
    let patched: Value = patch(json!({"tags": ["Evergreen"]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["tags"], json!(["evergreen"]));
    assert_eq!(tagged(alice.clone(), "?tag=launch").await, ["t2"]);
    let cleared: Value = patch(json!({"tags": []}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["tags"], json!([]));
    assert_eq!(patch(json!({"tags": null})).await.unwrap().status(), 400);
    let bad = patch(json!({"tags": ["x".repeat(51)]})).await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["field"], "tags");
    // Deleted links leave the counts.
    server
        .client
        .delete(server.url("/api/v1/links/t2"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let counts: Value = server
        .client
        .get(server.url("/api/v1/tags"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts, json!({"items": [{"tag": "q3", "links": 1}]}));
    assert_eq!(list(&server, &alice, "?tag=a/b").await.status(), 400);
}

/// Decodes a QR code from a greyscale PNG, as a phone camera would read it.
fn read_qr(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn qr_codes_of_the_short_url() {
    let server = TestServer::start().await;
    server
        .create_ok(json!({"url": "https://example.com/qr", "alias": "scan-me"}))
        .await;
    let qr = |query: &str, key: &str| {
        server
            .client
            .get(server.url(&format!("/api/v1/links/scan-me/qr{query}")))
            .bearer_auth(key.to_owned())
            .send()
    };
    let admin = server.admin_key.clone();
    for size in [64u32, 256, 1000] {
        let png = qr(&format!("?format=png&size={size}"), &admin)
            .await
            .unwrap();
        assert_eq!(png.status(), 200);
        assert_eq!(png.headers()["content-type"], "image/png");
        let bytes = png.bytes().await.unwrap();
        assert_eq!(read_qr(&bytes), format!("{}/scan-me?qr", server.base));
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        // The size asked for; only when that would give a module under 2 pixels, the
        // smallest image that scans.
        assert_eq!(width, height);
        assert!(
            width == size || (size == 64 && width > 64 && width < 96),
            "{width} for {size}"
        );
    }
    let svg = qr("", &admin).await.unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let text = svg.text().await.unwrap();
    let width: u32 = text
        .split("width=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|w| w.parse().ok())
        .unwrap();
    // Vector: exactly the size asked for.
    assert!(text.contains("<svg") && width == 256, "{width}");

    for (query, parameter) in [
        ("?size=10", "size"),
        ("?size=5000", "size"),
        ("?size=big", "size"),
        ("?format=gif", "format"),
        ("?colour=red", "colour"),
    ] {
        let response = qr(query, &admin).await.unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(response.json::<Value>().await.unwrap()["field"], parameter);
    }
    let stranger = create_key(&server.state, "stranger", false).await;
    assert_eq!(qr("", &stranger).await.unwrap().status(), 404);
    assert_eq!(
        server
            .client
            .get(server.url("/api/v1/links/nope/qr"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn password_protected_links() {
    let server = TestServer::start().await;
    let created = server
        .create_ok(json!({"url": "https://example.com/secret", "alias": "locked", "password": "open sesame"}))
        .await;
    assert_eq!(created["passwordProtected"], true);
    assert!(!created.to_string().contains("argon2") && !created.to_string().contains("sesame"));

    // The form instead of a redirect; no click yet.
    let page = server.get("/locked").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\">") && html.contains("name=\"password\""));
    assert_eq!(
        server
            .client
            .head(server.url("/locked"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let post = |password: &'static str| {
        server
            .client
            .post(server.url("/locked"))
            .form(&[("password", password)])
            .send()
    };
    let wrong = post("open sesami").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("not right"));
    let right = post("open sesame").await.unwrap();
    assert_eq!(right.status(), 303);
    assert_eq!(right.headers()["location"], "https://example.com/secret");
    assert!(
        eventually(Duration::from_secs(2), || async {
            server
                .get_link("locked")
                .await
                .json::<Value>()
                .await
                .unwrap()["clicks"]
                == 1
        })
        .await
    );

    // Attempts are limited per link and client: 10 in the window, then 429.
    for _ in 0..8 {
        assert_eq!(post("guess").await.unwrap().status(), 401);
    }
    let limited = post("open sesame").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    // Removing the password makes it an ordinary link again.
    let patched: Value = server
        .client
        .patch(server.url("/api/v1/links/locked"))
        .bearer_auth(&server.admin_key)
        .json(&json!({"password": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["passwordProtected"], false);
    assert_eq!(server.get("/locked").await.status(), 302);
    assert_eq!(post("anything").await.unwrap().status(), 405);

    let short = server
        .create(json!({"url": "https://example.com", "password": "abc"}))
        .await;
    assert_eq!(short.status(), 400);
    assert_eq!(
        short.json::<Value>().await.unwrap()["type"],
        "urn:hop:problem:invalid-password"
    );
    let bulk: Value = server
        .client
        .post(server.url("/api/v1/links/bulk"))
        .bearer_auth(&server.admin_key)
        .json(&json!({"links": [{"url": "https://example.com", "password": "long enough"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["results"][0]["status"], 400);
    assert_eq!(bulk["results"][0]["problem"]["field"], "password");
}

#[tokio::test]
async fn api_rate_limits_per_key_and_per_anonymous_client() {
    let server = TestServer::start_with(&[
        ("HOP_RATE_LIMIT_USER_PER_MINUTE", "5"),
        ("HOP_RATE_LIMIT_ANONYMOUS_PER_MINUTE", "3"),
    ])
    .await;
    let alice = create_key(&server.state, "alice", false).await;
    let bob = create_key(&server.state, "bob", false).await;
    for remaining in (0..5).rev() {
        let response = list(&server, &alice, "").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "5");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let limited = list(&server, &alice, "").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "12");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["type"],
        "urn:hop:problem:rate-limited"
    );
    // Another key, and the admin's higher tier, are untouched.
    assert_eq!(list(&server, &bob, "").await.status(), 200);
    assert_eq!(list(&server, &server.admin_key, "").await.status(), 200);
    // Without a valid key: the client address's anonymous bucket.
    for _ in 0..3 {
        assert_eq!(list(&server, "hop_not_a_key", "").await.status(), 401);
    }
    assert_eq!(list(&server, "hop_not_a_key", "").await.status(), 429);
    // Redirects are counted apart: still served.
    server
        .create_ok(json!({"url": "https://example.com/rl", "alias": "rl"}))
        .await;
    assert_eq!(server.get("/rl").await.status(), 302);
}

#[tokio::test]
async fn redirect_limits_per_client_behind_trusted_proxies() {
    let server = TestServer::start_with(&[
        ("HOP_RATE_LIMIT_REDIRECT_PER_MINUTE", "2"),
        ("HOP_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    server
        .create_ok(json!({"url": "https://example.com/r", "alias": "r"}))
        .await;
    let from = |client: &'static str| {
        server
            .client
            .get(server.url("/r"))
            .header("x-forwarded-for", client)
            .header("accept", "application/json")
            .send()
    };
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 302);
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 302);
    let limited = from("203.0.113.1").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(
        limited.json::<Value>().await.unwrap()["type"],
        "urn:hop:problem:rate-limited"
    );
    // Another client behind the same proxy has its own allowance (the right-most
    // address that is not a trusted proxy is the client).
    assert_eq!(from("203.0.113.2").await.unwrap().status(), 302);
    assert_eq!(from("203.0.113.2, 10.0.0.1").await.unwrap().status(), 302);
    // The API is not affected by redirect traffic.
    assert_eq!(server.get_link("r").await.status(), 200);
    assert_eq!(server.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn password_attempts_behind_a_proxy_are_limited_per_visitor() {
    let server = TestServer::start_with(&[("HOP_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    server
        .create_ok(json!({"url": "https://example.com/vault", "alias": "vault", "password": "open sesame"}))
        .await;
    let post = |visitor: &'static str, password: &'static str| {
        server
            .client
            .post(server.url("/vault"))
            .header("x-forwarded-for", visitor)
            .form(&[("password", password)])
            .send()
    };
    // One visitor behind the proxy uses up its attempts...
    for _ in 0..10 {
        assert_eq!(post("203.0.113.9", "guess").await.unwrap().status(), 401);
    }
    assert_eq!(
        post("203.0.113.9", "open sesame").await.unwrap().status(),
        429
    );
    // ...and another visitor through the same proxy is not locked out.
    let other = post("198.51.100.7", "open sesame").await.unwrap();
    assert_eq!(other.status(), 303);
    assert_eq!(other.headers()["location"], "https://example.com/vault");
}

#[tokio::test]
async fn html_answers_carry_security_headers_and_api_paths_answer_json() {
    let server = TestServer::start().await;
    server
        .create_ok(
            json!({"url": "https://example.com/safe", "alias": "safe", "password": "open sesame"}),
        )
        .await;
    let page = |path: &'static str| {
        server
            .client
            .get(server.url(path))
            .header("accept", "text/html,*/*")
            .send()
    };
    // hop's own pages: an unknown code (the fast path), an unknown page (the router),
    // the password form (which must not be frameable).
    for (path, status) in [("/nosuch1", 404), ("/x/y", 404), ("/safe", 200)] {
        let response = page(path).await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
    // Swagger UI loads its own compiled-in assets only.
    let docs = page("/docs/").await.unwrap();
    assert_eq!(docs.status(), 200);
    let csp = docs.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(docs.headers()["x-frame-options"], "DENY");

    // Under /api/ even a client that accepts anything gets problem+json.
    let unknown = server.get("/api/v1/nope").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = unknown.json().await.unwrap();
    assert_eq!(problem["type"], "urn:hop:problem:not-found");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("/openapi.json")
    );
}

#[tokio::test]
async fn empty_patches_change_nothing_and_errors_speak_json() {
    let server = TestServer::start().await;
    let link = server
        .create_ok(json!({"url": "https://example.com/p", "alias": "still"}))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let patch = |body: Value| {
        server
            .client
            .patch(server.url("/api/v1/links/still"))
            .bearer_auth(&server.admin_key)
            .json(&body)
            .send()
    };
    let same: Value = patch(json!({})).await.unwrap().json().await.unwrap();
    assert_eq!(same["updatedAt"], link["updatedAt"]);
    assert_eq!(same["url"], link["url"]);
    // Type errors name JSON types, not Rust ones.
    for (body, words) in [
        (json!({"maxClicks": "ten"}), "integer"),
        (json!({"title": 5}), "string"),
        (json!({"redirectType": 1.5}), "integer"),
    ] {
        let response = patch(body.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let problem: Value = response.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{body}: {detail}");
        for rust in ["u64", "u16", "i64", "u32"] {
            assert!(!detail.contains(rust), "{body}: {detail}");
        }
    }
    // On a page, quoted names are set as code, not shown with backticks.
    let page = server.get("/nosuch9").await.text().await.unwrap();
    assert!(
        page.contains("<code>nosuch9</code>") && !page.contains('`'),
        "{page}"
    );
}

#[tokio::test]
async fn root_and_not_found_redirects_send_visitors_somewhere_useful() {
    let server = TestServer::start_with(&[
        ("HOP_ROOT_REDIRECT", "https://example.com/home"),
        ("HOP_NOT_FOUND_REDIRECT", "https://example.com/missing"),
    ])
    .await;
    let root = server.get("/").await;
    assert_eq!(root.status(), 302);
    assert_eq!(root.headers()["location"], "https://example.com/home");
    // An unknown code (twice: the second answer comes from the negative cache) and an
    // unknown page send browsers on; programs asking for JSON still get the 404.
    for path in ["/nosuch1", "/nosuch1", "/x/y"] {
        let response = server.get(path).await;
        assert_eq!(response.status(), 302, "{path}");
        assert_eq!(
            response.headers()["location"],
            "https://example.com/missing"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    let json = server
        .client
        .get(server.url("/nosuch1"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 404);
    assert_eq!(server.get("/api/v1/nope").await.status(), 404);

    let dir = tempfile::tempdir().unwrap();
    let error = hop::config::Config::load(
        None,
        vec![(
            "HOP_ROOT_REDIRECT".to_owned(),
            "ftp://example.com".to_owned(),
        )],
        &hop::config::Overrides {
            data_dir: Some(dir.path().to_owned()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(error.to_string().contains("root_redirect"), "{error}");
}
