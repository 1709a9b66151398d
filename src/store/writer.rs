//! The single writer thread. It owns the only write connection and commits
//! whatever has queued up in one transaction (group commit); every job hears
//! back only after its transaction committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{StoreError, checkpoint};
use crate::model::{HOUR_MS, MINUTE_MS, Sample, ServerName};

/// Most samples one transaction takes before it commits, so that the first
/// request of a long queue does not wait for all the rest.
const MAX_GROUP_SAMPLES: usize = 50_000;

enum Job {
    Insert {
        samples: Vec<Sample>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Delete {
        server: ServerName,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

impl Job {
    /// What the job counts against the queue bound.
    fn weight(&self) -> usize {
        match self {
            Job::Insert { samples, .. } => samples.len(),
            Job::Delete { .. } => 1,
        }
    }
}

/// The handle request handlers use to reach the writer thread.
pub struct Writer {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the thread. When `rewind_wanted` is set, it checkpoints the
    /// WAL itself between two transactions, so the WAL can start over.
    pub fn spawn(
        conn: Connection,
        capacity: usize,
        rewind_wanted: Arc<AtomicBool>,
    ) -> Result<Writer, StoreError> {
        let (sender, receiver) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread_queued = Arc::clone(&queued);
        let thread = std::thread::Builder::new()
            .name("sperform-writer".into())
            .spawn(move || run(conn, receiver, &thread_queued, &rewind_wanted))
            .map_err(|err| StoreError::Setup(format!("cannot start the writer thread: {err}")))?;
        Ok(Writer {
            sender: Mutex::new(Some(sender)),
            queued,
            capacity,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stores the samples in one transaction; resolves once it committed.
    pub async fn insert(&self, samples: Vec<Sample>) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Insert { samples, reply })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Deletes a server and its samples; `false` if there was no such server.
    pub async fn delete_server(&self, server: ServerName) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Delete { server, reply })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Samples accepted but not yet committed.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn is_running(&self) -> bool {
        self.thread
            .lock()
            .map(|thread| thread.as_ref().is_some_and(|t| !t.is_finished()))
            .unwrap_or(false)
    }

    /// Lets the thread commit everything already queued, then stops it.
    /// Jobs submitted afterwards fail with `WriterStopped`.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            log::error!("the writer thread panicked");
        }
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        let weight = job.weight();
        // Reserve room first, so the bound holds however many requests race.
        let reserved = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + weight <= self.capacity).then_some(queued + weight)
            });
        if reserved.is_err() {
            return Err(StoreError::QueueFull);
        }
        let sent = match self.sender.lock() {
            Ok(sender) => sender.as_ref().is_some_and(|s| s.send(job).is_ok()),
            Err(_) => false,
        };
        if !sent {
            self.queued.fetch_sub(weight, Ordering::AcqRel);
            return Err(StoreError::WriterStopped);
        }
        Ok(())
    }
}

/// The thread's loop: wait for a job, take whatever else is queued, commit.
fn run(
    mut conn: Connection,
    receiver: mpsc::Receiver<Job>,
    queued: &AtomicUsize,
    rewind_wanted: &AtomicBool,
) {
    let mut server_ids = ServerIds::default();
    while let Ok(first) = receiver.recv() {
        let mut weight = first.weight();
        let mut group = vec![first];
        while weight < MAX_GROUP_SAMPLES {
            match receiver.try_recv() {
                Ok(job) => {
                    weight += job.weight();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&mut conn, &mut server_ids, group);
        queued.fetch_sub(weight, Ordering::AcqRel);
        if rewind_wanted.swap(false, Ordering::AcqRel)
            && let Err(err) = checkpoint::passive_checkpoint(&conn)
        {
            log::warn!("WAL checkpoint by the writer failed (will retry): {err}");
        }
    }
    // Everything is committed: fold the WAL into the database file, so a
    // stopped daemon leaves one self-contained file behind.
    if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        log::warn!("final WAL checkpoint failed: {err}");
    }
}

/// Applies a group of jobs in one transaction and answers each after the
/// commit. Transactions begin IMMEDIATE: they take the write lock up front,
/// waiting out the busy timeout if someone else holds it, instead of failing
/// at once when a read snapshot cannot be upgraded. If the group fails, each
/// job is retried in a transaction of its own, so one failing job cannot
/// fail the others.
fn commit_group(conn: &mut Connection, server_ids: &mut ServerIds, group: Vec<Job>) {
    let outcome = apply_in_transaction(conn, server_ids, &group);
    match outcome {
        Ok(deleted) => {
            for (job, deleted) in group.into_iter().zip(deleted) {
                answer(job, Ok(deleted));
            }
        }
        Err(err) if group.len() == 1 => {
            server_ids.clear();
            for job in group {
                answer(job, Err(err.clone()));
            }
        }
        Err(_) => {
            server_ids.clear();
            for job in group {
                let result = apply_in_transaction(conn, server_ids, std::slice::from_ref(&job))
                    .map(|deleted| deleted.first().copied().unwrap_or(false));
                if result.is_err() {
                    server_ids.clear();
                }
                answer(job, result);
            }
        }
    }
}

/// Carries out `jobs` in one transaction; for each, whether it deleted a
/// server (always `true` for inserts).
fn apply_in_transaction(
    conn: &mut Connection,
    server_ids: &mut ServerIds,
    jobs: &[Job],
) -> Result<Vec<bool>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rollups = Rollups::default();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(match job {
            Job::Insert { samples, .. } => {
                insert_samples(&tx, server_ids, &mut rollups, samples)?;
                true
            }
            Job::Delete { server, .. } => {
                // Rollups of this server pending in memory must land before
                // the cascade removes its rows, or they would outlive it.
                rollups.flush(&tx)?;
                server_ids.forget(server);
                let removed = tx
                    .prepare_cached("DELETE FROM servers WHERE name = ?1")?
                    .execute([server.as_str()])?;
                removed > 0
            }
        });
    }
    rollups.flush(&tx)?;
    tx.commit()?;
    Ok(outcomes)
}

