//! `POST /api/v1/samples`: many servers at once, all or nothing.

use rocket::http::Status;
use serde_json::{Value, json};
use sperform::model::{MINUTE_MS, Timestamp};

use crate::support::{TestApp, at, base_hour, error_message};

fn entry(server: &str, cpu: f64, ram: f64, time: Timestamp) -> Value {
    json!({"server": server, "cpu": cpu, "ram": ram, "time": time.to_rfc3339()})
}

#[test]
fn a_batch_stores_every_entry() {
    let app = TestApp::new();
    let base = base_hour();
    let batch = json!([
        entry("web-1", 10.0, 20.0, at(base, 1000)),
        entry("web-2", 30.0, 40.0, at(base, 2000)),
        entry("web-1", 50.0, 60.0, at(base, 3000)),
        {"server": "web-3", "cpu": 1, "ram": 2},
    ]);
    let (status, body) = app.post("/api/v1/samples", batch.to_string());
    assert_eq!((status, body), (Status::NoContent, None));
    assert_eq!(
        app.stored_rows("web-1"),
        vec![
            (base.millis() + 1000, 10.0, 20.0),
            (base.millis() + 3000, 50.0, 60.0)
        ]
    );
    assert_eq!(
        app.stored_rows("web-2"),
        vec![(base.millis() + 2000, 30.0, 40.0)]
    );
    assert_eq!(app.stored_rows("web-3").len(), 1);
    let report = app.load("web-1", at(base, MINUTE_MS - 1));
    assert_eq!(report["by_minute"][59]["cpu"], 30.0);
    assert_eq!(report["by_minute"][59]["samples"], 2);
}

/// Sends a batch whose entry `bad_index` is `bad`, the others valid, and
/// checks the 422 names that index and nothing was stored.
fn assert_batch_refused(bad_index: usize, bad: Value, message: &str) {
    let app = TestApp::new();
    let base = base_hour();
    let mut entries: Vec<Value> = (0..5)
        .map(|i| entry("web-1", 1.0, 2.0, at(base, i)))
        .collect();
    entries[bad_index] = bad;
    let (status, body) = app.post("/api/v1/samples", Value::Array(entries).to_string());
    assert_eq!(status, Status::UnprocessableEntity, "{body:?}");
    let error = error_message(&body);
    assert!(
        error.starts_with(message),
        "{error:?} should start with {message:?}"
    );
    assert_eq!(app.stored_samples(), 0);
    assert_eq!(app.stored_servers(), 0);
}

#[test]
fn one_invalid_entry_rejects_the_whole_batch_and_names_its_index() {
    let now = Timestamp::now();
    assert_batch_refused(
        3,
        json!({"server": "web 1", "cpu": 1, "ram": 1}),
        "entry 3: server name may only contain",
    );
    assert_batch_refused(
        2,
        json!({"server": "web-1", "cpu": 101, "ram": 1}),
        "entry 2: cpu must be a number from 0 to 100 (percent), got 101",
    );
    assert_batch_refused(
        4,
        json!({"server": "web-1", "cpu": 1}),
        "entry 4: missing field `ram`",
    );
    assert_batch_refused(
        1,
        json!({"server": "web-1", "cpu": 1, "ram": 1, "os": "linux"}),
        "entry 1: unknown field `os`",
    );
    assert_batch_refused(
        0,
        json!({"server": "web-1", "cpu": "high", "ram": 1}),
        "entry 0: invalid type: string \"high\"",
    );
    assert_batch_refused(
        4,
        entry("web-1", 1.0, 1.0, at(now, 10 * MINUTE_MS)),
        "entry 4: time",
    );
    assert_batch_refused(2, json!("web-1"), "entry 2: invalid type: string");
    assert_batch_refused(
        1,
        json!(["web-1", 1, 1]),
        "entry 1: invalid type: sequence, expected a JSON object",
    );
}

#[test]
fn the_first_bad_entry_is_the_one_named() {
    let app = TestApp::new();
    let batch = json!([
        {"server": "web-1", "cpu": 1, "ram": 1},
        {"server": "web-1", "cpu": 200, "ram": 1},
        {"server": "web-1", "cpu": "x", "ram": 1},
    ]);
    let (status, body) = app.post("/api/v1/samples", batch.to_string());
    assert_eq!(status, Status::UnprocessableEntity);
    assert!(error_message(&body).starts_with("entry 1: cpu must be"));
}

#[test]
fn a_batch_must_be_a_non_empty_array_of_at_most_10000() {
    let app = TestApp::new();
    let (status, body) = app.post("/api/v1/samples", "[]");
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "a batch must hold 1 to 10000 samples, got none"
    );

    let (status, body) = app.post(
        "/api/v1/samples",
        r#"{"server": "web-1", "cpu": 1, "ram": 1}"#,
    );
    assert_eq!(status, Status::UnprocessableEntity);
    assert!(
        error_message(&body).starts_with("invalid type: map, expected a JSON array of samples")
    );

    let one = r#"{"server":"w","cpu":1,"ram":1}"#;
    let too_many = format!("[{}]", vec![one; 10_001].join(","));
    let (status, body) = app.post("/api/v1/samples", too_many);
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(
        error_message(&body),
        "entry 10000: a batch must hold 1 to 10000 samples; this one holds more"
    );
    assert_eq!(app.stored_samples(), 0);

    let most = format!("[{}]", vec![one; 10_000].join(","));
    let (status, _) = app.post("/api/v1/samples", most);
    assert_eq!(status, Status::NoContent);
    assert_eq!(app.stored_samples(), 10_000);
}

#[test]
fn a_malformed_batch_is_a_400() {
    let app = TestApp::new();
    let (status, body) = app.post(
        "/api/v1/samples",
        r#"[{"server": "web-1", "cpu": 1, "ram": 1},"#,
    );
    assert_eq!(status, Status::BadRequest);
    assert!(error_message(&body).starts_with("malformed JSON: entry 1: EOF while parsing"));
    let (status, body) = app.post(
        "/api/v1/samples",
        r#"[{"server": "web-1", "cpu": 1, "ram": 1}] x"#,
    );
    assert_eq!(status, Status::BadRequest);
    assert!(error_message(&body).starts_with("malformed JSON"));
    assert_eq!(app.stored_samples(), 0);
}

#[test]
fn a_batch_body_over_4_mib_is_a_413() {
    let app = TestApp::new();
    let body = format!(
        r#"[{{"server":"w","cpu":1,"ram":1}}]{}"#,
        " ".repeat(4 * 1024 * 1024)
    );
    let (status, body) = app.post("/api/v1/samples", body);
    assert_eq!(status, Status::PayloadTooLarge);
    assert_eq!(
        error_message(&body),
        "the request body is larger than the 4096 KiB this endpoint accepts"
    );
    assert_eq!(app.stored_samples(), 0);
}
