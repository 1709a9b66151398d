//! testgen: the load generator and end-to-end check of sperform.
//!
//! Many concurrent workers each feed their own servers a day of load (or,
//! with `--live`, report them every interval), then every server is read
//! back and each of its 60 minute and 24 hour buckets is compared with
//! what testgen computes from the samples it sent. Exit status 0 means
//! PASSED, 1 FAILED, 2 a usage error or an unreachable daemon.

mod http;
mod plan;
mod send;
mod summary;
mod verify;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::RngExt;
use reqwest::Method;
use sperform_model::model::{HOUR_MS, MAX_BATCH_LEN, MAX_CLOCK_SKEW_MS, Timestamp};

use crate::http::{Api, Stats};
use crate::plan::Fleet;
use crate::send::{Mode, Run};
use crate::summary::Summary;

/// Most servers one run may feed.
const MAX_SERVERS: u64 = 10_000_000;
/// How far back `--at` may lie: its day of samples must stay well inside
/// the daemon's default 7-day retention.
const MAX_AT_AGE_MS: i64 = 5 * 24 * HOUR_MS;

/// Sends a day of load for many servers to sperform from many concurrent
/// workers, reads every server back and checks every bucket.
///
/// Prints the first server's load report, a summary and PASSED (exit 0) or
/// the differences and FAILED (exit 1). Exit 2: usage error or daemon not
/// reachable.
#[derive(Debug, Parser)]
#[command(name = "testgen", version)]
struct Args {
    /// Concurrent workers.
    #[arg(default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    workers: u32,

    /// Servers each worker feeds.
    #[arg(default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=MAX_SERVERS as i64))]
    servers_per_worker: u32,

    /// Address of the sperform daemon.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,

    /// Samples per server, at random times in the 24 hours before --at.
    #[arg(long, default_value_t = 60, conflicts_with = "live",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    samples: u32,

    /// Samples per request: 1 posts each sample on its own, as agents do;
    /// more sends them through the batch endpoint.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_LEN as i64))]
    batch: u32,

    /// Seed of the generated data (default: random, printed in the summary).
    #[arg(long)]
    seed: Option<u64>,

    /// Server name prefix; names are <PREFIX>-w<worker>-s<server>
    /// (default: tg- and 8 random hex digits, fresh each run).
    #[arg(long)]
    prefix: Option<String>,

    /// Reference time: the data covers the 24 hours up to it and is read
    /// back at it. RFC 3339 or Unix seconds (default: now).
    #[arg(long, value_parser = parse_time, conflicts_with = "live")]
    at: Option<Timestamp>,

    /// Requests in flight at most (also the number of concurrent reads
    /// while verifying).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    connections: u32,

    /// Report live instead of backfilling: every --interval each worker
    /// sends one sample per server stamped with the current time, for
    /// --duration, then verifies.
    #[arg(long)]
    live: bool,

    /// Live mode: time between two reports of a server.
    #[arg(long, default_value = "1s", value_parser = parse_interval, requires = "live")]
    interval: Duration,

    /// Live mode: how long to report.
    #[arg(long, default_value = "10s", value_parser = parse_run_duration, requires = "live")]
    duration: Duration,

    /// Print neither the load report nor progress, only the summary.
    #[arg(long, short)]
    quiet: bool,

    /// Print the summary as one JSON object (with a "result" field) instead
    /// of text; nothing else goes to stdout.
    #[arg(long)]
    json: bool,
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    match text.parse::<f64>() {
        Ok(seconds) => Timestamp::from_unix_seconds(seconds),
        Err(_) => Timestamp::parse_rfc3339(text),
    }
    .map_err(|err| err.to_string())
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&interval) {
        return Err("must be from 10ms to 1h".to_owned());
    }
    Ok(interval)
}

fn parse_run_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration > Duration::from_secs(24 * 3600) {
        return Err("must be at most 24h".to_owned());
    }
    Ok(duration)
}

