//! The domain parameters of API v1 as Rocket parameter types: a path's
//! server name (`FromParam`) and a query's times and step
//! (`FromFormField`), parsed once, before the handler runs.
//!
//! Each keeps its parse result rather than failing: a failed Rocket
//! parameter would forward the request (to a `404`) instead of answering
//! the JSON error that names the bad value, and the handler would lose the
//! order of its checks (the token first, then the name, then the query).
//! A handler takes `Result<Server, ApiError>` and `Option<Query<T>>` and
//! returns their errors with `?`.

use rocket::form::{self, FromFormField, ValueField};
use rocket::request::FromParam;

use super::wire;
use crate::error::ApiError;
use crate::model::{ServerName, Step, Timestamp};

/// A server name from the path, checked by `ServerName::parse`.
#[derive(Debug)]
pub struct Server(pub ServerName);

impl<'a> FromParam<'a> for Server {
    type Error = ApiError;

    fn from_param(param: &'a str) -> Result<Self, ApiError> {
        Ok(Server(ServerName::parse(param)?))
    }
}

/// A value that a query parameter holds, parsed from its text.
pub trait QueryValue: Sized + Send {
    fn parse_query(name: &str, text: &str) -> Result<Self, ApiError>;
}

/// A time: an RFC 3339 string or a number of Unix seconds.
impl QueryValue for Timestamp {
    fn parse_query(name: &str, text: &str) -> Result<Self, ApiError> {
        wire::parse_time_param(name, text)
    }
}

/// A bucket width, as `Step::parse` takes it.
impl QueryValue for Step {
    fn parse_query(_name: &str, text: &str) -> Result<Self, ApiError> {
        Ok(Step::parse(text)?)
    }
}

/// A query parameter parsed into `T`, or the error that answers it.
///
/// A parameter given more than once is treated as left out, as Rocket does
/// for a plain string parameter (its first value is not taken).
#[derive(Debug)]
pub struct Query<T>(Result<T, ApiError>);

impl<T> Query<T> {
    /// The value, or `default` when the parameter was left out.
    pub fn or(param: Option<Query<T>>, default: T) -> Result<T, ApiError> {
        match param {
            Some(Query(parsed)) => parsed,
            None => Ok(default),
        }
    }

    /// The value of a parameter that must be given.
    pub fn required(param: Option<Query<T>>, name: &str) -> Result<T, ApiError> {
        match param {
            Some(Query(parsed)) => parsed,
            None => Err(ApiError::unprocessable(format!(
                "query parameter `{name}` is missing"
            ))),
        }
    }
}

#[rocket::async_trait]
impl<'v, T: QueryValue> FromFormField<'v> for Query<T> {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        let name = field.name.source().as_str();
        Ok(Query(T::parse_query(name, field.value)))
    }
}

/// The server-name path parameter as the OpenAPI document shows it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "documentation only: never constructed")]
pub struct ServerPath {
    /// Server name: 1 to 253 characters from `A-Z a-z 0-9 . _ : -`.
    #[param(min_length = 1, max_length = 253, pattern = r"^[A-Za-z0-9._:-]+$")]
    name: String,
}
