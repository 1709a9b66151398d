//! Domain types. Each has a `parse`-style constructor, so a value that exists
//! has passed validation. No I/O and no HTTP or JSON types here.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

/// Longest accepted server name: the longest DNS name.
pub const MAX_SERVER_NAME_LEN: usize = 253;
/// Most entries one batch request may carry.
pub const MAX_BATCH_LEN: usize = 10_000;
/// How far ahead of the daemon's clock a sample time may lie.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

pub const MINUTE_MS: i64 = 60 * 1000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;

/// Why a piece of input was refused. The message is written for the person
/// who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(String);

impl ValidationError {
    pub fn new(message: impl Into<String>) -> Self {
        ValidationError(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

/// A server name: 1 to 253 characters from `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerName(String);

impl ServerName {
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        if name.is_empty() || name.len() > MAX_SERVER_NAME_LEN {
            return Err(ValidationError::new(format!(
                "server name must be 1 to {MAX_SERVER_NAME_LEN} characters long, got {}",
                name.chars().count()
            )));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(ValidationError::new(format!(
                "server name may only contain A-Z a-z 0-9 . _ : - (found {bad:?})"
            )));
        }
        Ok(ServerName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A point in time as whole Unix milliseconds, UTC: the precision we store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// Accepts 1970-01-01 up to the end of year 9999, the range a stored
    /// integer time and an RFC 3339 string can both express.
    pub fn from_millis(millis: i64) -> Result<Self, ValidationError> {
        if (0..=MAX_TIMESTAMP_MS).contains(&millis) {
            Ok(Timestamp(millis))
        } else {
            Err(ValidationError::new(
                "time must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
            ))
        }
    }

    /// Unix seconds, fractions allowed, rounded to the nearest millisecond
    /// (so that 1764273483.25 is .250 and not .249 after float error).
    pub fn from_unix_seconds(seconds: f64) -> Result<Self, ValidationError> {
        let millis = (seconds * 1000.0).round();
        if !millis.is_finite() || millis < 0.0 || millis > MAX_TIMESTAMP_MS as f64 {
            return Err(ValidationError::new(format!(
                "time {seconds} is not a Unix time in seconds between 1970 and 9999"
            )));
        }
        Ok(Timestamp(millis as i64))
    }

    /// An RFC 3339 time with any offset; digits below the millisecond are
    /// dropped.
    pub fn parse_rfc3339(text: &str) -> Result<Self, ValidationError> {
        let parsed = DateTime::parse_from_rfc3339(text).map_err(|err| {
            ValidationError::new(format!(
                "time {text:?} is not an RFC 3339 time such as \"2026-11-27T19:58:03Z\" ({err})"
            ))
        })?;
        Self::from_millis(parsed.timestamp_millis())
    }

    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// The start of the `width_ms` wide, epoch-aligned interval holding `self`.
    pub fn floor(self, width_ms: i64) -> Self {
        Timestamp(self.0 - self.0.rem_euclid(width_ms))
    }

    /// RFC 3339 in UTC with a `Z`, with milliseconds only when they are not zero.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// RFC 3339 in UTC with a `Z`, in whole seconds (for bucket starts).
    pub fn to_rfc3339_seconds(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn to_datetime(self) -> DateTime<Utc> {
        // The constructors keep the value in chrono's range.
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Checks a load percentage: a finite number from 0 to 100 inclusive.
pub fn parse_percent(field: &str, value: f64) -> Result<f64, ValidationError> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(ValidationError::new(format!(
            "{field} must be a number from 0 to 100 (percent), got {value}"
        )))
    }
}

/// The rules a sample's time must meet, fixed at one reading of the clock so
/// that every entry of a batch is judged alike.
#[derive(Debug, Clone, Copy)]
pub struct TimePolicy {
    pub now: Timestamp,
    pub retention_ms: i64,
}

impl TimePolicy {
    pub fn new(now: Timestamp, retention_ms: i64) -> Self {
        TimePolicy { now, retention_ms }
    }

    /// The time to store for a sample: its own, if acceptable, or now.
    pub fn accept(&self, time: Option<Timestamp>) -> Result<Timestamp, ValidationError> {
        let Some(time) = time else {
            return Ok(self.now);
        };
        if time.millis() > self.now.millis() + MAX_CLOCK_SKEW_MS {
            return Err(ValidationError::new(format!(
                "time {time} is more than 5 minutes ahead of the daemon's clock ({})",
                self.now
            )));
        }
        let oldest = self.now.millis() - self.retention_ms;
        if time.millis() < oldest {
            return Err(ValidationError::new(format!(
                "time {time} is older than the retention period (oldest accepted: {})",
                Timestamp(oldest.max(0))
            )));
        }
        Ok(time)
    }
}

/// One validated load sample of one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub server: ServerName,
    pub time: Timestamp,
    pub cpu: f64,
    pub ram: f64,
}

impl Sample {
    pub fn parse(
        server: ServerName,
        cpu: f64,
        ram: f64,
        time: Option<Timestamp>,
        policy: &TimePolicy,
    ) -> Result<Self, ValidationError> {
        Ok(Sample {
            server,
            cpu: parse_percent("cpu", cpu)?,
            ram: parse_percent("ram", ram)?,
            time: policy.accept(time)?,
        })
    }
}

/// The width and number of buckets in one of the two fixed views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketWindow {
    /// Start of the oldest bucket.
    pub start: Timestamp,
    pub width_ms: i64,
    pub count: usize,
    /// Only samples at or before this instant count.
    pub end: Timestamp,
}

impl BucketWindow {
    /// The 60 minutes whose last one holds `at`.
    pub fn minutes_to(at: Timestamp) -> Self {
        Self::ending_at(at, MINUTE_MS, 60)
    }

    /// The 24 hours whose last one holds `at`.
    pub fn hours_to(at: Timestamp) -> Self {
        Self::ending_at(at, HOUR_MS, 24)
    }

    fn ending_at(at: Timestamp, width_ms: i64, count: usize) -> Self {
        let last = at.floor(width_ms).millis();
        let start = last - width_ms * (count as i64 - 1);
        BucketWindow {
            start: Timestamp(start),
            width_ms,
            count,
            end: at,
        }
    }

    pub fn bucket_start(&self, index: usize) -> Timestamp {
        Timestamp(self.start.millis() + self.width_ms * index as i64)
    }
}

/// One bucket's averages; `cpu` and `ram` are `None` when it holds no sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start: Timestamp,
    pub cpu: Option<f64>,
    pub ram: Option<f64>,
    pub samples: u64,
}

impl Bucket {
    pub fn empty(start: Timestamp) -> Self {
        Bucket {
            start,
            cpu: None,
            ram: None,
            samples: 0,
        }
    }
}

/// The answer to "how loaded was this server": 60 minutes and 24 hours.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub server: ServerName,
    pub at: Timestamp,
    pub by_minute: Vec<Bucket>,
    pub by_hour: Vec<Bucket>,
}

/// A known server with the extent of its stored samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSummary {
    pub name: String,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub samples: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_follow_the_character_rules() {
        assert!(ServerName::parse("web-1.example.com:8080_a").is_ok());
        assert!(ServerName::parse(&"a".repeat(253)).is_ok());
        assert!(ServerName::parse(&"a".repeat(254)).is_err());
        assert!(ServerName::parse("").is_err());
        assert!(ServerName::parse("web 1").is_err());
        assert!(ServerName::parse("wéb").is_err());
        assert!(ServerName::parse("a/b").is_err());
    }

