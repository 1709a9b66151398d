//! `GET /metrics`: well-formed Prometheus text (checked by a small parser
//! of the exposition format) whose numbers follow known traffic.

use std::collections::HashMap;

use rocket::http::Status;
use serde_json::json;

use sperform::model::{HOUR_MS, MINUTE_MS};
use sperform::store::Store;

use crate::support::{TestApp, at, base_hour};

/// One scrape, parsed: the samples by name and label set, the declared
/// type of each family.
struct Scrape {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

impl Scrape {
    /// Parses exposition text, asserting its rules on the way: every
    /// sample line is `name{labels} value`, and every family has `# HELP`
    /// and `# TYPE` before its first sample.
    fn parse(text: &str) -> Scrape {
        let mut helps = HashMap::new();
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            assert!(!line.is_empty(), "empty line in:\n{text}");
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty(), "{line}");
                assert!(
                    helps.insert(name.to_owned(), help.to_owned()).is_none(),
                    "{line}"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{line}"
                );
                continue;
            }
            assert!(!line.starts_with('#'), "{line}");
            let sample = parse_sample(line);
            let family = family_of(&sample.name, &types);
            assert!(helps.contains_key(&family), "no HELP before {line}");
            assert!(types.contains_key(&family), "no TYPE before {line}");
            samples.push(sample);
        }
        Scrape { samples, types }
    }

    /// The value of the sample with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|sample| {
                sample.name == name
                    && sample.labels.len() == labels.len()
                    && labels.iter().all(|(key, value)| {
                        sample.labels.iter().any(|(k, v)| k == key && v == value)
                    })
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].value
    }

    /// Checks every histogram: per label set, buckets in increasing `le`,
    /// cumulative counts, the last `le="+Inf"` and equal to `_count`.
    fn assert_histograms_are_cumulative(&self) {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            // Label set without `le` -> (le, cumulative count) of each bucket.
            let mut series: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
            for sample in self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
            {
                let le = sample
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .unwrap()
                    .1
                    .clone();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                let others: Labels = sample
                    .labels
                    .iter()
                    .filter(|(k, _)| k != "le")
                    .cloned()
                    .collect();
                series.entry(others).or_default().push((le, sample.value));
            }
            for (labels, buckets) in series {
                for pair in buckets.windows(2) {
                    assert!(
                        pair[0].0 < pair[1].0,
                        "{family} {labels:?}: le out of order"
                    );
                    assert!(
                        pair[0].1 <= pair[1].1,
                        "{family} {labels:?}: not cumulative"
                    );
                }
                let (last_le, last_count) = *buckets.last().unwrap();
                assert_eq!(last_le, f64::INFINITY, "{family} {labels:?}");
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_eq!(self.value(&format!("{family}_count"), &labels), last_count);
                assert!(self.value(&format!("{family}_sum"), &labels) >= 0.0);
            }
        }
    }
}

/// `name{a="x",b="y"} value` or `name value`.
fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("bad value: {line}"));
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
            let labels = body
                .split("\",")
                .map(|pair| {
                    let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    (key.to_owned(), value.trim_end_matches('"').to_owned())
                })
                .collect();
            (name, labels)
        }
    };
    assert!(
        name.starts_with("sperform_")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{line}"
    );
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// The family a sample belongs to: histogram samples carry a suffix.
fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(family) = name.strip_suffix(suffix)
            && types.get(family).is_some_and(|kind| kind == "histogram")
        {
            return family.to_owned();
        }
    }
    name.to_owned()
}

