//! Click analytics in SQLite: raw visits (in blocks) and their rollups, written
//! together.
//!
//! A batch of visits is one writer job: the raw visits go in as a few blocks (see
//! [`crate::analytics::block`]) if kept, then each (link, hour) and each link's day of
//! breakdowns (one row per link and day) is summed in memory first (before the job
//! reaches the writer thread, which creates share) and written once, in key order, so
//! a batch of thousands of visits to a few links costs a few dozen statements. Raw visits and
//! rollups commit in the same transaction: N redirects stored give exactly N in every
//! rollup. The links' click totals (`link_clicks`) are added in
//! that transaction too, for every visit not already counted by a click-limit
//! reservation: totals and stats come from the same commit, so a crash loses both or
//! neither.

use super::{SqliteStore, in_savepoint};
use crate::analytics::block::{
    self, BlockError, BlockProfile, EncodedBlock, MAX_VISITS, ProfileTable,
};
use crate::analytics::enrich::VisitGroup;
use crate::analytics::rollup::{DAY_S, Rollups, floor_to, split_dim_key};
use crate::domain::link::LinkId;
use crate::store::{AnalyticsStore, PeriodCounts, StatsRows, StatsScope, StoreError, StoredVisit};
use async_trait::async_trait;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::sync::Arc;

/// SQL: the first day of `day_start`'s UTC month, in Unix seconds.
const MONTH_START: &str =
    "CAST(strftime('%s', day_start, 'unixepoch', 'start of month') AS INTEGER)";

/// SQL: the stored breakdowns of a day (`visit_day_dims.dims`) with the incoming ones
/// (`excluded.dims`) added key by key, for an upsert.
const ADD_DIMS: &str = "(SELECT json_group_object(key, total) FROM ( \
     SELECT key, SUM(value) AS total FROM ( \
       SELECT key, value FROM json_each(visit_day_dims.dims) \
       UNION ALL SELECT key, value FROM json_each(excluded.dims)) \
     GROUP BY key))";

fn insert_blocks(conn: &Connection, blocks: &[EncodedBlock]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO visit_blocks (link_id, first_at, last_at, visits, data) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for block in blocks {
        insert.execute(params![
            block.link_id,
            block.first_at,
            block.last_at,
            block.visits as i64,
            block.data,
        ])?;
    }
    Ok(())
}

/// A batch as the writer stores it: its blocks (none unless raw visits are kept) and
/// its rollups, both computed before the job reaches the one writer thread.
fn prepare(groups: &[VisitGroup], keep_raw: bool) -> (Vec<EncodedBlock>, Rollups) {
    let blocks = if keep_raw {
        block::encode_groups(groups)
    } else {
        Vec::new()
    };
    (blocks, Rollups::of(groups))
}

fn add_rollups(conn: &Connection, rollups: &Rollups) -> rusqlite::Result<()> {
    let Rollups {
        hours,
        days,
        uncounted,
    } = rollups;
    let mut hourly = conn.prepare_cached(
        "INSERT INTO visit_hourly (link_id, hour_start, humans, bots) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (link_id, hour_start) \
         DO UPDATE SET humans = humans + ?3, bots = bots + ?4",
    )?;
    for ((link, hour), (humans, bots)) in hours {
        hourly.execute(params![link, hour, humans, bots])?;
    }
    let mut daily = conn.prepare_cached(&format!(
        "INSERT INTO visit_day_dims (link_id, day_start, dims) VALUES (?1, ?2, ?3) \
         ON CONFLICT (link_id, day_start) DO UPDATE SET dims = {ADD_DIMS}"
    ))?;
    for ((link, day), dims) in days {
        daily.execute(params![link, day, dims])?;
    }
    add_click_totals(conn, uncounted)
}

/// Adds clicks per link to the links' totals, in key order.
fn add_click_totals(conn: &Connection, clicks: &BTreeMap<i64, i64>) -> rusqlite::Result<()> {
    let mut total = conn.prepare_cached(
        "INSERT INTO link_clicks (link_id, clicks) VALUES (?1, ?2) \
         ON CONFLICT (link_id) DO UPDATE SET clicks = clicks + ?2",
    )?;
    for (&link, &n) in clicks {
        total.execute(params![link, n])?;
    }
    Ok(())
}

