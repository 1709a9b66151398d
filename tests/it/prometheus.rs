//! The Prometheus-compatible read API under `/prometheus/api/v1`: through
//! the local client, and with Prometheus's own `promtool` against the real
//! daemon.

use std::path::PathBuf;
use std::process::Command;

use rocket::http::{ContentType, Header, Status};
use serde_json::{Value, json};
use sperform::model::{MINUTE_MS, Timestamp};

use crate::daemon::Daemon;
use crate::support::{TestApp, Tool, at, base_hour, read, required_tool};

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn seconds(time: Timestamp) -> String {
    format!("{}", time.millis() as f64 / 1000.0)
}

/// web-1: cpu 10, 20, 30 at base + 0 s, + 30 s, + 60 s; web-2: cpu 50 at
/// base + 60 s; db-1: cpu 70 at base + 10 s. RAM is cpu + 1.
fn app_with_samples() -> (TestApp, Timestamp) {
    let app = TestApp::new();
    let base = base_hour();
    for (server, offset_s, cpu) in [
        ("web-1", 0, 10.0),
        ("web-1", 30, 20.0),
        ("web-1", 60, 30.0),
        ("web-2", 60, 50.0),
        ("db-1", 10, 70.0),
    ] {
        let time = at(base, offset_s * 1000);
        let (status, body) = app.post_sample(
            server,
            json!({"cpu": cpu, "ram": cpu + 1.0, "time": time.to_rfc3339()}),
        );
        assert_eq!(status, Status::NoContent, "{body:?}");
    }
    (app, base)
}

fn instant(app: &TestApp, query: &str, time: Timestamp) -> (Status, Value) {
    let (status, body) = app.get(&format!(
        "/prometheus/api/v1/query?query={}&time={}",
        encode(query),
        seconds(time)
    ));
    (status, body.unwrap())
}

#[test]
fn an_instant_query_answers_a_vector_in_prometheus_s_envelope() {
    let (app, base) = app_with_samples();
    let time = at(base, 60_000);
    let (status, body) = instant(
        &app,
        "avg_over_time(sperform_cpu_percent{server=~\"web-.*\"}[1m])",
        time,
    );
    assert_eq!(status, Status::Ok);
    let t = time.millis() / 1000;
    assert_eq!(
        body,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"server": "web-1"}, "value": [t, "25"]},
            {"metric": {"server": "web-2"}, "value": [t, "50"]},
        ]}})
    );
}

#[test]
fn a_selector_keeps_the_metric_name_and_reports_at_the_evaluation_time() {
    let (app, base) = app_with_samples();
    let time = at(base, 100_500);
    let (_, body) = instant(&app, "sperform_ram_percent{server=\"db-1\"}", time);
    assert_eq!(
        body["data"]["result"],
        json!([{"metric": {"__name__": "sperform_ram_percent", "server": "db-1"},
                "value": [seconds(time).parse::<f64>().unwrap(), "71"]}])
    );
}

