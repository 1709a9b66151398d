//! `GET /api/v1/overview`: every server's last hour in one answer, for the
//! dashboard's list, where one `/load` request per server would be far too
//! many.

use rocket::State;
use rocket::serde::json::Json;
use serde::Serialize;

use super::auth::Read;
use super::params::{Query, QueryParam, TimeText};
use super::responses::{Internal, Invalid, Unauthorized, Unavailable};
use crate::error::ApiError;
use crate::model::{BucketWindow, Timestamp};
use crate::store::{ServerOverview, Store};

/// Response of `GET /api/v1/overview`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OverviewBody {
    at: String,
    /// Start of the oldest of the 60 minutes; `cpu[i]` and `ram[i]` are the
    /// means of the minute `i` minutes after it.
    start: String,
    servers: Vec<ServerOverviewBody>,
}

/// One server's latest sample time and 60 minute means, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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

#[utoipa::path(
    get,
    path = "/api/v1/overview",
    tag = "read",
    summary = "Every server's last 60 minutes",
    params(("at" = inline(Option<TimeText>), Query, description = "The end of the hour; now if left out. An RFC 3339 time (write an offset's `+` as `%2B`) or a number of Unix seconds (fractions allowed).", example = "2026-11-27T21:11:05Z")),
    responses(
        (status = 200, description = "Every server's latest sample time and 60 minute means", body = OverviewBody),
        Unauthorized,
        Invalid,
        Unavailable,
        Internal,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/overview?<at>")]
pub async fn overview(
    _auth: Read,
    at: QueryParam<'_, Timestamp>,
    store: &State<Store>,
) -> Result<Json<OverviewBody>, ApiError> {
    let at = Query::or(at, "at", store.now())?;
    let servers = store.overview(at).await?;
    Ok(Json(OverviewBody {
        at: at.to_rfc3339(),
        start: BucketWindow::minutes_to(at).start.to_rfc3339_seconds(),
        servers: servers.into_iter().map(ServerOverviewBody::from).collect(),
    }))
}
