//! The Prometheus-compatible read API, mounted under `/prometheus/api/v1`:
//! the stored samples as two metrics, `sperform_cpu_percent` and
//! `sperform_ram_percent`, labelled `server`, queried with PromQL (see
//! `eval` for the supported subset), in Prometheus's envelopes, so that
//! Grafana's Prometheus data source and `promtool` can read sperform.

pub mod eval;

use std::io::Cursor;

use chrono::DateTime;
use rocket::State;
use rocket::form::{self, Form, FromForm, FromFormField, ValueField};
use rocket::http::{ContentType, Status};
use rocket::request::{FromParam, Request};
use rocket::response::{self, Responder, Response};
use serde::ser::{Error as _, SerializeTuple};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Type};
use utoipa::openapi::{RefOr, Schema};

use super::auth::Read;
use super::params::TimeText;
use super::responses::{Unauthorized, UnsupportedMediaType};
use crate::error::StoreFailure;
use crate::store::{ServerSamples, Store, StoreError};
use eval::{Labels, Outcome, Query, QueryError, Selector, Steps};

/// Most stored samples one query may read.
pub const MAX_SAMPLES_READ: usize = 5_000_000;
/// The Prometheus version whose API and query semantics this follows
/// (left-open windows, as in Prometheus 3), reported by `buildinfo`.
const PROMETHEUS_VERSION: &str = "3.0.0";

/// Every parameter these endpoints take, from the query string (`GET`) or
/// a form body (`POST`). Unknown parameters (`timeout`, `limit`, ...) are
/// ignored; so are `start` and `end` of the listing endpoints.
#[derive(Debug, Default, FromForm)]
pub struct Params {
    query: Option<String>,
    time: Option<Parsed<Time>>,
    start: Option<Parsed<Time>>,
    end: Option<Parsed<Time>>,
    step: Option<Parsed<Resolution>>,
    #[field(name = "match")]
    matches: Vec<String>,
}

/// A parameter parsed as Prometheus takes it when the form is read. It
/// keeps its error, answered when the handler reaches the parameter, so
/// that a bad one is `bad_data` in Prometheus's envelope (a failed form
/// field would be Rocket's own refusal) and errors come in the handler's
/// order.
#[derive(Debug)]
pub struct Parsed<K: Kind>(Result<i64, PromError>, std::marker::PhantomData<K>);

/// How a kind of parameter is parsed.
pub trait Kind: Send + Sized {
    fn parse(name: &str, text: &str) -> Result<i64, PromError>;
}

/// A time in Unix milliseconds (`parse_time`).
#[derive(Debug)]
pub struct Time;

impl Kind for Time {
    fn parse(name: &str, text: &str) -> Result<i64, PromError> {
        parse_time(name, text)
    }
}

/// A step in milliseconds (`parse_step`).
#[derive(Debug)]
pub struct Resolution;

impl Kind for Resolution {
    fn parse(_name: &str, text: &str) -> Result<i64, PromError> {
        parse_step(text)
    }
}

impl<K: Kind> Parsed<K> {
    /// The value of a parameter a query needs: left out, it is refused as
    /// Prometheus refuses an empty one.
    fn required(param: Option<Parsed<K>>, name: &str) -> Result<i64, PromError> {
        match param {
            Some(Parsed(parsed, _)) => parsed,
            None => K::parse(name, ""),
        }
    }
}

#[rocket::async_trait]
impl<'v, K: Kind> FromFormField<'v> for Parsed<K> {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        let parsed = K::parse(field.name.source().as_str(), field.value);
        Ok(Parsed(parsed, std::marker::PhantomData))
    }
}

/// A series selector such as `sperform_cpu_percent{server=~"web-.*"}`, as
/// the OpenAPI document shows it.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, min_length = 1)]
pub struct SelectorText(#[allow(dead_code, reason = "documentation only")] String);

/// The `match[]` field of a form body: one selector or more (a form field
/// given once is a list of one).
pub struct Selectors;

impl utoipa::PartialSchema for Selectors {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(Ref::from_schema_name("SelectorText"))
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name("SelectorText"))
                    .min_items(Some(1)),
            )
            .into()
    }
}

impl utoipa::ToSchema for Selectors {}

