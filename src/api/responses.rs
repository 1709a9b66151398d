//! The error responses the routes share, declared once for the OpenAPI
//! document: a route lists the sets it can answer in its
//! `#[utoipa::path(responses(...))]`. Each body is `ErrorBody`, what
//! `ApiError` sends. Documentation only: never constructed.
#![allow(dead_code, reason = "documentation only: never constructed")]

use crate::error::ErrorBody;

#[derive(utoipa::IntoResponses)]
pub enum MalformedBody {
    /// Malformed JSON or an unreadable body
    #[response(status = 400)]
    Malformed(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
pub enum Unauthorized {
    /// A token is configured and the request lacks it or has another
    #[response(status = 401, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"sperform\"`, with `error=\"invalid_token\"` for a wrong token")))]
    Refused(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
pub enum UnknownServer {
    /// No server of that name has reported (or it was deleted)
    #[response(status = 404)]
    Unknown(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
pub enum TooLarge {
    /// The body is larger than this endpoint accepts
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
pub enum UnsupportedMediaType {
    /// The body is not of the content type this endpoint takes
    #[response(status = 415)]
    Unsupported(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
pub enum Invalid {
    /// A parameter or field is invalid; the message names it
    #[response(status = 422)]
    Invalid(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
pub enum Unavailable {
    /// The daemon is busy (write queue full, database busy) or shutting down; retry after `Retry-After`
    #[response(status = 503, headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
pub enum Internal {
    /// Storage failure; see the daemon's log
    #[response(status = 500)]
    Internal(ErrorBody),
}
