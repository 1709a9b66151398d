//! The rollup tables and the seal that keeps them cheap to write.
//!
//! `hour_rollups` holds, for each server, the sums and counts of exactly
//! its samples whose time is before its seal (a minute boundary: the later
//! of `servers.sealed_until` and `seal_floor`), one row per hour;
//! `minute_rollups` the same per minute, but only for dense hours (more
//! than `MINUTE_ROWS_ABOVE` samples), since a minute row of one sample
//! costs more than it saves. Samples at or after the seal are in `samples`
//! only; the writer keeps their per-minute sums in memory (`Unsealed`) and,
//! once their minute has passed, adds them to the rollups and moves the
//! server's seal forward, in the same transaction. So a live sample costs
//! one row write, not three, and readers combine rollups below the seal
//! with raw samples above it (and in sparse hours). When a minute ends,
//! the servers are sealed a few hundred per transaction (a walk), so no
//! request waits for all of them; once the walk is done the one-row floor
//! moves, and every server's seal is the same again. The in-memory sums
//! are only a write buffer: answers always come from the tables, and on
//! start-up the sums are recomputed from `samples`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, Transaction, params};

use super::StoreError;
use crate::model::{HOUR_MS, MINUTE_MS, Sample};

/// Where every server is sealed at least; a server's own `sealed_until`
/// counts where it is later.
pub fn seal_floor(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT sealed_until FROM seal_floor")?
        .query_row([], |row| row.get(0))?)
}

/// Sum, count and extremes of some samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sums {
    pub samples: i64,
    pub cpu: f64,
    pub ram: f64,
    pub cpu_min: f64,
    pub cpu_max: f64,
    pub ram_min: f64,
    pub ram_max: f64,
}

impl Default for Sums {
    fn default() -> Self {
        Sums {
            samples: 0,
            cpu: 0.0,
            ram: 0.0,
            cpu_min: f64::INFINITY,
            cpu_max: f64::NEG_INFINITY,
            ram_min: f64::INFINITY,
            ram_max: f64::NEG_INFINITY,
        }
    }
}

impl Sums {
    fn add_sample(&mut self, sample: &Sample) {
        self.samples += 1;
        self.cpu += sample.cpu;
        self.ram += sample.ram;
        self.cpu_min = self.cpu_min.min(sample.cpu);
        self.cpu_max = self.cpu_max.max(sample.cpu);
        self.ram_min = self.ram_min.min(sample.ram);
        self.ram_max = self.ram_max.max(sample.ram);
    }

    pub fn merge(&mut self, other: &Sums) {
        self.samples += other.samples;
        self.cpu += other.cpu;
        self.ram += other.ram;
        self.cpu_min = self.cpu_min.min(other.cpu_min);
        self.cpu_max = self.cpu_max.max(other.cpu_max);
        self.ram_min = self.ram_min.min(other.ram_min);
        self.ram_max = self.ram_max.max(other.ram_max);
    }
}

/// Sums to add to the rollup tables in the current transaction, in key
/// order so the upserts walk each table's pages in order.
#[derive(Default)]
pub struct RollupDelta {
    hours: BTreeMap<(i64, i64), HourDelta>,
}

/// One server-hour's sums, and its sums by minute: these are written only
/// if the hour is dense, so they are kept as they come (one map entry per
/// sample would cost more than the rest of the delta) and sorted at flush.
#[derive(Default)]
struct HourDelta {
    sums: Sums,
    minutes: Vec<(i64, Sums)>,
}

impl RollupDelta {
    pub fn add_sample(&mut self, server_id: i64, sample: &Sample) {
        let mut sums = Sums::default();
        sums.add_sample(sample);
        self.add_minute(server_id, sample.time.floor(MINUTE_MS).millis(), &sums);
    }

    fn add_minute(&mut self, server_id: i64, minute: i64, sums: &Sums) {
        let hour = minute - minute.rem_euclid(HOUR_MS);
        let delta = self.hours.entry((server_id, hour)).or_default();
        delta.sums.merge(sums);
        match delta.minutes.last_mut() {
            Some((last, last_sums)) if *last == minute => last_sums.merge(sums),
            _ => delta.minutes.push((minute, *sums)),
        }
    }

