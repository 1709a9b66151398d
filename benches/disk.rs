//! Disk per sample at steady state: drives a store through its real writer
//! (`Store::insert`, `Store::seal`, `Store::apply_retention`) on a manual
//! clock, as a running daemon would over days, then measures the database
//! (see benches/README.md, "Disk per sample (storage tiers)"):
//!
//!     cargo build --release --features bench --bin bench-disk
//!     target/release/bench-disk all        # or one case: min, sec, min-year, sec-year
//!
//! Cases: `min` is 200 servers at 1 sample a minute, `sec` 5 servers at 1
//! sample a second, each for 10 days with 7 days of raw retention (so 3
//! days have expired and their pages been reused) and no history kept;
//! `min-year` and `sec-year` are the same with the default history (400
//! days) and a year of it behind the raw days: 362 days of 2 samples an
//! hour (an hour row's size does not depend on how many samples it sums),
//! then the 10 days at the full rate. Each case runs on a fresh temporary
//! database, removed at the end.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sperform::clock::{Clock, ManualClock};
use sperform::model::{HOUR_MS, MINUTE_MS, Sample, ServerName, Timestamp};
use sperform::store::{Store, StoreConfig, wal_path};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DAY_MS: i64 = 24 * HOUR_MS;
const RETENTION_MS: i64 = 7 * DAY_MS;
const HISTORY_RETENTION_MS: i64 = 400 * DAY_MS;
/// Days at the full rate: the 7 kept and 3 more, so that the database has
/// freed pages and used them again, as it does in a daemon that has run
/// for longer than its retention.
const FULL_RATE_DAYS: i64 = 10;
/// Days of 2 samples an hour before them in the year cases: with the 3
/// expired full-rate days, 365 days of history.
const SPARSE_DAYS: i64 = 365 - (FULL_RATE_DAYS - 7);
/// Samples per insert at most.
const BATCH: usize = 5_000;
/// Midnight UTC, 2023-11-15: where every case starts.
const START_MS: i64 = 1_700_006_400_000;

struct Case {
    name: &'static str,
    servers: usize,
    step_ms: i64,
    sparse_days: i64,
}

