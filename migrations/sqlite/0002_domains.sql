-- hop schema version 2 (SQLite): domains. Released migrations are never edited; add a
-- new file.

-- Domains links can live under besides the default one (the host of base_url, stored
-- as '' in links.domain and never listed here). `name` is the lower-case host, with
-- `:port` when the domain is served on one port only.
CREATE TABLE domains (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- links.domain cannot get a foreign key without rebuilding the released table (and ''
-- has no row here), so a trigger keeps links out of unregistered domains. It also
-- closes the race between a create that checked the domain and a removal of it.
-- hop maps this trigger's failure (SQLITE_CONSTRAINT_TRIGGER) to "unknown domain".
CREATE TRIGGER links_in_registered_domain
BEFORE INSERT ON links
WHEN NEW.domain <> '' AND NOT EXISTS (SELECT 1 FROM domains WHERE name = NEW.domain)
BEGIN
    SELECT RAISE(ABORT, 'domain is not registered');
END;
