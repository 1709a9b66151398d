//! WAL checkpoints off the ingest path. SQLite's automatic checkpoint runs
//! inside the committing transaction's thread, so every few commits one
//! request would wait for pages to be copied and synced. Instead a thread of
//! its own copies WAL frames into the database file while the writer goes
//! on. The WAL file is only rewound when a checkpoint has caught up at the
//! moment a write transaction starts, which a busy writer never lets happen;
//! so once the WAL is long, the checkpointer asks the writer to finish the
//! (by then small) remainder itself between two transactions.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use super::background::Background;
use super::schema::BUSY_TIMEOUT;

/// How often the checkpointer looks at the WAL.
const INTERVAL: Duration = Duration::from_millis(100);
/// WAL length, in pages, past which the writer is asked to let it rewind
/// (4,096 pages of 4 KiB: 16 MiB).
const REWIND_PAGES: i64 = 4_096;

/// Starts checkpointing `path` on a thread of its own; it sets
/// `rewind_wanted` when the writer should run the last checkpoint itself.
pub fn spawn(path: &Path, rewind_wanted: Arc<AtomicBool>) -> Result<Background, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Background::spawn("checkpoint", move |stop| {
        while !stop.wait(INTERVAL) {
            match passive_checkpoint(&conn) {
                Ok(wal_pages) if wal_pages > REWIND_PAGES => {
                    rewind_wanted.store(true, Ordering::Release)
                }
                Ok(_) => {}
                Err(err) => log::warn!("WAL checkpoint failed (will retry): {err}"),
            }
        }
    })
}

/// Copies what it can of the WAL into the database without blocking anyone;
/// returns the WAL's length in pages.
pub fn passive_checkpoint(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}