    /// Writes the sums out and empties the delta. Hour rows go first:
    /// their new counts say which hours keep minute rows (see
    /// `MINUTE_ROWS_ABOVE`). An hour already dense gets its minute sums; an
    /// hour that has just become dense gets all its minute rows, summed
    /// from its rolled-up samples; a sparse hour gets none.
    pub fn flush(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let hours = std::mem::take(&mut self.hours);
        let mut dense_minutes = Vec::new();
        let mut became_dense = Vec::new();
        {
            let mut upsert = tx.prepare_cached(HOUR_UPSERT)?;
            for ((server_id, hour), delta) in hours {
                let total: i64 =
                    upsert.query_row(row_params(server_id, hour, &delta.sums), |row| row.get(0))?;
                if total - delta.sums.samples > MINUTE_ROWS_ABOVE {
                    dense_minutes.push((server_id, delta.minutes));
                } else if total > MINUTE_ROWS_ABOVE {
                    became_dense.push((server_id, hour));
                }
            }
        }
        let mut upsert = tx.prepare_cached(MINUTE_UPSERT)?;
        for (server_id, mut minutes) in dense_minutes {
            // Stable, so equal minutes merge in the order they came.
            minutes.sort_by_key(|(minute, _)| *minute);
            let mut minutes = minutes.into_iter().peekable();
            while let Some((minute, mut sums)) = minutes.next() {
                while let Some((_, more)) = minutes.next_if(|(next, _)| *next == minute) {
                    sums.merge(&more);
                }
                upsert.execute(row_params(server_id, minute, &sums))?;
            }
        }
        let mut fill = tx.prepare_cached(MINUTE_ROWS_OF_HOUR)?;
        for (server_id, hour) in became_dense {
            fill.execute(params![server_id, hour, hour + HOUR_MS])?;
        }
        Ok(())
    }
}

/// An hour keeps a row per minute in `minute_rollups` only while its hour
/// row counts more than this many samples (2 a minute on average). Below
/// that a minute row would hold few samples and cost more than it saves:
/// at one sample a minute it is a second row as large as the sample. So
/// readers take the minutes of a sparse hour from `samples` (at most this
/// many rows), and those of a dense hour from `minute_rollups`. Kept low
/// because every hour starts sparse: at one sample a second an hour reads
/// its samples for its first two minutes. Migration 0006 writes the same
/// number.
pub const MINUTE_ROWS_ABOVE: i64 = 120;

/// Every minute row of one server's hour (`?1`, from `?2` to `?3`), summed
/// from the samples that are rolled up: those before the server's seal as
/// this transaction leaves it.
const MINUTE_ROWS_OF_HOUR: &str = "INSERT INTO minute_rollups
         (server_id, minute, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max)
     SELECT ?1, time - time % 60000, count(*), total(cpu), total(ram),
            iif(count(*) > 1, min(cpu), NULL), iif(count(*) > 1, max(cpu), NULL),
            iif(count(*) > 1, min(ram), NULL), iif(count(*) > 1, max(ram), NULL)
     FROM samples
     WHERE server_id = ?1 AND time >= ?2 AND time < ?3
       AND time < (SELECT max(servers.sealed_until, seal_floor.sealed_until)
                   FROM servers, seal_floor WHERE servers.id = ?1)
     GROUP BY time / 60000";

/// The parameters of one rollup row's upsert. A one-sample row's extremes
/// are its sums: stored as NULL, they take no space.
fn row_params(server_id: i64, bucket: i64, sums: &Sums) -> impl rusqlite::Params + use<> {
    let extremes =
        (sums.samples > 1).then_some((sums.cpu_min, sums.cpu_max, sums.ram_min, sums.ram_max));
    (
        server_id,
        bucket,
        sums.samples,
        sums.cpu,
        sums.ram,
        extremes.map(|e| e.0),
        extremes.map(|e| e.1),
        extremes.map(|e| e.2),
        extremes.map(|e| e.3),
    )
}

// A rollup row of one sample may store NULL for its extremes (most rows
// of a server reporting once a minute): they are then its sums, and take no
// space. Readers and the upserts below read them with `coalesce(cpu_min,
// cpu_sum)` and so on.
/// The `SET` clause that adds a rollup row (`excluded`) to the stored row
/// of the same bucket: counts and sums add up, extremes are the extremes
/// of both. The rollup upserts here and retention's move of an hour row to
/// the history share it.
macro_rules! add_rollup_row {
    () => {
        "samples = samples + excluded.samples,
         cpu_sum = cpu_sum + excluded.cpu_sum,
         ram_sum = ram_sum + excluded.ram_sum,
         cpu_min = min(coalesce(cpu_min, cpu_sum), coalesce(excluded.cpu_min, excluded.cpu_sum)),
         cpu_max = max(coalesce(cpu_max, cpu_sum), coalesce(excluded.cpu_max, excluded.cpu_sum)),
         ram_min = min(coalesce(ram_min, ram_sum), coalesce(excluded.ram_min, excluded.ram_sum)),
         ram_max = max(coalesce(ram_max, ram_sum), coalesce(excluded.ram_max, excluded.ram_sum))"
    };
}
pub(crate) use add_rollup_row;

