//! Every input rule of the single-sample endpoint: status, JSON error body,
//! and a database left as it was.

use rocket::http::Status;
use serde_json::json;
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};

use crate::support::{TestApp, at, error_message};

/// Posts `body` for `server` and checks it is refused with `status` and an
/// error message starting with `message`, leaving the database empty.
fn assert_refused(server: &str, body: &str, status: Status, message: &str) {
    let app = TestApp::new();
    let (got, response) = app.post(&format!("/api/v1/servers/{server}/samples"), body);
    assert_eq!(got, status, "{response:?}");
    let error = error_message(&response);
    assert!(
        error.starts_with(message),
        "{error:?} should start with {message:?}"
    );
    assert_eq!(app.stored_samples(), 0);
    assert_eq!(app.stored_servers(), 0);
}

#[test]
fn a_valid_sample_is_stored_exactly() {
    let app = TestApp::new();
    let time = at(Timestamp::now(), -MINUTE_MS);
    let (status, body) = app.post_sample(
        "web-1",
        json!({"cpu": 12.5, "ram": 40.0, "time": time.to_rfc3339()}),
    );
    assert_eq!((status, body), (Status::NoContent, None));
    assert_eq!(app.stored_rows("web-1"), vec![(time.millis(), 12.5, 40.0)]);
}

#[test]
fn malformed_json_is_a_400() {
    assert_refused(
        "web-1",
        r#"{"cpu": 12.5, "ram": "#,
        Status::BadRequest,
        "malformed JSON: EOF",
    );
    assert_refused(
        "web-1",
        "cpu=12.5",
        Status::BadRequest,
        "malformed JSON: expected value",
    );
    assert_refused("web-1", "", Status::BadRequest, "malformed JSON: EOF");
}

#[test]
fn wrong_types_missing_and_unknown_fields_are_a_422() {
    let unprocessable = Status::UnprocessableEntity;
    assert_refused(
        "web-1",
        r#"{"cpu": "12", "ram": 1}"#,
        unprocessable,
        "invalid type: string \"12\", expected f64",
    );
    assert_refused(
        "web-1",
        r#"{"cpu": 12}"#,
        unprocessable,
        "missing field `ram`",
    );
    assert_refused(
        "web-1",
        r#"{"cpu": 1, "ram": 1, "disk": 3}"#,
        unprocessable,
        "unknown field `disk`",
    );
    assert_refused(
        "web-1",
        r#"[1, 2]"#,
        unprocessable,
        "invalid type: sequence, expected a JSON object",
    );
    assert_refused(
        "web-1",
        r#"{"cpu": 1, "ram": 1, "time": true}"#,
        unprocessable,
        "invalid type: boolean `true`, expected an RFC 3339 time string or a number of Unix seconds",
    );
}

#[test]
fn cpu_and_ram_must_lie_from_0_to_100() {
    let unprocessable = Status::UnprocessableEntity;
    assert_refused(
        "web-1",
        r#"{"cpu": 100.5, "ram": 1}"#,
        unprocessable,
        "cpu must be a number from 0 to 100 (percent), got 100.5",
    );
    assert_refused(
        "web-1",
        r#"{"cpu": -1, "ram": 1}"#,
        unprocessable,
        "cpu must be a number from 0 to 100 (percent), got -1",
    );
    assert_refused(
        "web-1",
        r#"{"cpu": 1, "ram": 101}"#,
        unprocessable,
        "ram must be a number from 0 to 100 (percent), got 101",
    );
    let app = TestApp::new();
    let (status, _) = app.post_sample("web-1", json!({"cpu": 0, "ram": 100}));
    assert_eq!(status, Status::NoContent);
    assert_eq!(app.stored_rows("web-1")[0].1, 0.0);
    assert_eq!(app.stored_rows("web-1")[0].2, 100.0);
}

#[test]
fn server_names_are_checked() {
    let unprocessable = Status::UnprocessableEntity;
    let body = r#"{"cpu": 1, "ram": 1}"#;
    assert_refused(
        &"a".repeat(254),
        body,
        unprocessable,
        "server name must be 1 to 253 characters long, got 254",
    );
    assert_refused(
        "web%201",
        body,
        unprocessable,
        "server name may only contain A-Z a-z 0-9 . _ : - (found ' ')",
    );
    assert_refused(
        "w%C3%A9b",
        body,
        unprocessable,
        "server name may only contain A-Z a-z 0-9 . _ : - (found 'é')",
    );
    let app = TestApp::new();
    let longest = "a".repeat(253);
    let (status, _) = app.post_sample(&longest, json!({"cpu": 1, "ram": 1}));
    assert_eq!(status, Status::NoContent);
    let name = "Web-1.example.com:8080_x";
    let (status, _) = app.post_sample(name, json!({"cpu": 1, "ram": 1}));
    assert_eq!(status, Status::NoContent);
    assert_eq!(app.stored_rows(name).len(), 1);
}

