//! `GET /health`: whether the database answers.

use rocket::State;
use rocket::http::Status;
use rocket::serde::json::Json;

use super::wire::HealthBody;
use crate::error::ApiError;
use crate::store::Store;

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "Whether the database answers",
    responses(
        (status = 200, description = "The database answers", body = HealthBody, example = json!({"status": "ok"})),
        (status = 503, description = "The database does not answer", body = HealthBody, example = json!({"status": "unavailable", "reason": "the database is busy (...); retry shortly"})),
    )
)]
#[rocket::get("/health")]
pub async fn health(store: &State<Store>) -> (Status, Json<HealthBody>) {
    match store.check().await {
        Ok(()) => (
            Status::Ok,
            Json(HealthBody {
                status: "ok",
                reason: None,
            }),
        ),
        Err(err) => (
            Status::ServiceUnavailable,
            Json(HealthBody {
                status: "unavailable",
                reason: Some(ApiError::from(err).message),
            }),
        ),
    }
}
