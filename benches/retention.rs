//! Whether retention keeps up with ingest at scale, and what it costs
//! ingest (see benches/README.md, "Retention keeps up"): fills a store with
//! N servers x 1 sample a second for H hours through its writer, then
//!
//! 1. expires the oldest hour with nothing else running (deletion alone);
//! 2. runs a W2-like ingest (single-sample inserts, 64 in flight, random
//!    server) for a while without retention;
//! 3. expires the next hours while the same ingest runs,
//!
//! and prints rows deleted per second, and the ingest's inserts per second
//! and latency (p50, p99, max) in 2 and 3.
//!
//!     cargo build --release --features bench --bin bench-retention
//!     target/release/bench-retention [servers] [hours]    # defaults: 1000 3
//!
//! The database is a fresh temporary file, removed at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sperform::clock::{Clock, ManualClock};
use sperform::model::{HOUR_MS, Sample, ServerName, Timestamp};
use sperform::store::{RetentionReport, Store, StoreConfig};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DAY_MS: i64 = 24 * HOUR_MS;
const RETENTION_MS: i64 = 7 * DAY_MS;
/// Midnight UTC, 2023-11-15.
const START_MS: i64 = 1_700_006_400_000;
/// Samples per insert while filling.
const FILL_BATCH: usize = 5_000;
/// Inserts in flight in the ingest phases, as W2's connections.
const INGEST_TASKS: u64 = 64;
/// How long the ingest runs without retention.
const INGEST_ALONE: Duration = Duration::from_secs(15);
/// The rate the issue asks retention to keep up with: 10,000 servers at 1
/// sample a second.
const TARGET_ROWS_PER_SECOND: f64 = 10_000.0;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let servers = args.next().map_or(Ok(1000), |arg| arg.parse::<usize>());
    let hours = args.next().map_or(Ok(3), |arg| arg.parse::<i64>());
    let (Ok(servers), Ok(hours)) = (servers, hours) else {
        eprintln!("bench-retention: usage: bench-retention [servers] [hours]");
        return ExitCode::FAILURE;
    };
    if servers == 0 || hours < 3 {
        eprintln!("bench-retention: at least 1 server and 3 hours");
        return ExitCode::FAILURE;
    }
    let dir = std::env::temp_dir().join(format!("sperform-bench-retention-{}", std::process::id()));
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => run(&dir, servers, hours).await,
        Err(err) => Err(err.into()),
    };
    if let Err(err) = std::fs::remove_dir_all(&dir) {
        eprintln!("bench-retention: removing {}: {err}", dir.display());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-retention: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dir: &std::path::Path, servers: usize, hours: i64) -> BenchResult<()> {
    let clock = ManualClock::new(Timestamp::from_millis(START_MS)?);
    let store = Store::open(
        &StoreConfig {
            path: dir.join("bench.db"),
            read_pool_size: 2,
            write_queue: 1_000_000,
            synchronous_full: false,
            retention_ms: RETENTION_MS,
            history_retention_ms: 400 * DAY_MS,
            retention_size: None,
            // Retention runs when the benchmark says, not on a timer.
            retention_interval: Duration::from_secs(365 * 24 * 3600),
        },
        Clock::from(clock.clone()),
    )?;
    let names: Vec<ServerName> = (0..servers)
        .map(|i| ServerName::parse(&format!("srv-{i:05}")))
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    let filled = fill(&store, &clock, &names, hours).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "fill: {servers} servers x 1/s x {hours} h = {filled} samples in {seconds:.1} s = {:.0}/s",
        filled as f64 / seconds
    );
    // Let the checkpointer empty the WAL, as after a backfill.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Retention sees the clock 7 days on: the first hour has expired.
    let now = START_MS + hours * HOUR_MS;
    let expire_through =
        |hour: i64| Timestamp::from_millis(START_MS + hour * HOUR_MS + RETENTION_MS);
    let started = Instant::now();
    let alone = store.apply_retention(expire_through(1)?).await?;
    print_retention("retention alone (hour 1)", &alone, started.elapsed());

    let quiet = ingest(&store, &names, now, None).await?;
    print_ingest("ingest without retention", &quiet);

    let busy = ingest(&store, &names, now, Some(expire_through(hours - 1)?)).await?;
    if let Some((report, took)) = &busy.retention {
        print_retention(
            &format!("retention during ingest (hours 2..{})", hours - 1),
            report,
            *took,
        );
    }
    print_ingest("ingest during retention", &busy);
    store.close();
    Ok(())
}

