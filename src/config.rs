//! The daemon's settings, read from the same figment as Rocket's own
//! (`Rocket.toml` profiles, then `ROCKET_*` environment variables).

use std::fmt::{self, Write as _};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::{Figment, Profile};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use subtle::ConstantTimeEq;

use crate::model::MAX_BATCH_LEN;
use crate::store::StoreConfig;

/// The defaults of every setting sperform adds to Rocket's, and the two of
/// Rocket's it changes, written here only: `Settings::default`, the
/// figment's defaults, `--help` and the messages about bad values are made
/// from them, and a test checks the examples in the `Rocket.toml` files.
pub mod defaults {
    use std::time::Duration;

    use super::Synchronous;

    /// sperform listens on the loopback interface unless told otherwise.
    pub const ADDRESS: &str = "127.0.0.1";
    pub const PORT: u16 = 8080;
    pub const DATABASE: &str = "sperform.db";
    pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
    pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
    pub const HISTORY_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);
    pub const WRITE_QUEUE: usize = 100_000;
    pub const SYNCHRONOUS: Synchronous = Synchronous::Normal;
    /// The fewest readers the default (one per core) gives.
    pub const MIN_DEFAULT_READ_POOL_SIZE: u32 = 2;
}

/// Fewest and most read connections (and reader threads).
pub const READ_POOL_SIZES: RangeInclusive<u32> = 1..=256;
/// The shortest retention: the load view looks back 24 hours, and a
/// shorter retention would refuse samples that view is meant to show.
pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The smallest `retention_size`: less is surely a typing mistake.
pub const MIN_RETENTION_SIZE: u64 = 1024 * 1024;
/// How often retention may run, at most and at least.
pub const RETENTION_INTERVALS: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);

/// Settings of sperform itself; Rocket's keys (`port`, `address`, ...) sit
/// beside them in the same figment and are read by Rocket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Path of the SQLite database file, created on first start.
    pub database: PathBuf,
    /// Number of read connections in the pool, each with a reader thread.
    pub read_pool_size: u32,
    /// How far back a sample's time may lie.
    #[serde(deserialize_with = "duration_from_text")]
    pub retention: Duration,
    /// How long hour-level history is kept (from the hour's start), at
    /// least as long as `retention`.
    #[serde(deserialize_with = "duration_from_text")]
    pub history_retention: Duration,
    /// Bytes of database pages in use past which the oldest raw hours,
    /// then the oldest history, are deleted; `None` (or 0): no limit.
    #[serde(deserialize_with = "size_from_text")]
    pub retention_size: Option<u64>,
    /// How often expired samples are deleted.
    #[serde(deserialize_with = "duration_from_text")]
    pub retention_interval: Duration,
    /// Most samples that may wait for the writer before ingest answers 503.
    pub write_queue: usize,
    /// How hard a commit is pushed to disk before its `204`.
    pub synchronous: Synchronous,
    /// Bearer token that `POST` and `DELETE` requests must carry, if set.
    pub ingest_token: Option<Token>,
    /// Bearer token that reads of data (`GET` of servers, loads, metrics)
    /// must carry, if set.
    pub read_token: Option<Token>,
}

/// A bearer token from the configuration. `Debug` never shows it, and
/// `matches` takes the same time wherever a guess first differs from it.
#[derive(Clone)]
pub struct Token(String);

/// Shortest token accepted: a shorter one could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token accepted, so that it fits in any HTTP header.
pub const MAX_TOKEN_LEN: usize = 1024;

impl Token {
    pub fn new(text: impl Into<String>) -> Token {
        Token(text.into())
    }

    /// Whether `presented` is this token. The time taken depends only on
    /// the lengths of the two, never on their contents, so a client cannot
    /// find the token byte by byte by timing failed attempts.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = self.0.as_bytes();
        let presented = presented.as_bytes();
        let same_length = (expected.len() as u64).ct_eq(&(presented.len() as u64));
        let mut same_bytes = subtle::Choice::from(1);
        for (index, byte) in expected.iter().enumerate() {
            // Beyond the end of a shorter guess compare with 0: the loop
            // always runs over the whole token.
            let guess = presented.get(index).copied().unwrap_or(0);
            same_bytes &= byte.ct_eq(&guess);
        }
        bool::from(same_length & same_bytes)
    }

    fn check(&self) -> Result<(), String> {
        let length = self.0.chars().count();
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&length) {
            return Err(format!(
                "must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters long"
            ));
        }
        if !self.0.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err("may only hold visible ASCII characters (no spaces)".to_owned());
        }
        Ok(())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        self.matches(&other.0)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TokenVisitor;

        impl Visitor<'_> for TokenVisitor {
            type Value = Token;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Token, E> {
                Ok(Token(text.to_owned()))
            }

            // `ROCKET_*` values that look like numbers or booleans arrive
            // parsed, and turning them back into text could change them
            // (`0123` is read as 123): refuse them rather than guess.
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Token, E> {
                Err(E::custom(NOT_TEXT))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Token, E> {
                Err(E::custom(NOT_TEXT))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Token, E> {
                Err(E::custom(NOT_TEXT))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Token, E> {
                Err(E::custom(NOT_TEXT))
            }
        }

        deserializer.deserialize_any(TokenVisitor)
    }
}

