//! The click stream of a cluster: nodes publish visits to NATS JetStream, `hop worker`
//! stores them. Every visit served is counted exactly once, whichever node served it
//! and whichever worker stored it, through a NATS outage (spooled, replayed), a node
//! restarted during it, and a worker killed with `-9`; the live feed works on a node
//! that did not serve the visit.
//!
//! Each test makes its own database on the machine's PostgreSQL (see tests/common).
//! The steady test uses the machine's NATS (127.0.0.1:4222) under a stream prefix of
//! its own and deletes its stream after; the fault tests run a private `nats-server`
//! on a free port with its own store directory, and stop only that one.

mod common;

use common::{HopProcess, PrivateServer, TestDir, WorkerProcess, client};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const MACHINE_NATS: &str = "nats://127.0.0.1:4222";

/// A NATS prefix no other test (or run) uses.
fn unique_prefix() -> String {
    format!("hoptest{}", common::unique_id("_"))
}

/// A `nats-server -js` of the test's own on a free port, storing in a temporary
/// directory that outlives restarts (see [`PrivateServer`]).
fn private_nats() -> PrivateServer {
    PrivateServer::start("nats-server", |port, dir| {
        vec![
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            dir.display().to_string(),
        ]
    })
}

fn nats_url(nats: &PrivateServer) -> String {
    format!("nats://127.0.0.1:{}", nats.port)
}

/// One database, one NATS, nodes with data directories of their own (each has its
/// own spool), and workers.
struct Cluster {
    db: TestDir,
    key: String,
    prefix: String,
    nats_url: String,
    node_dirs: Vec<tempfile::TempDir>,
    nodes: Vec<HopProcess>,
    logs: tempfile::TempDir,
    workers: Vec<WorkerProcess>,
}

