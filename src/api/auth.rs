//! Bearer-token guards. A handler that takes `Ingest` needs `ingest_token`
//! and one that takes `Read` needs `read_token`, each only when that token
//! is configured. A refused request is a `401` with a JSON error and a
//! `WWW-Authenticate: Bearer` challenge; its body is never read.

use rocket::Request;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};

use crate::config::{Settings, Token};
use crate::error::ApiError;

/// Proof that the request may write (`POST`, `DELETE`).
pub struct Ingest;

/// Proof that the request may read data (servers, loads, metrics).
pub struct Read;

/// Why a request was refused. A catcher cannot see a guard's error, so the
/// guard leaves it in the request's local cache for `unauthorized`.
#[derive(Debug, Clone)]
pub struct Refusal {
    message: String,
    /// A token was presented but is not the right one (RFC 6750's
    /// `invalid_token`), as opposed to no usable credentials at all.
    wrong_token: bool,
}

#[derive(Default)]
struct CachedRefusal(Option<Refusal>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Ingest {
    type Error = Refusal;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Refusal> {
        authorize(request, "ingest", |settings| settings.ingest_token.as_ref()).map(|()| Ingest)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Read {
    type Error = Refusal;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Refusal> {
        authorize(request, "read", |settings| settings.read_token.as_ref()).map(|()| Read)
    }
}

/// Renders the refusal a guard left behind as the JSON `401`.
#[rocket::catch(401)]
pub fn unauthorized(request: &Request<'_>) -> ApiError {
    let refusal = request.local_cache(CachedRefusal::default).0.clone();
    let (message, wrong_token) = match refusal {
        Some(refusal) => (refusal.message, refusal.wrong_token),
        None => ("this request needs a bearer token".to_owned(), false),
    };
    let challenge = if wrong_token {
        r#"Bearer realm="sperform", error="invalid_token""#
    } else {
        r#"Bearer realm="sperform""#
    };
    ApiError::unauthorized(message, challenge)
}

fn authorize(
    request: &Request<'_>,
    purpose: &str,
    token_of: impl FnOnce(&Settings) -> Option<&Token>,
) -> Outcome<(), Refusal> {
    let Some(settings) = request.rocket().state::<Settings>() else {
        // Fail closed: without settings there is no telling what is allowed.
        log::error!("settings are not managed; refusing the request");
        return refuse(
            request,
            Status::InternalServerError,
            "the daemon is misconfigured; see its log".to_owned(),
            false,
        );
    };
    let Some(expected) = token_of(settings) else {
        return Outcome::Success(());
    };
    match bearer_token(request) {
        Presented::Token(token) if expected.matches(token) => Outcome::Success(()),
        Presented::Token(_) => refuse(
            request,
            Status::Unauthorized,
            format!("the bearer token is not the {purpose} token"),
            true,
        ),
        Presented::Nothing => refuse(
            request,
            Status::Unauthorized,
            format!("this request needs the {purpose} token: send `Authorization: Bearer <token>`"),
            false,
        ),
        Presented::Malformed => refuse(
            request,
            Status::Unauthorized,
            format!(
                "the Authorization header must be `Bearer <token>`, with the {purpose} token, once"
            ),
            false,
        ),
    }
}

fn refuse(
    request: &Request<'_>,
    status: Status,
    message: String,
    wrong_token: bool,
) -> Outcome<(), Refusal> {
    let refusal = Refusal {
        message,
        wrong_token,
    };
    let cached = refusal.clone();
    request.local_cache(move || CachedRefusal(Some(cached)));
    Outcome::Error((status, refusal))
}

enum Presented<'r> {
    Nothing,
    Malformed,
    Token(&'r str),
}

/// The token of a single `Authorization: Bearer <token>` header; the scheme
/// name is case-insensitive (RFC 7235).
fn bearer_token<'r>(request: &'r Request<'_>) -> Presented<'r> {
    let mut values = request.headers().get("Authorization");
    let Some(value) = values.next() else {
        return Presented::Nothing;
    };
    if values.next().is_some() {
        return Presented::Malformed;
    }
    let Some((scheme, token)) = value.split_once(' ') else {
        return Presented::Malformed;
    };
    let token = token.trim_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Presented::Malformed;
    }
    Presented::Token(token)
}
