-- hop schema version 2 (PostgreSQL): a link an admin disabled says why. Released
-- migrations are never edited; add a new file.

-- Set only by an admin (PATCH with `disabledReason`, or `hop links disable --reason`);
-- while it is set the link is disabled, visitors get the neutral 410 a blocked target
-- gets, and only an admin can enable it again (which clears the reason). Added to
-- every partition of the hash-partitioned table; no rewrite (no default).
ALTER TABLE links ADD COLUMN disabled_reason text;
