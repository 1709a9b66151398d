//! The minute and hour averages: boundaries, `at`, empty buckets, exact means.

use rocket::http::Status;
use serde_json::{Value, json};
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};

use crate::support::{TestApp, at, base_hour, error_message};

const SECOND_MS: i64 = 1000;

fn post_at(app: &TestApp, server: &str, time: Timestamp, cpu: f64, ram: f64) {
    let (status, body) = app.post_sample(
        server,
        json!({"cpu": cpu, "ram": ram, "time": time.to_rfc3339()}),
    );
    assert_eq!(status, Status::NoContent, "{body:?}");
}

/// The non-empty buckets of a view as (index, cpu, ram, samples).
fn filled(buckets: &Value) -> Vec<(usize, f64, f64, u64)> {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, bucket)| bucket["samples"].as_u64().unwrap() > 0)
        .map(|(index, bucket)| {
            (
                index,
                bucket["cpu"].as_f64().unwrap(),
                bucket["ram"].as_f64().unwrap(),
                bucket["samples"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn samples_on_both_sides_of_minute_and_hour_boundaries_land_in_the_right_buckets() {
    let app = TestApp::new();
    let base = base_hour();
    // `at` is 30 s into the first minute of the hour after `base`, so the
    // minute view runs from base+1m to base+60m and the hour view ends with
    // the hour base+1h.
    let query_at = at(base, HOUR_MS + 30 * SECOND_MS);
    post_at(&app, "web-1", at(base, 30 * SECOND_MS), 50.0, 60.0); // before the minute view
    post_at(&app, "web-1", at(base, MINUTE_MS), 10.0, 20.0); // first instant of minute 0
    post_at(&app, "web-1", at(base, 2 * MINUTE_MS - 1), 20.0, 40.0); // last ms of minute 0
    post_at(&app, "web-1", at(base, 2 * MINUTE_MS), 30.0, 50.0); // minute 1
    post_at(&app, "web-1", at(base, HOUR_MS - 1), 1.0, 2.0); // last ms of the base hour
    post_at(&app, "web-1", at(base, HOUR_MS), 3.0, 4.0); // first ms of the next hour
    post_at(&app, "web-1", query_at, 5.0, 6.0); // exactly at `at`: counts
    post_at(&app, "web-1", at(query_at, 1), 100.0, 100.0); // 1 ms after `at`: does not

    let report = app.load("web-1", query_at);
    assert_eq!(report["server"], "web-1");
    assert_eq!(report["at"], query_at.to_rfc3339());

    let by_minute = &report["by_minute"];
    assert_eq!(by_minute.as_array().unwrap().len(), 60);
    assert_eq!(
        by_minute[0]["start"],
        at(base, MINUTE_MS).to_rfc3339_seconds()
    );
    assert_eq!(
        by_minute[59]["start"],
        at(base, HOUR_MS).to_rfc3339_seconds()
    );
    assert_eq!(
        filled(by_minute),
        vec![
            (0, 15.0, 30.0, 2),
            (1, 30.0, 50.0, 1),
            (58, 1.0, 2.0, 1),
            (59, 4.0, 5.0, 2),
        ]
    );

    let by_hour = &report["by_hour"];
    assert_eq!(by_hour.as_array().unwrap().len(), 24);
    assert_eq!(
        by_hour[0]["start"],
        at(base, -22 * HOUR_MS).to_rfc3339_seconds()
    );
    assert_eq!(by_hour[23]["start"], at(base, HOUR_MS).to_rfc3339_seconds());
    assert_eq!(
        filled(by_hour),
        vec![(22, 22.2, 34.4, 5), (23, 4.0, 5.0, 2)]
    );
}

#[test]
fn empty_buckets_are_null_with_zero_samples() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", at(base, 5 * MINUTE_MS), 12.5, 40.0);
    let report = app.load("web-1", at(base, 30 * MINUTE_MS));
    let empty = json!({"start": at(base, 29 * MINUTE_MS).to_rfc3339_seconds(),
                       "cpu": null, "ram": null, "cpu_min": null, "cpu_max": null,
                       "ram_min": null, "ram_max": null, "samples": 0});
    assert_eq!(report["by_minute"][58], empty);
    assert_eq!(filled(&report["by_minute"]), vec![(34, 12.5, 40.0, 1)]);
    assert_eq!(filled(&report["by_hour"]), vec![(23, 12.5, 40.0, 1)]);
    let hour_zero = &report["by_hour"][0];
    assert_eq!(hour_zero["cpu"], Value::Null);
    assert_eq!(hour_zero["ram"], Value::Null);
    assert_eq!(hour_zero["samples"], 0);
}

#[test]
fn an_at_before_every_sample_gives_sixty_and_twenty_four_empty_buckets() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", at(base, 10 * MINUTE_MS), 12.5, 40.0);
    let report = app.load("web-1", at(base, 10 * MINUTE_MS - 1));
    assert_eq!(report["by_minute"].as_array().unwrap().len(), 60);
    assert_eq!(report["by_hour"].as_array().unwrap().len(), 24);
    assert!(filled(&report["by_minute"]).is_empty());
    assert!(filled(&report["by_hour"]).is_empty());
}

#[test]
fn samples_older_than_the_windows_are_left_out() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", base, 10.0, 10.0);
    // 24 hours later the base hour has left the hour view.
    let report = app.load("web-1", at(base, 24 * HOUR_MS));
    assert!(filled(&report["by_hour"]).is_empty());
    let report = app.load("web-1", at(base, 24 * HOUR_MS - 1));
    assert_eq!(filled(&report["by_hour"]), vec![(0, 10.0, 10.0, 1)]);
    // One hour later the base minute has left the minute view.
    let report = app.load("web-1", at(base, HOUR_MS));
    assert!(filled(&report["by_minute"]).is_empty());
    let report = app.load("web-1", at(base, HOUR_MS - 1));
    assert_eq!(filled(&report["by_minute"]), vec![(0, 10.0, 10.0, 1)]);
}

#[test]
fn means_are_the_exact_arithmetic_mean_of_the_samples() {
    let app = TestApp::new();
    let base = base_hour();
    let values = [0.1, 0.2, 0.7, 33.3, 99.99, 0.0, 100.0];
    for (index, cpu) in values.iter().enumerate() {
        post_at(
            &app,
            "web-1",
            at(base, index as i64 * SECOND_MS),
            *cpu,
            100.0 - cpu,
        );
    }
    let report = app.load("web-1", at(base, MINUTE_MS - 1));
    let bucket = &report["by_minute"][59];
    assert_eq!(bucket["samples"], 7);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let expected_cpu = mean(&values);
    let expected_ram = mean(&values.map(|cpu| 100.0 - cpu));
    let cpu = bucket["cpu"].as_f64().unwrap();
    let ram = bucket["ram"].as_f64().unwrap();
    // Not rounded to a few decimals: equal to the mean up to float summation order.
    assert!(
        (cpu - expected_cpu).abs() <= 1e-12 * expected_cpu,
        "{cpu} vs {expected_cpu}"
    );
    assert!(
        (ram - expected_ram).abs() <= 1e-12 * expected_ram,
        "{ram} vs {expected_ram}"
    );
    assert_eq!(report["by_hour"][23]["cpu"], bucket["cpu"]);
}

#[test]
fn samples_in_the_same_millisecond_are_all_kept() {
    let app = TestApp::new();
    let time = at(base_hour(), 1234);
    post_at(&app, "web-1", time, 10.0, 20.0);
    post_at(&app, "web-1", time, 30.0, 40.0);
    post_at(&app, "web-1", time, 30.0, 40.0);
    let report = app.load("web-1", time);
    let expected = (59, 70.0 / 3.0, 100.0 / 3.0, 3);
    assert_eq!(filled(&report["by_minute"]), vec![expected]);
    assert_eq!(app.stored_samples(), 3);
}

#[test]
fn without_at_the_last_buckets_hold_now() {
    let now = at(base_hour(), 30 * MINUTE_MS + 15 * SECOND_MS + 250);
    let app = TestApp::at_time(now);
    let (status, _) = app.post_sample("web-1", json!({"cpu": 12.5, "ram": 40.0}));
    assert_eq!(status, Status::NoContent);
    assert_eq!(app.stored_rows("web-1"), vec![(now.millis(), 12.5, 40.0)]);
    let (status, body) = app.get("/api/v1/servers/web-1/load");
    assert_eq!(status, Status::Ok);
    let report = body.unwrap();
    assert_eq!(report["at"], now.to_rfc3339());
    assert_eq!(filled(&report["by_minute"]), vec![(59, 12.5, 40.0, 1)]);
    assert_eq!(
        report["by_minute"][59]["start"],
        now.floor(MINUTE_MS).to_rfc3339_seconds()
    );
    assert_eq!(
        report["by_hour"][23]["start"],
        now.floor(HOUR_MS).to_rfc3339_seconds()
    );
    // Once the clock has crossed into the next minute, the sample is in
    // the one before the last.
    let next_minute = now.floor(MINUTE_MS).millis() + MINUTE_MS - now.millis();
    app.clock.advance(next_minute).unwrap();
    let (_, body) = app.get("/api/v1/servers/web-1/load");
    let report = body.unwrap();
    assert_eq!(
        report["at"],
        at(now.floor(MINUTE_MS), MINUTE_MS).to_rfc3339()
    );
    assert_eq!(filled(&report["by_minute"]), vec![(58, 12.5, 40.0, 1)]);
}

#[test]
fn at_accepts_unix_seconds_and_any_offset() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", at(base, 90 * SECOND_MS), 12.5, 40.0);
    let reference = app.load("web-1", at(base, 5 * MINUTE_MS + 250));
    let seconds = (base.millis() + 5 * MINUTE_MS + 250) as f64 / 1000.0;
    let (status, by_seconds) = app.get(&format!("/api/v1/servers/web-1/load?at={seconds}"));
    assert_eq!(status, Status::Ok);
    assert_eq!(by_seconds.unwrap(), reference);
    // The same instant written at +01:00, with the `+` percent-encoded.
    let local = chrono::DateTime::from_timestamp_millis(base.millis() + 5 * MINUTE_MS + 250)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339();
    let uri = format!(
        "/api/v1/servers/web-1/load?at={}",
        local.replace('+', "%2B")
    );
    let (status, by_offset) = app.get(&uri);
    assert_eq!(status, Status::Ok);
    assert_eq!(by_offset.unwrap(), reference);
    assert!(reference["at"].as_str().unwrap().ends_with(".250Z"));
}

