//! Everything that touches SQLite: opening and migrating the database, the
//! writer thread, the read pool and the queries, and the clock they all take
//! the time from. Nothing here knows HTTP: this crate depends on the model,
//! not on Rocket or JSON.

pub mod clock;

mod background;
mod checkpoint;
mod queries;
mod reads;
mod retention;
mod rollups;
mod schema;
mod stats;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::ErrorCode;

pub use schema::{MIGRATIONS, NEW_DATABASE_PAGE_SIZE};
pub use stats::{COMMIT_SECONDS_BOUNDS, GROUP_SAMPLES_BOUNDS, HistogramSnapshot, StoreStats};

use crate::clock::Clock;
use sperform_model::model;

use crate::model::{
    Bucket, BucketWindow, LoadReport, Sample, ServerName, ServerSummary, Timestamp,
};
use background::Background;
use reads::Readers;
pub use retention::{
    BATCH_HOURS as RETENTION_BATCH_HOURS, BATCH_SAMPLES as RETENTION_BATCH_SAMPLES, Cutoffs,
    RetentionReport, SIZE_KEEPS_RAW_HOURS, SpaceReport,
};
pub use rollups::MINUTE_ROWS_ABOVE;
use writer::Writer;

/// The path of the database's write-ahead log: SQLite appends `-wal`.
pub fn wal_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push("-wal");
    PathBuf::from(path)
}

/// How long a read waits for a free pooled connection before giving up.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// What `Store::open` needs to know.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub read_pool_size: u32,
    pub write_queue: usize,
    /// `synchronous=FULL` (sync the WAL at every commit) instead of NORMAL.
    pub synchronous_full: bool,
    /// Samples older than this are deleted, in whole hours; their hour
    /// rows move to the history.
    pub retention_ms: i64,
    /// History older than this is deleted, in whole hours.
    pub history_retention_ms: i64,
    /// Bytes of pages in use past which the oldest data go.
    pub retention_size: Option<u64>,
    /// How often the retention task runs.
    pub retention_interval: Duration,
}

/// Why a storage operation failed. Each variant keeps the error it comes
/// from as its source; the messages reach the log and, for transient
/// failures, clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The database cannot be set up as sperform needs it.
    #[error("{0}")]
    Setup(String),
    #[error("cannot start {thread}: {source}")]
    Thread {
        /// Which thread, as a message names it ("the writer thread").
        thread: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migration {name} failed: {source}")]
    Migration {
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the database has schema version {found}, but this sperform knows only up to version {supported}: it was written by a newer sperform; run that version or use another database file"
    )]
    TooNew { found: usize, supported: usize },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no database connection free: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("the write queue is full")]
    QueueFull,
    #[error("the writer has stopped")]
    WriterStopped,
    /// A blocking task ended without an answer (it panicked or was
    /// cancelled).
    #[error("a database task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A read's thread is gone, or its read panicked (the panic is logged
    /// where it happened).
    #[error("a database task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether trying again shortly may succeed (overload, locks), as
    /// opposed to a fault in the database itself.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(err) => matches!(
                err.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            ),
            StoreError::Pool(_) | StoreError::QueueFull | StoreError::WriterStopped => true,
            _ => false,
        }
    }

    /// A thread could not be started.
    fn thread(thread: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Thread {
            thread: thread.into(),
            source,
        }
    }
}

/// One server in the overview: its latest sample time at or before the
/// overview's `at`, and the mean CPU and RAM of each of the 60 minutes up
/// to `at`, oldest first (`None` for a minute without samples).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOverview {
    pub name: String,
    pub last_seen: Option<Timestamp>,
    pub cpu: Vec<Option<f64>>,
    pub ram: Vec<Option<f64>>,
}

/// The database: one writer thread plus a pool of read connections.
/// Cheap to clone; clones share the same database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Readers,
    writer: Arc<Writer>,
    checkpointer: Background,
    retention: Background,
    policy: retention::Policy,
    space: retention::SharedSpace,
    schema_version: usize,
    clock: Clock,
}

