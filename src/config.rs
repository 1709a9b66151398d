//! The daemon's settings, read from the same figment as Rocket's own
//! (`Rocket.toml` profiles, then `ROCKET_*` environment variables).

use std::path::PathBuf;
use std::time::Duration;

use rocket::figment::Figment;
use rocket::figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::MAX_BATCH_LEN;
use crate::store::StoreConfig;

/// Settings of sperform itself; Rocket's keys (`port`, `address`, ...) sit
/// beside them in the same figment and are read by Rocket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Path of the SQLite database file, created on first start.
    pub database: PathBuf,
    /// Number of read connections in the pool.
    pub read_pool_size: u32,
    /// How far back a sample's time may lie.
    #[serde(deserialize_with = "duration_from_text")]
    pub retention: Duration,
    /// How often expired samples are deleted.
    #[serde(deserialize_with = "duration_from_text")]
    pub retention_interval: Duration,
    /// Most samples that may wait for the writer before ingest answers 503.
    pub write_queue: usize,
    /// How hard a commit is pushed to disk before its `204`.
    pub synchronous: Synchronous,
}

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

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database: PathBuf::from("sperform.db"),
            read_pool_size: 8,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_interval: Duration::from_secs(60),
            write_queue: 100_000,
            synchronous: Synchronous::Normal,
        }
    }
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
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if self.database.as_os_str().is_empty() {
            return invalid("database", "must be a file path");
        }
        if !(1..=256).contains(&self.read_pool_size) {
            return invalid("read_pool_size", "must be from 1 to 256");
        }
        if self.retention < Duration::from_secs(24 * 3600) {
            // The load view looks back 24 hours; a shorter retention would
            // refuse samples that view is meant to show.
            return invalid("retention", "must be at least 24 hours (\"24h\")");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600))
            .contains(&self.retention_interval)
        {
            return invalid("retention_interval", "must be from 1s to 24h");
        }
        if self.write_queue < MAX_BATCH_LEN {
            return invalid(
                "write_queue",
                "must be at least 10000, so that one full batch fits",
            );
        }
        Ok(())
    }

    pub fn retention_ms(&self) -> i64 {
        i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            path: self.database.clone(),
            read_pool_size: self.read_pool_size,
            write_queue: self.write_queue,
            synchronous_full: self.synchronous == Synchronous::Full,
            retention_ms: self.retention_ms(),
            retention_interval: self.retention_interval,
        }
    }
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
    Figment::from(rocket::Config::default())
        .merge(Serialized::defaults(DaemonDefaults {
            address: "127.0.0.1",
            port: 8080,
        }))
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
}

fn duration_from_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|err| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration such as \"7d\" or \"36h\" ({err})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
