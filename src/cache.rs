//! The in-process redirect cache (L1): (domain, code) → what a redirect needs, or
//! "unknown".
//!
//! Keys are the code alone for the default domain, so that the hot path looks up the
//! request path as it is without building a key, and `code@domain` for other domains
//! (`@` cannot occur in a code, so the two never collide).
//!
//! Backed by quick_cache (S3-FIFO: scan-resistant admission like TinyLFU, a small
//! probationary queue before the main one), bounded by an estimate of the bytes each
//! entry holds rather than by an entry count, so a deployment with long URLs does not
//! use more memory than `cache_max_bytes` says. Each entry carries its own deadline,
//! checked on every read: `cache_ttl_s` for links (never past the link's expiry),
//! `negative_cache_ttl_ms` for unknown codes, so that scans of random codes do not reach
//! the database. Creating a link replaces any negative entry for its code, deleting one
//! removes it.
//!
//! Rejected: moka. Its TinyLFU is as good, but under the churn of a cache much smaller
//! than the working set (the cold-redirect benchmark) its concurrent table spent about
//! a tenth of all CPU rehashing; quick_cache's sharded tables do not.

use crate::domain::link::{Link, LinkId, UnixMillis, now_ms};
use crate::store::RedirectRecord;
use http::{HeaderValue, StatusCode};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// The cache key of a code in `domain` (`""`: the default domain, no allocation).
fn key<'a>(domain: &str, code: &'a str) -> Cow<'a, str> {
    if domain.is_empty() {
        Cow::Borrowed(code)
    } else {
        Cow::Owned(format!("{code}@{domain}"))
    }
}

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
    pub disabled: bool,
    /// Set for a password-protected link: GET shows a form, POST checks against it.
    pub password_hash: Option<Arc<str>>,
    /// Visitors get the neutral 410: the target's host is on the blocklist (checked
    /// when the entry is made; a new blocklist empties the cache), or an admin
    /// disabled the link with a reason.
    pub blocked: bool,
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
            disabled: link.disabled,
            password_hash: link.password_hash.as_deref().map(Arc::from),
            blocked: link.disabled_reason.is_some(),
        })
    }

    /// Prepares what the store answered on a redirect miss.
    pub fn from_record(record: &RedirectRecord) -> Option<Self> {
        Some(Self {
            id: record.id,
            location: HeaderValue::from_str(&record.url).ok()?,
            status: record.redirect.status(),
            expires_at: record.expires_at,
            max_clicks: record.max_clicks,
            stored_clicks: record.limited_clicks,
            disabled: record.disabled,
            password_hash: record.password_hash.as_deref().map(Arc::from),
            blocked: record.admin_disabled,
        })
    }
}

/// A cache entry: a link, or the knowledge that no live link has this code.
#[derive(Debug, Clone)]
pub enum Entry {
    Link(Arc<CachedLink>),
    Missing,
}

#[derive(Debug, Clone)]
struct Slot {
    entry: Entry,
    /// When this entry stops being trusted.
    valid_until: UnixMillis,
}

/// Bytes an entry is assumed to cost beyond its key and URL: the cache's own slot and
/// table space, the `Arc`ed link, and the allocator's rounding of the key, the link and
/// the header value. Measured (docs/benchmarks.md): a 64 MiB cache full of 7-character
/// codes with ~45-byte URLs held 107 MiB more anonymous memory than a 1 MB one, about
/// 340 bytes an entry, so 300 plus code and URL keeps `cache_max_bytes` honest.
const ENTRY_OVERHEAD_BYTES: u64 = 300;

#[derive(Clone)]
struct ByBytes;

impl Weighter<Box<str>, Slot> for ByBytes {
    fn weight(&self, code: &Box<str>, slot: &Slot) -> u64 {
        let url = match &slot.entry {
            Entry::Link(link) => link.location.len() as u64,
            Entry::Missing => 0,
        };
        code.len() as u64 + url + ENTRY_OVERHEAD_BYTES
    }
}

/// The redirect cache.
#[derive(Clone)]
pub struct LinkCache {
    slots: Arc<Cache<Box<str>, Slot, ByBytes>>,
    ttl_ms: i64,
    negative_ttl_ms: i64,
}

impl LinkCache {
    pub fn new(max_bytes: u64, ttl: Duration, negative_ttl: Duration) -> Self {
        // The item estimate only sizes the tables up front; the bound is the weight.
        let estimated_items = (max_bytes / (ENTRY_OVERHEAD_BYTES + 64)).max(16) as usize;
        Self {
            slots: Arc::new(Cache::with_weighter(estimated_items, max_bytes, ByBytes)),
            ttl_ms: ttl.as_millis() as i64,
            negative_ttl_ms: negative_ttl.as_millis() as i64,
        }
    }

