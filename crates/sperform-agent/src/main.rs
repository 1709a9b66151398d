//! sperform-agent: reports this host's CPU and RAM load to a sperform daemon
//! every interval, and loses nothing while the daemon is away.
//!
//! Every sample is appended to a spool on disk (synced) before it is sent
//! and deleted only after the daemon answered `204`; while the daemon cannot
//! be reached the spool grows (up to `--spool-max`, oldest dropped first)
//! and is sent, oldest first and in batches, once it answers again.

mod agent;
mod api;
mod backoff;
mod logger;
mod measure;
mod spool;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use log::LevelFilter;
use sperform_model::model::ServerName;
use tokio::signal::unix::{SignalKind, signal};

use crate::agent::Agent;
use crate::api::Api;
use crate::measure::Meter;
use crate::spool::Spool;

const MIN_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MIN_SPOOL_MAX: u64 = 64 << 10;
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// Reports this host's CPU and RAM load to a sperform daemon.
///
/// Every interval it measures CPU busy time (all CPUs, from /proc/stat) and
/// RAM in use (from /proc/meminfo), appends the sample to a spool on disk
/// and sends the spool to the daemon's POST /api/v1/samples. Samples leave
/// the spool only once the daemon has stored them; while it cannot be
/// reached they wait there (oldest dropped beyond --spool-max) and are sent,
/// oldest first, when it answers again. SIGTERM or SIGINT: a last second to
/// deliver, then exit 0. Every option can also be set with the environment
/// variable shown.
#[derive(Debug, Parser)]
#[command(name = "sperform-agent", version)]
struct Args {
    /// The daemon, as http://host:port.
    #[arg(long, env = "SPERFORM_URL", default_value = "http://127.0.0.1:8080")]
    url: String,

    /// The name this host reports as (A-Z a-z 0-9 . _ : -) [default: the
    /// host name].
    #[arg(long, env = "SPERFORM_SERVER_NAME")]
    server_name: Option<String>,

    /// Time between two samples, e.g. 10s, 1m.
    #[arg(long, env = "SPERFORM_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    interval: Duration,

    /// The daemon's ingest token. On the command line every user of the
    /// host can read it: prefer --token-file or the environment variable.
    #[arg(
        long,
        env = "SPERFORM_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,

    /// A file holding the ingest token.
    #[arg(long, env = "SPERFORM_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// The daemon's read token, if it has one. Used only after an answer
    /// was lost, to ask the daemon whether it stored the batch before it is
    /// sent again; without it such a batch is sent again unchecked.
    #[arg(
        long,
        env = "SPERFORM_READ_TOKEN",
        hide_env_values = true,
        conflicts_with = "read_token_file"
    )]
    read_token: Option<String>,

    /// A file holding the read token.
    #[arg(long, env = "SPERFORM_READ_TOKEN_FILE", value_name = "PATH")]
    read_token_file: Option<PathBuf>,

    /// Where samples wait until the daemon has them (created if missing).
    #[arg(
        long,
        env = "SPERFORM_SPOOL_DIR",
        default_value = "/var/lib/sperform-agent",
        value_name = "DIR"
    )]
    spool_dir: PathBuf,

    /// Most bytes of samples the spool holds; beyond it the oldest are
    /// dropped. Bytes, or with KiB, MiB, GiB (at least 64KiB).
    #[arg(long, env = "SPERFORM_SPOOL_MAX", default_value = "64MiB", value_parser = parse_size,
          value_name = "SIZE")]
    spool_max: u64,

    /// Longest wait between two attempts while the daemon is away.
    #[arg(long, env = "SPERFORM_BACKOFF_MAX", default_value = "60s", value_parser = parse_backoff)]
    backoff_max: Duration,

    /// Take one sample (over --interval), deliver everything spooled, and
    /// exit: 0 if the spool is then empty, 1 if samples wait in it.
    #[arg(long)]
    once: bool,

    /// What to log on standard error.
    #[arg(long, env = "SPERFORM_LOG_LEVEL", default_value = "info", value_enum)]
    log_level: LogLevel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    /// Also every sample taken and every retry.
    Debug,
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
        }
    }
}

