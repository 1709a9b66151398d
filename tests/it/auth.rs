//! Bearer tokens: `ingest_token` guards POST and DELETE, `read_token` guards
//! reads of data and `/metrics`, `/health` stays open, and a refusal is a
//! JSON `401` with a `WWW-Authenticate: Bearer` challenge.

use rocket::http::{Header, Status};
use rocket::local::blocking::LocalResponse;
use serde_json::json;

use crate::daemon::Daemon;
use crate::support::{TestApp, error_message, read};

const INGEST_TOKEN: &str = "ingest-0123456789abcdef";
const READ_TOKEN: &str = "read-0123456789abcdef01";
const SAMPLE: &str = r#"{"cpu": 12.5, "ram": 40}"#;
const BATCH: &str = r#"[{"server": "web-2", "cpu": 5, "ram": 60}]"#;

fn app_with_tokens(ingest: Option<&str>, read: Option<&str>) -> TestApp {
    TestApp::with(|mut figment| {
        if let Some(token) = ingest {
            figment = figment.merge(("ingest_token", token));
        }
        if let Some(token) = read {
            figment = figment.merge(("read_token", token));
        }
        figment
    })
}

fn bearer(token: &str) -> Header<'static> {
    Header::new("Authorization", format!("Bearer {token}"))
}

/// A request to `uri` with `method`, with an `Authorization` header if given.
fn send<'c>(
    app: &'c TestApp,
    method: &str,
    uri: &str,
    authorization: Option<&str>,
) -> LocalResponse<'c> {
    let mut request = match method {
        "GET" => app.client.get(uri.to_owned()),
        "DELETE" => app.client.delete(uri.to_owned()),
        "POST" if uri.ends_with("/api/v1/samples") => app.client.post(uri.to_owned()).body(BATCH),
        "POST" => app.client.post(uri.to_owned()).body(SAMPLE),
        _ => unreachable!("{method}"),
    };
    if let Some(value) = authorization {
        request = request.header(Header::new("Authorization", value.to_owned()));
    }
    request.dispatch()
}

/// The response is the `401` a guard gives, with the given challenge.
fn assert_refused(response: LocalResponse<'_>, challenge: &str, message: &str) {
    assert_eq!(
        response.headers().get_one("WWW-Authenticate"),
        Some(challenge)
    );
    let (status, body) = read(response);
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(error_message(&body), message);
}

const NO_CREDENTIALS: &str = r#"Bearer realm="sperform""#;
const WRONG_TOKEN: &str = r#"Bearer realm="sperform", error="invalid_token""#;

const INGEST_ROUTES: [(&str, &str); 3] = [
    ("POST", "/api/v1/servers/web-1/samples"),
    ("POST", "/api/v1/samples"),
    ("DELETE", "/api/v1/servers/web-1"),
];
const READ_ROUTES: [&str; 3] = ["/api/v1/servers", "/api/v1/servers/web-1/load", "/metrics"];

#[test]
fn without_tokens_nothing_asks_for_one() {
    let app = TestApp::new();
    for (method, uri) in INGEST_ROUTES {
        let status = send(&app, method, uri, None).status();
        assert!(status.code < 300, "{method} {uri}: {status}");
    }
    assert_eq!(
        send(&app, "POST", "/api/v1/servers/web-1/samples", None).status(),
        Status::NoContent
    );
    for uri in READ_ROUTES {
        assert_eq!(send(&app, "GET", uri, None).status(), Status::Ok, "{uri}");
    }
}

#[test]
fn the_ingest_token_guards_every_post_and_delete() {
    let app = app_with_tokens(Some(INGEST_TOKEN), None);
    for (method, uri) in INGEST_ROUTES {
        assert_refused(
            send(&app, method, uri, None),
            NO_CREDENTIALS,
            "this request needs the ingest token: send `Authorization: Bearer <token>`",
        );
        assert_refused(
            send(
                &app,
                method,
                uri,
                Some("Bearer not-the-ingest-token-at-all"),
            ),
            WRONG_TOKEN,
            "the bearer token is not the ingest token",
        );
    }
    // Refused requests stored nothing.
    assert_eq!(app.stored_samples(), 0);

    let authorization = format!("Bearer {INGEST_TOKEN}");
    for (method, uri) in INGEST_ROUTES {
        let status = send(&app, method, uri, Some(&authorization)).status();
        assert_eq!(status, Status::NoContent, "{method} {uri}");
    }
    // The DELETE above came after the first POST: web-2 of the batch is left.
    assert_eq!(app.stored_samples(), 1);
    // Reading needs no token while only the ingest token is set.
    for uri in READ_ROUTES {
        let status = send(&app, "GET", uri, None).status();
        assert!(
            status == Status::Ok || status == Status::NotFound,
            "{uri}: {status}"
        );
    }
}

