-- The rollup tables hold the sums of exactly the samples whose time is
-- before `sealed_until` (a minute boundary, Unix ms). Newer samples are in
-- `samples` only until their minute has ended and the writer seals it; the
-- load view reads rollups below the seal and raw samples above it.
CREATE TABLE rollup_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    sealed_until INTEGER NOT NULL
);

-- Until now every sample was rolled up at once: seal above the newest one.
INSERT INTO rollup_state (id, sealed_until)
SELECT 1, coalesce(max(time) - max(time) % 60000 + 60000, 0) FROM samples;
