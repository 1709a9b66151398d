//! The dashboard in a real browser: the real `sperform` binary on a
//! temporary database, fed known samples over HTTP, both pages loaded in
//! headless Chromium, assertions on the DOM the scripts built, screenshots
//! under `target/tmp/dashboard-screenshots/`.
//!
//! Without Chromium each test prints a `skipped: ...` line and passes,
//! except in CI (`CI` set), where a missing Chromium is a failure. `CHROMIUM=/path/to/chromium`
//! picks the binary; `SPERFORM_UPDATE_SCREENSHOTS=1` also copies the
//! screenshots to `docs/`, where README.md shows them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sperform::model::{HOUR_MS, MINUTE_MS, Timestamp};

use crate::cdp::Session;
use crate::daemon::Daemon;
use crate::support::{Tool, required_tool};

const CHROMIUM: Tool = Tool {
    name: "Chromium",
    variable: Some("CHROMIUM"),
    commands: &["chromium", "chromium-browser", "google-chrome"],
    install: "`apt-get install chromium`",
};

/// How long one Chromium run may take before the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// Virtual time the page gets to fetch and draw before the DOM is dumped.
const VIRTUAL_TIME_BUDGET_MS: u32 = 5000;
const READ_TOKEN: &str = "read-0123456789abcdef01";
/// Every Chromium run: headless, no sandbox (tests may run as root), no
/// first-run, sync, update or other background traffic; a fresh profile
/// (`--user-data-dir`) is added per run.
const HEADLESS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--lang=en-US",
];

struct Browser {
    binary: PathBuf,
}

impl Browser {
    /// Chromium, if installed; see `required_tool` for what happens
    /// when it is not.
    fn find() -> Option<Browser> {
        required_tool(&CHROMIUM).map(|binary| Browser { binary })
    }

    /// Loads `url` in a fresh headless Chromium with `extra` flags, lets
    /// its scripts run for the virtual time budget, and returns stdout.
    fn run(&self, url: &str, extra: &[String]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        let mut child = Command::new(&self.binary)
            .args(HEADLESS)
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
            .args(extra)
            .arg(url)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "Chromium did not finish {url} within {BROWSER_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "Chromium failed on {url} ({status}):\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        std::fs::read_to_string(&stdout_path).unwrap()
    }

    /// The DOM of `url` once its scripts have drawn it, as HTML.
    fn dom(&self, url: &str) -> String {
        let dom = self.run(url, &["--dump-dom".to_owned()]);
        assert!(dom.contains("</html>"), "no DOM for {url}: {dom}");
        dom
    }

    /// Saves a `width` x `height` screenshot of `url` as `name` in the
    /// screenshot directory (and in `docs/` when asked to).
    fn screenshot(&self, url: &str, name: &str, size: (u32, u32), extra: &[&str]) {
        let directory = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join(name);
        let _ = std::fs::remove_file(&path);
        let mut flags = vec![
            format!("--screenshot={}", path.display()),
            format!("--window-size={},{}", size.0, size.1),
        ];
        flags.extend(extra.iter().map(ToString::to_string));
        self.run(url, &flags);
        let png = std::fs::read(&path).unwrap();
        assert!(
            png.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            path.display()
        );
        if std::env::var_os("SPERFORM_UPDATE_SCREENSHOTS").is_some() {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(name), &png).unwrap();
        }
    }
}

fn post_batch(daemon: &Daemon, batch: &[Value]) {
    let (status, body) = daemon.request(
        "POST",
        "/api/v1/samples",
        Some(&Value::from(batch.to_vec()).to_string()),
    );
    assert_eq!(status, 204, "{body}");
}

fn sample(server: &str, time: i64, cpu: f64, ram: f64) -> Value {
    let round = |value: f64| (value.clamp(0.0, 100.0) * 100.0).round() / 100.0;
    json!({"server": server, "cpu": round(cpu), "ram": round(ram),
           "time": Timestamp::from_millis(time).unwrap().to_rfc3339()})
}

/// The minutes (counted back from now) at which web-1 has a sample: 0 to
/// 50, except 20 to 24. Every one lies inside the 60 minutes even if the
/// page loads a few minutes after the feed.
fn web_1_minutes() -> impl Iterator<Item = i64> {
    (0..=50).filter(|minute| !(20..=24).contains(minute))
}