#[test]
fn times_too_far_ahead_or_beyond_retention_are_refused() {
    let unprocessable = Status::UnprocessableEntity;
    let ahead = at(Timestamp::now(), 6 * MINUTE_MS).to_rfc3339();
    assert_refused(
        "web-1",
        &json!({"cpu": 1, "ram": 1, "time": ahead}).to_string(),
        unprocessable,
        &format!("time {ahead} is more than 5 minutes ahead"),
    );
    let old = at(Timestamp::now(), -8 * 24 * HOUR_MS).to_rfc3339();
    assert_refused(
        "web-1",
        &json!({"cpu": 1, "ram": 1, "time": old}).to_string(),
        unprocessable,
        &format!("time {old} is older than the retention period"),
    );
    assert_refused(
        "web-1",
        r#"{"cpu": 1, "ram": 1, "time": "2026-13-01T00:00:00Z"}"#,
        unprocessable,
        "time \"2026-13-01T00:00:00Z\" is not an RFC 3339 time",
    );
    assert_refused(
        "web-1",
        r#"{"cpu": 1, "ram": 1, "time": -5}"#,
        unprocessable,
        "time -5 is not a Unix time",
    );
}

#[test]
fn retention_follows_the_configuration() {
    let app = TestApp::with(|figment| figment.merge(("retention", "36h")));
    let two_days_ago = at(Timestamp::now(), -48 * HOUR_MS).to_rfc3339();
    let (status, body) =
        app.post_sample("web-1", json!({"cpu": 1, "ram": 1, "time": two_days_ago}));
    assert_eq!(status, Status::UnprocessableEntity);
    assert!(error_message(&body).contains("older than the retention period"));
    let a_day_ago = at(Timestamp::now(), -24 * HOUR_MS).to_rfc3339();
    let (status, _) = app.post_sample("web-1", json!({"cpu": 1, "ram": 1, "time": a_day_ago}));
    assert_eq!(status, Status::NoContent);
}

#[test]
fn times_may_be_unix_seconds_or_carry_an_offset() {
    let app = TestApp::new();
    let base = at(Timestamp::now(), -HOUR_MS).floor(MINUTE_MS);
    let seconds = (base.millis() + 250) as f64 / 1000.0;
    let (status, _) = app.post_sample("web-1", json!({"cpu": 1, "ram": 2, "time": seconds}));
    assert_eq!(status, Status::NoContent);
    let integer_seconds = base.millis() / 1000 + 1;
    let (status, _) = app.post_sample(
        "web-1",
        json!({"cpu": 3, "ram": 4, "time": integer_seconds}),
    );
    assert_eq!(status, Status::NoContent);
    let local = chrono::DateTime::from_timestamp_millis(base.millis() + 2500)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::west_opt(5 * 3600).unwrap())
        .to_rfc3339();
    let (status, _) = app.post_sample("web-1", json!({"cpu": 5, "ram": 6, "time": local}));
    assert_eq!(status, Status::NoContent);
    assert_eq!(
        app.stored_rows("web-1"),
        vec![
            (base.millis() + 250, 1.0, 2.0),
            (base.millis() + 1000, 3.0, 4.0),
            (base.millis() + 2500, 5.0, 6.0),
        ]
    );
}

#[test]
fn a_body_over_64_kib_is_a_413() {
    let padding = " ".repeat(64 * 1024);
    let body = format!(r#"{{"cpu": 1, "ram": 1}}{padding}"#);
    assert_refused(
        "web-1",
        &body,
        Status::PayloadTooLarge,
        "the request body is larger than the 64 KiB",
    );
    // Just under the limit is fine.
    let app = TestApp::new();
    let body = format!(r#"{{"cpu": 1, "ram": 1}}{}"#, " ".repeat(64 * 1024 - 20));
    let (status, _) = app.post("/api/v1/servers/web-1/samples", body);
    assert_eq!(status, Status::NoContent);
}

#[test]
fn a_query_parameter_given_twice_is_refused() {
    let app = TestApp::new();
    let (status, _) = app.post_sample("web-1", json!({"cpu": 1, "ram": 1}));
    assert_eq!(status, Status::NoContent);
    let (status, body) = app.get("/api/v1/servers/web-1/load?at=1700000000&at=1700000060");
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "query parameter `at` is given more than once"
    );
    let (status, body) = app.get("/api/v1/overview?at=zzz&at=1700000000");
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "query parameter `at` is given more than once"
    );
    let (status, body) = app.get("/api/v1/servers/web-1/load/range?from=1&to=2&step=1m&step=5m");
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "query parameter `step` is given more than once"
    );
}

#[test]
fn bad_query_parameters_are_named_in_the_order_the_handler_checks_them() {
    let app = TestApp::new();
    let (status, body) = app.get("/api/v1/servers/web%201/load/range?from=x&step=zz");
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "server name may only contain A-Z a-z 0-9 . _ : - (found ' ')"
    );
    let (status, body) = app.get("/api/v1/servers/web-1/load/range?from=x&step=zz");
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "query parameter `from`: time \"x\" is not an RFC 3339 time such as \"2026-11-27T19:58:03Z\" (premature end of input)"
    );
    let (status, body) = app.get("/api/v1/servers/web-1/load/range?from=1&step=zz");
    assert_eq!(
        (status, error_message(&body)),
        (
            Status::UnprocessableEntity,
            "query parameter `to` is missing".to_owned()
        )
    );
    let (status, body) = app.get("/api/v1/servers/web-1/load/range?from=1&to=2&step=7s");
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "step \"7s\" must be one of 1m 5m 10m 15m 30m 1h 6h 12h 1d, or seconds that make whole minutes"
    );
    let (status, body) = app.get("/api/v1/overview?at=");
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "query parameter `at`: time \"\" is not an RFC 3339 time such as \"2026-11-27T19:58:03Z\" (premature end of input)"
    );
}
