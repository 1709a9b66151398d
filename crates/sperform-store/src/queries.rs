//! The read queries. Averages are computed by SQLite with GROUP BY over the
//! rollup tables (sums and counts per minute and hour) below the seal and
//! the samples themselves above it (see rollups.rs).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::rollups::{MINUTE_ROWS_ABOVE, Sums};
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
        .prepare_cached(
            "SELECT servers.id, max(servers.sealed_until, seal_floor.sealed_until)
             FROM servers, seal_floor WHERE servers.name = ?1",
        )?
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
/// `minute_rollups` in dense hours and from `samples` in sparse ones; from
/// `rolled_up` to the end, the samples themselves. Buckets of whole hours
/// also count the hour-level history (`hour_history`), whose hours are
/// indivisible: an hour counts in the bucket its start falls in.
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
    let whole_hours = window.width_ms % HOUR_MS == 0;
    let (hour_rows_end, minutes_from) = if !whole_hours {
        (start, start)
    } else if exact {
        (rolled_up, rolled_up)
    } else {
        (whole_hours_end, whole_hours_end)
    };
    let mut statement = match (window.width_ms, whole_hours) {
        (MINUTE_MS, _) => conn.prepare_cached(MINUTE_BUCKETS)?,
        (_, true) => conn.prepare_cached(HOUR_MULTIPLE_BUCKETS)?,
        (_, false) => conn.prepare_cached(MINUTE_MULTIPLE_BUCKETS)?,
    };
    // Each statement names only the parameters it uses.
    let mut params: Vec<(&str, &dyn rusqlite::ToSql)> = vec![
        (":server", &server_id),
        (":start", &start),
        (":rolled_up", &rolled_up),
        (":end", &end),
        (":sparse", &MINUTE_ROWS_ABOVE),
    ];
    if window.width_ms != MINUTE_MS {
        params.push((":width", &window.width_ms));
    }
    if whole_hours {
        params.push((":minutes_from", &minutes_from));
        params.push((":hour_rows_end", &hour_rows_end));
    }
    let mut rows = statement.query(params.as_slice())?;
    let mut totals = vec![Sums::default(); window.count];
    while let Some(row) = rows.next()? {
        let index: i64 = row.get(0)?;
        let samples: Option<i64> = row.get(1)?;
        let samples = samples.unwrap_or(0);
        if samples <= 0 {
            continue;
        }
        let Some(total) = usize::try_from(index).ok().and_then(|i| totals.get_mut(i)) else {
            continue;
        };
        // Rows carry sums; a one-sample rollup row may carry no extremes,
        // which are then its sums (see rollups.rs). Several rows may fall
        // in one bucket: they cover different samples and add up.
        let (cpu, ram): (f64, f64) = (row.get(2)?, row.get(3)?);
        total.merge(&Sums {
            samples,
            cpu,
            ram,
            cpu_min: row.get::<_, Option<f64>>(4)?.unwrap_or(cpu),
            cpu_max: row.get::<_, Option<f64>>(5)?.unwrap_or(cpu),
            ram_min: row.get::<_, Option<f64>>(6)?.unwrap_or(ram),
            ram_max: row.get::<_, Option<f64>>(7)?.unwrap_or(ram),
        });
    }
    Ok(totals
        .into_iter()
        .enumerate()
        .map(|(index, total)| {
            let mut bucket = Bucket::empty(window.bucket_start(index));
            if total.samples > 0 {
                let n = total.samples as f64;
                bucket.samples = total.samples.unsigned_abs();
                bucket.cpu = Some(total.cpu / n);
                bucket.ram = Some(total.ram / n);
                bucket.cpu_min = Some(total.cpu_min);
                bucket.cpu_max = Some(total.cpu_max);
                bucket.ram_min = Some(total.ram_min);
                bucket.ram_max = Some(total.ram_max);
            }
            bucket
        })
        .collect())
}

// Each statement yields rows of (bucket index, samples, CPU sum, RAM sum,
// CPU min, CPU max, RAM min, RAM max), possibly several per bucket, which
// `buckets` adds up. Rollup rows are returned as stored (their extremes
// may be NULL, in one-sample rows); raw samples are grouped by bucket.

