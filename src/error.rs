//! The error every handler and catcher returns: a status, a message the
//! client can act on, and the headers that go with it. Rendered as
//! `ErrorBody`, `{"error": "..."}`; causes the client cannot act on are
//! logged instead.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde::Serialize;

use crate::model::ValidationError;
use crate::store::StoreError;

/// Seconds a client should wait before retrying after a `503`.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The body of every error response, from a handler or a catcher: the type
/// the OpenAPI document shows is the one `ApiError` serialises.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

/// What a store error means to a client. The one mapping from store errors
/// to statuses: the v1 routes and the Prometheus-compatible routes word
/// their answers differently, but both take the status from here. Each
/// keeps the error it was sorted from.
#[derive(Debug)]
pub enum StoreFailure {
    /// The write queue is full: retry after `Retry-After`.
    QueueFull(StoreError),
    /// The daemon is shutting down.
    ShuttingDown(StoreError),
    /// A failure that trying again shortly may cure (busy database, no
    /// free connection).
    Transient(StoreError),
    /// A fault in the database itself; the cause is logged, not shown.
    Internal(StoreError),
}

impl StoreFailure {
    /// Sorts `err`, logging the causes the client will not see.
    pub fn classify(err: StoreError) -> StoreFailure {
        match &err {
            StoreError::QueueFull => StoreFailure::QueueFull(err),
            StoreError::WriterStopped => StoreFailure::ShuttingDown(err),
            _ if err.is_transient() => {
                log::warn!("temporary storage failure: {err}");
                StoreFailure::Transient(err)
            }
            _ => {
                log::error!("storage failure: {err}");
                StoreFailure::Internal(err)
            }
        }
    }

    pub fn status(&self) -> Status {
        match self {
            StoreFailure::Internal(_) => Status::InternalServerError,
            _ => Status::ServiceUnavailable,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: Status,
    pub message: String,
    retry_after: Option<u32>,
    allow: Option<String>,
    www_authenticate: Option<String>,
}

impl ApiError {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            allow: None,
            www_authenticate: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(Status::UnprocessableEntity, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Status::NotFound, message)
    }

    /// A `503` that tells the client when to come back.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(RETRY_AFTER_SECONDS),
            ..Self::new(Status::ServiceUnavailable, message)
        }
    }

    /// A `401` with the `WWW-Authenticate` challenge that says how to
    /// authenticate.
    pub fn unauthorized(message: impl Into<String>, challenge: impl Into<String>) -> Self {
        ApiError {
            www_authenticate: Some(challenge.into()),
            ..Self::new(Status::Unauthorized, message)
        }
    }

    /// A `405` listing the methods the path does accept.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &[String]) -> Self {
        let allow = allowed.join(", ");
        ApiError {
            allow: Some(allow.clone()),
            ..Self::new(
                Status::MethodNotAllowed,
                format!("{method} is not allowed on {path}; allowed: {allow}"),
            )
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::unprocessable(err.message())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let failure = StoreFailure::classify(err);
        let message = match &failure {
            StoreFailure::QueueFull(_) => {
                "the daemon is busy writing earlier samples; retry after the Retry-After delay"
                    .to_owned()
            }
            StoreFailure::ShuttingDown(_) => "the daemon is shutting down".to_owned(),
            StoreFailure::Transient(err) => format!("the database is busy ({err}); retry shortly"),
            StoreFailure::Internal(_) => {
                "the database failed to complete the request; see the daemon's log".to_owned()
            }
        };
        match failure.status() {
            Status::ServiceUnavailable => ApiError::unavailable(message),
            status => ApiError::new(status, message),
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = serde_json::to_string(&ErrorBody {
            error: self.message,
        })
        .map_err(|err| {
            log::error!("could not serialise an error body: {err}");
            Status::InternalServerError
        })?;
        let mut response = Response::build();
        response
            .status(self.status)
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body));
        if let Some(seconds) = self.retry_after {
            response.header(Header::new("Retry-After", seconds.to_string()));
        }
        if let Some(allow) = self.allow {
            response.header(Header::new("Allow", allow));
        }
        if let Some(challenge) = self.www_authenticate {
            response.header(Header::new("WWW-Authenticate", challenge));
        }
        response.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_and_a_stopped_writer_are_503s_that_say_when_to_retry() {
        let full = ApiError::from(StoreError::QueueFull);
        assert_eq!(full.status, Status::ServiceUnavailable);
        assert_eq!(full.retry_after, Some(RETRY_AFTER_SECONDS));
        assert_eq!(
            full.message,
            "the daemon is busy writing earlier samples; retry after the Retry-After delay"
        );
        let stopped = ApiError::from(StoreError::WriterStopped);
        assert_eq!(stopped.status, Status::ServiceUnavailable);
        assert_eq!(stopped.retry_after, Some(RETRY_AFTER_SECONDS));
        assert_eq!(stopped.message, "the daemon is shutting down");
    }
}
