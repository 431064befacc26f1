//! hop behind a load balancer: haproxy (the distribution's package, `/usr/sbin/haproxy`)
//! with the configuration of deploy/haproxy.cfg, on free ports, in front of three
//! `hop serve` nodes on one PostgreSQL database and one Redis.
//!
//! - A node sent SIGTERM drains: its `/readyz` fails at once while it still redirects,
//!   haproxy's checks take it out and stop sending to it, then it exits 0; no request
//!   through haproxy fails meanwhile.
//! - A node killed (SIGKILL) under a steady create load: every link that was answered
//!   201 resolves on the nodes that remain.
//!
//! Always run: `.ci/run` installs haproxy (a missing one fails the test, saying so),
//! and, as in tests/cluster.rs, each test makes its own database on the machine's
//! PostgreSQL and uses the machine's Redis under a key prefix of its own.

mod common;

use common::{HopProcess, TestDir, WorkerProcess, client};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const HAPROXY: &str = "/usr/sbin/haproxy";
/// The machine's Redis; only keys under the test's own prefix are touched.
const MACHINE_REDIS: &str = "redis://127.0.0.1:6379/0";
/// The machine's NATS; only the test's own stream is touched (and deleted after).
const MACHINE_NATS: &str = "nats://127.0.0.1:4222";
/// The shipped configuration, whose shape the tests run.
const SHIPPED_CONFIG: &str = include_str!("../deploy/haproxy.cfg");
/// The nodes' drain in these tests: deploy/haproxy.cfg's checks (`inter 1s fall 2`)
/// take a node out within about 2 s; on two shared cores the checks can run late, so
/// the tests leave more room than the 3000 ms the deploy examples suggest.
const DRAIN_MS: u64 = 5000;

/// A key prefix no other test (or run) uses.
fn unique_prefix() -> String {
    format!("hoptest:lb:{}:", common::unique_id(":"))
}

/// deploy/haproxy.cfg with its frontend on `front`, its servers replaced by `nodes`
/// (`host:port`), and a stats page on `stats` for the test to read servers' states.
fn haproxy_config(front: u16, stats: u16, nodes: &[String]) -> String {
    let mut out = String::new();
    let (mut bound, mut servers) = (false, 0);
    for line in SHIPPED_CONFIG.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{front}\n"));
            bound = true;
        } else if trimmed.starts_with("server ") {
            // The shipped servers are replaced, in place, by the test's nodes.
            if servers == 0 {
                for (i, node) in nodes.iter().enumerate() {
                    out.push_str(&format!("    server hop{} {node}\n", i + 1));
                }
            }
            servers += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        bound && servers > 0,
        "deploy/haproxy.cfg has no bind or server lines"
    );
    out.push_str(&format!(
        "\nlisten stats\n    bind 127.0.0.1:{stats}\n    stats enable\n    stats uri /stats\n"
    ));
    out
}

/// A haproxy of the test's own, in the foreground; killed when dropped.
struct Haproxy {
    child: Child,
    /// Holds the configuration and haproxy's output (shown when a test fails).
    dir: tempfile::TempDir,
    base: String,
    stats: String,
}

