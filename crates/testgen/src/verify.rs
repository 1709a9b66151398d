//! Verification: what every bucket should hold, computed from exactly the
//! samples the daemon acknowledged, against what the daemon answers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::ProgressBar;
use reqwest::Method;
use serde::Serialize;
use sperform_model::model::{BucketWindow, Timestamp};
use sperform_model::wire::{LoadBody, ServerBody};

use crate::plan::Point;
use crate::send::{Ledger, Run};

/// Largest relative difference accepted between an expected and a reported
/// mean (the daemon sums in another order than we do).
pub const RELATIVE_TOLERANCE: f64 = 1e-9;
/// Largest absolute difference accepted when the expected mean is 0.
pub const ZERO_TOLERANCE: f64 = 1e-12;
/// How many differences a run keeps to show.
const KEPT_DIFFERENCES: usize = 10;

/// One thing the daemon answered otherwise than expected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub server: String,
    /// `by_minute`, `by_hour`, `load` (the answer as a whole) or `servers`
    /// (the list).
    pub view: &'static str,
    /// Start of the bucket, for bucket differences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    pub field: &'static str,
    pub expected: String,
    pub got: String,
    /// Sort key: server index, then position in the answer.
    #[serde(skip)]
    order: (u64, usize),
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.server, self.view)?;
        if let Some(start) = &self.start {
            write!(f, " {start}")?;
        }
        write!(
            f,
            " {}: expected {}, got {}",
            self.field, self.expected, self.got
        )
    }
}

/// What a bucket should hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Expected {
    pub samples: u64,
    cpu_sum: f64,
    ram_sum: f64,
}

impl Expected {
    pub fn cpu(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.cpu_sum / self.samples as f64)
    }

    pub fn ram(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.ram_sum / self.samples as f64)
    }
}

/// The expected content of every bucket of `window`: samples in
/// `[start, end]` go to bucket `(time - start) / width`.
pub fn expected_buckets(window: &BucketWindow, points: &[Point]) -> Vec<Expected> {
    let mut buckets = vec![Expected::default(); window.count];
    let (start, end) = (window.start.millis(), window.end.millis());
    for point in points {
        let time = point.time.millis();
        if time < start || time > end {
            continue;
        }
        let index = usize::try_from((time - start) / window.width_ms).unwrap_or(usize::MAX);
        if let Some(bucket) = buckets.get_mut(index) {
            bucket.samples += 1;
            bucket.cpu_sum += point.cpu;
            bucket.ram_sum += point.ram;
        }
    }
    buckets
}

/// Whether a reported mean matches the expected one.
pub fn close_enough(expected: f64, got: f64) -> bool {
    let difference = (expected - got).abs();
    if expected == 0.0 {
        difference <= ZERO_TOLERANCE
    } else {
        difference <= RELATIVE_TOLERANCE * expected.abs()
    }
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

/// Compares one `/load` answer with the samples sent. Returns the number
/// of buckets checked and the differences.
pub fn compare_load(
    server: &str,
    index: u64,
    at: Timestamp,
    points: &[Point],
    body: &[u8],
) -> (u64, Vec<Difference>, Option<LoadBody>) {
    let mut differences = Vec::new();
    let mut differ = |view, start: Option<String>, field, expected: String, got: String| {
        let order = (index, differences.len());
        differences.push(Difference {
            server: server.to_owned(),
            view,
            start,
            field,
            expected,
            got,
            order,
        });
    };
    let answer: LoadBody = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(err) => {
            let body: String = String::from_utf8_lossy(body).chars().take(200).collect();
            differ(
                "load",
                None,
                "body",
                "a load report".to_owned(),
                format!("{body:?} ({err})"),
            );
            return (0, differences, None);
        }
    };
    if answer.server != server {
        differ(
            "load",
            None,
            "server",
            server.to_owned(),
            answer.server.clone(),
        );
    }
    if Timestamp::parse_rfc3339(&answer.at).ok() != Some(at) {
        differ("load", None, "at", at.to_rfc3339(), answer.at.clone());
    }
    let mut checked = 0;
    let views = [
        ("by_minute", BucketWindow::minutes_to(at), &answer.by_minute),
        ("by_hour", BucketWindow::hours_to(at), &answer.by_hour),
    ];
    for (view, window, got) in views {
        if got.len() != window.count {
            differ(
                view,
                None,
                "length",
                window.count.to_string(),
                got.len().to_string(),
            );
            continue;
        }
        let expected = expected_buckets(&window, points);
        for (i, (want, got)) in expected.iter().zip(got).enumerate() {
            checked += 1;
            let start = window.bucket_start(i);
            let label = Some(start.to_rfc3339_seconds());
            if got.start.0 != start {
                differ(
                    view,
                    label.clone(),
                    "start",
                    start.to_rfc3339_seconds(),
                    got.start.0.to_rfc3339_seconds(),
                );
            }
            if want.samples != got.samples {
                differ(
                    view,
                    label.clone(),
                    "samples",
                    want.samples.to_string(),
                    got.samples.to_string(),
                );
            }
            for (field, want, got) in [("cpu", want.cpu(), got.cpu), ("ram", want.ram(), got.ram)] {
                let same = match (want, got) {
                    (None, None) => true,
                    (Some(want), Some(got)) => close_enough(want, got),
                    _ => false,
                };
                if !same {
                    differ(view, label.clone(), field, show(want), show(got));
                }
            }
        }
    }
    (checked, differences, Some(answer))
}

