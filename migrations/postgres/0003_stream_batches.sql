-- hop schema version 3 (PostgreSQL): the click stream's batches already stored.
-- Released migrations are never edited; add a new file.

-- `hop worker` stores a batch of visits off the NATS stream and records its message id
-- here in the same transaction, so a batch delivered again (a worker killed before its
-- acknowledgement, a node replaying its spool) is never counted twice. Ids are kept
-- for STREAM_BATCH_DAYS (src/store), longer than a spool is expected to wait.
CREATE TABLE stream_batches (
    id text PRIMARY KEY,
    stored_at bigint NOT NULL
);
CREATE INDEX stream_batches_stored_at ON stream_batches (stored_at);
