//! Read replicas: PostgreSQL streaming replicas that answer the reads which may lag
//! a little (redirect misses, listings, stats, visits), so that the primary keeps its
//! capacity for writes.
//!
//! A monitor task checks every replica each [`CHECK_INTERVAL`]: it must answer, and
//! its replay must be within `replica_max_lag_ms` of what it has received (a replica
//! that has replayed everything it received is not behind, however long ago the last
//! write was). Reads go round-robin to the replicas in use; a read that fails on a
//! replica takes it out of use at once and is answered by the primary, so a replica
//! going down fails no request. With no replica in use, reads go to the primary.

use super::pool_error;
use crate::store::{ReplicaStatus, StoreError};
use deadpool_postgres::Pool;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How often each replica's health and lag are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How far behind a replica is, in milliseconds: 0 when it has replayed all it
/// received (or is no replica at all), else the age of its last replayed commit.
const LAG_SQL: &str = "SELECT CASE \
     WHEN NOT pg_is_in_recovery() THEN 0 \
     WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
     ELSE COALESCE((EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, 0) \
     END";

pub(super) struct Replica {
    /// `host:port/database`, for logs and metrics.
    pub name: String,
    pub pool: Pool,
    in_use: AtomicBool,
    lag_ms: AtomicU64,
    reads: AtomicU64,
}

impl Replica {
    pub fn new(name: String, pool: Pool) -> Self {
        Self {
            name,
            pool,
            in_use: AtomicBool::new(false),
            lag_ms: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    /// Takes the replica out of use after a failed read; the monitor brings it back.
    pub fn failed(&self, error: &StoreError) {
        if self.in_use.swap(false, Ordering::AcqRel) {
            tracing::warn!(replica = %self.name, %error, "read replica failed; reading from the primary");
        }
    }

    pub fn answered(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn set(&self, in_use: bool, lag_ms: u64, why: &str) {
        self.lag_ms.store(lag_ms, Ordering::Relaxed);
        let was = self.in_use.swap(in_use, Ordering::AcqRel);
        if was != in_use {
            if in_use {
                tracing::info!(replica = %self.name, lag_ms, "read replica in use");
            } else {
                tracing::warn!(replica = %self.name, lag_ms, reason = why, "read replica skipped");
            }
        }
    }

    /// Checks the replica once and records whether it is usable.
    async fn check(&self, max_lag: Duration, timeout: Duration) {
        let lag = tokio::time::timeout(timeout, async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let row = client.query_one(LAG_SQL, &[]).await?;
            Ok::<i64, StoreError>(row.try_get(0)?)
        })
        .await;
        match lag {
            Ok(Ok(lag)) => {
                let lag = lag.max(0) as u64;
                let usable = u128::from(lag) <= max_lag.as_millis();
                self.set(
                    usable,
                    lag,
                    "behind the primary by more than replica_max_lag_ms",
                );
            }
            Ok(Err(error)) => self.set(false, 0, &error.to_string()),
            Err(_) => self.set(false, 0, "did not answer in time"),
        }
    }

    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            name: self.name.clone(),
            in_use: self.in_use.load(Ordering::Acquire),
            lag_ms: self.lag_ms.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
        }
    }
}

/// The replicas of one store and the round-robin position.
pub(super) struct Replicas {
    pub list: Vec<Replica>,
    next: AtomicUsize,
}

impl Replicas {
    pub fn new(list: Vec<Replica>) -> Self {
        Self {
            list,
            next: AtomicUsize::new(0),
        }
    }

    /// The next replica in use, if any.
    pub fn pick(&self) -> Option<&Replica> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.list[(start + i) % n])
            .find(|replica| replica.in_use.load(Ordering::Acquire))
    }

    /// Checks every replica once.
    pub async fn check_all(&self, max_lag: Duration, timeout: Duration) {
        for replica in &self.list {
            replica.check(max_lag, timeout).await;
        }
    }
}

/// Rechecks the replicas until the store is gone.
pub(super) async fn run_monitor(replicas: Weak<Replicas>, max_lag: Duration, timeout: Duration) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(replicas) = replicas.upgrade() else {
            return;
        };
        replicas.check_all(max_lag, timeout).await;
    }
}