    #[test]
    fn seconds_round_to_the_nearest_millisecond() {
        let t = Timestamp::from_unix_seconds(1_764_273_483.25).unwrap();
        assert_eq!(t.millis(), 1_764_273_483_250);
        assert_eq!(t.to_rfc3339(), "2025-11-27T19:58:03.250Z");
        assert!(Timestamp::from_unix_seconds(f64::NAN).is_err());
        assert!(Timestamp::from_unix_seconds(-1.0).is_err());
        assert!(Timestamp::from_unix_seconds(1e300).is_err());
    }

    #[test]
    fn rfc3339_offsets_are_converted_to_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-27T20:58:03.5+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-27T19:58:03.500Z");
        assert_eq!(t.to_rfc3339_seconds(), "2026-11-27T19:58:03Z");
        let whole = Timestamp::parse_rfc3339("2026-11-27T19:58:03Z").unwrap();
        assert_eq!(whole.to_rfc3339(), "2026-11-27T19:58:03Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn windows_end_with_the_bucket_holding_at() {
        let at = Timestamp::parse_rfc3339("2026-11-27T20:00:30Z").unwrap();
        let minutes = BucketWindow::minutes_to(at);
        assert_eq!(minutes.start.to_rfc3339(), "2026-11-27T19:01:00Z");
        assert_eq!(
            minutes.bucket_start(59).to_rfc3339(),
            "2026-11-27T20:00:00Z"
        );
        let hours = BucketWindow::hours_to(at);
        assert_eq!(hours.start.to_rfc3339(), "2026-11-26T21:00:00Z");
        assert_eq!(hours.bucket_start(23).to_rfc3339(), "2026-11-27T20:00:00Z");
    }

    #[test]
    fn time_policy_bounds_the_future_and_the_past() {
        let now = Timestamp::from_millis(10 * 86_400_000).unwrap();
        let policy = TimePolicy::new(now, 7 * 86_400_000);
        let at = |ms: i64| Timestamp::from_millis(ms).unwrap();
        assert_eq!(policy.accept(None).unwrap(), now);
        assert!(
            policy
                .accept(Some(at(now.millis() + MAX_CLOCK_SKEW_MS)))
                .is_ok()
        );
        assert!(
            policy
                .accept(Some(at(now.millis() + MAX_CLOCK_SKEW_MS + 1)))
                .is_err()
        );
        assert!(policy.accept(Some(at(3 * 86_400_000))).is_ok());
        assert!(policy.accept(Some(at(3 * 86_400_000 - 1))).is_err());
    }

    #[test]
    fn percentages_must_be_finite_and_in_range() {
        assert_eq!(parse_percent("cpu", 0.0), Ok(0.0));
        assert_eq!(parse_percent("cpu", 100.0), Ok(100.0));
        assert!(parse_percent("cpu", 100.000_001).is_err());
        assert!(parse_percent("cpu", -0.1).is_err());
        assert!(parse_percent("cpu", f64::INFINITY).is_err());
    }
}
