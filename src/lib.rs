//! sperform: records the CPU and RAM load servers report and answers their
//! per-minute and per-hour averages. `build` assembles the whole daemon from
//! a configuration, so the binary, the tests and other tools share it.

pub mod api;
pub mod config;
pub mod error;
pub mod model;
pub mod store;

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{Build, Rocket};

use config::{ConfigError, Settings};
use store::{Store, StoreError};

/// Why the daemon could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("configuration error: {0}")]
    Rocket(Box<rocket::figment::Error>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the daemon from `figment`: checks the configuration, opens (and
/// if need be creates and migrates) the database, mounts the API.
pub fn build(figment: Figment) -> Result<Rocket<Build>, StartupError> {
    // Check Rocket's own keys first: Rocket would abort the process on them.
    rocket::Config::try_from(&figment).map_err(|err| StartupError::Rocket(Box::new(err)))?;
    let rocket = rocket::custom(figment);
    let settings = Settings::from_figment(rocket.figment())?;
    let store = Store::open(&settings.store_config())?;
    log::info!(
        "database {} open (schema version {}), retention {}, read pool {}, write queue {}",
        settings.database.display(),
        store.schema_version(),
        humantime::format_duration(settings.retention),
        settings.read_pool_size,
        settings.write_queue,
    );
    Ok(rocket
        .manage(store)
        .manage(settings)
        .mount("/api/v1", api::v1_routes())
        .mount("/", api::root_routes())
        .register("/", api::catchers())
        .attach(AdHoc::on_shutdown("Commit queued samples", |rocket| {
            Box::pin(async move {
                if let Some(store) = rocket.state::<Store>().cloned() {
                    // Joining the writer blocks; keep it off the executor.
                    let _ = rocket::tokio::task::spawn_blocking(move || store.close()).await;
                }
            })
        })))
}