/// Why testgen could not run at all (exit status 2).
struct Usage(String);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Usage(message)) => {
            eprintln!("testgen: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs testgen; `Ok(passed)` once a run took place.
async fn run(args: Args) -> Result<bool, Usage> {
    let servers = u64::from(args.workers) * u64::from(args.servers_per_worker);
    if servers > MAX_SERVERS {
        return Err(Usage(format!(
            "{} workers x {} servers is {servers} servers; at most {MAX_SERVERS} per run",
            args.workers, args.servers_per_worker
        )));
    }
    let fleet = Fleet {
        prefix: args.prefix.clone().unwrap_or_else(|| {
            let tag: u32 = rand::rng().random();
            format!("tg-{tag:08x}")
        }),
        seed: args.seed.unwrap_or_else(|| rand::rng().random()),
        workers: args.workers,
        per_worker: args.servers_per_worker,
    };
    fleet.check_names().map_err(Usage)?;
    let mode = if args.live {
        Mode::Live {
            interval: args.interval,
            duration: args.duration,
        }
    } else {
        Mode::Backfill {
            at: check_at(args.at)?,
            samples: args.samples as usize,
        }
    };
    let api = Api::new(&args.url, args.connections as usize).map_err(Usage)?;
    check_health(&api).await?;

    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let total = match mode {
        Mode::Backfill { samples, .. } => Some(servers * samples as u64),
        Mode::Live { .. } => None,
    };
    let progress = progress_bar(
        show_progress,
        total,
        match total {
            Some(_) => "sending   [{bar:30}] {human_pos}/{human_len} samples, {eta} left",
            None => "sending   {spinner} {elapsed}, {human_pos} samples",
        },
    );
    let run = Arc::new(Run {
        api: Arc::clone(&api),
        fleet,
        mode,
        batch: args.batch as usize,
        progress: progress.clone(),
    });

    let started = Instant::now();
    let outcomes = send::run_workers(Arc::clone(&run)).await.map_err(Usage)?;
    let send_time = started.elapsed();
    progress.finish_and_clear();

    let mut stats = Stats::new();
    let mut ledgers = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        stats.merge(outcome.stats);
        ledgers.push(outcome.ledgers);
    }
    let at = match mode {
        Mode::Backfill { at, .. } => at,
        // Every live sample was stamped before this.
        Mode::Live { .. } => Timestamp::now(),
    };

    let verification = if api.is_lost() {
        None
    } else {
        let progress = progress_bar(
            show_progress,
            Some(servers),
            "verifying [{bar:30}] {human_pos}/{human_len} servers",
        );
        let started = Instant::now();
        let verification = verify::verify(
            Arc::clone(&run),
            Arc::new(ledgers),
            at,
            args.connections as usize,
            progress.clone(),
        )
        .await;
        progress.finish_and_clear();
        Some((verification, started.elapsed()))
    };

    let summary = Summary {
        run: &run,
        args_url: &args.url,
        at,
        stats: &stats,
        retries: api.retries(),
        send_time,
        lost: api.is_lost(),
        verification: verification.as_ref().map(|(v, time)| (v, *time)),
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        let report = verification.as_ref().and_then(|(v, _)| v.report.as_ref());
        if let Some(report) = report.filter(|_| !args.quiet) {
            println!("{}", summary::report_json(report));
            println!();
        }
        print!("{}", summary.text());
    }
    if summary.lost && !args.json {
        eprintln!(
            "testgen: the daemon at {} stopped accepting connections during the run",
            args.url
        );
    }
    Ok(summary.passed())
}

/// The reference time of a backfill: `--at` if it leaves the whole day of
/// samples acceptable to the daemon, else now.
fn check_at(at: Option<Timestamp>) -> Result<Timestamp, Usage> {
    let now = Timestamp::now();
    let Some(at) = at else {
        return Ok(now);
    };
    if at.millis() > now.millis() + MAX_CLOCK_SKEW_MS {
        return Err(Usage(format!(
            "--at {at} lies more than 5 minutes in the future; the daemon would refuse its samples"
        )));
    }
    if at.millis() < now.millis() - MAX_AT_AGE_MS {
        return Err(Usage(format!(
            "--at {at} lies more than 5 days back; its 24 hours of samples must stay inside the daemon's 7-day retention"
        )));
    }
    Ok(at)
}

/// Makes sure a healthy daemon listens at the URL before sending anything.
async fn check_health(api: &Api) -> Result<(), Usage> {
    match api.request(Method::GET, "/health", None).await {
        Ok(answer) if answer.status.is_success() => Ok(()),
        Ok(answer) => Err(Usage(format!(
            "the daemon at {} is not healthy: GET /health answered {}: {}",
            api.base(),
            answer.status,
            String::from_utf8_lossy(&answer.body).trim()
        ))),
        Err(err) if err.connect => Err(Usage(format!(
            "the daemon is not reachable at {} ({}); start sperform first or pass --url",
            api.base(),
            err.message
        ))),
        Err(err) => Err(Usage(format!(
            "the daemon at {} did not answer GET /health ({})",
            api.base(),
            err.message
        ))),
    }
}

/// A progress bar on stderr, or a hidden one when stderr is no terminal.
fn progress_bar(show: bool, len: Option<u64>, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if len.is_none() {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    bar
}