/// The form body of `POST query`, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documentation only: never constructed")]
pub struct PromQueryForm {
    /// A PromQL expression over `sperform_cpu_percent` and
    /// `sperform_ram_percent` (label `server`).
    #[schema(min_length = 1)]
    query: String,
    /// The evaluation time; now if left out.
    #[schema(required = false)]
    time: TimeText,
}

/// The form body of `POST query_range`, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documentation only: never constructed")]
pub struct PromRangeForm {
    /// A PromQL expression over `sperform_cpu_percent` and
    /// `sperform_ram_percent` (label `server`).
    #[schema(min_length = 1)]
    query: String,
    /// The start of the range.
    start: TimeText,
    /// The end of the range.
    end: TimeText,
    /// The resolution: a duration (`15s`, `1m`) or a number of seconds.
    #[schema(pattern = r"^([1-9][0-9]{0,5}|([1-9][0-9]{0,3}(s|m|h|d))+)$")]
    step: String,
}

/// The form body of `POST labels`, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documentation only: never constructed")]
pub struct PromListForm {
    /// Series selectors; every series if left out.
    #[schema(rename = "match[]", required = false, value_type = Selectors)]
    matches: Vec<String>,
    /// Accepted, as Prometheus takes it, and ignored: the series of every
    /// time are listed.
    #[schema(required = false)]
    start: String,
    /// Accepted and ignored, as `start`.
    #[schema(required = false)]
    end: String,
}

/// The form body of `POST series`, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documentation only: never constructed")]
pub struct PromSeriesForm {
    /// Series selectors; at least one.
    #[schema(rename = "match[]", value_type = Selectors)]
    matches: Vec<String>,
    /// Accepted, as Prometheus takes it, and ignored: the series of every
    /// time are listed.
    #[schema(required = false)]
    start: String,
    /// Accepted and ignored, as `start`.
    #[schema(required = false)]
    end: String,
}

