//! Retention in two tiers and by size. Raw samples expire in whole hours,
//! with their minute rows, and the hour's rollup row moves to the history,
//! which answers at hour level until `history_retention`; servers left with
//! neither samples nor history go. With `retention_size`, the oldest raw
//! hours and then the oldest history go while the database is larger. The
//! daemon's clock is pinned and moved to the instant an hour expires; a
//! pass runs as the background task runs it.

use std::time::{Duration, Instant};

use rocket::http::Status;
use serde_json::{Value, json};
use sperform::clock::ManualClock;
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};
use sperform::store::{RETENTION_BATCH_SAMPLES, RetentionReport};

use crate::storage::assert_rollups_match_samples;
use crate::support::{TestApp, at, base_hour, count, error_message};

const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;

/// A retention pass with the daemon's clock at `now`.
fn apply_retention(app: &TestApp, now: Timestamp) -> RetentionReport {
    app.clock.set(now);
    app.apply_retention()
}

fn post(app: &TestApp, server: &str, time: Timestamp, cpu: f64) {
    let body = json!({"cpu": cpu, "ram": 50, "time": time.to_rfc3339()});
    assert_eq!(app.post_sample(server, body).0, Status::NoContent);
}

fn post_batch(app: &TestApp, entries: Vec<Value>) {
    for chunk in entries.chunks(10_000) {
        let body = Value::Array(chunk.to_vec()).to_string();
        let (status, body) = app.post("/api/v1/samples", body);
        assert_eq!(status, Status::NoContent, "{body:?}");
    }
}

