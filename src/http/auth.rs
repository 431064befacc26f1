//! API-key lookup with a short-lived in-memory cache, shared by the rate-limit
//! middleware and the [`super::extract::Caller`] extractor.
//!
//! Without it every API request paid for a database read of its key, as much as the
//! request's own work. A cached key is trusted for [`KEY_CACHE_TTL`] (one second):
//! a key revoked (or a user removed) from another process, such as `hop keys revoke`,
//! stops working on a running server within that time, while a busy key costs one
//! read a second. Expiry is checked on every request. Unknown keys are never cached,
//! so guessing cannot fill the cache.

use crate::domain::key;
use crate::domain::link::now_ms;
use crate::store::{ApiKey, StoreError, Stores};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a looked-up key is trusted before it is read again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Keys held at most (each a few hundred bytes).
const KEY_CACHE_ENTRIES: usize = 10_000;

/// Recently used keys by their SHA-256 hash (the secrets themselves are never held).
pub struct KeyCache {
    entries: quick_cache::sync::Cache<[u8; 32], (Arc<ApiKey>, Instant)>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(KEY_CACHE_ENTRIES),
        }
    }
}

/// What a presented secret turned out to be.
pub enum Lookup {
    Usable(Arc<ApiKey>),
    Revoked,
    Expired,
    Unknown,
}

impl KeyCache {
    /// Forgets every key (one was revoked or its user removed on another node).
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Looks up `secret`, from the cache when it was read less than the TTL ago.
    pub async fn lookup(&self, stores: &Stores, secret: &str) -> Result<Lookup, StoreError> {
        if !key::looks_like_key(secret) {
            return Ok(Lookup::Unknown);
        }
        let id = key::hash(secret);
        let now = Instant::now();
        let found = match self.entries.get(&id) {
            Some((found, read_at)) if now.duration_since(read_at) < KEY_CACHE_TTL => found,
            _ => match stores.keys.key_by_hash(&id).await? {
                Some(found) => {
                    let found = Arc::new(found);
                    self.entries.insert(id, (found.clone(), now));
                    found
                }
                None => {
                    self.entries.remove(&id);
                    return Ok(Lookup::Unknown);
                }
            },
        };
        Ok(if found.is_usable(now_ms()) {
            Lookup::Usable(found)
        } else if found.revoked {
            Lookup::Revoked
        } else {
            Lookup::Expired
        })
    }
}