/// The hours (counted back from the current one) in which web-1 has a
/// sample besides the minutes above: 2 to 20, except 8 to 10, each more
/// than 60 minutes back.
fn web_1_hours() -> impl Iterator<Item = i64> {
    (2..=20).filter(|hour| !(8..=10).contains(hour))
}

/// A day of load for a handful of servers; web-1 with gaps (see above),
/// old-1 silent for the last 10 minutes.
fn feed(daemon: &Daemon, now: Timestamp) {
    let now = now.millis();
    let hour = now - now.rem_euclid(HOUR_MS);
    let mut batch = Vec::new();
    for m in web_1_minutes() {
        let t = m as f64;
        batch.push(sample(
            "web-1",
            now - m * MINUTE_MS,
            38.0 + 22.0 * (t / 7.0).sin(),
            52.0 + t / 10.0,
        ));
    }
    for h in web_1_hours() {
        let t = h as f64;
        batch.push(sample(
            "web-1",
            hour - h * HOUR_MS + 30 * MINUTE_MS,
            35.0 + 15.0 * (t / 4.0).cos(),
            50.0 + 3.0 * (t / 5.0).sin(),
        ));
    }
    let others = [
        ("web-2", 46.0, 18.0, 61.0),
        ("web-3", 31.0, 12.0, 44.0),
        ("db-1", 71.0, 9.0, 83.0),
        ("cache-1", 12.0, 4.0, 37.0),
        ("queue-1", 24.0, 15.0, 28.0),
        ("old-1", 8.0, 3.0, 20.0),
    ];
    for (index, (server, cpu, swing, ram)) in others.into_iter().enumerate() {
        let phase = index as f64 * 1.7;
        let first_minute = if server == "old-1" { 10 } else { 0 };
        for m in first_minute..60 {
            let t = m as f64 / 6.0 + phase;
            batch.push(sample(
                server,
                now - m * MINUTE_MS,
                cpu + swing * t.sin() + 3.0 * (3.1 * t).sin(),
                ram + 2.0 * (t / 3.0).cos(),
            ));
        }
        for h in 2..24 {
            let t = h as f64 / 3.0 + phase;
            batch.push(sample(
                server,
                hour - h * HOUR_MS + 20 * MINUTE_MS,
                cpu + swing * t.sin(),
                ram + 4.0 * (t / 2.0).cos(),
            ));
        }
    }
    post_batch(daemon, &batch);
}

/// The part of `html` from the first `from` to the next `to` after it.
fn between<'a>(html: &'a str, from: &str, to: &str) -> &'a str {
    let start = html
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} not in {html}"));
    let rest = &html[start..];
    let end = rest.find(to).unwrap_or(rest.len());
    &rest[..end]
}

/// The `d` attribute of the path drawing `series` in a chart.
fn line_path<'a>(chart: &'a str, series: &str) -> &'a str {
    let marker = format!("class=\"line {series}\" d=\"");
    let start = chart
        .find(&marker)
        .unwrap_or_else(|| panic!("no {series} line in {chart}"))
        + marker.len();
    let rest = &chart[start..];
    &rest[..rest.find('"').unwrap_or(rest.len())]
}

/// The servers of the list in the order shown, with their CPU figure.
fn rows_with_cpu(dom: &str) -> Vec<(String, f64)> {
    dom.split("<tr data-server=\"")
        .skip(1)
        .map(|row| {
            let name = row.split('"').next().unwrap().to_owned();
            let cell = between(row, "class=\"number cpu-now\"", "</td>");
            let text = cell.rsplit('>').next().unwrap();
            // The figure, then a no-break space (&nbsp;) and %.
            let cpu = text.split(['&', '\u{a0}']).next().unwrap().parse().unwrap();
            (name, cpu)
        })
        .collect()
}

/// `html` without the values of its attributes, so that what remains of
/// `<` is real markup (an attribute value may hold a `<` unescaped).
fn without_attribute_values(html: &str) -> String {
    let mut kept = String::with_capacity(html.len());
    let mut in_value = false;
    let mut previous = ' ';
    for c in html.chars() {
        if in_value {
            in_value = c != '"';
        } else {
            in_value = c == '"' && previous == '=';
            kept.push(c);
        }
        previous = c;
    }
    kept
}