    /// The entry for `code` in `domain` (`""`: the default domain).
    pub fn get(&self, domain: &str, code: &str) -> Option<Entry> {
        let key = key(domain, code);
        let slot = self.slots.get(key.as_ref())?;
        if slot.valid_until <= now_ms() {
            self.slots.remove(key.as_ref());
            return None;
        }
        Some(slot.entry)
    }

    pub fn insert_link(&self, domain: &str, code: &str, link: Arc<CachedLink>) {
        let now = now_ms();
        // Capped at the expiry so an expired link is reloaded rather than served from
        // a stale entry; one already expired is cached as such for the full TTL.
        let valid_until = match link.expires_at {
            Some(at) if at > now => at.min(now + self.ttl_ms),
            _ => now + self.ttl_ms,
        };
        let entry = Entry::Link(link);
        let key = key(domain, code).into();
        self.slots.insert(key, Slot { entry, valid_until });
    }

    pub fn insert_missing(&self, domain: &str, code: &str) {
        let valid_until = now_ms() + self.negative_ttl_ms;
        let entry = Entry::Missing;
        let key = key(domain, code).into();
        self.slots.insert(key, Slot { entry, valid_until });
    }

    pub fn invalidate(&self, domain: &str, code: &str) {
        self.slots.remove(key(domain, code).as_ref());
    }

    /// Forgets every entry (what a new blocklist does: entries carry the old verdict).
    pub fn clear(&self) {
        self.slots.clear();
    }

    /// Estimated bytes in use and entry count.
    pub fn usage(&self) -> (u64, u64) {
        (self.slots.weight(), self.slots.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::link::RedirectType;

    fn link(code: &str, expires_at: Option<UnixMillis>) -> Link {
        Link {
            id: LinkId(1),
            domain: String::new(),
            code: code.into(),
            url: "https://example.com/".into(),
            title: None,
            created_at: 0,
            expires_at,
            max_clicks: None,
            redirect: RedirectType::Found,
            clicks: 0,
            owner: None,
            disabled: false,
            disabled_reason: None,
            updated_at: 0,
            tags: Vec::new(),
            password_hash: None,
        }
    }

    #[test]
    fn bound_by_bytes() {
        let cache = LinkCache::new(100_000, Duration::from_secs(60), Duration::from_secs(1));
        for i in 0..10_000 {
            let code = format!("c{i:06}");
            let cached = CachedLink::from_link(&link(&code, None)).unwrap();
            cache.insert_link("", &code, Arc::new(cached));
        }
        let (bytes, count) = cache.usage();
        assert!(bytes <= 100_000, "{bytes}");
        // Each entry weighs 7 (code) + 20 (URL) + the overhead.
        assert!(count <= 100_000 / (27 + ENTRY_OVERHEAD_BYTES), "{count}");
        assert!(count > 250, "{count}");
    }

    #[test]
    fn negative_entries_expire_quickly() {
        let cache = LinkCache::new(1 << 20, Duration::from_secs(60), Duration::from_millis(50));
        cache.insert_missing("", "nope");
        assert!(matches!(cache.get("", "nope"), Some(Entry::Missing)));
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("", "nope").is_none());
    }

    #[test]
    fn link_entries_end_at_link_expiry() {
        let cache = LinkCache::new(1 << 20, Duration::from_secs(60), Duration::from_secs(1));
        let cached = CachedLink::from_link(&link("soon", Some(now_ms() + 50))).unwrap();
        cache.insert_link("", "soon", Arc::new(cached));
        assert!(cache.get("", "soon").is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("", "soon").is_none());
    }

    #[test]
    fn domains_have_their_own_entries() {
        let cache = LinkCache::new(1 << 20, Duration::from_secs(60), Duration::from_secs(1));
        let cached = CachedLink::from_link(&link("same", None)).unwrap();
        cache.insert_link("go.example.com", "same", Arc::new(cached));
        cache.insert_missing("", "same");
        assert!(matches!(cache.get("", "same"), Some(Entry::Missing)));
        assert!(matches!(
            cache.get("go.example.com", "same"),
            Some(Entry::Link(_))
        ));
        cache.invalidate("go.example.com", "same");
        assert!(cache.get("go.example.com", "same").is_none());
        assert!(cache.get("", "same").is_some());
    }
}