impl Store {
    /// Opens the database, creating it and applying migrations as needed.
    /// `clock` says when a minute has ended (for the seal) and which
    /// samples have expired.
    pub fn open(config: &StoreConfig, clock: Clock) -> Result<Store, StoreError> {
        let mut conn = schema::open_writer(&config.path, config.synchronous_full)?;
        let applied = schema::migrate(&mut conn)?;
        for name in &applied {
            log::info!("applied migration {name} to {}", config.path.display());
        }
        let manager = SqliteConnectionManager::file(&config.path).with_init(schema::init_reader);
        let pool = r2d2::Pool::builder()
            .max_size(config.read_pool_size)
            .min_idle(Some(1))
            .connection_timeout(POOL_WAIT)
            .build(manager)?;
        let readers = Readers::spawn(&pool)?;
        let rewind_wanted = Arc::new(AtomicBool::new(false));
        let checkpointer = checkpoint::spawn(&config.path, Arc::clone(&rewind_wanted))?;
        let writer = Arc::new(Writer::spawn(
            conn,
            config.write_queue,
            rewind_wanted,
            clock.clone(),
        )?);
        let retention_writer = Arc::clone(&writer);
        let policy = retention::Policy {
            retention_ms: config.retention_ms,
            history_retention_ms: config.history_retention_ms,
            retention_size: config.retention_size,
            interval: config.retention_interval,
        };
        let space = retention::SharedSpace::default();
        let retention = retention::spawn(
            move |cutoffs| retention_writer.retain_batch_blocking(cutoffs),
            &config.path,
            clock.clone(),
            policy,
            Arc::clone(&space),
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: config.path.clone(),
                readers,
                writer,
                checkpointer,
                retention,
                policy,
                space,
                schema_version: MIGRATIONS.len(),
                clock,
            }),
        })
    }

    pub fn schema_version(&self) -> usize {
        self.inner.schema_version
    }

    /// The time on the clock the store runs on, for what is measured
    /// against the same time as the seal and retention (the default `at`,
    /// the accepted window of sample times).
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Stores all samples or none; resolves after the commit.
    pub async fn insert(&self, samples: Vec<Sample>) -> Result<(), StoreError> {
        self.inner.writer.insert(samples).await
    }

    /// Folds every sample before `until` into the rollup tables now, rather
    /// than once its minute has ended. Answers do not change.
    pub async fn seal(&self, until: Timestamp) -> Result<(), StoreError> {
        self.inner.writer.seal(until).await
    }

    /// Deletes a server with all its samples; `false` if it was unknown.
    pub async fn delete_server(&self, server: ServerName) -> Result<bool, StoreError> {
        self.inner.writer.delete_server(server).await
    }

    /// The minute and hour averages of `server` up to `at`, or `None` for a
    /// server never seen.
    pub async fn load(
        &self,
        server: ServerName,
        at: Timestamp,
    ) -> Result<Option<LoadReport>, StoreError> {
        self.read(move |conn| queries::load(conn, &server, at))
            .await
    }

    /// Every known server, sorted by name, with the minute means of the 60
    /// minutes up to `at` (the minute buckets of `load`) and its latest
    /// sample at or before `at`: the dashboard's overview in one read.
    pub async fn overview(&self, at: Timestamp) -> Result<Vec<ServerOverview>, StoreError> {
        self.read(move |conn| queries::overview(conn, at)).await
    }

    /// Whether a server of this name is known.
    pub async fn has_server(&self, server: ServerName) -> Result<bool, StoreError> {
        self.read(move |conn| queries::server_exists(conn, &server))
            .await
    }

    /// The buckets of `window` for `server`, or `None` for a server never
    /// seen.
    pub async fn range(
        &self,
        server: ServerName,
        window: BucketWindow,
    ) -> Result<Option<Vec<Bucket>>, StoreError> {
        self.read(move |conn| queries::range(conn, &server, window))
            .await
    }

    /// Every known server, sorted by name.
    pub async fn servers(&self) -> Result<Vec<ServerSummary>, StoreError> {
        self.read(|conn| queries::servers(conn)).await
    }

    /// How many servers are known.
    pub async fn server_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| queries::server_count(conn)).await
    }

    /// Checks that the writer runs and the database answers a query.
    pub async fn check(&self) -> Result<(), StoreError> {
        if !self.inner.writer.is_running() {
            return Err(StoreError::WriterStopped);
        }
        self.read(|conn| queries::ping(conn)).await
    }

    /// Sizes in bytes of the database file and of its WAL (0 if absent).
    pub async fn file_sizes(&self) -> Result<(u64, u64), StoreError> {
        let path = self.inner.path.clone();
        // A file that does not exist (a WAL after a clean stop) is 0.
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        tokio::task::spawn_blocking(move || (size(&path), size(&wal_path(&path))))
            .await
            .map_err(StoreError::from)
    }

    /// Runs `work` with a pooled read connection on one of the
    /// `read_pool_size` reader threads, never on the async executor; the
    /// reads beyond those wait their turn here as futures.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.run(work).await
    }

    /// Samples accepted but not yet committed.
    pub fn write_queue_len(&self) -> usize {
        self.inner.writer.queued()
    }

    /// The writer's counters (commits, group sizes, commit latency).
    pub fn stats(&self) -> StoreStats {
        self.inner.writer.stats()
    }

    /// Stops checkpointing, commits what is queued, folds the WAL into the
    /// database file and stops the writer. Blocks.
    pub fn close(&self) {
        self.inner.retention.close();
        self.inner.checkpointer.close();
        self.inner.writer.close();
    }

    /// Runs a whole retention pass as if the clock said `now`, without
    /// pausing between batches: moves the
    /// raw samples older than the retention period to the history (in
    /// whole hours, batch by batch), deletes the history older than the
    /// history retention, then, with `retention_size` set, the oldest data
    /// while the database is larger, and the servers left with nothing.
    /// The background task does the same every `retention_interval`.
    pub async fn apply_retention(&self, now: Timestamp) -> Result<RetentionReport, StoreError> {
        self.run_retention(now, false).await
    }

    /// `apply_retention` as the background task runs it: pausing after each
    /// batch as long as the batch took, so ingest keeps the writer.
    pub async fn apply_retention_paced(
        &self,
        now: Timestamp,
    ) -> Result<RetentionReport, StoreError> {
        self.run_retention(now, true).await
    }

    async fn run_retention(
        &self,
        now: Timestamp,
        paced: bool,
    ) -> Result<RetentionReport, StoreError> {
        let policy = self.inner.policy;
        let cutoffs = Cutoffs::by_age(now, policy.retention_ms, policy.history_retention_ms);
        let writer = Arc::clone(&self.inner.writer);
        let path = self.inner.path.clone();
        let space = Arc::clone(&self.inner.space);
        tokio::task::spawn_blocking(move || {
            let retain_batch = |cutoffs| writer.retain_batch_blocking(cutoffs);
            let stop = background::Stop::default();
            let mut report = RetentionReport::default();
            retention::run_pass(&retain_batch, cutoffs, &stop, &mut report, paced)?;
            if let Some(limit) = policy.retention_size {
                let conn = rusqlite::Connection::open(&path)?;
                let over_size = retention::shrink(
                    &conn,
                    &retain_batch,
                    cutoffs,
                    retention::Shrink { now, limit, paced },
                    &stop,
                    &mut report,
                )?;
                if let Ok(mut space) = space.lock() {
                    space.over_size = over_size == Some(true);
                }
            }
            Ok(report)
        })
        .await?
    }

    /// What the retention task last measured: bytes in use, per table,
    /// and whether `retention_size` could be kept.
    pub fn space(&self) -> SpaceReport {
        self.inner
            .space
            .lock()
            .map(|space| space.clone())
            .unwrap_or_default()
    }

    /// Measures the bytes in use and per table now (reading every page).
    pub async fn measure_space(&self) -> Result<SpaceReport, StoreError> {
        let over_size = self.space().over_size;
        let report = self
            .read(move |conn| {
                Ok(SpaceReport {
                    used_bytes: retention::used_bytes(conn)?,
                    table_bytes: retention::table_bytes(conn)?,
                    over_size,
                })
            })
            .await?;
        if let Ok(mut space) = self.inner.space.lock() {
            *space = report.clone();
        }
        Ok(report)
    }
}

/// One stored sample, as the Prometheus-compatible API reads it: Unix ms,
/// CPU and RAM percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSample {
    pub time: i64,
    pub cpu: f64,
    pub ram: f64,
}

/// A server's raw samples of a time range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSamples {
    pub name: String,
    pub samples: Vec<RawSample>,
}

impl Store {
    /// Every known server's name, sorted (byte order).
    pub async fn server_names(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| queries::server_names(conn)).await
    }

    /// The raw samples of `servers` with `after < time <= until` (Unix ms),
    /// oldest first, from one snapshot; `None` if that is more than
    /// `max_samples` samples.
    pub async fn raw_samples(
        &self,
        servers: Vec<String>,
        after: i64,
        until: i64,
        max_samples: usize,
    ) -> Result<Option<Vec<ServerSamples>>, StoreError> {
        self.read(move |conn| queries::raw_samples(conn, &servers, after, until, max_samples))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_is_beside_the_database() {
        assert_eq!(
            wal_path(Path::new("/var/lib/sperform/sperform.db")),
            PathBuf::from("/var/lib/sperform/sperform.db-wal")
        );
    }
}
