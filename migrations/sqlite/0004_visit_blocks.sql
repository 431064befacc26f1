-- hop schema version 4 (SQLite): raw visits in blocks. Released migrations are never
-- edited; add a new file.

-- A link's raw visits from one drain of the analytics queue (at most 4096), encoded
-- by src/analytics/block.rs: the distinct visitor profiles, then each visit's time and
-- profile. One row per visit cost a redirect more than everything else analytics do.
-- Kept for `analytics_raw_retention_days` after `last_at`. The full client address is
-- never stored: a profile's `ip` is absent or a truncated prefix.
CREATE TABLE visit_blocks (
    id       INTEGER PRIMARY KEY, -- in arrival order; a visit's id is id << 16 | position
    link_id  INTEGER NOT NULL,
    first_at INTEGER NOT NULL,    -- Unix milliseconds, first visit
    last_at  INTEGER NOT NULL,    -- Unix milliseconds, last visit
    visits   INTEGER NOT NULL,
    data     BLOB NOT NULL
);
CREATE INDEX visit_blocks_by_link ON visit_blocks (link_id, id);
CREATE INDEX visit_blocks_by_time ON visit_blocks (last_at);

-- The rows of the `visits` table (version 3) are moved into blocks by the code that
-- runs this migration (src/store/sqlite/analytics.rs), which then drops it.
