//! What the target blocklist costs per check: `Blocklist::blocks_url` (what a cache fill
//! runs) and `blocked_by` on a parsed host (what a create runs) against a list of
//! 1,000,000 entries, for URLs that are not listed (the whole name is walked: the
//! worst case) and for listed ones. Also the list's load time and memory.
//!
//! Run: `cargo bench --bench blocklist` (see docs/benchmarks.md).

use hop::blocklist::Blocklist;
use std::io::Write;
use std::time::Instant;

const ENTRIES: usize = 1_000_000;
const CHECKS: usize = 1_000_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    {
        let mut out = std::io::BufWriter::new(file.as_file_mut());
        for i in 0..ENTRIES {
            if i % 2 == 0 {
                writeln!(out, "0.0.0.0 h{i:x}.phish.example").unwrap();
            } else {
                writeln!(out, "d{i:x}.ads.test").unwrap();
            }
        }
    }
    let before = rss_kib();
    let started = Instant::now();
    let list = Blocklist::load(vec![file.path().to_owned()]).unwrap();
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let memory_mib = (rss_kib().saturating_sub(before)) as f64 / 1024.0;
    assert_eq!(list.len(), ENTRIES);

    let unlisted: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                "https://www{i}.shop{}.example.com/product/{i}?ref=x",
                i % 37
            )
        })
        .collect();
    let listed: Vec<String> = (0..1000)
        .map(|i| format!("https://sub.h{:x}.phish.example/login", i * 2))
        .collect();
    let time = |urls: &[String], f: &dyn Fn(&str) -> bool| {
        let started = Instant::now();
        let mut hits = 0usize;
        for n in 0..CHECKS {
            hits += usize::from(f(&urls[n % urls.len()]));
        }
        (started.elapsed().as_nanos() as f64 / CHECKS as f64, hits)
    };
    let (url_ns, hits) = time(&unlisted, &|u| list.blocks_url(u));
    assert_eq!(hits, 0);
    let (listed_ns, hits) = time(&listed, &|u| list.blocks_url(u));
    assert_eq!(hits, CHECKS);
    let hosts: Vec<String> = unlisted
        .iter()
        .map(|u| url::Url::parse(u).unwrap().host_str().unwrap().to_owned())
        .collect();
    let (host_ns, _) = time(&hosts, &|h| list.blocked_by(h).is_some());
    println!(
        "blocklist of {ENTRIES} entries: loaded in {load_ms:.0} ms, {memory_mib:.1} MiB resident"
    );
    println!("blocks_url, unlisted URL (cache fill): {url_ns:.0} ns per check");
    println!("blocks_url, listed URL:                {listed_ns:.0} ns per check");
    println!("blocked_by, unlisted host (create):    {host_ns:.0} ns per check");
}
