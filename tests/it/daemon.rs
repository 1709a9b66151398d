//! Runs the real `sperform` binary as a child process: on a port of its own
//! choosing (it is started with port 0 and reports the port it bound, so
//! there is no window in which another process can take it), with a fresh
//! temporary database and no configuration from the environment. It can be
//! signalled, killed and started again on the same database.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long the daemon may take to start listening and answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// What Rocket prints once it is listening, followed by the address.
const LAUNCHED: &str = "Rocket has launched from http://";

pub struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    env: Vec<(String, String)>,
    starts: u32,
    // Kept so the database outlives the daemon.
    dir: TempDir,
}

/// The `sperform` binary with no `ROCKET_*` variable from the environment
/// and a `ROCKET_CONFIG` that names no file, run in `dir`.
pub fn sperform_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sperform"));
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("ROCKET_") || key_text == "NOTIFY_SOCKET" {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env("ROCKET_CONFIG", dir.join("no-such-Rocket.toml"))
        .stdin(Stdio::null());
    command
}

impl Daemon {
    /// Starts the daemon and waits until it answers `/health`.
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Starts the daemon with extra environment variables (`ROCKET_*` keys
    /// or `NOTIFY_SOCKET`), which also apply when it is started again.
    pub fn start_with(env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let (child, log) = spawn(dir.path(), &env, 1);
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            env,
            starts: 1,
            dir,
        };
        daemon.wait_until_ready();
        daemon
    }

    /// Starts the binary again on the same database, once the previous
    /// process has ended, and waits until it answers `/health`.
    pub fn restart(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "the daemon is still running"
        );
        self.starts += 1;
        let (child, log) = spawn(self.dir.path(), &self.env, self.starts);
        self.child = child;
        self.log = log;
        self.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "sperform exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            if self.addr.port() == 0
                && let Some(addr) = launched_address(&self.log())
            {
                self.addr = addr;
            }
            if self.addr.port() != 0
                && let Ok((200, _)) = self.client().try_request("GET", "/health", &[], None)
            {
                return;
            }
            std::thread::sleep(POLL);
        }
        panic!(
            "sperform did not answer /health within {START_TIMEOUT:?}:\n{}",
            self.log()
        );
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on (a new one after each restart).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client for this daemon that other threads can use.
    pub fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("sperform.db")
    }

    /// Everything the daemon printed so far (since its last start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `text`; panics after `limit`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Sends one request and returns the status and body; panics if the
    /// daemon does not answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.client()
            .try_request(method, path, &[], body)
            .unwrap_or_else(|err| panic!("{method} {path}: {err}\n{}", self.log()))
    }

    /// Sends `signal` (`TERM`, `INT`, ...) to the process with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills the process with `SIGKILL`, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit; panics after `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sperform did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }
}

fn spawn(dir: &Path, env: &[(String, String)], start: u32) -> (Child, PathBuf) {
    let log = dir.join(format!("sperform-{start}.log"));
    let output = File::create(&log).unwrap();
    let mut command = sperform_command(dir);
    command
        .env("ROCKET_ADDRESS", "127.0.0.1")
        .env("ROCKET_PORT", "0")
        .env("ROCKET_DATABASE", dir.join("sperform.db"))
        .env("ROCKET_LOG_LEVEL", "normal")
        .env("ROCKET_CLI_COLORS", "false")
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdout(output.try_clone().unwrap())
        .stderr(output);
    (command.spawn().unwrap(), log)
}

/// A minimal HTTP/1.1 client: one fresh connection per request.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    addr: SocketAddr,
}

impl Client {
    /// Sends one request with extra `headers`; the status and body of the
    /// answer, or the I/O error (refused, reset) if there was none.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let body = body.unwrap_or("");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        write!(stream, "{head}\r\n{body}")?;
        read_response(&mut stream)
    }

    /// Opens a connection for a request that is written in parts.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }
}

/// Reads a whole `Connection: close` response: status and body.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

/// The address in Rocket's launch line, once it has been printed.
fn launched_address(log: &str) -> Option<SocketAddr> {
    let rest = &log[log.find(LAUNCHED)? + LAUNCHED.len()..];
    let end = rest.find(|c: char| c.is_whitespace())?;
    rest[..end].parse().ok()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
