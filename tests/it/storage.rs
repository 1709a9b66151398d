//! The database under load, across restarts, and beside other readers.

use std::time::{Duration, Instant};

use rocket::futures::future::join_all;
use rocket::http::Status;
use rocket::local::asynchronous::Client as AsyncClient;
use rocket::local::blocking::Client;
use serde_json::json;
use sperform::StartupError;
use sperform::clock::{Clock, ManualClock};
use sperform::store::{MIGRATIONS, Store, StoreError};

use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};

use crate::support::{SEAL, TestApp, at, base_hour, count, error_message, figment_for, read};

#[rocket::async_test]
async fn two_hundred_concurrent_ingests_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    let rocket = sperform::build(figment_for(&db_path)).unwrap();
    let client = AsyncClient::untracked(rocket).await.unwrap();
    let requests = (0..200).map(|i| {
        let client = &client;
        async move {
            client
                .post(format!("/api/v1/servers/web-{}/samples", i % 7))
                .body(json!({"cpu": i as f64 / 2.0, "ram": 50}).to_string())
                .dispatch()
                .await
                .status()
        }
    });
    let statuses = join_all(requests).await;
    assert!(
        statuses.iter().all(|s| *s == Status::NoContent),
        "{statuses:?}"
    );
    assert_eq!(count(&db_path, "SELECT count(*) FROM samples"), 200);
    assert_eq!(count(&db_path, "SELECT count(*) FROM servers"), 7);
    let total: u64 = client
        .get("/api/v1/servers")
        .dispatch()
        .await
        .into_json::<Vec<serde_json::Value>>()
        .await
        .unwrap()
        .iter()
        .map(|server| server["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 200);
    let sum: f64 = count(
        &db_path,
        "SELECT CAST(sum(cpu) * 2 AS INTEGER) FROM samples",
    ) as f64;
    assert_eq!(sum, (0..200).sum::<i64>() as f64);
}

#[test]
fn data_survives_rebuilding_the_app_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    {
        let client = Client::untracked(sperform::build(figment_for(&db_path)).unwrap()).unwrap();
        let response = client
            .post("/api/v1/servers/web-1/samples")
            .body(r#"{"cpu": 12.5, "ram": 40}"#)
            .dispatch();
        assert_eq!(response.status(), Status::NoContent);
        drop(response);
        // An idle connection of someone else's stays open, so SQLite does not
        // checkpoint on the last close: emptying the WAL is the daemon's doing.
        let bystander = rusqlite::Connection::open(&db_path).unwrap();
        bystander
            .query_row("SELECT count(*) FROM servers", [], |_| Ok(()))
            .unwrap();
        let wal_path = dir.path().join("sperform.db-wal");
        assert!(std::fs::metadata(&wal_path).unwrap().len() > 0);
        client.terminate();
        assert_eq!(std::fs::metadata(&wal_path).unwrap().len(), 0);
        drop(bystander);
    }
    let client = Client::untracked(sperform::build(figment_for(&db_path)).unwrap()).unwrap();
    let (status, body) = read(client.get("/api/v1/servers").dispatch());
    assert_eq!(status, Status::Ok);
    let servers = body.unwrap();
    assert_eq!(servers[0]["name"], "web-1");
    assert_eq!(servers[0]["samples"], 1);
}

#[test]
fn a_database_from_a_newer_sperform_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = sperform::build(figment_for(&db_path)).err().unwrap();
    assert!(matches!(
        error,
        StartupError::Store(StoreError::TooNew { found: 99, supported })
            if supported == MIGRATIONS.len()
    ));
    assert!(
        error.to_string().contains("written by a newer sperform"),
        "{error}"
    );
    // Refusing must not have touched it.
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

/// The daemon on `clock`, on the database at `db_path`.
fn client_on(db_path: &std::path::Path, clock: &ManualClock) -> Client {
    let rocket = sperform::build_with_clock(figment_for(db_path), Clock::from(clock.clone()));
    Client::untracked(rocket.unwrap()).unwrap()
}

async fn async_client_on(db_path: &std::path::Path, clock: &ManualClock) -> AsyncClient {
    let rocket = sperform::build_with_clock(figment_for(db_path), Clock::from(clock.clone()));
    AsyncClient::untracked(rocket.unwrap()).await.unwrap()
}

#[test]
fn a_new_database_gets_the_schema_people_query() {
    // The daemon's clock two minutes after the sample, whenever this runs.
    let app = TestApp::at_time(Timestamp::parse_rfc3339("2026-11-27T20:00:03Z").unwrap());
    let (status, body) = app.post(
        "/api/v1/servers/web-1/samples",
        r#"{"cpu": 12.5, "ram": 40, "time": "2026-11-27T19:58:03.250Z"}"#,
    );
    assert_eq!(status, Status::NoContent, "{body:?}");
    assert_eq!(
        app.stored_rows("web-1"),
        vec![(1_795_809_483_250, 12.5, 40.0)]
    );
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page_size, sperform::store::NEW_DATABASE_PAGE_SIZE);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    conn.execute("INSERT INTO servers (name) VALUES ('view-test')", [])
        .unwrap();
    conn.execute(
        "INSERT INTO samples (server_id, time, cpu, ram)
         SELECT id, 1764273483250, 12.5, 40 FROM servers WHERE name = 'view-test'",
        [],
    )
    .unwrap();
    let row: (String, String, f64, f64) = conn
        .query_row(
            "SELECT server, time, cpu, ram FROM samples_view WHERE server = 'view-test'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "view-test".into(),
            "2025-11-27T19:58:03.250Z".into(),
            12.5,
            40.0
        )
    );
}

