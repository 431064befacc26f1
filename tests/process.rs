//! The real `hop` binary: first start, CLI commands, configuration errors, logs,
//! graceful shutdown and crash durability.

mod common;

use common::{HopProcess, client, hop_command};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn hop(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    hop_command()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .envs(common::database_env(data_dir))
        .output()
        .unwrap()
}

fn new_key(data_dir: &std::path::Path, admin: bool) -> String {
    let mut args = vec!["keys", "create", "--name"];
    if admin {
        args.extend(["tester-admin", "--admin"]);
    } else {
        args.push("tester");
    }
    let output = hop(&args, data_dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last = stdout.lines().last().unwrap().to_owned();
    assert!(last.starts_with("hop_") && !last.contains(' '), "{stdout}");
    last
}

#[tokio::test]
async fn first_start_prints_one_admin_key_once() {
    let dir = common::data_dir();
    let first = HopProcess::start(dir.path(), &[]);
    let lines = first.stderr_lines(2);
    assert!(lines[0].contains("will not be shown again"), "{lines:?}");
    let key = lines[1].clone();
    let response = client()
        .post(first.url("/api/v1/shorten"))
        .bearer_auth(&key)
        .json(&json!({"url": "https://example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    first.signal("TERM");
    let (ok, _, _) = first.wait();
    assert!(ok);

    let second = HopProcess::start(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(200));
    second.signal("TERM");
    let (ok, _, stderr) = second.wait();
    assert!(ok);
    assert!(stderr.iter().all(|l| !l.contains("hop_")), "{stderr:?}");
}

#[tokio::test]
async fn keys_create_prints_a_working_key() {
    let dir = common::data_dir();
    let user_key = new_key(dir.path(), false);
    let admin_key = new_key(dir.path(), true);
    assert_ne!(user_key, admin_key);
    let server = HopProcess::start(dir.path(), &[]);
    // Keys existed already, so no bootstrap key was printed.
    assert!(server.stderr_lines(0).iter().all(|l| !l.contains("hop_")));
    let created: Value = server
        .create_link(&user_key, json!({"url": "https://example.com/k"}))
        .await;
    let code = created["code"].as_str().unwrap();
    let fetched = client()
        .get(server.url(&format!("/api/v1/links/{code}")))
        .header("x-api-key", &admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    // The database stores only the hash.
    let stored = common::stored_bytes(dir.path());
    let needle = user_key.as_bytes();
    assert!(!stored.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn cli_errors_are_clear() {
    let dir = common::data_dir();
    let output = hop(&["keys", "create", "--name", ""], dir.path());
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--name"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = hop(&["keys", "create"], dir.path());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--name"));

    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["keys", "create", "--help"],
        &["config", "--help"],
    ] {
        let output = hop_command().args(args).output().unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"));
    }
}

#[test]
fn default_config_round_trips_and_unknown_keys_are_named() {
    let dir = common::data_dir();
    let output = hop_command().args(["config", "default"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("# Address and port"));
    let path = dir.path().join("hop.toml");
    std::fs::write(&path, &text).unwrap();
    // The printed default is a valid config (keys create reads config too).
    let ok = hop_command()
        .args(["keys", "create", "--name", "x", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    std::fs::write(&path, format!("{text}\nlisten_port = 9\n")).unwrap();
    let bad = hop_command()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("listen_port") && message.contains("hop.toml"),
        "{message}"
    );

    let bad_env = hop_command()
        .args(["serve"])
        .env("HOP_CODE_LENGTH", "99")
        .output()
        .unwrap();
    assert!(!bad_env.status.success());
    assert!(String::from_utf8_lossy(&bad_env.stderr).contains("code_length"));
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_and_no_secrets() {
    let dir = common::data_dir();
    let key = new_key(dir.path(), true);
    let server = HopProcess::start(dir.path(), &[]);
    let created: Value = server
        .create_link(&key, json!({"url": "https://example.com/logged"}))
        .await;
    let code = created["code"].as_str().unwrap();
    client()
        .get(server.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    server.signal("TERM");
    let (ok, stdout, _) = server.wait();
    assert!(ok);
    let requests: Vec<Value> = stdout
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|v| v["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{stdout:?}");
    assert_eq!(requests[0]["http.method"], "POST");
    assert_eq!(requests[0]["http.route"], "/api/v1/links");
    assert_eq!(requests[0]["http.status"], 201);
    assert_eq!(requests[1]["http.route"], "/{code}");
    assert_eq!(requests[1]["http.status"], 302);
    assert!(requests[1]["duration_ms"].as_f64().unwrap() >= 0.0);
    let all = stdout.join("\n");
    assert!(!all.contains(&key));
    // Request lines carry exactly these fields: nothing about the client or headers.
    let allowed = [
        "timestamp",
        "level",
        "message",
        "http.method",
        "http.route",
        "http.status",
        "duration_ms",
    ];
    for line in &requests {
        for field in line.as_object().unwrap().keys() {
            assert!(
                allowed.contains(&field.as_str()),
                "unexpected log field {field}"
            );
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_loses_no_click() {
    let dir = common::data_dir();
    let key = new_key(dir.path(), true);
    // A long flush interval: every click must come from the shutdown flush.
    let server = HopProcess::start(dir.path(), &[("HOP_CLICK_FLUSH_INTERVAL_MS", "600000")]);
    let http = client();
    let created: Value = server
        .create_link(&key, json!({"url": "https://example.com/g"}))
        .await;
    let code = created["code"].as_str().unwrap().to_owned();
    let clicks = 300;
    for _ in 0..clicks {
        assert_eq!(
            http.get(server.url(&format!("/{code}")))
                .send()
                .await
                .unwrap()
                .status(),
            302
        );
    }
    server.signal("TERM");
    let (ok, _, _) = server.wait();
    assert!(ok);
    let db = dir.path();
    assert_eq!(
        common::count_rows(
            db,
            &format!(
                "SELECT c.clicks FROM link_clicks c JOIN links l ON l.id = c.link_id \
                 WHERE l.code = '{code}'"
            )
        ),
        clicks
    );
    // The visits carrying them were stored too: the stats count every click.
    assert_eq!(
        common::count_rows(
            db,
            "SELECT CAST(SUM(humans + bots) AS BIGINT) FROM visit_hourly"
        ),
        clicks
    );
}

#[tokio::test]
async fn sigint_drains_for_shutdown_drain_ms_then_stops() {
    let dir = common::data_dir();
    let key = new_key(dir.path(), true);
    let server = HopProcess::start(dir.path(), &[("HOP_SHUTDOWN_DRAIN_MS", "1500")]);
    server
        .create_link(
            &key,
            json!({"url": "https://example.com/d", "alias": "kept"}),
        )
        .await;
    let http = client();
    let status = |path: &str| {
        let request = http.get(server.url(path));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/readyz").await, 200);
    let signalled = std::time::Instant::now();
    // SIGINT (Ctrl-C) drains like SIGTERM.
    server.signal("INT");
    let draining = common::eventually(Duration::from_secs(1), || async {
        status("/readyz").await == 503
    })
    .await;
    assert!(draining, "/readyz did not fail after SIGINT");
    // Everything else is served as before, the redirect and the API alike.
    assert_eq!(status("/kept").await, 302);
    assert_eq!(status("/healthz").await, 200);
    let listed = http
        .get(server.url("/api/v1/links"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.headers()["connection"], "close");
    let (ok, stdout, _) = server.wait();
    assert!(ok);
    assert!(signalled.elapsed() >= Duration::from_millis(1500));
    assert!(
        stdout.iter().any(|line| line.contains("\"drain_ms\":1500")),
        "{stdout:?}"
    );
}

#[tokio::test]
async fn without_a_drain_sigterm_stops_at_once() {
    let dir = common::data_dir();
    let server = HopProcess::start(dir.path(), &[]);
    let signalled = std::time::Instant::now();
    server.signal("TERM");
    let (ok, stdout, _) = server.wait();
    assert!(ok);
    // The default (0) keeps the shutdown as it was: no wait, no drain line.
    assert!(
        signalled.elapsed() < Duration::from_millis(3000),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        !stdout.iter().any(|line| line.contains("draining")),
        "{stdout:?}"
    );
}

#[tokio::test]
async fn in_flight_requests_finish_on_sigterm() {
    let dir = common::data_dir();
    let key = new_key(dir.path(), true);
    let server = HopProcess::start(dir.path(), &[]);
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let request = http
            .post(server.url("/api/v1/links"))
            .bearer_auth(&key)
            .json(&json!({"url": format!("https://example.com/f/{i}")}));
        tasks.push(tokio::spawn(async move { request.send().await }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    server.signal("TERM");
    let mut acknowledged = Vec::new();
    for task in tasks {
        // A request is either answered in full or refused before it started.
        if let Ok(response) = task.await.unwrap() {
            assert_eq!(response.status(), 201);
            let body: Value = response.json().await.unwrap();
            acknowledged.push(body["code"].as_str().unwrap().to_owned());
        }
    }
    let (ok, _, _) = server.wait();
    assert!(ok);
    let db = dir.path();
    for code in &acknowledged {
        assert_eq!(
            common::count_rows(
                db,
                &format!("SELECT COUNT(*) FROM links WHERE code = '{code}'")
            ),
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_links_survive_kill_9() {
    let dir = common::data_dir();
    let key = new_key(dir.path(), true);
    let server = HopProcess::start(dir.path(), &[]);
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..32 {
        let http = client();
        let url = server.url("/api/v1/links");
        let key = key.clone();
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let target = format!("https://example.com/crash/{worker}/{i}");
                i += 1;
                let Ok(response) = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"url": target}))
                    .send()
                    .await
                else {
                    break;
                };
                if response.status() != 201 {
                    break;
                }
                let Ok(body) = response.json::<Value>().await else {
                    break;
                };
                acknowledged
                    .lock()
                    .unwrap()
                    .push((body["code"].as_str().unwrap().to_owned(), target));
            }
        }));
    }
    // Let the load run, then kill the process without warning while it is busy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.signal("KILL");
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, _, _) = server.wait();
    assert!(!ok);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "only {} creates before the kill",
        acknowledged.len()
    );

    let restarted = HopProcess::start(dir.path(), &[]);
    let http = client();
    for (code, target) in &acknowledged {
        let response = http
            .get(restarted.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "acknowledged link {code} lost");
        assert_eq!(response.headers()["location"], target.as_str());
    }
    // New links after the restart do not reuse codes.
    let after: Value = restarted
        .create_link(&key, json!({"url": "https://example.com/after"}))
        .await;
    let code = after["code"].as_str().unwrap();
    assert!(acknowledged.iter().all(|(c, _)| c != code));
}

#[tokio::test]
async fn click_limits_hold_across_restarts() {
    let dir = common::data_dir();
    let key = new_key(dir.path(), true);
    let http = client();
    let first = HopProcess::start(dir.path(), &[]);
    let created = http
        .post(first.url("/api/v1/links"))
        .bearer_auth(&key)
        .json(&json!({"url": "https://example.com/limited", "alias": "thrice", "maxClicks": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for _ in 0..2 {
        assert_eq!(
            http.get(first.url("/thrice"))
                .send()
                .await
                .unwrap()
                .status(),
            302
        );
    }
    first.signal("TERM");
    assert!(first.wait().0);

    // The new process starts its count from the two stored clicks: one is left.
    let second = HopProcess::start(dir.path(), &[]);
    let statuses = [
        http.get(second.url("/thrice"))
            .send()
            .await
            .unwrap()
            .status(),
        http.get(second.url("/thrice"))
            .send()
            .await
            .unwrap()
            .status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [302, 410]);
}

fn run_ok(args: &[&str], data_dir: &std::path::Path) -> String {
    let output = hop(args, data_dir);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn run_err(args: &[&str], data_dir: &std::path::Path) -> String {
    let output = hop(args, data_dir);
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test]
async fn users_and_keys_from_the_cli() {
    let dir = common::data_dir();
    let d = dir.path();
    run_ok(&["users", "add", "ana"], d);
    run_ok(&["users", "add", "root", "--admin"], d);
    assert!(run_err(&["users", "add", "ana"], d).contains("already exists"));
    let ana_1 = run_ok(&["keys", "create", "--user", "ana", "--name", "laptop"], d);
    let ana_1 = ana_1.lines().last().unwrap().to_owned();
    let ana_2 = run_ok(&["keys", "create", "--user", "ana", "--name", "ci"], d);
    let ana_2 = ana_2.lines().last().unwrap().to_owned();
    assert!(run_err(&["keys", "create", "--user", "nobody"], d).contains("hop users add nobody"));
    assert!(run_err(&["keys", "create", "--user", "ana", "--admin"], d).contains("--admin"));
    assert!(run_err(&["keys", "create"], d).contains("--user"));
    assert!(run_err(&["keys", "create", "--name", "ana", "--admin"], d).contains("not an admin"));
    assert!(
        run_err(
            &[
                "keys",
                "create",
                "--user",
                "ana",
                "--expires-at",
                "2001-01-01T00:00:00Z"
            ],
            d
        )
        .contains("not in the future")
    );
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expiring = run_ok(
        &[
            "keys",
            "create",
            "--user",
            "ana",
            "--name",
            "temp",
            "--expires-at",
            &soon,
        ],
        d,
    );
    let expiring = expiring.lines().last().unwrap().to_owned();

    let users = run_ok(&["users", "list"], d);
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("ana ") && l.contains(" user ") && l.contains(" 3 ")),
        "{users}"
    );
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("root ") && l.contains(" admin ")),
        "{users}"
    );

    let server = HopProcess::start(d, &[]);
    let http = client();
    // Both of ana's keys act for ana: a link made with one is hers through the other.
    let created: Value = server
        .create_link(
            &ana_1,
            json!({"url": "https://example.com/ana", "alias": "ana-link"}),
        )
        .await;
    assert_eq!(created["code"], "ana-link");
    let via_other = http
        .get(server.url("/api/v1/links/ana-link"))
        .bearer_auth(&ana_2)
        .send()
        .await
        .unwrap();
    assert_eq!(via_other.status(), 200);
    assert_eq!(
        http.get(server.url("/api/v1/links/ana-link"))
            .bearer_auth(&expiring)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Revoking and expiry take effect on the running server.
    let listing = run_ok(&["keys", "list", "--user", "ana"], d);
    let laptop_prefix = listing
        .lines()
        .find(|l| l.contains("laptop"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(ana_1.starts_with(&laptop_prefix));
    assert!(!listing.contains(&ana_1), "a secret was listed");
    run_ok(&["keys", "revoke", &laptop_prefix], d);
    assert!(run_err(&["keys", "revoke", &laptop_prefix], d).contains("no active key"));
    // Running servers trust a key they read for up to a second.
    tokio::time::sleep(hop::http::auth::KEY_CACHE_TTL + Duration::from_millis(100)).await;
    let revoked = http
        .get(server.url("/api/v1/links/ana-link"))
        .bearer_auth(&ana_1)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    let problem: Value = revoked.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("revoked"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = http
        .get(server.url("/api/v1/links/ana-link"))
        .bearer_auth(&expiring)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401);
    assert!(
        expired.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let states = run_ok(&["keys", "list"], d);
    assert!(
        states
            .lines()
            .any(|l| l.contains("laptop") && l.contains("revoked")),
        "{states}"
    );
    assert!(
        states
            .lines()
            .any(|l| l.contains("temp") && l.contains("expired")),
        "{states}"
    );

    // Removing a user revokes every key of theirs; their links stay.
    run_ok(&["users", "remove", "ana"], d);
    assert!(run_err(&["users", "remove", "ana"], d).contains("no user"));
    tokio::time::sleep(hop::http::auth::KEY_CACHE_TTL + Duration::from_millis(100)).await;
    assert_eq!(
        http.get(server.url("/api/v1/links/ana-link"))
            .bearer_auth(&ana_2)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(server.url("/ana-link"))
            .send()
            .await
            .unwrap()
            .status(),
        302
    );
}

#[tokio::test]
async fn links_from_the_cli() {
    let dir = common::data_dir();
    let d = dir.path();
    run_ok(&["users", "add", "ana"], d);
    let created = run_ok(
        &[
            "links",
            "create",
            "https://example.com/cli",
            "--user",
            "ana",
            "--alias",
            "from-cli",
            "--title",
            "CLI",
            "--tag",
            "Ops",
            "--max-clicks",
            "5",
        ],
        d,
    );
    assert!(
        created.lines().last().unwrap().ends_with("/from-cli"),
        "{created}"
    );
    assert!(created.contains("tags:         ops"), "{created}");
    let generated = run_ok(
        &[
            "links",
            "create",
            "https://example.com/gen",
            "--user",
            "ana",
        ],
        d,
    );
    let short_url = generated.lines().last().unwrap().to_owned();
    let code = short_url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(code.len(), 7);

    assert!(
        run_err(
            &["links", "create", "javascript:alert(1)", "--user", "ana"],
            d
        )
        .contains("scheme")
    );
    assert!(
        run_err(
            &["links", "create", "https://example.com", "--user", "nobody"],
            d
        )
        .contains("no user")
    );
    assert!(
        run_err(
            &[
                "links",
                "create",
                "https://example.com",
                "--user",
                "ana",
                "--alias",
                "from-cli"
            ],
            d
        )
        .contains("already taken")
    );
    assert!(run_err(&["links", "create", "https://example.com"], d).contains("--user"));

    let listed = run_ok(&["links", "list", "--user", "ana"], d);
    assert!(
        listed.contains("from-cli") && listed.contains(&code),
        "{listed}"
    );
    let tagged = run_ok(&["links", "list", "--tag", "ops"], d);
    assert!(
        tagged.contains("from-cli") && !tagged.contains(&code),
        "{tagged}"
    );
    let shown = run_ok(&["links", "get", "from-cli"], d);
    assert!(
        shown.contains("https://example.com/cli") && shown.contains("max clicks:   5"),
        "{shown}"
    );

    // The server redirects what the CLI made. While it runs, the CLI may not change
    // links (the server caches them): it is told who holds the database.
    let server = HopProcess::start(d, &[]);
    let http = client();
    let response = http.get(server.url("/from-cli")).send().await.unwrap();
    assert_eq!(response.headers()["location"], "https://example.com/cli");
    // (A PostgreSQL database has no writer lock: it is made for many processes, the
    // CLI being one more.)
    if !common::on_postgres() {
        let refused = run_err(&["links", "delete", &code], d);
        assert!(
            refused.contains(&format!(
                "in use by process {} (`hop serve`",
                server.child.id()
            )),
            "{refused}"
        );
    }
    assert!(run_ok(&["links", "get", &code], d).contains(&code));
    server.signal("TERM");
    assert!(server.wait().0);
    run_ok(&["links", "delete", &code], d);
    let server = HopProcess::start(d, &[]);
    assert_eq!(
        http.get(server.url(&format!("/{code}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(run_err(&["links", "get", &code], d).contains("no link"));
}

#[tokio::test]
async fn domains_from_the_cli() {
    let dir = common::data_dir();
    let d = dir.path();
    let help = run_ok(&["domains", "--help"], d);
    assert!(help.contains("add") && help.contains("remove"), "{help}");
    assert!(run_ok(&["domains", "add", "Go.Example.com"], d).contains("`go.example.com`"));
    assert!(run_err(&["domains", "add", "go.example.com"], d).contains("already registered"));
    assert!(run_err(&["domains", "add", "https://x.example/"], d).contains("not a valid"));
    // The default host (base_url's, here http://127.0.0.1:8080) is never registered.
    assert!(run_err(&["domains", "add", "127.0.0.1:8080"], d).contains("default domain"));
    run_ok(&["users", "add", "ana"], d);
    let created = run_ok(
        &[
            "links",
            "create",
            "https://example.com/go",
            "--user",
            "ana",
            "--alias",
            "here",
            "--domain",
            "go.example.com",
        ],
        d,
    );
    assert!(
        created.lines().last().unwrap() == "http://go.example.com/here",
        "{created}"
    );
    assert!(
        run_err(
            &[
                "links",
                "create",
                "https://example.com",
                "--user",
                "ana",
                "--domain",
                "x.example"
            ],
            d
        )
        .contains("not registered")
    );
    let listed = run_ok(&["domains", "list"], d);
    assert!(listed.contains("(default)"), "{listed}");
    let row = listed
        .lines()
        .find(|l| l.starts_with("go.example.com"))
        .unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "{listed}");

    // A running server serves the domain it loaded at start.
    let server = HopProcess::start(d, &[]);
    let response = client()
        .get(server.url("/here"))
        .header("host", "go.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "https://example.com/go");

    if !common::on_postgres() {
        let refused = run_err(&["domains", "remove", "go.example.com"], d);
        assert!(refused.contains("`hop serve`"), "{refused}");
    }
    assert!(run_ok(&["domains", "list"], d).contains("go.example.com"));
    server.signal("TERM");
    assert!(server.wait().0);
    assert!(run_err(&["domains", "remove", "go.example.com"], d).contains("still has 1 link"));
    run_ok(
        &["links", "delete", "here", "--domain", "go.example.com"],
        d,
    );
    assert!(run_ok(&["domains", "remove", "go.example.com"], d).contains("Removed"));
    assert!(run_err(&["domains", "remove", "go.example.com"], d).contains("no domain"));
    assert!(!run_ok(&["domains", "list"], d).contains("go.example.com"));
}

#[test]
fn a_geoip_database_that_cannot_be_used_stops_the_start() {
    let dir = common::data_dir();
    let d = dir.path();
    let config = d.join("hop.toml");
    let missing = d.join("missing.mmdb");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[geoip]\ndatabase = \"{}\"\n",
            missing.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let error = run_err(&["serve", "--config", &config], d);
    assert!(error.contains("[geoip]"), "{error}");
    assert!(error.contains("missing.mmdb"), "{error}");
    let domain_db = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/GeoIP2-Domain-Test.mmdb"
    );
    std::fs::write(
        d.join("hop.toml"),
        format!("listen = \"127.0.0.1:0\"\n[geoip]\ndatabase = \"{domain_db}\"\n"),
    )
    .unwrap();
    let error = run_err(&["serve", "--config", &config], d);
    assert!(error.contains("City database is needed"), "{error}");
}

#[tokio::test]
async fn links_to_hop_itself_are_refused_in_every_spelling() {
    let dir = common::data_dir();
    let key = new_key(dir.path(), true);
    let server = HopProcess::start(dir.path(), &[("HOP_BASE_URL", "https://sho.rt")]);
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let create = |url: String| {
        let request = client()
            .post(server.url("/api/v1/links"))
            .bearer_auth(&key)
            .json(&json!({ "url": url }));
        async move { request.send().await.unwrap() }
    };
    for url in [
        "http://sho.rt/x".to_owned(),
        "https://sho.rt/x".to_owned(),
        "https://SHO.RT./x".to_owned(),
        format!("http://localhost:{port}/x"),
        format!("http://127.0.0.1:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::1]:{port}/x"),
    ] {
        let response = create(url.clone()).await;
        assert_eq!(response.status(), 400, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:hop:problem:invalid-url", "{url}");
    }
    // Another port of this machine, or another host, is another server.
    let response = create(format!("http://localhost:{}/x", port.wrapping_add(1))).await;
    assert_eq!(response.status(), 201);
    let link: Value = response.json().await.unwrap();
    assert!(
        link["shortUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://sho.rt/")
    );
}

#[test]
fn config_errors_name_their_source_once() {
    let dir = tempfile::tempdir().unwrap();
    let serve_with = |file: Option<&str>, env: &[(&str, &str)]| {
        let mut command = hop_command();
        command.arg("serve").arg("--data-dir").arg(dir.path());
        if let Some(text) = file {
            let path = dir.path().join("hop.toml");
            std::fs::write(&path, text).unwrap();
            command.arg("--config").arg(path);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success());
        String::from_utf8(output.stderr).unwrap()
    };
    // A wrong type names the line and the key.
    let message = serve_with(Some("log_level = \"info\"\nlisten = 5\n"), &[]);
    assert!(message.contains("line 2, `listen`"), "{message}");
    // Every unknown key at once, each with its line.
    let message = serve_with(Some("foo = 1\nbar = 2\n[geoip]\ndatabse = \"x\"\n"), &[]);
    for part in [
        "`foo` (line 1)",
        "`bar` (line 2)",
        "`geoip.databse` (line 4)",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    // A bad environment value names the variable.
    let message = serve_with(None, &[("HOP_ANONYMOUS_CREATE", "yes")]);
    assert!(
        message.contains("environment variable HOP_ANONYMOUS_CREATE") && message.contains("yes"),
        "{message}"
    );
    let message = serve_with(None, &[("HOP_FOO", "1"), ("HOP_BAR", "2")]);
    assert!(
        message.contains("HOP_FOO") && message.contains("HOP_BAR"),
        "{message}"
    );
    // A missing file is reported once.
    let output = hop_command()
        .args(["serve", "--config", "/nonexistent/hop.toml"])
        .output()
        .unwrap();
    let message = String::from_utf8(output.stderr).unwrap();
    assert_eq!(message.matches("No such file").count(), 1, "{message}");
    assert!(message.contains("/nonexistent/hop.toml"), "{message}");
}

#[test]
fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = hop_command()
        .args(["serve", "--listen", "localhost:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let serving = std::io::BufRead::lines(stdout)
        .map_while(Result::ok)
        .find(|line| line.contains("hop is serving"));
    let _ = child.kill();
    let _ = child.wait();
    let line = serving.expect("hop serves on localhost");
    let value: Value = serde_json::from_str(&line).unwrap();
    let listen = value["listen"].as_str().unwrap();
    assert!(
        listen.starts_with("127.0.0.1:") || listen.starts_with("[::1]:"),
        "{listen}"
    );
}

#[test]
fn cli_lists_say_enough_and_the_last_admin_stays_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    run_ok(
        &[
            "keys",
            "create",
            "--name",
            "ops",
            "--admin",
            "--expires-at",
            "2031-05-01T00:00:00Z",
        ],
        path,
    );
    let keys = run_ok(&["keys", "list"], path);
    assert!(
        keys.contains("EXPIRES") && keys.contains("2031-05-01T00:00:00.000Z"),
        "{keys}"
    );

    // The link commands take base_url like the server: short URLs and the loop check.
    run_ok(&["users", "add", "ana"], path);
    let refused = run_err(
        &[
            "links",
            "create",
            "http://sho.rt/x",
            "--user",
            "ana",
            "--base-url",
            "https://sho.rt",
        ],
        path,
    );
    assert!(refused.contains("loop"), "{refused}");
    let created = run_ok(
        &[
            "links",
            "create",
            "https://example.com/a",
            "--user",
            "ana",
            "--base-url",
            "https://sho.rt",
        ],
        path,
    );
    assert!(
        created
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("https://sho.rt/"),
        "{created}"
    );
    let links = run_ok(&["links", "list"], path);
    assert!(
        links.contains("DOMAIN") && links.contains("(default)"),
        "{links}"
    );

    // The only admin is kept unless asked for.
    let last = run_err(&["users", "remove", "ops"], path);
    assert!(
        last.contains("last admin") && last.contains("--force"),
        "{last}"
    );
    assert!(run_ok(&["users", "list"], path).contains("ops"));
    run_ok(&["users", "remove", "ops", "--force"], path);
    assert!(!run_ok(&["users", "list"], path).contains("ops"));
}

#[tokio::test]
async fn an_admin_disables_and_enables_a_link_from_the_cli() {
    let dir = common::data_dir();
    let d = dir.path();
    run_ok(&["users", "add", "ana"], d);
    run_ok(
        &[
            "links",
            "create",
            "https://example.com/takedown",
            "--user",
            "ana",
            "--alias",
            "takedown",
        ],
        d,
    );
    assert!(run_err(&["links", "disable", "takedown"], d).contains("--reason"));
    assert!(
        run_err(&["links", "disable", "takedown", "--reason", " "], d)
            .contains("disabledReason must be 1 to 500 characters")
    );
    assert!(
        run_err(&["links", "disable", "nothing", "--reason", "spam"], d)
            .contains("no link with code `nothing`")
    );
    let shown = run_ok(
        &["links", "disable", "takedown", "--reason", "spam report"],
        d,
    );
    assert!(
        shown.contains("disabled:     by an admin: spam report"),
        "{shown}"
    );

    let server = HopProcess::start(d, &[]);
    let http = client();
    let response = http.get(server.url("/takedown")).send().await.unwrap();
    assert_eq!(response.status(), 410);
    server.signal("TERM");
    assert!(server.wait().0);

    let shown = run_ok(&["links", "enable", "takedown"], d);
    assert!(!shown.contains("disabled:"), "{shown}");
    let server = HopProcess::start(d, &[]);
    let response = http.get(server.url("/takedown")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    server.signal("TERM");
    assert!(server.wait().0);
}