/// Every server at every second of `hours` hours, in time order, through
/// `Store::insert`, the clock at the newest sample.
async fn fill(
    store: &Store,
    clock: &ManualClock,
    names: &[ServerName],
    hours: i64,
) -> BenchResult<u64> {
    let per_batch = (FILL_BATCH / names.len()).max(1);
    let seconds: Vec<i64> = (0..hours * 3600).collect();
    let mut filled = 0;
    for chunk in seconds.chunks(per_batch) {
        let mut batch = Vec::with_capacity(chunk.len() * names.len());
        for &second in chunk {
            let time = START_MS + second * 1000;
            for (index, server) in names.iter().enumerate() {
                batch.push(sample(server, index, time)?);
            }
        }
        filled += batch.len() as u64;
        if let Some(&last) = chunk.last() {
            clock.set(Timestamp::from_millis(START_MS + last * 1000)?);
        }
        store.insert(batch).await?;
    }
    let end = Timestamp::from_millis(START_MS + hours * HOUR_MS)?;
    clock.set(end);
    store.seal(end).await?;
    Ok(filled)
}

fn sample(server: &ServerName, index: usize, time: i64) -> BenchResult<Sample> {
    let spread = (index as i64 * 37 + time / 1000 * 11).rem_euclid(10_001);
    Ok(Sample {
        server: server.clone(),
        time: Timestamp::from_millis(time)?,
        cpu: spread as f64 / 100.0,
        ram: (10_000 - spread) as f64 / 100.0,
    })
}

struct Ingest {
    inserts: usize,
    seconds: f64,
    /// Each insert's time from call to commit, in microseconds, sorted.
    latencies: Vec<u64>,
    retention: Option<(RetentionReport, Duration)>,
}

/// Single-sample inserts, `INGEST_TASKS` in flight, each to a random
/// server at `now` (plus a few ms): for `INGEST_ALONE`, or, with
/// `expire_at`, for as long as a retention pass as of that time runs.
async fn ingest(
    store: &Store,
    names: &[ServerName],
    now: i64,
    expire_at: Option<Timestamp>,
) -> BenchResult<Ingest> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..INGEST_TASKS {
        let store = store.clone();
        let names = names.to_vec();
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut state = task * 7919 + 1;
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let index = pick(&mut state, names.len());
                let offset = i64::try_from(latencies.len() % 1000)?;
                let sample = sample(&names[index], index, now + offset)?;
                let sent = Instant::now();
                store.insert(vec![sample]).await?;
                latencies.push(u64::try_from(sent.elapsed().as_micros())?);
            }
            BenchResult::Ok(latencies)
        }));
    }
    let retention = match expire_at {
        Some(at) => {
            let pass_started = Instant::now();
            // Paced, as the daemon's background task runs it.
            let report = store.apply_retention_paced(at).await;
            let took = pass_started.elapsed();
            stop.store(true, Ordering::Relaxed);
            Some((report?, took))
        }
        None => {
            tokio::time::sleep(INGEST_ALONE).await;
            stop.store(true, Ordering::Relaxed);
            None
        }
    };
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(Ingest {
        inserts: latencies.len(),
        seconds,
        latencies,
        retention,
    })
}

/// The next of a small LCG's numbers below `len`.
fn pick(state: &mut u64, len: usize) -> usize {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 33) as usize % len
}

fn print_retention(what: &str, report: &RetentionReport, took: Duration) {
    let seconds = took.as_secs_f64();
    let rate = report.samples_deleted as f64 / seconds;
    println!(
        "{what}: {} samples deleted, {} hours to history, {} batches in {seconds:.1} s = {rate:.0} rows/s ({:.1}x the {TARGET_ROWS_PER_SECOND:.0}/s of 10,000 servers at 1/s)",
        report.samples_deleted,
        report.hours_to_history,
        report.batches,
        rate / TARGET_ROWS_PER_SECOND
    );
}

fn print_ingest(what: &str, ingest: &Ingest) {
    let quantile = |q: f64| -> f64 {
        let last = ingest.latencies.len().saturating_sub(1);
        let at = ((last as f64) * q).round() as usize;
        ingest
            .latencies
            .get(at)
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    println!(
        "{what}: {} inserts in {:.1} s = {:.0}/s; latency ms p50 {:.2}, p99 {:.2}, max {:.2}",
        ingest.inserts,
        ingest.seconds,
        ingest.inserts as f64 / ingest.seconds,
        quantile(0.5),
        quantile(0.99),
        quantile(1.0)
    );
}
