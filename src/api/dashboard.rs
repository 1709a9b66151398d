//! The built-in web dashboard: two HTML pages (every server at a glance,
//! one server's charts) and the CSS, JavaScript and icon they load, all
//! embedded in the binary. The pages carry no data: their scripts fetch it
//! from the JSON API (with the read token, when one is configured) and
//! draw it as inline SVG.
//!
//! Pages are `no-cache`; assets live under `/assets/<version>/`, where the
//! version is a hash of their contents, so they can be cached for a year.
//! Every response carries a `Content-Security-Policy` that allows scripts,
//! styles and images from the daemon only, and nothing inline.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::LazyLock;

use rocket::State;
use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};

use crate::config::Settings;
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::model::ServerName;
use crate::store::Store;

/// What the pages may load and do: their own scripts, styles and images,
/// requests to the daemon itself, nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Assets are cached for a year: a new version of any of them is a new path.
const ASSET_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Pages are revalidated on every visit, so they always name current assets.
const PAGE_CACHE_CONTROL: &str = "no-cache";

const OVERVIEW_PAGE: &str = include_str!("dashboard/overview.html");
const SERVER_PAGE: &str = include_str!("dashboard/server.html");
const ERROR_PAGE: &str = include_str!("dashboard/error.html");

/// A static file the pages load.
struct Asset {
    name: &'static str,
    kind: AssetKind,
    body: &'static [u8],
}

#[derive(Clone, Copy)]
enum AssetKind {
    Css,
    JavaScript,
    Svg,
}

impl AssetKind {
    fn content_type(self) -> ContentType {
        match self {
            AssetKind::Css => ContentType::CSS,
            AssetKind::JavaScript => ContentType::JavaScript,
            AssetKind::Svg => ContentType::SVG,
        }
    }
}

const ASSETS: [Asset; 5] = [
    Asset {
        name: "app.css",
        kind: AssetKind::Css,
        body: include_bytes!("dashboard/app.css"),
    },
    Asset {
        name: "common.js",
        kind: AssetKind::JavaScript,
        body: include_bytes!("dashboard/common.js"),
    },
    Asset {
        name: "overview.js",
        kind: AssetKind::JavaScript,
        body: include_bytes!("dashboard/overview.js"),
    },
    Asset {
        name: "server.js",
        kind: AssetKind::JavaScript,
        body: include_bytes!("dashboard/server.js"),
    },
    Asset {
        name: "icon.svg",
        kind: AssetKind::Svg,
        body: include_bytes!("dashboard/icon.svg"),
    },
];

/// The version in asset paths: a hash of every asset's name and contents,
/// so any change to any of them gives new paths (and a fresh download).
pub static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Fnv1a::default();
    for asset in &ASSETS {
        hash.write(asset.name.as_bytes());
        hash.write(&[0]);
        hash.write(asset.body);
    }
    format!("{:012x}", hash.0 & 0xffff_ffff_ffff)
});

/// `GET /`: every server with its current load and last hour.
#[utoipa::path(
    get,
    path = "/",
    tag = "dashboard",
    summary = "The dashboard's overview page",
    responses((status = 200, description = "HTML page; its script reads the JSON API", body = String, content_type = "text/html")),
)]
#[rocket::get("/")]
pub fn overview_page() -> Page {
    Page::new(Status::Ok, fill(OVERVIEW_PAGE, &[]))
}

/// `GET /servers/<name>`: one server's charts, or a 404 page for a server
/// that never reported. With a read token configured the page cannot tell
/// (that would reveal server names to anyone), so it is served and its
/// script says so once the API has answered.
#[utoipa::path(
    get,
    path = "/servers/{name}",
    tag = "dashboard",
    summary = "The dashboard's page of one server",
    params(("name" = String, Path, description = "Server name")),
    responses(
        (status = 200, description = "HTML page; its script reads the JSON API", body = String, content_type = "text/html"),
        (status = 404, description = "HTML page: not a server name, or (without a read token) no such server", body = String, content_type = "text/html"),
        (status = 503, description = "HTML page: the database is busy", body = String, content_type = "text/html"),
        (status = 500, description = "HTML page: storage failure", body = String, content_type = "text/html"),
    ),
)]
#[rocket::get("/servers/<name>")]
pub async fn server_page(name: &str, store: &State<Store>, settings: &State<Settings>) -> Page {
    let server = match ServerName::parse(name) {
        Ok(server) => server,
        Err(err) => return Page::not_found(&format!("{name:?} is not a server name: {err}")),
    };
    if settings.read_token.is_none() {
        match store.has_server(server.clone()).await {
            Ok(true) => {}
            Ok(false) => return Page::not_found(&unknown_server(&server)),
            Err(err) => return Page::error(ApiError::from(err)),
        }
    }
    Page::new(
        Status::Ok,
        fill(SERVER_PAGE, &[("server", &escape_html(server.as_str()))]),
    )
}

/// Any deeper path under `/servers/`: no such page.
#[utoipa::path(
    get,
    path = "/servers/{_path}/{rest}",
    tag = "dashboard",
    summary = "Any deeper path under /servers/: no such page",
    params(
        ("_path" = String, Path, description = "The first segment under /servers/"),
        ("rest" = String, Path, description = "One or more further segments"),
    ),
    responses((status = 404, description = "HTML page", body = String, content_type = "text/html")),
)]
#[rocket::get("/servers/<_path..>", rank = 2)]
pub fn no_such_server_page(_path: PathBuf) -> Page {
    Page::not_found("There is no such page.")
}

