//! The single writer thread. It owns the only write connection and commits
//! whatever has queued up in one transaction (group commit); every job hears
//! back only after its transaction committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::retention::{self, Cutoffs, RetentionBatch};
use super::rollups::{self, RollupDelta, Unsealed, UnsealedChange};
use super::stats::{StoreStats, WriterStats};
use super::{StoreError, checkpoint};
use crate::clock::Clock;
use crate::model::{MINUTE_MS, Sample, ServerName, Timestamp};

/// Most samples one transaction takes before it commits, so that the first
/// request of a long queue does not wait for all the rest.
const MAX_GROUP_SAMPLES: usize = 50_000;
/// How long the writer waits for work before it seals ended minutes anyway.
const IDLE_SEAL_INTERVAL: Duration = Duration::from_secs(1);

/// Where a job's requester waits for its answer.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// The writer's answer to one job, to wait for. The writer gone without
/// answering means it stopped.
struct Answer<T>(oneshot::Receiver<Result<T, StoreError>>);

impl<T> Answer<T> {
    async fn wait(self) -> Result<T, StoreError> {
        self.0.await.map_err(|_| StoreError::WriterStopped)?
    }

    fn blocking(self) -> Result<T, StoreError> {
        self.0
            .blocking_recv()
            .map_err(|_| StoreError::WriterStopped)?
    }
}

/// A piece of work for the writer thread. Each kind carries a reply of its
/// own answer type; the kinds whose answer the transaction computes hold it
/// beside the reply, written by every transaction that applies the job and
/// sent only once one of them committed.
enum Job {
    Insert {
        samples: Vec<Sample>,
        reply: Reply<()>,
    },
    Delete {
        server: ServerName,
        /// Whether the server existed.
        deleted: bool,
        reply: Reply<bool>,
    },
    Seal {
        until: Timestamp,
        reply: Reply<()>,
    },
    Retain {
        cutoffs: Cutoffs,
        /// What the batch deleted.
        batch: RetentionBatch,
        reply: Reply<RetentionBatch>,
    },
}

impl Job {
    /// What the job counts against the queue bound.
    fn weight(&self) -> usize {
        match self {
            Job::Insert { samples, .. } => samples.len(),
            Job::Delete { .. } | Job::Seal { .. } | Job::Retain { .. } => 1,
        }
    }

    /// Sends the requester the job's answer, or `failure`. A requester
    /// that went away no longer needs it; its data is committed (or not)
    /// all the same.
    fn answer(self, failure: Option<StoreError>) {
        fn send<T>(reply: Reply<T>, answer: T, failure: Option<StoreError>) {
            let _ = reply.send(failure.map_or(Ok(answer), Err));
        }
        match self {
            Job::Insert { reply, .. } | Job::Seal { reply, .. } => send(reply, (), failure),
            Job::Delete { deleted, reply, .. } => send(reply, deleted, failure),
            Job::Retain { batch, reply, .. } => send(reply, batch, failure),
        }
    }
}

/// A retention job for the batch before `cutoffs`, answering `reply`.
fn retain_job(cutoffs: Cutoffs, reply: Reply<RetentionBatch>) -> Job {
    Job::Retain {
        cutoffs,
        batch: RetentionBatch::default(),
        reply,
    }
}

