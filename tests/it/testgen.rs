//! End to end: the real `sperform` binary, fed and checked by the real
//! `testgen` binary, in each mode; and a daemon holding one sample testgen
//! did not send, which testgen must catch.

use std::net::TcpListener;
use std::process::{Command, Output};

use serde_json::Value;
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};

use crate::daemon::Daemon;

fn testgen(daemon_url: &str, args: &[&str]) -> Output {
    Command::new(crate::bins::testgen())
        .arg("--url")
        .arg(daemon_url)
        .args(args)
        .output()
        .unwrap()
}

/// Stdout and stderr, for assertion messages.
fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn testgen_passes_with_one_sample_per_request() {
    let daemon = Daemon::start();
    let output = testgen(&daemon.url(), &["3", "4", "--samples", "30"]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().last(), Some("PASSED"), "{stdout}");
    assert!(
        stdout.contains("sent         360 samples in 360 requests"),
        "{stdout}"
    );
    assert!(stdout.contains("http errors  none"), "{stdout}");
    assert!(
        stdout.contains("verified     12 servers, 1008 buckets, 12 listed: no differences"),
        "{stdout}"
    );
    // First the first server's load report, as JSON.
    let end = stdout.find("\n}\n").unwrap() + 2;
    let report: Value = serde_json::from_str(&stdout[..end]).unwrap();
    assert!(report["server"].as_str().unwrap().ends_with("-w0-s0"));
    assert_eq!(report["by_minute"].as_array().unwrap().len(), 60);
    assert_eq!(report["by_hour"].as_array().unwrap().len(), 24);
    let hourly: u64 = report["by_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["samples"].as_u64().unwrap())
        .sum();
    assert!(hourly > 24, "{report}");
}

#[test]
fn testgen_passes_in_batch_mode() {
    let daemon = Daemon::start();
    let output = testgen(
        &daemon.url(),
        &["4", "5", "--samples", "40", "--batch", "64", "--json"],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["result"], "PASSED", "{summary}");
    assert_eq!(summary["samples_sent"], 800);
    // Each worker sends its 200 samples in batches of 64: 4 requests.
    assert_eq!(summary["requests"], 16);
    assert_eq!(summary["http_errors"], serde_json::json!({}));
    assert_eq!(summary["verification"]["servers"], 20);
    assert_eq!(summary["verification"]["listed"], 20);
    assert_eq!(summary["verification"]["differences"], 0);
}

#[test]
fn testgen_passes_in_live_mode() {
    let daemon = Daemon::start();
    let output = testgen(
        &daemon.url(),
        &[
            "2",
            "3",
            "--live",
            "--interval",
            "200ms",
            "--duration",
            "1s",
            "--batch",
            "2",
            "--quiet",
        ],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().last(), Some("PASSED"), "{stdout}");
    assert!(
        stdout.contains("verified     6 servers, 504 buckets, 6 listed: no differences"),
        "{stdout}"
    );
}

#[test]
fn testgen_fails_when_the_daemon_holds_a_sample_it_did_not_send() {
    let daemon = Daemon::start();
    // Whole seconds, so that the time prints the same on both sides.
    let at = Timestamp::now().floor(1000);
    let extra = Timestamp::from_millis(at.millis() - 90_000).unwrap();
    let (status, body) = daemon.request(
        "POST",
        "/api/v1/servers/e2e-bad-w1-s2/samples",
        Some(&format!(
            r#"{{"cpu": 99.5, "ram": 1.5, "time": "{}"}}"#,
            extra.to_rfc3339()
        )),
    );
    assert_eq!(status, 204, "{body}");

    let output = testgen(
        &daemon.url(),
        &[
            "2",
            "3",
            "--samples",
            "20",
            "--prefix",
            "e2e-bad",
            "--seed",
            "7",
            "--at",
            &at.to_rfc3339(),
        ],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().last(), Some("FAILED"), "{stdout}");
    assert!(stdout.contains("http errors  none"), "{stdout}");
    let minute = extra.floor(MINUTE_MS).to_rfc3339_seconds();
    let hour = extra.floor(HOUR_MS).to_rfc3339_seconds();
    for expected in [
        format!("  e2e-bad-w1-s2 by_minute {minute} samples: expected "),
        format!("  e2e-bad-w1-s2 by_hour {hour} samples: expected "),
        "  e2e-bad-w1-s2 servers samples: expected 20, got 21".to_owned(),
    ] {
        assert!(
            stdout.contains(&expected),
            "{expected:?} missing:\n{stdout}"
        );
    }
    // Only that server differs.
    let differences: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("  e2e-bad-"))
        .collect();
    assert!(!differences.is_empty());
    assert!(
        differences
            .iter()
            .all(|line| line.starts_with("  e2e-bad-w1-s2 ")),
        "{stdout}"
    );
}

#[test]
fn testgen_says_so_when_no_daemon_listens() {
    // A port that was free a moment ago; nothing listens on it now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let output = testgen(&url, &["--quiet"]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("the daemon is not reachable at {url}")),
        "{stderr}"
    );
}
