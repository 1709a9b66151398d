//! Opening connections, their pragmas, and the schema migrations.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::{StoreError, checkpoint};

/// The migrations in `migrations/`, in order. Version N of the schema is the
/// database after the first N of them; it is kept in `PRAGMA user_version`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial",
        include_str!("../../../migrations/0001_initial.sql"),
    ),
    (
        "0002_rollups",
        include_str!("../../../migrations/0002_rollups.sql"),
    ),
    (
        "0003_rollup_seal",
        include_str!("../../../migrations/0003_rollup_seal.sql"),
    ),
    (
        "0004_rollup_extremes",
        include_str!("../../../migrations/0004_rollup_extremes.sql"),
    ),
    (
        "0005_server_seal",
        include_str!("../../../migrations/0005_server_seal.sql"),
    ),
    (
        "0006_history",
        include_str!("../../../migrations/0006_history.sql"),
    ),
];

/// Page size of a newly created database, in bytes (SQLite's default is
/// 4096). A live sample dirties one page, so smaller pages halve what a
/// commit writes (benches/README.md has the measurement).
pub const NEW_DATABASE_PAGE_SIZE: i64 = 2048;

/// How long a connection waits on a lock held by someone else (for example
/// `sqlite3` at a prompt) before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if needed) the connection the writer thread owns.
pub fn open_writer(path: &Path, synchronous_full: bool) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Only takes effect on a new, empty database, and must come before WAL
    // mode is set. Live samples go to a different server's page each, and a
    // commit writes every page it touched to the WAL: smaller pages mean less
    // to write per sample.
    conn.pragma_update(None, "page_size", NEW_DATABASE_PAGE_SIZE)?;
    // WAL lets readers, including a person's sqlite3, read while we write.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Setup(format!(
            "could not switch {} to WAL journal mode (it stays {mode})",
            path.display()
        )));
    }
    // With WAL, NORMAL loses no committed transaction when the process dies;
    // FULL also syncs the WAL at each commit, for power loss.
    let synchronous = if synchronous_full { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Checkpoints run on their own thread (see checkpoint.rs), not in the
    // middle of some request's commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Once rewound, a WAL grown longer than usual (a reader held it up) is
    // cut back, so it does not keep that size on disk.
    conn.pragma_update(None, "journal_size_limit", checkpoint::WAL_KEEP_BYTES)?;
    // Keep the hot pages of the tables being appended to in memory.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    Ok(conn)
}

/// Page cache of the write connection, in KiB.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// Page cache of each read connection, in KiB.
const READER_CACHE_KIB: i64 = 4 * 1024;

/// Settings for each pooled read connection.
pub fn init_reader(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "query_only", true)
}

/// Brings the schema up to date, one migration per transaction. Returns the
/// names of the migrations applied, for the caller to log (nothing here
/// logs, so each migration is one line at start-up). Refuses a database made
/// by a newer sperform rather than guess at its layout.
pub fn migrate(conn: &mut Connection) -> Result<Vec<&'static str>, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    // A negative version is none we ever wrote: treat it as unknown and newer.
    let current = usize::try_from(version).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            found: current,
            supported: MIGRATIONS.len(),
        });
    }
    let mut applied = Vec::new();
    for ((name, sql), version) in MIGRATIONS.iter().zip(1_u32..).skip(current) {
        apply(conn, sql, version).map_err(|source| StoreError::Migration { name, source })?;
        applied.push(*name);
    }
    Ok(applied)
}

/// Runs one migration and sets `user_version` to `version` in the same
/// transaction, so a migration that fails leaves the database as it was.
fn apply(conn: &mut Connection, sql: &str, version: u32) -> rusqlite::Result<()> {
    let transaction = conn.transaction()?;
    transaction.execute_batch(sql)?;
    transaction.pragma_update(None, "user_version", version)?;
    transaction.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_list_matches_the_migrations_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(name, _)| format!("{name}.sql"))
            .collect();
        assert_eq!(on_disk, listed);
    }

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn migrations_apply_to_an_empty_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            vec![
                "0001_initial",
                "0002_rollups",
                "0003_rollup_seal",
                "0004_rollup_extremes",
                "0005_server_seal",
                "0006_history"
            ]
        );
        assert_eq!(user_version(&conn), 6);
        assert!(migrate(&mut conn).unwrap().is_empty());
        assert_eq!(user_version(&conn), 6);
    }

    #[test]
    fn a_failed_migration_leaves_the_database_as_it_was() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A table the first migration creates makes it fail half way.
        conn.execute_batch("CREATE TABLE samples (x)").unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("migration 0001_initial failed: "),
            "{err}"
        );
        assert_eq!(user_version(&conn), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    }

    #[test]
    fn a_database_of_a_newer_schema_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::TooNew {
                found: 7,
                supported: 6
            })
        ));
        assert_eq!(user_version(&conn), 7);
    }
}
