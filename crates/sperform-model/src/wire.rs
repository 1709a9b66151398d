//! The JSON shapes of API v1 that more than one program uses: the sample
//! and batch entry the daemon takes (and the agent spools and sends, and
//! testgen sends), and the `/load`, `/load/range` and server list answers
//! the daemon gives (and the agent and testgen read). One definition, so
//! the programs cannot drift apart.
//!
//! With the `openapi` feature the types also describe themselves to
//! utoipa, for the daemon's OpenAPI document.

use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{
    Bucket, LoadReport, Sample, ServerName, ServerSummary, Step, TimePolicy, Timestamp,
    ValidationError,
};

/// A time as clients may send it: an RFC 3339 string with any offset, or a
/// JSON number of Unix seconds (fractions allowed). Reading keeps the form
/// only as far as text or number; writing uses the form the variant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireTime {
    /// RFC 3339 in UTC with a `Z`, as the daemon writes times.
    Utc(Timestamp),
    /// RFC 3339 at a fixed offset, in seconds east of UTC, with
    /// milliseconds.
    Offset(Timestamp, i32),
    /// A number of Unix seconds.
    UnixSeconds(Timestamp),
}

impl WireTime {
    pub fn timestamp(self) -> Timestamp {
        match self {
            WireTime::Utc(time) | WireTime::Offset(time, _) | WireTime::UnixSeconds(time) => time,
        }
    }
}

impl Serialize for WireTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            WireTime::Utc(time) => serializer.serialize_str(&time.to_rfc3339()),
            WireTime::Offset(time, east_seconds) => match with_offset(time, east_seconds) {
                Some(text) => serializer.serialize_str(&text),
                None => serializer.serialize_str(&time.to_rfc3339()),
            },
            WireTime::UnixSeconds(time) => serializer.serialize_f64(time.millis() as f64 / 1000.0),
        }
    }
}

/// RFC 3339 at `east_seconds` from UTC, with milliseconds; `None` for an
/// offset chrono cannot represent.
fn with_offset(time: Timestamp, east_seconds: i32) -> Option<String> {
    let offset = FixedOffset::east_opt(east_seconds)?;
    let utc = DateTime::from_timestamp_millis(time.millis())?;
    Some(
        utc.with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::Millis, false),
    )
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
                    .map(WireTime::Utc)
                    .map_err(E::custom)
            }

            fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<WireTime, E> {
                Timestamp::from_unix_seconds(seconds)
                    .map(WireTime::UnixSeconds)
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

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for WireTime {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
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

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for WireTime {
    fn name() -> std::borrow::Cow<'static, str> {
        "Time".into()
    }
}

/// Body of `POST /api/v1/servers/<name>/samples`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SampleBody {
    /// CPU busy share in percent.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 100.0))]
    pub cpu: f64,
    /// RAM in use in percent.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 100.0))]
    pub ram: f64,
    /// When the sample was taken; the time of arrival if left out. At most
    /// 5 minutes ahead of the daemon's clock and within the retention period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<WireTime>,
}

impl SampleBody {
    /// The sample of `server` this body describes, validated.
    pub fn into_sample(
        self,
        server: ServerName,
        policy: &TimePolicy,
    ) -> Result<Sample, ValidationError> {
        Sample::parse(
            server,
            self.cpu,
            self.ram,
            self.time.map(WireTime::timestamp),
            policy,
        )
    }
}

// Also one line of the agent's spool. The doc comment is the OpenAPI description.
/// One entry of `POST /api/v1/samples`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchEntry {
    /// Server name: 1 to 253 characters from `A-Z a-z 0-9 . _ : -`.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 253, pattern = r"^[A-Za-z0-9._:-]+$")
    )]
    pub server: String,
    /// CPU busy share in percent.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 100.0))]
    pub cpu: f64,
    /// RAM in use in percent.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 100.0))]
    pub ram: f64,
    /// When the sample was taken; the time of arrival if left out. At most
    /// 5 minutes ahead of the daemon's clock and within the retention period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<WireTime>,
}

impl BatchEntry {
    /// A stored sample as an entry, its time in UTC as the daemon writes it.
    pub fn of(sample: &Sample) -> Self {
        BatchEntry {
            server: sample.server.as_str().to_owned(),
            cpu: sample.cpu,
            ram: sample.ram,
            time: Some(WireTime::Utc(sample.time)),
        }
    }

    /// The sample this entry describes, validated.
    pub fn into_sample(self, policy: &TimePolicy) -> Result<Sample, ValidationError> {
        let server = ServerName::parse(&self.server)?;
        let body = SampleBody {
            cpu: self.cpu,
            ram: self.ram,
            time: self.time,
        };
        body.into_sample(server, policy)
    }
}

/// Response of `GET /api/v1/servers/<name>/load`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoadBody {
    pub server: String,
    /// The end of the views (RFC 3339, UTC).
    pub at: String,
    /// 60 one-minute buckets, oldest first; the last holds `at`.
    pub by_minute: Vec<BucketBody>,
    /// 24 one-hour buckets, oldest first; the last holds `at`.
    pub by_hour: Vec<BucketBody>,
}

/// One bucket: means, extremes and count of the samples whose time is in
/// `[start, start + width)`; the value fields are `null` when it is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BucketBody {
    /// The bucket's start (RFC 3339, UTC, whole seconds).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub start: BucketStart,
    /// Mean CPU percent.
    pub cpu: Option<f64>,
    /// Mean RAM percent.
    pub ram: Option<f64>,
    /// Lowest CPU percent.
    pub cpu_min: Option<f64>,
    /// Highest CPU percent.
    pub cpu_max: Option<f64>,
    /// Lowest RAM percent.
    pub ram_min: Option<f64>,
    /// Highest RAM percent.
    pub ram_max: Option<f64>,
    /// How many samples the bucket holds.
    pub samples: u64,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketStart(pub Timestamp);