/// Raw samples from `rolled_up` to the end, by bucket of `$width`.
macro_rules! raw_after_seal {
    ($width:literal) => {
        concat!(
            "SELECT (time - :start) / ",
            $width,
            " AS bucket, count(*), total(cpu), total(ram),
                    min(cpu), max(cpu), min(ram), max(ram)
             FROM samples
             WHERE server_id = :server AND time >= max(:start, :rolled_up) AND time <= :end
             GROUP BY bucket"
        )
    };
}

/// Raw samples of sparse hours (no minute rows, see rollups.rs) from
/// `$from` to `rolled_up`, one row each with its bucket of `$width`: one
/// seek per sparse hour row, never a scan of a dense hour's samples. They
/// come in time order and `buckets` adds them up, which costs less than
/// SQLite's sorting them for a GROUP BY.
macro_rules! raw_of_sparse_hours {
    ($width:literal, $from:literal) => {
        // One bound on each side of `samples.time`, from the hour row: with
        // two, SQLite seeks by one and filters by the other, and walked a
        // dense hour's samples only to drop them.
        concat!(
            "SELECT (samples.time - :start) / ",
            $width,
            ", 1, samples.cpu, samples.ram, samples.cpu, samples.cpu, samples.ram,
                    samples.ram
             FROM hour_rollups CROSS JOIN samples
                 ON samples.server_id = hour_rollups.server_id
                    AND samples.time >= max(hour_rollups.hour, ",
            $from,
            ")
                    AND samples.time < min(hour_rollups.hour + 3600000, :rolled_up)
             WHERE hour_rollups.server_id = :server
               AND hour_rollups.hour > ",
            $from,
            " - 3600000
               AND hour_rollups.hour < :rolled_up
               AND hour_rollups.samples <= :sparse"
        )
    };
}

/// Minute rows (dense hours) from `$from` to `rolled_up`.
macro_rules! minute_rows {
    ($width:literal, $from:literal) => {
        concat!(
            "SELECT (minute - :start) / ",
            $width,
            ", samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max
             FROM minute_rollups
             WHERE server_id = :server AND minute >= ",
            $from,
            " AND minute < :rolled_up"
        )
    };
}

/// Minute buckets: rolled-up minutes of dense hours as they are, those of
/// sparse hours and everything from `rolled_up` on from the samples.
const MINUTE_BUCKETS: &str = concat!(
    minute_rows!("60000", ":start"),
    " UNION ALL ",
    raw_of_sparse_hours!("60000", ":start"),
    " UNION ALL ",
    raw_after_seal!("60000")
);

/// Buckets of any other whole number of minutes: every part by minute.
const MINUTE_MULTIPLE_BUCKETS: &str = concat!(
    minute_rows!(":width", ":start"),
    " UNION ALL ",
    raw_of_sparse_hours!(":width", ":start"),
    " UNION ALL ",
    raw_after_seal!(":width")
);

/// Buckets of whole hours: the history, hour rows before `hour_rows_end`,
/// then the minutes from `minutes_from` (the hour holding `rolled_up`,
/// when its hour row holds samples after the end) and raw samples.
const HOUR_MULTIPLE_BUCKETS: &str = concat!(
    "SELECT (hour - :start) / :width, samples, cpu_sum, ram_sum,
            cpu_min, cpu_max, ram_min, ram_max
     FROM hour_history
     WHERE server_id = :server AND hour >= :start AND hour <= :end
     UNION ALL
     SELECT (hour - :start) / :width, samples, cpu_sum, ram_sum,
            cpu_min, cpu_max, ram_min, ram_max
     FROM hour_rollups
     WHERE server_id = :server AND hour >= :start AND hour < :hour_rows_end
     UNION ALL ",
    minute_rows!(":width", "max(:start, :minutes_from)"),
    " UNION ALL ",
    raw_of_sparse_hours!(":width", "max(:start, :minutes_from)"),
    " UNION ALL ",
    raw_after_seal!(":width")
);

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

/// Every server with its first and last sample and how many samples its
/// data holds, raw and history. Once a server's oldest (or newest) raw
/// samples have expired, its first (or last) sample is known to the hour:
/// the start of its oldest (or newest) history hour.
pub fn servers(conn: &Connection) -> Result<Vec<ServerSummary>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT name,
                (SELECT min(time) FROM samples WHERE server_id = servers.id),
                (SELECT max(time) FROM samples WHERE server_id = servers.id),
                (SELECT min(hour) FROM hour_history WHERE server_id = servers.id),
                (SELECT max(hour) FROM hour_history WHERE server_id = servers.id),
                (SELECT coalesce(sum(samples), 0) FROM hour_rollups
                 WHERE server_id = servers.id)
                + (SELECT coalesce(sum(samples), 0) FROM hour_history
                   WHERE server_id = servers.id)
                + (SELECT count(*) FROM samples
                   WHERE server_id = servers.id
                     AND time >= max(servers.sealed_until, seal_floor.sealed_until))
         FROM servers, seal_floor
         ORDER BY name",
    )?;
    let rows = statement.query_map([], |row| {
        let (first_raw, last_raw): (Option<i64>, Option<i64>) = (row.get(1)?, row.get(2)?);
        let (first_history, last_history): (Option<i64>, Option<i64>) = (row.get(3)?, row.get(4)?);
        let first = match (first_raw, first_history) {
            (Some(raw), Some(history)) if history < raw - raw.rem_euclid(HOUR_MS) => Some(history),
            (None, history) => history,
            (raw, _) => raw,
        };
        let last = last_raw.or(last_history);
        Ok(ServerSummary {
            name: row.get(0)?,
            first_seen: first.and_then(|ms| Timestamp::from_millis(ms).ok()),
            last_seen: last.and_then(|ms| Timestamp::from_millis(ms).ok()),
            samples: row.get::<_, i64>(5)?.unsigned_abs(),
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
    // Minute rows exist for dense hours only; a sparse hour's minutes come
    // from its samples, reached through its hour row (see rollups.rs).
    let floor = super::rollups::seal_floor(&tx)?;
    let mut statement = tx.prepare_cached(
        "SELECT servers.id, (minute - :start) / 60000, samples,
                cpu_sum / samples, ram_sum / samples
         FROM servers CROSS JOIN minute_rollups
             ON minute_rollups.server_id = servers.id
                AND minute >= :start
                AND minute < min(max(servers.sealed_until, :floor), :at_minute)
         UNION ALL
         SELECT servers.id, (time - :start) / 60000 AS bucket, count(*), avg(cpu), avg(ram)
         FROM servers CROSS JOIN hour_rollups CROSS JOIN samples
             ON hour_rollups.server_id = servers.id
                AND hour_rollups.hour > :start - 3600000
                AND hour_rollups.hour < min(max(servers.sealed_until, :floor), :at_minute)
                AND hour_rollups.samples <= :sparse
                AND samples.server_id = servers.id
                AND time >= max(:start, hour_rollups.hour)
                AND time < min(hour_rollups.hour + 3600000,
                               max(servers.sealed_until, :floor), :at_minute)
         GROUP BY servers.id, bucket
         UNION ALL
         SELECT servers.id, (time - :start) / 60000 AS bucket, count(*), avg(cpu), avg(ram)
         FROM servers CROSS JOIN samples
             ON samples.server_id = servers.id
                AND time >= max(:start, min(max(servers.sealed_until, :floor), :at_minute))
                AND time <= :at
         GROUP BY servers.id, bucket",
    )?;
    let mut rows = statement.query(rusqlite::named_params! {
        ":start": window.start.millis(),
        ":at_minute": at_minute,
        ":at": at.millis(),
        ":floor": floor,
        ":sparse": MINUTE_ROWS_ABOVE,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_statement_prepares_on_the_current_schema() {
        let mut conn = Connection::open_in_memory().expect("in-memory database");
        crate::schema::migrate(&mut conn).expect("migrations");
        for statement in [
            MINUTE_BUCKETS,
            MINUTE_MULTIPLE_BUCKETS,
            HOUR_MULTIPLE_BUCKETS,
        ] {
            if let Err(err) = conn.prepare(statement) {
                panic!("{err}\n{statement}");
            }
        }
    }
}
