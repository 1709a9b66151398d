//! The real binary under the signals a service manager (or a crash) sends:
//! every sample answered `204` is in the database after `SIGKILL` and a
//! restart, with either `synchronous` setting; `SIGTERM` and `SIGINT` finish
//! the requests in flight, commit, empty the WAL and exit 0; readiness and
//! stopping reach `NOTIFY_SOCKET`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sperform::model::{MINUTE_MS, Timestamp};

use crate::daemon::{Client, Daemon, read_response};
use crate::storage::assert_rollups_match_samples;

/// Concurrent clients posting one sample per request.
const SINGLE_WORKERS: usize = 3;
/// Samples per request of the one client that posts batches.
const BATCH_LEN: usize = 25;
/// Requests a client sends at most; the signal comes well before.
const MAX_REQUESTS: usize = 3_000;
/// Acknowledged samples to wait for before the signal.
const ACKED_BEFORE_SIGNAL: usize = 300;
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Rocket's default `shutdown.grace` + `shutdown.mercy` is 5 s; the stop
/// itself takes well under a second here.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// (time in Unix ms, cpu, ram) of one sample.
type Row = (i64, f64, f64);

/// What one client sent to one server of its own.
struct Ledger {
    server: String,
    /// Samples answered `204`.
    acked: Vec<Row>,
    /// Samples of the last request, which got no `204` (the daemon went
    /// away or was stopping): each may or may not be stored.
    unconfirmed: Vec<Row>,
    /// Whether the client ran out of requests rather than into the signal.
    ran_to_the_end: bool,
}

/// Clients that post until their first failure.
struct Traffic {
    acked: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<Ledger>>,
}

impl Traffic {
    fn start(client: Client) -> Traffic {
        let acked = Arc::new(AtomicUsize::new(0));
        // Times in ended minutes, so that commits also write rollups.
        let base = Timestamp::now().floor(MINUTE_MS).millis() - 20 * MINUTE_MS;
        let mut workers = Vec::new();
        for worker in 0..=SINGLE_WORKERS {
            let acked = Arc::clone(&acked);
            let batch_len = if worker == SINGLE_WORKERS {
                BATCH_LEN
            } else {
                1
            };
            workers.push(std::thread::spawn(move || {
                send_until_failure(client, worker, batch_len, base, &acked)
            }));
        }
        Traffic { acked, workers }
    }

