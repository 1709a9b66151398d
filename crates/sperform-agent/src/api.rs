//! Talking to the daemon: the batch `POST`, what its answer means for the
//! spool, and the check, after an answer was lost, whether a batch is
//! already stored.

use std::error::Error as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use sperform_model::model::{MINUTE_MS, ServerName, Timestamp};
use sperform_model::wire::LoadBody;

use crate::spool::Sample;

/// Longest wait for one answer. Longer than the daemon's own stop (grace
/// and mercy, 5 s by default), so a slow commit is not taken for a lost one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections are closed before the daemon's keep-alive (5 s) would
/// close them, so a request never meets a connection the daemon is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What the log says of a batch in doubt.
const ASK_FIRST: &str = "the daemon is asked whether it stored the batch before it is sent again";

/// What the daemon did with a batch.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// `204`: committed.
    Stored,
    /// Sent before without an answer, and found in the daemon's database.
    FoundStored,
    /// A `4xx` that sending again cannot fix; nothing was stored.
    Rejected { status: u16, message: String },
    /// Certainly not stored (no connection, `503`, a refusal a fix of the
    /// configuration or time can cure); send again later.
    NotStored {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Sent, but no answer came (or a `5xx` that may have followed a
    /// commit): it may be stored.
    InDoubt { reason: String },
}

/// The result of one delivery: the outcome and, when a batch in doubt had
/// to be sent again without the daemon saying whether it held it, why.
#[derive(Debug)]
pub struct Delivery {
    pub outcome: Outcome,
    pub unverified_resend: Option<String>,
}

/// A sample of a batch in doubt that identifies it in the database: the
/// batch is stored if and only if the daemon holds `expected` samples of
/// `server` at exactly `time`.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub server: ServerName,
    pub time: Timestamp,
    pub expected: u64,
}

impl Probe {
    /// The probe for a batch: its last sample. A batch is stored whole or
    /// not at all, so one sample tells.
    pub fn of(samples: &[Sample]) -> Option<Probe> {
        let last = samples.last()?;
        let expected = samples
            .iter()
            .filter(|sample| sample.server == last.server && sample.time == last.time)
            .count() as u64;
        Some(Probe {
            server: last.server.clone(),
            time: last.time,
            expected,
        })
    }
}

#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    read_token: Option<String>,
}