#[test]
fn a_range_query_of_one_minute_means_matches_the_load_buckets() {
    let (app, base) = app_with_samples();
    // /load's minute bucket [S, S + 1m) is avg_over_time(...[1m]) at
    // S + 1m - 1ms, whose window is (S - 1ms, S + 1m - 1ms].
    let start = at(base, MINUTE_MS - 1);
    let end = at(base, 2 * MINUTE_MS - 1);
    let (status, body) = app.get(&format!(
        "/prometheus/api/v1/query_range?query={}&start={}&end={}&step=1m",
        encode("avg_over_time(sperform_cpu_percent{server=\"web-1\"}[1m])"),
        seconds(start),
        seconds(end)
    ));
    assert_eq!(status, Status::Ok, "{body:?}");
    let body = body.unwrap();
    assert_eq!(body["data"]["resultType"], "matrix");
    let values = body["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .clone();
    let load = app.load("web-1", at(base, 2 * MINUTE_MS - 1));
    let minutes = load["by_minute"].as_array().unwrap();
    let buckets = &minutes[minutes.len() - 2..];
    assert_eq!(values.len(), 2);
    for (point, bucket) in values.iter().zip(buckets) {
        let value: f64 = point[1].as_str().unwrap().parse().unwrap();
        assert_eq!(Some(value), bucket["cpu"].as_f64(), "{point} {bucket}");
    }
    assert_eq!(values[0][1], "15");
    assert_eq!(values[1][1], "30");
}

#[test]
fn queries_can_be_posted_as_forms() {
    let (app, base) = app_with_samples();
    let body = format!(
        "query={}&start={}&end={}&step=30",
        encode("max by (server) (sperform_cpu_percent{server=\"db-1\"})"),
        seconds(at(base, 0)),
        seconds(at(base, 60_000))
    );
    let response = app
        .client
        .post("/prometheus/api/v1/query_range")
        .header(ContentType::Form)
        .body(body)
        .dispatch();
    let (status, body) = read(response);
    assert_eq!(status, Status::Ok, "{body:?}");
    let result = &body.unwrap()["data"]["result"];
    assert_eq!(result[0]["metric"], json!({"server": "db-1"}));
    // Nothing before the sample at + 10 s; then it is seen for five minutes.
    assert_eq!(result[0]["values"].as_array().unwrap().len(), 2);

    let response = app
        .client
        .post("/prometheus/api/v1/query")
        .header(ContentType::Form)
        .body(format!(
            "query={}&time={}",
            encode("count(sperform_cpu_percent)"),
            seconds(at(base, 60_000))
        ))
        .dispatch();
    let (_, body) = read(response);
    assert_eq!(body.unwrap()["data"]["result"][0]["value"][1], "3");
}

#[test]
fn topk_answers_the_highest_series_first() {
    let (app, base) = app_with_samples();
    let (_, body) = instant(&app, "topk(2, sperform_cpu_percent)", at(base, 60_000));
    let servers: Vec<&str> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| series["metric"]["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers, ["db-1", "web-2"]);
}

#[test]
fn errors_use_prometheus_s_error_envelope() {
    let (app, base) = app_with_samples();
    let (status, body) = instant(&app, "rate(sperform_cpu_percent[5m])", base);
    assert_eq!(status, Status::BadRequest);
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("does not support the function rate"),
        "{message}"
    );

    let (status, body) = instant(&app, "sperform_cpu_percent{", base);
    assert_eq!(status, Status::BadRequest);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": ")
    );

    let (status, body) = app
        .get("/prometheus/api/v1/query_range?query=sperform_cpu_percent&start=0&end=100000&step=1");
    assert_eq!(status, Status::BadRequest);
    assert!(
        body.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("11,000 points per timeseries")
    );

    let (status, body) =
        app.get("/prometheus/api/v1/query_range?query=sperform_cpu_percent&start=0&end=60");
    assert_eq!(status, Status::BadRequest);
    assert_eq!(
        body.unwrap()["error"],
        "invalid parameter \"step\": cannot parse \"\" to a valid duration"
    );

    let (status, body) = instant(
        &app,
        "avg_over_time({__name__=~\"sperform_.+\"}[1m])",
        at(base, 60_000),
    );
    assert_eq!(status, Status::UnprocessableEntity);
    assert_eq!(body["errorType"], "execution");
}