fn insert_samples(
    tx: &Transaction<'_>,
    server_ids: &mut ServerIds,
    rollups: &mut Rollups,
    samples: &[Sample],
) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO samples (server_id, time, seq, cpu, ram) VALUES (?1, ?2, 0, ?3, ?4)
         ON CONFLICT (server_id, time, seq) DO NOTHING",
    )?;
    for sample in samples {
        let server_id = server_ids.get_or_create(tx, &sample.server)?;
        let time = sample.time.millis();
        if insert.execute(params![server_id, time, sample.cpu, sample.ram])? == 0 {
            // Another sample of this server has the same millisecond: keep
            // both, told apart by the next free `seq`.
            tx.prepare_cached(
                "INSERT INTO samples (server_id, time, seq, cpu, ram)
                 SELECT ?1, ?2, MAX(seq) + 1, ?3, ?4 FROM samples
                 WHERE server_id = ?1 AND time = ?2",
            )?
            .execute(params![server_id, time, sample.cpu, sample.ram])?;
        }
        rollups.add(server_id, sample);
    }
    Ok(())
}

/// Sums and counts of the samples of one transaction by server and minute
/// or hour, added to the rollup tables in one upsert per row before commit.
/// Kept in key order, so the upserts walk each table's pages in order.
#[derive(Default)]
struct Rollups {
    minutes: BTreeMap<(i64, i64), Sums>,
    hours: BTreeMap<(i64, i64), Sums>,
}

#[derive(Default, Clone, Copy)]
struct Sums {
    samples: i64,
    cpu: f64,
    ram: f64,
}

impl Sums {
    fn add(&mut self, sample: &Sample) {
        self.samples += 1;
        self.cpu += sample.cpu;
        self.ram += sample.ram;
    }
}

impl Rollups {
    fn add(&mut self, server_id: i64, sample: &Sample) {
        let minute = sample.time.floor(MINUTE_MS).millis();
        let hour = sample.time.floor(HOUR_MS).millis();
        self.minutes
            .entry((server_id, minute))
            .or_default()
            .add(sample);
        self.hours.entry((server_id, hour)).or_default().add(sample);
    }

    fn flush(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let mut minute_upsert = tx.prepare_cached(
            "INSERT INTO minute_rollups (server_id, minute, samples, cpu_sum, ram_sum)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (server_id, minute) DO UPDATE SET
                 samples = samples + excluded.samples,
                 cpu_sum = cpu_sum + excluded.cpu_sum,
                 ram_sum = ram_sum + excluded.ram_sum",
        )?;
        for ((server_id, minute), sums) in std::mem::take(&mut self.minutes) {
            minute_upsert.execute(params![server_id, minute, sums.samples, sums.cpu, sums.ram])?;
        }
        let mut hour_upsert = tx.prepare_cached(
            "INSERT INTO hour_rollups (server_id, hour, samples, cpu_sum, ram_sum)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (server_id, hour) DO UPDATE SET
                 samples = samples + excluded.samples,
                 cpu_sum = cpu_sum + excluded.cpu_sum,
                 ram_sum = ram_sum + excluded.ram_sum",
        )?;
        for ((server_id, hour), sums) in std::mem::take(&mut self.hours) {
            hour_upsert.execute(params![server_id, hour, sums.samples, sums.cpu, sums.ram])?;
        }
        Ok(())
    }
}

fn answer(job: Job, result: Result<bool, StoreError>) {
    // A requester that went away no longer needs the answer; its data is
    // committed (or not) all the same.
    match job {
        Job::Insert { reply, .. } => {
            let _ = reply.send(result.map(|_| ()));
        }
        Job::Delete { reply, .. } => {
            let _ = reply.send(result);
        }
    }
}

/// Server ids seen by the writer, so each sample does not look its name up.
/// Cleared whenever a transaction fails, since ids it created were rolled back.
#[derive(Default)]
struct ServerIds(HashMap<ServerName, i64>);

impl ServerIds {
    fn get_or_create(
        &mut self,
        tx: &Transaction<'_>,
        name: &ServerName,
    ) -> Result<i64, StoreError> {
        if let Some(id) = self.0.get(name) {
            return Ok(*id);
        }
        let existing: Option<i64> = tx
            .prepare_cached("SELECT id FROM servers WHERE name = ?1")?
            .query_row([name.as_str()], |row| row.get(0))
            .optional()?;
        let id = match existing {
            Some(id) => id,
            None => tx
                .prepare_cached("INSERT INTO servers (name) VALUES (?1) RETURNING id")?
                .query_row([name.as_str()], |row| row.get(0))?,
        };
        self.0.insert(name.clone(), id);
        Ok(id)
    }

    fn forget(&mut self, name: &ServerName) {
        self.0.remove(name);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}