impl Api {
    pub fn new(
        url: &str,
        token: Option<String>,
        read_token: Option<String>,
    ) -> Result<Api, String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|err| format!("--url {url:?} is not a URL ({err})"))?;
        if parsed.scheme() != "http" {
            return Err(format!(
                "--url {url:?}: only plain http:// is supported; reach an HTTPS daemon through a local proxy or tunnel"
            ));
        }
        if parsed.host_str().is_none() || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!(
                "--url {url:?} must be of the form http://host:port"
            ));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(1)
            .user_agent(concat!("sperform-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| format!("cannot set up the HTTP client: {}", innermost(&err)))?;
        Ok(Api {
            client,
            base: url.trim_end_matches('/').to_owned(),
            token,
            read_token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Delivers a batch. With a probe (the batch was sent before and the
    /// answer lost) the daemon is first asked whether it holds the batch;
    /// it is sent again only if it does not, or if the daemon cannot say.
    pub async fn deliver(&self, body: Vec<u8>, probe: Option<Probe>) -> Delivery {
        let mut unverified_resend = None;
        if let Some(probe) = probe {
            match self.is_stored(&probe).await {
                Ok(true) => {
                    return Delivery {
                        outcome: Outcome::FoundStored,
                        unverified_resend,
                    };
                }
                Ok(false) => {}
                Err(Check::Impossible(reason)) => unverified_resend = Some(reason),
                Err(Check::Failed(reason)) => {
                    return Delivery {
                        outcome: Outcome::InDoubt {
                            reason: format!(
                                "cannot ask whether the batch sent before is stored: {reason}"
                            ),
                        },
                        unverified_resend,
                    };
                }
            }
        }
        Delivery {
            outcome: self.post(body).await,
            unverified_resend,
        }
    }

    async fn post(&self, body: Vec<u8>) -> Outcome {
        let mut request = self
            .client
            .post(format!("{}/api/v1/samples", self.base))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) if err.is_connect() => {
                return Outcome::NotStored {
                    reason: innermost(&err),
                    retry_after: None,
                };
            }
            Err(err) => {
                return Outcome::InDoubt {
                    reason: format!("no answer ({}); {ASK_FIRST}", innermost(&err)),
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers().get(RETRY_AFTER));
        if status.is_success() {
            return Outcome::Stored;
        }
        // Whatever the body says, the status decides; a body that does not
        // arrive only makes the message shorter.
        let message = match response.bytes().await {
            Ok(body) => error_message(&body),
            Err(err) => innermost(&err),
        };
        classify(status, message, retry_after)
    }

    /// Whether the daemon holds the probe's samples: the number of samples
    /// of its server at exactly its time is the count of the minute bucket
    /// holding that time, read with `at` = the time, less the same count
    /// read with `at` one millisecond earlier.
    async fn is_stored(&self, probe: &Probe) -> Result<bool, Check> {
        let millis = probe.time.millis();
        let Some(up_to) = self.minute_count(&probe.server, millis).await? else {
            return Ok(false);
        };
        let before = if millis % MINUTE_MS == 0 {
            0
        } else {
            self.minute_count(&probe.server, millis - 1)
                .await?
                .unwrap_or(0)
        };
        Ok(up_to.saturating_sub(before) >= probe.expected)
    }

    /// The sample count of the minute bucket holding `at_millis`, counting
    /// samples up to that instant; `None` if the server is unknown.
    async fn minute_count(
        &self,
        server: &ServerName,
        at_millis: i64,
    ) -> Result<Option<u64>, Check> {
        let url = format!(
            "{}/api/v1/servers/{}/load?at={}.{:03}",
            self.base,
            server.as_str(),
            at_millis.div_euclid(1000),
            at_millis.rem_euclid(1000)
        );
        let mut request = self.client.get(url);
        if let Some(token) = &self.read_token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = request
            .send()
            .await
            .map_err(|err| Check::Failed(innermost(&err)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| Check::Failed(innermost(&err)))?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Check::Impossible(format!(
                    "reading the load answered {} ({}); give the agent the read token with --read-token-file",
                    status.as_u16(),
                    error_message(&body)
                )));
            }
            _ => {
                return Err(Check::Failed(format!(
                    "reading the load answered {} ({})",
                    status.as_u16(),
                    error_message(&body)
                )));
            }
        }
        last_minute_count(&body)
            .map(Some)
            .ok_or_else(|| Check::Failed("the load answer has no minute buckets".to_owned()))
    }
}

/// Why the daemon could not say whether it holds a batch.
enum Check {
    /// It never will (no read access): send again, at the risk of a
    /// duplicate.
    Impossible(String),
    /// Not now (no connection, an error): keep the batch in doubt.
    Failed(String),
}

/// The `samples` of the last minute bucket of a load answer.
fn last_minute_count(body: &[u8]) -> Option<u64> {
    let load: LoadBody = serde_json::from_slice(body).ok()?;
    Some(load.by_minute.last()?.samples)
}

/// What an answer other than `2xx` means for a batch.
fn classify(status: StatusCode, message: String, retry_after: Option<Duration>) -> Outcome {
    let code = status.as_u16();
    let reason = format!("{code} {message}");
    match code {
        // The daemon stores nothing of a request it answers 503.
        503 => Outcome::NotStored {
            reason,
            retry_after,
        },
        // A wrong token, URL or a busy proxy: nothing stored, and fixing the
        // configuration (or waiting) makes the same batch succeed, so it is
        // kept.
        401 | 403 | 404 | 405 | 408 | 429 => Outcome::NotStored {
            reason,
            retry_after,
        },
        300..=399 => Outcome::NotStored {
            reason: format!("{code}: the daemon answered a redirect; check --url"),
            retry_after: None,
        },
        400..=499 => Outcome::Rejected {
            status: code,
            message,
        },
        // A 500 of the daemon rolled back; a gateway's 502 or 504 may have
        // followed a commit. Asking first is cheap.
        _ => Outcome::InDoubt {
            reason: format!("{reason}; {ASK_FIRST}"),
        },
    }
}

/// The daemon's `{"error": "..."}` message, or the start of the raw body.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(300)
                .collect()
        })
}

