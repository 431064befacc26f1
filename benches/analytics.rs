//! Click-analytics benchmarks, in-process:
//!
//! 1. ingest: visits with a mix of user agents, languages, referrers and (GeoIP-located)
//!    addresses, nearly every one a visitor of its own (so hardly any is a repeat the
//!    queue can group: the costly case), are captured as the redirect does, then the
//!    real pipeline drains, enriches and stores them with their rollups (raw visits
//!    kept, in blocks). Reported: visits/s end to end, capture included.
//!    Run it on one core: `taskset -c 0 cargo bench --bench analytics`.
//! 2. stats: a link whose rollups hold 10,000,000 clicks over the last year (hourly rows
//!    for the last 90 days, daily rows before, breakdowns with hundreds of countries,
//!    regions, cities, referrers, … per day, folded into months past 90 days by the
//!    retention job), then `GET /api/v1/links/{code}/stats`
//!    through the router for the default 30 days, and for the whole year by day and by
//!    week. Reported: p50 and p99 over repeated requests.
//!    With `BENCH_DATABASE_URL=postgres://…` the stats part runs on PostgreSQL instead,
//!    in a database of its own created on that server and dropped afterwards:
//!    `BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench analytics`.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hop::analytics::anonymize::IpRetention;
use hop::analytics::enrich::{Enricher, RawProfile};
use hop::analytics::geo::GeoIp;
use hop::analytics::pipeline::{Analytics, PipelineConfig, run_pipeline};
use hop::config::{Config, Overrides};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const INGEST_VISITS: usize = 200_000;
const INGEST_ROUNDS: usize = 3;
const STATS_REQUESTS: usize = 40;

const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const ADDRESSES: [&str; 5] = [
    "81.2.69.142",
    "89.160.20.112",
    "216.160.83.56",
    "2.125.160.216",
    "175.16.199.0",
];
const REFERRERS: [Option<&str>; 4] = [
    Some("https://news.ycombinator.com/item?id=1"),
    Some("https://www.google.com/"),
    Some("https://t.co/abc"),
    None,
];
const LANGUAGES: [&str; 4] = ["en-US,en;q=0.9", "fr-FR,fr;q=0.8", "de", "sv-SE"];

fn geoip_database() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/GeoIP2-City-Test.mmdb"
    )
    .to_owned()
}

/// Visitor `i`'s address: in the /24 of one of [`ADDRESSES`] (the test database places
/// some of these, not all; every distinct one is looked up), repeating every 1,280
/// visitors; with the other fields, a raw profile comes back about once in 96,000.
fn visitor_address(i: usize) -> std::net::IpAddr {
    let base: std::net::Ipv4Addr = ADDRESSES[i % ADDRESSES.len()].parse().unwrap();
    let [a, b, c, _] = base.octets();
    std::net::IpAddr::from([a, b, c, (i / ADDRESSES.len() % 256) as u8])
}

fn raw_visit(i: usize) -> RawProfile {
    RawProfile {
        link_id: (i % 1000) as i64 + 1,
        user_agent: Some(AGENTS[i % AGENTS.len()].into()),
        referer: REFERRERS[i % REFERRERS.len()].map(Into::into),
        accept_language: Some(LANGUAGES[i % LANGUAGES.len()].into()),
        client: visitor_address(i),
        qr: i.is_multiple_of(10),
        counted: false,
    }
}

