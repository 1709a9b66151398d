//! The real `sperform-agent` against the real daemon: every sample the agent
//! takes is stored exactly once, whether the daemon stops, crashes or comes
//! back on another port, whether the agent is killed or stopped, and whether
//! an answer is lost after the daemon committed. Between the two sits a
//! small TCP proxy: it gives the agent one address while the daemon is
//! restarted on new ports, and it can lose, hold or cut the batch requests.
//!
//! What the agent took is read from its debug log (a sample is logged only
//! once it is synced to the spool), what the daemon stored from its
//! database.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};
use tempfile::TempDir;

use crate::daemon::Daemon;

const SERVER: &str = "agent-test-1";
const INTERVAL: &str = "200ms";
/// Consecutive samples of one agent run may lie at most this far apart.
const MAX_STEP_MS: i64 = 1000;
const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// Polls `done` until it holds; panics with `what()` after `limit`.
fn wait_until(limit: Duration, what: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within {limit:?}: {}",
            what()
        );
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------- the agent

/// One run of the agent binary; killed when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

/// The agent binary with no `SPERFORM_*` setting from the environment.
fn agent_command() -> Command {
    let mut command = Command::new(crate::bins::sperform_agent());
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("SPERFORM_") || key_text == "JOURNAL_STREAM" {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
    command
}

impl Agent {
    /// Starts the agent on `url` with the spool in `work/spool` and its log
    /// in `work/<log>`, and waits until it runs (and so handles signals).
    fn start(url: &str, work: &Path, log: &str, extra: &[&str]) -> Agent {
        let log = work.join(log);
        let output = File::create(&log).unwrap();
        let child = agent_command()
            .args([
                "--url",
                url,
                "--server-name",
                SERVER,
                "--interval",
                INTERVAL,
            ])
            .args(["--backoff-max", "300ms", "--log-level", "debug"])
            .arg("--spool-dir")
            .arg(work.join("spool"))
            .args(extra)
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap();
        let agent = Agent { child, log };
        agent.wait_for_log("reporting agent-test-1 to");
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, text: &str) {
        wait_until(
            WAIT,
            || format!("{text:?} in\n{}", self.log()),
            || self.log().contains(text),
        );
    }

    /// The samples this run took and spooled: time (ms) -> (cpu, ram).
    fn taken(&self) -> BTreeMap<i64, (f64, f64)> {
        taken_in(&self.log())
    }

    fn wait_for_samples(&self, count: usize) {
        wait_until(
            WAIT,
            || format!("{count} samples taken:\n{}", self.log()),
            || self.taken().len() >= count,
        );
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The samples a log shows as taken: `sample taken at <time> (cpu <c> %,
/// ram <r> %)`.
fn taken_in(log: &str) -> BTreeMap<i64, (f64, f64)> {
    let mut taken = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.split_once("sample taken at ").map(|(_, rest)| rest) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let time = Timestamp::parse_rfc3339(words.next().unwrap())
            .unwrap()
            .millis();
        let numbers: Vec<f64> = words
            .filter_map(|word| word.trim_matches(',').parse().ok())
            .collect();
        assert_eq!(numbers.len(), 2, "{line}");
        let previous = taken.insert(time, (numbers[0], numbers[1]));
        assert!(previous.is_none(), "two samples at {time}: {line}");
    }
    taken
}

/// Every sample of `SERVER` in the database: (time, cpu, ram), by time.
fn stored(db: &Path) -> Vec<(i64, f64, f64)> {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut statement) = conn.prepare(
        "SELECT time, cpu, ram FROM samples JOIN servers ON servers.id = server_id
         WHERE name = ?1 ORDER BY time",
    ) else {
        return Vec::new();
    };
    statement
        .query_map([SERVER], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .and_then(|rows| rows.collect())
        .unwrap_or_default()
}

fn all_stored(db: &Path, taken: &BTreeMap<i64, (f64, f64)>) -> bool {
    let stored: HashSet<i64> = stored(db).iter().map(|(time, _, _)| *time).collect();
    taken.keys().all(|time| stored.contains(time))
}

/// Every sample taken is stored once with its values, and nothing else is,
/// except at most `unlogged` samples an agent killed with `SIGKILL` spooled
/// but had not logged yet.
fn assert_stored_exactly_once(db: &Path, taken: &BTreeMap<i64, (f64, f64)>, unlogged: usize) {
    let stored = stored(db);
    let mut seen = HashSet::new();
    for (time, _, _) in &stored {
        assert!(
            seen.insert(*time),
            "sample at {time} stored twice: {stored:?}"
        );
    }
    for (time, (cpu, ram)) in taken {
        assert!(
            stored.contains(&(*time, *cpu, *ram)),
            "sample at {time} ({cpu}, {ram}) not stored: {stored:?}"
        );
    }
    let extra: Vec<_> = stored
        .iter()
        .filter(|(time, _, _)| !taken.contains_key(time))
        .collect();
    assert!(extra.len() <= unlogged, "stored but never taken: {extra:?}");
}

/// Within one run the samples follow each other at the interval: none is
/// missing.
fn assert_no_gap(run: &BTreeMap<i64, (f64, f64)>) {
    let times: Vec<i64> = run.keys().copied().collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] <= MAX_STEP_MS,
            "gap of {} ms after {}",
            pair[1] - pair[0],
            pair[0]
        );
    }
}

