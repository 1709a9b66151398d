//! The rollup tables and the seal that keeps them cheap to write.
//!
//! `minute_rollups` and `hour_rollups` hold the sums and counts of exactly
//! the samples whose time is before `rollup_state.sealed_until` (a minute
//! boundary). Samples at or after it are in `samples` only; the writer keeps
//! their per-minute sums in memory (`Unsealed`) and, once their minute has
//! passed, adds them to the rollups in one go and moves the seal forward, in
//! the same transaction. So a live sample costs one row write, not three,
//! and readers combine rollups below the seal with raw samples above it.
//! The in-memory sums are only a write buffer: answers always come from the
//! tables, and on start-up the sums are recomputed from `samples`.

use std::collections::{BTreeMap, BTreeSet};

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

/// The committed samples at or after the seal, summed by server and minute.
pub struct Unsealed {
    sealed_until: i64,
    sums: BTreeMap<(i64, i64), Sums>,
}

impl Unsealed {
    /// Reads the seal and recomputes the sums of the samples above it.
    pub fn load(conn: &Connection) -> Result<Unsealed, StoreError> {
        let sealed_until: i64 =
            conn.query_row("SELECT sealed_until FROM rollup_state", [], |row| {
                row.get(0)
            })?;
        // One index seek per server rather than a scan of every sample.
        let mut statement = conn.prepare(
            "SELECT samples.server_id, samples.time - samples.time % 60000,
                    count(*), total(samples.cpu), total(samples.ram),
                    min(samples.cpu), max(samples.cpu), min(samples.ram), max(samples.ram)
             FROM servers CROSS JOIN samples
                 ON samples.server_id = servers.id AND samples.time >= ?1
             GROUP BY samples.server_id, samples.time / 60000",
        )?;
        let rows = statement.query_map([sealed_until], |row| {
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
        Ok(Unsealed { sealed_until, sums })
    }

    pub fn sealed_until(&self) -> i64 {
        self.sealed_until
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Applies what a committed transaction did.
    pub fn apply(&mut self, change: UnsealedChange) {
        if !change.forgotten.is_empty() {
            self.sums
                .retain(|(server_id, _), _| !change.forgotten.contains(server_id));
        }
        if let Some(sealed_until) = change.sealed_until {
            self.sums.retain(|(_, minute), _| *minute >= sealed_until);
            self.sealed_until = sealed_until;
        }
        for (key, sums) in change.added {
            self.sums.entry(key).or_default().merge(&sums);
        }
    }
}

/// What one transaction does to the unsealed sums; applied only after it
/// committed, so a rolled-back transaction leaves them as they were.
#[derive(Default)]
pub struct UnsealedChange {
    added: BTreeMap<(i64, i64), Sums>,
    /// Servers deleted: their committed sums go. (A new server may get the
    /// same id later in the transaction; its sums are in `added`.)
    forgotten: BTreeSet<i64>,
    sealed_until: Option<i64>,
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
        self.forgotten.insert(server_id);
    }
}

/// Moves the seal up to `target` inside `tx`: the sums of every unsealed
/// minute before it go to `delta`, and `rollup_state` records the new seal.
pub fn seal(
    tx: &Transaction<'_>,
    unsealed: &Unsealed,
    change: &mut UnsealedChange,
    delta: &mut RollupDelta,
    target: i64,
) -> Result<(), StoreError> {
    for ((server_id, minute), sums) in &unsealed.sums {
        if *minute < target && !change.forgotten.contains(server_id) {
            delta.add_minute(*server_id, *minute, sums);
        }
    }
    let added = std::mem::take(&mut change.added);
    for ((server_id, minute), sums) in added {
        if minute < target {
            delta.add_minute(server_id, minute, &sums);
        } else {
            change.added.insert((server_id, minute), sums);
        }
    }
    tx.prepare_cached("UPDATE rollup_state SET sealed_until = ?1")?
        .execute([target])?;
    change.sealed_until = Some(target);
    Ok(())
}
