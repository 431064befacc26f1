//! `hop copy`: moves an embedded install (a SQLite file) onto PostgreSQL, ids and all,
//! so that every short URL redirects as before and every stats answer is the same.
//!
//! Order: the small tables first (users, keys, domains, settings with the code
//! permutation key, the code counters), in one transaction; then links by ranges of
//! [`CHUNK_LINKS`] links, each range with everything keyed by those ids (tags, click
//! totals and hours, visit rollups, raw visit blocks) in one transaction together
//! with the progress row (`copy_progress`). An interrupted copy resumes at the first
//! range it had not committed; nothing is half-copied. Ids are kept (links, users,
//! keys, visit blocks), and the sequences are moved past them at the end, so the
//! target goes on exactly where the source stopped.
//!
//! A target that already holds data is refused unless asked: rows whose keys exist
//! there are then kept as they are (`ON CONFLICT DO NOTHING`).

use super::{ConnectError, StoreOptions, analytics, describe, open};
use rusqlite::{OpenFlags, OptionalExtension};
use std::collections::BTreeSet;
use std::path::Path;
use tokio_postgres::types::ToSql;

/// Links per transaction.
pub const CHUNK_LINKS: i64 = 1000;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("no SQLite database at {0}")]
    NoSource(String),
    #[error(
        "the target database already holds {0} users, keys, domains or links; \
         pass --allow-non-empty to copy into it anyway"
    )]
    NotEmpty(i64),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("reading the SQLite database: {0}")]
    Source(#[from] rusqlite::Error),
    #[error("writing to PostgreSQL: {0}")]
    Target(String),
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Target(describe(&error))
    }
}

impl From<deadpool_postgres::PoolError> for CopyError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Target(error.to_string())
    }
}

/// How far a copy is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Links copied so far (by any run) and links in the source.
    pub links_done: u64,
    pub links_total: u64,
    /// Rows written by this run so far.
    pub rows: u64,
}

/// What a copy did.
#[derive(Debug, Clone, Copy)]
pub struct CopyReport {
    /// A copy of this source was found finished: nothing was written.
    pub already_done: bool,
    /// Continued an interrupted copy.
    pub resumed: bool,
    /// Rows written by this run.
    pub rows: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int8,
    Int4,
    Bool,
    Text,
    /// JSON, text in SQLite and `jsonb` in PostgreSQL.
    Json,
    Bytes,
}

impl Kind {
    fn sql(self) -> &'static str {
        match self {
            Kind::Int8 => "bigint[]",
            Kind::Int4 => "integer[]",
            Kind::Bool => "boolean[]",
            Kind::Text => "text[]",
            Kind::Json => "text[]::jsonb[]",
            Kind::Bytes => "bytea[]",
        }
    }
}

/// A table to copy: its columns (the same names on both sides) and what selects a
/// range of it (`link_id`, `id`, or everything).
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    by: Option<&'static str>,
    /// What to do with a row whose key is there already (`ON CONFLICT …`, or a
    /// `WHERE` on the unnested rows `u`).
    conflict: &'static str,
}

use Kind::{Bool, Bytes, Int4, Int8, Json, Text};

const DO_NOTHING: &str = "ON CONFLICT DO NOTHING";

const META_TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            ("id", Int8),
            ("name", Text),
            ("is_admin", Bool),
            ("created_at", Int8),
            ("removed_at", Int8),
            ("password_hash", Text),
        ],
        by: None,
        conflict: DO_NOTHING,
    },
    Table {
        name: "api_keys",
        columns: &[
            ("id", Int8),
            ("user_id", Int8),
            ("name", Text),
            ("prefix", Text),
            ("hash", Bytes),
            ("created_at", Int8),
            ("expires_at", Int8),
            ("revoked_at", Int8),
        ],
        by: None,
        conflict: DO_NOTHING,
    },
    Table {
        name: "domains",
        columns: &[("name", Text), ("created_at", Int8)],
        by: None,
        conflict: DO_NOTHING,
    },
    // The permutation key: without it, new codes would be a different sequence.
    Table {
        name: "settings",
        columns: &[("name", Text), ("value", Bytes)],
        by: None,
        conflict: DO_NOTHING,
    },
    // Leases continue after the source's: no generated code is handed out twice.
    Table {
        name: "counters",
        columns: &[("name", Text), ("next", Int8)],
        by: None,
        conflict: "ON CONFLICT (name) DO UPDATE SET next = GREATEST(t.next, excluded.next)",
    },
];

