//! `GET /metrics`: the daemon's own numbers in the Prometheus text
//! exposition format, version 0.0.4.

use std::fmt::Write as _;

use rocket::State;
use rocket::http::ContentType;

use super::responses::{Internal, Unauthorized, Unavailable};

use super::auth::Read;
use super::telemetry::{HttpSnapshot, HttpStats};
use crate::error::ApiError;
use crate::store::{HistogramSnapshot, Store, StoreStats};

/// What a scrape reports, gathered before rendering.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub store: StoreStats,
    pub servers: u64,
    pub database_bytes: u64,
    pub wal_bytes: u64,
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
        ("sperform_retention_deleted_servers_total", "Servers deleted by retention, left without samples.", stats.retention_deleted_servers),
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
        ("sperform_http_requests_in_flight", "HTTP requests received and not yet answered.", snapshot.http.in_flight),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
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
