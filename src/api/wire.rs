//! The JSON shapes of API v1: request bodies in, response bodies out, and
//! the mapping of JSON parse errors to statuses (syntax 400, data 422).

use std::cell::{Cell, RefCell};
use std::fmt;

use rocket::http::Status;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

use crate::error::ApiError;
use crate::model::{
    Bucket, LoadReport, MAX_BATCH_LEN, Sample, ServerName, ServerSummary, Step, TimePolicy,
    Timestamp, ValidationError,
};

/// A time as clients may send it: an RFC 3339 string with any offset, or a
/// JSON number of Unix seconds (fractions allowed).
#[derive(Debug, Clone, Copy)]
struct WireTime(Timestamp);

impl utoipa::PartialSchema for WireTime {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "A time: an RFC 3339 string with any offset, or a number of Unix seconds \
                 (fractions allowed).",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(Some("RFC 3339, any offset"))
                    .examples(["2026-11-27T21:11:05Z"]),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .description(Some("Unix seconds, fractions allowed"))
                    .examples([1_795_727_465.25]),
            )
            .into()
    }
}

impl utoipa::ToSchema for WireTime {
    fn name() -> std::borrow::Cow<'static, str> {
        "Time".into()
    }
}

impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;

        impl Visitor<'_> for TimeVisitor {
            type Value = WireTime;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time string or a number of Unix seconds")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<WireTime, E> {
                Timestamp::parse_rfc3339(text)
                    .map(WireTime)
                    .map_err(E::custom)
            }

            fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<WireTime, E> {
                Timestamp::from_unix_seconds(seconds)
                    .map(WireTime)
                    .map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<WireTime, E> {
                self.visit_f64(seconds as f64)
            }

            fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<WireTime, E> {
                self.visit_f64(seconds as f64)
            }
        }

        deserializer.deserialize_any(TimeVisitor)
    }
}

/// Accepts `T` only when written as a JSON object. Serde's derived structs
/// also take an array of field values (`[12.5, 40]`), which no client
/// should rely on.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// Body of `POST /api/v1/servers/<name>/samples`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SampleBody {
    /// CPU busy share in percent.
    #[schema(minimum = 0.0, maximum = 100.0)]
    cpu: f64,
    /// RAM in use in percent.
    #[schema(minimum = 0.0, maximum = 100.0)]
    ram: f64,
    /// When the sample was taken; the time of arrival if left out. At most
    /// 5 minutes ahead of the daemon's clock and within the retention period.
    #[serde(default)]
    time: Option<WireTime>,
}

/// One entry of `POST /api/v1/samples`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchEntry {
    /// Server name: 1 to 253 characters from `A-Z a-z 0-9 . _ : -`.
    #[schema(min_length = 1, max_length = 253, pattern = r"^[A-Za-z0-9._:-]+$")]
    server: String,
    /// CPU busy share in percent.
    #[schema(minimum = 0.0, maximum = 100.0)]
    cpu: f64,
    /// RAM in use in percent.
    #[schema(minimum = 0.0, maximum = 100.0)]
    ram: f64,
    /// When the sample was taken; the time of arrival if left out. At most
    /// 5 minutes ahead of the daemon's clock and within the retention period.
    #[serde(default)]
    time: Option<WireTime>,
}

impl BatchEntry {
    fn into_sample(self, policy: &TimePolicy) -> Result<Sample, ValidationError> {
        let server = ServerName::parse(&self.server)?;
        Sample::parse(server, self.cpu, self.ram, self.time.map(|t| t.0), policy)
    }
}

/// Parses and validates the body of a single-sample POST.
pub fn parse_sample(
    body: &[u8],
    server: ServerName,
    policy: &TimePolicy,
) -> Result<Sample, ApiError> {
    let Object(body): Object<SampleBody> =
        serde_json::from_slice(body).map_err(|err| json_error(&err, ""))?;
    Ok(Sample::parse(
        server,
        body.cpu,
        body.ram,
        body.time.map(|t| t.0),
        policy,
    )?)
}

