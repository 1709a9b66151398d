//! Retention: expired samples go in whole hours, with their rollups, and
//! servers left without samples go too. The daemon's clock is pinned and
//! moved forward to the instant an hour expires; a pass runs as the
//! background task runs it.

use std::time::{Duration, Instant};

use rocket::http::Status;
use serde_json::{Value, json};
use sperform::clock::ManualClock;
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};
use sperform::store::{RETENTION_BATCH_SAMPLES, RetentionReport, Store};

use crate::storage::assert_rollups_match_samples;
use crate::support::{TestApp, at, base_hour, count};

const WEEK_MS: i64 = 7 * 24 * HOUR_MS;

/// A retention pass with the daemon's clock at `now`.
fn apply_retention(app: &TestApp, now: Timestamp) -> RetentionReport {
    app.clock.set(now);
    app.apply_retention()
}

fn post(app: &TestApp, server: &str, time: Timestamp, cpu: f64) {
    let body = json!({"cpu": cpu, "ram": 50, "time": time.to_rfc3339()});
    assert_eq!(app.post_sample(server, body).0, Status::NoContent);
}

#[test]
fn expired_hours_and_emptied_servers_are_deleted() {
    let app = TestApp::new();
    let base = base_hour();
    post(&app, "web-old", base, 10.0);
    post(&app, "web-old", at(base, 10 * MINUTE_MS), 20.0);
    post(&app, "web-new", at(base, 5 * MINUTE_MS), 30.0);
    post(&app, "web-new", at(base, HOUR_MS + 5 * MINUTE_MS), 40.0);
    post(&app, "web-new", at(base, HOUR_MS + 30 * MINUTE_MS), 60.0);
    let before = app.load("web-new", at(base, 2 * HOUR_MS - 1));

    // A week (the default retention) after `base + 1h`, the hour of `base`
    // has expired and the next one has not.
    let report = apply_retention(&app, at(base, HOUR_MS + WEEK_MS));
    assert_eq!(report.samples_deleted, 3);
    assert_eq!(report.servers_deleted, 1);
    assert_eq!(app.stored_samples(), 2);
    assert_eq!(app.get("/api/v1/servers/web-old/load").0, Status::NotFound);
    let (_, list) = app.get("/api/v1/servers");
    let list = list.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "web-new");
    assert_eq!(list[0]["samples"], 2);
    assert_rollups_match_samples(&app.db_path);

    // What is left answers as before, less the expired hour.
    let after = app.load("web-new", at(base, 2 * HOUR_MS - 1));
    assert_eq!(after["by_hour"][23], before["by_hour"][23]);
    assert_eq!(after["by_hour"][22]["samples"], 0);
    assert_eq!(before["by_hour"][22]["samples"], 1);
    let stats = app.client.rocket().state::<Store>().unwrap().stats();
    assert_eq!(stats.retention_deleted_samples, 3);
    assert_eq!(stats.retention_deleted_servers, 1);

    // Nothing more to do now.
    let again = apply_retention(&app, at(base, HOUR_MS + WEEK_MS));
    assert_eq!((again.samples_deleted, again.servers_deleted), (0, 0));
}

#[test]
fn nothing_within_the_retention_period_is_deleted() {
    let app = TestApp::new();
    let base = base_hour();
    post(&app, "web-1", base, 10.0);
    let report = apply_retention(&app, at(base, WEEK_MS));
    assert_eq!(report.samples_deleted, 0);
    assert_eq!(app.stored_samples(), 1);
    // A week after the hour of `base` ended, it goes.
    let report = apply_retention(&app, at(base, HOUR_MS + WEEK_MS));
    assert_eq!(report.samples_deleted, 1);
    assert_eq!(app.stored_samples(), 0);
    assert_eq!(app.stored_servers(), 0);
}