/// The wait a `Retry-After` header asks for, in whole seconds (capped);
/// `None` for HTTP dates and broken values.
fn retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let seconds = value?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The most specific message in an error's chain ("Connection refused (os
/// error 111)" rather than "error sending request").
fn innermost(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message = cause.to_string();
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn sample(server: &str, millis: i64) -> Sample {
        Sample {
            server: ServerName::parse(server).unwrap(),
            time: Timestamp::from_millis(millis).unwrap(),
            cpu: 1.0,
            ram: 2.0,
        }
    }

    #[test]
    fn a_batch_is_identified_by_its_last_sample() {
        let probe = Probe::of(&[sample("a", 1_000), sample("a", 2_000)]).unwrap();
        assert_eq!(probe.server.as_str(), "a");
        assert_eq!(probe.time.millis(), 2_000);
        assert_eq!(probe.expected, 1);
        let probe =
            Probe::of(&[sample("a", 2_000), sample("b", 2_000), sample("b", 2_000)]).unwrap();
        assert_eq!(probe.expected, 2);
        assert_eq!(Probe::of(&[]), None);
    }

    #[test]
    fn answers_are_classified_by_what_they_mean_for_the_batch() {
        let status = |code| StatusCode::from_u16(code).unwrap();
        assert_eq!(
            classify(status(503), "busy".into(), Some(Duration::from_secs(1))),
            Outcome::NotStored {
                reason: "503 busy".into(),
                retry_after: Some(Duration::from_secs(1))
            }
        );
        for code in [401, 403, 404, 405, 408, 429, 301] {
            assert!(
                matches!(
                    classify(status(code), "x".into(), None),
                    Outcome::NotStored { .. }
                ),
                "{code}"
            );
        }
        for code in [400, 413, 422] {
            assert_eq!(
                classify(status(code), "bad".into(), None),
                Outcome::Rejected {
                    status: code,
                    message: "bad".into()
                }
            );
        }
        for code in [500, 502, 504] {
            assert!(
                matches!(
                    classify(status(code), "x".into(), None),
                    Outcome::InDoubt { .. }
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn error_messages_are_taken_from_the_json_body() {
        assert_eq!(
            error_message(br#"{"error":"entry 3: cpu must be a number"}"#),
            "entry 3: cpu must be a number"
        );
        assert_eq!(error_message(b"  Bad Gateway\n"), "Bad Gateway");
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let header = |text: &'static str| HeaderValue::from_static(text);
        assert_eq!(
            retry_after(Some(&header("2"))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(retry_after(Some(&header("86400"))), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after(Some(&header("Wed, 21 Oct 2015 07:28:00 GMT"))),
            None
        );
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn the_last_minute_bucket_is_read_from_a_load_answer() {
        let body = br#"{"server":"a","at":"2026-11-27T21:12:30Z","by_minute":[
            {"start":"2026-11-27T21:11:00Z","cpu":1,"ram":2,"samples":4},
            {"start":"2026-11-27T21:12:00Z","cpu":1,"ram":2,"samples":2}],"by_hour":[]}"#;
        assert_eq!(last_minute_count(body), Some(2));
        assert_eq!(last_minute_count(br#"{"by_minute":[]}"#), None);
        assert_eq!(last_minute_count(b"not json"), None);
    }

    #[test]
    fn urls_must_be_plain_http() {
        assert_eq!(
            Api::new("http://127.0.0.1:8080/", None, None)
                .map(|api| api.base().to_owned())
                .ok(),
            Some("http://127.0.0.1:8080".to_owned())
        );
        assert!(Api::new("https://monitor:8080", None, None).is_err());
        assert!(Api::new("monitor:8080", None, None).is_err());
        assert!(Api::new("http://monitor:8080?x=1", None, None).is_err());
    }
}
