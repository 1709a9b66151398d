//! Turns every error Rocket raises itself (no route, unreadable request,
//! panics) into the same JSON error body the handlers use.

use rocket::Request;
use rocket::http::Status;

use crate::error::ApiError;

#[rocket::catch(default)]
pub fn default_catcher(status: Status, request: &Request<'_>) -> ApiError {
    let method = request.method().as_str();
    let path = request.uri().path().as_str();
    if status == Status::NotFound {
        let allowed = methods_for(request);
        if !allowed.is_empty() && !allowed.iter().any(|allowed| allowed == method) {
            return ApiError::method_not_allowed(method, path, &allowed);
        }
        return ApiError::not_found(format!("no such endpoint: {method} {path}"));
    }
    let message = match status.code {
        400 => "the request could not be understood".to_owned(),
        413 => "the request body is too large".to_owned(),
        422 => "the request is well-formed but its content is invalid".to_owned(),
        500 => "the daemon failed to handle the request; see its log".to_owned(),
        _ => status.reason_lossy().to_lowercase(),
    };
    ApiError::new(status, message)
}

/// The methods of the routes whose path pattern matches the request's path:
/// if there are any, the path exists and only the method was wrong.
fn methods_for(request: &Request<'_>) -> Vec<String> {
    let path: Vec<&str> = request.uri().path().segments().collect();
    let mut methods: Vec<String> = request
        .rocket()
        .routes()
        .filter(|route| pattern_matches(route.uri.path(), &path))
        .map(|route| route.method.as_str().to_owned())
        .collect();
    methods.sort();
    methods.dedup();
    methods
}

/// Matches path segments against a route pattern such as
/// `/api/v1/servers/<name>/load`, where `<x>` takes one segment and `<x..>`
/// the rest.
fn pattern_matches(pattern: &str, path: &[&str]) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    for (index, part) in pattern.iter().enumerate() {
        if part.starts_with('<') && part.ends_with("..>") {
            return true;
        }
        let Some(segment) = path.get(index) else {
            return false;
        };
        let dynamic = part.starts_with('<') && part.ends_with('>');
        if !dynamic && part != segment {
            return false;
        }
    }
    pattern.len() == path.len()
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    #[test]
    fn patterns_match_by_segment() {
        let pattern = "/api/v1/servers/<name>/load";
        assert!(pattern_matches(
            pattern,
            &["api", "v1", "servers", "web-1", "load"]
        ));
        assert!(!pattern_matches(
            pattern,
            &["api", "v1", "servers", "web-1"]
        ));
        assert!(!pattern_matches(
            pattern,
            &["api", "v1", "servers", "web-1", "load", "x"]
        ));
        assert!(!pattern_matches(
            pattern,
            &["api", "v2", "servers", "web-1", "load"]
        ));
        assert!(pattern_matches("/files/<path..>", &["files", "a", "b"]));
        assert!(pattern_matches("/health", &["health"]));
    }
}