async fn ingest() {
    let dir = tempfile::tempdir().unwrap();
    let stores = hop::store::connect(
        &format!("sqlite://{}/hop.db", dir.path().display()),
        &hop::store::StoreOptions::default(),
    )
    .await
    .unwrap();
    let enricher = Arc::new(
        Enricher::new()
            .with_geo(GeoIp::open(geoip_database()).unwrap())
            .with_ip_retention(IpRetention::Truncated),
    );
    // The visits' links (1 to 1000) exist: their click totals reference them.
    for id in 1..=1000 {
        stores
            .links
            .insert_link(hop::store::NewLink {
                id: hop::domain::link::LinkId(id),
                domain: String::new(),
                code: format!("l-{id}"),
                url: "https://example.com/".into(),
                title: None,
                created_at: 1,
                expires_at: None,
                max_clicks: None,
                redirect: hop::domain::link::RedirectType::Found,
                owner: None,
                tags: Vec::new(),
                password_hash: None,
            })
            .await
            .unwrap();
    }
    let mut rates = Vec::new();
    for round in 0..INGEST_ROUNDS {
        let analytics = Analytics::new(INGEST_VISITS);
        let raws: Vec<RawProfile> = (0..INGEST_VISITS)
            .map(|i| raw_visit(round * INGEST_VISITS + i))
            .collect();
        let start = Instant::now();
        for raw in &raws {
            analytics.capture(hop::domain::link::now_ms(), raw.as_ref());
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // The first tick fires at once: the whole queue is one batch.
        let pipeline = tokio::spawn(run_pipeline(
            analytics.clone(),
            enricher.clone(),
            stores.analytics.clone(),
            hop::clicks::Clicks::new(),
            PipelineConfig {
                interval: Duration::from_secs(3600),
                keep_raw: true,
                publisher: None,
            },
            stopped,
        ));
        assert_eq!(
            analytics.stats().dropped,
            0,
            "the queue must hold the whole round"
        );
        while analytics.stats().stored < INGEST_VISITS as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seconds = start.elapsed().as_secs_f64();
        let _ = stop.send(true);
        pipeline.await.unwrap();
        assert_eq!(analytics.stats().dropped, 0);
        rates.push(INGEST_VISITS as f64 / seconds);
        println!(
            "  ingest round {}: {INGEST_VISITS} visits enriched and stored in {:.3} s = {:.0} visits/s",
            round + 1,
            seconds,
            INGEST_VISITS as f64 / seconds
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "ingest: median {:.0} visits/s (target ≥ 100,000 on one core)",
        rates[rates.len() / 2]
    );
}

/// The breakdowns of a busy link: dimension and distinct values per day.
const DIMENSIONS: [(&str, i64); 8] = [
    ("country", 60),
    ("region", 150),
    ("city", 400),
    ("referrer", 100),
    ("browser", 8),
    ("os", 7),
    ("device", 4),
    ("language", 40),
];

/// A busy day's breakdowns as stored (`visit_day_dims.dims`): 24,000 humans spread
/// over each dimension's values, the remainder on the first.
fn day_dims() -> String {
    let mut counts = Vec::new();
    for (dim, values) in DIMENSIONS {
        for k in 0..values {
            let clicks = 24_000 / values + if k == 0 { 24_000 % values } else { 0 };
            counts.push((dim, format!("{dim}-{k}"), clicks));
        }
    }
    hop::analytics::rollup::dims_json(counts.iter().map(|(d, v, n)| (*d, v.as_str(), *n)))
}

/// [`populate`] on PostgreSQL: the same rows, with generate_series.
async fn populate_pg(url: &str, link: i64) -> u64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let now_s = hop::domain::link::now_ms() / 1000;
    let today = now_s.div_euclid(86_400) * 86_400;
    let this_hour = now_s.div_euclid(3600) * 3600;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "INSERT INTO visit_hourly (link_id, hour_start, humans, bots) \
             SELECT $1::bigint, $2::bigint - n * 3600, 1000, 141 FROM generate_series(0, 90 * 24 - 1) n",
            &[&link, &this_hour],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO visit_daily (link_id, day_start, humans, bots) \
             SELECT $1::bigint, $2::bigint - n * 86400, 24000, 3401 FROM generate_series(90, 364) n",
            &[&link, &today],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO visit_day_dims (link_id, day_start, dims) \
             SELECT $1, $2::bigint - n * 86400, $3::text::jsonb FROM generate_series(0, 364) n",
            &[&link, &today, &day_dims()],
        )
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    let row = client
        .query_one(
            "SELECT CAST((SELECT SUM(humans + bots) FROM visit_hourly WHERE link_id = $1) + \
             (SELECT SUM(humans + bots) FROM visit_daily WHERE link_id = $1) AS BIGINT)",
            &[&link],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) as u64
}

