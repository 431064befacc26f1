//! `hop worker`: stores the visits nodes publish to the stream.
//!
//! Every worker pulls from one durable consumer, so messages are shared out between
//! them. A fetch (up to [`FETCH`] messages) is decoded, enriched on a blocking thread,
//! and stored with its message ids in one transaction
//! ([`AnalyticsStore::record_stream_visits`]); only then are the messages
//! acknowledged. A worker that dies before that leaves them unacknowledged, and
//! JetStream delivers them again after [`ACK_WAIT`]; if the first transaction did
//! commit, the ids are there and the repeat is skipped (the fetch is then stored one
//! message at a time, each with its own id, so the new ones in it still count).

use super::StreamSettings;
use crate::analytics::enrich::{Enricher, RawBatch, VisitGroup};
use crate::analytics::pipeline::live_form;
use crate::store::{AnalyticsStore, MetaStore};
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Messages fetched (and stored in one transaction) at most.
const FETCH: usize = 256;
/// How long JetStream waits for an acknowledgement before it delivers a message again.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long a fetch waits for messages when the stream is empty.
const FETCH_WAIT: Duration = Duration::from_millis(500);

pub struct Worker {
    pub settings: StreamSettings,
    pub store: Arc<dyn AnalyticsStore>,
    /// For readiness (`ping`).
    pub meta: Arc<dyn MetaStore>,
    pub enricher: Arc<Enricher>,
    pub keep_raw: bool,
    /// Where to answer `/healthz`, `/readyz` and `/metrics`; none without `--listen`.
    pub status: Option<tokio::net::TcpListener>,
    pub metrics: Arc<WorkerMetrics>,
}

/// A worker's counters (its `/metrics`).
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    pub stored_visits: AtomicU64,
    pub stored_batches: AtomicU64,
    /// Batches delivered again that were already stored (skipped).
    pub duplicate_batches: AtomicU64,
    /// Transactions that failed (their messages are delivered again).
    pub store_failures: AtomicU64,
    /// Messages without an id or not a batch (discarded).
    pub discarded: AtomicU64,
    /// The consumer's backlog (pending plus unacknowledged); -1 until read.
    pub pending: std::sync::atomic::AtomicI64,
}

/// A fetched message, decoded.
struct Fetched {
    message: jetstream::Message,
    id: String,
    batch: RawBatch,
}

impl Worker {
    /// Pulls and stores until `stop` completes, then finishes the fetch in hand.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let client = super::connect(&self.settings, "hop worker").await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(self.settings.timeout);
        self.metrics.pending.store(-1, Ordering::Relaxed);
        let mut status = self.status_task(&client);
        tokio::pin!(stop);
        let consumer = loop {
            let attempt = async {
                let stream = super::ensure_stream(&js, &self.settings).await?;
                let consumer = stream
                    .get_or_create_consumer(
                        &self.settings.consumer_name(),
                        pull::Config {
                            durable_name: Some(self.settings.consumer_name()),
                            description: Some("hop worker: stores visits".into()),
                            ack_policy: jetstream::consumer::AckPolicy::Explicit,
                            ack_wait: ACK_WAIT,
                            max_ack_pending: 100_000,
                            ..Default::default()
                        },
                    )
                    .await?;
                anyhow::Ok(consumer)
            };
            tokio::select! {
                result = attempt => match result {
                    Ok(consumer) => break consumer,
                    Err(error) => {
                        tracing::warn!(%error, "the visit stream is not reachable; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                () = &mut stop => return Ok(()),
            }
        };
        tracing::info!(
            stream = %self.settings.stream_name(),
            consumer = %self.settings.consumer_name(),
            "hop worker is storing visits"
        );
        status.push(tokio::spawn(super::publisher::run_lag_probe_into(
            client.clone(),
            self.settings.clone(),
            Arc::new({
                let metrics = self.metrics.clone();
                move |pending| metrics.pending.store(pending, Ordering::Relaxed)
            }),
        )));
        let mut report = Progress::default();
        loop {
            let fetched = tokio::select! {
                fetched = self.fetch(&consumer) => fetched,
                () = &mut stop => break,
            };
            let fetched = match fetched {
                Ok(fetched) => fetched,
                Err(error) => {
                    tracing::warn!(%error, "fetching from the visit stream failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if fetched.is_empty() {
                report.tick();
                continue;
            }
            let visits = self.store_fetched(&client, fetched).await;
            report.add(visits);
        }
        for task in status {
            task.abort();
        }
        tracing::info!("hop worker stopped");
        Ok(())
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on the status listener, if any.
    fn status_task(&mut self, client: &async_nats::Client) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(listener) = self.status.take() else {
            return Vec::new();
        };
        let status = Status {
            client: client.clone(),
            meta: self.meta.clone(),
            metrics: self.metrics.clone(),
        };
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok\n" }))
            .route("/readyz", axum::routing::get(ready))
            .route("/metrics", axum::routing::get(metrics_text))
            .with_state(status);
        if let Ok(address) = listener.local_addr() {
            tracing::info!(listen = %address, "worker status on /healthz, /readyz, /metrics");
        }
        vec![tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "the worker's status listener failed");
            }
        })]
    }

