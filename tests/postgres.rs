//! What only a shared database can show: several hop processes on one PostgreSQL
//! database (exact click limits, unique codes, migrations run once), schema versions,
//! connection errors at start, and retention by whole partitions.
//!
//! The outage test starts a PostgreSQL server of its own (initdb and pg_ctl from
//! /usr/lib/postgresql) and stops it mid-test; it never touches the machine's server.
//!
//! The tests that need PostgreSQL run when `HOP_TEST_DATABASE_URL` names a server
//! (CI sets it; see tests/common); without it they say so and pass. The checks of
//! bad URLs and of a SQLite database from a newer hop need no server.

mod common;

use common::{HopProcess, TestServer, client, hop_command};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Whether PostgreSQL is configured; says what enables the test when it is not.
fn postgres_or_say(test: &str) -> bool {
    if common::on_postgres() {
        return true;
    }
    eprintln!(
        "{test}: runs on PostgreSQL only; set {}",
        common::TEST_DATABASE_VAR
    );
    false
}

fn hop_in(data_dir: &Path, args: &[&str]) -> std::process::Output {
    hop_command()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .envs(common::database_env(data_dir))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_keep_click_limits_exact_and_codes_unique() {
    if !postgres_or_say("four_processes_keep_click_limits_exact_and_codes_unique") {
        return;
    }
    let dir = common::data_dir();
    let key = common::admin_key(dir.path());
    let nodes: Vec<HopProcess> = (0..4)
        .map(|_| HopProcess::start(dir.path(), &[("HOP_RATE_LIMIT_REDIRECT_PER_MINUTE", "0")]))
        .collect();
    let limited = nodes[0]
        .create_link(
            &key,
            json!({"url": "https://example.com/limited", "alias": "hundred", "maxClicks": 100}),
        )
        .await;
    assert_eq!(limited["maxClicks"], 100);

    // 4 nodes × 60 concurrent clicks on a link that allows 100.
    let http = client();
    let mut tasks = Vec::new();
    for node in &nodes {
        for _ in 0..60 {
            let request = http.get(node.url("/hundred"));
            tasks.push(tokio::spawn(async move {
                request.send().await.unwrap().status().as_u16()
            }));
        }
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let redirected = statuses.iter().filter(|s| **s == 302).count();
    let gone = statuses.iter().filter(|s| **s == 410).count();
    assert_eq!((redirected, gone), (100, 140), "{statuses:?}");
    assert_eq!(
        common::count_rows(
            dir.path(),
            "SELECT c.clicks FROM link_clicks c JOIN links l ON l.id = c.link_id \
             WHERE l.code = 'hundred'"
        ),
        100
    );

    // Generated codes from every node at once: all distinct, each from its own lease.
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for i in 0..50 {
            let request = http
                .post(node.url("/api/v1/links"))
                .bearer_auth(&key)
                .json(&json!({"url": format!("https://example.com/{n}/{i}")}));
            tasks.push(tokio::spawn(async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 201);
                let body: Value = response.json().await.unwrap();
                body["code"].as_str().unwrap().to_owned()
            }));
        }
    }
    let mut codes = HashSet::new();
    for task in tasks {
        assert!(
            codes.insert(task.await.unwrap()),
            "a code was handed out twice"
        );
    }
    assert_eq!(codes.len(), 200);
    // One block of 4096 values per node, none shared (the counter starts at 1).
    assert_eq!(
        common::count_rows(
            dir.path(),
            "SELECT next FROM counters WHERE name = 'link_ids'"
        ),
        1 + 4 * 4096
    );
    for code in &codes {
        let response = http
            .get(nodes[3].url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{code}");
    }
}