const LINK_TABLES: &[Table] = &[
    Table {
        name: "links",
        columns: &[
            ("domain", Text),
            ("code", Text),
            ("id", Int8),
            ("url", Text),
            ("title", Text),
            ("created_at", Int8),
            ("updated_at", Int8),
            ("expires_at", Int8),
            ("max_clicks", Int8),
            ("redirect_status", Int4),
            ("owner_user_id", Int8),
            ("disabled", Bool),
            ("password_hash", Text),
            ("deleted_at", Int8),
            ("disabled_reason", Text),
        ],
        by: Some("id"),
        conflict: DO_NOTHING,
    },
    // The same layout on both sides (SQLite schema 7, PostgreSQL 5): a link is found
    // by the id its code decodes to, else by this index.
    Table {
        name: "link_aliases",
        columns: &[("domain", Text), ("code", Text), ("link_id", Int8)],
        by: Some("link_id"),
        conflict: DO_NOTHING,
    },
    Table {
        name: "link_tags",
        columns: &[("link_id", Int8), ("tag", Text)],
        by: Some("link_id"),
        conflict: DO_NOTHING,
    },
    Table {
        name: "link_clicks",
        columns: &[("link_id", Int8), ("clicks", Int8)],
        by: Some("link_id"),
        conflict: DO_NOTHING,
    },
    Table {
        name: "visit_hourly",
        columns: &[
            ("link_id", Int8),
            ("hour_start", Int8),
            ("humans", Int8),
            ("bots", Int8),
        ],
        by: Some("link_id"),
        conflict: DO_NOTHING,
    },
    Table {
        name: "visit_daily",
        columns: &[
            ("link_id", Int8),
            ("day_start", Int8),
            ("humans", Int8),
            ("bots", Int8),
        ],
        by: Some("link_id"),
        conflict: DO_NOTHING,
    },
    Table {
        name: "visit_day_dims",
        columns: &[("link_id", Int8), ("day_start", Int8), ("dims", Json)],
        by: Some("link_id"),
        conflict: DO_NOTHING,
    },
    // Block ids are kept: a visit's id (block id << 16 | position) stays the same.
    // No unique key on a partitioned table without its partition key: a block whose
    // id is there already is skipped by a lookup in (link_id, id).
    Table {
        name: "visit_blocks",
        columns: &[
            ("id", Int8),
            ("link_id", Int8),
            ("first_at", Int8),
            ("last_at", Int8),
            ("visits", Int4),
            ("data", Bytes),
        ],
        by: Some("link_id"),
        conflict: "WHERE NOT EXISTS \
                   (SELECT 1 FROM visit_blocks b WHERE b.link_id = u.link_id AND b.id = u.id)",
    },
];

