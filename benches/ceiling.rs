//! Ceiling references and data for the benchmark harness (`benches/run.sh`,
//! described in `benches/README.md`). Built only with `--features bench`.
//!
//! - `bench-ceiling serve`: a bare Rocket app with the daemon's routes. It
//!   parses the same JSON bodies and stores nothing, and answers the load
//!   route with a canned body of the daemon's size: what the HTTP stack and
//!   the JSON parsing alone can do on this machine.
//! - `bench-ceiling insert`: a data set inserted in-process into a fresh
//!   SQLite file with the daemon's schema (`migrations/*.sql`, applied in
//!   order), in one transaction with one prepared statement: what SQLite
//!   alone can do with these rows.
//! - `bench-ceiling bodies`: writes a data set as request bodies for
//!   `POST /api/v1/samples`, one file per batch.
//!
//! The data set is defined here and mirrored in `benches/bench.py`, which
//! checks the daemon's answers against it. Server `i` (from 0) is named
//! `{prefix}{i:04}`. Point `t` (from 0, of `points`) is at
//! `at - (points - 1 - t) * step` Unix seconds, so the last point is at `at`.
//! `cpu = ((37 i + 11 t) mod 400) / 4` and `ram = ((13 i + 7 t) mod 401) / 4`:
//! multiples of 0.25, so every sum of them is exact and so is every mean.
//! Entries are in time order: entry `e` is point `e / servers` of server
//! `e % servers`; batch `k` holds entries `k * batch` up to `(k + 1) * batch`.

use std::error::Error;
use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use rocket::data::{Data, ToByteUnit};
use rocket::http::Status;
use rocket::response::content::RawJson;
use rusqlite::Connection;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

type Fallible<T> = Result<T, Box<dyn Error>>;

#[derive(Parser)]
#[command(about = "Ceiling references and data for the sperform benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the daemon's routes without storing anything (ROCKET_* env vars apply).
    Serve,
    /// Insert a data set into a fresh SQLite file in one transaction; prints JSON.
    Insert {
        /// The SQLite file to create; must not exist.
        #[arg(long)]
        db: PathBuf,
        /// Directory of the daemon's `NNNN_name.sql` migrations.
        #[arg(long, default_value = "migrations")]
        migrations: PathBuf,
        /// SQLite page cache in KiB (`PRAGMA cache_size`); SQLite's default if absent.
        #[arg(long)]
        cache_kib: Option<i64>,
        #[command(flatten)]
        data: DataSet,
    },
    /// Write a data set as batch request bodies, one file per batch; prints JSON.
    Bodies {
        /// Directory to write `00000.json`, `00001.json`, ... into.
        #[arg(long)]
        out: PathBuf,
        /// Samples per body.
        #[arg(long, default_value_t = 5000)]
        batch: u64,
        #[command(flatten)]
        data: DataSet,
    },
}

/// A deterministic data set; see the module documentation.
#[derive(Args, Clone, Debug)]
struct DataSet {
    /// Server name prefix.
    #[arg(long)]
    prefix: String,
    /// Number of servers.
    #[arg(long)]
    servers: u64,
    /// Samples per server.
    #[arg(long)]
    points: u64,
    /// Seconds between two samples of a server.
    #[arg(long)]
    step: i64,
    /// Unix seconds of every server's last sample.
    #[arg(long)]
    at: i64,
}

struct Entry {
    server: u64,
    /// Unix seconds.
    time: i64,
    cpu: f64,
    ram: f64,
}

impl DataSet {
    fn entries(&self) -> u64 {
        self.servers * self.points
    }

    fn name(&self, server: u64) -> String {
        format!("{}{server:04}", self.prefix)
    }

