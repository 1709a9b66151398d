//! Servers: the list, one server's load, and deletion.

use rocket::State;
use rocket::response::status::NoContent;
use rocket::serde::json::Json;

use super::auth::{Ingest, Read};
use super::params::{Query, QueryParam, Server, ServerPath, TimeText};
use super::responses::{Internal, Invalid, Unauthorized, Unavailable, UnknownServer};
use super::wire::{self, JsonText, LoadBody, RangeBody, ServerBody};
use crate::config::Settings;
use crate::error::ApiError;
use crate::model::{BucketWindow, ServerName, Step, TimePolicy, Timestamp};
use crate::store::Store;

#[utoipa::path(
    get,
    path = "/api/v1/servers",
    tag = "read",
    summary = "List servers",
    responses(
        (status = 200, description = "Every server that has reported", body = Vec<ServerBody>),
        Unauthorized,
        Unavailable,
        Internal,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/servers")]
pub async fn list(_auth: Read, store: &State<Store>) -> Result<Json<Vec<ServerBody>>, ApiError> {
    let servers = store.servers().await?;
    Ok(Json(servers.into_iter().map(ServerBody::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/servers/{name}/load",
    tag = "read",
    summary = "A server's last 60 minutes and 24 hours",
    description = "60 one-minute and 24 one-hour buckets, oldest first, the last of each holding `at`; only samples at or before `at` count.",
    params(
        ServerPath,
        ("at" = inline(Option<TimeText>), Query, description = "The end of the views; now if left out. An RFC 3339 time (write an offset's `+` as `%2B`) or a number of Unix seconds (fractions allowed).", example = "2026-11-27T21:11:05Z"),
    ),
    responses(
        (status = 200, description = "The two views", body = LoadBody),
        Unauthorized,
        UnknownServer,
        Invalid,
        Unavailable,
        Internal,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/servers/<name>/load?<at>")]
pub async fn load(
    _auth: Read,
    name: Result<Server, ApiError>,
    at: QueryParam<'_, Timestamp>,
    store: &State<Store>,
) -> Result<JsonText, ApiError> {
    let Server(server) = name?;
    let at = Query::or(at, "at", store.now())?;
    let report = store.load(server.clone(), at).await?;
    let report = report.ok_or_else(|| unknown_server(&server))?;
    Ok(JsonText(wire::text::load(&report)))
}

#[utoipa::path(
    get,
    path = "/api/v1/servers/{name}/load/range",
    tag = "read",
    summary = "A server's buckets over any range at any step",
    description = "Buckets aligned to multiples of `step` since the Unix epoch (UTC), covering `[from, to]`, oldest first and dense (empty ones with `null`s). At most 1,500 buckets; `from` before `to` and within the retention period, or within `history_retention` at a step of whole hours, which reads the hour-level history kept after raw samples expire (its hours are indivisible: each counts in the bucket its start falls in).",
    params(
        ServerPath,
        ("from" = inline(TimeText), Query, description = "Required: the start of the range. An RFC 3339 time (write an offset's `+` as `%2B`) or a number of Unix seconds (fractions allowed).", example = "2026-11-27T21:11:05Z"),
        ("to" = inline(TimeText), Query, description = "Required: the end of the range, after `from`; only samples at or before it count. An RFC 3339 time (write an offset's `+` as `%2B`) or a number of Unix seconds (fractions allowed).", example = "2026-11-27T21:11:05Z"),
        ("step" = String, Query, description = "Required: the bucket width, one of `1m 5m 10m 15m 30m 1h 6h 12h 1d`, or a number of seconds that makes whole minutes (`300` is `5m`).", example = "5m", pattern = r"^(1m|5m|10m|15m|30m|1h|6h|12h|1d|[1-9][0-9]{0,7})$"),
    ),
    responses(
        (status = 200, description = "The buckets", body = RangeBody),
        Unauthorized,
        UnknownServer,
        Invalid,
        Unavailable,
        Internal,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/servers/<name>/load/range?<from>&<to>&<step>")]
pub async fn range(
    _auth: Read,
    name: Result<Server, ApiError>,
    from: QueryParam<'_, Timestamp>,
    to: QueryParam<'_, Timestamp>,
    step: QueryParam<'_, Step>,
    store: &State<Store>,
    settings: &State<Settings>,
) -> Result<JsonText, ApiError> {
    let Server(server) = name?;
    let from = Query::required(from, "from")?;
    let to = Query::required(to, "to")?;
    let step = Query::required(step, "step")?;
    let policy = TimePolicy::new(store.now(), settings.retention_ms())
        .with_history(settings.history_retention_ms());
    let window = BucketWindow::range(from, to, step, &policy)?;
    let buckets = store.range(server.clone(), window).await?;
    let buckets = buckets.ok_or_else(|| unknown_server(&server))?;
    Ok(JsonText(wire::text::range(
        &server, from, to, step, &buckets,
    )))
}

#[utoipa::path(
    delete,
    path = "/api/v1/servers/{name}",
    tag = "ingest",
    summary = "Delete a server and all its samples",
    params(ServerPath),
    responses(
        (status = 204, description = "Deleted"),
        Unauthorized,
        UnknownServer,
        Invalid,
        Unavailable,
        Internal,
    ),
    security((), ("ingest_token" = []))
)]
#[rocket::delete("/servers/<name>")]
pub async fn delete(
    _auth: Ingest,
    name: Result<Server, ApiError>,
    store: &State<Store>,
) -> Result<NoContent, ApiError> {
    let Server(server) = name?;
    if store.delete_server(server.clone()).await? {
        Ok(NoContent)
    } else {
        Err(unknown_server(&server))
    }
}

fn unknown_server(server: &ServerName) -> ApiError {
    ApiError::not_found(format!(
        "no server named {:?} has reported",
        server.as_str()
    ))
}
