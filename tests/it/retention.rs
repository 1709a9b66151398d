//! Retention: expired samples go in whole hours, with their rollups, and
//! servers left without samples go too. The clock is injected through
//! `Store::apply_retention(now)`, which the background task also runs.

use rocket::http::Status;
use serde_json::{Value, json};
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};
use sperform::store::{RETENTION_BATCH_SAMPLES, Store};

use crate::storage::assert_rollups_match_samples;
use crate::support::{TestApp, at, base_hour};

const WEEK_MS: i64 = 7 * 24 * HOUR_MS;

fn apply_retention(app: &TestApp, now: Timestamp) -> sperform::store::RetentionReport {
    let store = app.client.rocket().state::<Store>().unwrap().clone();
    rocket::tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.apply_retention(now))
        .unwrap()
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
    // One millisecond into the next hour's week, the hour of `base` goes.
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
