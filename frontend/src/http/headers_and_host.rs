//! Layers every HTTP response gets: request ids, security headers, and the
//! Host check (DNS-rebinding protection) for the routes beside the MCP
//! endpoint, which rmcp already checks itself with the same list.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds `x-request-id` (kept when the client sent one) to every request and
/// response, and the security headers to every response.
pub fn harden(router: Router) -> Router {
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    let mut router = router;
    for (name, value) in fixed {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
        // Answers about tools and tokens must not be cached by browsers or proxies.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Allowed `Host` values: `name` (any port) or `name:port`. Empty allows all.
#[derive(Debug, Clone)]
pub struct AllowedHosts(pub Arc<Vec<String>>);

/// Refuses requests whose Host is not allowed, with 403 as rmcp does.
pub async fn check_host(State(allowed): State<AllowedHosts>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if host.is_some_and(|host| host_allowed(host, &allowed.0)) {
        next.run(request).await
    } else {
        (StatusCode::FORBIDDEN, "Forbidden: Host header is not allowed").into_response()
    }
}

fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some((name, port)) = split_authority(host) else {
        return false;
    };
    allowed
        .iter()
        .map(|entry| split_authority(entry).unwrap_or_else(|| (bare_host(entry), None)))
        .any(|(allowed_name, allowed_port)| allowed_name == name && allowed_port.is_none_or(|p| Some(p) == port))
}

/// An entry that is not an authority, such as `::1`: a host name alone.
fn bare_host(entry: &str) -> String {
    entry
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// `host[:port]` → lower-case host without brackets, and the port.
fn split_authority(text: &str) -> Option<(String, Option<u16>)> {
    let authority: axum::http::uri::Authority = text.trim().parse().ok()?;
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some((name, authority.port_u16()))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::middleware;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn get_request(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    fn routes() -> Router {
        Router::new().route("/probe", get(|| async { "ok" }))
    }

    #[tokio::test]
    async fn every_answer_gets_the_security_headers_and_a_request_id() {
        for path in ["/probe", "/no-such-route"] {
            let response = harden(routes()).oneshot(get_request(path, &[])).await.unwrap();
            let headers = response.headers();
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                "default-src 'none'; frame-ancestors 'none'",
                "{path}"
            );
            let id = headers[&REQUEST_ID].to_str().unwrap();
            assert_eq!(id.len(), 36, "a UUID: {id}");
        }
        let response = harden(routes())
            .oneshot(get_request("/probe", &[("x-request-id", "client-chosen-id")]))
            .await
            .unwrap();
        assert_eq!(response.headers()[&REQUEST_ID], "client-chosen-id");
    }

    #[tokio::test]
    async fn the_host_check_refuses_foreign_hosts_with_403() {
        let app = routes().layer(middleware::from_fn_with_state(
            AllowedHosts(Arc::new(allowed(&["localhost", "::1"]))),
            check_host,
        ));
        for host in ["localhost", "localhost:8788", "[::1]:8788"] {
            let response = app
                .clone()
                .oneshot(get_request("/probe", &[("host", host)]))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{host}");
        }
        let absolute = app
            .clone()
            .oneshot(get_request("http://localhost:8788/probe", &[]))
            .await
            .unwrap();
        assert_eq!(
            absolute.status(),
            StatusCode::OK,
            "the authority of an absolute URL counts as its Host"
        );
        for headers in [&[("host", "rebound.evil.example")][..], &[]] {
            let response = app.clone().oneshot(get_request("/probe", headers)).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
            let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
            assert_eq!(body, "Forbidden: Host header is not allowed");
        }
    }

    fn allowed(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn hosts_match_by_name_and_optional_port() {
        let list = allowed(&["localhost", "127.0.0.1", "::1", "mcp.example.com:443"]);
        for host in [
            "localhost",
            "localhost:8788",
            "127.0.0.1:1",
            "[::1]:8788",
            "LOCALHOST",
            "mcp.example.com:443",
        ] {
            assert!(host_allowed(host, &list), "{host}");
        }
        for host in [
            "evil.com",
            "evil.com:8788",
            "mcp.example.com:80",
            "localhost.evil.com",
            "",
        ] {
            assert!(!host_allowed(host, &list), "{host}");
        }
        assert!(host_allowed("anything", &[]));
    }
}