const CASES: [Case; 4] = [
    Case {
        name: "min",
        servers: 200,
        step_ms: MINUTE_MS,
        sparse_days: 0,
    },
    Case {
        name: "sec",
        servers: 5,
        step_ms: 1000,
        sparse_days: 0,
    },
    Case {
        name: "min-year",
        servers: 200,
        step_ms: MINUTE_MS,
        sparse_days: SPARSE_DAYS,
    },
    Case {
        name: "sec-year",
        servers: 5,
        step_ms: 1000,
        sparse_days: SPARSE_DAYS,
    },
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|case| which == "all" || case.name == which)
        .collect();
    if cases.is_empty() {
        eprintln!("bench-disk: unknown case {which:?}: all, min, sec, min-year or sec-year");
        return ExitCode::FAILURE;
    }
    for case in cases {
        if let Err(err) = run(case).await {
            eprintln!("bench-disk: {}: {err}", case.name);
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn run(case: &Case) -> BenchResult<()> {
    let dir = std::env::temp_dir().join(format!(
        "sperform-bench-disk-{}-{}",
        std::process::id(),
        case.name
    ));
    std::fs::create_dir_all(&dir)?;
    let result = measure(case, &dir.join("bench.db")).await;
    std::fs::remove_dir_all(&dir)?;
    result
}

/// Without history the history retention equals the raw retention, so an
/// expired hour is deleted rather than kept.
fn store_config(path: &Path, with_history: bool) -> StoreConfig {
    StoreConfig {
        path: path.to_path_buf(),
        read_pool_size: 2,
        write_queue: 1_000_000,
        synchronous_full: false,
        retention_ms: RETENTION_MS,
        history_retention_ms: if with_history {
            HISTORY_RETENTION_MS
        } else {
            RETENTION_MS
        },
        retention_size: None,
        // The benchmark runs every retention pass itself, on its clock.
        retention_interval: Duration::from_secs(365 * 24 * 3600),
    }
}

async fn measure(case: &Case, path: &Path) -> BenchResult<()> {
    let started = Instant::now();
    let clock = ManualClock::new(Timestamp::from_millis(START_MS)?);
    let store = Store::open(
        &store_config(path, case.sparse_days > 0),
        Clock::from(clock.clone()),
    )?;
    let names: Vec<ServerName> = (0..case.servers)
        .map(|i| ServerName::parse(&format!("srv-{i:04}")))
        .collect::<Result<_, _>>()?;
    let full_rate_from = START_MS + case.sparse_days * DAY_MS;
    let end = full_rate_from + FULL_RATE_DAYS * DAY_MS;
    // Two samples an hour, then one every `step_ms`; all servers at each
    // point in time, in time order, as live agents send them.
    let sparse = (0..case.sparse_days * 24).flat_map(|hour| {
        let at = START_MS + hour * HOUR_MS;
        [at + 7 * MINUTE_MS, at + 37 * MINUTE_MS]
    });
    let full_rate = (full_rate_from..end).step_by(usize::try_from(case.step_ms)?);
    let mut points = sparse.chain(full_rate);
    let per_batch = (BATCH / case.servers).max(1);
    let mut inserted = 0_u64;
    let mut retained_to = START_MS;
    loop {
        let chunk: Vec<i64> = points.by_ref().take(per_batch).collect();
        let Some(&last) = chunk.last() else { break };
        let mut batch = Vec::with_capacity(chunk.len() * names.len());
        for &time in &chunk {
            for (index, server) in names.iter().enumerate() {
                batch.push(sample(server, index, time)?);
            }
        }
        inserted += batch.len() as u64;
        // The clock stands at the newest sample: minutes before it are
        // sealed as the writer goes, as in a daemon.
        clock.set(Timestamp::from_millis(last)?);
        store.insert(batch).await?;
        let hour = last - last.rem_euclid(HOUR_MS);
        if hour > retained_to {
            // The daemon's retention runs every few minutes; once an hour
            // is as often as whole hours expire.
            store.apply_retention(clock.now()).await?;
            retained_to = hour;
        }
    }
    let end_time = Timestamp::from_millis(end)?;
    clock.set(end_time);
    store.seal(end_time).await?;
    store.apply_retention(end_time).await?;
    store.close();
    let took = started.elapsed().as_secs_f64();
    let report = measure_file(path)?;
    print_report(case, inserted, took, &report);
    Ok(())
}

/// A value as the agent sends it (a percentage to the hundredth), varying
/// from sample to sample, so sums and extremes are like real ones.
fn sample(server: &ServerName, index: usize, time: i64) -> BenchResult<Sample> {
    let mix = |salt: u64| {
        let mut x = ((index as u64) << 40) ^ time.unsigned_abs() ^ salt;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (x ^ (x >> 31)) % 10_001
    };
    Ok(Sample {
        server: server.clone(),
        time: Timestamp::from_millis(time)?,
        cpu: mix(0x5eed) as f64 / 100.0,
        ram: mix(0xfeed) as f64 / 100.0,
    })
}

struct FileReport {
    file_bytes: u64,
    wal_bytes: u64,
    used_bytes: u64,
    raw_samples: u64,
    hour_rows: u64,
    minute_rows: u64,
    history_rows: u64,
    history_samples: u64,
    tables: Vec<TableBytes>,
}

/// One table or index, as `dbstat` counts it.
struct TableBytes {
    name: String,
    bytes: u64,
    /// Bytes of row data, without the cells' and pages' own headers.
    payload: u64,
    /// Bytes of its pages that hold nothing.
    unused: u64,
}

/// Sizes after a `TRUNCATE` checkpoint, rows, and bytes per table and
/// index (SQLite's `dbstat`, as `Store::measure_space` reads it), through
/// a connection of its own once the store is closed.
fn measure_file(path: &Path) -> BenchResult<FileReport> {
    let conn = Connection::open(path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let count = |sql: &str| -> BenchResult<u64> {
        let value: i64 = conn.query_row(sql, [], |row| row.get(0))?;
        Ok(value.unsigned_abs())
    };
    let has_history =
        count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'hour_history'")?
            > 0;
    let (history_rows, history_samples) = if has_history {
        (
            count("SELECT count(*) FROM hour_history")?,
            count("SELECT coalesce(sum(samples), 0) FROM hour_history")?,
        )
    } else {
        (0, 0)
    };
    let mut statement = conn.prepare(
        "SELECT name, sum(pgsize), sum(payload), sum(unused) FROM dbstat
         GROUP BY name ORDER BY sum(pgsize) DESC, name",
    )?;
    let tables = statement
        .query_map([], |row| {
            Ok(TableBytes {
                name: row.get(0)?,
                bytes: row.get::<_, i64>(1)?.unsigned_abs(),
                payload: row.get::<_, i64>(2)?.unsigned_abs(),
                unused: row.get::<_, i64>(3)?.unsigned_abs(),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(FileReport {
        file_bytes: size(path),
        wal_bytes: size(&wal_path(path)),
        used_bytes: count(
            "SELECT (page_count - freelist_count) * page_size
             FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
        )?,
        raw_samples: count("SELECT count(*) FROM samples")?,
        hour_rows: count("SELECT count(*) FROM hour_rollups")?,
        minute_rows: count("SELECT count(*) FROM minute_rollups")?,
        history_rows,
        history_samples,
        tables,
    })
}

fn print_report(case: &Case, inserted: u64, took: f64, report: &FileReport) {
    let per_sample = |bytes: u64| bytes as f64 / report.raw_samples.max(1) as f64;
    let on_disk = report.file_bytes + report.wal_bytes;
    println!(
        "{}: {} servers, 1 sample every {} s, {} days at that rate{}; 7 days raw kept",
        case.name,
        case.servers,
        case.step_ms / 1000,
        FULL_RATE_DAYS,
        if case.sparse_days > 0 {
            format!(
                " after {} days of 2 samples an hour; history kept 400 days",
                case.sparse_days
            )
        } else {
            ", no history kept".to_string()
        }
    );
    println!(
        "  samples inserted {inserted} in {took:.1} s; held: raw {}, hour rows {}, minute rows {}, history hours {} ({} samples)",
        report.raw_samples,
        report.hour_rows,
        report.minute_rows,
        report.history_rows,
        report.history_samples
    );
    println!(
        "  file + wal: {} + {} = {on_disk} bytes = {:.1} B per raw sample",
        report.file_bytes,
        report.wal_bytes,
        per_sample(on_disk)
    );
    println!(
        "  pages in use: {} bytes = {:.1} B per raw sample",
        report.used_bytes,
        per_sample(report.used_bytes)
    );
    println!(
        "    {:<28} {:>12} {:>7} {:>8} {:>7}",
        "table or index", "bytes", "B/raw", "payload", "unused"
    );
    for table in &report.tables {
        let share = |part: u64| 100.0 * part as f64 / table.bytes.max(1) as f64;
        println!(
            "    {:<28} {:>12} {:>7.1} {:>7.0}% {:>6.0}%",
            table.name,
            table.bytes,
            per_sample(table.bytes),
            share(table.payload),
            share(table.unused)
        );
    }
    let history_bytes: u64 = report
        .tables
        .iter()
        .filter(|table| table.name.starts_with("hour_history"))
        .map(|table| table.bytes)
        .sum();
    if report.history_rows > 0 {
        // Server-years of history held: hour rows over the hours of a year.
        let server_years = report.history_rows as f64 / (365.0 * 24.0);
        println!(
            "  history: {history_bytes} bytes for {server_years:.1} server-years = {:.0} bytes per server-year ({:.1} B per hour row)",
            history_bytes as f64 / server_years,
            history_bytes as f64 / report.history_rows as f64
        );
    }
}