#[test]
fn both_pages_draw_their_data_in_a_real_browser() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let daemon = Daemon::start();
    let now = Timestamp::now();
    feed(&daemon, now);
    let url = daemon.url();

    // The list: every server, with a sparkline, old-1 marked stale.
    let dom = browser.dom(&format!("{url}/"));
    let names = [
        "cache-1", "db-1", "old-1", "queue-1", "web-1", "web-2", "web-3",
    ];
    for name in names {
        assert!(
            dom.contains(&format!("<tr data-server=\"{name}\">")),
            "{name}: {dom}"
        );
    }
    assert_eq!(
        dom.matches("<tr data-server=").count(),
        names.len(),
        "{dom}"
    );
    assert_eq!(dom.matches("<svg class=\"spark\"").count(), names.len());
    assert!(dom.contains(">7 servers<"), "{dom}");
    let old = between(&dom, "<tr data-server=\"old-1\">", "</tr>");
    assert!(old.contains("<span class=\"badge\">stale</span>"), "{old}");
    assert!(old.contains(" min ago"), "{old}");
    let web_1 = between(&dom, "<tr data-server=\"web-1\">", "</tr>");
    assert!(!web_1.contains("stale"), "{web_1}");
    assert!(web_1.contains("href=\"/servers/web-1\""), "{web_1}");
    // Its sparkline breaks where minutes are missing.
    assert_eq!(line_path(web_1, "cpu").matches('M').count(), 2, "{web_1}");

    // Filter and sort come from the query string: web servers only,
    // highest CPU first.
    let dom = browser.dom(&format!("{url}/?q=WEB&sort=cpu"));
    let rows = rows_with_cpu(&dom);
    let mut names: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["web-1", "web-2", "web-3"], "{dom}");
    assert!(
        rows.windows(2).all(|pair| pair[0].1 >= pair[1].1),
        "{rows:?}"
    );
    assert!(dom.contains(">3 of 7 servers match<"), "{dom}");

    // One server: 60 minutes and 24 hours, points where there are samples,
    // gaps where there are none.
    let dom = browser.dom(&format!("{url}/servers/web-1"));
    let minutes = between(&dom, "id=\"minutes\"", "id=\"hours\"");
    let expected_minutes = web_1_minutes().count();
    assert_eq!(minutes.matches("class=\"bucket").count(), 60, "{minutes}");
    assert_eq!(
        minutes.matches("class=\"bucket empty\"").count(),
        60 - expected_minutes
    );
    assert!(minutes.contains("data-buckets=\"60\""));
    for series in ["cpu", "ram"] {
        let points = format!("class=\"point {series}\"");
        assert_eq!(minutes.matches(&points).count(), expected_minutes);
        // Two runs of minutes (0-19 and 25-50 back): two strokes.
        assert_eq!(line_path(minutes, series).matches('M').count(), 2);
    }
    let hours = between(&dom, "id=\"hours\"", "id=\"history-card\"");
    assert_eq!(hours.matches("class=\"bucket").count(), 24, "{hours}");
    assert!(hours.contains("data-buckets=\"24\""));
    let hour_table = between(&dom, "id=\"hours-table\"", "</table>");
    assert_eq!(hour_table.matches("<tr ").count(), 24, "{hour_table}");
    let filled_hours = hour_table.matches("<tr data-start=").count();
    assert!(filled_hours > web_1_hours().count(), "{hour_table}");
    assert_eq!(
        hours.matches("class=\"point cpu\"").count(),
        filled_hours,
        "{hours}"
    );
    for back in 8..=10 {
        let start = Timestamp::from_millis(now.floor(HOUR_MS).millis() - back * HOUR_MS)
            .unwrap()
            .to_rfc3339_seconds();
        assert!(
            hour_table.contains(&format!("<tr class=\"empty\" data-start=\"{start}\">")),
            "{start} should be empty: {hour_table}"
        );
    }
    assert!(line_path(hours, "cpu").matches('M').count() >= 2, "{hours}");
    let minute_table = between(&dom, "id=\"minutes-table\"", "</table>");
    assert_eq!(minute_table.matches("<tr ").count(), 60);
    assert!(dom.contains("Latest minute with samples ("), "{dom}");
    // Tooltips give the exact values and the sample count.
    assert!(minutes.contains(" %, 1 sample</title>"), "{minutes}");

    // An unknown server: the 404 page.
    let dom = browser.dom(&format!("{url}/servers/web-9"));
    assert!(dom.contains("<h1>404 Not Found</h1>"), "{dom}");
    assert!(
        dom.contains("No server named \"web-9\" has reported."),
        "{dom}"
    );

    browser.screenshot(
        &format!("{url}/"),
        "dashboard-overview.png",
        (1280, 560),
        &[],
    );
    browser.screenshot(
        &format!("{url}/servers/web-1"),
        "dashboard-server.png",
        (1280, 1120),
        &[],
    );
    browser.screenshot(
        &format!("{url}/servers/db-1"),
        "dashboard-server-dark.png",
        (1280, 1120),
        &["--blink-settings=preferredColorScheme=0"],
    );
    browser.screenshot(
        &format!("{url}/"),
        "dashboard-overview-phone.png",
        (390, 640),
        &[],
    );
}

