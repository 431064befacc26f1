//! The click stream of a cluster, only with `nats_url`: nodes publish the visit
//! batches they capture to a NATS JetStream stream, and `hop worker` stores them.
//!
//! - [`publisher`]: the node's side. Each analytics drain becomes a few messages (a
//!   [`RawBatch`](crate::analytics::enrich::RawBatch) each, still dictionary-encoded),
//!   each with a message id (`<node>-<sequence>`) that JetStream deduplicates on.
//!   What NATS does not acknowledge in time goes to the [`spool`], an fsync'd file,
//!   and is published again, in order, once NATS is back.
//! - [`worker`]: `hop worker`. A durable pull consumer shared by every worker; each
//!   fetch is enriched and stored in one transaction together with its message ids
//!   (`stream_batches`), so a redelivered batch is never counted twice; then the
//!   messages are acknowledged and the visits published for the live feeds.
//! - Live feeds: the worker publishes each stored link's visits on
//!   `<prefix>.live.<link id>` (core NATS, not kept); a node serving `/live` subscribes
//!   to that one subject, so a feed works on every node whichever node served the visit.

pub mod publisher;
pub mod spool;
pub mod worker;

use async_nats::jetstream;
use std::path::PathBuf;
use std::time::Duration;

/// The stream's settings, from the configuration.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub url: String,
    pub prefix: String,
    /// Longest a publish waits for its acknowledgement.
    pub timeout: Duration,
    pub spool_path: PathBuf,
    pub spool_max_bytes: u64,
}

/// How long the stream keeps a message nobody acknowledged (no worker running).
const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
/// JetStream's deduplication window: a message id seen within it is not stored again.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl StreamSettings {
    pub fn stream_name(&self) -> String {
        format!("{}-visits", self.prefix)
    }

    pub fn subject(&self) -> String {
        format!("{}.visits", self.prefix)
    }

    pub fn consumer_name(&self) -> String {
        format!("{}-worker", self.prefix)
    }

    /// The subject a link's live visits are published on.
    pub fn live_subject(&self, link_id: i64) -> String {
        format!("{}.live.{link_id}", self.prefix)
    }
}

/// `nats_url` must be a NATS URL with a host: `nats://HOST:PORT` (or `tls://`).
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("nats_url `{url}`: {e}"))?;
    if !matches!(parsed.scheme(), "nats" | "tls") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "nats_url `{}` must look like nats://HOST:PORT",
            crate::store::redacted(url)
        ));
    }
    Ok(())
}

/// `nats_prefix`: 1 to 32 letters, digits, `-` or `_` (it names a stream and subjects).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty()
        || prefix.len() > 32
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "nats_prefix `{prefix}` must be 1 to 32 letters, digits, `-` or `_`"
        ));
    }
    Ok(())
}

/// A client that connects (and reconnects) in the background: a node starts, and
/// serves, with NATS down.
pub async fn connect(settings: &StreamSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(settings.timeout)
        .request_timeout(Some(settings.timeout))
        .connect(settings.url.as_str())
        .await?)
}

/// Creates the stream if it does not exist: file storage, a work queue (a message
/// goes once a worker acknowledges it), kept up to [`STREAM_MAX_AGE`] otherwise.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<jetstream::stream::Stream> {
    Ok(js
        .get_or_create_stream(jetstream::stream::Config {
            name: settings.stream_name(),
            subjects: vec![settings.subject()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            storage: jetstream::stream::StorageType::File,
            max_age: STREAM_MAX_AGE,
            duplicate_window: DUPLICATE_WINDOW,
            description: Some("hop: captured visits, stored by hop worker".into()),
            ..Default::default()
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_prefixes_are_checked() {
        assert!(check_url("nats://127.0.0.1:4222").is_ok());
        assert!(check_url("tls://nats.example:4222").is_ok());
        assert!(check_url("http://127.0.0.1:4222").is_err());
        assert!(check_url("127.0.0.1:4222").is_err());
        assert!(check_prefix("hop").is_ok());
        assert!(check_prefix("hop-test_1").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a.b").is_err());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix(&"x".repeat(33)).is_err());
    }
}
