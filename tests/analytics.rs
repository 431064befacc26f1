//! Click analytics end to end: known mixes of visitors go through real redirects, and
//! every number the stats, visit listing, CSV export and live feed give is checked.
//! Locations come from MaxMind's GeoIP2 City test database (tests/data/README.md).

mod common;

use common::{TestServer, count_rows, create_key};
use serde_json::{Value, json};
use std::time::Duration;

const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn geoip_database() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/GeoIP2-City-Test.mmdb"
    )
    .to_owned()
}

async fn analytics_server() -> TestServer {
    let database = geoip_database();
    TestServer::start_with(&[
        ("HOP_ANALYTICS_FLUSH_INTERVAL_MS", "50"),
        ("HOP_ANALYTICS_IP", "truncated"),
        ("HOP_GEOIP_DATABASE", &database),
        // The test client is 127.0.0.1: believe its X-Forwarded-For, so each visit
        // can come from an address the test database locates.
        ("HOP_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await
}

/// One visitor of a mix.
struct Visitor {
    agent: &'static str,
    ip: &'static str,
    referer: Option<&'static str>,
    language: Option<&'static str>,
    qr: bool,
}

async fn visit(server: &TestServer, code: &str, visitor: &Visitor) {
    let path = if visitor.qr {
        format!("/{code}?qr")
    } else {
        format!("/{code}")
    };
    let mut request = server
        .client
        .get(server.url(&path))
        .header("user-agent", visitor.agent)
        .header("x-forwarded-for", visitor.ip);
    if let Some(referer) = visitor.referer {
        request = request.header("referer", referer);
    }
    if let Some(language) = visitor.language {
        request = request.header("accept-language", language);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 302, "{path}");
    // The QR marker is not passed on.
    assert_eq!(
        response.headers()["location"],
        "https://example.com/landing"
    );
}

/// Three people on Chrome from London via Hacker News, two on Firefox from Linköping,
/// one on an iPhone in Milton who scanned the QR code, and two Googlebot fetches.
fn the_mix() -> Vec<Visitor> {
    let mut mix = Vec::new();
    for _ in 0..3 {
        mix.push(Visitor {
            agent: CHROME_WINDOWS,
            ip: "81.2.69.142",
            referer: Some("https://news.ycombinator.com/item?id=1"),
            language: Some("en-GB,en;q=0.9"),
            qr: false,
        });
    }
    for _ in 0..2 {
        mix.push(Visitor {
            agent: FIREFOX_LINUX,
            ip: "89.160.20.112",
            referer: None,
            language: Some("sv-SE, sv;q=0.9, en;q=0.5"),
            qr: false,
        });
    }
    mix.push(Visitor {
        agent: SAFARI_IPHONE,
        ip: "216.160.83.56",
        referer: None,
        language: Some("en-US"),
        qr: true,
    });
    for _ in 0..2 {
        mix.push(Visitor {
            agent: GOOGLEBOT,
            ip: "66.249.66.1",
            referer: None,
            language: None,
            qr: false,
        });
    }
    mix
}

async fn get_json(server: &TestServer, key: &str, path: &str) -> (u16, Value) {
    let response = server
        .client
        .get(server.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `[(value, clicks)]` of a breakdown, in the order given.
fn breakdown(stats: &Value, name: &str) -> Vec<(String, u64)> {
    stats[name]
        .as_array()
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
        .iter()
        .map(|e| {
            (
                e["value"].as_str().unwrap().to_owned(),
                e["clicks"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected.iter().map(|(v, n)| (v.to_string(), *n)).collect()
}

async fn wait_for_total(server: &TestServer, key: &str, path: &str, total: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, stats) = get_json(server, key, path).await;
        if stats["total"].as_u64() == Some(total) {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "total never reached {total}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn stats_count_every_breakdown_exactly() {
    let server = analytics_server().await;
    let link = server
        .create_ok(json!({"url": "https://example.com/landing", "alias": "mix"}))
        .await;
    assert_eq!(link["code"], "mix");
    for visitor in the_mix() {
        visit(&server, "mix", &visitor).await;
    }
    // HEAD is not a visit.
    let head = server.client.head(server.url("/mix")).send().await.unwrap();
    assert_eq!(head.status(), 302);

    let key = server.admin_key.clone();
    let stats = wait_for_total(&server, &key, "/api/v1/links/mix/stats", 8).await;
    assert_eq!(stats["humans"], 6);
    assert_eq!(stats["bots"], 2);
    let series_sum: u64 = stats["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["clicks"].as_u64().unwrap())
        .sum();
    assert_eq!(series_sum, 6, "series must sum to humans");
    assert_eq!(
        stats["series"].as_array().unwrap().len(),
        31,
        "30 days by day, the current day's bucket included"
    );
    assert_eq!(
        breakdown(&stats, "countries"),
        pairs(&[("GB", 3), ("SE", 2), ("US", 1)])
    );
    assert_eq!(
        breakdown(&stats, "regions"),
        pairs(&[
            ("England", 3),
            ("Östergötland County", 2),
            ("Washington", 1)
        ])
    );
    assert_eq!(
        breakdown(&stats, "cities"),
        pairs(&[("London", 3), ("Linköping", 2), ("Milton", 1)])
    );
    assert_eq!(
        breakdown(&stats, "referrers"),
        pairs(&[("news.ycombinator.com", 3), ("unknown", 3)])
    );
    assert_eq!(
        breakdown(&stats, "browsers"),
        pairs(&[("Chrome", 3), ("Firefox", 2), ("Safari", 1)])
    );
    assert_eq!(
        breakdown(&stats, "os"),
        pairs(&[("Windows", 3), ("Linux", 2), ("iOS", 1)])
    );
    assert_eq!(
        breakdown(&stats, "devices"),
        pairs(&[("desktop", 5), ("mobile", 1)])
    );
    assert_eq!(
        breakdown(&stats, "languages"),
        pairs(&[("en", 4), ("sv", 2)])
    );
    assert_eq!(
        breakdown(&stats, "sources"),
        pairs(&[("link", 5), ("qr", 1)])
    );

    // Hourly buckets in another time zone still sum to the humans.
    let (status, hourly) = get_json(
        &server,
        &key,
        "/api/v1/links/mix/stats?interval=hour&tz=Asia/Kolkata",
    )
    .await;
    assert_eq!(status, 200, "{hourly}");
    let buckets = hourly["series"].as_array().unwrap();
    assert_eq!(buckets.len(), 30 * 24 + 1);
    // Starts are UTC with milliseconds, on the half hours that are Kolkata's hours.
    for bucket in buckets {
        assert!(
            bucket["start"].as_str().unwrap().ends_with(":30:00.000Z"),
            "{bucket}"
        );
    }
    assert!(hourly["from"].as_str().unwrap().ends_with('Z'));
    let sum: u64 = buckets.iter().map(|b| b["clicks"].as_u64().unwrap()).sum();
    assert_eq!(sum, 6);

    // The link's own click count (written on its own timer) agrees with the analytics.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (_, link) = get_json(&server, &key, "/api/v1/links/mix").await;
        if link["clicks"] == 8 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{link}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Everything the admin can see, with the top links.
    let (status, all) = get_json(&server, &key, "/api/v1/stats").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 8, "{all}");
    assert_eq!(all["topLinks"][0]["code"], "mix");
    assert_eq!(all["topLinks"][0]["clicks"], 8);
}

#[tokio::test]
async fn visits_are_listed_anonymised_and_exported_as_csv() {
    let server = analytics_server().await;
    server
        .create_ok(json!({"url": "https://example.com/landing", "alias": "raw"}))
        .await;
    for visitor in the_mix() {
        visit(&server, "raw", &visitor).await;
    }
    let key = server.admin_key.clone();
    wait_for_total(&server, &key, "/api/v1/links/raw/stats", 8).await;

    let (status, first) = get_json(&server, &key, "/api/v1/links/raw/visits?limit=5").await;
    assert_eq!(status, 200, "{first}");
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = get_json(
        &server,
        &key,
        &format!("/api/v1/links/raw/visits?limit=5&cursor={cursor}"),
    )
    .await;
    let rest = second["items"].as_array().unwrap();
    assert_eq!(rest.len(), 3);
    assert!(second["nextCursor"].is_null());
    let all: Vec<&Value> = items.iter().chain(rest.iter()).collect();
    // Newest first (fixed-width RFC 3339 sorts as text); the two bot fetches came
    // last, so nothing is newer than they are (visits in the same millisecond tie).
    let times: Vec<&str> = all.iter().map(|v| v["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let bots: Vec<&&Value> = all.iter().filter(|v| v["bot"] == true).collect();
    assert_eq!(bots.len(), 2);
    assert!(bots.iter().all(|v| v["device"] == "bot"));
    assert!(bots.iter().all(|v| v["at"].as_str().unwrap() >= times[2]));
    let iphone = all.iter().find(|v| v["os"] == "iOS").unwrap();
    assert_eq!(iphone["qr"], true);
    assert_eq!(iphone["country"], "US");
    assert_eq!(iphone["city"], "Milton");
    assert_eq!(iphone["ip"], "216.160.83.0", "truncated to /24");
    let london = all.iter().find(|v| v["city"] == "London").unwrap();
    assert_eq!(london["referrerHost"], "news.ycombinator.com");
    assert!(
        london["referrerUrl"].is_null(),
        "full referrers are off by default"
    );
    assert_eq!(london["language"], "en");
    // No full address anywhere in the database: not in a column, not inside a visit
    // block, not in the write-ahead log.
    let bytes = common::stored_bytes(server.dir.path());
    let holds = |text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(!holds("81.2.69.142") && !holds("216.160.83.56"));
    assert!(
        holds("216.160.83.0"),
        "the check reads where visits are stored"
    );

    let csv = server
        .client
        .get(server.url("/api/v1/links/raw/visits?format=csv"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert!(lines[0].starts_with("at,bot,qr,browser,os,device,language"));
    assert_eq!(
        lines.iter().filter(|l| l.contains(",London,")).count(),
        3,
        "{text}"
    );
}

#[tokio::test]
async fn stats_respect_ownership_and_validate_parameters() {
    let server = analytics_server().await;
    let ana = create_key(&server.state, "ana", false).await;
    let bob = create_key(&server.state, "bob", false).await;
    let made = server
        .create_as(
            &ana,
            json!({"url": "https://example.com/landing", "alias": "anas"}),
        )
        .await;
    assert_eq!(made.status(), 201);
    visit(&server, "anas", &the_mix()[0]).await;
    wait_for_total(&server, &ana, "/api/v1/links/anas/stats", 1).await;
    for path in [
        "/api/v1/links/anas/stats",
        "/api/v1/links/anas/visits",
        "/api/v1/links/anas/live",
    ] {
        let (status, _) = get_json(&server, &bob, path).await;
        assert_eq!(status, 404, "{path}");
    }
    let (_, bobs) = get_json(&server, &bob, "/api/v1/stats").await;
    assert_eq!(bobs["total"], 0);
    assert_eq!(bobs["topLinks"], json!([]));
    let (_, anas) = get_json(&server, &ana, "/api/v1/stats").await;
    assert_eq!(anas["total"], 1);

    for (query, parameter) in [
        ("interval=fortnight", "interval"),
        ("tz=Mars/Olympus", "tz"),
        ("from=yesterday", "from"),
        ("from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", "from"),
        ("interval=hour&from=2000-01-01T00:00:00Z", "interval"),
        ("color=red", "color"),
    ] {
        let (status, problem) =
            get_json(&server, &ana, &format!("/api/v1/links/anas/stats?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_eq!(problem["field"], parameter, "{query}: {problem}");
    }
}

#[tokio::test]
async fn live_feed_sends_each_visit_within_a_second() {
    let server = analytics_server().await;
    server
        .create_ok(json!({"url": "https://example.com/landing", "alias": "live"}))
        .await;
    let mut feed = server
        .client
        .get(server.url("/api/v1/links/live/live"))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let started = std::time::Instant::now();
    visit(&server, "live", &the_mix()[5]).await;
    let mut received = String::new();
    while !received.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(1), feed.chunk())
            .await
            .expect("no event within a second")
            .unwrap()
            .unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
        if received.starts_with(':') {
            received.clear(); // a keep-alive comment
        }
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(received.starts_with("event: visit\n"), "{received}");
    let data = received
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["os"], "iOS");
    assert_eq!(event["qr"], true);
    assert_eq!(event["city"], "Milton");
    assert_eq!(event["ip"], "216.160.83.0");
}

#[tokio::test]
async fn every_redirect_is_stored_exactly_once_across_a_graceful_stop() {
    let mut server = TestServer::start_with(&[("HOP_ANALYTICS_FLUSH_INTERVAL_MS", "60000")]).await;
    server
        .create_ok(json!({"url": "https://example.com/landing", "alias": "many"}))
        .await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = server.client.clone();
        let url = server.url("/many");
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let status = client.get(&url).send().await.unwrap().status();
                assert_eq!(status, 302);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // The pipeline drains once a minute here: everything is still queued, and the
    // graceful stop must store it.
    server.stop().await;
    let db = server.dir.path();
    assert_eq!(
        count_rows(db, "SELECT CAST(SUM(visits) AS BIGINT) FROM visit_blocks"),
        400
    );
    assert_eq!(
        count_rows(
            db,
            "SELECT CAST(SUM(humans + bots) AS BIGINT) FROM visit_hourly"
        ),
        400
    );
    assert_eq!(
        count_rows(db, "SELECT COUNT(*) FROM visit_day_dims"),
        0,
        "requests without a user agent are bots, not in the breakdowns"
    );
}

#[tokio::test]
async fn retention_deletes_raw_visits_and_folds_rollups_without_losing_counts() {
    let server = analytics_server().await;
    server
        .create_ok(json!({"url": "https://example.com/landing", "alias": "old"}))
        .await;
    for visitor in the_mix() {
        visit(&server, "old", &visitor).await;
    }
    let key = server.admin_key.clone();
    let before = wait_for_total(&server, &key, "/api/v1/links/old/stats", 8).await;
    // As if every visit were past both windows: raw rows go, hours fold into days and
    // days' breakdowns into months.
    let now = hop::domain::link::now_ms();
    let tomorrow = (now / 1000 / 86_400 + 1) * 86_400;
    let (deleted, folded) = server
        .state
        .stores
        .analytics
        .prune(now + 1, tomorrow)
        .await
        .unwrap();
    assert_eq!(deleted, 8);
    assert!(folded >= 1);
    let db = server.dir.path();
    assert_eq!(count_rows(db, "SELECT COUNT(*) FROM visit_blocks"), 0);
    assert_eq!(count_rows(db, "SELECT COUNT(*) FROM visit_hourly"), 0);
    // Every breakdown row left is a month's (its day is the 1st); the day of the month
    // is asked in each backend's own words.
    let month_start = if common::on_postgres() {
        "(extract(epoch FROM date_trunc('month', to_timestamp(day_start) \
         AT TIME ZONE 'UTC')))::bigint"
    } else {
        "CAST(strftime('%s', day_start, 'unixepoch', 'start of month') AS INTEGER)"
    };
    assert_eq!(
        count_rows(
            db,
            &format!("SELECT COUNT(*) FROM visit_day_dims WHERE day_start <> {month_start}")
        ),
        0
    );
    let (_, after) = get_json(&server, &key, "/api/v1/links/old/stats").await;
    for field in [
        "total",
        "humans",
        "bots",
        "countries",
        "cities",
        "browsers",
        "languages",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    let (_, visits) = get_json(&server, &key, "/api/v1/links/old/visits").await;
    assert_eq!(visits["items"], json!([]));

    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("\nhop_analytics_stored_total 8\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nhop_analytics_dropped_total 0\n"),
        "{metrics}"
    );
}
