//! WAL checkpoints off the ingest path. SQLite's automatic checkpoint runs
//! inside the committing transaction's thread, so every few commits one
//! request would wait for pages to be copied and synced. Instead a thread of
//! its own copies WAL frames into the database file while the writer goes
//! on. The WAL file is only rewound when a checkpoint has caught up at the
//! moment a write transaction starts, which a busy writer never lets happen;
//! so once the WAL is long, the checkpointer copies once more and asks the
//! writer to finish the (by then small) remainder itself between two
//! transactions. And once
//! writes have stopped for a while, the checkpointer empties the WAL file,
//! so a daemon at rest keeps its data in the database file alone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use super::background::Background;

/// How often the checkpointer looks at the WAL.
const INTERVAL: Duration = Duration::from_millis(100);
/// WAL length past which the writer is asked to let it rewind. Each rewind
/// costs the writer a last copy and two syncs while commits wait, so it
/// should be rare (benches/README.md compares rewind lengths).
const REWIND_BYTES: i64 = 64 * 1024 * 1024;
/// What a rewound WAL file is cut back to (`journal_size_limit`): above
/// the rewind length, so that under a steady load the file keeps its size
/// and the writer does not pay for giving its pages back after every
/// rewind, which lengthened the ingest tail.
pub const WAL_KEEP_BYTES: i64 = 96 * 1024 * 1024;
const _: () = assert!(
    WAL_KEEP_BYTES > REWIND_BYTES,
    "a WAL cut back below its rewind length would be cut back at every rewind"
);

/// Rounds without a new WAL frame after which the WAL file is emptied.
const IDLE_ROUNDS_BEFORE_TRUNCATE: u32 = 10;

/// Starts checkpointing `path` on a thread of its own; it sets
/// `rewind_wanted` when the writer should run the last checkpoint itself.
pub fn spawn(path: &Path, rewind_wanted: Arc<AtomicBool>) -> Result<Background, StoreError> {
    let conn = Connection::open(path)?;
    // Never wait for the writer: a checkpoint that cannot run now runs in
    // the next round.
    conn.busy_timeout(Duration::ZERO)?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let rewind_pages = REWIND_BYTES / page_size.max(512);
    Background::spawn("checkpoint", move |stop| {
        let mut last_length = 0;
        let mut idle_rounds = 0;
        while !stop.wait(INTERVAL) {
            let wal_pages = match passive_checkpoint(&conn) {
                Ok(wal_pages) => wal_pages,
                Err(err) => {
                    log::warn!("WAL checkpoint failed (will retry): {err}");
                    continue;
                }
            };
            if wal_pages > rewind_pages {
                // Copy again at once what was written while that round
                // copied: the writer copies the rest while every commit
                // waits, and should find only a few milliseconds' worth.
                if let Err(err) = passive_checkpoint(&conn) {
                    log::warn!("WAL checkpoint failed (will retry): {err}");
                }
                rewind_wanted.store(true, Ordering::Release);
            }
            idle_rounds = if wal_pages == last_length {
                idle_rounds + 1
            } else {
                0
            };
            last_length = wal_pages;
            if wal_pages > 0 && idle_rounds >= IDLE_ROUNDS_BEFORE_TRUNCATE {
                // Fails harmlessly (busy) if a write or a reader's snapshot
                // is in the way.
                if let Ok(0) = truncate(&conn) {
                    last_length = 0;
                }
            }
        }
    })
}

/// Copies the whole WAL into the database and empties the WAL file; returns
/// 0 when done, 1 when something was in the way.
fn truncate(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
}

/// Copies what it can of the WAL into the database without blocking anyone;
/// returns the WAL's length in pages.
pub fn passive_checkpoint(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}
