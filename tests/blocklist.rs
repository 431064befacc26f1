//! The target blocklist end to end: creates, bulk items and changes to a listed host
//! are refused with nothing stored, and a link made before its host was listed stops
//! redirecting once the file changes, with a page that names neither target nor list.

mod common;

use common::{TestServer, eventually};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

#[tokio::test]
async fn listed_hosts_are_refused_and_existing_links_to_them_stop() {
    let mut list = tempfile::NamedTempFile::new().unwrap();
    writeln!(list, "# phishing\nbad.example\n0.0.0.0 ads.tracker.example").unwrap();
    list.flush().unwrap();
    let path = list.path().to_str().unwrap().to_owned();
    let server = TestServer::start_with(&[("HOP_BLOCKLIST_FILES", path.as_str())]).await;
    let later = server
        .create_ok(json!({"url": "https://later.example/offer", "alias": "offer"}))
        .await;
    let rows = server.link_rows();

    for url in [
        "https://bad.example/login",
        "https://WWW.Bad.Example./login",
        "http://ads.tracker.example:8080/pixel",
    ] {
        let response = server.create(json!({ "url": url })).await;
        assert_eq!(response.status(), 400, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:hop:problem:blocked-target", "{url}");
        assert_eq!(problem["field"], "url");
    }
    let bulk: Value = server
        .client
        .post(server.url("/api/v1/links/bulk"))
        .bearer_auth(&server.admin_key)
        .json(&json!({"links": [{"url": "https://bad.example/a"}, {"url": "https://good.example/b"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["results"][0]["status"], 400);
    assert_eq!(
        bulk["results"][0]["problem"]["type"],
        "urn:hop:problem:blocked-target"
    );
    assert_eq!(bulk["results"][1]["status"], 201);
    let patch = server
        .client
        .patch(server.url("/api/v1/links/offer"))
        .bearer_auth(&server.admin_key)
        .json(&json!({"url": "https://sub.bad.example/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 400);
    // Only the good bulk item was stored; the link kept its target.
    assert_eq!(server.link_rows(), rows + 1);
    assert_eq!(server.get("/offer").await.status(), 302);

    // Listing the host later stops the existing link within the reload interval.
    writeln!(list, "later.example").unwrap();
    list.flush().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            server.get("/offer").await.status() == 410
        })
        .await
    );
    let page = server.get("/offer").await.text().await.unwrap();
    assert!(!page.contains("later.example"), "{page}");
    assert_eq!(
        visitor_problem(&server, "/offer").await,
        "urn:hop:problem:link-unavailable"
    );
    assert_eq!(later["url"], "https://later.example/offer");
}

#[tokio::test]
async fn an_unreadable_blocklist_stops_the_start() {
    let dir = common::data_dir();
    let config = common::test_config(
        dir.path(),
        &[("HOP_BLOCKLIST_FILES", "/nonexistent/blocklist.txt")],
    );
    let error = hop::app::build(&config).await.err().unwrap();
    assert!(
        format!("{error:#}").contains("/nonexistent/blocklist.txt"),
        "{error:#}"
    );
}

async fn patch(server: &TestServer, key: &str, code: &str, body: Value) -> reqwest::Response {
    server
        .client
        .patch(server.url(&format!("/api/v1/links/{code}")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The problem type a visitor asking for JSON gets at `path`.
async fn visitor_problem(server: &TestServer, path: &str) -> String {
    let response = server
        .client
        .get(server.url(path))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    problem_type(response).await
}

async fn problem_type(response: reqwest::Response) -> String {
    let problem: Value = response.json().await.unwrap();
    problem["type"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_admin_disables_a_link_with_a_reason_only_an_admin_can_lift() {
    let server = TestServer::start().await;
    let ana = common::create_key(&server.state, "ana", false).await;
    let created = server
        .create_as(
            &ana,
            json!({"url": "https://ana.example/page", "alias": "ana-page"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(server.get("/ana-page").await.status(), 302);

    // Owners may disable their own links, but not give (or clear) an admin's reason.
    let refused = patch(&server, &ana, "ana-page", json!({"disabledReason": "mine"})).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(problem_type(refused).await, "urn:hop:problem:forbidden");
    let refused = patch(&server, &ana, "ana-page", json!({"disabledReason": null})).await;
    assert_eq!(refused.status(), 403);
    // Bad reasons are refused with the field named, and change nothing.
    for bad in [
        json!(""),
        json!("   "),
        json!("a\u{7}b"),
        json!("x".repeat(501)),
    ] {
        let response = patch(
            &server,
            &server.admin_key,
            "ana-page",
            json!({ "disabledReason": bad }),
        )
        .await;
        assert_eq!(response.status(), 400, "{bad}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:hop:problem:invalid-disabled-reason");
        assert_eq!(problem["field"], "disabledReason");
    }
    let contradictory = patch(
        &server,
        &server.admin_key,
        "ana-page",
        json!({"disabled": false, "disabledReason": "phishing"}),
    )
    .await;
    assert_eq!(contradictory.status(), 400);
    assert_eq!(server.get("/ana-page").await.status(), 302);

    // The admin's reason disables the link; visitors see the neutral page.
    let disabled: Value = patch(
        &server,
        &server.admin_key,
        "ana-page",
        json!({"disabledReason": "  reported as phishing (ticket 4411)  "}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(disabled["disabled"], true);
    assert_eq!(
        disabled["disabledReason"],
        "reported as phishing (ticket 4411)"
    );
    let visitor = server.get("/ana-page").await;
    assert_eq!(visitor.status(), 410);
    let page = visitor.text().await.unwrap();
    assert!(
        !page.contains("phishing") && !page.contains("ana.example"),
        "{page}"
    );
    assert_eq!(
        visitor_problem(&server, "/ana-page").await,
        "urn:hop:problem:link-unavailable"
    );

    // The owner sees why, may edit other fields, and cannot enable it.
    let owned: Value = server.get_json_as(&ana, "/api/v1/links/ana-page").await;
    assert_eq!(
        owned["disabledReason"],
        "reported as phishing (ticket 4411)"
    );
    let refused = patch(&server, &ana, "ana-page", json!({"disabled": false})).await;
    assert_eq!(refused.status(), 403);
    let retitled = patch(&server, &ana, "ana-page", json!({"title": "Mine"})).await;
    assert_eq!(retitled.status(), 200);
    assert_eq!(server.get("/ana-page").await.status(), 410);

    // The reason survives a restart of the cache (the store has it).
    server.state.cache.clear();
    assert_eq!(server.get("/ana-page").await.status(), 410);

    // An admin enabling the link clears the reason.
    let enabled: Value = patch(
        &server,
        &server.admin_key,
        "ana-page",
        json!({"disabled": false}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(enabled["disabled"], false);
    assert_eq!(enabled["disabledReason"], Value::Null);
    assert_eq!(server.get("/ana-page").await.status(), 302);
}