#[test]
fn an_unreadable_at_is_refused() {
    let app = TestApp::new();
    post_at(&app, "web-1", base_hour(), 1.0, 1.0);
    let (status, body) = app.get("/api/v1/servers/web-1/load?at=yesterday");
    assert_eq!(status, Status::UnprocessableEntity);
    assert!(error_message(&body).starts_with("query parameter `at`: time \"yesterday\""));
}

#[test]
fn later_samples_in_the_minute_and_hour_of_at_are_left_out() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", at(base, 10 * MINUTE_MS), 10.0, 10.0);
    post_at(
        &app,
        "web-1",
        at(base, 20 * MINUTE_MS + 5 * SECOND_MS),
        20.0,
        20.0,
    );
    // Later in the same minute and later in the same hour as `at`.
    post_at(
        &app,
        "web-1",
        at(base, 20 * MINUTE_MS + 50 * SECOND_MS),
        90.0,
        90.0,
    );
    post_at(&app, "web-1", at(base, 40 * MINUTE_MS), 80.0, 80.0);
    let report = app.load("web-1", at(base, 20 * MINUTE_MS + 30 * SECOND_MS));
    assert_eq!(
        filled(&report["by_minute"]),
        vec![(49, 10.0, 10.0, 1), (59, 20.0, 20.0, 1)]
    );
    assert_eq!(filled(&report["by_hour"]), vec![(23, 15.0, 15.0, 2)]);
    // Once `at` has passed them, they count.
    let report = app.load("web-1", at(base, 59 * MINUTE_MS));
    assert_eq!(filled(&report["by_hour"]), vec![(23, 50.0, 50.0, 4)]);
}

