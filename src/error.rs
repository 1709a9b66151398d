//! The error every handler and catcher returns: a status, a message the
//! client can act on, and the headers that go with it. Rendered as
//! `{"error": "..."}`; causes the client cannot act on are logged instead.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};

use crate::model::ValidationError;
use crate::store::StoreError;

/// Seconds a client should wait before retrying after a `503`.
pub const RETRY_AFTER_SECONDS: u32 = 1;

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
        match err {
            StoreError::QueueFull => ApiError::unavailable(
                "the daemon is busy writing earlier samples; retry after the Retry-After delay",
            ),
            StoreError::WriterStopped => ApiError::unavailable("the daemon is shutting down"),
            err if err.is_transient() => {
                log::warn!("temporary storage failure: {err}");
                ApiError::unavailable(format!("the database is busy ({err}); retry shortly"))
            }
            err => {
                log::error!("storage failure: {err}");
                ApiError::new(
                    Status::InternalServerError,
                    "the database failed to complete the request; see the daemon's log",
                )
            }
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = serde_json::json!({ "error": self.message }).to_string();
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
