-- hop schema version 6: the click stream's batches already stored (see the PostgreSQL
-- migration 0003; the SQLite store implements every store trait alike). Released
-- migrations are never edited; add a new file.
CREATE TABLE stream_batches (
    id TEXT PRIMARY KEY,
    stored_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX stream_batches_stored_at ON stream_batches (stored_at);
