//! sperform: records the CPU and RAM load servers report and answers their
//! per-minute and per-hour averages. `build` assembles the whole daemon from
//! a configuration, so the binary, the tests and other tools share it.

pub mod api;
pub mod config;
pub mod error;
pub mod lifecycle;
pub use sperform_model::model;
pub use sperform_store as store;
pub use sperform_store::clock;

use std::time::Duration;

use rocket::config::LogLevel;
use rocket::figment::Figment;
use rocket::{Build, Rocket};

use api::HttpStats;
use clock::Clock;
use config::{ConfigError, Effective};
use lifecycle::Drain;
use store::{Store, StoreError};

/// Why the daemon could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the daemon from `figment`: checks the configuration, opens (and
/// if need be creates and migrates) the database, mounts the API. It runs
/// on the system clock.
pub fn build(figment: Figment) -> Result<Rocket<Build>, StartupError> {
    build_with_clock(figment, Clock::System)
}

/// `build`, on `clock`: the store's seal and retention and the routes'
/// idea of now all read it, so tests can pin and move the time.
pub fn build_with_clock(figment: Figment, clock: Clock) -> Result<Rocket<Build>, StartupError> {
    let Effective { settings, rocket } = Effective::from_figment(&figment)?;
    // Creating the Rocket installs its logger at level `normal` until
    // ignition applies `log_level`: like Rocket's own launch lines, the
    // start-up lines below (settings, migrations) show at every level but
    // `off`.
    let app = rocket::custom(figment);
    if rocket.log_level == LogLevel::Off {
        log::set_max_level(log::LevelFilter::Off);
    }
    let store = Store::open(&settings.store_config(), clock.clone())?;
    log::info!(
        "database {} open (schema version {}), synchronous {}, retention {} (checked every {}), \
         history {}, size limit {}, read pool {}, write queue {}, ingest token {}, read token {}",
        settings.database.display(),
        store.schema_version(),
        settings.synchronous,
        humantime::format_duration(settings.retention),
        humantime::format_duration(settings.retention_interval),
        config::format_days(settings.history_retention),
        settings
            .retention_size
            .map_or_else(|| "none".to_owned(), config::format_size),
        settings.read_pool_size,
        settings.write_queue,
        set_or_not(settings.ingest_token.is_some()),
        set_or_not(settings.read_token.is_some()),
    );
    let http_stats = HttpStats::default();
    let grace = Duration::from_secs(rocket.shutdown.grace.into());
    let drain = Drain::new(store.clone(), http_stats.clone(), grace);
    Ok(app
        .manage(store)
        .manage(clock)
        .manage(settings)
        .manage(http_stats.clone())
        .manage(drain)
        .attach(api::RequestTelemetry::new(http_stats))
        .mount("/api/v1", api::v1_routes())
        .mount("/prometheus/api/v1", api::prometheus_routes())
        .mount("/", api::root_routes())
        .mount("/", api::dashboard_routes())
        .register("/", api::catchers())
        .attach(lifecycle::readiness())
        .attach(Drain::fairing()))
}

fn set_or_not(set: bool) -> &'static str {
    if set { "set" } else { "not set" }
}