impl Cluster {
    fn start(nats_url: &str, nodes: usize, workers: usize) -> Self {
        let db = common::postgres_data_dir();
        let key = common::admin_key(db.path());
        let mut cluster = Self {
            db,
            key,
            prefix: unique_prefix(),
            nats_url: nats_url.to_owned(),
            node_dirs: Vec::new(),
            nodes: Vec::new(),
            logs: tempfile::tempdir().unwrap(),
            workers: Vec::new(),
        };
        for _ in 0..nodes {
            let dir = tempfile::tempdir().unwrap();
            let node = cluster.start_node(dir.path());
            cluster.node_dirs.push(dir);
            cluster.nodes.push(node);
        }
        for _ in 0..workers {
            cluster.add_worker();
        }
        cluster
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "HOP_DATABASE_URL".into(),
                self.db.database_url().unwrap().to_owned(),
            ),
            ("HOP_NATS_URL".into(), self.nats_url.clone()),
            ("HOP_NATS_PREFIX".into(), self.prefix.clone()),
            // Short waits: the fault tests take NATS away on purpose.
            ("HOP_NATS_TIMEOUT_MS".into(), "500".into()),
            // Every redirect comes from one address.
            ("HOP_RATE_LIMIT_REDIRECT_PER_MINUTE".into(), "0".into()),
        ]
    }

    fn start_node(&self, data_dir: &Path) -> HopProcess {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        HopProcess::start(data_dir, &env)
    }

    /// Another worker, with its status endpoints.
    fn add_worker(&mut self) {
        let log = self
            .logs
            .path()
            .join(format!("worker-{}.log", self.workers.len()));
        self.workers
            .push(WorkerProcess::start_with_status(&self.env(), &log));
    }

    /// A worker's `/readyz`: status and body.
    async fn worker_ready(&self, worker: usize) -> (u16, Value) {
        let base = self.workers[worker].status.as_ref().unwrap();
        let response = client().get(format!("{base}/readyz")).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    fn worker_logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.logs.path()).unwrap() {
            all.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
        }
        all
    }

    async fn create(&self, alias: &str) {
        self.nodes[0]
            .create_link(
                &self.key,
                json!({"url": format!("https://example.com/{alias}"), "alias": alias}),
            )
            .await;
    }

    async fn get_json(&self, path: &str) -> Value {
        client()
            .get(self.nodes[0].url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the link's stats and click total both say `expected`, and stay
    /// there for a while (a double count would show up after).
    async fn assert_counted(&self, code: &str, expected: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = self.get_json(&format!("/api/v1/links/{code}/stats")).await;
            let link = self.get_json(&format!("/api/v1/links/{code}")).await;
            if stats["total"].as_u64() == Some(expected)
                && link["clicks"].as_u64() == Some(expected)
            {
                break;
            }
            let total = stats["total"].as_u64().unwrap_or(0);
            assert!(
                total <= expected,
                "counted {total} visits of {expected}: {stats}\n{}",
                self.worker_logs()
            );
            assert!(
                Instant::now() < deadline,
                "stats {} and clicks {} never reached {expected}\n{}",
                stats["total"],
                link["clicks"],
                self.worker_logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Redeliveries come after the acknowledgement wait (10 s) at the latest; a
        // second look after a few seconds catches most double counts quickly, and the
        // outage tests' long tails catch the rest.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stats = self.get_json(&format!("/api/v1/links/{code}/stats")).await;
        assert_eq!(stats["total"].as_u64(), Some(expected), "{stats}");
        stats
    }

    async fn metric(&self, node: usize, series: &str) -> f64 {
        common::metric_at(&self.nodes[node].base, series).await
    }
}

impl Drop for Cluster {
    /// The test's stream goes (on a private NATS it goes with its directory anyway).
    fn drop(&mut self) {
        self.workers.clear();
        common::delete_stream(&self.nats_url, &format!("{}-visits", self.prefix));
    }
}

/// `count` redirects of `code`, spread round-robin over the `nodes` given, from a few
/// concurrent clients; every one must be a redirect.
async fn redirects(bases: &[String], code: &str, count: usize, user_agent: &str) {
    let clients = 8;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let bases = bases.to_vec();
        let code = code.to_owned();
        let user_agent = user_agent.to_owned();
        tasks.push(tokio::spawn(async move {
            let http = client();
            for n in (c..count).step_by(clients) {
                let base = &bases[n % bases.len()];
                let response = http
                    .get(format!("{base}/{code}"))
                    .header("user-agent", &user_agent)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 302, "redirect {n} on {base}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// `count` GETs of `code` spread over `bases` from 16 concurrent clients; the number
/// of redirects (302) and of 410s. Anything else fails the test.
async fn hammer(bases: &[String], code: &str, count: usize) -> (usize, usize) {
    let clients = 16;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let bases = bases.to_vec();
        let code = code.to_owned();
        tasks.push(tokio::spawn(async move {
            let http = client();
            let (mut found, mut gone) = (0, 0);
            for n in (c..count).step_by(clients) {
                let base = &bases[n % bases.len()];
                let response = http.get(format!("{base}/{code}")).send().await.unwrap();
                match response.status().as_u16() {
                    302 => found += 1,
                    410 => gone += 1,
                    other => panic!("GET {base}/{code} answered {other}"),
                }
            }
            (found, gone)
        }));
    }
    let mut totals = (0, 0);
    for task in tasks {
        let (found, gone) = task.await.unwrap();
        totals.0 += found;
        totals.1 += gone;
    }
    totals
}

const FIREFOX: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0";
const CURL: &str = "curl/8.5.0";

fn bases(cluster: &Cluster) -> Vec<String> {
    cluster.nodes.iter().map(|n| n.base.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_on_every_node_are_stored_once_by_the_workers_and_reach_every_live_feed() {
    let cluster = Cluster::start(MACHINE_NATS, 3, 2);
    cluster.create("spread").await;
    // A live feed on node 1 sees a visit node 0 served.
    let mut feed = client()
        .get(cluster.nodes[1].url("/api/v1/links/spread/live"))
        .bearer_auth(&cluster.key)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    // The first visit waits until a worker runs (it creates the consumer) and
    // publishes, so the feed's subscription is in place well before.
    redirects(
        &cluster.nodes[..1]
            .iter()
            .map(|n| n.base.clone())
            .collect::<Vec<_>>(),
        "spread",
        1,
        FIREFOX,
    )
    .await;
    let mut received = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !received.contains("event: visit") {
        let chunk = tokio::time::timeout(deadline - Instant::now(), feed.chunk())
            .await
            .expect("no live visit on the other node within 15 s")
            .unwrap()
            .unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let data = received
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["browser"], "Firefox", "{event}");
    drop(feed);

    // Humans and a bot on every node: every visit once, with its breakdowns.
    redirects(&bases(&cluster), "spread", 23_999, FIREFOX).await;
    redirects(&bases(&cluster), "spread", 6_000, CURL).await;
    let stats = cluster.assert_counted("spread", 30_000).await;
    assert_eq!(stats["humans"], 24_000, "{stats}");
    assert_eq!(stats["bots"], 6_000, "{stats}");
    let browsers: Vec<(String, u64)> = stats["browsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["value"].as_str().unwrap().to_owned(),
                e["clicks"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(browsers, [("Firefox".to_owned(), 24_000)], "{stats}");
    // The nodes published; none stored visits itself.
    let mut published = 0.0;
    for node in 0..3 {
        published += cluster
            .metric(node, "hop_stream_published_visits_total")
            .await;
    }
    assert_eq!(published, 30_000.0);
    assert_eq!(cluster.metric(0, "hop_analytics_stored_total").await, 0.0);
    assert_eq!(cluster.metric(0, "hop_stream_spool_bytes").await, 0.0);
    assert_eq!(cluster.metric(0, "hop_database_pool_max").await, 16.0);
    let ready = cluster.get_json("/readyz").await;
    assert_eq!(ready["checks"]["nats"], "ok", "{ready}");

    // A click limit hammered from the three nodes: exactly 500 redirects, then 410,
    // and the stream counts each of them once (their visits are marked counted).
    cluster.nodes[0]
        .create_link(
            &cluster.key,
            json!({"url": "https://example.com/limited", "alias": "limited", "maxClicks": 500}),
        )
        .await;
    assert_eq!(hammer(&bases(&cluster), "limited", 800).await, (500, 300));
    cluster.assert_counted("limited", 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_spools_visits_and_replays_them_exactly_once() {
    let mut nats = private_nats();
    let mut cluster = Cluster::start(&nats_url(&nats), 1, 1);
    cluster.create("outage").await;
    redirects(&bases(&cluster), "outage", 500, FIREFOX).await;
    cluster.assert_counted("outage", 500).await;

    // NATS goes away; redirects go on (none fails, none waits for NATS).
    nats.kill();
    let started = Instant::now();
    let mut served = 500;
    while started.elapsed() < Duration::from_secs(10) {
        redirects(&bases(&cluster), "outage", 200, FIREFOX).await;
        served += 200;
        if served == 1_500 {
            // Meanwhile the node restarts: its last drain goes to the spool, and the
            // new process finds the spool and keeps it.
            let node = cluster.nodes.pop().unwrap();
            node.signal("TERM");
            let (clean, _, stderr) = node.wait();
            assert!(clean, "{}", stderr.join("\n"));
            let dir = cluster.node_dirs[0].path().to_owned();
            let node = cluster.start_node(&dir);
            cluster.nodes.push(node);
        }
    }
    assert!(
        std::fs::metadata(cluster.node_dirs[0].path().join("visits.spool"))
            .unwrap()
            .len()
            > 0,
        "the outage's visits are in the spool"
    );
    let ready = cluster.get_json("/readyz").await;
    assert_eq!(ready["checks"]["nats"], "spooling", "{ready}");
    assert!(cluster.metric(0, "hop_stream_spooled_total").await > 0.0);
    // The worker is not ready without NATS, and says why.
    let (status, body) = cluster.worker_ready(0).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["nats"], "unavailable", "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");

    // NATS is back (same store): the spool is replayed, every visit counted once.
    nats.resume();
    cluster.assert_counted("outage", served).await;
    let spool_empty = common::eventually(Duration::from_secs(10), || async {
        cluster.metric(0, "hop_stream_spool_bytes").await == 0.0
    })
    .await;
    assert!(spool_empty, "the spool was not emptied after the replay");
    // The one worker stored every visit, and says so.
    assert_eq!(cluster.worker_ready(0).await.0, 200);
    let worker = cluster.workers[0].status.clone().unwrap();
    assert_eq!(
        common::metric_at(&worker, "hop_worker_stored_visits_total").await,
        served as f64
    );
    let worker = cluster.workers.pop().unwrap();
    assert!(worker.stop(), "the worker did not stop cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_and_doubles_nothing() {
    let nats = private_nats();
    let mut cluster = Cluster::start(&nats_url(&nats), 1, 1);
    cluster.create("crash").await;
    let load = {
        let bases = bases(&cluster);
        tokio::spawn(async move { redirects(&bases, "crash", 6_000, FIREFOX).await })
    };
    // Kill the worker while visits flow, twice, each time starting another.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.workers.pop().unwrap().kill();
        cluster.add_worker();
    }
    load.await.unwrap();
    cluster.assert_counted("crash", 6_000).await;
    drop(nats);
}