impl Serialize for BucketStart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.rfc3339_seconds_bytes() {
            Some(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => serializer.serialize_str(text),
                Err(_) => serializer.serialize_str(&self.0.to_rfc3339_seconds()),
            },
            None => serializer.serialize_str(&self.0.to_rfc3339_seconds()),
        }
    }
}

impl<'de> Deserialize<'de> for BucketStart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .map(BucketStart)
            .map_err(de::Error::custom)
    }
}

/// Response of `GET /api/v1/servers/<name>/load/range`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RangeBody {
    pub server: String,
    /// `from` as asked (RFC 3339, UTC).
    pub from: String,
    /// `to` as asked (RFC 3339, UTC).
    pub to: String,
    /// The step's label, such as `5m` (`300` is answered as `5m`).
    pub step: String,
    /// Oldest first and dense, from the one holding `from` to the one holding `to`.
    pub buckets: Vec<BucketBody>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerBody {
    pub name: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub samples: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn times_are_written_in_the_form_their_variant_names() {
        let at = time("2026-11-27T19:58:03.250Z");
        let text = |wire: WireTime| serde_json::to_string(&wire).unwrap();
        assert_eq!(text(WireTime::Utc(at)), "\"2026-11-27T19:58:03.250Z\"");
        assert_eq!(
            text(WireTime::Offset(at, 5 * 3600 + 30 * 60)),
            "\"2026-11-28T01:28:03.250+05:30\""
        );
        assert_eq!(text(WireTime::UnixSeconds(at)), "1795809483.25");
        // An offset chrono cannot hold falls back to UTC.
        assert_eq!(
            text(WireTime::Offset(at, 86_400)),
            "\"2026-11-27T19:58:03.250Z\""
        );
    }

    #[test]
    fn times_read_back_as_the_same_instant() {
        let at = time("2026-11-27T19:58:03.250Z");
        for wire in [
            WireTime::Utc(at),
            WireTime::Offset(at, -7 * 3600),
            WireTime::UnixSeconds(at),
        ] {
            let text = serde_json::to_string(&wire).unwrap();
            let back: WireTime = serde_json::from_str(&text).unwrap();
            assert_eq!(back.timestamp(), at, "{text}");
        }
        let err = serde_json::from_str::<WireTime>("true").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid type: boolean `true`, expected an RFC 3339 time string or a number \
             of Unix seconds at line 1 column 4"
        );
    }

    #[test]
    fn an_entry_without_time_is_written_without_the_field() {
        let entry = BatchEntry {
            server: "web-1".to_owned(),
            cpu: 12.5,
            ram: 40.0,
            time: None,
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"server":"web-1","cpu":12.5,"ram":40.0}"#
        );
        let body: SampleBody = serde_json::from_str(r#"{"cpu":1,"ram":2}"#).unwrap();
        assert_eq!(body.time, None);
        assert!(serde_json::from_str::<SampleBody>(r#"{"cpu":1,"ram":2,"x":3}"#).is_err());
    }

    #[test]
    fn a_stored_sample_is_an_entry_in_utc() {
        let sample = Sample {
            server: ServerName::parse("web-1").unwrap(),
            time: time("2025-11-27T19:58:03Z"),
            cpu: 10.25,
            ram: 40.5,
        };
        let entry = BatchEntry::of(&sample);
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"server":"web-1","cpu":10.25,"ram":40.5,"time":"2025-11-27T19:58:03Z"}"#
        );
        let policy = TimePolicy::new(time("2025-11-27T20:00:00Z"), 86_400_000);
        assert_eq!(entry.into_sample(&policy), Ok(sample));
    }

    #[test]
    fn a_load_answer_reads_back_as_written() {
        let start = time("2026-11-27T19:58:00Z");
        let mut full = Bucket::empty(start);
        full.cpu = Some(12.5);
        full.ram = Some(40.0);
        full.cpu_min = Some(10.0);
        full.cpu_max = Some(15.0);
        full.ram_min = Some(40.0);
        full.ram_max = Some(40.0);
        full.samples = 2;
        let report = LoadReport {
            server: ServerName::parse("web-1").unwrap(),
            at: time("2026-11-27T19:58:30.500Z"),
            by_minute: vec![Bucket::empty(start.floor(3_600_000)), full],
            by_hour: vec![],
        };
        let body = LoadBody::from(&report);
        let text = serde_json::to_string(&body).unwrap();
        assert!(
            text.starts_with(
                r#"{"server":"web-1","at":"2026-11-27T19:58:30.500Z","by_minute":[{"start":"2026-11-27T19:00:00Z","cpu":null,"#
            ),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<LoadBody>(&text).unwrap(), body);
        // Extremes left out read as `null`; a start that is no time is refused.
        let bucket: BucketBody =
            serde_json::from_str(r#"{"start":"2026-11-27T19:58:00Z","cpu":1,"ram":2,"samples":3}"#)
                .unwrap();
        assert_eq!((bucket.start, bucket.cpu_min), (BucketStart(start), None));
        assert!(
            serde_json::from_str::<BucketBody>(r#"{"start":"noon","cpu":1,"ram":2,"samples":3}"#)
                .is_err()
        );
    }
}
