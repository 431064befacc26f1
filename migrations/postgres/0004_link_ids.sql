-- hop schema version 4 (PostgreSQL): one counter numbers every link. Released
-- migrations are never edited; add a new file.
--
-- hop now gives each new link its id itself, from the counter `link_ids`, which it
-- leases in blocks like the code counters before it: a generated link's id is the
-- counter value its code encodes, and an alias takes a value of its own (see
-- src/codes.rs). The counter starts past every id and every code counter value used
-- so far, so no new id and no new generated code can meet an old one. Every node must
-- run this version or later: an older one would still take ids from links_id_seq.
INSERT INTO counters (name, next)
SELECT 'link_ids', GREATEST(
    COALESCE((SELECT MAX(id) FROM links), 0) + 1,
    COALESCE((SELECT MAX(next) FROM counters WHERE name LIKE 'codes\_len%'), 0))
ON CONFLICT (name) DO NOTHING;
