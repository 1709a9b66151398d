//! Servers: the list, one server's load, and deletion.

use rocket::State;
use rocket::response::status::NoContent;
use rocket::serde::json::Json;

use super::auth::{Ingest, Read};
use super::wire::{self, LoadBody, RangeBody, ServerBody};
use crate::config::Settings;
use crate::error::ApiError;
use crate::model::{BucketWindow, ServerName, Step, TimePolicy, Timestamp};
use crate::store::Store;

#[rocket::get("/servers")]
pub async fn list(_auth: Read, store: &State<Store>) -> Result<Json<Vec<ServerBody>>, ApiError> {
    let servers = store.servers().await?;
    Ok(Json(servers.into_iter().map(ServerBody::from).collect()))
}

#[rocket::get("/servers/<name>/load?<at>")]
pub async fn load(
    _auth: Read,
    name: &str,
    at: Option<&str>,
    store: &State<Store>,
) -> Result<Json<LoadBody>, ApiError> {
    let server = ServerName::parse(name)?;
    let at = match at {
        Some(text) => wire::parse_time_param("at", text)?,
        None => Timestamp::now(),
    };
    let report = store.load(server.clone(), at).await?;
    let report = report.ok_or_else(|| unknown_server(&server))?;
    Ok(Json(LoadBody::from(&report)))
}

#[rocket::get("/servers/<name>/load/range?<from>&<to>&<step>")]
pub async fn range(
    _auth: Read,
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
    step: Option<&str>,
    store: &State<Store>,
    settings: &State<Settings>,
) -> Result<Json<RangeBody>, ApiError> {
    let server = ServerName::parse(name)?;
    let from = wire::required_time_param("from", from)?;
    let to = wire::required_time_param("to", to)?;
    let step = step.ok_or_else(|| ApiError::unprocessable("query parameter `step` is missing"))?;
    let step = Step::parse(step)?;
    let policy = TimePolicy::new(Timestamp::now(), settings.retention_ms());
    let window = BucketWindow::range(from, to, step, &policy)?;
    let buckets = store.range(server.clone(), window).await?;
    let buckets = buckets.ok_or_else(|| unknown_server(&server))?;
    Ok(Json(RangeBody::new(&server, from, to, step, &buckets)))
}

#[rocket::delete("/servers/<name>")]
pub async fn delete(
    _auth: Ingest,
    name: &str,
    store: &State<Store>,
) -> Result<NoContent, ApiError> {
    let server = ServerName::parse(name)?;
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
