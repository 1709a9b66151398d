//! The servers list and deleting a server.

use rocket::http::Status;
use serde_json::json;
use sperform::model::MINUTE_MS;

use crate::support::{TestApp, at, base_hour, error_message};

#[test]
fn the_list_is_sorted_by_name_with_extent_and_count() {
    let app = TestApp::new();
    let base = base_hour();
    let (status, body) = app.get("/api/v1/servers");
    assert_eq!((status, body), (Status::Ok, Some(json!([]))));
    let batch = json!([
        {"server": "web-2", "cpu": 1, "ram": 1, "time": at(base, 250).to_rfc3339()},
        {"server": "db-1", "cpu": 1, "ram": 1, "time": at(base, MINUTE_MS).to_rfc3339()},
        {"server": "web-2", "cpu": 1, "ram": 1, "time": at(base, 3 * MINUTE_MS).to_rfc3339()},
        {"server": "web-2", "cpu": 1, "ram": 1, "time": at(base, 2 * MINUTE_MS).to_rfc3339()},
        {"server": "Web-10", "cpu": 1, "ram": 1, "time": base.to_rfc3339()},
    ]);
    assert_eq!(
        app.post("/api/v1/samples", batch.to_string()).0,
        Status::NoContent
    );
    let (status, body) = app.get("/api/v1/servers");
    assert_eq!(status, Status::Ok);
    assert_eq!(
        body.unwrap(),
        json!([
            {"name": "Web-10", "first_seen": base.to_rfc3339(), "last_seen": base.to_rfc3339(), "samples": 1},
            {"name": "db-1", "first_seen": at(base, MINUTE_MS).to_rfc3339(),
             "last_seen": at(base, MINUTE_MS).to_rfc3339(), "samples": 1},
            {"name": "web-2", "first_seen": at(base, 250).to_rfc3339(),
             "last_seen": at(base, 3 * MINUTE_MS).to_rfc3339(), "samples": 3},
        ])
    );
    assert!(body_has_millis(&app));
}

/// `first_seen` keeps its milliseconds: `...00.250Z`.
fn body_has_millis(app: &TestApp) -> bool {
    let (_, body) = app.get("/api/v1/servers");
    body.unwrap()[2]["first_seen"]
        .as_str()
        .unwrap()
        .ends_with(":00.250Z")
}

#[test]
fn an_unknown_server_has_no_load() {
    let app = TestApp::new();
    let (status, body) = app.get("/api/v1/servers/web-9/load");
    assert_eq!(status, Status::NotFound);
    assert_eq!(
        error_message(&body),
        "no server named \"web-9\" has reported"
    );
    let (status, body) = app.get("/api/v1/servers/web%209/load");
    assert_eq!(status, Status::UnprocessableEntity);
    assert!(error_message(&body).starts_with("server name may only contain"));
}

#[test]
fn deleting_a_server_removes_it_and_all_its_samples() {
    let app = TestApp::new();
    let base = base_hour();
    for (server, offset) in [("web-1", 0), ("web-1", 1), ("web-2", 2)] {
        let body = json!({"cpu": 1, "ram": 1, "time": at(base, offset).to_rfc3339()});
        assert_eq!(app.post_sample(server, body).0, Status::NoContent);
    }
    let (status, body) = app.delete("/api/v1/servers/web-1");
    assert_eq!((status, body), (Status::NoContent, None));
    assert_eq!(app.get("/api/v1/servers/web-1/load").0, Status::NotFound);
    assert_eq!(app.stored_samples(), 1);
    assert_eq!(app.stored_servers(), 1);
    let (_, list) = app.get("/api/v1/servers");
    assert_eq!(list.unwrap()[0]["name"], "web-2");

    let (status, body) = app.delete("/api/v1/servers/web-1");
    assert_eq!(status, Status::NotFound);
    assert_eq!(
        error_message(&body),
        "no server named \"web-1\" has reported"
    );
    let (status, _) = app.delete("/api/v1/servers/web%201");
    assert_eq!(status, Status::UnprocessableEntity);

    // A server that reports again after deletion starts afresh.
    let body = json!({"cpu": 7, "ram": 8, "time": at(base, 5).to_rfc3339()});
    assert_eq!(app.post_sample("web-1", body).0, Status::NoContent);
    assert_eq!(
        app.stored_rows("web-1"),
        vec![(base.millis() + 5, 7.0, 8.0)]
    );
}
