//! Counts what the HTTP side does, for `/metrics`: responses by method,
//! route and status, requests in flight, and how long ingest requests take
//! from arrival to response (which includes waiting for the commit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Method;
use rocket::{Data, Request, Response};

use crate::store::HistogramSnapshot;

/// Upper bounds of the ingest latency buckets, in seconds.
pub const INGEST_SECONDS_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of a request that matched no route (404, 405, ...).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The HTTP counters; cheap to clone, clones share them.
#[derive(Clone, Default)]
pub struct HttpStats {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    in_flight: AtomicU64,
    /// Route path -> (method, status) -> responses. Keyed by route first so
    /// that the common case, an existing entry, is found without allocating.
    responses: RwLock<HashMap<String, StatusCounts>>,
    /// Route path of an ingest route -> latency.
    ingest_seconds: RwLock<HashMap<String, Histogram>>,
}

/// Responses of one route by (method, status).
type StatusCounts = HashMap<(Method, u16), AtomicU64>;

/// One count of responses, for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseCount {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
    pub count: u64,
}

/// A copy of the HTTP counters at one moment, sorted for stable output.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSnapshot {
    pub in_flight: u64,
    pub responses: Vec<ResponseCount>,
    /// (route path, latency) of each ingest route that has been used.
    pub ingest_seconds: Vec<(String, HistogramSnapshot)>,
}

impl HttpStats {
    /// Requests that have arrived and not yet been answered.
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> HttpSnapshot {
        let mut responses = Vec::new();
        if let Ok(routes) = self.inner.responses.read() {
            for (route, counts) in routes.iter() {
                for ((method, status), count) in counts {
                    responses.push(ResponseCount {
                        method: method.as_str(),
                        route: route.clone(),
                        status: *status,
                        count: count.load(Ordering::Relaxed),
                    });
                }
            }
        }
        responses
            .sort_by(|a, b| (&a.route, a.method, a.status).cmp(&(&b.route, b.method, b.status)));
        let mut ingest_seconds: Vec<(String, HistogramSnapshot)> = self
            .inner
            .ingest_seconds
            .read()
            .map(|routes| {
                routes
                    .iter()
                    .map(|(route, histogram)| (route.clone(), histogram.snapshot()))
                    .collect()
            })
            .unwrap_or_default();
        ingest_seconds.sort_by(|a, b| a.0.cmp(&b.0));
        HttpSnapshot {
            in_flight: self.in_flight(),
            responses,
            ingest_seconds,
        }
    }

    fn count_response(&self, route: &str, method: Method, status: u16) {
        let key = (method, status);
        if let Ok(routes) = self.inner.responses.read()
            && let Some(count) = routes.get(route).and_then(|counts| counts.get(&key))
        {
            count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // First response of its kind: take the write lock once.
        if let Ok(mut routes) = self.inner.responses.write() {
            routes
                .entry(route.to_owned())
                .or_default()
                .entry(key)
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn observe_ingest(&self, route: &str, seconds: f64) {
        if let Ok(routes) = self.inner.ingest_seconds.read()
            && let Some(histogram) = routes.get(route)
        {
            histogram.observe(seconds);
            return;
        }
        if let Ok(mut routes) = self.inner.ingest_seconds.write() {
            routes
                .entry(route.to_owned())
                .or_insert_with(|| Histogram::new(INGEST_SECONDS_BOUNDS))
                .observe(seconds);
        }
    }
}

/// The fairing that feeds `HttpStats`.
pub struct RequestTelemetry {
    stats: HttpStats,
}

impl RequestTelemetry {
    pub fn new(stats: HttpStats) -> Self {
        RequestTelemetry { stats }
    }
}

/// When the request arrived, kept in its local cache.
struct Arrival(Instant);

#[rocket::async_trait]
impl Fairing for RequestTelemetry {
    fn info(&self) -> Info {
        Info {
            name: "Request metrics",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        request.local_cache(|| Arrival(Instant::now()));
        self.stats.inner.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let arrival = request.local_cache(|| Arrival(Instant::now())).0;
        let route = request.route().map(|route| route.uri.path());
        let method = request.method();
        self.stats.count_response(
            route.unwrap_or(UNMATCHED_ROUTE),
            method,
            response.status().code,
        );
        // Every POST route ingests samples.
        if let Some(route) = route
            && method == Method::Post
        {
            self.stats
                .observe_ingest(route, arrival.elapsed().as_secs_f64());
        }
        self.stats.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A histogram with fixed bounds, updated without locks.
struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus one for values above the last.
    counts: Vec<AtomicU64>,
    /// Sum of the observed values in microseconds, so that it can be an
    /// integer atomic.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, seconds: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((seconds * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self
                .counts
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::new(&[0.001, 0.01]);
        for seconds in [0.0005, 0.001, 0.002, 0.5] {
            histogram.observe(seconds);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, vec![2, 1, 1]);
        assert!((snapshot.sum - 0.5035).abs() < 1e-9, "{}", snapshot.sum);
    }

    #[test]
    fn responses_are_counted_by_route_method_and_status() {
        let stats = HttpStats::default();
        stats.count_response("/health", Method::Get, 200);
        stats.count_response("/health", Method::Get, 200);
        stats.count_response(UNMATCHED_ROUTE, Method::Put, 404);
        let snapshot = stats.snapshot();
        assert_eq!(
            snapshot.responses,
            vec![
                ResponseCount {
                    method: "GET",
                    route: "/health".into(),
                    status: 200,
                    count: 2
                },
                ResponseCount {
                    method: "PUT",
                    route: UNMATCHED_ROUTE.into(),
                    status: 404,
                    count: 1
                },
            ]
        );
    }
}
