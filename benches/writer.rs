//! In-process benchmark of the store's write path, without HTTP: how many
//! samples per second the writer thread commits for the W1 and W2 shapes of
//! load (see benches/README.md). Used to profile the writer on its own:
//!
//!     cargo build --release --features bench --bin bench-writer
//!     target/release/bench-writer w1    # 1,000 servers x 1,440 minutes, batches of 5,000, 4 in flight
//!     target/release/bench-writer w2    # one sample per insert, 64 in flight, random server of 10,000
//!     target/release/bench-writer w3    # after w1: `Store::load` of a random server, 16 in flight,
//!                                       # then the time to write one answer as JSON (serde and by hand)
//!
//! Prints one line: `w1: N samples in S s = R/s` (`w3`: loads). The
//! database is a fresh temporary file, removed at the end.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sperform::api::wire::{LoadBody, text};
use sperform::model::{LoadReport, MINUTE_MS, Sample, ServerName, Timestamp};
use sperform::store::{Store, StoreConfig};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "w2".into());
    match run(&mode).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-writer: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mode: &str) -> BenchResult<()> {
    let dir = std::env::temp_dir().join(format!("sperform-bench-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(mode, &dir).await;
    std::fs::remove_dir_all(&dir)?;
    result
}

async fn measure(mode: &str, dir: &std::path::Path) -> BenchResult<()> {
    let store = Store::open(
        &StoreConfig {
            path: dir.join("bench.db"),
            read_pool_size: 2,
            write_queue: 1_000_000,
            synchronous_full: false,
            retention_ms: 7 * DAY_MS,
            history_retention_ms: 400 * DAY_MS,
            retention_size: None,
            retention_interval: Duration::from_secs(3600),
        },
        sperform::clock::Clock::System,
    )?;
    let names: Vec<ServerName> = (0..10_000)
        .map(|i| ServerName::parse(&format!("srv-{i:05}")))
        .collect::<Result<_, _>>()?;
    let now = Timestamp::now().floor(MINUTE_MS).millis();
    let started = Instant::now();
    let total = match mode {
        "w1" => w1(&store, &names, now).await?,
        "w2" => w2(&store, &names, now).await?,
        "w3" => {
            w1(&store, &names, now).await?;
            store.seal(Timestamp::from_millis(now + MINUTE_MS)?).await?;
            // As after a backfill: the checkpointer empties the WAL once
            // writes have stopped for a second.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let started = Instant::now();
            let loads = w3(&store, &names, now).await?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "w3: {loads} loads in {seconds:.2} s = {:.0}/s",
                loads as f64 / seconds
            );
            let report = store
                .load(names[0].clone(), Timestamp::from_millis(now)?)
                .await?
                .ok_or("a w1 server is missing")?;
            answer_text(&report)?;
            store.close();
            return Ok(());
        }
        other => return Err(format!("unknown mode {other:?}: w1, w2 or w3").into()),
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{mode}: {total} samples in {seconds:.2} s = {:.0}/s",
        total as f64 / seconds
    );
    store.close();
    Ok(())
}

/// 1,000 servers x 24 h x 1 sample a minute, minute by minute across all
/// servers (as the HTTP benchmark sends them), 5,000 a batch, 4 in flight.
async fn w1(store: &Store, names: &[ServerName], now: i64) -> BenchResult<usize> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    for minute in 0..1440_i64 {
        for (index, server) in names.iter().take(1000).enumerate() {
            batch.push(Sample {
                server: server.clone(),
                time: Timestamp::from_millis(now - DAY_MS + minute * MINUTE_MS)?,
                cpu: (index % 400) as f64 / 4.0,
                ram: (minute % 400) as f64 / 4.0,
            });
            if batch.len() == 5000 {
                batches.push(std::mem::take(&mut batch));
            }
        }
    }
    let total = batches.iter().map(Vec::len).sum();
    batches.reverse(); // popped oldest first
    let batches = Arc::new(Mutex::new(batches));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let batches = Arc::clone(&batches);
        senders.push(tokio::spawn(async move {
            loop {
                let next = batches.lock().ok().and_then(|mut b| b.pop());
                let Some(batch) = next else {
                    return BenchResult::Ok(());
                };
                store.insert(batch).await?;
            }
        }));
    }
    for sender in senders {
        sender.await??;
    }
    Ok(total)
}

/// One sample per insert, 64 inserts in flight, each to a random one of
/// 10,000 servers, at the current time.
async fn w2(store: &Store, names: &[ServerName], now: i64) -> BenchResult<usize> {
    const PER_SENDER: usize = 4000;
    let mut senders = Vec::new();
    for sender in 0..64_u64 {
        let store = store.clone();
        let names = names.to_vec();
        senders.push(tokio::spawn(async move {
            let mut state = sender * 7919 + 1;
            for i in 0..PER_SENDER {
                let server = names[pick(&mut state, names.len())].clone();
                let sample = Sample {
                    server,
                    time: Timestamp::from_millis(now + (i as i64 % 1000))?,
                    cpu: 12.5,
                    ram: 40.25,
                };
                store.insert(vec![sample]).await?;
            }
            BenchResult::Ok(())
        }));
    }
    for sender in senders {
        sender.await??;
    }
    Ok(64 * PER_SENDER)
}

/// The next of a small LCG's numbers below `len`: the same servers every
/// run, with no dependency.
fn pick(state: &mut u64, len: usize) -> usize {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 33) as usize % len
}

/// The read path alone: `load` (both views, as `GET .../load` asks) of a
/// random one of w1's servers at `now`, 16 in flight.
async fn w3(store: &Store, names: &[ServerName], now: i64) -> BenchResult<usize> {
    const PER_READER: usize = 5000;
    let at = Timestamp::from_millis(now)?;
    let mut readers = Vec::new();
    for reader in 0..16_u64 {
        let store = store.clone();
        let names = names[..1000].to_vec();
        readers.push(tokio::spawn(async move {
            let mut state = reader * 7919 + 1;
            for _ in 0..PER_READER {
                let server = names[pick(&mut state, names.len())].clone();
                if store.load(server, at).await?.is_none() {
                    return Err("a w1 server is missing".into());
                }
            }
            BenchResult::Ok(())
        }));
    }
    for reader in readers {
        reader.await??;
    }
    Ok(16 * PER_READER)
}

/// How long writing one `/load` answer takes, with serde (`LoadBody`) and
/// with the hand-written `text::load`, on one thread.
fn answer_text(report: &LoadReport) -> BenchResult<()> {
    const ROUNDS: u32 = 20_000;
    let mut bytes = 0;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        bytes += serde_json::to_vec(&LoadBody::from(report))?.len();
    }
    let serde = started.elapsed() / ROUNDS;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        bytes += text::load(report).len();
    }
    let by_hand = started.elapsed() / ROUNDS;
    println!(
        "w3 answer ({} bytes): serde {:.1} us, by hand {:.1} us",
        bytes / (2 * ROUNDS as usize),
        serde.as_secs_f64() * 1e6,
        by_hand.as_secs_f64() * 1e6
    );
    Ok(())
}