    /// Waits until `count` samples were acknowledged.
    fn wait_for_acks(&self, count: usize) {
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        while self.acked.load(Ordering::Acquire) < count {
            assert!(Instant::now() < deadline, "too few samples acknowledged");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The clients' ledgers, once each has stopped; at least one must have
    /// been cut off by the signal.
    fn finish(self) -> Vec<Ledger> {
        let ledgers: Vec<Ledger> = self
            .workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect();
        assert!(
            ledgers.iter().any(|ledger| !ledger.ran_to_the_end),
            "the signal came after the traffic"
        );
        ledgers
    }
}

fn send_until_failure(
    client: Client,
    worker: usize,
    batch_len: usize,
    base_ms: i64,
    acked_total: &AtomicUsize,
) -> Ledger {
    let server = format!("lc-{worker}");
    let mut ledger = Ledger {
        server: server.clone(),
        acked: Vec::new(),
        unconfirmed: Vec::new(),
        ran_to_the_end: true,
    };
    let mut index = 0;
    for _ in 0..MAX_REQUESTS {
        let rows: Vec<Row> = (0..batch_len)
            .map(|_| {
                index += 1;
                row(worker, index, base_ms)
            })
            .collect();
        let (path, body) = if batch_len == 1 {
            let (time, cpu, ram) = rows[0];
            (
                format!("/api/v1/servers/{server}/samples"),
                json!({"cpu": cpu, "ram": ram, "time": rfc3339(time)}),
            )
        } else {
            let entries: Vec<Value> = rows
                .iter()
                .map(|(time, cpu, ram)| {
                    json!({"server": server, "cpu": cpu, "ram": ram, "time": rfc3339(*time)})
                })
                .collect();
            ("/api/v1/samples".to_owned(), Value::from(entries))
        };
        match client.try_request("POST", &path, &[], Some(&body.to_string())) {
            Ok((204, _)) => {
                acked_total.fetch_add(rows.len(), Ordering::AcqRel);
                ledger.acked.extend(rows);
            }
            _ => {
                ledger.unconfirmed = rows;
                ledger.ran_to_the_end = false;
                break;
            }
        }
    }
    ledger
}

/// Distinct times per server; values that tell samples apart.
fn row(worker: usize, index: usize, base_ms: i64) -> Row {
    let time = base_ms + index as i64 * 37;
    let cpu = ((index * 7 + worker) % 1001) as f64 / 10.0;
    let ram = (index % 100) as f64 + 0.25;
    (time, cpu, ram)
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_millis(ms).unwrap().to_rfc3339()
}

/// Every acknowledged sample is stored with its values, nothing stored was
/// never sent, and SQLite finds the file sound.
fn assert_acknowledged_samples_stored(db_path: &Path, ledgers: &[Ledger]) {
    let conn = rusqlite::Connection::open(db_path).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut acked_total = 0;
    for ledger in ledgers {
        let mut statement = conn
            .prepare(
                "SELECT time, cpu, ram FROM samples JOIN servers ON servers.id = server_id
                 WHERE name = ?1",
            )
            .unwrap();
        let stored: HashMap<i64, (f64, f64)> = statement
            .query_map([&ledger.server], |row| {
                Ok((row.get(0)?, (row.get(1)?, row.get(2)?)))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (time, cpu, ram) in &ledger.acked {
            assert_eq!(
                stored.get(time),
                Some(&(*cpu, *ram)),
                "{}: acknowledged sample at {time} lost",
                ledger.server
            );
        }
        let sent: HashMap<i64, (f64, f64)> = ledger
            .acked
            .iter()
            .chain(&ledger.unconfirmed)
            .map(|(time, cpu, ram)| (*time, (*cpu, *ram)))
            .collect();
        for (time, values) in &stored {
            assert_eq!(
                sent.get(time),
                Some(values),
                "{}: never sent",
                ledger.server
            );
        }
        // A request is stored entirely or not at all.
        let extra = stored.len() - ledger.acked.len();
        assert!(
            extra == 0 || extra == ledger.unconfirmed.len(),
            "{}: {extra} of an unconfirmed request's {} samples stored",
            ledger.server,
            ledger.unconfirmed.len()
        );
        acked_total += ledger.acked.len();
    }
    assert!(acked_total >= ACKED_BEFORE_SIGNAL);
}

/// The API's sample counts (rollups plus recent rows) equal the rows.
fn assert_listed_counts_match(daemon: &Daemon, ledgers: &[Ledger]) {
    let (status, body) = daemon.request("GET", "/api/v1/servers", None);
    assert_eq!(status, 200, "{body}");
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    let conn = rusqlite::Connection::open(daemon.db_path()).unwrap();
    for ledger in ledgers {
        let rows: i64 = conn
            .query_row(
                "SELECT count(*) FROM samples JOIN servers ON servers.id = server_id
                 WHERE name = ?1",
                [&ledger.server],
                |row| row.get(0),
            )
            .unwrap();
        let server = listed
            .iter()
            .find(|server| server["name"] == ledger.server.as_str())
            .unwrap();
        assert_eq!(server["samples"], rows, "{}", ledger.server);
    }
}

fn wal_len(db_path: &Path) -> u64 {
    let wal = sperform::store::wal_path(db_path);
    std::fs::metadata(wal).map_or(0, |metadata| metadata.len())
}

/// Kills the daemon in the middle of concurrent ingest and starts it again.
fn sigkill_mid_stream_loses_nothing_acknowledged(env: &[(&str, &str)]) {
    let mut daemon = Daemon::start_with(env);
    let traffic = Traffic::start(daemon.client());
    traffic.wait_for_acks(ACKED_BEFORE_SIGNAL);
    daemon.kill();
    let ledgers = traffic.finish();

    daemon.restart();
    assert_acknowledged_samples_stored(&daemon.db_path(), &ledgers);
    assert_listed_counts_match(&daemon, &ledgers);
    assert_rollups_match_samples(&daemon.db_path());
    daemon.signal("TERM");
    assert!(daemon.wait_for_exit(EXIT_TIMEOUT).success());
}

#[test]
fn acknowledged_samples_survive_sigkill() {
    sigkill_mid_stream_loses_nothing_acknowledged(&[]);
}

#[test]
fn acknowledged_samples_survive_sigkill_with_synchronous_full() {
    sigkill_mid_stream_loses_nothing_acknowledged(&[("ROCKET_SYNCHRONOUS", "full")]);
}

#[test]
fn sigterm_commits_what_was_acknowledged_empties_the_wal_and_exits_zero() {
    // Long periods, to show that a stop nothing holds up does not wait them out.
    let mut daemon = Daemon::start_with(&[("ROCKET_SHUTDOWN", "{grace=10,mercy=10}")]);
    let traffic = Traffic::start(daemon.client());
    traffic.wait_for_acks(ACKED_BEFORE_SIGNAL);
    let signalled = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_for_exit(EXIT_TIMEOUT);
    let stopping = signalled.elapsed();
    let ledgers = traffic.finish();

    assert!(status.success(), "{status}\n{}", daemon.log());
    // The log says which wait a slow stop spent its time in: the drain's
    // (requests still unanswered) or Rocket's own grace for connections.
    assert!(
        stopping < Duration::from_secs(8),
        "{stopping:?}\n{}",
        daemon.log()
    );
    assert!(daemon.log().contains("database closed"), "{}", daemon.log());
    assert_eq!(wal_len(&daemon.db_path()), 0);
    assert_acknowledged_samples_stored(&daemon.db_path(), &ledgers);
}

#[test]
fn sigint_stops_the_daemon_cleanly_too() {
    let mut daemon = Daemon::start();
    let (status, body) = daemon.request(
        "POST",
        "/api/v1/servers/web-1/samples",
        Some(r#"{"cpu": 12.5, "ram": 40}"#),
    );
    assert_eq!(status, 204, "{body}");
    daemon.signal("INT");
    assert!(
        daemon.wait_for_exit(EXIT_TIMEOUT).success(),
        "{}",
        daemon.log()
    );
    assert_eq!(wal_len(&daemon.db_path()), 0);
    assert_eq!(
        crate::support::count(&daemon.db_path(), "SELECT count(*) FROM samples"),
        1
    );
}

/// Start-up logs each migration it applies in one line (and only sperform
/// logs it), and a restart on the same database applies none.
#[test]
fn each_migration_is_logged_once_and_only_on_the_first_start() {
    let mut daemon = Daemon::start();
    let log = daemon.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.to_lowercase().contains("migrat"))
        .collect();
    let db = daemon.db_path();
    let expected: Vec<String> = [
        "0001_initial",
        "0002_rollups",
        "0003_rollup_seal",
        "0004_rollup_extremes",
        "0005_server_seal",
        "0006_history",
    ]
    .iter()
    .map(|name| format!("applied migration {name} to {}", db.display()))
    .collect();
    assert_eq!(lines.len(), expected.len(), "{log}");
    for (line, expected) in lines.iter().zip(&expected) {
        assert!(line.ends_with(expected.as_str()), "{line:?} in\n{log}");
    }
    daemon.signal("TERM");
    assert!(
        daemon.wait_for_exit(EXIT_TIMEOUT).success(),
        "{}",
        daemon.log()
    );
    daemon.restart();
    let log = daemon.log();
    assert!(!log.to_lowercase().contains("migrat"), "{log}");
    assert!(log.contains("(schema version 6)"), "{log}");
}

#[test]
fn a_request_whose_body_is_still_arriving_at_sigterm_is_finished() {
    let mut daemon = Daemon::start();
    let body = r#"{"cpu": 33.5, "ram": 44.25}"#;
    // Rocket waits for the first 14 bytes of a body before it routes.
    let (head, tail) = body.split_at(20);
    let mut stream = daemon.client().connect();
    write!(
        stream,
        "POST /api/v1/servers/slow-1/samples HTTP/1.1\r\nHost: sperform\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    // The handler is waiting for the rest of the body.
    daemon.wait_for_log(
        "POST /api/v1/servers/slow-1/samples",
        Duration::from_secs(10),
    );
    daemon.signal("TERM");
    daemon.wait_for_log("Received SIGTERM", Duration::from_secs(10));
    stream.write_all(tail.as_bytes()).unwrap();
    let (status, answer) = read_response(&mut stream).unwrap();

    assert_eq!(status, 204, "{answer}");
    assert!(
        daemon.wait_for_exit(EXIT_TIMEOUT).success(),
        "{}",
        daemon.log()
    );
    let conn = rusqlite::Connection::open(daemon.db_path()).unwrap();
    let stored: (f64, f64) = conn
        .query_row("SELECT cpu, ram FROM samples", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!(stored, (33.5, 44.25));
}

#[test]
fn a_stalled_request_delays_the_stop_only_for_the_grace_period() {
    let mut daemon = Daemon::start_with(&[("ROCKET_SHUTDOWN", "{grace=1,mercy=1}")]);
    let mut stream = daemon.client().connect();
    write!(
        stream,
        "POST /api/v1/servers/stalled-1/samples HTTP/1.1\r\nHost: sperform\r\n\
         Content-Length: 100\r\n\r\n{{\"cpu\": 1, \"ram\": "
    )
    .unwrap();
    daemon.wait_for_log(
        "POST /api/v1/servers/stalled-1/samples",
        Duration::from_secs(10),
    );
    let signalled = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_for_exit(EXIT_TIMEOUT);
    let stopping = signalled.elapsed();

    assert!(status.success(), "{status}\n{}", daemon.log());
    // At the end of the grace period Rocket cuts the request off; the stop
    // then takes what is left of the mercy period at most.
    assert!(
        stopping >= Duration::from_millis(900) && stopping < Duration::from_secs(6),
        "{stopping:?}"
    );
    assert_eq!(wal_len(&daemon.db_path()), 0);
    assert_eq!(
        crate::support::count(&daemon.db_path(), "SELECT count(*) FROM samples"),
        0
    );
    drop(stream);
}

#[test]
fn readiness_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut daemon = Daemon::start_with(&[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut buffer = [0; 512];

    let length = socket.recv(&mut buffer).unwrap();
    let ready = String::from_utf8_lossy(&buffer[..length]).into_owned();
    let port = daemon.url().rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=listening on 127.0.0.1:{port}\n")
    );

    daemon.signal("TERM");
    let length = socket.recv(&mut buffer).unwrap();
    let stopping = String::from_utf8_lossy(&buffer[..length]).into_owned();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    assert!(daemon.wait_for_exit(EXIT_TIMEOUT).success());
}