impl Haproxy {
    fn start(front: u16, nodes: &[String]) -> Self {
        assert!(
            Path::new(HAPROXY).exists(),
            "{HAPROXY} is missing: tests/balancer.rs needs the distribution's haproxy \
             (apt-get install -y haproxy; .ci/run installs it)"
        );
        let stats = common::free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(front, stats, nodes)).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        // -db: stay in the foreground, so the child is haproxy itself.
        let child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning haproxy");
        let mut haproxy = Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{front}"),
            stats: format!("http://127.0.0.1:{stats}/stats;csv"),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", front)).is_err() {
            let exited = haproxy.child.try_wait().unwrap().is_some();
            assert!(
                !exited && start.elapsed() < Duration::from_secs(10),
                "haproxy did not start: {}",
                haproxy.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        haproxy
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// Each server of the backend: (name, status such as `UP`, `DOWN`, `UP 1/2`,
    /// sessions sent to it so far), from the stats page.
    async fn servers(&self) -> Vec<(String, String, u64)> {
        let text = client()
            .get(&self.stats)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|c| *c == name).unwrap();
        let (proxy, server, status, sessions) = (
            column("pxname"),
            column("svname"),
            column("status"),
            column("stot"),
        );
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| {
                fields.len() > sessions
                    && fields[proxy] == "hop"
                    && fields[server].starts_with("hop")
            })
            .map(|fields| {
                (
                    fields[server].to_owned(),
                    fields[status].to_owned(),
                    fields[sessions].parse().unwrap(),
                )
            })
            .collect()
    }

    /// The status and sessions of server `name`.
    async fn server(&self, name: &str) -> (String, u64) {
        self.servers()
            .await
            .into_iter()
            .find(|(server, _, _)| server == name)
            .map(|(_, status, sessions)| (status, sessions))
            .unwrap_or_else(|| panic!("no server {name} in haproxy's stats"))
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three nodes behind haproxy, on one fresh database and one Redis prefix.
struct Balanced {
    haproxy: Haproxy,
    /// `None` once a test has waited for a node's exit.
    nodes: Vec<Option<HopProcess>>,
    /// `hop worker`s storing the nodes' visits from the stream.
    workers: Vec<WorkerProcess>,
    nats_prefix: String,
    /// The nodes' data directories (a spool each), kept until the nodes are gone.
    _node_dirs: Vec<tempfile::TempDir>,
    key: String,
    /// Dropped last: the processes are gone before their database is.
    dir: TestDir,
}

impl Balanced {
    fn start() -> Self {
        let dir = common::postgres_data_dir();
        let key = common::admin_key(dir.path());
        let prefix = unique_prefix();
        let front = common::free_port();
        let base_url = format!("http://127.0.0.1:{front}");
        let drain = DRAIN_MS.to_string();
        let database = dir.database_url().unwrap().to_owned();
        let nats_prefix = format!("hoptestlb{}", common::unique_id("_"));
        let env = [
            ("HOP_DATABASE_URL", database.as_str()),
            // Visits go through the machine's NATS to two workers: the whole cluster.
            ("HOP_NATS_URL", MACHINE_NATS),
            ("HOP_NATS_PREFIX", nats_prefix.as_str()),
            ("HOP_BASE_URL", base_url.as_str()),
            // haproxy's address: its X-Forwarded-For is believed.
            ("HOP_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("HOP_SHUTDOWN_DRAIN_MS", drain.as_str()),
            ("HOP_REDIS_URL", MACHINE_REDIS),
            ("HOP_REDIS_PREFIX", prefix.as_str()),
            // Shared cores: see tests/cluster.rs.
            ("HOP_REDIS_TIMEOUT_MS", "1000"),
            // The load comes from one address, with one admin key.
            ("HOP_RATE_LIMIT_ADMIN_PER_MINUTE", "0"),
            ("HOP_RATE_LIMIT_REDIRECT_PER_MINUTE", "0"),
        ];
        // A data directory each: each node has its own spool.
        let node_dirs: Vec<tempfile::TempDir> =
            (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes: Vec<HopProcess> = node_dirs
            .iter()
            .map(|node_dir| HopProcess::start(node_dir.path(), &env))
            .collect();
        let owned_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let workers = (0..2)
            .map(|n| {
                WorkerProcess::start(
                    &owned_env,
                    &node_dirs[0].path().join(format!("worker-{n}.log")),
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| node.base.trim_start_matches("http://").to_owned())
            .collect();
        let haproxy = Haproxy::start(front, &addresses);
        Self {
            haproxy,
            nodes: nodes.into_iter().map(Some).collect(),
            workers,
            nats_prefix,
            _node_dirs: node_dirs,
            key,
            dir,
        }
    }

    fn node(&self, i: usize) -> &HopProcess {
        self.nodes[i].as_ref().expect("the node runs")
    }

    /// Waits until haproxy's checks have found every node up.
    async fn wait_all_up(&self) {
        let up = common::eventually(Duration::from_secs(15), || async {
            let servers = self.haproxy.servers().await;
            servers.len() == 3 && servers.iter().all(|(_, status, _)| status == "UP")
        })
        .await;
        assert!(
            up,
            "haproxy never saw every node up: {:?}\n{}",
            self.haproxy.servers().await,
            self.haproxy.output()
        );
    }

    /// Waits up to `limit` for node `i` to exit; returns whether it exited with 0, and
    /// its stdout.
    async fn wait_exit(&mut self, i: usize, limit: Duration) -> (bool, Vec<String>) {
        let start = Instant::now();
        loop {
            let node = self.nodes[i].as_mut().expect("the node runs");
            if node.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                start.elapsed() < limit,
                "node {i} still runs after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (ok, stdout, _) = self.nodes[i].take().unwrap().wait();
        (ok, stdout)
    }
}

impl Drop for Balanced {
    fn drop(&mut self) {
        self.workers.clear();
        common::delete_stream(MACHINE_NATS, &format!("{}-visits", self.nats_prefix));
    }
}

/// What one request through haproxy got: its status (0: no answer at all) and, for a
/// create answered 201 with a whole body, the code and the URL it points to.
struct Outcome {
    create: bool,
    status: u16,
    created: Option<(String, String)>,
}

/// Requests sent by a few tasks in a loop until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// `redirecting` tasks that follow `code` and `creating` tasks that create links,
    /// all through `base` (haproxy).
    fn start(base: &str, key: &str, code: &str, redirecting: usize, creating: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for task in 0..redirecting + creating {
            let (stop, http, base, key, code) = (
                stop.clone(),
                http.clone(),
                base.to_owned(),
                key.to_owned(),
                code.to_owned(),
            );
            let creates = task >= redirecting;
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    outcomes.push(if creates {
                        let url = format!("https://example.com/load/{task}/{n}");
                        create(&http, &base, &key, &url).await
                    } else {
                        let sent = http.get(format!("{base}/{code}")).send().await;
                        Outcome {
                            create: false,
                            status: sent.map_or(0, |r| r.status().as_u16()),
                            created: None,
                        }
                    });
                }
                outcomes
            }));
        }
        Self { stop, tasks }
    }

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        all
    }
}

