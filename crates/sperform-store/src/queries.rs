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
    let Some((server_id, sealed_until)) = find_server(&tx, server)? else {
        return Ok(None);
    };
    // Both views end at `at`: one look at the rollups serves them.
    let (minutes, hours) = (BucketWindow::minutes_to(at), BucketWindow::hours_to(at));
    let rolled_up = RolledUp::to(&tx, server_id, minutes.end, sealed_until)?;
    let by_minute = buckets(&tx, server_id, minutes, rolled_up)?;
    let by_hour = buckets(&tx, server_id, hours, rolled_up)?;
    tx.finish()?;
    Ok(Some(LoadReport {
        server: server.clone(),
        at,
        by_minute,
        by_hour,
    }))
}

/// The buckets of any window (a range query), or `None` for a server never
/// seen.
pub fn range(
    conn: &mut Connection,
    server: &ServerName,
    window: BucketWindow,
) -> Result<Option<Vec<Bucket>>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let Some((server_id, sealed_until)) = find_server(&tx, server)? else {
        return Ok(None);
    };
    let rolled_up = RolledUp::to(&tx, server_id, window.end, sealed_until)?;
    let buckets = buckets(&tx, server_id, window, rolled_up)?;
    tx.finish()?;
    Ok(Some(buckets))
}

