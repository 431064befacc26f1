//! Rate limits: token buckets per API key, per anonymous client and, for redirects,
//! per client address, plus the trusted-proxy rule that says which address a request
//! comes from.
//!
//! A bucket holds up to a minute's allowance and refills continuously, so a client
//! may burst up to its per-minute limit and then proceeds at the steady rate. Buckets
//! live in a few mutex-guarded shards; a bucket idle for a minute is full again and
//! is dropped when its shard grows, which bounds memory under address scans.
//! API and redirect traffic use separate buckets: a busy API client never blocks
//! redirects, and the other way round.

use crate::domain::link::KeyId;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whose allowance a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketKey {
    /// An authenticated API key.
    Key(KeyId),
    /// API requests without a valid key, per client address.
    Anonymous(IpAddr),
    /// Redirects, per client address.
    Redirect(IpAddr),
    /// Link creates without an API key, per client address (besides `Anonymous`).
    AnonymousCreate(IpAddr),
}

/// The outcome of one request against its bucket, with what the `RateLimit-*`
/// headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests per minute for this bucket.
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
    /// When refused: seconds until one request is allowed.
    pub retry_after_s: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Shards grow past this many buckets before idle ones are first dropped.
const SWEEP_ABOVE: usize = 4096;
/// A bucket untouched this long is full again (every rate refills within a minute), so
/// dropping it changes nothing.
const IDLE: Duration = Duration::from_secs(60);

struct Shard {
    buckets: HashMap<BucketKey, Bucket>,
    /// Sweep for idle buckets once there are more than this. After a sweep it is twice
    /// what is left, so sweeps cost O(1) per bucket however many clients are active: a
    /// fixed threshold swept on every request once a minute's clients outnumbered it
    /// (81 µs a redirect with 65,536 visitors a minute, docs/benchmarks.md).
    sweep_above: usize,
}

pub struct RateLimiter {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (threads * 4).next_power_of_two();
        Self {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        sweep_above: SWEEP_ABOVE,
                    })
                })
                .collect(),
        }
    }
}

impl RateLimiter {
    /// Takes one request from `key`'s bucket at `per_minute` (0: unlimited).
    pub fn check(&self, key: BucketKey, per_minute: u32, now: Instant) -> Decision {
        if per_minute == 0 {
            return Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_s: 0,
                retry_after_s: 0,
            };
        }
        let capacity = f64::from(per_minute);
        let per_second = capacity / 60.0;
        let shard = &self.shards[shard_of(&key) & (self.shards.len() - 1)];
        let mut shard = shard.lock().expect("rate limiter poisoned");
        if shard.buckets.len() > shard.sweep_above {
            shard
                .buckets
                .retain(|_, b| now.saturating_duration_since(b.updated) < IDLE);
            shard.sweep_above = SWEEP_ABOVE.max(2 * shard.buckets.len());
        }
        let bucket = shard.buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        Decision {
            allowed,
            limit: per_minute,
            remaining: bucket.tokens.floor() as u32,
            reset_s: ((capacity - bucket.tokens) / per_second).ceil() as u64,
            retry_after_s: if allowed {
                0
            } else {
                ((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64
            },
        }
    }
}

fn shard_of(key: &BucketKey) -> usize {
    match key {
        BucketKey::Key(id) => id.0 as usize,
        BucketKey::Anonymous(ip) | BucketKey::Redirect(ip) | BucketKey::AnonymousCreate(ip) => {
            match ip {
                IpAddr::V4(v4) => u32::from(*v4) as usize,
                IpAddr::V6(v6) => u128::from(*v6) as usize,
            }
        }
    }
}

/// The address a request comes from: the peer, unless the peer is a trusted proxy,
/// in which case the right-most `X-Forwarded-For` entry that is not itself a trusted
/// proxy. Anything unparsable stops the walk (the last trusted hop is used then).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    let mut client = peer;
    if let Some(header) = forwarded_for {
        for entry in header.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !trusted.iter().any(|net| net.contains(&ip)) {
                break;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn idle_buckets_are_swept_but_not_on_every_request() {
        let limiter = RateLimiter::default();
        let shards = limiter.shards.len();
        let client = |i: usize| BucketKey::Redirect(IpAddr::from((i as u32).to_be_bytes()));
        let held = || -> usize {
            limiter
                .shards
                .iter()
                .map(|s| s.lock().unwrap().buckets.len())
                .sum()
        };
        // Twice the threshold of clients in every shard within a minute: none is dropped,
        // and each shard's threshold moved above what it holds, so the next request to
        // any shard does not scan it again.
        let start = Instant::now();
        let clients = shards * SWEEP_ABOVE * 2;
        for i in 0..clients {
            limiter.check(client(i), 60, start);
        }
        assert_eq!(held(), clients);
        for shard in limiter.shards.iter() {
            let shard = shard.lock().unwrap();
            assert!(shard.sweep_above >= shard.buckets.len());
            assert!(shard.sweep_above > SWEEP_ABOVE);
        }
        // A minute later they are all idle: the sweep that growth triggers drops them.
        let later = start + IDLE + Duration::from_secs(1);
        for i in clients..clients + shards * 4 {
            limiter.check(client(i), 60, later);
        }
        assert!(held() <= shards * 4, "{} buckets left", held());
        // A refused client is remembered in between.
        let busy = client(usize::MAX >> 40);
        assert!(limiter.check(busy, 1, later).allowed);
        assert!(!limiter.check(busy, 1, later).allowed);
    }

    #[test]
    fn buckets_burst_then_refill() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        let key = BucketKey::Key(KeyId(1));
        for n in (0..6).rev() {
            let decision = limiter.check(key, 6, start);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, n);
        }
        let refused = limiter.check(key, 6, start);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_s, 10);
        // Six a minute: one more after ten seconds.
        assert!(
            limiter
                .check(key, 6, start + Duration::from_secs(10))
                .allowed
        );
        assert!(
            !limiter
                .check(key, 6, start + Duration::from_secs(11))
                .allowed
        );
        // Other buckets are untouched.
        assert!(limiter.check(BucketKey::Key(KeyId(2)), 6, start).allowed);
        assert!(
            limiter
                .check(BucketKey::Redirect(ip("10.0.0.1")), 0, start)
                .allowed
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let xff = Some("203.0.113.7, 198.51.100.2, 10.1.2.3");
        // An untrusted peer's header is ignored.
        assert_eq!(client_ip(ip("192.0.2.9"), xff, &trusted), ip("192.0.2.9"));
        // From a trusted proxy: the right-most address that is not a proxy.
        assert_eq!(
            client_ip(ip("127.0.0.1"), xff, &trusted),
            ip("198.51.100.2")
        );
        assert_eq!(client_ip(ip("127.0.0.1"), None, &trusted), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("garbage"), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("10.0.0.5"), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(client_ip(ip("::1"), xff, &trusted), ip("::1"));
    }
}