/// The outcome of verification.
#[derive(Debug, Default)]
pub struct Verification {
    /// Servers whose `/load` answer was checked.
    pub servers: u64,
    pub buckets: u64,
    /// Servers of this run found in `GET /api/v1/servers`.
    pub listed: u64,
    pub differences: u64,
    /// The first few differences, in server order.
    pub first: Vec<Difference>,
    /// The first server's `/load` answer.
    pub report: Option<LoadBody>,
}

impl Verification {
    fn add(&mut self, mut differences: Vec<Difference>) {
        self.differences += differences.len() as u64;
        self.first.append(&mut differences);
        self.first.sort_by_key(|d| d.order);
        self.first.truncate(KEPT_DIFFERENCES);
    }

    fn merge(&mut self, other: Verification) {
        self.servers += other.servers;
        self.buckets += other.buckets;
        self.listed += other.listed;
        self.report = self.report.take().or(other.report);
        let count = self.differences + other.differences;
        self.add(other.first);
        self.differences = count;
    }

    pub fn passed(&self) -> bool {
        self.differences == 0
    }
}

fn ledger<'a>(ledgers: &'a [Vec<Ledger>], run: &Run, index: u64) -> Option<&'a Ledger> {
    let (worker, server) = run.fleet.split(index);
    ledgers.get(worker as usize)?.get(server as usize)
}

/// Reads back every server that has acknowledged samples, `tasks` at a
/// time, then checks the server list.
pub async fn verify(
    run: Arc<Run>,
    ledgers: Arc<Vec<Vec<Ledger>>>,
    at: Timestamp,
    tasks: usize,
    progress: ProgressBar,
) -> Verification {
    let total = run.fleet.total();
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks.max(1) {
        let (run, ledgers, next, progress) = (
            Arc::clone(&run),
            Arc::clone(&ledgers),
            Arc::clone(&next),
            progress.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut result = Verification::default();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total || run.api.is_lost() {
                    break;
                }
                if let Some(ledger) = ledger(&ledgers, &run, index)
                    && ledger.stored > 0
                {
                    check_server(&run, ledger, index, at, &mut result).await;
                }
                progress.inc(1);
            }
            result
        }));
    }
    let mut verification = Verification::default();
    for handle in handles {
        match handle.await {
            Ok(result) => verification.merge(result),
            Err(err) => {
                verification.add(vec![failure("load", format!("a verifier failed: {err}"))]);
            }
        }
    }
    check_list(&run, &ledgers, &mut verification).await;
    verification
}

fn failure(view: &'static str, got: String) -> Difference {
    Difference {
        server: "-".to_owned(),
        view,
        start: None,
        field: "request",
        expected: "an answer".to_owned(),
        got,
        order: (u64::MAX, 0),
    }
}

