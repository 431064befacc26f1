//! Domains: links live in a domain, codes are unique per domain, the redirect picks
//! the domain from `Host`, admins manage the list.

mod common;

use common::{TestServer, create_key};
use serde_json::{Value, json};

const GO: &str = "go.example.com";

async fn add_domain(server: &TestServer, key: &str, name: &str) -> reqwest::Response {
    server
        .client
        .post(server.url("/api/v1/domains"))
        .bearer_auth(key)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
}

async fn remove_domain(server: &TestServer, key: &str, name: &str) -> reqwest::Response {
    server
        .client
        .delete(server.url(&format!("/api/v1/domains/{name}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// `GET path` with this `Host` header (none: reqwest's own, the server's address).
async fn get_on(server: &TestServer, host: Option<&str>, path: &str) -> reqwest::Response {
    let mut request = server.client.get(server.url(path));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    request.send().await.unwrap()
}

async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn one_alias_in_two_domains_redirects_by_host() {
    let server = TestServer::start().await;
    let added = add_domain(&server, &server.admin_key, "Go.Example.COM").await;
    assert_eq!(added.status(), 201);
    assert_eq!(added.headers()["location"], format!("/api/v1/domains/{GO}"));
    let added: Value = added.json().await.unwrap();
    assert_eq!(added["name"], GO);
    assert_eq!(added["default"], false);

    let default = server
        .create_ok(json!({"url": "https://example.com/default", "alias": "same"}))
        .await;
    let response = server
        .create(json!({"url": "https://example.com/go", "alias": "same", "domain": GO}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["location"],
        format!("/api/v1/links/same?domain={GO}")
    );
    let go: Value = response.json().await.unwrap();
    assert_eq!(go["domain"], GO);
    assert_eq!(go["shortUrl"], format!("http://{GO}/same"));
    let host = server.base.trim_start_matches("http://");
    assert_eq!(default["domain"], host);
    assert_eq!(default["shortUrl"], format!("{}/same", server.base));
    // Codes are unique per domain.
    let taken = server
        .create(json!({"url": "https://example.com/again", "alias": "same", "domain": GO}))
        .await;
    assert_eq!(taken.status(), 409);

    for (host, target) in [
        (None, "https://example.com/default"),
        (Some("127.0.0.1"), "https://example.com/default"),
        (Some("[::1]:8080"), "https://example.com/default"),
        (Some("localhost:8080"), "https://example.com/default"),
        (Some(GO), "https://example.com/go"),
        (Some("GO.example.com:8080"), "https://example.com/go"),
    ] {
        // Twice: the second answer comes from the cache.
        for _ in 0..2 {
            let response = get_on(&server, host, "/same").await;
            assert_eq!(response.status(), 302, "{host:?}");
            assert_eq!(response.headers()["location"], target, "{host:?}");
        }
    }
    // HEAD and percent-encoded paths (the routed path) pick the domain too.
    let head = server
        .client
        .head(server.url("/%73ame"))
        .header("host", GO)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["location"], "https://example.com/go");

    // An unknown host is a clear 404, as problem+json or as a page.
    let unknown = server
        .client
        .get(server.url("/same"))
        .header("host", "elsewhere.example")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body = problem(unknown).await;
    assert_eq!(body["type"], "urn:hop:problem:unknown-host");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("elsewhere.example")
    );
    let page = get_on(&server, Some("elsewhere.example"), "/same").await;
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("not served here"));
    // hop's own paths answer whatever the host.
    assert_eq!(
        get_on(&server, Some("elsewhere.example"), "/healthz")
            .await
            .status(),
        200
    );
    // The API also answers on any host, and addresses domains with ?domain=.
    let fetched: Value = server
        .client
        .get(server.url(&format!("/api/v1/links/same?domain={GO}")))
        .header("host", "elsewhere.example")
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["url"], "https://example.com/go");
    let fetched: Value = server.get_link("same").await.json().await.unwrap();
    assert_eq!(fetched["url"], "https://example.com/default");

    // Listings filter by domain.
    let page: Value = server
        .client
        .get(server.url(&format!("/api/v1/links?domain={GO}")))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["url"], "https://example.com/go");
    let unknown = server
        .client
        .get(server.url("/api/v1/links?domain=nowhere.example"))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert_eq!(problem(unknown).await["field"], "domain");
}

