//! A node's side of the click stream: drained batches → messages → JetStream, or the
//! spool when NATS cannot take them. Runs on the analytics pipeline's task; the
//! redirect path never waits for any of it.

use super::StreamSettings;
use super::spool::Spool;
use crate::analytics::enrich::RawBatch;
use crate::clicks::Clicks;
use crate::domain::link::LinkId;
use async_nats::connection::State;
use async_nats::jetstream::{self, message::PublishMessage};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Records replayed from the spool per round trip.
const REPLAY_BATCH: usize = 64;
/// Largest message when the server has not said yet (NATS's default `max_payload`).
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    /// Messages JetStream acknowledged (first publishes and replays).
    pub published: AtomicU64,
    /// Visits in those messages.
    pub published_visits: AtomicU64,
    /// Publishes that failed or timed out (their batch went to the spool).
    pub publish_failures: AtomicU64,
    /// Messages written to the spool.
    pub spooled: AtomicU64,
    /// Visits dropped because the spool was full or could not be written.
    pub dropped_visits: AtomicU64,
    /// Bytes in the spool now.
    pub spool_bytes: AtomicU64,
    /// Messages waiting for a worker (pending plus unacknowledged), read every few
    /// seconds from the consumer; -1 until known.
    pub pending: std::sync::atomic::AtomicI64,
    /// 1 while the client is connected to NATS.
    pub connected: AtomicU64,
}

/// A message ready to publish: its id, payload and visits.
struct Outgoing {
    id: String,
    payload: Vec<u8>,
    visits: u64,
}

pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    settings: StreamSettings,
    /// This process's part of every message id.
    node: String,
    sequence: u64,
    spool: Option<Spool>,
    stream_ready: bool,
    clicks: Arc<Clicks>,
    pub metrics: Arc<StreamMetrics>,
}

