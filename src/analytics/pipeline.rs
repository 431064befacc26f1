//! The click-analytics pipeline: bounded queue → batches → enrichment → writes.
//!
//! The redirect calls [`Analytics::capture`]: it copies three headers and the client
//! address into a [`RawVisit`] and appends it to one of a few mutex-guarded buffers. It
//! never waits and never wakes anything; when the queue is full (`capacity` visits
//! waiting) the visit is dropped and counted instead of blocking a redirect.
//!
//! [`run_pipeline`] drains the buffers on a timer (`analytics_flush_interval_ms`, a
//! quarter of a second by default), enriches the batch on a blocking thread (user
//! agent, language, referrer, GeoIP, address truncation), publishes each visit to the
//! live feeds, and stores the batch and its rollups in one transaction. A batch that
//! fails to store is kept and retried with the next one, so a database hiccup loses
//! nothing; on shutdown the last batch is written before the process exits.

use super::enrich::{Enricher, RawVisit, Visit};
use crate::domain::link::{LinkId, format_ms};
use crate::store::{AnalyticsStore, StoredVisit};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Visits kept for retry at most when the database keeps failing; past that the
/// oldest are dropped (and counted), so memory stays bounded.
const MAX_PENDING: usize = 1_000_000;
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
    shards: Box<[Mutex<Vec<RawVisit>>]>,
    queued: AtomicUsize,
    capacity: usize,
    dropped: AtomicU64,
    stored: AtomicU64,
    live: broadcast::Sender<Arc<LiveVisit>>,
}

impl Analytics {
    /// A queue that holds at most `capacity` visits between drains.
    pub fn new(capacity: usize) -> Arc<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (threads * 4).next_power_of_two();
        Arc::new(Self {
            shards: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
            queued: AtomicUsize::new(0),
            capacity,
            dropped: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            live: broadcast::channel(LIVE_BUFFER).0,
        })
    }

    /// Queues a visit; never waits. Over capacity the visit is dropped and counted.
    pub fn capture(&self, visit: RawVisit) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let shard = &self.shards[visit.link_id as usize & (self.shards.len() - 1)];
        shard.lock().expect("visit shard poisoned").push(visit);
    }

    /// Takes every queued visit.
    fn take(&self) -> Vec<RawVisit> {
        let mut batch = Vec::new();
        for shard in self.shards.iter() {
            let mut taken = std::mem::take(&mut *shard.lock().expect("visit shard poisoned"));
            batch.append(&mut taken);
        }
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        batch
    }

    /// A receiver of every visit from now on, within a flush interval of its redirect.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveVisit>> {
        self.live.subscribe()
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            queued: self.queued.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, visits: &[Visit]) {
        if self.live.receiver_count() == 0 {
            return;
        }
        for visit in visits {
            let _ = self.live.send(Arc::new(LiveVisit {
                link: LinkId(visit.link_id),
                visit: stored_form(visit, None),
            }));
        }
    }
}

/// A visit as listed and streamed.
pub fn stored_form(visit: &Visit, id: Option<i64>) -> StoredVisit {
    StoredVisit {
        id,
        at: format_ms(visit.at_ms),
        bot: visit.bot,
        qr: visit.qr,
        browser: visit.browser.to_owned(),
        os: visit.os.to_owned(),
        device: visit.device.to_owned(),
        language: visit.language.clone(),
        referrer_host: visit.referrer_host.clone(),
        referrer_url: visit.referrer_url.clone(),
        country: visit.country.clone(),
        region: visit.region.clone(),
        city: visit.city.clone(),
        ip: visit.ip.map(|ip| ip.to_string()),
    }
}

/// How the pipeline runs.
pub struct PipelineConfig {
    pub interval: Duration,
    /// Whether raw visits are stored (a raw retention of 0 days keeps rollups only).
    pub keep_raw: bool,
}

/// Drains, enriches and stores visits every `interval` until `stop` turns true, then
/// stores what is left and returns.
pub async fn run_pipeline(
    analytics: Arc<Analytics>,
    enricher: Arc<Enricher>,
    store: Arc<dyn AnalyticsStore>,
    config: PipelineConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<Visit> = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        let raw = analytics.take();
        if !raw.is_empty() {
            let enricher = enricher.clone();
            match tokio::task::spawn_blocking(move || enricher.enrich_batch(&raw)).await {
                Ok(visits) => {
                    analytics.publish(&visits);
                    pending.extend(visits);
                }
                Err(error) => tracing::error!(%error, "enriching visits failed"),
            }
        }
        if !pending.is_empty() {
            let batch = Arc::new(std::mem::take(&mut pending));
            let count = batch.len();
            match store.record_visits(batch.clone(), config.keep_raw).await {
                Ok(()) => {
                    analytics.stored.fetch_add(count as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(%error, visits = count, "storing visits failed; will retry");
                    pending = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                    if pending.len() > MAX_PENDING {
                        let excess = pending.len() - MAX_PENDING;
                        pending.drain(..excess);
                        analytics
                            .dropped
                            .fetch_add(excess as u64, Ordering::Relaxed);
                    }
                }
            }
        }
        if stopping {
            if !pending.is_empty() {
                tracing::error!(visits = pending.len(), "visits not stored at shutdown");
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

    fn raw(link_id: i64) -> RawVisit {
        RawVisit {
            at_ms: 0,
            link_id,
            user_agent: None,
            referer: None,
            accept_language: None,
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            qr: false,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let analytics = Analytics::new(3);
        for link in 0..5 {
            analytics.capture(raw(link));
        }
        assert_eq!(analytics.stats().queued, 3);
        assert_eq!(analytics.stats().dropped, 2);
        assert_eq!(analytics.take().len(), 3);
        assert_eq!(analytics.stats().queued, 0);
        // Room again once drained.
        analytics.capture(raw(9));
        assert_eq!(analytics.stats().queued, 1);
        assert_eq!(analytics.stats().dropped, 2);
    }
}
