//! `GET /api/v1/servers/<name>/load/range`: any range and step, means and
//! extremes, dense buckets, and the guard rails.

use rocket::http::Status;
use serde_json::{Value, json};
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};

use crate::support::{TestApp, at, base_hour, count, error_message};

fn post_at(app: &TestApp, server: &str, time: Timestamp, cpu: f64, ram: f64) {
    let body = json!({"cpu": cpu, "ram": ram, "time": time.to_rfc3339()});
    assert_eq!(app.post_sample(server, body).0, Status::NoContent);
}

fn range(
    app: &TestApp,
    server: &str,
    from: Timestamp,
    to: Timestamp,
    step: &str,
) -> (Status, Value) {
    let uri = format!(
        "/api/v1/servers/{server}/load/range?from={}&to={}&step={step}",
        from.to_rfc3339(),
        to.to_rfc3339()
    );
    let (status, body) = app.get(&uri);
    (status, body.unwrap_or(Value::Null))
}

/// (index, samples, cpu, ram, cpu_min, cpu_max, ram_min, ram_max) of a
/// non-empty bucket.
type Filled = (usize, u64, f64, f64, f64, f64, f64, f64);

fn filled(buckets: &Value) -> Vec<Filled> {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, b)| b["samples"].as_u64().unwrap() > 0)
        .map(|(i, b)| {
            let f = |key: &str| b[key].as_f64().unwrap();
            (
                i,
                b["samples"].as_u64().unwrap(),
                f("cpu"),
                f("ram"),
                f("cpu_min"),
                f("cpu_max"),
                f("ram_min"),
                f("ram_max"),
            )
        })
        .collect()
}

#[test]
fn buckets_are_aligned_to_the_step_dense_and_exact() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", at(base, 2 * MINUTE_MS), 10.0, 40.0);
    post_at(&app, "web-1", at(base, 4 * MINUTE_MS + 59_999), 30.0, 20.0);
    post_at(&app, "web-1", at(base, 5 * MINUTE_MS), 5.0, 50.0);
    post_at(&app, "web-1", at(base, 21 * MINUTE_MS), 100.0, 0.0);
    post_at(&app, "web-1", at(base, 22 * MINUTE_MS), 99.0, 1.0); // after `to`
    let from = at(base, 3 * MINUTE_MS + 30_000);
    let to = at(base, 21 * MINUTE_MS + 30_000);
    let (status, body) = range(&app, "web-1", from, to, "5m");
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["server"], "web-1");
    assert_eq!(body["from"], from.to_rfc3339());
    assert_eq!(body["to"], to.to_rfc3339());
    assert_eq!(body["step"], "5m");
    let buckets = body["buckets"].as_array().unwrap();
    // base, base+5m, ..., base+20m: the buckets that cover [from, to].
    assert_eq!(buckets.len(), 5);
    assert_eq!(buckets[0]["start"], base.to_rfc3339_seconds());
    assert_eq!(
        buckets[4]["start"],
        at(base, 20 * MINUTE_MS).to_rfc3339_seconds()
    );
    assert_eq!(
        filled(&body["buckets"]),
        vec![
            (0, 2, 20.0, 30.0, 10.0, 30.0, 20.0, 40.0),
            (1, 1, 5.0, 50.0, 5.0, 5.0, 50.0, 50.0),
            (4, 1, 100.0, 0.0, 100.0, 100.0, 0.0, 0.0),
        ]
    );
    assert_eq!(
        buckets[2],
        json!({"start": at(base, 10 * MINUTE_MS).to_rfc3339_seconds(), "cpu": null,
               "ram": null, "cpu_min": null, "cpu_max": null, "ram_min": null,
               "ram_max": null, "samples": 0})
    );
}

