//! The HTTP API: one module per resource, thin handlers that parse input
//! into model types, make one call into the store and shape the answer.

pub mod auth;
mod catchers;
pub mod dashboard;
mod health;
pub mod metrics;
mod openapi;
mod overview;
pub(crate) mod params;
pub mod prometheus;
mod responses;
mod samples;
mod servers;
pub mod telemetry;
pub mod wire;

pub use telemetry::{HttpStats, RequestTelemetry};

use rocket::data::{Data, ToByteUnit};
use rocket::http::Status;
use rocket::{Catcher, Route};

use crate::error::ApiError;

/// Routes mounted under `/api/v1`.
pub fn v1_routes() -> Vec<Route> {
    rocket::routes![
        samples::post_sample,
        samples::post_batch,
        servers::list,
        servers::load,
        servers::range,
        servers::delete,
        overview::overview,
        openapi::openapi,
    ]
}

/// Routes mounted at `/`.
pub fn root_routes() -> Vec<Route> {
    rocket::routes![health::health, metrics::metrics]
}

/// The Prometheus-compatible read API, mounted under `/prometheus/api/v1`.
pub fn prometheus_routes() -> Vec<Route> {
    rocket::routes![
        prometheus::query_get,
        prometheus::query_post,
        prometheus::query_range_get,
        prometheus::query_range_post,
        prometheus::labels_get,
        prometheus::labels_post,
        prometheus::label_values,
        prometheus::series_get,
        prometheus::series_post,
        prometheus::buildinfo,
    ]
}

/// The dashboard's pages and assets, mounted at `/`.
pub fn dashboard_routes() -> Vec<Route> {
    rocket::routes![
        dashboard::overview_page,
        dashboard::server_page,
        dashboard::no_such_server_page,
        dashboard::asset,
    ]
}

pub fn catchers() -> Vec<Catcher> {
    rocket::catchers![catchers::default_catcher, auth::unauthorized]
}

/// Reads a whole request body, refusing one larger than `limit_bytes`
/// with a 413 instead of truncating it.
async fn read_body(data: Data<'_>, limit_bytes: u64) -> Result<Vec<u8>, ApiError> {
    let body = data
        .open(limit_bytes.bytes())
        .into_bytes()
        .await
        .map_err(|err| ApiError::bad_request(format!("could not read the request body: {err}")))?;
    if !body.is_complete() {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            format!(
                "the request body is larger than the {} KiB this endpoint accepts",
                limit_bytes / 1024
            ),
        ));
    }
    Ok(body.into_inner())
}