    async fn fetch(
        &self,
        consumer: &jetstream::consumer::PullConsumer,
    ) -> anyhow::Result<Vec<Fetched>> {
        let mut messages = consumer
            .fetch()
            .max_messages(FETCH)
            .expires(FETCH_WAIT)
            .messages()
            .await?;
        let mut fetched = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!(e))?;
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned());
            let Some(id) = id else {
                self.metrics.discarded.fetch_add(1, Ordering::Relaxed);
                tracing::error!(subject = %message.subject, "a message without an id on the visit stream; discarded");
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            };
            match RawBatch::decode(&message.payload) {
                Ok(batch) => fetched.push(Fetched { message, id, batch }),
                Err(error) => {
                    self.metrics.discarded.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, id, "a malformed message on the visit stream; discarded");
                    let _ = message.ack_with(AckKind::Term).await;
                }
            }
        }
        Ok(fetched)
    }

    /// Stores a fetch (once) and acknowledges it; returns the visits stored.
    async fn store_fetched(&self, client: &async_nats::Client, fetched: Vec<Fetched>) -> u64 {
        let ids: Vec<String> = fetched.iter().map(|f| f.id.clone()).collect();
        let (messages, batches): (Vec<_>, Vec<_>) =
            fetched.into_iter().map(|f| (f.message, f.batch)).unzip();
        let groups = self.enrich(batches).await;
        match self
            .store
            .record_stream_visits(groups.clone(), self.keep_raw, ids.clone())
            .await
        {
            Ok(true) => {
                ack_all(&messages).await;
                self.publish_live(client, &groups).await;
                self.stored(messages.len(), count(&groups))
            }
            // Some were stored before: one at a time, so that the others still count.
            Ok(false) => {
                let mut stored = 0;
                for (message, id) in messages.into_iter().zip(ids) {
                    stored += self.store_one(client, message, id).await;
                }
                stored
            }
            Err(error) => {
                self.metrics.store_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, messages = messages.len(), "storing visits failed; they will be delivered again");
                nak_all(&messages).await;
                0
            }
        }
    }

    async fn store_one(
        &self,
        client: &async_nats::Client,
        message: jetstream::Message,
        id: String,
    ) -> u64 {
        let Ok(batch) = RawBatch::decode(&message.payload) else {
            return 0;
        };
        let groups = self.enrich(vec![batch]).await;
        match self
            .store
            .record_stream_visits(groups.clone(), self.keep_raw, vec![id.clone()])
            .await
        {
            Ok(stored) => {
                let _ = message.ack().await;
                if stored {
                    self.publish_live(client, &groups).await;
                    self.stored(1, count(&groups))
                } else {
                    self.metrics
                        .duplicate_batches
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(id, "a batch delivered again was already stored");
                    0
                }
            }
            Err(error) => {
                self.metrics.store_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, id, "storing a batch failed; it will be delivered again");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                0
            }
        }
    }

    /// Counts a stored fetch; returns its visits.
    fn stored(&self, batches: usize, visits: u64) -> u64 {
        self.metrics
            .stored_batches
            .fetch_add(batches as u64, Ordering::Relaxed);
        self.metrics
            .stored_visits
            .fetch_add(visits, Ordering::Relaxed);
        visits
    }

    async fn enrich(&self, batches: Vec<RawBatch>) -> Arc<Vec<VisitGroup>> {
        let enricher = self.enricher.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || enricher.enrich_batch(batches))
                .await
                .expect("enriching visits panicked"),
        )
    }

    /// Sends each link's stored visits to its live subject (nodes serving `/live`).
    async fn publish_live(&self, client: &async_nats::Client, groups: &[VisitGroup]) {
        let mut by_link: BTreeMap<i64, Vec<(i64, &VisitGroup)>> = BTreeMap::new();
        for group in groups {
            for &at in &group.times {
                by_link
                    .entry(group.profile.link_id)
                    .or_default()
                    .push((at, group));
            }
        }
        for (link, mut visits) in by_link {
            visits.sort_by_key(|&(at, _)| at);
            let visits: Vec<_> = visits
                .into_iter()
                .map(|(at, group)| live_form(&group.profile, at))
                .collect();
            let Ok(payload) = serde_json::to_vec(&visits) else {
                continue;
            };
            // Nobody listening is the usual case; NATS drops those cheaply.
            let _ = client
                .publish(self.settings.live_subject(link), payload.into())
                .await;
        }
    }
}

