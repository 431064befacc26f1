-- hop schema version 6 (PostgreSQL): a link's breakdowns of a day in one row, as in
-- SQLite's schema 8. Released migrations are never edited; add a new file.
--
-- Why: `visit_dims` held one row per (link, dimension, day, value), so the first
-- visit of a day to a link wrote nine rows and nine entries of each of its indexes.
-- Here a link's day is one row whose `dims` maps "dimension:value" to human visits
-- (`{"browser:Firefox": 3, "country:": 1, …}`; '' is "unknown"). Days older than the
-- hourly window are folded into one row per month (day_start = the 1st), as before.
--
-- Nodes of an older version write `visit_dims`: stop them all before this migration.

CREATE TABLE visit_day_dims (
    link_id   bigint NOT NULL,
    day_start bigint NOT NULL, -- Unix seconds at 00:00 UTC
    dims      jsonb NOT NULL,  -- "dimension:value" -> human visits
    PRIMARY KEY (link_id, day_start)
);
CREATE INDEX visit_day_dims_by_day ON visit_day_dims (day_start);

-- Two breakdown objects added key by key: how a day's new visits join its row.
CREATE FUNCTION hop_add_dims(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_object_agg(key, total), '{}'::jsonb) FROM (
        SELECT key, SUM(value::bigint) AS total FROM (
            SELECT key, value FROM jsonb_each_text(a)
            UNION ALL SELECT key, value FROM jsonb_each_text(b)) AS both_sides
        GROUP BY key) AS sums
$$;

INSERT INTO visit_day_dims (link_id, day_start, dims)
SELECT link_id, day_start, jsonb_object_agg(dim || ':' || value, clicks)
FROM visit_dims GROUP BY link_id, day_start;

DROP TABLE visit_dims;
