//! Schema migrations for PostgreSQL: the numbered files of `migrations/postgres/`,
//! applied in order, each in its own transaction together with its row in
//! `schema_version`.
//!
//! Many nodes may start at once against an empty database: the whole check-and-apply
//! runs under a session advisory lock, so the first node migrates and the others wait,
//! then find nothing left to do. A database whose version is above the newest file
//! this binary carries was migrated by a newer hop and is refused.

use super::{LOCK_MIGRATE, describe};
use crate::domain::link::now_ms;
use crate::store::ConnectError;

/// Schema migrations, applied in order; never edit one that has been released.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_disabled_reason.sql"),
    include_str!("../../../migrations/postgres/0003_stream_batches.sql"),
    include_str!("../../../migrations/postgres/0004_link_ids.sql"),
    include_str!("../../../migrations/postgres/0005_links_by_id.sql"),
    include_str!("../../../migrations/postgres/0006_visit_day_dims.sql"),
    include_str!("../../../migrations/postgres/0007_drop_link_clicks_hourly.sql"),
    include_str!("../../../migrations/postgres/0008_sessions.sql"),
];

fn failed(error: tokio_postgres::Error) -> ConnectError {
    ConnectError::Migrate(describe(&error))
}

/// Applies pending migrations; returns the schema version before and after.
pub(super) async fn migrate(
    client: &mut deadpool_postgres::Client,
    link_partitions: u32,
) -> Result<(u32, u32), ConnectError> {
    migrate_to(client, link_partitions, MIGRATIONS.len()).await
}

/// Applies pending migrations up to version `target`.
pub(super) async fn migrate_to(
    client: &mut deadpool_postgres::Client,
    link_partitions: u32,
    target: usize,
) -> Result<(u32, u32), ConnectError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_MIGRATE])
        .await
        .map_err(failed)?;
    let applied = apply(client, link_partitions, target).await;
    // Also released when the connection closes, should this fail.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_MIGRATE])
        .await;
    let versions = applied?;
    unlocked.map_err(failed)?;
    Ok(versions)
}

async fn apply(
    client: &mut deadpool_postgres::Client,
    link_partitions: u32,
    target: usize,
) -> Result<(u32, u32), ConnectError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version ( \
               version    integer PRIMARY KEY, \
               applied_at bigint NOT NULL)",
        )
        .await
        .map_err(failed)?;
    let current: i32 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    let current = current.max(0) as u32;
    let known = MIGRATIONS.len() as u32;
    if current > known {
        return Err(ConnectError::TooNew {
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target)
        .skip(current as usize)
    {
        let version = index as i32 + 1;
        let tx = client.transaction().await.map_err(failed)?;
        // Read by the first migration when it creates the links partitions.
        tx.execute(
            "SELECT set_config('hop.link_partitions', $1, true)",
            &[&link_partitions.to_string()],
        )
        .await
        .map_err(failed)?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| ConnectError::Migrate(format!("version {version}: {}", describe(&e))))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
            &[&version, &now_ms()],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(version, "database schema migrated");
    }
    Ok((current, known))
}