#[test]
fn a_reader_holding_a_snapshot_does_not_make_ingest_fail() {
    let app = TestApp::new();
    let reader = rusqlite::Connection::open(&app.db_path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let seen: i64 = reader
        .query_row("SELECT count(*) FROM samples_view", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 0);
    for i in 0..50 {
        let body = json!({"cpu": i, "ram": i});
        assert_eq!(app.post_sample("web-1", body).0, Status::NoContent);
    }
    // The open read transaction still sees its snapshot; a new one sees all.
    let seen: i64 = reader
        .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 0);
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(app.stored_samples(), 50);
}

#[rocket::async_test]
async fn a_full_write_queue_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    let figment = figment_for(&db_path).merge(("write_queue", 10_000));
    let client = AsyncClient::untracked(sperform::build(figment).unwrap())
        .await
        .unwrap();
    // Someone else holds the write lock, so the writer cannot commit.
    let blocker = rusqlite::Connection::open(&db_path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let one = r#"{"server":"w","cpu":1,"ram":1}"#;
    let full_batch = format!("[{}]", vec![one; 10_000].join(","));
    let first = client.post("/api/v1/samples").body(full_batch).dispatch();
    let store = client.rocket().state::<Store>().unwrap().clone();
    let waiting = async {
        let started = Instant::now();
        while store.write_queue_len() < 10_000 {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "the batch never queued: {}",
                store.write_queue_len()
            );
            rocket::tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let response = client
            .post("/api/v1/servers/web-1/samples")
            .body(r#"{"cpu": 1, "ram": 1}"#)
            .dispatch()
            .await;
        assert_eq!(response.headers().get_one("Retry-After"), Some("1"));
        let status = response.status();
        let body: serde_json::Value = response.into_json().await.unwrap();
        blocker.execute_batch("ROLLBACK").unwrap();
        (status, body)
    };
    let (first, (status, body)) = rocket::tokio::join!(first, waiting);
    assert_eq!(status, Status::ServiceUnavailable);
    assert_eq!(
        error_message(&Some(body)),
        "the daemon is busy writing earlier samples; retry after the Retry-After delay"
    );
    // The queued batch went in once the lock was gone.
    assert_eq!(first.status(), Status::NoContent);
    assert_eq!(count(&db_path, "SELECT count(*) FROM samples"), 10_000);
}

/// (server, bucket start, samples, cpu sum, ram sum).
type RollupRow = (i64, i64, i64, f64, f64);

/// The rows of a rollup table, and the same computed afresh from the samples
/// below the seal.
fn rollups_and_truth(db_path: &std::path::Path, table: &str, width_ms: i64) -> [Vec<RollupRow>; 2] {
    let conn = rusqlite::Connection::open(db_path).unwrap();
    let read = |sql: &str| -> Vec<RollupRow> {
        let mut statement = conn.prepare(sql).unwrap();
        statement
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let key = if table == "minute_rollups" {
        "minute"
    } else {
        "hour"
    };
    [
        read(&format!(
            "SELECT server_id, {key}, samples, cpu_sum, ram_sum FROM {table} ORDER BY 1, 2"
        )),
        // The rollups hold exactly the samples below their server's seal;
        // minute rows only in hours of more than MINUTE_ROWS_ABOVE of them.
        read(&format!(
            "WITH sealed AS (
                 SELECT server_id, time, cpu, ram FROM samples
                 JOIN servers ON servers.id = samples.server_id
                 WHERE time < {SEAL}),
             dense AS (
                 SELECT server_id, time / 3600000 AS hour FROM sealed
                 GROUP BY server_id, time / 3600000
                 HAVING count(*) > {sparse} OR {width_ms} = 3600000)
             SELECT server_id, time - time % {width_ms}, count(*), total(cpu), total(ram)
             FROM sealed
             WHERE (server_id, time / 3600000) IN (SELECT server_id, hour FROM dense)
             GROUP BY server_id, time / {width_ms} ORDER BY 1, 2",
            sparse = sperform::store::MINUTE_ROWS_ABOVE,
        )),
    ]
}

pub fn assert_rollups_match_samples(db_path: &std::path::Path) {
    for (table, width) in [("minute_rollups", MINUTE_MS), ("hour_rollups", HOUR_MS)] {
        let [rollups, truth] = rollups_and_truth(db_path, table, width);
        if table == "hour_rollups" {
            assert!(!truth.is_empty());
        }
        assert_eq!(rollups.len(), truth.len(), "{table}");
        for (got, want) in rollups.iter().zip(&truth) {
            assert_eq!((got.0, got.1, got.2), (want.0, want.1, want.2), "{table}");
            assert!(
                (got.3 - want.3).abs() <= 1e-9 * want.3.abs().max(1.0),
                "{table}: {got:?} vs {want:?}"
            );
            assert!(
                (got.4 - want.4).abs() <= 1e-9 * want.4.abs().max(1.0),
                "{table}: {got:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn rollups_stay_equal_to_the_samples_they_sum() {
    let app = TestApp::new();
    let base = base_hour();
    let mut batch = Vec::new();
    for i in 0..300_i64 {
        let time = at(base, i * 23_456); // spreads over about two hours
        batch.push(
            json!({"server": format!("web-{}", i % 4), "cpu": (i % 101) as f64 * 0.99,
                          "ram": 100.0 - (i % 7) as f64, "time": time.to_rfc3339()}),
        );
    }
    assert_eq!(
        app.post("/api/v1/samples", json!(batch).to_string()).0,
        Status::NoContent
    );
    // Same-millisecond duplicates, a deletion and a return.
    let again = json!({"cpu": 1.5, "ram": 2.5, "time": at(base, 0).to_rfc3339()});
    assert_eq!(app.post_sample("web-0", again.clone()).0, Status::NoContent);
    assert_eq!(app.delete("/api/v1/servers/web-3").0, Status::NoContent);
    assert_eq!(app.post_sample("web-3", again).0, Status::NoContent);
    assert_rollups_match_samples(&app.db_path);
    let (_, servers) = app.get("/api/v1/servers");
    let counts: Vec<u64> = servers
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["samples"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![76, 75, 75, 1]);
}

#[test]
fn a_version_1_database_is_migrated_with_rollups_from_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    let base = base_hour();
    {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        conn.execute_batch(MIGRATIONS[0].1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute("INSERT INTO servers (id, name) VALUES (1, 'old-1')", [])
            .unwrap();
        for (offset, cpu) in [
            (0, 10.0),
            (1_000, 20.0),
            (MINUTE_MS, 60.0),
            (HOUR_MS + 5, 7.0),
        ] {
            conn.execute(
                "INSERT INTO samples (server_id, time, cpu, ram) VALUES (1, ?1, ?2, 50)",
                rusqlite::params![base.millis() + offset, cpu],
            )
            .unwrap();
        }
    }
    let client = Client::untracked(sperform::build(figment_for(&db_path)).unwrap()).unwrap();
    assert_rollups_match_samples(&db_path);
    let (status, body) = read(
        client
            .get(format!(
                "/api/v1/servers/old-1/load?at={}",
                at(base, HOUR_MS + 10).to_rfc3339()
            ))
            .dispatch(),
    );
    assert_eq!(status, Status::Ok);
    let report = body.unwrap();
    assert_eq!(report["by_minute"][59]["cpu"], 7.0);
    assert_eq!(report["by_minute"][0]["cpu"], 60.0);
    assert_eq!(report["by_hour"][22]["cpu"], 30.0);
    assert_eq!(report["by_hour"][22]["samples"], 3);
}

/// web-1's load report at each of `moments`, as the daemon wrote it.
async fn answers(client: &AsyncClient, moments: &[Timestamp]) -> Vec<String> {
    let mut texts = Vec::new();
    for moment in moments {
        let uri = format!("/api/v1/servers/web-1/load?at={}", moment.to_rfc3339());
        texts.push(
            client
                .get(uri)
                .dispatch()
                .await
                .into_string()
                .await
                .unwrap(),
        );
    }
    texts
}

/// The servers' seal, which is the same for all once a seal is complete.
fn sealed_until(db_path: &std::path::Path) -> i64 {
    assert_eq!(
        count(
            db_path,
            &format!("SELECT count(DISTINCT {SEAL}) FROM servers")
        ),
        1
    );
    count(db_path, &format!("SELECT {SEAL} FROM servers LIMIT 1"))
}

#[rocket::async_test]
async fn sealing_moves_samples_into_the_rollups_without_changing_any_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    // Half a minute into a minute.
    let now = at(base_hour(), HOUR_MS + 30 * 1000);
    let client = async_client_on(&db_path, &ManualClock::new(now)).await;
    let times = [
        at(now, -3 * HOUR_MS), // sealed long ago: rolled up at once
        at(now, -90 * 1000),   // in the minute before the last ended one
        at(now, -1),           // this minute
        now,
        at(now, 2 * MINUTE_MS), // ahead of the clock (allowed up to 5 min)
    ];
    for (index, time) in times.iter().enumerate() {
        for server in ["web-1", "web-2"] {
            let body = json!({"cpu": 10.0 + index as f64, "ram": 50.0 - index as f64,
                              "time": time.to_rfc3339()});
            let status = client
                .post(format!("/api/v1/servers/{server}/samples"))
                .body(body.to_string())
                .dispatch()
                .await
                .status();
            assert_eq!(status, Status::NoContent);
        }
    }
    let moments = [
        at(now, -2 * HOUR_MS),
        at(now, -60 * 1000),
        now,
        at(now, 3 * MINUTE_MS),
    ];
    let before = answers(&client, &moments).await;
    // Sealed up to the clock's minute: the first two samples of each server.
    assert_eq!(sealed_until(&db_path), now.floor(MINUTE_MS).millis());
    let [rollups, _] = rollups_and_truth(&db_path, "hour_rollups", HOUR_MS);
    assert_eq!(rollups.iter().map(|row| row.2).sum::<i64>(), 4);
    assert_rollups_match_samples(&db_path);

    // Seal everything, the sample ahead of the clock included.
    let store = client.rocket().state::<Store>().unwrap().clone();
    store.seal(at(now, 10 * MINUTE_MS)).await.unwrap();
    assert_eq!(
        sealed_until(&db_path),
        at(now, 10 * MINUTE_MS).floor(MINUTE_MS).millis()
    );
    let [rollups, _] = rollups_and_truth(&db_path, "hour_rollups", HOUR_MS);
    assert_eq!(rollups.iter().map(|row| row.2).sum::<i64>(), 10);
    assert_rollups_match_samples(&db_path);
    let after = answers(&client, &moments).await;
    assert_eq!(before, after);

    // Samples that arrive below the seal are rolled up at once.
    let late = json!({"cpu": 99.0, "ram": 1.0, "time": at(now, -1).to_rfc3339()});
    let status = client
        .post("/api/v1/servers/web-1/samples")
        .body(late.to_string())
        .dispatch()
        .await
        .status();
    assert_eq!(status, Status::NoContent);
    assert_rollups_match_samples(&db_path);
    let [rollups, _] = rollups_and_truth(&db_path, "hour_rollups", HOUR_MS);
    assert_eq!(rollups.iter().map(|row| row.2).sum::<i64>(), 11);
    let body: serde_json::Value = client
        .get("/api/v1/servers")
        .dispatch()
        .await
        .into_json()
        .await
        .unwrap();
    assert_eq!(body[0]["samples"], 6);
    assert_eq!(body[1]["samples"], 5);
}

#[test]
fn unsealed_samples_are_found_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    let now = at(base_hour(), HOUR_MS + 30 * 1000);
    let clock = ManualClock::new(now);
    {
        let client = client_on(&db_path, &clock);
        for offset in [0, 1, 2 * MINUTE_MS] {
            let body = json!({"cpu": 40, "ram": 60, "time": at(now, offset).to_rfc3339()});
            let response = client
                .post("/api/v1/servers/web-1/samples")
                .body(body.to_string())
                .dispatch();
            assert_eq!(response.status(), Status::NoContent);
        }
        // Dropped without the orderly shutdown: the in-memory sums are lost.
    }
    let [rollups, _] = rollups_and_truth(&db_path, "hour_rollups", HOUR_MS);
    assert!(rollups.is_empty(), "{rollups:?}");
    let client = client_on(&db_path, &clock);
    let store = client.rocket().state::<Store>().unwrap().clone();
    rocket::tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.seal(at(now, 10 * MINUTE_MS)))
        .unwrap();
    assert_rollups_match_samples(&db_path);
    let [rollups, _] = rollups_and_truth(&db_path, "hour_rollups", HOUR_MS);
    assert_eq!(rollups.iter().map(|row| row.2).sum::<i64>(), 3);
}

#[test]
fn the_writer_counts_what_it_commits() {
    let app = TestApp::new();
    let store = app.client.rocket().state::<Store>().unwrap().clone();
    assert_eq!(store.stats().samples_committed, 0);
    let batch = json!([
        {"server": "web-1", "cpu": 1, "ram": 1},
        {"server": "web-2", "cpu": 1, "ram": 1},
        {"server": "web-3", "cpu": 1, "ram": 1},
    ]);
    assert_eq!(
        app.post("/api/v1/samples", batch.to_string()).0,
        Status::NoContent
    );
    assert_eq!(
        app.post_sample("web-1", json!({"cpu": 2, "ram": 2})).0,
        Status::NoContent
    );
    let stats = store.stats();
    assert_eq!(stats.samples_committed, 4);
    assert_eq!(stats.queued_samples, 0);
    assert_eq!(stats.failed_transactions, 0);
    // Each request committed on its own here: one group of 3, one of 1
    // (plus any seal-only transaction the writer ran meanwhile, with 0).
    assert!(stats.transactions >= 2);
    assert_eq!(stats.group_samples.count(), stats.transactions);
    assert_eq!(stats.commit_seconds.count(), stats.transactions);
    assert_eq!(stats.group_samples.sum, 4.0);
    assert!(stats.commit_seconds.sum > 0.0);
}

#[test]
fn a_daemon_at_rest_empties_its_wal() {
    let app = TestApp::new();
    for i in 0..20 {
        let body = json!({"cpu": i, "ram": i});
        assert_eq!(app.post_sample("web-1", body).0, Status::NoContent);
    }
    let wal = sperform::store::wal_path(&app.db_path);
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    // About a second without writes; allow a slow machine five.
    let started = Instant::now();
    while std::fs::metadata(&wal).unwrap().len() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the WAL was never emptied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing was lost on the way, and writing goes on.
    assert_eq!(app.stored_samples(), 20);
    assert_eq!(
        app.post_sample("web-1", json!({"cpu": 1, "ram": 1})).0,
        Status::NoContent
    );
    assert_eq!(app.stored_samples(), 21);
}

#[test]
fn an_existing_database_keeps_its_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        conn.pragma_update(None, "page_size", 4096).unwrap();
        conn.execute_batch(MIGRATIONS[0].1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let client = Client::untracked(sperform::build(figment_for(&db_path)).unwrap()).unwrap();
    let (status, _) = read(
        client
            .post("/api/v1/servers/web-1/samples")
            .body(r#"{"cpu": 1, "ram": 2}"#)
            .dispatch(),
    );
    assert_eq!(status, Status::NoContent);
    assert_eq!(count(&db_path, "PRAGMA page_size"), 4096);
    assert_eq!(count(&db_path, "SELECT count(*) FROM samples"), 1);
}

/// Servers sealed up to `seal`, and the rest.
fn servers_by_seal(db_path: &std::path::Path, seal: i64) -> (i64, i64) {
    (
        count(
            db_path,
            &format!("SELECT count(*) FROM servers WHERE {SEAL} = {seal}"),
        ),
        count(
            db_path,
            &format!("SELECT count(*) FROM servers WHERE {SEAL} <> {seal}"),
        ),
    )
}

#[test]
fn requests_wait_on_a_few_hundred_servers_sealed_at_a_time() {
    // As a daemon stopped right after a minute ended leaves it: 600
    // servers sealed up to that minute, each with a sample in it, and one
    // (`early`, first in id order) with a sample of the new minute only.
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    let base = base_hour();
    let target = base.millis() + HOUR_MS;
    let ended = target - MINUTE_MS;
    {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        for (_, sql) in MIGRATIONS {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64)
            .unwrap();
        let add = |id: i64, name: String, time: i64, cpu: f64| {
            conn.execute(
                "INSERT INTO servers (id, name, sealed_until) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, name, ended],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO samples (server_id, time, cpu, ram) VALUES (?1, ?2, ?3, 50)",
                rusqlite::params![id, time, cpu],
            )
            .unwrap();
        };
        add(1, "early".into(), target + 1, 7.0);
        for i in 0..600_i64 {
            add(i + 2, format!("s-{i:03}"), ended + i, (i % 100) as f64);
        }
    }
    // The clock stands in the minute after `ended`, as after the restart.
    let client = client_on(&db_path, &ManualClock::new(at(base, HOUR_MS + 20_000)));
    let load = |server: &str| {
        let uri = format!(
            "/api/v1/servers/{server}/load?at={}",
            Timestamp::from_millis(target).unwrap().to_rfc3339()
        );
        read(client.get(uri).dispatch()).1.unwrap()
    };
    let post = |server: &str, body: serde_json::Value| {
        let response = client
            .post(format!("/api/v1/servers/{server}/samples"))
            .body(body.to_string())
            .dispatch();
        assert_eq!(response.status(), Status::NoContent);
    };
    let before = load("s-599");
    assert_eq!(before["by_minute"][58]["cpu"], 99.0);
    // Each request's transaction seals at most 250 servers, so a request
    // never waits for all of them; the one that seals the last sets every
    // server's seal.
    let steps = [
        // Creates `live`, sealed where the others were.
        ("live", json!({"cpu": 1.0, "ram": 1.0}), 250),
        // A late sample of the ended minute for `early`, which the walk
        // passed while it had none: it must be rolled up all the same.
        (
            "early",
            json!({"cpu": 3.0, "ram": 1.0, "time": Timestamp::from_millis(ended + 5_000).unwrap().to_rfc3339()}),
            500,
        ),
        ("live", json!({"cpu": 1.0, "ram": 1.0}), 602),
    ];
    for (server, body, sealed) in steps {
        post(server, body);
        assert_eq!(servers_by_seal(&db_path, target).0, sealed);
        assert_rollups_match_samples(&db_path);
        assert_eq!(load("s-599"), before);
    }
    assert_eq!(servers_by_seal(&db_path, target), (602, 0));
    assert_eq!(
        count(&db_path, "SELECT sum(samples) FROM hour_rollups"),
        601
    );
    assert_eq!(load("early")["by_minute"][58]["cpu"], 3.0);
}

/// A sample of the schema-5 database in the migration test: server, time
/// (Unix ms), seq, cpu, ram.
type Known = (&'static str, i64, i64, f64, f64);

/// Count, sums and extremes of `server`'s known samples in `[start, start +
/// width)` at or before `end`, as `(count, cpu_sum, ram_sum, [cpu_min,
/// cpu_max, ram_min, ram_max])`.
fn oracle_bucket(
    known: &[Known],
    server: &str,
    start: i64,
    width: i64,
    end: i64,
) -> (i64, f64, f64, [f64; 4]) {
    let mut bucket = (0, 0.0, 0.0, [f64::MAX, f64::MIN, f64::MAX, f64::MIN]);
    for &(name, time, _, cpu, ram) in known {
        if name == server && time >= start && time < start + width && time <= end {
            bucket.0 += 1;
            bucket.1 += cpu;
            bucket.2 += ram;
            bucket.3 = [
                bucket.3[0].min(cpu),
                bucket.3[1].max(cpu),
                bucket.3[2].min(ram),
                bucket.3[3].max(ram),
            ];
        }
    }
    bucket
}

/// Means agree up to the order of float additions.
fn assert_mean(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs(),
        "{what}: mean {got} vs {want}"
    );
}

/// Checks buckets of `width` that start at `first`, one after another, each
/// against the oracle; returns the samples they count.
fn assert_buckets_match(
    buckets: &serde_json::Value,
    known: &[Known],
    server: &str,
    first: i64,
    width: i64,
    end: i64,
) -> i64 {
    let buckets = buckets.as_array().expect("an array of buckets");
    let mut counted = 0;
    for (index, got) in buckets.iter().enumerate() {
        let start = first + index as i64 * width;
        let what = format!("{server}, bucket {start} of width {width}, end {end}: {got}");
        assert_eq!(
            got["start"].as_str(),
            Some(
                Timestamp::from_millis(start)
                    .unwrap()
                    .to_rfc3339_seconds()
                    .as_str()
            ),
            "{what}"
        );
        let (samples, cpu_sum, ram_sum, extremes) = oracle_bucket(known, server, start, width, end);
        assert_eq!(got["samples"].as_i64(), Some(samples), "{what}");
        counted += samples;
        let fields = ["cpu_min", "cpu_max", "ram_min", "ram_max"];
        if samples == 0 {
            for field in ["cpu", "ram"].iter().chain(&fields) {
                assert!(got[field].is_null(), "{what}");
            }
            continue;
        }
        for (field, want) in fields.iter().zip(extremes) {
            assert_eq!(got[field].as_f64(), Some(want), "{what}: {field}");
        }
        assert_mean(
            got["cpu"].as_f64().unwrap(),
            cpu_sum / samples as f64,
            &what,
        );
        assert_mean(
            got["ram"].as_f64().unwrap(),
            ram_sum / samples as f64,
            &what,
        );
    }
    counted
}

/// The /load and /range answers of every server at `at` equal the oracle's.
async fn assert_answers_match(
    client: &AsyncClient,
    known: &[Known],
    servers: &[&str],
    at: Timestamp,
) {
    let end = at.millis();
    let get = |uri: String| async move {
        let response = client.get(uri.clone()).dispatch().await;
        assert_eq!(response.status(), Status::Ok, "{uri}");
        response.into_json::<serde_json::Value>().await.unwrap()
    };
    for &server in servers {
        let load = get(format!(
            "/api/v1/servers/{server}/load?at={}",
            at.to_rfc3339()
        ))
        .await;
        assert_eq!(load["by_minute"].as_array().map(Vec::len), Some(60));
        assert_eq!(load["by_hour"].as_array().map(Vec::len), Some(24));
        let minute = at.floor(MINUTE_MS).millis();
        assert_buckets_match(
            &load["by_minute"],
            known,
            server,
            minute - 59 * MINUTE_MS,
            MINUTE_MS,
            end,
        );
        let hour = at.floor(HOUR_MS).millis();
        let in_day = assert_buckets_match(
            &load["by_hour"],
            known,
            server,
            hour - 23 * HOUR_MS,
            HOUR_MS,
            end,
        );
        // Every known sample lies in the last 24 hours of the oracle's times.
        let all = known
            .iter()
            .filter(|sample| sample.0 == server && sample.1 <= end)
            .count();
        assert_eq!(in_day, all as i64, "{server} at {at}");
        let day_ms = 24 * HOUR_MS;
        for (step, width, from) in [
            ("1m", MINUTE_MS, at.millis() - 7 * HOUR_MS - 30_000),
            ("1h", HOUR_MS, at.millis() - 9 * HOUR_MS - 30_000),
            ("1d", day_ms, at.millis() - 2 * day_ms),
        ] {
            let from = Timestamp::from_millis(from).unwrap();
            let range = get(format!(
                "/api/v1/servers/{server}/load/range?from={}&to={}&step={step}",
                from.to_rfc3339(),
                at.to_rfc3339()
            ))
            .await;
            let first = from.floor(width).millis();
            let buckets = &range["buckets"];
            assert_eq!(
                buckets.as_array().map(Vec::len),
                Some(((at.floor(width).millis() - first) / width + 1) as usize),
                "{server} {step}"
            );
            let counted = assert_buckets_match(buckets, known, server, first, width, end);
            assert_eq!(counted, all as i64, "{server} {step} at {at}");
        }
    }
}

/// Every row of `history_view`, by server and hour.
type ViewRow = (String, String, i64, f64, f64, f64, f64, f64, f64, i64);

/// `history_view` holds, for each server, an hour row of exactly its known
/// samples below its seal, all with raw samples kept.
fn assert_history_view_matches(db_path: &std::path::Path, known: &[Known]) {
    let mut conn = rusqlite::Connection::open(db_path).unwrap();
    // The seals and the view from one snapshot.
    let tx = conn.transaction().unwrap();
    let seals: std::collections::HashMap<String, i64> = tx
        .prepare(&format!("SELECT name, {SEAL} FROM servers"))
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let rows: Vec<ViewRow> = tx
        .prepare("SELECT * FROM history_view ORDER BY server, hour")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(tx);
    let mut hours: Vec<(&str, i64)> = known
        .iter()
        .filter(|sample| sample.1 < seals[sample.0])
        .map(|sample| (sample.0, sample.1 - sample.1 % HOUR_MS))
        .collect();
    hours.sort_unstable();
    hours.dedup();
    assert_eq!(rows.len(), hours.len(), "{rows:?}");
    for (row, (server, hour)) in rows.iter().zip(hours) {
        let (samples, cpu_sum, ram_sum, [cpu_min, cpu_max, ram_min, ram_max]) =
            oracle_bucket(known, server, hour, HOUR_MS, seals[server] - 1);
        let hour_text = Timestamp::from_millis(hour).unwrap().to_rfc3339_seconds();
        assert_eq!(
            (
                row.0.as_str(),
                row.1.as_str(),
                row.2,
                row.4,
                row.5,
                row.7,
                row.8,
                row.9
            ),
            (
                server,
                hour_text.as_str(),
                samples,
                cpu_min,
                cpu_max,
                ram_min,
                ram_max,
                1
            ),
            "{row:?}"
        );
        assert_mean(row.3, cpu_sum / samples as f64, &format!("{row:?}"));
        assert_mean(row.6, ram_sum / samples as f64, &format!("{row:?}"));
    }
}

#[rocket::async_test]
async fn a_version_5_database_keeps_every_sample_and_answer_through_the_history_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sperform.db");
    let h0 = Timestamp::parse_rfc3339("2026-11-27T12:00:00Z")
        .unwrap()
        .millis();
    // The seal that every server had reached, and web-2's, one minute
    // later: schema 5 was halfway through a seal walk.
    let floor = h0 + 5 * HOUR_MS + 29 * MINUTE_MS;
    let seal_of = |server: &str| {
        if server == "web-2" {
            floor + MINUTE_MS
        } else {
            floor
        }
    };
    let mut known: Vec<Known> = Vec::new();
    // dense-1: a dense hour of 401 samples, one of them alone in its
    // minute, then a sparse hour and a sample above the seal.
    for i in 0..400_i64 {
        let cpu = ((i * 37) % 1000) as f64 / 10.0;
        let ram = 20.0 + ((i * 13) % 600) as f64 / 10.0;
        known.push(("dense-1", h0 + HOUR_MS + i * 7_500, 0, cpu, ram));
    }
    known.push((
        "dense-1",
        h0 + HOUR_MS + 55 * MINUTE_MS + 1_000,
        0,
        99.5,
        0.5,
    ));
    known.push(("dense-1", h0 + 3 * HOUR_MS + 10, 0, 3.25, 60.0));
    known.push(("dense-1", h0 + 3 * HOUR_MS + 20 * MINUTE_MS, 0, 4.75, 61.5));
    known.push(("dense-1", floor + 20_000, 0, 55.0, 45.0));
    // db-1: an hour of exactly MINUTE_ROWS_ABOVE samples, which is not dense.
    for i in 0..sperform::store::MINUTE_ROWS_ABOVE {
        let cpu = ((i * 53) % 997) as f64 / 10.0;
        known.push((
            "db-1",
            h0 + 2 * HOUR_MS + i * 10_000,
            0,
            cpu,
            88.0 - (i % 9) as f64,
        ));
    }
    known.push(("db-1", floor - 1, 0, 71.25, 88.0));
    // web-1: sparse hours, a lone sample, two samples in one millisecond,
    // samples just below, at and above the seal, one ahead of the clock.
    for (time, seq, cpu, ram) in [
        (h0 + 10 * MINUTE_MS, 0, 12.5, 40.0),
        (h0 + 2 * HOUR_MS + 5_000, 0, 20.25, 41.5),
        (h0 + 2 * HOUR_MS + 50_000, 0, 30.5, 42.0),
        (h0 + 2 * HOUR_MS + 30 * MINUTE_MS, 0, 7.75, 43.25),
        (h0 + 4 * HOUR_MS, 0, 1.0, 10.0),
        (h0 + 4 * HOUR_MS + 17_000, 0, 2.0, 20.0),
        (h0 + 4 * HOUR_MS + 17_000, 1, 3.0, 30.0),
        (h0 + 4 * HOUR_MS + 34_000, 0, 4.0, 40.0),
        (h0 + 4 * HOUR_MS + 51_000, 0, 5.0, 50.0),
        (h0 + 5 * HOUR_MS + MINUTE_MS, 0, 66.5, 33.5),
        (floor - 1, 0, 0.0, 100.0),
        (floor, 0, 100.0, 0.0),
        (floor + 10_000, 0, 25.0, 75.0),
        (floor + 45_000, 0, 35.0, 65.0),
    ] {
        known.push(("web-1", time, seq, cpu, ram));
    }
    // web-2: sealed a minute further, a sample above its seal.
    for (time, cpu, ram) in [
        (h0 + 4 * HOUR_MS + 30 * MINUTE_MS, 9.5, 19.5),
        (floor + 5_000, 11.0, 21.0),
        (floor + 40_000, 13.0, 23.0),
        (floor + 65_000, 15.0, 25.0),
    ] {
        known.push(("web-2", time, 0, cpu, ram));
    }
    let servers = ["db-1", "dense-1", "web-1", "web-2"];
    {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        for (_, sql) in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        for (id, name) in (1_i64..).zip(servers) {
            conn.execute(
                "INSERT INTO servers (id, name, sealed_until) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, name, seal_of(name)],
            )
            .unwrap();
        }
        for &(name, time, seq, cpu, ram) in &known {
            conn.execute(
                "INSERT INTO samples (server_id, time, seq, cpu, ram)
                 SELECT id, ?2, ?3, ?4, ?5 FROM servers WHERE name = ?1",
                rusqlite::params![name, time, seq, cpu, ram],
            )
            .unwrap();
        }
        // The rollups as schema 5 keeps them: every minute and hour of the
        // samples below the server's seal, extremes NULL in one-sample rows.
        for (table, key, width) in [
            ("minute_rollups", "minute", MINUTE_MS),
            ("hour_rollups", "hour", HOUR_MS),
        ] {
            conn.execute_batch(&format!(
                "INSERT INTO {table}
                     (server_id, {key}, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max)
                 SELECT server_id, time - time % {width}, count(*), total(cpu), total(ram),
                        CASE WHEN count(*) > 1 THEN min(cpu) END,
                        CASE WHEN count(*) > 1 THEN max(cpu) END,
                        CASE WHEN count(*) > 1 THEN min(ram) END,
                        CASE WHEN count(*) > 1 THEN max(ram) END
                 FROM samples JOIN servers ON servers.id = samples.server_id
                 WHERE time < servers.sealed_until
                 GROUP BY server_id, time / {width}"
            ))
            .unwrap();
        }
        assert_eq!(
            count(
                &db_path,
                "SELECT count(*) FROM hour_rollups WHERE samples = 1 AND cpu_min IS NULL"
            ),
            3
        );
    }

    // The clock stands in the floor's minute, so nothing is due to be
    // sealed and the migrated seals stay as they are until the test seals.
    let clock = ManualClock::new(Timestamp::from_millis(floor + 30_000).unwrap());
    let client = async_client_on(&db_path, &clock).await;
    assert_eq!(MIGRATIONS[5].0, "0006_history");
    assert_eq!(
        count(&db_path, "PRAGMA user_version"),
        MIGRATIONS.len() as i64
    );
    let stored: Vec<(String, i64, i64, f64, f64)> = {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        let mut statement = conn
            .prepare(
                "SELECT name, time, seq, cpu, ram FROM samples
                 JOIN servers ON servers.id = samples.server_id ORDER BY name, time, seq",
            )
            .unwrap();
        statement
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut want: Vec<(String, i64, i64, f64, f64)> = known
        .iter()
        .map(|&(name, time, seq, cpu, ram)| (name.to_owned(), time, seq, cpu, ram))
        .collect();
    want.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    assert_eq!(stored, want);
    assert_eq!(
        count(&db_path, "SELECT sealed_until FROM seal_floor WHERE id = 1"),
        floor
    );
    assert_eq!(count(&db_path, "SELECT count(*) FROM seal_floor"), 1);
    assert_eq!(
        crate::support::seals(&db_path),
        servers
            .map(|name| (name.to_owned(), seal_of(name)))
            .to_vec()
    );
    // Minute rows remain for the dense hour only: its 51 minutes.
    let minute_rows = "SELECT count(*) FROM minute_rollups JOIN servers ON servers.id = server_id";
    assert_eq!(
        count(
            &db_path,
            &format!(
                "{minute_rows} WHERE name = 'dense-1' AND minute / 3600000 = {}",
                (h0 + HOUR_MS) / HOUR_MS
            )
        ),
        51
    );
    assert_eq!(count(&db_path, minute_rows), 51);
    assert_eq!(count(&db_path, "SELECT count(*) FROM hour_history"), 0);
    assert_rollups_match_samples(&db_path);
    assert_history_view_matches(&db_path, &known);
    for moment in [floor + 30_000, floor + 2 * MINUTE_MS] {
        let moment = Timestamp::from_millis(moment).unwrap();
        assert_answers_match(&client, &known, &servers, moment).await;
    }
    let listed: serde_json::Value = client
        .get("/api/v1/servers")
        .dispatch()
        .await
        .into_json()
        .await
        .unwrap();
    for (entry, name) in listed.as_array().unwrap().iter().zip(servers) {
        let times: Vec<i64> = known.iter().filter(|s| s.0 == name).map(|s| s.1).collect();
        let seen =
            |time: Option<&i64>| Timestamp::from_millis(*time.unwrap()).unwrap().to_rfc3339();
        assert_eq!(
            entry,
            &json!({"name": name, "samples": times.len(),
                    "first_seen": seen(times.iter().min()), "last_seen": seen(times.iter().max())})
        );
    }

    // Sealing on, past every sample, changes no answer.
    clock.set(Timestamp::from_millis(floor + 3 * MINUTE_MS + 30_000).unwrap());
    let store = client.rocket().state::<Store>().unwrap().clone();
    store.seal(clock.now()).await.unwrap();
    assert_eq!(
        count(&db_path, "SELECT sealed_until FROM seal_floor WHERE id = 1"),
        floor + 3 * MINUTE_MS
    );
    assert_rollups_match_samples(&db_path);
    assert_eq!(count(&db_path, minute_rows), 51);
    assert_history_view_matches(&db_path, &known);
    for moment in [floor + 30_000, floor + 3 * MINUTE_MS + 30_000] {
        let moment = Timestamp::from_millis(moment).unwrap();
        assert_answers_match(&client, &known, &servers, moment).await;
    }
}
