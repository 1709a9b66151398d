//! What testgen prints: the load report of one server, and the summary as
//! text or as one JSON object.

use std::fmt::Write as _;
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sperform_model::model::Timestamp;
use sperform_model::wire::{BucketBody, LoadBody};

use crate::http::Stats;
use crate::send::{Mode, Run};
use crate::verify::{Difference, Verification};

pub struct Summary<'a> {
    pub run: &'a Run,
    pub args_url: &'a str,
    pub at: Timestamp,
    pub stats: &'a Stats,
    pub retries: u64,
    pub send_time: Duration,
    /// Whether the daemon stopped accepting connections mid-run.
    pub lost: bool,
    /// None when verification was skipped.
    pub verification: Option<(&'a Verification, Duration)>,
}

impl Summary<'_> {
    /// PASSED: every request succeeded and every bucket matched.
    pub fn passed(&self) -> bool {
        !self.lost
            && self.stats.error_count() == 0
            && self.verification.is_some_and(|(v, _)| v.passed())
    }

    fn result(&self) -> &'static str {
        if self.passed() { "PASSED" } else { "FAILED" }
    }

    fn throughput(&self) -> f64 {
        let seconds = self.send_time.as_secs_f64();
        if seconds > 0.0 {
            self.stats.samples as f64 / seconds
        } else {
            0.0
        }
    }

    /// Latency quantiles in milliseconds: p50, p90, p99, max.
    fn latency_ms(&self) -> [f64; 4] {
        let histogram = &self.stats.latency;
        if histogram.is_empty() {
            return [0.0; 4];
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        [
            ms(histogram.value_at_quantile(0.50)),
            ms(histogram.value_at_quantile(0.90)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.max()),
        ]
    }

    fn per_request(&self) -> String {
        match self.run.batch {
            1 => "1 sample per request".to_owned(),
            n => format!("batches of {n} samples"),
        }
    }

    /// The human summary, ending with PASSED or FAILED on its own line.
    pub fn text(&self) -> String {
        let fleet = &self.run.fleet;
        let mut out = String::new();
        let mode = match self.run.mode {
            Mode::Backfill { samples, .. } => {
                format!("backfill, {samples} samples per server over the 24 hours up to at")
            }
            Mode::Live { interval, duration } => format!(
                "live, every server every {} for {}",
                humantime::format_duration(interval),
                humantime::format_duration(duration)
            ),
        };
        let _ = writeln!(out, "mode         {mode}, {}", self.per_request());
        let _ = writeln!(
            out,
            "servers      {} workers x {} = {} ({} .. {}), seed {}",
            fleet.workers,
            fleet.per_worker,
            fleet.total(),
            fleet.name_of(0),
            fleet.name_of(fleet.total().saturating_sub(1)),
            fleet.seed
        );
        let _ = writeln!(out, "daemon       {}", self.args_url);
        let _ = writeln!(out, "at           {}", self.at);
        let _ = writeln!(
            out,
            "sent         {} samples in {} requests ({} retried after 503)",
            self.stats.samples, self.stats.requests, self.retries
        );
        let _ = writeln!(out, "wall time    {:.3} s", self.send_time.as_secs_f64());
        let _ = writeln!(out, "throughput   {:.0} samples/s", self.throughput());
        let [p50, p90, p99, max] = self.latency_ms();
        let _ = writeln!(
            out,
            "latency      p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
        );
        if self.stats.errors.is_empty() {
            let _ = writeln!(out, "http errors  none");
        } else {
            let counts: Vec<String> = self
                .stats
                .errors
                .iter()
                .map(|(kind, count)| format!("{kind}: {count}"))
                .collect();
            let _ = writeln!(out, "http errors  {}", counts.join(", "));
            for message in &self.stats.messages {
                let _ = writeln!(out, "  {message}");
            }
        }
        match self.verification {
            None => {
                let _ = writeln!(
                    out,
                    "verified     skipped: the daemon stopped accepting connections"
                );
            }
            Some((verification, time)) => {
                let differences = match verification.differences {
                    0 => "no differences".to_owned(),
                    1 => "1 difference".to_owned(),
                    n => format!("{n} differences"),
                };
                let _ = writeln!(
                    out,
                    "verified     {} servers, {} buckets, {} listed: {differences} ({:.3} s)",
                    verification.servers,
                    verification.buckets,
                    verification.listed,
                    time.as_secs_f64()
                );
                for difference in &verification.first {
                    let _ = writeln!(out, "  {difference}");
                }
                if verification.differences > verification.first.len() as u64 {
                    let _ = writeln!(
                        out,
                        "  ... and {} more",
                        verification.differences - verification.first.len() as u64
                    );
                }
            }
        }
        let _ = writeln!(out, "{}", self.result());
        out
    }

    /// The machine-readable summary.
    pub fn json(&self) -> String {
        let fleet = &self.run.fleet;
        let [p50, p90, p99, max] = self.latency_ms();
        let (mode, samples_per_server, interval_s, duration_s) = match self.run.mode {
            Mode::Backfill { samples, .. } => ("backfill", Some(samples), None, None),
            Mode::Live { interval, duration } => (
                "live",
                None,
                Some(interval.as_secs_f64()),
                Some(duration.as_secs_f64()),
            ),
        };
        let summary = JsonSummary {
            result: self.result(),
            mode,
            url: self.args_url,
            workers: fleet.workers,
            servers_per_worker: fleet.per_worker,
            servers: fleet.total(),
            samples_per_server,
            interval_s,
            duration_s,
            batch: self.run.batch,
            seed: fleet.seed,
            prefix: &fleet.prefix,
            at: self.at.to_rfc3339(),
            samples_sent: self.stats.samples,
            requests: self.stats.requests,
            retries_503: self.retries,
            wall_time_s: self.send_time.as_secs_f64(),
            samples_per_s: self.throughput(),
            latency_ms: Latency { p50, p90, p99, max },
            http_errors: &self.stats.errors,
            error_messages: &self.stats.messages,
            daemon_lost: self.lost,
            verification: self.verification.map(|(v, time)| JsonVerification {
                servers: v.servers,
                buckets: v.buckets,
                listed: v.listed,
                differences: v.differences,
                first_differences: &v.first,
                wall_time_s: time.as_secs_f64(),
            }),
        };
        serde_json::to_string_pretty(&summary)
            .unwrap_or_else(|err| format!("{{\"result\": \"FAILED\", \"error\": \"{err}\"}}"))
    }
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    result: &'static str,
    mode: &'static str,
    url: &'a str,
    workers: u32,
    servers_per_worker: u32,
    servers: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    samples_per_server: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_s: Option<f64>,
    batch: usize,
    seed: u64,
    prefix: &'a str,
    at: String,
    samples_sent: u64,
    requests: u64,
    retries_503: u64,
    wall_time_s: f64,
    samples_per_s: f64,
    latency_ms: Latency,
    http_errors: &'a BTreeMap<String, u64>,
    error_messages: &'a [String],
    daemon_lost: bool,
    /// Null when verification was skipped.
    verification: Option<JsonVerification<'a>>,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize)]
struct JsonVerification<'a> {
    servers: u64,
    buckets: u64,
    listed: u64,
    differences: u64,
    first_differences: &'a [Difference],
    wall_time_s: f64,
}