async fn create(http: &reqwest::Client, base: &str, key: &str, url: &str) -> Outcome {
    let sent = http
        .post(format!("{base}/api/v1/links"))
        .bearer_auth(key)
        .json(&json!({ "url": url }))
        .send()
        .await;
    let failed = |status| Outcome {
        create: true,
        status,
        created: None,
    };
    let Ok(response) = sent else {
        return failed(0);
    };
    let status = response.status().as_u16();
    if status != 201 {
        return failed(status);
    }
    // A 201 whose body did not arrive whole (the node died while sending it) names no
    // link the client could rely on; it stays a 201 without `created`.
    match response.json::<Value>().await {
        Ok(link) => Outcome {
            create: true,
            status,
            created: Some((link["code"].as_str().unwrap().to_owned(), url.to_owned())),
        },
        Err(_) => failed(201),
    }
}

/// The status and `Location` of `GET url`.
async fn follow(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

/// Statuses other than `expected`, counted, for a failure message.
fn unexpected(outcomes: &[Outcome], expected: u16) -> Vec<(u16, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for outcome in outcomes.iter().filter(|o| o.status != expected) {
        *counts.entry(outcome.status).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_leaves_haproxy_without_failing_a_request() {
    let mut lb = Balanced::start();
    lb.wait_all_up().await;
    let link = lb
        .node(1)
        .create_link(&lb.key, json!({"url": "https://example.com/drained"}))
        .await;
    let code = link["code"].as_str().unwrap().to_owned();
    let redirect_path = format!("/{code}");
    let load = Load::start(&lb.haproxy.base, &lb.key, &code, 3, 1);
    // haproxy spreads the load over the three nodes, the first one included.
    let reached = common::eventually(Duration::from_secs(5), || async {
        lb.haproxy.server("hop1").await.1 > 20
    })
    .await;
    assert!(reached, "{:?}", lb.haproxy.servers().await);

    assert_eq!(follow(&lb.node(0).url("/readyz")).await.0, 200);
    let signalled = Instant::now();
    lb.node(0).signal("TERM");
    // At once: /readyz fails with a problem that says why, while the node still serves.
    let draining = common::eventually(Duration::from_secs(1), || async {
        follow(&lb.node(0).url("/readyz")).await.0 == 503
    })
    .await;
    assert!(draining, "/readyz did not fail within a second of SIGTERM");
    let ready = client()
        .get(lb.node(0).url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.headers()["content-type"],
        "application/problem+json",
        "{:?}",
        ready.headers()
    );
    let problem: Value = ready.json().await.unwrap();
    assert_eq!(problem["type"], "urn:hop:problem:draining", "{problem}");
    assert_eq!(problem["status"], 503, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{problem}"
    );
    let redirect = client()
        .get(lb.node(0).url(&redirect_path))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        redirect.headers()["location"],
        "https://example.com/drained"
    );
    // Its connections close after each answer, so nothing idles into the shutdown.
    assert_eq!(redirect.headers()["connection"], "close");
    let metrics = |node: usize| {
        let url = lb.node(node).url("/metrics");
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert!(metrics(0).await.lines().any(|l| l == "hop_draining 1"));
    assert!(metrics(1).await.lines().any(|l| l == "hop_draining 0"));

    // haproxy's checks take it out while it still serves, and send it nothing more.
    let out = common::eventually(Duration::from_millis(DRAIN_MS), || async {
        lb.haproxy.server("hop1").await.0.starts_with("DOWN")
    })
    .await;
    let noticed = signalled.elapsed();
    assert!(
        out && noticed < Duration::from_millis(DRAIN_MS - 500),
        "haproxy took hop1 out after {noticed:?} (drain {DRAIN_MS} ms): {:?}",
        lb.haproxy.servers().await
    );
    eprintln!("haproxy took the draining node out after {noticed:?}");
    let sent_before = lb.haproxy.server("hop1").await.1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lb.haproxy.server("hop1").await.1, sent_before);
    // Still draining: a request sent to it directly is still served.
    assert_eq!(follow(&lb.node(0).url(&redirect_path)).await.0, 302);

    // Then it stops accepting, finishes and exits 0, having said it drained.
    let (ok, stdout) = lb
        .wait_exit(0, Duration::from_millis(DRAIN_MS + 15_000))
        .await;
    let exited = signalled.elapsed();
    assert!(ok, "the drained node did not exit 0: {stdout:?}");
    assert!(
        exited >= Duration::from_millis(DRAIN_MS),
        "it exited after {exited:?}, before its drain of {DRAIN_MS} ms"
    );
    let drained = stdout
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| {
            line["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("draining")
        })
        .expect("no log line said the drain started");
    assert_eq!(drained["drain_ms"], DRAIN_MS, "{drained}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let outcomes = load.finish().await;
    let (creates, redirects): (Vec<Outcome>, Vec<Outcome>) =
        outcomes.into_iter().partition(|o| o.create);
    assert!(
        unexpected(&redirects, 302).is_empty() && unexpected(&creates, 201).is_empty(),
        "requests through haproxy failed during the drain: redirects {:?}, creates {:?}",
        unexpected(&redirects, 302),
        unexpected(&creates, 201)
    );
    assert!(
        creates.iter().all(|o| o.created.is_some()),
        "a create's 201 came without its whole body"
    );
    eprintln!(
        "{} redirects and {} creates through haproxy during the drain, none failed",
        redirects.len(),
        creates.len()
    );
    assert!(
        redirects.len() > 100 && creates.len() > 10,
        "too little load: {} redirects, {} creates",
        redirects.len(),
        creates.len()
    );
    for (code, url) in creates.iter().filter_map(|o| o.created.as_ref()) {
        assert_eq!(
            follow(&lb.haproxy.url(&format!("/{code}"))).await,
            (302, url.clone())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_answered_201_survives_a_node_killed_under_load() {
    let mut lb = Balanced::start();
    lb.wait_all_up().await;
    let load = Load::start(&lb.haproxy.base, &lb.key, "", 0, 6);
    // The node to be killed is taking its share of the creates.
    let reached = common::eventually(Duration::from_secs(5), || async {
        lb.haproxy.server("hop2").await.1 > 20
    })
    .await;
    assert!(reached, "{:?}", lb.haproxy.servers().await);
    lb.node(1).signal("KILL");
    let (ok, _) = lb.wait_exit(1, Duration::from_secs(5)).await;
    assert!(!ok, "the killed node exited 0");
    // Long enough for haproxy to take it out (two failed checks), and then some.
    let out = common::eventually(Duration::from_secs(5), || async {
        lb.haproxy.server("hop2").await.0.starts_with("DOWN")
    })
    .await;
    assert!(out, "{:?}", lb.haproxy.servers().await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;

    let created: Vec<&(String, String)> =
        outcomes.iter().filter_map(|o| o.created.as_ref()).collect();
    let cut_off = outcomes
        .iter()
        .filter(|o| o.status == 201 && o.created.is_none())
        .count();
    eprintln!(
        "{} creates answered 201 around the kill, {cut_off} more with a body cut off; \
         the others (status 0: no answer): {:?}",
        created.len(),
        unexpected(&outcomes, 201)
    );
    assert!(created.len() > 100, "too little load: {}", created.len());
    // Every 201 is durable: on the database, and through each remaining node (both
    // caches, the shared one, the database) as well as through haproxy.
    let rows = common::count_rows(lb.dir.path(), "SELECT COUNT(*) FROM links");
    assert!(
        rows >= created.len() as i64,
        "{rows} rows, {} created",
        created.len()
    );
    let bases = [
        lb.haproxy.base.clone(),
        lb.node(0).base.clone(),
        lb.node(2).base.clone(),
    ];
    let mut checks = Vec::new();
    for chunk in created.chunks(created.len().div_ceil(4)) {
        let chunk: Vec<(String, String)> = chunk.iter().map(|&pair| pair.clone()).collect();
        let bases = bases.clone();
        checks.push(tokio::spawn(async move {
            let mut lost = Vec::new();
            for (code, url) in chunk {
                for base in &bases {
                    let answer = follow(&format!("{base}/{code}")).await;
                    if answer != (302, url.clone()) {
                        lost.push((code.clone(), base.clone(), answer));
                    }
                }
            }
            lost
        }));
    }
    let mut lost = Vec::new();
    for check in checks {
        lost.extend(check.await.unwrap());
    }
    assert!(
        lost.is_empty(),
        "links answered 201 that do not resolve: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_through_haproxy_on_three_nodes_are_counted_once_by_two_workers() {
    let lb = Balanced::start();
    lb.wait_all_up().await;
    lb.node(2)
        .create_link(
            &lb.key,
            json!({"url": "https://example.com/spread", "alias": "spread"}),
        )
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (http, url) = (http.clone(), format!("{}/spread", lb.haproxy.base));
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                assert_eq!(http.get(&url).send().await.unwrap().status(), 302);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // haproxy spread them over every node.
    for node in 1..=3 {
        let sessions = lb.haproxy.server(&format!("hop{node}")).await.1;
        assert!(sessions > 0, "hop{node} got no request");
    }
    let counted = common::eventually(Duration::from_secs(60), || async {
        let stats: Value = client()
            .get(lb.node(0).url("/api/v1/links/spread/stats"))
            .bearer_auth(&lb.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["total"] == 3_000
    })
    .await;
    assert!(counted, "the workers never counted the 3,000 redirects");
    // Each visit was published once, by the node that served it, and none stored twice.
    let mut published = 0.0;
    for node in 0..3 {
        published +=
            common::metric_at(&lb.node(node).base, "hop_stream_published_visits_total").await;
    }
    assert_eq!(published, 3_000.0);
}
