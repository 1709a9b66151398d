//! `GET /health`: whether the database answers.

use rocket::State;
use rocket::http::Status;
use rocket::serde::json::Json;

use super::blocking;
use super::wire::HealthBody;
use crate::store::Store;

#[rocket::get("/health")]
pub async fn health(store: &State<Store>) -> (Status, Json<HealthBody>) {
    let store = store.inner().clone();
    match blocking(move || store.check()).await {
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
                reason: Some(err.message),
            }),
        ),
    }
}
