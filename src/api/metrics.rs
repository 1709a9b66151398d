//! `GET /metrics`: the daemon's own numbers in the Prometheus text
//! exposition format, version 0.0.4.

use std::fmt::Write as _;

use rocket::State;
use rocket::http::ContentType;

use super::responses::{Internal, Unauthorized, Unavailable};

use super::auth::Read;
use super::telemetry::{HttpSnapshot, HttpStats};
use crate::error::ApiError;
use crate::store::{HistogramSnapshot, SpaceReport, Store, StoreStats};

/// What a scrape reports, gathered before rendering.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub store: StoreStats,
    pub servers: u64,
    pub database_bytes: u64,
    pub wal_bytes: u64,
    /// What retention last measured: pages in use, bytes per table.
    pub space: SpaceReport,
    /// The configured `retention_size`, if any.
    pub retention_size: Option<u64>,
    pub http: HttpSnapshot,
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "The daemon's metrics in the Prometheus text format",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        Unauthorized,
        Unavailable,
        Internal,
    ),
    security((), ("read_token" = []))
)]
#[rocket::get("/metrics")]
pub async fn metrics(
    _auth: Read,
    store: &State<Store>,
    settings: &State<crate::config::Settings>,
    http: &State<HttpStats>,
) -> Result<(ContentType, String), ApiError> {
    let stats = store.stats();
    let servers = store.server_count().await?;
    let (database_bytes, wal_bytes) = store.file_sizes().await?;
    let snapshot = MetricsSnapshot {
        store: stats,
        servers,
        database_bytes,
        wal_bytes,
        space: store.space(),
        retention_size: settings.retention_size,
        http: http.snapshot(),
    };
    Ok((exposition_content_type(), render(&snapshot)))
}

/// `text/plain; version=0.0.4; charset=utf-8`, what Prometheus expects.
pub fn exposition_content_type() -> ContentType {
    ContentType::new("text", "plain").with_params([("version", "0.0.4"), ("charset", "utf-8")])
}

/// The metrics as exposition text. Every family has `# HELP` and `# TYPE`;
/// histogram buckets are cumulative and end with `le="+Inf"`.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let stats = &snapshot.store;
    let mut out = Exposition::default();
    out.family(
        "sperform_build_info",
        "gauge",
        "The version of the running sperform.",
    );
    out.sample(
        "sperform_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    // Counters the store keeps: one row each.
    #[rustfmt::skip]
    let counters = [
        ("sperform_samples_ingested_total", "Samples committed to the database since start-up.", stats.samples_committed),
        ("sperform_write_transactions_total", "Write transactions committed since start-up.", stats.transactions),
        ("sperform_write_transactions_failed_total", "Write transactions that failed and were rolled back.", stats.failed_transactions),
        ("sperform_retention_deleted_samples_total", "Samples deleted by retention since start-up.", stats.retention_deleted_samples),
        ("sperform_retention_history_hours_kept_total", "Hours of a server whose raw samples retention deleted, kept as hour-level history.", stats.retention_hours_to_history),
        ("sperform_retention_deleted_history_hours_total", "Hours of a server's history deleted by retention since start-up.", stats.retention_deleted_history_hours),
        ("sperform_retention_deleted_servers_total", "Servers deleted by retention, left without samples or history.", stats.retention_deleted_servers),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], value);
    }

    #[rustfmt::skip]
    let gauges = [
        ("sperform_write_queue_samples", "Samples accepted and waiting for the writer.", stats.queued_samples),
        ("sperform_servers", "Servers known to the database.", snapshot.servers),
        ("sperform_database_bytes", "Size of the database file.", snapshot.database_bytes),
        ("sperform_database_wal_bytes", "Size of the database's write-ahead log (0 if absent).", snapshot.wal_bytes),
        ("sperform_database_used_bytes", "Bytes of database pages in use (the file less its free pages), as retention last measured.", snapshot.space.used_bytes),
        ("sperform_retention_size_bytes", "The configured retention_size (0: no limit).", snapshot.retention_size.unwrap_or(0)),
        ("sperform_retention_size_exceeded", "1 if retention could not bring the database under retention_size.", u64::from(snapshot.space.over_size)),
        ("sperform_http_requests_in_flight", "HTTP requests received and not yet answered.", snapshot.http.in_flight),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }

    let name = "sperform_database_table_bytes";
    out.family(
        name,
        "gauge",
        "Bytes of each table and index in the database file (measured at most every 10 minutes).",
    );
    for (table, bytes) in &snapshot.space.table_bytes {
        out.sample(name, &[("table", table.as_str())], *bytes);
    }

    let name = "sperform_write_batch_samples";
    out.family(
        name,
        "histogram",
        "Samples per committed write transaction.",
    );
    out.histogram(name, &[], &stats.group_samples);
    let name = "sperform_commit_duration_seconds";
    out.family(
        name,
        "histogram",
        "Time from the start of a write transaction to its commit.",
    );
    out.histogram(name, &[], &stats.commit_seconds);

    let name = "sperform_http_requests_total";
    out.family(
        name,
        "counter",
        "HTTP responses by method, route and status.",
    );
    for response in &snapshot.http.responses {
        let status = response.status.to_string();
        let labels = [
            ("method", response.method),
            ("route", response.route.as_str()),
            ("status", status.as_str()),
        ];
        out.sample(name, &labels, response.count);
    }

    let name = "sperform_ingest_request_duration_seconds";
    let help = "Time from the arrival of an ingest request to its response, by route.";
    out.family(name, "histogram", help);
    for (route, histogram) in &snapshot.http.ingest_seconds {
        out.histogram(name, &[("route", route)], histogram);
    }
    out.text
}

