-- The rollups also keep each bucket's smallest and largest CPU and RAM
-- values, so ranges can answer peaks as well as means. Filled here from the
-- samples the rollups already sum.
ALTER TABLE minute_rollups ADD COLUMN cpu_min REAL;
ALTER TABLE minute_rollups ADD COLUMN cpu_max REAL;
ALTER TABLE minute_rollups ADD COLUMN ram_min REAL;
ALTER TABLE minute_rollups ADD COLUMN ram_max REAL;
ALTER TABLE hour_rollups ADD COLUMN cpu_min REAL;
ALTER TABLE hour_rollups ADD COLUMN cpu_max REAL;
ALTER TABLE hour_rollups ADD COLUMN ram_min REAL;
ALTER TABLE hour_rollups ADD COLUMN ram_max REAL;

UPDATE minute_rollups
SET (cpu_min, cpu_max, ram_min, ram_max) = (
    SELECT min(cpu), max(cpu), min(ram), max(ram)
    FROM samples
    WHERE samples.server_id = minute_rollups.server_id
      AND samples.time >= minute_rollups.minute
      AND samples.time < minute_rollups.minute + 60000
);

UPDATE hour_rollups
SET (cpu_min, cpu_max, ram_min, ram_max) = (
    SELECT min(cpu), max(cpu), min(ram), max(ram)
    FROM samples
    WHERE samples.server_id = hour_rollups.server_id
      AND samples.time >= hour_rollups.hour
      AND samples.time < hour_rollups.hour + 3600000
);