const NOT_TEXT: &str = "a token must be text; a value that reads as a number or a boolean \
     (such as one of digits only) must be quoted, e.g. ROCKET_INGEST_TOKEN='\"0123...\"'";

/// SQLite's `synchronous` setting for the write connection (WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// A committed sample survives a crash of the process (not of the
    /// machine); the WAL is synced at checkpoints.
    #[default]
    Normal,
    /// A committed sample also survives power loss: the WAL is synced at
    /// every commit.
    Full,
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database: PathBuf::from(defaults::DATABASE),
            read_pool_size: default_read_pool_size(),
            retention: defaults::RETENTION,
            history_retention: defaults::HISTORY_RETENTION,
            retention_size: None,
            retention_interval: defaults::RETENTION_INTERVAL,
            write_queue: defaults::WRITE_QUEUE,
            synchronous: defaults::SYNCHRONOUS,
            ingest_token: None,
            read_token: None,
        }
    }
}

/// One reader per CPU core: reads are short and CPU-bound, and more reader
/// threads than cores only take turns on them, which lengthens the slowest
/// answers. At least two, so one long range read does not hold up the rest.
fn default_read_pool_size() -> u32 {
    let most = *READ_POOL_SIZES.end();
    std::thread::available_parallelism()
        .map_or(defaults::MIN_DEFAULT_READ_POOL_SIZE, |cores| {
            u32::try_from(cores.get()).unwrap_or(most)
        })
        .clamp(defaults::MIN_DEFAULT_READ_POOL_SIZE, most)
}

/// A setting that was present but unusable; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Figment(#[from] Box<rocket::figment::Error>),
    #[error("configuration error: key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Settings {
    /// Reads and checks the settings; any bad value names its key.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.database.as_os_str().is_empty() {
            return invalid("database", "must be a file path".to_owned());
        }
        if !READ_POOL_SIZES.contains(&self.read_pool_size) {
            let (least, most) = (READ_POOL_SIZES.start(), READ_POOL_SIZES.end());
            return invalid("read_pool_size", format!("must be from {least} to {most}"));
        }
        if self.retention < MIN_RETENTION {
            let hours = MIN_RETENTION.as_secs() / 3600;
            return invalid(
                "retention",
                format!("must be at least {hours} hours (\"{hours}h\")"),
            );
        }
        if self.history_retention < self.retention {
            return invalid(
                "history_retention",
                format!(
                    "must be at least `retention` ({}): the history holds the hours whose raw samples expired",
                    humantime::format_duration(self.retention)
                ),
            );
        }
        if self
            .retention_size
            .is_some_and(|size| size < MIN_RETENTION_SIZE)
        {
            return invalid(
                "retention_size",
                "must be at least 1MiB (or 0 for no limit)".to_owned(),
            );
        }
        if !RETENTION_INTERVALS.contains(&self.retention_interval) {
            let least = RETENTION_INTERVALS.start().as_secs();
            let most = RETENTION_INTERVALS.end().as_secs() / 3600;
            return invalid(
                "retention_interval",
                format!("must be from {least}s to {most}h"),
            );
        }
        if self.write_queue < MAX_BATCH_LEN {
            return invalid(
                "write_queue",
                format!("must be at least {MAX_BATCH_LEN}, so that one full batch fits"),
            );
        }
        for (key, token) in [
            ("ingest_token", &self.ingest_token),
            ("read_token", &self.read_token),
        ] {
            if let Some(Err(message)) = token.as_ref().map(Token::check) {
                return invalid(key, message);
            }
        }
        Ok(())
    }

    /// `key  value` lines of sperform's settings as they are in force;
    /// tokens appear only as `set` or `not set`.
    pub fn describe(&self) -> String {
        let set = |token: &Option<Token>| if token.is_some() { "set" } else { "not set" };
        describe_lines(&[
            ("database", self.database.display().to_string()),
            ("read_pool_size", self.read_pool_size.to_string()),
            (
                "retention",
                humantime::format_duration(self.retention).to_string(),
            ),
            ("history_retention", format_days(self.history_retention)),
            (
                "retention_size",
                self.retention_size
                    .map_or_else(|| "no limit".to_owned(), format_size),
            ),
            (
                "retention_interval",
                humantime::format_duration(self.retention_interval).to_string(),
            ),
            ("write_queue", self.write_queue.to_string()),
            ("synchronous", self.synchronous.to_string()),
            ("ingest_token", set(&self.ingest_token).to_owned()),
            ("read_token", set(&self.read_token).to_owned()),
        ])
    }

    pub fn retention_ms(&self) -> i64 {
        i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn history_retention_ms(&self) -> i64 {
        i64::try_from(self.history_retention.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            path: self.database.clone(),
            read_pool_size: self.read_pool_size,
            write_queue: self.write_queue,
            synchronous_full: self.synchronous == Synchronous::Full,
            retention_ms: self.retention_ms(),
            history_retention_ms: self.history_retention_ms(),
            retention_size: self.retention_size,
            retention_interval: self.retention_interval,
        }
    }
}

