-- hop schema version 3 (SQLite): click analytics. Released migrations are never
-- edited; add a new file.

-- Raw visits, enriched and anonymised, kept for `analytics_raw_retention_days`. The
-- full client address is never stored: `ip` is NULL or a truncated prefix.
CREATE TABLE visits (
    id            INTEGER PRIMARY KEY, -- in arrival order: the listing cursor
    link_id       INTEGER NOT NULL,
    at            INTEGER NOT NULL,    -- Unix milliseconds
    bot           INTEGER NOT NULL,
    qr            INTEGER NOT NULL,
    browser       TEXT NOT NULL,
    os            TEXT NOT NULL,
    device        TEXT NOT NULL,
    language      TEXT,
    referrer_host TEXT,
    referrer_url  TEXT,
    country       TEXT,
    region        TEXT,
    city          TEXT,
    ip            TEXT
);
CREATE INDEX visits_by_link ON visits (link_id, id);
CREATE INDEX visits_by_time ON visits (at);

-- Visits per link per UTC hour, humans and bots apart; folded into visit_daily once
-- older than `analytics_hourly_retention_days`.
CREATE TABLE visit_hourly (
    link_id    INTEGER NOT NULL,
    hour_start INTEGER NOT NULL, -- Unix seconds
    humans     INTEGER NOT NULL,
    bots       INTEGER NOT NULL,
    PRIMARY KEY (link_id, hour_start)
) WITHOUT ROWID;
CREATE INDEX visit_hourly_by_hour ON visit_hourly (hour_start);

-- Visits per link per UTC day, for days whose hourly rows have been folded.
CREATE TABLE visit_daily (
    link_id   INTEGER NOT NULL,
    day_start INTEGER NOT NULL, -- Unix seconds at 00:00 UTC
    humans    INTEGER NOT NULL,
    bots      INTEGER NOT NULL,
    PRIMARY KEY (link_id, day_start)
) WITHOUT ROWID;

-- Human visits per link per UTC day by one dimension: country, region, city,
-- referrer (host), browser, os, device, language. '' is "unknown". Days older than
-- the hourly window are folded into one row per month (day_start = the 1st).
CREATE TABLE visit_dims (
    link_id   INTEGER NOT NULL,
    dim       TEXT NOT NULL,
    day_start INTEGER NOT NULL,
    value     TEXT NOT NULL,
    clicks    INTEGER NOT NULL,
    PRIMARY KEY (link_id, dim, day_start, value)
) WITHOUT ROWID;
CREATE INDEX visit_dims_by_day ON visit_dims (day_start);