#[test]
fn with_a_read_token_the_browser_is_asked_for_it() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let daemon = Daemon::start_with(&[("ROCKET_READ_TOKEN", READ_TOKEN)]);
    let dom = browser.dom(&format!("{}/", daemon.url()));
    assert!(dom.contains("<form id=\"token-prompt\""), "{dom}");
    assert!(dom.contains("Read token needed"), "{dom}");
    assert_eq!(dom.matches("<tr data-server=").count(), 0, "{dom}");
}

#[test]
fn stored_markup_is_shown_as_text() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let daemon = Daemon::start();
    post_batch(
        &daemon,
        &[sample(
            "web-1",
            Timestamp::now().millis() - 1000,
            10.0,
            20.0,
        )],
    );
    // The API refuses such a name; a row written behind its back must
    // still come out as text.
    let name = r#"<b id="injected">bold</b><script>document.title="owned"</script>"#;
    let conn = rusqlite::Connection::open(daemon.db_path()).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute("INSERT INTO servers (name) VALUES (?1)", [name])
        .unwrap();
    drop(conn);

    let dom = browser.dom(&format!("{}/", daemon.url()));
    assert_eq!(dom.matches("<tr data-server=").count(), 2, "{dom}");
    assert!(
        dom.contains("&lt;b id=\"injected\"&gt;bold&lt;/b&gt;&lt;script&gt;"),
        "{dom}"
    );
    let markup = without_attribute_values(&dom);
    assert!(!markup.contains("<b "), "{markup}");
    assert!(!markup.contains("<script>"), "{markup}");
    assert!(dom.contains("<title>Servers · sperform</title>"), "{dom}");
}

