//! Crashes and the data directory, through the real binary: click limits that hold
//! across `kill -9`, click totals that agree with the stats after one, one server per
//! data directory, integrity checks, damaged data directories, backup and restore.
//!
//! SQLite only, also when the suite runs on PostgreSQL (`HOP_TEST_DATABASE_URL`): these
//! tests are about the embedded database's own file (its writer lock, damage, a full
//! disk, `hop backup`). Their PostgreSQL counterparts (kill -9 with concurrent
//! creators, click limits across processes) are in process.rs and postgres.rs.

mod common;

use common::{HopProcess, client, hop_binary, hop_command};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn hop(args: &[&str], data_dir: &Path) -> Output {
    hop_command()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn hop_ok(args: &[&str], data_dir: &Path) -> String {
    let output = hop(args, data_dir);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn hop_err(args: &[&str], data_dir: &Path) -> String {
    let output = hop(args, data_dir);
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8(output.stderr).unwrap()
}

/// An admin key made with the CLI (no server running).
async fn status_of(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

async fn clicks_of(server: &HopProcess, key: &str, code: &str) -> u64 {
    let link: Value = client()
        .get(server.url(&format!("/api/v1/links/{code}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    link["clicks"].as_u64().unwrap()
}

/// `workers` tasks following `url` until told to stop (or the server goes away);
/// returns the redirects answered.
fn hammer(
    url: String,
    workers: usize,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (url, stop, served) = (url.clone(), stop.clone(), served.clone());
            tokio::spawn(async move {
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).send().await {
                        Ok(response) if response.status() == 302 => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(response) => assert_eq!(response.status(), 410),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_limits_are_exact_across_kill_9() {
    const LIMIT: u64 = 400;
    const WORKERS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let key = common::admin_key(dir.path());
    let first = HopProcess::start(dir.path(), &[]);
    first
        .create_link(
            &key,
            json!({"url": "https://example.com/limited", "alias": "limited", "maxClicks": LIMIT}),
        )
        .await;
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = hammer(first.url("/limited"), WORKERS, stop.clone(), served.clone());
    // Kill without warning in the middle of the load.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while served.load(Ordering::Relaxed) < LIMIT / 2 {
        assert!(std::time::Instant::now() < deadline, "redirects too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.signal("KILL");
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(!first.wait().0);
    let before = served.load(Ordering::Relaxed);
    assert!(before < LIMIT, "the limit was used up before the kill");

    let second = HopProcess::start(dir.path(), &[]);
    // Every reservation committed before the kill is counted: answered ones, and at
    // most one in flight per worker that the kill cut off.
    let stored = clicks_of(&second, &key, "limited").await;
    assert!(
        (before..=before + WORKERS as u64).contains(&stored),
        "{before} redirects answered before the kill, {stored} stored"
    );
    let after = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = hammer(second.url("/limited"), WORKERS, stop.clone(), after.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while clicks_of(&second, &key, "limited").await < LIMIT {
        assert!(std::time::Instant::now() < deadline, "redirects too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let after = after.load(Ordering::Relaxed);
    // Never more than the limit in all; exactly the limit but for the cut-off ones.
    assert_eq!(
        stored + after,
        LIMIT,
        "{before} before, {after} after the restart"
    );
    assert!(before + after >= LIMIT - WORKERS as u64);
    assert_eq!(clicks_of(&second, &key, "limited").await, LIMIT);
    assert_eq!(status_of(&client(), &second.url("/limited")).await, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_link_never_works_twice() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::admin_key(dir.path());
    let first = HopProcess::start(dir.path(), &[]);
    let http = client();
    for code in ["once", "race"] {
        first
            .create_link(
                &key,
                json!({"url": "https://example.com/once", "alias": code, "maxClicks": 1}),
            )
            .await;
    }
    // Concurrent visitors: exactly one gets through.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url) = (http.clone(), first.url("/race"));
        tasks.push(tokio::spawn(async move { status_of(&http, &url).await }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 302).count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == 410).count(), 19);
    // Used once, then the process dies before any flush interval passes.
    assert_eq!(status_of(&http, &first.url("/once")).await, 302);
    first.signal("KILL");
    assert!(!first.wait().0);

    let second = HopProcess::start(dir.path(), &[]);
    for code in ["once", "race"] {
        assert_eq!(
            status_of(&http, &second.url(&format!("/{code}"))).await,
            410
        );
        // HEAD reserves nothing and says the same.
        let head = http
            .head(second.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 410);
        assert_eq!(clicks_of(&second, &key, code).await, 1);
    }
}

async fn stats_total(server: &HopProcess, key: &str, code: &str) -> u64 {
    let stats: Value = client()
        .get(server.url(&format!("/api/v1/links/{code}/stats")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_totals_and_stats_agree_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::admin_key(dir.path());
    // Slow flushes, so that the kill surely lands with clicks not yet written.
    let env = [
        ("HOP_ANALYTICS_FLUSH_INTERVAL_MS", "400"),
        ("HOP_CLICK_FLUSH_INTERVAL_MS", "150"),
    ];
    let first = HopProcess::start(dir.path(), &env);
    for code in ["burst", "capped"] {
        let mut body = json!({"url": "https://example.com/burst", "alias": code});
        if code == "capped" {
            body["maxClicks"] = json!(1_000_000);
        }
        first.create_link(&key, body).await;
    }
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = hammer(first.url("/burst"), 8, stop.clone(), served.clone());
    workers.extend(hammer(
        first.url("/capped"),
        4,
        stop.clone(),
        served.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    first.signal("KILL");
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(!first.wait().0);
    let served = served.load(Ordering::Relaxed);

    let second = HopProcess::start(dir.path(), &env);
    let (total, stats) = (
        clicks_of(&second, &key, "burst").await,
        stats_total(&second, &key, "burst").await,
    );
    // The same commits wrote both: whatever the kill lost, it lost from both.
    assert_eq!(total, stats, "{served} served");
    assert!(total > 0 && total <= served, "{total} of {served}");
    // A limited link's clicks were all durable at once; its stats lose at most the
    // visits of one analytics flush.
    let capped = clicks_of(&second, &key, "capped").await;
    assert!(capped >= stats_total(&second, &key, "capped").await);

    // After a clean stop nothing is lost from either.
    let http = client();
    for _ in 0..25 {
        assert_eq!(status_of(&http, &second.url("/burst")).await, 302);
    }
    second.signal("TERM");
    assert!(second.wait().0);
    let third = HopProcess::start(dir.path(), &env);
    assert_eq!(clicks_of(&third, &key, "burst").await, total + 25);
    assert_eq!(stats_total(&third, &key, "burst").await, total + 25);
}

#[tokio::test]
async fn one_server_per_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::admin_key(dir.path());
    let first = HopProcess::start(dir.path(), &[]);
    let holder = format!("in use by process {} (`hop serve`", first.child.id());
    // A second server is refused before it binds a port, and says who holds the dir.
    let second = hop_command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let refused = String::from_utf8(second.stderr).unwrap();
    assert!(refused.contains(&holder), "{refused}");
    // Link and domain changes are refused too (the server caches both) ...
    for args in [
        &["links", "create", "https://example.com", "--user", "ops"][..],
        &["domains", "add", "go.example.com"],
    ] {
        let refused = hop_err(args, dir.path());
        assert!(refused.contains(&holder), "{args:?}: {refused}");
    }
    // ... and nothing was changed by them.
    assert!(!hop_ok(&["domains", "list"], dir.path()).contains("go.example.com"));
    // Keys, which a server rereads every second, and listings work beside it.
    hop_ok(&["keys", "create", "--name", "beside"], dir.path());
    hop_ok(&["links", "list"], dir.path());
    first
        .create_link(
            &key,
            json!({"url": "https://example.com/api", "alias": "via-api"}),
        )
        .await;

    // A killed holder leaves no stale lock: the kernel drops it with the process.
    first.signal("KILL");
    assert!(!first.wait().0);
    let after = HopProcess::start(dir.path(), &[]);
    assert_eq!(status_of(&client(), &after.url("/via-api")).await, 302);
    after.signal("TERM");
    assert!(after.wait().0);
    hop_ok(&["domains", "add", "go.example.com"], dir.path());
}

/// Creates `n` links (`bulk-0`, `bulk-1`, …) through the bulk API.
async fn create_many(server: &HopProcess, key: &str, n: usize) {
    for start in (0..n).step_by(1000) {
        let links: Vec<Value> = (start..n.min(start + 1000))
            .map(|i| json!({"url": format!("https://example.com/page/{i}"), "alias": format!("bulk-{i}")}))
            .collect();
        let response = client()
            .post(server.url("/api/v1/links/bulk"))
            .bearer_auth(key)
            .json(&json!({ "links": links }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// The stderr of a `hop serve` that must refuse to start.
fn refused_start(data_dir: &Path) -> String {
    let output = hop_command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(!output.status.success(), "hop serve started");
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test]
async fn a_damaged_database_is_refused_and_check_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::admin_key(dir.path());
    let server = HopProcess::start(dir.path(), &[]);
    create_many(&server, &key, 3000).await;
    server.signal("TERM");
    assert!(server.wait().0);
    let whole = hop_ok(&["check"], dir.path());
    assert!(whole.contains(": ok (schema version"), "{whole}");
    assert!(whole.contains("3000 live links"), "{whole}");

    // Garbage over a page in the middle of the file (with every page in it first).
    let db = dir.path().join("hop.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096;
    let middle = bytes.len() / page / 2 * page;
    let mut noise: u32 = 0x9e37_79b9;
    for byte in &mut bytes[middle..middle + page] {
        noise ^= noise << 13;
        noise ^= noise >> 17;
        noise ^= noise << 5;
        *byte = noise as u8;
    }
    std::fs::write(&db, &bytes).unwrap();

    let refused = refused_start(dir.path());
    assert!(refused.contains("failed its integrity check"), "{refused}");
    assert!(
        refused.contains("hop check") && refused.contains("hop restore"),
        "{refused}"
    );
    assert!(!refused.contains("admin key was created"), "{refused}");
    let output = hop(&["check"], dir.path());
    assert!(!output.status.success());
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(report.contains("problem(s) found"), "{report}");
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.contains("is damaged"), "{message}");
    // Nothing was written to it by either.
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
}

#[tokio::test]
async fn a_half_present_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::admin_key(dir.path());
    let server = HopProcess::start(dir.path(), &[]);
    create_many(&server, &key, 50).await;
    // Killed: the last writes are in hop.db-wal only.
    server.signal("KILL");
    assert!(!server.wait().0);
    let db = dir.path().join("hop.db");
    let wal = dir.path().join("hop.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let saved = std::fs::read(&db).unwrap();

    // An empty hop.db beside its log.
    std::fs::write(&db, b"").unwrap();
    let refused = refused_start(dir.path());
    assert!(refused.contains("is empty (0 bytes) but"), "{refused}");
    assert!(refused.contains("hop.db-wal"), "{refused}");
    assert!(!refused.contains("admin key was created"), "{refused}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    // The log without its database.
    std::fs::remove_file(&db).unwrap();
    let refused = refused_start(dir.path());
    assert!(refused.contains("but no"), "{refused}");
    assert!(!db.exists(), "a fresh database was created");
    // Something that is not a database.
    std::fs::write(&db, b"<html>not a database</html>").unwrap();
    let refused = refused_start(dir.path());
    assert!(refused.contains("is not an SQLite database"), "{refused}");
    // A schema from a newer hop.
    std::fs::write(&db, &saved).unwrap();
    let version: i64 = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let version = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        version
    };
    let refused = refused_start(dir.path());
    assert!(
        refused.contains("newer hop (schema version 99"),
        "{refused}"
    );
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", version).unwrap();
    }
    // Put back whole, it starts with every link, the ones only in the log too.
    let server = HopProcess::start(dir.path(), &[]);
    assert_eq!(status_of(&client(), &server.url("/bulk-49")).await, 302);
}

#[tokio::test]
async fn a_full_disk_says_disk_full_and_readyz_fails() {
    // A data directory on a 2 MiB tmpfs, mounted in a mount namespace of hop's own, so
    // that nothing outlives the process (needs root, as CI runs).
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=2m hop-full \"$FULL_DIR\" && exec \"$0\" \"$@\"")
        .arg(hop_binary())
        .env_remove(common::TEST_DATABASE_VAR)
        .env_remove(common::TEST_SCHEMA_VAR)
        .env_remove(common::TEST_BROWSER_VAR)
        .env("FULL_DIR", dir.path());
    let server = HopProcess::start_command(command, dir.path(), &[]);
    let key = server
        .stderr_lines(2)
        .into_iter()
        .find(|line| line.starts_with("hop_"))
        .expect("the first start prints an admin key");
    let http = client();
    assert_eq!(status_of(&http, &server.url("/readyz")).await, 200);
    server
        .create_link(
            &key,
            json!({"url": "https://example.com/kept", "alias": "kept"}),
        )
        .await;
    // Creates until the disk is full.
    let title = "t".repeat(500);
    let mut full = None;
    for i in 0..20_000 {
        let response = http
            .post(server.url("/api/v1/links"))
            .bearer_auth(&key)
            .json(&json!({"url": format!("https://example.com/{i}"), "title": title}))
            .send()
            .await
            .unwrap();
        if response.status() != 201 {
            full = Some((
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            ));
            break;
        }
    }
    let (status, problem) = full.expect("the disk never filled");
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:hop:problem:disk-full", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().starts_with("disk full"),
        "{problem}"
    );
    // Readiness says so, and why.
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert!(
        ready["detail"].as_str().unwrap().starts_with("disk full"),
        "{ready}"
    );
    // Links already stored still redirect.
    assert_eq!(status_of(&http, &server.url("/kept")).await, 302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_acknowledged_link() {
    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("hop-backup.db");
    let key = common::admin_key(dir.path());
    let server = HopProcess::start(dir.path(), &[]);
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (url, key) = (server.url("/api/v1/links"), key.clone());
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let http = client();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let target = format!("https://example.com/backup/{worker}/{i}");
                i += 1;
                let response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"url": target}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                let body: Value = response.json().await.unwrap();
                let code = body["code"].as_str().unwrap().to_owned();
                acknowledged.lock().unwrap().push((code, target));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Everything acknowledged before the backup starts must be in it; creates go on
    // during it.
    let before: Vec<(String, String)> = acknowledged.lock().unwrap().clone();
    let (data, target) = (dir.path().to_owned(), file.clone());
    let output =
        tokio::task::spawn_blocking(move || hop(&["backup", target.to_str().unwrap()], &data))
            .await
            .unwrap();
    let during = acknowledged.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8(output.stdout).unwrap();
    assert!(said.contains("Backed up"), "{said}");
    let after: Vec<(String, String)> = acknowledged.lock().unwrap()[during..].to_vec();
    assert!(
        before.len() > 50 && !after.is_empty(),
        "{} / {}",
        before.len(),
        after.len()
    );
    // A backup never overwrites.
    assert!(hop_err(&["backup", file.to_str().unwrap()], dir.path()).contains("already exists"));

    // Restoring needs the server stopped.
    let refused = hop_err(&["restore", file.to_str().unwrap()], dir.path());
    assert!(
        refused.contains(&format!("process {} (`hop serve`", server.child.id())),
        "{refused}"
    );
    server.signal("TERM");
    assert!(server.wait().0);
    // A damaged backup is refused and changes nothing.
    let broken = backups.path().join("broken.db");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 4096 / 2 * 4096;
    bytes[middle..middle + 4096].fill(0x5a);
    std::fs::write(&broken, &bytes).unwrap();
    let refused = hop_err(&["restore", broken.to_str().unwrap()], dir.path());
    assert!(
        refused.contains("is damaged") && refused.contains("unchanged"),
        "{refused}"
    );
    let said = hop_ok(&["restore", file.to_str().unwrap()], dir.path());
    assert!(
        said.contains("Restored") && said.contains("before-restore"),
        "{said}"
    );

    let restored = HopProcess::start(dir.path(), &[]);
    let http = client();
    for (code, target) in &before {
        let response = http
            .get(restored.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            302,
            "acknowledged link {code} not in the backup"
        );
        assert_eq!(response.headers()["location"], target.as_str());
    }
    // The restore really replaced the database: links made after the backup are gone.
    let (late, _) = after.last().unwrap();
    assert_eq!(
        status_of(&http, &restored.url(&format!("/{late}"))).await,
        404
    );
    // The key, stored before the backup, still works.
    restored
        .create_link(&key, json!({"url": "https://example.com/after-restore"}))
        .await;
}