/// Everything start-up reads from the configuration: Rocket's settings and
/// sperform's, both checked.
#[derive(Debug)]
pub struct Effective {
    pub rocket: rocket::Config,
    pub settings: Settings,
}

impl Effective {
    /// Reads and checks Rocket's keys and sperform's, as start-up does,
    /// without touching the database.
    pub fn from_figment(figment: &Figment) -> Result<Effective, ConfigError> {
        // Check Rocket's own keys here: Rocket itself would abort the
        // process on a bad one.
        let rocket = rocket::Config::try_from(figment).map_err(Box::new)?;
        let settings = Settings::from_figment(figment)?;
        Ok(Effective { rocket, settings })
    }

    /// `key  value` lines of every setting in force, Rocket's first; no
    /// secrets.
    pub fn describe(&self) -> String {
        let rocket = &self.rocket;
        let seconds = |n: u32| format!("{n}s");
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut lines = vec![
            ("profile", rocket.profile.to_string()),
            ("address", rocket.address.to_string()),
            ("port", rocket.port.to_string()),
            ("workers", rocket.workers.to_string()),
            ("log_level", rocket.log_level.to_string()),
            ("shutdown.grace", seconds(rocket.shutdown.grace)),
            ("shutdown.mercy", seconds(rocket.shutdown.mercy)),
        ];
        #[cfg(feature = "tls")]
        lines.push((
            "tls",
            if rocket.tls_enabled() { "on" } else { "off" }.to_owned(),
        ));
        describe_lines(&lines) + &self.settings.describe()
    }
}

/// Where the configuration comes from and what it holds, for `--help`.
pub fn config_help() -> String {
    let pool = (READ_POOL_SIZES.start(), READ_POOL_SIZES.end());
    let least_default_pool = defaults::MIN_DEFAULT_READ_POOL_SIZE;
    let least_retention = format!("{}h", MIN_RETENTION.as_secs() / 3600);
    let retention = format!("{}d", defaults::RETENTION.as_secs() / (24 * 3600));
    let interval = format!("{}m", defaults::RETENTION_INTERVAL.as_secs() / 60);
    let history = format!("{}d", defaults::HISTORY_RETENTION.as_secs() / (24 * 3600));
    format!(
        "\
Configuration, later sources winning:
  1. built-in defaults ({address}:{port}, database {database});
  2. Rocket.toml in the working directory, or the file ROCKET_CONFIG names,
     with [default], [debug] and [release] tables (ROCKET_PROFILE picks one;
     a release build uses release);
  3. ROCKET_<KEY> environment variables, e.g. ROCKET_PORT=9000.

Keys: address, port, log_level (off|critical|normal|debug), workers,
shutdown.grace and shutdown.mercy (seconds; ROCKET_SHUTDOWN='{{grace=5}}'),
limits and tls as Rocket documents them; and sperform's own:
  database            SQLite file, created on first start [{database}]
  read_pool_size      read connections and threads, {pool_least} to {pool_most} [CPU cores, >= {least_default_pool}]
  retention           how long samples are kept, at least {least_retention} [{retention}]
  history_retention   how long hourly history is kept, at least retention [{history}]
  retention_size      bytes in use past which the oldest data go, e.g. 10GB [no limit]
  retention_interval  how often expired samples are deleted [{interval}]
  write_queue         samples waiting for the writer before 503 [{write_queue}]
  synchronous         normal (survives a crash) or full (power loss) [{synchronous}]
  ingest_token        bearer token required for POST and DELETE [none]
  read_token          bearer token required to read data and /metrics [none]

`sperform check-config` prints the settings in force without starting.",
        address = defaults::ADDRESS,
        port = defaults::PORT,
        database = defaults::DATABASE,
        pool_least = pool.0,
        pool_most = pool.1,
        write_queue = defaults::WRITE_QUEUE,
        synchronous = defaults::SYNCHRONOUS,
    )
}