#[test]
fn the_dashboard_asks_for_the_read_token_once_and_answers_clicks_and_typing() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let daemon = Daemon::start_with(&[("ROCKET_READ_TOKEN", READ_TOKEN)]);
    let now = Timestamp::now();
    feed(&daemon, now);
    let url = daemon.url();
    let mut page = Session::start(&browser.binary, &HEADLESS);

    // No token yet: the list asks for one.
    page.navigate(&format!("{url}/"));
    page.wait_for(
        "document.getElementById('token-prompt')",
        "the token prompt",
    );
    assert_eq!(
        page.eval("document.querySelectorAll('tr[data-server]').length"),
        0
    );

    // A wrong token is refused and asked for again.
    let submit = |token: &str| {
        format!(
            "document.getElementById('token').value = {token:?}; \
             document.getElementById('token-prompt').requestSubmit(); true"
        )
    };
    page.eval(&submit("not-the-read-token-at-all"));
    page.wait_for(
        "document.querySelector('#token-prompt .problem').textContent \
         === 'The daemon refused that token.'",
        "the refusal",
    );
    // The right one shows the data, and stays for the tab.
    page.eval(&submit(READ_TOKEN));
    page.wait_for(
        "document.querySelectorAll('tr[data-server]').length === 7",
        "the seven servers",
    );
    assert_eq!(
        page.eval("document.getElementById('token-prompt')"),
        Value::Null
    );
    assert_eq!(
        page.eval("sessionStorage.getItem('sperform.read-token')"),
        json!(READ_TOKEN)
    );
    assert_eq!(
        page.eval("localStorage.getItem('sperform.read-token')"),
        Value::Null
    );

    // Typing filters, clicking a header sorts (again: the other way), and
    // the view goes to the address.
    page.eval(
        "const filter = document.getElementById('filter'); filter.value = 'web'; \
         filter.dispatchEvent(new Event('input')); true",
    );
    page.wait_for(
        "document.querySelectorAll('tr[data-server]').length === 3",
        "the filtered list",
    );
    let cpu_order = "[...document.querySelectorAll('tr[data-server] .cpu-now')]\
                     .map((cell) => parseFloat(cell.textContent))";
    page.eval("document.querySelector('th[data-sort=cpu] button').click(); true");
    let descending: Vec<f64> = serde_json::from_value(page.eval(cpu_order)).unwrap();
    assert!(
        descending.windows(2).all(|pair| pair[0] >= pair[1]),
        "{descending:?}"
    );
    page.eval("document.querySelector('th[data-sort=cpu] button').click(); true");
    let ascending: Vec<f64> = serde_json::from_value(page.eval(cpu_order)).unwrap();
    assert!(
        ascending.windows(2).all(|pair| pair[0] <= pair[1]),
        "{ascending:?}"
    );
    assert_eq!(
        page.eval("location.search"),
        json!("?q=web&sort=cpu&order=ascending")
    );
    assert_eq!(
        page.eval("document.querySelector('th[data-sort=cpu]').getAttribute('aria-sort')"),
        json!("ascending")
    );

    // Pause stops the refresh, Resume starts it again.
    page.eval("document.getElementById('pause').click(); true");
    assert_eq!(
        page.eval("document.getElementById('pause').textContent"),
        json!("Resume")
    );
    assert_eq!(
        page.eval("document.getElementById('updated').textContent"),
        json!("Paused")
    );
    page.eval("document.getElementById('pause').click(); true");
    page.wait_for(
        "document.getElementById('updated').textContent.startsWith('Updated')",
        "a refresh after Resume",
    );

    // The next page of the tab uses the token without asking.
    page.navigate(&format!("{url}/servers/web-1"));
    page.wait_for(
        "document.querySelectorAll('#minutes rect.bucket').length === 60 \
         && document.querySelectorAll('#hours rect.bucket').length === 24 \
         && document.querySelectorAll('#history rect.bucket').length === 168",
        "the three charts",
    );
    assert_eq!(
        page.eval("document.getElementById('token-prompt')"),
        Value::Null
    );
    let title =
        page.eval("document.querySelector('#minutes rect.bucket:not(.empty) title').textContent");
    assert!(title.as_str().unwrap().contains(" %, 1 sample"), "{title}");

    // With a read token the page of an unknown server is served, and says
    // so once the API has answered.
    page.navigate(&format!("{url}/servers/web-9"));
    page.wait_for(
        "document.getElementById('problem').textContent.startsWith('No server named “web-9”')",
        "the unknown server",
    );
    assert_eq!(
        page.eval("document.getElementById('charts').hidden"),
        json!(true)
    );
}

const DAY_MS: i64 = 24 * HOUR_MS;
/// A window wide enough that every day of the 7-day view and every month
/// of the 1-year view gets its label.
const WIDE_WINDOW: &str = "--window-size=1280,1000";

/// One sample of the long views' server: time (Unix ms), CPU, RAM.
type OldSample = (i64, f64, f64);

/// The samples of `hist-1`, days to months before `now`, each group in one
/// bucket of a long view (buckets are aligned to multiples of their width
/// since the epoch, so the groups stay whole whatever the time of day).
fn old_samples(now: Timestamp) -> Vec<OldSample> {
    let hour = now.floor(HOUR_MS).millis();
    let quarter = now.floor(6 * HOUR_MS).millis();
    let day = now.floor(DAY_MS).millis();
    vec![
        // The hour 50 hours back: three samples, means 25 and 40.
        (hour - 50 * HOUR_MS + 5 * MINUTE_MS, 10.0, 30.0),
        (hour - 50 * HOUR_MS + 20 * MINUTE_MS, 20.0, 40.0),
        (hour - 50 * HOUR_MS + 40 * MINUTE_MS, 45.0, 50.0),
        // The hour 51 hours back has none; the one 52 hours back one, in
        // its last minute.
        (hour - 52 * HOUR_MS + 59 * MINUTE_MS, 80.0, 60.0),
        // 20 days back, both in one 6-hour bucket: means 65 and 25.
        (quarter - 80 * 6 * HOUR_MS + HOUR_MS, 60.0, 20.0),
        (
            quarter - 80 * 6 * HOUR_MS + 5 * HOUR_MS + 59 * MINUTE_MS,
            70.0,
            30.0,
        ),
        // 200 days back, both in one UTC day: means 6.5 and 11.5.
        (day - 200 * DAY_MS + 3 * HOUR_MS, 5.0, 11.0),
        (day - 200 * DAY_MS + 15 * HOUR_MS, 8.0, 12.0),
        // 300 days back, alone in its day.
        (day - 300 * DAY_MS + 12 * HOUR_MS, 99.5, 0.5),
    ]
}

