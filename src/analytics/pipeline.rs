//! The click-analytics pipeline: bounded queue → batches → enrichment → writes.
//!
//! The redirect calls [`Analytics::capture`] with the time and a borrowed
//! [`RawProfileRef`] (three headers, the client address, the link). Each worker thread
//! appends to its own mutex-guarded [`RawBatch`], which keeps each header value and
//! visitor once: a visit costs a few lookups and a pushed (time, visitor) pair, and only
//! a header value the batch has not seen is copied. It never waits and never wakes
//! anything; when the queue is full (`capacity` visits waiting)
//! the visit is dropped and counted instead of blocking a redirect.
//!
//! [`run_pipeline`] drains the buffers on a timer (`analytics_flush_interval_ms`, a
//! quarter of a second by default), enriches each distinct header value, address and
//! visitor once on a blocking thread (user agent, language, referrer, GeoIP, address truncation), publishes each
//! visit to the live feeds, and stores the batch (raw visits in blocks, see
//! [`super::block`]) and its rollups in one transaction. A batch that fails to store is
//! kept and retried with the next one, so a database hiccup loses nothing; on shutdown
//! the last batch is written before the process exits.
//!
//! The visits also carry the click totals of links without a limit (the store adds
//! them in the same transaction). So a visit that must be given up (the database failed
//! for too long, or at shutdown) hands its click to [`Clicks`], whose own writer still
//! counts it: the total stays exact even when the visit is lost.

use super::block;
use super::enrich::{Enricher, Profile, RawBatch, RawProfileRef, VisitGroup};
use crate::clicks::Clicks;
use crate::domain::link::LinkId;
use crate::store::{AnalyticsStore, StoredVisit};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Visits kept for retry at most when the database keeps failing; past that the
/// oldest are dropped (and counted), so memory stays bounded.
const MAX_PENDING: usize = 1_000_000;
/// Queue room a capture buffer takes at a time (see [`Analytics`]).
const RESERVE: usize = 64;
/// Live-feed messages a slow subscriber may fall behind by before it skips some.
const LIVE_BUFFER: usize = 4096;

/// A visit for the live feeds: the link it belongs to and what subscribers see.
#[derive(Debug, Clone)]
pub struct LiveVisit {
    pub link: LinkId,
    pub visit: StoredVisit,
}

/// Counters for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineStats {
    /// Visits waiting in the queue now.
    pub queued: usize,
    /// Visits stored since start.
    pub stored: u64,
    /// Visits dropped since start (queue full, or the database failing for long).
    pub dropped: u64,
}

/// The capture side, shared by every redirect.
pub struct Analytics {
    shards: Box<[Mutex<RawBatch>]>,
    /// Room taken in the queue, in whole [`RESERVE`]s: a buffer takes a reserve when
    /// it starts on one, so the counter shared by every thread moves once per
    /// `RESERVE` visits, not once per visit.
    reserved: AtomicUsize,
    capacity: usize,
    dropped: AtomicU64,
    stored: AtomicU64,
    live: broadcast::Sender<Arc<LiveVisit>>,
}