#[test]
fn labels_values_and_series_list_what_is_stored() {
    let (app, _) = app_with_samples();
    let (status, body) = app.get("/prometheus/api/v1/labels");
    assert_eq!(status, Status::Ok);
    assert_eq!(body.unwrap()["data"], json!(["__name__", "server"]));

    let (_, body) = app.get("/prometheus/api/v1/label/server/values");
    assert_eq!(body.unwrap()["data"], json!(["db-1", "web-1", "web-2"]));
    let (_, body) = app.get("/prometheus/api/v1/label/__name__/values");
    assert_eq!(
        body.unwrap()["data"],
        json!(["sperform_cpu_percent", "sperform_ram_percent"])
    );
    let (_, body) = app.get("/prometheus/api/v1/label/job/values");
    assert_eq!(body.unwrap()["data"], json!([]));

    // `match[]` percent-encoded or not, several at once.
    let (status, body) = app.get(&format!(
        "/prometheus/api/v1/series?match%5B%5D={}&match[]={}",
        encode("sperform_cpu_percent{server=~\"web-.\"}"),
        encode("sperform_ram_percent{server=\"db-1\"}")
    ));
    assert_eq!(status, Status::Ok, "{body:?}");
    assert_eq!(
        body.unwrap()["data"],
        json!([
            {"__name__": "sperform_cpu_percent", "server": "web-1"},
            {"__name__": "sperform_cpu_percent", "server": "web-2"},
            {"__name__": "sperform_ram_percent", "server": "db-1"},
        ])
    );
    let (status, body) = app.get("/prometheus/api/v1/series");
    assert_eq!(status, Status::BadRequest);
    assert_eq!(body.unwrap()["error"], "no match[] parameter provided");

    let (status, body) = app.get("/prometheus/api/v1/status/buildinfo");
    assert_eq!(status, Status::Ok);
    assert!(body.unwrap()["data"]["version"].is_string());
}

#[test]
fn the_read_token_guards_the_prometheus_api() {
    let token = "read-0123456789abcdef01";
    let app = TestApp::with(|figment| figment.merge(("read_token", token)));
    let (status, _) = app.get("/prometheus/api/v1/labels");
    assert_eq!(status, Status::Unauthorized);
    let response = app
        .client
        .get("/prometheus/api/v1/labels")
        .header(Header::new("Authorization", format!("Bearer {token}")))
        .dispatch();
    assert_eq!(response.status(), Status::Ok);
}

const PROMTOOL: Tool = Tool {
    name: "promtool",
    variable: None,
    commands: &["promtool"],
    install: "`apt-get install prometheus`",
};

fn run_promtool(promtool: &PathBuf, args: &[&str]) -> String {
    let output = Command::new(promtool).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "promtool {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn promtool_reads_the_daemon() {
    let Some(promtool) = required_tool(&PROMTOOL) else {
        return;
    };
    let daemon = Daemon::start();
    let base = Timestamp::now().floor(MINUTE_MS).millis() / 1000 - 180;
    for (server, offset, cpu) in [
        ("web-5", 5, 5),
        ("web-5", 20, 20),
        ("web-5", 65, 65),
        ("db-1", 30, 7),
    ] {
        let body = format!(r#"{{"cpu": {cpu}, "ram": 50, "time": {}}}"#, base + offset);
        let (status, answer) = daemon.request(
            "POST",
            &format!("/api/v1/servers/{server}/samples"),
            Some(&body),
        );
        assert_eq!(status, 204, "{answer}");
    }
    let url = format!("{}/prometheus", daemon.url());

    let output = run_promtool(
        &promtool,
        &[
            "query",
            "instant",
            &url,
            "avg_over_time(sperform_cpu_percent[1m])",
            &format!("--time={}", base + 60),
        ],
    );
    assert_eq!(
        output,
        format!(
            "{{server=\"db-1\"}} => 7 @[{t}]\n{{server=\"web-5\"}} => 12.5 @[{t}]\n",
            t = base + 60
        )
    );

    let output = run_promtool(
        &promtool,
        &[
            "query",
            "range",
            &url,
            "max_over_time(sperform_cpu_percent{server=\"web-5\"}[1m])",
            &format!("--start={}", base + 60),
            &format!("--end={}", base + 180),
            "--step=1m",
        ],
    );
    assert_eq!(
        output,
        format!(
            "{{server=\"web-5\"}} =>\n20 @[{}]\n65 @[{}]\n",
            base + 60,
            base + 120
        )
    );

    let output = run_promtool(
        &promtool,
        &[
            "query",
            "instant",
            &url,
            "topk(1, sperform_cpu_percent)",
            &format!("--time={}", base + 70),
        ],
    );
    assert_eq!(
        output,
        format!(
            "sperform_cpu_percent{{server=\"web-5\"}} => 65 @[{}]\n",
            base + 70
        )
    );
}
