//! Click analytics in SQLite: raw visits and their rollups, written together.
//!
//! A batch of visits is one writer job: the raw rows go in (if kept), then each
//! (link, hour) and (link, dimension, day, value) is summed in memory first and
//! written once, in key order, so a batch of thousands of visits to a few links
//! costs a few dozen upserts. Raw rows and rollups commit in the same transaction:
//! N redirects stored give exactly N in every rollup.

use super::{SqliteStore, in_savepoint};
use crate::analytics::enrich::Visit;
use crate::domain::link::{LinkId, format_ms};
use crate::store::{AnalyticsStore, PeriodCounts, StatsRows, StatsScope, StoreError, StoredVisit};
use async_trait::async_trait;
use rusqlite::{Connection, params};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// SQL: the first day of `day_start`'s UTC month, in Unix seconds.
const MONTH_START: &str =
    "CAST(strftime('%s', day_start, 'unixepoch', 'start of month') AS INTEGER)";

const HOUR_S: i64 = 3600;
const DAY_S: i64 = 86_400;

/// The dimensions visits are broken down by, as stored in `visit_dims.dim`.
pub const DIMENSIONS: [&str; 8] = [
    "country", "region", "city", "referrer", "browser", "os", "device", "language",
];

fn floor_to(seconds: i64, unit: i64) -> i64 {
    seconds.div_euclid(unit) * unit
}

/// The values a visit contributes to each dimension ('' when unknown).
fn dimension_values(visit: &Visit) -> [&str; 8] {
    fn text(value: &Option<String>) -> &str {
        value.as_deref().unwrap_or("")
    }
    [
        text(&visit.country),
        text(&visit.region),
        text(&visit.city),
        text(&visit.referrer_host),
        visit.browser,
        visit.os,
        visit.device,
        text(&visit.language),
    ]
}

fn insert_raw(conn: &Connection, visits: &[Visit]) -> rusqlite::Result<()> {
    // One row per statement. Rows 32 to a statement were tried: each multi-row insert
    // opens a statement journal inside the job's savepoint, and the cost of that grew
    // with the table (15,000 visits/s at 600,000 rows, against 150,000 one at a time).
    let mut insert = conn.prepare_cached(
        "INSERT INTO visits (link_id, at, bot, qr, browser, os, device, language, \
         referrer_host, referrer_url, country, region, city, ip) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for visit in visits {
        insert.execute(params![
            visit.link_id,
            visit.at_ms,
            visit.bot,
            visit.qr,
            visit.browser,
            visit.os,
            visit.device,
            visit.language,
            visit.referrer_host,
            visit.referrer_url,
            visit.country,
            visit.region,
            visit.city,
            visit.ip.map(|ip| ip.to_string()),
        ])?;
    }
    Ok(())
}

fn add_rollups(conn: &Connection, visits: &[Visit]) -> rusqlite::Result<()> {
    let mut hours: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    // Human visits are first counted per (link, day, all eight values): a batch is
    // mostly the same few visitor profiles, so this is one hash per visit instead of
    // eight ordered-map updates.
    let mut profiles: HashMap<(i64, i64, [&str; 8]), i64> = HashMap::new();
    for visit in visits {
        let at_s = visit.at_ms.div_euclid(1000);
        let counts = hours
            .entry((visit.link_id, floor_to(at_s, HOUR_S)))
            .or_default();
        if visit.bot {
            counts.1 += 1;
            continue;
        }
        counts.0 += 1;
        let day = floor_to(at_s, DAY_S);
        *profiles
            .entry((visit.link_id, day, dimension_values(visit)))
            .or_default() += 1;
    }
    let mut dims: BTreeMap<(i64, &str, i64, &str), i64> = BTreeMap::new();
    for ((link, day, values), clicks) in profiles {
        for (dim, value) in DIMENSIONS.iter().zip(values) {
            *dims.entry((link, dim, day, value)).or_default() += clicks;
        }
    }
    let mut hourly = conn.prepare_cached(
        "INSERT INTO visit_hourly (link_id, hour_start, humans, bots) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (link_id, hour_start) \
         DO UPDATE SET humans = humans + ?3, bots = bots + ?4",
    )?;
    for ((link, hour), (humans, bots)) in hours {
        hourly.execute(params![link, hour, humans, bots])?;
    }
    let mut daily = conn.prepare_cached(
        "INSERT INTO visit_dims (link_id, dim, day_start, value, clicks) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (link_id, dim, day_start, value) DO UPDATE SET clicks = clicks + ?5",
    )?;
    for ((link, dim, day, value), clicks) in dims {
        daily.execute(params![link, dim, day, value, clicks])?;
    }
    Ok(())
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
        "SELECT dim, value, SUM(clicks) FROM visit_dims \
         WHERE dim = ?4 AND day_start >= ?1 AND day_start < ?2 AND {filter} \
         GROUP BY value"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut dims = Vec::new();
    for dim in DIMENSIONS {
        let rows = statement.query_map(params![floor_to(from, DAY_S), to, param, dim], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)? as u64,
            ))
        })?;
        for row in rows {
            dims.push(row?);
        }
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

fn visit_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredVisit> {
    Ok(StoredVisit {
        id: Some(row.get(0)?),
        at: format_ms(row.get(1)?),
        bot: row.get(2)?,
        qr: row.get(3)?,
        browser: row.get(4)?,
        os: row.get(5)?,
        device: row.get(6)?,
        language: row.get(7)?,
        referrer_host: row.get(8)?,
        referrer_url: row.get(9)?,
        country: row.get(10)?,
        region: row.get(11)?,
        city: row.get(12)?,
        ip: row.get(13)?,
    })
}

#[async_trait]
impl AnalyticsStore for SqliteStore {
    async fn record_visits(
        &self,
        visits: Arc<Vec<Visit>>,
        keep_raw: bool,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                if keep_raw {
                    insert_raw(conn, &visits)?;
                }
                add_rollups(conn, &visits)
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
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, at, bot, qr, browser, os, device, language, referrer_host, \
                 referrer_url, country, region, city, ip FROM visits \
                 WHERE link_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = statement.query_map(
                params![link.0, before.unwrap_or(i64::MAX), limit as i64],
                visit_from_row,
            )?;
            rows.collect()
        })
    }

    async fn prune(&self, raw_before: i64, hourly_before: i64) -> Result<(u64, u64), StoreError> {
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM visits WHERE at < ?1")?
                    .execute([raw_before])?;
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
                    "INSERT INTO visit_dims (link_id, dim, day_start, value, clicks) \
                     SELECT link_id, dim, {MONTH_START} AS month, value, SUM(clicks) \
                     FROM visit_dims WHERE day_start < ?1 AND day_start <> {MONTH_START} \
                     GROUP BY link_id, dim, month, value \
                     ON CONFLICT (link_id, dim, day_start, value) \
                     DO UPDATE SET clicks = clicks + excluded.clicks"
                ))?
                .execute([hourly_before])?;
                conn.prepare_cached(&format!(
                    "DELETE FROM visit_dims WHERE day_start < ?1 AND day_start <> {MONTH_START}"
                ))?
                .execute([hourly_before])?;
                Ok((deleted as u64, folded as u64))
            })
        })
        .await
    }
}