fn scrape(app: &TestApp) -> Scrape {
    let response = app.client.get("/metrics").dispatch();
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(
        response.content_type().unwrap().to_string(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let scrape = Scrape::parse(&response.into_string().unwrap());
    scrape.assert_histograms_are_cumulative();
    scrape
}

#[test]
fn a_fresh_daemon_reports_zeros() {
    let app = TestApp::new();
    let scrape = scrape(&app);
    assert_eq!(scrape.value("sperform_samples_ingested_total", &[]), 0.0);
    assert_eq!(scrape.value("sperform_servers", &[]), 0.0);
    assert_eq!(scrape.value("sperform_write_queue_samples", &[]), 0.0);
    assert_eq!(
        scrape.value("sperform_retention_deleted_samples_total", &[]),
        0.0
    );
    assert_eq!(scrape.value("sperform_write_batch_samples_count", &[]), 0.0);
    assert!(scrape.value("sperform_database_bytes", &[]) > 0.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        scrape.value("sperform_build_info", &[("version", version)]),
        1.0
    );
}

#[test]
fn metrics_follow_known_traffic() {
    let app = TestApp::new();
    let base = base_hour();
    for i in 0..5 {
        let body = json!({"cpu": i, "ram": 50, "time": at(base, i * 1000).to_rfc3339()});
        assert_eq!(app.post_sample("web-1", body).0, Status::NoContent);
    }
    let batch: Vec<_> = (0..7)
        .map(|i| json!({"server": format!("db-{}", i % 2), "cpu": 1, "ram": 2}))
        .collect();
    assert_eq!(
        app.post("/api/v1/samples", json!(batch).to_string()).0,
        Status::NoContent
    );
    let (status, _) = app.post_sample("web-1", json!({"cpu": 101, "ram": 1}));
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(app.delete("/api/v1/servers/nope").0, Status::NotFound);
    assert_eq!(app.get("/api/v1/servers").0, Status::Ok);
    assert_eq!(app.get("/no/such/route").0, Status::NotFound);

    let scrape = scrape(&app);
    assert_eq!(scrape.value("sperform_samples_ingested_total", &[]), 12.0);
    assert_eq!(scrape.value("sperform_servers", &[]), 3.0);
    assert_eq!(scrape.value("sperform_write_queue_samples", &[]), 0.0);
    // Each request was committed on its own here: 6 transactions, plus any
    // the writer ran to seal ended minutes. The store's counters are read
    // one by one, so a seal committing meanwhile may be counted in one and
    // not yet in another.
    assert_eq!(scrape.value("sperform_write_batch_samples_sum", &[]), 12.0);
    let transactions = scrape.value("sperform_write_transactions_total", &[]);
    for histogram in [
        "sperform_write_batch_samples_count",
        "sperform_commit_duration_seconds_count",
    ] {
        let count = scrape.value(histogram, &[]);
        assert!(
            (count - transactions).abs() <= 1.0,
            "{histogram}: {count}, transactions: {transactions}"
        );
    }
    assert!(transactions >= 6.0, "{transactions}");
    assert_eq!(
        scrape.value("sperform_write_transactions_failed_total", &[]),
        0.0
    );

    let requests = |method, route, status| {
        scrape.value(
            "sperform_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    let single = "/api/v1/servers/<name>/samples";
    assert_eq!(requests("POST", single, "204"), 5.0);
    assert_eq!(requests("POST", single, "422"), 1.0);
    assert_eq!(requests("POST", "/api/v1/samples", "204"), 1.0);
    assert_eq!(requests("DELETE", "/api/v1/servers/<name>", "404"), 1.0);
    assert_eq!(requests("GET", "/api/v1/servers", "200"), 1.0);
    assert_eq!(requests("GET", "unmatched", "404"), 1.0);

    let duration = "sperform_ingest_request_duration_seconds";
    assert_eq!(
        scrape.value(&format!("{duration}_count"), &[("route", single)]),
        6.0
    );
    let batch_route = [("route", "/api/v1/samples")];
    assert_eq!(
        scrape.value(&format!("{duration}_count"), &batch_route),
        1.0
    );
    // The scrape itself is the one request in flight.
    assert_eq!(scrape.value("sperform_http_requests_in_flight", &[]), 1.0);
}

#[test]
fn file_sizes_are_those_of_the_database_and_its_wal() {
    let app = TestApp::new();
    assert_eq!(
        app.post_sample("web-1", json!({"cpu": 1, "ram": 2})).0,
        Status::NoContent
    );
    let wal = sperform::store::wal_path(&app.db_path);
    assert_eq!(wal.file_name().unwrap(), "sperform.db-wal");
    let sizes = || {
        let size = |path| std::fs::metadata(path).map_or(0, |metadata| metadata.len()) as f64;
        (size(&app.db_path), size(&wal))
    };
    // The checkpoint thread may change either file at any moment: the
    // scrape must see a size from between the two looks.
    let before = sizes();
    let scrape = scrape(&app);
    let after = sizes();
    let between = |value: f64, a: f64, b: f64| a.min(b) <= value && value <= a.max(b);
    let database = scrape.value("sperform_database_bytes", &[]);
    assert!(
        database > 0.0 && between(database, before.0, after.0),
        "{database}"
    );
    let wal_bytes = scrape.value("sperform_database_wal_bytes", &[]);
    assert!(between(wal_bytes, before.1, after.1), "{wal_bytes}");
}

#[test]
fn retention_deletions_are_counted() {
    let app = TestApp::new();
    let base = base_hour();
    for (server, offset) in [
        ("web-old", 0),
        ("web-old", MINUTE_MS),
        ("web-new", HOUR_MS + 30 * MINUTE_MS),
    ] {
        let body = json!({"cpu": 1, "ram": 2, "time": at(base, offset).to_rfc3339()});
        assert_eq!(app.post_sample(server, body).0, Status::NoContent);
    }
    // A week (the default retention) after the hour of `base` has passed.
    let store = app.client.rocket().state::<Store>().unwrap().clone();
    rocket::tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.apply_retention(at(base, HOUR_MS + 7 * 24 * HOUR_MS)))
        .unwrap();

    let scrape = scrape(&app);
    assert_eq!(
        scrape.value("sperform_retention_deleted_samples_total", &[]),
        2.0
    );
    // web-old's hour is kept as history, so the server stays.
    assert_eq!(
        scrape.value("sperform_retention_history_hours_kept_total", &[]),
        1.0
    );
    assert_eq!(
        scrape.value("sperform_retention_deleted_servers_total", &[]),
        0.0
    );
    assert_eq!(scrape.value("sperform_servers", &[]), 2.0);
    assert_eq!(scrape.value("sperform_samples_ingested_total", &[]), 3.0);
}
