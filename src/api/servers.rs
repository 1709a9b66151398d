//! Servers: the list, one server's load, and deletion.

use rocket::State;
use rocket::response::status::NoContent;
use rocket::serde::json::Json;

use super::auth::{Ingest, Read};
use super::wire::{self, LoadBody, ServerBody};
use crate::error::ApiError;
use crate::model::{ServerName, Timestamp};
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
        Some(text) => wire::parse_time_param(text)?,
        None => Timestamp::now(),
    };
    let report = store.load(server.clone(), at).await?;
    let report = report.ok_or_else(|| unknown_server(&server))?;
    Ok(Json(LoadBody::from(&report)))
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