    fn entry(&self, index: u64) -> Entry {
        let point = index / self.servers;
        let server = index % self.servers;
        let back = i64::try_from(self.points - 1 - point).unwrap_or(i64::MAX);
        Entry {
            server,
            time: self.at - back * self.step,
            cpu: ((37 * server + 11 * point) % 400) as f64 / 4.0,
            ram: ((13 * server + 7 * point) % 401) as f64 / 4.0,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve => serve(),
        Command::Insert {
            db,
            migrations,
            cache_kib,
            data,
        } => insert(&db, &migrations, cache_kib, &data),
        Command::Bodies { out, batch, data } => bodies(&out, batch, &data),
    };
    if let Err(err) = outcome {
        eprintln!("bench-ceiling: {err}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- bodies

fn bodies(out: &Path, batch: u64, data: &DataSet) -> Fallible<()> {
    if batch == 0 || data.servers == 0 || data.points == 0 {
        return Err("--batch, --servers and --points must be at least 1".into());
    }
    fs::create_dir_all(out)?;
    let names: Vec<String> = (0..data.servers).map(|i| data.name(i)).collect();
    let total = data.entries();
    let files = total.div_ceil(batch);
    let mut bytes = 0u64;
    for file in 0..files {
        let path = out.join(format!("{file:05}.json"));
        let mut body = Vec::with_capacity(usize::try_from(batch * 64).unwrap_or(0));
        body.push(b'[');
        for index in file * batch..((file + 1) * batch).min(total) {
            let entry = data.entry(index);
            if index != file * batch {
                body.push(b',');
            }
            write!(
                body,
                r#"{{"server":"{}","cpu":{},"ram":{},"time":{}}}"#,
                names[usize::try_from(entry.server)?],
                entry.cpu,
                entry.ram,
                entry.time
            )?;
        }
        body.push(b']');
        bytes += body.len() as u64;
        let mut writer = BufWriter::new(fs::File::create(&path)?);
        writer.write_all(&body)?;
        writer.flush()?;
    }
    println!(
        "{}",
        serde_json::json!({"files": files, "entries": total, "bytes": bytes})
    );
    Ok(())
}

// ---------------------------------------------------------------- insert

fn insert(db: &Path, migrations: &Path, cache_kib: Option<i64>, data: &DataSet) -> Fallible<()> {
    if db.exists() {
        return Err(format!(
            "{} exists; the insert ceiling needs a fresh file",
            db.display()
        )
        .into());
    }
    let mut conn = Connection::open(db)?;
    // The daemon's writer pragmas.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("could not switch to WAL (got {mode})").into());
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    if let Some(kib) = cache_kib {
        conn.pragma_update(None, "cache_size", -kib)?;
    }

    let mut scripts: Vec<PathBuf> = fs::read_dir(migrations)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    scripts.retain(|path| path.extension().is_some_and(|ext| ext == "sql"));
    scripts.sort();
    if scripts.is_empty() {
        return Err(format!("no *.sql migrations in {}", migrations.display()).into());
    }
    for script in &scripts {
        let sql = fs::read_to_string(script)?;
        let tx = conn.transaction()?;
        tx.execute_batch(&sql)
            .map_err(|err| format!("{}: {err}", script.display()))?;
        tx.commit()?;
    }
    conn.pragma_update(None, "user_version", i64::try_from(scripts.len())?)?;

    let started = Instant::now();
    let tx = conn.transaction()?;
    let mut ids = Vec::new();
    {
        let mut server = tx.prepare("INSERT INTO servers (name) VALUES (?1)")?;
        for i in 0..data.servers {
            server.execute([data.name(i)])?;
            ids.push(tx.last_insert_rowid());
        }
        let mut sample =
            tx.prepare("INSERT INTO samples (server_id, time, cpu, ram) VALUES (?1, ?2, ?3, ?4)")?;
        for index in 0..data.entries() {
            let entry = data.entry(index);
            sample.execute((
                ids[usize::try_from(entry.server)?],
                entry.time * 1000,
                entry.cpu,
                entry.ram,
            ))?;
        }
    }
    tx.commit()?;
    let seconds = started.elapsed().as_secs_f64();
    let after_commit = file_bytes(db);
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let after_checkpoint = file_bytes(db);
    let rows = data.entries();
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "seconds": seconds,
            "rows_per_s": rows as f64 / seconds,
            "bytes_after_commit": after_commit,
            "bytes_after_checkpoint": after_checkpoint,
            "migrations": scripts.len(),
        })
    );
    Ok(())
}

/// Size of the database file plus its WAL.
fn file_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), PathBuf::from(wal)]
        .iter()
        .filter_map(|path| fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum()
}

// ---------------------------------------------------------------- serve

/// Largest body for one sample, as the daemon.
const SAMPLE_BODY_LIMIT: u64 = 64 * 1024;
/// Largest body for a batch, as the daemon.
const BATCH_BODY_LIMIT: u64 = 4 * 1024 * 1024;
const MAX_BATCH_LEN: usize = 10_000;