thread_local! {
    /// The buffer this thread appends to, so that threads do not contend for one.
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

impl Analytics {
    /// A queue that holds `capacity` visits between drains (a buffer that has begun a
    /// [`RESERVE`] may finish it, so at most `RESERVE - 1` more per buffer).
    pub fn new(capacity: usize) -> Arc<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (threads * 2).next_power_of_two();
        Arc::new(Self {
            shards: (0..shards)
                .map(|_| Mutex::new(RawBatch::default()))
                .collect(),
            reserved: AtomicUsize::new(0),
            capacity,
            dropped: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            live: broadcast::channel(LIVE_BUFFER).0,
        })
    }

    /// Queues a visit served at `at_ms`; never waits. Over capacity the visit is
    /// dropped and counted, and `false` returned.
    pub fn capture(&self, at_ms: i64, visitor: RawProfileRef<'_>) -> bool {
        let shard = SHARD.with(|slot| {
            slot.get().unwrap_or_else(|| {
                let shard = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
                slot.set(Some(shard));
                shard
            })
        });
        let mut batch = self.shards[shard & (self.shards.len() - 1)]
            .lock()
            .expect("visit shard poisoned");
        if batch.len().is_multiple_of(RESERVE)
            && self.reserved.fetch_add(RESERVE, Ordering::Relaxed) + RESERVE > self.capacity
        {
            self.reserved.fetch_sub(RESERVE, Ordering::Relaxed);
            drop(batch);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        batch.push(at_ms, visitor);
        true
    }

    /// Takes every queued visit.
    fn take(&self) -> Vec<RawBatch> {
        let mut batches = Vec::new();
        for shard in self.shards.iter() {
            let mut batch = shard.lock().expect("visit shard poisoned");
            if !batch.is_empty() {
                // The next drain's buffer starts as big as this one ended: no regrowing
                // on the redirect path.
                let next = RawBatch::with_capacity_of(&batch);
                let taken = std::mem::replace(&mut *batch, next);
                drop(batch);
                self.reserved
                    .fetch_sub(taken.len().div_ceil(RESERVE) * RESERVE, Ordering::Relaxed);
                batches.push(taken);
            }
        }
        batches
    }

    /// A receiver of every visit from now on, within a flush interval of its redirect.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveVisit>> {
        self.live.subscribe()
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            queued: self
                .shards
                .iter()
                .map(|shard| shard.lock().expect("visit shard poisoned").len())
                .sum(),
            stored: self.stored.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, groups: &[VisitGroup]) {
        if self.live.receiver_count() == 0 {
            return;
        }
        let mut visits: Vec<(i64, &Profile)> = groups
            .iter()
            .flat_map(|group| group.times.iter().map(|&at| (at, &group.profile)))
            .collect();
        visits.sort_by_key(|&(at, _)| at);
        for (at, profile) in visits {
            let _ = self.live.send(Arc::new(LiveVisit {
                link: LinkId(profile.link_id),
                visit: live_form(profile, at),
            }));
        }
    }
}

/// A visit as the live feed sends it (no id: it is not stored yet).
pub fn live_form(profile: &Profile, at_ms: i64) -> StoredVisit {
    let ip = profile.ip.map(|ip| ip.to_string());
    block::block_profile(profile, ip.as_deref()).visit(None, at_ms)
}

fn visit_count(groups: &[VisitGroup]) -> usize {
    groups.iter().map(|group| group.times.len()).sum()
}

/// Gives up on `groups`' visits but not on their clicks: those not yet in a total go to
/// the click sums.
fn give_up(groups: &[VisitGroup], clicks: &Clicks) {
    for group in groups.iter().filter(|group| !group.profile.counted) {
        clicks.add(LinkId(group.profile.link_id), group.times.len() as u64);
    }
}

/// How the pipeline runs.
pub struct PipelineConfig {
    pub interval: Duration,
    /// Whether raw visits are stored (a raw retention of 0 days keeps rollups only).
    pub keep_raw: bool,
    /// In a cluster with a click stream: where drained batches go instead (enriched
    /// and stored by `hop worker`).
    pub publisher: Option<crate::stream::publisher::Publisher>,
}

