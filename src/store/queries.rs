//! The read queries. Averages are computed by SQLite from the rollup tables
//! (sums and counts per minute and hour) and, for the minute holding `at`,
//! from the samples themselves.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::StoreError;
use crate::model::{
    Bucket, BucketWindow, LoadReport, MINUTE_MS, ServerName, ServerSummary, Timestamp,
};

pub fn load(
    conn: &mut Connection,
    server: &ServerName,
    at: Timestamp,
) -> Result<Option<LoadReport>, StoreError> {
    // One read transaction, so both views see the same snapshot.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let server_id: Option<i64> = tx
        .prepare_cached("SELECT id FROM servers WHERE name = ?1")?
        .query_row([server.as_str()], |row| row.get(0))
        .optional()?;
    let Some(server_id) = server_id else {
        return Ok(None);
    };
    let by_minute = minute_buckets(&tx, server_id, at)?;
    let by_hour = hour_buckets(&tx, server_id, at)?;
    tx.finish()?;
    Ok(Some(LoadReport {
        server: server.clone(),
        at,
        by_minute,
        by_hour,
    }))
}

/// The 60 minutes up to `at`: complete minutes from `minute_rollups`, the
/// minute holding `at` from the samples at or before `at`.
fn minute_buckets(
    conn: &Connection,
    server_id: i64,
    at: Timestamp,
) -> Result<Vec<Bucket>, StoreError> {
    let window = BucketWindow::minutes_to(at);
    let last = window.bucket_start(window.count - 1);
    let mut statement = conn.prepare_cached(
        "SELECT (minute - :start) / 60000, samples, cpu_sum / samples, ram_sum / samples
         FROM minute_rollups
         WHERE server_id = :server AND minute >= :start AND minute < :last
         UNION ALL
         SELECT (:last - :start) / 60000, count(*), avg(cpu), avg(ram)
         FROM samples
         WHERE server_id = :server AND time >= :last AND time <= :at",
    )?;
    let rows = statement.query(rusqlite::named_params! {
        ":server": server_id,
        ":start": window.start.millis(),
        ":last": last.millis(),
        ":at": at.millis(),
    })?;
    fill(window, rows)
}

/// The 24 hours up to `at`: complete hours from `hour_rollups`; the hour
/// holding `at` from its complete minutes in `minute_rollups` plus the
/// samples of the minute holding `at`, up to `at`.
fn hour_buckets(
    conn: &Connection,
    server_id: i64,
    at: Timestamp,
) -> Result<Vec<Bucket>, StoreError> {
    let window = BucketWindow::hours_to(at);
    let last_hour = window.bucket_start(window.count - 1);
    let last_minute = at.floor(MINUTE_MS);
    let mut statement = conn.prepare_cached(
        "SELECT (hour - :start) / 3600000, samples, cpu_sum / samples, ram_sum / samples
         FROM hour_rollups
         WHERE server_id = :server AND hour >= :start AND hour < :last_hour
         UNION ALL
         SELECT (:last_hour - :start) / 3600000, sum(n), sum(cpu) / sum(n), sum(ram) / sum(n)
         FROM (
             SELECT samples AS n, cpu_sum AS cpu, ram_sum AS ram
             FROM minute_rollups
             WHERE server_id = :server AND minute >= :last_hour AND minute < :last_minute
             UNION ALL
             SELECT count(*), total(cpu), total(ram)
             FROM samples
             WHERE server_id = :server AND time >= :last_minute AND time <= :at
         )",
    )?;
    let rows = statement.query(rusqlite::named_params! {
        ":server": server_id,
        ":start": window.start.millis(),
        ":last_hour": last_hour.millis(),
        ":last_minute": last_minute.millis(),
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
                (SELECT coalesce(sum(samples), 0) FROM hour_rollups WHERE server_id = servers.id)
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

pub fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM servers LIMIT 1)")?
        .query_row([], |_| Ok(()))?;
    Ok(())
}
