//! `GET /api/v1/overview`: every server's last 60 minute means in one
//! answer, equal to the minute buckets of each server's own load report.

use rocket::http::{Header, Status};
use serde_json::{Value, json};
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};

use crate::support::{TestApp, at, base_hour, error_message, read};

const READ_TOKEN: &str = "read-0123456789abcdef01";

fn post_batch(app: &TestApp, samples: &[(&str, Timestamp, f64, f64)]) {
    let batch: Vec<Value> = samples
        .iter()
        .map(|(server, time, cpu, ram)| {
            json!({"server": server, "cpu": cpu, "ram": ram, "time": time.to_rfc3339()})
        })
        .collect();
    let (status, body) = app.post("/api/v1/samples", json!(batch).to_string());
    assert_eq!(status, Status::NoContent, "{body:?}");
}

fn overview_at(app: &TestApp, at: Timestamp) -> Value {
    let (status, body) = app.get(&format!("/api/v1/overview?at={}", at.to_rfc3339()));
    assert_eq!(status, Status::Ok, "{body:?}");
    body.unwrap()
}

/// Every server of the overview at `moment` has exactly the CPU and RAM
/// means of the minute buckets of its own load report at `moment`.
fn assert_overview_matches_load(app: &TestApp, moment: Timestamp) -> Value {
    let overview = overview_at(app, moment);
    assert_eq!(overview["at"], moment.to_rfc3339());
    for server in overview["servers"].as_array().unwrap() {
        let name = server["name"].as_str().unwrap();
        let report = app.load(name, moment);
        let by_minute = report["by_minute"].as_array().unwrap();
        assert_eq!(overview["start"], by_minute[0]["start"]);
        for field in ["cpu", "ram"] {
            let from_load: Vec<&Value> = by_minute.iter().map(|bucket| &bucket[field]).collect();
            let from_overview: Vec<&Value> = server[field].as_array().unwrap().iter().collect();
            assert_eq!(from_overview, from_load, "{name} {field} at {moment}");
        }
    }
    overview
}

#[test]
fn an_empty_database_has_an_empty_overview() {
    let app = TestApp::new();
    let (status, body) = app.get("/api/v1/overview");
    assert_eq!(status, Status::Ok);
    assert_eq!(body.unwrap()["servers"], json!([]));
}

#[test]
fn the_overview_lists_every_server_by_name_with_its_minute_means() {
    let app = TestApp::new();
    let base = base_hour();
    let moment = at(base, HOUR_MS + 30_000);
    post_batch(
        &app,
        &[
            ("web-2", at(base, 30_000), 50.0, 60.0), // before the 60 minutes
            ("web-2", at(base, MINUTE_MS), 10.0, 20.0),
            ("web-2", at(base, 2 * MINUTE_MS - 1), 20.0, 40.0),
            ("web-2", at(base, 40 * MINUTE_MS), 1.0 / 3.0, 2.0 / 3.0),
            ("web-2", moment, 5.0, 6.0), // exactly at `at`: counts
            ("web-2", at(moment, 1), 100.0, 100.0), // after `at`: does not
            ("db-1", at(base, 2 * MINUTE_MS), 30.0, 50.0),
            ("Web-10", at(base, 10_000), 7.0, 7.0), // only before the window
        ],
    );
    let overview = assert_overview_matches_load(&app, moment);
    let names: Vec<&str> = overview["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|server| server["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Web-10", "db-1", "web-2"]);
    assert_eq!(overview["start"], at(base, MINUTE_MS).to_rfc3339_seconds());
    let web_2 = &overview["servers"][2];
    assert_eq!(web_2["last_seen"], moment.to_rfc3339());
    assert_eq!(web_2["cpu"].as_array().unwrap().len(), 60);
    assert_eq!(web_2["cpu"][0], 15.0);
    assert_eq!(web_2["ram"][0], 30.0);
    assert_eq!(web_2["cpu"][1], Value::Null);
    assert_eq!(web_2["cpu"][59], 5.0);
    let filled = web_2["cpu"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|value| !value.is_null())
        .count();
    assert_eq!(filled, 3);
    let web_10 = &overview["servers"][0];
    assert_eq!(web_10["last_seen"], at(base, 10_000).to_rfc3339());
    assert!(web_10["cpu"].as_array().unwrap().iter().all(Value::is_null));

    // Before a server's first sample it is listed, never seen.
    let early = overview_at(&app, at(base, 5_000));
    assert_eq!(early["servers"][2]["last_seen"], Value::Null);
}

#[test]
fn the_overview_agrees_with_load_on_both_sides_of_the_seal() {
    // Forty seconds into a minute.
    let now = at(base_hour(), HOUR_MS + 40_000);
    let app = TestApp::at_time(now);
    let mut samples = Vec::new();
    for (index, offset) in [
        -3 * HOUR_MS,    // long sealed
        -59 * MINUTE_MS, // the oldest minute of the window at `now`
        -90_000,         // the last ended minute
        -30_000,         // this minute
        -1,              // this minute
        0,               // now
        2 * MINUTE_MS,   // ahead of the clock: after every `at` below but one
        -20 * MINUTE_MS, // a minute with two samples
        -20 * MINUTE_MS + 1,
    ]
    .into_iter()
    .enumerate()
    {
        for server in ["web-1", "web-2", "db-1"] {
            let cpu = 10.0 + index as f64 / 7.0;
            samples.push((server, at(now, offset), cpu, 100.0 - cpu));
        }
    }
    post_batch(&app, &samples);
    let moments = [
        at(now, -HOUR_MS),
        at(now, -30_000),
        now,
        at(now, 3 * MINUTE_MS),
    ];
    let before: Vec<Value> = moments
        .iter()
        .map(|moment| assert_overview_matches_load(&app, *moment))
        .collect();

    // Seal everything, the sample ahead of the clock included: the rollups
    // now answer for minutes the raw samples answered for before.
    let store = app.store();
    app.block_on(store.seal(at(now, 10 * MINUTE_MS))).unwrap();
    let after: Vec<Value> = moments
        .iter()
        .map(|moment| assert_overview_matches_load(&app, *moment))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn an_unreadable_at_is_refused() {
    let app = TestApp::new();
    let (status, body) = app.get("/api/v1/overview?at=yesterday");
    assert_eq!(status, Status::UnprocessableEntity);
    assert!(error_message(&body).starts_with("query parameter `at`"));
}

#[test]
fn the_overview_needs_the_read_token_when_one_is_set() {
    let app = TestApp::with(|figment| figment.merge(("read_token", READ_TOKEN)));
    let response = app.client.get("/api/v1/overview").dispatch();
    assert_eq!(
        response.headers().get_one("WWW-Authenticate"),
        Some(r#"Bearer realm="sperform""#)
    );
    let (status, body) = read(response);
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(
        error_message(&body),
        "this request needs the read token: send `Authorization: Bearer <token>`"
    );
    let response = app
        .client
        .get("/api/v1/overview")
        .header(Header::new("Authorization", format!("Bearer {READ_TOKEN}")))
        .dispatch();
    assert_eq!(read(response).0, Status::Ok);
}