fn damaged(error: BlockError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Blob, Box::new(error))
}

/// A link's visits, newest first, before the visit id `before`.
fn read_visits(
    conn: &Connection,
    link: LinkId,
    before: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<StoredVisit>> {
    let cursor = block::cursor_position(before);
    let last_block = cursor.0;
    let mut statement = conn.prepare_cached(
        "SELECT id, first_at, data FROM visit_blocks \
         WHERE link_id = ?1 AND id <= ?2 ORDER BY id DESC",
    )?;
    let mut rows = statement.query(params![link.0, last_block])?;
    let mut visits = Vec::with_capacity(limit.min(MAX_VISITS));
    while visits.len() < limit {
        let Some(row) = rows.next()? else { break };
        let id: i64 = row.get(0)?;
        let decoded = block::decode(row.get(1)?, row.get_ref(2)?.as_blob()?).map_err(damaged)?;
        decoded.page_into(id, cursor, limit, &mut visits);
    }
    Ok(visits)
}

/// Migration 4: moves the rows of the version-3 `visits` table into blocks, a link
/// at a time in arrival order, then drops the table.
pub(super) fn visits_into_blocks(conn: &Connection) -> rusqlite::Result<()> {
    struct Row {
        at: i64,
        bot: bool,
        qr: bool,
        /// browser, os, device, language, referrer host and URL, country, region,
        /// city, ip.
        text: [Option<String>; 10],
    }
    fn store(conn: &Connection, link: i64, rows: &[Row]) -> rusqlite::Result<()> {
        let mut table = ProfileTable::default();
        let mut visits = Vec::with_capacity(rows.len());
        for row in rows {
            let t = |i: usize| row.text[i].as_deref();
            let profile = table.index(BlockProfile {
                bot: row.bot,
                qr: row.qr,
                browser: t(0).unwrap_or(""),
                os: t(1).unwrap_or(""),
                device: t(2).unwrap_or(""),
                language: t(3),
                referrer_host: t(4),
                referrer_url: t(5),
                country: t(6),
                region: t(7),
                city: t(8),
                ip: t(9),
            });
            visits.push((row.at, profile));
        }
        insert_blocks(conn, &block::encode(link, &table.profiles, &mut visits))
    }

    let mut read = conn.prepare(
        "SELECT link_id, at, bot, qr, browser, os, device, language, referrer_host, \
         referrer_url, country, region, city, ip FROM visits ORDER BY link_id, id",
    )?;
    let mut rows = read.query([])?;
    let mut link = None;
    let mut chunk: Vec<Row> = Vec::new();
    while let Some(row) = rows.next()? {
        let row_link: i64 = row.get(0)?;
        if link != Some(row_link) || chunk.len() == MAX_VISITS {
            if let Some(link) = link {
                store(conn, link, &chunk)?;
            }
            chunk.clear();
            link = Some(row_link);
        }
        let mut text: [Option<String>; 10] = Default::default();
        for (i, slot) in text.iter_mut().enumerate() {
            *slot = row.get(4 + i)?;
        }
        chunk.push(Row {
            at: row.get(1)?,
            bot: row.get(2)?,
            qr: row.get(3)?,
            text,
        });
    }
    if let Some(link) = link {
        store(conn, link, &chunk)?;
    }
    drop(rows);
    drop(read);
    conn.execute_batch("DROP TABLE visits")
}

/// `AND link_id ...` for a scope, with its one parameter (a link id or an owner id).
fn scope_filter(scope: StatsScope) -> (&'static str, Option<i64>) {
    match scope {
        StatsScope::Link(link) => ("link_id = ?3", Some(link.0)),
        StatsScope::Owner(Some(owner)) => (
            "link_id IN (SELECT id FROM links WHERE owner_user_id = ?3)",
            Some(owner.0),
        ),
        StatsScope::Owner(None) => ("?3 IS NULL", None),
    }
}

fn period_counts(
    conn: &Connection,
    table: &str,
    column: &str,
    scope: StatsScope,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<PeriodCounts>> {
    let (filter, param) = scope_filter(scope);
    let sql = format!(
        "SELECT {column}, SUM(humans), SUM(bots) FROM {table} \
         WHERE {column} >= ?1 AND {column} < ?2 AND {filter} GROUP BY {column} ORDER BY {column}"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(params![from, to, param], |row| {
        Ok(PeriodCounts {
            start: row.get(0)?,
            humans: row.get::<_, i64>(1)? as u64,
            bots: row.get::<_, i64>(2)? as u64,
        })
    })?;
    rows.collect()
}

fn read_stats(
    conn: &Connection,
    scope: StatsScope,
    from: i64,
    to: i64,
    top: usize,
) -> rusqlite::Result<StatsRows> {
    let hourly = period_counts(conn, "visit_hourly", "hour_start", scope, from, to)?;
    // Folded days count whole: a range that starts mid-day takes that day from its
    // start (hourly rows older than the hourly window no longer exist).
    let daily = period_counts(
        conn,
        "visit_daily",
        "day_start",
        scope,
        floor_to(from, DAY_S),
        to,
    )?;
    let (filter, param) = scope_filter(scope);
    let sql = format!(
        "SELECT b.key, SUM(b.value) FROM visit_day_dims, json_each(visit_day_dims.dims) AS b \
         WHERE day_start >= ?1 AND day_start < ?2 AND {filter} GROUP BY b.key"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut dims = Vec::new();
    let mut rows = statement.query(params![floor_to(from, DAY_S), to, param])?;
    while let Some(row) = rows.next()? {
        dims.extend(split_dim_key(row.get_ref(0)?.as_str()?, row.get(1)?));
    }
    let top_links = if top == 0 {
        Vec::new()
    } else {
        let sql = format!(
            "SELECT link_id, SUM(n) AS total FROM ( \
               SELECT link_id, humans + bots AS n FROM visit_hourly \
                 WHERE hour_start >= ?1 AND hour_start < ?2 AND {filter} \
               UNION ALL \
               SELECT link_id, humans + bots FROM visit_daily \
                 WHERE day_start >= ?1 AND day_start < ?2 AND {filter}) \
             GROUP BY link_id ORDER BY total DESC, link_id LIMIT ?4"
        );
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement.query_map(params![from, to, param, top as i64], |row| {
            Ok((LinkId(row.get(0)?), row.get::<_, i64>(1)? as u64))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    Ok(StatsRows {
        hourly,
        daily,
        dims,
        top_links,
    })
}

/// Stream batch ids recorded before this (Unix ms) are forgotten.
fn batch_ids_before() -> i64 {
    crate::domain::link::now_ms() - crate::store::STREAM_BATCH_DAYS * 86_400_000
}

#[async_trait]
impl AnalyticsStore for SqliteStore {
    async fn record_visits(
        &self,
        groups: Arc<Vec<VisitGroup>>,
        keep_raw: bool,
    ) -> Result<(), StoreError> {
        let (blocks, rollups) = prepare(&groups, keep_raw);
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                insert_blocks(conn, &blocks)?;
                add_rollups(conn, &rollups)
            })
        })
        .await
    }

    async fn record_stream_visits(
        &self,
        groups: Arc<Vec<VisitGroup>>,
        keep_raw: bool,
        batch_ids: Vec<String>,
    ) -> Result<bool, StoreError> {
        let (blocks, rollups) = prepare(&groups, keep_raw);
        let now = crate::domain::link::now_ms();
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                // One writer: checking first and inserting after cannot race.
                let mut seen = conn.prepare_cached("SELECT 1 FROM stream_batches WHERE id = ?1")?;
                for id in &batch_ids {
                    if seen.exists([id])? {
                        return Ok(false);
                    }
                }
                let mut record = conn
                    .prepare_cached("INSERT INTO stream_batches (id, stored_at) VALUES (?1, ?2)")?;
                for id in &batch_ids {
                    record.execute(params![id, now])?;
                }
                insert_blocks(conn, &blocks)?;
                add_rollups(conn, &rollups)?;
                Ok(true)
            })
        })
        .await
    }

    async fn stats(
        &self,
        scope: StatsScope,
        from: i64,
        to: i64,
        top: usize,
    ) -> Result<StatsRows, StoreError> {
        self.read(|conn| read_stats(conn, scope, from, to, top))
    }

    async fn visits(
        &self,
        link: LinkId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredVisit>, StoreError> {
        self.read(|conn| read_visits(conn, link, before, limit))
    }

    async fn prune(&self, raw_before: i64, hourly_before: i64) -> Result<(u64, u64), StoreError> {
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                // Whole blocks go once their last visit is past the window: a block
                // spans one drain of the queue, a fraction of a second.
                let deleted = conn
                    .prepare_cached("DELETE FROM visit_blocks WHERE last_at < ?1 RETURNING visits")?
                    .query_map([raw_before], |row| row.get::<_, i64>(0))?
                    .sum::<rusqlite::Result<i64>>()?;
                conn.prepare_cached(
                    "INSERT INTO visit_daily (link_id, day_start, humans, bots) \
                     SELECT link_id, (hour_start / 86400) * 86400 AS day, SUM(humans), SUM(bots) \
                     FROM visit_hourly WHERE hour_start < ?1 GROUP BY link_id, day \
                     ON CONFLICT (link_id, day_start) \
                     DO UPDATE SET humans = humans + excluded.humans, bots = bots + excluded.bots",
                )?
                .execute([hourly_before])?;
                let folded = conn
                    .prepare_cached("DELETE FROM visit_hourly WHERE hour_start < ?1")?
                    .execute([hourly_before])?;
                // Breakdowns of the same days go from one row per day to one per month
                // (the row of the month's first day): a year of a busy link is then a
                // few dozen thousand rows to read instead of hundreds of thousands.
                conn.prepare_cached(&format!(
                    "INSERT INTO visit_day_dims (link_id, day_start, dims) \
                     SELECT link_id, month, json_group_object(key, total) FROM ( \
                       SELECT link_id, {MONTH_START} AS month, b.key AS key, \
                         SUM(b.value) AS total \
                       FROM visit_day_dims, json_each(visit_day_dims.dims) AS b \
                       WHERE day_start < ?1 AND day_start <> {MONTH_START} \
                       GROUP BY link_id, month, b.key) \
                     WHERE true GROUP BY link_id, month \
                     ON CONFLICT (link_id, day_start) DO UPDATE SET dims = {ADD_DIMS}"
                ))?
                .execute([hourly_before])?;
                conn.prepare_cached(&format!(
                    "DELETE FROM visit_day_dims \
                     WHERE day_start < ?1 AND day_start <> {MONTH_START}"
                ))?
                .execute([hourly_before])?;
                conn.prepare_cached("DELETE FROM stream_batches WHERE stored_at < ?1")?
                    .execute([batch_ids_before()])?;
                Ok((deleted as u64, folded as u64))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::enrich::Profile;

    fn group(link_id: i64, browser: &'static str, times: Vec<i64>) -> VisitGroup {
        VisitGroup {
            profile: Profile {
                referrer_host: Some("example.org".into()),
                ..Profile::for_test(link_id, browser)
            },
            times,
        }
    }

    /// Every visit of `link`, paging `limit` at a time: (browser, at) newest first.
    async fn list_all(store: &SqliteStore, link: i64, limit: usize) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.visits(LinkId(link), cursor, limit).await.unwrap();
            let ids: Vec<i64> = page.iter().map(|v| v.id.unwrap()).collect();
            assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
            assert!(cursor.is_none_or(|c| ids.iter().all(|&id| id < c)));
            seen.extend(page.iter().map(|v| (v.browser.clone(), v.at.clone())));
            if page.len() < limit {
                return seen;
            }
            cursor = ids.last().copied();
        }
    }

    /// Stores `n` links, with ids 1 to `n`.
    async fn with_links(store: &SqliteStore, n: usize) {
        use crate::store::{LinkStore, NewLink};
        for i in 1..=n {
            store
                .insert_link(NewLink {
                    id: crate::domain::link::LinkId(i as i64),
                    domain: String::new(),
                    // Not shaped like a generated code: stored under the id given.
                    code: format!("l-{i}"),
                    url: "https://example.com".into(),
                    title: None,
                    created_at: 1,
                    expires_at: None,
                    max_clicks: None,
                    redirect: crate::domain::link::RedirectType::Found,
                    owner: None,
                    tags: Vec::new(),
                    password_hash: None,
                })
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_stream_batch_stored_twice_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
        with_links(&store, 1).await;
        let batch = Arc::new(vec![group(1, "Firefox", vec![1000, 2000])]);
        let ids = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        assert!(
            store
                .record_stream_visits(batch.clone(), true, ids(&["n-1", "n-2"]))
                .await
                .unwrap()
        );
        // Delivered again, alone or with a new one: nothing is written.
        assert!(
            !store
                .record_stream_visits(batch.clone(), true, ids(&["n-2"]))
                .await
                .unwrap()
        );
        assert!(
            !store
                .record_stream_visits(batch.clone(), true, ids(&["n-3", "n-1"]))
                .await
                .unwrap()
        );
        let count = |sql: &str| -> i64 {
            store
                .read(|conn| conn.query_row(sql, [], |r| r.get(0)))
                .unwrap()
        };
        assert_eq!(count("SELECT clicks FROM link_clicks WHERE link_id = 1"), 2);
        assert_eq!(count("SELECT SUM(visits) FROM visit_blocks"), 2);
        assert_eq!(count("SELECT COUNT(*) FROM stream_batches"), 2);
        // The new id of the refused call is free for its own batch.
        assert!(
            store
                .record_stream_visits(batch, true, ids(&["n-3"]))
                .await
                .unwrap()
        );
        assert_eq!(count("SELECT clicks FROM link_clicks WHERE link_id = 1"), 4);
    }

    #[tokio::test]
    async fn stored_visits_add_their_uncounted_clicks_to_the_totals() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
        with_links(&store, 2).await;
        let mut reserved = group(2, "Chrome", vec![3_600_500]);
        reserved.profile.counted = true;
        let batch = vec![
            group(1, "Firefox", vec![1000, 2000, 3_600_000]),
            group(2, "Chrome", vec![1000]),
            reserved,
        ];
        store.record_visits(Arc::new(batch), false).await.unwrap();
        let rows = |sql: &str| -> Vec<(i64, i64, i64)> {
            store
                .read(|conn| {
                    conn.prepare(sql)?
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .unwrap()
        };
        // Link 2's reserved click was counted by its reservation, not here.
        assert_eq!(
            rows("SELECT link_id, 0, clicks FROM link_clicks ORDER BY 1"),
            [(1, 0, 3), (2, 0, 1)]
        );
        // The stats count every stored visit.
        assert_eq!(
            rows("SELECT link_id, hour_start, humans FROM visit_hourly ORDER BY 1, 2"),
            [(1, 0, 2), (1, 3600, 1), (2, 0, 1), (2, 3600, 1)]
        );
    }

    #[tokio::test]
    async fn visits_page_newest_first_across_and_inside_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hop.db")).unwrap();
        with_links(&store, 2).await;
        let first_drain = vec![
            group(1, "Firefox", vec![2000, 1000]),
            group(1, "Chrome", vec![1500, 2500]),
            group(2, "Chrome", vec![1700]),
        ];
        store
            .record_visits(Arc::new(first_drain), true)
            .await
            .unwrap();
        store
            .record_visits(
                Arc::new(vec![group(1, "Safari", vec![3000, 3100, 3200])]),
                true,
            )
            .await
            .unwrap();
        let expected: Vec<(String, String)> = [
            ("Safari", 3200),
            ("Safari", 3100),
            ("Safari", 3000),
            ("Chrome", 2500),
            ("Firefox", 2000),
            ("Chrome", 1500),
            ("Firefox", 1000),
        ]
        .into_iter()
        .map(|(b, at)| (b.to_owned(), crate::domain::link::format_ms(at)))
        .collect();
        for limit in [1, 2, 3, 7, 100] {
            assert_eq!(list_all(&store, 1, limit).await, expected, "limit {limit}");
        }
        assert_eq!(list_all(&store, 2, 10).await.len(), 1);
        // Rollups count every visit; retention removes whole blocks and counts visits.
        let rows = store
            .stats(StatsScope::Link(LinkId(1)), 0, 10, 0)
            .await
            .unwrap();
        assert_eq!(rows.hourly.iter().map(|h| h.humans).sum::<u64>(), 7);
        assert_eq!(store.prune(2600, 0).await.unwrap().0, 5);
        assert_eq!(list_all(&store, 1, 10).await.len(), 3);
    }

    #[tokio::test]
    async fn breakdown_rows_of_version_7_pack_into_one_row_per_link_and_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.db");
        let rows: [(i64, &str, i64, &str, i64); 7] = [
            (1, "browser", 0, "Firefox", 3),
            (1, "browser", 0, "Chrome", 2),
            (1, "country", 0, "", 5),
            (1, "referrer", 0, "example.org:8080", 1),
            (1, "browser", 86_400, "Firefox", 4),
            (2, "city", 0, "Linköping", 7),
            (2, "city", 0, "\"quoted\"", 1),
        ];
        {
            SqliteStore::create_at_version(&path, 7).unwrap();
            let conn = Connection::open(&path).unwrap();
            for row in rows {
                conn.execute(
                    "INSERT INTO visit_dims (link_id, dim, day_start, value, clicks) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![row.0, row.1, row.2, row.3, row.4],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let dims = |link: i64, to: i64| {
            let scope = StatsScope::Link(LinkId(link));
            let mut dims = store
                .read(|conn| read_stats(conn, scope, 0, to, 0))
                .unwrap()
                .dims;
            dims.sort();
            dims
        };
        let own = |v: &[(&str, &str, u64)]| -> Vec<(String, String, u64)> {
            v.iter()
                .map(|(d, val, n)| (d.to_string(), val.to_string(), *n))
                .collect()
        };
        assert_eq!(
            dims(1, 86_400),
            own(&[
                ("browser", "Chrome", 2),
                ("browser", "Firefox", 3),
                ("country", "", 5),
                ("referrer", "example.org:8080", 1),
            ])
        );
        assert_eq!(
            dims(1, 2 * 86_400)[1],
            ("browser".into(), "Firefox".into(), 7)
        );
        assert_eq!(
            dims(2, 86_400),
            own(&[("city", "\"quoted\"", 1), ("city", "Linköping", 7)])
        );
        let conn = Connection::open(&path).unwrap();
        let packed: i64 = conn
            .query_row("SELECT COUNT(*) FROM visit_day_dims", [], |r| r.get(0))
            .unwrap();
        assert_eq!(packed, 3);
        // New visits of a migrated day join its row.
        with_links(&store, 1).await;
        store
            .record_visits(Arc::new(vec![group(1, "Firefox", vec![1000])]), false)
            .await
            .unwrap();
        assert_eq!(dims(1, 86_400)[1], ("browser".into(), "Firefox".into(), 4));
    }

    #[tokio::test]
    async fn rows_of_version_3_move_into_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hop.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &super::super::MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            let mut insert = conn
                .prepare(
                    "INSERT INTO visits (link_id, at, bot, qr, browser, os, device, language, \
                     referrer_host, country, city, ip) \
                     VALUES (?1, ?2, 0, ?3, ?4, 'iOS', 'mobile', 'sv', NULL, 'SE', ?5, ?6)",
                )
                .unwrap();
            // 5,000 visits of link 9 (more than a block holds) and one of link 4.
            for i in 0..5000_i64 {
                let city = if i % 2 == 0 { "Linköping" } else { "Malmö" };
                insert
                    .execute(params![
                        9,
                        1_000 + i,
                        i == 4999,
                        "Safari",
                        city,
                        "89.160.20.0"
                    ])
                    .unwrap();
            }
            insert
                .execute(params![
                    4,
                    77,
                    true,
                    "Chrome",
                    None::<String>,
                    None::<String>
                ])
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let newest = store.visits(LinkId(9), None, 2).await.unwrap();
        assert_eq!(newest[0].at, crate::domain::link::format_ms(5_999));
        assert!(newest[0].qr && !newest[1].qr);
        assert_eq!(newest[0].city.as_deref(), Some("Malmö"));
        assert_eq!(newest[1].city.as_deref(), Some("Linköping"));
        assert_eq!(newest[0].ip.as_deref(), Some("89.160.20.0"));
        assert_eq!(newest[0].language.as_deref(), Some("sv"));
        assert_eq!(list_all(&store, 9, 1000).await.len(), 5000);
        let four = store.visits(LinkId(4), None, 10).await.unwrap();
        assert_eq!(four.len(), 1);
        assert_eq!((four[0].city.as_deref(), four[0].qr), (None, true));
        let conn = Connection::open(&path).unwrap();
        let blocks: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM visit_blocks WHERE link_id = 9",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(blocks, 2);
        let old: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'visits'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0);
    }
}
