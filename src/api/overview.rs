//! `GET /api/v1/overview`: every server's last hour in one answer, for the
//! dashboard's list, where one `/load` request per server would be far too
//! many.

use rocket::State;
use rocket::serde::json::Json;
use serde::Serialize;

use super::auth::Read;
use super::wire;
use crate::error::ApiError;
use crate::model::{BucketWindow, Timestamp};
use crate::store::{ServerOverview, Store};

/// Response of `GET /api/v1/overview`.
#[derive(Debug, Serialize)]
pub struct OverviewBody {
    at: String,
    /// Start of the oldest of the 60 minutes; `cpu[i]` and `ram[i]` are the
    /// means of the minute `i` minutes after it.
    start: String,
    servers: Vec<ServerOverviewBody>,
}

#[derive(Debug, Serialize)]
pub struct ServerOverviewBody {
    name: String,
    last_seen: Option<String>,
    cpu: Vec<Option<f64>>,
    ram: Vec<Option<f64>>,
}

impl From<ServerOverview> for ServerOverviewBody {
    fn from(server: ServerOverview) -> Self {
        ServerOverviewBody {
            name: server.name,
            last_seen: server.last_seen.map(Timestamp::to_rfc3339),
            cpu: server.cpu,
            ram: server.ram,
        }
    }
}

#[rocket::get("/overview?<at>")]
pub async fn overview(
    _auth: Read,
    at: Option<&str>,
    store: &State<Store>,
) -> Result<Json<OverviewBody>, ApiError> {
    let at = match at {
        Some(text) => wire::parse_time_param("at", text)?,
        None => Timestamp::now(),
    };
    let servers = store.overview(at).await?;
    Ok(Json(OverviewBody {
        at: at.to_rfc3339(),
        start: BucketWindow::minutes_to(at).start.to_rfc3339_seconds(),
        servers: servers.into_iter().map(ServerOverviewBody::from).collect(),
    }))
}
