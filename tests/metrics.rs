//! `/metrics` in Prometheus' text format: request counters and latency histograms by
//! route and status, process and runtime basics; and the Grafana dashboard in deploy/
//! asks only for metrics that a running hop exposes (a cluster node's, on the
//! machine's Redis at 127.0.0.1:6379 under a prefix of its own, so the Redis tier's
//! panels are checked too).

mod common;

use common::TestServer;
use serde_json::{Value, json};

async fn metrics_text(server: &TestServer) -> String {
    let response = server.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of the sample line `series` (name and labels exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn requests_are_counted_by_route_and_status_with_latency() {
    let server = TestServer::start().await;
    server
        .create_ok(json!({"url": "https://example.com/m", "alias": "metered"}))
        .await;
    for _ in 0..3 {
        assert_eq!(server.get("/metered").await.status(), 302);
    }
    assert_eq!(server.get("/unknown1").await.status(), 404);
    assert_eq!(server.get("/api/v1/links/nope").await.status(), 401);
    let text = metrics_text(&server).await;
    let count = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    assert_eq!(
        count(r#"hop_http_requests_total{route="/{code}",status="302"}"#),
        3.0
    );
    assert_eq!(
        count(r#"hop_http_requests_total{route="/{code}",status="404"}"#),
        1.0
    );
    assert_eq!(
        count(r#"hop_http_requests_total{route="/api/v1/links",status="201"}"#),
        1.0
    );
    assert_eq!(
        count(r#"hop_http_requests_total{route="/api/v1/links/{code}",status="401"}"#),
        1.0
    );
    // The histogram counts every redirect-route answer, and its buckets are cumulative.
    assert_eq!(
        count(r#"hop_http_request_duration_seconds_count{route="/{code}"}"#),
        4.0
    );
    assert_eq!(
        count(r#"hop_http_request_duration_seconds_bucket{route="/{code}",le="+Inf"}"#),
        4.0
    );
    assert!(count(r#"hop_http_request_duration_seconds_sum{route="/{code}"}"#) > 0.0);
    for series in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "hop_runtime_workers",
        "hop_connections_open",
    ] {
        assert!(count(series) > 0.0, "{series}");
    }
    // Every sample line belongs to a declared metric.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| text.contains(&format!("# TYPE {base} histogram")))
            .unwrap_or(name);
        assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
    }
}

#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_hop_exposes() {
    let prefix = format!("hoptest:metrics:{}:", std::process::id());
    let server = TestServer::start_with(&[
        ("HOP_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("HOP_REDIS_PREFIX", &prefix),
    ])
    .await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    let text = metrics_text(&server).await;
    let dashboard: Value =
        serde_json::from_str(include_str!("../deploy/grafana-dashboard.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    let mut used = 0;
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("hop_") || word.starts_with("process_") {
                    assert!(
                        text.contains(&format!("# TYPE {word} "))
                            || text.contains(&format!("\n{word}{{")),
                        "panel `{}` uses {word}, which /metrics does not have",
                        panel["title"]
                    );
                    used += 1;
                }
            }
        }
    }
    assert!(used >= 20, "{used}");
}