/// Aligned `key  value` lines.
fn describe_lines(lines: &[(&str, String)]) -> String {
    let mut text = String::new();
    for (key, value) in lines {
        let _ = writeln!(text, "{key:<20}{value}");
    }
    text
}

/// Defaults that differ from Rocket's own: sperform listens on
/// 127.0.0.1:8080 even without a `Rocket.toml`.
#[derive(Serialize)]
struct DaemonDefaults {
    address: &'static str,
    port: u16,
}

/// Rocket's usual configuration sources, with sperform's defaults beneath
/// them: `Rocket.toml` (or the file `ROCKET_CONFIG` names), then `ROCKET_*`.
pub fn figment() -> Figment {
    built_in_figment()
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .select(Profile::from_env_or(
            "ROCKET_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ))
}

/// Rocket's defaults with sperform's beneath every configuration source.
fn built_in_figment() -> Figment {
    Figment::from(rocket::Config::default()).merge(Serialized::defaults(DaemonDefaults {
        address: defaults::ADDRESS,
        port: defaults::PORT,
    }))
}

fn duration_from_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|err| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration such as \"7d\" or \"36h\" ({err})"
        ))
    })
}

/// A duration of whole days as days (`400days`, which humantime would
/// write in years and months of average length), any other as humantime
/// writes it; both read back the same.
pub fn format_days(duration: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    let seconds = duration.as_secs();
    match seconds / DAY {
        days if days > 1 && seconds.is_multiple_of(DAY) && duration.subsec_nanos() == 0 => {
            format!("{days}days")
        }
        _ => humantime::format_duration(duration).to_string(),
    }
}

/// Units of `retention_size`, as Prometheus's `--storage.tsdb.retention.size`
/// reads them: powers of 1024, with or without the `i`.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1 << 10),
    ("MB", 1 << 20),
    ("GB", 1 << 30),
    ("TB", 1 << 40),
    ("PB", 1 << 50),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
];

/// Reads a size such as `512MB`, `10GB` or `1073741824` (bytes); `0` is
/// no limit.
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let unit = unit.trim();
    let scale = if unit.is_empty() {
        Some(1)
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, scale)| *scale)
    };
    let size = number
        .parse::<u64>()
        .ok()
        .zip(scale)
        .and_then(|(number, scale)| number.checked_mul(scale))
        .ok_or_else(|| {
            format!("{text:?} is not a size such as \"512MB\" or \"10GB\" (units B, KB, MB, GB, TB, PB: powers of 1024)")
        })?;
    Ok((size > 0).then_some(size))
}

