//! A small Chrome DevTools Protocol client, for browser tests that need to
//! interact with a page (type, click, submit) and wait for what follows.
//! It talks to headless Chromium over `--remote-debugging-pipe`: JSON
//! messages ended by a NUL byte, which Chromium reads from its fd 3 and
//! writes to its fd 4. A shell maps those to the child's stdin and stdout,
//! so no socket, port or extra crate is involved.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `wait_for` polls before the test fails.
const WAIT_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// One headless Chromium with one page, driven over the protocol.
pub struct Session {
    child: Child,
    to_browser: ChildStdin,
    from_browser: Receiver<Value>,
    next_id: u64,
    page: String,
    stderr: std::path::PathBuf,
    // Kept so the profile outlives the browser.
    _profile: TempDir,
}

impl Session {
    /// Starts `binary` with `flags` (and a fresh profile) and opens a page.
    pub fn start(binary: &Path, flags: &[&str]) -> Session {
        let profile = tempfile::tempdir().unwrap();
        let stderr = profile.path().join("stderr");
        // fd 3 <- our pipe into the child's stdin; fd 4 -> the pipe out of
        // its stdout; Chromium's own stdin and stdout go nowhere.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(binary)
            .args(flags)
            .arg("--remote-debugging-pipe")
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let to_browser = child.stdin.take().unwrap();
        let from_child = child.stdout.take().unwrap();
        let (sender, from_browser) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_child);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                message.pop();
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && sender.send(value).is_err()
                {
                    return;
                }
            }
        });
        let mut session = Session {
            child,
            to_browser,
            from_browser,
            next_id: 0,
            page: String::new(),
            stderr,
            _profile: profile,
        };
        let target = session.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = session.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        session.page = attached["sessionId"].as_str().unwrap().to_owned();
        session
    }

    /// Sends one command (to the page's session, or to the browser) and
    /// returns its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        if let Err(err) = self.to_browser.write_all(&bytes) {
            panic!("{method}: Chromium is gone ({err}):\n{}", self.stderr());
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(reply) if reply["id"] == json!(id) => {
                    assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                    return reply["result"].clone();
                }
                // Events and other replies.
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{method}: no answer within {CALL_TIMEOUT:?}:\n{}",
                        self.stderr()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{method}: Chromium is gone:\n{}", self.stderr())
                }
            }
        }
    }

    /// Loads `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        let page = self.page.clone();
        let result = self.call(Some(&page), "Page.navigate", json!({"url": url}));
        assert!(result.get("errorText").is_none(), "{url}: {result}");
    }

    /// Makes the page see `zone` (an IANA name such as `UTC`) as the
    /// viewer's time zone, so that local times are the same on any machine.
    pub fn set_time_zone(&mut self, zone: &str) {
        let page = self.page.clone();
        self.call(
            Some(&page),
            "Emulation.setTimezoneOverride",
            json!({"timezoneId": zone}),
        );
    }

    /// Presses and releases a key without text, such as `ArrowLeft`, in
    /// the element that has the focus. `code` is its Windows virtual key
    /// code, which Chromium uses to act on it (37 is `ArrowLeft`).
    pub fn press_key(&mut self, key: &str, code: u32) {
        let page = self.page.clone();
        for kind in ["rawKeyDown", "keyUp"] {
            self.call(
                Some(&page),
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code}),
            );
        }
    }

    /// Evaluates a JavaScript expression in the page (awaiting a promise)
    /// and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let page = self.page.clone();
        let result = self.call(
            Some(&page),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is true; panics with `what` and the
    /// page's text after the wait timeout.
    pub fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        // An expression may run before the page has its elements yet.
        let guarded =
            format!("(() => {{ try {{ return !!({expression}); }} catch {{ return false; }} }})()");
        while Instant::now() < deadline {
            if self.eval(&guarded) == json!(true) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let text = self.eval("document.body ? document.body.innerText : ''");
        panic!("{what}: not within {WAIT_TIMEOUT:?}; the page says:\n{text}");
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
