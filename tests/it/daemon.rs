//! Runs the real `sperform` binary as a child process: on a port of its own
//! choosing (it is started with port 0 and reports the port it bound, so
//! there is no window in which another process can take it), with a fresh
//! temporary database and no configuration from the environment.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
    // Kept so the database outlives the daemon.
    _dir: TempDir,
}

impl Daemon {
    /// Starts the daemon and waits until it answers `/health`.
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sperform.log");
        let output = File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sperform"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ROCKET_") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(dir.path())
            .env("ROCKET_CONFIG", dir.path().join("no-such-Rocket.toml"))
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", "0")
            .env("ROCKET_DATABASE", dir.path().join("sperform.db"))
            .env("ROCKET_LOG_LEVEL", "normal")
            .env("ROCKET_CLI_COLORS", "false")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        let child = command.spawn().unwrap();
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            _dir: dir,
        };
        daemon.wait_until_ready();
        daemon
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
                && let Ok((200, _)) = self.try_request("GET", "/health", None)
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

    /// Everything the daemon printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one request and returns the status and body; panics if the
    /// daemon does not answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.try_request(method, path, body)
            .unwrap_or_else(|err| panic!("{method} {path}: {err}\n{}", self.log()))
    }

    /// A minimal HTTP/1.1 exchange over a fresh connection.
    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let body = body.unwrap_or("");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
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