/// The settings in force, checked.
struct Settings {
    api: Api,
    server: ServerName,
    interval: Duration,
    spool_dir: PathBuf,
    spool_max: u64,
    backoff_max: Duration,
    once: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init(args.log_level.into());
    let settings = match Settings::from_args(args) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("sperform-agent: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("sperform-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> ExitCode {
    let stop = match stop_signal() {
        Ok(stop) => stop,
        Err(err) => {
            log::error!("cannot listen for SIGTERM and SIGINT: {err}");
            return ExitCode::FAILURE;
        }
    };
    let (spool, recovered) = match Spool::open(&settings.spool_dir, settings.spool_max) {
        Ok(opened) => opened,
        Err(message) => {
            log::error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let meter = match Meter::start() {
        Ok(meter) => meter,
        Err(message) => {
            log::error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "reporting {} to {} every {}; spool {} (at most {})",
        settings.server,
        settings.api.base(),
        humantime::format_duration(settings.interval),
        settings.spool_dir.display(),
        format_size(settings.spool_max)
    );
    if recovered.dropped > 0 {
        log::warn!(
            "the spool held more than --spool-max: dropped its {} oldest samples",
            recovered.dropped
        );
    }
    if recovered.samples > 0 {
        log::info!(
            "{} left by an earlier run {} sent first{}",
            agent::samples(recovered.samples),
            if recovered.samples == 1 { "is" } else { "are" },
            if recovered.in_doubt > 0 {
                " (the daemon is asked first whether it stored the batch that was on its way)"
            } else {
                ""
            }
        );
    }
    let mut agent = Agent::new(
        settings.api,
        spool,
        meter,
        settings.server,
        settings.interval,
        settings.backoff_max,
    );
    if settings.once {
        let delivered = agent.run_once(stop).await;
        let counts = agent.counts();
        if delivered {
            log::info!(
                "delivered {}; the spool is empty",
                agent::samples(counts.delivered)
            );
            ExitCode::SUCCESS
        } else {
            log::error!(
                "{} could not be delivered yet and {} in the spool",
                agent::samples(agent.spooled()),
                if agent.spooled() == 1 {
                    "waits"
                } else {
                    "wait"
                }
            );
            ExitCode::FAILURE
        }
    } else {
        agent.run(stop).await;
        let counts = agent.counts();
        log::info!(
            "stopped: {} samples taken, {} delivered, {} refused by the daemon, {} dropped at --spool-max; {} wait in the spool",
            counts.taken,
            counts.delivered,
            counts.refused,
            counts.dropped,
            agent.spooled()
        );
        if counts.maybe_twice > 0 || counts.unspooled > 0 {
            log::warn!(
                "since start {} may have been stored twice (sent again unchecked) and {} were lost (the spool could not be written)",
                agent::samples(counts.maybe_twice),
                counts.unspooled
            );
        }
        ExitCode::SUCCESS
    }
}

/// Completes at the first SIGTERM or SIGINT.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        log::info!("{name}: stopping; what is spooled gets one more second to reach the daemon");
    })
}

impl Settings {
    fn from_args(args: Args) -> Result<Settings, String> {
        let server = match &args.server_name {
            Some(name) => {
                ServerName::parse(name).map_err(|err| format!("--server-name {name:?}: {err}"))?
            }
            None => host_name()?,
        };
        let token = token_option(args.token, args.token_file.as_deref(), "--token")?;
        let read_token = token_option(
            args.read_token,
            args.read_token_file.as_deref(),
            "--read-token",
        )?;
        Ok(Settings {
            api: Api::new(&args.url, token, read_token)?,
            server,
            interval: args.interval,
            spool_dir: args.spool_dir,
            spool_max: args.spool_max,
            backoff_max: args.backoff_max,
            once: args.once,
        })
    }
}

/// A token from its option or its file (trailing newline dropped): printable
/// ASCII without spaces, as a bearer token is.
fn token_option(
    value: Option<String>,
    file: Option<&Path>,
    flag: &str,
) -> Result<Option<String>, String> {
    let (token, source) = match (value, file) {
        (Some(token), _) => (token, flag.to_owned()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|err| format!("{flag}-file {}: {err}", path.display()))?;
            (
                text.trim_end_matches(['\n', '\r']).to_owned(),
                format!("{flag}-file {}", path.display()),
            )
        }
        (None, None) => return Ok(None),
    };
    if token.is_empty() || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(format!(
            "{source}: a token is one or more printable ASCII characters without spaces"
        ));
    }
    Ok(Some(token))
}

/// This host's name, as the kernel has it.
fn host_name() -> Result<ServerName, String> {
    let name = std::fs::read_to_string(HOSTNAME_FILE).map_err(|err| {
        format!("cannot read the host name from {HOSTNAME_FILE} ({err}); pass --server-name")
    })?;
    let name = name.trim();
    ServerName::parse(name).map_err(|err| {
        format!("the host name {name:?} is not a server name ({err}); pass --server-name")
    })
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err("must be from 10ms to 1h".to_owned());
    }
    Ok(interval)
}

fn parse_backoff(text: &str) -> Result<Duration, String> {
    let backoff = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&backoff) {
        return Err("must be from 10ms to 1h".to_owned());
    }
    Ok(backoff)
}

/// `65536`, `64KiB`, `64MiB`, `1GiB` (also `K`, `M`, `G`, any case).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 64MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("{text:?}: the unit must be KiB, MiB or GiB")),
    };
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes < MIN_SPOOL_MAX {
        return Err("must be at least 64KiB".to_owned());
    }
    Ok(bytes)
}

/// `67108864` -> `64 MiB`; sizes that are not whole units in bytes.
fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("1000").is_err());
        assert!(parse_size("64MB/s").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(65536), "64 KiB");
        assert_eq!(format_size(100_000), "100000 bytes");
    }

    #[test]
    fn intervals_are_bounded() {
        assert_eq!(parse_interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_interval("200ms"), Ok(Duration::from_millis(200)));
        assert!(parse_interval("1ms").is_err());
        assert!(parse_interval("2h").is_err());
        assert!(parse_interval("often").is_err());
    }

    #[test]
    fn tokens_come_from_the_option_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "ingest-0123456789abcdef\n").unwrap();
        assert_eq!(
            token_option(None, Some(&path), "--token"),
            Ok(Some("ingest-0123456789abcdef".to_owned()))
        );
        assert_eq!(
            token_option(Some("abc".into()), None, "--token"),
            Ok(Some("abc".to_owned()))
        );
        assert_eq!(token_option(None, None, "--token"), Ok(None));
        std::fs::write(&path, "two words\n").unwrap();
        assert!(token_option(None, Some(&path), "--token").is_err());
        assert!(token_option(None, Some(&dir.path().join("missing")), "--token").is_err());
    }

    #[test]
    fn the_default_server_name_is_the_host_name() {
        let expected = std::fs::read_to_string(HOSTNAME_FILE).unwrap();
        assert_eq!(host_name().unwrap().as_str(), expected.trim());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
