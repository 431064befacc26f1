//! Request metrics for `/metrics`: answers counted by route template and status, and
//! a latency histogram per route, in Prometheus' conventions
//! (`hop_http_requests_total`, `hop_http_request_duration_seconds`).
//!
//! The redirect route, which carries nearly all traffic, has its counters in a fixed
//! table (no lock, no allocation: a few relaxed atomic additions per redirect). Every
//! other route is found in a map under a read lock, which is nothing beside the work
//! of an API request. Routes are templates (`/api/v1/links/{code}`) and unmatched
//! paths are one `unmatched` route, so the label sets stay few whatever is requested.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (each bucket also counts what the
/// ones below it count, as Prometheus expects, when rendered).
const BUCKETS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0,
];

/// The route template of redirects, as logged.
pub const REDIRECT_ROUTE: &str = "/{code}";

/// Statuses the redirect route answers with, each with its own counter.
const REDIRECT_STATUSES: [u16; 10] = [301, 302, 303, 307, 308, 200, 404, 410, 429, 503];

/// A latency histogram.
#[derive(Default)]
struct Histogram {
    /// Observations per bucket (not cumulative), the last one past every bound.
    buckets: [AtomicU64; BUCKETS_S.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = BUCKETS_S
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS_S.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, route: &str) {
        let mut cumulative = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = BUCKETS_S
                .get(index)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "hop_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "hop_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}\n\
             hop_http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
        );
    }
}

/// One route's numbers.
#[derive(Default)]
struct RouteMetrics {
    latency: Histogram,
    /// Answers by status.
    statuses: RwLock<HashMap<u16, u64>>,
}

/// Every route's counters and histograms.
#[derive(Default)]
pub struct HttpMetrics {
    redirect_latency: Histogram,
    redirect_statuses: [AtomicU64; REDIRECT_STATUSES.len()],
    /// Redirect-route answers with a status not in [`REDIRECT_STATUSES`].
    redirect_other: RwLock<HashMap<u16, u64>>,
    routes: RwLock<HashMap<String, RouteMetrics>>,
}

fn count(map: &RwLock<HashMap<u16, u64>>, status: u16) {
    *map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(status)
        .or_insert(0) += 1;
}

/// Escapes a label value (`\`, `"` and newlines), as the text format asks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl HttpMetrics {
    /// Records one answered request.
    pub fn record(&self, route: &str, status: u16, elapsed: Duration) {
        if route == REDIRECT_ROUTE {
            self.redirect_latency.observe(elapsed);
            match REDIRECT_STATUSES.iter().position(|s| *s == status) {
                Some(index) => {
                    self.redirect_statuses[index].fetch_add(1, Ordering::Relaxed);
                }
                None => count(&self.redirect_other, status),
            }
            return;
        }
        {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(metrics) = routes.get(route) {
                metrics.latency.observe(elapsed);
                count(&metrics.statuses, status);
                return;
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let metrics = routes.entry(route.to_owned()).or_default();
        metrics.latency.observe(elapsed);
        count(&metrics.statuses, status);
    }

    /// The counters and histograms in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        out.push_str(
            "# HELP hop_http_requests_total HTTP requests answered, by route template and status.\n\
             # TYPE hop_http_requests_total counter\n",
        );
        let redirect = label(REDIRECT_ROUTE);
        for (status, counter) in REDIRECT_STATUSES.iter().zip(&self.redirect_statuses) {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "hop_http_requests_total{{route=\"{redirect}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let mut rows: Vec<(String, u16, u64)> = self
            .redirect_other
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(status, n)| (redirect.clone(), *status, *n))
            .collect();
        for name in &names {
            let statuses = routes[*name]
                .statuses
                .read()
                .unwrap_or_else(|e| e.into_inner());
            rows.extend(statuses.iter().map(|(s, n)| (label(name), *s, *n)));
        }
        rows.sort();
        for (route, status, n) in rows {
            let _ = writeln!(
                out,
                "hop_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP hop_http_request_duration_seconds Time from a request's headers to its answer, by route template.\n\
             # TYPE hop_http_request_duration_seconds histogram\n",
        );
        self.redirect_latency.render(out, &redirect);
        for name in names {
            routes[name].latency.render(out, &label(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status_and_buckets_cumulatively() {
        let metrics = HttpMetrics::default();
        metrics.record(REDIRECT_ROUTE, 302, Duration::from_micros(50));
        metrics.record(REDIRECT_ROUTE, 302, Duration::from_millis(3));
        metrics.record(REDIRECT_ROUTE, 418, Duration::from_micros(50));
        metrics.record("/api/v1/links", 201, Duration::from_millis(2));
        metrics.record("/api/v1/links", 400, Duration::from_secs(20));
        let mut out = String::new();
        metrics.render(&mut out);
        for line in [
            "hop_http_requests_total{route=\"/{code}\",status=\"302\"} 2",
            "hop_http_requests_total{route=\"/{code}\",status=\"418\"} 1",
            "hop_http_requests_total{route=\"/api/v1/links\",status=\"201\"} 1",
            "hop_http_requests_total{route=\"/api/v1/links\",status=\"400\"} 1",
            "hop_http_request_duration_seconds_bucket{route=\"/{code}\",le=\"0.0001\"} 2",
            "hop_http_request_duration_seconds_bucket{route=\"/{code}\",le=\"0.005\"} 3",
            "hop_http_request_duration_seconds_bucket{route=\"/api/v1/links\",le=\"10\"} 1",
            "hop_http_request_duration_seconds_bucket{route=\"/api/v1/links\",le=\"+Inf\"} 2",
            "hop_http_request_duration_seconds_count{route=\"/{code}\"} 3",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        assert!(
            !out.contains("status=\"404\""),
            "unused statuses are not listed"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