fn count(groups: &[VisitGroup]) -> u64 {
    groups.iter().map(|g| g.times.len() as u64).sum()
}

async fn ack_all(messages: &[jetstream::Message]) {
    for message in messages {
        if let Err(error) = message.ack().await {
            // Stored already: a redelivery is skipped by its id.
            tracing::debug!(%error, "acknowledging a stored batch failed");
        }
    }
}

async fn nak_all(messages: &[jetstream::Message]) {
    for message in messages {
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
    }
}

/// A log line every ten seconds while visits flow.
#[derive(Default)]
struct Progress {
    since: Option<Instant>,
    visits: u64,
}

impl Progress {
    fn add(&mut self, visits: u64) {
        self.visits += visits;
        self.tick();
    }

    fn tick(&mut self) {
        let since = *self.since.get_or_insert_with(Instant::now);
        let elapsed = since.elapsed();
        if elapsed >= Duration::from_secs(10) {
            if self.visits > 0 {
                tracing::info!(
                    visits = self.visits,
                    per_second = (self.visits as f64 / elapsed.as_secs_f64()).round(),
                    "visits stored"
                );
            }
            self.visits = 0;
            self.since = Some(Instant::now());
        }
    }
}

/// What the status endpoints read.
#[derive(Clone)]
struct Status {
    client: async_nats::Client,
    meta: Arc<dyn MetaStore>,
    metrics: Arc<WorkerMetrics>,
}

/// `200 {"status":"ready",…}` when the database answers and NATS is connected;
/// `503` with the same shape, naming what is not, otherwise.
async fn ready(
    axum::extract::State(status): axum::extract::State<Status>,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let database = match status.meta.ping().await {
        Ok(()) => "ok",
        Err(_) => "unavailable",
    };
    let nats = if status.client.connection_state() == async_nats::connection::State::Connected {
        "ok"
    } else {
        "unavailable"
    };
    let ready = database == "ok" && nats == "ok";
    let code = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {"database": database, "nats": nats},
    });
    (code, axum::Json(body))
}

/// The worker's counters in the Prometheus text format.
async fn metrics_text(
    axum::extract::State(status): axum::extract::State<Status>,
) -> impl axum::response::IntoResponse {
    use std::fmt::Write;
    let m = &status.metrics;
    let mut out = String::new();
    let counters: [(&str, &str, &AtomicU64); 5] = [
        (
            "hop_worker_stored_visits_total",
            "Visits stored since start.",
            &m.stored_visits,
        ),
        (
            "hop_worker_stored_batches_total",
            "Stream messages stored since start.",
            &m.stored_batches,
        ),
        (
            "hop_worker_duplicate_batches_total",
            "Messages delivered again that were already stored (skipped).",
            &m.duplicate_batches,
        ),
        (
            "hop_worker_store_failures_total",
            "Transactions that failed (their messages come again).",
            &m.store_failures,
        ),
        (
            "hop_worker_discarded_messages_total",
            "Messages without an id or not a visit batch (discarded).",
            &m.discarded,
        ),
    ];
    for (name, help, value) in counters {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            value.load(Ordering::Relaxed)
        );
    }
    let connected =
        u8::from(status.client.connection_state() == async_nats::connection::State::Connected);
    let _ = write!(
        out,
        "# HELP hop_worker_nats_connected 1 while connected to NATS.\n# TYPE hop_worker_nats_connected gauge\nhop_worker_nats_connected {connected}\n"
    );
    if let Ok(pending) = u64::try_from(m.pending.load(Ordering::Relaxed)) {
        let _ = write!(
            out,
            "# HELP hop_worker_pending Messages waiting in the stream for a worker (pending and unacknowledged).\n# TYPE hop_worker_pending gauge\nhop_worker_pending {pending}\n"
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
