//! Retention, in two tiers and by size.
//!
//! - **Raw samples** older than `retention` go in whole (server, hour)
//!   units: the hour's samples and minute rows are deleted and its hour row
//!   moves from `hour_rollups` to `hour_history`, in one transaction, so
//!   every answer at hour level stays the same.
//! - **History** older than `history_retention` is deleted.
//! - **Size**: when the pages in use pass `retention_size`, the oldest raw
//!   hours go first (down to the two newest hours, which the minute view
//!   reads), then the oldest history hours, one hour at a time, until the
//!   database is back under the limit.
//!
//! Work is found through the `hour` indexes of both tables, oldest first,
//! so a pass with nothing to do costs two index seeks, however many servers
//! there are. Each writer transaction handles about `BATCH_SAMPLES`
//! samples (or `BATCH_HOURS` hour rows) at most, so ingest never waits
//! behind one huge delete; a background thread asks for batches until a
//! pass is complete. Servers left with neither samples nor history are
//! deleted too.
//!
//! The writer runs `delete_batch` in its transactions; the thread here
//! only asks for batches, through the function it is given, so this module
//! does not depend on the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::StoreError;
use super::background::{Background, Stop};
use super::rollups::{add_rollup_row, seal_floor};
use crate::clock::Clock;
use crate::model::{HOUR_MS, Timestamp};

/// Samples one retention transaction deletes at most (a single larger
/// (server, hour) unit is still deleted whole).
pub const BATCH_SAMPLES: i64 = 5_000;
/// Hour rows (of either table) one retention transaction handles at most.
pub const BATCH_HOURS: i64 = 2_000;
/// Hours of raw samples that size-based retention always keeps: the
/// current one and the one before, which the 60-minute view reads.
pub const SIZE_KEEPS_RAW_HOURS: i64 = 2;
/// How often the bytes per table are measured at most: it reads every page.
const TABLE_BYTES_INTERVAL: Duration = Duration::from_secs(600);

/// The oldest instant kept when the clock says `now`: samples before it are
/// deleted. Rounded down to an hour, so whole hours go.
pub fn cutoff(now: Timestamp, retention_ms: i64) -> i64 {
    let oldest = now.millis().saturating_sub(retention_ms).max(0);
    oldest - oldest.rem_euclid(HOUR_MS)
}

/// Hour boundaries (Unix ms) before which data goes: raw samples before
/// `raw` (their hour rows move to the history), history before `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub raw: i64,
    pub history: i64,
}

impl Cutoffs {
    /// The cutoffs by age, as the clock says `now`.
    pub fn by_age(now: Timestamp, retention_ms: i64, history_retention_ms: i64) -> Cutoffs {
        Cutoffs {
            raw: cutoff(now, retention_ms),
            history: cutoff(now, history_retention_ms),
        }
    }
}

/// What one retention transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionBatch {
    pub samples_deleted: u64,
    /// Hours of raw samples whose rollup row moved to the history.
    pub hours_to_history: u64,
    pub history_hours_deleted: u64,
    pub servers_deleted: u64,
    /// Whether expired data remain for a further batch.
    pub more: bool,
}

/// What a whole retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub samples_deleted: u64,
    pub hours_to_history: u64,
    pub history_hours_deleted: u64,
    pub servers_deleted: u64,
    pub batches: u64,
}

impl RetentionReport {
    pub fn add(&mut self, batch: &RetentionBatch) {
        self.samples_deleted += batch.samples_deleted;
        self.hours_to_history += batch.hours_to_history;
        self.history_hours_deleted += batch.history_hours_deleted;
        self.servers_deleted += batch.servers_deleted;
        self.batches += 1;
    }

    fn is_empty(&self) -> bool {
        self.samples_deleted == 0
            && self.hours_to_history == 0
            && self.history_hours_deleted == 0
            && self.servers_deleted == 0
    }
}