#[tokio::test]
async fn patch_and_delete_in_another_domain_apply_at_once() {
    let server = TestServer::start().await;
    assert_eq!(
        add_domain(&server, &server.admin_key, GO).await.status(),
        201
    );
    server
        .create_ok(json!({"url": "https://example.com/default", "alias": "promo"}))
        .await;
    server
        .create_ok(json!({"url": "https://example.com/v1", "alias": "promo", "domain": GO}))
        .await;
    // Cached now.
    let first = get_on(&server, Some(GO), "/promo").await;
    assert_eq!(first.headers()["location"], "https://example.com/v1");

    let patched = server
        .client
        .patch(server.url(&format!("/api/v1/links/promo?domain={GO}")))
        .bearer_auth(&server.admin_key)
        .json(&json!({"url": "https://example.com/v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["domain"], GO);
    let after = get_on(&server, Some(GO), "/promo").await;
    assert_eq!(after.headers()["location"], "https://example.com/v2");
    // The default domain's link is untouched.
    let default = get_on(&server, None, "/promo").await;
    assert_eq!(default.headers()["location"], "https://example.com/default");
    // PATCH does not move links between domains.
    let moved = server
        .client
        .patch(server.url("/api/v1/links/promo"))
        .bearer_auth(&server.admin_key)
        .json(&json!({"domain": GO}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 400);

    // QR codes encode the domain's short URL.
    let qr = server
        .client
        .get(server.url(&format!("/api/v1/links/promo/qr?domain={GO}")))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(qr.status(), 200);

    // Removing a domain that still has links is refused.
    let refused = remove_domain(&server, &server.admin_key, GO).await;
    assert_eq!(refused.status(), 409);
    let body = problem(refused).await;
    assert_eq!(body["type"], "urn:hop:problem:domain-in-use");

    let deleted = server
        .client
        .delete(server.url(&format!("/api/v1/links/promo?domain={GO}")))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(get_on(&server, Some(GO), "/promo").await.status(), 404);
    assert_eq!(get_on(&server, None, "/promo").await.status(), 302);

    assert_eq!(
        remove_domain(&server, &server.admin_key, GO).await.status(),
        204
    );
    assert_eq!(
        remove_domain(&server, &server.admin_key, GO).await.status(),
        404
    );
    // No longer served.
    assert_eq!(get_on(&server, Some(GO), "/promo").await.status(), 404);
    let refused = server
        .create(json!({"url": "https://example.com/x", "domain": GO}))
        .await;
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn admins_manage_domains_and_everyone_lists_them() {
    let server = TestServer::start().await;
    let user = create_key(&server.state, "user", false).await;
    let host = server.base.trim_start_matches("http://").to_owned();

    let forbidden = add_domain(&server, &user, GO).await;
    assert_eq!(forbidden.status(), 403);
    assert_eq!(
        problem(forbidden).await["type"],
        "urn:hop:problem:forbidden"
    );
    assert_eq!(
        add_domain(&server, &server.admin_key, GO).await.status(),
        201
    );
    assert_eq!(remove_domain(&server, &user, GO).await.status(), 403);

    for (name, status, kind) in [
        (GO, 409, "domain-exists"),
        ("GO.EXAMPLE.COM", 409, "domain-exists"),
        (host.as_str(), 409, "default-domain"),
        ("https://x.example/", 400, "invalid-domain"),
        ("10.0.0.1", 400, "invalid-domain"),
        ("a..example", 400, "invalid-domain"),
    ] {
        let response = add_domain(&server, &server.admin_key, name).await;
        assert_eq!(response.status(), status, "{name}");
        let body = problem(response).await;
        assert_eq!(body["type"], format!("urn:hop:problem:{kind}"), "{name}");
        assert_eq!(body["field"], "name", "{name}");
    }
    assert_eq!(
        add_domain(&server, &server.admin_key, "bücher.example")
            .await
            .status(),
        201
    );

    // A user's link in a registered domain; an unregistered one is refused.
    let made = server
        .create_as(&user, json!({"url": "https://example.com/u", "domain": GO}))
        .await;
    assert_eq!(made.status(), 201);
    let refused = server
        .create_as(
            &user,
            json!({"url": "https://example.com/u", "domain": "other.example"}),
        )
        .await;
    assert_eq!(refused.status(), 400);
    let body = problem(refused).await;
    assert_eq!(body["type"], "urn:hop:problem:unknown-domain");
    assert_eq!(body["field"], "domain");
    // The default host by name is the default domain.
    let default = server
        .create_as(
            &user,
            json!({"url": "https://example.com/d", "domain": host}),
        )
        .await;
    assert_eq!(default.status(), 201);
    let default: Value = default.json().await.unwrap();
    assert_eq!(
        default["shortUrl"],
        format!("{}/{}", server.base, default["code"].as_str().unwrap())
    );

    // Bulk items choose their domain one by one.
    let bulk: Value = server
        .client
        .post(server.url("/api/v1/links/bulk"))
        .bearer_auth(&user)
        .json(&json!({"links": [
            {"url": "https://example.com/b1", "domain": GO},
            {"url": "https://example.com/b2", "domain": "nowhere.example"}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["results"][0]["status"], 201);
    assert_eq!(bulk["results"][0]["link"]["domain"], GO);
    assert_eq!(bulk["results"][1]["status"], 400);
    assert_eq!(bulk["results"][1]["problem"]["field"], "domain");

    let list = |key: String| {
        let server = &server;
        async move {
            let response = server
                .client
                .get(server.url("/api/v1/domains"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let as_user = list(user.clone()).await;
    let items = as_user["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, [host.as_str(), GO, "xn--bcher-kva.example"]);
    assert_eq!(items[0]["default"], true);
    assert!(items[0]["createdAt"].is_null());
    assert!(items[1]["createdAt"].as_str().unwrap().ends_with('Z'));
    // Link counts cover everyone's links: admins only.
    assert!(items.iter().all(|d| d.get("links").is_none()));
    let as_admin = list(server.admin_key.clone()).await;
    assert_eq!(as_admin["items"][0]["links"], 1);
    assert_eq!(as_admin["items"][1]["links"], 2);
    assert_eq!(as_admin["items"][2]["links"], 0);
}

#[tokio::test]
async fn password_forms_post_to_the_right_domain() {
    let server = TestServer::start().await;
    assert_eq!(
        add_domain(&server, &server.admin_key, GO).await.status(),
        201
    );
    server
        .create_ok(json!({"url": "https://example.com/open", "alias": "doc"}))
        .await;
    server
        .create_ok(json!({
            "url": "https://example.com/secret", "alias": "doc", "domain": GO,
            "password": "hunter22"
        }))
        .await;
    let form = get_on(&server, Some(GO), "/doc").await;
    assert_eq!(form.status(), 200);
    let post = |host: &'static str| {
        server
            .client
            .post(server.url("/doc"))
            .header("host", host)
            .form(&[("password", "hunter22")])
            .send()
    };
    let redirected = post(GO).await.unwrap();
    assert_eq!(redirected.status(), 303);
    assert_eq!(
        redirected.headers()["location"],
        "https://example.com/secret"
    );
    assert_eq!(post("nowhere.example").await.unwrap().status(), 404);
}

#[tokio::test]
async fn links_may_not_point_at_a_domain_hop_serves() {
    let server = TestServer::start().await;
    let key = server.admin_key.clone();
    assert_eq!(
        add_domain(&server, &key, "go.example.com").await.status(),
        201
    );
    for url in [
        "https://go.example.com/loop",
        "http://GO.example.com/",
        "https://go.example.com:443/x",
    ] {
        let created = server.create(json!({ "url": url })).await;
        assert_eq!(created.status(), 400, "{url}");
        let problem = problem(created).await;
        assert_eq!(problem["type"], "urn:hop:problem:invalid-url", "{url}");
        assert_eq!(problem["field"], "url");
    }
    // In a bulk create the item fails alone.
    let bulk = server
        .client
        .post(server.url("/api/v1/links/bulk"))
        .bearer_auth(&key)
        .json(&json!({"links": [
            {"url": "https://go.example.com/loop"},
            {"url": "https://example.com/fine"}
        ]}))
        .send()
        .await
        .unwrap();
    let results: Value = bulk.json().await.unwrap();
    assert_eq!(results["results"][0]["status"], 400);
    assert_eq!(results["results"][1]["status"], 201);
    // Nor can a change point a link there.
    let link = server
        .create_ok(json!({"url": "https://example.com/fine", "alias": "fine"}))
        .await;
    assert_eq!(link["code"], "fine");
    let patched = server
        .client
        .patch(server.url("/api/v1/links/fine"))
        .bearer_auth(&key)
        .json(&json!({"url": "https://go.example.com/loop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 400);
    // Other hosts stay allowed.
    assert_eq!(
        server
            .create(json!({"url": "https://goo.example.com/"}))
            .await
            .status(),
        201
    );
}
