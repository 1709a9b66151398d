//! The read queries. Averages are computed by SQLite with GROUP BY over the
//! rollup tables (sums and counts per minute and hour) below the seal and
//! the samples themselves above it (see rollups.rs).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{ServerOverview, StoreError};
use crate::model::{
    Bucket, BucketWindow, HOUR_MS, LoadReport, MINUTE_MS, ServerName, ServerSummary, Timestamp,
};

pub fn load(
    conn: &mut Connection,
    server: &ServerName,
    at: Timestamp,
) -> Result<Option<LoadReport>, StoreError> {
    // One read transaction, so both views and the seal agree.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let found: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT id, (SELECT sealed_until FROM rollup_state) FROM servers WHERE name = ?1",
        )?
        .query_row([server.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((server_id, sealed_until)) = found else {
        return Ok(None);
    };
    // Below `rolled_up` the rollups are complete and hold no sample after
    // `at`; from it up to `at`, raw samples are read.
    let rolled_up = sealed_until.min(at.floor(MINUTE_MS).millis());
    let by_minute = minute_buckets(&tx, server_id, at, rolled_up)?;
    let by_hour = hour_buckets(&tx, server_id, at, rolled_up)?;
    tx.finish()?;
    Ok(Some(LoadReport {
        server: server.clone(),
        at,
        by_minute,
        by_hour,
    }))
}

/// The 60 minutes up to `at`: minutes before `rolled_up` from
/// `minute_rollups`, the rest from the samples at or before `at`.
fn minute_buckets(
    conn: &Connection,
    server_id: i64,
    at: Timestamp,
    rolled_up: i64,
) -> Result<Vec<Bucket>, StoreError> {
    let window = BucketWindow::minutes_to(at);
    // The two parts cover different minutes, so no bucket needs both.
    let mut statement = conn.prepare_cached(
        "SELECT (minute - :start) / 60000, samples, cpu_sum / samples, ram_sum / samples
         FROM minute_rollups
         WHERE server_id = :server AND minute >= :start AND minute < :rolled_up
         UNION ALL
         SELECT (time - :start) / 60000 AS bucket, count(*), avg(cpu), avg(ram)
         FROM samples
         WHERE server_id = :server AND time >= max(:start, :rolled_up) AND time <= :at
         GROUP BY bucket",
    )?;
    let rows = statement.query(rusqlite::named_params! {
        ":server": server_id,
        ":start": window.start.millis(),
        ":rolled_up": rolled_up,
        ":at": at.millis(),
    })?;
    fill(window, rows)
}

/// The 24 hours up to `at`: whole hours before `rolled_up` from
/// `hour_rollups`, the minutes before it in a later hour from
/// `minute_rollups`, the rest from the samples at or before `at`.
fn hour_buckets(
    conn: &Connection,
    server_id: i64,
    at: Timestamp,
    rolled_up: i64,
) -> Result<Vec<Bucket>, StoreError> {
    let window = BucketWindow::hours_to(at);
    let rolled_up_hours = rolled_up - rolled_up.rem_euclid(HOUR_MS);
    // Whole rolled-up hours stand alone; the hours from `rolled_up_hours`
    // on may mix minute rollups and raw samples, so those are grouped.
    let mut statement = conn.prepare_cached(
        "SELECT (hour - :start) / 3600000, samples, cpu_sum / samples, ram_sum / samples
         FROM hour_rollups
         WHERE server_id = :server AND hour >= :start AND hour < :rolled_up_hours
         UNION ALL
         SELECT bucket, sum(n), sum(cpu) / sum(n), sum(ram) / sum(n)
         FROM (
             SELECT (minute - :start) / 3600000 AS bucket, samples AS n,
                    cpu_sum AS cpu, ram_sum AS ram
             FROM minute_rollups
             WHERE server_id = :server AND minute >= max(:start, :rolled_up_hours)
                   AND minute < :rolled_up
             UNION ALL
             SELECT (time - :start) / 3600000, 1, cpu, ram
             FROM samples
             WHERE server_id = :server AND time >= max(:start, :rolled_up) AND time <= :at
         )
         GROUP BY bucket",
    )?;
    let rows = statement.query(rusqlite::named_params! {
        ":server": server_id,
        ":start": window.start.millis(),
        ":rolled_up_hours": rolled_up_hours,
        ":rolled_up": rolled_up,
        ":at": at.millis(),
    })?;
    fill(window, rows)
}

/// All buckets of `window`, filled from rows of (index, samples, cpu mean,
/// ram mean); the buckets no row names stay empty.
fn fill(window: BucketWindow, mut rows: rusqlite::Rows<'_>) -> Result<Vec<Bucket>, StoreError> {
    let mut buckets: Vec<Bucket> = (0..window.count)
        .map(|index| Bucket::empty(window.bucket_start(index)))
        .collect();
    while let Some(row) = rows.next()? {
        let index: i64 = row.get(0)?;
        let samples: Option<i64> = row.get(1)?;
        let samples = samples.unwrap_or(0);
        if samples <= 0 {
            continue;
        }
        let Some(bucket) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) else {
            continue;
        };
        bucket.samples = samples.unsigned_abs();
        bucket.cpu = row.get(2)?;
        bucket.ram = row.get(3)?;
    }
    Ok(buckets)
}