/// Deletes up to a batch of expired data, oldest first; returns the
/// deleted servers too.
pub fn delete_batch(
    tx: &Transaction<'_>,
    cutoffs: Cutoffs,
) -> Result<(RetentionBatch, Vec<(i64, String)>), StoreError> {
    let mut batch = RetentionBatch::default();
    let mut touched = Vec::new();
    // Only hours below every server's seal go: their rollups are complete,
    // and no unsealed sample is among them.
    let floor = seal_floor(tx)?;
    let raw_cutoff = cutoffs.raw.min(floor - floor.rem_euclid(HOUR_MS));
    let expired: Vec<(i64, i64, i64)> = tx
        .prepare_cached(
            "SELECT server_id, hour, samples FROM hour_rollups
             WHERE hour < ?1 ORDER BY hour LIMIT ?2",
        )?
        .query_map(params![raw_cutoff, BATCH_HOURS + 1], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut budget = BATCH_SAMPLES;
    let mut hours = 0;
    for (server_id, hour, samples) in expired {
        if hours == BATCH_HOURS || (samples > budget && budget < BATCH_SAMPLES) {
            // The rest go in the next batch.
            batch.more = true;
            break;
        }
        batch.samples_deleted += expire_hour(tx, server_id, hour, hour >= cutoffs.history)?;
        if hour >= cutoffs.history {
            batch.hours_to_history += 1;
        }
        budget -= samples;
        hours += 1;
        touched.push(server_id);
    }
    if !batch.more {
        let deleted: Vec<i64> = tx
            .prepare_cached(
                "DELETE FROM hour_history WHERE (server_id, hour) IN (
                     SELECT server_id, hour FROM hour_history
                     WHERE hour < ?1 ORDER BY hour LIMIT ?2)
                 RETURNING server_id",
            )?
            .query_map(params![cutoffs.history, BATCH_HOURS - hours + 1], |row| {
                row.get(0)
            })?
            .collect::<Result<_, _>>()?;
        let count = i64::try_from(deleted.len()).unwrap_or(i64::MAX);
        if count > BATCH_HOURS - hours {
            // One too many was asked for to know whether more remain; it is
            // deleted all the same, which is what the next batch would do.
            batch.more = true;
        }
        batch.history_hours_deleted = count.unsigned_abs();
        touched.extend(deleted);
    }
    touched.sort_unstable();
    touched.dedup();
    let mut deleted_servers = Vec::new();
    for server_id in touched {
        let name: Option<String> = tx
            .prepare_cached(
                "DELETE FROM servers WHERE id = ?1
                   AND NOT EXISTS (SELECT 1 FROM samples WHERE server_id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM hour_history WHERE server_id = ?1)
                 RETURNING name",
            )?
            .query_row([server_id], |row| row.get(0))
            .optional()?;
        if let Some(name) = name {
            batch.servers_deleted += 1;
            deleted_servers.push((server_id, name));
        }
    }
    Ok((batch, deleted_servers))
}

/// Deletes one (server, hour) of raw samples with its minute rows; its
/// hour row moves to the history if `keep` (it is merged with a history
/// row of the same hour, if a late sample made one), else goes. Returns
/// the samples deleted.
fn expire_hour(
    tx: &Transaction<'_>,
    server_id: i64,
    hour: i64,
    keep: bool,
) -> Result<u64, StoreError> {
    if keep {
        tx.prepare_cached(concat!(
            "INSERT INTO hour_history
                 (server_id, hour, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max)
             SELECT server_id, hour, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max
             FROM hour_rollups WHERE server_id = ?1 AND hour = ?2
             ON CONFLICT (server_id, hour) DO UPDATE SET ",
            add_rollup_row!()
        ))?
        .execute([server_id, hour])?;
    }
    let end = hour + HOUR_MS;
    let removed = tx
        .prepare_cached("DELETE FROM samples WHERE server_id = ?1 AND time >= ?2 AND time < ?3")?
        .execute(params![server_id, hour, end])?;
    tx.prepare_cached(
        "DELETE FROM minute_rollups WHERE server_id = ?1 AND minute >= ?2 AND minute < ?3",
    )?
    .execute(params![server_id, hour, end])?;
    tx.prepare_cached("DELETE FROM hour_rollups WHERE server_id = ?1 AND hour = ?2")?
        .execute(params![server_id, hour])?;
    Ok(removed as u64)
}

