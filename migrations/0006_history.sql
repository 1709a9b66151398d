-- Hour-level history: when retention deletes an hour of raw samples, the
-- hour's rollup row moves here and is kept for `history_retention`. The
-- rows of both tables cover different hours of a server (a sample that
-- arrives late for an hour already in history starts a new rollup row,
-- which readers add up with the history row).
CREATE TABLE hour_history (
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    hour      INTEGER NOT NULL, -- Unix milliseconds of the hour's start
    samples   INTEGER NOT NULL,
    cpu_sum   REAL    NOT NULL,
    ram_sum   REAL    NOT NULL,
    cpu_min   REAL,
    cpu_max   REAL,
    ram_min   REAL,
    ram_max   REAL,
    PRIMARY KEY (server_id, hour)
) WITHOUT ROWID;

-- Retention finds the oldest hours through these, without visiting every
-- server.
CREATE INDEX hour_history_by_hour ON hour_history (hour);
CREATE INDEX hour_rollups_by_hour ON hour_rollups (hour);

-- Every server is sealed at least up to this minute; `servers.sealed_until`
-- counts only where it is later. Ending a seal walk moves this one row
-- instead of rewriting every server's row.
CREATE TABLE seal_floor (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    sealed_until INTEGER NOT NULL
);
INSERT INTO seal_floor (id, sealed_until)
SELECT 1, coalesce(min(sealed_until), 0) FROM servers;

-- A minute row earns its place only where it summarises many samples: an
-- hour keeps minute rows only when it holds more than 120 samples (2 a
-- minute on average). Sparser hours are read from `samples`.
DELETE FROM minute_rollups
WHERE (SELECT hour_rollups.samples FROM hour_rollups
       WHERE hour_rollups.server_id = minute_rollups.server_id
         AND hour_rollups.hour = minute_rollups.minute - minute_rollups.minute % 3600000) <= 120;

-- For people at the sqlite3 prompt: every hour of every server, from the
-- history and from the rollups of the raw samples still kept, with
-- readable UTC times. Means, extremes and sample counts are exact; the
-- minute being written is not in it yet.
CREATE VIEW history_view AS
SELECT servers.name AS server,
       strftime('%Y-%m-%dT%H:%M:%SZ', hours.hour / 1000, 'unixepoch') AS hour,
       sum(hours.samples) AS samples,
       total(hours.cpu_sum) / sum(hours.samples) AS cpu,
       min(coalesce(hours.cpu_min, hours.cpu_sum)) AS cpu_min,
       max(coalesce(hours.cpu_max, hours.cpu_sum)) AS cpu_max,
       total(hours.ram_sum) / sum(hours.samples) AS ram,
       min(coalesce(hours.ram_min, hours.ram_sum)) AS ram_min,
       max(coalesce(hours.ram_max, hours.ram_sum)) AS ram_max,
       max(hours.raw) AS raw
FROM (
    SELECT server_id, hour, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max,
           0 AS raw
    FROM hour_history
    UNION ALL
    SELECT server_id, hour, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max,
           1 AS raw
    FROM hour_rollups
) AS hours
JOIN servers ON servers.id = hours.server_id
GROUP BY hours.server_id, hours.hour;