async fn check_server(
    run: &Run,
    ledger: &Ledger,
    index: u64,
    at: Timestamp,
    result: &mut Verification,
) {
    let name = run.fleet.name_of(index);
    let path = format!("/api/v1/servers/{name}/load?at={}", at.to_rfc3339());
    let request = |field, expected: &str, got: String| Difference {
        server: name.clone(),
        view: "load",
        start: None,
        field,
        expected: expected.to_owned(),
        got,
        order: (index, 0),
    };
    match run.api.request(Method::GET, &path, None).await {
        Ok(answer) if answer.status.is_success() => {
            let points = ledger.expected(run, index);
            let (buckets, differences, report) =
                compare_load(&name, index, at, &points, &answer.body);
            result.servers += 1;
            result.buckets += buckets;
            result.add(differences);
            if index == 0 {
                result.report = report;
            }
        }
        Ok(answer) => result.add(vec![request(
            "status",
            "200",
            format!("{}: {}", answer.status, answer.message()),
        )]),
        Err(err) => result.add(vec![request("request", "an answer", err.message)]),
    }
}

/// Checks that `GET /api/v1/servers` lists every server of the run with
/// the number of samples it was sent.
async fn check_list(run: &Run, ledgers: &[Vec<Ledger>], verification: &mut Verification) {
    let entries: Vec<ServerBody> = match run.api.request(Method::GET, "/api/v1/servers", None).await
    {
        Ok(answer) if answer.status.is_success() => match serde_json::from_slice(&answer.body) {
            Ok(entries) => entries,
            Err(err) => {
                verification.add(vec![failure(
                    "servers",
                    format!("an unreadable list ({err})"),
                )]);
                return;
            }
        },
        Ok(answer) => {
            let got = format!("{}: {}", answer.status, answer.message());
            verification.add(vec![failure("servers", got)]);
            return;
        }
        Err(err) => {
            verification.add(vec![failure("servers", err.message)]);
            return;
        }
    };
    let total = usize::try_from(run.fleet.total()).unwrap_or(usize::MAX);
    let mut seen = vec![false; total];
    let mut differences = Vec::new();
    let mut list_difference = |name: String, index: u64, expected: u64, got: String| {
        differences.push(Difference {
            server: name,
            view: "servers",
            start: None,
            field: "samples",
            expected: expected.to_string(),
            got,
            order: (index, usize::MAX),
        });
    };
    for entry in entries {
        let Some(index) = run.fleet.index_of(&entry.name) else {
            continue;
        };
        if let Some(flag) = usize::try_from(index).ok().and_then(|i| seen.get_mut(i)) {
            *flag = true;
        }
        verification.listed += 1;
        let stored = ledger(ledgers, run, index).map_or(0, |ledger| ledger.stored);
        if entry.samples != stored {
            list_difference(entry.name, index, stored, entry.samples.to_string());
        }
    }
    for (index, &listed) in (0u64..).zip(&seen) {
        let stored = ledger(ledgers, run, index).map_or(0, |ledger| ledger.stored);
        if !listed && stored > 0 {
            list_difference(
                run.fleet.name_of(index),
                index,
                stored,
                "not listed".to_owned(),
            );
        }
    }
    verification.add(differences);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn point(text: &str, cpu: f64, ram: f64) -> Point {
        Point {
            time: time(text),
            cpu,
            ram,
        }
    }

    /// The answer a correct daemon gives, built independently of
    /// `expected_buckets`.
    fn answer(server: &str, at: Timestamp, points: &[Point]) -> serde_json::Value {
        let view = |window: BucketWindow| {
            (0..window.count)
                .map(|i| {
                    let start = window.bucket_start(i);
                    let inside: Vec<&Point> = points
                        .iter()
                        .filter(|p| {
                            p.time >= start
                                && p.time.millis() < start.millis() + window.width_ms
                                && p.time <= at
                        })
                        .collect();
                    let n = inside.len();
                    let mean = |f: fn(&Point) -> f64| {
                        (n > 0).then(|| inside.iter().map(|p| f(p)).sum::<f64>() / n as f64)
                    };
                    serde_json::json!({
                        "start": start.to_rfc3339_seconds(),
                        "cpu": mean(|p| p.cpu),
                        "ram": mean(|p| p.ram),
                        "samples": n,
                    })
                })
                .collect::<Vec<_>>()
        };
        serde_json::json!({
            "server": server,
            "at": at.to_rfc3339(),
            "by_minute": view(BucketWindow::minutes_to(at)),
            "by_hour": view(BucketWindow::hours_to(at)),
        })
    }

    fn sample_points() -> Vec<Point> {
        vec![
            point("2026-11-27T19:58:00Z", 10.0, 20.0),
            point("2026-11-27T19:58:59.999Z", 20.5, 30.0),
            point("2026-11-27T19:59:30Z", 0.0, 100.0),
            point("2026-11-27T19:59:30.001Z", 50.0, 50.0), // after at: not counted
            point("2026-11-27T08:15:00Z", 33.33, 44.44),
            point("2026-11-26T19:30:00Z", 1.0, 1.0), // before the first hour
        ]
    }

    #[test]
    fn a_correct_answer_has_no_differences() {
        let at = time("2026-11-27T19:59:30Z");
        let points = sample_points();
        let body = answer("web-1", at, &points).to_string();
        let (checked, differences, _) = compare_load("web-1", 0, at, &points, body.as_bytes());
        assert_eq!(checked, 84);
        assert_eq!(differences, vec![]);
        let minutes = expected_buckets(&BucketWindow::minutes_to(at), &points);
        assert_eq!(minutes[57].samples, 0);
        assert_eq!(minutes[58].samples, 2);
        assert_eq!(minutes[58].cpu(), Some(15.25));
        assert_eq!(minutes[59].samples, 1);
        let hours = expected_buckets(&BucketWindow::hours_to(at), &points);
        assert_eq!(hours.iter().map(|b| b.samples).sum::<u64>(), 4);
    }

    #[test]
    fn a_wrong_count_or_mean_is_reported() {
        let at = time("2026-11-27T19:59:30Z");
        let points = sample_points();
        let mut body = answer("web-1", at, &points);
        body["by_minute"][58]["samples"] = 3.into();
        let cpu = body["by_hour"][23]["cpu"].as_f64().unwrap();
        body["by_hour"][23]["cpu"] = serde_json::json!(cpu * (1.0 + 1e-8));
        body["by_hour"][0]["ram"] = serde_json::json!(0.0);
        let body = body.to_string();
        let (_, differences, _) = compare_load("web-1", 0, at, &points, body.as_bytes());
        let shown: Vec<String> = differences.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert_eq!(
            shown[0],
            "web-1 by_minute 2026-11-27T19:58:00Z samples: expected 2, got 3"
        );
        assert!(
            shown[1].starts_with("web-1 by_hour 2026-11-26T20:00:00Z ram: expected null, got 0")
        );
        assert!(shown[2].starts_with("web-1 by_hour 2026-11-27T19:00:00Z cpu"));
    }

    #[test]
    fn tolerance_is_relative_and_absolute_at_zero() {
        assert!(close_enough(50.0, 50.0 * (1.0 + 0.9e-9)));
        assert!(!close_enough(50.0, 50.0 * (1.0 + 1.1e-9)));
        assert!(close_enough(0.0, 0.0));
        assert!(close_enough(0.0, 1e-13));
        assert!(!close_enough(0.0, 1e-9));
    }

    #[test]
    fn broken_answers_are_differences() {
        let at = time("2026-11-27T19:59:30Z");
        let (checked, differences, _) = compare_load("web-1", 0, at, &[], b"not json");
        assert_eq!(checked, 0);
        assert_eq!(differences.len(), 1);
        let body = serde_json::json!({
            "server": "web-2", "at": "2026-11-27T19:59:31Z", "by_minute": [], "by_hour": []
        })
        .to_string();
        let (_, differences, _) = compare_load("web-1", 0, at, &[], body.as_bytes());
        let fields: Vec<&str> = differences.iter().map(|d| d.field).collect();
        assert_eq!(fields, ["server", "at", "length", "length"]);
    }
}
