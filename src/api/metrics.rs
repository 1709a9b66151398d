//! `GET /metrics`: the daemon's own numbers in the Prometheus text
//! exposition format, version 0.0.4.
//!
//! The numbers live where they are counted (the store's stats, the HTTP
//! telemetry) and are read once per scrape; this module lays them out as
//! families and leaves the format itself (names, escaping, cumulative
//! buckets, number forms) to the encoder of `prometheus-client`, so that
//! the format's rules are kept by the crate that keeps them for everyone.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use rocket::State;
use rocket::http::{ContentType, Status};

use super::auth::Read;
use super::openapi::ErrorBody;
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
        (status = 401, description = "A token is configured and the request lacks it or has another", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"sperform\"`, with `error=\"invalid_token\"` for a wrong token"))),
        (status = 503, description = "The daemon is busy (write queue full, database busy) or shutting down; retry after `Retry-After`", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 500, description = "Storage failure; see the daemon's log", body = ErrorBody),
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
    match render(&snapshot) {
        Ok(text) => Ok((exposition_content_type(), text)),
        Err(err) => {
            log::error!("could not write the metrics: {err}");
            Err(ApiError::new(
                Status::InternalServerError,
                "could not write the metrics; see the daemon's log",
            ))
        }
    }
}

/// `text/plain; version=0.0.4; charset=utf-8`, what Prometheus expects.
pub fn exposition_content_type() -> ContentType {
    ContentType::new("text", "plain").with_params([("version", "0.0.4"), ("charset", "utf-8")])
}

/// The metrics as exposition text, written by `prometheus-client`'s
/// encoder of the 0.0.4 format. Every family has `# HELP` and `# TYPE`,
/// even one without samples yet; histogram buckets are cumulative and end
/// with `le="+Inf"`.
pub fn render(snapshot: &MetricsSnapshot) -> Result<String, std::fmt::Error> {
    // The encoder takes its families from a registry, and ours are all read
    // at scrape time: one collector that holds this scrape's numbers.
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot.clone())));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// One scrape's numbers, as the families of the exposition.
#[derive(Debug)]
struct Scrape(MetricsSnapshot);

impl Collector for Scrape {
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = &self.0;
        let stats = &snapshot.store;
        let build = [("version", env!("CARGO_PKG_VERSION"))];
        let help = "The version of the running sperform.";
        let mut family =
            out.encode_descriptor("sperform_build_info", help, None, MetricType::Gauge)?;
        ConstGauge::new(1_u64).encode(family.encode_family(&build)?)?;

        // The encoder adds `_total` to a counter's name.
        #[rustfmt::skip]
        let counters = [
            ("sperform_samples_ingested", "Samples committed to the database since start-up.", stats.samples_committed),
            ("sperform_write_transactions", "Write transactions committed since start-up.", stats.transactions),
            ("sperform_write_transactions_failed", "Write transactions that failed and were rolled back.", stats.failed_transactions),
            ("sperform_retention_deleted_samples", "Samples deleted by retention since start-up.", stats.retention_deleted_samples),
            ("sperform_retention_deleted_servers", "Servers deleted by retention, left without samples.", stats.retention_deleted_servers),
        ];
        for (name, help, value) in counters {
            let family = out.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(family)?;
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
            let family = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(family)?;
        }

        #[rustfmt::skip]
        let histograms = [
            ("sperform_write_batch_samples", "Samples per committed write transaction.", &stats.group_samples),
            ("sperform_commit_duration_seconds", "Time from the start of a write transaction to its commit.", &stats.commit_seconds),
        ];
        for (name, help, histogram) in histograms {
            let family = out.encode_descriptor(name, help, None, MetricType::Histogram)?;
            Histogram(histogram).encode(family)?;
        }

        let help = "HTTP responses by method, route and status.";
        let mut family =
            out.encode_descriptor("sperform_http_requests", help, None, MetricType::Counter)?;
        for response in &snapshot.http.responses {
            let status = itoa::Buffer::new().format(response.status).to_owned();
            let labels = [
                ("method", response.method),
                ("route", response.route.as_str()),
                ("status", status.as_str()),
            ];
            ConstCounter::new(response.count).encode(family.encode_family(&labels)?)?;
        }

        let name = "sperform_ingest_request_duration_seconds";
        let help = "Time from the arrival of an ingest request to its response, by route.";
        let mut family = out.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (route, histogram) in &snapshot.http.ingest_seconds {
            Histogram(histogram).encode(family.encode_family(&[("route", route.as_str())])?)?;
        }
        Ok(())
    }
}

/// A histogram of the store or of the HTTP side, as the encoder takes it.
#[derive(Debug)]
struct Histogram<'a>(&'a HistogramSnapshot);

impl EncodeMetric for Histogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let HistogramSnapshot {
            bounds,
            counts,
            sum,
        } = self.0;
        // One count per bound, then the count above the last bound: the
        // `+Inf` bucket. The encoder sums them up into cumulative buckets.
        let above = f64::INFINITY;
        let buckets: Vec<(f64, u64)> = bounds
            .iter()
            .copied()
            .chain([above])
            .zip(counts.iter().copied())
            .collect();
        let count = counts.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(*sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
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
                retention_deleted_servers: 1,
                transactions: 4,
                failed_transactions: 0,
                commit_seconds,
                group_samples,
            },
            servers: 2,
            database_bytes: 4096,
            wal_bytes: 0,
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
# HELP sperform_retention_deleted_servers_total Servers deleted by retention, left without samples.
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
# HELP sperform_http_requests_in_flight HTTP requests received and not yet answered.
# TYPE sperform_http_requests_in_flight gauge
sperform_http_requests_in_flight 1
# HELP sperform_write_batch_samples Samples per committed write transaction.
# TYPE sperform_write_batch_samples histogram
sperform_write_batch_samples_bucket{le="1"} 2
sperform_write_batch_samples_bucket{le="4"} 3
sperform_write_batch_samples_bucket{le="+Inf"} 4
sperform_write_batch_samples_sum 12.0
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
        assert_eq!(render(&known_snapshot()).unwrap(), expected);
    }

    #[test]
    fn families_without_samples_still_have_help_and_type() {
        let mut snapshot = known_snapshot();
        snapshot.http.responses.clear();
        snapshot.http.ingest_seconds.clear();
        let text = render(&snapshot).unwrap();
        let tail = "# HELP sperform_http_requests_total HTTP responses by method, route and status.\n\
                    # TYPE sperform_http_requests_total counter\n\
                    # HELP sperform_ingest_request_duration_seconds Time from the arrival of an \
                    ingest request to its response, by route.\n\
                    # TYPE sperform_ingest_request_duration_seconds histogram\n";
        assert!(text.ends_with(tail), "{text}");
    }

    #[test]
    fn the_content_type_is_that_of_the_encoded_format() {
        assert_eq!(
            exposition_content_type().to_string(),
            prometheus_text::CONTENT_TYPE
        );
    }
}