#[test]
fn the_read_token_guards_data_and_metrics_but_not_health() {
    let app = app_with_tokens(None, Some(READ_TOKEN));
    assert_eq!(
        send(&app, "POST", "/api/v1/servers/web-1/samples", None).status(),
        Status::NoContent
    );
    for uri in READ_ROUTES {
        assert_refused(
            send(&app, "GET", uri, None),
            NO_CREDENTIALS,
            "this request needs the read token: send `Authorization: Bearer <token>`",
        );
        assert_refused(
            send(&app, "GET", uri, Some(&format!("Bearer {INGEST_TOKEN}"))),
            WRONG_TOKEN,
            "the bearer token is not the read token",
        );
        let response = send(&app, "GET", uri, Some(&format!("Bearer {READ_TOKEN}")));
        assert_eq!(response.status(), Status::Ok, "{uri}");
    }
    let (status, body) = app.get("/health");
    assert_eq!((status, body), (Status::Ok, Some(json!({"status": "ok"}))));
}

#[test]
fn each_token_opens_only_its_own_door() {
    let app = app_with_tokens(Some(INGEST_TOKEN), Some(READ_TOKEN));
    let response = app
        .client
        .post("/api/v1/servers/web-1/samples")
        .header(bearer(READ_TOKEN))
        .body(SAMPLE)
        .dispatch();
    assert_eq!(response.status(), Status::Unauthorized);
    let response = app
        .client
        .post("/api/v1/servers/web-1/samples")
        .header(bearer(INGEST_TOKEN))
        .body(SAMPLE)
        .dispatch();
    assert_eq!(response.status(), Status::NoContent);
    let response = app
        .client
        .get("/api/v1/servers")
        .header(bearer(INGEST_TOKEN))
        .dispatch();
    assert_eq!(response.status(), Status::Unauthorized);
    let response = app
        .client
        .get("/api/v1/servers")
        .header(bearer(READ_TOKEN))
        .dispatch();
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(app.get("/health").0, Status::Ok);
}

#[test]
fn the_scheme_is_case_insensitive_and_anything_but_one_bearer_token_is_refused() {
    let app = app_with_tokens(Some(INGEST_TOKEN), None);
    let uri = "/api/v1/servers/web-1/samples";
    for accepted in [
        format!("bearer {INGEST_TOKEN}"),
        format!("BEARER  {INGEST_TOKEN}"),
    ] {
        let status = send(&app, "POST", uri, Some(&accepted)).status();
        assert_eq!(status, Status::NoContent, "{accepted}");
    }
    let malformed =
        "the Authorization header must be `Bearer <token>`, with the ingest token, once";
    for refused in [
        format!("Basic {INGEST_TOKEN}"),
        INGEST_TOKEN.to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        assert_refused(
            send(&app, "POST", uri, Some(&refused)),
            NO_CREDENTIALS,
            malformed,
        );
    }
    // A prefix or an extension of the token is wrong, not almost right.
    for wrong in [&INGEST_TOKEN[..10], &format!("{INGEST_TOKEN}x")] {
        let response = send(&app, "POST", uri, Some(&format!("Bearer {wrong}")));
        assert_refused(
            response,
            WRONG_TOKEN,
            "the bearer token is not the ingest token",
        );
    }
    let response = app
        .client
        .post(uri)
        .header(bearer(INGEST_TOKEN))
        .header(bearer(INGEST_TOKEN))
        .body(SAMPLE)
        .dispatch();
    assert_refused(response, NO_CREDENTIALS, malformed);
}

#[test]
fn a_refused_request_is_answered_before_its_body_is_judged() {
    let app = app_with_tokens(Some(INGEST_TOKEN), None);
    let response = app
        .client
        .post("/api/v1/servers/web%201/samples")
        .body("{not json")
        .dispatch();
    assert_eq!(response.status(), Status::Unauthorized);
}

#[test]
fn tokens_never_reach_the_log() {
    let mut daemon = Daemon::start_with(&[
        ("ROCKET_INGEST_TOKEN", INGEST_TOKEN),
        ("ROCKET_READ_TOKEN", READ_TOKEN),
    ]);
    let client = daemon.client();
    let wrong_guess = "guess-0123456789abcdef";
    for token in [INGEST_TOKEN, READ_TOKEN, wrong_guess] {
        let authorization = format!("Bearer {token}");
        let headers = [("Authorization", authorization.as_str())];
        client
            .try_request(
                "POST",
                "/api/v1/servers/web-1/samples",
                &headers,
                Some(SAMPLE),
            )
            .unwrap();
        client
            .try_request("GET", "/api/v1/servers", &headers, None)
            .unwrap();
    }
    daemon.signal("TERM");
    assert!(
        daemon
            .wait_for_exit(std::time::Duration::from_secs(15))
            .success()
    );
    let log = daemon.log();
    assert!(log.contains("ingest token set, read token set"), "{log}");
    for secret in [INGEST_TOKEN, READ_TOKEN, wrong_guess] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}