/// Parses and validates a batch body: a JSON array of 1 to 10,000 entries.
/// The error names the index of the first bad entry.
pub fn parse_batch(body: &[u8], policy: &TimePolicy) -> Result<Vec<Sample>, ApiError> {
    let progress = BatchProgress::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = BatchSeed {
        policy,
        progress: &progress,
    }
    .deserialize(&mut deserializer)
    .and_then(|samples| deserializer.end().map(|()| samples));
    let entry_prefix = || match progress.entered.get() {
        true => format!("entry {}: ", progress.index.get()),
        false => String::new(),
    };
    match parsed {
        Ok(samples) if samples.is_empty() => Err(ApiError::unprocessable(format!(
            "a batch must hold 1 to {MAX_BATCH_LEN} samples, got none"
        ))),
        Ok(samples) => Ok(samples),
        Err(err) => match progress.refusal.take() {
            Some(refusal) => Err(ApiError::unprocessable(format!(
                "{}{refusal}",
                entry_prefix()
            ))),
            None => Err(json_error(&err, &entry_prefix())),
        },
    }
}

/// Parses a time given in query parameter `name`, in either request form.
pub fn parse_time_param(name: &str, text: &str) -> Result<Timestamp, ApiError> {
    let parsed = match text.parse::<f64>() {
        Ok(seconds) => Timestamp::from_unix_seconds(seconds),
        // A `+` of an offset arrives as a space unless sent as %2B.
        Err(_) => Timestamp::parse_rfc3339(&text.replace(' ', "+")),
    };
    parsed.map_err(|err| ApiError::unprocessable(format!("query parameter `{name}`: {err}")))
}

/// Maps a serde_json failure: broken JSON is a 400, well-formed JSON of the
/// wrong shape a 422.
fn json_error(err: &serde_json::Error, prefix: &str) -> ApiError {
    match err.classify() {
        Category::Data => ApiError::unprocessable(format!("{prefix}{err}")),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(Status::BadRequest, format!("malformed JSON: {prefix}{err}"))
        }
    }
}

/// Where batch parsing got to, so that an error can name its entry.
#[derive(Default)]
struct BatchProgress {
    /// Whether parsing reached the inside of the array.
    entered: Cell<bool>,
    index: Cell<usize>,
    /// A refusal from validation (not from JSON), kept unformatted.
    refusal: RefCell<Option<String>>,
}

/// Deserializes and validates the batch array entry by entry, so errors come
/// in order and a bad entry stops the parse at once.
struct BatchSeed<'a> {
    policy: &'a TimePolicy,
    progress: &'a BatchProgress,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<Sample>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<Sample>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Sample>, A::Error> {
        self.progress.entered.set(true);
        let mut samples = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH_LEN));
        loop {
            self.progress.index.set(samples.len());
            let Some(Object(entry)) = seq.next_element::<Object<BatchEntry>>()? else {
                return Ok(samples);
            };
            if samples.len() == MAX_BATCH_LEN {
                return Err(self.refuse(format!(
                    "a batch must hold 1 to {MAX_BATCH_LEN} samples; this one holds more"
                )));
            }
            match entry.into_sample(self.policy) {
                Ok(sample) => samples.push(sample),
                Err(err) => return Err(self.refuse(err.to_string())),
            }
        }
    }
}

impl BatchSeed<'_> {
    fn refuse<E: de::Error>(&self, reason: String) -> E {
        self.progress.refusal.replace(Some(reason));
        E::custom("entry refused")
    }
}

/// Response of `GET /api/v1/servers/<name>/load`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoadBody {
    server: String,
    /// The end of the views (RFC 3339, UTC).
    at: String,
    /// 60 one-minute buckets, oldest first; the last holds `at`.
    by_minute: Vec<BucketBody>,
    /// 24 one-hour buckets, oldest first; the last holds `at`.
    by_hour: Vec<BucketBody>,
}