#[utoipa::path(
    get,
    path = "/prometheus/api/v1/query",
    tag = "prometheus",
    summary = "PromQL instant query",
    params(
        ("query" = String, Query, description = "A PromQL expression over `sperform_cpu_percent` and `sperform_ram_percent` (label `server`)", example = "avg_over_time(sperform_cpu_percent{server=\"web-1\"}[5m])", min_length = 1),
        ("time" = inline(Option<TimeText>), Query, description = "The evaluation time; now if left out. RFC 3339 or Unix seconds."),
    ),
    responses(
        QueryAnswer,
        Unauthorized,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/query?<params..>")]
pub async fn query_get(_auth: Read, params: Params, store: &State<Store>) -> Answer {
    Answer::from(instant_query(store, params).await)
}

#[utoipa::path(
    post,
    path = "/prometheus/api/v1/query",
    tag = "prometheus",
    summary = "PromQL instant query (form body)",
    request_body(content = PromQueryForm, content_type = "application/x-www-form-urlencoded", description = "The same parameters as the GET form, as a form body"),
    responses(
        QueryAnswer,
        Unauthorized,
        UnsupportedMediaType,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::post("/query", data = "<params>")]
pub async fn query_post(_auth: Read, params: Form<Params>, store: &State<Store>) -> Answer {
    Answer::from(instant_query(store, params.into_inner()).await)
}

#[utoipa::path(
    get,
    path = "/prometheus/api/v1/query_range",
    tag = "prometheus",
    summary = "PromQL range query",
    params(
        ("query" = String, Query, description = "A PromQL expression over `sperform_cpu_percent` and `sperform_ram_percent` (label `server`)", example = "avg_over_time(sperform_cpu_percent{server=\"web-1\"}[5m])", min_length = 1),
        ("start" = inline(TimeText), Query, description = "The start of the range. RFC 3339 or Unix seconds."),
        ("end" = inline(TimeText), Query, description = "The end of the range. RFC 3339 or Unix seconds."),
        ("step" = String, Query, description = "The resolution: a duration (`15s`, `1m`) or a number of seconds", example = "1m", pattern = r"^([1-9][0-9]{0,5}|([1-9][0-9]{0,3}(s|m|h|d))+)$"),
    ),
    responses(
        QueryAnswer,
        Unauthorized,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/query_range?<params..>")]
pub async fn query_range_get(_auth: Read, params: Params, store: &State<Store>) -> Answer {
    Answer::from(range_query(store, params).await)
}

#[utoipa::path(
    post,
    path = "/prometheus/api/v1/query_range",
    tag = "prometheus",
    summary = "PromQL range query (form body)",
    request_body(content = PromRangeForm, content_type = "application/x-www-form-urlencoded", description = "The same parameters as the GET form, as a form body"),
    responses(
        QueryAnswer,
        Unauthorized,
        UnsupportedMediaType,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::post("/query_range", data = "<params>")]
pub async fn query_range_post(_auth: Read, params: Form<Params>, store: &State<Store>) -> Answer {
    Answer::from(range_query(store, params.into_inner()).await)
}

#[utoipa::path(
    get,
    path = "/prometheus/api/v1/labels",
    tag = "prometheus",
    summary = "Label names",
    params(
        ("match[]" = inline(Option<Vec<SelectorText>>), Query, description = "Series selectors; every series if left out", example = json!(["sperform_cpu_percent{server=~\"web-.*\"}"])),
        ("start" = inline(Option<String>), Query, description = "Accepted, as Prometheus takes it, and ignored: the series of every time are listed."),
        ("end" = inline(Option<String>), Query, description = "Accepted and ignored, as `start`."),
    ),
    responses(
        NamesAnswer,
        Unauthorized,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/labels?<params..>")]
pub async fn labels_get(_auth: Read, params: Params, store: &State<Store>) -> Answer {
    Answer::from(label_names(store, params).await)
}

#[utoipa::path(
    post,
    path = "/prometheus/api/v1/labels",
    tag = "prometheus",
    summary = "Label names (form body)",
    request_body(content = PromListForm, content_type = "application/x-www-form-urlencoded", description = "The same parameters as the GET form, as a form body"),
    responses(
        NamesAnswer,
        Unauthorized,
        UnsupportedMediaType,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::post("/labels", data = "<params>")]
pub async fn labels_post(_auth: Read, params: Form<Params>, store: &State<Store>) -> Answer {
    Answer::from(label_names(store, params.into_inner()).await)
}

#[utoipa::path(
    get,
    path = "/prometheus/api/v1/label/{name}/values",
    tag = "prometheus",
    summary = "Values of a label",
    params(
        ("name" = String, Path, description = "A label name: `__name__` or `server` (any other has no values)", pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"),
        ("match[]" = inline(Option<Vec<SelectorText>>), Query, description = "Series selectors; every series if left out", example = json!(["sperform_cpu_percent{server=~\"web-.*\"}"])),
        ("start" = inline(Option<String>), Query, description = "Accepted, as Prometheus takes it, and ignored: the series of every time are listed."),
        ("end" = inline(Option<String>), Query, description = "Accepted and ignored, as `start`."),
    ),
    responses(
        NamesAnswer,
        Unauthorized,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/label/<name>/values?<params..>")]
pub async fn label_values(
    _auth: Read,
    name: Result<LabelName, PromError>,
    params: Params,
    store: &State<Store>,
) -> Answer {
    let values = match name {
        Ok(name) => values_of_label(store, name, params).await,
        Err(err) => Err(err),
    };
    Answer::from(values)
}

#[utoipa::path(
    get,
    path = "/prometheus/api/v1/series",
    tag = "prometheus",
    summary = "Series matching selectors",
    params(
        ("match[]" = inline(Vec<SelectorText>), Query, description = "Series selectors; at least one", min_items = 1, example = json!(["sperform_cpu_percent{server=~\"web-.*\"}"])),
        ("start" = inline(Option<String>), Query, description = "Accepted, as Prometheus takes it, and ignored: the series of every time are listed."),
        ("end" = inline(Option<String>), Query, description = "Accepted and ignored, as `start`."),
    ),
    responses(
        SeriesAnswer,
        Unauthorized,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/series?<params..>")]
pub async fn series_get(_auth: Read, params: Params, store: &State<Store>) -> Answer {
    Answer::from(series(store, params).await)
}

#[utoipa::path(
    post,
    path = "/prometheus/api/v1/series",
    tag = "prometheus",
    summary = "Series matching selectors (form body)",
    request_body(content = PromSeriesForm, content_type = "application/x-www-form-urlencoded", description = "The same parameters as the GET form, as a form body"),
    responses(
        SeriesAnswer,
        Unauthorized,
        UnsupportedMediaType,
        PromFailures,
    ),
    security((), ("read_token" = []))
)]
#[rocket::post("/series", data = "<params>")]
pub async fn series_post(_auth: Read, params: Form<Params>, store: &State<Store>) -> Answer {
    Answer::from(series(store, params.into_inner()).await)
}

#[utoipa::path(
    get,
    path = "/prometheus/api/v1/status/buildinfo",
    tag = "prometheus",
    summary = "Build information, as Prometheus reports it",
    responses(
        (status = 200, description = "Success, in Prometheus's envelope", body = PromSuccessBody<BuildInfo>),
        Unauthorized,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/status/buildinfo")]
pub fn buildinfo(_auth: Read) -> Answer {
    Answer::from(Ok(BuildInfo {
        version: PROMETHEUS_VERSION,
        revision: format!("sperform {}", env!("CARGO_PKG_VERSION")),
        branch: "",
        build_user: "",
        build_date: "",
        go_version: "",
    }))
}

/// A successful answer, in Prometheus's envelope: `{"status": "success",
/// "data": ...}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PromSuccessBody<T> {
    /// Always `success`.
    #[schema(value_type = String, examples("success"))]
    status: &'static str,
    data: T,
}

/// A failure, in Prometheus's envelope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromErrorBody {
    /// Always `error`.
    #[schema(value_type = String, examples("error"))]
    status: &'static str,
    /// `bad_data` (400: a bad parameter or unsupported PromQL),
    /// `execution` (422), `unavailable` (503) or `internal` (500).
    #[schema(value_type = String, examples("bad_data"))]
    error_type: &'static str,
    /// What went wrong.
    error: String,
}

/// The result of a query: `{"resultType": ..., "result": ...}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryData {
    /// A number (an instant query of a scalar expression).
    Scalar(Point),
    /// One point per series (an instant query).
    Vector(Vec<InstantSeries>),
    /// Points at every step per series (a range query).
    Matrix(Vec<RangeSeries>),
}

/// A series' labels and its value at the evaluation time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstantSeries {
    #[schema(value_type = HashMap<String, String>)]
    metric: Labels,
    value: Point,
}

/// A series' labels and its values at each step.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RangeSeries {
    #[schema(value_type = HashMap<String, String>)]
    metric: Labels,
    values: Vec<Point>,
}

