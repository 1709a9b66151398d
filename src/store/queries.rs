//! The read queries. Bucket averages are computed by SQLite with GROUP BY.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::StoreError;
use crate::model::{Bucket, BucketWindow, LoadReport, ServerName, ServerSummary, Timestamp};

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
    let by_minute = buckets(&tx, server_id, BucketWindow::minutes_to(at))?;
    let by_hour = buckets(&tx, server_id, BucketWindow::hours_to(at))?;
    tx.finish()?;
    Ok(Some(LoadReport {
        server: server.clone(),
        at,
        by_minute,
        by_hour,
    }))
}

/// All buckets of `window`, the empty ones included.
fn buckets(
    conn: &Connection,
    server_id: i64,
    window: BucketWindow,
) -> Result<Vec<Bucket>, StoreError> {
    let mut buckets: Vec<Bucket> = (0..window.count)
        .map(|index| Bucket::empty(window.bucket_start(index)))
        .collect();
    let mut statement = conn.prepare_cached(
        "SELECT (time - ?2) / ?3 AS bucket, AVG(cpu), AVG(ram), COUNT(*)
         FROM samples
         WHERE server_id = ?1 AND time >= ?2 AND time <= ?4
         GROUP BY bucket",
    )?;
    let mut rows = statement.query((
        server_id,
        window.start.millis(),
        window.width_ms,
        window.end.millis(),
    ))?;
    while let Some(row) = rows.next()? {
        let index: i64 = row.get(0)?;
        let Some(bucket) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) else {
            continue;
        };
        bucket.cpu = Some(row.get(1)?);
        bucket.ram = Some(row.get(2)?);
        bucket.samples = row.get::<_, i64>(3)?.unsigned_abs();
    }
    Ok(buckets)
}

pub fn servers(conn: &Connection) -> Result<Vec<ServerSummary>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT servers.name, MIN(samples.time), MAX(samples.time), COUNT(samples.time)
         FROM servers LEFT JOIN samples ON samples.server_id = servers.id
         GROUP BY servers.id
         ORDER BY servers.name",
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
