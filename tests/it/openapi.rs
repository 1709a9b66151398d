//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document that names every
//! mounted route with its method and parameters, and the shapes they answer.

use rocket::http::{ContentType, Header, Status};
use serde_json::Value;

use crate::support::TestApp;

fn document(app: &TestApp) -> Value {
    let response = app.client.get("/api/v1/openapi.json").dispatch();
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.content_type(), Some(ContentType::JSON));
    serde_json::from_str(&response.into_string().unwrap()).unwrap()
}

/// A Rocket path pattern (`/api/v1/servers/<name>/load`, `/x/<path..>`) as
/// an OpenAPI path template (`/api/v1/servers/{name}/load`,
/// `/x/{path}/{rest}`). A `<path..>` route is ranked below a `<name>` one
/// on the same prefix, so it answers two or more segments; OpenAPI has no
/// template for those, and one `{path}` would make two identical paths.
fn openapi_path(rocket_path: &str) -> String {
    rocket_path
        .split('/')
        .map(|segment| match segment.strip_prefix('<') {
            Some(name) if name.ends_with("..>") => {
                format!("{{{}}}/{{rest}}", name.trim_end_matches("..>"))
            }
            Some(name) => format!("{{{}}}", name.trim_end_matches('>')),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Follows a `{"$ref": "#/components/schemas/X"}` to the schema it names.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected reference {reference}"));
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            found.push((path.clone(), method.clone(), operation));
        }
    }
    found
}