/// A load report as JSON in the API's field order with one bucket per
/// line, each bucket its means and count (not its extremes): valid JSON,
/// and about 90 lines instead of 500.
pub fn report_json(report: &LoadBody) -> String {
    let text = |value: &str| Value::String(value.to_owned()).to_string();
    let number = |value: Option<f64>| {
        value.map_or_else(|| "null".to_owned(), |v| Value::from(v).to_string())
    };
    let buckets = |buckets: &[BucketBody]| {
        let lines: Vec<String> = buckets
            .iter()
            .map(|b| {
                format!(
                    "    {{\"start\": {}, \"cpu\": {}, \"ram\": {}, \"samples\": {}}}",
                    text(&b.start.0.to_rfc3339_seconds()),
                    number(b.cpu),
                    number(b.ram),
                    b.samples
                )
            })
            .collect();
        if lines.is_empty() {
            "[]".to_owned()
        } else {
            format!("[\n{}\n  ]", lines.join(",\n"))
        }
    };
    format!(
        "{{\n  \"server\": {},\n  \"at\": {},\n  \"by_minute\": {},\n  \"by_hour\": {}\n}}",
        text(&report.server),
        text(&report.at),
        buckets(&report.by_minute),
        buckets(&report.by_hour)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sperform_model::wire::BucketStart;

    fn bucket(start: &str, means: Option<(f64, f64)>, samples: u64) -> BucketBody {
        BucketBody {
            start: BucketStart(Timestamp::parse_rfc3339(start).unwrap()),
            cpu: means.map(|(cpu, _)| cpu),
            ram: means.map(|(_, ram)| ram),
            cpu_min: means.map(|(cpu, _)| cpu - 1.0),
            cpu_max: means.map(|(cpu, _)| cpu + 1.0),
            ram_min: means.map(|(_, ram)| ram),
            ram_max: means.map(|(_, ram)| ram),
            samples,
        }
    }

    #[test]
    fn the_compact_report_is_the_answer_without_extremes() {
        let report = LoadBody {
            server: "web-1".to_owned(),
            at: "2026-11-27T19:58:03Z".to_owned(),
            by_minute: vec![
                bucket("2026-11-27T19:57:00Z", Some((12.5, 40.0)), 2),
                bucket("2026-11-27T19:58:00Z", None, 0),
            ],
            by_hour: vec![],
        };
        let text = report_json(&report);
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::json!({
                "server": "web-1",
                "at": "2026-11-27T19:58:03Z",
                "by_minute": [
                    {"start": "2026-11-27T19:57:00Z", "cpu": 12.5, "ram": 40.0, "samples": 2},
                    {"start": "2026-11-27T19:58:00Z", "cpu": null, "ram": null, "samples": 0},
                ],
                "by_hour": [],
            })
        );
        assert_eq!(text.lines().count(), 9, "{text}");
        assert!(
            text.starts_with("{\n  \"server\": \"web-1\",\n  \"at\""),
            "{text}"
        );
    }
}
