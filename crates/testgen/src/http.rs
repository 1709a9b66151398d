//! The HTTP side: one pooled client, a cap on requests in flight, 503
//! retries that honour `Retry-After`, and the per-worker statistics.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;

/// How often one request is retried after a 503 before it counts as failed.
const MAX_RETRIES: u32 = 20;
/// The longest `Retry-After` honoured; longer ones are shortened to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Waited after a 503 that names no usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How many error messages a run keeps to show.
const KEPT_ERRORS: usize = 5;

/// A final answer of the daemon: any status but a 503 that was retried.
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub latency: Duration,
}

impl Answer {
    /// The daemon's `{"error": "..."}` message, or the raw body.
    pub fn message(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|value| value.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().chars().take(300).collect())
    }
}

/// A request that got no HTTP answer.
#[derive(Debug)]
pub struct TransportError {
    /// Whether no connection could be made at all (daemon not listening).
    pub connect: bool,
    pub timeout: bool,
    pub message: String,
}

impl TransportError {
    fn from_reqwest(err: &reqwest::Error) -> Self {
        TransportError {
            connect: err.is_connect(),
            timeout: err.is_timeout(),
            message: innermost(err),
        }
    }

    /// The key under which this error is counted.
    pub fn kind(&self) -> &'static str {
        if self.connect {
            "connect"
        } else if self.timeout {
            "timeout"
        } else {
            "transport"
        }
    }
}

/// The most specific message in an error's chain ("Connection refused
/// (os error 111)" rather than "error sending request").
fn innermost(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message = cause.to_string();
        source = cause.source();
    }
    message
}

/// The daemon's address, the shared client and the in-flight cap.
pub struct Api {
    client: reqwest::Client,
    base: String,
    permits: Semaphore,
    retries: AtomicU64,
    /// Set once the daemon stops accepting connections: workers then stop.
    pub lost: AtomicBool,
}

impl Api {
    pub fn new(url: &str, connections: usize) -> Result<Arc<Self>, String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|err| format!("--url {url:?} is not a URL ({err})"))?;
        if parsed.scheme() != "http" {
            return Err(format!(
                "--url {url:?}: only plain http:// is supported (the daemon speaks HTTP/1.1 without TLS)"
            ));
        }
        if parsed.host_str().is_none() || parsed.query().is_some() {
            return Err(format!(
                "--url {url:?} must be of the form http://host:port"
            ));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(connections)
            .user_agent(concat!("testgen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| format!("could not set up the HTTP client: {}", innermost(&err)))?;
        Ok(Arc::new(Api {
            client,
            base: url.trim_end_matches('/').to_owned(),
            permits: Semaphore::new(connections),
            retries: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        }))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Requests answered 503 and sent again.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Sends one request, retrying on 503 after the daemon's `Retry-After`.
    /// Returns the final answer, whatever its status; the latency is that of
    /// the last attempt.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, TransportError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self.attempt(method.clone(), &url, body.clone()).await?;
            if answer.0.status != StatusCode::SERVICE_UNAVAILABLE || attempt > MAX_RETRIES {
                return Ok(answer.0);
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(answer.1).await;
        }
    }

    /// One attempt; also the wait the daemon asked for, should it be a 503.
    async fn attempt(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(Answer, Duration), TransportError> {
        // The semaphore is never closed, so acquiring only fails in theory.
        let _permit = self.permits.acquire().await.ok();
        let started = Instant::now();
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = retry_after(response.headers().get(RETRY_AFTER));
            let body = response.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((status, retry_after, body))
        }
        .await;
        match result {
            Ok((status, retry_after, body)) => Ok((
                Answer {
                    status,
                    body,
                    latency: started.elapsed(),
                },
                retry_after,
            )),
            Err(err) => {
                let err = TransportError::from_reqwest(&err);
                if err.connect {
                    self.lost.store(true, Ordering::Relaxed);
                }
                Err(err)
            }
        }
    }
}

/// The wait a `Retry-After` header asks for, in whole seconds; HTTP dates
/// and missing or broken values mean the default.
fn retry_after(value: Option<&reqwest::header::HeaderValue>) -> Duration {
    value
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .map_or(DEFAULT_RETRY_AFTER, |wait| wait.min(MAX_RETRY_AFTER))
}

/// What one worker (or the whole run, once merged) saw while sending.
pub struct Stats {
    /// Latency of every answered ingest request, in microseconds.
    pub latency: Histogram<u64>,
    pub requests: u64,
    /// Samples the daemon acknowledged.
    pub samples: u64,
    /// Failed requests by status code or transport error kind.
    pub errors: BTreeMap<String, u64>,
    /// The first few error messages.
    pub messages: Vec<String>,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            // 1 µs to 1 hour at 3 significant digits: constant, valid bounds.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            requests: 0,
            samples: 0,
            errors: BTreeMap::new(),
            messages: Vec::new(),
        }
    }

    pub fn answered(&mut self, latency: Duration) {
        self.requests += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(1));
    }

    pub fn error(&mut self, kind: String, message: String) {
        *self.errors.entry(kind).or_default() += 1;
        if self.messages.len() < KEPT_ERRORS {
            self.messages.push(message);
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: Stats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.samples += other.samples;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        for message in other.messages {
            if self.messages.len() < KEPT_ERRORS {
                self.messages.push(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_falls_back() {
        let header = |text: &'static str| HeaderValue::from_static(text);
        assert_eq!(retry_after(Some(&header("2"))), Duration::from_secs(2));
        assert_eq!(retry_after(Some(&header("0"))), Duration::ZERO);
        assert_eq!(retry_after(Some(&header("3600"))), MAX_RETRY_AFTER);
        assert_eq!(
            retry_after(Some(&header("Wed, 21 Oct 2015 07:28:00 GMT"))),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(retry_after(None), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn urls_must_be_plain_http() {
        assert!(Api::new("http://127.0.0.1:8080", 4).is_ok());
        assert_eq!(
            Api::new("http://127.0.0.1:8080/", 4).map(|api| api.base().to_owned()),
            Ok("http://127.0.0.1:8080".to_owned())
        );
        assert!(Api::new("https://127.0.0.1:8080", 4).is_err());
        assert!(Api::new("127.0.0.1:8080", 4).is_err());
        assert!(Api::new("http://127.0.0.1:8080?x=1", 4).is_err());
    }

    #[test]
    fn stats_merge() {
        let mut a = Stats::new();
        a.answered(Duration::from_millis(2));
        a.error("422".to_owned(), "bad".to_owned());
        let mut b = Stats::new();
        b.answered(Duration::from_millis(4));
        b.error("422".to_owned(), "worse".to_owned());
        b.error("connect".to_owned(), "refused".to_owned());
        a.merge(b);
        assert_eq!(a.requests, 2);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.errors.get("422"), Some(&2));
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.messages.len(), 3);
    }
}