/// One column of rows read from SQLite, typed for PostgreSQL.
enum Column {
    Int8(Vec<Option<i64>>),
    Int4(Vec<Option<i32>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Column {
    fn new(kind: Kind) -> Self {
        match kind {
            Int8 => Column::Int8(Vec::new()),
            Int4 => Column::Int4(Vec::new()),
            Bool => Column::Bool(Vec::new()),
            Text | Json => Column::Text(Vec::new()),
            Bytes => Column::Bytes(Vec::new()),
        }
    }

    fn push(&mut self, row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<()> {
        match self {
            Column::Int8(v) => v.push(row.get(i)?),
            Column::Int4(v) => v.push(row.get::<_, Option<i64>>(i)?.map(|n| n as i32)),
            Column::Bool(v) => v.push(row.get::<_, Option<i64>>(i)?.map(|n| n != 0)),
            Column::Text(v) => v.push(row.get(i)?),
            Column::Bytes(v) => v.push(row.get(i)?),
        }
        Ok(())
    }

    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Int8(v) => v,
            Column::Int4(v) => v,
            Column::Bool(v) => v,
            Column::Text(v) => v,
            Column::Bytes(v) => v,
        }
    }
}

/// Rows of `table` in `[lo, hi)` of its range key (all rows for a table without one).
fn read(
    source: &rusqlite::Connection,
    table: &Table,
    lo: i64,
    hi: i64,
) -> rusqlite::Result<(Vec<Column>, usize)> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let mut sql = format!("SELECT {} FROM {}", names.join(", "), table.name);
    if let Some(key) = table.by {
        sql.push_str(&format!(" WHERE {key} >= ?1 AND {key} < ?2"));
    }
    let mut columns: Vec<Column> = table.columns.iter().map(|(_, k)| Column::new(*k)).collect();
    let mut statement = source.prepare_cached(&sql)?;
    let mut rows = if table.by.is_some() {
        statement.query([lo, hi])?
    } else {
        statement.query([])?
    };
    let mut count = 0;
    while let Some(row) = rows.next()? {
        for (i, column) in columns.iter_mut().enumerate() {
            column.push(row, i)?;
        }
        count += 1;
    }
    Ok((columns, count))
}

/// Writes what [`read`] read, in one statement.
async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    table: &Table,
    columns: &[Column],
) -> Result<(), tokio_postgres::Error> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("${}::{}", i + 1, kind.sql()))
        .collect();
    let sql = format!(
        "INSERT INTO {} AS t ({names}) SELECT * FROM unnest({}) AS u({names}) {}",
        table.name,
        arrays.join(", "),
        table.conflict,
        names = names.join(", "),
    );
    let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(Column::as_param).collect();
    let statement = tx.prepare_cached(&sql).await?;
    tx.execute(&statement, &params).await?;
    Ok(())
}

/// Copies `table`'s rows in `[lo, hi)` into the transaction; returns how many.
async fn copy_table(
    source: &rusqlite::Connection,
    tx: &deadpool_postgres::Transaction<'_>,
    table: &Table,
    lo: i64,
    hi: i64,
) -> Result<u64, CopyError> {
    let (columns, count) = read(source, table, lo, hi)?;
    if count == 0 {
        return Ok(0);
    }
    if table.name == "visit_blocks"
        && let Column::Int8(lasts) = &columns[3]
    {
        let months: BTreeSet<i64> = lasts.iter().flatten().copied().collect();
        analytics::ensure_months(tx, &months).await?;
    }
    write(tx, table, &columns).await?;
    Ok(count as u64)
}