fn spooled_files(work: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(work.join("spool"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sent") || name.ends_with(".unsent"))
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------- the proxy

/// What the proxy does with a batch `POST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostRule {
    Forward,
    /// Forwards the request; when the daemon answers, closes both
    /// connections: the batch is committed, the agent never hears it.
    LoseAnswer,
    /// Forwards the request and keeps the answer (and the connection).
    HoldAnswer,
    /// Closes the connection instead of forwarding the request.
    Cut,
}

struct ProxyState {
    upstream: Mutex<SocketAddr>,
    /// The rule for the next `count` POSTs, then `Forward`.
    rule: Mutex<(PostRule, usize)>,
    /// Answers lost or held so far.
    intercepted: AtomicUsize,
    stop: AtomicBool,
}

/// A TCP proxy on a port of its own, to the daemon's current address.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream: Mutex::new(upstream),
            rule: Mutex::new((PostRule::Forward, 0)),
            intercepted: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::spawn(move || accept_loop(&listener, &accept_state));
        Proxy {
            addr,
            state,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_upstream(&self, upstream: SocketAddr) {
        *self.state.upstream.lock().unwrap() = upstream;
    }

    fn apply_to_next_posts(&self, rule: PostRule, count: usize) {
        *self.state.rule.lock().unwrap() = (rule, count);
    }

    fn intercepted(&self) -> usize {
        self.state.intercepted.load(Ordering::SeqCst)
    }

    fn rule_used_up(&self) -> bool {
        self.state.rule.lock().unwrap().1 == 0
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<ProxyState>) {
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let upstream = *state.upstream.lock().unwrap();
                // A daemon that is down: the agent sees the connection close.
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))
                else {
                    continue;
                };
                let answer_rule = Arc::new(Mutex::new(PostRule::Forward));
                for stream in [&client, &server] {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                }
                let (client_in, server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (requests_state, requests_rule) = (Arc::clone(state), Arc::clone(&answer_rule));
                std::thread::spawn(move || {
                    pump_requests(client_in, server_out, &requests_state, &requests_rule);
                });
                let answers_state = Arc::clone(state);
                std::thread::spawn(move || {
                    pump_answers(server, client, &answers_state, &answer_rule)
                });
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Reads `stream` until data, end of stream (`None`) or the proxy's stop.
fn read_some(stream: &mut TcpStream, buffer: &mut [u8], state: &ProxyState) -> Option<usize> {
    loop {
        if state.stop.load(Ordering::SeqCst) {
            return None;
        }
        match stream.read(buffer) {
            Ok(0) => return None,
            Ok(read) => return Some(read),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

fn pump_requests(
    mut client: TcpStream,
    mut server: TcpStream,
    state: &ProxyState,
    answer_rule: &Mutex<PostRule>,
) {
    let mut buffer = vec![0; 64 * 1024];
    while let Some(read) = read_some(&mut client, &mut buffer, state) {
        let chunk = &buffer[..read];
        // A chunk that starts a request decides what happens to its answer.
        if chunk.starts_with(b"POST ") || chunk.starts_with(b"GET ") {
            let rule = if chunk.starts_with(b"POST ") {
                let mut next = state.rule.lock().unwrap();
                if next.1 > 0 {
                    next.1 -= 1;
                    next.0
                } else {
                    PostRule::Forward
                }
            } else {
                PostRule::Forward
            };
            *answer_rule.lock().unwrap() = rule;
            if rule == PostRule::Cut {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
        }
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

fn pump_answers(
    mut server: TcpStream,
    mut client: TcpStream,
    state: &ProxyState,
    answer_rule: &Mutex<PostRule>,
) {
    let mut buffer = vec![0; 64 * 1024];
    let mut holding = false;
    while let Some(read) = read_some(&mut server, &mut buffer, state) {
        match *answer_rule.lock().unwrap() {
            PostRule::Forward | PostRule::Cut => {
                if client.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
            PostRule::LoseAnswer => {
                state.intercepted.fetch_add(1, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            PostRule::HoldAnswer => {
                if !holding {
                    holding = true;
                    state.intercepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
    if holding {
        // Keep the agent waiting until the proxy stops (or the agent goes).
        let mut sink = [0; 1024];
        while read_some(&mut client, &mut sink, state).is_some() {}
    }
    let _ = client.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------- the tests

#[test]
fn every_sample_is_stored_once_across_daemon_outages_and_an_agent_killed_while_spooling() {
    let mut daemon = Daemon::start();
    let proxy = Proxy::start(daemon.addr());
    let work = TempDir::new().unwrap();
    let db = daemon.db_path();
    let mut first = Agent::start(&proxy.url(), work.path(), "agent-1.log", &[]);
    wait_until(WAIT, || first.log(), || stored(&db).len() >= 5);

    // The daemon crashes; the agent spools, then delivers the backlog once
    // the daemon is back (on another port, behind the same address).
    daemon.kill();
    let before = first.taken().len();
    first.wait_for_samples(before + 5);
    first.wait_for_log("cannot deliver to");
    assert!(!spooled_files(work.path()).is_empty());
    daemon.restart();
    proxy.set_upstream(daemon.addr());
    wait_until(WAIT, || first.log(), || all_stored(&db, &first.taken()));
    first.wait_for_log("delivering again after");

    // The daemon stops cleanly; the agent, spooling, is killed and started
    // again before the daemon comes back.
    daemon.signal("TERM");
    assert!(daemon.wait_for_exit(WAIT).success());
    let before = first.taken().len();
    first.wait_for_samples(before + 3);
    first.kill();
    let taken_by_first = first.taken();
    assert_no_gap(&taken_by_first);
    assert!(!spooled_files(work.path()).is_empty());

    let mut second = Agent::start(&proxy.url(), work.path(), "agent-2.log", &[]);
    second.wait_for_log("samples left by an earlier run are sent first");
    second.wait_for_samples(3);
    daemon.restart();
    proxy.set_upstream(daemon.addr());
    let mut taken = taken_by_first.clone();
    wait_until(
        WAIT,
        || second.log(),
        || {
            taken = taken_by_first.clone();
            taken.extend(second.taken());
            all_stored(&db, &taken)
        },
    );

    second.signal("TERM");
    let status = second.wait_for_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}\n{}", second.log());
    let taken_by_second = second.taken();
    assert_no_gap(&taken_by_second);
    taken.extend(taken_by_second);
    // The first run was killed between spooling a sample and logging it at
    // most once.
    assert_stored_exactly_once(&db, &taken, 1);
    assert!(second.log().contains("stopped: "), "{}", second.log());
}

#[test]
fn a_batch_whose_answer_is_lost_is_stored_once_with_tokens() {
    const INGEST: &str = "ingest-0123456789abcdef";
    const READ: &str = "read-0123456789abcdef01";
    let daemon =
        Daemon::start_with(&[("ROCKET_INGEST_TOKEN", INGEST), ("ROCKET_READ_TOKEN", READ)]);
    let proxy = Proxy::start(daemon.addr());
    let work = TempDir::new().unwrap();
    let db = daemon.db_path();
    std::fs::write(work.path().join("ingest-token"), format!("{INGEST}\n")).unwrap();
    std::fs::write(work.path().join("read-token"), READ).unwrap();
    let token_file = work.path().join("ingest-token");
    let read_token_file = work.path().join("read-token");
    let mut agent = Agent::start(
        &proxy.url(),
        work.path(),
        "agent.log",
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "--read-token-file",
            read_token_file.to_str().unwrap(),
        ],
    );
    wait_until(WAIT, || agent.log(), || stored(&db).len() >= 2);

    // Committed, answer lost: the agent asks, finds the batch, moves on.
    proxy.apply_to_next_posts(PostRule::LoseAnswer, 2);
    wait_until(WAIT, || agent.log(), || proxy.intercepted() == 2);
    agent.wait_for_log("whose answer was lost is stored; it is not sent again");
    // Never reached the daemon: the agent asks, finds nothing, sends again.
    proxy.apply_to_next_posts(PostRule::Cut, 2);
    wait_until(WAIT, || agent.log(), || proxy.rule_used_up());
    let before = agent.taken().len();
    agent.wait_for_samples(before + 2);
    wait_until(WAIT, || agent.log(), || all_stored(&db, &agent.taken()));

    agent.signal("TERM");
    assert!(agent.wait_for_exit(Duration::from_secs(5)).success());
    assert_stored_exactly_once(&db, &agent.taken(), 0);
    assert_no_gap(&agent.taken());
    assert!(
        !agent.log().contains("may be stored twice"),
        "{}",
        agent.log()
    );
}

#[test]
fn without_the_read_token_a_batch_in_doubt_is_sent_again_with_a_warning() {
    const INGEST: &str = "ingest-0123456789abcdef";
    let daemon = Daemon::start_with(&[
        ("ROCKET_INGEST_TOKEN", INGEST),
        ("ROCKET_READ_TOKEN", "read-0123456789abcdef01"),
    ]);
    let proxy = Proxy::start(daemon.addr());
    let work = TempDir::new().unwrap();
    let db = daemon.db_path();
    let mut agent = Agent::start(&proxy.url(), work.path(), "agent.log", &["--token", INGEST]);
    wait_until(WAIT, || agent.log(), || stored(&db).len() >= 2);
    proxy.apply_to_next_posts(PostRule::LoseAnswer, 1);
    agent.wait_for_log("they may be stored twice");
    wait_until(WAIT, || agent.log(), || all_stored(&db, &agent.taken()));
    agent.signal("TERM");
    assert!(agent.wait_for_exit(Duration::from_secs(5)).success());

    // The honest cost: the batch whose answer was lost (one sample, unless
    // sending lagged behind sampling) is stored twice, and the summary says
    // how many samples that is.
    let log = agent.log();
    let maybe_twice: usize = log
        .split_once("since start ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count of samples maybe stored twice:\n{log}"));
    assert!(maybe_twice >= 1, "{log}");
    let taken = agent.taken();
    let stored = stored(&db);
    let mut times: Vec<i64> = stored.iter().map(|(time, _, _)| *time).collect();
    times.dedup();
    assert_eq!(times, taken.keys().copied().collect::<Vec<_>>());
    assert_eq!(stored.len(), taken.len() + maybe_twice, "{stored:?}");
}

#[test]
fn an_agent_killed_before_its_answer_came_asks_before_sending_again() {
    let daemon = Daemon::start();
    let proxy = Proxy::start(daemon.addr());
    let work = TempDir::new().unwrap();
    let db = daemon.db_path();
    let mut first = Agent::start(&proxy.url(), work.path(), "agent-1.log", &[]);
    wait_until(WAIT, || first.log(), || stored(&db).len() >= 2);
    // The daemon commits the next batch; its answer never reaches the
    // agent, which is killed while it waits.
    proxy.apply_to_next_posts(PostRule::HoldAnswer, 1);
    wait_until(WAIT, || first.log(), || proxy.intercepted() == 1);
    first.kill();
    assert!(
        spooled_files(work.path())
            .iter()
            .any(|name| name.ends_with(".sent")),
        "{:?}",
        spooled_files(work.path())
    );

    let mut second = Agent::start(&proxy.url(), work.path(), "agent-2.log", &[]);
    second.wait_for_log("whose answer was lost is stored; it is not sent again");
    second.wait_for_samples(2);
    let mut taken = first.taken();
    taken.extend(second.taken());
    wait_until(WAIT, || second.log(), || all_stored(&db, &taken));
    second.signal("TERM");
    assert!(second.wait_for_exit(Duration::from_secs(5)).success());
    taken.extend(second.taken());
    assert_stored_exactly_once(&db, &taken, 1);
}

#[test]
fn sigterm_without_a_daemon_exits_within_a_second_and_the_next_run_sends_the_spool() {
    let nothing_listens = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let work = TempDir::new().unwrap();
    let mut first = Agent::start(
        &format!("http://{nothing_listens}"),
        work.path(),
        "agent-1.log",
        &[],
    );
    first.wait_for_samples(4);
    first.wait_for_log("cannot deliver to");
    let stopping = Instant::now();
    first.signal("TERM");
    let status = first.wait_for_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}\n{}", first.log());
    assert!(
        stopping.elapsed() < Duration::from_millis(1800),
        "stopped in {:?}",
        stopping.elapsed()
    );
    let taken_by_first = first.taken();
    assert!(!spooled_files(work.path()).is_empty());
    assert!(
        first
            .log()
            .contains(&format!("{} wait in the spool", taken_by_first.len())),
        "{}",
        first.log()
    );

    let daemon = Daemon::start();
    let db = daemon.db_path();
    let mut second = Agent::start(&daemon.url(), work.path(), "agent-2.log", &[]);
    second.wait_for_log(&format!(
        "{} samples left by an earlier run are sent first",
        taken_by_first.len()
    ));
    wait_until(WAIT, || second.log(), || all_stored(&db, &taken_by_first));
    second.signal("TERM");
    assert!(second.wait_for_exit(Duration::from_secs(5)).success());
    let mut taken = taken_by_first;
    taken.extend(second.taken());
    assert_stored_exactly_once(&db, &taken, 0);
    assert!(
        spooled_files(work.path()).is_empty(),
        "{:?}",
        spooled_files(work.path())
    );
}

#[test]
fn samples_the_daemon_refuses_are_dropped_counted_and_do_not_block_the_rest() {
    let daemon = Daemon::start();
    let db = daemon.db_path();
    let work = TempDir::new().unwrap();
    // A spool left behind: one sample past the daemon's 7-day retention,
    // two it accepts, and one from a clock far ahead.
    let now = Timestamp::now().millis();
    let line = |millis: i64, cpu: f64| {
        let time = Timestamp::from_millis(millis).unwrap().to_rfc3339();
        format!("{{\"server\":\"{SERVER}\",\"cpu\":{cpu},\"ram\":50,\"time\":\"{time}\"}}\n")
    };
    let too_old = now - 8 * 24 * HOUR_MS;
    let kept = [now - 2 * MINUTE_MS, now - MINUTE_MS];
    let ahead = now + 10 * MINUTE_MS;
    std::fs::create_dir_all(work.path().join("spool")).unwrap();
    std::fs::write(
        work.path().join("spool/00000000000000000001.unsent"),
        [
            line(too_old, 1.0),
            line(kept[0], 2.0),
            line(kept[1], 3.0),
            line(ahead, 4.0),
        ]
        .concat(),
    )
    .unwrap();

    let mut agent = Agent::start(&daemon.url(), work.path(), "agent.log", &[]);
    agent.wait_for_log("the daemon refused 1 of 4 samples taken at");
    agent.wait_for_log("the daemon refused 1 of 3 samples taken at");
    agent.wait_for_samples(2);
    wait_until(WAIT, || agent.log(), || all_stored(&db, &agent.taken()));
    agent.signal("TERM");
    assert!(agent.wait_for_exit(Duration::from_secs(5)).success());
    assert!(
        agent.log().contains("2 refused by the daemon"),
        "{}",
        agent.log()
    );

    let mut expected = agent.taken();
    // Millisecond times round-trip through the spool's RFC 3339 exactly.
    expected.insert(kept[0], (2.0, 50.0));
    expected.insert(kept[1], (3.0, 50.0));
    assert_stored_exactly_once(&db, &expected, 0);
}

#[test]
fn a_spool_over_its_limit_drops_the_oldest_samples_and_says_how_many() {
    let work = TempDir::new().unwrap();
    let spool = work.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    // Ten segments of 100 samples, about 85 KB, against a limit of 64 KiB.
    let start = Timestamp::now().millis() - HOUR_MS;
    let mut sizes = Vec::new();
    for segment in 0..10 {
        let lines: String = (0..100)
            .map(|index| {
                let time = Timestamp::from_millis(start + (segment * 100 + index) * 1000)
                    .unwrap()
                    .to_rfc3339();
                format!("{{\"server\":\"{SERVER}\",\"cpu\":12.5,\"ram\":50,\"time\":\"{time}\"}}\n")
            })
            .collect();
        sizes.push(lines.len());
        std::fs::write(spool.join(format!("{:020}.unsent", segment + 1)), lines).unwrap();
    }
    let limit = 64 * 1024;
    let mut total: usize = sizes.iter().sum();
    let mut dropped_segments = 0;
    while total > limit {
        total -= sizes[dropped_segments];
        dropped_segments += 1;
    }

    let nothing_listens = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = agent_command()
        .args([
            "--url",
            &format!("http://{nothing_listens}"),
            "--server-name",
            SERVER,
        ])
        .args(["--interval", "10ms", "--spool-max", "64KiB", "--once"])
        .arg("--spool-dir")
        .arg(&spool)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    // --once could not deliver: exit 1, everything kept but the dropped.
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "the spool held more than --spool-max: dropped its {} oldest samples",
            dropped_segments * 100
        )),
        "{log}"
    );
    let left = spooled_files(work.path());
    assert_eq!(left.len(), 10 - dropped_segments + 1, "{left:?}");
    assert_eq!(left[0], format!("{:020}.sent", dropped_segments + 1));
    assert!(
        log.contains(&format!(
            "{} samples could not be delivered yet",
            (10 - dropped_segments) * 100 + 1
        )),
        "{log}"
    );
}

#[test]
fn once_takes_one_sample_delivers_it_and_exits_zero() {
    let daemon = Daemon::start();
    let work = TempDir::new().unwrap();
    let output = agent_command()
        .args([
            "--url",
            &daemon.url(),
            "--server-name",
            SERVER,
            "--interval",
            "50ms",
            "--once",
        ])
        .arg("--spool-dir")
        .arg(work.path().join("spool"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("delivered 1 sample; the spool is empty"),
        "{log}"
    );
    let (status, body) = daemon.request("GET", "/api/v1/servers", None);
    assert_eq!(status, 200);
    let servers: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(servers[0]["name"], SERVER, "{body}");
    assert_eq!(servers[0]["samples"], 1, "{body}");
}

fn run_agent(args: &[&str]) -> Output {
    agent_command().args(args).output().unwrap()
}

#[test]
fn bad_settings_are_refused_before_anything_runs() {
    let work = TempDir::new().unwrap();
    let spool = work.path().join("spool");
    let spool = spool.to_str().unwrap();
    for (args, message) in [
        (
            vec!["--server-name", "web 1"],
            "--server-name \"web 1\": server name may only contain",
        ),
        (
            vec!["--url", "https://monitor:8080"],
            "only plain http:// is supported",
        ),
        (
            vec!["--token", "a", "--token-file", "/x"],
            "cannot be used with",
        ),
        (
            vec!["--token-file", "/nonexistent/token"],
            "--token-file /nonexistent/token",
        ),
        (vec!["--spool-max", "1000"], "must be at least 64KiB"),
        (vec!["--interval", "1ms"], "must be from 10ms to 1h"),
    ] {
        let mut full = vec!["--spool-dir", spool];
        if !args.contains(&"--server-name") {
            full.extend(["--server-name", SERVER]);
        }
        full.extend(args);
        let output = run_agent(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{full:?}: {stderr}");
        assert!(stderr.contains(message), "{full:?}: {stderr}");
    }
    // Nothing was created.
    assert!(!Path::new(spool).exists());
}

#[test]
fn help_names_every_setting_with_its_environment_variable() {
    let output = run_agent(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, variable) in [
        ("--url", "SPERFORM_URL"),
        ("--server-name", "SPERFORM_SERVER_NAME"),
        ("--interval", "SPERFORM_INTERVAL"),
        ("--token", "SPERFORM_TOKEN"),
        ("--token-file", "SPERFORM_TOKEN_FILE"),
        ("--read-token-file", "SPERFORM_READ_TOKEN_FILE"),
        ("--spool-dir", "SPERFORM_SPOOL_DIR"),
        ("--spool-max", "SPERFORM_SPOOL_MAX"),
        ("--backoff-max", "SPERFORM_BACKOFF_MAX"),
    ] {
        assert!(
            help.contains(flag) && help.contains(&format!("env: {variable}")),
            "{flag}: {help}"
        );
    }
    // A token in the environment is never printed.
    let output = agent_command()
        .env("SPERFORM_TOKEN", "secret-0123456789abcdef")
        .arg("--help")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains("secret-0123456789abcdef"));
}

#[test]
fn the_unit_runs_the_agent_hardened_with_a_state_directory_for_its_spool() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/sperform-agent.service"
    ))
    .unwrap();
    for line in [
        "ExecStart=/usr/local/bin/sperform-agent",
        "DynamicUser=yes",
        "StateDirectory=sperform-agent",
        "Environment=SPERFORM_SPOOL_DIR=/var/lib/sperform-agent",
        "EnvironmentFile=-/etc/sperform-agent/env",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "KillSignal=SIGTERM",
        "RestartPreventExitStatus=2",
    ] {
        assert!(
            unit.lines().any(|unit_line| unit_line == line),
            "{line} missing"
        );
    }
}
