-- hop schema version 9 (SQLite): no more clicks per link and hour beside the visits.
-- Released migrations are never edited; add a new file.
--
-- Why: `link_clicks_hourly` was written on every click and read by nothing. The
-- stats read `visit_hourly`, which counts every stored visit by the hour; the links'
-- totals are `link_clicks`. With visits spread over many links, its row of each
-- visit landed on a B-tree page of its own: one more 4 KB page written per visit
-- (docs/benchmarks.md, "Clicks counted once").

DROP TABLE link_clicks_hourly;