/// The handle request handlers use to reach the writer thread.
pub struct Writer {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    queued: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
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
        clock: Clock,
    ) -> Result<Writer, StoreError> {
        let unsealed = Unsealed::load(&conn)?;
        let stats = Arc::new(WriterStats::default());
        let state = State {
            conn,
            server_ids: ServerIds::default(),
            unsealed,
            stats: Arc::clone(&stats),
            clock,
        };
        let (sender, receiver) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread_queued = Arc::clone(&queued);
        let thread = std::thread::Builder::new()
            .name("sperform-writer".into())
            .spawn(move || run(state, receiver, &thread_queued, &rewind_wanted))
            .map_err(|source| StoreError::thread("the writer thread", source))?;
        Ok(Writer {
            sender: Mutex::new(Some(sender)),
            queued,
            stats,
            capacity,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stores the samples in one transaction; resolves once it committed.
    pub async fn insert(&self, samples: Vec<Sample>) -> Result<(), StoreError> {
        self.ask(|reply| Job::Insert { samples, reply })?
            .wait()
            .await
    }

    /// Deletes a server and its samples; `false` if there was no such server.
    pub async fn delete_server(&self, server: ServerName) -> Result<bool, StoreError> {
        self.ask(|reply| Job::Delete {
            server,
            deleted: false,
            reply,
        })?
        .wait()
        .await
    }

    /// Folds every sample before `until` into the rollup tables now rather
    /// than when its minute has passed.
    pub async fn seal(&self, until: Timestamp) -> Result<(), StoreError> {
        self.ask(|reply| Job::Seal { until, reply })?.wait().await
    }

    /// Deletes one batch of data before `cutoffs` (hour boundaries); for a
    /// plain thread: blocks until the batch committed.
    pub fn retain_batch_blocking(&self, cutoffs: Cutoffs) -> Result<RetentionBatch, StoreError> {
        self.ask(|reply| retain_job(cutoffs, reply))?.blocking()
    }

    /// Queues the job `job` makes around a reply channel; the answer comes
    /// once the writer has committed (or failed) it.
    fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<Answer<T>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(job(reply))?;
        Ok(Answer(answer))
    }

    /// Samples accepted but not yet committed.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The writer's counters as they are now.
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot(self.queued() as u64)
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

/// What the writer thread owns.
struct State {
    conn: Connection,
    server_ids: ServerIds,
    unsealed: Unsealed,
    stats: Arc<WriterStats>,
    /// What time it is, for the seal.
    clock: Clock,
}

/// The thread's loop: wait for a job, take whatever else is queued, commit.
/// When idle for a while, move the rollup seal forward on its own.
fn run(
    mut state: State,
    receiver: mpsc::Receiver<Job>,
    queued: &AtomicUsize,
    rewind_wanted: &AtomicBool,
) {
    loop {
        let first = match receiver.recv_timeout(IDLE_SEAL_INTERVAL) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                seal_when_idle(&mut state);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
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
        let answers = commit_group(&mut state, group);
        // Out of the queue before anyone hears back, so that a client that
        // got its answer never sees its own samples still counted as queued.
        queued.fetch_sub(weight, Ordering::AcqRel);
        for (job, failure) in answers {
            job.answer(failure);
        }
        if rewind_wanted.swap(false, Ordering::AcqRel)
            && let Err(err) = checkpoint::passive_checkpoint(&state.conn)
        {
            log::warn!("WAL checkpoint by the writer failed (will retry): {err}");
        }
    }
    // Everything is committed: fold the WAL into the database file, so a
    // stopped daemon leaves one self-contained file behind.
    if let Err(err) = state
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    {
        log::warn!("final WAL checkpoint failed: {err}");
    }
}

/// The seal follows the clock: every minute that has ended is sealed.
fn seal_target(clock: &Clock) -> i64 {
    clock.now().floor(MINUTE_MS).millis()
}

fn seal_when_idle(state: &mut State) {
    if !state
        .unsealed
        .wants_seal(&UnsealedChange::default(), seal_target(&state.clock))
    {
        return;
    }
    if let Err(err) = apply_in_transaction(state, &mut []) {
        log::warn!("sealing rollups failed (will retry): {err}");
    }
}

/// Applies a group of jobs in one transaction; returns each job with its
/// failure, if any, for the caller to answer. Transactions begin IMMEDIATE:
/// they take the write lock up front, waiting out the busy timeout if
/// someone else holds it, instead of failing at once when a read snapshot
/// cannot be upgraded. If a group of several fails, each job is retried in
/// a transaction of its own, so one failing job cannot fail the others.
fn commit_group(state: &mut State, mut group: Vec<Job>) -> Vec<(Job, Option<StoreError>)> {
    match apply_in_transaction(state, &mut group) {
        Ok(()) => group.into_iter().map(|job| (job, None)).collect(),
        Err(err) => {
            state.server_ids.clear();
            if group.len() == 1 {
                return group.into_iter().zip([Some(err)]).collect();
            }
            group
                .into_iter()
                .map(|mut job| {
                    let failure = apply_in_transaction(state, std::slice::from_mut(&mut job)).err();
                    if failure.is_some() {
                        state.server_ids.clear();
                    }
                    (job, failure)
                })
                .collect()
        }
    }
}

/// Carries out `jobs` in one transaction, recording each job's answer in
/// it, and moves the rollup seal if a minute has ended.
fn apply_in_transaction(state: &mut State, jobs: &mut [Job]) -> Result<(), StoreError> {
    let started = Instant::now();
    let result = run_transaction(state, jobs);
    match &result {
        Ok(()) => {
            let mut samples = 0;
            let mut retained = RetentionBatch::default();
            for job in jobs.iter() {
                match job {
                    Job::Insert { samples: batch, .. } => samples += batch.len(),
                    Job::Retain { batch, .. } => {
                        retained.samples_deleted += batch.samples_deleted;
                        retained.hours_to_history += batch.hours_to_history;
                        retained.history_hours_deleted += batch.history_hours_deleted;
                        retained.servers_deleted += batch.servers_deleted;
                    }
                    Job::Delete { .. } | Job::Seal { .. } => {}
                }
            }
            state
                .stats
                .committed(samples as u64, started.elapsed().as_secs_f64(), &retained);
        }
        Err(_) => state.stats.failed(),
    }
    result
}

fn run_transaction(state: &mut State, jobs: &mut [Job]) -> Result<(), StoreError> {
    let State {
        conn,
        server_ids,
        unsealed,
        clock,
        ..
    } = state;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut delta = RollupDelta::default();
    let mut change = UnsealedChange::default();
    let mut seal_to = seal_target(clock);
    // Requests wait on this transaction: it seals a few hundred servers at
    // most. Alone (idle) or asked to seal, it seals them all.
    let mut seal_limit = if jobs.is_empty() {
        usize::MAX
    } else {
        rollups::SEAL_SERVERS_PER_TRANSACTION
    };
    for job in jobs {
        match job {
            Job::Insert { samples, .. } => {
                // In key order, consecutive inserts land on the same pages:
                // a batch sent minute by minute across many servers would
                // otherwise jump between them at every row.
                let mut in_key_order: Vec<&Sample> = samples.iter().collect();
                in_key_order.sort_by(|a, b| (&a.server, a.time).cmp(&(&b.server, b.time)));
                let mut insert = tx.prepare_cached(INSERT_SAMPLE)?;
                // In key order a server's samples come together: its id is
                // looked up once for all of them.
                let mut last: Option<(&ServerName, i64)> = None;
                for sample in in_key_order {
                    let server_id = match last {
                        Some((name, id)) if *name == sample.server => id,
                        _ => server_ids.get_or_create(&tx, &sample.server, unsealed.floor())?,
                    };
                    last = Some((&sample.server, server_id));
                    insert_sample(&tx, &mut insert, server_id, sample)?;
                    if sample.time.millis() < change.seal_of(unsealed, server_id) {
                        delta.add_sample(server_id, sample);
                    } else {
                        change.add_sample(server_id, sample);
                    }
                }
            }
            Job::Delete {
                server, deleted, ..
            } => {
                // Rollup sums of this server pending in the delta must land
                // before the cascade removes its rows, or they would outlive it.
                delta.flush(&tx)?;
                server_ids.forget(server);
                let removed: Option<i64> = tx
                    .prepare_cached("DELETE FROM servers WHERE name = ?1 RETURNING id")?
                    .query_row([server.as_str()], |row| row.get(0))
                    .optional()?;
                if let Some(server_id) = removed {
                    change.forget_server(server_id);
                }
                *deleted = removed.is_some();
            }
            Job::Seal { until, .. } => {
                seal_to = seal_to.max(until.floor(MINUTE_MS).millis());
                seal_limit = usize::MAX;
            }
            Job::Retain { cutoffs, batch, .. } => {
                delta.flush(&tx)?;
                let (deleted_batch, deleted) = retention::delete_batch(&tx, *cutoffs)?;
                for (server_id, _) in &deleted {
                    change.forget_server(*server_id);
                }
                if !deleted.is_empty() {
                    server_ids.clear();
                }
                *batch = deleted_batch;
            }
        }
    }
    if unsealed.wants_seal(&change, seal_to) {
        rollups::seal(&tx, unsealed, &mut change, &mut delta, seal_to, seal_limit)?;
    }
    delta.flush(&tx)?;
    tx.commit()?;
    unsealed.apply(change);
    Ok(())
}

/// A sample's row. It inserts nothing when the server already has a
/// sample at that millisecond; `insert_sample` then stores it after that one.
const INSERT_SAMPLE: &str = "INSERT INTO samples (server_id, time, seq, cpu, ram)
     VALUES (?1, ?2, 0, ?3, ?4)
     ON CONFLICT (server_id, time, seq) DO NOTHING";

/// Inserts one sample of the server `server_id` with `insert`
/// (`INSERT_SAMPLE`, prepared once per batch).
fn insert_sample(
    tx: &Transaction<'_>,
    insert: &mut rusqlite::Statement<'_>,
    server_id: i64,
    sample: &Sample,
) -> Result<(), StoreError> {
    let time = sample.time.millis();
    let inserted = insert.execute(params![server_id, time, sample.cpu, sample.ram])?;
    if inserted == 0 {
        // Another sample of this server has the same millisecond: keep
        // both, told apart by the next free `seq`.
        tx.prepare_cached(
            "INSERT INTO samples (server_id, time, seq, cpu, ram)
             SELECT ?1, ?2, MAX(seq) + 1, ?3, ?4 FROM samples
             WHERE server_id = ?1 AND time = ?2",
        )?
        .execute(params![server_id, time, sample.cpu, sample.ram])?;
    }
    Ok(())
}

/// Server ids seen by the writer, so each sample does not look its name up.
/// Cleared whenever a transaction fails, since ids it created were rolled back.
#[derive(Default)]
struct ServerIds(HashMap<ServerName, i64>);

impl ServerIds {
    /// A new server gets `seal` (the floor every server is sealed to).
    fn get_or_create(
        &mut self,
        tx: &Transaction<'_>,
        name: &ServerName,
        seal: i64,
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
                .prepare_cached(
                    "INSERT INTO servers (name, sealed_until) VALUES (?1, ?2) RETURNING id",
                )?
                .query_row(params![name.as_str(), seal], |row| row.get(0))?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::HOUR_MS;
    use crate::schema;

    const NOON: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR_MS;

    fn state() -> State {
        let mut conn = Connection::open_in_memory().expect("in-memory database");
        conn.pragma_update(None, "foreign_keys", true)
            .expect("foreign keys");
        schema::migrate(&mut conn).expect("migrations");
        let unsealed = Unsealed::load(&conn).expect("unsealed sums");
        let clock = ManualClock::new(Timestamp::from_millis(NOON).expect("a time"));
        State {
            conn,
            server_ids: ServerIds::default(),
            unsealed,
            stats: Arc::new(WriterStats::default()),
            clock: Clock::from(clock),
        }
    }

    fn sample(server: &str, time: i64) -> Sample {
        Sample {
            server: ServerName::parse(server).expect("a server name"),
            time: Timestamp::from_millis(time).expect("a time"),
            cpu: 10.0,
            ram: 20.0,
        }
    }

    #[test]
    fn each_job_of_a_group_hears_its_own_answer() {
        let mut state = state();
        let (reply, mut stored) = oneshot::channel();
        let first = Job::Insert {
            samples: vec![sample("web-1", NOON - HOUR_MS)],
            reply,
        };
        for (job, failure) in commit_group(&mut state, vec![first]) {
            job.answer(failure);
        }
        assert!(matches!(stored.try_recv(), Ok(Ok(()))));

        let (reply, mut inserted) = oneshot::channel();
        let insert = Job::Insert {
            samples: vec![
                sample("web-2", NOON - 2 * HOUR_MS - 1),
                sample("web-3", NOON - 1),
            ],
            reply,
        };
        let (reply, mut known) = oneshot::channel();
        let delete_known = Job::Delete {
            server: ServerName::parse("web-1").expect("a server name"),
            deleted: false,
            reply,
        };
        let (reply, mut unknown) = oneshot::channel();
        let delete_unknown = Job::Delete {
            server: ServerName::parse("web-9").expect("a server name"),
            deleted: true,
            reply,
        };
        let (reply, mut retained) = oneshot::channel();
        let retain = Job::Retain {
            cutoffs: Cutoffs {
                raw: NOON - HOUR_MS,
                history: NOON - HOUR_MS,
            },
            batch: RetentionBatch::default(),
            reply,
        };
        let group = vec![insert, delete_known, delete_unknown, retain];
        for (job, failure) in commit_group(&mut state, group) {
            assert!(failure.is_none(), "{failure:?}");
            job.answer(failure);
        }
        assert!(matches!(inserted.try_recv(), Ok(Ok(()))));
        assert!(matches!(known.try_recv(), Ok(Ok(true))));
        assert!(matches!(unknown.try_recv(), Ok(Ok(false))));
        // web-1 was deleted before retention ran; of the others only web-2
        // has a sample before the cutoff, and it goes with its server.
        let expected = RetentionBatch {
            samples_deleted: 1,
            hours_to_history: 0,
            history_hours_deleted: 0,
            servers_deleted: 1,
            more: false,
        };
        assert_eq!(
            retained.try_recv().ok().map(Result::ok),
            Some(Some(expected))
        );
        let left: i64 = state
            .conn
            .query_row("SELECT count(*) FROM samples", [], |row| row.get(0))
            .expect("a count");
        assert_eq!(left, 1);
    }

    #[test]
    fn a_failing_job_fails_alone_with_its_own_error() {
        let mut state = state();
        // A server that SQLite refuses to create.
        state
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON servers WHEN NEW.name = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .expect("trigger");
        let (reply, mut good) = oneshot::channel();
        let first = Job::Insert {
            samples: vec![sample("web-1", NOON - 1)],
            reply,
        };
        let (reply, mut bad) = oneshot::channel();
        let second = Job::Insert {
            samples: vec![sample("bad", NOON - 1)],
            reply,
        };
        let (reply, mut deleted) = oneshot::channel();
        let third = Job::Delete {
            server: ServerName::parse("web-1").expect("a server name"),
            deleted: false,
            reply,
        };
        for (job, failure) in commit_group(&mut state, vec![first, second, third]) {
            job.answer(failure);
        }
        assert!(matches!(good.try_recv(), Ok(Ok(()))));
        match bad.try_recv() {
            Ok(Err(err @ StoreError::Sqlite(_))) => {
                assert!(err.to_string().contains("refused by the test"), "{err}");
            }
            other => panic!("expected the trigger's error, got {other:?}"),
        }
        // Retried alone after the first job committed: web-1 is there.
        assert!(matches!(deleted.try_recv(), Ok(Ok(true))));
        let stats = state.stats.snapshot(0);
        assert_eq!(stats.failed_transactions, 2);
    }
}
