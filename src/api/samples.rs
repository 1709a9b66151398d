//! Ingest: `POST /servers/<name>/samples` and `POST /samples`.

use rocket::State;
use rocket::data::Data;
use rocket::response::status::NoContent;

use super::auth::Ingest;
use super::{read_body, wire};
use crate::config::Settings;
use crate::error::ApiError;
use crate::model::{ServerName, TimePolicy, Timestamp};
use crate::store::Store;

/// Largest body for one sample.
pub const SAMPLE_BODY_LIMIT: u64 = 64 * 1024;
/// Largest body for a batch.
pub const BATCH_BODY_LIMIT: u64 = 4 * 1024 * 1024;

#[rocket::post("/servers/<name>/samples", data = "<body>")]
pub async fn post_sample(
    _auth: Ingest,
    name: &str,
    body: Data<'_>,
    store: &State<Store>,
    settings: &State<Settings>,
) -> Result<NoContent, ApiError> {
    let server = ServerName::parse(name)?;
    let body = read_body(body, SAMPLE_BODY_LIMIT).await?;
    let sample = wire::parse_sample(&body, server, &time_policy(settings))?;
    store.insert(vec![sample]).await?;
    Ok(NoContent)
}

#[rocket::post("/samples", data = "<body>")]
pub async fn post_batch(
    _auth: Ingest,
    body: Data<'_>,
    store: &State<Store>,
    settings: &State<Settings>,
) -> Result<NoContent, ApiError> {
    let body = read_body(body, BATCH_BODY_LIMIT).await?;
    let samples = wire::parse_batch(&body, &time_policy(settings))?;
    store.insert(samples).await?;
    Ok(NoContent)
}

fn time_policy(settings: &Settings) -> TimePolicy {
    TimePolicy::new(Timestamp::now(), settings.retention_ms())
}