impl Publisher {
    /// Opens the spool (replayed first, once NATS is up) and connects in the background.
    pub async fn new(
        settings: &StreamSettings,
        clicks: Arc<Clicks>,
        metrics: Arc<StreamMetrics>,
    ) -> anyhow::Result<Self> {
        let path = settings.spool_path.clone();
        let max = settings.spool_max_bytes;
        let spool = tokio::task::spawn_blocking(move || Spool::open(&path, max))
            .await?
            .map_err(|e| anyhow::anyhow!("spool {}: {e}", settings.spool_path.display()))?;
        if !spool.is_drained() {
            tracing::info!(
                bytes = spool.bytes(),
                "visits spooled before the last stop will be published"
            );
        }
        metrics.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        metrics.pending.store(-1, Ordering::Relaxed);
        let client = super::connect(settings, "hop serve").await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(settings.timeout);
        Ok(Self {
            client,
            js,
            settings: settings.clone(),
            node: format!("{:016x}", rand::random::<u64>()),
            sequence: 0,
            spool: Some(spool),
            stream_ready: false,
            clicks,
            metrics,
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn connected(&self) -> bool {
        let up = self.client.connection_state() == State::Connected;
        self.metrics
            .connected
            .store(u64::from(up), Ordering::Relaxed);
        up
    }

    /// Publishes one drain's batches (and whatever the spool holds), or spools them.
    pub async fn send(&mut self, batches: Vec<RawBatch>) {
        let outgoing = self.messages(batches);
        let failed = if !self.spool_drained() || !self.ready().await {
            outgoing
        } else {
            self.publish_all(outgoing).await
        };
        if !failed.is_empty() {
            self.spool_messages(failed).await;
        }
        if !self.spool_drained() && self.ready().await {
            self.replay().await;
        }
    }

    fn spool_drained(&self) -> bool {
        self.spool.as_ref().is_none_or(Spool::is_drained)
    }

    /// Connected, and the stream exists (created on the first connection).
    async fn ready(&mut self) -> bool {
        if !self.connected() {
            return false;
        }
        if !self.stream_ready {
            match super::ensure_stream(&self.js, &self.settings).await {
                Ok(_) => self.stream_ready = true,
                Err(error) => tracing::warn!(%error, "creating the visit stream failed"),
            }
        }
        self.stream_ready
    }

    /// Encodes batches as messages under the server's payload limit.
    fn messages(&mut self, batches: Vec<RawBatch>) -> Vec<Outgoing> {
        let limit = match self.client.server_info().max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            n => n,
        } - 1024; // room for the headers
        let mut queue: Vec<RawBatch> = batches;
        let mut out = Vec::new();
        while let Some(batch) = queue.pop() {
            if batch.is_empty() {
                continue;
            }
            let payload = batch.encode();
            if payload.len() > limit && batch.len() > 1 {
                queue.extend(batch.halves());
                continue;
            }
            if payload.len() > limit {
                // One visit over a megabyte cannot happen with hop's header limits;
                // counted as dropped rather than sent to fail.
                self.give_up(&batch);
                continue;
            }
            self.sequence += 1;
            out.push(Outgoing {
                id: format!("{}-{}", self.node, self.sequence),
                payload,
                visits: batch.len() as u64,
            });
        }
        out
    }

    /// Publishes every message and waits for the acknowledgements; returns those that
    /// failed, in their order.
    async fn publish_all(&mut self, messages: Vec<Outgoing>) -> Vec<Outgoing> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            let publish = PublishMessage::build()
                .payload(message.payload.clone().into())
                .message_id(&message.id);
            let ack = self.js.send_publish(self.settings.subject(), publish).await;
            pending.push((message, ack));
        }
        let mut failed = Vec::new();
        for (message, ack) in pending {
            let result = match ack {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match result {
                Ok(()) => {
                    self.metrics.published.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .published_visits
                        .fetch_add(message.visits, Ordering::Relaxed);
                }
                Err(error) => {
                    if failed.is_empty() {
                        tracing::warn!(%error, "publishing visits failed; spooling them");
                    }
                    self.metrics
                        .publish_failures
                        .fetch_add(1, Ordering::Relaxed);
                    failed.push(message);
                }
            }
        }
        if !failed.is_empty() {
            // The stream may be gone (deleted by hand): look again next time.
            self.stream_ready = false;
        }
        failed
    }

    async fn spool_messages(&mut self, messages: Vec<Outgoing>) {
        let records: Vec<(String, Vec<u8>)> = messages
            .iter()
            .map(|m| (m.id.clone(), m.payload.clone()))
            .collect();
        let written = self
            .with_spool(move |spool| spool.append(&records))
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "writing the spool failed");
                0
            });
        self.metrics
            .spooled
            .fetch_add(written as u64, Ordering::Relaxed);
        if written < messages.len() {
            let lost: u64 = messages[written..].iter().map(|m| m.visits).sum();
            tracing::error!(
                visits = lost,
                "the spool is full: visits dropped (their clicks are counted)"
            );
            for message in &messages[written..] {
                if let Ok(batch) = RawBatch::decode(&message.payload) {
                    self.give_up(&batch);
                }
            }
        }
    }

    /// Publishes spooled records from the front until the spool is empty or a publish
    /// fails.
    async fn replay(&mut self) {
        loop {
            let records = match self.with_spool(|spool| spool.peek(REPLAY_BATCH)).await {
                Ok(records) if !records.is_empty() => records,
                Ok(_) => return,
                Err(error) => {
                    tracing::error!(%error, "reading the spool failed");
                    return;
                }
            };
            let ends: Vec<u64> = records.iter().map(|r| r.end).collect();
            let messages: Vec<Outgoing> = records
                .into_iter()
                .map(|r| Outgoing {
                    visits: RawBatch::decode(&r.payload).map_or(0, |b| b.len() as u64),
                    id: r.id,
                    payload: r.payload,
                })
                .collect();
            let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
            let failed = self.publish_all(messages).await;
            // Up to the first failure is done; anything after it is sent again later
            // (JetStream and the workers drop the repeats by id).
            let first_failed = failed.first().map_or(ids.len(), |f| {
                ids.iter().position(|id| *id == f.id).unwrap_or(0)
            });
            if first_failed > 0 {
                let end = ends[first_failed - 1];
                if let Err(error) = self.with_spool(move |spool| spool.consumed(end)).await {
                    tracing::error!(%error, "emptying the spool failed");
                    return;
                }
            }
            if !failed.is_empty() {
                return;
            }
            if self.spool_drained() {
                tracing::info!("spooled visits published");
                return;
            }
        }
    }

    /// Runs `f` on the spool on a blocking thread (it reads, writes and fsyncs).
    async fn with_spool<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Spool) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let Some(mut spool) = self.spool.take() else {
            return Err(std::io::Error::other("the spool is not open"));
        };
        let (spool, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut spool);
            (spool, result)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.metrics
            .spool_bytes
            .store(spool.bytes(), Ordering::Relaxed);
        self.spool = Some(spool);
        result
    }

    /// Drops a batch's visits but still counts their clicks.
    fn give_up(&self, batch: &RawBatch) {
        self.metrics
            .dropped_visits
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for link in batch.uncounted_clicks() {
            self.clicks.add(LinkId(link), 1);
        }
    }
}

/// Reads the workers' backlog into `metrics` every five seconds.
pub async fn run_lag_probe(
    client: async_nats::Client,
    settings: StreamSettings,
    metrics: Arc<StreamMetrics>,
) {
    run_lag_probe_into(
        client,
        settings,
        Arc::new(move |pending| metrics.pending.store(pending, Ordering::Relaxed)),
    )
    .await
}

/// Reads the consumer's backlog (pending plus unacknowledged messages) every five
/// seconds and hands it to `record`; -1 when it cannot be read.
pub async fn run_lag_probe_into(
    client: async_nats::Client,
    settings: StreamSettings,
    record: Arc<dyn Fn(i64) + Send + Sync>,
) {
    let js = jetstream::new(client);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let info = async {
            let stream = js.get_stream(settings.stream_name()).await.ok()?;
            stream.consumer_info(settings.consumer_name()).await.ok()
        };
        match tokio::time::timeout(settings.timeout, info).await {
            Ok(Some(info)) => record((info.num_pending + info.num_ack_pending as u64) as i64),
            _ => record(-1),
        }
    }
}
