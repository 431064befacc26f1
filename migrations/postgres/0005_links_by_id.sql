-- hop schema version 5 (PostgreSQL): links keyed and hash-partitioned by id, which for
-- a generated code is the counter value the code encodes. Released migrations are
-- never edited; add a new file.
--
-- Why: keyed by (domain, code), every create wrote a random leaf of a partition's
-- primary key (the codes are a permutation of the counter, random-looking on purpose),
-- and lookups by id probed every partition's id index. Keyed by id, a partition's
-- primary key grows at its right edge, a redirect decodes the code and reads one
-- integer key in one partition, and only links whose code does not decode to their id
-- (aliases that could not take their code's id, and every link stored before this
-- version) need the (domain, code) index `link_aliases`, hash-partitioned by code.
-- The same design as SQLite's schema 7; docs/ARCHITECTURE.md, "Link storage".
--
-- The partition count stays what the schema was created with.

CREATE TABLE links_new (
    id              bigint NOT NULL,
    domain          text NOT NULL DEFAULT '',
    code            text NOT NULL,
    url             text NOT NULL,
    title           text,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL,
    expires_at      bigint,
    max_clicks      bigint,
    redirect_status integer NOT NULL,
    owner_user_id   bigint REFERENCES users (id),
    -- A disabled link answers 410 until it is enabled again.
    disabled        boolean NOT NULL DEFAULT false,
    -- Argon2id PHC string of the link's password, if it has one.
    password_hash   text,
    deleted_at      bigint,
    -- Why an admin disabled the link (version 2).
    disabled_reason text,
    PRIMARY KEY (id)
) PARTITION BY HASH (id);

-- Codes that do not decode to their link's id. (domain, code) is unique across this
-- index and the links found by id: see src/store/postgres/links.rs, `insert_batch`.
CREATE TABLE link_aliases (
    domain  text NOT NULL,
    code    text NOT NULL,
    link_id bigint NOT NULL,
    PRIMARY KEY (domain, code)
) PARTITION BY HASH (code);

DO $$
DECLARE
    n integer := (SELECT count(*) FROM pg_inherits WHERE inhparent = 'links'::regclass);
BEGIN
    FOR i IN 0 .. n - 1 LOOP
        EXECUTE format(
            'CREATE TABLE links_new_p%s PARTITION OF links_new FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
            i, n, i);
        EXECUTE format(
            'CREATE TABLE link_aliases_p%s PARTITION OF link_aliases FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
            i, n, i);
    END LOOP;
END
$$;

INSERT INTO links_new (id, domain, code, url, title, created_at, updated_at, expires_at,
                      max_clicks, redirect_status, owner_user_id, disabled,
                      password_hash, deleted_at, disabled_reason)
SELECT id, domain, code, url, title, created_at, updated_at, expires_at, max_clicks,
       redirect_status, owner_user_id, disabled, password_hash, deleted_at, disabled_reason
FROM links;

-- Every link stored so far: their ids were taken in creation order, not from codes.
INSERT INTO link_aliases (domain, code, link_id) SELECT domain, code, id FROM links;

-- Drops its partitions, indexes, trigger and the id sequence (ids come from the
-- `link_ids` counter since version 4).
DROP TABLE links;
ALTER TABLE links_new RENAME TO links;
ALTER INDEX links_new_pkey RENAME TO links_pkey;

DO $$
DECLARE
    n integer := (SELECT count(*) FROM pg_inherits WHERE inhparent = 'links'::regclass);
BEGIN
    FOR i IN 0 .. n - 1 LOOP
        EXECUTE format('ALTER TABLE links_new_p%s RENAME TO links_p%s', i, i);
    END LOOP;
END
$$;

-- Listings page by (created_at, id), everyone's or one owner's.
CREATE INDEX links_by_created ON links (created_at, id);
CREATE INDEX links_by_owner ON links (owner_user_id, created_at, id);

-- As in version 1: links stay in the default domain or a registered one.
CREATE TRIGGER links_in_registered_domain BEFORE INSERT ON links
    FOR EACH ROW EXECUTE FUNCTION links_in_registered_domain();