/// One bucket: means, extremes and count of the samples whose time is in
/// `[start, start + width)`; the value fields are `null` when it is empty.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BucketBody {
    /// The bucket's start (RFC 3339, UTC, whole seconds).
    #[schema(value_type = String)]
    start: BucketStart,
    /// Mean CPU percent.
    cpu: Option<f64>,
    /// Mean RAM percent.
    ram: Option<f64>,
    /// Lowest CPU percent.
    cpu_min: Option<f64>,
    /// Highest CPU percent.
    cpu_max: Option<f64>,
    /// Lowest RAM percent.
    ram_min: Option<f64>,
    /// Highest RAM percent.
    ram_max: Option<f64>,
    /// How many samples the bucket holds.
    samples: u64,
}

impl From<&Bucket> for BucketBody {
    fn from(bucket: &Bucket) -> Self {
        BucketBody {
            start: BucketStart(bucket.start),
            cpu: bucket.cpu,
            ram: bucket.ram,
            cpu_min: bucket.cpu_min,
            cpu_max: bucket.cpu_max,
            ram_min: bucket.ram_min,
            ram_max: bucket.ram_max,
            samples: bucket.samples,
        }
    }
}

/// A bucket start, written as RFC 3339 in whole seconds straight into the
/// answer: an answer holds dozens of them.
#[derive(Debug)]
pub struct BucketStart(Timestamp);

impl Serialize for BucketStart {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.rfc3339_seconds_bytes() {
            Some(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => serializer.serialize_str(text),
                Err(_) => serializer.serialize_str(&self.0.to_rfc3339_seconds()),
            },
            None => serializer.serialize_str(&self.0.to_rfc3339_seconds()),
        }
    }
}

/// Response of `GET /api/v1/servers/<name>/load/range`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RangeBody {
    server: String,
    /// `from` as asked (RFC 3339, UTC).
    from: String,
    /// `to` as asked (RFC 3339, UTC).
    to: String,
    /// The step's label, such as `5m` (`300` is answered as `5m`).
    step: String,
    /// Oldest first and dense, from the one holding `from` to the one holding `to`.
    buckets: Vec<BucketBody>,
}

impl RangeBody {
    pub fn new(
        server: &ServerName,
        from: Timestamp,
        to: Timestamp,
        step: Step,
        buckets: &[Bucket],
    ) -> Self {
        RangeBody {
            server: server.to_string(),
            from: from.to_rfc3339(),
            to: to.to_rfc3339(),
            step: step.label(),
            buckets: buckets.iter().map(BucketBody::from).collect(),
        }
    }
}

/// Reads a required query parameter that holds a time.
pub fn required_time_param(name: &str, text: Option<&str>) -> Result<Timestamp, ApiError> {
    let Some(text) = text else {
        return Err(ApiError::unprocessable(format!(
            "query parameter `{name}` is missing"
        )));
    };
    parse_time_param(name, text)
}

impl From<&LoadReport> for LoadBody {
    fn from(report: &LoadReport) -> Self {
        LoadBody {
            server: report.server.to_string(),
            at: report.at.to_rfc3339(),
            by_minute: report.by_minute.iter().map(BucketBody::from).collect(),
            by_hour: report.by_hour.iter().map(BucketBody::from).collect(),
        }
    }
}

/// One entry of `GET /api/v1/servers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerBody {
    name: String,
    first_seen: Option<String>,
    last_seen: Option<String>,
    samples: u64,
}

impl From<ServerSummary> for ServerBody {
    fn from(summary: ServerSummary) -> Self {
        ServerBody {
            name: summary.name,
            first_seen: summary.first_seen.map(Timestamp::to_rfc3339),
            last_seen: summary.last_seen.map(Timestamp::to_rfc3339),
            samples: summary.samples,
        }
    }
}

/// Response of `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