fn time(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

/// (hour, samples) of every row of an hour table, oldest first.
fn hours(app: &TestApp, table: &str) -> Vec<(i64, i64)> {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.prepare(&format!(
        "SELECT hour, samples FROM {table} ORDER BY hour, server_id"
    ))
    .unwrap()
    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The times of every sample, oldest first.
fn sample_times(app: &TestApp) -> Vec<i64> {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.prepare("SELECT time FROM samples ORDER BY time")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn range(app: &TestApp, server: &str, from: Timestamp, to: Timestamp, step: &str) -> Value {
    let (status, body) = app.get(&format!(
        "/api/v1/servers/{server}/load/range?from={}&to={}&step={step}",
        from.to_rfc3339(),
        to.to_rfc3339()
    ));
    assert_eq!(status, Status::Ok, "{body:?}");
    body.unwrap()
}

#[test]
fn expired_hours_become_history_and_hour_answers_stay_the_same() {
    let app = TestApp::new();
    let base = base_hour();
    post(&app, "web-old", base, 10.0);
    post(&app, "web-old", at(base, 10 * MINUTE_MS), 20.0);
    post(&app, "web-new", at(base, 5 * MINUTE_MS), 30.0);
    post(&app, "web-new", at(base, HOUR_MS + 5 * MINUTE_MS), 40.0);
    post(&app, "web-new", at(base, HOUR_MS + 30 * MINUTE_MS), 60.0);
    let before = app.load("web-new", at(base, 2 * HOUR_MS - 1));
    let old_before = app.load("web-old", at(base, 2 * HOUR_MS - 1));

    // A week (the default retention) after `base + 1h`, the hour of `base`
    // has expired and the next one has not.
    let report = apply_retention(&app, at(base, HOUR_MS + WEEK_MS));
    assert_eq!(report.samples_deleted, 3);
    assert_eq!(report.hours_to_history, 2);
    assert_eq!(
        (report.history_hours_deleted, report.servers_deleted),
        (0, 0)
    );
    assert_eq!(app.stored_samples(), 2);
    assert_eq!(
        hours(&app, "hour_history"),
        vec![(base.millis(), 2), (base.millis(), 1)]
    );
    assert_rollups_match_samples(&app.db_path);

    // The hour view answers as before; the expired minutes are gone.
    let after = app.load("web-new", at(base, 2 * HOUR_MS - 1));
    assert_eq!(after["by_hour"], before["by_hour"]);
    assert_eq!(after["by_minute"], before["by_minute"]);
    let old_after = app.load("web-old", at(base, 2 * HOUR_MS - 1));
    assert_eq!(old_after["by_hour"], old_before["by_hour"]);
    assert_eq!(old_after["by_hour"][22]["cpu"], 15.0);
    assert_eq!(old_after["by_hour"][22]["cpu_max"], 20.0);

    // The server list counts history samples; a server with history only
    // is known to the hour.
    let (_, list) = app.get("/api/v1/servers");
    let list = list.unwrap();
    assert_eq!(list[0]["name"], "web-new");
    assert_eq!(list[0]["samples"], 3);
    assert_eq!(list[0]["first_seen"], base.to_rfc3339());
    assert_eq!(list[1]["name"], "web-old");
    assert_eq!(list[1]["samples"], 2);
    assert_eq!(list[1]["first_seen"], base.to_rfc3339());
    assert_eq!(list[1]["last_seen"], base.to_rfc3339());
    let stats = app.store().stats();
    assert_eq!(stats.retention_deleted_samples, 3);
    assert_eq!(stats.retention_hours_to_history, 2);

    // Nothing more to do now.
    let again = apply_retention(&app, at(base, HOUR_MS + WEEK_MS));
    assert_eq!(
        again,
        RetentionReport {
            batches: 1,
            ..RetentionReport::default()
        }
    );
}

#[test]
fn history_goes_after_history_retention_and_takes_emptied_servers() {
    let start = time("2026-11-01T00:00:00Z");
    let app = TestApp::with_clock(ManualClock::new(at(start, 2 * HOUR_MS)), |figment| {
        figment
            .merge(("retention", "1d"))
            .merge(("history_retention", "3d"))
    });
    post(&app, "web-1", at(start, 10 * MINUTE_MS), 10.0);
    post(&app, "web-1", at(start, HOUR_MS + 10 * MINUTE_MS), 30.0);
    post(&app, "web-2", at(start, HOUR_MS + 20 * MINUTE_MS), 50.0);

    // Two days on, both hours are history.
    let report = apply_retention(&app, at(start, 2 * DAY_MS));
    assert_eq!((report.samples_deleted, report.hours_to_history), (3, 3));
    assert_eq!(app.stored_samples(), 0);
    assert_eq!(app.stored_servers(), 2);

    // The hour 00:00 expires from history three days after it ended, not a
    // millisecond before.
    let report = apply_retention(&app, at(start, HOUR_MS + 3 * DAY_MS - 1));
    assert_eq!(report.history_hours_deleted, 0);
    let report = apply_retention(&app, at(start, HOUR_MS + 3 * DAY_MS));
    assert_eq!(
        (report.history_hours_deleted, report.servers_deleted),
        (1, 0)
    );
    assert_eq!(
        hours(&app, "hour_history"),
        vec![(start.millis() + HOUR_MS, 1); 2]
    );

    // An hour later the last history goes, and both servers with it.
    let report = apply_retention(&app, at(start, 2 * HOUR_MS + 3 * DAY_MS));
    assert_eq!(
        (report.history_hours_deleted, report.servers_deleted),
        (2, 2)
    );
    assert_eq!(app.stored_servers(), 0);
    assert_eq!(app.get("/api/v1/servers/web-1/load").0, Status::NotFound);
    let stats = app.store().stats();
    assert_eq!(stats.retention_deleted_history_hours, 3);
    assert_eq!(stats.retention_deleted_servers, 2);
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
    assert_eq!(hours(&app, "hour_rollups"), vec![(ten, 2), (eleven, 1)]);
    assert_eq!(sample_times(&app), vec![ten, eleven - 1, eleven]);

    // The hour 10:00 expires a week (the default retention) after it ended.
    let report = apply_retention(&app, at(time("2026-11-27T11:00:00Z"), WEEK_MS - 1));
    assert_eq!(report.samples_deleted, 0);
    assert_eq!(sample_times(&app).len(), 3);
    assert!(hours(&app, "hour_history").is_empty());

    let report = apply_retention(&app, at(time("2026-11-27T11:00:00Z"), WEEK_MS));
    assert_eq!((report.samples_deleted, report.servers_deleted), (2, 0));
    assert_eq!(hours(&app, "hour_rollups"), vec![(eleven, 1)]);
    assert_eq!(hours(&app, "hour_history"), vec![(ten, 2)]);
    assert_eq!(sample_times(&app), vec![eleven]);
    assert_rollups_match_samples(&app.db_path);
}

#[test]
fn large_deletions_are_split_into_batches() {
    let app = TestApp::new();
    let base = base_hour();
    // 3 servers x 2 hours x 2,000 samples: 12,000 samples in 6 dense units,
    // with minute rows.
    for server in ["a", "b", "c"] {
        let batch: Vec<Value> = (0..4_000_i64)
            .map(|i| {
                let time = at(base, (i % 2) * HOUR_MS + i * 800 % HOUR_MS);
                json!({"server": server, "cpu": 1, "ram": 1, "time": time.to_rfc3339()})
            })
            .collect();
        post_batch(&app, batch);
    }
    assert!(count(&app.db_path, "SELECT count(*) FROM minute_rollups") > 0);
    let report = apply_retention(&app, at(base, 2 * HOUR_MS + WEEK_MS));
    assert_eq!(report.samples_deleted, 12_000);
    assert_eq!(report.hours_to_history, 6);
    assert_eq!(report.servers_deleted, 0);
    // Whole 2,000-sample units, at most RETENTION_BATCH_SAMPLES a batch.
    let units_per_batch = (RETENTION_BATCH_SAMPLES / 2_000) as u64;
    assert!(report.batches >= 6 / units_per_batch, "{report:?}");
    assert_eq!(app.stored_samples(), 0);
    assert_eq!(
        count(&app.db_path, "SELECT count(*) FROM minute_rollups"),
        0
    );
    assert_eq!(count(&app.db_path, "SELECT count(*) FROM hour_rollups"), 0);
    assert_eq!(hours(&app, "hour_history"), {
        let mut expected = vec![(base.millis(), 2_000); 3];
        expected.extend(vec![(base.millis() + HOUR_MS, 2_000); 3]);
        expected
    });
}

#[test]
fn the_background_task_moves_hours_by_the_daemons_clock() {
    // Past the hour of the sample, so that hour is sealed whole.
    let clock = ManualClock::new(time("2026-11-27T11:01:00Z"));
    let app = TestApp::with_clock(clock, |figment| figment.merge(("retention_interval", "1s")));
    let body = json!({"cpu": 10, "ram": 50, "time": "2026-11-27T10:15:00Z"});
    assert_eq!(app.post_sample("web-1", body).0, Status::NoContent);
    app.clock.set(at(time("2026-11-27T11:00:00Z"), WEEK_MS));
    // The task runs every second; allow a slow machine five.
    let started = Instant::now();
    while app.stored_samples() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the retention task never moved the expired hour"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        hours(&app, "hour_history"),
        vec![(time("2026-11-27T10:00:00Z").millis(), 1)]
    );
    let stats = app.store().stats();
    assert_eq!(stats.retention_deleted_samples, 1);
    assert_eq!(stats.retention_hours_to_history, 1);
    assert_eq!(stats.retention_deleted_servers, 0);
}

/// One bucket as an oracle computes it from samples: (samples, mean CPU,
/// mean RAM, CPU min, CPU max, RAM min, RAM max).
type Expected = (u64, f64, f64, f64, f64, f64, f64);

fn oracle(
    samples: &[(i64, f64, f64)],
    start: i64,
    width: i64,
    count: usize,
    to: i64,
) -> Vec<Option<Expected>> {
    (0..count as i64)
        .map(|index| {
            let (from, until) = (start + index * width, start + (index + 1) * width);
            let inside: Vec<_> = samples
                .iter()
                .filter(|(time, _, _)| *time >= from && *time < until && *time <= to)
                .collect();
            if inside.is_empty() {
                return None;
            }
            let n = inside.len() as f64;
            let fold = |pick: fn(&(i64, f64, f64)) -> f64| inside.iter().map(move |s| pick(s));
            Some((
                inside.len() as u64,
                fold(|s| s.1).sum::<f64>() / n,
                fold(|s| s.2).sum::<f64>() / n,
                fold(|s| s.1).fold(f64::INFINITY, f64::min),
                fold(|s| s.1).fold(f64::NEG_INFINITY, f64::max),
                fold(|s| s.2).fold(f64::INFINITY, f64::min),
                fold(|s| s.2).fold(f64::NEG_INFINITY, f64::max),
            ))
        })
        .collect()
}

fn bucket_of(bucket: &Value) -> Option<Expected> {
    let samples = bucket["samples"].as_u64().unwrap();
    (samples > 0).then(|| {
        let f = |key: &str| bucket[key].as_f64().unwrap();
        (
            samples,
            f("cpu"),
            f("ram"),
            f("cpu_min"),
            f("cpu_max"),
            f("ram_min"),
            f("ram_max"),
        )
    })
}

#[test]
fn ranges_across_raw_samples_and_history_equal_an_oracle_over_the_samples() {
    // Three days of samples of one server: dense hours (a sample every 8 s:
    // 450 an hour, with minute rows), sparse ones (one a minute) and empty
    // ones. Values are multiples of 1/8, so every sum is exact.
    let start = time("2026-11-01T00:00:00Z");
    let now = at(start, 3 * DAY_MS + 30 * MINUTE_MS);
    // Sent while the retention is four days, then read with one day.
    let app = TestApp::with_clock(ManualClock::new(now), |figment| {
        figment.merge(("retention", "4d"))
    });
    let mut samples = Vec::new();
    for hour in 0..(3 * 24 + 1) {
        let every_ms = match hour % 5 {
            0 => 8_000,
            1 | 2 => MINUTE_MS,
            3 => 7 * MINUTE_MS,
            _ => continue,
        };
        let mut offset = (hour * 37_000) % every_ms;
        while offset < HOUR_MS {
            let time = start.millis() + hour * HOUR_MS + offset;
            if time <= now.millis() {
                let cpu = ((time / 1_000) % 801) as f64 / 8.0;
                let ram = ((time / 7_000) % 799) as f64 / 8.0;
                samples.push((time, cpu, ram));
            }
            offset += every_ms;
        }
    }
    post_batch(
        &app,
        samples
            .iter()
            .map(|(time, cpu, ram)| {
                let time = Timestamp::from_millis(*time).unwrap().to_rfc3339();
                json!({"server": "web-1", "cpu": cpu, "ram": ram, "time": time})
            })
            .collect(),
    );
    let clock = app.clock.clone();
    let (dir, db_path) = app.close();
    let app = TestApp::reopen(dir, db_path, clock, |figment| {
        figment.merge(("retention", "1d"))
    });
    let report = app.apply_retention();
    assert!(report.hours_to_history > 20, "{report:?}");
    let history_end = hours(&app, "hour_history").last().unwrap().0 + HOUR_MS;
    assert_eq!(history_end, start.millis() + 2 * DAY_MS);
    assert!(
        count(&app.db_path, "SELECT count(*) FROM minute_rollups") > 0,
        "some raw hours are dense"
    );

    for (step, width) in [("1h", HOUR_MS), ("6h", 6 * HOUR_MS), ("1d", DAY_MS)] {
        for to in [now, at(start, 2 * DAY_MS + 5 * HOUR_MS + 17 * MINUTE_MS)] {
            let body = range(&app, "web-1", start, to, step);
            let buckets = body["buckets"].as_array().unwrap();
            let expected = oracle(&samples, start.millis(), width, buckets.len(), to.millis());
            let got: Vec<Option<Expected>> = buckets.iter().map(bucket_of).collect();
            assert_eq!(got.len(), expected.len());
            for (got, expected) in got.iter().zip(&expected) {
                assert_eq!(got.is_some(), expected.is_some(), "step {step} to {to}");
                let (Some(got), Some(expected)) = (got, expected) else {
                    continue;
                };
                // Counts and extremes are exact; so are the sums (multiples
                // of 1/8), but the JSON reader may round a mean's last bit.
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
                assert!(
                    got.0 == expected.0
                        && close(got.1, expected.1)
                        && close(got.2, expected.2)
                        && (got.3, got.4, got.5, got.6)
                            == (expected.3, expected.4, expected.5, expected.6),
                    "step {step} to {to}: {got:?} != {expected:?}"
                );
            }
        }
    }
    // Minute steps read raw samples only: before them is an error that
    // says where history starts answering.
    let (status, body) = app.get(&format!(
        "/api/v1/servers/web-1/load/range?from={}&to={}&step=30m",
        start.to_rfc3339(),
        now.to_rfc3339()
    ));
    assert_eq!(status, Status::UnprocessableEntity);
    assert!(
        error_message(&body)
            .contains("older hours are kept as history, read at a step of whole hours"),
        "{body:?}"
    );
}

/// The bytes of pages in use, measured now.
fn used_bytes(app: &TestApp) -> u64 {
    let store = app.store();
    app.block_on(store.measure_space()).unwrap().used_bytes
}

#[test]
fn past_retention_size_the_oldest_raw_hours_go_then_the_oldest_history() {
    // 80 servers, one sample each every 20 minutes for 20 days: 115,200
    // samples and 38,400 hour rows, well over three mebibytes.
    let start = time("2026-11-01T00:00:00Z");
    let now = at(start, 20 * DAY_MS);
    let app = TestApp::with_clock(ManualClock::new(now), |figment| {
        figment.merge(("retention", "30d"))
    });
    let mut entries = Vec::new();
    for server in 0..80 {
        for step in 0..(20 * 24 * 3) {
            let time = at(start, step * 20 * MINUTE_MS + server * 1_000);
            entries.push(json!({"server": format!("web-{server:02}"), "cpu": 1, "ram": 2, "time": time.to_rfc3339()}));
        }
    }
    post_batch(&app, entries);
    let full = used_bytes(&app);
    assert!(full > 3 << 20, "{full}");
    let before = range(&app, "web-07", start, now, "1d");

    // A limit the history alone fits under: raw hours go, oldest first.
    let limit = 2 << 20;
    let app = reopen_with_limit(app, "2MiB");
    let report = app.apply_retention();
    assert!(
        report.samples_deleted > 0 && report.history_hours_deleted == 0,
        "{report:?}"
    );
    assert!(used_bytes(&app) <= limit, "{}", used_bytes(&app));
    let oldest_raw = sample_times(&app)[0];
    assert!(oldest_raw > start.millis() + DAY_MS, "{oldest_raw}");
    // Every hour before the oldest raw one is history, so the day buckets
    // answer exactly as before.
    assert_eq!(
        range(&app, "web-07", start, now, "1d")["buckets"],
        before["buckets"]
    );
    assert!(!app.store().space().over_size);

    // A limit the history does not fit under: every raw hour but the last
    // two goes, then the oldest history.
    let app = reopen_with_limit(app, "1MiB");
    let report = app.apply_retention();
    assert!(report.history_hours_deleted > 0, "{report:?}");
    assert!(used_bytes(&app) <= 1 << 20, "{}", used_bytes(&app));
    let now_hour = now.floor(HOUR_MS).millis();
    assert!(sample_times(&app)[0] >= now_hour - HOUR_MS);
    let history = hours(&app, "hour_history");
    assert!(history[0].0 > start.millis());
    // The newest history is still there, exact.
    let day = range(&app, "web-07", at(now, -DAY_MS), now, "1d");
    assert_eq!(day["buckets"][0]["samples"], 72);
}

/// The same database opened again with `retention_size` set.
fn reopen_with_limit(app: TestApp, limit: &str) -> TestApp {
    let clock = app.clock.clone();
    let (dir, db_path) = app.close();
    let limit = limit.to_owned();
    TestApp::reopen(dir, db_path, clock, move |figment| {
        figment
            .merge(("retention", "30d"))
            .merge(("retention_size", limit))
    })
}

#[test]
fn a_limit_the_newest_hours_do_not_fit_under_is_reported() {
    let now = time("2026-11-01T10:30:00Z");
    let app = TestApp::with_clock(ManualClock::new(now), |figment| {
        figment.merge(("retention_size", "1MiB"))
    });
    // 60,000 samples in the current hour: more than a mebibyte that
    // size-based retention may not touch.
    let entries = (0..60_000)
        .map(|i| {
            let time = at(now, -(i % 1_800) * 1_000);
            json!({"server": format!("web-{:02}", i / 1_800), "cpu": 1, "ram": 2, "time": time.to_rfc3339()})
        })
        .collect();
    post_batch(&app, entries);
    let report = app.apply_retention();
    assert_eq!(report.samples_deleted, 0);
    assert!(app.store().space().over_size);
    assert_eq!(app.stored_samples(), 60_000);
    let metrics = app.client.get("/metrics").dispatch().into_string().unwrap();
    assert!(
        metrics.contains("\nsperform_retention_size_exceeded 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nsperform_retention_size_bytes 1048576\n"),
        "{metrics}"
    );
}
