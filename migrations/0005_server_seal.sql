-- Each server has a seal of its own: its rollups hold exactly its samples
-- before `servers.sealed_until`. When a minute ends the writer seals the
-- servers a few hundred per transaction instead of all at once (which with
-- 10,000 live servers was one transaction of 20,000 row writes every
-- minute); once all are sealed, every server's seal is the same again.
ALTER TABLE servers ADD COLUMN sealed_until INTEGER NOT NULL DEFAULT 0;
UPDATE servers SET sealed_until = (SELECT sealed_until FROM rollup_state);
DROP TABLE rollup_state;