pub fn servers(conn: &Connection) -> Result<Vec<ServerSummary>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT name,
                (SELECT min(time) FROM samples WHERE server_id = servers.id),
                (SELECT max(time) FROM samples WHERE server_id = servers.id),
                (SELECT coalesce(sum(samples), 0) FROM hour_rollups
                 WHERE server_id = servers.id)
                + (SELECT count(*) FROM samples
                   WHERE server_id = servers.id
                     AND time >= (SELECT sealed_until FROM rollup_state))
         FROM servers
         ORDER BY name",
    )?;
    let rows = statement.query_map([], |row| {
        let first: Option<i64> = row.get(1)?;
        let last: Option<i64> = row.get(2)?;
        Ok(ServerSummary {
            name: row.get(0)?,
            first_seen: first.and_then(|ms| Timestamp::from_millis(ms).ok()),
            last_seen: last.and_then(|ms| Timestamp::from_millis(ms).ok()),
            samples: row.get::<_, i64>(3)?.unsigned_abs(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn server_count(conn: &Connection) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM servers")?
        .query_row([], |row| row.get(0))?;
    Ok(count.unsigned_abs())
}

pub fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM servers LIMIT 1)")?
        .query_row([], |_| Ok(()))?;
    Ok(())
}

/// Every known server, sorted by name, with its latest sample time at or
/// before `at` and the mean CPU and RAM of each of the 60 minutes up to
/// `at` (oldest first, `None` where a minute holds no sample): the same
/// minute buckets `load` answers, for all servers in one read.
pub fn overview(conn: &mut Connection, at: Timestamp) -> Result<Vec<ServerOverview>, StoreError> {
    // One read transaction, so the seal, the list and the buckets agree.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let sealed_until: i64 = tx
        .prepare_cached("SELECT sealed_until FROM rollup_state")?
        .query_row([], |row| row.get(0))?;
    let rolled_up = sealed_until.min(at.floor(MINUTE_MS).millis());
    let window = BucketWindow::minutes_to(at);

    let mut servers = Vec::new();
    let mut index_of_id = HashMap::new();
    {
        let mut statement = tx.prepare_cached(
            "SELECT id, name,
                    (SELECT max(time) FROM samples
                     WHERE server_id = servers.id AND time <= ?1)
             FROM servers
             ORDER BY name",
        )?;
        let mut rows = statement.query([at.millis()])?;
        while let Some(row) = rows.next()? {
            let last_seen: Option<i64> = row.get(2)?;
            index_of_id.insert(row.get::<_, i64>(0)?, servers.len());
            servers.push(ServerOverview {
                name: row.get(1)?,
                last_seen: last_seen.and_then(|ms| Timestamp::from_millis(ms).ok()),
                cpu: vec![None; window.count],
                ram: vec![None; window.count],
            });
        }
    }

    // As in `minute_buckets`, rolled-up minutes and raw samples cover
    // different minutes. `CROSS JOIN` keeps `servers` the outer loop, so
    // each part is one primary-key range seek per server, never a scan of
    // every rollup or sample.
    let mut statement = tx.prepare_cached(
        "SELECT servers.id, (minute - :start) / 60000, samples,
                cpu_sum / samples, ram_sum / samples
         FROM servers CROSS JOIN minute_rollups
             ON minute_rollups.server_id = servers.id
                AND minute >= :start AND minute < :rolled_up
         UNION ALL
         SELECT servers.id, (time - :start) / 60000 AS bucket, count(*), avg(cpu), avg(ram)
         FROM servers CROSS JOIN samples
             ON samples.server_id = servers.id
                AND time >= max(:start, :rolled_up) AND time <= :at
         GROUP BY servers.id, bucket",
    )?;
    let mut rows = statement.query(rusqlite::named_params! {
        ":start": window.start.millis(),
        ":rolled_up": rolled_up,
        ":at": at.millis(),
    })?;
    while let Some(row) = rows.next()? {
        let samples: Option<i64> = row.get(2)?;
        if samples.unwrap_or(0) <= 0 {
            continue;
        }
        let server_id: i64 = row.get(0)?;
        let bucket: i64 = row.get(1)?;
        let Some(server) = index_of_id
            .get(&server_id)
            .and_then(|&i| servers.get_mut(i))
        else {
            continue;
        };
        let Ok(bucket) = usize::try_from(bucket) else {
            continue;
        };
        if bucket < window.count {
            server.cpu[bucket] = row.get(3)?;
            server.ram[bucket] = row.get(4)?;
        }
    }
    drop(rows);
    drop(statement);
    tx.finish()?;
    Ok(servers)
}

/// Whether a server of this name is known.
pub fn server_exists(conn: &Connection, server: &ServerName) -> Result<bool, StoreError> {
    let found = conn
        .prepare_cached("SELECT 1 FROM servers WHERE name = ?1")?
        .query_row([server.as_str()], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}
