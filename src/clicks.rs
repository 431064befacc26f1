//! Click counting off the redirect's critical path.
//!
//! A redirect hands a [`ClickEvent`] to a bounded queue with `try_send` and moves on;
//! it never waits on the database. The [`run_click_writer`] task drains the queue,
//! sums events per link and UTC hour, and every `click_flush_interval_ms` writes the
//! sums in one transaction (the link's total and its hourly row). A failed write keeps
//! the sums for the next attempt. On shutdown the queue is closed, drained and flushed,
//! so a graceful stop loses no click. If the queue is ever full (the writer cannot keep
//! up), the click is dropped and counted in [`Clicks::dropped`] rather than slowing the
//! redirect down.
//!
//! Click limits (`maxClicks`) need an exact count at redirect time, before the sums
//! reach the database. For links that have a limit, this process keeps one atomic
//! counter per link, started from the stored count the first time the link is
//! clicked; every click in this process goes through it, so it is exact for a single
//! node. Only limited links get a counter, so the map stays small.

use crate::cache::CachedLink;
use crate::domain::link::{LinkId, UnixMillis, now_ms};
use crate::store::{ClickDelta, ClickStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One counted redirect.
#[derive(Debug, Clone, Copy)]
pub struct ClickEvent {
    pub link: LinkId,
    pub at: UnixMillis,
}

/// The redirect side of click counting.
pub struct Clicks {
    queue: mpsc::Sender<ClickEvent>,
    dropped: AtomicU64,
    limits: Mutex<HashMap<LinkId, Arc<AtomicU64>>>,
}

/// The writer side, handed to [`run_click_writer`].
pub struct ClickQueue(mpsc::Receiver<ClickEvent>);

impl Clicks {
    pub fn new(capacity: usize) -> (Arc<Self>, ClickQueue) {
        let (queue, receiver) = mpsc::channel(capacity);
        let clicks = Arc::new(Self {
            queue,
            dropped: AtomicU64::new(0),
            limits: Mutex::new(HashMap::new()),
        });
        (clicks, ClickQueue(receiver))
    }

    /// Counts a click; never waits.
    pub fn record(&self, link: LinkId) {
        let event = ClickEvent { link, at: now_ms() };
        if self.queue.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Clicks dropped because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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

/// Drains the click queue into the database until `stop` turns true, then drains
/// what is left, flushes, and returns.
pub async fn run_click_writer(
    ClickQueue(mut queue): ClickQueue,
    store: Arc<dyn ClickStore>,
    flush_interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: HashMap<(LinkId, i64), u64> = HashMap::new();
    let mut batch = Vec::with_capacity(4096);
    let mut tick = tokio::time::interval(flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = queue.recv_many(&mut batch, 4096) => {
                if received == 0 {
                    break;
                }
                for event in batch.drain(..) {
                    *pending.entry((event.link, hour_start(event.at))).or_default() += 1;
                }
            }
            _ = tick.tick() => flush(&mut pending, store.as_ref()).await,
            () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
                queue.close();
                while queue.recv_many(&mut batch, 4096).await > 0 {
                    for event in batch.drain(..) {
                        *pending.entry((event.link, hour_start(event.at))).or_default() += 1;
                    }
                }
                break;
            }
        }
    }
    // Last flush: retried a few times, since what is not written now is lost.
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

async fn flush(pending: &mut HashMap<(LinkId, i64), u64>, store: &dyn ClickStore) {
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
        let (clicks, _queue) = Clicks::new(16);
        let link = CachedLink {
            id: LinkId(9),
            location: http::HeaderValue::from_static("https://example.com"),
            status: http::StatusCode::FOUND,
            expires_at: None,
            max_clicks: Some(100),
            stored_clicks: 40,
        };
        let link = Arc::new(link);
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
    fn full_queue_drops_and_counts() {
        let (clicks, _queue) = Clicks::new(2);
        for _ in 0..5 {
            clicks.record(LinkId(1));
        }
        assert_eq!(clicks.dropped(), 3);
    }
}
