//! Ingest: `POST /servers/<name>/samples` and `POST /samples`.

use rocket::State;
use rocket::data::Data;
use rocket::response::status::NoContent;

use super::auth::Ingest;
use super::{
    openapi::ErrorBody,
    wire::{BatchEntry, SampleBody},
};
use super::{read_body, wire};
use crate::config::Settings;
use crate::error::ApiError;
use crate::model::{ServerName, TimePolicy};
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
    params(("name" = String, Path, description = "Server name: 1 to 253 characters from `A-Z a-z 0-9 . _ : -`", min_length = 1, max_length = 253, pattern = r"^[A-Za-z0-9._:-]+$")),
    request_body(content = SampleBody, description = "One sample (at most 64 KiB)"),
    responses(
        (status = 204, description = "Stored (committed to the database)"),
        (status = 400, description = "Malformed JSON or an unreadable body", body = ErrorBody),
        (status = 401, description = "A token is configured and the request lacks it or has another", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"sperform\"`, with `error=\"invalid_token\"` for a wrong token"))),
        (status = 413, description = "The body is larger than this endpoint accepts", body = ErrorBody),
        (status = 422, description = "A parameter or field is invalid; the message names it", body = ErrorBody),
        (status = 503, description = "The daemon is busy (write queue full, database busy) or shutting down; retry after `Retry-After`", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 500, description = "Storage failure; see the daemon's log", body = ErrorBody),
    ),
    security((), ("ingest_token" = []))
)]
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
    request_body(content = Vec<BatchEntry>, description = "1 to 10,000 samples of any servers (at most 4 MiB)"),
    responses(
        (status = 204, description = "All stored (committed in one transaction)"),
        (status = 400, description = "Malformed JSON or an unreadable body", body = ErrorBody),
        (status = 401, description = "A token is configured and the request lacks it or has another", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"sperform\"`, with `error=\"invalid_token\"` for a wrong token"))),
        (status = 413, description = "The body is larger than this endpoint accepts", body = ErrorBody),
        (status = 422, description = "A parameter or field is invalid; the message names it", body = ErrorBody),
        (status = 503, description = "The daemon is busy (write queue full, database busy) or shutting down; retry after `Retry-After`", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 500, description = "Storage failure; see the daemon's log", body = ErrorBody),
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

fn time_policy(store: &Store, settings: &Settings) -> TimePolicy {
    TimePolicy::new(store.now(), settings.retention_ms())
}