/// Drains, enriches and stores visits every `interval` until `stop` turns true, then
/// stores what is left and returns. Clicks of visits given up go to `clicks`.
pub async fn run_pipeline(
    analytics: Arc<Analytics>,
    enricher: Arc<Enricher>,
    store: Arc<dyn AnalyticsStore>,
    clicks: Arc<Clicks>,
    mut config: PipelineConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(mut publisher) = config.publisher.take() {
        // The stream's shape: drain and publish (or spool); stopping publishes (or
        // spools) the last drain, so a graceful stop loses nothing.
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop.changed() => true,
            };
            publisher.send(analytics.take()).await;
            if stopping {
                return;
            }
        }
    }
    let mut pending: Vec<VisitGroup> = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        let raw = analytics.take();
        if !raw.is_empty() {
            let enricher = enricher.clone();
            match tokio::task::spawn_blocking(move || enricher.enrich_batch(raw)).await {
                Ok(groups) => {
                    analytics.publish(&groups);
                    pending.extend(groups);
                }
                Err(error) => tracing::error!(%error, "enriching visits failed"),
            }
        }
        if !pending.is_empty() {
            let batch = Arc::new(std::mem::take(&mut pending));
            let count = visit_count(&batch);
            match store.record_visits(batch.clone(), config.keep_raw).await {
                Ok(()) => {
                    analytics.stored.fetch_add(count as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(%error, visits = count, "storing visits failed; will retry");
                    pending = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                    // Over the bound, the oldest groups go (the batch is in drain order).
                    let mut excess = count.saturating_sub(MAX_PENDING);
                    let mut gone = 0;
                    while excess > 0 && gone < pending.len() {
                        let visits = pending[gone].times.len();
                        excess = excess.saturating_sub(visits);
                        analytics
                            .dropped
                            .fetch_add(visits as u64, Ordering::Relaxed);
                        gone += 1;
                    }
                    give_up(&pending[..gone], &clicks);
                    pending.drain(..gone);
                }
            }
        }
        if stopping {
            if !pending.is_empty() {
                tracing::error!(
                    visits = visit_count(&pending),
                    "visits not stored at shutdown; their clicks are counted"
                );
                give_up(&pending, &clicks);
            }
            return;
        }
    }
}

/// Deletes raw visits past their retention and folds old hourly rows into daily ones,
/// once at start and then every hour.
pub async fn run_retention(store: Arc<dyn AnalyticsStore>, raw_days: u32, hourly_days: u32) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        ticker.tick().await;
        let now_s = crate::domain::link::now_ms() / 1000;
        let raw_before = (now_s - i64::from(raw_days) * 86_400) * 1000;
        // Whole days only: the cut is the UTC midnight at or before the window's start.
        let hourly_before = (now_s - i64::from(hourly_days) * 86_400).div_euclid(86_400) * 86_400;
        match store.prune(raw_before, hourly_before).await {
            Ok((deleted, folded)) if deleted + folded > 0 => {
                tracing::info!(deleted, folded, "analytics retention applied");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "analytics retention failed; retrying in an hour"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(link_id: i64) -> RawProfileRef<'static> {
        RawProfileRef {
            link_id,
            user_agent: Some("curl/8.5.0"),
            referer: None,
            accept_language: None,
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            qr: false,
            counted: false,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let analytics = Analytics::new(2 * RESERVE);
        for link in 0..3 * RESERVE as i64 {
            analytics.capture(link, raw(link));
        }
        assert_eq!(analytics.stats().queued, 2 * RESERVE);
        assert_eq!(analytics.stats().dropped, RESERVE as u64);
        let taken = analytics.take();
        assert_eq!(taken.iter().map(RawBatch::len).sum::<usize>(), 2 * RESERVE);
        assert_eq!(analytics.stats().queued, 0);
        // Room again once drained.
        for link in 0..3 {
            analytics.capture(link, raw(link));
        }
        assert_eq!(analytics.stats().queued, 3);
        assert_eq!(analytics.stats().dropped, RESERVE as u64);
    }

    #[test]
    fn repeat_visitors_are_queued_once() {
        let analytics = Analytics::new(100);
        for at in 0..5 {
            analytics.capture(at, raw(1));
        }
        analytics.capture(9, RawProfileRef { qr: true, ..raw(1) });
        analytics.capture(7, raw(2));
        assert_eq!(analytics.stats().queued, 7);
        // One thread, one buffer: seven visits of three visitors.
        let batches = analytics.take();
        assert_eq!(batches.len(), 1);
        assert_eq!((batches[0].len(), batches[0].visitors()), (7, 3));
        assert_eq!(analytics.stats().queued, 0);
    }
}
