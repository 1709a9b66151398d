//! The reader threads: `read_pool_size` threads of our own, each running
//! one read at a time on a connection from the r2d2 pool, fed from one
//! queue. A reader that finishes takes the next queued read at once. Reads
//! used to go to Tokio's blocking pool behind a semaphore of the same size:
//! there, a thread that finished went to sleep before the next read was
//! handed to it, and was woken again for it, two context switches per read
//! (benches/README.md has the figures).

use std::panic::{AssertUnwindSafe, catch_unwind};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;

type Pool = r2d2::Pool<SqliteConnectionManager>;
type Job = Box<dyn FnOnce(&Pool) + Send>;

/// The queue of reads and, behind it, the threads that run them. The
/// threads end once this handle is dropped.
pub struct Readers {
    queue: crossbeam_channel::Sender<Job>,
}

impl Readers {
    /// Starts as many readers as `pool` has connections, so a reader never
    /// waits for one.
    pub fn spawn(pool: &Pool) -> Result<Readers, StoreError> {
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        for index in 0..pool.max_size() {
            let jobs = jobs.clone();
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("sperform-read-{index}"))
                .spawn(move || {
                    // Ends when every sender is gone (the store was dropped).
                    while let Ok(job) = jobs.recv() {
                        job(&pool);
                    }
                })
                .map_err(|source| StoreError::thread("a reader thread", source))?;
        }
        Ok(Readers { queue })
    }

    /// Runs `work` on a reader thread with a pooled connection, never on
    /// the async executor; waits here, as a future, for its turn and its
    /// result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |pool| {
            // A read that panics fails its own request, not the thread. The
            // connection goes back to the pool before the answer goes out.
            let result = catch_unwind(AssertUnwindSafe(|| {
                let mut conn = pool.get()?;
                work(&mut conn)
            }));
            if let Ok(result) = result {
                // A requester that went away no longer needs it.
                let _ = reply.send(result);
            }
        });
        self.queue
            .send(job)
            .map_err(|_| StoreError::Task("the reader threads have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Task("a read failed unexpectedly (see the log)".into()))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn pool(size: u32) -> Pool {
        r2d2::Pool::builder()
            .max_size(size)
            .build(SqliteConnectionManager::memory())
            .expect("in-memory pool")
    }

    #[tokio::test]
    async fn a_read_returns_what_its_query_returns() {
        let readers = Readers::spawn(&pool(2)).expect("readers");
        let answer = readers
            .run(|conn| Ok(conn.query_row("SELECT 6 * 7", [], |row| row.get::<_, i64>(0))?))
            .await;
        assert_eq!(answer.expect("read"), 42);
        let failed = readers
            .run(
                |conn| Ok(conn.query_row("SELECT * FROM nowhere", [], |row| row.get::<_, i64>(0))?),
            )
            .await;
        match failed {
            Err(err @ StoreError::Sqlite(_)) => {
                let message = err.to_string();
                assert!(message.contains("no such table: nowhere"), "{message}");
                assert!(!err.is_transient());
                // The SQLite error itself is kept as the source.
                let source = std::error::Error::source(&err).map(ToString::to_string);
                assert_eq!(
                    source.as_deref(),
                    Some(message.trim_start_matches("database error: "))
                );
            }
            other => panic!("expected an SQLite error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_panicking_read_fails_alone_and_the_thread_goes_on() {
        let readers = Readers::spawn(&pool(1)).expect("readers");
        let panicked = readers
            .run(|_| -> Result<(), StoreError> { panic!("a read that panics") })
            .await;
        match panicked {
            Err(StoreError::Task(message)) => assert!(message.contains("failed"), "{message}"),
            other => panic!("expected a task error, got {other:?}"),
        }
        // The only thread is still there, and its connection is back.
        let answer = readers
            .run(|conn| Ok(conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?))
            .await;
        assert_eq!(answer.expect("read after the panic"), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_reads_run_at_once_than_there_are_threads() {
        let readers = Arc::new(Readers::spawn(&pool(2)).expect("readers"));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut reads = Vec::new();
        for _ in 0..8 {
            let (readers, running, most) = (
                Arc::clone(&readers),
                Arc::clone(&running),
                Arc::clone(&most),
            );
            reads.push(tokio::spawn(async move {
                readers
                    .run(move |_| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            }));
        }
        for read in reads {
            read.await.expect("task").expect("read");
        }
        assert!(most.load(Ordering::SeqCst) <= 2, "{most:?}");
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