/// A series' label set, as `series` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = HashMap<String, String>)]
pub struct SeriesLabels(Labels);

/// What `status/buildinfo` answers, in Prometheus's field names.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    /// The Prometheus version whose API this follows.
    #[schema(value_type = String)]
    version: &'static str,
    /// `sperform` and its version.
    revision: String,
    #[schema(value_type = String)]
    branch: &'static str,
    #[schema(value_type = String)]
    build_user: &'static str,
    #[schema(value_type = String)]
    build_date: &'static str,
    #[schema(value_type = String)]
    go_version: &'static str,
}

/// `[<Unix seconds>, "<value>"]`, both as Prometheus writes them: the time
/// a number with the milliseconds, if any, as three digits, the value a
/// string (`NaN`, `+Inf` included).
#[derive(Debug, Clone, Copy)]
pub struct Point {
    time_ms: i64,
    value: f64,
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A float would drop the trailing zeros of `1700000000.050`.
        let time = RawValue::from_string(timestamp(self.time_ms)).map_err(S::Error::custom)?;
        let mut pair = serializer.serialize_tuple(2)?;
        pair.serialize_element(&time)?;
        pair.serialize_element(&format_value(self.value))?;
        pair.end()
    }
}

impl utoipa::PartialSchema for Point {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .description(Some(
                "`[<Unix seconds>, \"<value>\"]`: the time a number, the value a string",
            ))
            .items(
                OneOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Number))
                    .item(ObjectBuilder::new().schema_type(Type::String)),
            )
            .min_items(Some(2))
            .max_items(Some(2))
            .into()
    }
}

impl utoipa::ToSchema for Point {}