/// The retention settings.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub retention_ms: i64,
    pub history_retention_ms: i64,
    /// Bytes of database pages in use past which the oldest data go.
    pub retention_size: Option<u64>,
    pub interval: Duration,
}

/// What the retention thread last measured, for /metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpaceReport {
    /// Bytes of the pages in use (the file less its free pages).
    pub used_bytes: u64,
    /// Bytes per table and index (SQLite's `dbstat`), largest first, as of
    /// the last measurement (at most every ten minutes).
    pub table_bytes: Vec<(String, u64)>,
    /// Whether size-based retention could not get under the limit without
    /// deleting the newest raw hours.
    pub over_size: bool,
}

/// Shared between the retention thread and the store's readers.
pub type SharedSpace = Arc<Mutex<SpaceReport>>;

/// The bytes of the pages in use in the database `conn` reads.
pub fn used_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let (pages, free, size): (i64, i64, i64) = conn.query_row(
        "SELECT page_count, freelist_count, page_size
         FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    Ok(((pages - free).max(0) * size).unsigned_abs())
}

/// Bytes per table and index, largest first: every page is read.
pub fn table_bytes(conn: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY sum(pgsize) DESC, name",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?.unsigned_abs(),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Starts the thread that runs a retention pass every `policy.interval`,
/// as of the time `clock` tells then; `retain_batch` has one batch before
/// the cutoffs deleted and waits until that is committed. The thread reads
/// sizes through a connection of its own to `path`.
pub fn spawn(
    retain_batch: impl Fn(Cutoffs) -> Result<RetentionBatch, StoreError> + Send + 'static,
    path: &Path,
    clock: Clock,
    policy: Policy,
    space: SharedSpace,
) -> Result<Background, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(super::schema::BUSY_TIMEOUT)?;
    Background::spawn("retention", move |stop| {
        let mut last_table_bytes: Option<Instant> = None;
        while !stop.wait(policy.interval) {
            let mut report = RetentionReport::default();
            let now = clock.now();
            let cutoffs = Cutoffs::by_age(now, policy.retention_ms, policy.history_retention_ms);
            let passed =
                run_pass(&retain_batch, cutoffs, stop, &mut report, true).and_then(|done| {
                    match (done, policy.retention_size) {
                        (true, Some(limit)) => {
                            let shrinking = Shrink {
                                now,
                                limit,
                                paced: true,
                            };
                            shrink(&conn, &retain_batch, cutoffs, shrinking, stop, &mut report)
                        }
                        (true, None) => Ok(Some(false)),
                        (false, _) => Ok(None),
                    }
                });
            log_report(&report);
            let over_size = match passed {
                Ok(Some(over_size)) => over_size,
                Ok(None) => return,
                Err(err) => {
                    log::warn!("retention stopped early (will retry): {err}");
                    false
                }
            };
            let table_bytes_due =
                last_table_bytes.is_none_or(|at| at.elapsed() >= TABLE_BYTES_INTERVAL);
            let measured = used_bytes(&conn).and_then(|used| {
                let tables = if table_bytes_due {
                    Some(table_bytes(&conn)?)
                } else {
                    None
                };
                Ok((used, tables))
            });
            match measured {
                Ok((used, tables)) => {
                    if let Ok(mut space) = space.lock() {
                        space.used_bytes = used;
                        space.over_size = over_size;
                        if let Some(tables) = tables {
                            space.table_bytes = tables;
                            last_table_bytes = Some(Instant::now());
                        }
                    }
                }
                Err(err) => log::warn!("measuring the database's size failed: {err}"),
            }
        }
    })
}

