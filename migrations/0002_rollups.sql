-- Per-server sums and counts by minute and by hour, kept in the same
-- transaction as the samples they summarise. The load view reads complete
-- minutes and hours from here, so its cost does not grow with the sample
-- rate; only the minute that holds `at` is read from `samples`. Means are
-- sum / count, exact up to float addition order.
CREATE TABLE minute_rollups (
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    minute    INTEGER NOT NULL, -- Unix milliseconds of the minute's start
    samples   INTEGER NOT NULL,
    cpu_sum   REAL    NOT NULL,
    ram_sum   REAL    NOT NULL,
    PRIMARY KEY (server_id, minute)
) WITHOUT ROWID;

CREATE TABLE hour_rollups (
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    hour      INTEGER NOT NULL, -- Unix milliseconds of the hour's start
    samples   INTEGER NOT NULL,
    cpu_sum   REAL    NOT NULL,
    ram_sum   REAL    NOT NULL,
    PRIMARY KEY (server_id, hour)
) WITHOUT ROWID;

INSERT INTO minute_rollups (server_id, minute, samples, cpu_sum, ram_sum)
SELECT server_id, time - time % 60000, count(*), total(cpu), total(ram)
FROM samples
GROUP BY server_id, time / 60000;

INSERT INTO hour_rollups (server_id, hour, samples, cpu_sum, ram_sum)
SELECT server_id, time - time % 3600000, count(*), total(cpu), total(ram)
FROM samples
GROUP BY server_id, time / 3600000;