/// Builds exposition text line by line.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{name}{} {value}", label_set(labels));
    }

    /// `_bucket` lines with cumulative counts, then `_sum` and `_count`.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &HistogramSnapshot) {
        let mut cumulative = 0;
        for (index, count) in histogram.counts.iter().enumerate() {
            cumulative += count;
            let le = match histogram.bounds.get(index) {
                Some(bound) => bound.to_string(),
                None => "+Inf".to_owned(),
            };
            let mut bucket_labels = labels.to_vec();
            bucket_labels.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &bucket_labels, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}

/// `{a="x",b="y"}`, or nothing without labels.
fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::telemetry::ResponseCount;

    /// A scrape with a value in every family, for the exact-text test.
    fn known_snapshot() -> MetricsSnapshot {
        let mut commit_seconds = HistogramSnapshot::new(&[0.001, 0.01]);
        for seconds in [0.0004, 0.002, 0.0099, 0.5] {
            commit_seconds.observe(seconds);
        }
        let mut group_samples = HistogramSnapshot::new(&[1.0, 4.0]);
        for samples in [1.0, 1.0, 3.0, 7.0] {
            group_samples.observe(samples);
        }
        let mut ingest = HistogramSnapshot::new(&[0.0005, 0.25]);
        ingest.observe(0.000125);
        ingest.observe(0.75);
        MetricsSnapshot {
            store: StoreStats {
                queued_samples: 3,
                samples_committed: 12,
                retention_deleted_samples: 5,
                retention_hours_to_history: 2,
                retention_deleted_history_hours: 1,
                retention_deleted_servers: 1,
                transactions: 4,
                failed_transactions: 0,
                commit_seconds,
                group_samples,
            },
            servers: 2,
            database_bytes: 4096,
            wal_bytes: 0,
            space: SpaceReport {
                used_bytes: 2048,
                table_bytes: vec![("samples".to_owned(), 1024), ("servers".to_owned(), 512)],
                over_size: false,
            },
            retention_size: Some(1 << 30),
            http: HttpSnapshot {
                in_flight: 1,
                responses: vec![
                    ResponseCount {
                        method: "GET",
                        route: "/api/v1/servers/<name>/load?<at>".into(),
                        status: 200,
                        count: 7,
                    },
                    ResponseCount {
                        method: "POST",
                        route: "/odd\\\"route\n".into(),
                        status: 422,
                        count: 1,
                    },
                ],
                ingest_seconds: vec![("/api/v1/samples".into(), ingest)],
            },
        }
    }

    /// The whole exposition of a known scrape, byte for byte: what
    /// Prometheus and the documentation's examples read. A route label
    /// shows the escaping of `\\`, `"` and a line break.
    #[test]
    fn a_known_scrape_renders_exactly() {
        let expected = concat!(
            r#"# HELP sperform_build_info The version of the running sperform.
# TYPE sperform_build_info gauge
sperform_build_info{version=""#,
            env!("CARGO_PKG_VERSION"),
            r#""} 1
# HELP sperform_samples_ingested_total Samples committed to the database since start-up.
# TYPE sperform_samples_ingested_total counter
sperform_samples_ingested_total 12
# HELP sperform_write_transactions_total Write transactions committed since start-up.
# TYPE sperform_write_transactions_total counter
sperform_write_transactions_total 4
# HELP sperform_write_transactions_failed_total Write transactions that failed and were rolled back.
# TYPE sperform_write_transactions_failed_total counter
sperform_write_transactions_failed_total 0
# HELP sperform_retention_deleted_samples_total Samples deleted by retention since start-up.
# TYPE sperform_retention_deleted_samples_total counter
sperform_retention_deleted_samples_total 5
# HELP sperform_retention_history_hours_kept_total Hours of a server whose raw samples retention deleted, kept as hour-level history.
# TYPE sperform_retention_history_hours_kept_total counter
sperform_retention_history_hours_kept_total 2
# HELP sperform_retention_deleted_history_hours_total Hours of a server's history deleted by retention since start-up.
# TYPE sperform_retention_deleted_history_hours_total counter
sperform_retention_deleted_history_hours_total 1
# HELP sperform_retention_deleted_servers_total Servers deleted by retention, left without samples or history.
# TYPE sperform_retention_deleted_servers_total counter
sperform_retention_deleted_servers_total 1
# HELP sperform_write_queue_samples Samples accepted and waiting for the writer.
# TYPE sperform_write_queue_samples gauge
sperform_write_queue_samples 3
# HELP sperform_servers Servers known to the database.
# TYPE sperform_servers gauge
sperform_servers 2
# HELP sperform_database_bytes Size of the database file.
# TYPE sperform_database_bytes gauge
sperform_database_bytes 4096
# HELP sperform_database_wal_bytes Size of the database's write-ahead log (0 if absent).
# TYPE sperform_database_wal_bytes gauge
sperform_database_wal_bytes 0
# HELP sperform_database_used_bytes Bytes of database pages in use (the file less its free pages), as retention last measured.
# TYPE sperform_database_used_bytes gauge
sperform_database_used_bytes 2048
# HELP sperform_retention_size_bytes The configured retention_size (0: no limit).
# TYPE sperform_retention_size_bytes gauge
sperform_retention_size_bytes 1073741824
# HELP sperform_retention_size_exceeded 1 if retention could not bring the database under retention_size.
# TYPE sperform_retention_size_exceeded gauge
sperform_retention_size_exceeded 0
# HELP sperform_http_requests_in_flight HTTP requests received and not yet answered.
# TYPE sperform_http_requests_in_flight gauge
sperform_http_requests_in_flight 1
# HELP sperform_database_table_bytes Bytes of each table and index in the database file (measured at most every 10 minutes).
# TYPE sperform_database_table_bytes gauge
sperform_database_table_bytes{table="samples"} 1024
sperform_database_table_bytes{table="servers"} 512
# HELP sperform_write_batch_samples Samples per committed write transaction.
# TYPE sperform_write_batch_samples histogram
sperform_write_batch_samples_bucket{le="1"} 2
sperform_write_batch_samples_bucket{le="4"} 3
sperform_write_batch_samples_bucket{le="+Inf"} 4
sperform_write_batch_samples_sum 12
sperform_write_batch_samples_count 4
# HELP sperform_commit_duration_seconds Time from the start of a write transaction to its commit.
# TYPE sperform_commit_duration_seconds histogram
sperform_commit_duration_seconds_bucket{le="0.001"} 1
sperform_commit_duration_seconds_bucket{le="0.01"} 3
sperform_commit_duration_seconds_bucket{le="+Inf"} 4
sperform_commit_duration_seconds_sum 0.5123
sperform_commit_duration_seconds_count 4
# HELP sperform_http_requests_total HTTP responses by method, route and status.
# TYPE sperform_http_requests_total counter
sperform_http_requests_total{method="GET",route="/api/v1/servers/<name>/load?<at>",status="200"} 7
sperform_http_requests_total{method="POST",route="/odd\\\"route\n",status="422"} 1
# HELP sperform_ingest_request_duration_seconds Time from the arrival of an ingest request to its response, by route.
# TYPE sperform_ingest_request_duration_seconds histogram
sperform_ingest_request_duration_seconds_bucket{route="/api/v1/samples",le="0.0005"} 1
sperform_ingest_request_duration_seconds_bucket{route="/api/v1/samples",le="0.25"} 1
sperform_ingest_request_duration_seconds_bucket{route="/api/v1/samples",le="+Inf"} 2
sperform_ingest_request_duration_seconds_sum{route="/api/v1/samples"} 0.750125
sperform_ingest_request_duration_seconds_count{route="/api/v1/samples"} 2
"#
        );
        assert_eq!(render(&known_snapshot()), expected);
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let mut out = Exposition::default();
        let histogram = HistogramSnapshot {
            bounds: &[1.0, 2.5],
            counts: vec![3, 0, 2],
            sum: 11.5,
        };
        out.histogram("sperform_x", &[("route", "/a")], &histogram);
        assert_eq!(
            out.text,
            "sperform_x_bucket{route=\"/a\",le=\"1\"} 3\n\
             sperform_x_bucket{route=\"/a\",le=\"2.5\"} 3\n\
             sperform_x_bucket{route=\"/a\",le=\"+Inf\"} 5\n\
             sperform_x_sum{route=\"/a\"} 11.5\n\
             sperform_x_count{route=\"/a\"} 5\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(label_set(&[]), "");
        assert_eq!(
            label_set(&[("a", "x\"y"), ("b", "back\\slash\nline")]),
            r#"{a="x\"y",b="back\\slash\nline"}"#
        );
        assert_eq!(escape_help("one\ntwo \\"), r"one\ntwo \\");
    }
}