#[test]
fn hour_and_day_steps_agree_with_the_samples() {
    let app = TestApp::new();
    let base = base_hour();
    let day_start = Timestamp::from_millis(base.millis() - base.millis() % (24 * HOUR_MS)).unwrap();
    let mut values = Vec::new();
    for i in 0..10_i64 {
        let time = at(base, i * 7 * MINUTE_MS + i * 1_001);
        let cpu = (i * 9 % 100) as f64 + 0.5;
        post_at(&app, "web-1", time, cpu, 100.0 - cpu);
        values.push((time, cpu));
    }
    let to = at(base, 2 * HOUR_MS - 1);
    let (status, body) = range(&app, "web-1", day_start.max(at(base, -HOUR_MS)), to, "1h");
    assert_eq!(status, Status::Ok, "{body}");
    let expected_hour = |hour: Timestamp| {
        let inside: Vec<f64> = values
            .iter()
            .filter(|(t, _)| t.floor(HOUR_MS) == hour)
            .map(|(_, cpu)| *cpu)
            .collect();
        (
            inside.len() as u64,
            inside.iter().sum::<f64>() / inside.len() as f64,
            inside.iter().copied().fold(f64::INFINITY, f64::min),
            inside.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    for bucket in body["buckets"].as_array().unwrap() {
        let start = Timestamp::parse_rfc3339(bucket["start"].as_str().unwrap()).unwrap();
        let (n, mean, min, max) = expected_hour(start);
        assert_eq!(bucket["samples"].as_u64().unwrap(), n);
        if n > 0 {
            assert!((bucket["cpu"].as_f64().unwrap() - mean).abs() < 1e-9 * mean);
            assert_eq!(bucket["cpu_min"].as_f64().unwrap(), min);
            assert_eq!(bucket["cpu_max"].as_f64().unwrap(), max);
        }
    }
    // One day-long bucket (or two, across midnight) hold all ten.
    let (status, body) = range(&app, "web-1", at(base, -HOUR_MS), to, "1d");
    assert_eq!(status, Status::Ok);
    assert_eq!(body["step"], "1d");
    let total: u64 = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 10);
}

#[test]
fn one_minute_steps_match_the_load_view_on_both_sides_of_the_seal() {
    // Forty seconds into a minute: the samples of the last half hour lie
    // on both sides of the seal.
    let now = at(base_hour(), HOUR_MS + 40_000);
    let app = TestApp::at_time(now);
    for i in 0..30_i64 {
        post_at(
            &app,
            "web-1",
            at(now, -i * 97_000),
            (i % 10) as f64 * 3.5,
            50.0 + i as f64,
        );
    }
    let at_time = at(now, 1);
    let load = app.load("web-1", at_time);
    let check = |app: &TestApp| {
        let (status, body) = range(app, "web-1", at(at_time, -59 * MINUTE_MS), at_time, "60");
        assert_eq!(status, Status::Ok, "{body}");
        assert_eq!(body["step"], "1m");
        assert_eq!(body["buckets"], load["by_minute"]);
    };
    check(&app);
    let unsealed = count(
        &app.db_path,
        &format!(
            "SELECT count(*) FROM samples WHERE time >= {}",
            now.floor(MINUTE_MS).millis()
        ),
    );
    assert_eq!(unsealed, 1);
    let store = app.store();
    app.block_on(store.seal(at(now, 10 * MINUTE_MS))).unwrap();
    check(&app);
}

#[test]
fn rollup_extremes_equal_those_of_the_samples() {
    let app = TestApp::new();
    let base = base_hour();
    for i in 0..200_i64 {
        let server = format!("web-{}", i % 3);
        post_at(
            &app,
            &server,
            at(base, i * 31_337),
            (i * 13 % 101) as f64,
            (i * 7 % 100) as f64,
        );
    }
    for (table, key, width) in [
        ("minute_rollups", "minute", MINUTE_MS),
        ("hour_rollups", "hour", HOUR_MS),
    ] {
        let mismatches = count(
            &app.db_path,
            &format!(
                "SELECT count(*) FROM {table} r JOIN (
                     SELECT server_id, time - time % {width} AS bucket, min(cpu) AS a,
                            max(cpu) AS b, min(ram) AS c, max(ram) AS d
                     FROM samples GROUP BY server_id, time / {width}) t
                 ON t.server_id = r.server_id AND t.bucket = r.{key}
                 WHERE coalesce(r.cpu_min, r.cpu_sum) IS NOT t.a
                    OR coalesce(r.cpu_max, r.cpu_sum) IS NOT t.b
                    OR coalesce(r.ram_min, r.ram_sum) IS NOT t.c
                    OR coalesce(r.ram_max, r.ram_sum) IS NOT t.d"
            ),
        );
        assert_eq!(mismatches, 0, "{table}");
        // Extremes are left out (NULL) exactly in the one-sample rows.
        let stored_wrongly = count(
            &app.db_path,
            &format!(
                "SELECT count(*) FROM {table}
                 WHERE (samples = 1) != (cpu_min IS NULL AND cpu_max IS NULL
                                         AND ram_min IS NULL AND ram_max IS NULL)"
            ),
        );
        assert_eq!(stored_wrongly, 0, "{table}");
    }
    // A sample every 94 s or so leaves every hour sparse: no minute rows,
    // and most hour rows hold several samples.
    assert_eq!(
        count(&app.db_path, "SELECT count(*) FROM minute_rollups"),
        0
    );
    let full = count(
        &app.db_path,
        "SELECT count(*) FROM hour_rollups WHERE samples > 1",
    );
    assert!(full > 3, "{full} hour rows of several samples");
}