/// A new database on the server of `admin_url` (dropped by [`drop_database`]).
async fn create_database(admin_url: &str, name: &str) -> String {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn drop_database(admin_url: &str, name: &str) {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// Fills the rollups of link `link` with 10M clicks over the last 365 days.
fn populate(db: &std::path::Path, link: i64) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let now_s = hop::domain::link::now_ms() / 1000;
    let today = now_s.div_euclid(86_400) * 86_400;
    let this_hour = now_s.div_euclid(3600) * 3600;
    conn.execute_batch("BEGIN").unwrap();
    // Last 90 days by the hour: 1,000 humans and 141 bots an hour.
    conn.execute(
        "WITH RECURSIVE h(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM h WHERE n < 90 * 24 - 1) \
         INSERT INTO visit_hourly (link_id, hour_start, humans, bots) \
         SELECT ?1, ?2 - n * 3600, 1000, 141 FROM h",
        rusqlite::params![link, this_hour],
    )
    .unwrap();
    // Days 90 to 365 back, folded: 24,000 humans and 3,401 bots a day.
    conn.execute(
        "WITH RECURSIVE d(n) AS (SELECT 90 UNION ALL SELECT n + 1 FROM d WHERE n < 364) \
         INSERT INTO visit_daily (link_id, day_start, humans, bots) \
         SELECT ?1, ?2 - n * 86400, 24000, 3401 FROM d",
        rusqlite::params![link, today],
    )
    .unwrap();
    // Per-day breakdowns: cardinalities of a busy link.
    conn.execute(
        "WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 364) \
         INSERT INTO visit_day_dims (link_id, day_start, dims) SELECT ?1, ?2 - n * 86400, ?3 FROM d",
        rusqlite::params![link, today, day_dims()],
    )
    .unwrap();
    conn.execute_batch("COMMIT").unwrap();
    let total: i64 = conn
        .query_row(
            "SELECT (SELECT SUM(humans + bots) FROM visit_hourly WHERE link_id = ?1) + \
             (SELECT SUM(humans + bots) FROM visit_daily WHERE link_id = ?1)",
            [link],
            |row| row.get(0),
        )
        .unwrap();
    total as u64
}

async fn stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![("HOP_LOG_LEVEL".to_owned(), "warn".to_owned())];
    let admin_url = std::env::var("BENCH_DATABASE_URL").ok();
    let pg_name = format!("hop_bench_stats_{}", std::process::id());
    let pg_url = match &admin_url {
        Some(admin) => Some(create_database(admin, &pg_name).await),
        None => None,
    };
    if let Some(url) = &pg_url {
        env.push(("HOP_DATABASE_URL".to_owned(), url.clone()));
    }
    let overrides = Overrides {
        data_dir: Some(dir.path().to_owned()),
        ..Overrides::default()
    };
    let config = Config::load(None, env, &overrides).unwrap();
    let (state, _background) = hop::app::build(&config).await.unwrap();
    let user = state.stores.keys.insert_user("bench", true).await.unwrap();
    let (_, secret) = hop::app::issue_key(&state.stores, &user, "bench", None)
        .await
        .unwrap();
    let request = hop::domain::link::LinkRequest {
        url: "https://example.com/popular".into(),
        alias: Some("popular".into()),
        ..Default::default()
    };
    let link = hop::http::links::create(&state, Some(user.id), hop::hosts::Site::Default, request)
        .await
        .unwrap();
    let total = match &pg_url {
        Some(url) => populate_pg(url, link.id.0).await,
        None => populate(&dir.path().join("hop.db"), link.id.0),
    };
    // The retention job folds breakdowns older than the hourly window into months,
    // as it would have on a server running for the year.
    let now_s = hop::domain::link::now_ms() / 1000;
    state
        .stores
        .analytics
        .prune(0, (now_s - 90 * 86_400).div_euclid(86_400) * 86_400)
        .await
        .unwrap();
    let router = hop::http::router(state.clone());
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let year_ago = jiff::Timestamp::from_second(hop::domain::link::now_ms() / 1000 - 365 * 86_400)
        .unwrap()
        .to_string();
    println!(
        "stats on {}: one link with {total} clicks in its rollups over the last year",
        if pg_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    for query in [
        String::new(),
        format!("?from={year_ago}&interval=day"),
        format!("?from={year_ago}&interval=week&tz=Europe/Paris"),
    ] {
        let mut times = Vec::new();
        for _ in 0..STATS_REQUESTS {
            let mut request = Request::get(format!("/api/v1/links/popular/stats{query}"))
                .header("authorization", format!("Bearer {secret}"))
                .body(Body::empty())
                .unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            let start = Instant::now();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            times.push(start.elapsed());
            let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(stats["total"].as_u64().unwrap() > 0);
        }
        times.sort();
        println!(
            "  GET /api/v1/links/popular/stats{query}: p50 {:.1} ms, p99 {:.1} ms (target < 50 ms)",
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() * 99 / 100].as_secs_f64() * 1e3,
        );
    }
    if let Some(admin) = &admin_url {
        drop(router);
        drop(state);
        drop_database(admin, &pg_name).await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // On PostgreSQL only the stats part runs: the ingest part measures the
        // pipeline against the embedded store.
        if std::env::var_os("BENCH_DATABASE_URL").is_none() {
            ingest().await;
        }
        stats().await;
    });
}
