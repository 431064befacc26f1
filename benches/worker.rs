//! `hop worker` throughput: visits stored per second from the click stream into
//! PostgreSQL (target: ≥ 100,000 visits/s for one worker).
//!
//! 1,000,000 visits over 10,000 links, nearly every one a visitor of its own (user
//! agents, languages, referrers and addresses mixed, GeoIP-located with the test
//! database, addresses truncated), are published as 4,000-visit batches (what one
//! node's buffer holds after a quarter second at 16k redirects/s) to a stream of the
//! bench's own on NATS. Then the real worker (`stream::worker::Worker`, the code
//! `hop worker` runs) drains the stream into a fresh database: decode, enrich, store
//! raw visits in blocks, every rollup and click total, the batch ids, acknowledge,
//! publish live feeds. Reported: visits/s from the worker's start until the rollups
//! hold every visit, and the publish rate.
//!
//! `BENCH_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres: a
//! database of its own is created there and dropped after) and `BENCH_NATS_URL`
//! (default nats://127.0.0.1:4222: a stream of its own, deleted after):
//! `cargo bench --bench worker`.

use hop::analytics::anonymize::IpRetention;
use hop::analytics::enrich::{Enricher, RawBatch, RawProfile};
use hop::analytics::geo::GeoIp;
use hop::stream::StreamSettings;
use hop::stream::worker::Worker;
use std::sync::Arc;
use std::time::{Duration, Instant};

const VISITS: usize = 1_000_000;
const LINKS: usize = 10_000;
const BATCH: usize = 4_000;

const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const ADDRESSES: [[u8; 3]; 5] = [
    [81, 2, 69],
    [89, 160, 20],
    [216, 160, 83],
    [2, 125, 160],
    [175, 16, 199],
];
const REFERRERS: [Option<&str>; 4] = [
    Some("https://news.ycombinator.com/item?id=1"),
    Some("https://www.google.com/"),
    Some("https://t.co/abc"),
    None,
];
const LANGUAGES: [&str; 4] = ["en-US,en;q=0.9", "fr-FR,fr;q=0.8", "de", "sv-SE"];

fn raw_visit(i: usize) -> RawProfile {
    let [a, b, c] = ADDRESSES[i % ADDRESSES.len()];
    RawProfile {
        link_id: (i * 7919 % LINKS) as i64 + 1,
        user_agent: Some(AGENTS[i % AGENTS.len()].into()),
        referer: REFERRERS[i % REFERRERS.len()].map(Into::into),
        accept_language: Some(LANGUAGES[i % LANGUAGES.len()].into()),
        client: std::net::IpAddr::from([a, b, c, (i / ADDRESSES.len() % 256) as u8]),
        qr: i.is_multiple_of(10),
        counted: false,
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn stored(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT COALESCE(SUM(humans + bots), 0)::bigint FROM visit_hourly",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let admin_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nats_url =
        std::env::var("BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let name = format!("hop_bench_worker_{}", std::process::id());
    admin(&admin_url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    let stores = hop::store::connect(&url, &hop::store::StoreOptions::default())
        .await
        .unwrap();
    let settings = StreamSettings {
        url: nats_url.clone(),
        prefix: format!("hopbench{}", std::process::id()),
        timeout: Duration::from_secs(5),
        spool_path: std::env::temp_dir().join("hop-bench-unused.spool"),
        spool_max_bytes: 1 << 20,
    };

    // The nodes' side: batches as a busy node drains them, published with ids.
    let client = async_nats::connect(nats_url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    hop::stream::ensure_stream(&js, &settings).await.unwrap();
    let started = Instant::now();
    let mut acks = Vec::new();
    let mut bytes = 0;
    for (n, start) in (0..VISITS).step_by(BATCH).enumerate() {
        let mut batch = RawBatch::default();
        let now = hop::domain::link::now_ms();
        for i in start..(start + BATCH).min(VISITS) {
            batch.push(now, raw_visit(i).as_ref());
        }
        let payload = batch.encode();
        bytes += payload.len();
        let message = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(format!("bench-{n}"));
        acks.push(js.send_publish(settings.subject(), message).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let publish_s = started.elapsed().as_secs_f64();
    println!(
        "published {VISITS} visits in {} messages ({:.1} MB, {:.0} bytes/visit) in {publish_s:.2} s = {:.0} visits/s",
        VISITS.div_ceil(BATCH),
        bytes as f64 / 1e6,
        bytes as f64 / VISITS as f64,
        VISITS as f64 / publish_s
    );

    // The worker: from its start until the rollups hold every visit.
    let enricher = Enricher::new()
        .with_geo(
            GeoIp::open(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/GeoIP2-City-Test.mmdb"
            ))
            .unwrap(),
        )
        .with_ip_retention(IpRetention::Truncated);
    let worker = Worker {
        settings: settings.clone(),
        store: stores.analytics.clone(),
        meta: stores.meta.clone(),
        enricher: Arc::new(enricher),
        keep_raw: true,
        status: None,
        metrics: Default::default(),
    };
    let db = admin(&url).await;
    let started = Instant::now();
    let done = async {
        while stored(&db).await < VISITS as i64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    worker.run(done).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "hop worker stored {VISITS} visits over {LINKS} links in {seconds:.2} s = {:.0} visits/s (target ≥ 100,000)",
        VISITS as f64 / seconds
    );
    let blocks: i64 = db
        .query_one(
            "SELECT COALESCE(SUM(visits), 0)::bigint FROM visit_blocks",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let clicks: i64 = db
        .query_one(
            "SELECT COALESCE(SUM(clicks), 0)::bigint FROM link_clicks",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((blocks, clicks), (VISITS as i64, VISITS as i64));
    let size: i64 = db
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .unwrap()
        .get(0);
    println!("database after: {:.1} MB", size as f64 / 1e6);
    drop(db);
    drop(stores);
    let _ = js.delete_stream(settings.stream_name()).await;
    admin(&admin_url)
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}