/// `GET /assets/<version>/<file>`: an embedded asset, if `version` is the
/// current one (an older page asking for older assets gets a 404, not new
/// contents under an old name cached for a year).
#[utoipa::path(
    get,
    path = "/assets/{version}/{file}",
    tag = "dashboard",
    summary = "A dashboard asset",
    description = "Cached for a year: `version` is a hash of the assets, and only the current one is served.",
    params(
        ("version" = String, Path, description = "The current assets' version, as the pages name it"),
        ("file" = String, Path, description = "One of `app.css`, `common.js`, `overview.js`, `server.js`, `icon.svg`"),
    ),
    responses(
        (status = 200, description = "The asset", content(
            (String = "text/css"),
            (String = "text/javascript"),
            (String = "image/svg+xml"),
        )),
        (status = 404, description = "No such asset, or another version", body = ErrorBody),
    ),
)]
#[rocket::get("/assets/<version>/<file>")]
pub fn asset(version: &str, file: &str) -> Result<AssetResponse, ApiError> {
    ASSETS
        .iter()
        .find(|asset| asset.name == file && version == ASSET_VERSION.as_str())
        .map(AssetResponse)
        .ok_or_else(|| ApiError::not_found(format!("no such asset: {version}/{file}")))
}

/// An HTML page with the dashboard's security and cache headers.
#[derive(Debug)]
pub struct Page {
    status: Status,
    html: String,
}

impl Page {
    fn new(status: Status, html: String) -> Page {
        Page { status, html }
    }

    /// The 404 page, saying `message` (plain text; escaped here).
    fn not_found(message: &str) -> Page {
        Self::error(ApiError::not_found(message))
    }

    /// An error as a page: the status and message of `error`.
    fn error(error: ApiError) -> Page {
        let title = format!("{} {}", error.status.code, error.status.reason_lossy());
        let html = fill(
            ERROR_PAGE,
            &[
                ("title", &escape_html(&title)),
                ("message", &escape_html(&error.message)),
            ],
        );
        Page::new(error.status, html)
    }
}

impl<'r> Responder<'r, 'static> for Page {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build();
        response
            .status(self.status)
            .header(ContentType::HTML)
            .header(Header::new("Cache-Control", PAGE_CACHE_CONTROL))
            .sized_body(self.html.len(), Cursor::new(self.html));
        with_security_headers(&mut response);
        response.ok()
    }
}

/// An embedded asset with its type and a year-long cache lifetime.
pub struct AssetResponse(&'static Asset);

impl<'r> Responder<'r, 'static> for AssetResponse {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let Asset { kind, body, .. } = self.0;
        let mut response = Response::build();
        response
            .status(Status::Ok)
            .header(kind.content_type())
            .header(Header::new("Cache-Control", ASSET_CACHE_CONTROL))
            .sized_body(body.len(), Cursor::new(*body));
        with_security_headers(&mut response);
        response.ok()
    }
}

fn with_security_headers(response: &mut response::Builder<'_>) {
    response
        .header(Header::new(
            "Content-Security-Policy",
            CONTENT_SECURITY_POLICY,
        ))
        .header(Header::new("X-Content-Type-Options", "nosniff"))
        .header(Header::new("Referrer-Policy", "no-referrer"))
        .header(Header::new("X-Frame-Options", "DENY"));
}

fn unknown_server(server: &ServerName) -> String {
    format!("No server named {:?} has reported.", server.as_str())
}

/// `template` with `{{assets}}` replaced by the assets' base path and each
/// `{{key}}` by its value, which must already be escaped for HTML. One
/// pass: text a value brings in is never taken for a placeholder.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let assets = format!("/assets/{}", *ASSET_VERSION);
    let mut html = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        html.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            rest = &rest[open..];
            break;
        };
        let key = &after[..close];
        let value = match key {
            "assets" => Some(assets.as_str()),
            _ => values
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| *value),
        };
        match value {
            Some(value) => html.push_str(value),
            None => html.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    html.push_str(rest);
    html
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's
/// hasher, so the same assets always get the same version.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_html(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn values_are_filled_in_once() {
        assert_eq!(
            fill("<p>{{a}} {{b}} {{c}}", &[("a", "{{b}}"), ("b", "B")]),
            "<p>{{b}} B {{c}}"
        );
        assert_eq!(fill("{{a", &[("a", "A")]), "{{a");
    }

    #[test]
    fn every_placeholder_of_every_page_is_filled() {
        let values = [("server", "web-1"), ("title", "404"), ("message", "gone")];
        for page in [OVERVIEW_PAGE, SERVER_PAGE, ERROR_PAGE] {
            let html = fill(page, &values);
            assert!(!html.contains("{{"), "{html}");
            assert!(html.contains(&format!("/assets/{}/app.css", *ASSET_VERSION)));
        }
    }

    #[test]
    fn the_asset_version_is_twelve_hex_digits() {
        assert_eq!(ASSET_VERSION.len(), 12);
        assert!(ASSET_VERSION.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