/// The server's id and the rollup seal, read in the caller's transaction.
fn find_server(conn: &Connection, server: &ServerName) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, sealed_until FROM servers WHERE name = ?1")?
        .query_row([server.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// How far the rollup rows count, for windows ending at `end`. Rollup
/// rows are whole buckets' worth, up to the seal, when they hold no sample
/// after the end: always when the seal is not past the end's minute (a
/// query up to now), else when no sample lies between the end and the
/// seal. Then every row below the seal counts as it is (the row of the hour
/// holding the seal or the end standing in for up to 59 minute rows), and
/// only samples from the seal to the end are read raw. Otherwise rows are
/// used up to the end's minute only, and the hour holding it is summed from
/// its minute rows.
#[derive(Debug, Clone, Copy)]
struct RolledUp {
    until: i64,
    exact: bool,
}

impl RolledUp {
    fn to(
        conn: &Connection,
        server_id: i64,
        end: Timestamp,
        sealed_until: i64,
    ) -> Result<RolledUp, StoreError> {
        let end_minute = end.floor(MINUTE_MS).millis();
        let exact = sealed_until <= end_minute
            || !has_samples(
                conn,
                server_id,
                end.millis().saturating_add(1),
                sealed_until,
            )?;
        Ok(RolledUp {
            until: if exact { sealed_until } else { end_minute },
            exact,
        })
    }
}

/// Every bucket of `window` (whose width is a whole number of minutes),
/// counting the samples at or before `window.end`. Below `rolled_up` the
/// rollups are complete and hold no sample after the end: whole hours come
/// from `hour_rollups` when buckets are whole hours, the other minutes from
/// `minute_rollups`; from `rolled_up` to the end, the samples themselves.
fn buckets(
    conn: &Connection,
    server_id: i64,
    window: BucketWindow,
    RolledUp {
        until: rolled_up,
        exact,
    }: RolledUp,
) -> Result<Vec<Bucket>, StoreError> {
    let (start, end) = (window.start.millis(), window.end.millis());
    let whole_hours_end = rolled_up - rolled_up.rem_euclid(HOUR_MS);
    let (hour_rows_end, minutes_from) = if window.width_ms % HOUR_MS != 0 {
        (start, start)
    } else if exact {
        (rolled_up, rolled_up)
    } else {
        (whole_hours_end, whole_hours_end)
    };
    // A rollup row exactly one bucket wide is that bucket: `/load`'s two
    // views read those rows as they are, and group (sort) only the few
    // rows of the buckets that mix rollup rows and raw samples.
    let mut statement = match window.width_ms {
        MINUTE_MS => conn.prepare_cached(MINUTE_BUCKETS)?,
        HOUR_MS => conn.prepare_cached(HOUR_BUCKETS)?,
        _ => conn.prepare_cached(ANY_BUCKETS)?,
    };
    // Each statement names only the parameters it uses.
    let mut params: Vec<(&str, &dyn rusqlite::ToSql)> = vec![
        (":server", &server_id),
        (":start", &start),
        (":rolled_up", &rolled_up),
        (":end", &end),
    ];
    // Whole hours before it are read as they are (hour buckets only).
    let hour_rows_from = if window.width_ms == HOUR_MS {
        whole_hours_end
    } else {
        start
    };
    if window.width_ms != MINUTE_MS {
        params.push((":width", &window.width_ms));
        params.push((":hour_rows_from", &hour_rows_from));
        params.push((":hour_rows_end", &hour_rows_end));
        params.push((":minutes_from", &minutes_from));
    }
    let mut rows = statement.query(params.as_slice())?;
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
        // Rows carry sums; a one-sample rollup row may carry no extremes,
        // which are then its sums (see rollups.rs).
        let (cpu, ram): (f64, f64) = (row.get(2)?, row.get(3)?);
        let n = samples as f64;
        bucket.samples = samples.unsigned_abs();
        bucket.cpu = Some(cpu / n);
        bucket.ram = Some(ram / n);
        bucket.cpu_min = Some(row.get::<_, Option<f64>>(4)?.unwrap_or(cpu));
        bucket.cpu_max = Some(row.get::<_, Option<f64>>(5)?.unwrap_or(cpu));
        bucket.ram_min = Some(row.get::<_, Option<f64>>(6)?.unwrap_or(ram));
        bucket.ram_max = Some(row.get::<_, Option<f64>>(7)?.unwrap_or(ram));
    }
    Ok(buckets)
}

/// Buckets `:width` wide summed from hour rows in `[hour_rows_from,
/// hour_rows_end)` (none unless buckets are whole hours), minute rows from
/// `minutes_from` to `rolled_up`, and raw samples from `rolled_up` to `end`.
macro_rules! grouped_buckets {
    () => {
        "SELECT bucket, sum(n), sum(cpu), sum(ram),
                min(cpu_min), max(cpu_max), min(ram_min), max(ram_max)
         FROM (
             SELECT (hour - :start) / :width AS bucket, samples AS n, cpu_sum AS cpu,
                    ram_sum AS ram, coalesce(cpu_min, cpu_sum) AS cpu_min,
                    coalesce(cpu_max, cpu_sum) AS cpu_max,
                    coalesce(ram_min, ram_sum) AS ram_min,
                    coalesce(ram_max, ram_sum) AS ram_max
             FROM hour_rollups
             WHERE server_id = :server AND hour >= max(:start, :hour_rows_from)
                   AND hour < :hour_rows_end
             UNION ALL
             SELECT (minute - :start) / :width, samples, cpu_sum, ram_sum,
                    coalesce(cpu_min, cpu_sum), coalesce(cpu_max, cpu_sum),
                    coalesce(ram_min, ram_sum), coalesce(ram_max, ram_sum)
             FROM minute_rollups
             WHERE server_id = :server AND minute >= max(:start, :minutes_from)
                   AND minute < :rolled_up
             UNION ALL
             SELECT (time - :start) / :width, 1, cpu, ram, cpu, cpu, ram, ram
             FROM samples
             WHERE server_id = :server AND time >= max(:start, :rolled_up)
                   AND time <= :end
         )
         GROUP BY bucket"
    };
}

// Each statement yields rows of (bucket index, samples, CPU sum, RAM sum,
// CPU min, CPU max, RAM min, RAM max); `buckets` divides the sums. Rollup
// rows one bucket wide are returned as stored (their extremes may be NULL,
// in one-sample rows); rows that share a bucket are summed by GROUP BY,
// their extremes taken with `coalesce`, since min() and max() skip NULLs.

/// Minute buckets: rolled-up minutes as they are, then the raw samples from
/// `rolled_up` grouped by minute. The two parts cover different minutes.
const MINUTE_BUCKETS: &str = "
    SELECT (minute - :start) / 60000, samples, cpu_sum, ram_sum,
           cpu_min, cpu_max, ram_min, ram_max
    FROM minute_rollups
    WHERE server_id = :server AND minute >= :start AND minute < :rolled_up
    UNION ALL
    SELECT (time - :start) / 60000 AS bucket, count(*), sum(cpu), sum(ram),
           min(cpu), max(cpu), min(ram), max(ram)
    FROM samples
    WHERE server_id = :server AND time >= max(:start, :rolled_up) AND time <= :end
    GROUP BY bucket";

/// Hour buckets: rolled-up whole hours (before `hour_rows_from`) as they
/// are; the hour holding `rolled_up` mixes its rollup row (when exact) or
/// its minute rows with raw samples, so that one is grouped (`:width` is an
/// hour).
const HOUR_BUCKETS: &str = concat!(
    "SELECT (hour - :start) / 3600000, samples, cpu_sum, ram_sum,
            cpu_min, cpu_max, ram_min, ram_max
     FROM hour_rollups
     WHERE server_id = :server AND hour >= :start AND hour < :hour_rows_from
     UNION ALL ",
    grouped_buckets!()
);

/// Buckets of any other width: every part grouped (`hour_rows_from` is
/// `start`).
const ANY_BUCKETS: &str = grouped_buckets!();

/// Whether the server has a sample with `from <= time < until`.
fn has_samples(
    conn: &Connection,
    server_id: i64,
    from: i64,
    until: i64,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM samples
                            WHERE server_id = ?1 AND time >= ?2 AND time < ?3)",
        )?
        .query_row([server_id, from, until], |row| row.get(0))?)
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
                     AND time >= servers.sealed_until)
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
    // Each server's rollups are read below its own seal (or the minute of
    // `at`, if earlier), its samples from there on.
    let at_minute = at.floor(MINUTE_MS).millis();
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
                AND minute >= :start AND minute < min(servers.sealed_until, :at_minute)
         UNION ALL
         SELECT servers.id, (time - :start) / 60000 AS bucket, count(*), avg(cpu), avg(ram)
         FROM servers CROSS JOIN samples
             ON samples.server_id = servers.id
                AND time >= max(:start, min(servers.sealed_until, :at_minute)) AND time <= :at
         GROUP BY servers.id, bucket",
    )?;
    let mut rows = statement.query(rusqlite::named_params! {
        ":start": window.start.millis(),
        ":at_minute": at_minute,
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

/// Every known server's name, sorted (byte order).
pub fn server_names(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT name FROM servers ORDER BY name")?;
    let rows = statement.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The raw samples of the named servers with `after < time <= until` (Unix
/// ms), oldest first, in the order of `servers` (unknown names are left
/// out), all from one snapshot; `None` once more than `max_samples` would
/// be read. Each server is one range seek on the primary key.
pub fn raw_samples(
    conn: &mut Connection,
    servers: &[String],
    after: i64,
    until: i64,
    max_samples: usize,
) -> Result<Option<Vec<super::ServerSamples>>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let mut found = Vec::with_capacity(servers.len());
    let mut total = 0usize;
    {
        let mut id_of = tx.prepare_cached("SELECT id FROM servers WHERE name = ?1")?;
        let mut samples_of = tx.prepare_cached(
            "SELECT time, cpu, ram FROM samples
             WHERE server_id = ?1 AND time > ?2 AND time <= ?3
             ORDER BY time, seq",
        )?;
        for name in servers {
            let Some(id) = id_of
                .query_row([name], |row| row.get::<_, i64>(0))
                .optional()?
            else {
                continue;
            };
            let mut rows = samples_of.query(rusqlite::params![id, after, until])?;
            let mut samples = Vec::new();
            while let Some(row) = rows.next()? {
                total += 1;
                if total > max_samples {
                    return Ok(None);
                }
                samples.push(super::RawSample {
                    time: row.get(0)?,
                    cpu: row.get(1)?,
                    ram: row.get(2)?,
                });
            }
            found.push(super::ServerSamples {
                name: name.clone(),
                samples,
            });
        }
    }
    tx.finish()?;
    Ok(Some(found))
}