/// A mean as the page writes it (`exact` in common.js, en-US): at most two
/// decimals, no trailing zeros; a dash for none.
fn shown(value: Option<f64>) -> String {
    let Some(value) = value else {
        return "–".to_owned();
    };
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The rows a long view's table must hold for buckets of `width` from
/// `first`, `count` of them: start, CPU and RAM means as shown, samples.
fn expected_rows(samples: &[OldSample], first: i64, width: i64, count: i64) -> Vec<Vec<String>> {
    (0..count)
        .map(|index| {
            let start = first + index * width;
            let inside: Vec<&OldSample> = samples
                .iter()
                .filter(|(time, _, _)| (start..start + width).contains(time))
                .collect();
            let mean = |pick: fn(&OldSample) -> f64| {
                (!inside.is_empty()).then(|| {
                    inside.iter().map(|sample| pick(sample)).sum::<f64>() / inside.len() as f64
                })
            };
            vec![
                Timestamp::from_millis(start).unwrap().to_rfc3339_seconds(),
                shown(mean(|sample| sample.1)),
                shown(mean(|sample| sample.2)),
                inside.len().to_string(),
            ]
        })
        .collect()
}

/// The rows of the long view's table: start, CPU, RAM, samples.
fn long_view_rows(page: &mut Session) -> Vec<Vec<String>> {
    let rows = page.eval(
        "[...document.querySelectorAll('#history-table tbody tr')].map((row) => \
         [row.dataset.start, ...[...row.cells].slice(1).map((cell) => cell.textContent)])",
    );
    serde_json::from_value(rows).unwrap()
}

/// The time labels under the long view's chart.
fn long_view_labels(page: &mut Session) -> Vec<String> {
    let labels = page.eval(
        "[...document.querySelectorAll('#history text.axis[text-anchor=middle]')]\
         .map((label) => label.textContent)",
    );
    serde_json::from_value(labels).unwrap()
}

/// The tooltip of the long view's bucket that starts at `start`.
fn long_view_title(page: &mut Session, start: i64) -> String {
    let start = Timestamp::from_millis(start).unwrap().to_rfc3339_seconds();
    let title = page.eval(&format!(
        "document.querySelector('#history rect[data-start=\"{start}\"] title').textContent"
    ));
    title.as_str().unwrap_or_default().to_owned()
}

/// Checks the long view drawn now against the samples: `count` buckets of
/// `width`, the last one holding the daemon's time when the page asked
/// (between `before` and now), each with exactly the oracle's values.
/// Returns the start of the first bucket.
fn assert_long_view(
    page: &mut Session,
    samples: &[OldSample],
    before: Timestamp,
    width: i64,
    count: i64,
) -> i64 {
    let rows = long_view_rows(page);
    let after = Timestamp::now();
    assert_eq!(rows.len() as i64, count, "{rows:?}");
    let last = rows.last().unwrap()[0].clone();
    let candidates = [before, after].map(|time| time.floor(width).to_rfc3339_seconds());
    assert!(
        candidates.contains(&last),
        "{last} is not one of {candidates:?}"
    );
    let last = Timestamp::parse_rfc3339(&last).unwrap().millis();
    let first = last - (count - 1) * width;
    assert_eq!(rows, expected_rows(samples, first, width, count));
    assert_eq!(
        page.eval("document.querySelectorAll('#history rect.bucket').length"),
        json!(count)
    );
    first
}

/// The row of `rows` for the bucket starting at `start`, without its start.
fn row_at(rows: &[Vec<String>], start: i64) -> Vec<String> {
    let start = Timestamp::from_millis(start).unwrap().to_rfc3339_seconds();
    rows.iter()
        .find(|row| row[0] == start)
        .unwrap_or_else(|| panic!("no bucket starts at {start}: {rows:?}"))[1..]
        .to_vec()
}

#[test]
fn the_long_views_draw_old_samples_in_exact_buckets() {
    let Some(browser) = Browser::find() else {
        return;
    };
    // A retention long enough that every sample is raw data, however the
    // store keeps older history.
    let daemon = Daemon::start_with(&[("ROCKET_RETENTION", "400d")]);
    let now = Timestamp::now();
    let samples = old_samples(now);
    let batch: Vec<Value> = samples
        .iter()
        .map(|&(time, cpu, ram)| sample("hist-1", time, cpu, ram))
        .collect();
    post_batch(&daemon, &batch);
    let url = daemon.url();
    let hour = now.floor(HOUR_MS).millis();
    let quarter = now.floor(6 * HOUR_MS).millis();
    let day = now.floor(DAY_MS).millis();
    let mut flags = HEADLESS.to_vec();
    flags.push(WIDE_WINDOW);
    let mut page = Session::start(&browser.binary, &flags);
    page.set_time_zone("UTC");

    // 7 days by hour, the view a page starts with.
    page.navigate(&format!("{url}/servers/hist-1"));
    page.wait_for(
        "document.querySelector('#history svg[data-view=\"7d\"]')",
        "the 7-day view",
    );
    let first = assert_long_view(&mut page, &samples, now, HOUR_MS, 7 * 24);
    let rows = long_view_rows(&mut page);
    assert_eq!(row_at(&rows, hour - 50 * HOUR_MS), ["25", "40", "3"]);
    assert_eq!(row_at(&rows, hour - 51 * HOUR_MS), ["–", "–", "0"]);
    assert_eq!(row_at(&rows, hour - 52 * HOUR_MS), ["80", "60", "1"]);
    let title = long_view_title(&mut page, hour - 50 * HOUR_MS);
    assert!(
        title.ends_with(": CPU 25 %, RAM 40 %, 3 samples"),
        "{title}"
    );
    let date = chrono::DateTime::from_timestamp_millis(hour - 50 * HOUR_MS).unwrap();
    assert!(
        title.starts_with(&date.format("%a, %b %-d, ").to_string()),
        "{title}"
    );
    let title = long_view_title(&mut page, hour - 51 * HOUR_MS);
    assert!(title.ends_with(": no samples"), "{title}");
    assert_eq!(
        page.eval(&format!(
            "document.querySelector('#history rect[data-start=\"{}\"]').getAttribute('class')",
            Timestamp::from_millis(hour - 51 * HOUR_MS)
                .unwrap()
                .to_rfc3339_seconds()
        )),
        json!("bucket empty")
    );
    // Two hours with samples, 52 and 50 hours back: a point each.
    assert_eq!(
        page.eval("document.querySelectorAll('#history circle.point.cpu').length"),
        json!(2)
    );
    // A label under each UTC midnight in the window: `Dec 6`.
    let midnights: Vec<String> = (0..7 * 24)
        .map(|index| first + index * HOUR_MS)
        .filter(|start| start % DAY_MS == 0)
        .map(|start| {
            let date = chrono::DateTime::from_timestamp_millis(start).unwrap();
            date.format("%b %-d").to_string()
        })
        .collect();
    assert_eq!(long_view_labels(&mut page), midnights);
    assert_eq!(
        page.eval("document.getElementById('history-title').textContent"),
        json!("Last 7 days")
    );
    assert_eq!(page.eval("location.search"), json!(""));

    // A click on "30 days": 6-hour buckets, and the view goes to the
    // address.
    page.eval("document.querySelector('input[name=history-view][value=\"30d\"]').click(); true");
    page.wait_for(
        "document.querySelector('#history svg[data-view=\"30d\"]')",
        "the 30-day view",
    );
    assert_long_view(&mut page, &samples, now, 6 * HOUR_MS, 30 * 4);
    let rows = long_view_rows(&mut page);
    assert_eq!(row_at(&rows, quarter - 80 * 6 * HOUR_MS), ["65", "25", "2"]);
    assert_eq!(row_at(&rows, quarter - 81 * 6 * HOUR_MS), ["–", "–", "0"]);
    assert_eq!(page.eval("location.search"), json!("?view=30d"));
    assert_eq!(
        page.eval("document.querySelector('#history-table caption').textContent"),
        json!("Last 30 days, by 6 hours")
    );

    // The address chooses the view when the page loads: the year by day.
    page.navigate(&format!("{url}/servers/hist-1?view=1y"));
    page.wait_for(
        "document.querySelector('#history svg[data-view=\"1y\"]')",
        "the 1-year view",
    );
    assert_eq!(
        page.eval("document.querySelector('input[name=history-view]:checked').value"),
        json!("1y")
    );
    let first = assert_long_view(&mut page, &samples, now, DAY_MS, 365);
    let rows = long_view_rows(&mut page);
    assert_eq!(row_at(&rows, day - 200 * DAY_MS), ["6.5", "11.5", "2"]);
    assert_eq!(row_at(&rows, day - 300 * DAY_MS), ["99.5", "0.5", "1"]);
    assert_eq!(row_at(&rows, day - 301 * DAY_MS), ["–", "–", "0"]);
    let date = chrono::DateTime::from_timestamp_millis(day - 200 * DAY_MS).unwrap();
    assert_eq!(
        long_view_title(&mut page, day - 200 * DAY_MS),
        format!(
            "{}: CPU 6.5 %, RAM 11.5 %, 2 samples",
            date.format("%a, %b %-d, %Y")
        )
    );
    // A label under each first of a month, the year under January's.
    let months: Vec<String> = (0..365)
        .map(|index| chrono::DateTime::from_timestamp_millis(first + index * DAY_MS).unwrap())
        .filter(|date| date.format("%d").to_string() == "01")
        .map(|date| match date.format("%m").to_string().as_str() {
            "01" => date.format("%Y").to_string(),
            _ => date.format("%b").to_string(),
        })
        .collect();
    assert_eq!(long_view_labels(&mut page), months);

    // The views are a radio group: the left arrow key goes to 30 days.
    page.eval("document.querySelector('input[name=history-view][value=\"1y\"]').focus(); true");
    page.press_key("ArrowLeft", 37);
    page.wait_for(
        "document.querySelector('#history svg[data-view=\"30d\"]')",
        "the 30-day view, chosen with the keyboard",
    );
    assert_eq!(page.eval("location.search"), json!("?view=30d"));

    // A range the daemon refuses: its answer is shown in the view's card,
    // the other view's buckets are gone, and the charts above stay.
    page.eval(
        "window.realFetch = window.fetch; \
         window.fetch = (path, options) => \
           window.realFetch(String(path).replace(/from=[^&]*/, 'from=0'), options); \
         true",
    );
    page.eval("document.querySelector('input[name=history-view][value=\"1y\"]').click(); true");
    page.wait_for(
        "!document.getElementById('history-problem').hidden",
        "the refusal of the range",
    );
    let problem = page.eval("document.getElementById('history-problem').textContent");
    assert!(
        problem
            .as_str()
            .unwrap()
            .starts_with("The daemon answered 422: "),
        "{problem}"
    );
    assert_eq!(
        page.eval("document.querySelector('#history svg')"),
        Value::Null
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#history-table tbody tr').length"),
        json!(0)
    );
    assert_eq!(
        page.eval("document.getElementById('history-title').textContent"),
        json!("Last 365 days")
    );
    assert_eq!(
        page.eval("document.getElementById('problem').hidden"),
        json!(true)
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#hours rect.bucket').length"),
        json!(24)
    );
    assert_eq!(
        page.eval("document.getElementById('history').hidden"),
        json!(true)
    );

    // Once the daemon answers again, the view is back and the problem gone.
    page.eval("window.fetch = window.realFetch; true");
    page.eval("document.querySelector('input[name=history-view][value=\"7d\"]').click(); true");
    page.wait_for(
        "document.querySelector('#history svg[data-view=\"7d\"]')",
        "the 7-day view again",
    );
    assert_long_view(&mut page, &samples, now, HOUR_MS, 7 * 24);
    assert_eq!(
        page.eval("document.getElementById('history-problem').hidden"),
        json!(true)
    );
    assert_eq!(
        page.eval("document.getElementById('history').hidden"),
        json!(false)
    );
}
