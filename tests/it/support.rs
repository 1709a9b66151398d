//! Builds the daemon on a fresh temporary database and reads that database
//! behind the daemon's back, to check what really got stored.

use std::path::{Path, PathBuf};

use rocket::figment::Figment;
use rocket::http::{ContentType, Status};
use rocket::local::blocking::{Client, LocalResponse};
use serde_json::Value;
use sperform::model::{HOUR_MS, Timestamp};
use tempfile::TempDir;

pub struct TestApp {
    pub client: Client,
    pub db_path: PathBuf,
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
    pub fn new() -> TestApp {
        Self::with(|figment| figment)
    }

    /// A daemon whose configuration `adjust` may change.
    pub fn with(adjust: impl FnOnce(Figment) -> Figment) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("sperform.db");
        let rocket = sperform::build(adjust(figment_for(&db_path))).unwrap();
        TestApp {
            client: Client::untracked(rocket).unwrap(),
            db_path,
            _dir: dir,
        }
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