/// How size-based retention runs: as of `now`, down to `limit` bytes in
/// use, its passes paced or not (see `run_pass`).
#[derive(Debug, Clone, Copy)]
pub struct Shrink {
    pub now: Timestamp,
    pub limit: u64,
    pub paced: bool,
}

/// Size-based retention: while the pages in use pass `limit`, moves the
/// cutoffs one hour at a time over the oldest data (raw hours first, then
/// history) and runs a pass. `Some(true)` if it could not get under the
/// limit, `None` if told to stop midway.
pub fn shrink(
    conn: &Connection,
    retain_batch: &impl Fn(Cutoffs) -> Result<RetentionBatch, StoreError>,
    by_age: Cutoffs,
    Shrink { now, limit, paced }: Shrink,
    stop: &Stop,
    report: &mut RetentionReport,
) -> Result<Option<bool>, StoreError> {
    let now_hour = now.millis() - now.millis().rem_euclid(HOUR_MS);
    let keep_raw_from = now_hour - (SIZE_KEEPS_RAW_HOURS - 1) * HOUR_MS;
    let mut cutoffs = by_age;
    while used_bytes(conn)? > limit {
        if stop.wait(Duration::ZERO) {
            return Ok(None);
        }
        let before = cutoffs;
        let oldest = |table: &str| -> Result<Option<i64>, StoreError> {
            Ok(
                conn.query_row(&format!("SELECT min(hour) FROM {table}"), [], |row| {
                    row.get(0)
                })?,
            )
        };
        match (oldest("hour_rollups")?, oldest("hour_history")?) {
            (Some(raw), _) if raw < keep_raw_from => cutoffs.raw = cutoffs.raw.max(raw + HOUR_MS),
            (_, Some(history)) => cutoffs.history = cutoffs.history.max(history + HOUR_MS),
            _ => {
                log::warn!(
                    "the database uses {} bytes, more than retention_size ({limit} bytes), \
                     with nothing older than the last {SIZE_KEEPS_RAW_HOURS} hours of raw samples \
                     left to delete: raise retention_size",
                    used_bytes(conn)?
                );
                return Ok(Some(true));
            }
        }
        if cutoffs == before {
            // Nothing older can go now (the seal is behind): next pass.
            return Ok(Some(true));
        }
        if !run_pass(retain_batch, cutoffs, stop, report, paced)? {
            return Ok(None);
        }
    }
    Ok(Some(false))
}

/// One pass, batch by batch; `Ok(false)` if told to stop midway. When
/// `paced`, it waits as long as each batch took before asking for the next,
/// so that ingest gets the writer at least half the time while a large
/// expiry (an hour of every server, all due at once) is deleted; deletion
/// still runs many times faster than samples arrive (benches/README.md,
/// "Retention keeps up").
pub fn run_pass(
    retain_batch: &impl Fn(Cutoffs) -> Result<RetentionBatch, StoreError>,
    cutoffs: Cutoffs,
    stop: &Stop,
    report: &mut RetentionReport,
    paced: bool,
) -> Result<bool, StoreError> {
    loop {
        let started = Instant::now();
        let batch = retain_batch(cutoffs)?;
        report.add(&batch);
        if !batch.more {
            return Ok(true);
        }
        let pause = if paced {
            started.elapsed()
        } else {
            Duration::ZERO
        };
        if stop.wait(pause) {
            return Ok(false);
        }
    }
}

fn log_report(report: &RetentionReport) {
    if report.is_empty() {
        return;
    }
    log::info!(
        "retention: deleted {} samples ({} hours kept as history), {} history hours and {} servers in {} batches",
        report.samples_deleted,
        report.hours_to_history,
        report.history_hours_deleted,
        report.servers_deleted,
        report.batches
    );
}
