//! Click counting off the redirect's critical path.
//!
//! With analytics on, a click on a link without a limit travels with its visit and is
//! added to the link's total in the transaction that stores the visit (see
//! `store::sqlite::analytics`), so totals and stats cannot drift apart. The sums here
//! take the clicks that have no visit to carry them: analytics off, a full visit
//! queue, or visits the pipeline had to give up.
//!
//! Such a click adds one to an in-memory sum for its link and moves on; it never
//! waits on the database and never wakes another task. The sums live in a few
//! mutex-guarded shards (picked by link id) so that worker threads rarely meet on
//! the same lock. The [`run_click_writer`] task swaps the shards out every
//! `click_flush_interval_ms` and writes them in one transaction (each link's total, in
//! link order). A failed write keeps the sums for the next attempt. On shutdown
//! the writer takes what is left and flushes it, so a graceful stop loses no click.
//!
//! Why sums and not a queue of events: a queue costs a wake-up of the writer for
//! almost every redirect on a busy single core (measured: the writer task ran between
//! nearly every pair of requests), and a bounded queue must drop clicks when full.
//! Sums cost a short lock and a hash-map increment, are exact, and their memory is
//! bounded by the number of distinct links clicked within one flush interval.
//!
//! Click limits (`maxClicks`) are not counted here: a click on a link with a limit
//! is reserved in the store before the redirect is answered
//! ([`crate::store::ClickStore::reserve_click`], through the group-commit writer like a
//! create), so the count is exact across crashes and across processes. This module only
//! remembers which limited links were found used up, so that their next clicks (and
//! `HEAD`s, which reserve nothing) answer 410 without a write.

use crate::cache::CachedLink;
use crate::domain::link::LinkId;
use crate::store::{ClickDelta, ClickStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Clicks per link not yet written.
type Sums = HashMap<LinkId, u64>;

/// Counted clicks waiting to be written, and the limited links known to be used up.
pub struct Clicks {
    shards: Box<[Mutex<Sums>]>,
    /// Limited links whose reservation was refused, with the limit it was refused at:
    /// a link whose limit is raised later (a new cache entry with a higher
    /// `max_clicks`) is tried again.
    used_up: Mutex<HashMap<LinkId, u64>>,
}

impl Clicks {
    pub fn new() -> Arc<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (threads * 4).next_power_of_two();
        Arc::new(Self {
            shards: (0..shards).map(|_| Mutex::new(Sums::new())).collect(),
            used_up: Mutex::new(HashMap::new()),
        })
    }

    /// Counts `clicks` clicks on `link`; never waits on I/O.
    pub fn add(&self, link: LinkId, clicks: u64) {
        let shard = &self.shards[link.0 as usize & (self.shards.len() - 1)];
        let mut sums = shard.lock().expect("click shard poisoned");
        *sums.entry(link).or_default() += clicks;
    }

    /// Takes every sum recorded so far, leaving the shards empty.
    fn take(&self, into: &mut Sums) {
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().expect("click shard poisoned"));
            for (key, clicks) in taken {
                *into.entry(key).or_default() += clicks;
            }
        }
    }

    /// Whether a link's click limit is known to be used up: the stored count was
    /// already at the limit when the link was loaded, or a reservation was refused at
    /// this limit or a higher one. `false` means "ask the store".
    pub fn limit_reached(&self, link: &CachedLink) -> bool {
        let Some(max) = link.max_clicks else {
            return false;
        };
        link.stored_clicks >= max
            || self
                .used_up
                .lock()
                .expect("click limits poisoned")
                .get(&link.id)
                .is_some_and(|&refused_at| refused_at >= max)
    }

    /// Remembers that the store refused a click on `link` at limit `max`.
    pub fn mark_used_up(&self, link: LinkId, max: u64) {
        let mut used_up = self.used_up.lock().expect("click limits poisoned");
        let refused_at = used_up.entry(link).or_insert(max);
        *refused_at = (*refused_at).max(max);
    }

    /// Forgets what is known of a deleted link's limit.
    pub fn forget(&self, link: LinkId) {
        self.used_up
            .lock()
            .expect("click limits poisoned")
            .remove(&link);
    }
}

/// Writes counted clicks every `flush_interval` until `stop` turns true, then writes
/// what is left and returns.
pub async fn run_click_writer(
    clicks: Arc<Clicks>,
    store: Arc<dyn ClickStore>,
    flush_interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending = Sums::new();
    let mut tick = tokio::time::interval(flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                clicks.take(&mut pending);
                flush(&mut pending, store.as_ref()).await;
            }
            () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
        }
    }
    // Last flush: retried a few times, since what is not written now is lost.
    clicks.take(&mut pending);
    for attempt in 1..=5 {
        flush(&mut pending, store.as_ref()).await;
        if pending.is_empty() {
            break;
        }
        tracing::warn!(
            attempt,
            pending = pending.len(),
            "retrying final click flush"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn flush(pending: &mut Sums, store: &dyn ClickStore) {
    if pending.is_empty() {
        return;
    }
    let deltas: Vec<ClickDelta> = pending
        .iter()
        .map(|(&link, &clicks)| ClickDelta { link, clicks })
        .collect();
    match store.add_clicks(deltas).await {
        Ok(()) => pending.clear(),
        // Kept for the next tick: counts are never lost to a transient failure.
        Err(e) => {
            tracing::error!(error = %e, links = pending.len(), "click flush failed; will retry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_limit_is_remembered_until_the_limit_is_raised() {
        let clicks = Clicks::new();
        let link = |max_clicks, stored_clicks| CachedLink {
            id: LinkId(9),
            location: http::HeaderValue::from_static("https://example.com"),
            status: http::StatusCode::FOUND,
            expires_at: None,
            max_clicks,
            stored_clicks,
            disabled: false,
            password_hash: None,
            blocked: false,
        };
        assert!(!clicks.limit_reached(&link(None, 100)));
        assert!(clicks.limit_reached(&link(Some(40), 40)));
        assert!(!clicks.limit_reached(&link(Some(100), 40)));
        clicks.mark_used_up(LinkId(9), 100);
        assert!(clicks.limit_reached(&link(Some(100), 40)));
        assert!(clicks.limit_reached(&link(Some(50), 40)));
        // A raised limit asks the store again.
        assert!(!clicks.limit_reached(&link(Some(101), 40)));
        clicks.forget(LinkId(9));
        assert!(!clicks.limit_reached(&link(Some(100), 40)));
    }

    #[test]
    fn sums_are_exact_across_threads() {
        let clicks = Clicks::new();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let clicks = &clicks;
                scope.spawn(move || {
                    for i in 0..1000 {
                        clicks.add(LinkId(i % 7 + t), 1);
                    }
                });
            }
        });
        let mut sums = Sums::new();
        clicks.take(&mut sums);
        assert_eq!(sums.values().sum::<u64>(), 4000);
        // Links 0..=9: thread t counts 143 or 142 clicks on each of links t..t+7.
        assert_eq!(sums[&LinkId(0)], 143);
        assert_eq!(sums[&LinkId(3)], 4 * 143);
        assert_eq!(sums[&LinkId(9)], 142);
        let mut again = Sums::new();
        clicks.take(&mut again);
        assert!(again.is_empty());
    }
}