#[test]
fn the_hour_of_at_is_exact_whether_or_not_later_samples_are_rolled_up() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", at(base, 10 * MINUTE_MS), 10.0, 30.0);
    post_at(
        &app,
        "web-1",
        at(base, 20 * MINUTE_MS + 5 * SECOND_MS),
        20.0,
        40.0,
    );
    // In the minute of `at`, before it.
    post_at(
        &app,
        "web-1",
        at(base, 30 * MINUTE_MS + 10 * SECOND_MS),
        30.0,
        50.0,
    );
    let at_time = at(base, 30 * MINUTE_MS + 30 * SECOND_MS);
    // Nothing after `at` is rolled up: the rollup rows of its hour and its
    // minute are read as they are.
    let report = app.load("web-1", at_time);
    assert_eq!(filled(&report["by_hour"]), vec![(23, 20.0, 40.0, 3)]);
    assert_eq!(filled(&report["by_minute"])[2], (59, 30.0, 50.0, 1));
    // A later sample of the same hour is in those rows now; the answer for
    // the same `at` must not change.
    post_at(&app, "web-1", at(base, 45 * MINUTE_MS), 90.0, 90.0);
    assert_eq!(app.load("web-1", at_time), report);
    // Nor with one later in the same minute.
    post_at(
        &app,
        "web-1",
        at(base, 30 * MINUTE_MS + 50 * SECOND_MS),
        70.0,
        70.0,
    );
    assert_eq!(app.load("web-1", at_time), report);
    let report = app.load("web-1", at(base, 59 * MINUTE_MS));
    assert_eq!(filled(&report["by_hour"]), vec![(23, 44.0, 56.0, 5)]);
}