/// A size in the largest unit that divides it, as `parse_size` reads it.
pub fn format_size(bytes: u64) -> String {
    let (unit, scale) = [
        ("PB", 1u64 << 50),
        ("TB", 1 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
    ]
    .into_iter()
    .find(|(_, scale)| bytes.is_multiple_of(*scale))
    .unwrap_or(("B", 1));
    format!("{}{unit}", bytes / scale)
}

fn size_from_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    // A number or a string: `retention_size = 1073741824` or `"1GB"`.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(bytes) => Ok((bytes > 0).then_some(bytes)),
        Size::Text(text) => parse_size(&text).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_prometheus_reads_them() {
        assert_eq!(parse_size("512MB"), Ok(Some(512 << 20)));
        assert_eq!(parse_size("10GB"), Ok(Some(10 << 30)));
        assert_eq!(parse_size("10GiB"), Ok(Some(10 << 30)));
        assert_eq!(parse_size("2 tb"), Ok(Some(2 << 40)));
        assert_eq!(parse_size("4096"), Ok(Some(4096)));
        assert_eq!(parse_size("0"), Ok(None));
        for bad in ["", "GB", "1.5GB", "-1GB", "10XB", "99999999999PB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(512 << 20), "512MB");
        assert_eq!(format_size(10 << 30), "10GB");
        assert_eq!(format_size(1000), "1000B");
        let days = |days: u64| Duration::from_secs(days * 24 * 3600);
        assert_eq!(format_days(days(400)), "400days");
        assert_eq!(format_days(days(7)), "7days");
        assert_eq!(format_days(days(1)), "1day");
        assert_eq!(format_days(Duration::from_secs(36 * 3600)), "1day 12h");
        assert_eq!(humantime::parse_duration("400days").ok(), Some(days(400)));
    }

    #[test]
    fn retention_size_and_history_retention_are_checked() {
        let settings = settings_from(&[("retention_size", "2GB"), ("history_retention", "30d")])
            .expect("valid settings");
        assert_eq!(settings.retention_size, Some(2 << 30));
        assert_eq!(
            settings.history_retention,
            Duration::from_secs(30 * 24 * 3600)
        );
        let message = |pairs: &[(&str, &str)]| match settings_from(pairs) {
            Err(err) => err.to_string(),
            Ok(settings) => panic!("accepted {settings:?}"),
        };
        assert_eq!(
            message(&[("retention_size", "512KB")]),
            "configuration error: key `retention_size`: must be at least 1MiB (or 0 for no limit)"
        );
        assert_eq!(
            message(&[("retention", "30d"), ("history_retention", "7d")]),
            "configuration error: key `history_retention`: must be at least `retention` (30days): the history holds the hours whose raw samples expired"
        );
        assert!(
            message(&[("retention_size", "lots")]).contains("is not a size such as \"512MB\""),
            "{}",
            message(&[("retention_size", "lots")])
        );
        assert_eq!(
            settings_from(&[("retention_size", "0")])
                .map(|s| s.retention_size)
                .ok(),
            Some(None)
        );
    }

    fn settings_from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut figment = Figment::new();
        for (key, value) in pairs {
            figment = figment.merge((*key, *value));
        }
        Settings::from_figment(&figment)
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        assert_eq!(settings_from(&[]).unwrap(), Settings::default());
        let rocket = rocket::Config::from(built_in_figment());
        assert_eq!(rocket.address.to_string(), defaults::ADDRESS);
        assert_eq!(rocket.port, defaults::PORT);
    }

    /// The `--help` text as it was written by hand before it was made from
    /// the constants: the numbers in it must not have changed.
    #[test]
    fn help_states_the_defaults_and_limits() {
        let help = config_help();
        for line in [
            "  1. built-in defaults (127.0.0.1:8080, database sperform.db);",
            "shutdown.grace and shutdown.mercy (seconds; ROCKET_SHUTDOWN='{grace=5}'),",
            "  database            SQLite file, created on first start [sperform.db]",
            "  read_pool_size      read connections and threads, 1 to 256 [CPU cores, >= 2]",
            "  retention           how long samples are kept, at least 24h [7d]",
            "  retention_interval  how often expired samples are deleted [1m]",
            "  write_queue         samples waiting for the writer before 503 [100000]",
            "  synchronous         normal (survives a crash) or full (power loss) [normal]",
        ] {
            assert!(
                help.lines().any(|text| text == line),
                "{line:?} missing:\n{help}"
            );
        }
    }

    #[test]
    fn limits_are_stated_in_the_messages_that_enforce_them() {
        let message = |figment: Figment| Settings::from_figment(&figment).unwrap_err().to_string();
        assert_eq!(
            message(Figment::new().merge(("read_pool_size", 257))),
            "configuration error: key `read_pool_size`: must be from 1 to 256"
        );
        assert_eq!(
            message(Figment::new().merge(("retention", "23h"))),
            "configuration error: key `retention`: must be at least 24 hours (\"24h\")"
        );
        assert_eq!(
            message(Figment::new().merge(("retention_interval", "25h"))),
            "configuration error: key `retention_interval`: must be from 1s to 24h"
        );
        assert_eq!(
            message(Figment::new().merge(("write_queue", 9999))),
            "configuration error: key `write_queue`: must be at least 10000, so that one full batch fits"
        );
        assert_eq!(
            message(Figment::new().merge(("read_token", "short"))),
            "configuration error: key `read_token`: must be 16 to 1024 characters long"
        );
        // Each bound itself is accepted.
        for figment in [
            Figment::new().merge(("read_pool_size", 256)),
            Figment::new().merge(("retention", "24h")),
            Figment::new().merge(("retention_interval", "1s")),
            Figment::new().merge(("retention_interval", "24h")),
            Figment::new().merge(("write_queue", 10_000)),
        ] {
            assert!(Settings::from_figment(&figment).is_ok(), "{figment:?}");
        }
    }

    /// The `Rocket.toml` files show sperform's defaults as examples, some
    /// commented out; each value shown as the default must be it. Only the
    /// packaged file's `address` differs, on purpose.
    #[test]
    fn the_rocket_toml_examples_agree_with_the_defaults() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let expected = [
            ("address", format!("{:?}", defaults::ADDRESS)),
            ("port", defaults::PORT.to_string()),
            ("database", format!("{:?}", defaults::DATABASE)),
            ("retention", "\"7d\"".to_owned()),
            ("retention_interval", "\"1m\"".to_owned()),
            ("write_queue", defaults::WRITE_QUEUE.to_string()),
            ("synchronous", format!("\"{}\"", defaults::SYNCHRONOUS)),
        ];
        let durations = [
            ("retention", defaults::RETENTION),
            ("retention_interval", defaults::RETENTION_INTERVAL),
        ];
        for (key, default) in durations {
            let (_, shown) = expected.iter().find(|(name, _)| *name == key).unwrap();
            let parsed = humantime::parse_duration(shown.trim_matches('"')).unwrap();
            assert_eq!(parsed, default, "{key}");
        }
        for file in ["Rocket.toml", "packaging/Rocket.toml"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let mut seen = 0;
            for line in text.lines() {
                let line = line.trim_start_matches('#').trim();
                let Some((key, value)) = line.split_once(" = ") else {
                    continue;
                };
                if file == "packaging/Rocket.toml" && key == "address" {
                    assert_eq!(value, "\"0.0.0.0\"");
                    continue;
                }
                if let Some((_, default)) = expected.iter().find(|(name, _)| *name == key) {
                    assert_eq!(value, default, "{file}: {key}");
                    seen += 1;
                }
            }
            assert!(seen >= 5, "{file} shows only {seen} defaults");
        }
    }

    #[test]
    fn retention_reads_human_durations() {
        let settings = settings_from(&[("retention", "36h")]).unwrap();
        assert_eq!(settings.retention, Duration::from_secs(36 * 3600));
        assert_eq!(settings.retention_ms(), 36 * 3600 * 1000);
    }

    #[test]
    fn synchronous_is_normal_or_full() {
        assert_eq!(
            settings_from(&[("synchronous", "full")])
                .unwrap()
                .synchronous,
            Synchronous::Full
        );
        let err = settings_from(&[("synchronous", "sometimes")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("synchronous"), "{err}");
    }

    #[test]
    fn tokens_match_only_themselves() {
        let token = Token::new("s3cret-token-0123456789");
        assert!(token.matches("s3cret-token-0123456789"));
        for guess in [
            "",
            "s3cret",
            "s3cret-token-012345678",
            "s3cret-token-01234567890",
            "S3cret-token-0123456789",
        ] {
            assert!(!token.matches(guess), "{guess}");
        }
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let settings = settings_from(&[
            ("ingest_token", "ingest-token-0123456789"),
            ("read_token", "read-token-0123456789ab"),
        ])
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("0123456789"), "{debug}");
        let described = settings.describe();
        assert!(
            described.contains("ingest_token        set\n"),
            "{described}"
        );
        assert!(!described.contains("0123456789"), "{described}");
        assert!(
            Settings::default()
                .describe()
                .contains("read_token          not set\n")
        );
    }

    #[test]
    fn tokens_must_be_long_visible_text() {
        for (value, expected) in [
            ("short", "16 to 1024"),
            ("", "16 to 1024"),
            ("with a space in the middle", "visible ASCII"),
        ] {
            let err = settings_from(&[("read_token", value)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`read_token`") && err.contains(expected),
                "{err}"
            );
        }
        // What a `ROCKET_INGEST_TOKEN` of digits only becomes in the figment.
        let err = Settings::from_figment(
            &Figment::new().merge(("ingest_token", 1234567890123456789_u64)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("must be quoted") && err.contains("ingest_token"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = settings_from(&[("retention", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention"), "{err}");
        let err = settings_from(&[("retention", "1h")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`retention`"), "{err}");
        let err = Settings::from_figment(&Figment::new().merge(("read_pool_size", 0)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`read_pool_size`"), "{err}");
        let err = Settings::from_figment(&Figment::new().merge(("write_queue", "many")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("write_queue"), "{err}");
    }
}
