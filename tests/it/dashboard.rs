//! The dashboard's HTML routes and assets: statuses, content types, cache
//! and security headers, escaping, the 404 page. What the pages draw is
//! checked in a real browser (`browser.rs`).

use rocket::http::{ContentType, Status};
use rocket::local::blocking::LocalResponse;
use serde_json::json;

use crate::support::TestApp;

const READ_TOKEN: &str = "read-0123456789abcdef01";

/// Status, content type and text of a response.
fn page(response: LocalResponse<'_>) -> (Status, Option<ContentType>, String) {
    let status = response.status();
    let content_type = response.content_type();
    (
        status,
        content_type,
        response.into_string().unwrap_or_default(),
    )
}

fn get_page(app: &TestApp, uri: &str) -> (Status, Option<ContentType>, String) {
    page(app.client.get(uri.to_owned()).dispatch())
}

/// The `/assets/...` paths a page loads.
fn asset_paths(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_owned)
        .collect()
}

/// Headers every dashboard response carries.
fn assert_security_headers(response: &LocalResponse<'_>) {
    let policy = response
        .headers()
        .get_one("Content-Security-Policy")
        .expect("a Content-Security-Policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(
        response.headers().get_one("X-Content-Type-Options"),
        Some("nosniff")
    );
}

fn post_sample(app: &TestApp, server: &str) {
    let (status, body) = app.post_sample(server, json!({"cpu": 12.5, "ram": 40}));
    assert_eq!(status, Status::NoContent, "{body:?}");
}

#[test]
fn the_overview_page_is_html_revalidated_on_every_visit() {
    let app = TestApp::new();
    let response = app.client.get("/").dispatch();
    assert_security_headers(&response);
    assert_eq!(
        response.headers().get_one("Cache-Control"),
        Some("no-cache")
    );
    let (status, content_type, html) = page(response);
    assert_eq!(status, Status::Ok);
    assert_eq!(content_type, Some(ContentType::HTML));
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<title>Servers · sperform</title>"));
    let assets = asset_paths(&html);
    assert!(
        assets.iter().any(|path| path.ends_with("/overview.js")),
        "{assets:?}"
    );
    assert!(assets.iter().any(|path| path.ends_with("/app.css")));
}

#[test]
fn pages_hold_no_inline_script_or_style_and_scripts_write_no_markup() {
    let app = TestApp::new();
    post_sample(&app, "web-1");
    let mut texts = Vec::new();
    for uri in ["/", "/servers/web-1", "/servers/nope"] {
        let (_, _, html) = get_page(&app, uri);
        for forbidden in ["<style", " style=", "javascript:", " onload=", " onclick="] {
            assert!(!html.contains(forbidden), "{uri} holds {forbidden}");
        }
        // Every script is a file of its own.
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script type=\"module\" src=\"/assets/")
                .count(),
            "{uri}"
        );
        texts.push(html);
    }
    for path in asset_paths(&texts[0]).iter().chain(&asset_paths(&texts[1])) {
        if !path.ends_with(".js") {
            continue;
        }
        let (_, _, script) = get_page(&app, path);
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!script.contains(sink), "{path} uses {sink}");
        }
    }
}

#[test]
fn assets_have_their_types_and_are_cached_for_a_year() {
    let app = TestApp::new();
    post_sample(&app, "web-1");
    let (_, _, html) = get_page(&app, "/");
    let (_, _, server_html) = get_page(&app, "/servers/web-1");
    let mut paths = asset_paths(&html);
    paths.extend(asset_paths(&server_html));
    paths.sort();
    paths.dedup();
    let mut seen = Vec::new();
    for path in &paths {
        let response = app.client.get(path.clone()).dispatch();
        assert_eq!(response.status(), Status::Ok, "{path}");
        assert_security_headers(&response);
        assert_eq!(
            response.headers().get_one("Cache-Control"),
            Some("public, max-age=31536000, immutable"),
            "{path}"
        );
        let expected = match path.rsplit_once('.').unwrap().1 {
            "css" => ContentType::CSS,
            "js" => ContentType::JavaScript,
            "svg" => ContentType::SVG,
            other => panic!("unexpected asset type {other}"),
        };
        assert_eq!(response.content_type(), Some(expected), "{path}");
        assert!(!response.into_bytes().unwrap().is_empty());
        seen.push(path.rsplit_once('/').unwrap().1.to_owned());
    }
    assert_eq!(
        seen,
        [
            "app.css",
            "common.js",
            "icon.svg",
            "overview.js",
            "server.js"
        ]
    );
}

