//! Click counting off the redirect's critical path.
//!
//! A redirect adds one to an in-memory sum for (link, UTC hour) and moves on; it never
//! waits on the database and never wakes another task. The sums live in a few
//! mutex-guarded shards (picked by link id) so that worker threads rarely meet on
//! the same lock. The [`run_click_writer`] task swaps the shards out every
//! `click_flush_interval_ms` and writes them in one transaction (each link's total and
//! its hourly row). A failed write keeps the sums for the next attempt. On shutdown
//! the writer takes what is left and flushes it, so a graceful stop loses no click.
//!
//! Why sums and not a queue of events: a queue costs a wake-up of the writer for
//! almost every redirect on a busy single core (measured: the writer task ran between
//! nearly every pair of requests), and a bounded queue must drop clicks when full.
//! Sums cost a short lock and a hash-map increment, are exact, and their memory is
//! bounded by the number of distinct links clicked within one flush interval.
//!
//! Click limits (`maxClicks`) need an exact count at redirect time, before the sums
//! reach the database. For links that have a limit, this process keeps one atomic
//! counter per link, started from the stored count the first time the link is
//! clicked; every click in this process goes through it, so it is exact for a single
//! node. Only limited links get a counter, so the map stays small.

use crate::cache::CachedLink;
use crate::domain::link::{LinkId, UnixMillis};
use crate::store::{ClickDelta, ClickStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Clicks per (link, start of UTC hour in Unix seconds) not yet written.
type Sums = HashMap<(LinkId, i64), u64>;

/// Counted clicks waiting to be written, and the click-limit counters.
pub struct Clicks {
    shards: Box<[Mutex<Sums>]>,
    limits: Mutex<HashMap<LinkId, Arc<AtomicU64>>>,
}

impl Clicks {
    pub fn new() -> Arc<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (threads * 4).next_power_of_two();
        Arc::new(Self {
            shards: (0..shards).map(|_| Mutex::new(Sums::new())).collect(),
            limits: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a click made at `at`; never waits on I/O.
    pub fn record_at(&self, link: LinkId, at: UnixMillis) {
        let shard = &self.shards[link.0 as usize & (self.shards.len() - 1)];
        let mut sums = shard.lock().expect("click shard poisoned");
        *sums.entry((link, hour_start(at))).or_default() += 1;
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

    fn limit_counter(&self, link: &CachedLink) -> Arc<AtomicU64> {
        let mut limits = self.limits.lock().expect("click limits poisoned");
        limits
            .entry(link.id)
            .or_insert_with(|| Arc::new(AtomicU64::new(link.stored_clicks)))
            .clone()
    }

    /// For a link with a click limit, takes one click from what is left and says
    /// whether there was one; links without a limit always have one.
    pub fn try_take(&self, link: &CachedLink) -> bool {
        let Some(max) = link.max_clicks else {
            return true;
        };
        self.limit_counter(link)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Whether a link's click limit is used up (without taking a click).
    pub fn limit_reached(&self, link: &CachedLink) -> bool {
        match link.max_clicks {
            None => false,
            Some(max) => self.limit_counter(link).load(Ordering::Acquire) >= max,
        }
    }

    /// Forgets a deleted link's limit counter.
    pub fn forget(&self, link: LinkId) {
        self.limits
            .lock()
            .expect("click limits poisoned")
            .remove(&link);
    }
}

fn hour_start(at: UnixMillis) -> i64 {
    at.div_euclid(3_600_000) * 3600
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
        .map(|(&(link, hour_start), &clicks)| ClickDelta {
            link,
            hour_start,
            clicks,
        })
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
    fn hours_start_on_the_hour() {
        assert_eq!(hour_start(0), 0);
        assert_eq!(hour_start(3_599_999), 0);
        assert_eq!(hour_start(3_600_000), 3600);
        assert_eq!(hour_start(-1), -3600);
    }

    #[test]
    fn limits_are_exact_under_contention() {
        let clicks = Clicks::new();
        let link = CachedLink {
            id: LinkId(9),
            location: http::HeaderValue::from_static("https://example.com"),
            status: http::StatusCode::FOUND,
            expires_at: None,
            max_clicks: Some(100),
            stored_clicks: 40,
            disabled: false,
            password_hash: None,
            blocked: false,
        };
        let taken: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..50).filter(|_| clicks.try_take(&link)).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(taken, 60);
        assert!(clicks.limit_reached(&link));
    }

    #[test]
    fn sums_are_exact_across_threads_and_hours() {
        let clicks = Clicks::new();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let clicks = &clicks;
                scope.spawn(move || {
                    for i in 0..1000 {
                        clicks.record_at(LinkId(i % 7), if t % 2 == 0 { 10 } else { 3_600_010 });
                    }
                });
            }
        });
        let mut sums = Sums::new();
        clicks.take(&mut sums);
        assert_eq!(sums.values().sum::<u64>(), 4000);
        assert_eq!(sums[&(LinkId(0), 0)], 2 * 143);
        assert_eq!(sums[&(LinkId(0), 3600)], 2 * 143);
        let mut again = Sums::new();
        clicks.take(&mut again);
        assert!(again.is_empty());
    }
}