#[test]
fn large_deletions_are_split_into_batches() {
    let app = TestApp::new();
    let base = base_hour();
    // 3 servers x 2 hours x 2,000 samples: 12,000 samples in 6 units.
    for server in ["a", "b", "c"] {
        let batch: Vec<Value> = (0..4_000_i64)
            .map(|i| {
                let time = at(base, (i % 2) * HOUR_MS + i * 800 % HOUR_MS);
                json!({"server": server, "cpu": 1, "ram": 1, "time": time.to_rfc3339()})
            })
            .collect();
        assert_eq!(
            app.post("/api/v1/samples", json!(batch).to_string()).0,
            Status::NoContent
        );
    }
    let report = apply_retention(&app, at(base, 2 * HOUR_MS + WEEK_MS));
    assert_eq!(report.samples_deleted, 12_000);
    assert_eq!(report.servers_deleted, 3);
    // Whole 2,000-sample units, at most RETENTION_BATCH_SAMPLES a batch.
    let units_per_batch = (RETENTION_BATCH_SAMPLES / 2_000) as u64;
    assert!(report.batches >= 6 / units_per_batch, "{report:?}");
    assert_eq!(app.stored_samples(), 0);
    assert_rollups_match_samples_or_empty(&app);
}

fn assert_rollups_match_samples_or_empty(app: &TestApp) {
    assert_eq!(
        crate::support::count(&app.db_path, "SELECT count(*) FROM minute_rollups"),
        0
    );
    assert_eq!(
        crate::support::count(&app.db_path, "SELECT count(*) FROM hour_rollups"),
        0
    );
}

fn time(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

/// (hour, samples) of every `hour_rollups` row, and the times of every
/// sample, oldest first.
fn stored(app: &TestApp) -> (Vec<(i64, i64)>, Vec<i64>) {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let hours = conn
        .prepare("SELECT hour, samples FROM hour_rollups ORDER BY hour")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let times = conn
        .prepare("SELECT time FROM samples ORDER BY time")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (hours, times)
}

#[test]
fn an_hour_goes_exactly_when_it_expires_and_not_a_millisecond_before() {
    let app = TestApp::at_time(time("2026-11-27T11:02:00Z"));
    for sample in [
        "2026-11-27T10:00:00Z",
        "2026-11-27T10:59:59.999Z",
        "2026-11-27T11:00:00Z",
    ] {
        let body = json!({"cpu": 10, "ram": 50, "time": sample});
        assert_eq!(app.post_sample("web-1", body).0, Status::NoContent);
    }
    let ten = time("2026-11-27T10:00:00Z").millis();
    let eleven = time("2026-11-27T11:00:00Z").millis();
    let everything = (vec![(ten, 2), (eleven, 1)], vec![ten, eleven - 1, eleven]);
    assert_eq!(stored(&app), everything);

    // The hour 10:00 expires a week (the default retention) after it ended.
    let report = apply_retention(&app, at(time("2026-11-27T11:00:00Z"), WEEK_MS - 1));
    assert_eq!(report.samples_deleted, 0);
    assert_eq!(stored(&app), everything);

    let report = apply_retention(&app, at(time("2026-11-27T11:00:00Z"), WEEK_MS));
    assert_eq!((report.samples_deleted, report.servers_deleted), (2, 0));
    assert_eq!(stored(&app), (vec![(eleven, 1)], vec![eleven]));
    assert_eq!(
        count(
            &app.db_path,
            &format!("SELECT count(*) FROM minute_rollups WHERE minute < {eleven}")
        ),
        0
    );
    assert_rollups_match_samples(&app.db_path);
}

#[test]
fn the_background_task_deletes_by_the_daemons_clock() {
    // Past the hour of the sample, so that hour is sealed whole.
    let clock = ManualClock::new(time("2026-11-27T11:01:00Z"));
    let app = TestApp::with_clock(clock, |figment| figment.merge(("retention_interval", "1s")));
    let body = json!({"cpu": 10, "ram": 50, "time": "2026-11-27T10:15:00Z"});
    assert_eq!(app.post_sample("web-1", body).0, Status::NoContent);
    app.clock.set(at(time("2026-11-27T11:00:00Z"), WEEK_MS));
    // The task runs every second; allow a slow machine five.
    let started = Instant::now();
    while app.stored_servers() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the retention task never deleted the expired hour"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stored(&app), (vec![], vec![]));
    let stats = app.client.rocket().state::<Store>().unwrap().stats();
    assert_eq!(stats.retention_deleted_samples, 1);
    assert_eq!(stats.retention_deleted_servers, 1);
}
