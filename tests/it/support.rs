//! Builds the daemon on a fresh temporary database and a clock the test
//! holds, and reads that database behind the daemon's back, to check what
//! really got stored. Also decides, once for every suite, what a test does
//! when an external tool it needs is missing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rocket::figment::Figment;
use rocket::http::{ContentType, Status};
use rocket::local::blocking::{Client, LocalResponse};
use serde_json::Value;
use sperform::clock::{Clock, ManualClock};
use sperform::model::{HOUR_MS, Timestamp};
use sperform::store::{RetentionReport, Store};
use tempfile::TempDir;

pub struct TestApp {
    pub client: Client,
    pub db_path: PathBuf,
    /// The daemon's clock: it stands still unless the test moves it.
    pub clock: ManualClock,
    // Kept so the directory outlives the client.
    _dir: TempDir,
}

/// The daemon's own configuration sources, pointed at `db_path`.
pub fn figment_for(db_path: &Path) -> Figment {
    sperform::config::figment()
        .merge(("database", db_path))
        .merge(("log_level", "off"))
}

impl TestApp {
    /// A daemon whose clock stands at the time the test started.
    pub fn new() -> TestApp {
        Self::with(|figment| figment)
    }

    /// A daemon whose clock stands at `now`.
    pub fn at_time(now: Timestamp) -> TestApp {
        Self::with_clock(ManualClock::new(now), |figment| figment)
    }

    /// A daemon whose configuration `adjust` may change, its clock standing
    /// at the time the test started.
    pub fn with(adjust: impl FnOnce(Figment) -> Figment) -> TestApp {
        Self::with_clock(ManualClock::new(Timestamp::now()), adjust)
    }