/// A failure in Prometheus's terms: its `errorType` and HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct PromError {
    status: Status,
    error_type: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> Self {
        PromError {
            status: Status::BadRequest,
            error_type: "bad_data",
            message: message.into(),
        }
    }

    fn invalid_parameter(name: &str, message: &str) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {message}"))
    }

    fn internal() -> Self {
        PromError {
            status: Status::InternalServerError,
            error_type: "internal",
            message: "the database failed; see the daemon's log".to_owned(),
        }
    }
}

impl From<QueryError> for PromError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::BadData(message) => Self::bad_data(message),
            QueryError::Execution(message) => PromError {
                status: Status::UnprocessableEntity,
                error_type: "execution",
                message,
            },
        }
    }
}

impl From<StoreError> for PromError {
    fn from(err: StoreError) -> Self {
        match StoreFailure::classify(err) {
            StoreFailure::Internal(_) => PromError::internal(),
            StoreFailure::QueueFull(err)
            | StoreFailure::ShuttingDown(err)
            | StoreFailure::Transient(err) => PromError::unavailable(&err),
        }
    }
}

impl PromError {
    fn unavailable(err: &StoreError) -> Self {
        PromError {
            status: Status::ServiceUnavailable,
            error_type: "unavailable",
            message: format!("the database is busy, try again: {err}"),
        }
    }
}

/// The successful answers of the Prometheus-compatible routes, for the
/// OpenAPI document. Documentation only: never constructed.
#[allow(dead_code, reason = "documentation only: never constructed")]
#[derive(utoipa::IntoResponses)]
pub enum QueryAnswer {
    /// Success, in Prometheus's envelope
    #[response(status = 200)]
    Success(PromSuccessBody<QueryData>),
}

#[allow(dead_code, reason = "documentation only: never constructed")]
#[derive(utoipa::IntoResponses)]
pub enum NamesAnswer {
    /// Success, in Prometheus's envelope: label names or values
    #[response(status = 200)]
    Success(PromSuccessBody<Vec<String>>),
}

#[allow(dead_code, reason = "documentation only: never constructed")]
#[derive(utoipa::IntoResponses)]
pub enum SeriesAnswer {
    /// Success, in Prometheus's envelope: label sets
    #[response(status = 200)]
    Success(PromSuccessBody<Vec<SeriesLabels>>),
}

/// The errors of the Prometheus-compatible routes, in Prometheus's
/// envelope, for the OpenAPI document. Documentation only: never
/// constructed.
#[allow(dead_code, reason = "documentation only: never constructed")]
#[derive(utoipa::IntoResponses)]
pub enum PromFailures {
    /// `bad_data`: a bad parameter, or PromQL that is malformed or not supported
    #[response(status = 400)]
    BadData(PromErrorBody),
    /// `execution`: the query cannot run as asked (too many series or samples, or a result with duplicate label sets)
    #[response(status = 422)]
    Execution(PromErrorBody),
    /// `unavailable`: the database is busy; try again
    #[response(status = 503)]
    Unavailable(PromErrorBody),
    /// `internal`: storage failure; see the daemon's log
    #[response(status = 500)]
    Internal(PromErrorBody),
}

/// A response in Prometheus's envelope: `PromSuccessBody` or
/// `PromErrorBody`, serialised.
pub struct Answer {
    status: Status,
    body: Vec<u8>,
}

impl<T: Serialize> From<Result<T, PromError>> for Answer {
    fn from(result: Result<T, PromError>) -> Self {
        let success = result.and_then(|data| {
            serde_json::to_vec(&PromSuccessBody {
                status: "success",
                data,
            })
            .map_err(|err| {
                log::error!("could not serialise a Prometheus API answer: {err}");
                PromError::internal()
            })
        });
        match success {
            Ok(body) => Answer {
                status: Status::Ok,
                body,
            },
            Err(err) => Answer {
                status: err.status,
                body: error_body(err),
            },
        }
    }
}

/// `PromErrorBody` of `err`, serialised.
fn error_body(err: PromError) -> Vec<u8> {
    let body = PromErrorBody {
        status: "error",
        error_type: err.error_type,
        error: err.message,
    };
    // A struct of strings always serialises; the fallback is never sent.
    serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"status\":\"error\"}".to_vec())
}

impl<'r> Responder<'r, 'static> for Answer {
    fn respond_to(self, _request: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .status(self.status)
            .header(ContentType::JSON)
            .sized_body(self.body.len(), Cursor::new(self.body))
            .ok()
    }
}

