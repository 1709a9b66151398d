//! WAL checkpoints off the ingest path. SQLite's automatic checkpoint runs
//! inside the committing transaction's thread, so every few commits one
//! request would wait for pages to be copied and synced. Instead a thread of
//! its own copies WAL frames into the database file while the writer goes
//! on. The WAL file is only rewound when a checkpoint has caught up at the
//! moment a write transaction starts, which a busy writer never lets happen;
//! so once the WAL is long, the checkpointer asks the writer to finish the
//! (by then small) remainder itself between two transactions.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use super::schema::BUSY_TIMEOUT;

/// How often the checkpointer looks at the WAL.
const INTERVAL: Duration = Duration::from_millis(100);
/// WAL length, in pages, past which the writer is asked to let it rewind
/// (8,192 pages of 4 KiB: 32 MiB).
const REWIND_PAGES: i64 = 8_192;

/// The running checkpoint thread.
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts checkpointing `path`; sets `rewind_wanted` when the writer
    /// should run the last checkpoint itself.
    pub fn spawn(path: &Path, rewind_wanted: Arc<AtomicBool>) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sperform-checkpoint".into())
            .spawn(move || run(&conn, &thread_stop, &rewind_wanted))
            .map_err(|err| {
                StoreError::Setup(format!("cannot start the checkpoint thread: {err}"))
            })?;
        Ok(Checkpointer {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread and waits for it.
    pub fn close(&self) {
        self.signal_stop();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            log::error!("the checkpoint thread panicked");
        }
    }
}

impl Checkpointer {
    fn signal_stop(&self) {
        let (stopped, wake) = &*self.stop;
        if let Ok(mut stopped) = stopped.lock() {
            *stopped = true;
            wake.notify_all();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Without `close`, at least do not leave the thread running.
        self.signal_stop();
    }
}

fn run(conn: &Connection, stop: &(Mutex<bool>, Condvar), rewind_wanted: &AtomicBool) {
    let (stopped, wake) = stop;
    loop {
        {
            let Ok(guard) = stopped.lock() else { return };
            let Ok((guard, _)) = wake.wait_timeout_while(guard, INTERVAL, |stopped| !*stopped)
            else {
                return;
            };
            if *guard {
                return;
            }
        }
        match passive_checkpoint(conn) {
            Ok(wal_pages) if wal_pages > REWIND_PAGES => {
                rewind_wanted.store(true, Ordering::Release)
            }
            Ok(_) => {}
            Err(err) => log::warn!("WAL checkpoint failed (will retry): {err}"),
        }
    }
}

/// Copies what it can of the WAL into the database without blocking anyone;
/// returns the WAL's length in pages.
pub fn passive_checkpoint(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}
