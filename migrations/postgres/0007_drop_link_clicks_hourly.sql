-- hop schema version 7 (PostgreSQL): no more clicks per link and hour beside the
-- visits, as in SQLite's schema 9. Released migrations are never edited; add a new
-- file.
--
-- Why: `link_clicks_hourly` was written on every click and read by nothing. The
-- stats read `visit_hourly`, which counts every stored visit by the hour; the links'
-- totals are `link_clicks`.
--
-- Nodes of an older version write `link_clicks_hourly`: stop them all before this
-- migration.

DROP TABLE link_clicks_hourly;
