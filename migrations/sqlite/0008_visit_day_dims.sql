-- hop schema version 8 (SQLite): a link's breakdowns of a day in one row. Released
-- migrations are never edited; add a new file.
--
-- Why: `visit_dims` held one row per (link, dimension, day, value), so the first
-- visit of a day to a link wrote nine rows and nine entries of its day index, at
-- random places in both trees: with visits spread over many links, most of what
-- storing a visit cost (docs/benchmarks.md). Here a link's day is one row whose `dims`
-- is a JSON object from "dimension:value" to human visits, written by
-- src/analytics/rollup.rs (`{"browser:Firefox": 3, "country:": 1, …}`; '' is
-- "unknown"). Days older than the hourly window are folded into one row per month
-- (day_start = the 1st), as before.

CREATE TABLE visit_day_dims (
    link_id   INTEGER NOT NULL,
    day_start INTEGER NOT NULL, -- Unix seconds at 00:00 UTC
    dims      TEXT NOT NULL,    -- JSON object: "dimension:value" -> human visits
    PRIMARY KEY (link_id, day_start)
) WITHOUT ROWID;
CREATE INDEX visit_day_dims_by_day ON visit_day_dims (day_start);

INSERT INTO visit_day_dims (link_id, day_start, dims)
SELECT link_id, day_start, json_group_object(dim || ':' || value, clicks)
FROM visit_dims GROUP BY link_id, day_start;

DROP TABLE visit_dims;