/// A time as the daemon accepts it: RFC 3339 text or a number of Unix seconds.
#[derive(Debug)]
struct WireTime(#[allow(dead_code)] i64);

impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;

        impl Visitor<'_> for TimeVisitor {
            type Value = WireTime;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time string or a number of Unix seconds")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<WireTime, E> {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| WireTime(t.timestamp_millis()))
                    .map_err(E::custom)
            }

            fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<WireTime, E> {
                Ok(WireTime((seconds * 1000.0).round() as i64))
            }

            fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<WireTime, E> {
                self.visit_f64(seconds as f64)
            }

            fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<WireTime, E> {
                self.visit_f64(seconds as f64)
            }
        }

        deserializer.deserialize_any(TimeVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SampleBody {
    cpu: f64,
    ram: f64,
    #[serde(default)]
    time: Option<WireTime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct BatchEntry {
    server: String,
    cpu: f64,
    ram: f64,
    #[serde(default)]
    time: Option<WireTime>,
}

#[derive(Serialize)]
struct LoadBody {
    server: String,
    at: String,
    by_minute: Vec<BucketBody>,
    by_hour: Vec<BucketBody>,
}

#[derive(Serialize)]
struct BucketBody {
    start: String,
    cpu: Option<f64>,
    ram: Option<f64>,
    cpu_min: Option<f64>,
    cpu_max: Option<f64>,
    ram_min: Option<f64>,
    ram_max: Option<f64>,
    samples: u64,
}

type Refusal = (Status, String);

async fn read_body(data: Data<'_>, limit: u64) -> Result<Vec<u8>, Refusal> {
    let body = data
        .open(limit.bytes())
        .into_bytes()
        .await
        .map_err(|err| (Status::BadRequest, err.to_string()))?;
    if !body.is_complete() {
        return Err((Status::PayloadTooLarge, "body too large".into()));
    }
    Ok(body.into_inner())
}

fn refuse(err: &serde_json::Error) -> Refusal {
    let status = match err.classify() {
        serde_json::error::Category::Data => Status::UnprocessableEntity,
        _ => Status::BadRequest,
    };
    (status, format!(r#"{{"error":{:?}}}"#, err.to_string()))
}

#[rocket::post("/servers/<_name>/samples", data = "<body>")]
async fn post_sample(_name: &str, body: Data<'_>) -> Result<Status, Refusal> {
    let body = read_body(body, SAMPLE_BODY_LIMIT).await?;
    let _sample: SampleBody = serde_json::from_slice(&body).map_err(|err| refuse(&err))?;
    Ok(Status::NoContent)
}

#[rocket::post("/samples", data = "<body>")]
async fn post_batch(body: Data<'_>) -> Result<Status, Refusal> {
    let body = read_body(body, BATCH_BODY_LIMIT).await?;
    let batch: Vec<BatchEntry> = serde_json::from_slice(&body).map_err(|err| refuse(&err))?;
    if batch.is_empty() || batch.len() > MAX_BATCH_LEN {
        return Err((Status::UnprocessableEntity, "batch size".into()));
    }
    Ok(Status::NoContent)
}

#[rocket::get("/servers/<_name>/load?<at>")]
fn load(_name: &str, at: Option<&str>) -> Result<RawJson<&'static str>, Refusal> {
    if let Some(text) = at
        && text.parse::<f64>().is_err()
        && chrono::DateTime::parse_from_rfc3339(&text.replace(' ', "+")).is_err()
    {
        return Err((Status::UnprocessableEntity, "bad at".into()));
    }
    Ok(RawJson(canned_load()))
}

#[rocket::get("/health")]
fn health() -> RawJson<&'static str> {
    RawJson(r#"{"status":"ok"}"#)
}

/// A load answer shaped and sized like the daemon's for a backfilled server:
/// 60 one-minute buckets of one sample, 24 one-hour buckets of 60, with
/// the data set's values.
fn canned_load() -> &'static str {
    static CANNED: OnceLock<String> = OnceLock::new();
    CANNED.get_or_init(|| {
        let at = chrono::DateTime::from_timestamp(1_795_806_780, 0).unwrap_or_default();
        let iso =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // Means of the data set's values over points first..first + samples.
        let data = DataSet {
            prefix: "bf-".into(),
            servers: 1000,
            points: 1440,
            step: 60,
            at: at.timestamp(),
        };
        let bucket = |start, first: u64, samples: u64| {
            let points = first..first + samples;
            let data = &data;
            let values =
                |f: fn(&Entry) -> f64| points.clone().map(move |t| f(&data.entry(t * 1000)));
            let mean = |f: fn(&Entry) -> f64| values(f).sum::<f64>() / samples as f64;
            let min = |f: fn(&Entry) -> f64| values(f).reduce(f64::min);
            let max = |f: fn(&Entry) -> f64| values(f).reduce(f64::max);
            BucketBody {
                start: iso(start),
                cpu: Some(mean(|e| e.cpu)),
                ram: Some(mean(|e| e.ram)),
                cpu_min: min(|e| e.cpu),
                cpu_max: max(|e| e.cpu),
                ram_min: min(|e| e.ram),
                ram_max: max(|e| e.ram),
                samples,
            }
        };
        let minutes = (0..60u32)
            .map(|k| {
                let start = at - chrono::Duration::minutes(i64::from(59 - k));
                bucket(start, 1380 + u64::from(k), 1)
            })
            .collect();
        let hour = at - chrono::Duration::seconds(at.timestamp() % 3600);
        let hours = (0..24u32)
            .map(|k| {
                let start = hour - chrono::Duration::hours(i64::from(23 - k));
                bucket(start, u64::from(k) * 60, 60)
            })
            .collect();
        serde_json::to_string(&LoadBody {
            server: "bf-0000".into(),
            at: iso(at),
            by_minute: minutes,
            by_hour: hours,
        })
        .unwrap_or_default()
    })
}

fn serve() -> Fallible<()> {
    let _ = canned_load();
    let rocket = rocket::custom(rocket::Config::figment())
        .mount("/api/v1", rocket::routes![post_sample, post_batch, load])
        .mount("/", rocket::routes![health]);
    rocket::execute(rocket.launch())?;
    Ok(())
}
