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

    /// The same text as `to_rfc3339_seconds`, as bytes on the stack, for
    /// writing bucket starts by the thousand without allocating or going
    /// through chrono's formatter; `None` before 1970 (a bucket start can
    /// be).
    pub fn rfc3339_seconds_bytes(self) -> Option<[u8; 20]> {
        if self.0 < 0 {
            return None;
        }
        let seconds = self.0 / 1000;
        let (days, time) = (seconds / 86_400, seconds % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, value: i64, digits: usize| {
            let mut value = value;
            for i in (at..at + digits).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, time / 3600, 2);
        put(14, time / 60 % 60, 2);
        put(17, time % 60, 2);
        Some(out)
    }

    fn to_datetime(self) -> DateTime<Utc> {
        // The constructors keep the value in chrono's range.
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

/// (year, month, day) of a count of days since 1970-01-01 (proleptic
/// Gregorian), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    /// How far back hour-level history reaches (at least `retention_ms`).
    pub history_retention_ms: i64,
}

impl TimePolicy {
    /// A policy without history beyond the raw samples.
    pub fn new(now: Timestamp, retention_ms: i64) -> Self {
        TimePolicy {
            now,
            retention_ms,
            history_retention_ms: retention_ms,
        }
    }

    /// Ranges at steps of whole hours may reach back `history_retention_ms`.
    pub fn with_history(self, history_retention_ms: i64) -> Self {
        TimePolicy {
            history_retention_ms: history_retention_ms.max(self.retention_ms),
            ..self
        }
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

    /// The buckets of width `step`, aligned to multiples of it since the
    /// epoch, that cover `[from, to]`. The last one counts only samples at
    /// or before `to`.
    pub fn range(
        from: Timestamp,
        to: Timestamp,
        step: Step,
        policy: &TimePolicy,
    ) -> Result<Self, ValidationError> {
        if from >= to {
            return Err(ValidationError::new(format!(
                "from ({from}) must be before to ({to})"
            )));
        }
        let width = step.millis();
        // Hour-level history answers buckets of whole hours only.
        let whole_hours = width % HOUR_MS == 0;
        let reach = if whole_hours {
            policy.history_retention_ms
        } else {
            policy.retention_ms
        };
        let oldest = policy.now.millis() - reach;
        if from.millis() < oldest {
            let oldest = Timestamp(oldest.max(0));
            return Err(ValidationError::new(
                if whole_hours || policy.history_retention_ms == policy.retention_ms {
                    format!(
                        "from ({from}) lies beyond the retention period: the oldest kept is {oldest}"
                    )
                } else {
                    format!(
                        "from ({from}) lies beyond the retention of raw samples (the oldest kept is {oldest}); older hours are kept as history, read at a step of whole hours (1h, 6h, 12h, 1d)"
                    )
                },
            ));
        }
        let first = from.floor(width).millis();
        let last = to.floor(width).millis();
        let count = (last - first) / width + 1;
        if count > MAX_RANGE_BUCKETS {
            return Err(ValidationError::new(format!(
                "step {} makes {count} buckets from {from} to {to}; at most {MAX_RANGE_BUCKETS} are allowed, so use a larger step",
                step.label()
            )));
        }
        Ok(BucketWindow {
            start: Timestamp(first),
            width_ms: width,
            count: count as usize,
            end: to,
        })
    }

    pub fn bucket_start(&self, index: usize) -> Timestamp {
        Timestamp(self.start.millis() + self.width_ms * index as i64)
    }
}

/// One bucket's means and extremes; all `None` when it holds no sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start: Timestamp,
    pub cpu: Option<f64>,
    pub ram: Option<f64>,
    pub cpu_min: Option<f64>,
    pub cpu_max: Option<f64>,
    pub ram_min: Option<f64>,
    pub ram_max: Option<f64>,
    pub samples: u64,
}

impl Bucket {
    pub fn empty(start: Timestamp) -> Self {
        Bucket {
            start,
            cpu: None,
            ram: None,
            cpu_min: None,
            cpu_max: None,
            ram_min: None,
            ram_max: None,
            samples: 0,
        }
    }
}

/// Steps a range query may ask for, by name.
const NAMED_STEPS: &[(&str, i64)] = &[
    ("1m", MINUTE_MS),
    ("5m", 5 * MINUTE_MS),
    ("10m", 10 * MINUTE_MS),
    ("15m", 15 * MINUTE_MS),
    ("30m", 30 * MINUTE_MS),
    ("1h", HOUR_MS),
    ("6h", 6 * HOUR_MS),
    ("12h", 12 * HOUR_MS),
    ("1d", 24 * HOUR_MS),
];

/// Most buckets one range answer may hold.
pub const MAX_RANGE_BUCKETS: i64 = 1500;

/// A bucket width for range queries: a whole number of minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step(i64);

impl Step {
    /// One of `1m 5m 10m 15m 30m 1h 6h 12h 1d`, or a number of seconds that
    /// is a whole number of minutes.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        if let Some((_, millis)) = NAMED_STEPS.iter().find(|(name, _)| *name == text) {
            return Ok(Step(*millis));
        }
        match text.parse::<i64>() {
            Ok(seconds) if seconds > 0 && seconds % 60 == 0 && seconds <= 366 * 86_400 => {
                Ok(Step(seconds * 1000))
            }
            _ => Err(ValidationError::new(format!(
                "step {text:?} must be one of 1m 5m 10m 15m 30m 1h 6h 12h 1d, or seconds that make whole minutes"
            ))),
        }
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Written as the largest whole unit: `5m`, `6h`, `1d`, `90m`.
    pub fn label(self) -> String {
        let minutes = self.0 / MINUTE_MS;
        if minutes % (24 * 60) == 0 {
            format!("{}d", minutes / (24 * 60))
        } else if minutes % 60 == 0 {
            format!("{}h", minutes / 60)
        } else {
            format!("{minutes}m")
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
    fn stack_rfc3339_seconds_are_chronos() {
        // Every day to 2110, then every 97th day to 9999 (leap days and
        // centuries included), at a time of day that moves through hours,
        // minutes and seconds.
        let mut ms = 0_i64;
        while ms <= MAX_TIMESTAMP_MS {
            let t = Timestamp(ms);
            let bytes = t.rfc3339_seconds_bytes().unwrap();
            assert_eq!(std::str::from_utf8(&bytes).unwrap(), t.to_rfc3339_seconds());
            let days = if ms < 4_418_000_000_000 { 1 } else { 97 };
            ms += days * 86_400_000 + 3_661_001;
        }
        let last = Timestamp(MAX_TIMESTAMP_MS);
        assert_eq!(
            &last.rfc3339_seconds_bytes().unwrap(),
            b"9999-12-31T23:59:59Z"
        );
        assert_eq!(Timestamp(-60_000).rfc3339_seconds_bytes(), None);
    }

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
    fn steps_are_named_or_whole_minutes_of_seconds() {
        assert_eq!(Step::parse("5m").unwrap().millis(), 5 * MINUTE_MS);
        assert_eq!(Step::parse("1d").unwrap().label(), "1d");
        assert_eq!(Step::parse("300").unwrap().label(), "5m");
        assert_eq!(Step::parse("5400").unwrap().label(), "90m");
        assert_eq!(Step::parse("7200").unwrap().label(), "2h");
        assert!(Step::parse("90").is_err());
        assert!(Step::parse("2m").is_err());
        assert!(Step::parse("0").is_err());
        assert!(Step::parse("-60").is_err());
    }

    #[test]
    fn ranges_are_aligned_bounded_and_within_retention() {
        let now = Timestamp::parse_rfc3339("2026-11-27T20:00:30Z").unwrap();
        let policy = TimePolicy::new(now, 7 * 24 * HOUR_MS);
        let at = |text: &str| Timestamp::parse_rfc3339(text).unwrap();
        let five = Step::parse("5m").unwrap();
        let window = BucketWindow::range(
            at("2026-11-27T14:03:00Z"),
            at("2026-11-27T20:00:30Z"),
            five,
            &policy,
        )
        .unwrap();
        assert_eq!(window.start.to_rfc3339(), "2026-11-27T14:00:00Z");
        assert_eq!(window.count, 73);
        assert_eq!(window.bucket_start(72).to_rfc3339(), "2026-11-27T20:00:00Z");
        assert_eq!(window.end, now);
        let one_minute = Step::parse("1m").unwrap();
        // 1,500 one-minute buckets fit; 1,501 do not.
        let from = at("2026-11-26T19:01:00Z");
        assert!(BucketWindow::range(from, at("2026-11-27T20:00:59Z"), one_minute, &policy).is_ok());
        assert!(
            BucketWindow::range(from, at("2026-11-27T20:01:00Z"), one_minute, &policy).is_err()
        );
        assert!(BucketWindow::range(now, now, five, &policy).is_err());
        let too_old = at("2026-11-20T19:00:00Z");
        assert!(BucketWindow::range(too_old, now, Step::parse("1d").unwrap(), &policy).is_err());
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