    /// A daemon on `clock`, whose configuration `adjust` may change.
    pub fn with_clock(clock: ManualClock, adjust: impl FnOnce(Figment) -> Figment) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("sperform.db");
        Self::reopen(dir, db_path, clock, adjust)
    }

    /// Stops the daemon's store (committing what is queued) and hands back
    /// its directory and database, to open again.
    pub fn close(self) -> (TempDir, PathBuf) {
        self.store().close();
        let TestApp {
            client,
            db_path,
            _dir,
            ..
        } = self;
        drop(client);
        (_dir, db_path)
    }

    /// A daemon on the database `db_path` in `dir` (new, or one another
    /// `TestApp` left), with `clock`.
    pub fn reopen(
        dir: TempDir,
        db_path: PathBuf,
        clock: ManualClock,
        adjust: impl FnOnce(Figment) -> Figment,
    ) -> TestApp {
        let figment = adjust(figment_for(&db_path));
        let rocket = sperform::build_with_clock(figment, Clock::from(clock.clone())).unwrap();
        TestApp {
            client: Client::untracked(rocket).unwrap(),
            db_path,
            clock,
            _dir: dir,
        }
    }

    pub fn store(&self) -> Store {
        self.client.rocket().state::<Store>().unwrap().clone()
    }

    /// Waits for a store call from this synchronous test.
    pub fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        rocket::tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(work)
    }

    /// A whole retention pass as of the daemon's clock.
    pub fn apply_retention(&self) -> RetentionReport {
        let store = self.store();
        self.block_on(store.apply_retention(self.clock.now()))
            .unwrap()
    }

    pub fn post(&self, uri: &str, body: impl AsRef<str>) -> (Status, Option<Value>) {
        let response = self
            .client
            .post(uri.to_owned())
            .header(ContentType::JSON)
            .body(body.as_ref())
            .dispatch();
        read(response)
    }

    pub fn post_sample(&self, server: &str, body: Value) -> (Status, Option<Value>) {
        self.post(
            &format!("/api/v1/servers/{server}/samples"),
            body.to_string(),
        )
    }

    pub fn get(&self, uri: &str) -> (Status, Option<Value>) {
        read(self.client.get(uri.to_owned()).dispatch())
    }

    pub fn delete(&self, uri: &str) -> (Status, Option<Value>) {
        read(self.client.delete(uri.to_owned()).dispatch())
    }

    /// The load report of `server` at `at`, which must answer 200.
    pub fn load(&self, server: &str, at: Timestamp) -> Value {
        let (status, body) = self.get(&format!(
            "/api/v1/servers/{server}/load?at={}",
            at.to_rfc3339()
        ));
        assert_eq!(status, Status::Ok, "{body:?}");
        body.unwrap()
    }

    /// Rows in the samples table, read with a connection of our own.
    pub fn stored_samples(&self) -> i64 {
        count(&self.db_path, "SELECT count(*) FROM samples")
    }

    pub fn stored_servers(&self) -> i64 {
        count(&self.db_path, "SELECT count(*) FROM servers")
    }

    /// The stored (time, cpu, ram) rows of one server, oldest first.
    pub fn stored_rows(&self, server: &str) -> Vec<(i64, f64, f64)> {
        let conn = rusqlite::Connection::open(&self.db_path).unwrap();
        let mut statement = conn
            .prepare(
                "SELECT time, cpu, ram FROM samples
                 JOIN servers ON servers.id = samples.server_id
                 WHERE servers.name = ?1 ORDER BY time, seq",
            )
            .unwrap();
        statement
            .query_map([server], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

/// A server's seal in SQL: its own `sealed_until` where later than the
/// floor every server is sealed to.
pub const SEAL: &str = "max(servers.sealed_until, (SELECT sealed_until FROM seal_floor))";

/// Every server's seal, by name.
pub fn seals(db_path: &Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(db_path).unwrap();
    let mut statement = conn
        .prepare(&format!("SELECT name, {SEAL} FROM servers ORDER BY name"))
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn count(db_path: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db_path).unwrap();
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

/// Status and JSON body (if any) of a response; every body we send back
/// must be JSON.
pub fn read(response: LocalResponse<'_>) -> (Status, Option<Value>) {
    let status = response.status();
    let content_type = response.content_type();
    let text = response.into_string().unwrap_or_default();
    if text.is_empty() {
        return (status, None);
    }
    assert_eq!(content_type, Some(ContentType::JSON), "body: {text}");
    (status, Some(serde_json::from_str(&text).unwrap()))
}

/// The `{"error": ...}` message of an error response.
pub fn error_message(body: &Option<Value>) -> String {
    let body = body.as_ref().expect("an error body");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    body["error"].as_str().expect("an error message").to_owned()
}

/// The start of the hour two hours ago: the samples of a test go in the
/// hours after it, all in the past and well within retention.
pub fn base_hour() -> Timestamp {
    Timestamp::from_millis(Timestamp::now().floor(HOUR_MS).millis() - 2 * HOUR_MS).unwrap()
}

/// `base` plus an offset in milliseconds.
pub fn at(base: Timestamp, offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(base.millis() + offset_ms).unwrap()
}

/// A program some tests need that may not be installed.
pub struct Tool {
    /// What the messages call it.
    pub name: &'static str,
    /// An environment variable that names the program, if the suite has one.
    pub variable: Option<&'static str>,
    /// The names it may have in `PATH`, the preferred first.
    pub commands: &'static [&'static str],
    /// How to install it.
    pub install: &'static str,
}

/// The program `tool` names, for the test running now. When it cannot be
/// found, CI (`CI` set to anything but empty, `false` or `0`) fails the
/// test; elsewhere the test prints one `skipped: ...` line, past the
/// test harness's capture so it shows in every run, and should return.
pub fn required_tool(tool: &Tool) -> Option<PathBuf> {
    let named = tool.variable.and_then(std::env::var_os).map(PathBuf::from);
    if let Some(path) = named.or_else(|| tool.commands.iter().find_map(|name| in_path(name))) {
        return Some(path);
    }
    let how = match tool.variable {
        Some(variable) => format!("{}, or set {variable}", tool.install),
        None => tool.install.to_owned(),
    };
    assert!(
        !in_ci(),
        "{} is needed by this test and is not installed (CI is set): {how}",
        tool.name
    );
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: {} is not installed ({how})",
        tool.name
    );
    None
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
}