async fn instant_query(store: &Store, params: Params) -> Result<QueryData, PromError> {
    let query = parse_query(params.query.as_deref())?;
    let time = match params.time {
        Some(Parsed(time, _)) => time?,
        None => store.now().millis(),
    };
    let steps = Steps::instant(time);
    let data = match run(store, query, steps).await? {
        Outcome::Scalar(values) => QueryData::Scalar(Point {
            time_ms: time,
            value: values.first().copied().unwrap_or(f64::NAN),
        }),
        Outcome::Series(series) => QueryData::Vector(
            series
                .into_iter()
                .filter_map(|series| {
                    let &(time_ms, value) = series.points.first()?;
                    Some(InstantSeries {
                        metric: series.labels,
                        value: Point { time_ms, value },
                    })
                })
                .collect(),
        ),
    };
    Ok(data)
}

async fn range_query(store: &Store, params: Params) -> Result<QueryData, PromError> {
    let query = parse_query(params.query.as_deref())?;
    let start = Parsed::required(params.start, "start")?;
    let end = Parsed::required(params.end, "end")?;
    let step = Parsed::required(params.step, "step")?;
    let steps = Steps::range(start, end, step)?;
    let series = match run(store, query, steps).await? {
        Outcome::Scalar(values) => vec![eval::Series {
            labels: Labels::new(),
            points: values
                .into_iter()
                .enumerate()
                .map(|(index, value)| (steps.time(index), value))
                .collect(),
        }],
        Outcome::Series(series) => series,
    };
    Ok(QueryData::Matrix(
        series
            .into_iter()
            .map(|series| RangeSeries {
                metric: series.labels,
                values: series
                    .points
                    .into_iter()
                    .map(|(time_ms, value)| Point { time_ms, value })
                    .collect(),
            })
            .collect(),
    ))
}

/// Reads what `query` needs and evaluates it off the async threads.
async fn run(store: &Store, query: Query, steps: Steps) -> Result<Outcome, PromError> {
    let names = store.server_names().await?;
    let servers = query.servers_read(&names);
    let data: Vec<ServerSamples> = if servers.is_empty() {
        Vec::new()
    } else {
        let after = steps.start.saturating_sub(query.lookback_ms());
        store
            .raw_samples(servers, after, steps.end(), MAX_SAMPLES_READ)
            .await?
            .ok_or_else(|| {
                PromError::from(QueryError::Execution(format!(
                    "query processing would load too many samples into memory in query \
                     execution (more than {MAX_SAMPLES_READ} stored samples); narrow the \
                     selector or shorten the range"
                )))
            })?
    };
    let outcome = tokio::task::spawn_blocking(move || query.evaluate(&data, &steps))
        .await
        .map_err(|err| {
            log::error!("a Prometheus API query failed: {err}");
            PromError::internal()
        })??;
    Ok(outcome)
}

async fn label_names(store: &Store, params: Params) -> Result<Vec<String>, PromError> {
    let series = selected_series(store, &params.matches, false).await?;
    let mut names: Vec<String> = series.into_iter().flat_map(Labels::into_keys).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

async fn values_of_label(
    store: &Store,
    name: LabelName,
    params: Params,
) -> Result<Vec<String>, PromError> {
    let series = selected_series(store, &params.matches, false).await?;
    let mut values: Vec<String> = series
        .into_iter()
        .filter_map(|mut labels| labels.remove(&name.0))
        .collect();
    values.sort();
    values.dedup();
    Ok(values)
}

async fn series(store: &Store, params: Params) -> Result<Vec<SeriesLabels>, PromError> {
    let series = selected_series(store, &params.matches, true).await?;
    Ok(series.into_iter().map(SeriesLabels).collect())
}

/// A label name from the path: a letter or `_`, then letters, digits and
/// `_`.
#[derive(Debug)]
pub struct LabelName(String);

impl<'a> FromParam<'a> for LabelName {
    type Error = PromError;

    fn from_param(name: &'a str) -> Result<Self, PromError> {
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
        }
        Ok(LabelName(name.to_owned()))
    }
}