#[test]
fn every_mounted_route_is_in_the_openapi_document() {
    let app = TestApp::new();
    let doc = document(&app);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut checked = 0;
    for route in app.client.rocket().routes() {
        let path = openapi_path(route.uri.path());
        let method = route.method.as_str().to_ascii_lowercase();
        let operation = &doc["paths"][&path][&method];
        assert!(
            operation.is_object(),
            "{} {} (route {}) is not in the OpenAPI document",
            method,
            path,
            route.uri
        );
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = |name: &str, location: &str| {
            parameters
                .iter()
                .any(|p| p["name"] == name && p["in"] == location)
        };
        for segment in route.uri.path().split('/') {
            if let Some(name) = segment.strip_prefix('<') {
                let name = name.trim_end_matches('>').trim_end_matches("..");
                assert!(
                    has(name, "path"),
                    "{method} {path}: no path parameter {name}"
                );
            }
        }
        for field in route.uri.query().unwrap_or("").split('&') {
            // `<params..>` is a whole form; its fields are not named here.
            if let Some(name) = field.strip_prefix('<').filter(|f| !f.contains("..")) {
                let name = name.trim_end_matches('>');
                assert!(
                    has(name, "query"),
                    "{method} {path}: no query parameter {name}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} routes mounted");

    // ... and the document names no route that is not mounted.
    let mounted: Vec<(String, String)> = app
        .client
        .rocket()
        .routes()
        .map(|route| {
            (
                openapi_path(route.uri.path()),
                route.method.as_str().to_ascii_lowercase(),
            )
        })
        .collect();
    for (path, method, _) in operations(&doc) {
        assert!(
            mounted.contains(&(path.clone(), method.clone())),
            "{method} {path} is documented but not mounted"
        );
    }
}

#[test]
fn the_openapi_document_needs_no_token() {
    let app = TestApp::with(|figment| {
        figment
            .merge(("read_token", "read-secret-0123456789"))
            .merge(("ingest_token", "ingest-secret-0123456789"))
    });
    let doc = document(&app);
    assert_eq!(doc["info"]["title"], "sperform");
    // With a wrong token too: the document does not look at it.
    let response = app
        .client
        .get("/api/v1/openapi.json")
        .header(Header::new("Authorization", "Bearer wrong"))
        .dispatch();
    assert_eq!(response.status(), Status::Ok);
}

#[test]
fn the_openapi_document_describes_bodies_errors_and_security() {
    let app = TestApp::new();
    let doc = document(&app);

    // `/load` answers buckets with means, extremes and a count.
    let load = &doc["paths"]["/api/v1/servers/{name}/load"]["get"];
    let body = resolve(
        &doc,
        &load["responses"]["200"]["content"]["application/json"]["schema"],
    );
    for view in ["by_minute", "by_hour"] {
        let bucket = resolve(&doc, &body["properties"][view]["items"]);
        for field in [
            "start", "cpu", "ram", "cpu_min", "cpu_max", "ram_min", "ram_max", "samples",
        ] {
            assert!(
                bucket["properties"][field].is_object(),
                "{view} bucket lacks {field}: {bucket}"
            );
        }
    }
    let range = &doc["paths"]["/api/v1/servers/{name}/load/range"]["get"];
    let names: Vec<&str> = range["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["name", "from", "to", "step"]);

    // A sample's time is a string or a number.
    let sample = resolve(
        &doc,
        &doc["paths"]["/api/v1/servers/{name}/samples"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    let time = resolve(&doc, &sample["properties"]["time"]);
    let time = match time["oneOf"].as_array() {
        // `Option<Time>`: null or a reference to the time.
        Some(choices) if choices.iter().any(|c| c.get("$ref").is_some()) => choices
            .iter()
            .find_map(|c| c.get("$ref").map(|_| resolve(&doc, c)))
            .unwrap(),
        _ => time,
    };
    let kinds: Vec<&Value> = time["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("time is not a oneOf: {time}"))
        .iter()
        .map(|choice| &choice["type"])
        .collect();
    assert_eq!(kinds, ["string", "number"]);

    // Every JSON error is an ErrorBody, with the headers its status promises.
    let mut errors = 0;
    for (path, method, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            let Some(json) = response["content"].get("application/json") else {
                continue;
            };
            if !(status.starts_with('4') || status.starts_with('5')) || path == "/health" {
                continue;
            }
            // The Prometheus-compatible API answers its own failures in
            // Prometheus's envelope; its token refusals and Rocket's refusal
            // of a body that is not a form are ours.
            let prometheus = path.starts_with("/prometheus/") && status != "401" && status != "415";
            let expected = match prometheus {
                true => "#/components/schemas/PromErrorBody",
                false => "#/components/schemas/ErrorBody",
            };
            assert_eq!(json["schema"]["$ref"], expected, "{method} {path} {status}");
            if status == "401" {
                assert!(
                    response["headers"]["WWW-Authenticate"].is_object(),
                    "{method} {path} 401"
                );
            }
            if status == "503" && !prometheus {
                assert!(
                    response["headers"]["Retry-After"].is_object(),
                    "{method} {path} 503"
                );
            }
            errors += 1;
        }
    }
    assert!(errors > 30, "only {errors} error responses documented");
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    assert_eq!(error["properties"]["error"]["type"], "string");
    // ... which is what an error really looks like.
    let (status, body) = app.get("/api/v1/servers/no-such-server/load");
    assert_eq!(status, Status::NotFound);
    let body = body.unwrap();
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["error"]
    );
    assert!(doc["components"]["responses"]["MethodNotAllowed"]["headers"]["Allow"].is_object());

    // Bearer tokens, optional: data routes take the read token, writes the
    // ingest token; health, pages and the document none.
    for scheme in ["read_token", "ingest_token"] {
        let scheme = &doc["components"]["securitySchemes"][scheme];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
    }
    let security = |path: &str, method: &str| doc["paths"][path][method]["security"].clone();
    let optional = |name: &str| serde_json::json!([{}, { name: [] }]);
    assert_eq!(security("/api/v1/servers", "get"), optional("read_token"));
    assert_eq!(security("/metrics", "get"), optional("read_token"));
    assert_eq!(
        security("/api/v1/samples", "post"),
        optional("ingest_token")
    );
    assert_eq!(
        security("/api/v1/servers/{name}", "delete"),
        optional("ingest_token")
    );
    assert!(security("/health", "get").is_null());
    assert!(security("/api/v1/openapi.json", "get").is_null());
}

#[test]
fn the_openapi_document_states_the_constraints_the_daemon_enforces() {
    let app = TestApp::new();
    let doc = document(&app);
    let batch = &doc["paths"]["/api/v1/samples"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(batch["minItems"], 1, "{batch}");
    assert_eq!(batch["items"]["$ref"], "#/components/schemas/BatchEntry");
    assert_eq!(batch["maxItems"], 10_000, "{batch}");

    let parameter = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))["schema"]
            .clone()
    };
    let label = parameter("/prometheus/api/v1/label/{name}/values", "name");
    assert_eq!(label["pattern"], "^[A-Za-z_][A-Za-z0-9_]*$");
    let server = parameter("/api/v1/servers/{name}/load", "name");
    assert_eq!(server["pattern"], "^[A-Za-z0-9._:-]+$");
    assert_eq!(server["maxLength"], 253);

    // Every time parameter is the one time schema, a pattern.
    let time = &doc["components"]["schemas"]["TimeText"];
    assert_eq!(time["type"], "string");
    let pattern = time["pattern"].as_str().unwrap();
    for (path, name) in [
        ("/api/v1/servers/{name}/load/range", "from"),
        ("/api/v1/servers/{name}/load/range", "to"),
        ("/prometheus/api/v1/query_range", "start"),
    ] {
        assert_eq!(
            parameter(path, name)["pattern"].as_str(),
            Some(pattern),
            "{path} {name}"
        );
    }

    // A Prometheus POST without a form body is Rocket's 415, in our shape.
    let response = app.client.post("/prometheus/api/v1/query").dispatch();
    let (status, body) = crate::support::read(response);
    assert_eq!(status, Status::UnsupportedMediaType);
    assert_eq!(
        crate::support::error_message(&body),
        "unsupported media type"
    );
    let documented = &doc["paths"]["/prometheus/api/v1/query"]["post"]["responses"]["415"];
    assert_eq!(
        documented["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

/// Every `$ref` in `value`, recursively.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("$ref", Some(reference)) => found.push(reference.to_owned()),
                    _ => references(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

#[test]
fn every_reference_in_the_openapi_document_resolves() {
    let app = TestApp::new();
    let doc = document(&app);
    let mut found = Vec::new();
    references(&doc, &mut found);
    assert!(found.len() > 20, "only {} references", found.len());
    for reference in found {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(
            doc.pointer(pointer).is_some_and(Value::is_object),
            "{reference} names nothing"
        );
    }
}