#[test]
fn a_second_sample_gives_a_one_sample_rollup_row_its_extremes() {
    let app = TestApp::new();
    let minute = at(base_hour(), 7 * MINUTE_MS);
    // Two requests, so the second sample is added to a stored rollup row.
    post_at(&app, "web-1", at(minute, 1_000), 10.5, 50.25);
    post_at(&app, "web-1", at(minute, 2_000), 30.75, 20.0);
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    // The hour is sparse: it has an hour row and no minute rows.
    assert_eq!(
        count(&app.db_path, "SELECT count(*) FROM minute_rollups"),
        0
    );
    let row: (i64, f64, f64, f64, f64) = conn
        .query_row(
            "SELECT samples, cpu_min, cpu_max, ram_min, ram_max FROM hour_rollups
             WHERE hour = ?1",
            [minute.floor(HOUR_MS).millis()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(row, (2, 10.5, 30.75, 20.0, 50.25));
    let (status, body) = range(&app, "web-1", minute, at(minute, MINUTE_MS - 1), "1m");
    assert_eq!(status, Status::Ok);
    assert_eq!(
        filled(&body["buckets"]),
        vec![(0, 2, 20.625, 35.125, 10.5, 30.75, 20.0, 50.25)]
    );
}

#[test]
fn bad_parameters_are_named() {
    let app = TestApp::new();
    let base = base_hour();
    post_at(&app, "web-1", base, 1.0, 1.0);
    let (f, t) = (base.to_rfc3339(), at(base, HOUR_MS).to_rfc3339());
    let cases = [
        (
            format!("to={t}&step=5m"),
            "query parameter `from` is missing",
        ),
        (
            format!("from={f}&step=5m"),
            "query parameter `to` is missing",
        ),
        (
            format!("from={f}&to={t}"),
            "query parameter `step` is missing",
        ),
        (
            format!("from=soon&to={t}&step=5m"),
            "query parameter `from`: time \"soon\"",
        ),
        (
            format!("from={f}&to={t}&step=2m"),
            "step \"2m\" must be one of",
        ),
        (
            format!("from={f}&to={t}&step=90"),
            "step \"90\" must be one of",
        ),
        (format!("from={t}&to={f}&step=5m"), "from ("),
        (format!("from={f}&to={f}&step=5m"), "from ("),
        (
            format!(
                "from={}&to={t}&step=1m",
                at(base, -30 * HOUR_MS).to_rfc3339()
            ),
            "step 1m makes",
        ),
        (
            format!(
                "from={}&to={t}&step=30m",
                at(base, -8 * 24 * HOUR_MS).to_rfc3339()
            ),
            "from (",
        ),
        (
            format!(
                "from={}&to={t}&step=1d",
                at(base, -401 * 24 * HOUR_MS).to_rfc3339()
            ),
            "from (",
        ),
    ];
    for (query, message) in cases {
        let (status, body) = app.get(&format!("/api/v1/servers/web-1/load/range?{query}"));
        assert_eq!(status, Status::UnprocessableEntity, "{query}");
        let error = error_message(&body);
        assert!(error.starts_with(message), "{query}: {error}");
    }
    let (status, body) = app.get(&format!(
        "/api/v1/servers/web-9/load/range?from={f}&to={t}&step=5m"
    ));
    assert_eq!(status, Status::NotFound);
    assert_eq!(
        error_message(&body),
        "no server named \"web-9\" has reported"
    );
}
