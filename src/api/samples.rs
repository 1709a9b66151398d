//! Ingest: `POST /servers/<name>/samples` and `POST /samples`.

use rocket::State;
use rocket::data::Data;
use rocket::response::status::NoContent;
use utoipa::openapi::schema::{ArrayBuilder, Ref};
use utoipa::openapi::{RefOr, Schema};

use super::auth::Ingest;
use super::params::{Server, ServerPath};
use super::responses::{Internal, Invalid, MalformedBody, TooLarge, Unauthorized, Unavailable};
use super::wire::SampleBody;
use super::{read_body, wire};
use crate::config::Settings;
use crate::error::ApiError;
use crate::model::{MAX_BATCH_LEN, TimePolicy};
use crate::store::Store;

/// Largest body for one sample.
pub const SAMPLE_BODY_LIMIT: u64 = 64 * 1024;
/// Largest body for a batch.
pub const BATCH_BODY_LIMIT: u64 = 4 * 1024 * 1024;

#[utoipa::path(
    post,
    path = "/api/v1/servers/{name}/samples",
    tag = "ingest",
    summary = "Report one sample",
    params(ServerPath),
    request_body(content = SampleBody, description = "One sample (at most 64 KiB)"),
    responses(
        (status = 204, description = "Stored (committed to the database)"),
        MalformedBody,
        Unauthorized,
        TooLarge,
        Invalid,
        Unavailable,
        Internal,
    ),
    security((), ("ingest_token" = []))
)]
#[rocket::post("/servers/<name>/samples", data = "<body>")]
pub async fn post_sample(
    _auth: Ingest,
    name: Result<Server, ApiError>,
    body: Data<'_>,
    store: &State<Store>,
    settings: &State<Settings>,
) -> Result<NoContent, ApiError> {
    let Server(server) = name?;
    let body = read_body(body, SAMPLE_BODY_LIMIT).await?;
    let sample = wire::parse_sample(&body, server, &time_policy(store, settings))?;
    store.insert(vec![sample]).await?;
    Ok(NoContent)
}

#[utoipa::path(
    post,
    path = "/api/v1/samples",
    tag = "ingest",
    summary = "Report many samples",
    description = "Stores all of the batch or nothing. A refusal names the index of the first bad entry.",
    request_body(content = inline(Batch), description = "1 to 10,000 samples of any servers (at most 4 MiB)"),
    responses(
        (status = 204, description = "All stored (committed in one transaction)"),
        MalformedBody,
        Unauthorized,
        TooLarge,
        Invalid,
        Unavailable,
        Internal,
    ),
    security((), ("ingest_token" = []))
)]
#[rocket::post("/samples", data = "<body>")]
pub async fn post_batch(
    _auth: Ingest,
    body: Data<'_>,
    store: &State<Store>,
    settings: &State<Settings>,
) -> Result<NoContent, ApiError> {
    let body = read_body(body, BATCH_BODY_LIMIT).await?;
    let samples = wire::parse_batch(&body, &time_policy(store, settings))?;
    store.insert(samples).await?;
    Ok(NoContent)
}

/// The body of `POST /api/v1/samples` as the OpenAPI document shows it:
/// 1 to `MAX_BATCH_LEN` entries.
struct Batch;

impl utoipa::PartialSchema for Batch {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name("BatchEntry"))
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH_LEN))
            .into()
    }
}

impl utoipa::ToSchema for Batch {}

fn time_policy(store: &Store, settings: &Settings) -> TimePolicy {
    TimePolicy::new(store.now(), settings.retention_ms())
}
