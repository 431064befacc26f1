//! Links on PostgreSQL: creates gathered into shared transactions, lookups by the
//! full partition key, listings with keyset pagination.
//!
//! Group commit: [`run_inserter`] takes every single create that is waiting (up to
//! [`MAX_BATCH`]) and inserts them with one multi-row statement in one transaction,
//! with up to [`BATCHES_IN_FLIGHT`] such transactions at once, so that one commit (one
//! fsync on the server) acknowledges many creates. A bulk create is the same
//! statement for its own items. Each item still succeeds or fails alone: a taken code
//! is skipped by `ON CONFLICT DO NOTHING` (and reported as a conflict), an unknown
//! domain is found before the insert, with the domains locked until commit.

use super::{PgStore, pool_error, within};
use crate::domain::code::CodeBook;
use crate::domain::link::{Link, LinkChanges, LinkId, RedirectType, UserId, now_ms};
use crate::store::{LinkQuery, LinkStore, NewLink, RedirectRecord, StoreError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Most creates in one transaction.
const MAX_BATCH: usize = 1000;
/// Transactions of creates running at once: while some wait for their commit, the
/// next batch is already being gathered and sent.
const BATCHES_IN_FLIGHT: usize = 4;
/// Creates waiting for the batcher before senders wait their turn.
pub(super) const QUEUE_DEPTH: usize = 8192;

/// A single create and where to send its outcome.
pub(super) struct InsertJob {
    link: NewLink,
    reply: oneshot::Sender<Result<Link, StoreError>>,
}

/// Gathers waiting creates into batches until every sender is gone.
pub(super) async fn run_inserter(
    pool: Pool,
    codes: Arc<CodeBook>,
    mut jobs: mpsc::Receiver<InsertJob>,
    timeout: Duration,
) {
    let permits = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = jobs.recv().await {
        // Wait for a free transaction before gathering: creates that arrive meanwhile
        // join this batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        let codes = codes.clone();
        tokio::spawn(async move {
            let (links, replies): (Vec<NewLink>, Vec<_>) =
                batch.into_iter().map(|job| (job.link, job.reply)).unzip();
            match within(timeout, insert_batch(&pool, &codes, links)).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Err(error) => {
                    let text = error.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Database(text.clone())));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Inserts `links` in one transaction; each item succeeds or fails alone. The outer
/// error means nothing was stored.
///
/// Where each link goes (the same rules as SQLite's `insert_one`):
/// - a link whose code decodes to a value goes under that id: a generated link's own
///   id, or for an alias the id the generated code equal to it would have had. Taken
///   (a primary-key conflict, which also waits for a concurrent insert of the same id
///   to commit) or an alias entry holding the code: a generated link fails, an alias
///   falls through;
/// - an alias that fell through, or that cannot decode, keeps the id it came with and
///   takes an entry in `link_aliases`, refused if the entry exists or if the row its
///   code decodes to holds this code.
///
/// No lock is needed: an entry in `link_aliases` decodes to an id some row has, so a
/// generated insert can never race an alias of its own code into that index, and two
/// inserts of one id meet in the primary key.
pub(super) async fn insert_batch(
    pool: &Pool,
    codes: &CodeBook,
    links: Vec<NewLink>,
) -> Result<Vec<Result<Link, StoreError>>, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await?;
    let mut named: Vec<&str> = links
        .iter()
        .map(|link| link.domain.as_str())
        .filter(|domain| !domain.is_empty())
        .collect();
    named.sort_unstable();
    named.dedup();
    // Locked (in name order) until commit: a domain found here cannot be removed
    // before these links are in it.
    let registered: HashSet<String> = if named.is_empty() {
        HashSet::new()
    } else {
        let statement = tx
            .prepare_cached(
                "SELECT name FROM domains WHERE name = ANY($1) ORDER BY name FOR KEY SHARE",
            )
            .await?;
        tx.query(&statement, &[&named])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?
    };
    let mut outcomes: Vec<Option<Result<LinkId, StoreError>>> = links
        .iter()
        .map(|link| {
            (!(link.domain.is_empty() || registered.contains(&link.domain)))
                .then_some(Err(StoreError::UnknownDomain))
        })
        .collect();
    let decoded: Vec<Option<i64>> = links
        .iter()
        .map(|link| codes.decode_id(&link.code))
        .collect();

    // 1. Under the id each code decodes to.
    let slotted: Vec<(usize, i64)> = (0..links.len())
        .filter(|&i| outcomes[i].is_none())
        .filter_map(|i| decoded[i].map(|slot| (i, slot)))
        .collect();
    let mut stored = insert_rows(&tx, &links, &slotted, true).await?;
    let mut fallback = Vec::new();
    for &(i, slot) in &slotted {
        // `remove`: of two items with one code, the first (in array order) went in.
        if stored.remove(&(slot, links[i].domain.clone(), links[i].code.clone())) {
            outcomes[i] = Some(Ok(LinkId(slot)));
        } else if decoded[i] == Some(links[i].id.0) {
            outcomes[i] = Some(Err(StoreError::Conflict));
        } else {
            fallback.push(i);
        }
    }
    fallback.extend((0..links.len()).filter(|&i| outcomes[i].is_none() && decoded[i].is_none()));

    // 2. The rest under their own ids, with an alias entry each.
    if !fallback.is_empty() {
        let slots: Vec<i64> = fallback.iter().filter_map(|&i| decoded[i]).collect();
        let statement = tx
            .prepare_cached("SELECT domain, code FROM links WHERE id = ANY($1)")
            .await?;
        let holders: HashSet<(String, String)> = tx
            .query(&statement, &[&slots])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        fallback.retain(|&i| {
            let held = holders.contains(&(links[i].domain.clone(), links[i].code.clone()));
            if held {
                outcomes[i] = Some(Err(StoreError::Conflict));
            }
            !held
        });
        let domains: Vec<&str> = fallback.iter().map(|&i| links[i].domain.as_str()).collect();
        let aliases: Vec<&str> = fallback.iter().map(|&i| links[i].code.as_str()).collect();
        let ids: Vec<i64> = fallback.iter().map(|&i| links[i].id.0).collect();
        // Of two items with one code, the first in array order gets the entry.
        let statement = tx
            .prepare_cached(
                "INSERT INTO link_aliases (domain, code, link_id) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                 ON CONFLICT DO NOTHING RETURNING link_id",
            )
            .await?;
        let entered: HashSet<i64> = tx
            .query(&statement, &[&domains, &aliases, &ids])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut own = Vec::new();
        for i in fallback {
            if entered.contains(&links[i].id.0) {
                outcomes[i] = Some(Ok(links[i].id));
                own.push((i, links[i].id.0));
            } else {
                outcomes[i] = Some(Err(StoreError::Conflict));
            }
        }
        insert_rows(&tx, &links, &own, false).await?;
    }

    let mut tag_links = Vec::new();
    let mut tags = Vec::new();
    for (link, outcome) in links.iter().zip(&outcomes) {
        if let Some(Ok(id)) = outcome {
            for tag in &link.tags {
                tag_links.push(id.0);
                tags.push(tag.as_str());
            }
        }
    }
    if !tags.is_empty() {
        let statement = tx
            .prepare_cached(
                "INSERT INTO link_tags (link_id, tag) \
                 SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&statement, &[&tag_links, &tags]).await?;
    }
    tx.commit().await?;
    Ok(links
        .into_iter()
        .zip(outcomes)
        .map(|(link, outcome)| {
            outcome
                .expect("every item has an outcome")
                .map(|id| new_link(id, link))
        })
        .collect())
}

/// Inserts `links[i]` under `id` for each `(i, id)` in `rows`, in one statement, and
/// returns what was stored as (id, domain, code). `guarded`: a row whose id is taken,
/// or whose code an alias entry holds in its domain, is skipped; otherwise every row
/// must go in.
async fn insert_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    links: &[NewLink],
    rows: &[(usize, i64)],
    guarded: bool,
) -> Result<HashSet<(i64, String, String)>, StoreError> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let items: Vec<&NewLink> = rows.iter().map(|&(i, _)| &links[i]).collect();
    let column = |f: fn(&NewLink) -> Option<&str>| -> Vec<Option<&str>> {
        items.iter().map(|link| f(link)).collect()
    };
    let domains = column(|l| Some(l.domain.as_str()));
    let codes = column(|l| Some(l.code.as_str()));
    let urls = column(|l| Some(l.url.as_str()));
    let titles = column(|l| l.title.as_deref());
    let passwords = column(|l| l.password_hash.as_deref());
    let created: Vec<i64> = items.iter().map(|l| l.created_at).collect();
    let expires: Vec<Option<i64>> = items.iter().map(|l| l.expires_at).collect();
    let maxes: Vec<Option<i64>> = items
        .iter()
        .map(|l| l.max_clicks.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .collect();
    let statuses: Vec<i32> = items.iter().map(|l| i32::from(l.redirect.code())).collect();
    let owners: Vec<Option<i64>> = items.iter().map(|l| l.owner.map(|u| u.0)).collect();
    let ids: Vec<i64> = rows.iter().map(|&(_, id)| id).collect();
    const INSERT: &str = "INSERT INTO links (id, domain, code, url, title, created_at, \
         updated_at, expires_at, max_clicks, redirect_status, owner_user_id, password_hash) \
         SELECT i, d, c, u, t, a, a, e, m, r, o, p FROM unnest($11::bigint[], \
         $1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
         $7::bigint[], $8::integer[], $9::bigint[], $10::text[]) \
         AS v(i, d, c, u, t, a, e, m, r, o, p)";
    let sql = if guarded {
        format!(
            "{INSERT} WHERE NOT EXISTS (SELECT 1 FROM link_aliases l \
             WHERE l.domain = v.d AND l.code = v.c) \
             ON CONFLICT (id) DO NOTHING RETURNING id, domain, code"
        )
    } else {
        format!("{INSERT} RETURNING id, domain, code")
    };
    let statement = tx.prepare_cached(&sql).await?;
    let params: [&(dyn ToSql + Sync); 11] = [
        &domains, &codes, &urls, &titles, &created, &expires, &maxes, &statuses, &owners,
        &passwords, &ids,
    ];
    tx.query(&statement, &params)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(StoreError::from)
}

fn new_link(id: LinkId, link: NewLink) -> Link {
    Link {
        id,
        domain: link.domain,
        code: link.code,
        url: link.url,
        title: link.title,
        created_at: link.created_at,
        expires_at: link.expires_at,
        max_clicks: link.max_clicks,
        redirect: link.redirect,
        clicks: 0,
        owner: link.owner,
        disabled: false,
        disabled_reason: None,
        updated_at: link.created_at,
        tags: link.tags,
        password_hash: link.password_hash,
    }
}

/// `SELECT columns` of the live link with code `$2` in domain `$1`, given `$3`, the id
/// the code decodes to (NULL if it cannot be a generated code): the row with that id
/// if it holds this code, else the row the alias index names. Both name the partition
/// key (the id; for `link_aliases`, the code), so each reads one partition, and a
/// generated hit never reads the alias index.
macro_rules! by_code {
    ($columns:expr) => {
        concat!(
            "(SELECT ",
            $columns,
            " FROM links WHERE links.id = $3 AND links.domain = $1 \
             AND links.code = $2 AND links.deleted_at IS NULL) UNION ALL (SELECT ",
            $columns,
            " FROM links WHERE links.id = (SELECT link_id FROM link_aliases \
             WHERE domain = $1 AND code = $2) AND links.deleted_at IS NULL) LIMIT 1"
        )
    };
}

/// Columns read by [`link_from_row`], in its order.
macro_rules! link_columns {
    () => {
        "links.id, links.code, links.url, links.title, links.created_at, links.expires_at, \
         links.max_clicks, links.redirect_status, \
         COALESCE((SELECT clicks FROM link_clicks WHERE link_id = links.id), 0), \
         links.owner_user_id, links.disabled, links.updated_at, \
         ARRAY(SELECT tag FROM link_tags WHERE link_id = links.id ORDER BY tag COLLATE \"C\"), \
         links.password_hash, links.domain, links.disabled_reason"
    };
}

fn link_from_row(row: &Row) -> Result<Link, tokio_postgres::Error> {
    let status: i32 = row.try_get(7)?;
    Ok(Link {
        id: LinkId(row.try_get(0)?),
        domain: row.try_get(14)?,
        code: row.try_get(1)?,
        url: row.try_get(2)?,
        title: row.try_get(3)?,
        created_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        max_clicks: row.try_get::<_, Option<i64>>(6)?.map(|n| n as u64),
        redirect: RedirectType::from_code(status as u16).unwrap_or_default(),
        clicks: row.try_get::<_, i64>(8)? as u64,
        owner: row.try_get::<_, Option<i64>>(9)?.map(UserId),
        disabled: row.try_get(10)?,
        updated_at: row.try_get(11)?,
        tags: row.try_get(12)?,
        password_hash: row.try_get(13)?,
        disabled_reason: row.try_get(15)?,
    })
}

fn links_from_rows(rows: &[Row]) -> Result<Vec<Link>, StoreError> {
    rows.iter()
        .map(|row| link_from_row(row).map_err(StoreError::from))
        .collect()
}

#[async_trait]
impl LinkStore for PgStore {
    async fn insert_link(&self, link: NewLink) -> Result<Link, StoreError> {
        // The batch has the same limit; this one also covers the wait for a batch.
        self.timed(async {
            let (reply, answer) = oneshot::channel();
            self.inserts
                .send(InsertJob { link, reply })
                .await
                .map_err(|_| StoreError::Database("link inserter has stopped".into()))?;
            answer
                .await
                .map_err(|_| StoreError::Database("link inserter dropped a create".into()))?
        })
        .await
    }

    async fn insert_links(
        &self,
        links: Vec<NewLink>,
    ) -> Result<Vec<Result<Link, StoreError>>, StoreError> {
        self.timed(insert_batch(&self.pool, &self.codes, links))
            .await
    }

    async fn link_by_code(&self, domain: &str, code: &str) -> Result<Option<Link>, StoreError> {
        let id = self.codes.decode_id(code);
        self.query_opt(by_code!(link_columns!()), &[&domain, &code, &id])
            .await?
            .map(|row| link_from_row(&row))
            .transpose()
            .map_err(StoreError::from)
    }

    async fn link_by_id(&self, id: LinkId) -> Result<Option<Link>, StoreError> {
        self.query_opt(
            concat!(
                "SELECT ",
                link_columns!(),
                " FROM links WHERE id = $1 AND deleted_at IS NULL"
            ),
            &[&id.0],
        )
        .await?
        .map(|row| link_from_row(&row))
        .transpose()
        .map_err(StoreError::from)
    }

    async fn tag_counts(&self, owner: Option<UserId>) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .read_rows(
                "SELECT t.tag, COUNT(*) FROM link_tags t JOIN links l ON l.id = t.link_id \
                 WHERE l.deleted_at IS NULL AND ($1::bigint IS NULL OR l.owner_user_id = $1) \
                 GROUP BY t.tag ORDER BY COUNT(*) DESC, t.tag COLLATE \"C\"",
                &[&owner.map(|u| u.0)],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)))
            .collect()
    }

    async fn list_links(&self, query: LinkQuery) -> Result<Vec<Link>, StoreError> {
        // The sort key: a value and the id as tie-breaker, compared as a row value so
        // that a page starts exactly after the previous one (keyset pagination). The
        // SQL is put together from fixed fragments; every value is a bind parameter.
        let (value, order, before) = query.sort.sql_key();
        let mut sql = format!(
            "SELECT {} FROM links LEFT JOIN link_clicks c ON c.link_id = links.id \
             WHERE links.deleted_at IS NULL",
            link_columns!()
        );
        let mut binds: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(owner) = query.owner {
            bind(&mut sql, " AND links.owner_user_id = ?", Box::new(owner.0));
        }
        if let Some(domain) = &query.domain {
            bind(&mut sql, " AND links.domain = ?", Box::new(domain.clone()));
        }
        if let Some(from) = query.created_from {
            bind(&mut sql, " AND links.created_at >= ?", Box::new(from));
        }
        if let Some(before) = query.created_before {
            bind(&mut sql, " AND links.created_at < ?", Box::new(before));
        }
        if let Some(tag) = &query.tag {
            bind(
                &mut sql,
                " AND links.id IN (SELECT link_id FROM link_tags WHERE tag = ?)",
                Box::new(tag.clone()),
            );
        }
        if let Some(text) = &query.text {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            bind(
                &mut sql,
                // Every `?` of a clause becomes the same numbered parameter.
                " AND (links.code ILIKE ? ESCAPE '\\' OR links.url ILIKE ? ESCAPE '\\' \
                 OR links.title ILIKE ? ESCAPE '\\')",
                Box::new(format!("%{escaped}%")),
            );
        }
        if let Some(after) = query.after {
            let comparison = if before { "<" } else { ">" };
            bind(
                &mut sql,
                &format!(" AND ({value}, links.id) {comparison} (?::bigint, "),
                Box::new(after.value),
            );
            bind(&mut sql, "?::bigint)", Box::new(after.id.0));
        }
        sql.push_str(&format!(" ORDER BY {value} {order}, links.id {order}"));
        bind(&mut sql, " LIMIT ?", Box::new(query.limit as i64));
        let params: Vec<&(dyn ToSql + Sync)> = binds
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self.read_rows(&sql, &params).await?;
        links_from_rows(&rows)
    }

    async fn redirect_by_code(
        &self,
        domain: &str,
        code: &str,
    ) -> Result<Option<RedirectRecord>, StoreError> {
        const SQL: &str = by_code!(
            "links.id, links.url, links.expires_at, links.max_clicks, links.redirect_status, \
             links.disabled, links.password_hash, CASE WHEN links.max_clicks IS NULL THEN 0 \
             ELSE COALESCE((SELECT clicks FROM link_clicks WHERE link_id = links.id), 0) END, \
             links.disabled_reason IS NOT NULL"
        );
        let id = self.codes.decode_id(code);
        let params: [&(dyn ToSql + Sync); 3] = [&domain, &code, &id];
        // A replica may not have a link created a moment ago: what it does not know,
        // the primary decides.
        let row = match self.replica_rows(SQL, &params).await {
            Some(rows) if !rows.is_empty() => rows.into_iter().next(),
            _ => self.query_opt(SQL, &params).await?,
        };
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RedirectRecord {
            id: LinkId(row.try_get(0)?),
            url: row.try_get(1)?,
            expires_at: row.try_get(2)?,
            max_clicks: row.try_get::<_, Option<i64>>(3)?.map(|n| n as u64),
            redirect: RedirectType::from_code(row.try_get::<_, i32>(4)? as u16).unwrap_or_default(),
            disabled: row.try_get(5)?,
            password_hash: row.try_get(6)?,
            limited_clicks: row.try_get::<_, i64>(7)? as u64,
            admin_disabled: row.try_get(8)?,
        }))
    }

    async fn update_link(
        &self,
        id: LinkId,
        changes: LinkChanges,
    ) -> Result<Option<Link>, StoreError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // One statement for any combination of fields: each field comes with a flag
            // saying whether to set it, so NULL can mean "clear".
            let update = tx
                .prepare_cached(
                    "UPDATE links SET \
                 url = CASE WHEN $2 THEN $3 ELSE url END, \
                 title = CASE WHEN $4 THEN $5 ELSE title END, \
                 expires_at = CASE WHEN $6 THEN $7 ELSE expires_at END, \
                 max_clicks = CASE WHEN $8 THEN $9 ELSE max_clicks END, \
                 redirect_status = COALESCE($10, redirect_status), \
                 disabled = COALESCE($11, disabled), \
                 updated_at = $12, \
                 password_hash = CASE WHEN $13 THEN $14 ELSE password_hash END, \
                 disabled_reason = CASE WHEN $15 THEN $16 ELSE disabled_reason END \
                 WHERE id = $1 AND deleted_at IS NULL",
                )
                .await?;
            let url = changes.url.as_ref().map(|u| u.as_str());
            let title = changes.title.clone().flatten();
            let expires = changes.expires_at.flatten();
            let max = changes
                .max_clicks
                .flatten()
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            let status = changes.redirect.map(|r| i32::from(r.code()));
            let password = changes.password_hash.clone().flatten();
            let reason = changes.disabled_reason.clone().flatten();
            let changed = tx
                .execute(
                    &update,
                    &[
                        &id.0,
                        &changes.url.is_some(),
                        &url,
                        &changes.title.is_some(),
                        &title,
                        &changes.expires_at.is_some(),
                        &expires,
                        &changes.max_clicks.is_some(),
                        &max,
                        &status,
                        &changes.disabled,
                        &now_ms(),
                        &changes.password_hash.is_some(),
                        &password,
                        &changes.disabled_reason.is_some(),
                        &reason,
                    ],
                )
                .await?;
            if changed == 0 {
                return Ok(None);
            }
            if let Some(tags) = &changes.tags {
                tx.execute("DELETE FROM link_tags WHERE link_id = $1", &[&id.0])
                    .await?;
                if !tags.is_empty() {
                    let links = vec![id.0; tags.len()];
                    tx.execute(
                        "INSERT INTO link_tags (link_id, tag) \
                     SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
                        &[&links, tags],
                    )
                    .await?;
                }
            }
            let row = tx
                .query_opt(
                    concat!("SELECT ", link_columns!(), " FROM links WHERE id = $1"),
                    &[&id.0],
                )
                .await?;
            let link = row.map(|row| link_from_row(&row)).transpose()?;
            tx.commit().await?;
            Ok(link)
        })
        .await
    }

    async fn delete_link(&self, id: LinkId) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "UPDATE links SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
                &[&id.0, &now_ms()],
            )
            .await?
            == 1)
    }
}
