//! The rollup tables and the seal that keeps them cheap to write.
//!
//! `minute_rollups` and `hour_rollups` hold, for each server, the sums and
//! counts of exactly its samples whose time is before its
//! `servers.sealed_until` (a minute boundary). Samples at or after it are in
//! `samples` only; the writer keeps their per-minute sums in memory
//! (`Unsealed`) and, once their minute has passed, adds them to the rollups
//! and moves the server's seal forward, in the same transaction. So a live
//! sample costs one row write, not three, and readers combine rollups below
//! the seal with raw samples above it. When a minute ends, the servers are
//! sealed a few hundred per transaction (a walk), so no request waits for
//! all of them; once the walk is done every server's seal is the same
//! again (the floor). The in-memory sums are only a write buffer: answers
//! always come from the tables, and on start-up the sums are recomputed
//! from `samples`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, Transaction, params};

use super::StoreError;
use crate::model::{HOUR_MS, MINUTE_MS, Sample};

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

    fn merge(&mut self, other: &Sums) {
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
    minutes: BTreeMap<(i64, i64), Sums>,
    hours: BTreeMap<(i64, i64), Sums>,
}

impl RollupDelta {
    pub fn add_sample(&mut self, server_id: i64, sample: &Sample) {
        let mut sums = Sums::default();
        sums.add_sample(sample);
        self.add_minute(server_id, sample.time.floor(MINUTE_MS).millis(), &sums);
    }

    fn add_minute(&mut self, server_id: i64, minute: i64, sums: &Sums) {
        let hour = minute - minute.rem_euclid(HOUR_MS);
        self.minutes
            .entry((server_id, minute))
            .or_default()
            .merge(sums);
        self.hours.entry((server_id, hour)).or_default().merge(sums);
    }

    /// Writes the sums out and empties the delta.
    pub fn flush(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        upsert_all(tx, MINUTE_UPSERT, std::mem::take(&mut self.minutes))?;
        upsert_all(tx, HOUR_UPSERT, std::mem::take(&mut self.hours))
    }
}

// A rollup row of one sample may store NULL for its extremes (most rows
// of a server reporting once a minute): they are then its sums, and take no
// space. Readers and the upserts below read them with `coalesce(cpu_min,
// cpu_sum)` and so on.
const MINUTE_UPSERT: &str = "INSERT INTO minute_rollups
         (server_id, minute, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT (server_id, minute) DO UPDATE SET
         samples = samples + excluded.samples,
         cpu_sum = cpu_sum + excluded.cpu_sum,
         ram_sum = ram_sum + excluded.ram_sum,
         cpu_min = min(coalesce(cpu_min, cpu_sum), coalesce(excluded.cpu_min, excluded.cpu_sum)),
         cpu_max = max(coalesce(cpu_max, cpu_sum), coalesce(excluded.cpu_max, excluded.cpu_sum)),
         ram_min = min(coalesce(ram_min, ram_sum), coalesce(excluded.ram_min, excluded.ram_sum)),
         ram_max = max(coalesce(ram_max, ram_sum), coalesce(excluded.ram_max, excluded.ram_sum))";

const HOUR_UPSERT: &str = "INSERT INTO hour_rollups
         (server_id, hour, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT (server_id, hour) DO UPDATE SET
         samples = samples + excluded.samples,
         cpu_sum = cpu_sum + excluded.cpu_sum,
         ram_sum = ram_sum + excluded.ram_sum,
         cpu_min = min(coalesce(cpu_min, cpu_sum), coalesce(excluded.cpu_min, excluded.cpu_sum)),
         cpu_max = max(coalesce(cpu_max, cpu_sum), coalesce(excluded.cpu_max, excluded.cpu_sum)),
         ram_min = min(coalesce(ram_min, ram_sum), coalesce(excluded.ram_min, excluded.ram_sum)),
         ram_max = max(coalesce(ram_max, ram_sum), coalesce(excluded.ram_max, excluded.ram_sum))";

/// Adds each (server, bucket) sum to its rollup row with `upsert`.
fn upsert_all(
    tx: &Transaction<'_>,
    upsert: &str,
    sums: BTreeMap<(i64, i64), Sums>,
) -> Result<(), StoreError> {
    let mut statement = tx.prepare_cached(upsert)?;
    for ((server_id, bucket), sums) in sums {
        // A one-sample row's extremes are its sums: stored as NULL, they
        // take no space.
        let extremes =
            (sums.samples > 1).then_some((sums.cpu_min, sums.cpu_max, sums.ram_min, sums.ram_max));
        statement.execute(params![
            server_id,
            bucket,
            sums.samples,
            sums.cpu,
            sums.ram,
            extremes.map(|e| e.0),
            extremes.map(|e| e.1),
            extremes.map(|e| e.2),
            extremes.map(|e| e.3)
        ])?;
    }
    Ok(())
}

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
        let mut seals = conn.prepare("SELECT id, sealed_until FROM servers")?;
        let seals: Vec<(i64, i64)> = seals
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let floor = seals.iter().map(|(_, seal)| *seal).min().unwrap_or(0);
        let ahead = seals
            .into_iter()
            .filter(|(_, seal)| *seal > floor)
            .collect();
        // One index seek per server rather than a scan of every sample.
        let mut statement = conn.prepare(
            "SELECT samples.server_id, samples.time - samples.time % 60000,
                    count(*), total(samples.cpu), total(samples.ram),
                    min(samples.cpu), max(samples.cpu), min(samples.ram), max(samples.ram)
             FROM servers CROSS JOIN samples
                 ON samples.server_id = servers.id AND samples.time >= servers.sealed_until
             GROUP BY samples.server_id, samples.time / 60000",
        )?;
        let rows = statement.query_map([], |row| {
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
    tx.prepare_cached("UPDATE servers SET sealed_until = ?1 WHERE sealed_until < ?1")?
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
