//! Rocket's own errors come back as the same JSON as ours, and health.

use rocket::http::{ContentType, Method, Status};
use serde_json::json;
use sperform::store::Store;

use crate::support::{TestApp, error_message, read};

#[test]
fn an_unknown_route_is_a_json_404() {
    let app = TestApp::new();
    let (status, body) = app.get("/api/v2/servers");
    assert_eq!(status, Status::NotFound);
    assert_eq!(
        error_message(&body),
        "no such endpoint: GET /api/v2/servers"
    );
    // `/` is the dashboard; any other unknown path is still a JSON 404.
    let (status, body) = app.get("/no-such-page");
    assert_eq!(status, Status::NotFound);
    assert_eq!(error_message(&body), "no such endpoint: GET /no-such-page");
}

#[test]
fn a_wrong_method_is_a_405_that_lists_the_allowed_ones() {
    let app = TestApp::new();
    let response = app.client.put("/api/v1/servers/web-1/load").dispatch();
    assert_eq!(response.headers().get_one("Allow"), Some("GET"));
    let (status, body) = read(response);
    assert_eq!(status, Status::MethodNotAllowed);
    assert_eq!(
        error_message(&body),
        "PUT is not allowed on /api/v1/servers/web-1/load; allowed: GET"
    );
    let response = app.client.get("/api/v1/samples").dispatch();
    assert_eq!(response.headers().get_one("Allow"), Some("POST"));
    assert_eq!(response.status(), Status::MethodNotAllowed);
    let response = app.client.post("/api/v1/servers/web-1").dispatch();
    assert_eq!(response.headers().get_one("Allow"), Some("DELETE"));
    assert_eq!(response.status(), Status::MethodNotAllowed);
    // Every other method Rocket knows, on every kind of route.
    for method in [
        Method::Patch,
        Method::Options,
        Method::Trace,
        Method::Connect,
    ] {
        for (path, allowed) in [
            ("/health", "GET"),
            ("/api/v1/samples", "POST"),
            ("/prometheus/api/v1/query", "GET, POST"),
        ] {
            let response = app.client.req(method, path).dispatch();
            assert_eq!(
                response.status(),
                Status::MethodNotAllowed,
                "{method} {path}"
            );
            assert_eq!(
                response.headers().get_one("Allow"),
                Some(allowed),
                "{method} {path}"
            );
        }
    }
}

#[test]
fn health_reports_ok_while_the_database_answers() {
    let app = TestApp::new();
    let response = app.client.get("/health").dispatch();
    assert_eq!(response.content_type(), Some(ContentType::JSON));
    assert_eq!(read(response), (Status::Ok, Some(json!({"status": "ok"}))));
}

#[test]
fn a_stopped_writer_turns_health_and_ingest_into_503s() {
    let app = TestApp::new();
    app.client.rocket().state::<Store>().unwrap().close();
    let (status, body) = app.get("/health");
    assert_eq!(status, Status::ServiceUnavailable);
    assert_eq!(
        body.unwrap(),
        json!({"status": "unavailable", "reason": "the daemon is shutting down"})
    );
    let response = app
        .client
        .post("/api/v1/servers/web-1/samples")
        .body(r#"{"cpu": 1, "ram": 1}"#)
        .dispatch();
    assert_eq!(response.headers().get_one("Retry-After"), Some("1"));
    let (status, body) = read(response);
    assert_eq!(status, Status::ServiceUnavailable);
    assert_eq!(error_message(&body), "the daemon is shutting down");
    assert_eq!(app.stored_samples(), 0);
}
