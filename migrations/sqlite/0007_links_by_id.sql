-- hop schema version 7 (SQLite): links keyed by their integer id, which for a
-- generated code is the counter value the code encodes. Released migrations are never
-- edited; add a new file.
--
-- Why: keyed by (domain, code), every create dirtied a random leaf of the table (the
-- codes are a permutation of the counter, random-looking on purpose) and the table's
-- secondary indexes each carried the text key. Keyed by id, creates append at the
-- right edge of the tree, a redirect decodes the code and reads one integer key, and
-- only links whose code does not decode to their id (aliases, and every link stored
-- before this version) need the (domain, code) index `link_aliases`.
--
-- hop runs migrations with foreign keys off and checks them before committing, so
-- the table can be rebuilt the way SQLite documents (create, copy, drop, rename).

CREATE TABLE links_by_id (
    id              INTEGER PRIMARY KEY,
    domain          TEXT NOT NULL DEFAULT '',
    code            TEXT NOT NULL,
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
    -- Why an admin disabled the link (see version 5).
    disabled_reason TEXT
);

INSERT INTO links_by_id (id, domain, code, url, title, created_at, updated_at, expires_at,
                         max_clicks, redirect_status, owner_user_id, disabled,
                         password_hash, deleted_at, disabled_reason)
SELECT id, domain, code, url, title, created_at, updated_at, expires_at, max_clicks,
       redirect_status, owner_user_id, disabled, password_hash, deleted_at, disabled_reason
FROM links ORDER BY id;

-- Codes that do not decode to their link's id: custom aliases, and every link stored
-- before this version (their ids were assigned in creation order, not by the code).
-- (domain, code) is unique across this index and the generated links: hop checks the
-- other side before each insert (src/store/sqlite/mod.rs, `insert_one`).
CREATE TABLE link_aliases (
    domain  TEXT NOT NULL,
    code    TEXT NOT NULL,
    link_id INTEGER NOT NULL REFERENCES links (id),
    PRIMARY KEY (domain, code)
) WITHOUT ROWID;

INSERT INTO link_aliases (domain, code, link_id) SELECT domain, code, id FROM links;

-- One counter numbers every link from now on; it starts past every id and every
-- counter value used so far, so no new id and no new generated code can meet an
-- old one.
INSERT INTO counters (name, next)
SELECT 'link_ids', MAX(COALESCE((SELECT MAX(id) FROM links), 0) + 1,
                       COALESCE((SELECT MAX(next) FROM counters WHERE name LIKE 'codes\_len%' ESCAPE '\'), 0));

DROP TABLE links;
ALTER TABLE links_by_id RENAME TO links;

-- Listings page by (created_at, id), everyone's (admins) or one owner's.
CREATE INDEX links_by_created ON links (created_at, id);
CREATE INDEX links_by_owner ON links (owner_user_id, created_at, id);

-- As in version 2: links stay out of unregistered domains.
CREATE TRIGGER links_in_registered_domain
BEFORE INSERT ON links
WHEN NEW.domain <> '' AND NOT EXISTS (SELECT 1 FROM domains WHERE name = NEW.domain)
BEGIN
    SELECT RAISE(ABORT, 'domain is not registered');
END;
