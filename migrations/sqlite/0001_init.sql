-- hop schema version 1 (SQLite). Released migrations are never edited; add a new file.
-- Times are Unix milliseconds unless the column name says otherwise.

-- Values hop generates once per database, such as the key of the short-code
-- permutation. Losing this table would make future codes collide with old ones.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- Counters that processes lease in blocks (one write per block, not per link).
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
) WITHOUT ROWID;

-- Users own links and keys; `is_admin` users see and change every link. Removal is
-- soft so that links keep an owner.
CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    is_admin   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
);
CREATE UNIQUE INDEX users_by_name ON users (name) WHERE removed_at IS NULL;

-- API keys, stored as SHA-256 of the secret; `prefix` is the visible start of the key.
CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    name       TEXT NOT NULL,
    prefix     TEXT NOT NULL UNIQUE,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

-- Links. `domain` is '' for the deployment's own base URL. Deletes are soft
-- (`deleted_at`) so that a code is never handed to a new target.
-- Keyed by (domain, code) WITHOUT ROWID: a redirect miss is one B-tree descent that
-- ends on the row, instead of an index descent followed by a table descent
-- (measured in docs/benchmarks.md). `id` is the stable number other tables refer to;
-- it is assigned as MAX(id) + 1 by the single writer.
CREATE TABLE links (
    domain          TEXT NOT NULL DEFAULT '',
    code            TEXT NOT NULL,
    id              INTEGER NOT NULL UNIQUE,
    url             TEXT NOT NULL,
    title           TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    max_clicks      INTEGER,
    redirect_status INTEGER NOT NULL,
    owner_user_id   INTEGER REFERENCES users (id),
    -- A disabled link answers 410 until it is enabled again.
    disabled        INTEGER NOT NULL DEFAULT 0,
    -- Argon2id PHC string of the link's password, if it has one.
    password_hash   TEXT,
    deleted_at      INTEGER,
    PRIMARY KEY (domain, code)
) WITHOUT ROWID;

-- Listings page by (created_at, id), everyone's (admins) or one owner's. Both grow at
-- their end as links are created, so they cost creates little.
CREATE INDEX links_by_created ON links (created_at, id);
CREATE INDEX links_by_owner ON links (owner_user_id, created_at, id);

-- Tags on links (lower-case). The second index serves "links with tag X" and counts.
CREATE TABLE link_tags (
    link_id INTEGER NOT NULL REFERENCES links (id),
    tag     TEXT NOT NULL,
    PRIMARY KEY (link_id, tag)
) WITHOUT ROWID;
CREATE INDEX link_tags_by_tag ON link_tags (tag, link_id);

-- Total clicks per link, flushed in batches by the click writer. Kept apart from
-- `links` on purpose: a click batch spread over many links then rewrites a few
-- pages of narrow rows instead of one page of wide link rows per link (measured in
-- docs/benchmarks.md), and link rows never change on a click.
CREATE TABLE link_clicks (
    link_id INTEGER PRIMARY KEY REFERENCES links (id),
    clicks  INTEGER NOT NULL
);

-- Clicks per link per UTC hour; the base that analytics rollups build on.
CREATE TABLE link_clicks_hourly (
    link_id    INTEGER NOT NULL REFERENCES links (id),
    hour_start INTEGER NOT NULL, -- Unix seconds at the start of the hour
    clicks     INTEGER NOT NULL,
    PRIMARY KEY (link_id, hour_start)
) WITHOUT ROWID;

-- Idempotency keys of create requests, scoped by the caller's credential (SHA-256
-- of the API key). `status` is NULL while the first request is being processed; a
-- key is good for 24 hours, then purged.
CREATE TABLE idempotency_keys (
    scope        BLOB NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status       INTEGER,
    body         BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