#[test]
fn assets_of_another_version_or_name_are_not_found() {
    let app = TestApp::new();
    let (_, _, html) = get_page(&app, "/");
    let css = asset_paths(&html)
        .into_iter()
        .find(|path| path.ends_with("/app.css"))
        .unwrap();
    let (_, version_and_file) = css.split_at("/assets/".len());
    let stale = format!(
        "/assets/000000000000/{}",
        version_and_file.split_once('/').unwrap().1
    );
    assert_ne!(stale, css);
    for path in [stale, css.replace("app.css", "nope.css")] {
        let response = app.client.get(path.clone()).dispatch();
        assert_eq!(response.status(), Status::NotFound, "{path}");
        assert_eq!(response.content_type(), Some(ContentType::JSON), "{path}");
    }
}

#[test]
fn a_known_server_has_a_page() {
    let app = TestApp::new();
    post_sample(&app, "web-1.example.com");
    let response = app.client.get("/servers/web-1.example.com").dispatch();
    assert_security_headers(&response);
    assert_eq!(
        response.headers().get_one("Cache-Control"),
        Some("no-cache")
    );
    let (status, content_type, html) = page(response);
    assert_eq!(status, Status::Ok);
    assert_eq!(content_type, Some(ContentType::HTML));
    assert!(html.contains("<title>web-1.example.com · sperform</title>"));
    assert!(html.contains("data-server=\"web-1.example.com\""));
    assert!(html.contains("<h1>web-1.example.com</h1>"));
    assert!(asset_paths(&html).iter().any(|p| p.ends_with("/server.js")));
}

#[test]
fn a_server_page_offers_the_long_views_with_seven_days_first() {
    let app = TestApp::new();
    post_sample(&app, "web-1");
    let (status, _, html) = get_page(&app, "/servers/web-1");
    assert_eq!(status, Status::Ok);
    let views: Vec<&str> = html
        .split("<input type=\"radio\" name=\"history-view\" value=\"")
        .skip(1)
        .map(|rest| rest.split('>').next().unwrap_or_default())
        .collect();
    assert_eq!(views, ["7d\" checked", "30d\"", "1y\""], "{html}");
    assert!(html.contains("<div id=\"history\" class=\"chart\"></div>"));
    assert!(html.contains("<table id=\"history-table\" class=\"values\">"));
}

#[test]
fn an_unknown_server_is_a_404_page() {
    let app = TestApp::new();
    post_sample(&app, "web-1");
    for (uri, message) in [
        (
            "/servers/web-2",
            "No server named &quot;web-2&quot; has reported.",
        ),
        ("/servers/web-1/load", "There is no such page."),
    ] {
        let response = app.client.get(uri).dispatch();
        assert_security_headers(&response);
        let (status, content_type, html) = page(response);
        assert_eq!(status, Status::NotFound, "{uri}");
        assert_eq!(content_type, Some(ContentType::HTML), "{uri}");
        assert!(html.contains("<h1>404 Not Found</h1>"), "{html}");
        assert!(html.contains(message), "{html}");
        assert!(html.contains("<a href=\"/\">All servers</a>"));
        // A 404 page loads no script.
        assert!(!html.contains("<script"), "{html}");
    }
    // The API keeps answering JSON.
    let (status, content_type, _) = get_page(&app, "/api/v1/servers/web-2/load");
    assert_eq!(status, Status::NotFound);
    assert_eq!(content_type, Some(ContentType::JSON));
}

#[test]
fn markup_in_a_page_path_comes_back_as_text() {
    let app = TestApp::new();
    let (status, content_type, html) = get_page(
        &app,
        "/servers/%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E%3Cimg%20src%3Dx%3E",
    );
    assert_eq!(status, Status::NotFound);
    assert_eq!(content_type, Some(ContentType::HTML));
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("&quot;&lt;script&gt;alert(\\&quot;x\\&quot;)&lt;/script&gt;&lt;img src=x&gt;&quot; is not a server name"),
        "{html}"
    );
}

#[test]
fn with_a_read_token_pages_are_served_but_no_data() {
    let app = TestApp::with(|figment| figment.merge(("read_token", READ_TOKEN)));
    post_sample(&app, "web-1");
    // The pages hold no data; their scripts ask for the token. A server
    // page cannot tell a known server from an unknown one without it.
    for uri in ["/", "/servers/web-1", "/servers/web-2"] {
        let (status, content_type, _) = get_page(&app, uri);
        assert_eq!(status, Status::Ok, "{uri}");
        assert_eq!(content_type, Some(ContentType::HTML), "{uri}");
    }
    let (status, _, html) = get_page(&app, "/servers/web%201");
    assert_eq!(status, Status::NotFound);
    assert!(html.contains("is not a server name"));
    for uri in ["/api/v1/overview", "/api/v1/servers/web-1/load"] {
        assert_eq!(get_page(&app, uri).0, Status::Unauthorized, "{uri}");
    }
}

#[test]
fn pages_answer_head_and_refuse_other_methods() {
    let app = TestApp::new();
    let response = app.client.head("/").dispatch();
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.content_type(), Some(ContentType::HTML));
    let response = app.client.post("/").dispatch();
    assert_eq!(response.status(), Status::MethodNotAllowed);
    assert_eq!(response.headers().get_one("Allow"), Some("GET"));
}