/// The stored series the `match[]` selectors select (every series when
/// there are none, unless `required`).
async fn selected_series(
    store: &Store,
    matches: &[String],
    required: bool,
) -> Result<Vec<Labels>, PromError> {
    if required && matches.is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let selectors = if matches.is_empty() {
        vec![Selector::parse("{__name__=~\".+\"}")?]
    } else {
        matches
            .iter()
            .map(|text| {
                Selector::parse(text)
                    .map_err(|err| PromError::invalid_parameter("match[]", err.message()))
            })
            .collect::<Result<_, _>>()?
    };
    let names = store.server_names().await?;
    let series = eval::matching_series(&selectors, &names);
    if series.len() > eval::MAX_SERIES {
        return Err(PromError::from(QueryError::Execution(format!(
            "more than {} series match; narrow the selector",
            eval::MAX_SERIES
        ))));
    }
    Ok(series)
}

fn parse_query(text: Option<&str>) -> Result<Query, PromError> {
    Query::parse(text.unwrap_or("")).map_err(|err| match err {
        QueryError::BadData(message) => PromError::invalid_parameter("query", &message),
        other => PromError::from(other),
    })
}

/// A time as Prometheus takes it: Unix seconds (fractions rounded to the
/// millisecond) or RFC 3339. Returns Unix milliseconds.
pub fn parse_time(name: &str, text: &str) -> Result<i64, PromError> {
    let invalid = || {
        PromError::invalid_parameter(name, &format!("cannot parse {text:?} to a valid timestamp"))
    };
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() || seconds.abs() > 9.2e15 {
            return Err(invalid());
        }
        let whole = seconds.trunc();
        let millis = ((seconds - whole) * 1000.0).round();
        return Ok(whole as i64 * 1000 + millis as i64);
    }
    let time = DateTime::parse_from_rfc3339(text).map_err(|_| invalid())?;
    Ok(time.timestamp_millis())
}

/// A step as Prometheus takes it: seconds (fractions allowed) or a duration
/// such as `15s`, `1m` or `1h30m`. Returns milliseconds.
pub fn parse_step(text: &str) -> Result<i64, PromError> {
    let invalid = || {
        PromError::invalid_parameter(
            "step",
            &format!("cannot parse {text:?} to a valid duration"),
        )
    };
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() || seconds.abs() > 9.2e9 {
            return Err(invalid());
        }
        // Prometheus keeps nanoseconds and evaluates in milliseconds.
        return Ok((seconds * 1e9) as i64 / 1_000_000);
    }
    let duration = promql_parser::util::parse_duration(text).map_err(|_| invalid())?;
    i64::try_from(duration.as_millis()).map_err(|_| invalid())
}

/// Unix seconds with the milliseconds, if any, as three digits
/// (`1700000000`, `1700000000.250`), as Prometheus writes them.
pub fn timestamp(time_ms: i64) -> String {
    let sign = if time_ms < 0 { "-" } else { "" };
    let magnitude = time_ms.unsigned_abs();
    let (seconds, millis) = (magnitude / 1000, magnitude % 1000);
    if millis == 0 {
        format!("{sign}{seconds}")
    } else {
        format!("{sign}{seconds}.{millis:03}")
    }
}

