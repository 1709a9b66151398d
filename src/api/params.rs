//! The domain parameters of API v1 as Rocket parameter types: a path's
//! server name (`FromParam`) and a query's times and step
//! (`FromFormField`), parsed once, before the handler runs.
//!
//! Each keeps its parse result rather than failing: a failed Rocket
//! parameter would forward the request (to a `404`) instead of answering
//! the JSON error that names the bad value, and the handler would lose the
//! order of its checks (the token first, then the name, then the query).
//! A handler takes `Result<Server, ApiError>` and `QueryParam<T>` and
//! returns their errors with `?`.

use rocket::form::{self, FromFormField, ValueField, error::ErrorKind};
use rocket::request::FromParam;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

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

/// A query parameter parsed into `T`, or the error that answers it. A
/// handler takes it as `QueryParam<T>`, which also says whether it was left
/// out or given more than once.
#[derive(Debug)]
pub struct Query<T>(Result<T, ApiError>);

/// A query parameter as a handler takes it. Parsed strictly, so that a
/// parameter given twice is an error rather than its first value.
pub type QueryParam<'r, T> = form::Result<'r, form::Strict<Query<T>>>;

impl<T> Query<T> {
    /// The value, or `default` when the parameter was left out.
    pub fn or(param: QueryParam<'_, T>, name: &str, default: T) -> Result<T, ApiError> {
        Ok(Self::given(param, name)?.unwrap_or(default))
    }

    /// The value of a parameter that must be given.
    pub fn required(param: QueryParam<'_, T>, name: &str) -> Result<T, ApiError> {
        Self::given(param, name)?
            .ok_or_else(|| ApiError::unprocessable(format!("query parameter `{name}` is missing")))
    }

    /// The value, if the parameter was given once. A parameter given twice
    /// is refused rather than one of its values taken at random.
    fn given(param: QueryParam<'_, T>, name: &str) -> Result<Option<T>, ApiError> {
        match param {
            Ok(strict) => strict.into_inner().0.map(Some),
            Err(errors) if errors.iter().any(|err| err.kind == ErrorKind::Duplicate) => {
                Err(ApiError::unprocessable(format!(
                    "query parameter `{name}` is given more than once"
                )))
            }
            Err(_) => Ok(None),
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

/// A time in a query string or form, as the OpenAPI document shows it: a
/// number of Unix seconds (at most millisecond precision) or an RFC 3339
/// time from 1971 on. The pattern admits only times every endpoint takes
/// (no 29th to 31st day, whose validity depends on the month); the daemon
/// takes any RFC 3339 time. Documentation only.
pub struct TimeText;

/// What `TimeText` admits.
const TIME_PATTERN: &str = concat!(
    r"^([0-9]{1,11}(\.[0-9]{1,3})?|",
    r"(197[1-9]|19[89][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])",
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?",
    r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]))$"
);

impl utoipa::PartialSchema for TimeText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(TIME_PATTERN))
            .description(Some(
                "A number of Unix seconds (fractions allowed) or an RFC 3339 time \
                 (write an offset's `+` as `%2B`)",
            ))
            .examples(["2026-11-27T21:11:05Z"])
            .into()
    }
}

impl utoipa::ToSchema for TimeText {}