#[test]
fn a_load_answer_is_sent_in_one_chunk_of_json() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", at(base, MINUTE_MS), 12.5, 40.25);
    let uri = format!(
        "/api/v1/servers/web-1/load?at={}",
        at(base, HOUR_MS).to_rfc3339()
    );
    let response = app.client.get(uri).dispatch();
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(
        response.content_type(),
        Some(rocket::http::ContentType::JSON)
    );
    let chunk = response.body().max_chunk_size();
    let text = response.into_string().unwrap();
    // More than Rocket's default chunk of 4 KiB, and all of it in one.
    assert!(
        text.len() > 4096 && chunk >= text.len(),
        "{} bytes, chunk {chunk}",
        text.len()
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(filled(&body["by_minute"]), vec![(0, 12.5, 40.25, 1)]);
}

#[test]
fn buckets_carry_the_smallest_and_largest_values() {
    let app = TestApp::new();
    let base = base_hour();
    // Two in one minute, one in the next; the hour holds all three.
    post_at(&app, "web-1", at(base, 1_000), 10.0, 70.0);
    post_at(&app, "web-1", at(base, 2_000), 30.0, 50.0);
    post_at(&app, "web-1", at(base, MINUTE_MS), 5.5, 90.0);
    let report = app.load("web-1", at(base, 2 * MINUTE_MS - 1));
    let minute = &report["by_minute"][58];
    assert_eq!(
        (
            &minute["cpu_min"],
            &minute["cpu_max"],
            &minute["ram_min"],
            &minute["ram_max"]
        ),
        (&json!(10.0), &json!(30.0), &json!(50.0), &json!(70.0))
    );
    let hour = &report["by_hour"][23];
    assert_eq!(
        (
            &hour["cpu_min"],
            &hour["cpu_max"],
            &hour["ram_min"],
            &hour["ram_max"]
        ),
        (&json!(5.5), &json!(30.0), &json!(50.0), &json!(90.0))
    );
    assert_eq!(hour["cpu"], 15.166666666666666);
}
