//! The rollup seal follows the daemon's clock, minute by minute: samples
//! before the minute the clock is in are folded into the rollups, the rest
//! stay live, and answers are the same either way. The clock is pinned, so
//! each test crosses a minute or an hour boundary to the millisecond.

use std::time::{Duration, Instant};

use rocket::http::Status;
use serde_json::json;
use sperform::model::{MINUTE_MS, Timestamp};

use crate::storage::assert_rollups_match_samples;
use crate::support::{TestApp, seals};

fn time(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn millis(text: &str) -> i64 {
    time(text).millis()
}

fn post(app: &TestApp, server: &str, at: &str, cpu: f64) {
    let body = json!({"cpu": cpu, "ram": 50, "time": at});
    let (status, body) = app.post_sample(server, body);
    assert_eq!(status, Status::NoContent, "{body:?}");
}

/// The rows of a rollup table as (server, bucket start, samples, cpu sum).
fn rollups(app: &TestApp, table: &str) -> Vec<(String, i64, i64, f64)> {
    let key = if table == "minute_rollups" {
        "minute"
    } else {
        "hour"
    };
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let mut statement = conn
        .prepare(&format!(
            "SELECT name, {key}, samples, cpu_sum FROM {table}
             JOIN servers ON servers.id = {table}.server_id ORDER BY name, {key}"
        ))
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn the_last_millisecond_of_an_ended_hour_is_sealed_and_the_first_of_the_next_is_not() {
    let app = TestApp::at_time(time("2026-11-27T11:00:00Z"));
    post(&app, "web-1", "2026-11-27T10:59:59.999Z", 10.0);
    post(&app, "web-1", "2026-11-27T11:00:00Z", 20.0);

    assert_eq!(
        seals(&app.db_path),
        vec![("web-1".to_owned(), millis("2026-11-27T11:00:00Z"))]
    );
    // A sparse hour has no minute rows: its minutes are read from samples.
    assert!(rollups(&app, "minute_rollups").is_empty());
    assert_eq!(
        rollups(&app, "hour_rollups"),
        vec![("web-1".to_owned(), millis("2026-11-27T10:00:00Z"), 1, 10.0)]
    );
    assert_eq!(app.stored_samples(), 2);
    assert_rollups_match_samples(&app.db_path);

    // The answer reads both: the sealed minute from its rollup, the live
    // one from the samples.
    let report = app.load("web-1", time("2026-11-27T11:00:00Z"));
    assert_eq!(report["by_minute"][58]["cpu"], 10.0);
    assert_eq!(report["by_minute"][59]["cpu"], 20.0);
    assert_eq!(report["by_hour"][22]["cpu"], 10.0);
    assert_eq!(report["by_hour"][23]["cpu"], 20.0);
}

#[test]
fn the_seal_moves_when_the_clock_crosses_a_minute_and_not_a_millisecond_before() {
    let app = TestApp::at_time(time("2026-11-27T10:06:59.999Z"));
    post(&app, "web-1", "2026-11-27T10:06:00Z", 10.0);
    post(&app, "web-1", "2026-11-27T10:06:59.999Z", 30.0);
    // A write in the minute's last millisecond seals nothing of it.
    post(&app, "web-2", "2026-11-27T10:06:30Z", 50.0);
    let in_the_minute = millis("2026-11-27T10:06:00Z");
    assert_eq!(
        seals(&app.db_path),
        vec![
            ("web-1".to_owned(), in_the_minute),
            ("web-2".to_owned(), in_the_minute)
        ]
    );
    assert!(rollups(&app, "hour_rollups").is_empty());
    let live = app.load("web-1", time("2026-11-27T10:06:59.999Z"));

    // One millisecond later the minute has ended; the next write seals it.
    app.clock.advance(1).unwrap();
    post(&app, "web-2", "2026-11-27T10:07:00Z", 70.0);
    let next_minute = millis("2026-11-27T10:07:00Z");
    assert_eq!(
        seals(&app.db_path),
        vec![
            ("web-1".to_owned(), next_minute),
            ("web-2".to_owned(), next_minute)
        ]
    );
    let hour = millis("2026-11-27T10:00:00Z");
    assert_eq!(
        rollups(&app, "hour_rollups"),
        vec![
            ("web-1".to_owned(), hour, 2, 40.0),
            ("web-2".to_owned(), hour, 1, 50.0)
        ]
    );
    assert_rollups_match_samples(&app.db_path);
    // The same answer, now from the rollups.
    assert_eq!(app.load("web-1", time("2026-11-27T10:06:59.999Z")), live);
}

#[test]
fn an_idle_writer_seals_the_minute_once_the_clock_has_left_it() {
    let app = TestApp::at_time(time("2026-11-27T10:06:59.999Z"));
    post(&app, "web-1", "2026-11-27T10:06:10Z", 10.0);
    assert!(rollups(&app, "hour_rollups").is_empty());
    app.clock.advance(1).unwrap();
    // Nothing is written: the writer seals on its own when it has been
    // idle for a second. Allow a slow machine five.
    let started = Instant::now();
    while seals(&app.db_path)[0].1 != millis("2026-11-27T10:07:00Z") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the idle writer never sealed the ended minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        rollups(&app, "hour_rollups"),
        vec![("web-1".to_owned(), millis("2026-11-27T10:00:00Z"), 1, 10.0)]
    );
    assert_rollups_match_samples(&app.db_path);
}

#[test]
fn samples_of_ended_minutes_are_rolled_up_as_they_arrive() {
    let app = TestApp::at_time(time("2026-11-27T10:07:00Z"));
    post(&app, "web-1", "2026-11-27T10:06:59.999Z", 10.0);
    app.clock.advance(MINUTE_MS).unwrap();
    post(&app, "web-2", "2026-11-27T10:07:59.999Z", 20.0);
    let sealed = millis("2026-11-27T10:08:00Z");
    assert_eq!(
        seals(&app.db_path),
        vec![("web-1".to_owned(), sealed), ("web-2".to_owned(), sealed)]
    );
    assert_eq!(
        rollups(&app, "hour_rollups"),
        vec![
            ("web-1".to_owned(), millis("2026-11-27T10:00:00Z"), 1, 10.0),
            ("web-2".to_owned(), millis("2026-11-27T10:00:00Z"), 1, 20.0)
        ]
    );
    assert_rollups_match_samples(&app.db_path);
}

/// Posts `count` samples of `server` from `from` on, `step_ms` apart, in
/// batches, with CPU `index % 100`.
fn post_many(app: &TestApp, server: &str, from: Timestamp, step_ms: i64, count: i64) {
    let entries: Vec<serde_json::Value> = (0..count)
        .map(|index| {
            let time = Timestamp::from_millis(from.millis() + index * step_ms).unwrap();
            json!({"server": server, "cpu": index % 100, "ram": 50, "time": time.to_rfc3339()})
        })
        .collect();
    for chunk in entries.chunks(1_000) {
        let body = serde_json::Value::Array(chunk.to_vec()).to_string();
        let (status, body) = app.post("/api/v1/samples", body);
        assert_eq!(status, Status::NoContent, "{body:?}");
    }
}

#[test]
fn an_hour_gets_minute_rows_once_it_holds_more_than_the_sparse_limit() {
    let sparse = sperform::store::MINUTE_ROWS_ABOVE;
    let app = TestApp::at_time(time("2026-11-27T10:30:00Z"));
    // Exactly the limit, a sample a second from 10:00, all sealed: no
    // minute rows, and the minute view reads the samples.
    let full_minutes = usize::try_from(sparse / 60).unwrap();
    post_many(&app, "web-1", time("2026-11-27T10:00:00Z"), 1_000, sparse);
    assert!(rollups(&app, "minute_rollups").is_empty());
    let sparse_answer = app.load("web-1", time("2026-11-27T10:30:00Z"));
    // Minute 10:00 is the 30th of the hour up to 10:30.
    assert_eq!(sparse_answer["by_minute"][29]["samples"], 60);
    assert_eq!(sparse_answer["by_hour"][23]["samples"], sparse);
    assert_rollups_match_samples(&app.db_path);

    // One more sample, late, in the sealed 10:20 minute: the hour turns
    // dense and gets a row for every minute it has, summed from samples.
    post(&app, "web-1", "2026-11-27T10:20:30Z", 99.0);
    let minutes = rollups(&app, "minute_rollups");
    assert_eq!(minutes.len(), full_minutes + 1, "{minutes:?}");
    assert_eq!(
        minutes.last(),
        Some(&("web-1".to_owned(), millis("2026-11-27T10:20:00Z"), 1, 99.0))
    );
    assert_rollups_match_samples(&app.db_path);
    let dense_answer = app.load("web-1", time("2026-11-27T10:30:00Z"));
    assert_eq!(dense_answer["by_minute"][49]["cpu"], 99.0);
    assert_eq!(dense_answer["by_hour"][23]["samples"], sparse + 1);
    for minute in 29..29 + full_minutes {
        assert_eq!(
            dense_answer["by_minute"][minute], sparse_answer["by_minute"][minute],
            "minute {minute}"
        );
    }

    // Samples of the live minute join the dense hour's minute rows when
    // their minute ends.
    post(&app, "web-1", "2026-11-27T10:30:10Z", 1.0);
    app.clock.advance(MINUTE_MS).unwrap();
    post(&app, "web-2", "2026-11-27T10:31:00Z", 1.0);
    assert_eq!(rollups(&app, "minute_rollups").len(), full_minutes + 2);
    assert_rollups_match_samples(&app.db_path);
}
