//! Read replicas: PostgreSQL streaming replicas that answer the reads which may lag
//! a little (redirect misses, listings, stats, visits), so that the primary keeps its
//! capacity for writes.
//!
//! A monitor task checks every replica each [`CHECK_INTERVAL`]: it must answer, and
//! be no more than `replica_max_lag_ms` behind. Lag: a replica that is streaming and
//! has replayed all it received is current (0); otherwise it is the age of the newest
//! heartbeat it has replayed — a row the monitor writes on the primary before each
//! check (`replication_heartbeat`), so that a replica whose replay stopped, or which
//! lost the primary, grows older by the second even when nothing else is written.
//! Reads go round-robin to the replicas in use; a read that fails on a
//! replica takes it out of use at once and is answered by the primary, so a replica
//! going down fails no request. With no replica in use, reads go to the primary.

use super::pool_error;
use crate::domain::link::now_ms;
use crate::store::{ReplicaStatus, StoreError};
use deadpool_postgres::Pool;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How often each replica's health and lag are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// On a replica: whether it is current (streaming, everything received replayed),
/// the newest heartbeat it has replayed, and whether it is a replica at all.
const LAG_SQL: &str = "SELECT \
     (pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() \
      AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')), \
     (SELECT at_ms FROM replication_heartbeat WHERE id = 1), \
     pg_is_in_recovery()";

/// On the primary: the heartbeat replicas are measured by.
const HEARTBEAT_SQL: &str = "INSERT INTO replication_heartbeat AS h (id, at_ms) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET at_ms = GREATEST(h.at_ms, excluded.at_ms)";

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
            let current: bool = row.try_get(0)?;
            let beat: Option<i64> = row.try_get(1)?;
            let replica: bool = row.try_get(2)?;
            Ok::<Option<u64>, StoreError>(if current || !replica {
                Some(0)
            } else {
                // No heartbeat replayed yet: how far behind is unknown, so too far.
                beat.map(|at| (now_ms() - at).max(0) as u64)
            })
        })
        .await;
        match lag {
            Ok(Ok(Some(lag))) => {
                let usable = u128::from(lag) <= max_lag.as_millis();
                self.set(
                    usable,
                    lag,
                    "behind the primary by more than replica_max_lag_ms",
                );
            }
            Ok(Ok(None)) => self.set(false, 0, "has not replayed a heartbeat yet"),
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
    /// Where heartbeats are written.
    primary: Pool,
}

impl Replicas {
    pub fn new(list: Vec<Replica>, primary: Pool) -> Self {
        Self {
            list,
            next: AtomicUsize::new(0),
            primary,
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

    /// Writes a heartbeat on the primary, then checks every replica once.
    pub async fn check_all(&self, max_lag: Duration, timeout: Duration) {
        let beat = tokio::time::timeout(timeout, async {
            let client = self.primary.get().await.map_err(pool_error)?;
            client.execute(HEARTBEAT_SQL, &[&now_ms()]).await?;
            Ok::<(), StoreError>(())
        })
        .await;
        // The primary down: the replicas' heartbeats age, and they are skipped once
        // past the limit, since nothing says how much they miss.
        if let Ok(Err(error)) = &beat {
            tracing::debug!(%error, "replica heartbeat not written");
        }
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
