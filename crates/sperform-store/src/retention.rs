//! Retention: samples older than the retention period are deleted in whole
//! (server, hour) units together with their rollup rows, so the rollups
//! stay equal to the samples at every commit. Each writer transaction
//! deletes about `BATCH_SAMPLES` samples at most, so ingest never waits
//! behind one huge delete; a background thread asks for batches until a
//! pass is complete. Servers left without samples are deleted too.
//!
//! The writer runs `delete_batch` in its transactions; the thread here
//! only asks for batches, through the function it is given, so this module
//! does not depend on the writer.

use std::time::Duration;

use rusqlite::{Transaction, params};

use super::StoreError;
use super::background::{Background, Stop};
use crate::clock::Clock;
use crate::model::{HOUR_MS, Timestamp};

/// Samples one retention transaction deletes at most (a single larger
/// (server, hour) unit is still deleted whole).
pub const BATCH_SAMPLES: i64 = 5_000;

/// The oldest instant kept when the clock says `now`: samples before it are
/// deleted. Rounded down to an hour, so whole hours go.
pub fn cutoff(now: Timestamp, retention_ms: i64) -> i64 {
    let oldest = now.millis().saturating_sub(retention_ms).max(0);
    oldest - oldest.rem_euclid(HOUR_MS)
}

/// What one retention transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionBatch {
    pub samples_deleted: u64,
    pub servers_deleted: u64,
    /// Whether expired samples remain for a further batch.
    pub more: bool,
}

/// What a whole retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub samples_deleted: u64,
    pub servers_deleted: u64,
    pub batches: u64,
}

impl RetentionReport {
    pub fn add(&mut self, batch: &RetentionBatch) {
        self.samples_deleted += batch.samples_deleted;
        self.servers_deleted += batch.servers_deleted;
        self.batches += 1;
    }
}

/// Deletes up to a batch of expired (server, hour) units, starting after
/// server `*cursor` and moving it on; returns the deleted server ids too.
pub fn delete_batch(
    tx: &Transaction<'_>,
    cursor: &mut i64,
    cutoff: i64,
) -> Result<(RetentionBatch, Vec<(i64, String)>), StoreError> {
    let mut batch = RetentionBatch::default();
    let mut deleted_servers = Vec::new();
    let mut budget = BATCH_SAMPLES;
    let mut servers =
        tx.prepare_cached("SELECT id, name, sealed_until FROM servers WHERE id > ?1 ORDER BY id")?;
    let mut rows = servers.query([*cursor])?;
    while let Some(row) = rows.next()? {
        let server_id: i64 = row.get(0)?;
        let name: String = row.get(1)?;
        // Only hours below the server's seal are deleted: their rollups
        // are complete, and no unsealed sample is among them.
        let sealed_until: i64 = row.get(2)?;
        let cutoff = cutoff.min(sealed_until - sealed_until.rem_euclid(HOUR_MS));
        let expired: Vec<(i64, i64)> = tx
            .prepare_cached(
                "SELECT hour, samples FROM hour_rollups
                 WHERE server_id = ?1 AND hour < ?2 ORDER BY hour",
            )?
            .query_map(params![server_id, cutoff], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        for (hour, samples) in expired {
            if samples > budget && budget < BATCH_SAMPLES {
                // This unit goes in the next batch; the cursor stays before
                // this server.
                batch.more = true;
                return Ok((batch, deleted_servers));
            }
            let end = hour + HOUR_MS;
            let removed = tx
                .prepare_cached(
                    "DELETE FROM samples WHERE server_id = ?1 AND time >= ?2 AND time < ?3",
                )?
                .execute(params![server_id, hour, end])?;
            tx.prepare_cached(
                "DELETE FROM minute_rollups WHERE server_id = ?1 AND minute >= ?2 AND minute < ?3",
            )?
            .execute(params![server_id, hour, end])?;
            tx.prepare_cached("DELETE FROM hour_rollups WHERE server_id = ?1 AND hour = ?2")?
                .execute(params![server_id, hour])?;
            batch.samples_deleted += removed as u64;
            budget -= samples;
        }
        let empty: bool = tx
            .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM samples WHERE server_id = ?1)")?
            .query_row([server_id], |row| row.get(0))?;
        if empty {
            tx.prepare_cached("DELETE FROM servers WHERE id = ?1")?
                .execute([server_id])?;
            batch.servers_deleted += 1;
            deleted_servers.push((server_id, name));
        }
        *cursor = server_id;
        if budget <= 0 {
            batch.more = true;
            return Ok((batch, deleted_servers));
        }
    }
    // A whole pass is done: the next one starts from the first server.
    *cursor = 0;
    Ok((batch, deleted_servers))
}

/// Starts the thread that runs a retention pass every `interval`, as of
/// the time `clock` tells then; `retain_batch` has one batch before a
/// cutoff deleted and waits until that is committed.
pub fn spawn(
    retain_batch: impl Fn(i64) -> Result<RetentionBatch, StoreError> + Send + 'static,
    clock: Clock,
    retention_ms: i64,
    interval: Duration,
) -> Result<Background, StoreError> {
    Background::spawn("retention", move |stop| {
        while !stop.wait(interval) {
            if !run_pass(&retain_batch, cutoff(clock.now(), retention_ms), stop) {
                return;
            }
        }
    })
}

/// One pass, batch by batch; false if told to stop midway.
fn run_pass(
    retain_batch: &impl Fn(i64) -> Result<RetentionBatch, StoreError>,
    cutoff: i64,
    stop: &Stop,
) -> bool {
    let mut report = RetentionReport::default();
    let mut finished = true;
    loop {
        match retain_batch(cutoff) {
            Ok(batch) => {
                report.add(&batch);
                if !batch.more {
                    break;
                }
            }
            Err(err) => {
                log::warn!("retention stopped early (will retry): {err}");
                break;
            }
        }
        if stop.wait(Duration::ZERO) {
            finished = false;
            break;
        }
    }
    if report.samples_deleted > 0 || report.servers_deleted > 0 {
        log::info!(
            "retention: deleted {} samples and {} servers older than {} in {} batches",
            report.samples_deleted,
            report.servers_deleted,
            Timestamp::from_millis(cutoff).map_or_else(|_| cutoff.to_string(), |t| t.to_string()),
            report.batches
        );
    }
    finished
}