#[test]
fn nodes_starting_together_migrate_once() {
    if !postgres_or_say("nodes_starting_together_migrate_once") {
        return;
    }
    let dir = common::data_dir();
    let children: Vec<_> = (0..8)
        .map(|_| {
            hop_command()
                .arg("migrate")
                .envs(common::database_env(dir.path()))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut migrated = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if stdout.contains("migrated from schema version 0") {
            migrated += 1;
        } else {
            assert!(stdout.contains("is up to date"), "{stdout}");
        }
    }
    assert_eq!(migrated, 1);
    // Every migration this binary carries, each recorded once.
    assert_eq!(
        common::count_rows(
            dir.path(),
            "SELECT CAST(COUNT(*) AS BIGINT) FROM schema_version"
        ),
        common::count_rows(
            dir.path(),
            "SELECT CAST(MAX(version) AS BIGINT) FROM schema_version"
        )
    );
    assert!(
        common::count_rows(
            dir.path(),
            "SELECT CAST(MAX(version) AS BIGINT) FROM schema_version"
        ) >= 2
    );
    assert_eq!(
        common::count_rows(
            dir.path(),
            "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'links'::regclass"
        ),
        16
    );
}

/// A private PostgreSQL server for a test that stops or changes one, or `None` (said
/// on stderr) on a machine without the server binaries.
fn private_server(test: &str) -> Option<common::PrivatePostgres> {
    match common::PrivatePostgres::start() {
        Ok(server) => Some(server),
        Err(why) => {
            eprintln!("{test} needs PostgreSQL server binaries: {why}");
            None
        }
    }
}

/// hop on a private server with a 1 s database timeout, and one link (`warm`) in its
/// cache.
async fn warm_server_on(server_db: &common::PrivatePostgres) -> TestServer {
    let url = server_db.url();
    let server = TestServer::start_with(&[
        ("HOP_DATABASE_URL", url.as_str()),
        ("HOP_DATABASE_TIMEOUT_MS", "1000"),
    ])
    .await;
    server
        .create_ok(json!({"url": "https://example.com/warm", "alias": "warm"}))
        .await;
    server
}

/// `hop serve` on `dir`'s database fails with exactly one line on stderr, returned.
fn serve_fails(dir: &Path, env: &[(&str, &str)]) -> String {
    let output = hop_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .envs(common::database_env(dir))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn a_database_from_a_newer_hop_is_refused() {
    let dir = common::data_dir();
    let output = hop_in(dir.path(), &["migrate"]);
    assert!(output.status.success());
    if common::on_postgres() {
        let url = dir.database_url().unwrap();
        common::pg_execute(url, "INSERT INTO schema_version VALUES (99, 0)");
    } else {
        let conn = rusqlite::Connection::open(dir.path().join("hop.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let line = serve_fails(dir.path(), &[]);
    assert!(
        line.contains("version 99") && line.contains("newer"),
        "{line}"
    );
    let output = hop_in(dir.path(), &["migrate"]);
    assert!(!output.status.success());
}

#[test]
fn wrong_database_urls_stop_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let line = serve_fails(dir.path(), &[("HOP_DATABASE_URL", "mysql://db/hop")]);
    assert!(
        line.contains("unsupported database URL scheme `mysql`"),
        "{line}"
    );
    let line = serve_fails(
        dir.path(),
        &[("HOP_DATABASE_URL", "postgres://hop:secret@127.0.0.1:1/hop")],
    );
    assert!(
        line.contains("cannot connect to PostgreSQL at 127.0.0.1:1/hop")
            && line.contains("refused"),
        "{line}"
    );
    assert!(
        !line.contains("secret"),
        "the password is never shown: {line}"
    );
    if let Ok(admin) = std::env::var(common::TEST_DATABASE_VAR) {
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path("/hop_no_such_database");
        let line = serve_fails(dir.path(), &[("HOP_DATABASE_URL", url.as_str())]);
        assert!(
            line.contains("database \"hop_no_such_database\" does not exist"),
            "{line}"
        );
    }
}

#[test]
fn a_wrong_password_stops_the_start_with_one_line() {
    let Some(server_db) = private_server("a password test") else {
        return;
    };
    server_db.require_password("right-one");
    let dir = tempfile::tempdir().unwrap();
    let url = |password: &str| {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/postgres",
            server_db.port
        )
    };
    let line = serve_fails(
        dir.path(),
        &[("HOP_DATABASE_URL", url("wrong-one").as_str())],
    );
    assert!(
        line.contains("cannot connect to PostgreSQL")
            && line.contains("password authentication failed"),
        "{line}"
    );
    assert!(
        !line.contains("wrong-one"),
        "the password is never shown: {line}"
    );
    // The right one works (hop migrate connects, migrates and exits).
    let output = hop_command()
        .arg("migrate")
        .env("HOP_DATABASE_URL", url("right-one"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn visits_at(link_id: i64, times: Vec<i64>) -> hop::analytics::enrich::VisitGroup {
    hop::analytics::enrich::VisitGroup {
        profile: hop::analytics::enrich::Profile {
            link_id,
            browser: "Firefox",
            os: "Linux",
            device: "desktop",
            bot: false,
            language: None,
            referrer_host: None,
            referrer_url: None,
            country: None,
            region: None,
            city: None,
            ip: None,
            qr: false,
            counted: false,
        },
        times,
    }
}

#[tokio::test]
async fn retention_drops_whole_months_of_raw_visits() {
    if !postgres_or_say("retention_drops_whole_months_of_raw_visits") {
        return;
    }
    // The server's own hourly retention must not get there first.
    let server = TestServer::start_with(&[
        ("HOP_ANALYTICS_RAW_RETENTION_DAYS", "36500"),
        ("HOP_ANALYTICS_HOURLY_RETENTION_DAYS", "36500"),
    ])
    .await;
    let analytics = server.state.stores.analytics.clone();
    // 2025-03-10 and 2025-04-20 (UTC): months with no partition yet, made on demand.
    let march = 1_741_564_800_000;
    let april = 1_745_107_200_000;
    let now = hop::domain::link::now_ms();
    analytics
        .record_visits(
            Arc::new(vec![
                // A link's visits of one batch share a block: one link per month.
                visits_at(1, vec![march, march + 1000]),
                visits_at(2, vec![april]),
                visits_at(3, vec![now]),
            ]),
            true,
        )
        .await
        .unwrap();
    let partition = |name: &str| {
        common::count_rows(
            server.dir.path(),
            &format!("SELECT COUNT(*) FROM pg_class WHERE relname = '{name}'"),
        )
    };
    assert_eq!(partition("visit_blocks_y2025m03"), 1);
    assert_eq!(partition("visit_blocks_y2025m04"), 1);
    // The window ends inside April: March goes whole, April loses its older visits.
    let (deleted, _) = analytics.prune(april + 1, 0).await.unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(partition("visit_blocks_y2025m03"), 0);
    assert_eq!(partition("visit_blocks_y2025m04"), 1);
    for (link, left) in [(1, 0), (2, 0), (3, 1)] {
        let visits = analytics
            .visits(hop::domain::link::LinkId(link), None, 10)
            .await
            .unwrap();
        assert_eq!(visits.len(), left, "link {link}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_only_what_needs_the_database_and_heals_by_itself() {
    let Some(server_db) = private_server("an outage test") else {
        return;
    };
    let server = warm_server_on(&server_db).await;
    server_db.halt();

    // Cached redirects do not need the database.
    assert_eq!(server.get("/warm").await.status(), 302);
    // What needs it answers 503 with Retry-After, and never waits past the timeout.
    let json = |request: reqwest::RequestBuilder| {
        request
            .header("accept", "application/json")
            .bearer_auth(&server.admin_key)
    };
    let started = std::time::Instant::now();
    let miss = json(server.client.get(server.url("/cold123")))
        .send()
        .await
        .unwrap();
    assert_eq!(miss.status(), 503);
    assert_eq!(miss.headers()["retry-after"], "1");
    assert_eq!(miss.headers()["content-type"], "application/problem+json");
    let problem: Value = miss.json().await.unwrap();
    assert_eq!(problem["type"], "urn:hop:problem:unavailable");
    let create = json(server.client.post(server.url("/api/v1/links")))
        .json(&json!({"url": "https://example.com/new", "alias": "during"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 503);
    assert_eq!(create.headers()["retry-after"], "1");
    assert_eq!(server.get("/readyz").await.status(), 503);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(3 * 1500),
        "three answers took {:?}",
        started.elapsed()
    );

    // Back: hop recovers without a restart.
    server_db.resume();
    let healed = common::eventually(std::time::Duration::from_secs(10), || async {
        server.get("/readyz").await.status() == 200
    })
    .await;
    assert!(healed, "/readyz did not recover");
    assert_eq!(server.get("/cold123").await.status(), 404);
    let created = server
        .create_ok(json!({"url": "https://example.com/new", "alias": "during"}))
        .await;
    assert_eq!(created["code"], "during");
    assert_eq!(server.get("/during").await.status(), 302);
    assert_eq!(server.get("/warm").await.status(), 302);
}

#[tokio::test]
async fn a_frozen_database_costs_at_most_the_timeout_and_heals_by_itself() {
    let Some(server_db) = private_server("a frozen-database test") else {
        return;
    };
    let server = warm_server_on(&server_db).await;
    // Connections stay open and nothing answers: only the timeout can end a wait.
    server_db.freeze();
    assert_eq!(server.get("/warm").await.status(), 302);
    for (n, request) in [
        server.client.get(server.url("/cold123")),
        server
            .client
            .post(server.url("/api/v1/links"))
            .bearer_auth(&server.admin_key)
            .json(&json!({"url": "https://example.com/frozen", "alias": "frozen"})),
        server
            .client
            .get(server.url("/api/v1/links"))
            .bearer_auth(&server.admin_key),
    ]
    .into_iter()
    .enumerate()
    {
        let started = std::time::Instant::now();
        let response = request
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:hop:problem:unavailable", "{problem}");
        assert!(
            took < std::time::Duration::from_millis(1000 + 700),
            "a frozen database held request {n} for {took:?} (database_timeout_ms 1000)"
        );
    }
    let started = std::time::Instant::now();
    assert_eq!(server.get("/readyz").await.status(), 503);
    assert!(started.elapsed() < std::time::Duration::from_millis(1700));

    server_db.thaw();
    let healed = common::eventually(std::time::Duration::from_secs(15), || async {
        server.get("/readyz").await.status() == 200
    })
    .await;
    assert!(healed, "/readyz did not recover after the freeze");
    // The create that timed out may or may not have committed; a new one must work.
    let created = server
        .create_ok(json!({"url": "https://example.com/after", "alias": "after"}))
        .await;
    assert_eq!(created["code"], "after");
    assert_eq!(server.get("/after").await.status(), 302);
    assert_eq!(server.get("/cold123").await.status(), 404);
}

/// This replica's value of one `/metrics` family.
async fn replica_metric(server: &TestServer, family: &str) -> u64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    let prefix = format!("{family}{{replica=");
    text.lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {family} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_replica_and_fall_back_to_the_primary() {
    let Some(primary) = private_server("the replica test") else {
        return;
    };
    let replica = primary.start_replica();
    let (primary_url, replica_url) = (primary.url(), replica.url());
    let server = TestServer::start_with(&[
        ("HOP_DATABASE_URL", primary_url.as_str()),
        ("HOP_DATABASE_REPLICA_URLS", replica_url.as_str()),
        // Above the heartbeat's one-second step, with room for a busy machine.
        ("HOP_REPLICA_MAX_LAG_MS", "2500"),
    ])
    .await;
    let in_use = || async { replica_metric(&server, "hop_database_replica_in_use").await == 1 };
    assert!(common::eventually(std::time::Duration::from_secs(10), in_use).await);
    let key = server.admin_key.clone();
    server
        .create_ok(json!({"url": "https://example.com/one", "alias": "one"}))
        .await;

    // Listings are read from the replica (once it has replayed the create).
    let before = replica_metric(&server, "hop_database_replica_reads_total").await;
    let listed = common::eventually(std::time::Duration::from_secs(10), || async {
        let page: Value = server
            .client
            .get(server.url("/api/v1/links"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["items"]
            .as_array()
            .is_some_and(|items| items.len() == 1)
    })
    .await;
    assert!(listed);
    assert!(replica_metric(&server, "hop_database_replica_reads_total").await > before);

    // A link the replica does not have yet (its replay is paused) still resolves:
    // the miss is asked of the primary. Made by another process, so not cached here.
    common::pg_execute(&replica_url, "SELECT pg_wal_replay_pause()");
    let output = hop_command()
        .args([
            "links",
            "create",
            "https://example.com/fresh",
            "--user",
            "admin",
        ])
        .args(["--alias", "fresh"])
        .env("HOP_DATABASE_URL", &primary_url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(server.get("/fresh").await.status(), 302);
    // Paused, it falls behind: skipped once past replica_max_lag_ms, back once caught up.
    let skipped = || async { replica_metric(&server, "hop_database_replica_in_use").await == 0 };
    assert!(common::eventually(std::time::Duration::from_secs(10), skipped).await);
    assert!(replica_metric(&server, "hop_database_replica_lag_ms").await > 2500);
    common::pg_execute(&replica_url, "SELECT pg_wal_replay_resume()");
    assert!(common::eventually(std::time::Duration::from_secs(10), in_use).await);

    // A replica that stops fails no request: the primary answers.
    replica.halt();
    for path in [
        "/api/v1/links",
        "/api/v1/links/one/stats",
        "/api/v1/links/one/visits",
    ] {
        let response = server
            .client
            .get(server.url(path))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(server.get("/not-there").await.status(), 404);
    assert_eq!(server.get("/one").await.status(), 302);
    assert_eq!(
        replica_metric(&server, "hop_database_replica_in_use").await,
        0
    );
}

/// What a client sees of each code (HEAD: no click), of every link in the listing
/// (page by page, newest first), and of each alias's stats and visits over a fixed
/// range, from `base` with `key`.
async fn answers(base: &str, key: &str, codes: &[String], aliases: &[&str]) -> Vec<String> {
    let http = client();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_url = format!("{base}/api/v1/links?limit=100");
        if let Some(cursor) = &cursor {
            page_url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = http
            .get(page_url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for link in page["items"].as_array().unwrap() {
            let mut link = link.clone();
            let link = link.as_object_mut().unwrap();
            link.remove("shortUrl");
            link.remove("domain");
            seen.push(serde_json::to_string(link).unwrap());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    for code in codes {
        let response = http.head(format!("{base}/{code}")).send().await.unwrap();
        seen.push(format!(
            "{code} {} {:?}",
            response.status(),
            response.headers().get("location")
        ));
    }
    for alias in aliases {
        for path in [
            format!(
                "/api/v1/links/{alias}/stats?from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z"
            ),
            format!("/api/v1/links/{alias}/visits"),
            format!("/api/v1/links/{alias}"),
        ] {
            let response = http
                .get(format!("{base}{path}"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let mut body: Value = response.json().await.unwrap();
            // The one field that names the server the answer came from.
            if let Some(link) = body.as_object_mut() {
                link.remove("shortUrl");
                link.remove("domain");
            }
            seen.push(format!("{path} {status} {body}"));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_moves_an_install_from_sqlite_and_every_answer_stays_the_same() {
    if !postgres_or_say("copy_moves_an_install_from_sqlite_and_every_answer_stays_the_same") {
        return;
    }
    // The source: an embedded install (an empty database_url is SQLite in data_dir).
    let mut source = TestServer::start_with(&[("HOP_DATABASE_URL", "")]).await;
    let key = source.admin_key.clone();
    let mut codes = Vec::new();
    // 100,000 links: the listing compares every one of them; redirects are checked
    // for one in 50 and for every alias.
    for round in 0..100 {
        let items: Vec<Value> = (0..1000)
            .map(|i| json!({"url": format!("https://example.com/{round}/{i}"), "tags": ["bulk"]}))
            .collect();
        let response = source
            .client
            .post(source.url("/api/v1/links/bulk"))
            .bearer_auth(&key)
            .json(&json!({ "links": items }))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        for result in body["results"].as_array().unwrap() {
            codes.push(result["link"]["code"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(codes.len(), 100_000);
    let generated = codes.clone();
    let mut codes: Vec<String> = codes.into_iter().step_by(50).collect();
    source
        .create_ok(json!({"url": "https://example.com/a", "alias": "visited", "tags": ["x", "y"]}))
        .await;
    source
        .create_ok(
            json!({"url": "https://example.com/p", "alias": "secret", "password": "opensesame"}),
        )
        .await;
    source
        .create_ok(json!({"url": "https://example.com/l", "alias": "limited", "maxClicks": 3}))
        .await;
    source
        .create_ok(json!({"url": "https://example.com/d", "alias": "gone"}))
        .await;
    let deleted = source
        .client
        .delete(source.url("/api/v1/links/gone"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    for agent in [
        "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        "curl/8.0",
    ] {
        for _ in 0..3 {
            let response = source
                .client
                .get(source.url("/visited"))
                .header("user-agent", agent)
                .header("referer", "https://news.example.org/item")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 302);
        }
    }
    for _ in 0..5 {
        source.get("/limited").await;
    }
    // Every visit stored, then the install is stopped (as an operator would).
    let stored = common::eventually(std::time::Duration::from_secs(5), || async {
        let stats: Value = source
            .client
            .get(source.url("/api/v1/links/visited/stats"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["total"] == 6
    })
    .await;
    assert!(stored);
    codes.extend(["visited", "secret", "limited", "gone", "nothere"].map(String::from));
    let aliases = ["visited", "limited", "secret"];
    let before = answers(&source.base, &key, &codes, &aliases).await;
    source.stop().await;
    let sqlite = format!("sqlite://{}", source.dir.path().join("hop.db").display());

    // The target: a fresh PostgreSQL database.
    let target = common::data_dir();
    let target_url = target.database_url().unwrap().to_owned();
    let copy = |extra: &[&str]| {
        hop_command()
            .args(["copy", "--from", &sqlite, "--to", &target_url])
            .args(extra)
            .output()
            .unwrap()
    };
    let output = copy(&[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Finished copying"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("100%"));

    // An interruption after the first range: the next run resumes there.
    common::pg_execute(
        &target_url,
        "DELETE FROM link_tags WHERE link_id >= 1000; DELETE FROM links WHERE id >= 1000; \
         UPDATE copy_progress SET next_link_id = 1000, done = false",
    );
    let output = copy(&[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Resumed and finished"));
    let output = copy(&[]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("already copied"));
    assert_eq!(
        common::count_rows(target.path(), "SELECT COUNT(*) FROM links"),
        100_004
    );

    let node = HopProcess::start(target.path(), &[]);
    let after = answers(&node.base, &key, &codes, &aliases).await;
    assert_eq!(before.len(), after.len());
    for (was, is) in before.iter().zip(&after) {
        assert_eq!(was, is);
    }
    // The target goes on where the source stopped: new ids and codes do not collide.
    let fresh = node
        .create_link(&key, json!({"url": "https://example.com/after"}))
        .await;
    assert!(!generated.contains(&fresh["code"].as_str().unwrap().to_owned()));
    // Its id is the first of a block leased past everything the source had leased.
    let source_counter = rusqlite::Connection::open(source.dir.path().join("hop.db"))
        .unwrap()
        .query_row(
            "SELECT next FROM counters WHERE name = 'link_ids'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .unwrap();
    let fresh_code = fresh["code"].as_str().unwrap();
    assert_eq!(
        common::count_rows(
            target.path(),
            &format!("SELECT id FROM links WHERE code = '{fresh_code}'")
        ),
        source_counter
    );

    // A target that holds data is refused unless asked.
    let again = common::data_dir();
    let copied = again.path().join("hop.db");
    std::fs::copy(source.dir.path().join("hop.db"), &copied).unwrap();
    let output = hop_command()
        .args(["copy", "--to", &target_url, "--from"])
        .arg(format!("sqlite://{}", copied.display()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already holds") && stderr.contains("--allow-non-empty"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_version_3_database_moves_to_id_order_in_place() {
    if !postgres_or_say("a_version_3_database_moves_to_id_order_in_place") {
        return;
    }
    use hop::store::{LinkStore, NewLink, StoreError, StoreOptions, postgres::PgStore};
    let dir = common::data_dir();
    let url = dir.database_url().unwrap().to_owned();
    let options = StoreOptions::default();
    // A database as version 3 left it: ids from the sequence in creation order, codes
    // from the per-length counter, a tag, clicks, a deleted link and another domain.
    PgStore::create_at_version(&url, &options, 3).await.unwrap();
    let key = [9u8; 16];
    let space = hop::domain::code::CodeSpace::new(7, key);
    let old: Vec<String> = (0..5).map(|n| space.encode(n)).collect();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut sql = format!(
        "INSERT INTO settings (name, value) VALUES ('code_permutation_key', '\\x{hex}'); \
         INSERT INTO counters (name, next) VALUES ('codes_len7', 4096); \
         INSERT INTO domains (name, created_at) VALUES ('go.example.com', 0); \
         INSERT INTO links (id, domain, code, url, created_at, updated_at, redirect_status, \
         deleted_at) VALUES "
    );
    for (i, code) in old.iter().enumerate() {
        let deleted = if i == 3 { "5" } else { "NULL" };
        sql.push_str(&format!(
            "({}, '', '{code}', 'https://example.com/{i}', 0, 0, 302, {deleted}), ",
            i + 1
        ));
    }
    sql.push_str(&format!(
        "(6, '', 'custom', 'https://example.com/c', 0, 0, 302, NULL), \
         (7, 'go.example.com', '{}', 'https://go.example.com/', 0, 0, 302, NULL); \
         INSERT INTO link_tags (link_id, tag) VALUES (6, 'kept'); \
         INSERT INTO link_clicks (link_id, clicks) VALUES (2, 41)",
        old[0]
    ));
    common::execute_sql(dir.path(), &sql);

    let store = PgStore::connect(&url, &options).await.unwrap();
    let found = |domain: &'static str, code: String| {
        let store = store.clone();
        async move {
            let by_api = store
                .link_by_code(domain, &code)
                .await
                .unwrap()
                .map(|l| l.id.0);
            let by_redirect = store
                .redirect_by_code(domain, &code)
                .await
                .unwrap()
                .map(|r| r.id.0);
            assert_eq!(by_api, by_redirect, "{code}");
            by_api
        }
    };
    for (i, code) in old.iter().enumerate() {
        let expected = (i != 3).then_some(i as i64 + 1);
        assert_eq!(found("", code.clone()).await, expected, "{code}");
    }
    assert_eq!(found("", "custom".into()).await, Some(6));
    assert_eq!(found("go.example.com", old[0].clone()).await, Some(7));
    let custom = store
        .link_by_id(hop::domain::link::LinkId(6))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(custom.tags, vec!["kept".to_owned()]);
    assert_eq!(
        store
            .link_by_id(hop::domain::link::LinkId(2))
            .await
            .unwrap()
            .unwrap()
            .clicks,
        41
    );

    // New ids and codes start past every old one; the old codes stay taken.
    let codes = hop::codes::CodeAllocator::new(store.clone(), 7)
        .await
        .unwrap();
    let (id, code) = codes.next().await.unwrap();
    assert!(id.0 >= 4096, "{id:?}");
    let new_link = |id, code: &str| NewLink {
        id,
        domain: String::new(),
        code: code.to_owned(),
        url: "https://example.com/new".into(),
        title: None,
        created_at: 1,
        expires_at: None,
        max_clicks: None,
        redirect: hop::domain::link::RedirectType::Found,
        owner: None,
        tags: Vec::new(),
        password_hash: None,
    };
    let link = store.insert_link(new_link(id, &code)).await.unwrap();
    assert_eq!(found("", code.clone()).await, Some(link.id.0));
    for code in &old {
        let again = store
            .insert_link(new_link(codes.next_id().await.unwrap(), code))
            .await;
        assert!(
            matches!(again, Err(StoreError::Conflict)),
            "{code}: {again:?}"
        );
    }
    // An alias shaped like a generated code takes the id its code decodes to; one that
    // is not, an id of the alias range.
    let shaped = store
        .insert_link(new_link(codes.next_id().await.unwrap(), "Summer7"))
        .await
        .unwrap();
    assert_eq!(shaped.id.0 as u64, space.decode("Summer7").unwrap());
    let dashed = store
        .insert_link(new_link(codes.next_id().await.unwrap(), "sum-mer"))
        .await
        .unwrap();
    assert!(dashed.id.0 >= hop::codes::ALIAS_IDS);
    assert_eq!(found("", "Summer7".into()).await, Some(shaped.id.0));
    assert_eq!(found("", "sum-mer".into()).await, Some(dashed.id.0));
    // Bulk: one item per kind, and a duplicate of each alias.
    let (gid, gcode) = codes.next().await.unwrap();
    let mut batch = vec![new_link(gid, &gcode)];
    for alias in ["Winter8", "win-ter", "Winter8", "win-ter", "custom"] {
        batch.push(new_link(codes.next_id().await.unwrap(), alias));
    }
    let results = store.insert_links(batch).await.unwrap();
    assert!(results[0].is_ok() && results[1].is_ok() && results[2].is_ok());
    for result in &results[3..] {
        assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    }
    for (code, result) in [
        (gcode, &results[0]),
        ("Winter8".into(), &results[1]),
        ("win-ter".into(), &results[2]),
    ] {
        assert_eq!(found("", code).await, Some(result.as_ref().unwrap().id.0));
    }
}

#[tokio::test]
async fn breakdowns_of_version_5_pack_into_one_row_per_link_and_day() {
    if !postgres_or_say("breakdowns_of_version_5_pack_into_one_row_per_link_and_day") {
        return;
    }
    use hop::store::{AnalyticsStore, StatsScope, StoreOptions, postgres::PgStore};
    let dir = common::data_dir();
    let url = dir.database_url().unwrap().to_owned();
    let options = StoreOptions::default();
    PgStore::create_at_version(&url, &options, 5).await.unwrap();
    common::execute_sql(
        dir.path(),
        "INSERT INTO visit_dims (link_id, dim, day_start, value, clicks) VALUES \
         (1, 'browser', 0, 'Firefox', 3), (1, 'browser', 0, 'Chrome', 2), \
         (1, 'country', 0, '', 5), (1, 'referrer', 0, 'example.org:8080', 1), \
         (1, 'browser', 86400, 'Firefox', 4), (2, 'city', 0, 'Linköping', 7), \
         (2, 'city', 0, '\"quoted\"', 1)",
    );
    let store = PgStore::connect(&url, &options).await.unwrap();
    let dims = |link: i64, to: i64| {
        let store = store.clone();
        async move {
            let scope = StatsScope::Link(hop::domain::link::LinkId(link));
            let mut dims = store.stats(scope, 0, to, 0).await.unwrap().dims;
            dims.sort();
            dims
        }
    };
    let own = |v: &[(&str, &str, u64)]| -> Vec<(String, String, u64)> {
        v.iter()
            .map(|(d, val, n)| (d.to_string(), val.to_string(), *n))
            .collect()
    };
    assert_eq!(
        dims(1, 86_400).await,
        own(&[
            ("browser", "Chrome", 2),
            ("browser", "Firefox", 3),
            ("country", "", 5),
            ("referrer", "example.org:8080", 1),
        ])
    );
    assert_eq!(
        dims(1, 2 * 86_400).await[1],
        ("browser".into(), "Firefox".into(), 7)
    );
    assert_eq!(
        dims(2, 86_400).await,
        own(&[("city", "\"quoted\"", 1), ("city", "Linköping", 7)])
    );
    // Folded into months, the second day's row joins the first's (the 1st of
    // January 1970): the counts stay, the rows become one per link.
    store.prune(0, 3 * 86_400).await.unwrap();
    assert_eq!(
        dims(1, 2 * 86_400).await[1],
        ("browser".into(), "Firefox".into(), 7)
    );
    assert_eq!(
        common::count_rows(dir.path(), "SELECT COUNT(*) FROM visit_day_dims"),
        2
    );
}