/// The shortest decimal that reads back as `value`, never in exponent
/// form, as Go's `FormatFloat(value, 'f', -1, 64)` writes it.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_seconds_or_rfc3339() {
        assert_eq!(parse_time("time", "1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("time", "1700000000.2504").unwrap(),
            1_700_000_000_250
        );
        assert_eq!(
            parse_time("time", "2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_time("time", "2023-11-15T00:13:20+02:00").unwrap(),
            1_700_000_000_000
        );
        let err = parse_time("start", "yesterday").unwrap_err();
        assert_eq!(
            err.message,
            "invalid parameter \"start\": cannot parse \"yesterday\" to a valid timestamp"
        );
    }

    #[test]
    fn steps_are_seconds_or_durations() {
        assert_eq!(parse_step("15").unwrap(), 15_000);
        assert_eq!(parse_step("0.5").unwrap(), 500);
        assert_eq!(parse_step("1m").unwrap(), 60_000);
        assert_eq!(parse_step("1h30m").unwrap(), 5_400_000);
        assert!(parse_step("soon").is_err());
        assert!(parse_step("").is_err());
    }

    #[test]
    fn points_are_written_as_prometheus_writes_them() {
        let point = |time_ms, value| serde_json::to_string(&Point { time_ms, value }).unwrap();
        assert_eq!(point(1_700_000_000_000, 65.0), "[1700000000,\"65\"]");
        assert_eq!(point(1_700_000_000_050, 12.5), "[1700000000.050,\"12.5\"]");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(timestamp(-1_500), "-1.500");
    }

    fn body(answer: Answer) -> (u16, String) {
        (
            answer.status.code,
            String::from_utf8(answer.body).expect("UTF-8"),
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|&(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    #[test]
    fn envelopes_are_written_byte_for_byte_as_prometheus_writes_them() {
        let vector = QueryData::Vector(vec![InstantSeries {
            metric: labels(&[("__name__", "sperform_cpu_percent"), ("server", "db:2.x_y")]),
            value: Point {
                time_ms: 1_796_685_300_500,
                value: 0.1,
            },
        }]);
        assert_eq!(
            body(Answer::from(Ok(vector))),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"sperform_cpu_percent","server":"db:2.x_y"},"value":[1796685300.500,"0.1"]}]}}"#.to_owned()
            )
        );
        let matrix = QueryData::Matrix(vec![RangeSeries {
            metric: Labels::new(),
            values: vec![
                Point {
                    time_ms: 1_796_684_400_000,
                    value: 5.0,
                },
                Point {
                    time_ms: 1_796_684_461_250,
                    value: f64::NEG_INFINITY,
                },
            ],
        }]);
        assert_eq!(
            body(Answer::from(Ok(matrix))).1,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1796684400,"5"],[1796684461.250,"-Inf"]]}]}}"#
        );
        let scalar = QueryData::Scalar(Point {
            time_ms: 1_796_685_300_000,
            value: f64::NAN,
        });
        assert_eq!(
            body(Answer::from(Ok(scalar))).1,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1796685300,"NaN"]}}"#
        );
        let names = vec!["__name__".to_owned(), "a\"b".to_owned()];
        assert_eq!(
            body(Answer::from(Ok(names))).1,
            r#"{"status":"success","data":["__name__","a\"b"]}"#
        );
        let series = vec![SeriesLabels(labels(&[("server", "web-1")]))];
        assert_eq!(
            body(Answer::from(Ok(series))).1,
            r#"{"status":"success","data":[{"server":"web-1"}]}"#
        );
        let error: Result<Vec<String>, PromError> =
            Err(PromError::bad_data("invalid label name: \"0bad\""));
        assert_eq!(
            body(Answer::from(error)),
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"invalid label name: \"0bad\""}"#
                    .to_owned()
            )
        );
        let internal: Result<Vec<String>, PromError> = Err(PromError::internal());
        assert_eq!(
            body(Answer::from(internal)),
            (
                500,
                r#"{"status":"error","errorType":"internal","error":"the database failed; see the daemon's log"}"#
                    .to_owned()
            )
        );
    }

    #[test]
    fn buildinfo_names_the_prometheus_version_it_follows() {
        assert_eq!(
            body(buildinfo(Read)).1,
            format!(
                r#"{{"status":"success","data":{{"version":"3.0.0","revision":"sperform {}","branch":"","buildUser":"","buildDate":"","goVersion":""}}}}"#,
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn label_names_are_checked_in_the_path() {
        assert!(LabelName::from_param("__name__").is_ok());
        assert!(LabelName::from_param("server_2").is_ok());
        let err = LabelName::from_param("0bad").unwrap_err();
        assert_eq!(err.message, "invalid label name: \"0bad\"");
        assert_eq!(err.status, Status::BadRequest);
    }

    #[test]
    fn store_failures_take_their_status_from_the_shared_mapping() {
        let errors: [fn() -> StoreError; 2] =
            [|| StoreError::QueueFull, || StoreError::WriterStopped];
        for error in errors {
            let expected = format!("the database is busy, try again: {}", error());
            let status = StoreFailure::classify(error()).status();
            let prom = PromError::from(error());
            assert_eq!(prom.status, status);
            assert_eq!(prom.status, Status::ServiceUnavailable);
            assert_eq!(prom.error_type, "unavailable");
            assert_eq!(prom.message, expected);
        }
    }
}
