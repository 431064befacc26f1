//! What click enrichment costs per visit, in-process:
//!
//! - `baseline`: one pass over each user agent counting its lower-case bytes: the least
//!   any byte-by-byte classifier has to do, measured on the same strings in the same run;
//! - `classify`: `agent::classify` over the table of real user agents the unit tests check
//!   (`tests/data/user_agents.rs`: browsers on every platform, crawlers, HTTP libraries);
//! - `enrich`: the pipeline's enrichment (`Enricher::enrich_batch`, the batch built as
//!   the capture builds it) per visit, every visit a visitor of its own (the costly
//!   case: nothing is shared but referrers, languages and addresses), with every header
//!   set, GeoIP on (MaxMind's City test database) and the truncated address kept: the
//!   user agents of the same table, rotating referrers, languages and addresses.
//!
//! The budget: classification well under 1 µs, enrichment well under 10 µs (the pipeline
//! must take 100,000 clicks a second on one core).
//!
//! Run: `cargo bench --bench agent`.

use hop::analytics::agent;
use hop::analytics::anonymize::IpRetention;
use hop::analytics::enrich::{Enricher, RawBatch, RawProfile};
use hop::analytics::geo::GeoIp;
use std::hint::black_box;
use std::time::Instant;

include!("../tests/data/user_agents.rs");

const ROUNDS: usize = 7;
const PASSES: usize = 2_000;

/// Median over `ROUNDS` of the nanoseconds per item of `run`, which handles `items` items.
fn measure(items: usize, mut run: impl FnMut()) -> f64 {
    run(); // warm up
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..PASSES {
                run();
            }
            start.elapsed().as_nanos() as f64 / (PASSES * items) as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let agents: Vec<&str> = USER_AGENTS.iter().map(|row| row.0).collect();
    let mean_len = agents.iter().map(|ua| ua.len()).sum::<usize>() / agents.len();

    let baseline = measure(agents.len(), || {
        for ua in &agents {
            black_box(black_box(ua).bytes().filter(u8::is_ascii_lowercase).count());
        }
    });
    let classify = measure(agents.len(), || {
        for ua in &agents {
            black_box(agent::classify(black_box(ua)));
        }
    });

    let db = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/GeoIP2-City-Test.mmdb"
    );
    let enricher = Enricher::new()
        .with_geo(GeoIp::open(db).expect("the City test database"))
        .with_referrer_url(true)
        .with_ip_retention(IpRetention::Truncated);
    let referers = [
        "https://www.google.com/",
        "https://news.ycombinator.com/item?id=38000000",
        "https://t.co/abc123",
        "https://www.reddit.com/r/rust/comments/xyz/some_title/",
    ];
    let languages = [
        "en-US,en;q=0.9",
        "fr-CH, fr;q=0.9, en;q=0.8",
        "de",
        "ja,en-US;q=0.7",
    ];
    let clients = [
        "81.2.69.142",
        "89.160.20.112",
        "216.160.83.56",
        "2001:480:10::1",
    ];
    let visits: Vec<RawProfile> = agents
        .iter()
        .enumerate()
        .map(|(i, ua)| RawProfile {
            link_id: i as i64,
            user_agent: Some((*ua).into()),
            referer: Some(referers[i % referers.len()].into()),
            accept_language: Some(languages[i % languages.len()].into()),
            client: clients[i % clients.len()].parse().unwrap(),
            qr: i % 5 == 0,
            counted: false,
        })
        .collect();
    let enrich = measure(visits.len(), || {
        let mut batch = RawBatch::default();
        for (at, raw) in visits.iter().enumerate() {
            batch.push(at as i64, black_box(raw).as_ref());
        }
        black_box(enricher.enrich_batch(vec![batch]));
    });

    println!(
        "click enrichment, {} user agents (mean {mean_len} bytes), median of {ROUNDS} rounds:",
        agents.len()
    );
    println!("  baseline (one pass over the bytes): {baseline:>7.0} ns/call");
    println!(
        "  agent::classify:                    {classify:>7.0} ns/call  ({:.1}× baseline)",
        classify / baseline
    );
    println!(
        "  capture + Enricher::enrich_batch, new visitors (geo, referrer URL, truncated IP): \
         {enrich:>7.0} ns/visit  \
         ({:.0} visits/s on one core)",
        1e9 / enrich
    );
}
