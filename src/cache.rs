//! The in-process redirect cache (L1): code → what a redirect needs, or "unknown".
//!
//! Backed by moka (TinyLFU admission, LRU eviction), bounded by an estimate of the
//! bytes each entry holds rather than by an entry count, so a deployment with long URLs
//! does not use more memory than `cache_max_bytes` says. Each entry lives for
//! `cache_ttl_s`, never past its link's expiry; unknown codes are remembered for
//! `negative_cache_ttl_ms` so that scans of random codes do not reach the database.
//! Creating a link replaces any negative entry for its code, deleting one removes it.

use crate::domain::link::{Link, LinkId, UnixMillis, now_ms};
use http::{HeaderValue, StatusCode};
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a redirect needs to know about a link, prepared once when it is cached.
#[derive(Debug)]
pub struct CachedLink {
    pub id: LinkId,
    /// The `Location` header, validated once here instead of on every redirect.
    pub location: HeaderValue,
    pub status: StatusCode,
    pub expires_at: Option<UnixMillis>,
    pub max_clicks: Option<u64>,
    /// Clicks stored when the link was loaded (the base for click limits).
    pub stored_clicks: u64,
}

impl CachedLink {
    /// Prepares a link for the cache; `None` if its URL cannot be a header value
    /// (validation prevents that, but stored data is not trusted blindly).
    pub fn from_link(link: &Link) -> Option<Self> {
        Some(Self {
            id: link.id,
            location: HeaderValue::from_str(&link.url).ok()?,
            status: link.redirect.status(),
            expires_at: link.expires_at,
            max_clicks: link.max_clicks,
            stored_clicks: link.clicks,
        })
    }
}

/// A cache entry: a link, or the knowledge that no live link has this code.
#[derive(Debug, Clone)]
pub enum Entry {
    Link(Arc<CachedLink>),
    Missing,
}

/// Bytes an entry is assumed to cost beyond its key and URL: moka's own node, the
/// `Arc`, the header value and the map slot. Measured against RSS in
/// docs/benchmarks.md; the estimate errs high so the bound holds.
const ENTRY_OVERHEAD_BYTES: u32 = 240;

struct EntryExpiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl moka::Expiry<Box<str>, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        entry: &Entry,
        _now: Instant,
    ) -> Option<Duration> {
        Some(match entry {
            Entry::Missing => self.negative_ttl,
            Entry::Link(link) => match link.expires_at {
                // Capped at the expiry so an expired link is reloaded, not served from
                // a stale entry; one already expired is cached as such for the full TTL.
                Some(at) => {
                    let left = at - now_ms();
                    if left > 0 {
                        self.ttl.min(Duration::from_millis(left as u64))
                    } else {
                        self.ttl
                    }
                }
                None => self.ttl,
            },
        })
    }
}

/// Estimated bytes an entry holds.
#[expect(
    clippy::borrowed_box,
    reason = "moka hands the weigher a reference to the key type"
)]
fn weigh(code: &Box<str>, entry: &Entry) -> u32 {
    let url = match entry {
        Entry::Link(link) => link.location.len() as u32,
        Entry::Missing => 0,
    };
    code.len() as u32 + url + ENTRY_OVERHEAD_BYTES
}

/// The redirect cache.
#[derive(Clone)]
pub struct LinkCache {
    entries: Cache<Box<str>, Entry>,
}

impl LinkCache {
    pub fn new(max_bytes: u64, ttl: Duration, negative_ttl: Duration) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(weigh)
            .expire_after(EntryExpiry { ttl, negative_ttl })
            .build();
        Self { entries }
    }

    pub fn get(&self, code: &str) -> Option<Entry> {
        self.entries.get(code)
    }

    pub fn insert_link(&self, code: &str, link: Arc<CachedLink>) {
        self.entries.insert(code.into(), Entry::Link(link));
    }

    pub fn insert_missing(&self, code: &str) {
        self.entries.insert(code.into(), Entry::Missing);
    }

    pub fn invalidate(&self, code: &str) {
        self.entries.invalidate(code);
    }

    /// Estimated bytes in use and entry count (approximate until moka's housekeeping runs).
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.weighted_size(), self.entries.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::link::RedirectType;

    fn link(code: &str, expires_at: Option<UnixMillis>) -> Link {
        Link {
            id: LinkId(1),
            code: code.into(),
            url: "https://example.com/".into(),
            title: None,
            created_at: 0,
            expires_at,
            max_clicks: None,
            redirect: RedirectType::Found,
            clicks: 0,
            owner: None,
        }
    }

    #[test]
    fn bound_by_bytes() {
        let cache = LinkCache::new(100_000, Duration::from_secs(60), Duration::from_secs(1));
        for i in 0..10_000 {
            let code = format!("c{i:06}");
            let cached = CachedLink::from_link(&link(&code, None)).unwrap();
            cache.insert_link(&code, Arc::new(cached));
        }
        let (bytes, count) = cache.usage();
        assert!(bytes <= 100_000, "{bytes}");
        assert!(count < 400, "{count}");
    }

    #[test]
    fn negative_entries_expire_quickly() {
        let cache = LinkCache::new(1 << 20, Duration::from_secs(60), Duration::from_millis(50));
        cache.insert_missing("nope");
        assert!(matches!(cache.get("nope"), Some(Entry::Missing)));
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("nope").is_none());
    }

    #[test]
    fn link_entries_end_at_link_expiry() {
        let cache = LinkCache::new(1 << 20, Duration::from_secs(60), Duration::from_secs(1));
        let cached = CachedLink::from_link(&link("soon", Some(now_ms() + 50))).unwrap();
        cache.insert_link("soon", Arc::new(cached));
        assert!(cache.get("soon").is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("soon").is_none());
    }
}