/// Copies the SQLite database at `source` into the PostgreSQL database at `target`
/// (migrated first), calling `progress` after each committed range.
pub async fn copy_from_sqlite(
    source: &Path,
    target: &str,
    options: &StoreOptions,
    allow_non_empty: bool,
    mut progress: impl FnMut(Progress),
) -> Result<CopyReport, CopyError> {
    if !source.is_file() {
        return Err(CopyError::NoSource(source.display().to_string()));
    }
    // Brought to this hop's schema, as `hop serve` would do; then read only.
    crate::store::sqlite::SqliteStore::migrate_only(source).map_err(|e| {
        CopyError::Connect(ConnectError::Open(format!("{}: {e}", source.display())))
    })?;
    let sqlite = rusqlite::Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let name = std::fs::canonicalize(source)
        .unwrap_or_else(|_| source.to_owned())
        .display()
        .to_string();
    let (pool, _) = open(target, options).await?;
    let mut client = pool.get().await?;
    let state = client
        .query_opt(
            "SELECT next_link_id, done FROM copy_progress WHERE source = $1",
            &[&name],
        )
        .await?;
    let mut rows = 0;
    let (mut next, resumed) = match state {
        Some(row) if row.try_get::<_, bool>(1)? => {
            return Ok(CopyReport {
                already_done: true,
                resumed: false,
                rows: 0,
            });
        }
        Some(row) => (row.try_get::<_, i64>(0)?, true),
        None => {
            let held: i64 = client
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM api_keys) \
                     + (SELECT COUNT(*) FROM domains) + (SELECT COUNT(*) FROM links)",
                    &[],
                )
                .await?
                .try_get(0)?;
            if held > 0 && !allow_non_empty {
                return Err(CopyError::NotEmpty(held));
            }
            let tx = client.transaction().await?;
            for table in META_TABLES {
                rows += copy_table(&sqlite, &tx, table, 0, 0).await?;
            }
            tx.execute(
                "INSERT INTO copy_progress (source, next_link_id, done) VALUES ($1, 0, false)",
                &[&name],
            )
            .await?;
            tx.commit().await?;
            (0, false)
        }
    };
    let end: i64 = sqlite.query_row(
        "SELECT COALESCE(MAX(m), -1) + 1 FROM (\
           SELECT MAX(id) AS m FROM links UNION ALL SELECT MAX(link_id) FROM link_tags \
           UNION ALL SELECT MAX(link_id) FROM link_clicks \
           UNION ALL SELECT MAX(link_id) FROM visit_hourly \
           UNION ALL SELECT MAX(link_id) FROM visit_daily \
           UNION ALL SELECT MAX(link_id) FROM visit_day_dims \
           UNION ALL SELECT MAX(link_id) FROM visit_blocks)",
        [],
        |row| row.get(0),
    )?;
    let count = |sql: &str, range: &[i64]| -> rusqlite::Result<u64> {
        sqlite.query_row(sql, rusqlite::params_from_iter(range), |row| {
            row.get::<_, i64>(0).map(|n| n as u64)
        })
    };
    let links_total = count("SELECT COUNT(*) FROM links", &[])?;
    let mut links_done = count("SELECT COUNT(*) FROM links WHERE id < ?1", &[next])?;
    while next < end {
        // Ids are sparse (a generated code's id is its counter value, an alias's may be
        // anywhere below 2^63): each range ends after CHUNK_LINKS links, the last one
        // past every id any table holds.
        let hi: i64 = sqlite
            .query_row(
                "SELECT id FROM links WHERE id >= ?1 ORDER BY id LIMIT 1 OFFSET ?2",
                [next, CHUNK_LINKS],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(end);
        links_done += count(
            "SELECT COUNT(*) FROM links WHERE id >= ?1 AND id < ?2",
            &[next, hi],
        )?;
        let tx = client.transaction().await?;
        for table in LINK_TABLES {
            rows += copy_table(&sqlite, &tx, table, next, hi).await?;
        }
        tx.execute(
            "UPDATE copy_progress SET next_link_id = $2 WHERE source = $1",
            &[&name, &hi],
        )
        .await?;
        tx.commit().await?;
        next = hi;
        progress(Progress {
            links_done,
            links_total,
            rows,
        });
    }
    let tx = client.transaction().await?;
    // Past every copied id: what the target creates next follows on.
    tx.batch_execute(
        "SELECT setval('visit_blocks_id_seq', \
           COALESCE((SELECT MAX(id) FROM visit_blocks), 0) + 1, false); \
         SELECT setval(pg_get_serial_sequence('users', 'id'), \
           COALESCE((SELECT MAX(id) FROM users), 0) + 1, false); \
         SELECT setval(pg_get_serial_sequence('api_keys', 'id'), \
           COALESCE((SELECT MAX(id) FROM api_keys), 0) + 1, false);",
    )
    .await?;
    tx.execute(
        "UPDATE copy_progress SET done = true WHERE source = $1",
        &[&name],
    )
    .await?;
    tx.commit().await?;
    Ok(CopyReport {
        already_done: false,
        resumed,
        rows,
    })
}
