-- One row per reporting server. The id is what samples refer to, so a long
-- name is stored once, not once per sample.
CREATE TABLE servers (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- One row per reported sample. Clustered by (server_id, time) so that one
-- server's samples for a time range are read from adjacent pages. `seq` tells
-- apart samples of one server that share the same millisecond; it is 0 for
-- all but such duplicates.
CREATE TABLE samples (
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    time      INTEGER NOT NULL, -- Unix milliseconds, UTC
    seq       INTEGER NOT NULL DEFAULT 0,
    cpu       REAL    NOT NULL CHECK (cpu BETWEEN 0 AND 100),
    ram       REAL    NOT NULL CHECK (ram BETWEEN 0 AND 100),
    PRIMARY KEY (server_id, time, seq)
) WITHOUT ROWID;

-- For people at the sqlite3 prompt: names and readable UTC times.
CREATE VIEW samples_view AS
SELECT servers.name AS server,
       strftime('%Y-%m-%dT%H:%M:%fZ', samples.time / 1000.0, 'unixepoch') AS time,
       samples.cpu AS cpu,
       samples.ram AS ram
FROM samples
JOIN servers ON servers.id = samples.server_id;