const MINUTE_UPSERT: &str = concat!(
    "INSERT INTO minute_rollups
         (server_id, minute, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT (server_id, minute) DO UPDATE SET ",
    add_rollup_row!()
);

/// The hour row's upsert answers the row's new sample count.
const HOUR_UPSERT: &str = concat!(
    "INSERT INTO hour_rollups
         (server_id, hour, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT (server_id, hour) DO UPDATE SET ",
    add_rollup_row!(),
    " RETURNING samples"
);

/// Servers sealed in one transaction at most while requests wait on it:
/// each moves its ended minutes into the rollups (two row writes).
pub const SEAL_SERVERS_PER_TRANSACTION: usize = 250;

/// The committed samples at or after their server's seal, summed by server
/// and minute, and the seals themselves: every server is sealed at least up
/// to `floor`; while a walk is under way, the servers it has passed are
/// sealed up to the walk's target (`ahead`).
pub struct Unsealed {
    floor: i64,
    ahead: HashMap<i64, i64>,
    sums: BTreeMap<(i64, i64), Sums>,
    /// The server the walk towards `target` goes on from.
    walk: Option<Walk>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Walk {
    target: i64,
    next_server: i64,
}

impl Unsealed {
    /// Reads the seals and recomputes the sums of the samples above them.
    pub fn load(conn: &Connection) -> Result<Unsealed, StoreError> {
        let floor = seal_floor(conn)?;
        let mut ahead =
            conn.prepare("SELECT id, sealed_until FROM servers WHERE sealed_until > ?1")?;
        let ahead = ahead
            .query_map([floor], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        // One index seek per server rather than a scan of every sample.
        let mut statement = conn.prepare(
            "SELECT samples.server_id, samples.time - samples.time % 60000,
                    count(*), total(samples.cpu), total(samples.ram),
                    min(samples.cpu), max(samples.cpu), min(samples.ram), max(samples.ram)
             FROM servers CROSS JOIN samples
                 ON samples.server_id = servers.id
                    AND samples.time >= max(servers.sealed_until, ?1)
             GROUP BY samples.server_id, samples.time / 60000",
        )?;
        let rows = statement.query_map([floor], |row| {
            Ok((
                (row.get(0)?, row.get(1)?),
                Sums {
                    samples: row.get(2)?,
                    cpu: row.get(3)?,
                    ram: row.get(4)?,
                    cpu_min: row.get(5)?,
                    cpu_max: row.get(6)?,
                    ram_min: row.get(7)?,
                    ram_max: row.get(8)?,
                },
            ))
        })?;
        let sums = rows.collect::<Result<_, _>>()?;
        Ok(Unsealed {
            floor,
            ahead,
            sums,
            walk: None,
        })
    }

    /// Where every server is sealed at least.
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// Whether there is anything to seal before `target`, counting what
    /// `change` adds.
    pub fn wants_seal(&self, change: &UnsealedChange, target: i64) -> bool {
        target > self.floor
            && (!self.sums.is_empty() || change.added.keys().any(|(_, minute)| *minute < target))
    }

    fn seal_of(&self, server_id: i64) -> i64 {
        self.ahead.get(&server_id).copied().unwrap_or(self.floor)
    }

    /// Applies what a committed transaction did.
    pub fn apply(&mut self, change: UnsealedChange) {
        if !change.forgotten.is_empty() {
            self.sums
                .retain(|(server_id, _), _| !change.forgotten.contains(server_id));
            self.ahead
                .retain(|server_id, _| !change.forgotten.contains(server_id));
        }
        for (server_id, seal) in change.sealed {
            // Its sums below the new seal went to the rollups.
            take_below(&mut self.sums, server_id, seal);
            self.ahead.insert(server_id, seal);
        }
        if let Some(floor) = change.floor {
            // Every server is sealed up to it: no sum below it is left.
            self.sums.retain(|(_, minute), _| *minute >= floor);
            self.floor = floor;
            self.ahead.retain(|_, seal| *seal > floor);
        }
        if let Some(walk) = change.walk {
            self.walk = walk;
        }
        for (key, sums) in change.added {
            self.sums.entry(key).or_default().merge(&sums);
        }
    }
}

/// What one transaction does to the unsealed sums and the seals; applied
/// only after it committed, so a rolled-back transaction leaves them as
/// they were.
#[derive(Default)]
pub struct UnsealedChange {
    added: BTreeMap<(i64, i64), Sums>,
    /// Servers deleted: their committed sums go. (A new server may get the
    /// same id later in the transaction; its sums are in `added`.)
    forgotten: BTreeSet<i64>,
    /// Servers sealed in this transaction, with their new seals.
    sealed: HashMap<i64, i64>,
    /// Every server's new seal, when a walk ended.
    floor: Option<i64>,
    /// Where the walk stands after this transaction, if it moved.
    walk: Option<Option<Walk>>,
}

impl UnsealedChange {
    pub fn add_sample(&mut self, server_id: i64, sample: &Sample) {
        let minute = sample.time.floor(MINUTE_MS).millis();
        self.added
            .entry((server_id, minute))
            .or_default()
            .add_sample(sample);
    }

    pub fn forget_server(&mut self, server_id: i64) {
        self.added.retain(|(id, _), _| *id != server_id);
        self.sealed.remove(&server_id);
        self.forgotten.insert(server_id);
    }

    /// The seal of `server_id` as this transaction leaves it.
    pub fn seal_of(&self, unsealed: &Unsealed, server_id: i64) -> i64 {
        match self.sealed.get(&server_id) {
            Some(seal) => *seal,
            None if self.forgotten.contains(&server_id) => self.floor.unwrap_or(unsealed.floor),
            None => unsealed.seal_of(server_id),
        }
    }
}

/// Moves seals towards `target` inside `tx`: walks the servers with
/// committed sums before `target` in id order, from where the last
/// transaction left off, and seals at most `limit` of them (their sums
/// before `target` go to `delta`; `servers.sealed_until` records the new
/// seal). Once the walk has passed every server, the servers with sums of
/// this transaction before `target` are sealed too and every server's seal
/// is set to `target`: the floor. Each sealed server is consistent on its
/// own, so the walk may take many transactions.
pub fn seal(
    tx: &Transaction<'_>,
    unsealed: &Unsealed,
    change: &mut UnsealedChange,
    delta: &mut RollupDelta,
    target: i64,
    limit: usize,
) -> Result<(), StoreError> {
    let mut walk = match unsealed.walk {
        Some(walk) if walk.target == target => walk,
        // A new target (a minute ended during a walk) starts over.
        _ => Walk {
            target,
            next_server: i64::MIN,
        },
    };
    let mut sealed = 0;
    let mut key = (walk.next_server, i64::MIN);
    while let Some((&(server_id, minute), _)) = unsealed.sums.range(key..).next() {
        key = (server_id.saturating_add(1), i64::MIN);
        if minute >= target
            || change.forgotten.contains(&server_id)
            || change.seal_of(unsealed, server_id) >= target
        {
            continue;
        }
        if sealed == limit {
            walk.next_server = server_id;
            change.walk = Some(Some(walk));
            return Ok(());
        }
        seal_server(tx, unsealed, change, delta, server_id, target)?;
        sealed += 1;
    }
    // The walk is over. Seal what is still below the target: this
    // transaction's samples, and late samples of servers the walk passed
    // while they had none before it. Then move every server's seal to it.
    let left: BTreeSet<i64> = unsealed
        .sums
        .keys()
        .filter(|(server_id, minute)| {
            *minute < target
                && !change.forgotten.contains(server_id)
                && change.seal_of(unsealed, *server_id) < target
        })
        .chain(change.added.keys().filter(|(_, minute)| *minute < target))
        .map(|(server_id, _)| *server_id)
        .collect();
    for server_id in left {
        seal_server(tx, unsealed, change, delta, server_id, target)?;
    }
    tx.prepare_cached("UPDATE seal_floor SET sealed_until = ?1 WHERE sealed_until < ?1")?
        .execute([target])?;
    change.floor = Some(target);
    change.walk = Some(None);
    Ok(())
}

/// Seals one server up to `target`: its committed and new sums before it go
/// to `delta`.
fn seal_server(
    tx: &Transaction<'_>,
    unsealed: &Unsealed,
    change: &mut UnsealedChange,
    delta: &mut RollupDelta,
    server_id: i64,
    target: i64,
) -> Result<(), StoreError> {
    if !change.forgotten.contains(&server_id) {
        for ((_, minute), sums) in unsealed
            .sums
            .range((server_id, i64::MIN)..(server_id, target))
        {
            delta.add_minute(server_id, *minute, sums);
        }
    }
    for (minute, sums) in take_below(&mut change.added, server_id, target) {
        delta.add_minute(server_id, minute, &sums);
    }
    tx.prepare_cached("UPDATE servers SET sealed_until = ?1 WHERE id = ?2")?
        .execute([target, server_id])?;
    change.sealed.insert(server_id, target);
    Ok(())
}

/// Takes the sums of `server_id` before `until` out of `sums`, by minute.
fn take_below(
    sums: &mut BTreeMap<(i64, i64), Sums>,
    server_id: i64,
    until: i64,
) -> Vec<(i64, Sums)> {
    let keys: Vec<(i64, i64)> = sums
        .range((server_id, i64::MIN)..(server_id, until))
        .map(|(key, _)| *key)
        .collect();
    keys.into_iter()
        .filter_map(|key| sums.remove(&key).map(|taken| (key.1, taken)))
        .collect()
}
